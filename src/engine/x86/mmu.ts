/**
 * The shared part of arch/x86/kvm/mmu/mmu.c: the one page-fault entry of every MMU mode
 * (kvm_mmu_page_fault -> kvm_mmu_do_page_fault -> mmu->page_fault: kvm_tdp_page_fault ->
 * kvm_tdp_mmu_page_fault, or the shadow MMU's handlers in shadow_paging.ts), the vendor exits
 * (EPT violation / misconfig, #NPF with the SEV-SNP RMP tail), fast_page_fault, kvm_mmu_faultin_pfn, huge page level selection, MMIO SPTE handling, root loading
 * and invalidation, gfn-range zaps, memslot hooks and the mmu_notifier callbacks.
 *
 * Host memory is modelled as populated and writable (as with preallocated or already-touched guest
 * RAM), so a fault on a writable slot always gets a writable pfn.
 */
import { defineProbe, probes } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint, halvesToValue, tracepointShape } from '../tracepoints/index';
import {
  KVM_MAX_HUGEPAGE_LEVEL, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, KVM_MEM_READONLY, KVM_MEMSLOT_INVALID, KVM_PAGES_PER_HPAGE as PAGES, host_pfn_mapping_level,
  kvm_slot_dirty_track_enabled, lpage_info_slot, slot_gfn_to_host_pfn, dirty_bitmap_set, type KvmMemorySlot,
} from './memslot';
import { kvm_mmu_page_as_id, type KvmMmuPage } from './mmu_page';
import { kvm_mmu_slot_apply_flags } from './dirty_log';
import {
  PFERR_FETCH_MASK, PFERR_PRESENT_MASK, PFERR_PRIVATE_ACCESS_HI, PFERR_RSVD_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK,
  PFERR_GUEST_PAGE_MASK_HI, PFERR_SYNTHETIC_MASK_HI, PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_GUEST_RMP_MASK,
} from './pferr';
import {
  RET_PF_CONTINUE, RET_PF_EMULATE, RET_PF_FIXED, RET_PF_INVALID, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED,
} from './ret_pf';
import { ROLE_DIRECT, ROLE_INVALID, kvm_calc_tdp_mmu_root_page_role, kvm_mmu_get_tdp_level, ROLE_SMM_SHIFT, ROLE_ACCESS_SHIFT } from './role';
import {
  ACC_ALL, PT_WRITABLE_MASK, get_mmio_spte_access, get_mmio_spte_generation, get_mmio_spte_gfn, is_access_allowed,
  is_access_track_spte, is_mmio_spte, is_mmu_writable_spte, restore_acc_track_spte, MMIO_SPTE_GEN_MASK,
} from './spte';
import {
  kvm_tdp_mmu_alloc_root, kvm_tdp_mmu_fast_pf_get_last_sptep, kvm_tdp_mmu_invalidate_roots, kvm_tdp_mmu_map,
  kvm_tdp_mmu_put_root, kvm_tdp_mmu_unmap_gfn_range, kvm_tdp_mmu_zap_invalidated_roots, kvm_tdp_mmu_zap_leafs, KVM_DIRECT_ROOTS,
  KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, wire_make_spte_args, __kvm_tdp_mmu_age_gfn_range, sptep_va,
} from './tdp_mmu';
import { spte_to_child_sp } from './tdp_iter';
import { kvm_slot_has_gmem } from '../kvm/attributes';
import { kvm_gmem_max_mapping_level, kvm_mmu_faultin_pfn_gmem, kvm_mmu_prepare_memory_fault_exit } from './private_fault';
import { sev_handle_rmp_fault } from './sev_snp';
import {
  KvmVcpu, KVM_PFN_ERR_FAULT, KVM_PFN_ERR_HWPOISON, KVM_PFN_ERR_RO_FAULT,
  KVM_PFN_ERR_SIGPENDING, KVM_PFN_NOSLOT, is_error_noslot_pfn, is_error_pfn, type kvm_page_fault,
} from './vcpu';
import { EOPNOTSUPP, ENOENT } from '../errno';
import { EAGAIN, EFAULT, EINTR, EINVAL, EIO, Kvm, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_X86_DEFAULT_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, type KvmMrChange } from './vm';

export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G, KVM_MAX_HUGEPAGE_LEVEL };

/** KVM_EXIT_MMIO: emulation of an access with no memslot (or a write to a read-only one) goes to userspace. */
export const KVM_EXIT_MMIO = 6;

const F = 'arch/x86/kvm/mmu/mmu.c';
const PR_PAGE_FAULT = defineProbe('kvm_mmu_page_fault', 'fault', F, 'common #PF / EPT violation / #NPF entry', ['cr2_or_gpa', 'error_code']);
const PR_DO_PAGE_FAULT = defineProbe('kvm_mmu_do_page_fault', 'fault', 'arch/x86/kvm/mmu/mmu_internal.h', 'build struct kvm_page_fault and call the MMU\'s handler', ['fault']);
const PR_TDP_PAGE_FAULT = defineProbe('kvm_tdp_page_fault', 'fault', F, 'TDP fault handler: TDP MMU or shadow-MMU direct_page_fault', ['fault']);
const PR_TDP_MMU_PAGE_FAULT = defineProbe('kvm_tdp_mmu_page_fault', 'fault', F, 'TDP MMU fault: fast path, faultin, map under the read lock', ['fault']);
const PR_FAST_PF = defineProbe('fast_page_fault', 'fault', F, 'lockless fix of a write-protected or access-tracked SPTE', ['fault', 'sptep', 'old_spte', 'new_spte']);
const PR_FAULTIN = defineProbe('kvm_mmu_faultin_pfn', 'fault', F, 'resolve the pfn behind the fault gfn (or decide MMIO / retry / exit)', ['fault']);
const PR_NOSLOT = defineProbe('kvm_handle_noslot_fault', 'fault', F, 'no memslot: cache MMIO info and install an MMIO SPTE or emulate', ['fault']);
const PR_ERROR_PFN = defineProbe('kvm_handle_error_pfn', 'fault', F, 'the pfn lookup failed: emulate, signal or exit', ['fault']);
const PR_HUGEPAGE_ADJUST = defineProbe('kvm_mmu_hugepage_adjust', 'fault', F, 'pick req_level/goal_level from lpage_info and the host mapping', ['fault']);
const PR_DISALLOWED = defineProbe('disallowed_hugepage_adjust', 'fault', F, 'step down a level under an NX-split table', ['fault', 'level']);
const PR_STALE = defineProbe('is_page_fault_stale', 'fault', F, 'root obsolete or an mmu_notifier invalidation raced with the fault', ['fault']);
const PR_MMIO_PF = defineProbe('handle_mmio_page_fault', 'fault', F, 'RSVD fault on an MMIO SPTE: check its generation and emulate', ['addr']);
const PR_FINISH = defineProbe('kvm_mmu_finish_page_fault', 'fault', F, 'release the faulted-in page', ['fault', 'r']);
const PR_LOAD = defineProbe('kvm_mmu_load', 'roots', F, 'allocate (or reuse) the vCPU\'s roots and load the EPTP/nCR3', ['role']);
const PR_FREE_ROOTS = defineProbe('kvm_mmu_free_roots', 'roots', F, 'drop the vCPU\'s references to its roots', ['roots']);
const PR_ZAP_ALL_FAST = defineProbe('kvm_mmu_zap_all_fast', 'roots', F, 'toggle mmu_valid_gen, invalidate direct roots and zap them', ['mmu_valid_gen']);
const PR_ZAP_GFN_RANGE = defineProbe('kvm_zap_gfn_range', 'zap', F, 'zap every mapping of [start, end) under an invalidation', ['start', 'end']);
const PR_UNMAP_GFN_RANGE = defineProbe('kvm_unmap_gfn_range', 'zap', F, 'zap leaves of a gfn range for a notifier / attribute / memslot change', ['slot', 'start', 'end', 'attr_filter']);
const PR_NOTIFIER = defineProbe('kvm_mmu_notifier_invalidate_range_start', 'notifier', 'virt/kvm/kvm_main.c', 'the host is about to unmap/migrate an HVA range', ['start', 'end']);

