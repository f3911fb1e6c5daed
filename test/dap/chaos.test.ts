// DAP robustness: a client of our own (raw Content-Length framing over the adapter's stdio, so every
// response is seen as sent) throws random sequences of requests at the real adapter — malformed and
// missing arguments, unknown commands, requests before launch and after disconnect, huge
// variablesReference, stepBack at the start, evaluate of garbage, a second launch. Every request gets
// exactly one response, failures are DAP error responses (success=false with a message), and the
// adapter process stays alive. An engine that fails (a scenario the engine throws on, the worker
// killed) ends the session with a message on stderr while the adapter keeps answering.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { PassThrough } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { KvmMmuDebugSession } from '../../src/debug/session';
import { ADAPTER, EXAMPLES, FIXTURES } from './helpers';

interface Msg {
  seq: number;
  type: 'request' | 'response' | 'event';
  request_seq?: number;
  command?: string;
  success?: boolean;
  message?: string;
  event?: string;
  body?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

let requestsSent = 0;
let errorResponses = 0;
let sessions = 0;
after(() => console.log(`dap chaos: ${requestsSent} requests sent over ${sessions} adapter processes (${errorResponses} answered with error responses)`));

/** How long one answer may take before the test calls it lost (a hang detector, not a timing check). */
const ANSWER_LIMIT_MS = 20_000;

/** Either the built adapter as a child process, or a session object in this process over streams. */
interface Transport {
  write(text: string): void;
  onData(cb: (d: Buffer) => void): void;
  /** Called once if the adapter goes away by itself. */
  onExit(cb: () => void): void;
  readonly alive: boolean;
  close(): Promise<void>;
  stderr(): string;
}

function childTransport(): Transport {
  const proc: ChildProcessWithoutNullStreams = spawn(process.execPath, [ADAPTER], { stdio: 'pipe' });
  let err = '';
  let exited: number | null | undefined;
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  proc.on('exit', (code) => (exited = code));
  return {
    write: (t) => proc.stdin.write(t),
    onData: (cb) => proc.stdout.on('data', cb),
    onExit: (cb) => proc.on('exit', cb),
    get alive() {
      return exited === undefined && proc.exitCode === null;
    },
    stderr: () => err + (exited !== undefined ? `\n[adapter exited with ${exited}]` : ''),
    async close() {
      if (exited === undefined && proc.exitCode === null) {
        proc.stdin.end();
        proc.kill();
        await new Promise((r) => proc.once('exit', r));
      }
    },
  };
}

class RawClient {
  private readonly t: Transport;
  private buf = Buffer.alloc(0);
  private seq = 1;
  private readonly waiting = new Map<number, (m: Msg | undefined) => void>();
  readonly responses = new Map<number, Msg[]>();
  readonly events: Msg[] = [];
  private eventWaiters: Array<{ pred: (m: Msg) => boolean; resolve: (m: Msg) => void }> = [];

  constructor(t: Transport = childTransport()) {
    sessions++;
    this.t = t;
    t.onData((d) => this.onData(d));
    // a dead adapter answers nothing more: fail the waiting requests now rather than at the limit
    t.onExit(() => {
      for (const w of this.waiting.values()) w(undefined);
      this.waiting.clear();
    });
  }

  get stderr(): string {
    return this.t.stderr();
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const h = this.buf.indexOf('\r\n\r\n');
      if (h < 0) return;
      const m = /Content-Length: (\d+)/i.exec(this.buf.subarray(0, h).toString());
      assert.ok(m, `bad header from the adapter: ${this.buf.subarray(0, h).toString()}`);
      const len = Number(m[1]);
      if (this.buf.length < h + 4 + len) return;
      const msg = JSON.parse(this.buf.subarray(h + 4, h + 4 + len).toString('utf8')) as Msg;
      this.buf = this.buf.subarray(h + 4 + len);
      if (msg.type === 'response') {
        const list = this.responses.get(msg.request_seq!) ?? [];
        list.push(msg);
        this.responses.set(msg.request_seq!, list);
        this.waiting.get(msg.request_seq!)?.(msg);
        this.waiting.delete(msg.request_seq!);
      } else if (msg.type === 'event') {
        this.events.push(msg);
        this.eventWaiters = this.eventWaiters.filter((w) => (w.pred(msg) ? (w.resolve(msg), false) : true));
      }
    }
  }

