/**
 * struct kvm_vcpu for the x86 MMU: the vCPU's kvm_mmu (root role, current root and TDX mirror root),
 * its statistics, pending requests, the MMIO info cache and the exit it last reported to userspace.
 * `kvm_page_fault` is the kernel's per-fault struct (mmu_internal.h); each vCPU reuses one.
 */
import type { KvmMemorySlot } from './memslot';
import type { KvmMmuPage } from './mmu_page';
import { KvmVcpuStat } from './stats';
import type { Kvm } from './vm';

/** KVM_PFN_ERR_* and KVM_PFN_NOSLOT, as negative sentinels (real pfns are below 2^40). */
export const KVM_PFN_ERR_FAULT = -1;
export const KVM_PFN_ERR_HWPOISON = -2;
export const KVM_PFN_ERR_RO_FAULT = -3;
export const KVM_PFN_ERR_SIGPENDING = -4;
export const KVM_PFN_ERR_NEEDS_IO = -5;
export const KVM_PFN_NOSLOT = -16;

/** The kernel's 64-bit kvm_pfn_t of a model pfn (error and noslot sentinels mapped back), as halves. */
export function kvm_pfn_halves(pfn: number, out: { lo: number; hi: number }): void {
  if (pfn >= 0) {
    out.lo = pfn % 0x1_0000_0000;
    out.hi = Math.floor(pfn / 0x1_0000_0000);
  } else if (pfn === KVM_PFN_NOSLOT) {
    out.lo = 0;
    out.hi = 0x8000_0000; // KVM_PFN_NOSLOT = BIT_ULL(63)
  } else {
    out.lo = -pfn - 1; // KVM_PFN_ERR_MASK (0x7ff << 52) + n
    out.hi = 0x7ff0_0000;
  }
}

export function is_error_pfn(pfn: number): boolean {
  return pfn < 0 && pfn !== KVM_PFN_NOSLOT;
}

export function is_noslot_pfn(pfn: number): boolean {
  return pfn === KVM_PFN_NOSLOT;
}

export function is_error_noslot_pfn(pfn: number): boolean {
  return pfn < 0;
}

export const KVM_EXIT_MEMORY_FAULT = 39;
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

/** struct kvm_page_fault. */
export class kvm_page_fault {
  addr = 0;
  /** 64-bit error code as halves. */
  error_code_lo = 0;
  error_code_hi = 0;
  prefetch = false;
  exec = false;
  write = false;
  present = false;
  rsvd = false;
  user = false;
  is_tdp = true;
  is_private = false;
  nx_huge_page_workaround_enabled = false;
  huge_page_disallowed = false;
  max_level = 3;
  req_level = 1;
  goal_level = 1;
  /** gfn with the TDX shared bit stripped. */
  gfn = 0;
  slot: KvmMemorySlot | null = null;
  mmu_seq = 0;
  pfn = KVM_PFN_ERR_FAULT;
  refcounted_page = false;
  map_writable = false;
  write_fault_to_shadow_pgtable = false;

  /** A plain copy for views and the debugger's variables pane. */
  snapshot(): Record<string, unknown> {
    return {
      addr: this.addr, error_code: (this.error_code_hi * 0x1_0000_0000 + this.error_code_lo), prefetch: this.prefetch,
      exec: this.exec, write: this.write, present: this.present, rsvd: this.rsvd, user: this.user, is_tdp: this.is_tdp,
      is_private: this.is_private, nx_huge_page_workaround_enabled: this.nx_huge_page_workaround_enabled,
      huge_page_disallowed: this.huge_page_disallowed, max_level: this.max_level, req_level: this.req_level,
      goal_level: this.goal_level, gfn: this.gfn, slot: this.slot ? this.slot.id : null, mmu_seq: this.mmu_seq,
      pfn: this.pfn, refcounted_page: this.refcounted_page, map_writable: this.map_writable,
      write_fault_to_shadow_pgtable: this.write_fault_to_shadow_pgtable,
    };
  }
}

/** vcpu->arch.mmu. */
export class KvmMmu {
  /** root_role.word. */
  root_role = 0;
  /** root.hpa as the TDP MMU's root SP (null = INVALID_PAGE). */
  root: KvmMmuPage | null = null;
  /** mirror_root_hpa (TDX). */
  mirror_root: KvmMmuPage | null = null;
  /**
   * mmu->page_fault, picked when the MMU is initialised: kvm_tdp_page_fault (mmu.ts kvm_init_mmu), or the
   * shadow MMU's nonpaging/paging32/paging64 handler (shadow_paging.ts). kvm_mmu_do_page_fault calls it.
   */
  page_fault: ((vcpu: KvmVcpu, fault: kvm_page_fault) => number) | null = null;
  /** VALID_PAGE(root.hpa). The shadow MMU, whose roots can be special (PAE, pml4) roots, installs its own. */
  root_hpa_valid: () => boolean = () => this.root !== null;
  /** root_to_sp(root.hpa): the root's shadow page, or null for a special root (or none). */
  root_to_sp: () => KvmMmuPage | null = () => this.root;
}

export interface MemoryFaultExit {
  exit_reason: number;
  flags: number;
  gpa: number;
  size: number;
}

export class KvmVcpu {
  readonly kvm: Kvm;
  readonly vcpu_id: number;
  readonly stat = new KvmVcpuStat();
  readonly mmu = new KvmMmu();
  readonly fault = new kvm_page_fault();
  requests = 0;
  /** is_smm(vcpu). */
  smm = false;
  /** Guest MAXPHYADDR from this vCPU's CPUID (0 = the VM default). */
  guest_maxphyaddr = 0;
  /** kvm_vcpu_has_run(): KVM_RUN was entered at least once. */
  has_run = false;
  /** Guest RIP reported by kvm_page_fault. */
  rip = 0xfff0;
  /** vcpu->arch.mmio_gva / mmio_gfn / mmio_access / mmio_gen (the MMIO info cache). */
  mmio_gva = 0;
  mmio_gfn = -1;
  mmio_access = 0;
  mmio_gen = 0;
  /** RET_PF_* (or -errno) and a one-word outcome of the last kvm_mmu_page_fault. */
  last_ret_pf = 0;
  last_outcome = '';
  /** kvm_mmu_write_protect_fault's "same address as last time" check. */
  last_write_protect_gpa = -1;
  /** kvm_run exit set by the MMU (memory fault), or null. */
  run_exit: MemoryFaultExit | null = null;
  /** Signals/hwpoison the MMU raised for this vCPU (model of send_sig_mceerr etc.). */
  readonly signals: string[] = [];
  /**
   * Model hook: runs after kvm_mmu_faultin_pfn and before mmu_lock is taken, i.e. where another thread's
   * mmu_notifier invalidation can race with the fault. Tests and scenarios use it to make faults stale.
   */
  on_faultin_done: ((vcpu: KvmVcpu) => void) | null = null;

  constructor(kvm: Kvm, vcpu_id: number) {
    this.kvm = kvm;
    this.vcpu_id = vcpu_id;
  }
}
