/**
 * Dirty logging for the TDP MMU: what toggling KVM_MEM_LOG_DIRTY_PAGES does to the mappings
 * (kvm_mmu_slot_apply_flags), KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG with manual protection, eager
 * huge page splitting, huge page recovery when logging stops, and MMU-notifier aging.
 */
import { defineProbe, probes } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint } from '../tracepoints/index';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_USER_MEM_SLOTS, PG_LEVEL_2M, PG_LEVEL_4K, type KvmMemorySlot } from './memslot';
import { hva_range_to_gfn_ranges, kvm_age_gfn, kvm_test_age_gfn } from './mmu';
import {
  kvm_tdp_mmu_clear_dirty_pt_masked, kvm_tdp_mmu_clear_dirty_slot, kvm_tdp_mmu_recover_huge_pages, kvm_tdp_mmu_try_split_huge_pages,
  kvm_tdp_mmu_wrprot_slot, kvm_tdp_mmu_write_protect_gfn,
} from './tdp_mmu';
import {
  EINVAL, ENOENT, KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, type Kvm, type KvmMrChange,
} from './vm';

const PR_APPLY = defineProbe('kvm_mmu_slot_apply_flags', 'dirty_log', 'arch/x86/kvm/x86.c', 'react to KVM_MEM_LOG_DIRTY_PAGES being turned on or off', ['slot', 'log_dirty_pages']);
const PR_GET = defineProbe('kvm_get_dirty_log_protect', 'dirty_log', 'virt/kvm/kvm_main.c', 'KVM_GET_DIRTY_LOG: harvest and re-protect', ['slot']);
const PR_CLEAR = defineProbe('kvm_clear_dirty_log_protect', 'dirty_log', 'virt/kvm/kvm_main.c', 'KVM_CLEAR_DIRTY_LOG: clear bits and re-protect those pages', ['slot', 'first_page', 'num_pages']);
const PR_MASKED = defineProbe('kvm_arch_mmu_enable_log_dirty_pt_masked', 'dirty_log', 'arch/x86/kvm/mmu/mmu.c', 're-arm dirty tracking for 64 pages', ['slot', 'gfn_offset', 'mask']);

export { PG_LEVEL_4K, PG_LEVEL_2M };

/** kvm_dirty_log_manual_protect_and_init_set(). */
export function kvm_dirty_log_manual_protect_and_init_set(kvm: Kvm): boolean {
  return (kvm.manual_dirty_log_protect & KVM_DIRTY_LOG_INITIALLY_SET) !== 0;
}

/** KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2). */
export function kvm_enable_manual_dirty_log_protect(kvm: Kvm, flags: number): number {
  if ((flags & ~(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET)) !== 0) return -EINVAL;
  kvm.manual_dirty_log_protect = flags;
  return 0;
}

/** kvm_mmu_slot_remove_write_access(). */
export function kvm_mmu_slot_remove_write_access(kvm: Kvm, slot: KvmMemorySlot, start_level: number): void {
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_wrprot_slot(kvm, slot, start_level);
}

/** kvm_mmu_slot_leaf_clear_dirty(). */
export function kvm_mmu_slot_leaf_clear_dirty(kvm: Kvm, slot: KvmMemorySlot): void {
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_clear_dirty_slot(kvm, slot);
}

/** kvm_mmu_slot_try_split_huge_pages(): whole slot, mmu_lock held for read. */
export function kvm_mmu_slot_try_split_huge_pages(kvm: Kvm, slot: KvmMemorySlot, target_level: number): void {
  if (!kvm.params.tdp_mmu) return;
  kvm_tdp_mmu_try_split_huge_pages(kvm, slot, slot.base_gfn, slot.base_gfn + slot.npages, target_level, true);
}

/** kvm_mmu_try_split_huge_pages(): a gfn range, mmu_lock held for write. */
export function kvm_mmu_try_split_huge_pages(kvm: Kvm, slot: KvmMemorySlot, start: number, end: number, target_level: number): void {
  if (!kvm.params.tdp_mmu) return;
  kvm_tdp_mmu_try_split_huge_pages(kvm, slot, start, end, target_level, false);
}

/** kvm_mmu_recover_huge_pages(). */
export function kvm_mmu_recover_huge_pages(kvm: Kvm, slot: KvmMemorySlot): void {
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_recover_huge_pages(kvm, slot);
}

