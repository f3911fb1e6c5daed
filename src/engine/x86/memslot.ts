/**
 * Memslots (struct kvm_memory_slot) as KVM_SET_USER_MEMORY_REGION2 creates them, with the x86 per-slot
 * metadata the MMU reads: lpage_info (huge page disallow counts per level) and the dirty bitmap, plus a
 * model of the host mapping behind the slot's HVA range, which host_pfn_mapping_level inspects.
 */

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
/** Kernel-internal flag on the old slot while a delete/move is in flight. */
export const KVM_MEMSLOT_INVALID = 1 << 16;

export const KVM_USER_MEM_SLOTS = 32764;
/** Bit 31 of disallow_lpage: the huge page range mixes private and shared attributes. */
export const KVM_LPAGE_MIXED_FLAG = 0x8000_0000;

export const PG_LEVEL_4K = 1;
export const PG_LEVEL_2M = 2;
export const PG_LEVEL_1G = 3;
export const KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_1G;
export const KVM_NR_PAGE_SIZES = 3;

/** Pages per page at a level: 1, 512, 512*512 ... (KVM_PAGES_PER_HPAGE). */
export const KVM_PAGES_PER_HPAGE = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4, 512 ** 5] as const;

/** Host page size backing a slot's userspace mapping. */
export type HostBacking = '4k' | '2m-thp' | '1g-hugetlb';

export function host_backing_level(b: HostBacking): number {
  return b === '4k' ? PG_LEVEL_4K : b === '2m-thp' ? PG_LEVEL_2M : PG_LEVEL_1G;
}

/** gfn_to_index(): index of the level-sized page holding gfn, relative to the slot's first one. */
export function gfn_to_index(gfn: number, base_gfn: number, level: number): number {
  const n = KVM_PAGES_PER_HPAGE[level]!;
  return Math.floor(gfn / n) - Math.floor(base_gfn / n);
}

export interface KvmLpageInfo {
  /** Indexed by gfn_to_index at the level; any nonzero value forbids a huge mapping. */
  disallow_lpage: Uint32Array;
}

export class KvmMemorySlot {
  /** Slot id within its address space (low 16 bits of the uapi slot number). */
  readonly id: number;
  readonly as_id: number;
  base_gfn: number;
  readonly npages: number;
  flags: number;
  readonly userspace_addr: number;
  readonly guest_memfd: number;
  readonly guest_memfd_offset: number;
  /** lpage_info[level - 2] for level 2M and 1G. */
  readonly lpage_info: KvmLpageInfo[];
  /** One bit per page, 64-bit words as (lo, hi) pairs; present while dirty logging is on. */
  dirty_bitmap: Uint32Array | undefined;
  /** Host side: page size of the VMA behind userspace_addr and the host pfn of its first page. */
  readonly host_backing: HostBacking;
  readonly host_pfn_base: number;
  /** Host huge pages (by 2M index from userspace_addr) that the host has split to 4K (THP split). */
  readonly host_split_2m = new Set<number>();
  /** Pages the host marked hardware-poisoned (page index): GUP returns KVM_PFN_ERR_HWPOISON. */
  readonly host_hwpoison = new Set<number>();
  /** Individual pages the host migrated: page index -> new host pfn. */
  readonly host_migrated = new Map<number, number>();

  constructor(init: {
    id: number; as_id: number; base_gfn: number; npages: number; flags: number; userspace_addr: number;
    guest_memfd?: number; guest_memfd_offset?: number; host_backing: HostBacking; host_pfn_base: number;
  }) {
    this.id = init.id;
    this.as_id = init.as_id;
    this.base_gfn = init.base_gfn;
    this.npages = init.npages;
    this.flags = init.flags;
    this.userspace_addr = init.userspace_addr;
    this.guest_memfd = init.guest_memfd ?? -1;
    this.guest_memfd_offset = init.guest_memfd_offset ?? 0;
    this.host_backing = init.host_backing;
    this.host_pfn_base = init.host_pfn_base;
    this.lpage_info = kvm_alloc_memslot_lpage_info(this);
    this.dirty_bitmap = undefined;
  }

  get end_gfn(): number {
    return this.base_gfn + this.npages;
  }
}

