import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KvmMemorySlot, KvmMemslots, lpage_info_slot, kvm_mmu_gfn_disallow_lpage, kvm_mmu_gfn_allow_lpage, host_pfn_mapping_level,
  hugepage_set_mixed, KVM_LPAGE_MIXED_FLAG, gfn_to_index,
} from '../../../../src/engine/x86/memslot';

const mk = (base_gfn: number, npages: number, uaddr: number, backing: '4k' | '2m-thp' | '1g-hugetlb' = '4k') =>
  new KvmMemorySlot({ id: 0, as_id: 0, base_gfn, npages, flags: 0, userspace_addr: uaddr, host_backing: backing, host_pfn_base: 0x1000000 });

test('gfn_to_index is relative to the slot base at each level', () => {
  assert.equal(gfn_to_index(0x200, 0x1ff, 2), 1);
  assert.equal(gfn_to_index(0x1ff, 0x1ff, 2), 0);
  assert.equal(gfn_to_index(0x40000, 0x3ffff, 3), 1);
});

test('aligned slot: no huge page disallowed', () => {
  const s = mk(0x100000, 0x80000, 0x7f0000000000);
  for (const g of [0x100000, 0x17ffff, 0x140000]) {
    assert.equal(lpage_info_slot(g, s, 2), 0);
    assert.equal(lpage_info_slot(g, s, 3), 0);
  }
});

test('misaligned head and tail huge pages are disallowed, middle ones not', () => {
  // base 0x100 (not 2M-aligned), 0x1000 pages -> ends at 0x1100 (not aligned); HVA congruent to gfn.
  const s = mk(0x100, 0x1000, 0x100 * 4096);
  assert.equal(lpage_info_slot(0x100, s, 2), 1);
  assert.equal(lpage_info_slot(0x10ff, s, 2), 1);
  assert.equal(lpage_info_slot(0x400, s, 2), 0);
  // 1G: the whole slot is inside one 1G page that is misaligned at both ends.
  assert.equal(lpage_info_slot(0x400, s, 3), 1);
});

test('gfn and HVA not congruent modulo the huge size: the whole level is disallowed', () => {
  const s = mk(0x200, 0x800, 0x7f0000001000);
  for (let g = 0x200; g < 0xa00; g += 0x200) assert.equal(lpage_info_slot(g, s, 2), 1);
});

test('disallow counts nest and keep the MIXED flag', () => {
  const s = mk(0, 0x80000, 0);
  kvm_mmu_gfn_disallow_lpage(s, 0x1234);
  kvm_mmu_gfn_disallow_lpage(s, 0x1235);
  assert.equal(lpage_info_slot(0x1200, s, 2), 2);
  assert.equal(lpage_info_slot(0x0, s, 3), 2);
  hugepage_set_mixed(s, 0x1200, 2, true);
  assert.equal(lpage_info_slot(0x1200, s, 2), (KVM_LPAGE_MIXED_FLAG | 2) >>> 0);
  kvm_mmu_gfn_allow_lpage(s, 0x1234);
  kvm_mmu_gfn_allow_lpage(s, 0x1235);
  assert.equal(lpage_info_slot(0x1200, s, 2), KVM_LPAGE_MIXED_FLAG);
  hugepage_set_mixed(s, 0x1200, 2, false);
  assert.equal(lpage_info_slot(0x1200, s, 2), 0);
  assert.throws(() => kvm_mmu_gfn_allow_lpage(s, 0x1234));
});

test('host_pfn_mapping_level follows the host page size and the VMA bounds', () => {
  assert.equal(host_pfn_mapping_level(mk(0, 0x80000, 0x40000000, '4k'), 0x200), 1);
  const thp = mk(0, 0x80000, 0x40000000, '2m-thp');
  assert.equal(host_pfn_mapping_level(thp, 0x200), 2);
  const huge = mk(0, 0x80000, 0x40000000, '1g-hugetlb');
  assert.equal(host_pfn_mapping_level(huge, 0x12345), 3);
  // A THP VMA that starts 1 MiB into a 2M page: the first host 2M page sticks out of the VMA.
  const off = mk(0x100, 0x1000, 0x40100000, '2m-thp');
  assert.equal(host_pfn_mapping_level(off, 0x100), 1);
  assert.equal(host_pfn_mapping_level(off, 0x200), 2);
  thp.host_split_2m.add(1);
  assert.equal(host_pfn_mapping_level(thp, 0x3ff), 1);
  assert.equal(host_pfn_mapping_level(thp, 0x400), 2);
});

test('memslot lookup by gfn', () => {
  const ms = new KvmMemslots(0);
  const a = mk(0, 0x100, 0);
  const b = mk(0x1000, 0x100, 0x100000);
  ms.insert(b);
  ms.insert(a);
  assert.equal(ms.lookup(0x10), a);
  assert.equal(ms.lookup(0x10ff), b);
  assert.equal(ms.lookup(0x100), undefined);
  assert.equal(ms.lookup(0x1100), undefined);
  assert.equal(ms.overlaps(0xff, 2), a);
  assert.equal(ms.overlaps(0x100, 0xf00), undefined);
});
