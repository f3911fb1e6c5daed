import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadScenario, type FileReader } from '../../../src/scenario/load';
import { ScenarioRunner, parseOverrides } from '../../../src/scenario/runner';
import type { AccessOp, MemoryRegionOp, Outcome, ScenarioEngine, VmConfig } from '../../../src/scenario/engine_api';
import { trace } from '../../../src/engine/trace_sink';

/** In-memory files for includes. */
function memReader(files: Record<string, string>): FileReader {
  return {
    read: (p) => files[p],
    resolve: (_from, rel) => rel,
  };
}

/**
 * A test double standing in for an engine: it keeps memslots, answers an access inside a slot by
 * counting a fault once per 4K page, and an access outside every slot with an MMIO exit, as KVM
 * does for a GPA with no memslot. It emits one event per new page so `expect trace` has input.
 */
class DoubleEngine implements ScenarioEngine {
  readonly name = 'double';
  slots: MemoryRegionOp[] = [];
  accesses = 0;
  regionCalls = 0;
  mapped = new Set<number>();
  faults = 0;
  constructor(readonly cfg: VmConfig) {}
  setUserMemoryRegion2(op: MemoryRegionOp): Outcome {
    this.regionCalls++;
    this.slots = this.slots.filter((s) => s.slot !== op.slot);
    if (op.size) this.slots.push({ ...op });
    return { ret: 0 };
  }
  access(op: AccessOp): Outcome {
    this.accesses++;
    const s = this.slots.find((x) => op.addr >= x.gpa && op.addr < x.gpa + x.size);
    if (!s) return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa: op.addr, len: 8, is_write: op.kind === 'write' ? 1 : 0 } } };
    const gfn = Math.floor(op.addr / 4096);
    if (!this.mapped.has(gfn)) {
      this.mapped.add(gfn);
      this.faults++;
      if (trace.enabled) trace.emit('kvmmmu', 'kvm_mmu_spte_requested', op.vcpu, `gfn ${gfn.toString(16)} pfn ${(gfn + 0x1000).toString(16)} level 1`, { gfn });
    }
    return {};
  }
  query(subject: string, sel: Record<string, unknown>) {
    if (subject !== 'spte') return undefined;
    const gfn = Math.floor((sel['gpa'] as number) / 4096);
    return this.mapped.has(gfn) ? [{ kind: 'leaf', level: 1, pfn: gfn + 0x1000, w: true, value: BigInt(gfn + 0x1000) * 4096n | 0x807n }] : [];
  }
  stats() {
    return { pf_fixed: this.faults, pf_taken: this.faults };
  }
}

function runner(text: string, extra: Record<string, string> = {}, overrides: Record<string, string> = {}) {
  const prog = loadScenario('main.kvmmmu', memReader({ 'main.kvmmmu': text, ...extra }));
  let eng: DoubleEngine | undefined;
  const r = new ScenarioRunner(prog, { overrides, engineFactory: (cfg) => (eng = new DoubleEngine(cfg)) });
  return { prog, r, eng: () => eng! };
}

const SLOT = 'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G';

