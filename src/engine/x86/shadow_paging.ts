/**
 * Shadow paging fault path (paging_tmpl.h instantiated as paging64 / paging32, and mmu.c's
 * nonpaging/direct path for CR0.PG=0): FNAME(page_fault), FNAME(fetch), FNAME(sync_spte),
 * FNAME(pte_prefetch), direct_map, plus guest page-table writes (kvm_mmu_track_write) and INVLPG.
 *
 * The kernel-named functions are thin per-mode wrappers around one template body each, as the C
 * template is instantiated once per PTTYPE.
 */
import { probes, defineProbe } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint } from '../tracepoints/index';
import type { KvmMmuPage } from './mmu_page';
import type { kvm_page_fault, KvmVcpu } from './vcpu';
import {
  kvm_mmu_faultin_pfn, kvm_mmu_hugepage_adjust, disallowed_hugepage_adjust, kvm_mmu_finish_page_fault, is_obsolete_sp, is_page_fault_stale,
  page_fault_handle_page_track, fast_page_fault, register_shadow_mmu_fault_hooks, kvm_tdp_page_fault,
} from './mmu';
import { walk_addr_generic, PTTYPE_32, PTTYPE_64, type PtType, GuestWalker, MemoryGuestPageTables } from './paging_tmpl';
import { __is_rsvd_bits_set } from './guest_pte';
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  PG_LEVEL_4K,
  PT_WRITABLE_MASK,
  PT_USER_MASK,
  PT_DIRTY_MASK,
  PT_ACCESSED_MASK,
  is_shadow_present_pte,
  is_last_spte,
  is_mmio_spte,
  spte_to_pfn,
  make_spte,
  SHADOW_NONPRESENT_VALUE_HI,
  SHADOW_NONPRESENT_VALUE_LO,
  KVM_PAGES_PER_HPAGE,
} from './spte';
import { ROLE_ACCESS_SHIFT, ROLE_AD_DISABLED, ROLE_DIRECT, ROLE_HAS_4_BYTE_GPTE, ROLE_LEVEL_MASK, ROLE_QUADRANT_MASK, ROLE_QUADRANT_SHIFT, PT32_ROOT_LEVEL, PT32E_ROOT_LEVEL } from './role';
import { PFERR_RSVD_MASK } from './pferr';
import { RET_PF_CONTINUE, RET_PF_INVALID, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from './ret_pf';
import { KVM_REQ_MMU_FREE_OBSOLETE_ROOTS } from './vm';
import {
  ShadowVcpu,
  ShadowWalkIterator,
  ROOT_DUMMY,
  ROOT_INVALID,
  ROOT_SP,
  PTE_PREFETCH_NUM,
  shadow_walk_init,
  shadow_walk_init_using_root,
  shadow_walk_okay,
  shadow_walk_next,
  sptep_to_sp,
  kvm_mmu_get_child_sp,
  link_shadow_page,
  validate_direct_spte,
  mmu_set_spte,
  mmu_sync_children,
  make_mmu_pages_available,
  direct_pte_prefetch,
  __direct_pte_prefetch,
  drop_spte,
  gfn_to_memslot_dirty_bitmap,
  kvm_mmu_page_get_gfn,
  kvm_mmu_page_get_access,
  kvm_mmu_page_set_access,
  kvm_mmu_prepare_zap_page,
  kvm_mmu_commit_zap_page,
  kvm_page_table_hashfn,
  sp_has_gptes,
  mmu_spte_update,
  mmu_spte_clear_no_track,
  kvm_flush_remote_tlbs_gfn,
  kvm_mmu_unprotect_page,
  drop_parent_pte,
  shadow_vcpu_of,
} from './shadow_mmu';
import { slot_gfn_to_host_pfn } from './memslot';
import { KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS, KVM_MMU_ROOTS_ALL } from './shadow_roots';

const T = 'arch/x86/kvm/mmu/paging_tmpl.h';
const F = 'arch/x86/kvm/mmu/mmu.c';
const PR_P64_PF = defineProbe('paging64_page_fault', 'shadow_mmu', T, 'shadow paging fault (8-byte gPTEs): walk the guest tables, then fetch', ['fault']);
const PR_P32_PF = defineProbe('paging32_page_fault', 'shadow_mmu', T, 'shadow paging fault (4-byte gPTEs): walk the guest tables, then fetch', ['fault']);
const PR_P64_FETCH = defineProbe('paging64_fetch', 'shadow_mmu', T, 'build indirect shadow pages down to the guest leaf level, then direct ones, then the leaf', ['fault', 'gw_level']);
const PR_P32_FETCH = defineProbe('paging32_fetch', 'shadow_mmu', T, 'FNAME(fetch) for 4-byte gPTEs', ['fault', 'gw_level']);
const PR_P64_SYNC = defineProbe('paging64_sync_spte', 'shadow_mmu', T, 're-read one gPTE of an unsync page and update or drop its SPTE', ['sp', 'i']);
const PR_P32_SYNC = defineProbe('paging32_sync_spte', 'shadow_mmu', T, 'FNAME(sync_spte) for 4-byte gPTEs', ['sp', 'i']);
const PR_P64_PREFETCH = defineProbe('paging64_pte_prefetch', 'shadow_mmu', T, 'map neighbouring gPTEs of the faulting one (8 per group)', ['sptep']);
const PR_P32_PREFETCH = defineProbe('paging32_pte_prefetch', 'shadow_mmu', T, 'FNAME(pte_prefetch) for 4-byte gPTEs', ['sptep']);
const PR_NONPAGING_PF = defineProbe('nonpaging_page_fault', 'shadow_mmu', F, 'CR0.PG=0 under shadow paging: gva = gpa, at most 2M', ['fault']);
const PR_DIRECT_PF = defineProbe('direct_page_fault', 'shadow_mmu', F, 'faultin and direct_map under mmu_lock', ['fault']);
const PR_DIRECT_MAP = defineProbe('direct_map', 'shadow_mmu', F, 'direct shadow pages down to goal_level, then the leaf', ['fault']);
const PR_TRACK_WRITE = defineProbe('kvm_mmu_track_write', 'shadow_mmu', F, 'an emulated write hit a shadowed guest page table: zap the written SPTEs or the page', ['gpa', 'bytes']);
const PR_INVALIDATE_ADDR = defineProbe('kvm_mmu_invalidate_addr', 'shadow_mmu', F, 'resync one address in unsync pages under the selected roots (current and/or prev_roots)', ['addr', 'roots']);
const PR_INVLPG = defineProbe('kvm_mmu_invlpg', 'shadow_mmu', F, 'guest INVLPG: resync the gPTE in unsync pages on the path', ['gva']);
const PR_INJECT_PF = defineProbe('kvm_inject_emulated_page_fault', 'shadow_mmu', 'arch/x86/kvm/x86.c', 'the guest walk failed: queue #PF for the guest', ['error_code', 'address']);

const scratch = new Uint32Array(2);

function pttype_of(sv: ShadowVcpu): PtType {
  return (sv.cpu_role_base & ROLE_HAS_4_BYTE_GPTE) !== 0 ? PTTYPE_32 : PTTYPE_64;
}

/** FNAME(gpte_access). */
function gpte_access(pttype: PtType, lo: number, hi: number): number {
  let access = (lo & (PT_WRITABLE_MASK | PT_USER_MASK)) | ACC_EXEC_MASK;
  if (pttype === PTTYPE_64 && (hi & 0x8000_0000) !== 0) access &= ~ACC_EXEC_MASK;
  return access;
}

/** FNAME(protect_clean_gpte): a clean gPTE keeps W off so the first write sets D. */
function protect_clean_gpte(access: number, lo: number): number {
  return (lo & PT_DIRTY_MASK) !== 0 ? access : access & ~ACC_WRITE_MASK;
}

/** gfn rounded down to a multiple of `per` (a power of two), without a floating-point `%`. */
function gfn_align_down(gfn: number, per: number): number {
  return per === 1 ? gfn : Math.floor(gfn / per) * per;
}

function gpte_to_gfn(pttype: PtType, lo: number, hi: number): number {
  if (pttype === PTTYPE_32) return lo >>> 12;
  return (lo >>> 12) + (hi & 0xfffff) * 0x10_0000;
}

/** FNAME(prefetch_invalid_gpte): drop the SPTE and report true for a reserved, non-present or unaccessed gPTE. */
function prefetch_invalid_gpte(sv: ShadowVcpu, sptep: number, lo: number, hi: number): boolean {
  let bad = false;
  if (__is_rsvd_bits_set(sv.guest!.guest_rsvd_check, lo, hi, PG_LEVEL_4K)) bad = true;
  else if ((lo & 1) === 0) bad = true;
  else if ((lo & PT_ACCESSED_MASK) === 0) bad = true;
  if (bad) drop_spte(sv.sk, sptep);
  return bad;
}

/** FNAME(get_level1_sp_gpa): where the gPTEs of a 4K shadow page start (quadrant for 4-byte tables). */
function get_level1_sp_gpa(sp: KvmMmuPage, pttype: PtType): number {
  const offset = pttype === PTTYPE_32 ? ((sp.role & ROLE_QUADRANT_MASK) >>> ROLE_QUADRANT_SHIFT) << 9 : 0;
  return sp.gfn * 4096 + offset * (pttype === PTTYPE_32 ? 4 : 8);
}

function sync_spte_tmpl(sv: ShadowVcpu, sp: KvmMmuPage, i: number, pttype: PtType): number {
  const sk = sv.sk;
  if ((sp.spt[2 * i] === SHADOW_NONPRESENT_VALUE_LO && sp.spt[2 * i + 1] === SHADOW_NONPRESENT_VALUE_HI) || sp.shadowed_translation === null) return 0;
  const size = pttype === PTTYPE_32 ? 4 : 8;
  const pte_gpa = get_level1_sp_gpa(sp, pttype) + i * size;
  if (!sv.src!.read_gpte(pte_gpa, size as 4 | 8, PG_LEVEL_4K, scratch)) return -1;
  const lo = scratch[0]!;
  const hi = size === 4 ? 0 : scratch[1]!;
  const sptep = sp.spt_pfn * 512 + i;
  if (prefetch_invalid_gpte(sv, sptep, lo, hi)) return 1;
  const gfn = gpte_to_gfn(pttype, lo, hi);
  let pte_access = (sp.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL;
  pte_access &= gpte_access(pttype, lo, hi);
  pte_access = protect_clean_gpte(pte_access, lo);
  if (gfn !== kvm_mmu_page_get_gfn(sp, i)) {
    drop_spte(sk, sptep);
    return 1;
  }
  if (kvm_mmu_page_get_access(sp, i) === pte_access) return 0;
  kvm_mmu_page_set_access(sp, i, pte_access);
  const olo = sp.spt[2 * i]!;
  const ohi = sp.spt[2 * i + 1]!;
  const a = sk.make_spte_args;
  a.level = PG_LEVEL_4K;
  a.ad_disabled = (sp.role & ROLE_AD_DISABLED) !== 0;
  a.ad_need_write_protect = false;
  a.pte_access = pte_access;
  a.gfn = gfn;
  a.pfn = spte_to_pfn(sk.masks, olo, ohi);
  a.old_lo = olo;
  a.old_hi = ohi;
  a.prefetch = true;
  a.synchronizing = true;
  a.host_writable = (olo & sk.masks.shadow_host_writable_mask.lo) !== 0 || (ohi & sk.masks.shadow_host_writable_mask.hi) !== 0;
  const slot = sk.kvm.kvm_memslots(sp.role >>> 24 !== 0 ? 1 : 0).lookup(gfn) ?? null;
  a.slot = slot;
  a.slot_dirty_track_enabled = false;
  const out = { lo: 0, hi: 0 };
  make_spte(sk.masks, a, out);
  return mmu_spte_update(sk, sptep, out.lo, out.hi) ? 1 : 0;
}

/** FNAME(sync_spte) for 8-byte gPTEs. */
export function paging64_sync_spte(sv: ShadowVcpu, sp: KvmMmuPage, i: number): number {
  if (probes.armed) probes.hit(PR_P64_SYNC, { sp, i });
  return sync_spte_tmpl(sv, sp, i, PTTYPE_64);
}

/** FNAME(sync_spte) for 4-byte gPTEs. */
export function paging32_sync_spte(sv: ShadowVcpu, sp: KvmMmuPage, i: number): number {
  if (probes.armed) probes.hit(PR_P32_SYNC, { sp, i });
  return sync_spte_tmpl(sv, sp, i, PTTYPE_32);
}

/** FNAME(prefetch_gpte). */
function prefetch_gpte(sv: ShadowVcpu, sp: KvmMmuPage, sptep: number, lo: number, hi: number, pttype: PtType): boolean {
  if (prefetch_invalid_gpte(sv, sptep, lo, hi)) return false;
  const gfn = gpte_to_gfn(pttype, lo, hi);
  let pte_access = ((sp.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL) & gpte_access(pttype, lo, hi);
  pte_access = protect_clean_gpte(pte_access, lo);
  const slot = gfn_to_memslot_dirty_bitmap(sv, gfn, (pte_access & ACC_WRITE_MASK) !== 0);
  if (slot === null) return false;
  mmu_set_spte(sv, slot, sptep, pte_access, gfn, slot_gfn_to_host_pfn(slot, gfn), null);
  return true;
}

function pte_prefetch_tmpl(sv: ShadowVcpu, gw: GuestWalker, sptep: number, pttype: PtType): void {
  const sp = sptep_to_sp(sv.sk, sptep);
  if ((sp.role & ROLE_LEVEL_MASK) > PG_LEVEL_4K) return;
  if (sv.sk.kvm.mmu_invalidate_in_progress !== 0) return;
  if ((sp.role & ROLE_DIRECT) !== 0) {
    __direct_pte_prefetch(sv, sp, sptep);
    return;
  }
  const idx = sptep & 511;
  const first = idx & ~(PTE_PREFETCH_NUM - 1);
  // gw->prefetch_ptes: the group FNAME(gpte_changed) read at the 4K level.
  const g = sv.prefetch_ptes;
  const spt = sp.spt;
  for (let i = first; i < first + PTE_PREFETCH_NUM; i++) {
    if (i === idx) continue;
    if (is_shadow_present_pte(spt[2 * i]!, spt[2 * i + 1]!)) continue;
    const k = 2 * (i - first);
    if (!prefetch_gpte(sv, sp, sp.spt_pfn * 512 + i, g[k]!, g[k + 1]!, pttype)) break;
  }
}

/** FNAME(pte_prefetch) for 8-byte gPTEs. */
export function paging64_pte_prefetch(sv: ShadowVcpu, gw: GuestWalker, sptep: number): void {
  if (probes.armed) probes.hit(PR_P64_PREFETCH, { sptep });
  pte_prefetch_tmpl(sv, gw, sptep, PTTYPE_64);
}

/** FNAME(pte_prefetch) for 4-byte gPTEs. */
export function paging32_pte_prefetch(sv: ShadowVcpu, gw: GuestWalker, sptep: number): void {
  if (probes.armed) probes.hit(PR_P32_PREFETCH, { sptep });
  pte_prefetch_tmpl(sv, gw, sptep, PTTYPE_32);
}

/**
 * FNAME(gpte_changed): re-read the gPTE the walk used at `level`. At the 4K level the whole group of
 * PTE_PREFETCH_NUM gPTEs around it is read into prefetch_ptes, which FNAME(pte_prefetch) then maps.
 */
function gpte_changed(sv: ShadowVcpu, gw: GuestWalker, level: number, pttype: PtType): boolean {
  const size = pttype === PTTYPE_32 ? 4 : 8;
  const pte_gpa = gw.pte_gpa[level - 1]!;
  let lo: number;
  let hi: number;
  if (level === PG_LEVEL_4K) {
    const group = PTE_PREFETCH_NUM * size;
    // group is a power of two below 2^31: the low bits survive `&`'s 32-bit truncation, and a `%` on a
    // gpa would be a floating-point modulo.
    const base = pte_gpa - (pte_gpa & (group - 1));
    if (!read_gpte_group(sv, base, size)) return true;
    const k = 2 * ((pte_gpa - base) / size);
    lo = sv.prefetch_ptes[k]!;
    hi = sv.prefetch_ptes[k + 1]!;
  } else {
    if (!sv.src!.read_gpte(pte_gpa, size as 4 | 8, level, scratch)) return true;
    lo = scratch[0]!;
    hi = size === 4 ? 0 : scratch[1]!;
  }
  if (lo !== gw.ptes[2 * (level - 1)]) return true;
  return size === 8 && hi !== gw.ptes[2 * (level - 1) + 1];
}

/** kvm_vcpu_read_guest_atomic of one prefetch group into sv.prefetch_ptes (lo, hi pairs; hi 0 for 4-byte gPTEs). */
function read_gpte_group(sv: ShadowVcpu, base: number, size: number): boolean {
  const out = sv.prefetch_ptes;
  const src = sv.src!;
  if (src instanceof MemoryGuestPageTables) {
    // The group never crosses a page: one page lookup instead of one per gPTE.
    const mem = src.mem;
    const gfn = Math.floor(base / 4096);
    if (!(base >= 0) || gfn >= mem.nrPages) return false;
    const page = mem.peekPage(gfn);
    const w = (base - gfn * 4096) >>> 2;
    for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
      if (page === undefined) {
        out[2 * i] = 0;
        out[2 * i + 1] = 0;
      } else if (size === 8) {
        out[2 * i] = page[w + 2 * i]!;
        out[2 * i + 1] = page[w + 2 * i + 1]!;
      } else {
        out[2 * i] = page[w + i]!;
        out[2 * i + 1] = 0;
      }
    }
    return true;
  }
  for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
    if (!src.read_gpte(base + i * size, size as 4 | 8, PG_LEVEL_4K, scratch)) return false;
    out[2 * i] = scratch[0]!;
    out[2 * i + 1] = size === 4 ? 0 : scratch[1]!;
  }
  return true;
}

function trace_spte_requested(sv: ShadowVcpu, fault: kvm_page_fault): void {
  if (!trace.enabled) return;
  const per = KVM_PAGES_PER_HPAGE(fault.goal_level);
  emitTracepoint('kvm_mmu_spte_requested', sv.vcpu.vcpu_id, { gfn: fault.gfn, pfn: fault.pfn + (fault.gfn % per), level: fault.goal_level });
}

/** account_nx_huge_page(): the table exists only because the NX mitigation banned a huge leaf. */
function account_nx_huge_page(sv: ShadowVcpu, sp: KvmMmuPage, nx_huge_page_possible: boolean): void {
  sp.nx_huge_page_disallowed = true;
  if (nx_huge_page_possible && !sp.on_possible_nx_list) {
    sp.on_possible_nx_list = true;
    sv.sk.kvm.arch.possible_nx_huge_pages.add(sp);
    sv.sk.kvm.stat.nx_lpage_splits++;
  }
}

function fetch_tmpl(sv: ShadowVcpu, fault: kvm_page_fault, gw: GuestWalker, pttype: PtType): number {
  const sk = sv.sk;
  const it = sv.walk_it;
  let base_gfn = fault.gfn;
  const direct_access = gw.pte_access;
  let top_level = sv.cpu_level;
  if (top_level === PT32E_ROOT_LEVEL) top_level = PT32_ROOT_LEVEL;
  if (gpte_changed(sv, gw, top_level, pttype)) return RET_PF_RETRY;
  if (sv.root_kind === ROOT_INVALID) return RET_PF_RETRY;
  if (sv.root_kind === ROOT_DUMMY) {
    sv.requests |= KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
    return RET_PF_RETRY;
  }
  for (shadow_walk_init(it, sv, fault.addr); shadow_walk_okay(it); shadow_walk_next(it, sk)) {
    const parent = sptep_to_sp(sk, it.sptep);
    if (sp_has_gptes(parent)) parent.write_flooding_count = 0;
    if (it.level === gw.level) break;
    const table_gfn = gw.table_gfn[it.level - 2]!;
    const access = gw.pt_access[it.level - 2]!;
    const sp = kvm_mmu_get_child_sp(sv, it.sptep, table_gfn, false, access);
    if (sp !== null && sp.unsync_children !== 0 && mmu_sync_children(sv, sp, false) !== 0) return RET_PF_RETRY;
    if (gpte_changed(sv, gw, it.level - 1, pttype)) return RET_PF_RETRY;
    if (sp !== null) link_shadow_page(sv, it.sptep, sp);
    if (fault.write && table_gfn === fault.gfn) fault.write_fault_to_shadow_pgtable = true;
  }
  kvm_mmu_hugepage_adjust(sv.vcpu, fault);
  trace_spte_requested(sv, fault);
  for (; shadow_walk_okay(it); shadow_walk_next(it, sk)) {
    if (fault.nx_huge_page_workaround_enabled) {
      const t = it.table!;
      disallowed_hugepage_adjust(sk.kvm, fault, t[2 * it.index]!, t[2 * it.index + 1]!, it.level);
    }
    const per = KVM_PAGES_PER_HPAGE(it.level);
    base_gfn = gfn_align_down(fault.gfn, per);
    if (it.level === fault.goal_level) break;
    validate_direct_spte(sv, it.sptep, direct_access);
    const sp = kvm_mmu_get_child_sp(sv, it.sptep, base_gfn, true, direct_access);
    if (sp === null) continue;
    link_shadow_page(sv, it.sptep, sp);
    if (fault.huge_page_disallowed) account_nx_huge_page(sv, sp, fault.req_level >= it.level);
  }
  if (it.level !== fault.goal_level) {
    sk.kvm.WARN_ON_ONCE(true, 'FNAME(fetch): walk ended above goal_level');
    return -14;
  }
  const sptep = it.sptep;
  const ret = mmu_set_spte(sv, fault.slot, sptep, gw.pte_access, base_gfn, fault.pfn, fault);
  if (ret === RET_PF_SPURIOUS) return ret;
  if (pttype === PTTYPE_32) paging32_pte_prefetch(sv, gw, sptep);
  else paging64_pte_prefetch(sv, gw, sptep);
  return ret;
}

/** FNAME(fetch) for 8-byte gPTEs. */
export function paging64_fetch(sv: ShadowVcpu, fault: kvm_page_fault, gw: GuestWalker): number {
  if (probes.armed) probes.hit(PR_P64_FETCH, { fault, gw_level: gw.level });
  return fetch_tmpl(sv, fault, gw, PTTYPE_64);
}

/** FNAME(fetch) for 4-byte gPTEs. */
export function paging32_fetch(sv: ShadowVcpu, fault: kvm_page_fault, gw: GuestWalker): number {
  if (probes.armed) probes.hit(PR_P32_FETCH, { fault, gw_level: gw.level });
  return fetch_tmpl(sv, fault, gw, PTTYPE_32);
}

/** kvm_inject_emulated_page_fault(). */
export function kvm_inject_emulated_page_fault(sv: ShadowVcpu, error_code: number, address: number): void {
  if (probes.armed) probes.hit(PR_INJECT_PF, { error_code, address });
  sv.injected = { vector: 14, error_code, address };
  sv.vcpu.stat.pf_guest++;
}

function page_fault_tmpl(sv: ShadowVcpu, fault: kvm_page_fault, pttype: PtType): number {
  const gw = sv.walker!;
  const addr = fault.addr;
  // addr >>> 0 is addr mod 2^32 for a non-negative integer, without a floating-point modulo.
  const r = walk_addr_generic(gw, sv.walk_vcpu, sv.guest!, sv.src!, addr >>> 0, Math.floor(addr / 0x1_0000_0000), fault.error_code_lo & ~PFERR_RSVD_MASK, fault.error_code_hi);
  if (!r) {
    if (!fault.prefetch) kvm_inject_emulated_page_fault(sv, gw.error_code, addr);
    return RET_PF_RETRY;
  }
  fault.gfn = gw.gfn;
  fault.max_level = gw.level;
  fault.slot = sv.sk.kvm.kvm_memslots(sv.vcpu.smm ? 1 : 0).lookup(fault.gfn) ?? null;
  if (page_fault_handle_page_track(sv.vcpu, fault)) return RET_PF_WRITE_PROTECTED;
  let ret = kvm_mmu_faultin_pfn(sv.vcpu, fault, gw.pte_access);
  if (ret !== RET_PF_CONTINUE) return ret;
  // CR0.WP=0 supervisor write to a read-only page: map it writable but supervisor-only.
  if (fault.write && (gw.pte_access & ACC_WRITE_MASK) === 0 && !sv.guest!.cr0_wp && !fault.user && fault.slot !== null) {
    gw.pte_access |= ACC_WRITE_MASK;
    gw.pte_access &= ~ACC_USER_MASK;
    if (sv.guest!.cr4_smep) gw.pte_access &= ~ACC_EXEC_MASK;
  }
  ret = RET_PF_RETRY;
  if (!is_page_fault_stale(sv.vcpu, fault) && make_mmu_pages_available(sv) === 0) {
    ret = pttype === PTTYPE_32 ? paging32_fetch(sv, fault, gw) : paging64_fetch(sv, fault, gw);
  }
  kvm_mmu_finish_page_fault(sv.vcpu, fault, ret);
  return ret;
}

/** FNAME(page_fault) for 8-byte gPTEs (64-bit and PAE guests). */
export function paging64_page_fault(sv: ShadowVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_P64_PF, { fault });
  return page_fault_tmpl(sv, fault, PTTYPE_64);
}

