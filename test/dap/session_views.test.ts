// The custom requests the sidebar views read: watches a view adds coexist with the client's data
// breakpoints and all fire; RMP and stage-2 lists page; trace sessions answer from the rebuilt model;
// "Why?" names the kernel function behind each decision of the current fault.
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

async function argsOf(c: DebugClient): Promise<Record<string, string>> {
  const scopes = await c.scopesRequest({ frameId: (await topFrame(c)).id });
  const vars = (await c.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference })).body.variables;
  return Object.fromEntries(vars.map((v) => [v.name, v.value]));
}

async function cont(c: DebugClient): Promise<DebugProtocol.StoppedEvent> {
  const [, ev] = await Promise.all([c.continueRequest({ threadId: 1 }), c.waitForEvent('stopped') as Promise<DebugProtocol.StoppedEvent>]);
  return ev;
}

describe('DAP: view watches (kvmMmu/addDataBreakpoint)', () => {
  it('two SPTE watches added by a view coexist with the client set, survive its replacement, and both fire', async () => {
    dc = await startClient();
    // The client's own set watches gfn 6; the view adds gfn 5 then gfn 6 is replaced by the client.
    await launchStopped(dc, { program: ZAP, stopOnEntry: true });
    const a = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' })).body as { breakpoint: { verified: boolean } };
    assert.equal(a.breakpoint.verified, true);
    const b = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:6:1' })).body as { breakpoint: { verified: boolean }; breakpoints: unknown[] };
    assert.equal(b.breakpoint.verified, true);
    assert.equal(b.breakpoints.length, 2);
    // Adding the same watch again does not duplicate it; a bad one is refused, not added.
    const again = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' })).body as { breakpoints: unknown[] };
    assert.equal(again.breakpoints.length, 2);
    const bad = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'nonsense' })).body as { breakpoint: { verified: boolean }; breakpoints: unknown[] };
    assert.equal(bad.breakpoint.verified, false);
    assert.equal(bad.breakpoints.length, 2);
    // VS Code sends its whole set (here: empty) whenever its Breakpoints view changes.
    await dc.setDataBreakpointsRequest({ breakpoints: [] });
    const listed = (await dc.customRequest('kvmMmu/dataBreakpoints', {})).body as { breakpoints: Array<{ dataId: string }> };
    assert.deepEqual(listed.breakpoints.map((x) => x.dataId).sort(), ['spte:0:5:1', 'spte:0:6:1']);

    const first = await cont(dc);
    assert.equal(first.body.reason, 'data breakpoint');
    assert.match((await frames(dc)).at(-1)!.name, /^guest read gpa=0x5000/);
    assert.equal((await argsOf(dc)).gfn, '0x5');
    const second = await cont(dc);
    assert.equal(second.body.reason, 'data breakpoint');
    assert.match((await frames(dc)).at(-1)!.name, /^guest read gpa=0x6000/);
    assert.equal((await argsOf(dc)).gfn, '0x6');

    // Removing one leaves the other: the zap of gfn 5 still stops, nothing for gfn 6 does.
    const rm = (await dc.customRequest('kvmMmu/removeDataBreakpoint', { dataId: 'spte:0:6:1' })).body as { removed: boolean; breakpoints: unknown[] };
    assert.equal(rm.removed, true);
    assert.equal(rm.breakpoints.length, 1);
    await cont(dc);
    assert.match((await frames(dc)).at(-1)!.name, /^host invalidate/);
    assert.equal((await argsOf(dc)).gfn, '0x5');
  });

  it('a client data breakpoint and a view watch both fire', async () => {
    dc = await startClient();
    const first = await launchStopped(dc, { program: ZAP, stopOnEntry: false }, async (c) => {
      await c.setDataBreakpointsRequest({ breakpoints: [{ dataId: 'spte:0:6:1' }] });
      await c.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' });
    });
    assert.equal(first.body.reason, 'data breakpoint');
    assert.equal((await argsOf(dc)).gfn, '0x5');
    await cont(dc);
    assert.equal((await argsOf(dc)).gfn, '0x6');
  });
});
