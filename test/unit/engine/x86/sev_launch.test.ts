/**
 * SEV-SNP launch as KVM 6.18 drives it (svm/sev.c snp_launch_start / snp_launch_update /
 * sev_gmem_post_populate / snp_launch_finish, virt/kvm/guest_memfd.c kvm_gmem_populate): policy checks,
 * the preconditions on each populated gfn (private-capable slot, private attribute, RMP entry still
 * shared, folio not yet prepared), the RMP state the firmware leaves (assigned, validated, mutable; the
 * VMSA flagged), error codes, and pre-faulting becoming legal only after LAUNCH_FINISH.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create, kvm_gmem_file } from '../../../../src/engine/kvm/guest_memfd';
import { probes } from '../../../../src/engine/probes';
import { to_kvm_sev_info } from '../../../../src/engine/x86/sev_snp';
import {
  INITIAL_VMSA_GPA, KVM_SEV_SNP_PAGE_TYPE_CPUID, KVM_SEV_SNP_PAGE_TYPE_NORMAL, KVM_SEV_SNP_PAGE_TYPE_SECRETS, KVM_SEV_SNP_PAGE_TYPE_ZERO,
  SEV_RET_INVALID_GUEST_STATE, SNP_PAGE_TYPE_VMSA, SNP_POLICY_MASK_DEBUG, SNP_POLICY_MASK_MIGRATE_MA, SNP_POLICY_MASK_RSVD_MBO,
  SNP_POLICY_MASK_SINGLE_SOCKET, SNP_POLICY_MASK_SMT, snp_launch_finish, snp_launch_info, snp_launch_start, snp_launch_update,
} from '../../../../src/engine/x86/sev_launch';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;
const MiB = 1 << 20;
const EINVAL = -22;
const EIO = -5;
const ENOTTY = -25;
const POLICY = SNP_POLICY_MASK_SMT | SNP_POLICY_MASK_RSVD_MBO; // 0x30000, what QEMU passes by default

function snpVm(nr_vcpus = 1) {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 9, nr_vcpus });
  const pk = v.kvm.private_mem;
  const fd = kvm_gmem_create(pk, { size: 4 * MiB, flags: 0 });
  assert.equal(v.add_slot(0, GPA, 4 * MiB, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  assert.equal(v.set_memory_attributes(GPA, 4 * MiB, KVM_MEMORY_ATTRIBUTE_PRIVATE), 0);
  assert.equal(v.add_slot(1, 0, 1 * MiB), 0);
  return { v, kvm: v.kvm, sev: to_kvm_sev_info(pk)!, file: kvm_gmem_file(pk, fd)! };
}

test('LAUNCH_START: SNP VMs only; policy needs SMT and the must-be-one bit, no single-socket, no bits KVM does not know; one context', () => {
  const plain = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  assert.equal(snp_launch_start(plain.kvm, { policy: POLICY }), ENOTTY);
  const { kvm } = snpVm();
  assert.equal(snp_launch_start(kvm, { policy: SNP_POLICY_MASK_SMT }), EINVAL, 'bit 17 must be one');
  assert.equal(snp_launch_start(kvm, { policy: SNP_POLICY_MASK_RSVD_MBO }), EINVAL, 'SMT allowed is required');
  assert.equal(snp_launch_start(kvm, { policy: POLICY | SNP_POLICY_MASK_SINGLE_SOCKET }), EINVAL);
  assert.equal(snp_launch_start(kvm, { policy: POLICY | SNP_POLICY_MASK_MIGRATE_MA }), EINVAL, 'not in KVM_SNP_POLICY_MASK_VALID');
  assert.equal(snp_launch_start(kvm, { policy: POLICY, flags: 1 }), EINVAL);
  assert.equal(snp_launch_info(kvm), undefined);
  assert.equal(snp_launch_start(kvm, { policy: POLICY | SNP_POLICY_MASK_DEBUG | 0x0133 }), 0);
  assert.equal(snp_launch_start(kvm, { policy: POLICY }), EINVAL, 'a second context');
  assert.equal(snp_launch_info(kvm)!.state, 'launch');
});

test('LAUNCH_UPDATE argument checks: context first, page-aligned len, no flags, a launch page type (not VMSA), a guest_memfd slot', () => {
  const { kvm } = snpVm();
  const u = (p: Partial<Parameters<typeof snp_launch_update>[1]>) => snp_launch_update(kvm, { gfn_start: GFN, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL, ...p }).ret;
  assert.equal(u({}), EINVAL, 'no LAUNCH_START yet');
  assert.equal(snp_launch_start(kvm, { policy: POLICY }), 0);
  assert.equal(u({ len: 100 }), EINVAL);
  assert.equal(u({ flags: 1 }), EINVAL);
  assert.equal(u({ type: SNP_PAGE_TYPE_VMSA }), EINVAL);
  assert.equal(u({ type: 7 }), EINVAL);
  assert.equal(u({ gfn_start: 0 }), EINVAL, 'a slot without guest_memfd cannot be private');
});

test('LAUNCH_UPDATE: each page is made private (4K, immutable) then the firmware leaves it assigned, validated and mutable', () => {
  const { v, kvm, sev, file } = snpVm();
  assert.equal(snp_launch_start(kvm, { policy: POLICY }), 0);
  const seen: Array<[string, boolean | undefined]> = [];
  probes.listen((name, args) => {
    if (name === 'rmp_make_private') seen.push([name, (args['new_entry'] as { immutable: boolean }).immutable]);
    if (name === 'sev_gmem_post_populate') seen.push([name, (args['new_entry'] as { immutable: boolean }).immutable]);
  });
  let r;
  try {
    r = snp_launch_update(kvm, { gfn_start: GFN + 0x10, len: 3 * 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL });
  } finally {
    probes.listen(undefined);
  }
  assert.deepEqual(r, { ret: 0, error: 0, gfn_start: GFN + 0x13, len: 0 });
  assert.deepEqual(seen.slice(0, 2), [['rmp_make_private', true], ['sev_gmem_post_populate', false]]);
  for (let i = 0; i < 3; i++) {
    const e = sev.rmp.entry(file.pfn_base + 0x10 + i);
    assert.deepEqual(e, { assigned: true, pagesize: 0, immutable: false, gpa: GPA + (0x10 + i) * 4096, asid: 9, validated: true, vmsa: false });
  }
  assert.equal(snp_launch_update(kvm, { gfn_start: GFN + 0x20, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_ZERO }).ret, 0);
  assert.equal(snp_launch_update(kvm, { gfn_start: GFN + 0x21, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_SECRETS }).ret, 0);
  assert.equal(snp_launch_update(kvm, { gfn_start: GFN + 0x22, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_CPUID }).ret, 0);
  assert.deepEqual(snp_launch_info(kvm)!.pages, { 1: 3, 3: 1, 5: 1, 6: 1 });
  // A launched page is already validated: the guest's first private access just maps it, no #VC.
  const first = v.access(0, GPA + 0x11000, 'read', true);
  assert.deepEqual([first.exit, first.ret], ['npf', 1]);
  assert.equal(v.access(0, GPA + 0x11000, 'read', true).exit, 'none');
  assert.equal(sev.rmp.stats.rmpupdate, 6, 'the fault did not prepare the populated folio again');
});

test('LAUNCH_UPDATE failures: a shared gfn or an already prepared page stops the populate; pages before it count', () => {
  const { v, kvm, sev, file } = snpVm();
  assert.equal(snp_launch_start(kvm, { policy: POLICY }), 0);
  assert.equal(v.set_memory_attributes(GPA + 0x5000, 4096, 0), 0);
  const shared = snp_launch_update(kvm, { gfn_start: GFN + 5, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL });
  assert.deepEqual([shared.ret, shared.gfn_start, shared.len], [EIO, GFN + 5, 4096]);
  assert.equal(sev.rmp.entry(file.pfn_base + 5).assigned, false);
  // A page the guest already faulted in was prepared (assigned by sev_gmem_prepare): -EEXIST inside populate.
  v.access(0, GPA + 0x9000, 'read', true);
  const partial = snp_launch_update(kvm, { gfn_start: GFN + 7, len: 4 * 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL });
  assert.deepEqual(partial, { ret: 0, error: 0, gfn_start: GFN + 9, len: 2 * 4096 }, 'two pages done, the rest is for userspace to retry');
  assert.equal(snp_launch_update(kvm, { gfn_start: GFN + 9, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL }).ret, EIO);
  assert.equal(sev.rmp.entry(file.pfn_base + 9).validated, false, 'the faulted page stays as prepare left it');
});

test('LAUNCH_FINISH: every VMSA is a validated firmware page at INITIAL_VMSA_GPA, never 2M-aligned; then pre-fault is allowed and LAUNCH_UPDATE fails', () => {
  const { kvm, sev, file } = snpVm(2);
  assert.equal(snp_launch_finish(kvm), EINVAL, 'no context');
  assert.equal(snp_launch_start(kvm, { policy: POLICY }), 0);
  assert.equal(snp_launch_finish(kvm, { flags: 1 }), EINVAL);
  assert.equal(kvm.pre_fault_allowed, false);
  assert.equal(snp_launch_finish(kvm), 0);
  const l = snp_launch_info(kvm)!;
  assert.equal(l.vmsa_pfns.length, 2);
  for (const pfn of l.vmsa_pfns) {
    assert.notEqual(pfn % 512, 0);
    assert.deepEqual(sev.rmp.entry(pfn), { assigned: true, pagesize: 0, immutable: false, gpa: INITIAL_VMSA_GPA, asid: 9, validated: true, vmsa: true });
  }
  assert.equal(l.pages[SNP_PAGE_TYPE_VMSA], 2);
  assert.equal(l.state, 'running');
  assert.equal(kvm.pre_fault_allowed, true);
  const late = snp_launch_update(kvm, { gfn_start: GFN, len: 4096, type: KVM_SEV_SNP_PAGE_TYPE_NORMAL });
  assert.deepEqual([late.ret, late.error], [EIO, SEV_RET_INVALID_GUEST_STATE]);
  assert.equal(sev.rmp.entry(file.pfn_base).assigned, false, 'the page the firmware refused was reclaimed to shared');
  assert.equal(file.uptodate[0], 0, 'and its folio is not marked prepared');
});