/** FNAME(page_fault) for 4-byte gPTEs (2-level guests). */
export function paging32_page_fault(sv: ShadowVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_P32_PF, { fault });
  return page_fault_tmpl(sv, fault, PTTYPE_32);
}

/** direct_map(). */
export function direct_map(sv: ShadowVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_DIRECT_MAP, { fault });
  const sk = sv.sk;
  const it = sv.walk_it;
  let base_gfn = fault.gfn;
  kvm_mmu_hugepage_adjust(sv.vcpu, fault);
  trace_spte_requested(sv, fault);
  for (shadow_walk_init(it, sv, fault.addr); shadow_walk_okay(it); shadow_walk_next(it, sk)) {
    if (fault.nx_huge_page_workaround_enabled) {
      const t = it.table!;
      disallowed_hugepage_adjust(sk.kvm, fault, t[2 * it.index]!, t[2 * it.index + 1]!, it.level);
    }
    const per = KVM_PAGES_PER_HPAGE(it.level);
    base_gfn = gfn_align_down(fault.gfn, per);
    if (it.level === fault.goal_level) break;
    const sp = kvm_mmu_get_child_sp(sv, it.sptep, base_gfn, true, ACC_ALL);
    if (sp === null) continue;
    link_shadow_page(sv, it.sptep, sp);
    if (fault.huge_page_disallowed) account_nx_huge_page(sv, sp, fault.req_level >= it.level);
  }
  if (it.level !== fault.goal_level) {
    sk.kvm.WARN_ON_ONCE(true, 'direct_map: walk ended above goal_level');
    return -14;
  }
  const ret = mmu_set_spte(sv, fault.slot, it.sptep, ACC_ALL, base_gfn, fault.pfn, fault);
  if (ret === RET_PF_SPURIOUS) return ret;
  direct_pte_prefetch(sv, it.sptep);
  return ret;
}

