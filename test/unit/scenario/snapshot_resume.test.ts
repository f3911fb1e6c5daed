/**
 * Checkpoints for reverse execution: a snapshot taken at any point of a scenario (between statements or
 * between two accesses of a range) and restored later gives exactly the state a fresh run has there, and
 * running on from it gives the same trace and the same final state.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { loadScenario, type Program } from '../../../src/scenario/load';
import { nodeReader } from '../../../src/scenario/node_reader';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { takeSnapshot, type Snapshot } from '../../../src/engine/snapshot';
import { isTraceEvent, trace, type TraceEvent } from '../../../src/engine/trace_sink';

const DIR = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** A canonical text of everything reachable (identity as visit order), hashing typed arrays. */
function fingerprint(root: unknown): string {
  const ids = new Map<object, number>();
  const out: string[] = [];
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object') {
      out.push(typeof v === 'function' ? 'fn' : typeof v === 'bigint' ? `${v}n` : String(v));
      return;
    }
    const id = ids.get(v);
    if (id !== undefined) {
      out.push(`@${id}`);
      return;
    }
    ids.set(v, ids.size);
    if (isTraceEvent(v)) out.push(`ev${v.index}:${v.name}`);
    else if (ArrayBuffer.isView(v)) {
      const b = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      let h = 2166136261;
      for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 16777619);
      out.push(`ta${b.length}:${h >>> 0}`);
    } else if (Array.isArray(v)) {
      out.push(`[${v.length}`);
      for (const x of v) visit(x);
      out.push(']');
    } else if (v instanceof Map) {
      out.push(`M${v.size}`);
      for (const [k, x] of v) {
        visit(k);
        visit(x);
      }
    } else if (v instanceof Set) {
      out.push(`S${v.size}`);
      for (const x of v) visit(x);
    } else {
      out.push(`{${v.constructor?.name ?? ''}`);
      for (const k of Object.keys(v)) {
        out.push(k);
        visit((v as Record<string, unknown>)[k]);
      }
      out.push('}');
    }
  };
  visit(root);
  return out.join(' ');
}

interface Run {
  runner: ScenarioRunner;
  texts: string[];
}

/** Start a runner; `at(n)` is called before access n (counted over the whole run) of a range statement. */
function start(prog: Program, at: (n: number) => void): Run {
  let n = 0;
  const texts: string[] = [];
  const runner = new ScenarioRunner(prog, { betweenAccesses: () => at(n++) });
  const unsub = trace.subscribe((e: TraceEvent) => texts.push(`${e.index} ${e.name} ${e.text}`));
  const dispose = runner.dispose.bind(runner);
  runner.dispose = () => {
    unsub();
    dispose();
  };
  return { runner, texts };
}

function state(r: ScenarioRunner): string {
  return fingerprint({ runner: r, stats: r.stats(), pc: r.pc, resuming: r.resuming });
}

/** The state a fresh run has before access `access` (or at the start of statement `stmt` if access < 0). */
function freshTo(prog: Program, stmt: number, access: number): string {
  let at = '';
  const run = start(prog, (n) => {
    if (n === access) at = state(run.runner);
  });
  while (!run.runner.done && (access >= 0 ? at === '' : run.runner.pc < stmt)) run.runner.step();
  const s = access >= 0 ? at : state(run.runner);
  run.runner.dispose();
  return s;
}

/** Equal, or fail showing where the texts part. */
function same(actual: string, expected: string, what: string): void {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  assert.fail(`${what}: differs at ${i}:\n  got      ...${actual.slice(Math.max(0, i - 200), i + 100)}\n  expected ...${expected.slice(Math.max(0, i - 200), i + 100)}`);
}

function check(name: string, stmtFrac: number, accessFrac: number): void {
  const prog = loadScenario(DIR + name, nodeReader);
  // How many statements and accesses the example has.
  let accesses = 0;
  const probe = start(prog, () => accesses++);
  probe.runner.run();
  probe.runner.dispose();
  const useAccess = accesses > 0 && accessFrac >= 0;
  const access = useAccess ? Math.floor(accessFrac * accesses) : -1;
  const stmt = Math.floor(stmtFrac * (prog.statements.length + 1));

  let snap: Snapshot | undefined;
  let atSnap = '';
  let textsAt = 0;
  const run = start(prog, (n) => {
    if (n === access) {
      snap = takeSnapshot([run.runner], { base });
      atSnap = state(run.runner);
      textsAt = run.texts.length;
    }
  });
  // Snapshots share unchanged typed arrays with an earlier one, as checkpoints do.
  const base = takeSnapshot([run.runner]);
  while (!run.runner.done) {
    if (!useAccess && run.runner.pc === stmt && !snap) {
      snap = takeSnapshot([run.runner], { base });
      atSnap = state(run.runner);
      textsAt = run.texts.length;
    }
    run.runner.step();
  }
  if (!snap) {
    snap = takeSnapshot([run.runner], { base });
    atSnap = state(run.runner);
    textsAt = run.texts.length;
  }
  const endState = state(run.runner);
  const tail = run.texts.slice(textsAt);
  snap.restore();
  same(state(run.runner), atSnap, `${name}: state after restore`);
  run.texts.length = 0;
  while (!run.runner.done) run.runner.step();
  assert.deepEqual(run.texts, tail, `${name}: trace after restore`);
  same(state(run.runner), endState, `${name}: final state after restore`);
  run.runner.dispose();
  same(freshTo(prog, Math.min(stmt, prog.statements.length), access), atSnap, `${name}: fresh run to the same point`);
}

const EXAMPLES = ['tdp-basics.kvmmmu', 'shadow-paging.kvmmmu', 'snp-gmem-rmp.kvmmmu', 'arm64-stage2-faults.kvmmmu', 'pkvm-stage2-ownership.kvmmmu', 'tdx-shared-private.kvmmmu', 'unsync-shadow-pages.kvmmmu', 'dirty-logging.kvmmmu'];

describe('snapshots of a running scenario', () => {
  for (const name of EXAMPLES) {
    it(`${name}: restore at random statements and accesses equals a fresh run there`, () => {
      fc.assert(fc.property(fc.double({ min: 0, max: 0.999, noNaN: true }), fc.oneof(fc.constant(-1), fc.double({ min: 0, max: 0.999, noNaN: true })), (s, a) => check(name, s, a)), { numRuns: 4 });
    });
  }
});
