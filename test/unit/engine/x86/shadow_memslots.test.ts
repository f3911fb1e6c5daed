/**
 * Shadow paging over several memslots (kvm-x86-mmu.md 5.4): rmaps per slot, guest tables in any slot,
 * gfns without a slot going to MMIO, and memslot delete/move flushing shadow pages through
 * kvm_mmu_zap_all_fast (KVM_X86_QUIRK_SLOT_ZAP_ALL) or kvm_mmu_zap_memslot (quirk off).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { RET_PF_EMULATE } from '../../../../src/engine/x86/ret_pf';
import { gfn_rmap_count, kvm_mmu_calculate_default_mmu_pages } from '../../../../src/engine/x86/shadow_mmu';
import { ROLE_INVALID } from '../../../../src/engine/x86/role';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';

const CR0 = (1 | 0x10 | (1 << 16) | (1 << 31)) >>> 0;
const CR4 = (1 << 5) | (1 << 4);
const EFER = (1 << 8) | (1 << 10);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const HIGH = 0x1_0000_0000; // slot 1 at 4 GiB
const MB16 = 16 << 20;

/** Slot 0 at GPA 0 and slot 1 at 4 GiB; the guest's tables live in slot 1. */
function twoSlots(quirk_slot_zap_all = true) {
  const vm = new ShadowVm({ mem_bytes: MB16, cr0: CR0, cr4: CR4, efer: EFER, cr3: 0, kvm: { quirk_slot_zap_all } });
  assert.equal(vm.setMemoryRegion(1, HIGH, MB16, 0), 0);
  const b = new GuestPageTableBuilder(vm.mem, 4, HIGH + 0x10_0000);
  vm.setRegs(CR0, CR4, EFER, b.cr3);
  return { vm, b };
}

function capture(): { events: TraceEvent[]; stop: () => void } {
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  return { events, stop };
}

test('guest tables in a high slot are shadowed; each leaf is in the rmap of the slot that holds its gfn', () => {
  const { vm, b } = twoSlots();
  b.map(0x40_0000, 0x20_0000, ALL);
  b.map(0x80_0000, HIGH + 0x40_0000, ALL);
  assert.equal(vm.access(0x40_0000, true), 1);
  assert.equal(vm.access(0x80_0000, true), 1);
  const s0 = vm.slotById(0)!, s1 = vm.slotById(1)!;
  assert.equal(gfn_rmap_count(vm.sk, s0, 0x200, 1), 1);
  assert.equal(gfn_rmap_count(vm.sk, s1, (HIGH + 0x40_0000) / 4096, 1), 1);
  // The shadowed tables are write-tracked in slot 1 (where the builder put them).
  assert.ok(vm.sk.write_track.has(b.cr3 / 4096));
  assert.equal(vm.gvaToGpa(0x80_0123), HIGH + 0x40_0123);
});

test('a guest access to a gfn no slot maps installs an MMIO SPTE, and its emulated store exits to userspace', () => {
  const { vm, b } = twoSlots();
  const gap = 0x8000_0000; // between the slots
  b.map(0x60_0000, gap, ALL);
  const { events, stop } = capture();
  try {
    const ec = vm.hwAccess(0x60_0000, false, false, false);
    assert.equal(vm.fault(0x60_0000, ec), RET_PF_EMULATE);
  } finally {
    stop();
  }
  assert.ok(events.some((e) => e.name === 'mark_mmio_spte' && e.text.includes(`gfn ${(gap / 4096).toString(16)} `)));
  // The MMIO SPTE has reserved bits: the next access faults with P|RSVD and is emulated from the
  // vCPU's MMIO cache (vcpu->arch.mmio_gva), without a guest walk or a new MMIO SPTE.
  assert.equal(vm.hwAccess(0x60_0000, false, false, false), 1 | 8);
  const again = capture();
  try {
    assert.equal(vm.access(0x60_0000), 1);
  } finally {
    again.stop();
  }
  assert.equal(vm.vcpu.mmio_gva, 0x60_0000);
  assert.ok(!again.events.some((e) => e.name === 'kvm_mmu_pagetable_walk' || e.name === 'mark_mmio_spte'));
  assert.equal(vm.guestWrite(0x60_0008, 0x1234), 'mmio');
  assert.equal(vm.mem.read32(gap + 8), 0, 'an MMIO store does not reach guest memory');
});

test('a guest table in a gfn without a slot fails the walk: #PF without P into the guest', () => {
  const { vm, b } = twoSlots();
  const pd = b.entryGpa(0xc0_0000, 2);
  // Point the PDE at a page table in the gap between the slots.
  b.write(pd, 0x8000_0000 | GPTE_P | GPTE_W | GPTE_U | GPTE_A, 0);
  assert.equal(vm.access(0xc0_0000), -1);
  assert.equal(vm.sv.injected!.error_code & 1, 0);
  assert.equal(vm.sv.injected!.address, 0xc0_0000);
});

test('a PAE CR3 in a gfn without a slot fails load_pdptrs: the MOV to CR3 is #GP', () => {
  const { vm } = twoSlots();
  const PAE_CR4 = 0x20, PAE_EFER = 0;
  vm.setRegs(CR0, PAE_CR4, PAE_EFER, 0x10_0000);
  assert.equal(vm.loadCr3(0x20_0000), true, 'in slot 0');
  assert.equal(vm.loadCr3(0x8000_0000), false, 'between the slots');
  assert.equal(vm.cr3, 0x20_0000);
});