/**
 * direct_page_fault(): a direct MMU on shadow pages (CR0.PG=0 under shadow paging, or TDP with
 * tdp_mmu=0). fast_page_fault first, then faultin and direct_map under mmu_lock.
 */
export function direct_page_fault(sv: ShadowVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_DIRECT_PF, { fault });
  if (page_fault_handle_page_track(sv.vcpu, fault)) return RET_PF_WRITE_PROTECTED;
  let r = fast_page_fault(sv.vcpu, fault);
  if (r !== RET_PF_INVALID) return r;
  r = kvm_mmu_faultin_pfn(sv.vcpu, fault, ACC_ALL);
  if (r !== RET_PF_CONTINUE) return r;
  r = RET_PF_RETRY;
  if (!is_page_fault_stale(sv.vcpu, fault) && make_mmu_pages_available(sv) === 0) r = direct_map(sv, fault);
  kvm_mmu_finish_page_fault(sv.vcpu, fault, r);
  return r;
}

/** nonpaging_page_fault(): a PAE-shaped direct table, so 2M at most. */
export function nonpaging_page_fault(sv: ShadowVcpu, fault: kvm_page_fault): number {
  if (probes.armed) probes.hit(PR_NONPAGING_PF, { fault });
  fault.max_level = 2;
  return direct_page_fault(sv, fault);
}

