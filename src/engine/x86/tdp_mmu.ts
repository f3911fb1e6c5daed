/**
 * The TDP MMU (arch/x86/kvm/mmu/tdp_mmu.c): roots and their refcounts, SPTE updates with their
 * bookkeeping (handle_changed_spte / handle_removed_pt with FROZEN_SPTE), the fault-time map walk,
 * huge page splitting and recovery, zapping, write protection, dirty-bit clearing and aging, and the
 * TDX external (S-EPT) page-table hooks for mirror SPTEs.
 *
 * The model is single-threaded, so every cmpxchg succeeds; "shared" (mmu_lock held for read) still
 * selects the kernel's atomic paths because they differ in observable ways (FROZEN_SPTE writes of
 * non-present entries in handle_removed_pt, external-SPTE freezing).
 */
import { defineProbe, probes } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint, halvesToValue, tracepointShape } from '../tracepoints/index';
import { KVM_MAX_HUGEPAGE_LEVEL, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K, kvm_slot_dirty_track_enabled, type KvmMemorySlot } from './memslot';
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED } from '../kvm/attributes';
import { KvmMmuPage, is_mirror_sp, kvm_mmu_page_as_id, sp_guest_mode } from './mmu_page';
import { track_possible_nx_huge_page, untrack_possible_nx_huge_page } from './nx_huge_pages';
import { ROLE_INVALID, ROLE_IS_MIRROR, ROLE_LEVEL_MASK } from './role';
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from './ret_pf';
import {
  ACC_ALL, FROZEN_SPTE_HI, FROZEN_SPTE_LO, PT_WRITABLE_MASK, SHADOW_NONPRESENT_VALUE_HI, SHADOW_NONPRESENT_VALUE_LO,
  get_mmio_spte_generation, is_access_allowed, is_accessed_spte, is_executable_pte, is_mmio_spte, leaf_spte_change_needs_tlb_flush,
  make_huge_spte, make_mmio_spte, vmx_get_mt_mask, vmx_ignore_guest_pat, make_nonleaf_spte, make_small_spte, make_spte, mark_spte_for_access_track, spte_ad_enabled,
} from './spte';
import { KVM_PAGES_PER_HPAGE, spte_pfn, spte_to_child_sp, tdp_iter, tdp_iter_next, tdp_iter_start } from './tdp_iter';
import { kvm_pfn_halves, type KvmVcpu, type kvm_page_fault } from './vcpu';
import { EBUSY, EAGAIN, ENOENT, ENOMEM, type Kvm } from './vm';
import { disallowed_hugepage_adjust, kvm_mmu_hugepage_adjust, kvm_mmu_max_mapping_level, mark_page_dirty_in_slot } from './mmu';

export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G, KVM_MAX_HUGEPAGE_LEVEL };

/** enum kvm_tdp_mmu_root_types. */
export const KVM_INVALID_ROOTS = 1 << 0;
export const KVM_DIRECT_ROOTS = 1 << 1;
export const KVM_MIRROR_ROOTS = 1 << 2;
export const KVM_VALID_ROOTS = KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS;
export const KVM_ALL_ROOTS = KVM_VALID_ROOTS | KVM_INVALID_ROOTS;

/** enum kvm_gfn_range_filter. */
export { KVM_FILTER_SHARED, KVM_FILTER_PRIVATE };

/** Kernel direct-map base: what a %p of an sptep looks like with no_hash_pointers. */
const PAGE_OFFSET_HI = 0xffff8880;

const P = (name: string, doc: string, args: string[]) => defineProbe(name, 'tdp_mmu', 'arch/x86/kvm/mmu/tdp_mmu.c', doc, args);
const PR_ALLOC_ROOT = P('kvm_tdp_mmu_alloc_root', 'find or allocate the vCPU\'s TDP root for its root role', ['mirror', 'role']);
const PR_PUT_ROOT = P('kvm_tdp_mmu_put_root', 'drop a root reference; the last one frees an invalid root', ['root', 'root_count']);
const PR_MAP = P('kvm_tdp_mmu_map', 'walk the root for the fault gfn, linking tables down to goal_level', ['fault', 'root']);
const PR_TARGET = P('tdp_mmu_map_handle_target_level', 'install the leaf (or MMIO) SPTE at goal_level', ['fault', 'sptep', 'old_spte', 'level']);
const PR_LINK = P('tdp_mmu_link_sp', 'point an SPTE at a new child table', ['sptep', 'sp', 'shared']);
const PR_SPLIT = P('tdp_mmu_split_huge_page', 'replace a huge SPTE by a table of 512 smaller SPTEs', ['sptep', 'huge_spte', 'level', 'sp']);
const PR_CHANGED = P('handle_changed_spte', 'bookkeeping after an SPTE changed (stats, removed subtrees)', ['as_id', 'gfn', 'old_spte', 'new_spte', 'level', 'shared']);
const PR_REMOVED = P('handle_removed_pt', 'a table left the paging structure: freeze and account each entry, free the table', ['sp', 'shared']);
const PR_ZAP_LEAFS = P('tdp_mmu_zap_leafs', 'zap leaf SPTEs of a gfn range in one root', ['root', 'start', 'end']);
const PR_ZAP_ROOT = P('tdp_mmu_zap_root', 'zap a whole root in passes of decreasing granularity', ['root', 'shared']);
const PR_INVALIDATE = P('kvm_tdp_mmu_invalidate_roots', 'mark roots invalid and schedule them for zapping', ['root_types']);
const PR_ZAP_INVALIDATED = P('kvm_tdp_mmu_zap_invalidated_roots', 'zap roots scheduled by invalidation and drop the TDP MMU reference', ['shared']);
const PR_SET_EXT = P('set_external_spte_present', 'freeze a mirror SPTE while the TDX module installs the S-EPT entry', ['gfn', 'level', 'new_spte']);
const PR_REMOVE_EXT = P('remove_external_spte', 'remove a private leaf from the S-EPT', ['gfn', 'level', 'pfn']);
const PR_AGE = P('__kvm_tdp_mmu_age_gfn_range', 'clear Accessed (or access-track) leaves of a gfn range', ['start', 'end', 'test_only']);
const PR_WRPROT = P('kvm_tdp_mmu_wrprot_slot', 'remove W from leaves of a memslot at or above min_level', ['slot', 'min_level']);
const PR_SPLIT_ROOT = P('tdp_mmu_split_huge_pages_root', 'eagerly split huge pages of a range down to target_level', ['root', 'start', 'end', 'target_level']);
const PR_RECOVER = P('recover_huge_pages_range', 'replace tables by huge SPTEs where the slot allows it again', ['root', 'slot']);
const PR_CLEAR_DIRTY = P('clear_dirty_pt_masked', 'clear D (or W) of the 4K leaves selected by a 64-bit mask', ['gfn', 'mask', 'wrprot']);

/** Bound on `goto retry` loops: the model never races, so only a refusing TDX module could spin. */
const MAX_RETRIES = 8;

const out = { lo: 0, hi: 0 };
const out2 = { lo: 0, hi: 0 };
const fault_iter = new tdp_iter();

// Hot events go out as numbers (64-bit values as halves): their fields and text are made only if read.
const TP_SPTE_CHANGED = tracepointShape('kvm_tdp_mmu_spte_changed', ['as_id', 'gfn', 'level', 'old_spte:u64', 'new_spte:u64']);
const TP_SET_SPTE = tracepointShape('kvm_mmu_set_spte', ['gfn', 'spte:u64', 'sptep', 'level', 'r:bool', 'x:bool', 'u']);
const TP_SPTE_REQUESTED = tracepointShape('kvm_mmu_spte_requested', ['gfn', 'pfn:u64', 'level']);

function hexv(lo: number, hi: number): number | string {
  return halvesToValue(lo, hi);
}

