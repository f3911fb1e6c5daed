/**
 * CR3 loads, CR4 PCIDE/PGE changes and INVPCID under shadow paging (x86.c's kvm_set_cr3,
 * kvm_invalidate_pcid, kvm_post_set_cr4 and kvm_handle_invpcid; mmu.c's kvm_mmu_invpcid_gva), plus
 * the part of vcpu_enter_guest that services the requests they raise. With PCIDs the root cache
 * (prev_roots) is keyed on the full CR3, PCID included, so which cached roots survive depends on the
 * PCID a flush names.
 */
import { probes, defineProbe } from '../probes';
import { KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_REQ_TLB_FLUSH } from './vm';
import { ShadowVcpu, KVM_REQ_MMU_SYNC, ROOT_INVALID } from './shadow_mmu';
import {
  kvm_mmu_free_roots, kvm_mmu_free_obsolete_roots, kvm_mmu_new_pgd, kvm_mmu_sync_roots, kvm_mmu_sync_prev_roots,
  KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS, KVM_MMU_ROOTS_ALL, KVM_REQ_LOAD_MMU_PGD,
} from './shadow_roots';

export { KVM_REQ_LOAD_MMU_PGD };
import { kvm_mmu_invalidate_addr } from './shadow_paging';

const X = 'arch/x86/kvm/x86.c';
const M = 'arch/x86/kvm/mmu/mmu.c';
const PR_SET_CR3 = defineProbe('kvm_set_cr3', 'roots', X, 'MOV to CR3: strip the PCID no-flush bit, switch roots (kvm_mmu_new_pgd), flush the PCID unless told not to', ['cr3', 'noflush']);
const PR_INVALIDATE_PCID = defineProbe('kvm_invalidate_pcid', 'roots', X, 'flush one PCID: sync the current root if it is that PCID, free prev_roots with that PCID (PCIDE=1 only)', ['pcid']);
const PR_INVPCID = defineProbe('kvm_handle_invpcid', 'roots', X, 'INVPCID: individual address, single context, or all contexts', ['type', 'pcid', 'gla']);
const PR_INVPCID_GVA = defineProbe('kvm_mmu_invpcid_gva', 'roots', M, 'INVPCID of one address: resync it under the roots whose CR3 carries the PCID', ['gva', 'pcid']);
const PR_POST_SET_CR4 = defineProbe('kvm_post_set_cr4', 'roots', X, 'after a CR4 write: PCIDE 0->1 unloads every root; PGE toggle or PCIDE 1->0 flushes all PCIDs', ['old_cr4', 'cr4']);

export const X86_CR4_PGE = 1 << 7;
export const X86_CR4_PAE = 1 << 5;
export const X86_CR4_SMEP = 1 << 20;
export const X86_CR4_PCIDE = 1 << 17;
/** CR3 bits 11:0 are the PCID when CR4.PCIDE=1. */
export const X86_CR3_PCID_MASK = 0xfff;
/** CR3 bit 63 (bit 31 of the high half): MOV to CR3 without flushing the PCID. */
export const X86_CR3_PCID_NOFLUSH_HI = 0x8000_0000;

/** vCPU requests raised here (bits distinct from vm.ts's and KVM_REQ_MMU_SYNC). */
export const KVM_REQ_TLB_FLUSH_CURRENT = 1 << 9;
export const KVM_REQ_TLB_FLUSH_GUEST = 1 << 10;

export const INVPCID_TYPE_INDIV_ADDR = 0;
export const INVPCID_TYPE_SINGLE_CTXT = 1;
export const INVPCID_TYPE_ALL_INCL_GLOBAL = 2;
export const INVPCID_TYPE_ALL_NON_GLOBAL = 3;

/** The control-register state x86.c reads (vcpu->arch.cr3 without bit 63, cr4). */
export interface ShadowCrState {
  cr3: number;
  cr4: number;
}

/** kvm_get_pcid(): the PCID in a CR3 value, 0 when CR4.PCIDE=0. */
export function kvm_get_pcid(cr4: number, cr3: number): number {
  return (cr4 & X86_CR4_PCIDE) !== 0 ? cr3 % 4096 & X86_CR3_PCID_MASK : 0;
}

/** kvm_get_active_pcid(). */
export function kvm_get_active_pcid(cr: ShadowCrState): number {
  return kvm_get_pcid(cr.cr4, cr.cr3);
}

/**
 * kvm_invalidate_pcid(): a flush of `pcid` syncs the current root on the next entry if it runs that
 * PCID; with PCIDE=1 it also frees the prev_roots whose CR3 carries it. With PCIDE=0 the prev roots
 * stay (every MOV CR3 flushes, so switching back to one syncs it then).
 */
