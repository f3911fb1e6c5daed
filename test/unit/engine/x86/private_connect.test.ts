/**
 * The private-memory model connected to the x86 VM (X86Vm, Kvm.kvm_set_memory_region, mmu.ts):
 * SNP RMP #NPFs end in sev_handle_rmp_fault from npf_interception (kvm-x86-mmu.md §4.3 step 5, §8.3),
 * guest_memfd slots bind at KVM_SET_USER_MEMORY_REGION2 and unbind when deleted (§7.3), and
 * KVM_SET_MEMORY_ATTRIBUTES through the facade is the kernel-shaped ioctl (§7.2).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm, KVM_MEM_GUEST_MEMFD, PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create, kvm_gmem_file, kvm_gmem_get_file } from '../../../../src/engine/kvm/guest_memfd';
import { kvm_mmu_max_mapping_level, npf_interception } from '../../../../src/engine/x86/mmu';
import { PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_GUEST_RMP_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK } from '../../../../src/engine/x86/pferr';
import { snp_rmp_check_guest_access, to_kvm_sev_info } from '../../../../src/engine/x86/sev_snp';
import { kvmStack, probes } from '../../../../src/engine/probes';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;
const MiB = 1 << 20;

/** Record the KVM call stack at each hit of the named probes (stop with probes.listen(undefined)). */
function listen(names: string[]): Array<{ name: string; stack: string[] }> {
  const hits: Array<{ name: string; stack: string[] }> = [];
  probes.listen((name) => {
    if (names.includes(name)) hits.push({ name, stack: kvmStack().map((f) => f.name) });
  });
  return hits;
}

