/**
 * Shadow-MMU roots (mmu.c): mmu_alloc_root, mmu_alloc_direct_roots / mmu_alloc_shadow_roots with the
 * special PAE root (a host page below 4 GiB holding four PDPTEs) or, under design variant
 * `pae_root=shadow_page` (seed 002), a PAE-root shadow page; kvm_mmu_load / reload / free_roots,
 * kvm_mmu_sync_roots and the CR3 root cache (kvm_mmu_new_pgd / fast_pgd_switch).
 */
import { probes, defineProbe } from '../probes';
import { __GFP_DMA32 } from '../mem/host_memory';
import type { KvmMmuPage } from './mmu_page';
import { KVM_REQ_MMU_FREE_OBSOLETE_ROOTS } from './vm';
import { is_obsolete_sp } from './mmu';
import { PT_PRESENT_MASK, PT_ACCESSED_MASK, PT_WRITABLE_MASK, PT_USER_MASK, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI } from './spte';
import { ROLE_DIRECT, ROLE_LEVEL_MASK, ROLE_QUADRANT_MASK, ROLE_QUADRANT_SHIFT, ROLE_HAS_4_BYTE_GPTE, PT32_ROOT_LEVEL, PT32E_ROOT_LEVEL } from './role';
import {
  ShadowVcpu,
  ROOT_INVALID,
  ROOT_SP,
  ROOT_PAE,
  ROOT_PML4,
  ROOT_PML5,
  ROOT_DUMMY,
  ROLE_PAE_ROOT,
  kvm_mmu_get_shadow_page,
  kvm_mmu_prepare_zap_page,
  kvm_mmu_commit_zap_page,
  mmu_sync_children,
  make_mmu_pages_available,
  drop_parent_pte,
  spte_to_child_sp,
  pfn_pa_lo,
  pfn_pa_hi,
} from './shadow_mmu';

const F = 'arch/x86/kvm/mmu/mmu.c';
const PR_ALLOC_ROOT = defineProbe('mmu_alloc_root', 'roots', F, 'root shadow page for (gfn, quadrant, level); takes a root_count reference', ['gfn', 'quadrant', 'level']);
const PR_ALLOC_DIRECT = defineProbe('mmu_alloc_direct_roots', 'roots', F, 'direct roots for CR0.PG=0 shadow paging: four PAE roots or one 4/5-level root', ['level']);
const PR_ALLOC_SHADOW = defineProbe('mmu_alloc_shadow_roots', 'roots', F, 'roots shadowing the guest CR3 (one root, or four PAE roots from the PDPTEs / quadrants)', ['pgd', 'level']);
// Defined by mmu.ts (same kernel functions, shared with the TDP MMU): hit by name.
const PR_LOAD = 'kvm_mmu_load';
const PR_FREE_ROOTS = 'kvm_mmu_free_roots';
const PR_SYNC_ROOTS = defineProbe('kvm_mmu_sync_roots', 'roots', F, 'sync unsync pages below the current root(s)', ['level']);
const PR_SPECIAL_ROOTS = defineProbe('mmu_alloc_special_roots', 'roots', F, 'pae_root/pml4_root/pml5_root for a 4/5-level host root over a < 4-level guest', ['level']);
const PR_NEW_PGD = defineProbe('kvm_mmu_new_pgd', 'roots', F, 'CR3 load: switch to a cached root or drop the current one', ['new_pgd']);

export const KVM_MMU_ROOT_CURRENT = 1 << 0;
export const KVM_MMU_ROOT_PREVIOUS = (i: number): number => 1 << (1 + i);
export const KVM_MMU_ROOTS_ALL = 0xf;
/** vCPU request: point the hardware at the root fast_pgd_switch made current (bit distinct from vm.ts's). */
export const KVM_REQ_LOAD_MMU_PGD = 1 << 11;
/** INVALID_PAE_ROOT. */
export const INVALID_PAE_ROOT = 0;

/** __kvm_mmu_create: the vCPU's pae_root page, below 4 GiB (a 32-bit CR3 must reach it). */
export function mmu_alloc_pae_root_page(sv: ShadowVcpu): void {
  if (sv.pae_root_pfn >= 0) return;
  const pfn = sv.sk.host.alloc_page(__GFP_DMA32);
  sv.sk.counters.dma32_pages++;
  sv.pae_root_pfn = pfn;
  sv.pae_root = sv.sk.host.page(pfn);
  sv.pae_root.fill(0);
}

