/**
 * A model check's result as text: the report `kvm-mmu replay --model-check` prints and the VS Code
 * command writes to its output channel, and both sides of a mismatch. Types only from ./model_check, so
 * the extension bundle takes this file without the engine.
 */
import type { Mismatch, ModelCheckResult } from './model_check';

/** Both sides of a mismatch, labelled: the capture's change and the model's (aligned one above the other). */
export function mismatchSides(m: Mismatch, align = true): string[] {
  return [`capture: ${m.real ? m.real.text : '(no such change)'}`, `model:${align ? '   ' : ' '}${m.model ? m.model.text : '(no such change)'}`];
}

/** The whole report. */
export function modelCheckText(r: ModelCheckResult, file: string): string {
  const out: string[] = [];
  out.push(`${file}: model check against the x86 model: ${r.vm.description}`);
  out.push(`  memslots (inferred): ${r.vm.slots.map((s) => `${s.slot}: gpa ${s.gpa} size ${s.size}${s.hva ? ` hva ${s.hva}` : ''} ${s.backing}`).join('; ') || 'none'}`);
  if (r.skipped) {
    out.push(`not checked: ${r.skipped}`);
    return out.join('\n');
  }
  out.push(`  operations replayed: ${Object.entries(r.operations).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'} (faults from ${r.faultSource})`);
  out.push(`  SPTE changes: capture ${r.realChanges}, model ${r.modelChanges}, not replayed ${r.notReplayed}; events compared ${r.compared}`);
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
