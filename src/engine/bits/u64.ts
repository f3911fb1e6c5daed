/**
 * 64-bit values as two unsigned 32-bit halves.
 *
 * Hot paths (fault, walk, parse) never allocate BigInt: they carry `lo`/`hi` numbers or read and write
 * pairs in typed arrays. BigInt and hex strings appear only at the edges (CLI, DAP, views, tests).
 * Every function here keeps both halves in [0, 2^32).
 */

export interface U64 {
  lo: number;
  hi: number;
}

const TWO32 = 0x1_0000_0000;

export function u64(lo: number, hi = 0): U64 {
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Split a non-negative integer below 2^53 into halves. */
export function fromNumber(n: number): U64 {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative safe integer: ${n}`);
  return { lo: n >>> 0, hi: Math.floor(n / TWO32) >>> 0 };
}

/** Join halves into a number; exact while hi < 2^21. */
export function toNumber(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

export function fromBigInt(v: bigint): U64 {
  const m = BigInt.asUintN(64, v);
  return { lo: Number(m & 0xffff_ffffn), hi: Number(m >> 32n) };
}

export function toBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Parse `0x1a2`, `1a2`, or a decimal with `--dec`-style prefix `0d`/plain digits when `radix` is 10.
 * Returns undefined on anything that is not a 64-bit unsigned value.
 */
export function parseU64(text: string, radix: 16 | 10 = 16): U64 | undefined {
  let s = text.trim().toLowerCase().replace(/_/g, '');
  if (s.startsWith('0x')) {
    s = s.slice(2);
    radix = 16;
  }
  if (s.length === 0) return undefined;
  if (radix === 16) {
    if (!/^[0-9a-f]+$/.test(s)) return undefined;
    s = s.replace(/^0+(?=.)/, '');
    if (s.length > 16) return undefined;
    const loText = s.slice(-8);
    const hiText = s.length > 8 ? s.slice(0, -8) : '0';
    return { lo: parseInt(loText, 16) >>> 0, hi: parseInt(hiText, 16) >>> 0 };
  }
  if (!/^[0-9]+$/.test(s)) return undefined;
  const v = BigInt(s);
  if (v >= 1n << 64n) return undefined;
  return fromBigInt(v);
}

/** Lower-case hex without prefix or leading zeros, as the kernel's `%llx` prints. */
export function hex(lo: number, hi: number): string {
  hi >>>= 0;
  lo >>>= 0;
  if (hi === 0) return lo.toString(16);
  return hi.toString(16) + lo.toString(16).padStart(8, '0');
}

/** `0x`-prefixed hex, optionally zero-padded to `width` digits (`%016llx` is width 16). */
export function hex0x(lo: number, hi: number, width = 0): string {
  return '0x' + hex(lo, hi).padStart(width, '0');
}

export function testBit(lo: number, hi: number, bit: number): boolean {
  return bit < 32 ? ((lo >>> bit) & 1) === 1 : ((hi >>> (bit - 32)) & 1) === 1;
}

/** Mask of `width` low bits as a 32-bit unsigned number (width 0..32). */
function lowMask32(width: number): number {
  return width >= 32 ? 0xffff_ffff : ((1 << width) - 1) >>> 0;
}

/**
 * Read bits msb..lsb (inclusive) as a number. Fields up to 53 bits wide are exact, which covers every
 * address field of every format modelled here (the widest, bits 51:12, is 40 bits).
 */
export function getField(lo: number, hi: number, msb: number, lsb: number): number {
  const width = msb - lsb + 1;
  if (msb < 32) return ((lo >>> lsb) & lowMask32(width)) >>> 0;
  if (lsb >= 32) return ((hi >>> (lsb - 32)) & lowMask32(width)) >>> 0;
  const loPart = (lo >>> lsb) >>> 0; // 32 - lsb bits
  const loBits = 32 - lsb;
  const hiPart = (hi & lowMask32(msb - 31)) >>> 0;
  return hiPart * Math.pow(2, loBits) + loPart;
}

/** Return the halves with bits msb..lsb replaced by `value` (a non-negative integer below 2^53). */
export function setField(lo: number, hi: number, msb: number, lsb: number, value: number): U64 {
  const m = fieldMask(msb, lsb);
  const shifted = shiftLeft(fromNumber(value), lsb);
  return {
    lo: ((lo & ~m.lo) | (shifted.lo & m.lo)) >>> 0,
    hi: ((hi & ~m.hi) | (shifted.hi & m.hi)) >>> 0,
  };
}

/** Mask with bits msb..lsb set (GENMASK_ULL(msb, lsb)). */
export function fieldMask(msb: number, lsb: number): U64 {
  let lo = 0;
  let hi = 0;
  if (lsb < 32) lo = (lowMask32(Math.min(msb, 31) - lsb + 1) << lsb) >>> 0;
  if (msb >= 32) {
    const l = Math.max(lsb, 32) - 32;
    hi = (lowMask32(msb - 32 - l + 1) << l) >>> 0;
  }
  return { lo, hi };
}

/** BIT_ULL(n). */
export function bit(n: number): U64 {
  return n < 32 ? { lo: (1 << n) >>> 0, hi: 0 } : { lo: 0, hi: (1 << (n - 32)) >>> 0 };
}

export function shiftLeft(v: U64, n: number): U64 {
  if (n === 0) return { lo: v.lo >>> 0, hi: v.hi >>> 0 };
  if (n >= 64) return { lo: 0, hi: 0 };
  if (n >= 32) return { lo: 0, hi: (v.lo << (n - 32)) >>> 0 };
  return { lo: (v.lo << n) >>> 0, hi: ((v.hi << n) | (v.lo >>> (32 - n))) >>> 0 };
}

export function shiftRight(v: U64, n: number): U64 {
  if (n === 0) return { lo: v.lo >>> 0, hi: v.hi >>> 0 };
  if (n >= 64) return { lo: 0, hi: 0 };
  if (n >= 32) return { lo: v.hi >>> (n - 32), hi: 0 };
  return { lo: ((v.lo >>> n) | (v.hi << (32 - n))) >>> 0, hi: v.hi >>> n };
}

export function or(a: U64, b: U64): U64 {
  return { lo: (a.lo | b.lo) >>> 0, hi: (a.hi | b.hi) >>> 0 };
}

export function and(a: U64, b: U64): U64 {
  return { lo: (a.lo & b.lo) >>> 0, hi: (a.hi & b.hi) >>> 0 };
}

export function andNot(a: U64, b: U64): U64 {
  return { lo: (a.lo & ~b.lo) >>> 0, hi: (a.hi & ~b.hi) >>> 0 };
}

export function isZero(v: U64): boolean {
  return v.lo === 0 && v.hi === 0;
}

export function equals(a: U64, b: U64): boolean {
  return a.lo >>> 0 === b.lo >>> 0 && a.hi >>> 0 === b.hi >>> 0;
}

/** Byte-aligned address arithmetic: v + n for small non-negative n (no overflow past 2^64 handling). */
export function addNumber(v: U64, n: number): U64 {
  const sum = (v.lo >>> 0) + n;
  return { lo: sum >>> 0, hi: (v.hi + Math.floor(sum / TWO32)) >>> 0 };
}
