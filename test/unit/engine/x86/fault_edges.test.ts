import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, capture, slot, vm } from './fault_helpers';
import { KVM_MEM_GUEST_MEMFD, PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_MEMSLOT_INVALID, lpage_info_slot, KVM_LPAGE_MIXED_FLAG } from '../../../../src/engine/x86/memslot';
import { kvm_mmu_notifier_invalidate_range_end, kvm_mmu_notifier_invalidate_range_start } from '../../../../src/engine/x86/mmu';

const FROZEN = '80000000000005a0';

test('faultin: a slot being deleted or moved (KVM_MEMSLOT_INVALID) makes the fault retry', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  const s = v.kvm.kvm_memslots(0).byId(0)!;
  s.flags |= KVM_MEMSLOT_INVALID;
  assert.equal(v.access(0, 0x1000, 'read').ret_pf, 1);
  s.flags &= ~KVM_MEMSLOT_INVALID;
  assert.equal(v.access(0, 0x1000, 'read').ret_pf, 5);
});

test('faultin: while an invalidation covering the gfn is in progress the fault retries; after it ends it maps', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  const hva = 0x7f00_0000_0000 + 0x2000;
  kvm_mmu_notifier_invalidate_range_start(v.kvm, hva, hva + 0x1000);
  assert.equal(v.kvm.mmu_invalidate_in_progress, 1);
  assert.equal(v.access(0, 0x2000, 'read').ret_pf, 1);
  assert.equal(v.access(0, 0x3000, 'read').ret_pf, 5, 'other gfns are not affected');
  kvm_mmu_notifier_invalidate_range_end(v.kvm, hva, hva + 0x1000);
  assert.equal(v.kvm.mmu_invalidate_seq, 1);
  assert.equal(v.access(0, 0x2000, 'read').ret_pf, 5);
});

test('NPT MMIO: reserved bit 51 + P; the next access is an RSVD #NPF that emulates', () => {
  const v = vm({ vendor: 'svm' });
  slot(v, 0, 0, GiB);
  v.access(0, 0xfed0_0000, 'write');
  const s = v.read_spte(0xfed00, 1)!;
  assert.equal(s.hi >>> 19 & 1, 1, 'bit 51');
  assert.equal(s.lo & 1, 1, 'P');
  assert.equal(s.lo & 6, 6, 'access W|U kept (mmio access mask)');
  const r = v.access(0, 0xfed0_0000, 'write');
  assert.equal(r.exit, 'npf');
  assert.equal(r.info_lo & 0xf, 0xf, 'P | W | U | RSVD');
  assert.equal(r.ret_pf, 2);
});

test('memory attributes: a private 4K page inside a 2M range marks it MIXED, so shared faults there map 4K', () => {
  const v = vm({ vm_type: 1 });
  slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD, backing: '2m-thp' });
  const s = v.kvm.kvm_memslots(0).byId(0)!;
  assert.equal(v.set_memory_attributes(0x20_3000, 0x1000, PRIVATE), 0);
  assert.equal(lpage_info_slot(0x200, s, 2), KVM_LPAGE_MIXED_FLAG);
  assert.equal(lpage_info_slot(0x0, s, 3), KVM_LPAGE_MIXED_FLAG);
  v.access(0, 0x20_0000, 'read');
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.stats().vm.pages_4k, 1);
  v.access(0, 0x40_0000, 'read');
  assert.equal(v.stats().vm.pages_2m, 1, 'a uniform neighbour is still huge');
  assert.equal(v.set_memory_attributes(0x20_3000, 0x1000, 0), 0);
  assert.equal(lpage_info_slot(0x200, s, 2), 0);
});

