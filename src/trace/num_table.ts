/**
 * Hash table from integer keys (0 <= key < 2^53: gfns, page numbers) to numbers, on typed arrays.
 *
 * The rebuild looks up every SPTE event's (level, gfn) and every fault's page; a `Map` with number keys
 * boxes keys above 2^31 and allocates per entry, this does neither. Open addressing, linear probing, a
 * locality-keeping fold of the key's 32-bit halves, deletion by backward shift (no tombstones).
 */

const TWO32 = 0x1_0000_0000;
const EMPTY = -1;

export class NumTable {
  private keys: Float64Array;
  private vals: Float64Array;
  private bits: number;
  private mask: number;
  size = 0;

  constructor(capacity = 16) {
    let bits = 4;
    while (1 << bits < capacity * 2 && bits < 30) bits++;
    this.bits = bits;
    this.mask = (1 << bits) - 1;
    this.keys = new Float64Array(1 << bits).fill(EMPTY);
    this.vals = new Float64Array(1 << bits);
  }

  // Folding 9-bit groups keeps neighbouring gfns (and neighbouring level-2/3 entries, 512 and 512^2 apart)
  // in neighbouring slots: a walk over sorted keys, or a capture's sweep over a range, stays in cache.
  private home(key: number): number {
    const lo = key >>> 0;
    const hi = (key / TWO32) >>> 0;
    return (lo ^ (lo >>> 9) ^ (lo >>> 18) ^ (lo >>> 27) ^ hi ^ (hi >>> 9) ^ (hi >>> 18)) & this.mask;
  }

  /** Index of key in the arrays, or -1. */
  private find(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = this.home(key); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === EMPTY) return -1;
    }
  }

  /** The value at key, or `absent`. */
  get(key: number, absent = -1): number {
    const i = this.find(key);
    return i < 0 ? absent : this.vals[i]!;
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  set(key: number, value: number): void {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    for (; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) {
        this.vals[i] = value;
        return;
      }
      if (k === EMPTY) break;
    }
    keys[i] = key;
    this.vals[i] = value;
    if (++this.size * 2 > keys.length) this.grow();
  }

  /** Remove key; returns its value, or `absent` when it was not there. */
  delete(key: number, absent = -1): number {
    let i = this.find(key);
    if (i < 0) return absent;
    const v = this.vals[i]!;
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    // shift back the entries after the hole that would no longer be reachable from their home slot
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const h = this.home(keys[j]!);
      const reachable = i <= j ? h > i && h <= j : h > i || h <= j;
      if (!reachable) {
        keys[i] = keys[j]!;
        vals[i] = vals[j]!;
        i = j;
      }
    }
    keys[i] = EMPTY;
    this.size--;
    return v;
  }

  clear(): void {
    this.keys.fill(EMPTY);
    this.size = 0;
  }

  /** All keys, in no particular order. */
  keyArray(): Float64Array {
    const out = new Float64Array(this.size);
    let n = 0;
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) out[n++] = keys[i]!;
    return out;
  }

  /** Keys k with from <= k < to, appended to out. */
  keysInRange(from: number, to: number, out: number[]): void {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (k >= from && k < to) out.push(k);
    }
  }

  /** Every (key, value) pair, in no particular order. */
  forEach(fn: (key: number, value: number) => void): void {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) fn(keys[i]!, this.vals[i]!);
  }

  private grow(): void {
    const oldK = this.keys;
    const oldV = this.vals;
    this.bits++;
    this.mask = (1 << this.bits) - 1;
    this.keys = new Float64Array(1 << this.bits).fill(EMPTY);
    this.vals = new Float64Array(1 << this.bits);
    const keys = this.keys;
    const mask = this.mask;
    for (let j = 0; j < oldK.length; j++) {
      const k = oldK[j]!;
      if (k === EMPTY) continue;
      let i = this.home(k);
      while (keys[i] !== EMPTY) i = (i + 1) & mask;
      keys[i] = k;
      this.vals[i] = oldV[j]!;
    }
  }
}