// ---------------------------------------------------------------------------------------------------
// Vendor exits (vmx/vmx.c, vmx/tdx.c, svm/svm.c).

const PR_EPT_VIOLATION = defineProbe('handle_ept_violation', 'fault', 'arch/x86/kvm/vmx/vmx.c', 'EPT violation exit: exit qualification -> page-fault error code', ['gpa', 'exit_qualification']);
const PR_EPT_MISCONFIG = defineProbe('handle_ept_misconfig', 'fault', 'arch/x86/kvm/vmx/vmx.c', 'EPT misconfiguration exit (an MMIO SPTE): RSVD fault', ['gpa']);
const PR_NPF = defineProbe('npf_interception', 'fault', 'arch/x86/kvm/svm/svm.c', '#NPF exit: EXITINFO1 is the error code, EXITINFO2 the GPA', ['gpa', 'error_code']);

/** EPT violation exit-qualification bits. */
export const EPT_VIOLATION_ACC_READ = 1 << 0;
export const EPT_VIOLATION_ACC_WRITE = 1 << 1;
export const EPT_VIOLATION_ACC_INSTR = 1 << 2;
export const EPT_VIOLATION_PROT_READ = 1 << 3;
export const EPT_VIOLATION_PROT_WRITE = 1 << 4;
export const EPT_VIOLATION_PROT_EXEC = 1 << 5;
export const EPT_VIOLATION_PROT_MASK = EPT_VIOLATION_PROT_READ | EPT_VIOLATION_PROT_WRITE | EPT_VIOLATION_PROT_EXEC;
export const EPT_VIOLATION_GVA_IS_VALID = 1 << 7;
export const EPT_VIOLATION_GVA_TRANSLATED = 1 << 8;

// Emitted on every fault: fields and text are made only if read.
const TP_PAGE_FAULT = tracepointShape('kvm_page_fault', ['vcpu_id', 'guest_rip', 'fault_address', 'error_code:u64']);

function trace_kvm_page_fault(vcpu: KvmVcpu, gpa: number, err_lo: number, err_hi: number): void {
  trace.emitRaw(TP_PAGE_FAULT, vcpu.vcpu_id, [vcpu.vcpu_id, vcpu.rip, gpa, err_lo, err_hi]);
}

const PR_VMX_EPT = defineProbe('__vmx_handle_ept_violation', 'fault', 'arch/x86/kvm/vmx/common.h', 'exit qualification -> PFERR error code', ['gpa', 'exit_qualification']);

/** __vmx_handle_ept_violation(): translate the exit qualification into a PFERR error code. */
export function __vmx_handle_ept_violation(vcpu: KvmVcpu, gpa: number, exit_qualification: number): number {
  if (probes.armed) probes.hit(PR_VMX_EPT, { gpa, exit_qualification });
  let err_lo = 0;
  let err_hi = 0;
  if (exit_qualification & EPT_VIOLATION_ACC_READ) err_lo |= PFERR_USER_MASK;
  if (exit_qualification & EPT_VIOLATION_ACC_WRITE) err_lo |= PFERR_WRITE_MASK;
  if (exit_qualification & EPT_VIOLATION_ACC_INSTR) err_lo |= PFERR_FETCH_MASK;
  if (exit_qualification & EPT_VIOLATION_PROT_MASK) err_lo |= PFERR_PRESENT_MASK;
  if (exit_qualification & EPT_VIOLATION_GVA_IS_VALID) {
    err_hi |= exit_qualification & EPT_VIOLATION_GVA_TRANSLATED ? PFERR_GUEST_FINAL_MASK_HI : PFERR_GUEST_PAGE_MASK_HI;
  }
  if (vcpu.kvm.is_tdx && !vcpu.kvm.kvm_is_addr_direct(gpa)) err_hi |= PFERR_PRIVATE_ACCESS_HI;
  return kvm_mmu_page_fault(vcpu, gpa, err_lo, err_hi);
}

/** handle_ept_violation() (and tdx_handle_ept_violation for a TD, which treats private faults as writes). */
export function handle_ept_violation(vcpu: KvmVcpu, gpa: number, exit_qualification: number): number {
  if (probes.armed) probes.hit(PR_EPT_VIOLATION, { gpa, exit_qualification });
  // The TDX module's S-EPT violation qualification is not trustworthy: every private fault is a write.
  if (vcpu.kvm.is_tdx && !vcpu.kvm.kvm_is_addr_direct(gpa)) exit_qualification = EPT_VIOLATION_ACC_WRITE;
  if (trace.enabled) trace_kvm_page_fault(vcpu, gpa, exit_qualification, 0);
  return __vmx_handle_ept_violation(vcpu, gpa, exit_qualification);
}

/** handle_ept_misconfig(): no fast-MMIO device here, so straight to the MMU with RSVD. */
export function handle_ept_misconfig(vcpu: KvmVcpu, gpa: number): number {
  if (probes.armed) probes.hit(PR_EPT_MISCONFIG, { gpa });
  return kvm_mmu_page_fault(vcpu, gpa, PFERR_RSVD_MASK, 0);
}

/** npf_interception(). */
export function npf_interception(vcpu: KvmVcpu, gpa: number, err_lo: number, err_hi: number): number {
  if (probes.armed) probes.hit(PR_NPF, { gpa, error_code: halvesToValue(err_lo, err_hi) });
  const kvm = vcpu.kvm;
  if (kvm.WARN_ON_ONCE((err_hi & PFERR_SYNTHETIC_MASK_HI) !== 0, 'hardware set a KVM-synthetic PFERR bit')) err_hi &= ~PFERR_SYNTHETIC_MASK_HI;
  if (kvm.vm_type === KVM_X86_SNP_VM && (err_hi & PFERR_GUEST_ENC_MASK_HI) !== 0) err_hi |= PFERR_PRIVATE_ACCESS_HI;
  if (trace.enabled) trace_kvm_page_fault(vcpu, gpa, err_lo, err_hi);
  const rc = kvm_mmu_page_fault(vcpu, gpa, err_lo, err_hi);
  // The MMU fixed (or found present) the NPT side; an RMP violation is then resolved in the RMP itself.
  if (rc > 0 && (err_lo & PFERR_GUEST_RMP_MASK) !== 0) sev_handle_rmp_fault(vcpu, gpa, err_lo, err_hi);
  return rc;
}

// ---------------------------------------------------------------------------------------------------
// VM / vCPU setup.

/** Create the VM-side MMU state (kvm_mmu_init_vm) and hook the memslot ioctl into the MMU. */
export function kvm_mmu_init_vm(kvm: Kvm): void {
  wire_make_spte_args(kvm);
  kvm.mmu_ops = {
    flush_shadow_memslot: kvm_arch_flush_shadow_memslot,
    commit_memory_region: kvm_arch_commit_memory_region,
    memslots_updated: kvm_mmu_invalidate_mmio_sptes,
  };
}

/** kvm_init_mmu() for TDP: the root role from the vCPU's SMM state, the TDP level and A/D support. */
export function kvm_init_mmu(vcpu: KvmVcpu): void {
  const kvm = vcpu.kvm;
  const level = kvm_mmu_get_tdp_level(kvm.params.tdp_root_level, kvm.vendor.max_tdp_level, vcpu.guest_maxphyaddr || kvm.guest_maxphyaddr);
  const cpu_base = ((ACC_ALL << ROLE_ACCESS_SHIFT) | (vcpu.smm ? 1 << ROLE_SMM_SHIFT : 0)) >>> 0;
  vcpu.mmu.root_role = kvm_calc_tdp_mmu_root_page_role(cpu_base, kvm.masks.kvm_ad_enabled, level);
  vcpu.mmu.page_fault = kvm_tdp_page_fault;
}

/** kvm_mmu_reset_context(): unload the roots and recompute the role; the next entry reloads. */
export function kvm_mmu_reset_context(vcpu: KvmVcpu): void {
  kvm_mmu_unload(vcpu);
  kvm_init_mmu(vcpu);
}

