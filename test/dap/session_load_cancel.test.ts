// Cancelling the load of a large capture through DAP: the progress VS Code shows with a Cancel button is
// `cancellable`, a `cancel` with its progressId reaches the worker while it is inside the synchronous read
// (through shared memory), the read stops between chunks, and the session ends cleanly.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { ROOT, startClient } from './helpers';
import { writeRepeatedCapture } from '../fixtures/big_capture';

const SOURCE = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
let dir: string;
let big: string;
let dc: DebugClient | undefined;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-cancel-'));
  big = join(dir, 'big.txt');
  // ~200 MB: far more than is read before the cancel
  writeRepeatedCapture(big, SOURCE, 200e6);
});

after(() => rmSync(dir, { recursive: true, force: true }));

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

describe('DAP: cancelling the load of a large capture', () => {
  it('advertises cancel, makes the load progress cancellable, stops reading on cancel and terminates', async () => {
    dc = await startClient();
    const c = dc;
    const init = await c.initializeRequest({ adapterID: 'kvm-mmu', supportsProgressReporting: true, linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' });
    assert.equal(init.body?.supportsCancelRequest, true);

    const outputs: string[] = [];
    c.on('output', (e: DebugProtocol.OutputEvent) => outputs.push(e.body.output));
    const started = c.waitForEvent('progressStart') as Promise<DebugProtocol.ProgressStartEvent>;
    const firstUpdate = c.waitForEvent('progressUpdate') as Promise<DebugProtocol.ProgressUpdateEvent>;
    const ended = c.waitForEvent('progressEnd') as Promise<DebugProtocol.ProgressEndEvent>;
    const terminated = c.waitForEvent('terminated');
    await c.launchRequest({ trace: big, stopOnEntry: true } as DebugProtocol.LaunchRequestArguments);

    const start = await started;
    assert.equal(start.body.cancellable, true, 'VS Code shows a Cancel button only for cancellable progress');
    const update = await firstUpdate;
    assert.equal(update.body.progressId, start.body.progressId);
    const cancel = await c.customRequest('cancel', { progressId: start.body.progressId });
    assert.equal(cancel.success, true);

    // The session's own configuration sequence still completes after the cancel (VS Code sends it).
    const bps = await c.setBreakpointsRequest({ source: { path: big }, breakpoints: [{ line: 5 }] });
    assert.equal(bps.body.breakpoints[0]!.verified, false);
    await c.configurationDoneRequest();

    await terminated;
    assert.equal((await ended).body.progressId, start.body.progressId);
    const msg = outputs.find((o) => /trace load cancelled after/.test(o));
    assert.ok(msg, `a cancel message among: ${outputs.join(' | ')}`);
    const mb = Number(/after (\d+) MB/.exec(msg)![1]);
    assert.ok(mb < statSync(big).size / 1e6 - 10, `stopped at ${mb} MB, well before the end of the ${statSync(big).size / 1e6} MB file`);
    assert.ok(!outputs.some((o) => /engine (stopped|exited)|internal error/.test(o)), `no engine failure: ${outputs.join(' | ')}`);

    // The adapter process survives the cancelled load: it still answers, and disconnects cleanly.
    const threads = await c.threadsRequest();
    assert.equal(threads.body.threads.length, 1);
    await c.disconnectRequest({});
    assert.ok(!outputs.some((o) => /engine (stopped|exited)/.test(o)), `the worker ended cleanly: ${outputs.join(' | ')}`);
  });

  it('acknowledges a cancel of an unknown progress or a request id without ending the session', async () => {
    dc = await startClient();
    const c = dc;
    await c.initializeRequest({ adapterID: 'kvm-mmu', supportsProgressReporting: true, pathFormat: 'path' });
    await Promise.all([c.waitForEvent('initialized').then(() => c.configurationDoneRequest()), c.launchRequest({ trace: SOURCE, stopOnEntry: true } as DebugProtocol.LaunchRequestArguments), c.waitForEvent('stopped')]);
    assert.equal((await c.customRequest('cancel', { progressId: 'nope' })).success, true);
    assert.equal((await c.customRequest('cancel', { requestId: 1 })).success, true);
    const st = await c.stackTraceRequest({ threadId: 1 });
    assert.equal(st.body.stackFrames[0]!.line, 5, 'the session is still stopped at the first event');
  });
});
