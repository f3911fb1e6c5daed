/**
 * How a model check's result is told in VS Code: a one-line notification, the full report for the output
 * channel, and one problem per mismatch on the capture. Pure (no `vscode`), so it is unit-tested directly.
 */
import type { ModelCheckResult } from '../../trace/model_check';
import { mismatchSides, modelCheckText } from '../../trace/model_check_text';

/** The whole report, as `kvm-mmu replay FILE --model-check` prints it. */
export const reportText = modelCheckText;

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

/** The notification: agreement, why nothing was checked, or the first mismatch with both sides. */
export function summaryLine(r: ModelCheckResult, file: string): string {
  const name = base(file);
  if (r.skipped) return `${name} was not model-checked: ${r.skipped}`;
  if (r.ok) return `${name}: the x86 model (${r.vm.description}) makes the same ${r.compared} SPTE changes as the capture over ${r.faultsReplayed} faults (pfn bits not compared).`;
  const m = r.mismatches[0]!;
  const more = r.mismatches.length > 1 ? ` (${r.mismatches.length} mismatches, see Problems)` : '';
  return `${name} line ${m.line}: as ${m.asId} gfn ${m.gfn} level ${m.level}: ${m.reason}${more}. ${mismatchSides(m, false).join('; ')}`;
}

/** One problem per mismatch, at its capture line (several mismatches on one line stay separate). */
export function mismatchProblems(r: ModelCheckResult): MismatchProblem[] {
  return r.mismatches.map((m) => ({
    line: Math.max(0, m.line - 1),
    message: `model check: as ${m.asId} gfn ${m.gfn} level ${m.level}: ${m.reason}\n${mismatchSides(m, false).join('\n')}`,
  }));
}

/** The progress notification's percentage (0-100, whole) of `bytes` read out of `total`. */
export function percentOf(bytes: number, total: number): number {
  if (!(total > 0)) return 0;
  return Math.max(0, Math.min(100, Math.floor((100 * bytes) / total)));
}
