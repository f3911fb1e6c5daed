import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../src/cli/verbs/run';
import { registerEngine } from '../../../src/scenario/engines';
import type { AccessOp, MemoryRegionOp, Outcome, ScenarioEngine } from '../../../src/scenario/engine_api';
import { trace } from '../../../src/engine/trace_sink';

/** Test double: memslots, one kvm_mmu_spte_requested event per first touch of a page, MMIO exit outside slots. */
class Double implements ScenarioEngine {
  readonly name = 'cli-double';
  slots: MemoryRegionOp[] = [];
  seen = new Set<number>();
  setUserMemoryRegion2(op: MemoryRegionOp): Outcome {
    this.slots.push(op);
    return { ret: 0 };
  }
  access(op: AccessOp): Outcome {
    if (!this.slots.some((s) => op.addr >= s.gpa && op.addr < s.gpa + s.size)) {
      return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa: op.addr, len: 4, is_write: 1 } } };
    }
    const gfn = Math.floor(op.addr / 4096);
    if (!this.seen.has(gfn)) {
      this.seen.add(gfn);
      if (trace.enabled) trace.emit('kvmmmu', 'kvm_mmu_spte_requested', op.vcpu, `gfn ${gfn.toString(16)} pfn ${(gfn + 0x100).toString(16)} level 1`, { gfn });
    }
    return {};
  }
  stats() {
    return { pf_fixed: this.seen.size };
  }
}

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    const code = await run(argv);
    return { code, out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

let dir = '';
const SCEN = [
  '# two pages, then an MMIO write',
  'vm arch=x86 vcpus=1',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=8K',
  'guest read gpa 0x0..0x2000',
  'expect stat pf_fixed=2',
  'guest write gpa=0x10000',
  'expect exit KVM_EXIT_MMIO gpa=0x10000',
].join('\n');

describe('kvm-mmu run', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-run-'));
    registerEngine('x86', () => new Double());
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('exit 0 when every expect holds', async () => {
    const f = join(dir, 'ok.kvmmmu');
    writeFileSync(f, SCEN);
    const r = await capture([f]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /2 expects: 2 passed, 0 failed/);
  });

  it('exit 1 with file:line and expected vs. actual when an expectation is changed', async () => {
    const f = join(dir, 'bad.kvmmmu');
    writeFileSync(f, SCEN.replace('pf_fixed=2', 'pf_fixed=3').replace('gpa=0x10000\n', 'gpa=0x10000\n').replace('MMIO gpa=0x10000', 'MMIO gpa=0x20000'));
    const r = await capture([f]);
    assert.equal(r.code, 1);
    assert.ok(r.out.includes(`${f}:5:13: error: expectation failed: pf_fixed: expected 3, got 2`), r.out);
    assert.ok(r.out.includes(`${f}:7:27: error: expectation failed: gpa: expected 0x20000, got 0x10000`), r.out);
    assert.match(r.out, /2 expects: 0 passed, 2 failed/);
  });

  it('--json reports ok, expects with lines, stats, exits and events by name', async () => {
    const f = join(dir, 'ok.kvmmmu');
    writeFileSync(f, SCEN);
    const r = await capture([f, '--json']);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.out);
    assert.equal(j.ok, true);
    assert.deepEqual(j.expects.results.map((e: { line: number; ok: boolean }) => [e.line, e.ok]), [[5, true], [7, true]]);
    assert.deepEqual(j.stats, { pf_fixed: 2 });
    assert.deepEqual(j.exits, [{ file: f, line: 6, vcpu: 0, reason: 'KVM_EXIT_MMIO', gpa: 0x10000, len: 4, is_write: 1 }]);
    assert.deepEqual(j.events, { total: 2, byName: { kvm_mmu_spte_requested: 2 } });
  });

  it('--trace-out writes raw tracefs lines with fixed pids and timestamps', async () => {
    const f = join(dir, 'ok.kvmmmu');
    writeFileSync(f, SCEN);
    const t = join(dir, 'trace.txt');
    assert.equal((await capture([f, '--trace-out', t])).code, 0);
    const lines = readFileSync(t, 'utf8').split('\n').filter(Boolean);
    // comm right-aligned to 16, '-' pid left-aligned to 7, [cpu] 3 digits, 5 flags, secs.micros
    assert.deepEqual(lines, [
      '       CPU 0/KVM-1235    [000] .....    12.000001: kvm_mmu_spte_requested: gfn 0 pfn 100 level 1',
      '       CPU 0/KVM-1235    [000] .....    12.000002: kvm_mmu_spte_requested: gfn 1 pfn 101 level 1',
    ]);
  });

  it('bad input: exit 2 with one line on stderr', async () => {
    for (const [argv, re] of [
      [[], /missing FILE/],
      [['a', 'b'], /one scenario file, not 2/],
      [['--bogus', 'x'], /Unknown option '--bogus'/],
      [[join(dir, 'nope.kvmmmu')], /cannot read/],
      [[join(dir, 'ok.kvmmmu'), '--set', 'nope=1'], /not a module parameter or design variant/],
    ] as const) {
      const r = await capture([...argv]);
      assert.equal(r.code, 2, String(argv));
      assert.match(r.err, re);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.doesNotMatch(r.err, /\n\s+at /);
    }
  });

  it('a syntax error: exit 2 with a located diagnostic and hint', async () => {
    const f = join(dir, 'syntax.kvmmmu');
    writeFileSync(f, 'vm vcpus=1\nguest reed gpa=0\n');
    const r = await capture([f]);
    assert.equal(r.code, 2);
    assert.ok(r.err.startsWith(`${f}:2:7: error: unknown statement 'guest reed'`), r.err);
    assert.match(r.err, /hint: did you mean 'guest read'\?/);
  });
});

describe('kvm-mmu run with the arm64 pKVM engine', () => {
  it('the example passes, and an edited expectation fails at its line with expected vs. actual', async () => {
    const src = readFileSync(new URL('../../../examples/pkvm-stage2-ownership.kvmmmu', import.meta.url), 'utf8');
    const d = mkdtempSync(join(tmpdir(), 'kvm-mmu-run-'));
    try {
      const good = join(d, 'good.kvmmmu');
      writeFileSync(good, src);
      const ok = await capture([good]);
      assert.equal(ok.code, 0, ok.out);
      const lines = src.split('\n');
      const i = lines.findIndex((l) => l.startsWith('expect page_state pfn=0x80010 host=SHARED_OWNED hyp=SHARED_BORROWED'));
      lines[i] = 'expect page_state pfn=0x80010 host=OWNED hyp=SHARED_BORROWED';
      const bad = join(d, 'bad.kvmmmu');
      writeFileSync(bad, lines.join('\n'));
      const r = await capture([bad]);
      assert.equal(r.code, 1);
      assert.ok(r.out.includes(`${bad}:${i + 1}:31: error: expectation failed: host: expected OWNED, got SHARED_OWNED`), r.out);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
