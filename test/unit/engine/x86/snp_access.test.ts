/**
 * Ordinary guest accesses of an SEV-SNP VM through X86Vm.access: the NPT walk, then the hardware RMP
 * check of the host page reached (APM vol. 2 15.36.10: a private access needs an assigned entry of the
 * guest's ASID at that GPA, of the NPT leaf's size, and Validated or #VC; a shared access needs an
 * unassigned entry), and KVM's handling of the #NPF (kvm-x86-mmu.md §4.1 bits 31/34/35, §8.3:
 * PFERR_PRIVATE_ACCESS from the ENC bit, memory-fault exits on attribute mismatch, sev_handle_rmp_fault).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_X86_SNP_VM } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create, kvm_gmem_file } from '../../../../src/engine/kvm/guest_memfd';
import { PFERR_FETCH_MASK, PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK_HI, PFERR_PRESENT_MASK } from '../../../../src/engine/x86/pferr';
import { snp_guest_pvalidate, to_kvm_sev_info, RMP_PG_SIZE_2M, RMP_PG_SIZE_4K } from '../../../../src/engine/x86/sev_snp';
import { KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../../../../src/engine/x86/vcpu';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;
const MiB = 1 << 20;
const EFAULT = -14;

function snpVm(opts: { private?: boolean } = {}) {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 7 });
  const fd = kvm_gmem_create(v.kvm.private_mem, { size: 4 * MiB, flags: 0 }, { huge_folios: true });
  assert.equal(v.add_slot(0, GPA, 4 * MiB, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  if (opts.private !== false) assert.equal(v.set_memory_attributes(GPA, 4 * MiB, KVM_MEMORY_ATTRIBUTE_PRIVATE), 0);
  return { v, sev: to_kvm_sev_info(v.kvm.private_mem)!, file: kvm_gmem_file(v.kvm.private_mem, fd)! };
}

test('a first private access faults the NPT with ENC set; the prepared page is unvalidated, so the retry is a #VC', () => {
  const { v, sev, file } = snpVm();
  const r = v.access(0, GPA + 0x3000, 'write', true);
  assert.equal(r.exit, 'npf');
  assert.equal(r.info_hi & PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_ENC_MASK_HI);
  assert.equal(r.info_lo & PFERR_GUEST_RMP_MASK, 0, 'an NPT fault, not an RMP violation');
  assert.equal(r.ret, 1);
  // guest_memfd's prepare assigned the whole free 2M folio; KVM mapped 2M, never above the RMP entry.
  assert.deepEqual([sev.rmp.entry(file.pfn_base).assigned, sev.rmp.entry(file.pfn_base).pagesize], [true, 1]);
  assert.equal(v.read_spte(GFN, 2)!.pfn, file.pfn_base);
  assert.equal(v.access(0, GPA + 0x3000, 'write', true).exit, 'vc');
  // PVALIDATE at the RMP entry's size (2M) validates all 512 pages; the access then completes.
  const pv = snp_guest_pvalidate(v.kvm.private_mem, GPA, file.pfn_base, 2, RMP_PG_SIZE_2M, true)!;
  assert.deepEqual([pv.result, pv.rc], ['ok', 0]);
  assert.equal(v.access(0, GPA + 0x3000, 'write', true).exit, 'none');
  assert.equal(v.access(0, GPA + 0x1ff000, 'read', true).exit, 'none');
  assert.equal(sev.rmp_faults, 0);
});

test('a shared (C-bit clear) access to a private gfn exits to userspace as a memory fault without the PRIVATE flag', () => {
  const { v } = snpVm();
  const r = v.access(0, GPA, 'read', false);
  assert.equal(r.exit, 'npf');
  assert.equal(r.info_hi & PFERR_GUEST_ENC_MASK_HI, 0);
  assert.equal(r.ret, EFAULT);
  const ex = v.vcpu(0).run_exit!;
  assert.deepEqual([ex.exit_reason, ex.flags, ex.gpa, ex.size], [KVM_EXIT_MEMORY_FAULT, 0, GPA, 4096]);
});

test('a private access to a shared gfn exits as a memory fault with KVM_MEMORY_EXIT_FLAG_PRIVATE', () => {
  const { v, sev, file } = snpVm({ private: false });
  const r = v.access(0, GPA + 0x5000, 'write', true);
  assert.equal(r.ret, EFAULT);
  const ex = v.vcpu(0).run_exit!;
  assert.deepEqual([ex.exit_reason, ex.flags, ex.gpa], [KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE, GPA + 0x5000]);
  assert.equal(sev.rmp.entry(file.pfn_base + 5).assigned, false, 'nothing was prepared');
});

test('a shared access through a shared mapping passes the RMP check (the host page is unassigned)', () => {
  const { v } = snpVm({ private: false });
  const r1 = v.access(0, GPA + 0x5000, 'write', false);
  assert.deepEqual([r1.exit, r1.ret], ['npf', 1]);
  assert.equal(v.access(0, GPA + 0x5000, 'write', false).exit, 'none');
});

test('instruction fetches are private whatever the C-bit says', () => {
  const { v } = snpVm({ private: false });
  const r = v.access(0, GPA, 'exec', false);
  assert.equal(r.info_lo & PFERR_FETCH_MASK, PFERR_FETCH_MASK);
  assert.equal(r.info_hi & PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_ENC_MASK_HI);
  assert.equal(v.vcpu(0).run_exit!.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
});

test('a 4K NPT leaf over a 2M RMP entry: RMP #NPF (bit 31, ENC, not SIZEM), PSMASH and zap, then the 4K remap passes', () => {
  const { v, sev, file } = snpVm();
  // Prepare the 2M folio as one 2M RMP entry and validate it while the range is uniform.
  v.access(0, GPA, 'read', true);
  assert.equal(snp_guest_pvalidate(v.kvm.private_mem, GPA, file.pfn_base, 2, RMP_PG_SIZE_2M, true)!.rc, 0);
  // One shared gfn makes the 2M range mixed: KVM zaps and can only map 4K from now on.
  assert.equal(v.set_memory_attributes(GPA + 0x1ff000, 0x1000, 0), 0);
  const gpa = GPA + 0x10_000;
  const first = v.access(0, gpa, 'write', true);
  assert.deepEqual([first.exit, first.info_lo & PFERR_GUEST_RMP_MASK], ['npf', 0], 'the NPT fault maps 4K');
  assert.equal(v.read_spte(GFN + 0x10, 1)!.pfn, file.pfn_base + 0x10);
  const rmpf = v.access(0, gpa, 'write', true);
  assert.equal(rmpf.exit, 'npf');
  assert.equal((rmpf.info_lo & (PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK)) >>> 0, (PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK) >>> 0);
  assert.equal(rmpf.info_hi & (PFERR_GUEST_ENC_MASK_HI | PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_SIZEM_MASK_HI), PFERR_GUEST_ENC_MASK_HI | PFERR_GUEST_FINAL_MASK_HI);
  assert.equal(rmpf.ret, 1);
  assert.equal(sev.rmp_faults, 1);
  assert.equal(sev.rmp.stats.psmash, 1);
  assert.equal(sev.rmp.entry(file.pfn_base).pagesize, RMP_PG_SIZE_4K);
  assert.equal(sev.rmp.entry(file.pfn_base + 0x10).validated, true, 'PSMASH keeps Validated');
  // The zap made the gfn refault; the 4K leaf now matches the 4K RMP entry.
  const rest = v.touch(0, gpa, 'write', 8, true);
  assert.equal(rest[rest.length - 1]!.exit, 'none');
  assert.equal(sev.rmp_faults, 1);
  assert.deepEqual(v.kvm.warnings, []);
});

test('a non-SNP VM ignores the C-bit: no RMP check, no ENC bit', () => {
  const v = new X86Vm({ vendor: 'svm' });
  assert.equal(v.add_slot(0, GPA, 2 * MiB), 0);
  const r = v.access(0, GPA, 'read', true);
  assert.equal(r.info_hi & PFERR_GUEST_ENC_MASK_HI, 0);
  assert.equal(v.access(0, GPA, 'read', true).exit, 'none');
});
