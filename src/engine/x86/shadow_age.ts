/**
 * Aging through the rmaps (mmu.c kvm_rmap_age_gfn_range), the shadow MMU's half of kvm_age_gfn /
 * kvm_test_age_gfn. An SPTE with A/D bits loses its Accessed bit; one without (EPT with A/D disabled,
 * or role.ad_disabled) is marked for access tracking, so the next access faults and fast_page_fault
 * restores it without taking mmu_lock.
 */
import { probes, defineProbe } from '../probes';
import type { KvmMemorySlot } from './memslot';
import { gfn_to_index, KVM_MAX_HUGEPAGE_LEVEL } from './memslot';
import { RmapIterator, rmap_get_first, rmap_get_next } from './rmap';
import { spte_ad_enabled, is_access_track_spte, mark_spte_for_access_track, is_shadow_present_pte, PG_LEVEL_4K } from './spte';
import { type ShadowMmu, sptep_to_sp, slot_rmap } from './shadow_mmu';

const PR_AGE = defineProbe('kvm_rmap_age_gfn_range', 'aging', 'arch/x86/kvm/mmu/mmu.c', 'age (or with test_only just test) the SPTEs in the rmaps of a gfn range', ['start', 'end', 'test_only']);

const it = new RmapIterator();
const out = { lo: 0, hi: 0 };

/** is_accessed_spte(): the A bit when the SPTE uses A/D bits, else "not access-tracked". */
function is_accessed_spte(sk: ShadowMmu, lo: number, hi: number): boolean {
  const a = sk.masks.shadow_accessed_mask;
  if (spte_ad_enabled(lo, hi) && (a.lo | a.hi) !== 0) return (lo & a.lo) !== 0 || (hi & a.hi) !== 0;
  return !is_access_track_spte(sk.masks, lo, hi);
}

/** kvm_rmap_age_gfn_range(): true if any SPTE in [start, end) was young. */
export function kvm_rmap_age_gfn_range(sk: ShadowMmu, slot: KvmMemorySlot, start: number, end: number, test_only: boolean): boolean {
  if (probes.armed) probes.hit(PR_AGE, { start, end, test_only });
  if (!sk.rmaps.has(slot)) return false;
  const s = Math.max(start, slot.base_gfn);
  const e = Math.min(end, slot.base_gfn + slot.npages);
  if (s >= e) return false;
  const pool = sk.desc_pool;
  const a = sk.masks.shadow_accessed_mask;
  let young = false;
  for (let level = PG_LEVEL_4K; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const arr = slot_rmap(sk, slot, level);
    const i1 = gfn_to_index(e - 1, slot.base_gfn, level);
    for (let i = gfn_to_index(s, slot.base_gfn, level); i <= i1; i++) {
      for (let sptep = rmap_get_first(pool, arr[i]!, it); sptep !== 0; sptep = rmap_get_next(pool, it)) {
        const t = sptep_to_sp(sk, sptep).spt;
        const j = 2 * (sptep & 511);
        const lo = t[j]!;
        const hi = t[j + 1]!;
        if (!is_shadow_present_pte(lo, hi) || !is_accessed_spte(sk, lo, hi)) continue;
        if (test_only) return true;
        if (spte_ad_enabled(lo, hi) && (a.lo | a.hi) !== 0) {
          t[j] = (lo & ~a.lo) >>> 0;
          t[j + 1] = (hi & ~a.hi) >>> 0;
        } else {
          mark_spte_for_access_track(sk.masks, lo, hi, out);
          t[j] = out.lo;
          t[j + 1] = out.hi;
        }
        young = true;
      }
    }
  }
  return young;
}
