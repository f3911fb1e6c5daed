/**
 * struct tdp_iter: a pre-order walk over a TDP MMU paging structure. It descends towards
 * next_last_level_gfn until min_level or a leaf/non-present entry, then moves sideways and up. After a
 * yield the next step restarts from the root at the last gfn reached.
 *
 * SPTE bit tests here are the two the walk needs: bit 11 (SPTE_MMU_PRESENT_MASK) and bit 7 (PS).
 */
import { KvmMmuPage, MmuPagePool, kvm_mmu_page_as_id } from './mmu_page';
import { KVM_PAGES_PER_HPAGE as PAGES_AT_LEVEL } from './memslot';

export const PT64_ROOT_MAX_LEVEL = 5;
export const SPTE_ENT_PER_PAGE = 512;

/** KVM_PAGES_PER_HPAGE(level): 2^(9*(level-1)) pages covered by one entry at `level`. */
export function KVM_PAGES_PER_HPAGE(level: number): number {
  return PAGES_AT_LEVEL[level]!;
}

/** gfn_round_for_level(). Works on any gfn below 2^53 (no 32-bit bitwise on the gfn). */
export function gfn_round_for_level(gfn: number, level: number): number {
  const n = PAGES_AT_LEVEL[level]!;
  return level === 1 ? gfn : gfn - (gfn % n);
}

/** SPTE_INDEX(gfn << PAGE_SHIFT, level). */
export function spte_index_of_gfn(gfn: number, level: number): number {
  return (gfn / PAGES_AT_LEVEL[level]!) & 511;
}

/** pfn held in SPTE bits 51:12. */
export function spte_pfn(lo: number, hi: number): number {
  return (hi & 0xfffff) * 1048576 + (lo >>> 12);
}

export class tdp_iter {
  next_last_level_gfn = 0;
  yielded_gfn = 0;
  /** pt_path[level - 1]: the table being walked at each level (the SP rather than its spt pointer). */
  readonly pt_path: (KvmMmuPage | null)[] = [null, null, null, null, null];
  /** sptep = (sp, index): the SP holding the current entry and the entry's index. */
  sp: KvmMmuPage | null = null;
  index = 0;
  gfn = 0;
  gfn_bits = 0;
  root_level = 0;
  min_level = 1;
  level = 0;
  as_id = 0;
  old_lo = 0;
  old_hi = 0;
  valid = false;
  yielded = false;
  pool: MmuPagePool | null = null;

  /** kvm_tdp_mmu_read_spte(iter->sptep) into old_spte. */
  read_old(): void {
    const spt = this.sp!.spt;
    const j = this.index << 1;
    this.old_lo = spt[j]!;
    this.old_hi = spt[j + 1]!;
  }

  sptep_pa(): number {
    return this.sp!.sptep_pa(this.index);
  }
}

function tdp_iter_refresh_sptep(iter: tdp_iter): void {
  const sp = iter.pt_path[iter.level - 1]!;
  iter.sp = sp;
  // The alias bits (TDX shared bit) only select the entry; iter.gfn itself stays without them. They are
  // ORed in, so a gfn that already carries the bit indexes the same entry.
  const b = iter.gfn_bits;
  const g = b === 0 || Math.floor(iter.gfn / b) % 2 === 1 ? iter.gfn : iter.gfn + b;
  iter.index = spte_index_of_gfn(g, iter.level);
  const j = iter.index << 1;
  iter.old_lo = sp.spt[j]!;
  iter.old_hi = sp.spt[j + 1]!;
}

export function tdp_iter_restart(iter: tdp_iter): void {
  iter.yielded = false;
  iter.yielded_gfn = iter.next_last_level_gfn;
  iter.level = iter.root_level;
  iter.gfn = gfn_round_for_level(iter.next_last_level_gfn, iter.level);
  tdp_iter_refresh_sptep(iter);
  iter.valid = true;
}

/** tdp_iter_start(). `gfn_bits` is 0 or a single bit (the TDX shared bit as a gfn bit). */
export function tdp_iter_start(iter: tdp_iter, pool: MmuPagePool, root: KvmMmuPage, min_level: number, next_last_level_gfn: number, gfn_bits: number): void {
  const lvl = root.level;
  if (lvl < 1 || lvl > PT64_ROOT_MAX_LEVEL) {
    iter.valid = false;
    return;
  }
  iter.pool = pool;
  iter.next_last_level_gfn = next_last_level_gfn;
  iter.gfn_bits = gfn_bits;
  iter.root_level = lvl;
  iter.min_level = min_level;
  iter.pt_path[lvl - 1] = root;
  iter.as_id = kvm_mmu_page_as_id(root);
  tdp_iter_restart(iter);
}

/** spte_to_child_pt(): the table a present non-leaf SPTE at `level` points to, else null. */
export function spte_to_child_sp(pool: MmuPagePool, lo: number, hi: number, level: number): KvmMmuPage | null {
  if ((lo & 0x800) === 0) return null; // not shadow-present
  if (level === 1 || (lo & 0x80) !== 0) return null; // last-level SPTE
  return pool.sp_of_pfn(spte_pfn(lo, hi)) ?? null;
}

function try_step_down(iter: tdp_iter): boolean {
  if (iter.level === iter.min_level) return false;
  // Re-read: the entry may have changed since the iterator last looked at it.
  iter.read_old();
  const child = spte_to_child_sp(iter.pool!, iter.old_lo, iter.old_hi, iter.level);
  if (child === null) return false;
  iter.level--;
  iter.pt_path[iter.level - 1] = child;
  iter.gfn = gfn_round_for_level(iter.next_last_level_gfn, iter.level);
  tdp_iter_refresh_sptep(iter);
  return true;
}

function try_step_side(iter: tdp_iter): boolean {
  if (spte_index_of_gfn(iter.gfn, iter.level) === SPTE_ENT_PER_PAGE - 1) return false;
  iter.gfn += PAGES_AT_LEVEL[iter.level]!;
  iter.next_last_level_gfn = iter.gfn;
  iter.index++;
  iter.read_old();
  return true;
}

function try_step_up(iter: tdp_iter): boolean {
  if (iter.level === iter.root_level) return false;
  iter.level++;
  iter.gfn = gfn_round_for_level(iter.gfn, iter.level);
  tdp_iter_refresh_sptep(iter);
  return true;
}

/** tdp_iter_next(): pre-order successor, restarting from the root after a yield. */
export function tdp_iter_next(iter: tdp_iter): void {
  if (iter.yielded) {
    tdp_iter_restart(iter);
    return;
  }
  if (try_step_down(iter)) return;
  do {
    if (try_step_side(iter)) return;
  } while (try_step_up(iter));
  iter.valid = false;
}