/** Unprotect the gfn and retry (kvm_mmu_unprotect_gfn_and_retry). */
export function kvm_mmu_unprotect_gfn_and_retry(sv: ShadowVcpu, gpa: number): boolean {
  return kvm_mmu_unprotect_page(sv.sk, Math.floor(gpa / 4096));
}

// ---------------------------------------------------------------------------------------------------
// Emulated guest page-table writes and INVLPG.

function detect_write_misaligned(sp: KvmMmuPage, gpa: number, bytes: number): boolean {
  const offset = gpa & 0xfff;
  const pte_size = (sp.role & ROLE_HAS_4_BYTE_GPTE) !== 0 ? 4 : 8;
  if ((offset & (pte_size - 1)) === 0 && bytes === 1) return false;
  let misaligned = ((offset ^ (offset + bytes - 1)) & ~(pte_size - 1)) !== 0;
  misaligned = misaligned || bytes < 4;
  return misaligned;
}

function detect_write_flooding(sp: KvmMmuPage): boolean {
  if ((sp.role & ROLE_LEVEL_MASK) === PG_LEVEL_4K) return false;
  sp.write_flooding_count++;
  return sp.write_flooding_count >= 3;
}

/** get_written_sptes(): first SPTE index and count, or -1 when the quadrant doesn't match. */
function get_written_sptes(sp: KvmMmuPage, gpa: number, out: { n: number }): number {
  let page_offset = gpa & 0xfff;
  const level = sp.role & ROLE_LEVEL_MASK;
  out.n = 1;
  if ((sp.role & ROLE_HAS_4_BYTE_GPTE) !== 0) {
    page_offset <<= 1;
    if (level === PT32_ROOT_LEVEL) {
      page_offset &= ~7;
      page_offset <<= 1;
      out.n = 2;
    }
    const quadrant = page_offset >>> 12;
    page_offset &= 0xfff;
    if (quadrant !== (sp.role & ROLE_QUADRANT_MASK) >>> ROLE_QUADRANT_SHIFT) return -1;
  }
  return page_offset >>> 3;
}