/**
 * KVM_SET_CPUID2 as far as the MMU cares: the guest MAXPHYADDR picks 4- or 5-level TDP. After KVM_RUN
 * only an identical CPUID is accepted; before it, kvm_mmu_after_set_cpuid forces a full MMU rebuild.
 */
export function kvm_set_cpuid_maxphyaddr(vcpu: KvmVcpu, maxphyaddr: number): number {
  if (maxphyaddr < 32 || maxphyaddr > 52) return -EINVAL;
  if (vcpu.has_run) return maxphyaddr === (vcpu.guest_maxphyaddr || vcpu.kvm.guest_maxphyaddr) ? 0 : -EINVAL;
  vcpu.guest_maxphyaddr = maxphyaddr;
  kvm_mmu_after_set_cpuid(vcpu);
  return 0;
}

/** kvm_mmu_after_set_cpuid(): invalidate the cached roles and rebuild the MMU context. */
export function kvm_mmu_after_set_cpuid(vcpu: KvmVcpu): void {
  kvm_mmu_reset_context(vcpu);
}

/** kvm_smm_changed(): entering or leaving SMM switches the MMU to the other address space. */
export function kvm_smm_changed(vcpu: KvmVcpu, entering_smm: boolean): void {
  if (vcpu.kvm.nr_as_ids < 2) throw new Error('this VM type has no SMM address space');
  vcpu.smm = entering_smm;
  kvm_mmu_reset_context(vcpu);
}

/** is_obsolete_sp(). */
export function is_obsolete_sp(kvm: Kvm, sp: KvmMmuPage): boolean {
  if ((sp.role & ROLE_INVALID) !== 0) return true;
  return !sp.tdp_mmu_page && sp.mmu_valid_gen !== kvm.arch.mmu_valid_gen;
}

/** mmu_alloc_direct_roots() with the TDP MMU. */
function mmu_alloc_direct_roots(vcpu: KvmVcpu): number {
  const kvm = vcpu.kvm;
  if (!kvm.params.tdp_mmu) throw new Error('tdp_mmu=0 needs the shadow MMU (direct roots via mmu_alloc_root), not modelled here');
  if (kvm.kvm_has_mirrored_tdp() && vcpu.mmu.mirror_root === null) kvm_tdp_mmu_alloc_root(vcpu, true);
  kvm_tdp_mmu_alloc_root(vcpu, false);
  return 0;
}

/** kvm_mmu_load(). */
export function kvm_mmu_load(vcpu: KvmVcpu): number {
  if (probes.armed) probes.hit(PR_LOAD, { role: vcpu.mmu.root_role });
  const r = mmu_alloc_direct_roots(vcpu);
  // kvm_mmu_load_pgd + flush_tlb_current: a new root always starts with a clean TLB.
  vcpu.stat.tlb_flush++;
  return r;
}

/** kvm_mmu_reload(): service FREE_OBSOLETE_ROOTS, then load a root if there is none. */
export function kvm_mmu_reload(vcpu: KvmVcpu): number {
  if ((vcpu.requests & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS) !== 0) {
    vcpu.requests &= ~KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
    kvm_mmu_free_obsolete_roots(vcpu);
  }
  if (vcpu.mmu.root !== null) return 0;
  const kvm = vcpu.kvm;
  const prev = kvm.cur_vcpu;
  kvm.cur_vcpu = vcpu.vcpu_id;
  try {
    return kvm_mmu_load(vcpu);
  } finally {
    kvm.cur_vcpu = prev;
  }
}

function mmu_free_root_page(kvm: Kvm, root: KvmMmuPage): void {
  if (root.tdp_mmu_page) kvm_tdp_mmu_put_root(kvm, root);
  else throw new Error('shadow-MMU roots are freed by the shadow MMU');
}

/** kvm_mmu_free_roots() for the current root (and the mirror root with `mirror`). */
export function kvm_mmu_free_roots(vcpu: KvmVcpu, current: boolean, mirror: boolean): void {
  if (probes.armed) probes.hit(PR_FREE_ROOTS, { roots: { current, mirror } });
  const kvm = vcpu.kvm;
  if (current && vcpu.mmu.root !== null) {
    mmu_free_root_page(kvm, vcpu.mmu.root);
    vcpu.mmu.root = null;
  }
  if (mirror && vcpu.mmu.mirror_root !== null) {
    mmu_free_root_page(kvm, vcpu.mmu.mirror_root);
    vcpu.mmu.mirror_root = null;
  }
}

/** kvm_mmu_unload(). */
export function kvm_mmu_unload(vcpu: KvmVcpu): void {
  kvm_mmu_free_roots(vcpu, true, true);
}

/** kvm_mmu_free_obsolete_roots(): drop the current root if it was invalidated (mirror roots never are here). */
export function kvm_mmu_free_obsolete_roots(vcpu: KvmVcpu): void {
  const root = vcpu.mmu.root;
  if (root !== null && is_obsolete_sp(vcpu.kvm, root)) kvm_mmu_free_roots(vcpu, true, false);
  const mroot = vcpu.mmu.mirror_root;
  if (mroot !== null && is_obsolete_sp(vcpu.kvm, mroot)) kvm_mmu_free_roots(vcpu, false, true);
}

// ---------------------------------------------------------------------------------------------------
// Fault entry.

/** Result of the last kvm_mmu_page_fault on this vCPU, for the facade and views. */
function set_outcome(vcpu: KvmVcpu, ret_pf: number, outcome: string): void {
  vcpu.last_ret_pf = ret_pf;
  vcpu.last_outcome = outcome;
}

/**
 * kvm_mmu_page_fault(). Returns what the exit handler returns: 1 = resume the guest, 0 = exit to
 * userspace (vcpu.run_exit says why), negative = -errno to userspace.
 */
export function kvm_mmu_page_fault(vcpu: KvmVcpu, cr2_or_gpa: number, err_lo: number, err_hi: number): number {
  const kvm = vcpu.kvm;
  // Events raised while handling this fault belong to this vCPU's thread. (An exception here is a
  // modelled BUG(), after which the VM is dead anyway, so no try/finally on the hot path.)
  const prev = kvm.cur_vcpu;
  kvm.cur_vcpu = vcpu.vcpu_id;
  const r = __kvm_mmu_page_fault(vcpu, cr2_or_gpa, err_lo, err_hi);
  kvm.cur_vcpu = prev;
  return r;
}

function __kvm_mmu_page_fault(vcpu: KvmVcpu, cr2_or_gpa: number, err_lo: number, err_hi: number): number {
  if (probes.armed) probes.hit(PR_PAGE_FAULT, { cr2_or_gpa, error_code: halvesToValue(err_lo, err_hi) });
  const kvm = vcpu.kvm;
  vcpu.run_exit = null;
  if (!vcpu.mmu.root_hpa_valid() && kvm.WARN_ON_ONCE(true, 'fault without a valid root')) {
    set_outcome(vcpu, RET_PF_RETRY, 'retry');
    return RET_PF_RETRY;
  }
  if (kvm.vm_type === KVM_X86_SW_PROTECTED_VM && (err_lo & PFERR_RSVD_MASK) === 0 && kvm.kvm_mem_is_private(Math.floor(cr2_or_gpa / 4096))) {
    err_hi = (err_hi | PFERR_PRIVATE_ACCESS_HI) >>> 0;
  }
  const direct = (vcpu.mmu.root_role & ROLE_DIRECT) !== 0;
  let r = RET_PF_INVALID;
  if ((err_lo & PFERR_RSVD_MASK) !== 0) {
    if (kvm.WARN_ON_ONCE((err_hi & PFERR_PRIVATE_ACCESS_HI) !== 0, 'RSVD fault on a private access')) return -EFAULT;
    r = handle_mmio_page_fault(vcpu, cr2_or_gpa, direct);
    if (r === RET_PF_EMULATE) return emulate(vcpu, cr2_or_gpa, r);
  }
  if (r === RET_PF_INVALID) {
    vcpu.stat.pf_taken++;
    r = kvm_mmu_do_page_fault(vcpu, cr2_or_gpa, err_lo, err_hi, false);
    if (r === RET_PF_INVALID && kvm.KVM_BUG_ON(true, 'kvm_mmu_do_page_fault returned RET_PF_INVALID')) return -EIO;
  }
  if (r < 0) {
    set_outcome(vcpu, r, vcpu.run_exit ? 'memory_fault_exit' : 'error');
    return r;
  }
  if (r === RET_PF_WRITE_PROTECTED) r = kvm_mmu_write_protect_fault(vcpu, cr2_or_gpa, err_lo, err_hi, direct);
  if (r === RET_PF_FIXED) vcpu.stat.pf_fixed++;
  else if (r === RET_PF_EMULATE) vcpu.stat.pf_emulate++;
  else if (r === RET_PF_SPURIOUS) vcpu.stat.pf_spurious++;
  if (r === RET_PF_CONTINUE) kvm.WARN_ON_ONCE(true, 'RET_PF_CONTINUE leaked out of the fault handler');
  if (r !== RET_PF_EMULATE) {
    set_outcome(vcpu, r, r === RET_PF_FIXED ? 'fixed' : r === RET_PF_SPURIOUS ? 'spurious' : 'retry');
    return 1;
  }
  return emulate(vcpu, cr2_or_gpa, r);
}