test('FROZEN_SPTE under the read lock: recovering a huge page freezes all 512 entries of the dropped table', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  v.set_dirty_logging(0, true);
  const c = capture();
  v.set_dirty_logging(0, false);
  c.stop();
  const zap = c.events.findIndex((e) => e.name === 'kvm_mmu_prepare_zap_page');
  assert.ok(zap > 0);
  // First the PD entry becomes a huge leaf, then the old PT is taken apart entry by entry.
  const pd = c.events[zap - 1]!;
  assert.equal(pd.name, 'kvm_tdp_mmu_spte_changed');
  assert.match(pd.text, /^as id 0 gfn 200 level 2 old_spte [0-9a-f]+ new_spte [0-9a-f]+$/);
  const frozen = c.events.slice(zap + 1).filter((e) => e.name === 'kvm_tdp_mmu_spte_changed');
  assert.equal(frozen.length, 512);
  assert.ok(frozen.every((e) => (e.fields['new_spte'] as string) === FROZEN && e.fields['level'] === 1));
});

test('NX recovery (6.17+, mmu_lock for read): the NX-split table is frozen entry by entry, present or not', () => {
  const v = vm({ params: { nx_huge_pages: 'on' } });
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  v.access(0, 0x20_2000, 'exec');
  const c = capture();
  assert.equal(v.recover_nx_huge_pages(), 1);
  c.stop();
  assert.equal(c.events[0]!.name, 'kvm_tdp_mmu_spte_changed');
  assert.match(c.events[0]!.text, /^as id 0 gfn 200 level 2 old_spte [0-9a-f]+ new_spte 8000000000000000$/);
  assert.equal(c.events[1]!.text, 'sp gen 0 gfn 200 l1 8-byte q0 direct wux nxe ad root 0 sync');
  const frozen = c.events.slice(2);
  assert.equal(frozen.length, 512);
  assert.ok(frozen.every((e) => e.fields['new_spte'] === FROZEN));
  assert.equal(v.stats().vm.pages_4k, 0);
  assert.equal(v.stats().vm.nx_lpage_splits, 0);
});

test('teardown zaps under the write lock: leaves go in the 4K pass, tables are then removed without FROZEN writes', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x20_1000, 'write');
  const c = capture();
  v.destroy();
  c.stop();
  assert.deepEqual(c.events.map((e) => (e.name === 'kvm_tdp_mmu_spte_changed' ? `changed l${e.fields['level'] as number}` : `zap l${/ l(\d) /.exec(e.text)![1]}`)), [
    'changed l1', 'changed l2', 'zap l1', 'changed l3', 'zap l2', 'changed l4', 'zap l3',
  ]);
  assert.equal(c.events.some((e) => e.fields['new_spte'] === FROZEN), false);
  assert.equal(v.kvm.pool.live, 0);
});

test('KVM_PRE_FAULT_MEMORY: prefetch faults map huge where possible, leave Accessed clear and count no guest faults', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  assert.equal(v.pre_fault_memory(0, 0x20_1000, 0x40_0000), 0x40_0000);
  // 0x201000..0x601000 touches three 2M pages.
  assert.equal(v.stats().vm.pages_2m, 3);
  const s = v.read_spte(0x200, 2)!;
  assert.equal(s.lo & 0x100, 0, 'no Accessed bit on a prefetched SPTE');
  assert.notEqual(s.lo & 2, 0);
  assert.equal(v.stats().vcpus[0]!.pf_taken, 0);
  assert.equal(v.stats().vcpus[0]!.pf_fixed, 0);
  // Pre-faulting an unbacked gpa: the fault would need emulation.
  assert.equal(v.pre_fault_memory(0, 2 * GiB, 0x1000), -2);
});

test('KVM_PRE_FAULT_MEMORY on a TD: private gfns go to the mirror root, shared ones get the shared bit', () => {
  const v = vm({ vm_type: 5 });
  slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD });
  v.set_memory_attributes(0, 0x1000, PRIVATE);
  assert.equal(v.pre_fault_memory(0, 0, 0x2000), 0x2000);
  assert.equal(v.tdx!.mapped().has(0), true);
  assert.notEqual(v.read_spte(2 ** 35 + 1, 1)!.lo & 0x800, 0);
  assert.equal(v.pre_fault_memory(0, 2 ** 47, 0x1000), -22, 'the GPA must not carry the shared bit');
});

test('a prefault that hits a slot being deleted returns -EAGAIN instead of retrying', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.kvm.kvm_memslots(0).byId(0)!.flags |= KVM_MEMSLOT_INVALID;
  assert.equal(v.pre_fault_memory(0, 0x1000, 0x1000), -11);
});