/** The kernel virtual address of an SPTE (lowmem direct map), as %p prints it without hashing. */
export function sptep_va(sp: KvmMmuPage, index: number): string {
  const pa = sp.spt_pfn * 4096 + index * 8;
  const lo = pa % 0x1_0000_0000;
  const hi = (PAGE_OFFSET_HI + Math.floor(pa / 0x1_0000_0000)) >>> 0;
  return hi.toString(16) + lo.toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------------------------------------------
// External (TDX S-EPT) page tables.

/** Whether SPTE changes at the iterator's position must be mirrored into the TDX module. */
function iter_is_external(kvm: Kvm, iter: tdp_iter): boolean {
  if (kvm.tdx_variant === 'sp_field') return kvm.is_tdx && iter.gfn_bits === 0 && !kvm.kvm_is_gfn_alias(iter.gfn);
  return is_mirror_sp(iter.sp!);
}

function sp_is_external(kvm: Kvm, sp: KvmMmuPage): boolean {
  if (kvm.tdx_variant === 'sp_field') return kvm.is_tdx && sp.gfn_stolen_bits === 0;
  return is_mirror_sp(sp);
}

/** kvm_mmu_alloc_external_spt(): the page handed to the TDX module for a mirror table (its own pfn). */
function kvm_mmu_alloc_external_spt(kvm: Kvm, sp: KvmMmuPage): void {
  sp.external_spt = kvm.alloc_external_spt_pfn();
}

function remove_external_spte(kvm: Kvm, gfn: number, old_lo: number, old_hi: number, level: number): void {
  // Non-leaf entries of the S-EPT go away with free_external_spt, never one by one.
  if (!(level === PG_LEVEL_4K || (old_lo & 0x80) !== 0)) return;
  if ((old_lo & 0x800) === 0) return;
  const pfn = spte_pfn(old_lo, old_hi);
  if (probes.armed) probes.hit(PR_REMOVE_EXT, { gfn, level, pfn });
  const ret = kvm.tdx_hooks ? kvm.tdx_hooks.remove_external_spte(kvm, gfn, level, pfn) : 0;
  kvm.KVM_BUG_ON(ret !== 0, `remove_external_spte gfn ${gfn.toString(16)} level ${level} failed (${ret})`);
}

function set_external_spte_present(kvm: Kvm, iter: tdp_iter, new_lo: number, new_hi: number): number {
  const sp = iter.sp!;
  const j = iter.index << 1;
  const level = iter.level;
  const gfn = iter.gfn;
  kvm.KVM_BUG_ON((iter.old_lo & 0x800) !== 0, 'set_external_spte_present over a present SPTE');
  if (probes.armed) probes.hit(PR_SET_EXT, { gfn, level, new_spte: hexv(new_lo, new_hi) });
  // Freeze the mirror entry so nothing else can touch it while the TDX module is called.
  sp.spt[j] = FROZEN_SPTE_LO;
  sp.spt[j + 1] = FROZEN_SPTE_HI;
  const is_leaf = level === PG_LEVEL_4K || (new_lo & 0x80) !== 0;
  let ret = 0;
  const hooks = kvm.tdx_hooks;
  if (is_leaf) {
    ret = hooks ? hooks.set_external_spte(kvm, gfn, level, spte_pfn(new_lo, new_hi)) : 0;
  } else {
    const child = spte_to_child_sp(kvm.pool, new_lo, new_hi, level);
    kvm.KVM_BUG_ON(!child || child.external_spt === 0, 'linking a mirror table without an external_spt');
    ret = hooks ? hooks.link_external_spt(kvm, gfn, level, child ? child.external_spt : 0) : 0;
  }
  if (ret !== 0) {
    sp.spt[j] = iter.old_lo;
    sp.spt[j + 1] = iter.old_hi;
  } else {
    sp.spt[j] = new_lo;
    sp.spt[j + 1] = new_hi;
  }
  return ret;
}

// ---------------------------------------------------------------------------------------------------
// SPTE updates.

/** kvm_update_page_stats(). */
export function kvm_update_page_stats(kvm: Kvm, level: number, count: number): void {
  kvm.stat.pages[level - 1] = kvm.stat.pages[level - 1]! + count;
}

function tdp_account_mmu_page(kvm: Kvm, _sp: KvmMmuPage): void {
  kvm.arch.tdp_mmu_pages++;
}

function tdp_unaccount_mmu_page(kvm: Kvm, _sp: KvmMmuPage): void {
  kvm.arch.tdp_mmu_pages--;
}

function tdp_mmu_unlink_sp(kvm: Kvm, sp: KvmMmuPage): void {
  tdp_unaccount_mmu_page(kvm, sp);
  if (!sp.nx_huge_page_disallowed) return;
  sp.nx_huge_page_disallowed = false;
  untrack_possible_nx_huge_page(kvm, sp);
}

function tdp_mmu_free_sp(kvm: Kvm, sp: KvmMmuPage): void {
  if (kvm.tdx_variant === 'sp_field') kvm.sp_hash_remove(sp);
  kvm.pool.free(sp);
}

/** handle_removed_pt(): every entry of the unlinked table is frozen and accounted; then the table is freed. */
export function handle_removed_pt(kvm: Kvm, sp: KvmMmuPage, shared: boolean): void {
  if (probes.armed) probes.hit(PR_REMOVED, { sp, shared });
  const level = sp.role & ROLE_LEVEL_MASK;
  const base_gfn = sp.gfn;
  const spt = sp.spt;
  const as_id = kvm_mmu_page_as_id(sp);
  const per = KVM_PAGES_PER_HPAGE(level);
  const external = sp_is_external(kvm, sp);
  if (trace.enabled) emit_sp_event(kvm, 'kvm_mmu_prepare_zap_page', sp, undefined);
  tdp_mmu_unlink_sp(kvm, sp);
  for (let i = 0; i < 512; i++) {
    const j = i << 1;
    const gfn = base_gfn + i * per;
    const old_lo = spt[j]!;
    const old_hi = spt[j + 1]!;
    if (!shared && (old_lo & 0x800) === 0) continue;
    // Shared: every entry, present or not, becomes FROZEN so no racing fault can fill it.
    spt[j] = FROZEN_SPTE_LO;
    spt[j + 1] = FROZEN_SPTE_HI;
    handle_changed_spte(kvm, as_id, gfn, old_lo, old_hi, FROZEN_SPTE_LO, FROZEN_SPTE_HI, level, shared);
    if (external) {
      kvm.KVM_BUG_ON(shared, 'zapping a mirror table under the read lock');
      remove_external_spte(kvm, gfn, old_lo, old_hi, level);
    }
  }
  if (external && kvm.tdx_hooks) {
    const ret = kvm.tdx_hooks.free_external_spt(kvm, base_gfn, level, sp.external_spt);
    if (kvm.WARN_ON_ONCE(ret !== 0, `free_external_spt gfn ${base_gfn.toString(16)} level ${level} failed (${ret})`)) {
      // The TDX module still owns the page: leak it rather than hand encrypted memory back.
      kvm.leaked_external_spts.push(sp.external_spt);
      sp.external_spt = 0;
    }
  }
  tdp_mmu_free_sp(kvm, sp);
}

/** handle_changed_spte(). */
export function handle_changed_spte(kvm: Kvm, as_id: number, gfn: number, old_lo: number, old_hi: number, new_lo: number, new_hi: number, level: number, shared: boolean): void {
  const was_present = (old_lo & 0x800) !== 0;
  const is_present = (new_lo & 0x800) !== 0;
  const was_leaf = was_present && (level === 1 || (old_lo & 0x80) !== 0);
  const is_leaf = is_present && (level === 1 || (new_lo & 0x80) !== 0);
  // Address bits 51:12 differ (only read where it matters: leaf->leaf and removed tables).
  const pfn_changed = ((old_lo ^ new_lo) & 0xffff_f000) !== 0 || ((old_hi ^ new_hi) & 0xfffff) !== 0;
  if (probes.armed) probes.hit(PR_CHANGED, { as_id, gfn, old_spte: hexv(old_lo, old_hi), new_spte: hexv(new_lo, new_hi), level, shared });
  if (was_leaf && is_leaf && pfn_changed) {
    throw new Error(`BUG: Invalid SPTE change: cannot replace a present leaf SPTE with another present leaf SPTE mapping a different PFN! as_id: ${as_id} gfn: ${gfn.toString(16)} level: ${level}`);
  }
  if (old_lo === new_lo && old_hi === new_hi) return;
  if (trace.enabled) {
    trace.emitRaw(TP_SPTE_CHANGED, kvm.cur_vcpu, [as_id, gfn, level, old_lo, old_hi, new_lo, new_hi]);
  }
  if (!was_present && !is_present) {
    const m = kvm.masks;
    kvm.WARN_ON_ONCE(
      !is_mmio_spte(m, old_lo, old_hi, kvm.arch.shadow_mmio_value) && !is_mmio_spte(m, new_lo, new_hi, kvm.arch.shadow_mmio_value) &&
        !(new_lo === FROZEN_SPTE_LO && new_hi === FROZEN_SPTE_HI),
      'Unexpected SPTE change! Nonpresent SPTEs should not be replaced with another, different nonpresent SPTE',
    );
    return;
  }
  if (is_leaf !== was_leaf) kvm_update_page_stats(kvm, level, is_leaf ? 1 : -1);
  if (was_present && !was_leaf && (is_leaf || !is_present || kvm.WARN_ON_ONCE(pfn_changed, 'non-leaf SPTE pfn changed'))) {
    const child = spte_to_child_sp(kvm.pool, old_lo, old_hi, level);
    if (child) handle_removed_pt(kvm, child, shared);
  }
}

/** __tdp_mmu_set_spte_atomic(): 0 or -EBUSY (a TDX module refusal also fails the update). */
function __tdp_mmu_set_spte_atomic(kvm: Kvm, iter: tdp_iter, new_lo: number, new_hi: number): number {
  if (iter.yielded || (iter.old_lo === FROZEN_SPTE_LO && iter.old_hi === FROZEN_SPTE_HI)) kvm.WARN_ON_ONCE(true, 'atomic update of a frozen SPTE');
  if (kvm.is_tdx && iter_is_external(kvm, iter) && !(new_lo === FROZEN_SPTE_LO && new_hi === FROZEN_SPTE_HI)) {
    if (kvm.KVM_BUG_ON((new_lo & 0x800) === 0, 'atomic zap of a mirror SPTE')) return -EBUSY;
    const ret = set_external_spte_present(kvm, iter, new_lo, new_hi);
    if (ret !== 0) return ret;
  } else {
    const spt = iter.sp!.spt;
    const j = iter.index << 1;
    if (spt[j] !== iter.old_lo || spt[j + 1] !== iter.old_hi) {
      iter.old_lo = spt[j]!;
      iter.old_hi = spt[j + 1]!;
      return -EBUSY;
    }
    spt[j] = new_lo;
    spt[j + 1] = new_hi;
  }
  return 0;
}

/** tdp_mmu_set_spte_atomic() (mmu_lock held for read). */
function tdp_mmu_set_spte_atomic(kvm: Kvm, iter: tdp_iter, new_lo: number, new_hi: number): number {
  const r = __tdp_mmu_set_spte_atomic(kvm, iter, new_lo, new_hi);
  if (r !== 0) return r;
  handle_changed_spte(kvm, iter.as_id, iter.gfn, iter.old_lo, iter.old_hi, new_lo, new_hi, iter.level, true);
  return 0;
}

/** tdp_mmu_set_spte() (mmu_lock held for write); returns nothing, the caller's old value is current. */
function tdp_mmu_set_spte(kvm: Kvm, as_id: number, sp: KvmMmuPage, index: number, old_lo: number, old_hi: number, new_lo: number, new_hi: number, gfn: number, level: number, external: boolean): void {
  kvm.WARN_ON_ONCE(
    (old_lo === FROZEN_SPTE_LO && old_hi === FROZEN_SPTE_HI) || (new_lo === FROZEN_SPTE_LO && new_hi === FROZEN_SPTE_HI),
    'tdp_mmu_set_spte with a frozen SPTE',
  );
  const j = index << 1;
  sp.spt[j] = new_lo;
  sp.spt[j + 1] = new_hi;
  handle_changed_spte(kvm, as_id, gfn, old_lo, old_hi, new_lo, new_hi, level, false);
  if (external) {
    kvm.KVM_BUG_ON((new_lo & 0x800) !== 0, 'non-atomic install of a present mirror SPTE');
    remove_external_spte(kvm, gfn, old_lo, old_hi, level);
  }
}

function tdp_mmu_iter_set_spte(kvm: Kvm, iter: tdp_iter, new_lo: number, new_hi: number): void {
  kvm.WARN_ON_ONCE(iter.yielded, 'set through a yielded iterator');
  tdp_mmu_set_spte(kvm, iter.as_id, iter.sp!, iter.index, iter.old_lo, iter.old_hi, new_lo, new_hi, iter.gfn, iter.level, iter_is_external(kvm, iter));
  iter.old_lo = new_lo;
  iter.old_hi = new_hi;
}

/** tdp_mmu_iter_cond_resched(): yield (restart from the root next step) when needed and progress was made. */
function tdp_mmu_iter_cond_resched(kvm: Kvm, iter: tdp_iter, flush: boolean, _shared: boolean): boolean {
  if (!kvm.need_resched()) return false;
  if (iter.next_last_level_gfn === iter.yielded_gfn) return false;
  if (flush) kvm.kvm_flush_remote_tlbs();
  kvm.yields++;
  iter.yielded = true;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Roots.

/** Trace text of the SP events needs mmu_valid_gen, gfn, role, root_count, unsync. */
function emit_sp_event(kvm: Kvm, name: string, sp: KvmMmuPage, created: boolean | undefined): void {
  const f: Record<string, number | string | boolean> = {
    mmu_valid_gen: sp.mmu_valid_gen, gfn: sp.gfn + sp.gfn_stolen_bits, role: sp.role, root_count: sp.root_count, unsync: sp.unsync,
  };
  if (created !== undefined) f['created'] = created;
  emitTracepoint(name, kvm.cur_vcpu, f);
}

function tdp_mmu_init_sp(kvm: Kvm, sp: KvmMmuPage, parent: KvmMmuPage | null, index: number, gfn: number, role: number): void {
  sp.role = role;
  sp.gfn = gfn;
  sp.parent = parent;
  sp.parent_index = index;
  sp.tdp_mmu_page = true;
  if (trace.enabled) emit_sp_event(kvm, 'kvm_mmu_get_page', sp, true);
}

function tdp_mmu_init_child_sp(kvm: Kvm, child: KvmMmuPage, iter: tdp_iter): void {
  const parent = iter.sp!;
  const role = parent.role - 1; // level is the low nibble; a child is never level 0
  if (kvm.tdx_variant === 'sp_field') {
    child.gfn_stolen_bits = iter.gfn_bits;
    kvm.sp_hash_lookup_insert(iter.gfn, iter.gfn_bits, role, child);
  }
  tdp_mmu_init_sp(kvm, child, parent, iter.index, iter.gfn, role);
}

function tdp_mmu_alloc_sp(kvm: Kvm): KvmMmuPage {
  return kvm.pool.alloc(0, 0, true);
}

export function kvm_tdp_mmu_get_root(root: KvmMmuPage): boolean {
  if (root.root_count === 0) return false;
  root.root_count++;
  return true;
}

/** kvm_tdp_mmu_put_root(). */
export function kvm_tdp_mmu_put_root(kvm: Kvm, root: KvmMmuPage): void {
  if (probes.armed) probes.hit(PR_PUT_ROOT, { root, root_count: root.root_count });
  if (--root.root_count !== 0) return;
  kvm.KVM_BUG_ON(!root.tdp_mmu_page || (root.role & ROLE_INVALID) === 0, 'last reference put on a valid root');
  const roots = kvm.arch.tdp_mmu_roots;
  const i = roots.indexOf(root);
  if (i >= 0) roots.splice(i, 1);
  tdp_mmu_free_sp(kvm, root);
}

function tdp_mmu_root_match(root: KvmMmuPage, types: number): boolean {
  if ((root.role & ROLE_INVALID) !== 0 && (types & KVM_INVALID_ROOTS) === 0) return false;
  if ((root.role & ROLE_IS_MIRROR) === 0) return (types & KVM_DIRECT_ROOTS) !== 0;
  return (types & KVM_MIRROR_ROOTS) !== 0;
}

/**
 * (root, gfn_bits) pairs to walk for `types` in `as_id` (-1 = all). With the sp_field variant the single
 * root is walked once per alias: gfn_bits 0 stands for the private ("mirror") half.
 */
function roots_for(kvm: Kvm, as_id: number, types: number): Array<[KvmMmuPage, number]> {
  const res: Array<[KvmMmuPage, number]> = [];
  const sp_field = kvm.is_tdx && kvm.tdx_variant === 'sp_field';
  for (const root of kvm.arch.tdp_mmu_roots) {
    if (as_id >= 0 && kvm_mmu_page_as_id(root) !== as_id) continue;
    if (sp_field) {
      if ((root.role & ROLE_INVALID) !== 0 && (types & KVM_INVALID_ROOTS) === 0) continue;
      if (types & KVM_MIRROR_ROOTS) res.push([root, 0]);
      if (types & KVM_DIRECT_ROOTS) res.push([root, kvm.arch.gfn_direct_bits]);
      continue;
    }
    if (!tdp_mmu_root_match(root, types)) continue;
    res.push([root, kvm.kvm_gfn_root_bits(root)]);
  }
  return res;
}

/** kvm_tdp_mmu_alloc_root(vcpu, mirror). */
export function kvm_tdp_mmu_alloc_root(vcpu: KvmVcpu, mirror: boolean): void {
  const kvm = vcpu.kvm;
  const mmu = vcpu.mmu;
  let role = mmu.root_role;
  if (mirror) role = (role | ROLE_IS_MIRROR) >>> 0;
  if (probes.armed) probes.hit(PR_ALLOC_ROOT, { mirror, role });
  let root: KvmMmuPage | null = null;
  for (const r of kvm.arch.tdp_mmu_roots) {
    if (r.role === role && (r.role & ROLE_INVALID) === 0 && kvm_tdp_mmu_get_root(r)) {
      root = r;
      break;
    }
  }
  if (root === null) {
    root = tdp_mmu_alloc_sp(kvm);
    tdp_mmu_init_sp(kvm, root, null, 0, 0, role);
    // One reference for this vCPU, one the TDP MMU keeps until the root is invalidated.
    root.root_count = 2;
    kvm.arch.tdp_mmu_roots.unshift(root);
  }
  if (mirror) mmu.mirror_root = root;
  else mmu.root = root;
}

/** kvm_tdp_mmu_invalidate_roots(). */
export function kvm_tdp_mmu_invalidate_roots(kvm: Kvm, root_types: number): void {
  if (probes.armed) probes.hit(PR_INVALIDATE, { root_types });
  if (kvm.WARN_ON_ONCE((root_types & KVM_INVALID_ROOTS) !== 0, 'invalidating invalid roots')) root_types &= ~KVM_INVALID_ROOTS;
  for (const root of kvm.arch.tdp_mmu_roots) {
    if (!tdp_mmu_root_match(root, root_types)) continue;
    if ((root.role & ROLE_INVALID) === 0) {
      root.tdp_mmu_scheduled_root_to_zap = true;
      root.role = (root.role | ROLE_INVALID) >>> 0;
    }
  }
}

/** kvm_tdp_mmu_zap_invalidated_roots(). */
export function kvm_tdp_mmu_zap_invalidated_roots(kvm: Kvm, shared: boolean): void {
  if (probes.armed) probes.hit(PR_ZAP_INVALIDATED, { shared });
  for (const root of [...kvm.arch.tdp_mmu_roots]) {
    if (!root.tdp_mmu_scheduled_root_to_zap) continue;
    if (!kvm_tdp_mmu_get_root(root)) continue;
    root.tdp_mmu_scheduled_root_to_zap = false;
    kvm.KVM_BUG_ON((root.role & ROLE_INVALID) === 0, 'scheduled root is valid');
    tdp_mmu_zap_root(kvm, root, shared);
    // The TDP MMU's own reference goes after the zap, while mmu_notifiers could still reach the root.
    kvm_tdp_mmu_put_root(kvm, root);
    kvm_tdp_mmu_put_root(kvm, root); // the iterator's reference
  }
}

function __tdp_mmu_zap_root(kvm: Kvm, root: KvmMmuPage, shared: boolean, zap_level: number): void {
  const iter = new tdp_iter();
  const end = kvm.kvm_mmu_max_gfn() + 1;
  // The _all walk starts at gfn 0 without alias bits, so it covers both halves of a TDX direct root.
  for (tdp_iter_start(iter, kvm.pool, root, zap_level, 0, 0); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (tdp_mmu_iter_cond_resched(kvm, iter, false, shared)) break;
      if ((iter.old_lo & 0x800) === 0) break;
      if (iter.level > zap_level) break;
      if (!shared) {
        iter_set_nonpresent(kvm, iter, iter_is_external(kvm, iter));
        break;
      }
      if (tdp_mmu_set_spte_atomic(kvm, iter, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI) === 0) break;
    }
  }
}

function iter_set_nonpresent(kvm: Kvm, iter: tdp_iter, external: boolean): void {
  tdp_mmu_set_spte(kvm, iter.as_id, iter.sp!, iter.index, iter.old_lo, iter.old_hi, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI, iter.gfn, iter.level, external);
  iter.old_lo = SHADOW_NONPRESENT_VALUE_LO;
  iter.old_hi = SHADOW_NONPRESENT_VALUE_HI;
}

/** tdp_mmu_zap_root(): 4K, 2M, 1G, then root-level passes (the kernel's order without KVM_PROVE_MMU). */
export function tdp_mmu_zap_root(kvm: Kvm, root: KvmMmuPage, shared: boolean): void {
  if (probes.armed) probes.hit(PR_ZAP_ROOT, { root, shared });
  kvm.WARN_ON_ONCE(root.root_count === 0, 'zapping an unreferenced root');
  __tdp_mmu_zap_root(kvm, root, shared, PG_LEVEL_4K);
  __tdp_mmu_zap_root(kvm, root, shared, PG_LEVEL_2M);
  __tdp_mmu_zap_root(kvm, root, shared, PG_LEVEL_1G);
  __tdp_mmu_zap_root(kvm, root, shared, root.role & ROLE_LEVEL_MASK);
}

/**
 * kvm_tdp_mmu_zap_possible_nx_huge_page() (6.17+, formerly kvm_tdp_mmu_zap_sp): NX recovery zaps the
 * parent SPTE of an NX-split table with mmu_lock held for read, so atomically, and only if that SPTE
 * still points at this table.
 */
export function kvm_tdp_mmu_zap_possible_nx_huge_page(kvm: Kvm, sp: KvmMmuPage): boolean {
  if (!sp.tdp_mmu_page && kvm.WARN_ON_ONCE(true, 'not a TDP MMU page')) return false;
  const parent = sp.parent;
  // Roots have no parent SPTE, and can never be possible NX huge pages.
  if (parent === null && kvm.WARN_ON_ONCE(true, 'NX recovery of a root')) return false;
  const iter = zap_sp_iter;
  iter.pool = kvm.pool;
  iter.sp = parent;
  iter.index = sp.parent_index;
  iter.level = (sp.role & ROLE_LEVEL_MASK) + 1;
  iter.gfn = sp.gfn;
  iter.gfn_bits = sp.gfn_stolen_bits;
  iter.as_id = kvm_mmu_page_as_id(sp);
  iter.yielded = false;
  iter.read_old();
  if (spte_to_child_sp(kvm.pool, iter.old_lo, iter.old_hi, iter.level) !== sp) return false;
  if (tdp_mmu_set_spte_atomic(kvm, iter, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI) !== 0) {
    if (spte_to_child_sp(kvm.pool, iter.old_lo, iter.old_hi, iter.level) === sp) kvm.WARN_ON_ONCE(true, 'failed to zap an NX-split table');
    return false;
  }
  return true;
}

const zap_sp_iter = new tdp_iter();

/** tdp_mmu_zap_leafs(). */
function tdp_mmu_zap_leafs(kvm: Kvm, root: KvmMmuPage, gfn_bits: number, start: number, end: number, can_yield: boolean, flush: boolean): boolean {
  if (probes.armed) probes.hit(PR_ZAP_LEAFS, { root, start, end });
  end = Math.min(end, kvm.kvm_mmu_max_gfn() + 1);
  const iter = new tdp_iter();
  const invalid = (root.role & ROLE_INVALID) !== 0;
  for (tdp_iter_start(iter, kvm.pool, root, PG_LEVEL_4K, start, gfn_bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    if (can_yield && tdp_mmu_iter_cond_resched(kvm, iter, flush, false)) {
      flush = false;
      continue;
    }
    if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) continue;
    tdp_mmu_iter_set_spte(kvm, iter, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI);
    if (!invalid) flush = true;
  }
  return flush;
}

/** kvm_tdp_mmu_zap_leafs(): leaves of [start, end) in every valid root. */
export function kvm_tdp_mmu_zap_leafs(kvm: Kvm, start: number, end: number, flush: boolean): boolean {
  for (const [root, bits] of roots_for(kvm, -1, KVM_VALID_ROOTS)) flush = tdp_mmu_zap_leafs(kvm, root, bits, start, end, true, flush);
  return flush;
}

/** kvm_tdp_mmu_zap_all(): direct roots, valid or not (VM teardown / mm release). */
export function kvm_tdp_mmu_zap_all(kvm: Kvm): void {
  for (const [root] of roots_for(kvm, -1, KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS)) {
    if (!kvm_tdp_mmu_get_root(root)) continue;
    tdp_mmu_zap_root(kvm, root, false);
    kvm_tdp_mmu_put_root(kvm, root);
  }
}

/** kvm_gfn_range_filter_to_root_types(). */
export function kvm_gfn_range_filter_to_root_types(kvm: Kvm, filter: number): number {
  if (!kvm.is_tdx) return KVM_DIRECT_ROOTS;
  let t = 0;
  if (filter & KVM_FILTER_PRIVATE) t |= KVM_MIRROR_ROOTS;
  if (filter & KVM_FILTER_SHARED) t |= KVM_DIRECT_ROOTS;
  return t;
}

/** kvm_tdp_mmu_unmap_gfn_range(): used by mmu_notifier and attribute/memslot zaps; includes invalid roots. */
export function kvm_tdp_mmu_unmap_gfn_range(kvm: Kvm, as_id: number, start: number, end: number, attr_filter: number, may_block: boolean, flush: boolean): boolean {
  const types = kvm_gfn_range_filter_to_root_types(kvm, attr_filter) | KVM_INVALID_ROOTS;
  for (const [root, bits] of roots_for(kvm, as_id, types)) flush = tdp_mmu_zap_leafs(kvm, root, bits, start, end, may_block, flush);
  return flush;
}

// ---------------------------------------------------------------------------------------------------
// Fault path.

/** tdp_mmu_get_root_for_fault(): the mirror root for private GPAs of a TDX VM, else the direct root. */
export function tdp_mmu_get_root_for_fault(vcpu: KvmVcpu, fault: kvm_page_fault): KvmMmuPage {
  const kvm = vcpu.kvm;
  if (kvm.kvm_has_mirrored_tdp() && !kvm.kvm_is_addr_direct(fault.addr)) return vcpu.mmu.mirror_root!;
  return vcpu.mmu.root!;
}

/** tdp_mmu_link_sp(). */
function tdp_mmu_link_sp(kvm: Kvm, iter: tdp_iter, sp: KvmMmuPage, shared: boolean): number {
  if (probes.armed) probes.hit(PR_LINK, { sptep: iter.sptep_pa(), sp, shared });
  const pa = sp.spt_pfn * 4096;
  make_nonleaf_spte(kvm.masks, pa % 0x1_0000_0000, Math.floor(pa / 0x1_0000_0000), !kvm.masks.kvm_ad_enabled, out2);
  if (shared) {
    const r = tdp_mmu_set_spte_atomic(kvm, iter, out2.lo, out2.hi);
    if (r !== 0) return r;
  } else {
    tdp_mmu_iter_set_spte(kvm, iter, out2.lo, out2.hi);
  }
  tdp_account_mmu_page(kvm, sp);
  return 0;
}

/** tdp_mmu_split_huge_page(): fill the new table from the huge SPTE, then link it in place. */
function tdp_mmu_split_huge_page(kvm: Kvm, iter: tdp_iter, sp: KvmMmuPage, shared: boolean): number {
  const huge_lo = iter.old_lo;
  const huge_hi = iter.old_hi;
  const level = iter.level;
  if (probes.armed) probes.hit(PR_SPLIT, { sptep: iter.sptep_pa(), huge_spte: hexv(huge_lo, huge_hi), level, sp });
  const nx = kvm.is_nx_huge_page_enabled();
  const spt = sp.spt;
  for (let i = 0; i < 512; i++) {
    make_small_spte(kvm.masks, nx, huge_lo, huge_hi, sp.role, i, out2);
    spt[i << 1] = out2.lo;
    spt[(i << 1) + 1] = out2.hi;
  }
  const ret = tdp_mmu_link_sp(kvm, iter, sp, shared);
  if (ret === 0) kvm_update_page_stats(kvm, level - 1, 512);
  if (trace.enabled) emitTracepoint('kvm_mmu_split_huge_page', kvm.cur_vcpu, { gfn: iter.gfn, spte: hexv(huge_lo, huge_hi), level, errno: ret });
  return ret;
}

/** tdp_mmu_map_handle_target_level(). */
function tdp_mmu_map_handle_target_level(vcpu: KvmVcpu, fault: kvm_page_fault, iter: tdp_iter): number {
  const kvm = vcpu.kvm;
  const m = kvm.masks;
  const sp = iter.sp!;
  if (probes.armed) probes.hit(PR_TARGET, { fault, sptep: iter.sptep_pa(), old_spte: hexv(iter.old_lo, iter.old_hi), level: iter.level });
  let ret = RET_PF_FIXED;
  let wrprot = false;
  if ((sp.role & ROLE_LEVEL_MASK) !== fault.goal_level && kvm.WARN_ON_ONCE(true, 'target SP level != goal_level')) return RET_PF_RETRY;
  const old_present = (iter.old_lo & 0x800) !== 0;
  const old_last = iter.level === 1 || (iter.old_lo & 0x80) !== 0;
  if (old_present && (fault.prefetch || is_access_allowed(m, fault, iter.old_lo, iter.old_hi)) && old_last) {
    if (fault.pfn !== spte_pfn(iter.old_lo, iter.old_hi)) kvm.WARN_ON_ONCE(true, 'spurious fault with a different pfn');
    return RET_PF_SPURIOUS;
  }
  if (fault.slot === null) {
    make_mmio_spte(m, iter.gfn, ACC_ALL, kvm.mmio_gen(iter.as_id), out, kvm.arch.shadow_mmio_value);
  } else {
    const a = kvm.make_spte_args;
    a.level = iter.level;
    a.ad_disabled = (sp.role & 0x1_0000) !== 0;
    a.ad_need_write_protect = kvm.arch.cpu_dirty_log_size !== 0 && sp_guest_mode(sp);
    a.pte_access = ACC_ALL;
    a.gfn = iter.gfn;
    a.pfn = fault.pfn;
    a.old_lo = iter.old_lo;
    a.old_hi = iter.old_hi;
    a.prefetch = fault.prefetch;
    a.synchronizing = false;
    a.host_writable = fault.map_writable;
    a.nx_huge_page_enabled = fault.nx_huge_page_workaround_enabled;
    a.slot = fault.slot;
    a.slot_dirty_track_enabled = kvm_slot_dirty_track_enabled(fault.slot);
    wrprot = make_spte(m, a, out);
  }
  const new_lo = out.lo;
  const new_hi = out.hi;
  if (new_lo === iter.old_lo && new_hi === iter.old_hi) ret = RET_PF_SPURIOUS;
  else if (tdp_mmu_set_spte_atomic(kvm, iter, new_lo, new_hi) !== 0) return RET_PF_RETRY;
  else if (old_present && (!old_last || kvm.WARN_ON_ONCE(leaf_spte_change_needs_tlb_flush(m, iter.old_lo, iter.old_hi, new_lo, new_hi), 'leaf change needs flush'))) {
    kvm.kvm_flush_remote_tlbs_range(iter.gfn, KVM_PAGES_PER_HPAGE(iter.level));
  }
  if (wrprot && fault.write) ret = RET_PF_WRITE_PROTECTED;
  if (is_mmio_spte(m, new_lo, new_hi, kvm.arch.shadow_mmio_value)) {
    vcpu.stat.pf_mmio_spte_created++;
    if (trace.enabled) {
      emitTracepoint('mark_mmio_spte', vcpu.vcpu_id, {
        sptep: sptep_va(sp, iter.index), gfn: iter.gfn, access: new_lo & ACC_ALL, gen: get_mmio_spte_generation(new_lo, new_hi),
      });
    }
    ret = RET_PF_EMULATE;
  } else if (trace.enabled) {
    const spt = sp.spt;
    const j = iter.index << 1;
    const lo = spt[j]!;
    const hi = spt[j + 1]!;
    const um = m.shadow_user_mask;
    trace.emitRaw(TP_SET_SPTE, vcpu.vcpu_id, [
      iter.gfn, lo, hi, sp.sptep_pa(iter.index), iter.level,
      (m.shadow_present_mask.lo | m.shadow_present_mask.hi) !== 0 || (lo & 1) !== 0 ? 1 : 0,
      is_executable_pte(m, lo, hi) ? 1 : 0,
      (um.lo | um.hi) === 0 ? -1 : (lo & um.lo) !== 0 || (hi & um.hi) !== 0 ? 1 : 0,
    ]);
  }
  return ret;
}

/** kvm_tdp_mmu_map(). */
export function kvm_tdp_mmu_map(vcpu: KvmVcpu, fault: kvm_page_fault): number {
  const kvm = vcpu.kvm;
  const root = tdp_mmu_get_root_for_fault(vcpu, fault);
  if (probes.armed) probes.hit(PR_MAP, { fault, root });
  kvm_mmu_hugepage_adjust(vcpu, fault);
  if (trace.enabled) {
    // pfn | (gfn offset within the goal-level page), on the kernel's 64-bit pfn (NOSLOT is bit 63).
    const per = KVM_PAGES_PER_HPAGE(fault.goal_level);
    kvm_pfn_halves(fault.pfn, out2);
    const off = fault.gfn % per;
    trace.emitRaw(TP_SPTE_REQUESTED, vcpu.vcpu_id, [fault.gfn, (out2.lo | off) >>> 0, out2.hi, fault.goal_level]);
  }
  const iter = fault_iter;
  const gfn_bits = kvm.arch.gfn_direct_bits === 0 ? 0 : kvm.tdx_variant === 'sp_field' ? (kvm.kvm_is_addr_direct(fault.addr) ? kvm.arch.gfn_direct_bits : 0) : kvm.kvm_gfn_root_bits(root);
  const end = fault.gfn + 1;
  const nx = fault.nx_huge_page_workaround_enabled;
  for (tdp_iter_start(iter, kvm.pool, root, 1, fault.gfn, gfn_bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    if (nx) disallowed_hugepage_adjust(kvm, fault, iter.old_lo, iter.old_hi, iter.level);
    if (iter.old_lo === FROZEN_SPTE_LO && iter.old_hi === FROZEN_SPTE_HI) return RET_PF_RETRY;
    if (iter.level === fault.goal_level) return tdp_mmu_map_handle_target_level(vcpu, fault, iter);
    const present = (iter.old_lo & 0x800) !== 0;
    if (present && (iter.old_lo & 0x80) === 0) continue;
    const sp = tdp_mmu_alloc_sp(kvm);
    tdp_mmu_init_child_sp(kvm, sp, iter);
    if (kvm.is_tdx && sp_is_external(kvm, sp)) kvm_mmu_alloc_external_spt(kvm, sp);
    sp.nx_huge_page_disallowed = fault.huge_page_disallowed;
    let r: number;
    if (present) {
      kvm.KVM_BUG_ON(iter_is_external(kvm, iter), 'splitting a huge page in a mirror root');
      r = tdp_mmu_split_huge_page(kvm, iter, sp, true);
    } else {
      r = tdp_mmu_link_sp(kvm, iter, sp, true);
    }
    if (r !== 0) {
      tdp_mmu_free_sp(kvm, sp);
      return RET_PF_RETRY;
    }
    if (fault.huge_page_disallowed && fault.req_level >= iter.level && sp.nx_huge_page_disallowed) track_possible_nx_huge_page(kvm, sp);
  }
  kvm.WARN_ON_ONCE(iter.level === fault.goal_level, 'map walk ended at the goal level');
  return RET_PF_RETRY;
}

/**
 * kvm_tdp_mmu_fast_pf_get_last_sptep(): the last SPTE on the direct root's path to gfn (mirror roots are
 * never fixed locklessly). Writes the SPTE into `res`; returns the SP and index, or null.
 */
export function kvm_tdp_mmu_fast_pf_get_last_sptep(vcpu: KvmVcpu, gfn: number, res: { sp: KvmMmuPage | null; index: number; lo: number; hi: number; level: number }): boolean {
  const kvm = vcpu.kvm;
  const root = vcpu.mmu.root;
  res.sp = null;
  if (root === null) return false;
  const iter = fault_iter;
  for (tdp_iter_start(iter, kvm.pool, root, 1, gfn, kvm.kvm_gfn_root_bits(root)); iter.valid && iter.gfn < gfn + 1; tdp_iter_next(iter)) {
    res.lo = iter.old_lo;
    res.hi = iter.old_hi;
    res.sp = iter.sp;
    res.index = iter.index;
    res.level = iter.level;
  }
  return res.sp !== null;
}

/** kvm_tdp_mmu_get_walk(): SPTEs along the path to `gfn` from `root`, [level] = spte; returns the leaf level. */
export function kvm_tdp_mmu_get_walk(kvm: Kvm, root: KvmMmuPage, gfn: number, gfn_bits: number, sptes: Array<{ lo: number; hi: number; sp: KvmMmuPage; index: number } | undefined>): number {
  const iter = new tdp_iter();
  let leaf = -1;
  for (tdp_iter_start(iter, kvm.pool, root, 1, gfn, gfn_bits); iter.valid && iter.gfn < gfn + 1; tdp_iter_next(iter)) {
    leaf = iter.level;
    sptes[leaf] = { lo: iter.old_lo, hi: iter.old_hi, sp: iter.sp!, index: iter.index };
  }
  return leaf;
}

// ---------------------------------------------------------------------------------------------------
// Aging, write protection, dirty logging, splitting, recovery.

function kvm_tdp_mmu_age_spte(kvm: Kvm, iter: tdp_iter): void {
  const m = kvm.masks;
  let new_lo: number;
  let new_hi: number;
  if (spte_ad_enabled(iter.old_lo, iter.old_hi)) {
    new_lo = (iter.old_lo & ~m.shadow_accessed_mask.lo) >>> 0;
    new_hi = (iter.old_hi & ~m.shadow_accessed_mask.hi) >>> 0;
    const spt = iter.sp!.spt;
    spt[iter.index << 1] = new_lo;
    spt[(iter.index << 1) + 1] = new_hi;
  } else {
    mark_spte_for_access_track(m, iter.old_lo, iter.old_hi, out2);
    new_lo = out2.lo;
    new_hi = out2.hi;
    if (__tdp_mmu_set_spte_atomic(kvm, iter, new_lo, new_hi) !== 0) return;
  }
  if (trace.enabled) {
    trace.emitRaw(TP_SPTE_CHANGED, kvm.cur_vcpu, [iter.as_id, iter.gfn, iter.level, iter.old_lo, iter.old_hi, new_lo, new_hi]);
  }
}

/** __kvm_tdp_mmu_age_gfn_range(). */
export function __kvm_tdp_mmu_age_gfn_range(kvm: Kvm, as_id: number, start: number, end: number, attr_filter: number, test_only: boolean): boolean {
  if (probes.armed) probes.hit(PR_AGE, { start, end, test_only });
  const types = kvm_gfn_range_filter_to_root_types(kvm, attr_filter);
  let ret = false;
  const iter = new tdp_iter();
  const m = kvm.masks;
  for (const [root, bits] of roots_for(kvm, as_id, types)) {
    for (tdp_iter_start(iter, kvm.pool, root, 1, start, bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
      if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) continue;
      if (!is_accessed_spte(m, iter.old_lo, iter.old_hi)) continue;
      if (test_only) return true;
      ret = true;
      kvm_tdp_mmu_age_spte(kvm, iter);
    }
  }
  return ret;
}

function wrprot_gfn_range(kvm: Kvm, root: KvmMmuPage, bits: number, start: number, end: number, min_level: number): boolean {
  const iter = new tdp_iter();
  let spte_set = false;
  for (tdp_iter_start(iter, kvm.pool, root, min_level, start, bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (tdp_mmu_iter_cond_resched(kvm, iter, false, true)) break;
      if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0) || (iter.old_lo & PT_WRITABLE_MASK) === 0) break;
      if (tdp_mmu_set_spte_atomic(kvm, iter, (iter.old_lo & ~PT_WRITABLE_MASK) >>> 0, iter.old_hi) !== 0) continue;
      spte_set = true;
      break;
    }
  }
  return spte_set;
}