  writeRaw(text: string): void {
    this.t.write(`Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  }

  /** Send a request and wait for its response (never rejects: a missing answer fails the assertion). */
  request(command: string, args?: unknown): Promise<Msg> {
    const seq = this.seq++;
    requestsSent++;
    const msg: Record<string, unknown> = { seq, type: 'request', command };
    if (args !== undefined) msg['arguments'] = args;
    const p = new Promise<Msg>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no response to '${command}' (seq ${seq}) ${JSON.stringify(args)?.slice(0, 300)}; alive=${this.alive}; stderr: ${this.stderr.slice(-2000)}`)), ANSWER_LIMIT_MS);
      this.waiting.set(seq, (m) => {
        clearTimeout(t);
        if (m) resolve(m);
        else reject(new Error(`the adapter exited before answering '${command}' (seq ${seq}) ${JSON.stringify(args)?.slice(0, 300)}; stderr: ${this.stderr.slice(-2000)}`));
      });
    });
    this.writeRaw(JSON.stringify(msg));
    return p.then((r) => {
      assert.equal(r.command, command, 'the response names its request');
      assert.equal(typeof r.success, 'boolean');
      if (!r.success) {
        errorResponses++;
        assert.equal(typeof r.message, 'string', `error response without a message: ${JSON.stringify(r)}`);
        assert.ok(r.message!.length > 0);
      }
      return r;
    });
  }

  waitEvent(pred: (m: Msg) => boolean): Promise<Msg> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`event not seen; stderr: ${this.stderr.slice(-2000)}`)), ANSWER_LIMIT_MS);
      this.eventWaiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }

  get alive(): boolean {
    return this.t.alive;
  }

  assertEachAnsweredOnce(): void {
    for (const [seq, list] of this.responses) assert.equal(list.length, 1, `request ${seq} answered ${list.length} times`);
  }

  close(): Promise<void> {
    return this.t.close();
  }
}

const LINES = join(FIXTURES, 'lines.kvmmmu');
const SCENARIO = join(EXAMPLES, 'arm64-stage2-faults.kvmmmu');
const TRACE = join(__dirname, '..', 'fixtures', 'traces', 'raw_trace.txt');

const garbage = fc.oneof(
  fc.constant(undefined), fc.constant(null), fc.boolean(), fc.integer(), fc.double(), fc.string({ maxLength: 20 }),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, -1, 0, 1e300, 2 ** 31, 2 ** 32 + 1, '1e999', '__proto__', 'constructor'),
  fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'path', 'name', 'line'), fc.oneof(fc.integer(), fc.string({ maxLength: 5 })), { maxKeys: 3 }),
);
const anyArgs = fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant({}), fc.dictionary(fc.string({ maxLength: 12 }), garbage, { maxKeys: 4 }), garbage);
const threadId = fc.oneof(fc.constant(1), garbage);
const bigRef = fc.oneof(fc.constantFrom(0, 1, 2, 3, 1000, 2 ** 31 - 1, 2 ** 31, 2 ** 40, Number.MAX_SAFE_INTEGER, -1, 1.5, NaN), garbage);
const expr = fc.oneof(
  fc.string({ maxLength: 40 }), fc.string({ maxLength: 40, unit: 'binary' }),
  fc.constantFrom('probes', 'probes kvm', 'decode spte 0x6000001234b77', 'decode role zz', 'decode', 'decode pferr', 'cond', 'cond gfn ==', 'gfn == 0x800 &&', '((((', ')', 'a.b.c.d.e.f', '__proto__', 'constructor.prototype', '1/0', 'x'.repeat(5000), '0x' + 'f'.repeat(100), '\0', 'state', 'spte', 'role.direct'),
);

