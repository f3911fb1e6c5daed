/**
 * Per (vCPU, page) fault history for the fault-loop detector, in typed arrays: a capture faults on
 * hundreds of thousands of pages, and an object plus a Map entry per page was most of the rebuild's cost
 * and garbage. Entries of one page are chained (`next`) behind the page's head in a NumTable.
 */
import { NumTable } from './num_table';

export class FaultLoops {
  /** Entries before single-fault pages are forgotten (see `evict`). */
  readonly maxPages: number;
  private readonly heads = new NumTable(1024);
  n = 0;
  vcpu = new Int32Array(1024);
  page = new Float64Array(1024);
  /** Faults in the current run without an SPTE change. */
  count = new Float64Array(1024);
  /** All faults on this (vCPU, page). */
  total = new Float64Array(1024);
  firstLine = new Float64Array(1024);
  lastLine = new Float64Array(1024);
  /** Line of the last fault counted. */
  epoch = new Float64Array(1024);
  changed = new Uint8Array(1024);
  /** Index of the entry's finding in the rebuilder's list, -1 for none. */
  finding = new Int32Array(1024);
  private next = new Int32Array(1024);

  constructor(maxPages: number) {
    this.maxPages = maxPages;
  }

  get pages(): number {
    return this.heads.size;
  }

  /** Entry of (page, vcpu), or -1. */
  find(page: number, vcpu: number): number {
    let i = this.heads.get(page);
    while (i >= 0 && this.vcpu[i] !== vcpu) i = this.next[i]!;
    return i;
  }

  /** Adding an entry for `page` needs an `evict()` first. */
  full(page: number): boolean {
    return this.heads.size >= this.maxPages && !this.heads.has(page);
  }

  /** A new entry (count 1, total 0) for a (page, vcpu) that has none. */
  add(page: number, vcpu: number, line: number): number {
    if (this.n === this.vcpu.length) this.resize(this.n * 2);
    const i = this.n++;
    this.vcpu[i] = vcpu;
    this.page[i] = page;
    this.count[i] = 1;
    this.total[i] = 0;
    this.firstLine[i] = line;
    this.lastLine[i] = line;
    this.epoch[i] = 0;
    this.changed[i] = 0;
    this.finding[i] = -1;
    this.next[i] = this.heads.get(page);
    this.heads.set(page, i);
    return i;
  }

  /**
   * Forget the pages that faulted once on every vCPU with no finding. Their faults stay counted in the
   * totals; only the per-page top list can miss them. Compacts the arrays (indices change).
   */
  evict(): void {
    const keep = new Uint8Array(this.n);
    for (let i = 0; i < this.n; i++) if (this.total[i]! > 1 || this.finding[i]! >= 0) keep[i] = 1;
    // a page stays with all its entries when any of them is kept
    const keepPage = new NumTable(1024);
    for (let i = 0; i < this.n; i++) if (keep[i]) keepPage.set(this.page[i]!, 1);
    let m = 0;
    this.heads.clear();
    for (let i = 0; i < this.n; i++) {
      if (!keepPage.has(this.page[i]!)) continue;
      this.vcpu[m] = this.vcpu[i]!;
      this.page[m] = this.page[i]!;
      this.count[m] = this.count[i]!;
      this.total[m] = this.total[i]!;
      this.firstLine[m] = this.firstLine[i]!;
      this.lastLine[m] = this.lastLine[i]!;
      this.epoch[m] = this.epoch[i]!;
      this.changed[m] = this.changed[i]!;
      this.finding[m] = this.finding[i]!;
      this.next[m] = this.heads.get(this.page[m]!);
      this.heads.set(this.page[m]!, m);
      m++;
    }
    this.n = m;
  }

  /** The `k` entries with the most faults (ties: lower page, then lower vCPU). */
  top(k: number): Array<{ vcpu: number; page: number; total: number }> {
    const best: number[] = [];
    const better = (a: number, b: number): boolean => {
      const ta = this.total[a]!;
      const tb = this.total[b]!;
      if (ta !== tb) return ta > tb;
      const pa = this.page[a]!;
      const pb = this.page[b]!;
      return pa < pb || (pa === pb && this.vcpu[a]! < this.vcpu[b]!);
    };
    for (let i = 0; i < this.n; i++) {
      if (best.length === k && !better(i, best[k - 1]!)) continue;
      let j = best.length < k ? best.length : k - 1;
      best[j] = i;
      while (j > 0 && better(best[j]!, best[j - 1]!)) {
        const t = best[j - 1]!;
        best[j - 1] = best[j]!;
        best[j] = t;
        j--;
      }
    }
    return best.map((i) => ({ vcpu: this.vcpu[i]!, page: this.page[i]!, total: this.total[i]! }));
  }

  private resize(size: number): void {
    const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.vcpu = grow(this.vcpu, (n) => new Int32Array(n));
    this.page = grow(this.page, (n) => new Float64Array(n));
    this.count = grow(this.count, (n) => new Float64Array(n));
    this.total = grow(this.total, (n) => new Float64Array(n));
    this.firstLine = grow(this.firstLine, (n) => new Float64Array(n));
    this.lastLine = grow(this.lastLine, (n) => new Float64Array(n));
    this.epoch = grow(this.epoch, (n) => new Float64Array(n));
    this.changed = grow(this.changed, (n) => new Uint8Array(n));
    this.finding = grow(this.finding, (n) => new Int32Array(n));
    this.next = grow(this.next, (n) => new Int32Array(n));
  }
}
