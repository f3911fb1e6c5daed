/**
 * Reverse maps of the shadow MMU (mmu.c `pte_list_desc`, `kvm_rmap_head`): for each gfn and level, the
 * SPTEs that map it; for each shadow page, the parent SPTEs that point at it (`sp->parent_ptes`).
 *
 * An sptep is a number: the host physical address of the SPTE divided by 8 (table pfn * 512 + index).
 * Table pfns stay below 2^22, so an sptep fits a positive int32.
 *
 * A head (`kvm_rmap_head.val`) is an int32: 0 = empty, > 0 = the single sptep, < 0 = -(descriptor
 * index + 1). That is the kernel's encoding (pointer vs. pointer | KVM_RMAP_MANY) with the sign bit as
 * the "many" flag. Descriptors are structs of typed arrays, so adding or removing never allocates once
 * the pool has grown; the head descriptor is the only partly filled one, tails are always full.
 */

/** PTE_LIST_EXT: sptes per descriptor (14 keeps struct pte_list_desc at 128 bytes on x86-64). */
export const PTE_LIST_EXT = 14;

/** RMAP_RECYCLE_THRESHOLD: above this many SPTEs for one gfn, __rmap_add zaps them all. */
export const RMAP_RECYCLE_THRESHOLD = 1000;

/** sptep number of entry `index` of the table at host pfn `pfn`. */
export function sptep_of(pfn: number, index: number): number {
  return pfn * 512 + index;
}

/** Host pfn of the table holding `sptep`. */
export function sptep_pfn(sptep: number): number {
  return sptep >>> 9;
}

/** spte_index(sptep). */
export function sptep_index(sptep: number): number {
  return sptep & 511;
}

/** The debugger's sptep text: `<table pfn hex>:<index>`. */
export function sptep_str(sptep: number): string {
  return (sptep >>> 9).toString(16) + ':' + (sptep & 511);
}

/** The pool of `struct pte_list_desc` (vcpu->arch.mmu_pte_list_desc_cache and friends, merged). */
export class PteListDescPool {
  /** desc->more as (index + 1), 0 = none. */
  more: Int32Array;
  /** desc->spte_count. */
  spte_count: Uint8Array;
  /** desc->tail_count: sptes held by the descriptors after this one. */
  tail_count: Int32Array;
  /** desc->sptes[PTE_LIST_EXT], flattened. */
  sptes: Int32Array;
  private cap: number;
  private next = 0;
  private free_head = 0; // index + 1 of a free descriptor, chained through `more`
  /** Descriptors in use (for memory accounting and tests). */
  live = 0;

  constructor(initial = 256) {
    this.cap = initial;
    this.more = new Int32Array(initial);
    this.spte_count = new Uint8Array(initial);
    this.tail_count = new Int32Array(initial);
    this.sptes = new Int32Array(initial * PTE_LIST_EXT);
  }

  /** mmu_alloc_pte_list_desc(). */
  alloc(): number {
    let d: number;
    if (this.free_head !== 0) {
      d = this.free_head - 1;
      this.free_head = this.more[d]!;
    } else {
      if (this.next === this.cap) this.grow();
      d = this.next++;
    }
    this.more[d] = 0;
    this.spte_count[d] = 0;
    this.tail_count[d] = 0;
    this.live++;
    return d;
  }

  /** mmu_free_pte_list_desc(). */
  free(d: number): void {
    this.more[d] = this.free_head;
    this.free_head = d + 1;
    this.live--;
  }

  private grow(): void {
    const cap = this.cap * 2;
    const more = new Int32Array(cap);
    more.set(this.more);
    const sc = new Uint8Array(cap);
    sc.set(this.spte_count);
    const tc = new Int32Array(cap);
    tc.set(this.tail_count);
    const sp = new Int32Array(cap * PTE_LIST_EXT);
    sp.set(this.sptes);
    this.more = more;
    this.spte_count = sc;
    this.tail_count = tc;
    this.sptes = sp;
    this.cap = cap;
  }
}

/**
 * pte_list_add(): add `sptep` to the list whose head is `head`. Returns the new head in `res.head` and,
 * as the kernel does, the number of entries that were already there beyond the first descriptor's
 * worth (0 for an empty or single-entry head) in the return value.
 */