/** One random request: a command, its arguments (often wrong). */
const request: fc.Arbitrary<[string, unknown]> = fc.oneof(
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('initialize'), fc.oneof(fc.constant({ adapterID: 'kvm-mmu', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }), anyArgs)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('launch'), fc.oneof(
    fc.constantFrom({ program: LINES, stopOnEntry: true }, { program: SCENARIO, stopOnEntry: true }, { trace: TRACE, stopOnEntry: true }, { program: '/nonexistent.kvmmmu' }, { program: 42 }, { program: {} }, { trace: ['x'] },
      { program: LINES, cwd: 7 }, { program: LINES, variants: 'x' }, { program: LINES, parameters: [1, 2] }, { program: LINES, variants: { tdx_stolen_bits: 'nope' } }, { program: LINES, kernelSource: 5 }, {}),
    anyArgs)) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('configurationDone', 'threads', 'continue', 'next', 'stepIn', 'stepOut', 'stepBack', 'reverseContinue', 'pause', 'restart'), fc.oneof(fc.record({ threadId }), anyArgs)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('stackTrace'), fc.oneof(fc.record({ threadId, startFrame: bigRef, levels: bigRef }), anyArgs)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('scopes'), fc.oneof(fc.record({ frameId: bigRef }), anyArgs)) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('variables'), fc.oneof(fc.record({ variablesReference: bigRef, start: fc.option(bigRef), count: fc.option(bigRef), format: fc.option(fc.record({ hex: garbage })) }), anyArgs)) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('evaluate'), fc.oneof(fc.record({ expression: expr, context: fc.constantFrom('repl', 'hover', 'watch', 'variables', 'clipboard', 'x'), frameId: fc.option(bigRef) }), fc.record({ expression: garbage }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('completions'), fc.oneof(fc.record({ text: expr, column: bigRef }), anyArgs)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('setBreakpoints'), fc.oneof(
    fc.record({ source: fc.oneof(fc.constant({ path: LINES }), fc.record({ path: garbage }), garbage), breakpoints: fc.oneof(fc.array(fc.record({ line: bigRef, condition: fc.option(expr), hitCondition: fc.option(expr), logMessage: fc.option(expr) }), { maxLength: 4 }), garbage) }),
    anyArgs)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('setFunctionBreakpoints'), fc.oneof(fc.record({ breakpoints: fc.oneof(fc.array(fc.record({ name: fc.oneof(expr, garbage), condition: fc.option(expr) }), { maxLength: 3 }), garbage) }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('setExceptionBreakpoints'), fc.oneof(fc.record({ filters: fc.oneof(fc.array(fc.oneof(fc.constantFrom('audit_violation', 'page_fault', 'expect_failed'), fc.string({ maxLength: 8 })), { maxLength: 3 }), garbage) }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('dataBreakpointInfo'), fc.oneof(fc.record({ name: fc.oneof(expr, garbage), variablesReference: fc.option(bigRef) }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('setDataBreakpoints'), fc.oneof(fc.record({ breakpoints: fc.oneof(fc.array(fc.record({ dataId: fc.oneof(expr, garbage) }), { maxLength: 3 }), garbage) }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('readMemory'), fc.oneof(fc.record({ memoryReference: fc.oneof(expr, garbage), offset: fc.option(bigRef), count: bigRef }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('writeMemory', 'goto', 'gotoTargets', 'stepInTargets', 'source', 'loadedSources', 'modules', 'exceptionInfo', 'setVariable', 'setExpression', 'restartFrame', 'cancel', 'breakpointLocations', 'disassemble', 'attach', 'runInTerminal'), anyArgs) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('kvmMmu/state', 'kvmMmu/probes', 'kvmMmu/setHex', 'kvmMmu/gotoEvent', 'kvmMmu/goto', 'kvmMmu/nope', 'kvmMmu/', 'kvmMmu/audit'), fc.oneof(fc.record({ index: bigRef, position: bigRef, hex: garbage }), anyArgs)) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 15 }), anyArgs) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('disconnect', 'terminate'), anyArgs) },
);

describe('DAP chaos', () => {
  it('random request sequences: every request answered once, errors as error responses, the adapter stays alive', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 10, maxLength: 60 }), async (reqs) => {
        const c = new RawClient();
        try {
          for (const [cmd, args] of reqs) {
            await c.request(cmd, args);
            assert.ok(c.alive, `adapter died after '${cmd}' ${JSON.stringify(args)?.slice(0, 200)}; stderr: ${c.stderr.slice(-2000)}`);
          }
          // a framing-level mistake (not JSON) is dropped, and the adapter still answers afterwards
          c.writeRaw('{ this is not json');
          const t = await c.request('threads', {});
          assert.equal(t.success, true);
          c.assertEachAnsweredOnce();
          assert.ok(c.alive, `adapter died; stderr: ${c.stderr.slice(-2000)}`);
        } finally {
          await c.close();
        }
      }),
      { numRuns: 14 },
    );
  });

  it('a launched session gets random stepping and inspection, then disconnect, then more requests', async () => {
    const inSession = fc.array(fc.oneof(
      fc.tuple(fc.constantFrom('next', 'stepIn', 'stepOut', 'stepBack', 'reverseContinue', 'continue', 'restart', 'pause'), fc.constant({ threadId: 1 })),
      fc.tuple(fc.constant('stackTrace'), fc.record({ threadId: fc.constant(1), startFrame: fc.option(bigRef), levels: fc.option(bigRef) })),
      fc.tuple(fc.constant('scopes'), fc.record({ frameId: bigRef })),
      fc.tuple(fc.constant('variables'), fc.record({ variablesReference: bigRef })),
      fc.tuple(fc.constant('evaluate'), fc.record({ expression: expr, context: fc.constantFrom('repl', 'hover', 'watch') })),
      fc.tuple(fc.constantFrom('kvmMmu/gotoEvent', 'kvmMmu/goto'), fc.record({ index: bigRef, position: bigRef })),
    ), { minLength: 5, maxLength: 40 });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(LINES, SCENARIO), inSession, fc.array(request, { maxLength: 8 }), async (program, reqs, afterwards) => {
        const c = new RawClient();
        try {
          const ok = (r: Msg) => assert.equal(r.success, true, `${r.command}: ${r.message}`);
          ok(await c.request('initialize', { adapterID: 'kvm-mmu', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path' }));
          ok(await c.request('launch', { program, stopOnEntry: true }));
          await c.waitEvent((m) => m.event === 'initialized');
          // stepBack before anything ran: an answer (success or error), never a hang
          await c.request('stepBack', { threadId: 1 });
          await c.request('configurationDone', {});
          await c.waitEvent((m) => m.event === 'stopped');
          // stepping back at the very first statement
          await c.request('stepBack', { threadId: 1 });
          // the first stack frame exposes scopes; a scope's huge neighbours are refused, not crashed on
          const st = await c.request('stackTrace', { threadId: 1 });
          if (st.success && st.body.stackFrames.length) {
            const sc = await c.request('scopes', { frameId: st.body.stackFrames[0].id });
            for (const s of sc.success ? sc.body.scopes : []) {
              await c.request('variables', { variablesReference: s.variablesReference });
              await c.request('variables', { variablesReference: s.variablesReference + 2 ** 40 });
            }
          }
          for (const [cmd, args] of reqs) {
            await c.request(cmd, args);
            assert.ok(c.alive, `adapter died after '${cmd}'; stderr: ${c.stderr.slice(-2000)}`);
          }
          ok(await c.request('disconnect', { terminateDebuggee: true }));
          for (const [cmd, args] of [['next', { threadId: 1 }], ['stackTrace', { threadId: 1 }], ['evaluate', { expression: 'probes' }], ['disconnect', {}], ...afterwards] as Array<[string, unknown]>) {
            await c.request(cmd, args);
          }
          ok(await c.request('threads', {}));
          c.assertEachAnsweredOnce();
          assert.ok(c.alive, `adapter died; stderr: ${c.stderr.slice(-2000)}`);
        } finally {
          await c.close();
        }
      }),
      { numRuns: 10 },
    );
  });
});