/** mmu_topup_pae_root_cache() (variant `shadow_page`): keep one zeroed DMA32 page for the next PAE root SP. */
export function mmu_topup_pae_root_cache(sv: ShadowVcpu): void {
  if (sv.sk.pae_root_variant !== 'shadow_page' || sv.root_level !== PT32E_ROOT_LEVEL) return;
  if (sv.mmu_pae_root_cache >= 0) return;
  sv.mmu_pae_root_cache = sv.sk.host.alloc_page(__GFP_DMA32);
  sv.sk.counters.dma32_pages++;
}

/** mmu_alloc_root(): root_role with level/quadrant, then get the SP and ++root_count. */
export function mmu_alloc_root(sv: ShadowVcpu, gfn: number, quadrant: number, level: number, extra_role = 0): KvmMmuPage {
  if (probes.armed) probes.hit(PR_ALLOC_ROOT, { gfn, quadrant, level });
  let role = (sv.root_role & ~ROLE_LEVEL_MASK & ~ROLE_QUADRANT_MASK) | level | (quadrant << ROLE_QUADRANT_SHIFT) | extra_role;
  role >>>= 0;
  const sp = kvm_mmu_get_shadow_page(sv, gfn, role);
  sp.root_count++;
  return sp;
}

function set_root_sp(sv: ShadowVcpu, sp: KvmMmuPage): void {
  sv.root_kind = ROOT_SP;
  sv.root_sp = sp;
  sv.vcpu.mmu.root = sp;
}

/** mmu_alloc_direct_roots() for the shadow MMU (TDP off, CR0.PG=0). */
export function mmu_alloc_direct_roots(sv: ShadowVcpu): number {
  const level = sv.root_level;
  if (probes.armed) probes.hit(PR_ALLOC_DIRECT, { level });
  const r = make_mmu_pages_available(sv);
  if (r !== 0) return r;
  if (level >= 4) {
    set_root_sp(sv, mmu_alloc_root(sv, 0, 0, level));
  } else if (level === PT32E_ROOT_LEVEL) {
    if (sv.sk.pae_root_variant === 'shadow_page') {
      set_root_sp(sv, mmu_alloc_root(sv, 0, 0, PT32E_ROOT_LEVEL, ROLE_PAE_ROOT));
    } else {
      mmu_alloc_pae_root_page(sv);
      const t = sv.pae_root!;
      for (let i = 0; i < 4; i++) {
        const root = mmu_alloc_root(sv, i * 2 ** 18, 0, PT32_ROOT_LEVEL);
        t[2 * i] = (pfn_pa_lo(root.spt_pfn) | PT_PRESENT_MASK | sv.sk.masks.shadow_me_value.lo) >>> 0;
        t[2 * i + 1] = (pfn_pa_hi(root.spt_pfn) | sv.sk.masks.shadow_me_value.hi) >>> 0;
      }
      sv.root_kind = ROOT_PAE;
      sv.root_sp = null;
      sv.vcpu.mmu.root = null;
    }
  } else {
    throw new Error(`bad shadow root level ${level}`);
  }
  sv.root_pgd = 0;
  return 0;
}

/** kvm_vcpu_is_visible_gfn(): a memslot backs the gfn (and it is not being deleted). */
function kvm_vcpu_is_visible_gfn(sv: ShadowVcpu, gfn: number): boolean {
  const slot = sv.sk.kvm.kvm_memslots(sv.vcpu.smm ? 1 : 0).lookup(gfn);
  return slot !== undefined && (slot.flags & (1 << 16)) === 0;
}

/**
 * Variant `shadow_page`: a reused PAE-root shadow page keeps the PDPTE links of the last load; a link
 * whose child no longer matches the guest's PDPTR goes back to the default PDPTE (drop_parent_pte).
 */
function pae_root_sp_revalidate(sv: ShadowVcpu, root: KvmMmuPage, two_level: boolean, cr3_gfn: number): void {
  const sk = sv.sk;
  for (let i = 0; i < 4; i++) {
    const lo = root.spt[2 * i]!;
    const hi = root.spt[2 * i + 1]!;
    if ((lo & 0x800) === 0) continue;
    const child = spte_to_child_sp(sk, lo, hi);
    if (child === null) continue;
    let want = -1;
    if (two_level) want = cr3_gfn;
    else if ((sv.pdptrs[2 * i]! & PT_PRESENT_MASK) !== 0) want = Math.floor(sv.pdptrs[2 * i]! / 4096) + (sv.pdptrs[2 * i + 1]! & 0xfffff) * 0x10_0000;
    if (child.gfn !== want) drop_parent_pte(sk, child, root.spt_pfn * 512 + i);
  }
}