/**
 * x86_emulate_instruction() stand-in: an access to a gfn without a memslot, or a write to a read-only
 * slot, completes in userspace as KVM_EXIT_MMIO; anything else is emulated in the kernel. With shadow
 * paging cr2_or_gpa is a GVA: the emulator reaches the gfn the guest walk found.
 */
function emulate(vcpu: KvmVcpu, cr2_or_gpa: number, r: number): number {
  const kvm = vcpu.kvm;
  const direct = (vcpu.mmu.root_role & ROLE_DIRECT) !== 0;
  const gfn = direct ? Math.floor(cr2_or_gpa / 4096) : vcpu.fault.gfn;
  const gpa = direct ? cr2_or_gpa : gfn * 4096 + (cr2_or_gpa % 4096);
  const stripped = kvm.kvm_is_gfn_alias(gfn) ? gfn - kvm.arch.gfn_direct_bits : gfn;
  const slot = kvm.kvm_memslots(vcpu.smm ? 1 : 0).lookup(stripped);
  // A TD's instructions can't be emulated: the guest re-executes and the MMIO SPTE now raises #VE.
  if (kvm.is_tdx) {
    set_outcome(vcpu, r, 'retry_instruction');
    return 1;
  }
  if (!slot || (slot.flags & (KVM_MEM_READONLY | KVM_MEMSLOT_INVALID)) !== 0) {
    vcpu.run_exit = { exit_reason: KVM_EXIT_MMIO, flags: 0, gpa, size: 0 };
    set_outcome(vcpu, r, 'emulate_mmio_exit');
    return 0;
  }
  set_outcome(vcpu, r, 'emulate');
  return 1;
}

/**
 * kvm_mmu_write_protect_fault(): unprotect-and-retry for a direct MMU on a nested walk write (an indirect
 * MMU would do it for a pending reinjection, which the model has none of), else emulate.
 */
function kvm_mmu_write_protect_fault(vcpu: KvmVcpu, gpa: number, err_lo: number, err_hi: number, direct: boolean): number {
  const nested = direct && (err_hi & PFERR_GUEST_PAGE_MASK_HI) !== 0 && (err_lo & (PFERR_WRITE_MASK | PFERR_PRESENT_MASK)) === (PFERR_WRITE_MASK | PFERR_PRESENT_MASK);
  if (vcpu.last_write_protect_gpa === gpa) {
    vcpu.last_write_protect_gpa = -1;
    return RET_PF_EMULATE;
  }
  vcpu.last_write_protect_gpa = gpa;
  if (nested) {
    vcpu.kvm.arch.write_tracked.delete(Math.floor(gpa / 4096));
    return RET_PF_RETRY;
  }
  return RET_PF_EMULATE;
}

/**
 * kvm_mmu_do_page_fault(): the one fault entry of every x86 MMU mode. It fills struct kvm_page_fault and
 * calls mmu->page_fault: kvm_tdp_page_fault directly (the retpoline shortcut), otherwise the shadow MMU's
 * handler (nonpaging_page_fault, paging32/64_page_fault). Only a direct MMU knows the gfn and slot up front;
 * an indirect one learns them from the guest walk.
 */
export function kvm_mmu_do_page_fault(vcpu: KvmVcpu, gpa: number, err_lo: number, err_hi: number, prefetch: boolean): number {
  const kvm = vcpu.kvm;
  const fault = vcpu.fault;
  const page_fault = vcpu.mmu.page_fault;
  if (page_fault === null) throw new Error('kvm_mmu_do_page_fault before the vCPU\'s MMU was initialised');
  fault.addr = gpa;
  fault.error_code_lo = err_lo >>> 0;
  fault.error_code_hi = err_hi >>> 0;
  fault.exec = (err_lo & PFERR_FETCH_MASK) !== 0;
  fault.write = (err_lo & PFERR_WRITE_MASK) !== 0;
  fault.present = (err_lo & PFERR_PRESENT_MASK) !== 0;
  fault.rsvd = (err_lo & PFERR_RSVD_MASK) !== 0;
  fault.user = (err_lo & PFERR_USER_MASK) !== 0;
  fault.prefetch = prefetch;
  fault.is_tdp = page_fault === kvm_tdp_page_fault;
  fault.nx_huge_page_workaround_enabled = kvm.is_nx_huge_page_enabled();
  fault.huge_page_disallowed = false;
  fault.max_level = KVM_MAX_HUGEPAGE_LEVEL;
  fault.req_level = PG_LEVEL_4K;
  fault.goal_level = PG_LEVEL_4K;
  fault.is_private = (err_hi & PFERR_PRIVATE_ACCESS_HI) !== 0;
  fault.pfn = KVM_PFN_ERR_FAULT;
  fault.refcounted_page = false;
  fault.map_writable = false;
  fault.write_fault_to_shadow_pgtable = false;
  fault.mmu_seq = 0;
  fault.gfn = 0;
  fault.slot = null;
  if ((vcpu.mmu.root_role & ROLE_DIRECT) !== 0) {
    // Memslots know nothing of the shared bit: strip it; fault.addr keeps it for root selection.
    let gfn = Math.floor(gpa / 4096);
    if (kvm.arch.gfn_direct_bits !== 0 && kvm.kvm_is_gfn_alias(gfn)) gfn -= kvm.arch.gfn_direct_bits;
    fault.gfn = gfn;
    fault.slot = kvm.kvm_memslots(vcpu.smm ? 1 : 0).lookup(gfn) ?? null;
  }
  if (probes.armed) probes.hit(PR_DO_PAGE_FAULT, { fault });
  const r = fault.is_tdp ? kvm_tdp_page_fault(vcpu, fault) : page_fault(vcpu, fault);
  if (r === RET_PF_EMULATE && fault.is_private) {
    kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
    return -EFAULT;
  }
  return r;
}

/**
 * What the shadow MMU (shadow_paging.ts, which imports this file) lends the common fault code: its
 * direct_page_fault for tdp_mmu=0, and the lockless walk to the last SPTE on a shadow root's path that
 * fast_page_fault (fast_pf_get_last_sptep) and handle_mmio_page_fault (get_walk) use.
 */
export interface ShadowMmuFaultHooks {
  direct_page_fault(vcpu: KvmVcpu, fault: kvm_page_fault): number;
  get_last_sptep(vcpu: KvmVcpu, addr: number, res: { sp: KvmMmuPage | null; index: number; lo: number; hi: number; level: number }): boolean;
}
let shadow_hooks: ShadowMmuFaultHooks | null = null;

export function register_shadow_mmu_fault_hooks(h: ShadowMmuFaultHooks): void {
  shadow_hooks = h;
}