describe('DAP: absurd sizes are bounded or refused', () => {
  const TDP = join(EXAMPLES, 'tdp-basics.kvmmmu');

  it('2^40-entry event windows, paging with 2^40 start/count and readMemory of 2^40 bytes answer at once with bounded bodies', async () => {
    const c = new RawClient();
    try {
      await c.request('initialize', { adapterID: 'kvm-mmu', pathFormat: 'path' });
      await c.request('launch', { program: TDP, stopOnEntry: false });
      // stop at the last statement: every tracepoint of the run is in the event window by then
      await c.request('setBreakpoints', { source: { path: TDP }, breakpoints: [{ line: 53 }] });
      await c.request('configurationDone', {});
      await c.waitEvent((m) => m.event === 'stopped');
      for (const args of [{ start: 0, count: 2 ** 40 }, { start: 2 ** 40, count: 2 ** 40 }, { start: -(2 ** 40), count: 10 }, { start: 0, count: -1 }, { start: 'x', count: Infinity }]) {
        const r = await c.request('kvmMmu/events', args);
        assert.equal(r.success, true, r.message);
        assert.ok(Array.isArray(r.body.events) && r.body.events.length <= 10_000, `at most one page of events for ${JSON.stringify(args)}`);
        assert.ok(r.body.total > 1000, 'the run emitted many events');
      }
      // every paged container in the variables tree, asked for 2^40 children from absurd starts
      const st = await c.request('stackTrace', { threadId: 1 });
      const sc = await c.request('scopes', { frameId: st.body.stackFrames[0].id });
      const queue: number[] = sc.body.scopes.map((x: { variablesReference: number }) => x.variablesReference);
      let paged = 0;
      for (let n = 0; queue.length && n < 200; n++) {
        const ref = queue.shift()!;
        const v = await c.request('variables', { variablesReference: ref });
        for (const x of v.success ? v.body.variables : []) {
          if (x.variablesReference > 0) queue.push(x.variablesReference);
          if (!x.indexedVariables) continue;
          paged++;
          for (const [start, count] of [[-(2 ** 40), 2 ** 40], [2 ** 40, 2 ** 40], [0, 2 ** 40], [1.5, -3]]) {
            const r = await c.request('variables', { variablesReference: x.variablesReference, start, count });
            if (r.success) assert.ok(r.body.variables.length <= Math.max(x.indexedVariables, 0), `${r.body.variables.length} children of ${x.name} from start ${start}`);
          }
        }
      }
      assert.ok(paged > 0, 'found a paged container (a table of SPTEs)');
      const mem = await c.request('readMemory', { memoryReference: '0x0', offset: 2 ** 40, count: 2 ** 40 });
      if (mem.success) assert.ok(!mem.body.data || mem.body.data.length < 1 << 20);
      assert.ok(c.alive);
      c.assertEachAnsweredOnce();
    } finally {
      await c.close();
    }
  });
});