/** mmu->get_pdptr for i = 0..3 into mmu->pdptrs; a PDPTR whose gfn isn't visible counts as 0. */
function load_pdptrs(sv: ShadowVcpu): void {
  const out = new Uint32Array(2);
  for (let i = 0; i < 4; i++) {
    sv.src!.get_pdptr(i, out);
    let lo = out[0]!;
    let hi = out[1]!;
    if ((lo & PT_PRESENT_MASK) !== 0) {
      const gfn = Math.floor(lo / 4096) + (hi & 0xfffff) * 0x10_0000;
      if (!kvm_vcpu_is_visible_gfn(sv, gfn)) {
        lo = 0;
        hi = 0;
      }
    }
    sv.pdptrs[2 * i] = lo;
    sv.pdptrs[2 * i + 1] = hi;
  }
}

/** mmu_alloc_shadow_roots(). */
export function mmu_alloc_shadow_roots(sv: ShadowVcpu): number {
  const sk = sv.sk;
  const pgd = new Uint32Array(2);
  sv.src!.get_guest_pgd(pgd);
  const pgd_val = pgd[0]! + (pgd[1]! & 0xfffff) * 0x1_0000_0000;
  const cpu_level = sv.cpu_level;
  if (probes.armed) probes.hit(PR_ALLOC_SHADOW, { pgd: pgd_val, level: cpu_level });
  const root_gfn = Math.floor(pgd_val / 4096);
  sv.root_pgd = pgd_val;
  if (!kvm_vcpu_is_visible_gfn(sv, root_gfn)) {
    // kvm_mmu_get_dummy_root(): the zero page; every fault re-checks and retries.
    sv.root_kind = ROOT_DUMMY;
    sv.root_sp = null;
    sv.vcpu.mmu.root = null;
    return 0;
  }
  if (cpu_level === PT32E_ROOT_LEVEL) load_pdptrs(sv);
  sk.shadow_root_allocated = true;
  const r = make_mmu_pages_available(sv);
  if (r !== 0) return r;
  if (cpu_level >= 4) {
    set_root_sp(sv, mmu_alloc_root(sv, root_gfn, 0, sv.root_level));
    return 0;
  }
  const two_level = (sv.root_role & ROLE_HAS_4_BYTE_GPTE) !== 0;
  if (sk.pae_root_variant === 'shadow_page') {
    mmu_topup_pae_root_cache(sv);
    const root = mmu_alloc_root(sv, root_gfn, 0, PT32E_ROOT_LEVEL, ROLE_PAE_ROOT);
    pae_root_sp_revalidate(sv, root, two_level, root_gfn);
    set_root_sp(sv, root);
    return 0;
  }
  mmu_alloc_pae_root_page(sv);
  const t = sv.pae_root!;
  const me = sk.masks.shadow_me_value;
  let pm_lo = PT_PRESENT_MASK | me.lo;
  if (sv.root_level >= 4) pm_lo |= PT_ACCESSED_MASK | PT_WRITABLE_MASK | PT_USER_MASK;
  for (let i = 0; i < 4; i++) {
    let gfn = root_gfn;
    if (cpu_level === PT32E_ROOT_LEVEL) {
      const lo = sv.pdptrs[2 * i]!;
      if ((lo & PT_PRESENT_MASK) === 0) {
        t[2 * i] = INVALID_PAE_ROOT;
        t[2 * i + 1] = 0;
        continue;
      }
      gfn = Math.floor(lo / 4096) + (sv.pdptrs[2 * i + 1]! & 0xfffff) * 0x10_0000;
    }
    const quadrant = cpu_level === PT32_ROOT_LEVEL ? i : 0;
    const root = mmu_alloc_root(sv, gfn, quadrant, PT32_ROOT_LEVEL);
    t[2 * i] = (pfn_pa_lo(root.spt_pfn) | pm_lo) >>> 0;
    t[2 * i + 1] = (pfn_pa_hi(root.spt_pfn) | me.hi) >>> 0;
  }
  if (sv.root_level >= 4) {
    // pml4_root[0] -> pae_root, pml5_root[0] -> pml4_root, with the same P|A|W|U|me mask.
    const p4 = sv.pml4_root!;
    p4[0] = (pfn_pa_lo(sv.pae_root_pfn) | pm_lo) >>> 0;
    p4[1] = (pfn_pa_hi(sv.pae_root_pfn) | me.hi) >>> 0;
    if (sv.root_level === 5) {
      const p5 = sv.pml5_root!;
      p5[0] = (pfn_pa_lo(sv.pml4_root_pfn) | pm_lo) >>> 0;
      p5[1] = (pfn_pa_hi(sv.pml4_root_pfn) | me.hi) >>> 0;
    }
  }
  sv.root_kind = sv.root_level === 5 ? ROOT_PML5 : sv.root_level === 4 ? ROOT_PML4 : ROOT_PAE;
  sv.root_sp = null;
  sv.vcpu.mmu.root = null;
  return 0;
}