/** is_tdp_mmu_active(): the TDP MMU owns this vCPU's roots. */
function is_tdp_mmu_active(vcpu: KvmVcpu): boolean {
  return vcpu.kvm.params.tdp_mmu && vcpu.mmu.page_fault === kvm_tdp_page_fault;
}

/** The last SPTE on the path to the faulting address, through the TDP MMU or the shadow MMU's walk. */
function get_last_sptep(vcpu: KvmVcpu, fault_addr: number, gfn: number): boolean {
  if (is_tdp_mmu_active(vcpu)) return kvm_tdp_mmu_fast_pf_get_last_sptep(vcpu, gfn, last);
  last.sp = null;
  return shadow_hooks !== null && shadow_hooks.get_last_sptep(vcpu, fault_addr, last);
}

/** kvm_tdp_page_fault(): the TDP MMU, or with tdp_mmu=0 the shadow MMU's direct_page_fault. */
export function kvm_tdp_page_fault(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_TDP_PAGE_FAULT, { fault });
  if (vcpu.kvm.params.tdp_mmu) return kvm_tdp_mmu_page_fault(vcpu, fault);
  if (shadow_hooks === null) throw new Error('tdp_mmu=0 needs the shadow MMU (shadow_paging.ts) loaded');
  return shadow_hooks.direct_page_fault(vcpu, fault);
}

/** kvm_gfn_is_write_tracked(): the shadow MMU or an external user (KVMGT) write-tracks the gfn. */
export function kvm_gfn_is_write_tracked(kvm: Kvm, gfn: number): boolean {
  const a = kvm.arch;
  return (a.gfn_write_track.size !== 0 && a.gfn_write_track.has(gfn)) || (a.write_tracked.size !== 0 && a.write_tracked.has(gfn));
}

/** page_fault_handle_page_track(): a present write to a write-tracked gfn must be emulated. */
export function page_fault_handle_page_track(vcpu: KvmVcpu, fault: kvm_page_fault): boolean {
  if (fault.rsvd || !fault.present || !fault.write) return false;
  return kvm_gfn_is_write_tracked(vcpu.kvm, fault.gfn);
}

/** kvm_tdp_mmu_page_fault(). */
export function kvm_tdp_mmu_page_fault(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_TDP_MMU_PAGE_FAULT, { fault });
  if (page_fault_handle_page_track(vcpu, fault)) return RET_PF_WRITE_PROTECTED;
  let r = fast_page_fault(vcpu, fault);
  if (r !== RET_PF_INVALID) return r;
  r = kvm_mmu_faultin_pfn(vcpu, fault, ACC_ALL);
  if (r !== RET_PF_CONTINUE) return r;
  // Window between faultin and mmu_lock: another thread's invalidation may land here.
  const hook = vcpu.on_faultin_done;
  if (hook !== null) hook(vcpu);
  r = RET_PF_RETRY;
  if (!is_page_fault_stale(vcpu, fault)) r = kvm_tdp_mmu_map(vcpu, fault);
  kvm_mmu_finish_page_fault(vcpu, fault, r);
  return r;
}

/** kvm_mmu_finish_page_fault(): put the page reference faultin took (nothing to track in the model). */
export function kvm_mmu_finish_page_fault(vcpu: KvmVcpu, fault: kvm_page_fault, r: number): void {
  if (probes.armed) probes.hit(PR_FINISH, { fault, r });
  fault.refcounted_page = false;
  void vcpu;
}

/**
 * is_page_fault_stale(): the root's shadow page became obsolete, or (a special root, with no shadow page)
 * obsolete roots are waiting to be freed, or an invalidation raced with the fault.
 */
export function is_page_fault_stale(vcpu: KvmVcpu, fault: kvm_page_fault): boolean {
  if (probes.armed) probes.hit(PR_STALE, { fault });
  const kvm = vcpu.kvm;
  const sp = vcpu.mmu.root_to_sp();
  if (sp !== null && is_obsolete_sp(kvm, sp)) return true;
  if (sp === null && (vcpu.requests & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS) !== 0) return true;
  return fault.slot !== null && kvm.mmu_invalidate_retry_gfn(fault.mmu_seq, fault.gfn);
}

// ---------------------------------------------------------------------------------------------------
// fast_page_fault.

const last = { sp: null as KvmMmuPage | null, index: 0, lo: 0, hi: 0, level: 0 };
const restored = { lo: 0, hi: 0 };

/** page_fault_can_be_fast(). */
function page_fault_can_be_fast(kvm: Kvm, fault: kvm_page_fault): boolean {
  if (fault.rsvd) return false;
  if (kvm.arch.has_private_mem && fault.is_private !== kvm.kvm_mem_is_private(fault.gfn)) return false;
  if (!fault.present) return !kvm.masks.kvm_ad_enabled;
  return fault.write;
}

/** fast_page_fault(). */
export function fast_page_fault(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  const kvm = vcpu.kvm;
  if (!page_fault_can_be_fast(kvm, fault)) return RET_PF_INVALID;
  const m = kvm.masks;
  let ret = RET_PF_INVALID;
  let spte_lo = 0;
  let spte_hi = 0;
  let retry_count = 0;
  for (;;) {
    if (!get_last_sptep(vcpu, fault.addr, fault.gfn)) {
      kvm.WARN_ON_ONCE(true, 'fast_page_fault without an SPTE to look at');
      break;
    }
    spte_lo = last.lo;
    spte_hi = last.hi;
    const sp = last.sp!;
    const level = sp.role & 0xf;
    if ((spte_lo & 0x800) === 0) break;
    if (!(level === 1 || (spte_lo & 0x80) !== 0)) break;
    if (is_access_allowed(m, fault, spte_lo, spte_hi)) {
      ret = RET_PF_SPURIOUS;
      break;
    }
    let new_lo = spte_lo;
    let new_hi = spte_hi;
    if (!m.kvm_ad_enabled && is_access_track_spte(m, spte_lo, spte_hi)) {
      restore_acc_track_spte(m, new_lo, new_hi, restored);
      new_lo = (restored.lo | m.shadow_accessed_mask.lo) >>> 0;
      new_hi = (restored.hi | m.shadow_accessed_mask.hi) >>> 0;
    }
    if (fault.write && is_mmu_writable_spte(m, spte_lo, spte_hi)) {
      new_lo = (new_lo | PT_WRITABLE_MASK) >>> 0;
      // A huge page stays read-only while its slot is dirty-logged: the slow path maps 4K instead.
      if (level > PG_LEVEL_4K && fault.slot !== null && kvm_slot_dirty_track_enabled(fault.slot)) break;
    }
    if ((new_lo === spte_lo && new_hi === spte_hi) || !is_access_allowed(m, fault, new_lo, new_hi)) break;
    if (fast_pf_fix_direct_spte(vcpu, fault, sp, last.index, spte_lo, spte_hi, new_lo, new_hi)) {
      ret = RET_PF_FIXED;
      break;
    }
    if (++retry_count > 4) break;
  }
  if (probes.armed) {
    probes.hit(PR_FAST_PF, { fault, sptep: last.sp ? last.sp.sptep_pa(last.index) : 0, old_spte: halvesToValue(spte_lo, spte_hi), new_spte: last.sp ? halvesToValue(last.sp.spt[last.index * 2]!, last.sp.spt[last.index * 2 + 1]!) : 0 });
  }
  if (trace.enabled) {
    const sp = last.sp;
    emitTracepoint('fast_page_fault', vcpu.vcpu_id, {
      vcpu_id: vcpu.vcpu_id, cr2_or_gpa: fault.addr, error_code: halvesToValue(fault.error_code_lo, fault.error_code_hi),
      sptep: sp ? sptep_va(sp, last.index) : 0, old_spte: halvesToValue(spte_lo, spte_hi),
      new_spte: sp ? halvesToValue(sp.spt[last.index * 2]!, sp.spt[last.index * 2 + 1]!) : 0, ret,
    });
  }
  if (ret !== RET_PF_INVALID) vcpu.stat.pf_fast++;
  return ret;
}

