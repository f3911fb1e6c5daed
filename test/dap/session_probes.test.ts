// Stops inside the engine through a real DAP client, on the arm64 stage-2 example: function
// breakpoints on KVM functions with the kernel's call chain as the stack, conditions over probe
// arguments, stepping into and out of the MMU, kernelSource links, and going back.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import { EXAMPLES, frames, launchStopped, startClient, topFrame } from './helpers';

const ARM = join(EXAMPLES, 'arm64-stage2-faults.kvmmmu');
/** 1-based line of the first statement starting with `text` (the example's comments may change). */
function lineOf(text: string, nth = 1): number {
  const lines = readFileSync(ARM, 'utf8').split('\n');
  let seen = 0;
  for (let i = 0; i < lines.length; i++) if (lines[i]!.startsWith(text) && ++seen === nth) return i + 1;
  throw new Error(`no line '${text}' in ${ARM}`);
}
const FIRST_READ = lineOf('guest read ipa=0x40001000');
const DIRTY_WRITE = lineOf('guest write ipa=0x40001000');
let dc: DebugClient | undefined;

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

describe('DAP: stopping inside the MMU', () => {
  it('a function breakpoint on kvm_pgtable_stage2_map shows the kernel call chain down to the scenario line', async () => {
    dc = await startClient();
    const ev = await launchStopped(dc, { program: ARM, stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_pgtable_stage2_map' }] }));
    assert.equal(ev.body.reason, 'function breakpoint');
    const names = (await frames(dc)).map((f) => f.name);
    // The guest's first access is the stage-2 abort of the first `guest read` line.
    assert.deepEqual(names.slice(0, 3), ['kvm_pgtable_stage2_map', 'user_mem_abort', 'kvm_handle_guest_abort']);
    const bottom = (await frames(dc)).at(-1)!;
    assert.match(bottom.name, /^guest read ipa=0x40001000/);
    assert.equal(bottom.line, FIRST_READ);
    const scopes = await dc.scopesRequest({ frameId: (await topFrame(dc)).id });
    assert.equal(scopes.body.scopes[0]!.name, 'Arguments of kvm_pgtable_stage2_map');
    const args = await dc.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference });
    const byName = Object.fromEntries(args.body.variables.map((v) => [v.name, v.value]));
    // A 2M block at IPA 0x40000000 (the THP-backed slot), as the example explains.
    assert.equal(byName.addr, '0x40000000');
    assert.equal(byName.size, '0x200000');
  });

  it('a condition over probe arguments skips the hits that do not match', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ARM, stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_pgtable_stage2_map', condition: 'size == 0x1000' }] }));
    // Only the 4K page mapped after dirty logging starts matches (the write under dirty logging).
    const bottom = (await frames(dc)).at(-1)!;
    assert.equal(bottom.line, DIRTY_WRITE);
  });

  it('step in from a line enters the first KVM function; step out leaves it; step back returns', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ARM, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: ARM }, breakpoints: [{ line: FIRST_READ }] }));
    assert.equal((await topFrame(dc)).line, FIRST_READ);
    // Step in until the abort handler is entered (earlier probes may be the model's own lookups).
    let inFrames = await frames(dc);
    for (let i = 0; i < 10 && inFrames[0]!.name !== 'kvm_handle_guest_abort'; i++) {
      await Promise.all([dc.stepInRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      inFrames = await frames(dc);
      assert.ok(inFrames.length >= 2, 'step in from a line stops inside the statement, not at the next line');
    }
    assert.equal(inFrames[0]!.name, 'kvm_handle_guest_abort');
    await Promise.all([dc.stepInRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const deeper = (await frames(dc)).map((f) => f.name);
    assert.equal(deeper[1], 'kvm_handle_guest_abort', 'one step in goes one call deeper');
    await Promise.all([dc.stepOutRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const out = (await frames(dc)).map((f) => f.name);
    assert.ok(out.length < deeper.length, `step out stops shallower: ${out.join(' > ')} vs ${deeper.join(' > ')}`);
    await Promise.all([dc.stepBackRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const back = (await frames(dc)).map((f) => f.name);
    assert.ok(back.length >= 2, 'step back lands on the previous probe hit, inside the MMU');
  });

  it('with kernelSource, a frame opens the function in the Linux tree', async () => {
    const linux = mkdtempSync(join(tmpdir(), 'linux-'));
    mkdirSync(join(linux, 'arch/arm64/kvm'), { recursive: true });
    writeFileSync(join(linux, 'arch/arm64/kvm/mmu.c'), '// SPDX\n\nstatic int user_mem_abort(struct kvm_vcpu *vcpu, phys_addr_t fault_ipa,\n\t\t\t  struct kvm_s2_trans *nested)\n{\n}\n');
    dc = await startClient();
    await launchStopped(dc, { program: ARM, stopOnEntry: false, kernelSource: linux }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'user_mem_abort' }] }));
    const f = await topFrame(dc);
    assert.equal(f.name, 'user_mem_abort');
    assert.equal(f.source?.path, join(linux, 'arch/arm64/kvm/mmu.c'));
    assert.equal(f.line, 3);
  });

  it('reverse-continue goes back to the previous hit of a function breakpoint', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ARM, stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_handle_guest_abort' }] }));
    const first = (await frames(dc)).at(-1)!.line;
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const second = (await frames(dc)).at(-1)!.line;
    assert.ok(second > first);
    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await frames(dc)).at(-1)!.line, first);
    assert.equal((await topFrame(dc)).name, 'kvm_handle_guest_abort');
  });

  it('the console lists probes with completions', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ARM, stopOnEntry: true });
    const r = await dc.evaluateRequest({ expression: 'probes stage2_map', context: 'repl' });
    assert.match(r.body.result, /kvm_pgtable_stage2_map/);
    const c = await dc.completionsRequest({ text: 'user_mem', column: 9 });
    assert.ok(c.body.targets.some((t) => t.label === 'user_mem_abort'));
  });
});