export function pte_list_add(pool: PteListDescPool, head: number, sptep: number, res: { head: number }): number {
  if (head === 0) {
    res.head = sptep;
    return 0;
  }
  if (head > 0) {
    const d = pool.alloc();
    const b = d * PTE_LIST_EXT;
    pool.sptes[b] = head;
    pool.sptes[b + 1] = sptep;
    pool.spte_count[d] = 2;
    res.head = -(d + 1);
    return 1;
  }
  let d = -head - 1;
  const count = pool.tail_count[d]! + pool.spte_count[d]!;
  if (pool.spte_count[d] === PTE_LIST_EXT) {
    // The head is full: a new head descriptor goes in front, the old one becomes a (full) tail.
    const n = pool.alloc();
    pool.more[n] = d + 1;
    pool.tail_count[n] = count;
    d = n;
    head = -(n + 1);
  }
  pool.sptes[d * PTE_LIST_EXT + pool.spte_count[d]!] = sptep;
  pool.spte_count[d] = pool.spte_count[d]! + 1;
  res.head = head;
  return count;
}

/**
 * pte_list_remove(): remove `sptep`; returns the new head. Removing an sptep that is not in the list is
 * a KVM_BUG in the kernel; here it throws.
 */
export function pte_list_remove(pool: PteListDescPool, head: number, sptep: number): number {
  if (head === 0) throw new Error(`pte_list_remove: ${sptep_str(sptep)} from an empty rmap`);
  if (head > 0) {
    if (head !== sptep) throw new Error(`pte_list_remove: ${sptep_str(sptep)} not in single-entry rmap ${sptep_str(head)}`);
    return 0;
  }
  const first = -head - 1;
  for (let d = first; ; ) {
    const b = d * PTE_LIST_EXT;
    const n = pool.spte_count[d]!;
    for (let i = 0; i < n; i++) {
      if (pool.sptes[b + i] !== sptep) continue;
      // Fill the hole with the head descriptor's last entry; the head is the only partial one.
      const hc = pool.spte_count[first]! - 1;
      pool.sptes[b + i] = pool.sptes[first * PTE_LIST_EXT + hc]!;
      pool.spte_count[first] = hc;
      if (hc !== 0) return head;
      const next = pool.more[first]!;
      pool.free(first);
      // The next (full) descriptor becomes the head.
      return next === 0 ? 0 : -next;
    }
    const m = pool.more[d]!;
    if (m === 0) break;
    d = m - 1;
  }
  throw new Error(`pte_list_remove: ${sptep_str(sptep)} not found`);
}

/** pte_list_count() / kvm_rmap_head count. */
export function pte_list_count(pool: PteListDescPool, head: number): number {
  if (head === 0) return 0;
  if (head > 0) return 1;
  const d = -head - 1;
  return pool.tail_count[d]! + pool.spte_count[d]!;
}

/** Free every descriptor of a list (kvm_zap_all_rmap_sptes after clearing the SPTEs). */
export function pte_list_free_all(pool: PteListDescPool, head: number): void {
  if (head >= 0) return;
  for (let d = -head - 1; ; ) {
    const m = pool.more[d]!;
    pool.free(d);
    if (m === 0) return;
    d = m - 1;
  }
}

/**
 * struct rmap_iterator: `rmap_get_first` / `rmap_get_next`. The list must not change while iterating
 * (callers that drop entries restart from `rmap_get_first`, as the kernel's loops do).
 */
export class RmapIterator {
  desc = -1;
  pos = 0;
}

/** rmap_get_first(): the first sptep, or 0 for an empty list. */
export function rmap_get_first(pool: PteListDescPool, head: number, it: RmapIterator): number {
  if (head === 0) return 0;
  if (head > 0) {
    it.desc = -1;
    return head;
  }
  it.desc = -head - 1;
  it.pos = 0;
  return pool.sptes[it.desc * PTE_LIST_EXT]!;
}

/** rmap_get_next(): 0 at the end. */
export function rmap_get_next(pool: PteListDescPool, it: RmapIterator): number {
  if (it.desc < 0) return 0;
  if (it.pos < PTE_LIST_EXT - 1) {
    it.pos++;
    if (it.pos < pool.spte_count[it.desc]!) return pool.sptes[it.desc * PTE_LIST_EXT + it.pos]!;
  }
  const m = pool.more[it.desc]!;
  if (m === 0) {
    it.desc = -1;
    return 0;
  }
  it.desc = m - 1;
  it.pos = 0;
  return pool.sptes[it.desc * PTE_LIST_EXT]!;
}

/** All entries of a list, in iteration order (tests and views; allocates). */
export function pte_list_entries(pool: PteListDescPool, head: number): number[] {
  const out: number[] = [];
  const it = new RmapIterator();
  for (let s = rmap_get_first(pool, head, it); s !== 0; s = rmap_get_next(pool, it)) out.push(s);
  return out;
}