/** kvm_tdp_mmu_wrprot_slot(). */
export function kvm_tdp_mmu_wrprot_slot(kvm: Kvm, slot: KvmMemorySlot, min_level: number): boolean {
  if (probes.armed) probes.hit(PR_WRPROT, { slot: slot.id, min_level });
  let spte_set = false;
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) spte_set = wrprot_gfn_range(kvm, root, bits, slot.base_gfn, slot.base_gfn + slot.npages, min_level) || spte_set;
  return spte_set;
}

/** tdp_mmu_need_write_protect(): D bits can't be trusted (L2 with PML) or don't exist (A/D off). */
function tdp_mmu_need_write_protect(kvm: Kvm, sp: KvmMmuPage): boolean {
  return (kvm.arch.cpu_dirty_log_size !== 0 && sp_guest_mode(sp)) || !kvm.masks.kvm_ad_enabled;
}

function clear_dirty_gfn_range(kvm: Kvm, root: KvmMmuPage, bits: number, start: number, end: number): void {
  const wp = tdp_mmu_need_write_protect(kvm, root);
  const dlo = wp ? PT_WRITABLE_MASK : kvm.masks.shadow_dirty_mask.lo;
  const dhi = wp ? 0 : kvm.masks.shadow_dirty_mask.hi;
  const iter = new tdp_iter();
  for (tdp_iter_start(iter, kvm.pool, root, 1, start, bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) break;
      if (tdp_mmu_iter_cond_resched(kvm, iter, false, true)) break;
      if ((iter.old_lo & dlo) === 0 && (iter.old_hi & dhi) === 0) break;
      if (tdp_mmu_set_spte_atomic(kvm, iter, (iter.old_lo & ~dlo) >>> 0, (iter.old_hi & ~dhi) >>> 0) !== 0) continue;
      break;
    }
  }
}

