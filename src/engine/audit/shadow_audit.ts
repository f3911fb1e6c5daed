/**
 * Invariants of the x86 shadow MMU (kvm-x86-mmu.md §4-§5), over the active list:
 *
 * - the active list is a consistent doubly-linked list of live shadow pages, as long as
 *   `n_used_mmu_pages`;
 * - parent SPTE <-> child SP: a present non-leaf SPTE points at a live shadow page on the list, and the
 *   child's `parent_ptes` rmap holds exactly the SPTEs (in shadow pages) that point at it;
 * - rmaps: every present leaf SPTE is in the rmap of its gfn and level (in the memslot that holds the
 *   gfn), and every rmap entry is a present leaf SPTE of a live shadow page mapping that gfn at that level;
 * - unsync: only 4K pages are unsync; a parent's `unsync_children` equals the bits set in its
 *   `unsync_child_bitmap`, and a child that is unsync or has unsync children has its bit set in every
 *   parent (a set bit may be stale: the kernel clears it lazily during the unsync walk);
 * - the writable invariant on leaves, as in the TDP MMU; no FROZEN_SPTE left behind.
 *
 * Returns the leaf recount per level so the caller can check `pages_4k/2m/1g` over both MMUs, and how
 * many shadow pages live in the MMU page pool (PAE roots of the `shadow_page` variant do not).
 */
import type { Kvm } from '../x86/vm';
import type { KvmMmuPage } from '../x86/mmu_page';
import type { ShadowMmu } from '../x86/shadow_mmu';
import { kvm_mmu_page_get_gfn } from '../x86/shadow_mmu';
import { pte_list_entries, sptep_of, sptep_str } from '../x86/rmap';
import { is_frozen_spte, is_host_writable_spte, is_last_spte, is_mmu_writable_spte, is_shadow_present_pte, is_writable_pte, spte_to_pfn } from '../x86/spte';
import type { AuditSink } from './audit';

const ROLE_LEVEL_MASK = 0xf;
const hex = (n: number) => '0x' + n.toString(16);

function spName(sp: KvmMmuPage): string {
  return `shadow SP pfn ${hex(sp.spt_pfn)} L${sp.role & ROLE_LEVEL_MASK} gfn ${hex(sp.gfn)}`;
}

function hex64(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}

function asId(sp: KvmMmuPage): number {
  return sp.role >>> 24 !== 0 ? 1 : 0;
}