/** fast_pf_fix_direct_spte(): cmpxchg the SPTE; a W 0->1 transition logs the page dirty. */
function fast_pf_fix_direct_spte(vcpu: KvmVcpu, fault: kvm_page_fault, sp: KvmMmuPage, index: number, old_lo: number, old_hi: number, new_lo: number, new_hi: number): boolean {
  const j = index << 1;
  if (sp.spt[j] !== old_lo || sp.spt[j + 1] !== old_hi) return false;
  sp.spt[j] = new_lo;
  sp.spt[j + 1] = new_hi;
  if ((new_lo & PT_WRITABLE_MASK) !== 0 && (old_lo & PT_WRITABLE_MASK) === 0) mark_page_dirty_in_slot(vcpu.kvm, fault.slot, fault.gfn);
  return true;
}

/** mark_page_dirty_in_slot(): set the gfn's bit in the slot's dirty bitmap (dirty ring not modelled). */
export function mark_page_dirty_in_slot(_kvm: Kvm, slot: KvmMemorySlot | null, gfn: number): void {
  if (slot === null || !kvm_slot_dirty_track_enabled(slot) || slot.dirty_bitmap === undefined) return;
  dirty_bitmap_set(slot.dirty_bitmap, gfn - slot.base_gfn);
}

// ---------------------------------------------------------------------------------------------------
// faultin.

/** __kvm_mmu_faultin_pfn(): GUP on the slot's HVA (populated memory: never needs I/O). */
function __kvm_mmu_faultin_pfn(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  if (fault.is_private) return kvm_mmu_faultin_pfn_gmem(vcpu, fault);
  const slot = fault.slot!;
  const idx = fault.gfn - slot.base_gfn;
  if ((slot.flags & KVM_MEM_READONLY) !== 0 && fault.write) {
    fault.pfn = KVM_PFN_ERR_RO_FAULT;
    fault.map_writable = false;
    return RET_PF_CONTINUE;
  }
  if (slot.host_hwpoison.size !== 0 && slot.host_hwpoison.has(idx)) {
    fault.pfn = KVM_PFN_ERR_HWPOISON;
    return RET_PF_CONTINUE;
  }
  fault.pfn = slot_gfn_to_host_pfn(slot, fault.gfn);
  fault.map_writable = (slot.flags & KVM_MEM_READONLY) === 0;
  fault.refcounted_page = true;
  return RET_PF_CONTINUE;
}

/** kvm_handle_error_pfn(). */
function kvm_handle_error_pfn(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_ERROR_PFN, { fault });
  if (fault.pfn === KVM_PFN_ERR_SIGPENDING) return -EINTR;
  // A write to a read-only slot is emulated; the MMIO info is deliberately not cached.
  if (fault.pfn === KVM_PFN_ERR_RO_FAULT) return RET_PF_EMULATE;
  if (fault.pfn === KVM_PFN_ERR_HWPOISON) {
    vcpu.signals.push(`SIGBUS BUS_MCEERR_AR hva ${(fault.slot!.userspace_addr + (fault.gfn - fault.slot!.base_gfn) * 4096).toString(16)}`);
    return RET_PF_RETRY;
  }
  kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
  return -EFAULT;
}

/** vcpu_cache_mmio_info(). */
function vcpu_cache_mmio_info(vcpu: KvmVcpu, gva: number, gfn: number, access: number): void {
  vcpu.mmio_gva = gva - (gva % 4096);
  vcpu.mmio_access = access;
  vcpu.mmio_gfn = gfn;
  vcpu.mmio_gen = vcpu.kvm.kvm_memslots(vcpu.smm ? 1 : 0).generation;
}

/** kvm_handle_noslot_fault(). */
function kvm_handle_noslot_fault(vcpu: KvmVcpu, fault: kvm_page_fault, access: number): number {
  if (probes.armed) probes.hit(PR_NOSLOT, { fault });
  const kvm = vcpu.kvm;
  if (fault.is_private) {
    kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
    return -EFAULT;
  }
  vcpu_cache_mmio_info(vcpu, fault.is_tdp ? 0 : fault.addr, fault.gfn, access & kvm.masks.shadow_mmio_access_mask);
  fault.slot = null;
  fault.pfn = KVM_PFN_NOSLOT;
  fault.map_writable = false;
  if (!kvm.masks.enable_mmio_caching) return RET_PF_EMULATE;
  // Never an MMIO SPTE for a gfn beyond host MAXPHYADDR (only a nested guest could generate one).
  if (fault.gfn > kvm.kvm_mmu_max_gfn()) return RET_PF_EMULATE;
  return RET_PF_CONTINUE;
}

/** kvm_mmu_faultin_pfn(). */
export function kvm_mmu_faultin_pfn(vcpu: KvmVcpu, fault: kvm_page_fault, access: number): number {
  if (probes.armed) probes.hit(PR_FAULTIN, { fault });
  const kvm = vcpu.kvm;
  if (kvm.arch.gfn_direct_bits !== 0 && kvm.kvm_is_gfn_alias(fault.gfn) && kvm.KVM_BUG_ON(true, 'fault gfn still carries the shared bit')) return -EFAULT;
  fault.mmu_seq = kvm.mmu_invalidate_seq;
  if (fault.is_private !== kvm.kvm_mem_is_private(fault.gfn)) {
    kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
    return -EFAULT;
  }
  const slot = fault.slot;
  if (slot === null) return kvm_handle_noslot_fault(vcpu, fault, access);
  // A slot being deleted/moved: retry so its SPTEs are gone before anything new is installed; a
  // prefault (KVM_PRE_FAULT_MEMORY) gets -EAGAIN instead, it owes no forward progress.
  if ((slot.flags & KVM_MEMSLOT_INVALID) !== 0) return fault.prefetch ? -EAGAIN : RET_PF_RETRY;
  if (kvm.mmu_invalidate_in_progress !== 0 && fault.gfn >= kvm.mmu_invalidate_range_start && fault.gfn < kvm.mmu_invalidate_range_end) return RET_PF_RETRY;
  const ret = __kvm_mmu_faultin_pfn(vcpu, fault);
  if (ret !== RET_PF_CONTINUE) return ret;
  if (is_error_pfn(fault.pfn)) return kvm_handle_error_pfn(vcpu, fault);
  if (kvm.mmu_invalidate_in_progress !== 0 && fault.gfn >= kvm.mmu_invalidate_range_start && fault.gfn < kvm.mmu_invalidate_range_end) {
    kvm_mmu_finish_page_fault(vcpu, fault, RET_PF_RETRY);
    return RET_PF_RETRY;
  }
  return RET_PF_CONTINUE;
}

// ---------------------------------------------------------------------------------------------------
// Huge pages.

/** max_huge_page_level: the vendor's TDP huge page level. */
function max_huge_page_level(kvm: Kvm): number {
  return kvm.vendor.tdp_max_huge_level;
}

/** __kvm_mmu_max_mapping_level(). */
export function __kvm_mmu_max_mapping_level(kvm: Kvm, slot: KvmMemorySlot, gfn: number, max_level: number, is_private: boolean): number {
  // 4K-backed shared memory can only map 4K whatever lpage_info says (min with the host level).
  if (!is_private && slot.host_backing === '4k') return PG_LEVEL_4K;
  max_level = Math.min(max_level, max_huge_page_level(kvm));
  for (; max_level > PG_LEVEL_4K; max_level--) {
    if (lpage_info_slot(gfn, slot, max_level) === 0) break;
  }
  if (is_private) return max_level;
  if (max_level === PG_LEVEL_4K) return PG_LEVEL_4K;
  return Math.min(host_pfn_mapping_level(slot, gfn), max_level);
}

/**
 * kvm_mmu_max_mapping_level(): for collapse/recovery (no fault in hand). A private gfn is capped by what
 * guest_memfd holds there now (folio order, then the vendor: RMP entry size, TDX's 4K).
 */
