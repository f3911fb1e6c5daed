/**
 * Eager page splitting in the shadow MMU (mmu.c shadow_mmu_*split*) and the shadow half of turning
 * dirty logging on (split, then write-protect at 4K), with design variant `split_access` (seed 001):
 *
 * - `cached` (upstream): the child's role.access is the access KVM cached for the huge SPTE in
 *   shadowed_translation (the guest's pte_access), so the split child is exactly the SP a fault would
 *   have created.
 * - `propagate` (the alternative argued in the thread): the child's access is read back from the huge
 *   SPTE's own bits (W, U, and X = !NX). Where KVM's policy removed bits (NX huge pages, write
 *   protection) the child's role disagrees with the guest's pte_access; the next fault through it hits
 *   validate_direct_spte, which drops the child and builds a new one.
 *
 * Upstream only splits nested (guest_mode) shadow pages here because with the TDP MMU on those are the
 * only rmap'd ones; with TDP off the model can apply the same splitter to L1's shadow pages
 * (`ShadowMmu.split_non_nested`), which is what the seed's workload measures.
 */
import { probes, defineProbe } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint, halvesToValue } from '../tracepoints/index';
import type { KvmMmuPage } from './mmu_page';
import { KVM_MEM_LOG_DIRTY_PAGES, gfn_to_index, type KvmMemorySlot } from './memslot';
import type { KvmMrChange } from './vm';
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK, PG_LEVEL_4K, PT_PAGE_SIZE_MASK, PT_WRITABLE_MASK, is_last_spte, is_shadow_present_pte, is_large_pte, make_small_spte } from './spte';
import { ROLE_INVALID, ROLE_LEVEL_MASK, ROLE_GUEST_MODE, ROLE_ACCESS_SHIFT } from './role';
import { RmapIterator, pte_list_add, rmap_get_first, rmap_get_next } from './rmap';
import {
  ShadowMmu,
  KVM_MAX_HUGEPAGE_LEVEL,
  KVM_MIN_FREE_MMU_PAGES,
  ENOSPC,
  sptep_to_sp,
  kvm_mmu_page_get_gfn,
  kvm_mmu_page_get_access,
  kvm_mmu_available_pages,
  __kvm_mmu_get_shadow_page,
  __link_shadow_page,
  shadow_child_role,
  slot_rmap,
  kvm_mmu_slot_gfn_write_protect,
} from './shadow_mmu';

const F = 'arch/x86/kvm/mmu/mmu.c';
const PR_SPLIT_ONE = defineProbe('shadow_mmu_split_huge_page', 'shadow_mmu', F, 'fill a direct child SP from a huge SPTE and link it in place', ['sptep', 'huge_spte', 'sp']);
const PR_TRY_SPLIT_ONE = defineProbe('shadow_mmu_try_split_huge_page', 'shadow_mmu', F, 'split one huge SPTE unless shadow pages run out', ['gfn', 'level']);
const PR_GET_SP_SPLIT = defineProbe('shadow_mmu_get_sp_for_split', 'shadow_mmu', F, 'the direct child SP for a huge SPTE (access per variant split_access)', ['gfn', 'access']);
const PR_TRY_SPLIT_RANGE = defineProbe('kvm_shadow_mmu_try_split_huge_pages', 'shadow_mmu', F, 'split every huge SPTE in the rmaps of a gfn range down to target_level', ['start', 'end', 'target_level']);
const PR_WRPROT_SLOT = defineProbe('slot_rmap_write_protect', 'shadow_mmu', F, 'clear W in every rmap\'d SPTE of a slot from start_level up', ['start_level']);

/** The access the split child gets: cached (upstream) or read back from the huge SPTE (variant). */
function split_child_access(sk: ShadowMmu, huge_sp: KvmMmuPage, index: number, lo: number, hi: number): number {
  if (sk.split_access === 'cached') return kvm_mmu_page_get_access(huge_sp, index);
  let acc = 0;
  if ((lo & PT_WRITABLE_MASK) !== 0) acc |= ACC_WRITE_MASK;
  if ((lo & sk.masks.shadow_user_mask.lo) !== 0) acc |= ACC_USER_MASK;
  if ((hi & sk.masks.shadow_nx_mask.hi) === 0 && (lo & sk.masks.shadow_nx_mask.lo) === 0) acc |= ACC_EXEC_MASK;
  return acc;
}