export function kvm_invalidate_pcid(sv: ShadowVcpu, cr: ShadowCrState, pcid: number): void {
  if (probes.armed) probes.hit(PR_INVALIDATE_PCID, { pcid });
  if (kvm_get_active_pcid(cr) === pcid) sv.requests |= KVM_REQ_MMU_SYNC | KVM_REQ_TLB_FLUSH_CURRENT;
  if ((cr.cr4 & X86_CR4_PCIDE) === 0) return;
  let roots_to_free = 0;
  for (let i = 0; i < sv.prev_roots.length; i++) if (kvm_get_pcid(cr.cr4, sv.prev_roots[i]!.pgd) === pcid) roots_to_free |= KVM_MMU_ROOT_PREVIOUS(i);
  kvm_mmu_free_roots(sv, roots_to_free);
}

/** Hooks into the vCPU for kvm_set_cr3: the guest MAXPHYADDR and the PAE PDPTR load from the new CR3. */
export interface SetCr3Env {
  maxphyaddr: number;
  /** is_pae_paging(). */
  pae: boolean;
  /** load_pdptrs(vcpu, cr3): false leaves the old PDPTRs and fails the load (#GP). */
  load_pdptrs(cr3: number): boolean;
}

/**
 * kvm_set_cr3(): `lo`/`hi` are the 64-bit source operand. Returns 0, or 1 for #GP (reserved bits or
 * bad PDPTEs). The same CR3 again only flushes (PAE guests reload their PDPTRs anyway); a new one goes
 * through kvm_mmu_new_pgd, which keeps a cached root for that exact CR3 value.
 */
export function kvm_set_cr3(sv: ShadowVcpu, cr: ShadowCrState, env: SetCr3Env, lo: number, hi: number): number {
  let skip_tlb_flush = false;
  let pcid = 0;
  hi >>>= 0;
  lo >>>= 0;
  if ((cr.cr4 & X86_CR4_PCIDE) !== 0) {
    skip_tlb_flush = (hi & X86_CR3_PCID_NOFLUSH_HI) !== 0;
    hi = (hi & ~X86_CR3_PCID_NOFLUSH_HI) >>> 0;
    pcid = lo & X86_CR3_PCID_MASK;
  }
  const cr3 = hi * 0x1_0000_0000 + lo;
  if (probes.armed) probes.hit(PR_SET_CR3, { cr3, noflush: skip_tlb_flush });
  if (cr3 !== cr.cr3 || env.pae) {
    // kvm_vcpu_is_legal_cr3(): nothing at or above the guest MAXPHYADDR (bit 63 is reserved with PCIDE=0).
    if (Math.floor(cr3 / 2 ** env.maxphyaddr) !== 0) return 1;
    if (env.pae && !env.load_pdptrs(cr3)) return 1;
    if (cr3 !== cr.cr3) kvm_mmu_new_pgd(sv, cr3);
    cr.cr3 = cr3;
  }
  if (!skip_tlb_flush) kvm_invalidate_pcid(sv, cr, pcid);
  return 0;
}

/**
 * kvm_post_set_cr4() for bits that keep the CPU role (a role change resets the MMU context first):
 * PCIDE 0->1 frees every root, since a later no-flush MOV CR3 could pick up a prev root cached before
 * PCIDs meant anything; a PGE toggle or PCIDE 1->0 flushes all PCIDs; SMEP 0->1 or a PAE toggle flushes
 * the current one.
 */
export function kvm_post_set_cr4(sv: ShadowVcpu, old_cr4: number, cr4: number): void {
  if (probes.armed) probes.hit(PR_POST_SET_CR4, { old_cr4, cr4 });
  const changed = old_cr4 ^ cr4;
  if ((cr4 & X86_CR4_PCIDE) !== 0 && (old_cr4 & X86_CR4_PCIDE) === 0) kvm_mmu_free_roots(sv, KVM_MMU_ROOTS_ALL);
  if ((changed & X86_CR4_PGE) !== 0 || ((cr4 & X86_CR4_PCIDE) === 0 && (old_cr4 & X86_CR4_PCIDE) !== 0)) sv.requests |= KVM_REQ_TLB_FLUSH_GUEST;
  else if (((changed & X86_CR4_SMEP) !== 0 && (cr4 & X86_CR4_SMEP) !== 0) || (changed & X86_CR4_PAE) !== 0) sv.requests |= KVM_REQ_TLB_FLUSH_CURRENT;
}