export function kvm_mmu_max_mapping_level(kvm: Kvm, slot: KvmMemorySlot, gfn: number): number {
  const is_private = kvm_slot_has_gmem(slot) && kvm.kvm_mem_is_private(gfn);
  const max = is_private ? kvm_gmem_max_mapping_level(kvm, slot, gfn, true) : KVM_MAX_HUGEPAGE_LEVEL;
  return __kvm_mmu_max_mapping_level(kvm, slot, gfn, max, is_private);
}

/** kvm_mmu_hugepage_adjust(). */
export function kvm_mmu_hugepage_adjust(vcpu: KvmVcpu, fault: kvm_page_fault): void {
  if (probes.armed) probes.hit(PR_HUGEPAGE_ADJUST, { fault });
  const slot = fault.slot;
  fault.huge_page_disallowed = fault.exec && fault.nx_huge_page_workaround_enabled;
  if (fault.max_level === PG_LEVEL_4K) return;
  if (is_error_noslot_pfn(fault.pfn)) return;
  if (kvm_slot_dirty_track_enabled(slot!)) return;
  // req_level is what the mapping could be; the NX mitigation is applied after for exact accounting.
  fault.req_level = __kvm_mmu_max_mapping_level(vcpu.kvm, slot!, fault.gfn, fault.max_level, fault.is_private);
  if (fault.req_level === PG_LEVEL_4K || fault.huge_page_disallowed) return;
  fault.goal_level = fault.req_level;
  const per = PAGES[fault.goal_level]!;
  vcpu.kvm.KVM_BUG_ON(fault.gfn % per !== fault.pfn % per, 'gfn and pfn disagree within the huge page');
  fault.pfn -= fault.pfn % per;
}

/**
 * disallowed_hugepage_adjust(): at the goal level over a present table that exists only because of the
 * NX mitigation, go one level down and put the next 9 gfn bits back into the pfn.
 */
