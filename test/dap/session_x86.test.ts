// The x86 TDP MMU under the debugger: stops inside the fault path with the kernel's call chain, the
// child shadow page's role bits in Variables, a data breakpoint on an SPTE that stops at the zap that
// changes it, and reverse-continue back to the fault that installed it.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { FIXTURES, frames, launchStopped, startClient, topFrame } from './helpers';

const ZAP = join(FIXTURES, 'tdp-zap.kvmmmu');
let dc: DebugClient | undefined;

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

async function args(c: DebugClient): Promise<DebugProtocol.Variable[]> {
  const scopes = await c.scopesRequest({ frameId: (await topFrame(c)).id });
  return (await c.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference })).body.variables;
}

describe('DAP: the TDP MMU', () => {
  it('stops in tdp_mmu_link_sp under kvm_tdp_mmu_map with the child SP role decoded into kernel fields', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'tdp_mmu_link_sp' }] }));
    const names = (await frames(dc)).map((f) => f.name);
    // The chain the kernel takes for an EPT violation on a TDP MMU host.
    for (const fn of ['tdp_mmu_link_sp', 'kvm_tdp_mmu_map', 'kvm_tdp_mmu_page_fault', 'kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault']) {
      assert.ok(names.includes(fn), `${fn} in ${names.join(' > ')}`);
    }
    assert.ok(names.indexOf('tdp_mmu_link_sp') < names.indexOf('kvm_tdp_mmu_map'), 'innermost first');
    // Engine frames open the model's own TypeScript source (the development bundle has a source map).
    const top = await topFrame(dc);
    assert.match(top.source?.path ?? '', /src\/engine\/x86\/tdp_mmu\.ts$/);
    assert.ok(top.line > 0);
    const sp = (await args(dc)).find((v) => v.name === 'sp')!;
    assert.ok(sp.variablesReference > 0);
    const spFields = (await dc.variablesRequest({ variablesReference: sp.variablesReference })).body.variables;
    const role = spFields.find((v) => v.name === 'role')!;
    assert.ok(role.variablesReference > 0, 'role expands into bit fields');
    const bits = (await dc.variablesRequest({ variablesReference: role.variablesReference })).body.variables.map((v) => v.name);
    // kvm_mmu_page_role's layout: level [3:0], direct [7], access [10:8] (ref 1.1).
    assert.ok(bits.some((b) => /^level \[3:0\]$/.test(b)), bits.join(','));
    assert.ok(bits.some((b) => /^direct \[7\]$/.test(b)), bits.join(','));
    assert.ok(bits.some((b) => /^access \[10:8\]$/.test(b)), bits.join(','));
    // The first table linked under a 4-level root is a level-3 page for the direct map.
    const level = (await dc.variablesRequest({ variablesReference: role.variablesReference })).body.variables.find((v) => v.name.startsWith('level'))!;
    assert.match(level.value, /^0x3\b/);
  });

  it('a data breakpoint on the SPTE of gfn 5 stops where it is installed and where it is zapped; reverse-continue goes back', async () => {
    dc = await startClient();
    const installed = await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) =>
      c.setDataBreakpointsRequest({ breakpoints: [{ dataId: 'spte:0:5:1' }] }));
    assert.equal(installed.body.reason, 'data breakpoint');
    const first = await frames(dc);
    assert.match(first.at(-1)!.name, /^guest read gpa=0x5000/);
    assert.ok(first.some((f) => f.name === 'kvm_tdp_mmu_map'), first.map((f) => f.name).join(' > '));
    let a = Object.fromEntries((await args(dc)).map((v) => [v.name, v.value]));
    assert.equal(a.gfn, '0x5');
    // Before: SHADOW_NONPRESENT_VALUE (bit 63); after: a present leaf (MMU-present bit 11).
    assert.equal(a.old_spte, '0x8000000000000000');
    assert.ok((BigInt(a.new_spte!) & 0x800n) !== 0n, `new ${a.new_spte}`);

    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const zap = await frames(dc);
    assert.match(zap.at(-1)!.name, /^host invalidate/);
    assert.ok(zap.some((f) => /zap|unmap/.test(f.name)), zap.map((f) => f.name).join(' > '));
    a = Object.fromEntries((await args(dc)).map((v) => [v.name, v.value]));
    assert.ok((BigInt(a.old_spte!) & 0x800n) !== 0n, 'the zap starts from the present leaf');
    assert.equal((BigInt(a.new_spte!) & 0x800n), 0n, 'and leaves a non-present SPTE');

    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    const back = await frames(dc);
    assert.match(back.at(-1)!.name, /^guest read gpa=0x5000/);
    assert.equal(back.at(-1)!.line, first.at(-1)!.line, 'back at the fault that installed it');
    assert.ok(back.some((f) => f.name === 'kvm_tdp_mmu_map'));
  });

  it('dataBreakpointInfo offers the SPTE argument at a stop as a watchable location', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'handle_changed_spte', condition: 'gfn == 5 && level == 1' }] }));
    const info = await dc.dataBreakpointInfoRequest({ name: 'new_spte', variablesReference: 1 });
    assert.equal(info.body.dataId, 'spte:0:5:1');
  });

  it('the SPTE exception filter stops at the zap', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setExceptionBreakpointsRequest({ filters: ['spte_zapped'] }));
    const f = await frames(dc);
    assert.match(f.at(-1)!.name, /^host invalidate/);
  });

  it('go to an event by index stops inside the function that emits it, back in the past', async () => {
    dc = await startClient();
    const lines = (await import('node:fs')).readFileSync(ZAP, 'utf8').split('\n');
    const last = lines.findLastIndex((l) => l.startsWith('guest read')) + 1;
    const firstRead = lines.findIndex((l) => l.startsWith('guest read')) + 1;
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: ZAP }, breakpoints: [{ line: last }] }));
    const ev = await dc.customRequest('kvmMmu/events', { start: 0, count: 1000 });
    const events = ev.body.events as Array<{ index: number; name: string; text: string; step: number }>;
    const set = events.find((e) => e.name === 'kvm_mmu_set_spte' && /^gfn 5 /.test(e.text));
    assert.ok(set, events.map((e) => `${e.name}: ${e.text}`).join('\n'));
    await Promise.all([dc.customRequest('kvmMmu/gotoEvent', { index: set.index }), dc.waitForEvent('stopped')]);
    const f = await frames(dc);
    assert.equal(f.at(-1)!.line, firstRead, 'the event was emitted by the first read');
    assert.ok(f.some((x) => x.name === 'kvm_tdp_mmu_map'), f.map((x) => x.name).join(' > '));
    const a = Object.fromEntries((await args(dc)).map((v) => [v.name, v.value]));
    assert.equal(a.event, '"kvm_mmu_set_spte"');
  });

  it('a page-table page opens as memory (readMemory) and its 512 entries page in Variables', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'tdp_mmu_link_sp' }] }));
    const sp = (await args(dc)).find((v) => v.name === 'sp')!;
    const spt = (await dc.variablesRequest({ variablesReference: sp.variablesReference })).body.variables.find((v) => v.name === 'spt')!;
    assert.ok(spt.memoryReference, 'the table has a memory reference');
    assert.equal(spt.indexedVariables, 512);
    const page = await dc.variablesRequest({ variablesReference: spt.variablesReference, filter: 'indexed', start: 510, count: 2 });
    assert.deepEqual(page.body.variables.map((v) => v.name), ['[510]', '[511]']);
    const mem = (await dc.customRequest('readMemory', { memoryReference: spt.memoryReference!, offset: 0, count: 4096 })) as DebugProtocol.ReadMemoryResponse;
    assert.equal(Buffer.from(mem.body!.data!, 'base64').length, 4096, 'a 4 KiB table');
    // A freshly allocated TDP table holds SHADOW_NONPRESENT_VALUE (bit 63) in every entry: bytes 7 = 0x80.
    const bytes = Buffer.from(mem.body!.data!, 'base64');
    assert.equal(bytes[7], 0x80);
    assert.equal(bytes.readUInt32LE(0), 0);
  });

  it('hex display: numbers follow the client format option', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_tdp_mmu_map' }] }));
    const scopes = await dc.scopesRequest({ frameId: (await topFrame(dc)).id });
    const fault = (await dc.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference })).body.variables.find((v) => v.name === 'fault')!;
    const dec = (await dc.variablesRequest({ variablesReference: fault.variablesReference })).body.variables.find((v) => v.name === 'goal_level')!;
    const hex = (await dc.variablesRequest({ variablesReference: fault.variablesReference, format: { hex: true } })).body.variables.find((v) => v.name === 'goal_level')!;
    assert.equal(dec.value, '1');
    assert.equal(hex.value, '0x1');
  });

  it('shadow MMU: a stop at link_shadow_page shows the parent SPTE, the child shadow page and its role bits', async () => {
    const SHADOW = join(FIXTURES, 'shadow-link.kvmmmu');
    dc = await startClient();
    await launchStopped(dc, { program: SHADOW, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'link_shadow_page' }] }));
    const names = (await frames(dc)).map((f) => f.name);
    assert.equal(names[0], 'link_shadow_page');
    for (const fn of ['kvm_mmu_page_fault']) assert.ok(names.includes(fn), `${fn} in ${names.join(' > ')}`);
    assert.ok(names.some((n) => /^paging(64|32)_fetch$/.test(n)), `FNAME(fetch) in ${names.join(' > ')}`);
    const vars = await args(dc);
    const byName = Object.fromEntries(vars.map((v) => [v.name, v]));
    assert.ok(byName.sptep, 'the parent sptep');
    assert.ok(byName.sp && byName.sp.variablesReference > 0, 'the child shadow page');
    const sp = (await dc.variablesRequest({ variablesReference: byName.sp.variablesReference })).body.variables;
    const role = sp.find((v) => v.name === 'role')!;
    const bits = (await dc.variablesRequest({ variablesReference: role.variablesReference })).body.variables;
    const level = bits.find((b) => b.name.startsWith('level'))!;
    const direct = bits.find((b) => b.name.startsWith('direct'))!;
    // The first link under the 4-level shadow root is the PDPT's shadow page: level 3, indirect
    // (it shadows a guest table, so role.direct = 0), 8-byte guest PTEs.
    assert.match(level.value, /^0x3\b/);
    assert.match(direct.value, /^0\b/);
    assert.match(bits.find((b) => b.name.startsWith('has_4_byte_gpte'))!.value, /^0\b/);
  });

  it('the console reads MMU state: spte by gpa and the roots', async () => {
    dc = await startClient();
    const lines = (await import('node:fs')).readFileSync(ZAP, 'utf8').split('\n');
    const inval = lines.findIndex((l) => l.startsWith('host invalidate')) + 1;
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: ZAP }, breakpoints: [{ line: inval }] }));
    const spte = await dc.evaluateRequest({ expression: 'spte gpa=0x5000', context: 'repl' });
    assert.match(spte.body.result, /kind=leaf/);
    assert.match(spte.body.result, /level=1/);
    const roots = await dc.evaluateRequest({ expression: 'roots', context: 'repl' });
    assert.match(roots.body.result, /0x3784|14212/, 'the 4-level EPT root with A/D has role 0x3784');
  });

  it('the auditor runs on demand and after every statement under its exception filter', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: ZAP, stopOnEntry: false }, async (c) => {
      await c.setExceptionBreakpointsRequest({ filters: ['audit_violation'] });
      const lines = (await import('node:fs')).readFileSync(ZAP, 'utf8').split('\n');
      await c.setBreakpointsRequest({ source: { path: ZAP }, breakpoints: [{ line: lines.findIndex((l) => l.startsWith('host invalidate')) + 1 }] });
    });
    // A consistent engine: the filter did not stop anywhere before the breakpoint.
    assert.match((await frames(dc)).at(-1)!.name, /^host invalidate/);
    const r = await dc.evaluateRequest({ expression: 'audit', context: 'repl' });
    assert.match(r.body.result, /^no violation \(\d+ checks\)$/);
    const n = Number(/\((\d+) checks/.exec(r.body.result)![1]);
    assert.ok(n > 100, `the audit covered the tables (${n} checks)`);
    const req = (await dc.customRequest('kvmMmu/audit', {})).body as { checks: number; violations: unknown[] };
    assert.deepEqual(req.violations, []);
  });
});