/** kvm_mmu_invpcid_gva(): the current root and the prev roots whose CR3 carries `pcid`. */
export function kvm_mmu_invpcid_gva(sv: ShadowVcpu, cr: ShadowCrState, gva: number, pcid: number): void {
  if (probes.armed) probes.hit(PR_INVPCID_GVA, { gva, pcid });
  let roots = 0;
  if (pcid === kvm_get_active_pcid(cr)) roots |= KVM_MMU_ROOT_CURRENT;
  for (let i = 0; i < sv.prev_roots.length; i++) {
    const p = sv.prev_roots[i]!;
    if (p.sp !== null && pcid === kvm_get_pcid(cr.cr4, p.pgd)) roots |= KVM_MMU_ROOT_PREVIOUS(i);
  }
  if (roots !== 0) kvm_mmu_invalidate_addr(sv, gva, roots);
  sv.vcpu.stat.invlpg++;
}

/** is_noncanonical_invlpg_address() for a 48-bit (or 57-bit with LA57) virtual address space. */
function is_noncanonical(gla_lo: number, gla_hi: number, la57: boolean): boolean {
  const bits = la57 ? 57 : 48;
  // Bits 63..bits-1 must all equal bit bits-1.
  const top = gla_hi >> (bits - 1 - 32);
  return top !== 0 && top !== -1;
}

/**
 * kvm_handle_invpcid() after the descriptor read: `pcid` is the descriptor's first quadword (as halves),
 * `gla` its second. Returns 'gp' when the guest gets #GP, else 'ok'.
 */
export function kvm_handle_invpcid(sv: ShadowVcpu, cr: ShadowCrState, type: number, pcid_lo: number, pcid_hi: number, gla_lo: number, gla_hi: number, la57: boolean): 'ok' | 'gp' {
  if (probes.armed) probes.hit(PR_INVPCID, { type, pcid: pcid_hi * 0x1_0000_0000 + (pcid_lo >>> 0), gla: gla_hi * 0x1_0000_0000 + (gla_lo >>> 0) });
  if (pcid_hi !== 0 || pcid_lo >>> 12 !== 0) return 'gp';
  const pcid = pcid_lo & X86_CR3_PCID_MASK;
  const pcid_enabled = (cr.cr4 & X86_CR4_PCIDE) !== 0;
  switch (type) {
    case INVPCID_TYPE_INDIV_ADDR:
      if ((!pcid_enabled && pcid !== 0) || is_noncanonical(gla_lo, gla_hi, la57)) return 'gp';
      kvm_mmu_invpcid_gva(sv, cr, (gla_hi >>> 0) * 0x1_0000_0000 + (gla_lo >>> 0), pcid);
      return 'ok';
    case INVPCID_TYPE_SINGLE_CTXT:
      if (!pcid_enabled && pcid !== 0) return 'gp';
      kvm_invalidate_pcid(sv, cr, pcid);
      return 'ok';
    case INVPCID_TYPE_ALL_NON_GLOBAL:
    // Shadow pages do not track global mappings: a non-global flush is a full one.
    case INVPCID_TYPE_ALL_INCL_GLOBAL:
      sv.requests |= KVM_REQ_TLB_FLUSH_GUEST;
      return 'ok';
    default:
      return 'gp';
  }
}

/** kvm_vcpu_flush_tlb_guest() with TDP off: a guest-wide flush forces a sync of every root. */
export function kvm_vcpu_flush_tlb_guest(sv: ShadowVcpu): void {
  sv.vcpu.stat.tlb_flush++;
  kvm_mmu_sync_roots(sv);
  kvm_mmu_sync_prev_roots(sv);
}

/**
 * The MMU part of vcpu_enter_guest's request service, in the kernel's order: free obsolete roots, sync
 * roots, load the (cached) root's pgd, then the local TLB flushes. kvm_mmu_reload comes after.
 */
export function shadow_service_requests(sv: ShadowVcpu): void {
  if (sv.requests === 0) return;
  const take = (bit: number): boolean => {
    if ((sv.requests & bit) === 0) return false;
    sv.requests &= ~bit;
    return true;
  };
  if (take(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)) kvm_mmu_free_obsolete_roots(sv);
  if (take(KVM_REQ_MMU_SYNC) && sv.root_kind !== ROOT_INVALID) kvm_mmu_sync_roots(sv);
  take(KVM_REQ_LOAD_MMU_PGD);
  if (take(KVM_REQ_TLB_FLUSH)) sv.vcpu.stat.tlb_flush++;
  take(KVM_REQ_TLB_FLUSH_CURRENT);
  if (take(KVM_REQ_TLB_FLUSH_GUEST)) kvm_vcpu_flush_tlb_guest(sv);
}