/** shadow_mmu_get_sp_for_split(). */
export function shadow_mmu_get_sp_for_split(sk: ShadowMmu, huge_sptep: number): KvmMmuPage {
  const huge_sp = sptep_to_sp(sk, huge_sptep);
  const index = huge_sptep & 511;
  const lo = huge_sp.spt[2 * index]!;
  const hi = huge_sp.spt[2 * index + 1]!;
  const access = split_child_access(sk, huge_sp, index, lo, hi);
  const gfn = kvm_mmu_page_get_gfn(huge_sp, index);
  if (probes.armed) probes.hit(PR_GET_SP_SPLIT, { gfn, access });
  const role = shadow_child_role(huge_sp, index, true, access);
  return __kvm_mmu_get_shadow_page(sk, null, gfn, role);
}

const res = { head: 0 };

/** shadow_mmu_split_huge_page(): fill only non-present entries, then link (flush if a table was overwritten). */
export function shadow_mmu_split_huge_page(sk: ShadowMmu, slot: KvmMemorySlot, huge_sptep: number): void {
  const huge_sp = sptep_to_sp(sk, huge_sptep);
  const hi0 = 2 * (huge_sptep & 511);
  const huge_lo = huge_sp.spt[hi0]!;
  const huge_hi = huge_sp.spt[hi0 + 1]!;
  const sp = shadow_mmu_get_sp_for_split(sk, huge_sptep);
  if (probes.armed) probes.hit(PR_SPLIT_ONE, { sptep: huge_sptep, huge_spte: { lo: huge_lo, hi: huge_hi }, sp });
  const level = sp.role & ROLE_LEVEL_MASK;
  const spt = sp.spt;
  const base = sp.spt_pfn * 512;
  const arr = slot_rmap(sk, slot, level);
  const gfn0 = sp.gfn;
  let idx = gfn_to_index(gfn0, slot.base_gfn, level);
  const nx = sk.kvm.is_nx_huge_page_enabled();
  const pool = sk.desc_pool;
  const out = { lo: 0, hi: 0 };
  let flush = false;
  let added = 0;
  // 4K children of a plain huge leaf: the address bits step by 4 KiB and PS goes away.
  const fast4k = level === PG_LEVEL_4K && !(((sp.role >>> ROLE_ACCESS_SHIFT) & ACC_EXEC_MASK) !== 0 && nx);
  for (let i = 0; i < 512; i++, idx++) {
    const j = 2 * i;
    if (is_shadow_present_pte(spt[j]!, spt[j + 1]!)) {
      flush = flush || !is_last_spte(spt[j]!, spt[j + 1]!, level);
      continue;
    }
    if (fast4k) {
      spt[j] = ((huge_lo | (i << 12)) & ~PT_PAGE_SIZE_MASK) >>> 0;
      spt[j + 1] = huge_hi;
    } else {
      make_small_spte(sk.masks, nx, huge_lo, huge_hi, sp.role, i, out);
      spt[j] = out.lo;
      spt[j + 1] = out.hi;
    }
    // __rmap_add (direct child: no shadowed_translation to fill).
    pte_list_add(pool, arr[idx]!, base + i, res);
    arr[idx] = res.head;
    added++;
  }
  sk.kvm.stat.pages[level - 1]! += added;
  __link_shadow_page(sk, huge_sptep, sp, flush);
  sk.counters.split_huge_pages++;
}

/** shadow_mmu_try_split_huge_page(): 0, or -ENOSPC when free shadow pages are at the minimum. */
export function shadow_mmu_try_split_huge_page(sk: ShadowMmu, slot: KvmMemorySlot, huge_sptep: number): number {
  const huge_sp = sptep_to_sp(sk, huge_sptep);
  const index = huge_sptep & 511;
  const gfn = kvm_mmu_page_get_gfn(huge_sp, index);
  const level = huge_sp.role & ROLE_LEVEL_MASK;
  const lo = huge_sp.spt[2 * index]!;
  const hi = huge_sp.spt[2 * index + 1]!;
  if (probes.armed) probes.hit(PR_TRY_SPLIT_ONE, { gfn, level });
  let r = 0;
  if (kvm_mmu_available_pages(sk) <= KVM_MIN_FREE_MMU_PAGES) r = -ENOSPC;
  else shadow_mmu_split_huge_page(sk, slot, huge_sptep);
  if (trace.enabled) emitTracepoint('kvm_mmu_split_huge_page', -1, { gfn, spte: halvesToValue(lo, hi), level, errno: r });
  return r;
}