/** kvm_tdp_mmu_clear_dirty_slot(). */
export function kvm_tdp_mmu_clear_dirty_slot(kvm: Kvm, slot: KvmMemorySlot): void {
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) clear_dirty_gfn_range(kvm, root, bits, slot.base_gfn, slot.base_gfn + slot.npages);
}

/** clear_dirty_pt_masked(): mask is a 64-bit long as two 32-bit halves. Writes bypass handle_changed_spte. */
function clear_dirty_pt_masked(kvm: Kvm, root: KvmMmuPage, bits: number, gfn: number, mask_lo: number, mask_hi: number, wrprot: boolean): void {
  if (probes.armed) probes.hit(PR_CLEAR_DIRTY, { gfn, mask: hexv(mask_lo, mask_hi), wrprot });
  const wp = wrprot || tdp_mmu_need_write_protect(kvm, root);
  const dlo = wp ? PT_WRITABLE_MASK : kvm.masks.shadow_dirty_mask.lo;
  const dhi = wp ? 0 : kvm.masks.shadow_dirty_mask.hi;
  const first = mask_lo !== 0 ? 31 - Math.clz32(mask_lo & -mask_lo) : 32 + 31 - Math.clz32(mask_hi & -mask_hi);
  const iter = new tdp_iter();
  for (tdp_iter_start(iter, kvm.pool, root, 1, gfn + first, bits); iter.valid && iter.gfn < gfn + 64; tdp_iter_next(iter)) {
    if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) continue;
    if (mask_lo === 0 && mask_hi === 0) break;
    const off = iter.gfn - gfn;
    if (iter.level > PG_LEVEL_4K) continue;
    const inMask = off < 32 ? ((mask_lo >>> off) & 1) !== 0 : ((mask_hi >>> (off - 32)) & 1) !== 0;
    if (!inMask) continue;
    if (off < 32) mask_lo = (mask_lo & ~(1 << off)) >>> 0;
    else mask_hi = (mask_hi & ~(1 << (off - 32))) >>> 0;
    if ((iter.old_lo & dlo) === 0 && (iter.old_hi & dhi) === 0) continue;
    const new_lo = (iter.old_lo & ~dlo) >>> 0;
    const new_hi = (iter.old_hi & ~dhi) >>> 0;
    const spt = iter.sp!.spt;
    spt[iter.index << 1] = new_lo;
    spt[(iter.index << 1) + 1] = new_hi;
    if (trace.enabled) {
      trace.emitRaw(TP_SPTE_CHANGED, kvm.cur_vcpu, [iter.as_id, iter.gfn, iter.level, iter.old_lo, iter.old_hi, new_lo, new_hi]);
    }
    iter.old_lo = new_lo;
    iter.old_hi = new_hi;
  }
}

