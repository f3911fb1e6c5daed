/**
 * The hook contract against the engine's real TDP MMU: the MMU's kvm_unmap_gfn_range / kvm_zap_gfn_range
 * registered with kvm_private_mem_init, private faults through the fault path, then conversions and
 * PUNCH_HOLE removing exactly the mappings the kernel's rules say.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm } from '../../../../src/engine/x86/index';
import { kvm_unmap_gfn_range, kvm_zap_gfn_range } from '../../../../src/engine/x86/mmu';
import { KVM_MEM_GUEST_MEMFD } from '../../../../src/engine/x86/memslot';
import { PFERR_GUEST_FINAL_MASK_HI, PFERR_PRIVATE_ACCESS_HI, PFERR_USER_MASK, PFERR_WRITE_MASK } from '../../../../src/engine/x86/pferr';
import {
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM, kvm_private_mem_init, kvm_vm_set_mem_attributes,
} from '../../../../src/engine/kvm/attributes';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, kvm_gmem_create, kvm_gmem_fallocate } from '../../../../src/engine/kvm/guest_memfd';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;

function vm() {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  const kvm = v.kvm;
  kvm_private_mem_init(kvm, {
    kvm_unmap_gfn_range: (_k, slot, start, end, filter) => kvm_unmap_gfn_range(kvm, slot, start, end, filter, true),
    kvm_zap_gfn_range: (_k, start, end) => kvm_zap_gfn_range(kvm, start, end),
  });
  const fd = kvm_gmem_create(kvm, { size: 4 << 20, flags: 0 });
  assert.equal(v.add_slot(0, GPA, 4 << 20, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  return { v, kvm, fd };
}

const present = (v: X86Vm, gfn: number) => {
  const s = v.read_spte(gfn, 1);
  return s !== undefined && (s.lo & 0x800) !== 0;
};

test('SW-protected VM: converting a private gfn to shared zaps its private SPTE, not its neighbours', () => {
  const { v, kvm } = vm();
  kvm_vm_set_mem_attributes(kvm, GFN, GFN + 1024, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  for (const g of [GFN + 5, GFN + 6]) {
    const r = v.fault(0, g * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, PFERR_GUEST_FINAL_MASK_HI | PFERR_PRIVATE_ACCESS_HI);
    assert.equal(r, 1);
    assert.equal(present(v, g), true);
  }
  kvm_vm_set_mem_attributes(kvm, GFN + 5, GFN + 6, 0);
  assert.equal(present(v, GFN + 5), false);
  assert.equal(present(v, GFN + 6), true);
  // The now-shared gfn faulted as private is a memory-fault exit naming it.
  const r = v.fault(0, (GFN + 5) * 4096, PFERR_USER_MASK, PFERR_GUEST_FINAL_MASK_HI | PFERR_PRIVATE_ACCESS_HI);
  assert.ok(r < 0);
  assert.equal(v.vcpus[0]!.run_exit?.gpa, (GFN + 5) * 4096);
});

test('PUNCH_HOLE zaps the private SPTEs of the punched range', () => {
  const { v, kvm, fd } = vm();
  kvm_vm_set_mem_attributes(kvm, GFN, GFN + 1024, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  for (const g of [GFN + 5, GFN + 40]) v.fault(0, g * 4096, PFERR_USER_MASK, PFERR_GUEST_FINAL_MASK_HI | PFERR_PRIVATE_ACCESS_HI);
  assert.equal(kvm_gmem_fallocate(kvm, fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 16 * 4096), 0);
  assert.equal(present(v, GFN + 5), false);
  assert.equal(present(v, GFN + 40), true);
  assert.equal(kvm.mmu_invalidate_in_progress, 0);
});
