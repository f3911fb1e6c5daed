// A captured trace as a debug session through a real DAP client: each modelled event is a step at its
// line in the capture, events are probes (function breakpoints with conditions on their fields, data
// breakpoints on an SPTE by address space, gfn and level), the recorded `<stack trace>` is the call
// stack, and going back re-replays the capture.
//
// Line numbers below are those of test/fixtures/traces/tdp_stacks.txt (a hand-written 6.18 raw capture:
// two EPT faults on gfns 1a2 and 1a3, an MMU-notifier zap of 1a2, and a refault of 1a2).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { ROOT, frames, launchStopped, startClient, topFrame } from './helpers';

const TRACE = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
/** Capture lines of the events the tests stop at. */
const L = {
  firstExit: 5,
  firstFault: 6,
  install1a2: 17,
  install1a2Stack: 18,
  install1a3: 32,
  zap1a2: 42,
  refault1a2: 52,
};
let dc: DebugClient | undefined;

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

async function argsOfTop(c: DebugClient): Promise<Record<string, string>> {
  const scopes = await c.scopesRequest({ frameId: (await topFrame(c)).id });
  const args = scopes.body.scopes.find((s) => s.presentationHint === 'arguments');
  assert.ok(args, `an arguments scope among ${scopes.body.scopes.map((s) => s.name).join(', ')}`);
  const vars = await c.variablesRequest({ variablesReference: args.variablesReference });
  return Object.fromEntries(vars.body.variables.map((v) => [v.name, v.value]));
}

async function next(c: DebugClient): Promise<void> {
  await Promise.all([c.nextRequest({ threadId: 1 }), c.waitForEvent('stopped')]);
}

