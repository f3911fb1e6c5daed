/**
 * Page-table pages for the arm64 model: a simple physical allocator handing out page-sized typed arrays,
 * each identified by its physical address, with the `struct page` / `struct hyp_page` refcount the
 * stage-2 code keeps on table pages. Also `struct kvm_mmu_memory_cache` (pages topped up before a map,
 * consumed by table allocation).
 *
 * A table page of N entries is a Uint32Array(2N): entry i at [2i] (lo) and [2i+1] (hi).
 */

export class PtPage {
  /** refcount: 1 from allocation, plus one per counted entry while it is a stage-2 table. */
  refcount = 0;
  constructor(
    readonly pa: number,
    readonly data: Uint32Array,
  ) {}
}

export interface PageAllocStats {
  allocated: number;
  freed: number;
  live: number;
  peak: number;
}

export class PtPageAllocator {
  readonly pageSize: number;
  readonly entries: number;
  private readonly pages = new Map<number, PtPage>();
  private readonly freeList: number[] = [];
  private next: number;
  private readonly limit: number;
  readonly stats: PageAllocStats = { allocated: 0, freed: 0, live: 0, peak: 0 };

  /**
   * @param pageSize  granule size in bytes
   * @param base      first physical address handed out (page aligned)
   * @param maxPages  pool size; allocation beyond it fails (returns 0), like an exhausted hyp pool
   */
  constructor(pageSize: number, base = 0x10_0000_0000, maxPages = 1 << 20) {
    if (base % pageSize !== 0) throw new RangeError('allocator base must be page aligned');
    this.pageSize = pageSize;
    this.entries = pageSize / 8;
    this.next = base;
    this.limit = base + maxPages * pageSize;
  }

  /** A zeroed page with refcount 1, or undefined when the pool is exhausted. */
  alloc(): PtPage | undefined {
    let pa = this.freeList.pop();
    if (pa === undefined) {
      if (this.next >= this.limit) return undefined;
      pa = this.next;
      this.next += this.pageSize;
    }
    const p = new PtPage(pa, new Uint32Array(this.entries * 2));
    p.refcount = 1;
    this.pages.set(pa, p);
    this.stats.allocated++;
    this.stats.live++;
    if (this.stats.live > this.stats.peak) this.stats.peak = this.stats.live;
    return p;
  }

  free(pa: number): void {
    const p = this.pages.get(pa);
    if (!p) throw new Error(`free of unknown page-table page 0x${pa.toString(16)}`);
    this.pages.delete(pa);
    this.freeList.push(pa);
    this.stats.freed++;
    this.stats.live--;
  }

  page(pa: number): PtPage | undefined {
    return this.pages.get(pa);
  }

  /** The page that holds a physical address (e.g. a PTE's address), if it is a live table page. */
  pageOf(pa: number): PtPage | undefined {
    return this.pages.get(pa - (pa % this.pageSize));
  }

  owns(pa: number): boolean {
    return this.pages.has(pa - (pa % this.pageSize));
  }

  livePages(): IterableIterator<PtPage> {
    return this.pages.values();
  }
}

/** KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE on arm64. */
export const KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE = 40;

/** struct kvm_mmu_memory_cache: zeroed pages set aside before taking the MMU lock. */
export class KvmMmuMemoryCache {
  readonly objects: PtPage[] = [];
  /** When the cache runs dry the host kernel WARNs and allocates atomically; the hyp pool cannot. */
  readonly atomicFallback: boolean;
  warnings = 0;

  constructor(
    readonly alloc: PtPageAllocator,
    opts: { capacity?: number; atomicFallback?: boolean } = {},
  ) {
    this.capacity = opts.capacity ?? KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE;
    this.atomicFallback = opts.atomicFallback ?? false;
  }

  readonly capacity: number;

  get nobjs(): number {
    return this.objects.length;
  }
}

/** kvm_mmu_topup_memory_cache: nothing if at least `min` pages are there, else fill to capacity. */
export function kvm_mmu_topup_memory_cache(mc: KvmMmuMemoryCache, min: number): number {
  if (mc.objects.length >= min) return 0;
  const want = Math.max(min, mc.capacity);
  while (mc.objects.length < want) {
    const p = mc.alloc.alloc();
    if (!p) return mc.objects.length >= min ? 0 : -12; // -ENOMEM
    mc.objects.push(p);
  }
  return 0;
}

/** kvm_mmu_memory_cache_alloc: pops a page; refcount is already 1. */
export function kvm_mmu_memory_cache_alloc(mc: KvmMmuMemoryCache): PtPage | undefined {
  const p = mc.objects.pop();
  if (p) return p;
  if (!mc.atomicFallback) return undefined;
  mc.warnings++;
  return mc.alloc.alloc();
}

/** kvm_mmu_free_memory_cache. */
export function kvm_mmu_free_memory_cache(mc: KvmMmuMemoryCache): void {
  for (const p of mc.objects.splice(0)) mc.alloc.free(p.pa);
}