/**
 * mmu_alloc_special_roots(): only for an indirect MMU whose host root level is 4/5 over a guest of
 * level < 4 (shadow NPT of a 32-bit/PAE L1). pae_root, pml4_root and pml5_root come from normal
 * memory here, allocated once.
 */
export function mmu_alloc_special_roots(sv: ShadowVcpu): void {
  if (sv.direct || sv.cpu_level >= 4 || sv.root_level < 4) return;
  if (probes.armed) probes.hit(PR_SPECIAL_ROOTS, { level: sv.root_level });
  const host = sv.sk.host;
  if (sv.pae_root_pfn < 0) {
    sv.pae_root_pfn = host.alloc_page(0);
    sv.pae_root = host.page(sv.pae_root_pfn);
    sv.pae_root.fill(0);
  }
  if (sv.pml4_root_pfn < 0) {
    sv.pml4_root_pfn = host.alloc_page(0);
    sv.pml4_root = host.page(sv.pml4_root_pfn);
    sv.pml4_root.fill(0);
  }
  if (sv.root_level === 5 && sv.pml5_root_pfn < 0) {
    sv.pml5_root_pfn = host.alloc_page(0);
    sv.pml5_root = host.page(sv.pml5_root_pfn);
    sv.pml5_root.fill(0);
  }
}

/** kvm_mmu_load(). */
export function kvm_mmu_load(sv: ShadowVcpu): number {
  if (probes.armed) probes.hit(PR_LOAD, { role: sv.root_role });
  sv.sk.counters.root_loads++;
  mmu_topup_pae_root_cache(sv);
  mmu_alloc_special_roots(sv);
  const r = sv.direct ? mmu_alloc_direct_roots(sv) : mmu_alloc_shadow_roots(sv);
  if (r !== 0) return r;
  kvm_mmu_sync_roots(sv);
  // kvm_mmu_load_pgd + flush_tlb_current.
  sv.vcpu.stat.tlb_flush++;
  return 0;
}

/** is_obsolete_root(): roots without a shadow page (special PAE roots, dummy roots) always count as obsolete. */
function is_obsolete_root(sv: ShadowVcpu): boolean {
  if (sv.root_kind === ROOT_DUMMY) return true;
  if (sv.root_kind !== ROOT_SP) return true;
  return is_obsolete_sp(sv.sk.kvm, sv.root_sp!);
}

/** kvm_mmu_free_obsolete_roots() (current root; prev roots are freed when obsolete too). */
export function kvm_mmu_free_obsolete_roots(sv: ShadowVcpu): void {
  let roots = 0;
  if (sv.root_kind !== ROOT_INVALID && is_obsolete_root(sv)) roots |= KVM_MMU_ROOT_CURRENT;
  for (let i = 0; i < 3; i++) {
    const p = sv.prev_roots[i]!;
    if (p.sp !== null && is_obsolete_sp(sv.sk.kvm, p.sp)) roots |= KVM_MMU_ROOT_PREVIOUS(i);
  }
  if (roots !== 0) kvm_mmu_free_roots(sv, roots);
}

/** kvm_mmu_reload(). */
export function kvm_mmu_reload(sv: ShadowVcpu): number {
  if ((sv.requests & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS) !== 0) {
    sv.requests &= ~KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
    kvm_mmu_free_obsolete_roots(sv);
  }
  if (sv.root_kind !== ROOT_INVALID) return 0;
  return kvm_mmu_load(sv);
}

/** mmu_free_root_page(): drop one root reference; an invalid root with no users is zapped. */
function mmu_free_root_page(sv: ShadowVcpu, sp: KvmMmuPage | null, invalid_list: KvmMmuPage[]): void {
  if (sp === null) return;
  sp.root_count--;
  if (sp.root_count === 0 && (sp.role & 0x800) !== 0) kvm_mmu_prepare_zap_page(sv.sk, sp, invalid_list);
}

