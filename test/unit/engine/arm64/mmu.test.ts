import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Arm64Vm } from '../../../../src/engine/arm64/mmu';
import { kvm_pgtable_stage2_mkold } from '../../../../src/engine/arm64/pgtable';
import { PKVM_PAGE_SHARED_OWNED, PKVM_NOPAGE } from '../../../../src/engine/arm64/pkvm_mem_protect';

const M = 1 << 20;
const G = 1 << 30;
const SLOT = 0x4000_0000;

function field(d: ReturnType<Arm64Vm['descriptorAt']>, name: string): number {
  return d!.fields.find((f) => f.name === name)!.value;
}

describe('user_mem_abort: mapping size from the VMA and the memslot', () => {
  it('THP backing, aligned slot: one translation fault installs a 2M block', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 64 * M, backingPageSize: 2 * M });
    const r = vm.access(SLOT + 0x1234, 'read');
    assert.equal(r.outcome, 'hit');
    assert.equal(r.faults.length, 1);
    assert.equal(r.faults[0]!.fsc, 'translation');
    assert.equal(r.pa, SLOT + 0x1_0000_0000 + 0x1234);
    const d = vm.descriptorAt(SLOT + 0x1234);
    assert.equal(d!.kind, 'block');
    assert.equal(d!.level, 2);
    assert.equal(field(d, 'KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W'), 1); // a writable slot is mapped writable on read
    assert.equal(field(d, 'KVM_PTE_LEAF_ATTR_HI_S2_XN'), 2); // no exec fault, no DIC: XN
    assert.equal(vm.access(SLOT + 0x1f_0000, 'write').faults.length, 0);
  });

  it('4K backing or misaligned HVA: pages', () => {
    const a = new Arm64Vm();
    a.addMemslot({ gpa: SLOT, size: 64 * M });
    a.access(SLOT, 'read');
    assert.equal(a.descriptorAt(SLOT)!.kind, 'page');
    const b = new Arm64Vm();
    b.addMemslot({ gpa: SLOT, size: 64 * M, backingPageSize: 2 * M, hva: 0x7f00_0000_1000 });
    b.access(SLOT + 8 * M, 'read');
    assert.equal(b.descriptorAt(SLOT + 8 * M)!.kind, 'page');
  });

  it('block must lie inside the slot: the tail of a 3M slot gets pages', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 3 * M, backingPageSize: 2 * M });
    vm.access(SLOT + 2 * M + 0x5000, 'read');
    assert.equal(vm.descriptorAt(SLOT + 2 * M + 0x5000)!.kind, 'page');
    vm.access(SLOT + 0x5000, 'read');
    assert.equal(vm.descriptorAt(SLOT + 0x5000)!.kind, 'block');
  });

  it('hugetlb 1G: a level-1 block when the slot is 1G aligned, else 2M', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: G, size: G, backingPageSize: G, hugetlb: true });
    vm.access(G + 0x123_4000, 'read');
    const d = vm.descriptorAt(G + 0x123_4000)!;
    assert.equal(d.kind, 'block');
    assert.equal(d.level, 1);
    const w = new Arm64Vm();
    w.addMemslot({ gpa: G + 2 * M, size: G, backingPageSize: G, hugetlb: true, hva: 0x7f00_4000_0000 + 2 * M });
    w.access(G + 0x123_4000, 'read');
    assert.equal(w.descriptorAt(G + 0x123_4000)!.level, 2);
  });

  it('16K and 64K granules: 32M / 512M blocks from a PMD-sized THP', () => {
    const a = new Arm64Vm({ granule: '16k' });
    a.addMemslot({ gpa: SLOT, size: 64 * M, backingPageSize: 32 * M });
    a.access(SLOT + 0x4000, 'read');
    assert.deepEqual([a.descriptorAt(SLOT)!.kind, a.descriptorAt(SLOT)!.level], ['block', 2]);
    const b = new Arm64Vm({ granule: '64k', ipaBits: 42 });
    b.addMemslot({ gpa: 512 * M, size: 512 * M, backingPageSize: 512 * M });
    b.access(512 * M + 0x10000, 'read');
    assert.deepEqual([b.descriptorAt(512 * M)!.kind, b.descriptorAt(512 * M)!.level], ['block', 2]);
  });
});

