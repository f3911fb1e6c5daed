/**
 * How a model check's result is told in VS Code: a one-line notification, the full report for the output
 * channel, and one problem per mismatch on the capture. Pure (no `vscode`), so it is unit-tested directly.
 */
import type { Mismatch, ModelCheckResult } from '../../trace/model_check';

/** Capture file extensions the command is offered for (explorer and editor context menus). */
export const CAPTURE_EXTENSIONS = ['txt', 'dat', 'trace'];

export interface MismatchProblem {
  /** 0-based line in the capture. */
  line: number;
  message: string;
}

function base(file: string): string {
  return file.split(/[\\/]/).pop() ?? file;
}

/** Both sides of a mismatch, as the capture wrote it and as the model would have. */
export function mismatchSides(m: Mismatch): string[] {
  const out: string[] = [];
  out.push(m.real ? `capture: ${m.real.text}` : 'capture: (no such change)');
  out.push(m.model ? `model: ${m.model.text}` : 'model: (no such change)');
  return out;
}

/** The notification: agreement, why nothing was checked, or the first mismatch with both sides. */
export function summaryLine(r: ModelCheckResult, file: string): string {
  const name = base(file);
  if (r.skipped) return `${name} was not model-checked: ${r.skipped}`;
  if (r.ok) return `${name}: the x86 model (${r.vm.description}) makes the same ${r.compared} SPTE changes as the capture over ${r.faultsReplayed} faults (pfn bits not compared).`;
  const m = r.mismatches[0]!;
  const more = r.mismatches.length > 1 ? ` (${r.mismatches.length} mismatches, see Problems)` : '';
  return `${name} line ${m.line}: as ${m.asId} gfn ${m.gfn} level ${m.level}: ${m.reason}${more}. ${mismatchSides(m).join('; ')}`;
}

/** The whole report, as `kvm-mmu replay FILE --model-check` prints it. */
export function reportText(r: ModelCheckResult, file: string): string {
  const out: string[] = [];
  out.push(`${file}: model check against the x86 model: ${r.vm.description}`);
  out.push(`  memslots (inferred): ${r.vm.slots.map((s) => `${s.slot}: gpa ${s.gpa} size ${s.size}${s.hva ? ` hva ${s.hva}` : ''} ${s.backing}`).join('; ') || 'none'}`);
  if (r.skipped) {
    out.push(`not checked: ${r.skipped}`);
    return out.join('\n');
  }
  out.push(`  operations replayed: ${Object.entries(r.operations).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'} (faults from ${r.faultSource})`);
  out.push(`  SPTE changes: capture ${r.realChanges}, model ${r.modelChanges}, compared ${r.compared}, not replayed ${r.notReplayed}`);
  if (r.ok) {
    out.push('result: the model makes the same SPTE changes as the capture (pfn bits not compared)');
    return out.join('\n');
  }
  out.push(`result: ${r.mismatches.length} mismatch(es)`);
  for (const m of r.mismatches) {
    out.push(`  line ${m.line}: as ${m.asId} gfn ${m.gfn} level ${m.level}: ${m.reason}`);
    for (const s of mismatchSides(m)) out.push(`    ${s}`);
  }
  return out.join('\n');
}

/** One problem per mismatch, at its capture line (several mismatches on one line stay separate). */
export function mismatchProblems(r: ModelCheckResult): MismatchProblem[] {
  return r.mismatches.map((m) => ({
    line: Math.max(0, m.line - 1),
    message: `model check: as ${m.asId} gfn ${m.gfn} level ${m.level}: ${m.reason}\n${mismatchSides(m).join('\n')}`,
  }));
}

/** The progress notification's percentage (0-100, whole) of `bytes` read out of `total`. */
export function percentOf(bytes: number, total: number): number {
  if (!(total > 0)) return 0;
  return Math.max(0, Math.min(100, Math.floor((100 * bytes) / total)));
}