test('deleting a slot with KVM_X86_QUIRK_SLOT_ZAP_ALL: kvm_mmu_zap_all_fast obsoletes every root', () => {
  const { vm, b } = twoSlots(true);
  b.map(0x40_0000, 0x20_0000, ALL);
  vm.access(0x40_0000);
  const root = vm.sv.root_sp!;
  const gen = vm.kvm.arch.mmu_valid_gen;
  const { events, stop } = capture();
  try {
    assert.equal(vm.setMemoryRegion(0, 0, 0, 0), 0);
  } finally {
    stop();
  }
  assert.equal(vm.kvm.arch.mmu_valid_gen, gen ^ 1);
  assert.ok(events.some((e) => e.name === 'kvm_mmu_zap_all_fast'));
  // The in-use root survives only until the vCPU drops it (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS).
  assert.equal(vm.sk.active_list().length, 0);
  assert.equal(vm.slotById(0), undefined);
  // The guest's tables are still in slot 1; the data page is gone: the access now goes to MMIO.
  vm.reload();
  assert.notEqual(vm.sv.root_sp, root);
  assert.equal(vm.fault(0x40_0000, 0), RET_PF_EMULATE);
});

test('deleting a slot without the quirk zaps only that slot (kvm_mmu_zap_memslot): pages of other slots stay', () => {
  const { vm, b } = twoSlots(false);
  b.map(0x40_0000, 0x20_0000, ALL);
  vm.access(0x40_0000);
  const before = vm.sk.active_list().length;
  const gen = vm.kvm.arch.mmu_valid_gen;
  assert.equal(vm.setMemoryRegion(0, 0, 0, 0), 0);
  assert.equal(vm.kvm.arch.mmu_valid_gen, gen, 'no fast zap');
  // Every shadow page shadows a table in slot 1; only the leaf SPTE into slot 0 went away (via its rmap).
  assert.equal(vm.sk.active_list().length, before);
  assert.equal(vm.translate(0x40_0000), null);
  assert.equal(vm.fault(0x40_0000, 0), RET_PF_EMULATE, 'now MMIO');
});

test('deleting the slot that holds the guest tables without the quirk zaps their shadow pages', () => {
  const { vm, b } = twoSlots(false);
  b.map(0x40_0000, 0x20_0000, ALL);
  vm.access(0x40_0000);
  assert.ok(vm.sk.active_list().length >= 4);
  assert.equal(vm.setMemoryRegion(1, HIGH, 0, 0), 0);
  // The root in use leaves the active list too; it is invalid and freed when the vCPU drops it.
  assert.equal(vm.sk.active_list().length, 0);
  assert.notEqual(vm.sv.root_sp!.role & ROLE_INVALID, 0);
  assert.equal(vm.sv.root_sp!.root_count, 1);
  assert.equal(vm.sk.write_track.size, 0, 'write tracking went with the pages');
});

test('moving a slot: contents follow the host memory, the old range goes to MMIO, the new one maps', () => {
  const { vm, b } = twoSlots(true);
  vm.mem.write32(0x20_0000, 0xabcd);
  b.map(0x40_0000, 0x20_0000, ALL);
  vm.access(0x40_0000);
  const gen = vm.kvm.arch.mmu_valid_gen;
  const NEW = 0x2_0000_0000;
  assert.equal(vm.setMemoryRegion(0, NEW, MB16, 0), 0);
  assert.equal(vm.kvm.arch.mmu_valid_gen, gen ^ 1, 'a move flushes like a delete');
  assert.equal(vm.slotById(0)!.base_gfn, NEW / 4096);
  assert.equal(vm.mem.read32(NEW + 0x20_0000), 0xabcd);
  assert.equal(vm.mem.read32(0x20_0000), 0);
  vm.reload();
  assert.equal(vm.fault(0x40_0000, 0), RET_PF_EMULATE, 'old gpa: no slot');
  b.map(0x50_0000, NEW + 0x20_0000, ALL);
  assert.equal(vm.access(0x50_0000, true), 1);
  assert.equal(gfn_rmap_count(vm.sk, vm.slotById(0)!, (NEW + 0x20_0000) / 4096, 1), 1);
  // A move into an existing slot's range is -EEXIST.
  assert.equal(vm.setMemoryRegion(0, HIGH, MB16, 0), -17);
});

test('the default shadow page budget follows slot create and delete (kvm_arch_commit_memory_region)', () => {
  const vm = new ShadowVm({ mem_bytes: 1 << 30, cr0: CR0, cr4: CR4, efer: EFER });
  assert.equal(vm.sk.n_max_mmu_pages, kvm_mmu_calculate_default_mmu_pages((1 << 30) / 4096));
  vm.setMemoryRegion(1, 0x1_0000_0000, 1 << 30, 0);
  assert.equal(vm.sk.n_max_mmu_pages, kvm_mmu_calculate_default_mmu_pages(2 ** 31 / 4096));
  vm.setMemoryRegion(1, 0x2_0000_0000, 1 << 30, 0);
  assert.equal(vm.sk.n_max_mmu_pages, kvm_mmu_calculate_default_mmu_pages(2 ** 31 / 4096), 'a move keeps it');
  vm.setMemoryRegion(0, 0, 0, 0);
  assert.equal(vm.sk.n_max_mmu_pages, kvm_mmu_calculate_default_mmu_pages((1 << 30) / 4096));
  // KVM_SET_NR_MMU_PAGES pins it.
  const pinned = new ShadowVm({ mem_bytes: 1 << 30, n_max_mmu_pages: 100 });
  pinned.setMemoryRegion(1, 0x1_0000_0000, 1 << 30, 0);
  assert.equal(pinned.sk.n_max_mmu_pages, 100);
});