describe('DAP: replaying a captured trace', () => {
  it('stops on entry at the first event line, steps forward event by event and back', async () => {
    dc = await startClient();
    const ev = await launchStopped(dc, { trace: TRACE, stopOnEntry: true });
    assert.equal(ev.body.reason, 'entry');
    const f = await topFrame(dc);
    assert.equal(f.line, L.firstExit);
    assert.equal(f.source?.path, TRACE);
    assert.match(f.name, /^kvm_exit: vcpu 0 reason EPT_VIOLATION/);
    await next(dc);
    assert.equal((await frames(dc)).at(-1)!.line, L.firstFault);
    // The stack trace lines after the fault are frames, not events: the next event is the request.
    await next(dc);
    const bottom = (await frames(dc)).at(-1)!;
    assert.equal(bottom.line, L.firstFault + 7);
    assert.match(bottom.name, /^kvm_mmu_spte_requested: gfn 1a2 pfn 3f00a2 level 1$/);
    await Promise.all([dc.stepBackRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await frames(dc)).at(-1)!.line, L.firstFault);
    await Promise.all([dc.stepBackRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await frames(dc)).at(-1)!.line, L.firstExit);
  });

  it('a mail-wrapped event is labelled with its whole text, all its lines joined', async () => {
    dc = await startClient();
    await launchStopped(dc, { trace: join(ROOT, 'test', 'fixtures', 'traces', 'mail_wrapped.txt'), stopOnEntry: true });
    const f = await topFrame(dc);
    assert.equal(f.line, 5);
    assert.equal(f.name, 'kvm_page_fault: vcpu 0 rip 0xffffffff8100abcd address 0x00000000001a2000 error_code 0x181');
    await next(dc);
    await next(dc);
    // wrapped at a space, then (kvm_exit below) over three lines
    assert.equal((await topFrame(dc)).name, 'kvm_tdp_mmu_spte_changed: as id 0 gfn 1a2 level 1 old_spte 8000000000000000 new_spte 6000003f00a2b77');
    await next(dc);
    assert.equal((await topFrame(dc)).name, 'kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b77 (rwxu) level 1 at 1c4f0d10');
    await next(dc);
    const exit = await topFrame(dc);
    assert.equal(exit.line, 12);
    assert.equal(
      exit.name,
      'kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0xffffffff8100abcd info1 0x0000000000000181 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000',
    );
  });

  it('a line breakpoint on a continuation line of a mail-wrapped event binds to that event, and the frame spans its lines', async () => {
    dc = await startClient();
    const MAIL = join(ROOT, 'test', 'fixtures', 'traces', 'mail_wrapped.txt');
    let bps: DebugProtocol.Breakpoint[] = [];
    const ev = await launchStopped(dc, { trace: MAIL, stopOnEntry: false }, async (c) => {
      // line 9 continues the spte_changed event of line 8; line 14 is the third line of the kvm_exit at 12;
      // line 15 is blank after the last event: nothing to bind to
      bps = (await c.setBreakpointsRequest({ source: { path: MAIL }, breakpoints: [{ line: 9 }, { line: 14 }, { line: 15 }] })).body.breakpoints;
    });
    assert.deepEqual(bps.map((b) => [b.verified, b.line, b.endLine]), [[true, 8, 9], [true, 12, 14], [false, 15, undefined]]);
    assert.equal(ev.body.reason, 'breakpoint');
    let f = await topFrame(dc);
    assert.deepEqual([f.line, f.endLine], [8, 9]);
    assert.match(f.name, /^kvm_tdp_mmu_spte_changed: .* new_spte 6000003f00a2b77$/);
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    f = await topFrame(dc);
    assert.deepEqual([f.line, f.endLine], [12, 14]);
    assert.match(f.name, /^kvm_exit: /);
  });

  it('a line breakpoint in the capture stops at that event', async () => {
    dc = await startClient();
    let bps: DebugProtocol.Breakpoint[] = [];
    const ev = await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, async (c) => {
      // line 20 is a stack frame: the breakpoint moves to the next event (kvm_mmu_set_spte, line 27)
      bps = (await c.setBreakpointsRequest({ source: { path: TRACE }, breakpoints: [{ line: L.install1a3 }, { line: 20 }] })).body.breakpoints;
    });
    assert.deepEqual(bps.map((b) => [b.verified, b.line]), [[true, L.install1a3], [true, 27]]);
    assert.equal(ev.body.reason, 'breakpoint');
    assert.equal((await topFrame(dc)).line, 27);
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await frames(dc)).at(-1)!.line, L.install1a3);
  });

  it('a function breakpoint on an event name with a condition on a field stops at the matching event', async () => {
    dc = await startClient();
    const ev = await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_tdp_mmu_spte_changed', condition: 'gfn == 0x1a3' }] }));
    assert.equal(ev.body.reason, 'function breakpoint');
    const all = await frames(dc);
    assert.equal(all.at(-1)!.line, L.install1a3);
    const args = await argsOfTop(dc);
    assert.equal(args.gfn, '0x1a3');
    assert.equal(args.level, '1');
    assert.equal(args.new_spte, '0x86000003f00a3b77');
    // A second condition over the same event: the level-4 entry of the first fault.
    await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_tdp_mmu_spte_changed', condition: 'level == 4' }] });
    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await frames(dc)).at(-1)!.line, 14);
  });

  it('a data breakpoint on (gfn, level) stops at each change of that SPTE: install, zap, reinstall', async () => {
    dc = await startClient();
    let bp: DebugProtocol.Breakpoint | undefined;
    const ev = await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, async (c) => {
      bp = (await c.setDataBreakpointsRequest({ breakpoints: [{ dataId: 'spte:0:1a2:1' }] })).body.breakpoints[0];
    });
    assert.equal(bp?.verified, true);
    assert.equal(ev.body.reason, 'data breakpoint');
    const lines: number[] = [(await frames(dc)).at(-1)!.line];
    let args = await argsOfTop(dc);
    assert.equal(args.old_spte, '0x8000000000000000');
    assert.equal(args.new_spte, '0x86000003f00a2b77');
    for (let i = 0; i < 2; i++) {
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      lines.push((await frames(dc)).at(-1)!.line);
    }
    // kvm_mmu_set_spte after each install repeats the value already installed: not a change.
    assert.deepEqual(lines, [L.install1a2, L.zap1a2, L.refault1a2]);
    args = await argsOfTop(dc);
    assert.equal(args.old_spte, '0x8000000000000000');
    assert.equal(args.new_spte, '0x86000003f00b7b77');
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('terminated')]);
  });

  it('the call stack at an event is its recorded <stack trace>, each frame at its line in the capture', async () => {
    dc = await startClient();
    await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_tdp_mmu_spte_changed', condition: 'gfn == 0x1a2 && level == 1' }] }));
    const all = await frames(dc);
    assert.deepEqual(all.map((f) => f.name), [
      'handle_changed_spte', 'tdp_mmu_set_spte_atomic', 'tdp_mmu_map_handle_target_level', 'kvm_tdp_mmu_map',
      'kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault', 'vmx_handle_exit',
      'kvm_tdp_mmu_spte_changed: as id 0 gfn 1a2 level 1 old_spte 8000000000000000 new_spte 86000003f00a2b77',
    ]);
    // frames are the lines after the `<stack trace>` marker, innermost first
    assert.deepEqual(all.slice(0, -1).map((f) => f.line), [19, 20, 21, 22, 23, 24, 25, 26]);
    for (const f of all) assert.equal(f.source?.path, TRACE);
    assert.equal(all.at(-1)!.line, L.install1a2);
    // The rebuilt state at the stop already holds the change (the tracepoint follows the write).
    const rows = (await dc.customRequest('kvmMmu/query', { subject: 'spte', selector: { gfn: 0x1a2 } })).body as { rows?: Array<Record<string, unknown>> } | Array<Record<string, unknown>>;
    const list = Array.isArray(rows) ? rows : rows.rows ?? [];
    assert.equal(list[0]?.kind, 'leaf');
    assert.equal(list[0]?.level, 1);
    assert.equal(list[0]?.w, 1);
  });
  it('the Events view lists the capture events; going to one stops at its line, rebuilt state up to it', async () => {
    dc = await startClient();
    await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: TRACE }, breakpoints: [{ line: 54 }] }));
    const ev = await dc.customRequest('kvmMmu/events', { start: 0, count: 100 });
    const events = ev.body.events as Array<{ index: number; name: string; text: string; step: number; vcpu: number }>;
    // 23 modelled events: per fault kvm_exit, kvm_page_fault, kvm_mmu_spte_requested, the SPTE changes,
    // kvm_mmu_set_spte, kvm_entry; plus the notifier's kvm_unmap_hva_range and its zap.
    assert.equal(ev.body.total, 23);
    assert.equal(events[0]!.name, 'kvm_exit');
    assert.equal(events[1]!.text, 'vcpu 0 rip 0xffffffff8100abcd address 0x00000000001a2000 error_code 0x181');
    assert.equal(events[1]!.vcpu, 0);
    const zap = events.find((e) => e.name === 'kvm_tdp_mmu_spte_changed' && / new_spte 8000000000000000$/.test(e.text));
    assert.ok(zap);
    const filtered = await dc.customRequest('kvmMmu/events', { start: 0, count: 100, filter: 'kvm_mmu_set_spte' });
    assert.equal(filtered.body.total, 3);
    await Promise.all([dc.customRequest('kvmMmu/gotoEvent', { index: zap.index }), dc.waitForEvent('stopped')]);
    const f = await frames(dc);
    assert.equal(f.at(-1)!.line, L.zap1a2);
    assert.deepEqual(f.slice(0, 2).map((x) => x.name), ['handle_changed_spte', 'tdp_mmu_zap_leafs']);
    // The zap has been applied: gfn 1a2 has no rebuilt leaf, 1a3 still has its own.
    const q = async (gfn: number) => (await dc!.customRequest('kvmMmu/query', { subject: 'spte', selector: { gfn, at_level: 1 } })).body;
    const rows = (b: unknown) => (Array.isArray(b) ? b : ((b as { rows?: unknown[] }).rows ?? [])) as Array<Record<string, unknown>>;
    assert.deepEqual(rows(await q(0x1a2)), []);
    assert.equal(rows(await q(0x1a3))[0]?.value, '0x86000003f00a3b77');
  });

  it('the Variables view shows the rebuilt SPTEs per root as a tree down to the leaves, and faults per gfn', async () => {
    dc = await startClient();
    await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: TRACE }, breakpoints: [{ line: 40 }] }));
    const top = await topFrame(dc);
    const scopes = (await dc.scopesRequest({ frameId: top.id })).body.scopes;
    const vars = async (ref: number) => (await dc!.variablesRequest({ variablesReference: ref })).body.variables;
    const sptes = scopes.find((s) => s.name === 'SPTEs')!;
    const roots = await vars(sptes.variablesReference);
    const root = roots.find((v) => v.name === 'as 0 root 0')!;
    const entries = (await vars(root.variablesReference)).find((v) => v.name === 'entries')!;
    let level = await vars(entries.variablesReference);
    // Walk down gfn 0's tables: L4 -> L3 -> L2 -> the two 4K leaves installed so far.
    for (const name of ['L4 gfn 0x0', 'L3 gfn 0x0', 'L2 gfn 0x0']) {
      const node = level.find((v) => v.name === name);
      assert.ok(node, `${name} among ${level.map((v) => v.name).join(', ')}`);
      const table = (await vars(node.variablesReference)).find((v) => v.name === 'table')!;
      level = await vars(table.variablesReference);
    }
    assert.deepEqual(level.map((v) => v.name), ['L1 gfn 0x1a2', 'L1 gfn 0x1a3']);
    assert.match(level[0]!.value, /^0x86000003f00a2b77 leaf/);
    const faults = await vars(scopes.find((s) => s.name === 'Faults')!.variablesReference);
    const byGfn = await vars(faults.find((v) => v.name === 'byGfn')!.variablesReference);
    assert.deepEqual(byGfn.map((v) => [v.name, v.value]), [['0x1a2', '1'], ['0x1a3', '1']]);
  });
  it('line breakpoints take conditions over the event at the line, and logpoints print its fields', async () => {
    dc = await startClient();
    const out: string[] = [];
    dc.on('output', (e: DebugProtocol.OutputEvent) => out.push(e.body.output));
    const spteLines = [17, 32, 42, 52];
    const ev = await launchStopped(dc, { trace: TRACE, stopOnEntry: false }, (c) =>
      c.setBreakpointsRequest({
        source: { path: TRACE },
        breakpoints: [
          ...spteLines.map((line) => ({ line, condition: 'Event.new_spte == 0x8000000000000000' })),
          { line: L.firstFault, logMessage: 'fault at {Event.fault_address}' },
        ],
      }));
    assert.equal(ev.body.reason, 'breakpoint');
    // Only the zap sets the SPTE to the non-present value (its recorded stack is above the event).
    const f = await frames(dc);
    assert.equal(f.at(-1)!.line, L.zap1a2);
    assert.equal(f[0]!.name, 'handle_changed_spte');
    assert.ok(out.some((o) => o === 'fault at 0x1a2000\n'), out.join(''));
  });
  it('a large capture (the model\'s own trace of examples/tdp-basics.kvmmmu) stops at the right line deep inside it', async () => {
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-trace-session-'));
    try {
      const big = join(dir, 'tdp-basics.txt');
      execFileSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'run', join(ROOT, 'examples', 'tdp-basics.kvmmmu'), '--trace-out', big], { stdio: 'pipe' });
      const lines = readFileSync(big, 'utf8').split('\n');
      // After dirty logging is enabled every 4K leaf is write-protected: the last 2M region's last page.
      const want = lines.findIndex((l) => / kvm_tdp_mmu_spte_changed: as id 0 gfn 3ffff level 1 old_spte [0-9a-f]+b77 new_spte [0-9a-f]+b75$/.test(l)) + 1;
      assert.ok(want > 200_000, `line ${want} is deep in the capture`);
      dc = await startClient();
      await launchStopped(dc, { trace: big, stopOnEntry: false }, (c) =>
        c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_tdp_mmu_spte_changed', condition: 'gfn == 0x3ffff && level == 1 && (old_spte & 2) != 0 && (new_spte & 2) == 0' }] }));
      const bottom = (await frames(dc)).at(-1)!;
      assert.equal(bottom.line, want);
      // the label is read back from the file at the event's byte offset
      assert.equal(bottom.name, lines[want - 1]!.slice(lines[want - 1]!.indexOf('kvm_tdp_mmu_spte_changed:')));
    } finally {
      await dc?.stop();
      dc = undefined;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