describe('DAP: a breakpoint condition that cannot be evaluated', () => {
  it('is false at that hit (not an exception thrown through the engine in the middle of a fault)', async () => {
    const c = new RawClient();
    try {
      await c.request('initialize', { adapterID: 'kvm-mmu', pathFormat: 'path' });
      await c.request('launch', { program: join(EXAMPLES, 'tdp-basics.kvmmmu'), stopOnEntry: false });
      await c.waitEvent((m) => m.event === 'initialized');
      // 1 << 2^40 is beyond any BigInt: evaluating it throws a RangeError, not a condition error
      const bp = await c.request('setFunctionBreakpoints', { breakpoints: [{ name: 'kvm_tdp_mmu_map', condition: 'gfn == 1 && (1 << 1099511627776) == 0' }] });
      assert.equal(bp.success, true, bp.message);
      await c.request('configurationDone', {});
      await c.waitEvent((m) => m.event === 'terminated');
      const out = c.events.filter((m) => m.event === 'output').map((m) => String(m.body.output)).join('');
      assert.doesNotMatch(out, /engine failed/i, out.slice(0, 2000));
      assert.equal(out.match(/breakpoint condition cannot be evaluated/g)?.length, 1, 'said once');
      assert.match(out, /0 failed/, 'every expect of the example still holds');
      assert.ok(c.alive);
    } finally {
      await c.close();
    }
  });
});

