/**
 * Host physical pages: a pfn allocator and the contents of the pages it hands out.
 *
 * The allocator has two zones like the kernel's: DMA32 (below 4 GiB, what `__GFP_DMA32` asks for; PAE
 * roots for a 32-bit CR3 live there) and Normal (everything above). Ordinary requests take Normal first
 * and fall back to DMA32, as the page allocator's zonelist does. Each zone is a bump pointer plus a LIFO
 * free list, so the pfn sequence is deterministic for a given sequence of calls (replay relies on it).
 *
 * Page contents (`page(pfn)`, 512 64-bit entries as Uint32Array(1024)) are created on first use and
 * recycled through a pool when freed, so steady-state allocate/free does not allocate JS memory.
 */
import { PAGE_SIZE } from './guest_memory';

/** Allocate below 4 GiB. */
export const __GFP_DMA32 = 0x1;
/** Default flags for page-table pages. */
export const GFP_KERNEL_ACCOUNT = 0x0;

/** First pfn at or above 4 GiB. */
export const DMA32_END_PFN = 0x10_0000;

export interface HostMemoryOptions {
  /** First pfn the allocator may hand out (default 0x1000, i.e. 16 MiB, leaving low memory alone). */
  firstPfn?: number;
  /** Exclusive end pfn (default 1 TiB of host memory: 0x1000_0000). */
  endPfn?: number;
}

class Zone {
  next: number;
  readonly free: number[] = [];
  constructor(
    readonly start: number,
    readonly end: number,
  ) {
    this.next = start;
  }
  take(): number {
    if (this.free.length > 0) return this.free.pop()!;
    if (this.next < this.end) return this.next++;
    return -1;
  }
  owns(pfn: number): boolean {
    return pfn >= this.start && pfn < this.end;
  }
  get available(): number {
    return this.free.length + (this.end - this.next);
  }
}

export class HostMemory {
  private readonly dma32: Zone;
  private readonly normal: Zone;
  private readonly allocated = new Set<number>();
  private readonly contents = new Map<number, Uint32Array>();
  private readonly pool: Uint32Array[] = [];

  constructor(opts: HostMemoryOptions = {}) {
    const first = opts.firstPfn ?? 0x1000;
    const end = opts.endPfn ?? 0x1000_0000;
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(end) || first < 0 || end <= first) {
      throw new RangeError(`bad host pfn range [${first}, ${end})`);
    }
    this.dma32 = new Zone(first, Math.min(end, DMA32_END_PFN));
    this.normal = new Zone(Math.max(first, DMA32_END_PFN), end);
  }

  /** Pages currently allocated. */
  get allocatedPages(): number {
    return this.allocated.size;
  }

  /** Pages whose contents exist in JS memory (allocated and touched, not counting the reuse pool). */
  get materialisedPages(): number {
    return this.contents.size;
  }

  /** Pages still available to a request with these flags. */
  available(gfp = GFP_KERNEL_ACCOUNT): number {
    return gfp & __GFP_DMA32 ? this.dma32.available : this.dma32.available + this.normal.available;
  }

  /** Allocate one zeroed page; returns its pfn, or -1 when the zone(s) are exhausted. */
  alloc_page(gfp = GFP_KERNEL_ACCOUNT): number {
    let pfn = -1;
    if (!(gfp & __GFP_DMA32)) pfn = this.normal.take();
    if (pfn < 0) pfn = this.dma32.take();
    if (pfn >= 0) this.allocated.add(pfn);
    return pfn;
  }

  /** Return a page to its zone. Freeing a pfn that is not allocated throws (a model bug, like a double free). */
  free_page(pfn: number): void {
    if (!this.allocated.delete(pfn)) throw new Error(`free of pfn 0x${pfn.toString(16)} that is not allocated`);
    const c = this.contents.get(pfn);
    if (c !== undefined) {
      c.fill(0);
      this.pool.push(c);
      this.contents.delete(pfn);
    }
    (this.dma32.owns(pfn) ? this.dma32 : this.normal).free.push(pfn);
  }

  isAllocated(pfn: number): boolean {
    return this.allocated.has(pfn);
  }

  /** Contents of an allocated page: 512 entries, entry i at [2i] (lo) and [2i+1] (hi). */
  page(pfn: number): Uint32Array {
    let c = this.contents.get(pfn);
    if (c === undefined) {
      if (!this.allocated.has(pfn)) throw new Error(`access to pfn 0x${pfn.toString(16)} that is not allocated`);
      c = this.pool.pop() ?? new Uint32Array(PAGE_SIZE / 4);
      this.contents.set(pfn, c);
    }
    return c;
  }

  /** Contents if materialised, else undefined (reading an untouched page means zeroes). */
  peekPage(pfn: number): Uint32Array | undefined {
    return this.contents.get(pfn);
  }
}