describe('kvm_handle_guest_abort: permission, access-flag, MMIO', () => {
  it('dirty logging: read maps a read-only page; the write faults on permission and is relaxed', () => {
    const vm = new Arm64Vm();
    const id = vm.addMemslot({ gpa: SLOT, size: 4 * M, backingPageSize: 2 * M, logDirty: true });
    vm.access(SLOT, 'read');
    const d = vm.descriptorAt(SLOT)!;
    assert.equal(d.kind, 'page');
    assert.equal(field(d, 'KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W'), 0);
    const w = vm.access(SLOT, 'write');
    assert.equal(w.outcome, 'hit');
    assert.deepEqual(w.faults.map((f) => [f.fsc, f.outcome]), [['permission', 'relaxed']]);
    assert.ok(vm.memslots[id]!.dirty.has(0));
    assert.equal(vm.stats().tlbi.ipa_nsh, 1);
  });

  it('exec: mapped executable on an exec fault; an RW page gains X by relax_perms', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 4 * M });
    vm.access(SLOT + 0x1000, 'exec');
    assert.equal(field(vm.descriptorAt(SLOT + 0x1000), 'KVM_PTE_LEAF_ATTR_HI_S2_XN'), 0);
    vm.access(SLOT, 'read');
    const r = vm.access(SLOT, 'exec');
    assert.deepEqual(r.faults.map((f) => [f.fsc, f.outcome]), [['permission', 'relaxed']]);
    assert.equal(field(vm.descriptorAt(SLOT), 'KVM_PTE_LEAF_ATTR_HI_S2_XN'), 0);
  });

  it('access flag: old leaves fault and are made young, unless the hardware updates AF', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 4 * M });
    vm.access(SLOT, 'read');
    kvm_pgtable_stage2_mkold(vm.pgt, SLOT);
    const r = vm.access(SLOT, 'read');
    assert.deepEqual(r.faults.map((f) => f.fsc), ['access_flag']);
    assert.equal(field(vm.descriptorAt(SLOT), 'KVM_PTE_LEAF_ATTR_LO_S2_AF'), 1);
    const h = new Arm64Vm({ hwAf: true });
    h.addMemslot({ gpa: SLOT, size: 4 * M });
    h.access(SLOT, 'read');
    kvm_pgtable_stage2_mkold(h.pgt, SLOT);
    assert.equal(h.access(SLOT, 'read').faults.length, 0);
  });

  it('outside memslots: MMIO exit for data, injected abort for instruction fetch; read-only slot writes exit', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 4 * M, readonly: true });
    assert.equal(vm.access(0x900_0000, 'write').outcome, 'mmio');
    assert.equal(vm.access(0x900_0000, 'exec').outcome, 'inject');
    assert.equal(vm.access(SLOT, 'write').outcome, 'mmio');
    assert.equal(vm.access(SLOT, 'read').outcome, 'hit');
    assert.equal(vm.stats().mmioExits, 2);
  });

  it('ptdump and stats reflect installed leaves', () => {
    const vm = new Arm64Vm({ ipaBits: 32 });
    vm.addMemslot({ gpa: 0, size: 4 * M, backingPageSize: 2 * M });
    vm.access(0x3000, 'read');
    // the block run is printed when the empty rest of the IPA space begins (that last run never is)
    assert.equal(vm.ptdump(), '---[ Guest IPA ]---\n0x0000000000000000-0x0000000000200000           2M 2   R W PXNUXN AF BLK\n');
    vm.access(2 * M, 'read');
    assert.equal(vm.ptdump(), '---[ Guest IPA ]---\n0x0000000000000000-0x0000000000400000           4M 2   R W PXNUXN AF BLK\n');
    assert.deepEqual(vm.stats().leaves, { 2: 2 });
  });
});

