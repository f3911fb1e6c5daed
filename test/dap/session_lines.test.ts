// Line-level control of a scenario through a real DAP client: entry, line breakpoints, stepping,
// going backwards, restart, the console, and bad requests answered without ending the session.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import { FIXTURES, frames, launchStopped, startClient, topFrame } from './helpers';

const LINES = join(FIXTURES, 'lines.kvmmmu');
let dc: DebugClient | undefined;

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

describe('DAP: scenario line control', () => {
  it('stops on entry at the first statement, with the scenario frame at the bottom', async () => {
    dc = await startClient();
    const ev = await launchStopped(dc, { program: LINES, stopOnEntry: true });
    assert.equal(ev.body.reason, 'entry');
    const f = await topFrame(dc);
    assert.equal(f.line, 2);
    assert.equal(f.source?.path, LINES);
    assert.match(f.name, /^vm arch=x86/);
  });

  it('steps over statements line by line, then steps back and reverse-continues', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: LINES, stopOnEntry: true });
    for (const expected of [3, 4, 5]) {
      await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      assert.equal((await topFrame(dc)).line, expected);
    }
    await Promise.all([dc.stepBackRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 4, 'step back returns to the previous statement');
    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 2, 'with no breakpoint behind, reverse-continue goes to the start');
  });

  it('stops at a line breakpoint (snapped to the next statement), honours conditions on hit counts, and runs to the end', async () => {
    dc = await startClient();
    let bps: Array<{ verified: boolean; line?: number }> = [];
    const ev = await launchStopped(dc, { program: LINES, stopOnEntry: false }, async (c) => {
      const r = await c.setBreakpointsRequest({ source: { path: LINES }, breakpoints: [{ line: 1 }, { line: 5 }, { line: 40 }] });
      bps = r.body.breakpoints;
    });
    assert.deepEqual(bps.map((b) => [b.verified, b.line]), [[true, 2], [true, 5], [false, 40]]);
    assert.equal(ev.body.reason, 'breakpoint');
    assert.equal((await topFrame(dc)).line, 2);
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 5);
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('terminated')]);
  });

  it('reverse-continue from a later line stops at the line breakpoint behind it', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: LINES, stopOnEntry: true }, async (c) => {
      await c.setBreakpointsRequest({ source: { path: LINES }, breakpoints: [{ line: 3 }] });
    });
    await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 3);
    await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 5);
    await Promise.all([dc.reverseContinueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    assert.equal((await topFrame(dc)).line, 3);
    assert.equal((await frames(dc)).length, 1, 'at a line stop the stack is the scenario frame only');
  });

  it('answers the debug console: decode role and pferr with the kernel field names', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: LINES, stopOnEntry: true });
    const role = await dc.evaluateRequest({ expression: 'decode role 0x3784', context: 'repl' });
    assert.match(role.body.result, /l4 8-byte q0 direct wux nxe ad/);
    assert.match(role.body.result, /cr0_wp/);
    const pf = await dc.evaluateRequest({ expression: 'decode pferr 0x100000006', context: 'repl' });
    // 0x100000006: WRITE (bit 1), USER (bit 2), GUEST_FINAL (bit 32).
    assert.match(pf.body.result, /WRITE/);
    assert.match(pf.body.result, /USER/);
    assert.match(pf.body.result, /GUEST_FINAL/);
    const bad = await dc.evaluateRequest({ expression: 'decode spte zz', context: 'repl' }).catch((e: Error) => e);
    assert.ok(bad instanceof Error, 'a bad command is a DAP error response');
  });

  it('rejects an unknown probe name as an unverified function breakpoint and survives a bad request', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: LINES, stopOnEntry: true });
    const r = await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'no_such_function' }] });
    assert.equal(r.body.breakpoints[0]!.verified, false);
    const v = await dc.variablesRequest({ variablesReference: 999999 });
    assert.deepEqual(v.body.variables, []);
    const f = await topFrame(dc);
    assert.equal(f.line, 2, 'session still alive');
  });

  it('a missing scenario ends the session with a message instead of hanging', async () => {
    dc = await startClient();
    const out: string[] = [];
    dc.on('output', (e) => out.push(e.body.output));
    const term = dc.waitForEvent('terminated');
    await Promise.all([dc.waitForEvent('initialized').then(() => dc!.configurationDoneRequest()), dc.launch({ program: join(FIXTURES, 'missing.kvmmmu') })]);
    await term;
    assert.ok(out.some((o) => /scenario not found/.test(o)), out.join(''));
  });
});