/** shadow_mmu_try_split_huge_pages() over one rmap head; restarts after each split. */
function shadow_mmu_try_split_huge_pages(sk: ShadowMmu, slot: KvmMemorySlot, arr: Int32Array, i: number): boolean {
  const it = new RmapIterator();
  restart: for (;;) {
    for (let s = rmap_get_first(sk.desc_pool, arr[i]!, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) {
      const sp = sptep_to_sp(sk, s);
      if (!sk.split_non_nested && (sp.role & ROLE_GUEST_MODE) === 0) continue;
      if (!is_large_pte(sp.spt[2 * (s & 511)]!, 0)) continue;
      if (sp.unsync) continue;
      if ((sp.role & ROLE_INVALID) !== 0) continue;
      const r = shadow_mmu_try_split_huge_page(sk, slot, s);
      if (r === 0) continue restart;
      if (r === -ENOSPC) return false;
    }
    return true;
  }
}

/** kvm_shadow_mmu_try_split_huge_pages(): levels from the largest down to target_level + 1. */
export function kvm_shadow_mmu_try_split_huge_pages(sk: ShadowMmu, slot: KvmMemorySlot, start: number, end: number, target_level: number): void {
  if (probes.armed) probes.hit(PR_TRY_SPLIT_RANGE, { start, end, target_level });
  if (!sk.rmaps.has(slot)) return;
  const s0 = Math.max(start, slot.base_gfn);
  const e0 = Math.min(end, slot.base_gfn + slot.npages);
  if (s0 >= e0) return;
  for (let level = KVM_MAX_HUGEPAGE_LEVEL; level > target_level; level--) {
    const arr = slot_rmap(sk, slot, level);
    const i0 = gfn_to_index(s0, slot.base_gfn, level);
    const i1 = gfn_to_index(e0 - 1, slot.base_gfn, level);
    for (let i = i0; i <= i1; i++) {
      if (arr[i] === 0) continue;
      if (!shadow_mmu_try_split_huge_pages(sk, slot, arr, i)) return;
    }
  }
}

/** slot_rmap_write_protect over a whole slot from start_level up (kvm_mmu_slot_remove_write_access, rmap half). */
export function slot_rmap_write_protect(sk: ShadowMmu, slot: KvmMemorySlot, start_level: number): boolean {
  if (probes.armed) probes.hit(PR_WRPROT_SLOT, { start_level });
  if (!sk.rmaps.has(slot)) return false;
  let flush = false;
  for (let level = start_level; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const arr = slot_rmap(sk, slot, level);
    for (let i = 0; i < arr.length; i++) {
      const head = arr[i]!;
      if (head === 0) continue;
      if (head > 0) {
        // Single-entry rmap: the head is the sptep itself.
        const t = sptep_to_sp(sk, head).spt;
        const j = 2 * (head & 511);
        if ((t[j]! & PT_WRITABLE_MASK) !== 0) {
          t[j] = (t[j]! & ~PT_WRITABLE_MASK) >>> 0;
          flush = true;
        }
        continue;
      }
      const it = sk.rmap_it;
      for (let s = rmap_get_first(sk.desc_pool, head, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) {
        const sp = sptep_to_sp(sk, s);
        const j = 2 * (s & 511);
        if ((sp.spt[j]! & PT_WRITABLE_MASK) !== 0) {
          sp.spt[j] = (sp.spt[j]! & ~PT_WRITABLE_MASK) >>> 0;
          flush = true;
        }
      }
    }
  }
  return flush;
}

/**
 * The shadow half of kvm_mmu_slot_apply_flags for a flags change: logging on → eager split to 4K (if
 * eager_page_split), then write-protect 4K and up, then flush.
 */
export function shadow_mmu_slot_apply_flags(sk: ShadowMmu, _old: KvmMemorySlot | undefined, neu: KvmMemorySlot | undefined, change: KvmMrChange, old_flags: number): void {
  if (change !== 'flags_only' || neu === undefined) return;
  const on = (neu.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  const was = (old_flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  if (!on || was) return;
  if (sk.kvm.params.eager_page_split) kvm_shadow_mmu_try_split_huge_pages(sk, neu, neu.base_gfn, neu.base_gfn + neu.npages, PG_LEVEL_4K);
  slot_rmap_write_protect(sk, neu, PG_LEVEL_4K);
  sk.kvm.kvm_flush_remote_tlbs();
  void kvm_mmu_slot_gfn_write_protect;
}
