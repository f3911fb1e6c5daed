/**
 * SEV-SNP page-state changes as KVM 6.18 handles them (svm/sev.c snp_begin_psc_msr, snp_begin_psc,
 * snp_complete_one_psc; asm/sev-common.h for GHCB encodings): MSR requests are one 4K page; PSC buffers
 * are walked from hdr.cur_entry, adjacent same-operation entries merged into one KVM_HC_MAP_GPA_RANGE
 * exit, PSMASH/UNSMASH completed without an exit, and errors reported in sw_exit_info_2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_X86_SNP_VM } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create, kvm_gmem_file } from '../../../../src/engine/kvm/guest_memfd';
import {
  KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_2M, SNP_PAGE_STATE_PRIVATE,
  SNP_PAGE_STATE_SHARED, to_kvm_sev_info,
} from '../../../../src/engine/x86/sev_snp';
import {
  GHCB_MSR_PSC_RESP, SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_UNSMASH, VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY,
  VMGEXIT_PSC_ERROR_INVALID_HDR, ghcb_msr_psc_req, sev_vmgexit_psc, snp_begin_psc_msr, snp_psc_state, vmm_run_psc, type PscBufEntry,
} from '../../../../src/engine/x86/sev_psc';
import { kvm_complete_userspace_hypercall, kvm_enable_cap_exit_hypercall, vcpu_run_state } from '../../../../src/engine/x86/hypercall_exit';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;
const MiB = 1 << 20;
const ENC = KVM_MAP_GPA_RANGE_ENCRYPTED;
const P2M = KVM_MAP_GPA_RANGE_PAGE_SZ_2M;

function snpVm() {
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 3 });
  const kvm = v.kvm.private_mem;
  const fd = kvm_gmem_create(kvm, { size: 8 * MiB, flags: 0 });
  assert.equal(v.add_slot(0, GPA, 8 * MiB, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  assert.equal(v.set_memory_attributes(GPA, 8 * MiB, KVM_MEMORY_ATTRIBUTE_PRIVATE), 0);
  return { v, kvm, vcpu: v.vcpu(0), sev: to_kvm_sev_info(kvm)!, file: kvm_gmem_file(kvm, fd)! };
}

const entry = (gfn: number, operation: number, pagesize = 0, cur_page = 0): PscBufEntry => ({ cur_page, gfn, operation, pagesize });
const exitOf = (vcpu: object) => {
  const r = vcpu_run_state(vcpu as never).run!;
  return [r.exit_reason, r.nr, r.gpa, r.npages, r.attrs];
};

test('GHCB MSR PSC request: gfn in bits 51:12, operation in 55:52; one 4K page to userspace; response 0x015', () => {
  const { vcpu } = snpVm();
  const [lo, hi] = ghcb_msr_psc_req(0xf_1234_5678, SNP_PAGE_STATE_SHARED);
  assert.equal((BigInt(hi) << 32n) | BigInt(lo), (0xf_1234_5678n << 12n) | (2n << 52n) | 0x14n);
  const [l2, h2] = ghcb_msr_psc_req(GFN + 7, SNP_PAGE_STATE_PRIVATE);
  assert.equal(snp_begin_psc_msr(vcpu, l2, h2), 0);
  assert.deepEqual(exitOf(vcpu), [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, GPA + 0x7000, 1, ENC]);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 0), 1);
  const s = snp_psc_state(vcpu);
  assert.deepEqual([s.ghcb_msr_lo, s.ghcb_msr_hi], [GHCB_MSR_PSC_RESP, 0]);
  // A failed conversion: the response carries bit 63.
  snp_begin_psc_msr(vcpu, l2, h2);
  kvm_complete_userspace_hypercall(vcpu, -22 >>> 0);
  assert.deepEqual([s.ghcb_msr_lo, s.ghcb_msr_hi], [GHCB_MSR_PSC_RESP, 0x8000_0000]);
});

test('MSR PSC: PSMASH/UNSMASH operations and a VMM without KVM_CAP_EXIT_HYPERCALL get the error response, no exit', () => {
  const { vcpu, kvm } = snpVm();
  const s = snp_psc_state(vcpu);
  const run = vcpu_run_state(vcpu);
  for (const op of [SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_UNSMASH]) {
    run.run = null;
    const [lo, hi] = ghcb_msr_psc_req(GFN, op);
    assert.equal(snp_begin_psc_msr(vcpu, lo, hi), 1);
    assert.deepEqual([s.ghcb_msr_lo, s.ghcb_msr_hi, run.run], [GHCB_MSR_PSC_RESP, 0x8000_0000, null]);
  }
  assert.equal(kvm_enable_cap_exit_hypercall(kvm, 0), 0);
  const [lo, hi] = ghcb_msr_psc_req(GFN, SNP_PAGE_STATE_SHARED);
  assert.equal(snp_begin_psc_msr(vcpu, lo, hi), 1);
  assert.equal(run.run, null);
  assert.equal(kvm_enable_cap_exit_hypercall(kvm, 1 << 3), -22, 'only KVM_HC_MAP_GPA_RANGE may exit');
});

test('PSC NAE: adjacent same-operation entries merge; PSMASH/UNSMASH complete without an exit; cur_page marks progress', () => {
  const { vcpu } = snpVm();
  const psc = {
    cur_entry: 0, end_entry: 5, entries: [
      entry(GFN + 0x100, SNP_PAGE_STATE_SHARED), entry(GFN + 0x101, SNP_PAGE_STATE_SHARED),
      entry(GFN + 0x200, SNP_PAGE_STATE_PRIVATE, 1), entry(GFN + 0x400, SNP_PAGE_STATE_PRIVATE, 1),
      entry(GFN + 0x600, SNP_PAGE_STATE_PSMASH, 1), entry(GFN + 0x900, SNP_PAGE_STATE_SHARED),
    ],
  };
  assert.equal(sev_vmgexit_psc(vcpu, psc), 0);
  assert.deepEqual(exitOf(vcpu), [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, GPA + 0x100_000, 2, 0]);
  assert.equal(snp_psc_state(vcpu).psc_inflight, 2);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 0), 0);
  assert.deepEqual(psc.entries.slice(0, 2).map((e) => e.cur_page), [1, 1]);
  assert.equal(psc.cur_entry, 2);
  // The two 2M private entries are one range of 1024 pages.
  assert.deepEqual(exitOf(vcpu), [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, GPA + 0x200_000, 1024, ENC | P2M]);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 0), 0);
  // The PSMASH hint was skipped straight to the last shared page.
  assert.deepEqual(exitOf(vcpu), [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, GPA + 0x900_000, 1, 0]);
  assert.equal(psc.entries[4]!.cur_page, 512);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 0), 1);
  const s = snp_psc_state(vcpu);
  assert.deepEqual([s.sw_exit_info_2_lo, s.sw_exit_info_2_hi, psc.cur_entry], [0, 0, 6]);
});

test('PSC NAE: a half-done 2M entry resumes at 4K granularity and is not merged with the next 2M entry', () => {
  const { vcpu } = snpVm();
  const psc = { cur_entry: 0, end_entry: 1, entries: [entry(GFN + 0x200, SNP_PAGE_STATE_SHARED, 1, 256), entry(GFN + 0x400, SNP_PAGE_STATE_SHARED, 1)] };
  assert.equal(sev_vmgexit_psc(vcpu, psc), 0);
  // npages 256 from gfn + 256; the size flag still comes from the entry (2M).
  assert.deepEqual(exitOf(vcpu), [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, GPA + 0x300_000, 256, P2M]);
  assert.equal(snp_psc_state(vcpu).psc_inflight, 1);
});

test('PSC NAE errors: end_entry >= 253 INVALID_HDR; misaligned 2M gfn or cur_page beyond the size INVALID_ENTRY; userspace failure GENERIC', () => {
  const { vcpu } = snpVm();
  const s = snp_psc_state(vcpu);
  const res = () => [s.sw_exit_info_2_lo, s.sw_exit_info_2_hi];
  assert.equal(sev_vmgexit_psc(vcpu, { cur_entry: 0, end_entry: 253, entries: [] }), 1);
  assert.deepEqual(res(), [...VMGEXIT_PSC_ERROR_INVALID_HDR]);
  assert.equal(sev_vmgexit_psc(vcpu, { cur_entry: 0, end_entry: 0, entries: [entry(GFN + 1, SNP_PAGE_STATE_SHARED, 1)] }), 1);
  assert.deepEqual(res(), [...VMGEXIT_PSC_ERROR_INVALID_ENTRY]);
  assert.equal(sev_vmgexit_psc(vcpu, { cur_entry: 0, end_entry: 0, entries: [entry(GFN, SNP_PAGE_STATE_SHARED, 0, 2)] }), 1);
  assert.deepEqual(res(), [...VMGEXIT_PSC_ERROR_INVALID_ENTRY]);
  const psc = { cur_entry: 0, end_entry: 1, entries: [entry(GFN, SNP_PAGE_STATE_SHARED), entry(GFN + 5, SNP_PAGE_STATE_SHARED)] };
  assert.equal(sev_vmgexit_psc(vcpu, psc), 0);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 1), 1);
  assert.deepEqual(res(), [...VMGEXIT_PSC_ERROR_GENERIC]);
  assert.deepEqual([psc.cur_entry, psc.entries[0]!.cur_page], [0, 0], 'nothing marked done');
  // All hints: completed without any exit.
  const hints = { cur_entry: 0, end_entry: 1, entries: [entry(GFN, SNP_PAGE_STATE_PSMASH, 1), entry(GFN + 512, SNP_PAGE_STATE_UNSMASH, 1)] };
  assert.equal(sev_vmgexit_psc(vcpu, hints), 1);
  assert.deepEqual(res(), [0, 0]);
});

test('the VMM serves the exits: shared with PUNCH_HOLE returns the pages to the hypervisor in the RMP; private is assigned at the next fault', () => {
  const { v, vcpu, kvm, sev, file } = snpVm();
  // A private page the guest uses first.
  v.access(0, GPA + 0x3000, 'write', true);
  assert.equal(sev.rmp.entry(file.pfn_base + 3).assigned, true);
  const psc = { cur_entry: 0, end_entry: 0, entries: [entry(GFN + 3, SNP_PAGE_STATE_SHARED)] };
  const run = vmm_run_psc(vcpu, sev_vmgexit_psc(vcpu, psc), false, { punch_hole: true });
  assert.equal(run.exits.length, 1);
  assert.deepEqual(run.result, [0, 0]);
  assert.equal(kvm.kvm_mem_is_private(GFN + 3), false);
  assert.equal(sev.rmp.entry(file.pfn_base + 3).assigned, false, 'guest_memfd invalidate made it shared (RMPUPDATE)');
  assert.equal(v.read_spte(GFN + 3, 1)?.lo ?? 0, 0, 'the private mapping was zapped');
  // Back to private over the MSR protocol: the attribute flips now; the RMP entry only at the next private fault.
  const [lo, hi] = ghcb_msr_psc_req(GFN + 3, SNP_PAGE_STATE_PRIVATE);
  const m = vmm_run_psc(vcpu, snp_begin_psc_msr(vcpu, lo, hi), true);
  assert.deepEqual(m.result, [GHCB_MSR_PSC_RESP, 0]);
  assert.equal(kvm.kvm_mem_is_private(GFN + 3), true);
  assert.equal(v.access(0, GPA + 0x3000, 'read', true).ret, 1);
  const e = sev.rmp.entry(file.pfn_base + 3);
  assert.deepEqual([e.assigned, e.validated, e.asid, e.gpa], [true, false, 3, GPA + 0x3000]);
});