/** kvm_mmu_track_write(): called after an emulated write of `bytes` at `gpa` landed in guest memory. */
export function kvm_mmu_track_write(sv: ShadowVcpu, gpa: number, bytes: number): void {
  const sk = sv.sk;
  if (sk.indirect_shadow_pages === 0) return;
  if (probes.armed) probes.hit(PR_TRACK_WRITE, { gpa, bytes });
  const gfn = Math.floor(gpa / 4096);
  const invalid_list: KvmMmuPage[] = [];
  let flush = false;
  // mmu_pte_write_fetch_gpte: the new gPTE (0 when the write doesn't cover a whole aligned entry).
  let gentry = 0;
  if (bytes === 4 || bytes === 8) {
    if (sv.src!.read_gpte(gpa - (gpa % bytes), bytes as 4 | 8, 1, scratch)) gentry = scratch[0]! | (bytes === 8 ? scratch[1]! : 0);
  }
  sk.kvm.stat.mmu_pte_write++;
  const cnt = { n: 0 };
  for (let sp: KvmMmuPage | null = sk.mmu_page_hash[kvm_page_table_hashfn(gfn)]!; sp !== null; ) {
    const next: KvmMmuPage | null = sp.hash_next;
    if (sp.gfn !== gfn || is_obsolete_sp(sk.kvm, sp) || !sp_has_gptes(sp)) {
      sp = next;
      continue;
    }
    if (detect_write_misaligned(sp, gpa, bytes) || detect_write_flooding(sp)) {
      kvm_mmu_prepare_zap_page(sk, sp, invalid_list);
      sk.kvm.stat.mmu_flooded++;
      sp = next;
      continue;
    }
    const first = get_written_sptes(sp, gpa, cnt);
    if (first >= 0) {
      for (let k = 0; k < cnt.n; k++) {
        const i = first + k;
        const lo = sp.spt[2 * i]!;
        const hi = sp.spt[2 * i + 1]!;
        zap_pte_no_list(sv, sp, i);
        if (gentry !== 0 && (sp.role & ROLE_LEVEL_MASK) !== PG_LEVEL_4K) sk.kvm.stat.mmu_pde_zapped++;
        if (is_shadow_present_pte(lo, hi)) flush = true;
      }
    }
    sp = next;
  }
  // kvm_mmu_remote_flush_or_zap().
  if (invalid_list.length !== 0) kvm_mmu_commit_zap_page(sk, invalid_list);
  else if (flush) sk.kvm.kvm_flush_remote_tlbs();
}