/** kvm_tdp_mmu_clear_dirty_pt_masked(). */
export function kvm_tdp_mmu_clear_dirty_pt_masked(kvm: Kvm, slot: KvmMemorySlot, gfn: number, mask_lo: number, mask_hi: number, wrprot: boolean): void {
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) clear_dirty_pt_masked(kvm, root, bits, gfn, mask_lo, mask_hi, wrprot);
}

/** tdp_mmu_split_huge_pages_root(): pre-order, so a 1G page is split to 2M and those to 4K in one pass. */
function tdp_mmu_split_huge_pages_root(kvm: Kvm, root: KvmMmuPage, bits: number, start: number, end: number, target_level: number, shared: boolean): number {
  if (probes.armed) probes.hit(PR_SPLIT_ROOT, { root, start, end, target_level });
  let sp: KvmMmuPage | null = null;
  const iter = new tdp_iter();
  for (tdp_iter_start(iter, kvm.pool, root, target_level + 1, start, bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (tdp_mmu_iter_cond_resched(kvm, iter, false, shared)) break;
      if ((iter.old_lo & 0x800) === 0 || (iter.old_lo & 0x80) === 0) break;
      if (sp === null) {
        // The kernel drops mmu_lock to allocate, then restarts the walk from the root.
        sp = kvm.split_alloc_fails > 0 ? null : tdp_mmu_alloc_sp(kvm);
        if (sp === null) {
          kvm.split_alloc_fails--;
          if (trace.enabled) emitTracepoint('kvm_mmu_split_huge_page', kvm.cur_vcpu, { gfn: iter.gfn, spte: hexv(iter.old_lo, iter.old_hi), level: iter.level, errno: -ENOMEM });
          return -ENOMEM;
        }
        iter.yielded = true;
        break;
      }
      tdp_mmu_init_child_sp(kvm, sp, iter);
      if (tdp_mmu_split_huge_page(kvm, iter, sp, shared) !== 0) continue;
      sp = null;
      break;
    }
  }
  if (sp !== null) tdp_mmu_free_sp(kvm, sp);
  return 0;
}