export function auditShadowMmu(kvm: Kvm, sk: ShadowMmu, s: AuditSink): { leaves: number[]; inPool: number } {
  const recount = [0, 0, 0];
  const m = kvm.masks;

  // the active list
  const live = new Set<KvmMmuPage>();
  let prev: KvmMmuPage | null = null;
  for (let sp = sk.active_head; sp !== null; sp = sp.link_next) {
    const here = sp;
    if (!s.expect(!live.has(here), 'active-list', () => spName(here), () => 'the active list loops')) break;
    live.add(here);
    s.expect(here.link_prev === prev, 'active-list', () => spName(here), () => 'link_prev does not name the previous page');
    s.expect(!here.freed && !here.tdp_mmu_page, 'active-list', () => spName(here), () => (here.freed ? 'a freed page is on the active list' : 'a TDP MMU page is on the active list'));
    prev = here;
  }
  s.expect(sk.active_tail === prev, 'active-list', () => 'active_mmu_pages', () => 'the tail is not the last page');
  s.expect(live.size === kvm.arch.n_used_mmu_pages, 'active-list', () => 'active_mmu_pages',
    () => `${live.size} pages on the list, n_used_mmu_pages ${kvm.arch.n_used_mmu_pages}`);

  const parentsOf = new Map<KvmMmuPage, Set<number>>();
  const leafSpteps = new Set<number>();
  for (const sp of live) {
    const level = sp.role & ROLE_LEVEL_MASK;
    for (let i = 0; i < 512; i++) {
      const lo = sp.spt[2 * i]!;
      const hi = sp.spt[2 * i + 1]!;
      const sptep = sptep_of(sp.spt_pfn, i);
      const where = () => `${spName(sp)} [${i}]`;
      s.checks++;
      if (is_frozen_spte(lo, hi)) {
        s.expect(false, 'frozen', where, () => `FROZEN_SPTE ${hex64(lo, hi)} left behind`);
        continue;
      }
      if (!is_shadow_present_pte(lo, hi)) continue;
      if (level > 1 && !is_last_spte(lo, hi, level)) {
        const pfn = spte_to_pfn(m, lo, hi);
        const child = sk.sp_of_pfn(pfn);
        if (!s.expect(child !== undefined && !child.freed && live.has(child), 'freed-table', where,
          () => `non-leaf SPTE ${hex64(lo, hi)} points at pfn ${hex(pfn)}, which is ${!child ? 'no shadow page' : child.freed ? 'a freed page' : 'off the active list'}`)) continue;
        let set = parentsOf.get(child!);
        if (!set) parentsOf.set(child!, (set = new Set()));
        set.add(sptep);
        const c = child!;
        s.expect((c.role & ROLE_LEVEL_MASK) === level - 1, 'child-role', where, () => `child ${spName(c)} is not one level below L${level}`);
        if (c.unsync || c.unsync_children > 0) {
          const bm = sp.unsync_child_bitmap;
          s.expect(!!bm && ((bm[i >>> 5]! >>> (i & 31)) & 1) === 1, 'unsync', where,
            () => `child ${spName(c)} is ${c.unsync ? 'unsync' : 'the parent of unsync pages'} but the unsync_child_bitmap bit is clear`);
        }
        continue;
      }
      // a leaf
      if (!s.expect(level <= 3, 'leaf-level', where, () => `a leaf at level ${level}`)) continue;
      recount[level - 1]!++;
      leafSpteps.add(sptep);
      const w = is_writable_pte(lo, hi);
      const mw = is_mmu_writable_spte(m, lo, hi);
      s.expect(!w || mw, 'writable', where, () => `SPTE ${hex64(lo, hi)} is writable but not MMU-writable`);
      s.expect(!mw || is_host_writable_spte(m, lo, hi), 'writable', where, () => `SPTE ${hex64(lo, hi)} is MMU-writable but not host-writable`);
      // in the rmap of its gfn
      const gfn = kvm_mmu_page_get_gfn(sp, i);
      const slot = kvm.kvm_memslots(asId(sp)).lookup(gfn);
      if (!s.expect(slot !== undefined && slot !== null, 'rmap', where, () => `leaf for gfn ${hex(gfn)} outside every memslot`)) continue;
      const arrs = sk.rmaps.get(slot!);
      const shift = 2 ** ((level - 1) * 9);
      const idx = Math.floor(gfn / shift) - Math.floor(slot!.base_gfn / shift);
      const head = arrs?.[level - 1]?.[idx] ?? 0;
      s.expect(pte_list_entries(sk.desc_pool, head).includes(sptep), 'rmap', where, () => `not in the level-${level} rmap of gfn ${hex(gfn)} (slot ${slot!.id})`);
    }
    // unsync bookkeeping of this page
    s.expect(!sp.unsync || level === 1, 'unsync', () => spName(sp), () => 'an unsync page above 4K');
    if (sp.unsync_child_bitmap) {
      let bits = 0;
      for (const w of sp.unsync_child_bitmap) for (let x = w; x; x &= x - 1) bits++;
      s.expect(bits === sp.unsync_children, 'unsync', () => spName(sp), () => `unsync_children ${sp.unsync_children}, ${bits} bits set in unsync_child_bitmap`);
    } else {
      s.expect(sp.unsync_children === 0, 'unsync', () => spName(sp), () => `unsync_children ${sp.unsync_children} without a bitmap`);
    }
  }

  // parent_ptes hold exactly the SPTEs pointing at each page
  for (const sp of live) {
    const have = new Set(pte_list_entries(sk.desc_pool, sp.parent_ptes));
    const want = parentsOf.get(sp) ?? new Set<number>();
    const missing = [...want].filter((p) => !have.has(p));
    const extra = [...have].filter((p) => !want.has(p));
    s.expect(missing.length === 0 && extra.length === 0, 'parent-ptes', () => spName(sp),
      () => `parent_ptes ${missing.length ? `lacks ${missing.map(sptep_str).join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `has ${extra.map(sptep_str).join(', ')}, which do not point here` : ''}`);
  }

  // every rmap entry is a live leaf mapping that gfn at that level
  for (const [slot, arrs] of sk.rmaps) {
    arrs.forEach((arr, l) => {
      const level = l + 1;
      const shift = 2 ** (l * 9);
      for (let idx = 0; idx < arr.length; idx++) {
        const head = arr[idx]!;
        if (head === 0) continue;
        for (const sptep of pte_list_entries(sk.desc_pool, head)) {
          const where = () => `rmap slot ${slot.id} L${level} index ${idx}`;
          s.checks++;
          if (!s.expect(leafSpteps.has(sptep), 'rmap', where, () => `entry ${sptep_str(sptep)} is not a present leaf of a live shadow page`)) continue;
          const sp = sk.sp_of_pfn(Math.floor(sptep / 512))!;
          const gfn = kvm_mmu_page_get_gfn(sp, sptep % 512);
          s.expect((sp.role & ROLE_LEVEL_MASK) === level && Math.floor(gfn / shift) - Math.floor(slot.base_gfn / shift) === idx, 'rmap', where,
            () => `entry ${sptep_str(sptep)} maps gfn ${hex(gfn)} at level ${sp.role & ROLE_LEVEL_MASK}`);
        }
      }
    });
  }
  let inPool = 0;
  for (const sp of live) if (kvm.pool.sp_of_pfn(sp.spt_pfn) === sp) inPool++;
  return { leaves: recount, inPool };
}
