/**
 * Shadow-MMU eager page splitting (kvm-x86-mmu.md 6.2) and design variant `split_access` (seed 001).
 * Expectations: the split child is a direct SP with role kvm_mmu_child_role(huge sptep, direct, access)
 * and gfn = the huge SPTE's gfn; upstream (`cached`) takes access from shadowed_translation, the
 * variant (`propagate`) from the huge SPTE's bits; a mismatching direct child is dropped by
 * validate_direct_spte on the next fault through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D, splitAccessReport } from '../../../../src/engine/x86/shadow_vm';
import type { SplitAccessVariant } from '../../../../src/engine/x86/shadow_mmu';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const GVA = 0x8000_0000;
const GPA = 0x400_0000;

function hugeVm(variant: SplitAccessVariant, nx: boolean, l1 = true) {
  const vm = new ShadowVm({ mem_bytes: 256 << 20, host_backing: '2m-thp', split_access: variant, eager_split_l1: l1, kvm: { params: { nx_huge_pages: nx ? 'on' : 'off' } } });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(vm.cr0, vm.cr4, vm.efer | 0x800, b.cr3);
  b.map(GVA, GPA, ALL, 2);
  vm.access(GVA);
  return { vm, b };
}

/** Role word: level | direct << 7 | access << 8 | efer_nx << 12 | cr0_wp << 13. */
function directRole(level: number, access: number): number {
  return (level | (1 << 7) | (access << 8) | (1 << 12) | (1 << 13)) >>> 0;
}

test('a 2M guest page backed by THP is a 2M SPTE in the shadow PD; with NX huge pages it is not executable', () => {
  const { vm } = hugeVm('cached', true);
  const leaf = vm.translate(GVA)!;
  assert.equal(leaf.level, 2);
  assert.ok((leaf.lo & 0x80) !== 0, 'PS');
  assert.ok((leaf.hi & 0x8000_0000) !== 0, 'NX set by the mitigation');
});

test('upstream: no L1 shadow-page split (only nested pages are split); the knob enables it', () => {
  const { vm } = hugeVm('cached', false, false);
  vm.setDirtyLogging(true);
  assert.equal(vm.sk.counters.split_huge_pages, 0);
  assert.equal(vm.translate(GVA)!.level, 2);
  assert.equal(vm.translate(GVA)!.lo & 2, 0, 'write-protected instead');
});

test('cached: the child role takes the cached access (wux) although the huge SPTE lost X; children are executable', () => {
  const { vm } = hugeVm('cached', true);
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  try {
    vm.setDirtyLogging(true);
  } finally {
    stop();
  }
  const child = vm.shadowPages()[0]!;
  assert.equal(child.role, directRole(1, 7));
  assert.equal(child.gfn, GPA / 4096);
  const split = events.find((e) => e.name === 'kvm_mmu_split_huge_page')!;
  assert.match(split.text, new RegExp(`^gfn ${(GPA / 4096).toString(16)} spte [0-9a-f]+ level 2 errno 0$`));
  for (let k = 0; k < 512; k += 97) {
    const leaf = vm.translate(GVA + k * 0x1000)!;
    assert.equal(leaf.level, 1);
    assert.equal(leaf.hi & 0x8000_0000, 0, 'exec restored at 4K');
    assert.equal(leaf.lo & 2, 0, 'dirty logging write-protected 4K');
    assert.equal(vm.gvaToGpa(GVA + k * 0x1000), GPA + k * 0x1000);
  }
  assert.equal(vm.access(GVA + 0x5000, false, false, true), 0, 'fetch needs no fault');
  assert.equal(vm.stats().pages_4k, 512);
  assert.equal(vm.stats().pages_2m, 0);
});

test('propagate: the child role copies the huge SPTE (wu-, no X); the next fault drops and recreates it', () => {
  const { vm } = hugeVm('propagate', true);
  vm.setDirtyLogging(true);
  const child = vm.shadowPages()[0]!;
  assert.equal(child.role, directRole(1, 6));
  const created = vm.stats().sp_created!;
  assert.equal(vm.access(GVA + 0x5000, false, false, true), 1);
  assert.equal(vm.stats().validate_direct_drops, 1);
  assert.equal(vm.stats().sp_created, created + 1);
  assert.equal(vm.shadowPages()[0]!.role, directRole(1, 7), 'recreated with the guest pte_access');
  assert.equal(vm.translate(GVA + 0x6000), null, 'the dropped child took its other 4K mappings with it');
});

test('without NX huge pages both variants agree: no extra faults', () => {
  for (const v of ['cached', 'propagate'] as const) {
    const { vm } = hugeVm(v, false);
    vm.setDirtyLogging(true);
    assert.equal(vm.shadowPages()[0]!.role, directRole(1, 7), v);
    assert.equal(vm.access(GVA + 0x3000, false, false, true), 0, v);
  }
});

test('report: propagate costs one extra SP per split huge page and a fault per touched page', () => {
  const r = splitAccessReport(4, 8);
  assert.equal(r.cached.split_huge_pages, 4);
  assert.equal(r.propagate.split_huge_pages, 4);
  assert.equal(r.cached.faults_after_split, 0);
  assert.equal(r.cached.validate_direct_drops, 0);
  assert.equal(r.propagate.validate_direct_drops, 4);
  // Dirty logging forbids writable prefetch, so each touched 4K page faults once.
  assert.equal(r.extra_faults, 4 * 8);
  assert.equal(r.extra_shadow_pages, 4);
});