export function disallowed_hugepage_adjust(kvm: Kvm, fault: kvm_page_fault, spte_lo: number, spte_hi: number, cur_level: number): void {
  if (cur_level > PG_LEVEL_4K && cur_level === fault.goal_level && (spte_lo & 0x800) !== 0 && (spte_lo & 0x80) === 0) {
    const child = spte_to_child_sp(kvm.pool, spte_lo, spte_hi, cur_level);
    if (child !== null && child.nx_huge_page_disallowed) {
      if (probes.armed) probes.hit(PR_DISALLOWED, { fault, level: cur_level });
      const per = PAGES[cur_level]!;
      const lower = PAGES[cur_level - 1]!;
      fault.pfn += (fault.gfn % per) - (fault.gfn % lower);
      fault.goal_level--;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// MMIO SPTEs.

/** check_mmio_spte(): the SPTE's generation must match the memslots' (and no update in flight). */
function check_mmio_spte(vcpu: KvmVcpu, lo: number, hi: number): boolean {
  const kvm = vcpu.kvm;
  const kvm_gen = kvm.kvm_memslots(vcpu.smm ? 1 : 0).generation & MMIO_SPTE_GEN_MASK;
  const spte_gen = get_mmio_spte_generation(lo, hi);
  if (trace.enabled) emitTracepoint('check_mmio_spte', vcpu.vcpu_id, { spte: halvesToValue(lo, hi), kvm_gen, spte_gen });
  return kvm_gen === spte_gen;
}

/** handle_mmio_page_fault(). */
export function handle_mmio_page_fault(vcpu: KvmVcpu, addr: number, direct: boolean): number {
  if (probes.armed) probes.hit(PR_MMIO_PF, { addr });
  const kvm = vcpu.kvm;
  const gfn = Math.floor(addr / 4096);
  // mmio_info_in_cache(): by gpa for a direct MMU, by page-aligned gva for shadow paging.
  if (vcpu.mmio_gen === kvm.kvm_memslots(vcpu.smm ? 1 : 0).generation) {
    if (direct ? vcpu.mmio_gfn > 0 && vcpu.mmio_gfn === gfn : vcpu.mmio_gva !== 0 && vcpu.mmio_gva === addr - (addr % 4096)) return RET_PF_EMULATE;
  }
  // get_mmio_spte(): the last SPTE on the current root's path (kvm_tdp_mmu_get_walk or get_walk), without allocating.
  if (!get_last_sptep(vcpu, addr, gfn)) return RET_PF_RETRY;
  const s = last;
  if (is_mmio_spte(kvm.masks, s.lo, s.hi, kvm.arch.shadow_mmio_value)) {
    const mgfn = get_mmio_spte_gfn(kvm.masks, s.lo, s.hi);
    const access = get_mmio_spte_access(kvm.masks, s.lo, s.hi);
    if (!check_mmio_spte(vcpu, s.lo, s.hi)) return RET_PF_INVALID;
    if (trace.enabled) emitTracepoint('handle_mmio_page_fault', vcpu.vcpu_id, { addr: direct ? 0 : addr, gfn: mgfn, access });
    vcpu_cache_mmio_info(vcpu, direct ? 0 : addr, mgfn, access);
    return RET_PF_EMULATE;
  }
  // The SPTE was zapped meanwhile: let the guest fault again.
  return RET_PF_RETRY;
}

/** kvm_mmu_invalidate_mmio_sptes(): on a memslot generation wrap every MMIO SPTE could alias, so zap all. */
export function kvm_mmu_invalidate_mmio_sptes(kvm: Kvm, gen: number): void {
  let g = gen & MMIO_SPTE_GEN_MASK;
  // The low bits select the address space: those must not count towards a wrap.
  g -= g % kvm.nr_as_ids;
  if (g === 0) kvm_mmu_zap_all_fast(kvm);
}

// ---------------------------------------------------------------------------------------------------
// Invalidation and zapping.

/** kvm_mmu_zap_all_fast(). */
export function kvm_mmu_zap_all_fast(kvm: Kvm): void {
  if (probes.armed) probes.hit(PR_ZAP_ALL_FAST, { mmu_valid_gen: kvm.arch.mmu_valid_gen });
  if (trace.enabled) emitTracepoint('kvm_mmu_zap_all_fast', kvm.cur_vcpu, { mmu_valid_gen: kvm.arch.mmu_valid_gen, mmu_used_pages: kvm.arch.n_used_mmu_pages });
  kvm.arch.mmu_valid_gen = kvm.arch.mmu_valid_gen ? 0 : 1;
  // Mirror (S-EPT) roots can't be rebuilt transparently: only direct roots are invalidated.
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_invalidate_roots(kvm, KVM_DIRECT_ROOTS);
  kvm.kvm_make_all_cpus_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS);
  // kvm_zap_obsolete_pages(): shadow pages only; the TDP MMU has none on active_mmu_pages.
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_zap_invalidated_roots(kvm, true);
}

/** kvm_zap_gfn_range(). */
export function kvm_zap_gfn_range(kvm: Kvm, gfn_start: number, gfn_end: number): void {
  if (probes.armed) probes.hit(PR_ZAP_GFN_RANGE, { start: gfn_start, end: gfn_end });
  if (gfn_start >= gfn_end) return;
  kvm.kvm_mmu_invalidate_begin();
  kvm.kvm_mmu_invalidate_range_add(gfn_start, gfn_end);
  let flush = false;
  if (kvm.params.tdp_mmu) flush = kvm_tdp_mmu_zap_leafs(kvm, gfn_start, gfn_end, flush);
  if (flush) kvm.kvm_flush_remote_tlbs_range(gfn_start, gfn_end - gfn_start);
  kvm.kvm_mmu_invalidate_end();
}

/** kvm_unmap_gfn_range(): returns whether a TLB flush is needed. */
export function kvm_unmap_gfn_range(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number, attr_filter: number, may_block = true): boolean {
  if (probes.armed) probes.hit(PR_UNMAP_GFN_RANGE, { slot: slot.id, start, end, attr_filter });
  let flush = false;
  if (kvm.params.tdp_mmu) flush = kvm_tdp_mmu_unmap_gfn_range(kvm, slot.as_id, start, end, attr_filter, may_block, flush);
  return flush;
}

/** kvm_mmu_zap_memslot(): zap just the slot's range (used when the SLOT_ZAP_ALL quirk is off). */
function kvm_mmu_zap_memslot(kvm: Kvm, slot: KvmMemorySlot): void {
  const flush = kvm_unmap_gfn_range(kvm, slot, slot.base_gfn, slot.base_gfn + slot.npages, KVM_FILTER_PRIVATE | KVM_FILTER_SHARED, true);
  if (flush) kvm.kvm_flush_remote_tlbs();
}

/** kvm_arch_flush_shadow_memslot(). */
export function kvm_arch_flush_shadow_memslot(kvm: Kvm, slot: KvmMemorySlot): void {
  if (kvm.vm_type === KVM_X86_DEFAULT_VM && kvm.quirk_slot_zap_all) kvm_mmu_zap_all_fast(kvm);
  else kvm_mmu_zap_memslot(kvm, slot);
}

/** kvm_arch_commit_memory_region(): the MMU reacts to dirty-logging flag changes. */
function kvm_arch_commit_memory_region(kvm: Kvm, old: KvmMemorySlot | undefined, neu: KvmMemorySlot | undefined, change: KvmMrChange, old_flags: number): void {
  kvm_mmu_slot_apply_flags(kvm, old, neu, change, old_flags);
}

// ---------------------------------------------------------------------------------------------------
// mmu_notifier (virt/kvm/kvm_main.c) for host-side changes to the memory behind an HVA range.

interface HvaGfnRange {
  slot: KvmMemorySlot;
  start: number;
  end: number;
}

/** The gfn ranges of every slot overlapping [hva_start, hva_end). */
export function hva_range_to_gfn_ranges(kvm: Kvm, hva_start: number, hva_end: number): HvaGfnRange[] {
  const res: HvaGfnRange[] = [];
  for (const slots of kvm.memslots) {
    for (const slot of slots.slots) {
      const s_start = slot.userspace_addr;
      const s_end = s_start + slot.npages * 4096;
      const a = Math.max(hva_start, s_start);
      const b = Math.min(hva_end, s_end);
      if (a >= b) continue;
      res.push({ slot, start: slot.base_gfn + Math.floor((a - s_start) / 4096), end: slot.base_gfn + Math.ceil((b - s_start) / 4096) });
    }
  }
  return res;
}

/** kvm_mmu_notifier_invalidate_range_start(): begin the invalidation and zap the shared mappings. */
export function kvm_mmu_notifier_invalidate_range_start(kvm: Kvm, hva_start: number, hva_end: number, may_block = true): void {
  if (probes.armed) probes.hit(PR_NOTIFIER, { start: hva_start, end: hva_end });
  if (trace.enabled) emitTracepoint('kvm_unmap_hva_range', kvm.cur_vcpu, { start: hva_start, end: hva_end });
  let flush = false;
  let locked = false;
  // Only ranges that hit a memslot take mmu_lock and count as an invalidation (start and end agree).
  for (const r of hva_range_to_gfn_ranges(kvm, hva_start, hva_end)) {
    if (!locked) {
      kvm.kvm_mmu_invalidate_begin();
      locked = true;
    }
    // kvm_mmu_unmap_gfn_range: record the range so in-flight faults on it retry, then zap.
    kvm.kvm_mmu_invalidate_range_add(r.start, r.end);
    flush = kvm_unmap_gfn_range(kvm, r.slot, r.start, r.end, KVM_FILTER_SHARED, may_block) || flush;
  }
  if (flush) kvm.kvm_flush_remote_tlbs();
}

/** kvm_mmu_notifier_invalidate_range_end(). */
export function kvm_mmu_notifier_invalidate_range_end(kvm: Kvm, hva_start: number, hva_end: number): void {
  if (hva_range_to_gfn_ranges(kvm, hva_start, hva_end).length !== 0) kvm.kvm_mmu_invalidate_end();
}

const PR_AGE_GFN = defineProbe('kvm_age_gfn', 'aging', F, 'clear_young / clear_flush_young: clear Accessed on the range, report if any was young', ['slot', 'start', 'end']);
const PR_TEST_AGE_GFN = defineProbe('kvm_test_age_gfn', 'aging', F, 'test_young: is any page of the range young?', ['slot', 'start', 'end']);

/** kvm_age_gfn() for one slot range (TDP MMU part; shadow rmaps belong to the shadow MMU). */
export function kvm_age_gfn(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number): boolean {
  if (probes.armed) probes.hit(PR_AGE_GFN, { slot: slot.id, start, end });
  if (!kvm.params.tdp_mmu) return false;
  return __kvm_tdp_mmu_age_gfn_range(kvm, slot.as_id, start, end, KVM_FILTER_SHARED, false);
}

/** kvm_test_age_gfn(). */
export function kvm_test_age_gfn(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number): boolean {
  if (probes.armed) probes.hit(PR_TEST_AGE_GFN, { slot: slot.id, start, end });
  if (!kvm.params.tdp_mmu) return false;
  return __kvm_tdp_mmu_age_gfn_range(kvm, slot.as_id, start, end, KVM_FILTER_SHARED, true);
}

export { kvm_mmu_page_as_id };

// ---------------------------------------------------------------------------------------------------
// KVM_PRE_FAULT_MEMORY.

const PR_TDP_MAP_PAGE = defineProbe('kvm_tdp_map_page', 'fault', F, 'map one GPA ahead of the guest (prefetch fault, retried until done)', ['gpa', 'error_code']);
export { EOPNOTSUPP, ENOENT };

/** kvm_tdp_map_page(): a prefetch fault retried until it is not RET_PF_RETRY; 0 or -errno, level out. */
export function kvm_tdp_map_page(vcpu: KvmVcpu, gpa: number, err_lo: number, err_hi: number, level: { value: number }): number {
  if (probes.armed) probes.hit(PR_TDP_MAP_PAGE, { gpa, error_code: halvesToValue(err_lo, err_hi) });
  let r: number;
  let spins = 0;
  do {
    r = kvm_mmu_do_page_fault(vcpu, gpa, err_lo, err_hi, true);
    level.value = vcpu.fault.goal_level;
    // The kernel would spin (with cond_resched and signal checks); the model cannot make progress here.
    if (r === RET_PF_RETRY && ++spins > 16) return -EINTR;
  } while (r === RET_PF_RETRY);
  if (r < 0) return r;
  if (r === RET_PF_FIXED || r === RET_PF_SPURIOUS || r === RET_PF_WRITE_PROTECTED) return 0;
  if (r === RET_PF_EMULATE) return -ENOENT;
  return -EIO;
}

/**
 * kvm_arch_vcpu_pre_fault_memory(): map the page holding `gpa`; returns the bytes covered (up to the end
 * of the mapping's page, at most `size`) or -errno.
 */
export function kvm_arch_vcpu_pre_fault_memory(vcpu: KvmVcpu, gpa: number, size: number): number {
  const kvm = vcpu.kvm;
  if (!kvm.pre_fault_allowed) return -EOPNOTSUPP;
  if (kvm.kvm_is_gfn_alias(Math.floor(gpa / 4096))) return -EINVAL;
  const r0 = kvm_mmu_reload(vcpu);
  if (r0) return r0;
  let err_hi = PFERR_GUEST_FINAL_MASK_HI;
  let direct = 0;
  if (kvm.arch.has_private_mem && kvm.kvm_mem_is_private(Math.floor(gpa / 4096))) err_hi |= PFERR_PRIVATE_ACCESS_HI;
  else direct = kvm.arch.gfn_direct_bits * 4096;
  const level = { value: PG_LEVEL_4K };
  const prev = kvm.cur_vcpu;
  kvm.cur_vcpu = vcpu.vcpu_id;
  let r: number;
  try {
    r = kvm_tdp_map_page(vcpu, gpa + direct, 0, err_hi, level);
  } finally {
    kvm.cur_vcpu = prev;
  }
  if (r < 0) return r;
  const hsize = PAGES[level.value]! * 4096;
  const end = gpa - (gpa % hsize) + hsize;
  return Math.min(size, end - gpa);
}
