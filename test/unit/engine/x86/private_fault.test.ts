import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '../../../../src/engine/x86/vm';
import { probes } from '../../../../src/engine/probes';
import { KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_release } from '../../../../src/engine/kvm/guest_memfd';
import { PFERR_PRIVATE_ACCESS_BIT } from '../../../../src/engine/x86/pferr';
import {
  KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE, kvm_max_level_for_order, kvm_max_private_mapping_level, kvm_mmu_faultin_pfn_gmem,
  kvm_mmu_prepare_memory_fault_exit, pferr_is_private, type PrivateFault, type PrivateVcpu,
} from '../../../../src/engine/x86/private_fault';
import { rmp_make_private, psmash, sev_snp_init } from '../../../../src/engine/x86/sev_snp';
import { pk, recordingMmu, vmWithGmemSlot } from '../kvm/private_helpers';

const BASE = 0x100000;

function fault(gfn: number, over: Partial<PrivateFault> = {}): PrivateFault {
  return {
    addr: gfn * 4096 + 0x123, gfn, slot: null, is_private: true, write: false, exec: false, max_level: 3, pfn: -1, refcounted_page: false,
    map_writable: false, ...over,
  };
}
const vcpuOf = (kvm: Kvm): PrivateVcpu => ({ kvm: pk(kvm), vcpu_id: 0, run_exit: null });

test('kvm_max_level_for_order: order >= 18 is 1G, >= 9 is 2M, else 4K', () => {
  assert.deepEqual([0, 1, 8, 9, 10, 17, 18, 20].map(kvm_max_level_for_order), [1, 1, 1, 2, 2, 2, 3, 3]);
});

test('PFERR_PRIVATE_ACCESS is bit 49', () => {
  assert.equal(PFERR_PRIVATE_ACCESS_BIT, 49);
  assert.equal(pferr_is_private(1 << 17), true);
  assert.equal(pferr_is_private(1 << 16), false);
});

test('memory-fault exit: gfn << 12, 4 KiB, only the PRIVATE flag (no R/W/X flags)', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  const v = vcpuOf(kvm);
  kvm_mmu_prepare_memory_fault_exit(v, fault(0x100123, { write: true, exec: true }));
  assert.deepEqual(v.run_exit, { exit_reason: KVM_EXIT_MEMORY_FAULT, flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: 0x1_0012_3000, size: 4096 });
  assert.equal(KVM_EXIT_MEMORY_FAULT, 39);
  assert.equal(KVM_MEMORY_EXIT_FLAG_PRIVATE, 8);
  kvm_mmu_prepare_memory_fault_exit(v, fault(0x100123, { is_private: false, write: true }));
  assert.equal(v.run_exit!.flags, 0);
});

test('private fault on a slot without guest_memfd: memory-fault exit and -EFAULT', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  kvm.kvm_set_memory_region({ slot: 0, flags: 0, guest_phys_addr: BASE * 4096, memory_size: 2 << 20, userspace_addr: 0x7f00_0000_0000 });
  const v = vcpuOf(kvm);
  const f = fault(BASE + 1, { slot: kvm.memslots[0]!.slots[0]! });
  const seen: string[] = [];
  probes.listen((n) => seen.push(n));
  let r;
  try {
    r = kvm_mmu_faultin_pfn_gmem(v, f);
  } finally {
    probes.listen(undefined);
  }
  assert.equal(r, -14);
  assert.deepEqual(v.run_exit, { exit_reason: 39, flags: 8, gpa: (BASE + 1) * 4096, size: 4096 });
  assert.deepEqual(seen, ['kvm_mmu_faultin_pfn_gmem', 'kvm_mmu_prepare_memory_fault_exit']);
});

test('a guest_memfd lookup error (file released) becomes a memory-fault exit', () => {
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, 2 << 20);
  recordingMmu(kvm);
  kvm_gmem_release(pk(kvm), fd);
  const v = vcpuOf(kvm);
  assert.equal(kvm_mmu_faultin_pfn_gmem(v, fault(BASE, { slot })), -14);
  assert.equal(v.run_exit!.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
});

test('order-0 guest_memfd: private mappings are 4K whatever the fault allowed', () => {
  const { kvm, slot } = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, 4 << 20);
  const v = vcpuOf(kvm);
  const f = fault(BASE + 0x205, { slot });
  assert.equal(kvm_mmu_faultin_pfn_gmem(v, f), 0);
  assert.equal(f.max_level, 1);
  assert.equal(f.map_writable, true);
  assert.equal(f.refcounted_page, true);
  assert.ok(f.pfn >= 0);
  assert.equal(v.run_exit, null);
});

test('SNP with huge folios: max level = min(fault, folio, RMP entry); never 1G', () => {
  const { kvm, slot } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 4 << 20, { huge: true });
  const sev = sev_snp_init(pk(kvm), { asid: 3 });
  const v = vcpuOf(kvm);
  const f = fault(BASE + 0x205, { slot });
  assert.equal(kvm_mmu_faultin_pfn_gmem(v, f), 0);
  // The folio was prepared as a 2M RMP entry, so 2M; the fault allowed 1G.
  assert.equal(sev.rmp.entry(f.pfn - 5).pagesize, 1);
  assert.equal(f.max_level, 2);
  const g = fault(BASE + 0x206, { slot, max_level: 1 });
  kvm_mmu_faultin_pfn_gmem(v, g);
  assert.equal(g.max_level, 1);
  // After a PSMASH the RMP entry is 4K, and so is the mapping.
  psmash(sev.rmp, f.pfn - 5);
  const h = fault(BASE + 0x207, { slot });
  kvm_mmu_faultin_pfn_gmem(v, h);
  assert.equal(h.max_level, 1);
  // Even a 1G-order folio backed by a 2M RMP entry maps at most 2M.
  assert.equal(kvm_max_private_mapping_level(pk(kvm), f.pfn + 0x200 - 5, 3, 18), 1);
  rmp_make_private(sev.rmp, f.pfn - 5 + 0x200, 0x100400 * 4096, 2, 3, false);
  assert.equal(kvm_max_private_mapping_level(pk(kvm), f.pfn - 5 + 0x200, 3, 18), 2);
});

test('TDX private mappings are capped at 4K by the vendor hook', () => {
  const kvm = new Kvm({ vendor: 'vmx', vm_type: KVM_X86_TDX_VM, vendor_config: { host_maxphyaddr: 52 } });
  assert.equal(kvm_max_private_mapping_level(pk(kvm), 0x1000, 3, 9), 1);
});

test('kvm_gmem_max_mapping_level (recovery path): the folio there now, capped by the RMP; 4K without a folio', async () => {
  const { kvm_gmem_max_mapping_level } = await import('../../../../src/engine/x86/private_fault');
  const { kvm, slot } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 4 << 20, { huge: true });
  const sev = sev_snp_init(pk(kvm), { asid: 3 });
  assert.equal(kvm_gmem_max_mapping_level(pk(kvm), slot, BASE + 0x210, true), 1);
  const f = fault(BASE + 0x210, { slot });
  kvm_mmu_faultin_pfn_gmem(vcpuOf(kvm), f);
  assert.equal(kvm_gmem_max_mapping_level(pk(kvm), slot, BASE + 0x3ff, true), 2);
  psmash(sev.rmp, f.pfn - 0x10);
  assert.equal(kvm_gmem_max_mapping_level(pk(kvm), slot, BASE + 0x3ff, true), 1);
});