/** mmu_page_zap_pte(kvm, sp, spte, NULL): leaf → drop_spte, table → drop_parent_pte, MMIO → clear. */
function zap_pte_no_list(sv: ShadowVcpu, sp: KvmMmuPage, i: number): void {
  const sk = sv.sk;
  const lo = sp.spt[2 * i]!;
  const hi = sp.spt[2 * i + 1]!;
  const sptep = sp.spt_pfn * 512 + i;
  if (is_shadow_present_pte(lo, hi)) {
    if (is_last_spte(lo, hi, sp.role & ROLE_LEVEL_MASK)) {
      drop_spte(sk, sptep);
    } else {
      const child = sk.sp_of_pfn(spte_to_pfn(sk.masks, lo, hi));
      if (child !== undefined) drop_parent_pte(sk, child, sptep);
    }
  } else if (is_mmio_spte(sk.masks, lo, hi, sk.kvm.arch.shadow_mmio_value)) {
    mmu_spte_clear_no_track(sk, sptep);
  }
}

/** __kvm_mmu_invalidate_addr(): resync the gPTE for `addr` in unsync pages on the path from one root. */
function __kvm_mmu_invalidate_addr(sv: ShadowVcpu, it: ShadowWalkIterator): void {
  const sk = sv.sk;
  for (; shadow_walk_okay(it); shadow_walk_next(it, sk)) {
    const sp = sptep_to_sp(sk, it.sptep);
    if (sp.unsync) {
      const sync_spte = sv.sync_spte!;
      const ret = sync_spte(sv, sp, it.index);
      if (ret < 0) zap_pte_no_list(sv, sp, it.index);
      if (ret !== 0) kvm_flush_remote_tlbs_gfn(sk, kvm_mmu_page_get_gfn(sp, it.index), sp.role & ROLE_LEVEL_MASK);
    }
    if (sp.unsync_children === 0) break;
  }
}