/** kvm_tdp_mmu_try_split_huge_pages(). */
export function kvm_tdp_mmu_try_split_huge_pages(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number, target_level: number, shared: boolean): void {
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) {
    if (tdp_mmu_split_huge_pages_root(kvm, root, bits, start, end, target_level, shared) !== 0) break;
  }
}

function tdp_mmu_make_huge_spte(kvm: Kvm, parent: tdp_iter): number {
  const child = spte_to_child_sp(kvm.pool, parent.old_lo, parent.old_hi, parent.level);
  if (child === null) return -ENOENT;
  const start = parent.gfn;
  const end = start + KVM_PAGES_PER_HPAGE(parent.level);
  const iter = new tdp_iter();
  for (tdp_iter_start(iter, kvm.pool, child, 1, start, parent.gfn_bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) continue;
    if (kvm.resched_every !== 0 && kvm.need_resched() && parent.next_last_level_gfn !== parent.yielded_gfn) return -EAGAIN;
    make_huge_spte(kvm.masks, kvm.is_nx_huge_page_enabled(), iter.old_lo, iter.old_hi, parent.level, out2);
    return 0;
  }
  return -ENOENT;
}

function recover_huge_pages_range(kvm: Kvm, root: KvmMmuPage, bits: number, slot: KvmMemorySlot): void {
  if (probes.armed) probes.hit(PR_RECOVER, { root, slot: slot.id });
  const start = slot.base_gfn;
  const end = start + slot.npages;
  let flush = false;
  if (kvm.WARN_ON_ONCE(kvm_slot_dirty_track_enabled(slot), 'recovering huge pages of a dirty-logged slot')) return;
  const iter = new tdp_iter();
  for (tdp_iter_start(iter, kvm.pool, root, PG_LEVEL_2M, start, bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    for (let tries = 0; tries < MAX_RETRIES; tries++) {
      if (tdp_mmu_iter_cond_resched(kvm, iter, flush, true)) {
        flush = false;
        break;
      }
      if (iter.level > KVM_MAX_HUGEPAGE_LEVEL || (iter.old_lo & 0x800) === 0) break;
      if (iter.level === 1 || (iter.old_lo & 0x80) !== 0) break;
      if (iter.gfn < start || iter.gfn >= end) break;
      if (kvm_mmu_max_mapping_level(kvm, slot, iter.gfn) < iter.level) break;
      const r = tdp_mmu_make_huge_spte(kvm, iter);
      if (r === -EAGAIN) continue;
      if (r !== 0) break;
      if (tdp_mmu_set_spte_atomic(kvm, iter, out2.lo, out2.hi) !== 0) continue;
      flush = true;
      break;
    }
  }
  if (flush) kvm.kvm_flush_remote_tlbs_memslot(slot);
}

/** kvm_tdp_mmu_recover_huge_pages(). */
export function kvm_tdp_mmu_recover_huge_pages(kvm: Kvm, slot: KvmMemorySlot): void {
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) recover_huge_pages_range(kvm, root, bits, slot);
}