describe('pKVM guests: faults become host share / donate hypercalls', () => {
  it('non-protected VM: pages shared, host keeps ownership (SHARED_OWNED)', () => {
    const vm = new Arm64Vm({ pkvm: true });
    vm.addMemslot({ gpa: SLOT, size: 4 * M, backingPageSize: 2 * M });
    assert.equal(vm.access(SLOT + 0x1000, 'write').outcome, 'hit');
    const pa = SLOT + 0x1_0000_0000 + 0x1000;
    const o = vm.ownerOf(pa)!;
    assert.equal(o.owner, 0);
    assert.equal(o.hostState, PKVM_PAGE_SHARED_OWNED);
    assert.equal(vm.descriptorAt(SLOT)!.level, 2); // one level-2 block shared
    assert.equal(vm.hostAccess(pa)!.ret, 0);
  });

  for (const variant of ['set_owner_2021', 'annotate_2026'] as const) {
    it(`protected VM (${variant}): pages donated, the host faults on them`, () => {
      const vm = new Arm64Vm({ pkvm: true, protectedVm: true, variant });
      vm.addMemslot({ gpa: SLOT, size: 4 * M });
      assert.equal(vm.access(SLOT + 0x2000, 'read').outcome, 'hit');
      const pa = SLOT + 0x1_0000_0000 + 0x2000;
      const o = vm.ownerOf(pa)!;
      assert.equal(o.owner, 2);
      assert.equal(o.hostState, PKVM_NOPAGE);
      const hd = vm.hostDescriptorAt(pa)!;
      assert.equal(hd.kind, 'owner-annotated');
      assert.equal(hd.owner!.id, 2);
      assert.ok(vm.hostPtdump()!.startsWith('---[ Guest IPA ]---\n'));
      const h = vm.hostAccess(pa)!;
      assert.equal(h.ret, -1);
      // 2026: the abort goes back to the host; up to 6.18 (set_owner era) the hypervisor BUG()s
      assert.equal(h.injected, variant === 'annotate_2026');
      assert.equal(h.bug, variant === 'set_owner_2021');
    });
  }
});

describe('Arm64Vm.pkvmCall', () => {
  it('dispatches by kernel name with the VM handle implied', () => {
    const vm = new Arm64Vm({ pkvm: true, protectedVm: true, hostMemory: [{ base: 0x1_0000_0000, size: 16 * M }] });
    const pfn = 0x1_0000_0000 / 4096 + 7;
    assert.equal(vm.pkvmCall('__pkvm_host_donate_guest', [pfn, 0x90]), 0);
    assert.equal(vm.pkvmCall('__pkvm_guest_share_host', [0x90]), 0);
    assert.equal(vm.ownerOf(pfn * 4096)!.hostState, 2); // SHARED_BORROWED
    assert.equal(vm.pkvmCall('__pkvm_guest_unshare_host', [0x90]), 0);
    assert.equal(vm.ownerOf(pfn * 4096)!.owner, 2);
    assert.equal(vm.ownerOf(pfn * 4096)!.hostState, PKVM_NOPAGE);
    assert.equal(vm.pkvmCall('__pkvm_guest_unshare_host', [0x90]), -1);
    assert.equal(vm.pkvmCall('__pkvm_host_share_hyp', [0x10]), -1); // not memory
    assert.throws(() => new Arm64Vm().pkvmCall('__pkvm_host_share_hyp', [1]), RangeError);
    assert.ok(vm.stats().ptPages.allocated >= 2);
  });
});

describe('dirty logging with eager split, aging, teardown', () => {
  it('enabling logging write-protects and, with a chunk size, splits blocks into pages', () => {
    const vm = new Arm64Vm();
    const id = vm.addMemslot({ gpa: SLOT, size: 8 * M, backingPageSize: 2 * M });
    for (let i = 0; i < 4; i++) vm.access(SLOT + i * 2 * M, 'write');
    assert.equal(vm.descriptorAt(SLOT)!.kind, 'block');
    vm.eagerSplitChunk = 2 * M;
    assert.equal(vm.kvm_mmu_split_nr_page_tables(2 * M), 2); // one PMD-level and one PUD-level table at most
    vm.setDirtyLogging(id, true);
    const d = vm.descriptorAt(SLOT + 0x5000)!;
    assert.equal(d.kind, 'page');
    assert.equal(field(d, 'KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W'), 0); // the split pages inherit the write-protection
    assert.deepEqual(vm.stats().leaves, { 3: 4 * 512 });
    const w = vm.access(SLOT + 0x5000, 'write');
    assert.deepEqual(w.faults.map((f) => [f.fsc, f.outcome]), [['permission', 'relaxed']]);
  });

  it('ageRange reports and clears AF; destroy frees every table', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: SLOT, size: 4 * M });
    vm.access(SLOT, 'read');
    assert.equal(vm.ageRange(SLOT, 4 * M), true);
    assert.equal(vm.ageRange(SLOT, 4 * M), false);
    vm.destroy();
    assert.equal(vm.stats().ptPages.live, vm.memcache.nobjs);
  });
});