/** kvm_mmu_invlpg() → kvm_mmu_invalidate_addr(KVM_MMU_ROOTS_ALL): the current root and every prev root. */
export function kvm_mmu_invlpg(sv: ShadowVcpu, gva: number): void {
  if (probes.armed) probes.hit(PR_INVLPG, { gva });
  // vcpu_clear_mmio_info().
  if (sv.vcpu.mmio_gva === (gva - (gva % 4096))) sv.vcpu.mmio_gva = 0;
  // INVLPG also drops global mappings, whatever their PCID: every cached root is in scope.
  kvm_mmu_invalidate_addr(sv, gva, KVM_MMU_ROOTS_ALL);
  sv.vcpu.stat.invlpg++;
}

/** kvm_mmu_invalidate_addr(): resync `addr` under the current root and/or the chosen prev_roots. */
export function kvm_mmu_invalidate_addr(sv: ShadowVcpu, addr: number, roots: number): void {
  if (probes.armed) probes.hit(PR_INVALIDATE_ADDR, { addr, roots });
  if (sv.sync_spte === null) return;
  const it = sv.invalidate_it;
  if ((roots & KVM_MMU_ROOT_CURRENT) !== 0 && sv.root_kind !== ROOT_INVALID && sv.root_kind !== ROOT_DUMMY) {
    shadow_walk_init(it, sv, addr);
    __kvm_mmu_invalidate_addr(sv, it);
  }
  for (let i = 0; i < sv.prev_roots.length; i++) {
    const p = sv.prev_roots[i]!;
    if ((roots & KVM_MMU_ROOT_PREVIOUS(i)) === 0 || p.sp === null) continue;
    shadow_walk_init_using_root(it, sv, p.sp, addr);
    __kvm_mmu_invalidate_addr(sv, it);
  }
}