/** kvm_tdp_mmu_write_protect_gfn(): clear W and MMU-writable on the gfn's leaves at or above min_level. */
export function kvm_tdp_mmu_write_protect_gfn(kvm: Kvm, slot: KvmMemorySlot, gfn: number, min_level: number): boolean {
  let spte_set = false;
  const m = kvm.masks;
  for (const [root, bits] of roots_for(kvm, slot.as_id, KVM_VALID_ROOTS)) {
    const iter = new tdp_iter();
    for (tdp_iter_start(iter, kvm.pool, root, min_level, gfn, bits); iter.valid && iter.gfn < gfn + 1; tdp_iter_next(iter)) {
      if ((iter.old_lo & 0x800) === 0 || !(iter.level === 1 || (iter.old_lo & 0x80) !== 0)) continue;
      const new_lo = (iter.old_lo & ~(PT_WRITABLE_MASK | m.shadow_mmu_writable_mask.lo)) >>> 0;
      const new_hi = (iter.old_hi & ~m.shadow_mmu_writable_mask.hi) >>> 0;
      if (new_lo === iter.old_lo && new_hi === iter.old_hi) break;
      tdp_mmu_iter_set_spte(kvm, iter, new_lo, new_hi);
      spte_set = true;
    }
  }
  return spte_set;
}

