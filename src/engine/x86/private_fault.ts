/**
 * The private-memory part of the x86 fault path (arch/x86/kvm/mmu/mmu.c): resolving a private gfn
 * through guest_memfd (kvm_mmu_faultin_pfn_gmem), the level cap for private mappings (folio order,
 * then the vendor's cap: SEV-SNP's RMP entry size, TDX's 4K), and KVM_EXIT_MEMORY_FAULT.
 *
 * The fault and vCPU are structural so that the TDP fault path (mmu.ts) can hand its own
 * `kvm_page_fault` and `KvmVcpu` objects straight in.
 */
import { defineProbe, probes } from '../probes';
import {
  EFAULT, KVM_X86_TDX_VM, kvm_private_ctx, kvm_private_mem_init, kvm_slot_has_gmem, type PrivateMemKvm, type PrivateMemMmuHooks,
} from '../kvm/attributes';
import { kvm_gmem_get_pfn, kvm_gmem_mapping_order, type GmemPfn } from '../kvm/guest_memfd';
import { KVM_MEM_READONLY, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, type KvmMemorySlot } from './memslot';
import { PFERR_PRIVATE_ACCESS_BIT, PFERR_PRIVATE_ACCESS_HI } from './pferr';
import { RET_PF_CONTINUE } from './ret_pf';

import { KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE } from './vcpu';

export { PFERR_PRIVATE_ACCESS_BIT, PFERR_PRIVATE_ACCESS_HI, KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE };

/** The kvm_page_fault fields the private path reads and writes. */
export interface PrivateFault {
  addr: number;
  gfn: number;
  slot: KvmMemorySlot | null;
  is_private: boolean;
  write: boolean;
  exec: boolean;
  max_level: number;
  pfn: number;
  refcounted_page: boolean;
  map_writable: boolean;
  nx_huge_page_workaround_enabled?: boolean;
}

/** kvm_run's memory_fault exit as the vCPU reports it. */
export interface MemoryFaultExitInfo {
  exit_reason: number;
  flags: number;
  gpa: number;
  size: number;
}

/** The vCPU fields the private path uses. */
export interface PrivateVcpu {
  readonly kvm: PrivateMemKvm;
  readonly vcpu_id: number;
  run_exit: MemoryFaultExitInfo | null;
}

const F = 'arch/x86/kvm/mmu/mmu.c';
// 6.18's name (the snapshot sheet's kvm_mmu_faultin_pfn_private): it also serves gmem-only shared slots.
const PR_FAULTIN_GMEM = defineProbe(
  'kvm_mmu_faultin_pfn_gmem', 'private', F, 'resolve a private gfn through guest_memfd and cap the mapping level', ['gfn', 'slot', 'max_level'],
);
const PR_MEMORY_FAULT_EXIT = defineProbe(
  'kvm_mmu_prepare_memory_fault_exit', 'private', F, 'KVM_EXIT_MEMORY_FAULT: userspace must convert or back the gfn', ['flags', 'gpa', 'size'],
);

/** kvm_max_level_for_order(): the largest page a folio of this order can back. */
export function kvm_max_level_for_order(order: number): number {
  if (order >= 18) return PG_LEVEL_1G;
  if (order >= 9) return PG_LEVEL_2M;
  return PG_LEVEL_4K;
}

/** The vendor's gmem_max_mapping_level (0 = no cap). TDX maps private memory at 4K only. */
export function kvm_x86_gmem_max_mapping_level(kvm: PrivateMemKvm, pfn: number, is_private: boolean): number {
  const arch = kvm_private_ctx(kvm).arch;
  if (arch !== null) {
    const cap = arch.gmem_max_mapping_level;
    return cap(kvm, pfn, is_private);
  }
  return kvm.vm_type === KVM_X86_TDX_VM && is_private ? PG_LEVEL_4K : 0;
}

/**
 * kvm_max_private_mapping_level(): min(max_level, the folio order's level), then the vendor cap if it
 * gives one (for SEV-SNP: the NPT leaf is never larger than the page's RMP entry).
 */
export function kvm_max_private_mapping_level(kvm: PrivateMemKvm, pfn: number, max_level: number, max_order: number): number {
  max_level = Math.min(kvm_max_level_for_order(max_order), max_level);
  if (max_level === PG_LEVEL_4K) return PG_LEVEL_4K;
  const req = kvm_x86_gmem_max_mapping_level(kvm, pfn, true);
  if (req !== 0) max_level = Math.min(max_level, req);
  return max_level;
}

const pfn1 = [0];

