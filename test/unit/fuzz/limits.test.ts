// Absurd sizes are refused with a message or handled lazily, never an out-of-memory crash: a 1 PiB
// memslot, the largest slot KVM accepts (KVM_MEM_MAX_NR_PAGES = 2^31 - 1 pages, just under 8 TiB) on x86
// and arm64 with dirty logging, 10^9 repetitions and a 2^40-access range in one statement.
// Memory bounds are on the process's resident size, generous enough to hold what KVM itself would
// allocate (a dirty bitmap of 2^31 bits is 256 MiB) but far below a per-page structure for 2^31 pages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadScenario } from '../../../src/scenario/load';
import { ScenarioRunner } from '../../../src/scenario/runner';
import type { Diagnostic } from '../../../src/scenario/diagnostics';

const MiB = 2 ** 20;
const MAX_PAGES = 2 ** 31 - 1;
const MAX_SLOT_HEX = '0x' + (BigInt(MAX_PAGES) * 4096n).toString(16);
const EINVAL = -22;

function load(text: string) {
  const files = new Map([['limits.kvmmmu', text]]);
  return loadScenario('limits.kvmmmu', { read: (p) => files.get(p), resolve: (_f, r) => r });
}

/** Run every statement; returns each statement's outcome and problems. */
function run(text: string): { rets: Array<number | undefined>; problems: Diagnostic[]; rssGrowth: number; runner: ScenarioRunner } {
  const p = load(text);
  assert.deepEqual(p.diagnostics.filter((d) => d.severity === 'error'), [], 'the scenario parses');
  const rss0 = process.memoryUsage().rss;
  const runner = new ScenarioRunner(p);
  const rets: Array<number | undefined> = [];
  while (!runner.done) rets.push(runner.step().outcome.ret);
  const rssGrowth = process.memoryUsage().rss - rss0;
  return { rets, problems: runner.problems, rssGrowth, runner };
}

describe('limits: memslots', () => {
  for (const arch of ['x86', 'arm64'] as const) {
    // 4K granule without LPA2: at most 48 IPA bits on arm64
    const vm = arch === 'x86' ? 'vm arch=x86 vendor=intel maxphyaddr=52' : 'vm arch=arm64 mode=nvhe ipa_bits=48';
    const acc = arch === 'x86' ? 'gpa' : 'ipa';

    it(`${arch}: a 1 PiB memslot is -EINVAL (more than KVM_MEM_MAX_NR_PAGES), warned at its size`, () => {
      const text = `${vm}\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1P hva=0x7f0000000000\nexpect ret -EINVAL\n`;
      const w = load(text).diagnostics.find((d) => d.code === 'kvm-einval');
      assert.ok(w, 'the editor warns');
      assert.equal(w.line, 2);
      assert.equal(text.split('\n')[1]!.slice(w.col - 1, w.endCol - 1), '1P', 'the warning points at the size');
      const r = run(text);
      try {
        assert.equal(r.rets[1], EINVAL);
        assert.deepEqual(r.problems, []);
        assert.ok(r.rssGrowth < 256 * MiB, `rss grew by ${r.rssGrowth / MiB} MiB`);
      } finally {
        r.runner.dispose();
      }
    });

    it(`${arch}: the largest legal slot (2^31 - 1 pages) is accepted and used lazily, with dirty logging`, () => {
      // one page before the end of the slot, and one near the start
      const far = `0x${(BigInt(MAX_PAGES - 1) * 4096n).toString(16)}`;
      const text = [
        vm,
        `KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=${MAX_SLOT_HEX} hva=0x100000000000`,
        'expect ret 0',
        `guest read ${acc}=${far}`,
        'expect exit none',
        'dirty_log enable slot=0',
        'expect ret 0',
        `guest write ${acc}=0x5000`,
        'expect exit none',
        'KVM_GET_DIRTY_LOG slot=0',
        'expect ret 0',
        'expect dirty slot=0 count=1',
        'expect dirty slot=0 gfn=0x5 dirty=1',
        'expect dirty slot=0 gfn=0x6 dirty=0',
        `expect dirty slot=0 gfn=${'0x' + (MAX_PAGES - 1).toString(16)} dirty=0`,
      ].join('\n');
      const r = run(text);
      try {
        assert.deepEqual(r.problems.map((p) => `${p.line}: ${p.message}`), []);
        assert.equal(r.rets[1], 0);
        // KVM's own dirty bitmap for this slot is 256 MiB; per-page structures would be tens of GiB
        assert.ok(r.rssGrowth < 1024 * MiB, `rss grew by ${r.rssGrowth / MiB} MiB`);
      } finally {
        r.runner.dispose();
      }
    });
  }

  it('one page more than KVM_MEM_MAX_NR_PAGES is -EINVAL', () => {
    const text = `vm arch=x86 vendor=intel maxphyaddr=52\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=0x${(2n ** 31n * 4096n).toString(16)} hva=0x100000000000\nexpect ret -EINVAL\n`;
    const r = run(text);
    try {
      assert.equal(r.rets[1], EINVAL);
    } finally {
      r.runner.dispose();
    }
  });
});

describe('limits: repetitions', () => {
  it('10^9 repetitions of an access are refused at the repeat value', () => {
    const line = 'guest read gpa 0x0..0x1000 repeat=1000000000';
    const p = load(`vm arch=x86\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=2M hva=0x7f0000000000\n${line}\n`);
    const d = p.diagnostics.find((x) => x.line === 3 && x.severity === 'error');
    assert.ok(d, 'refused');
    assert.equal(line.slice(d.col - 1, d.endCol - 1), '1000000000', 'at the value');
    assert.match(d.message, /repeat/);
  });

  it('a range of 2^40 accesses is refused at the range, with the count and the limit', () => {
    const line = 'guest read gpa 0x0..0x10000000000000 step 4K';
    const p = load(`vm arch=x86 maxphyaddr=52\n${line}\n`);
    const d = p.diagnostics.find((x) => x.code === 'too-many-accesses');
    assert.ok(d, 'refused');
    assert.equal(d.line, 2);
    assert.equal(line.slice(d.col - 1, d.endCol - 1), '0x0..0x10000000000000');
    assert.match(d.message, /1099511627776 accesses/, '2^40 accesses');
  });

  it('range x repeat over the limit is refused even when each alone is within it', () => {
    // 4096 accesses x 8192 repeats = 2^25 > 2^24
    const p = load('vm arch=x86\nguest read gpa 0x0..0x1000000 step 4K repeat=8192\n');
    assert.ok(p.diagnostics.some((d) => d.code === 'too-many-accesses' && d.line === 2));
  });
});