/**
 * Install the mode-specific hooks on a vCPU after a paging-mode change: mmu->sync_spte here, and in the
 * vCPU's kvm_mmu the root role, the root validity test and mmu->page_fault, through which mmu.ts's
 * kvm_mmu_do_page_fault (the one fault entry) reaches nonpaging_page_fault or FNAME(page_fault).
 */
export function shadow_paging_init_hooks(sv: ShadowVcpu): void {
  const pttype = pttype_of(sv);
  sv.sync_spte = pttype === PTTYPE_32 ? paging32_sync_spte : paging64_sync_spte;
  const mmu = sv.vcpu.mmu;
  mmu.root_role = sv.root_role;
  mmu.root_hpa_valid = () => sv.root_kind !== ROOT_INVALID;
  mmu.root_to_sp = () => (sv.root_kind === ROOT_SP ? sv.root_sp : null);
  const handler = (sv.cpu_role_base & ROLE_DIRECT) !== 0 ? nonpaging_page_fault : pttype === PTTYPE_32 ? paging32_page_fault : paging64_page_fault;
  mmu.page_fault = (_vcpu, fault) => handler(sv, fault);
  if (sv.walker === null) sv.walker = new GuestWalker();
}

/**
 * TDP with tdp_mmu=0: mmu->page_fault is kvm_tdp_page_fault (so faults are is_tdp), which hands them to
 * direct_page_fault; a direct MMU has no sync_spte.
 */
export function shadow_tdp_init_hooks(sv: ShadowVcpu): void {
  sv.sync_spte = null;
  const mmu = sv.vcpu.mmu;
  mmu.root_role = sv.root_role;
  mmu.root_hpa_valid = () => sv.root_kind !== ROOT_INVALID;
  mmu.root_to_sp = () => (sv.root_kind === ROOT_SP ? sv.root_sp : null);
  mmu.page_fault = kvm_tdp_page_fault;
}

/**
 * fast_pf_get_last_sptep() / get_walk(): the lockless shadow walk to `addr`, keeping the last SPTE seen
 * (a leaf, or the non-present entry where the walk stopped).
 */
function shadow_get_last_sptep(vcpu: KvmVcpu, addr: number, res: { sp: KvmMmuPage | null; index: number; lo: number; hi: number; level: number }): boolean {
  const sv = shadow_vcpu_of(vcpu);
  const it = sv.lockless_it;
  res.sp = null;
  for (shadow_walk_init(it, sv, addr); shadow_walk_okay(it); shadow_walk_next(it, sv.sk)) {
    const t = it.table!;
    res.sp = sptep_to_sp(sv.sk, it.sptep);
    res.index = it.index;
    res.lo = t[2 * it.index]!;
    res.hi = t[2 * it.index + 1]!;
    res.level = it.level;
  }
  return res.sp !== null;
}

register_shadow_mmu_fault_hooks({
  direct_page_fault: (vcpu, fault) => direct_page_fault(shadow_vcpu_of(vcpu), fault),
  get_last_sptep: shadow_get_last_sptep,
});