/**
 * kvm_gmem_max_mapping_level() outside a fault (huge page recovery, collapse): the level of the folio
 * mapped at gfn now, capped by the vendor for that pfn. 4K when nothing is allocated there.
 */
export function kvm_gmem_max_mapping_level(kvm: PrivateMemKvm, slot: KvmMemorySlot, gfn: number, is_private: boolean): number {
  const order = kvm_gmem_mapping_order(kvm, slot, gfn, pfn1);
  let level = kvm_max_level_for_order(order);
  if (level === PG_LEVEL_4K || pfn1[0]! < 0) return PG_LEVEL_4K;
  const req = kvm_x86_gmem_max_mapping_level(kvm, pfn1[0]!, is_private);
  if (req !== 0) level = Math.min(level, req);
  return level;
}

/**
 * kvm_prepare_memory_fault_exit(): the exit names the range and, of the access flags, only PRIVATE
 * (read/write/exec flags are not reported to userspace).
 */
export function kvm_prepare_memory_fault_exit(vcpu: PrivateVcpu, gpa: number, size: number, is_write: boolean, is_exec: boolean, is_private: boolean): void {
  void is_write;
  void is_exec;
  vcpu.run_exit = { exit_reason: KVM_EXIT_MEMORY_FAULT, flags: is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0, gpa, size };
}

/** kvm_mmu_prepare_memory_fault_exit(): the fault's 4K page. */
export function kvm_mmu_prepare_memory_fault_exit(vcpu: PrivateVcpu, fault: PrivateFault): void {
  const gpa = fault.gfn * 4096;
  if (probes.armed) probes.hit(PR_MEMORY_FAULT_EXIT, { flags: fault.is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0, gpa, size: 4096 });
  kvm_prepare_memory_fault_exit(vcpu, gpa, 4096, fault.write, fault.exec, fault.is_private);
}

const gp: GmemPfn = { pfn: 0, max_order: 0 };

/**
 * kvm_mmu_faultin_pfn_gmem(): a slot without guest_memfd, or a guest_memfd lookup error, becomes a
 * memory-fault exit (returning -EFAULT / the lookup's -errno). Otherwise the pfn comes from guest_memfd,
 * the mapping is writable unless the slot is read-only, and max_level is capped by the folio order and
 * the vendor. In the `on_fault` design variant the RMP conversion hook runs here, before the cap.
 */
export function kvm_mmu_faultin_pfn_gmem(vcpu: PrivateVcpu, fault: PrivateFault): number {
  if (probes.armed) probes.hit(PR_FAULTIN_GMEM, { gfn: fault.gfn, slot: fault.slot ? fault.slot.id : null, max_level: fault.max_level });
  const kvm = vcpu.kvm;
  const slot = fault.slot;
  if (!kvm_slot_has_gmem(slot)) {
    kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
    return -EFAULT;
  }
  const r = kvm_gmem_get_pfn(kvm, slot!, fault.gfn, gp);
  if (r !== 0) {
    kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
    return r;
  }
  fault.pfn = gp.pfn;
  fault.refcounted_page = true;
  const ctx = kvm_private_ctx(kvm);
  const prepare = ctx.fault_prepare;
  if (ctx.gmem_prepare_variant === 'on_fault' && prepare !== null) {
    const rc = prepare(kvm, slot!, fault, gp.max_order);
    if (rc !== 0) {
      kvm_mmu_prepare_memory_fault_exit(vcpu, fault);
      return rc;
    }
  }
  fault.map_writable = (slot!.flags & KVM_MEM_READONLY) === 0;
  fault.max_level = kvm_max_private_mapping_level(kvm, fault.pfn, fault.max_level, gp.max_order);
  return RET_PF_CONTINUE;
}

/**
 * Wire the private-memory model into a VM of the engine's TDP MMU: the attribute, guest_memfd and SEV-SNP
 * code zap through the MMU's entry points (pass mmu.ts's kvm_unmap_gfn_range and kvm_zap_gfn_range
 * themselves, not wrappers, so each appears once on the KVM call stack). Taking the MMU functions as an
 * argument keeps this module free of imports from mmu.ts (which calls kvm_mmu_faultin_pfn_gmem here).
 */
export function kvm_x86_private_mem_init(kvm: PrivateMemKvm, mmu: PrivateMemMmuHooks): void {
  kvm_private_mem_init(kvm, mmu);
}

/** Whether an error code (halves) carries PFERR_PRIVATE_ACCESS (bit 49). */
export function pferr_is_private(err_hi: number): boolean {
  return (err_hi & PFERR_PRIVATE_ACCESS_HI) !== 0;
}

export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G };