/**
 * The x86 part of kvm_arch_alloc_memslot_metadata for huge pages: a misaligned head or tail huge page
 * is disallowed, and if the gfn and the HVA disagree modulo the huge page size no page of the slot can
 * be mapped huge at that level.
 */
export function kvm_alloc_memslot_lpage_info(slot: KvmMemorySlot): KvmLpageInfo[] {
  const out: KvmLpageInfo[] = [];
  const ugfn = Math.floor(slot.userspace_addr / 4096);
  for (let level = PG_LEVEL_2M; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const per = KVM_PAGES_PER_HPAGE[level]!;
    const lpages = gfn_to_index(slot.base_gfn + slot.npages - 1, slot.base_gfn, level) + 1;
    const a = new Uint32Array(lpages);
    if (slot.base_gfn % per !== 0) a[0] = 1;
    if ((slot.base_gfn + slot.npages) % per !== 0) a[lpages - 1] = 1;
    if ((slot.base_gfn % per) !== (ugfn % per)) a.fill(1);
    out.push({ disallow_lpage: a });
  }
  return out;
}

/** lpage_info_slot(gfn, slot, level). */
export function lpage_info_slot(gfn: number, slot: KvmMemorySlot, level: number): number {
  return slot.lpage_info[level - PG_LEVEL_2M]!.disallow_lpage[gfn_to_index(gfn, slot.base_gfn, level)]!;
}

/** update_gfn_disallow_lpage_count(): add `count` to every huge level's counter covering gfn. */
export function update_gfn_disallow_lpage_count(slot: KvmMemorySlot, gfn: number, count: number): void {
  for (let level = PG_LEVEL_2M; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const a = slot.lpage_info[level - PG_LEVEL_2M]!.disallow_lpage;
    const i = gfn_to_index(gfn, slot.base_gfn, level);
    const v = a[i]!;
    const mixed = v & KVM_LPAGE_MIXED_FLAG;
    const n = (v & ~KVM_LPAGE_MIXED_FLAG) + count;
    if (n < 0) throw new Error(`disallow_lpage underflow at gfn ${gfn.toString(16)} level ${level}`);
    a[i] = (n | mixed) >>> 0;
  }
}

export function kvm_mmu_gfn_disallow_lpage(slot: KvmMemorySlot, gfn: number): void {
  update_gfn_disallow_lpage_count(slot, gfn, 1);
}

export function kvm_mmu_gfn_allow_lpage(slot: KvmMemorySlot, gfn: number): void {
  update_gfn_disallow_lpage_count(slot, gfn, -1);
}

export function hugepage_set_mixed(slot: KvmMemorySlot, gfn: number, level: number, mixed: boolean): void {
  const a = slot.lpage_info[level - PG_LEVEL_2M]!.disallow_lpage;
  const i = gfn_to_index(gfn, slot.base_gfn, level);
  a[i] = mixed ? (a[i]! | KVM_LPAGE_MIXED_FLAG) >>> 0 : (a[i]! & ~KVM_LPAGE_MIXED_FLAG) >>> 0;
}

