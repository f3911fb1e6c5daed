/**
 * Sparse guest physical memory, page-granular.
 *
 * A page is materialised (one Uint32Array(1024), 4 KiB) only when something is written to it; reads of
 * pages never written return zero. A 1 TiB guest therefore costs one empty Map until it is used.
 *
 * Guest physical addresses are plain numbers: MAXPHYADDR is at most 52, so every GPA is below 2^52 and
 * exact as a double. 64-bit contents travel as 32-bit halves (see bits/u64.ts); nothing here allocates
 * on a read.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
const WORDS_PER_PAGE = PAGE_SIZE / 4;
const MAX_GPA = 2 ** 52;
const PAGE_CACHE_SIZE = 64;

export class GuestMemory {
  private readonly pages = new Map<number, Uint32Array>();
  /**
   * Direct-mapped cache of materialised pages in front of `pages`: a guest walk reads the same few
   * table pages again and again, and a Map lookup costs several times a typed-array probe. Pages are
   * only ever added (until clear()), so a cached page can never go stale.
   */
  private readonly cacheGfn = new Float64Array(PAGE_CACHE_SIZE).fill(-1);
  private readonly cachePage: Array<Uint32Array | undefined> = new Array<Uint32Array | undefined>(PAGE_CACHE_SIZE).fill(undefined);
  /** Exclusive upper bound of valid gfns (the guest's memory size in pages). */
  readonly nrPages: number;

  /** `sizeBytes` is the guest's physical address space that reads/writes may touch (default 2^52). */
  constructor(sizeBytes: number = MAX_GPA) {
    if (!(sizeBytes > 0) || sizeBytes > MAX_GPA || sizeBytes % PAGE_SIZE !== 0) {
      throw new RangeError(`guest memory size must be a positive multiple of 4 KiB up to 2^52: ${sizeBytes}`);
    }
    this.nrPages = sizeBytes / PAGE_SIZE;
  }

  /** Number of pages that hold data (were written at least once). */
  get populatedPages(): number {
    return this.pages.size;
  }

  /** True when `gpa`..`gpa+bytes-1` lies inside guest memory. */
  contains(gpa: number, bytes = 1): boolean {
    return gpa >= 0 && Number.isInteger(gpa) && Math.floor((gpa + bytes - 1) / PAGE_SIZE) < this.nrPages;
  }

  /** The backing page of `gfn` if it was ever written (never allocates). */
  peekPage(gfn: number): Uint32Array | undefined {
    // gfn is a non-negative integer: `&` keeps its low bits even above 2^31.
    const c = gfn & (PAGE_CACHE_SIZE - 1);
    if (this.cacheGfn[c] === gfn) return this.cachePage[c];
    const p = this.pages.get(gfn);
    if (p !== undefined) {
      this.cacheGfn[c] = gfn;
      this.cachePage[c] = p;
    }
    return p;
  }

  /** The backing page of `gfn`, created zero-filled on first use. */
  page(gfn: number): Uint32Array {
    let p = this.pages.get(gfn);
    if (p === undefined) {
      if (gfn < 0 || gfn >= this.nrPages || !Number.isInteger(gfn)) throw new RangeError(`gfn 0x${gfn.toString(16)} outside guest memory`);
      p = new Uint32Array(WORDS_PER_PAGE);
      this.pages.set(gfn, p);
    }
    return p;
  }

  private check(gpa: number, align: number): void {
    if (!this.contains(gpa, align)) throw new RangeError(`gpa 0x${gpa.toString(16)} outside guest memory`);
    if (gpa % align !== 0) throw new RangeError(`gpa 0x${gpa.toString(16)} not ${align}-byte aligned`);
  }

  /** Aligned 32-bit read. */
  read32(gpa: number): number {
    this.check(gpa, 4);
    const p = this.pages.get(Math.floor(gpa / PAGE_SIZE));
    return p === undefined ? 0 : p[(gpa % PAGE_SIZE) >>> 2]!;
  }

  /** Aligned 64-bit read, low half. */
  read64lo(gpa: number): number {
    return this.read32(gpa);
  }

  /** Aligned 64-bit read, high half. */
  read64hi(gpa: number): number {
    this.check(gpa, 8);
    return this.read32(gpa + 4);
  }

  /** Aligned 64-bit read into out[off] (lo) and out[off+1] (hi). */
  read64(gpa: number, out: Uint32Array, off = 0): void {
    this.check(gpa, 8);
    const p = this.pages.get(Math.floor(gpa / PAGE_SIZE));
    if (p === undefined) {
      out[off] = 0;
      out[off + 1] = 0;
      return;
    }
    const w = (gpa % PAGE_SIZE) >>> 2;
    out[off] = p[w]!;
    out[off + 1] = p[w + 1]!;
  }

  /**
   * Read a naturally aligned 4- or 8-byte page-table entry into out[0] (lo) and out[1] (hi, 0 for 4
   * bytes). False when the address is outside guest memory (the walker's "no memslot"). One bounds check,
   * no allocation: this is the walker's hot path.
   */
  readEntry(gpa: number, size: 4 | 8, out: Uint32Array): boolean {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    if (!(gpa >= 0) || gfn >= this.nrPages) return false;
    const p = this.peekPage(gfn);
    if (p === undefined) {
      out[0] = 0;
      out[1] = 0;
      return true;
    }
    const w = (gpa - gfn * PAGE_SIZE) >>> 2;
    out[0] = p[w]!;
    out[1] = size === 8 ? p[w + 1]! : 0;
    return true;
  }

  write32(gpa: number, value: number): void {
    this.check(gpa, 4);
    const gfn = Math.floor(gpa / PAGE_SIZE);
    // Writing zero to an untouched page changes nothing observable; keep it unallocated.
    if (value === 0 && !this.pages.has(gfn)) return;
    this.page(gfn)[(gpa % PAGE_SIZE) >>> 2] = value >>> 0;
  }

  write64(gpa: number, lo: number, hi: number): void {
    this.check(gpa, 8);
    const gfn = Math.floor(gpa / PAGE_SIZE);
    if (lo === 0 && hi === 0 && !this.pages.has(gfn)) return;
    const p = this.page(gfn);
    const w = (gpa % PAGE_SIZE) >>> 2;
    p[w] = lo >>> 0;
    p[w + 1] = hi >>> 0;
  }

  /**
   * Compare-and-exchange of an aligned 4- or 8-byte entry: writes only if the current value equals
   * old. Returns true when it wrote.
   */
  cmpxchg(gpa: number, size: 4 | 8, oldLo: number, oldHi: number, newLo: number, newHi: number): boolean {
    this.check(gpa, size);
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const p = this.pages.get(gfn);
    const w = (gpa % PAGE_SIZE) >>> 2;
    const curLo = p === undefined ? 0 : p[w]!;
    const curHi = size === 8 ? (p === undefined ? 0 : p[w + 1]!) : 0;
    if (curLo !== oldLo >>> 0 || curHi !== (size === 8 ? oldHi >>> 0 : 0)) return false;
    if (size === 8) this.write64(gpa, newLo, newHi);
    else this.write32(gpa, newLo);
    return true;
  }

  /**
   * Re-home the pages of [from, from + npages) at [to, to + npages): a memslot moved in GPA space keeps
   * its host memory, so its contents follow it. Pages of the target range not in the source read zero.
   */
  movePages(from: number, to: number, npages: number): void {
    const moved: Array<[number, Uint32Array]> = [];
    for (const [gfn, p] of this.pages) if (gfn >= from && gfn < from + npages) moved.push([gfn - from + to, p]);
    this.dropPages(from, npages);
    this.dropPages(to, npages);
    for (const [gfn, p] of moved) this.pages.set(gfn, p);
  }

  /** Forget the pages of [gfn, gfn + npages) (they read zero again). */
  dropPages(gfn: number, npages: number): void {
    for (const g of [...this.pages.keys()]) if (g >= gfn && g < gfn + npages) this.pages.delete(g);
    this.cacheGfn.fill(-1);
    this.cachePage.fill(undefined);
  }

  /** Drop every page (back to all zeroes). */
  clear(): void {
    this.pages.clear();
    this.cacheGfn.fill(-1);
    this.cachePage.fill(undefined);
  }
}