describe('scenario runner', () => {
  it('steps one statement at a time and reports the line of the next one', () => {
    const { r } = runner(`vm vcpus=1\n\n${SLOT}\n# c\nguest read gpa=0x1000\nexpect stat pf_fixed=1`);
    assert.equal(r.line, 1);
    r.step();
    assert.equal(r.line, 3);
    assert.equal(r.engine, undefined, 'set-up lines do not create the VM');
    const s = r.step();
    assert.equal(s.statement.line, 3);
    assert.equal(s.outcome.ret, 0);
    assert.equal(r.line, 5);
    r.step();
    r.step();
    assert.ok(r.done);
    assert.deepEqual(r.expects.map((e) => [e.line, e.ok]), [[6, true]]);
    r.dispose();
  });

  it('one line touches 1 GiB: 262144 accesses of 4K, one statement', () => {
    const { r, eng } = runner(`${SLOT}\nguest write gpa 0x0..0x40000000 step 4K\nexpect stat pf_fixed=262144\nexpect trace kvm_mmu_spte_requested count=262144`);
    r.run();
    r.dispose();
    assert.equal(eng().accesses, 262144);
    assert.deepEqual(r.problems, []);
    assert.equal(r.eventCounts.get('kvm_mmu_spte_requested'), 262144);
  });

  it('a range stops at the first exit to userspace; expect exit checks it', () => {
    const { r, eng } = runner(`KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=8K\nguest write gpa 0x0..0x10000\nexpect exit KVM_EXIT_MMIO gpa=0x2000 is_write=1\nexpect exit KVM_EXIT_MMIO gpa=0x3000`);
    r.run();
    r.dispose();
    assert.equal(eng().accesses, 3, '0x0 and 0x1000 map, 0x2000 exits');
    assert.deepEqual(r.expects.map((e) => [e.line, e.ok]), [[3, true], [4, false]]);
    assert.match(r.expects[1]!.message, /gpa: expected 0x3000, got 0x2000/);
    assert.equal(r.exits.length, 1);
    assert.equal(r.exits[0]!.line, 2);
  });

  it('a changed expectation fails at its own line with expected and actual', () => {
    const { r } = runner(`${SLOT}\nguest read gpa=0x5000\nexpect spte gpa=0x5000 kind=leaf level=1 pfn=0x1005 w=1\nexpect spte gpa=0x5000 pfn=0x1006\nexpect spte gpa=0x6000 kind=none`);
    r.run();
    r.dispose();
    assert.deepEqual(r.expects.map((e) => [e.line, e.ok]), [[3, true], [4, false], [5, true]]);
    assert.match(r.expects[1]!.message, /pfn: expected 0x1006, got 0x1005/);
    const p = r.problems.find((d) => d.code === 'expect-failed')!;
    assert.deepEqual([p.line, p.col], [4, 24]);
  });

  it('bit.N reads a bit of the raw value', () => {
    const { r } = runner(`${SLOT}\nguest read gpa=0\nexpect spte gpa=0 bit.11=1 bit.7=0 bit.1=1`);
    r.run();
    r.dispose();
    assert.deepEqual(r.expects.map((e) => e.ok), [true]);
  });

  it('statements the engine lacks are reported at their line, not skipped', () => {
    const { r } = runner(`${SLOT}\nKVM_CREATE_GUEST_MEMFD fd=g size=2M\nexpect rmp pfn=0x10 assigned=0`);
    r.run();
    r.dispose();
    const un = r.problems.filter((d) => d.code === 'unsupported');
    assert.deepEqual(un.map((d) => d.line), [2, 3]);
    assert.match(un[0]!.message, /^not supported yet by the engine: KVM_CREATE_GUEST_MEMFD/);
    assert.equal(r.ok, false);
  });

  it('without an engine every statement says which engine part is missing', () => {
    const prog = loadScenario('m', memReader({ m: 'vm arch=arm64\nguest read ipa=0x1000' }));
    const r = new ScenarioRunner(prog, { engineFactory: () => 'the arm64 engine has not landed' });
    r.run();
    r.dispose();
    assert.equal(r.problems.length, 1);
    assert.deepEqual([r.problems[0]!.line, r.problems[0]!.code], [2, 'unsupported']);
    assert.match(r.problems[0]!.message, /arm64 engine has not landed/);
  });

  it('a 1 PiB memslot gets -EINVAL from KVM\'s checks and never reaches the engine', () => {
    const { r, eng } = runner(`${SLOT}\nKVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x40000000 size=1P\nexpect ret -EINVAL`);
    r.run();
    r.dispose();
    assert.equal(eng().regionCalls, 1);
    assert.deepEqual(r.problems, []);
  });

  it('an error return that no expect ret checks is a failure at the ioctl line', () => {
    const { r } = runner(`memslot delete slot=3\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=4K`);
    r.run();
    r.dispose();
    assert.equal(r.problems.length, 1);
    assert.deepEqual([r.problems[0]!.line, r.problems[0]!.code], [1, 'unchecked-error']);
    assert.match(r.problems[0]!.message, /failed with -EINVAL/);
  });

  it('memslot move and dirty_log enable reissue the slot with KVM_SET_USER_MEMORY_REGION2', () => {
    const { r, eng } = runner(`KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=8K\nmemslot move slot=0 gpa=0x100000\ndirty_log enable slot=0\nguest read gpa=0x0\nexpect exit KVM_EXIT_MMIO gpa=0`);
    r.run();
    r.dispose();
    assert.deepEqual(r.problems, []);
    assert.equal(eng().regionCalls, 3);
    assert.equal(eng().slots[0]!.gpa, 0x100000);
    assert.equal(eng().slots[0]!.flags, 1, 'KVM_MEM_LOG_DIRTY_PAGES is bit 0');
  });

  it('expect trace matches the last statement only, by pattern', () => {
    const { r } = runner(`${SLOT}\nguest read gpa=0x3000\nexpect trace kvm_mmu_spte_requested "gfn 3 pfn 1003 level 1"\nguest read gpa=0x3000\nexpect trace count=0\nexpect trace "gfn 3 *" scope=all count=1`);
    r.run();
    r.dispose();
    assert.deepEqual(r.expects.map((e) => e.ok), [true, true, true]);
  });

  it('vcpu beyond the vm line is a located error', () => {
    const { r } = runner(`vm vcpus=2\n${SLOT}\nguest read gpa=0 vcpu=2`);
    r.run();
    r.dispose();
    assert.deepEqual(r.problems.map((d) => d.line), [3]);
    assert.match(r.problems[0]!.message, /vcpu 2 does not exist/);
  });

  it('--set overrides param and variant lines', () => {
    const o = parseOverrides(['eager_page_split=n', 'kvm.tdp_mmu=N', 'pae_root=proposed']);
    assert.deepEqual(o, { eager_page_split: 'N', tdp_mmu: 'N', pae_root: 'proposed' });
    const { r } = runner('param eager_page_split=Y tdp_mmu=Y\nvariant pae_root=upstream', {}, o as Record<string, string>);
    assert.deepEqual(r.config.params, { eager_page_split: 'N', tdp_mmu: 'N' });
    assert.deepEqual(r.config.variants, { pae_root: 'proposed' });
    r.dispose();
    assert.match(parseOverrides(['bogus=1']) as string, /not a module parameter or design variant/);
    assert.match(parseOverrides(['tdp_mmu=maybe']) as string, /takes Y, N/);
    assert.match(parseOverrides(['nx_huge_pages_recovery_ratio=x']) as string, /a number/);
  });
});