/** kvm_mmu_slot_apply_flags() (x86.c). */
export function kvm_mmu_slot_apply_flags(kvm: Kvm, old: KvmMemorySlot | undefined, neu: KvmMemorySlot | undefined, change: KvmMrChange, old_flags: number): void {
  const new_flags = neu ? neu.flags : 0;
  const log_dirty_pages = (new_flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  void old;
  if (((old_flags ^ new_flags) & KVM_MEM_LOG_DIRTY_PAGES) !== 0) kvm.nr_memslots_dirty_logging += log_dirty_pages ? 1 : -1;
  // Created/moved/deleted slots have no mappings to fix up, and read-only slots are never dirtied.
  if (change !== 'flags_only' || (new_flags & KVM_MEM_READONLY) !== 0) return;
  if (((old_flags ^ new_flags) & KVM_MEM_LOG_DIRTY_PAGES) === 0) return;
  if (probes.armed) probes.hit(PR_APPLY, { slot: neu!.id, log_dirty_pages });
  if (!log_dirty_pages) {
    kvm_mmu_recover_huge_pages(kvm, neu!);
    return;
  }
  if (kvm_dirty_log_manual_protect_and_init_set(kvm)) return;
  if (kvm.params.eager_page_split) kvm_mmu_slot_try_split_huge_pages(kvm, neu!, PG_LEVEL_4K);
  if (kvm.arch.cpu_dirty_log_size) {
    kvm_mmu_slot_leaf_clear_dirty(kvm, neu!);
    kvm_mmu_slot_remove_write_access(kvm, neu!, PG_LEVEL_2M);
  } else {
    kvm_mmu_slot_remove_write_access(kvm, neu!, PG_LEVEL_4K);
  }
  // Flushing unconditionally lets the write-protect helpers skip the exact "was it writable" checks.
  kvm.kvm_flush_remote_tlbs_memslot(neu!);
}

/** kvm_mmu_slot_gfn_write_protect(). */
function kvm_mmu_slot_gfn_write_protect(kvm: Kvm, slot: KvmMemorySlot, gfn: number, min_level: number): boolean {
  if (!kvm.params.tdp_mmu) return false;
  return kvm_tdp_mmu_write_protect_gfn(kvm, slot, gfn, min_level);
}

function ffs64(lo: number, hi: number): number {
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  return 32 + 31 - Math.clz32(hi & -hi);
}

function fls64(lo: number, hi: number): number {
  if (hi !== 0) return 32 + 31 - Math.clz32(hi);
  return 31 - Math.clz32(lo);
}

/** kvm_arch_mmu_enable_log_dirty_pt_masked(): gfn_offset is slot-relative and 64-aligned. */
export function kvm_arch_mmu_enable_log_dirty_pt_masked(kvm: Kvm, slot: KvmMemorySlot, gfn_offset: number, mask_lo: number, mask_hi: number): void {
  if (probes.armed) probes.hit(PR_MASKED, { slot: slot.id, gfn_offset, mask: [mask_lo, mask_hi] });
  if (kvm_dirty_log_manual_protect_and_init_set(kvm)) {
    // Huge pages were left writable when logging started: protect them so the first write splits them.
    const start = slot.base_gfn + gfn_offset + ffs64(mask_lo, mask_hi);
    const end = slot.base_gfn + gfn_offset + fls64(mask_lo, mask_hi);
    if (kvm.params.eager_page_split) kvm_mmu_try_split_huge_pages(kvm, slot, start, end + 1, PG_LEVEL_4K);
    kvm_mmu_slot_gfn_write_protect(kvm, slot, start, PG_LEVEL_2M);
    if (Math.ceil(start / 512) !== Math.ceil(end / 512)) kvm_mmu_slot_gfn_write_protect(kvm, slot, end, PG_LEVEL_2M);
  }
  // With PML clear D; otherwise clear W (kvm_mmu_clear_dirty_pt_masked / kvm_mmu_write_protect_pt_masked):
  // TDP MMU roots first, then the rmaps. The rmap D-bit clearing (PML under the legacy MMU) is not modelled.
  if (kvm.params.tdp_mmu) kvm_tdp_mmu_clear_dirty_pt_masked(kvm, slot, slot.base_gfn + gfn_offset, mask_lo, mask_hi, kvm.arch.cpu_dirty_log_size === 0);
  if (kvm.arch.cpu_dirty_log_size === 0) kvm.mmu_ops?.write_protect_pt_masked?.(kvm, slot, gfn_offset, mask_lo, mask_hi);
}

function slot_for_log(kvm: Kvm, slotArg: number): KvmMemorySlot | number {
  const as_id = slotArg >>> 16;
  const id = slotArg & 0xffff;
  if (as_id >= kvm.nr_as_ids || id >= KVM_USER_MEM_SLOTS) return -EINVAL;
  const slot = kvm.kvm_memslots(as_id).byId(id);
  if (!slot || !slot.dirty_bitmap) return -ENOENT;
  return slot;
}

/**
 * KVM_GET_DIRTY_LOG (kvm_get_dirty_log_protect). Fills `out` (64-bit longs as 32-bit halves, as many
 * words as kvm_dirty_bitmap_bytes) and returns 0 or -errno.
 */
export function kvm_get_dirty_log_protect(kvm: Kvm, slotArg: number, out: Uint32Array): number {
  const s = slot_for_log(kvm, slotArg);
  if (typeof s === 'number') return s;
  if (probes.armed) probes.hit(PR_GET, { slot: s.id });
  const bm = s.dirty_bitmap!;
  if (out.length < bm.length) return -EINVAL;
  let flush = false;
  if (kvm.manual_dirty_log_protect) {
    // Manual protect: report without clearing; KVM_CLEAR_DIRTY_LOG re-protects.
    out.set(bm);
  } else {
    out.fill(0);
    for (let i = 0; i < bm.length; i += 2) {
      const lo = bm[i]!;
      const hi = bm[i + 1]!;
      if (lo === 0 && hi === 0) continue;
      flush = true;
      bm[i] = 0;
      bm[i + 1] = 0;
      out[i] = lo;
      out[i + 1] = hi;
      kvm_arch_mmu_enable_log_dirty_pt_masked(kvm, s, (i / 2) * 64, lo, hi);
    }
  }
  if (flush) kvm.kvm_flush_remote_tlbs_memslot(s);
  return 0;
}

/** KVM_CLEAR_DIRTY_LOG (kvm_clear_dirty_log_protect). `bitmap` covers num_pages from first_page. */
export function kvm_clear_dirty_log_protect(kvm: Kvm, slotArg: number, first_page: number, num_pages: number, bitmap: Uint32Array): number {
  if (first_page % 64 !== 0) return -EINVAL;
  const s = slot_for_log(kvm, slotArg);
  if (typeof s === 'number') return s;
  if (probes.armed) probes.hit(PR_CLEAR, { slot: s.id, first_page, num_pages });
  if (first_page > s.npages || num_pages > s.npages - first_page || (num_pages < s.npages - first_page && num_pages % 64 !== 0)) return -EINVAL;
  const bm = s.dirty_bitmap!;
  let flush = false;
  const longs = Math.ceil(num_pages / 64);
  for (let k = 0, i = first_page / 64, offset = first_page; k < longs; k++, i++, offset += 64) {
    let mlo = bitmap[2 * k] ?? 0;
    let mhi = bitmap[2 * k + 1] ?? 0;
    if (mlo === 0 && mhi === 0) continue;
    // Only bits that were really set (and are now cleared) re-arm tracking.
    mlo = (mlo & bm[2 * i]!) >>> 0;
    mhi = (mhi & bm[2 * i + 1]!) >>> 0;
    bm[2 * i] = (bm[2 * i]! & ~mlo) >>> 0;
    bm[2 * i + 1] = (bm[2 * i + 1]! & ~mhi) >>> 0;
    if (mlo !== 0 || mhi !== 0) {
      flush = true;
      kvm_arch_mmu_enable_log_dirty_pt_masked(kvm, s, offset, mlo, mhi);
    }
  }
  if (flush) kvm.kvm_flush_remote_tlbs_memslot(s);
  return 0;
}

/**
 * mmu_notifier clear_flush_young / clear_young / test_young for an HVA range. Returns whether any page
 * was young. clear_flush_young flushes the TLB when something was young.
 */
export function kvm_mmu_notifier_age(kvm: Kvm, hva_start: number, hva_end: number, kind: 'clear_flush_young' | 'clear_young' | 'test_young'): boolean {
  if (kind !== 'test_young' && trace.enabled) emitTracepoint('kvm_age_hva', kvm.cur_vcpu, { start: hva_start, end: hva_end });
  let young = false;
  for (const r of hva_range_to_gfn_ranges(kvm, hva_start, hva_end)) {
    young = (kind === 'test_young' ? kvm_test_age_gfn(kvm, r.slot, r.start, r.end) : kvm_age_gfn(kvm, r.slot, r.start, r.end)) || young;
  }
  if (young && kind === 'clear_flush_young') kvm.kvm_flush_remote_tlbs();
  return young;
}