export function kvm_slot_dirty_track_enabled(slot: KvmMemorySlot): boolean {
  return (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
}

/** __gfn_to_hva_memslot. */
export function gfn_to_hva_memslot(slot: KvmMemorySlot, gfn: number): number {
  return slot.userspace_addr + (gfn - slot.base_gfn) * 4096;
}

/**
 * The host pfn behind gfn (what GUP returns): pages of the VMA are backed linearly from host_pfn_base
 * (aligned to the backing size) except where the host migrated a page.
 */
export function slot_gfn_to_host_pfn(slot: KvmMemorySlot, gfn: number): number {
  const idx = gfn - slot.base_gfn;
  if (slot.host_migrated.size !== 0) {
    const m = slot.host_migrated.get(idx);
    if (m !== undefined) return m;
  }
  return slot.host_pfn_base + idx;
}

/**
 * host_pfn_mapping_level(): the level at which the host's page tables map the HVA of gfn. A huge host
 * page only counts if it lies entirely inside the VMA (the slot's userspace range here), has not been
 * split, and none of its pages were migrated away.
 */
export function host_pfn_mapping_level(slot: KvmMemorySlot, gfn: number): number {
  const backing = host_backing_level(slot.host_backing);
  if (backing === PG_LEVEL_4K) return PG_LEVEL_4K;
  const hva_pfn = Math.floor(slot.userspace_addr / 4096) + (gfn - slot.base_gfn);
  const vma_start = Math.floor(slot.userspace_addr / 4096);
  const vma_end = vma_start + slot.npages;
  for (let level = backing; level > PG_LEVEL_4K; level--) {
    const per = KVM_PAGES_PER_HPAGE[level]!;
    const start = hva_pfn - (hva_pfn % per);
    if (start < vma_start || start + per > vma_end) continue;
    if (slot.host_split_2m.size !== 0 || slot.host_migrated.size !== 0) {
      if (level === PG_LEVEL_2M && slot.host_split_2m.has(Math.floor((start - vma_start) / 512))) continue;
      if (level === PG_LEVEL_1G && hugeRangeTouched(slot, start - vma_start, per)) continue;
      if (level === PG_LEVEL_2M && migratedIn(slot, start - vma_start, per)) continue;
    }
    return level;
  }
  return PG_LEVEL_4K;
}

function migratedIn(slot: KvmMemorySlot, first: number, n: number): boolean {
  for (const k of slot.host_migrated.keys()) if (k >= first && k < first + n) return true;
  return false;
}

function hugeRangeTouched(slot: KvmMemorySlot, first: number, n: number): boolean {
  for (const k of slot.host_split_2m) if (k * 512 >= first && k * 512 < first + n) return true;
  return migratedIn(slot, first, n);
}

/** Address space's memslots (struct kvm_memslots): sorted by base_gfn for the gfn lookup. */
export class KvmMemslots {
  generation: number;
  /** Sorted by base_gfn, non-overlapping. */
  slots: KvmMemorySlot[] = [];
  private last_used: KvmMemorySlot | undefined;

  constructor(generation: number) {
    this.generation = generation;
  }

  byId(id: number): KvmMemorySlot | undefined {
    for (const s of this.slots) if (s.id === id) return s;
    return undefined;
  }

  /** __gfn_to_memslot / search_memslots, with a last-used cache as the kernel has. */
  lookup(gfn: number): KvmMemorySlot | undefined {
    const lu = this.last_used;
    if (lu !== undefined && gfn >= lu.base_gfn && gfn < lu.base_gfn + lu.npages) return lu;
    const a = this.slots;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = a[mid]!;
      if (gfn < s.base_gfn) hi = mid - 1;
      else if (gfn >= s.base_gfn + s.npages) lo = mid + 1;
      else {
        this.last_used = s;
        return s;
      }
    }
    return undefined;
  }

  insert(slot: KvmMemorySlot): void {
    this.slots.push(slot);
    this.slots.sort((x, y) => x.base_gfn - y.base_gfn);
    this.last_used = undefined;
  }

  remove(slot: KvmMemorySlot): void {
    this.slots = this.slots.filter((s) => s !== slot);
    this.last_used = undefined;
  }

  overlaps(base_gfn: number, npages: number, except?: KvmMemorySlot): KvmMemorySlot | undefined {
    for (const s of this.slots) {
      if (s === except) continue;
      if (base_gfn < s.base_gfn + s.npages && s.base_gfn < base_gfn + npages) return s;
    }
    return undefined;
  }
}

/** Dirty bitmap helpers (64-bit longs stored as lo/hi 32-bit words, as KVM_GET_DIRTY_LOG returns). */
export function kvm_dirty_bitmap_words32(npages: number): number {
  return Math.ceil(npages / 64) * 2;
}

export function dirty_bitmap_set(bm: Uint32Array, rel_gfn: number): void {
  bm[rel_gfn >>> 5] = (bm[rel_gfn >>> 5]! | (1 << (rel_gfn & 31))) >>> 0;
}

export function dirty_bitmap_test(bm: Uint32Array, rel_gfn: number): boolean {
  return ((bm[rel_gfn >>> 5]! >>> (rel_gfn & 31)) & 1) === 1;
}
