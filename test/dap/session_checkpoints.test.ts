// Reverse execution by checkpoints: going back to any event or breakpoint from a session that took
// checkpoints everywhere (inside long statements too) shows exactly what a session re-executing from the
// start shows there: stack, every scope's variables, the recent events, SPTEs.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import { EXAMPLES, FIXTURES, ROOT, launchStopped, startClient } from './helpers';

const clients: DebugClient[] = [];
after(async () => {
  for (const c of clients) await c.stop();
});

/** What the user sees at a stop, without ids that differ between sessions. */
async function view(dc: DebugClient): Promise<unknown> {
  const st = (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames;
  const scopes = (await dc.scopesRequest({ frameId: st[0]!.id })).body.scopes;
  const vars: Record<string, unknown> = {};
  for (const s of scopes) {
    const vs = (await dc.variablesRequest({ variablesReference: s.variablesReference })).body.variables;
    vars[s.name] = vs.map((v) => `${v.name}=${v.value}`);
  }
  const events = (await dc.customRequest('kvmMmu/events', { start: 0, count: 100000 })).body as { total: number; events: Array<{ index: number; text: string }> };
  const spte = (await dc.evaluateRequest({ expression: 'spte gpa=0x5000', context: 'repl' }).catch((e: Error) => ({ body: { result: e.message } }))).body.result;
  return { frames: st.map((f) => `${f.name}@${f.line}`), vars, events: events.events.slice(-20).map((e) => `${e.index} ${e.text}`), total: events.total, spte };
}

async function session(program: string, checkpointInterval: number, fnBp?: string): Promise<DebugClient> {
  const dc = await startClient();
  clients.push(dc);
  await launchStopped(dc, { program, stopOnEntry: true, checkpointInterval }, async (c) => {
    if (fnBp) await c.setFunctionBreakpointsRequest({ breakpoints: [{ name: fnBp }] });
  });
  return dc;
}

async function gotoEvent(dc: DebugClient, index: number): Promise<unknown> {
  await Promise.all([dc.customRequest('kvmMmu/gotoEvent', { index }), dc.waitForEvent('stopped')]);
  return view(dc);
}

async function totalEvents(dc: DebugClient, program: string, lastLine: number): Promise<number> {
  await dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [{ line: lastLine }] });
  await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
  const ev = (await dc.customRequest('kvmMmu/events', { start: 0, count: 1 })).body as { total: number; first: number };
  await dc.setBreakpointsRequest({ source: { path: program }, breakpoints: [] });
  return ev.first + ev.total;
}

async function step(dc: DebugClient, req: 'reverseContinue' | 'stepBack' | 'next' | 'stepIn'): Promise<unknown> {
  await Promise.all([dc.customRequest(req, { threadId: 1 }), dc.waitForEvent('stopped')]);
  return view(dc);
}

/** Runs `fn` on a session with checkpoints everywhere and on one that only has the start; compares. */
async function both(program: string, fn: (dc: DebugClient) => Promise<unknown[]>): Promise<void> {
  const out: unknown[][] = [];
  for (const interval of [0, 1e9]) {
    const dc = await session(program, interval);
    out.push(await fn(dc));
    await dc.stop();
  }
  assert.deepEqual(out[0], out[1]);
}

function lastStatementLine(program: string): number {
  return readFileSync(program, 'utf8').split('\n').reduce<number>((l, text, i) => (/^\s*[A-Za-z]/.test(text) ? i + 1 : l), 1);
}

for (const [name, program, probe] of [
  ['TDP MMU, long ranges', join(FIXTURES, 'checkpoints.kvmmmu'), 'kvm_tdp_mmu_map'],
  ['shadow MMU', join(EXAMPLES, 'shadow-paging.kvmmmu'), 'kvm_mmu_page_fault'],
  ['SEV-SNP', join(EXAMPLES, 'snp-gmem-rmp.kvmmmu'), 'kvm_mmu_page_fault'],
  ['arm64 stage-2', join(EXAMPLES, 'arm64-stage2-faults.kvmmmu'), 'user_mem_abort'],
] as const) {
  describe(`DAP: reverse execution by checkpoints (${name})`, () => {
    it('going to random events equals going there from the start', async (t) => {
      const total = await (async () => {
        const dc = await session(program, 1e9);
        const n = await totalEvents(dc, program, lastStatementLine(program));
        await dc.stop();
        return n;
      })();
      if (total === 0) {
        t.skip('this engine emits no tracepoint events');
        return;
      }
      await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 0, max: total - 1 }), { minLength: 2, maxLength: 5 }), async (indexes) => {
        await both(program, async (dc) => {
          await totalEvents(dc, program, lastStatementLine(program));
          const seen = [];
          for (const i of indexes) seen.push(await gotoEvent(dc, i));
          return seen;
        });
      }), { numRuns: 3 });
    });

    it('reverse-continue to a function breakpoint, step back and forward again equal doing so from the start', async () => {
      await both(program, async (dc) => {
        await totalEvents(dc, program, lastStatementLine(program));
        await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: probe }] });
        const seen = [];
        for (const req of ['reverseContinue', 'reverseContinue', 'stepBack', 'stepBack', 'reverseContinue', 'next', 'stepIn'] as const) seen.push(await step(dc, req));
        return seen;
      });
    });
  });
}

describe('DAP: reverse execution by checkpoints (replayed trace)', () => {
  it('going to every event, out of order, and reverse-continuing equal doing so from the start', async () => {
    const trace = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
    const out: unknown[][] = [];
    for (const checkpointInterval of [0, 1e9]) {
      const dc = await startClient();
      clients.push(dc);
      await launchStopped(dc, { trace, stopOnEntry: true, checkpointInterval });
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('terminated')]);
      const ev = (await dc.customRequest('kvmMmu/events', { start: 0, count: 1 })).body as { total: number; first: number };
      const total = ev.first + ev.total;
      assert.ok(total > 3);
      const order = [...Array(total).keys()].map((i) => (i * 7) % total);
      const seen: unknown[] = [];
      for (const i of order) seen.push(await gotoEvent(dc, i));
      await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_mmu_set_spte' }] });
      for (const req of ['reverseContinue', 'stepBack', 'reverseContinue'] as const) seen.push(await step(dc, req));
      out.push(seen);
      await dc.stop();
    }
    assert.deepEqual(out[0], out[1]);
  });
});