/** kvm_mmu_free_roots(). */
export function kvm_mmu_free_roots(sv: ShadowVcpu, roots_to_free: number): void {
  if (probes.armed) probes.hit(PR_FREE_ROOTS, { roots: roots_to_free });
  const sk = sv.sk;
  const invalid_list: KvmMmuPage[] = [];
  for (let i = 0; i < 3; i++) {
    if ((roots_to_free & KVM_MMU_ROOT_PREVIOUS(i)) === 0) continue;
    const p = sv.prev_roots[i]!;
    mmu_free_root_page(sv, p.sp, invalid_list);
    p.sp = null;
    p.pgd = 0;
  }
  if ((roots_to_free & KVM_MMU_ROOT_CURRENT) !== 0 && sv.root_kind !== ROOT_INVALID) {
    if (sv.root_kind === ROOT_SP) {
      mmu_free_root_page(sv, sv.root_sp, invalid_list);
    } else if (sv.root_kind !== ROOT_DUMMY) {
      const t = sv.pae_root!;
      for (let i = 0; i < 4; i++) {
        const lo = t[2 * i]!;
        if ((lo & PT_PRESENT_MASK) === 0) continue;
        mmu_free_root_page(sv, spte_to_child_sp(sk, lo, t[2 * i + 1]!), invalid_list);
        t[2 * i] = INVALID_PAE_ROOT;
        t[2 * i + 1] = 0;
      }
    }
    sv.root_kind = ROOT_INVALID;
    sv.root_sp = null;
    sv.root_pgd = 0;
    sv.vcpu.mmu.root = null;
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
}

function is_unsync_root(sp: KvmMmuPage | null): boolean {
  return sp !== null && (sp.unsync || sp.unsync_children !== 0);
}

/** kvm_mmu_sync_roots(). */
export function kvm_mmu_sync_roots(sv: ShadowVcpu): void {
  if (sv.direct || sv.root_kind === ROOT_INVALID || sv.root_kind === ROOT_DUMMY) return;
  if (probes.armed) probes.hit(PR_SYNC_ROOTS, { level: sv.root_level });
  if (sv.root_kind === ROOT_SP) {
    if (!is_unsync_root(sv.root_sp)) return;
    mmu_sync_children(sv, sv.root_sp!, true);
    return;
  }
  const t = sv.pae_root!;
  for (let i = 0; i < 4; i++) {
    const lo = t[2 * i]!;
    if ((lo & PT_PRESENT_MASK) === 0) continue;
    const sp = spte_to_child_sp(sv.sk, lo, t[2 * i + 1]!);
    if (sp !== null && is_unsync_root(sp)) mmu_sync_children(sv, sp, true);
  }
}

/** kvm_mmu_sync_prev_roots(): unsync prev roots are synced by freeing them. */
export function kvm_mmu_sync_prev_roots(sv: ShadowVcpu): void {
  let roots_to_free = 0;
  for (let i = 0; i < 3; i++) if (is_unsync_root(sv.prev_roots[i]!.sp)) roots_to_free |= KVM_MMU_ROOT_PREVIOUS(i);
  kvm_mmu_free_roots(sv, roots_to_free);
}

function is_root_usable(sv: ShadowVcpu, pgd: number, sp: KvmMmuPage | null, new_pgd: number, new_role: number): boolean {
  if (sp === null) return false;
  if ((new_role & ROLE_DIRECT) === 0 && pgd !== new_pgd) return false;
  return new_role === (sp.role & ~ROLE_PAE_ROOT) >>> 0 || new_role === sp.role;
}

/** fast_pgd_switch(): MRU rotation over current + prev_roots. */
function fast_pgd_switch(sv: ShadowVcpu, new_pgd: number, new_role: number): boolean {
  if (sv.root_kind !== ROOT_INVALID && sv.root_kind !== ROOT_SP) kvm_mmu_free_roots(sv, KVM_MMU_ROOT_CURRENT);
  if (sv.root_kind === ROOT_SP) {
    if (is_root_usable(sv, sv.root_pgd, sv.root_sp, new_pgd, new_role)) return true;
    for (let i = 0; i < 3; i++) {
      const p = sv.prev_roots[i]!;
      const sp = p.sp;
      const pgd = p.pgd;
      p.sp = sv.root_sp;
      p.pgd = sv.root_pgd;
      sv.root_sp = sp;
      sv.root_pgd = pgd;
      if (is_root_usable(sv, pgd, sp, new_pgd, new_role)) {
        sv.vcpu.mmu.root = sp;
        return true;
      }
    }
    // The rotation left the oldest root current: free it.
    if (sv.root_sp === null) sv.root_kind = ROOT_INVALID;
    kvm_mmu_free_roots(sv, KVM_MMU_ROOT_CURRENT);
    return false;
  }
  for (let i = 0; i < 3; i++) {
    const p = sv.prev_roots[i]!;
    if (!is_root_usable(sv, p.pgd, p.sp, new_pgd, new_role)) continue;
    sv.root_kind = ROOT_SP;
    sv.root_sp = p.sp;
    sv.root_pgd = p.pgd;
    sv.vcpu.mmu.root = p.sp;
    for (; i < 2; i++) {
      sv.prev_roots[i]!.sp = sv.prev_roots[i + 1]!.sp;
      sv.prev_roots[i]!.pgd = sv.prev_roots[i + 1]!.pgd;
    }
    sv.prev_roots[2]!.sp = null;
    sv.prev_roots[2]!.pgd = 0;
    return true;
  }
  return false;
}

/**
 * kvm_mmu_new_pgd() (__kvm_mmu_new_pgd): on a hit the cached root becomes current (KVM_REQ_LOAD_MMU_PGD);
 * otherwise the current root is freed and the next kvm_mmu_reload builds one.
 */
export function kvm_mmu_new_pgd(sv: ShadowVcpu, new_pgd: number): boolean {
  if (probes.armed) probes.hit(PR_NEW_PGD, { new_pgd });
  if (!fast_pgd_switch(sv, new_pgd, sv.root_role)) {
    kvm_mmu_free_roots(sv, KVM_MMU_ROOT_CURRENT);
    return false;
  }
  sv.requests |= KVM_REQ_LOAD_MMU_PGD;
  const root = sv.root_sp;
  if (!sv.direct && root !== null) {
    root.write_flooding_count = 0;
    // Variant `shadow_page`: a cached PAE-root SP is only as good as its PDPTE links.
    if ((root.role & ROLE_PAE_ROOT) !== 0) {
      if (sv.cpu_level === PT32E_ROOT_LEVEL) load_pdptrs(sv);
      pae_root_sp_revalidate(sv, root, (sv.root_role & ROLE_HAS_4_BYTE_GPTE) !== 0, Math.floor(new_pgd / 4096));
    }
  }
  return true;
}

/**
 * x86.c load_pdptrs() found new PDPTEs. Upstream, with TDP off, the current root is freed so the next
 * entry rebuilds the PAE root from them. Variant `shadow_page` keeps its PAE-root shadow page and
 * revalidates the links instead, as it does when a cached root is reused.
 */
export function kvm_mmu_pdptrs_changed(sv: ShadowVcpu, same_pgd: boolean): void {
  const root = sv.root_sp;
  if (sv.root_kind === ROOT_SP && root !== null && (root.role & ROLE_PAE_ROOT) !== 0) {
    // A new CR3 moves this root to prev_roots (kvm_mmu_new_pgd), revalidated if it is ever reused.
    if (!same_pgd) return;
    load_pdptrs(sv);
    pae_root_sp_revalidate(sv, root, (sv.root_role & ROLE_HAS_4_BYTE_GPTE) !== 0, Math.floor(sv.root_pgd / 4096));
    return;
  }
  kvm_mmu_free_roots(sv, KVM_MMU_ROOT_CURRENT);
}

/** The four PAE root entries (special root or PAE-root shadow page), for views and tests. */
export function pae_root_entries(sv: ShadowVcpu): Array<{ lo: number; hi: number }> {
  const t = sv.root_kind === ROOT_SP && (sv.root_sp!.role & ROLE_PAE_ROOT) !== 0 ? sv.root_sp!.spt : sv.pae_root;
  const out: Array<{ lo: number; hi: number }> = [];
  for (let i = 0; i < 4; i++) out.push(t === null ? { lo: SHADOW_NONPRESENT_VALUE_LO, hi: SHADOW_NONPRESENT_VALUE_HI } : { lo: t[2 * i]!, hi: t[2 * i + 1]! });
  return out;
}

/** Host pfn holding the PAE PDPTEs (what CR3 would point at), or -1. */
export function pae_root_pfn(sv: ShadowVcpu): number {
  if (sv.root_kind === ROOT_SP && (sv.root_sp!.role & ROLE_PAE_ROOT) !== 0) return sv.root_sp!.spt_pfn;
  return sv.root_kind === ROOT_PAE ? sv.pae_root_pfn : -1;
}