describe('includes', () => {
  it('expands in place, keeping each statement\'s own file and line', () => {
    const prog = loadScenario('main.kvmmmu', memReader({
      'main.kvmmmu': 'vm vcpus=1\ninclude "slots.kvmmmu"\nguest read gpa=0',
      'slots.kvmmmu': '# slots\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=4K',
    }));
    assert.deepEqual(prog.diagnostics, []);
    assert.deepEqual(prog.statements.map((s) => [s.file, s.line, s.keyword]), [
      ['main.kvmmmu', 1, 'vm'], ['slots.kvmmmu', 2, 'KVM_SET_USER_MEMORY_REGION2'], ['main.kvmmmu', 3, 'guest read'],
    ]);
  });

  it('a cycle and a missing file are located at the include line', () => {
    const prog = loadScenario('a', memReader({ a: 'include "b"', b: '\ninclude "a"\ninclude "nope"' }));
    assert.deepEqual(prog.diagnostics.map((d) => [d.file, d.line, d.col, d.code]), [['b', 2, 9, 'include-cycle'], ['b', 3, 9, 'include-missing']]);
  });

  it('set-up lines in an included file after the VM exists', () => {
    const prog = loadScenario('a', memReader({ a: 'KVM_PRE_FAULT_MEMORY gpa=0 size=4K\ninclude "b"', b: 'param tdp_mmu=N' }));
    assert.deepEqual(prog.diagnostics.map((d) => [d.file, d.line, d.code]), [['b', 1, 'setup-too-late']]);
  });
});

describe('expectations about a statement that did not run', () => {
  it('fail instead of passing vacuously', () => {
    const { r } = runner(`${SLOT}\nKVM_CREATE_GUEST_MEMFD fd=g size=2M\nexpect ret 0\nexpect trace count=0\nexpect exit none\nguest read gpa=0\nexpect exit none`);
    r.run();
    r.dispose();
    assert.deepEqual(r.expects.map((e) => [e.line, e.ok]), [[3, false], [4, false], [5, false], [7, true]]);
    assert.match(r.expects[0]!.message, /line 2 \(KVM_CREATE_GUEST_MEMFD\) did not run/);
  });
});

describe('names across the program', () => {
  it('a guest_memfd must be created before use, in this file or an included one', () => {
    const prog = loadScenario('m', memReader({
      m: 'include "g"\nKVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0 size=4K flags=KVM_MEM_GUEST_MEMFD guest_memfd=gmem0\nfallocate fd=gmme0 mode=FALLOC_FL_KEEP_SIZE offset=0 len=4K',
      g: 'KVM_CREATE_GUEST_MEMFD fd=gmem0 size=4K',
    }));
    assert.deepEqual(prog.diagnostics.map((d) => [d.file, d.line, d.col, d.code]), [['m', 3, 14, 'unknown-name']]);
    assert.match(prog.diagnostics[0]!.hint, /did you mean 'gmem0'\?/);
  });
});