function snpVm() {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 5 });
  const kvm = v.kvm;
  const fd = kvm_gmem_create(kvm, { size: 4 * MiB, flags: 0 }, { huge_folios: true });
  assert.equal(v.add_slot(0, GPA, 4 * MiB, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  assert.equal(v.set_memory_attributes(GPA, 4 * MiB, PRIVATE), 0);
  return { v, kvm, sev: to_kvm_sev_info(kvm)!, file: kvm_gmem_file(kvm, fd)! };
}

test('X86Vm of an SNP VM runs sev_snp_init and routes private faults through guest_memfd', () => {
  const { v, sev, file } = snpVm();
  assert.equal(sev.asid, 5);
  v.enter(v.vcpu(0));
  const r = npf_interception(v.vcpu(0), GPA, PFERR_USER_MASK | PFERR_WRITE_MASK, PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_ENC_MASK_HI);
  assert.equal(r, 1);
  // A whole free 2M folio is prepared as one 2M RMP entry and mapped 2M (the leaf never exceeds the entry).
  assert.equal(sev.rmp.entry(file.pfn_base).assigned, true);
  assert.equal(sev.rmp.entry(file.pfn_base).pagesize, 1);
  assert.equal(v.read_spte(GFN, 2)!.pfn, file.pfn_base);
  // Recovery/collapse sees the same cap through guest_memfd (folio order, then the RMP entry size).
  assert.equal(kvm_mmu_max_mapping_level(v.kvm, v.kvm.memslots[0]!.slots[0]!, GFN + 0x10), 2);
  assert.equal(kvm_mmu_max_mapping_level(v.kvm, v.kvm.memslots[0]!.slots[0]!, GFN + 0x210), 1, 'no folio there yet');
});

test('an RMP #NPF on a 4K NPT leaf over a 2M RMP entry PSMASHes from under npf_interception', () => {
  const { v, kvm, sev, file } = snpVm();
  const vcpu = v.vcpu(0);
  v.enter(vcpu);
  // One shared gfn makes the 2M range mixed: the private fault maps 4K while the folio's RMP entry is 2M.
  assert.equal(v.set_memory_attributes(GPA + 0x1ff000, 0x1000, 0), 0);
  const gpa = GPA + 0x10_000;
  assert.equal(npf_interception(vcpu, gpa, PFERR_USER_MASK | PFERR_WRITE_MASK, PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_ENC_MASK_HI), 1);
  const pfn = file.pfn_base + 0x10;
  assert.equal(v.read_spte(GFN + 0x10, 1)!.pfn, pfn);
  assert.equal(sev.rmp.entry(file.pfn_base).pagesize, 1);
  // The hardware's RMP check of the access through the 4K leaf fails with an RMP #NPF.
  const chk = snp_rmp_check_guest_access(sev.rmp, sev.asid, gpa, pfn, 1, true, true);
  assert.equal(chk.result, 'npf');
  assert.notEqual(chk.err_lo & PFERR_GUEST_RMP_MASK, 0);
  const hits = listen(['psmash', 'kvm_zap_gfn_range']);
  let r: number;
  try {
    r = npf_interception(vcpu, gpa, chk.err_lo, chk.err_hi);
  } finally {
    probes.listen(undefined);
  }
  assert.equal(r, 1);
  assert.deepEqual(hits.map((h) => h.name), ['psmash', 'kvm_zap_gfn_range']);
  assert.deepEqual(hits[0]!.stack.slice(0, 3), ['psmash', 'sev_handle_rmp_fault', 'npf_interception']);
  assert.ok(!hits[0]!.stack.includes('kvm_mmu_page_fault'), 'kvm_mmu_page_fault returned before the RMP handler ran');
  assert.deepEqual(hits[1]!.stack.slice(0, 3), ['kvm_zap_gfn_range', 'sev_handle_rmp_fault', 'npf_interception']);
  // The 2M entry is 512 4K entries now, and the gfn's mapping was zapped so it refaults.
  assert.equal(sev.rmp.entry(file.pfn_base).pagesize, 0);
  assert.equal(sev.rmp.stats.psmash, 1);
  assert.equal(sev.rmp_faults, 1);
  assert.equal(v.read_spte(GFN + 0x10, 1)?.lo ?? 0, 0);
  assert.deepEqual(kvm.warnings, []);
  // Uniform again: for recovery/collapse the level is now capped by the 4K RMP entries, not the 2M folio.
  assert.equal(v.set_memory_attributes(GPA + 0x1ff000, 0x1000, PRIVATE), 0);
  assert.equal(kvm_mmu_max_mapping_level(kvm, kvm.memslots[0]!.slots[0]!, GFN + 0x10), 1);
});

test('a guest_memfd slot binds at KVM_SET_USER_MEMORY_REGION2 and unbinds when deleted', () => {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  const kvm = v.kvm;
  const fd = kvm_gmem_create(kvm, { size: 2 * MiB, flags: 0 });
  const file = kvm_gmem_file(kvm, fd)!;
  const region = (size: number, gfd = fd) => ({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: GPA, memory_size: size, userspace_addr: 0x7f00_0000_0000, guest_memfd: gfd, guest_memfd_offset: 0x1000 });
  assert.equal(v.set_user_memory_region(region(MiB, 99)), -9, 'not a guest_memfd: -EBADF');
  assert.equal(kvm.memslots[0]!.slots.length, 0);
  const hits = listen(['kvm_gmem_bind']);
  try {
    assert.equal(v.set_user_memory_region(region(MiB)), 0);
  } finally {
    probes.listen(undefined);
  }
  assert.deepEqual(hits[0]!.stack.slice(0, 2), ['kvm_gmem_bind', 'kvm_set_memory_region']);
  const slot = kvm.memslots[0]!.slots[0]!;
  assert.deepEqual(file.bindings.map((b) => [b.slot, b.start, b.end]), [[slot, 1, 257]]);
  assert.equal(kvm_gmem_get_file(kvm, slot)!.pgoff, 1);
  assert.equal(v.set_user_memory_region(region(0)), 0, 'delete');
  assert.equal(file.bindings.length, 0);
  assert.equal(kvm_gmem_get_file(kvm, slot), undefined);
  assert.equal(v.set_user_memory_region(region(MiB)), 0, 'the file range is free again');
});

test('KVM_SET_MEMORY_ATTRIBUTES through the facade: one kernel-shaped implementation, early return when nothing changes', () => {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  const kvm = v.kvm;
  assert.equal(v.add_slot(0, GPA, 4 * MiB, { flags: KVM_MEM_GUEST_MEMFD }), 0);
  assert.equal(probes.info('kvm_vm_set_mem_attributes')!.group, 'private');
  const seen: Array<{ name: string; in_progress: number }> = [];
  probes.listen((name) => {
    if (name === 'kvm_vm_set_mem_attributes' || name.endsWith('_set_memory_attributes')) seen.push({ name, in_progress: kvm.mmu_invalidate_in_progress });
  });
  try {
    assert.equal(v.set_memory_attributes(GPA, 2 * MiB, PRIVATE), 0);
    // The invalidation is over before the post pass recomputes the mixed flags.
    assert.deepEqual(seen, [
      { name: 'kvm_vm_set_mem_attributes', in_progress: 0 },
      { name: 'kvm_arch_pre_set_memory_attributes', in_progress: 1 },
      { name: 'kvm_arch_post_set_memory_attributes', in_progress: 0 },
    ]);
    const seq = kvm.mmu_invalidate_seq;
    const flushes = kvm.flush_log.length;
    seen.length = 0;
    assert.equal(v.set_memory_attributes(GPA, 2 * MiB, PRIVATE), 0);
    assert.deepEqual(seen.map((s) => s.name), ['kvm_vm_set_mem_attributes'], 'the range already has the attributes');
    assert.equal(kvm.mmu_invalidate_seq, seq);
    assert.equal(kvm.flush_log.length, flushes);
  } finally {
    probes.listen(undefined);
  }
  assert.equal(v.set_memory_attributes(GPA, 0x1000, PRIVATE | 1), -22, 'unsupported attribute');
  assert.equal(new X86Vm().set_memory_attributes(GPA, 0x1000, PRIVATE), -22, 'no private memory on a default VM');
});

test('one private faultin, named as 6.18 names it, under kvm_mmu_faultin_pfn', () => {
  assert.equal(probes.info('kvm_mmu_faultin_pfn_private'), undefined);
  assert.equal(probes.info('kvm_mmu_faultin_pfn_gmem')!.group, 'private');
  assert.equal(probes.info('kvm_mmu_faultin_pfn_gmem')!.file, 'arch/x86/kvm/mmu/mmu.c');
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  assert.equal(v.add_slot(0, GPA, 4 * MiB, { flags: KVM_MEM_GUEST_MEMFD }), 0);
  assert.equal(v.set_memory_attributes(GPA, 4 * MiB, PRIVATE), 0);
  const hits = listen(['kvm_mmu_faultin_pfn_gmem', 'kvm_gmem_get_pfn']);
  try {
    assert.equal(v.access(0, GPA + 0x3000, 'write').outcome, 'fixed');
  } finally {
    probes.listen(undefined);
  }
  assert.deepEqual(hits.map((h) => h.name), ['kvm_mmu_faultin_pfn_gmem', 'kvm_gmem_get_pfn']);
  assert.deepEqual(hits[0]!.stack.slice(0, 4), ['kvm_mmu_faultin_pfn_gmem', 'kvm_mmu_faultin_pfn', 'kvm_tdp_mmu_page_fault', 'kvm_tdp_page_fault']);
  const b = kvm_gmem_get_file(v.kvm, v.kvm.memslots[0]!.slots[0]!)!;
  assert.equal(v.read_spte(GFN + 3, 1)!.pfn, b.file.pfn_base + b.pgoff + 3, 'the leaf maps the guest_memfd page');
});