/** Dirty logging through make_spte: mark_page_dirty_in_slot bound once per VM. */
export function wire_make_spte_args(kvm: Kvm): void {
  const a = kvm.make_spte_args;
  a.mark_page_dirty_in_slot = (slot: unknown, gfn: number) => mark_page_dirty_in_slot(kvm, slot as KvmMemorySlot, gfn);
  // Without shadow pages nothing can be unsynced or write-tracked; the shadow MMU replaces this hook.
  a.mmu_try_to_unsync_pages = kvm.arch.write_tracked.size === 0 ? null : (_slot: unknown, gfn: number) => (kvm.arch.write_tracked.has(gfn) ? -1 : 0);
  // No non-coherent DMA and KVM_X86_QUIRK_IGNORE_GUEST_PAT on: guest RAM is WB with IPAT.
  if (kvm.vendor.vendor === 'vmx') {
    const ram = vmx_get_mt_mask(false, vmx_ignore_guest_pat(false, true, true));
    const mmio = vmx_get_mt_mask(true, vmx_ignore_guest_pat(false, true, true));
    a.get_mt_mask = (_gfn: number, is_mmio: boolean) => (is_mmio ? mmio : ram);
  }
}

/** All leaf and non-leaf SPTEs of a root in pre-order (for views and tests; allocates). */
export function* for_each_tdp_spte(kvm: Kvm, root: KvmMmuPage, gfn_bits = 0, min_level = 1): Generator<{ gfn: number; level: number; lo: number; hi: number; sp: KvmMmuPage; index: number }> {
  const iter = new tdp_iter();
  const end = kvm.kvm_mmu_max_gfn() + 1;
  for (tdp_iter_start(iter, kvm.pool, root, min_level, 0, gfn_bits); iter.valid && iter.gfn < end; tdp_iter_next(iter)) {
    if (iter.old_lo === SHADOW_NONPRESENT_VALUE_LO && iter.old_hi === SHADOW_NONPRESENT_VALUE_HI) continue;
    yield { gfn: iter.gfn, level: iter.level, lo: iter.old_lo, hi: iter.old_hi, sp: iter.sp!, index: iter.index };
  }
}

export { KvmMmuPage };