describe('DAP: engine failures end the session, not the adapter', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-dap-chaos-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a scenario the program cannot load answers with the load error and terminates; the adapter keeps answering', async () => {
    const bad = join(dir, 'bad.kvmmmu');
    writeFileSync(bad, 'vm arch=x86\nguest rread gpa=0x1000\n');
    const c = new RawClient();
    try {
      await c.request('initialize', { adapterID: 'kvm-mmu', pathFormat: 'path' });
      await c.request('launch', { program: bad, stopOnEntry: true });
      await c.request('configurationDone', {});
      await c.waitEvent((m) => m.event === 'terminated');
      const out = c.events.filter((m) => m.event === 'output').map((m) => m.body.output).join('');
      assert.match(out, /rread|unknown|bad\.kvmmmu/i, 'the reason is shown');
      for (const cmd of ['next', 'stackTrace', 'variables', 'evaluate']) await c.request(cmd, { threadId: 1, variablesReference: 1, expression: 'probes' });
      assert.equal((await c.request('threads', {})).success, true);
      assert.ok(c.alive);
    } finally {
      await c.close();
    }
  });

  it('the engine worker dying ends the session with a message; the session answers later requests with errors', async () => {
    // The worker is a thread of the adapter, out of reach of a client: run the session in this process
    // (as `kvm-mmu dap` does) and terminate its worker as a crash would.
    const session = new KvmMmuDebugSession();
    session.setRunAsServer(false);
    const toSession = new PassThrough();
    const fromSession = new PassThrough();
    session.start(toSession, fromSession);
    let open = true;
    const c = new RawClient({
      write: (t) => toSession.write(t),
      onData: (cb) => fromSession.on('data', cb),
      onExit: () => undefined,
      get alive() {
        return open;
      },
      stderr: () => '',
      async close() {
        open = false;
        toSession.end();
      },
    });
    try {
      await c.request('initialize', { adapterID: 'kvm-mmu', pathFormat: 'path' });
      await c.request('launch', { program: SCENARIO, stopOnEntry: true });
      await c.request('configurationDone', {});
      await c.waitEvent((m) => m.event === 'stopped');
      const runtime = (session as unknown as { runtime?: { worker: Worker } }).runtime;
      assert.ok(runtime, 'the session has an engine');
      await runtime.worker.terminate();
      await c.waitEvent((m) => m.event === 'terminated');
      const out = c.events.filter((m) => m.event === 'output').map((m) => String(m.body.output)).join('');
      assert.match(out, /engine/i, `the end is explained: ${out}`);
      for (const cmd of ['next', 'stackTrace', 'scopes', 'variables', 'evaluate', 'continue', 'kvmMmu/state']) {
        const r = await c.request(cmd, { threadId: 1, frameId: 1, variablesReference: 1, expression: 'probes' });
        assert.equal(r.success, false, `${cmd} after the engine ended is an error response`);
        assert.match(r.message!, /engine|launch|running/i);
      }
      assert.equal((await c.request('threads', {})).success, true);
      assert.equal((await c.request('disconnect', {})).success, true);
      c.assertEachAnsweredOnce();
    } finally {
      await c.close();
    }
  });
});
