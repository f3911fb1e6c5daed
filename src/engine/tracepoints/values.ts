/**
 * Field values of tracepoint records.
 *
 * Convention (shared by `formatTracepoint`, the trace sink and the replay parser): a field is a `number`, a
 * `boolean`, or — for a 64-bit value that does not fit a safe integer (>= 2^53) — a lower-case hex string
 * without `0x` (e.g. `"80000000000005a0"`). Readers also accept `0x`-prefixed hex strings and hex strings
 * for small values. Negative numbers in 64-bit or unsigned fields are read as two's complement, as the C
 * assignment into the record field would.
 */

export type FieldValue = number | string | boolean;
export type TraceFields = Record<string, FieldValue>;

const TWO32 = 0x1_0000_0000;

/** Scratch halves written by `loadHalves`; read immediately (no allocation on the formatting path). */
export const scratch = { lo: 0, hi: 0 };

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Load `v` into `scratch` as 64-bit halves; returns false when `v` is not a readable value. */
export function loadHalves(v: FieldValue | undefined): boolean {
  if (v === undefined) {
    scratch.lo = 0;
    scratch.hi = 0;
    return false;
  }
  if (typeof v === 'boolean') {
    scratch.lo = v ? 1 : 0;
    scratch.hi = 0;
    return true;
  }
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return false;
    v = Math.trunc(v);
    if (v >= 0) {
      scratch.lo = v % TWO32 >>> 0;
      scratch.hi = Math.floor(v / TWO32) >>> 0;
    } else {
      // two's complement of a negative safe integer
      const mag = -v;
      let lo = mag % TWO32 >>> 0;
      let hi = Math.floor(mag / TWO32) >>> 0;
      lo = ~lo >>> 0;
      hi = ~hi >>> 0;
      lo = (lo + 1) >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
      scratch.lo = lo;
      scratch.hi = hi;
    }
    return true;
  }
  let s = v;
  let i = 0;
  if (s.length >= 2 && s.charCodeAt(0) === 48 && (s.charCodeAt(1) | 0x20) === 120) i = 2;
  if (i >= s.length) return false;
  let lo = 0;
  let hi = 0;
  for (; i < s.length; i++) {
    const d = hexDigit(s.charCodeAt(i));
    if (d < 0) return false;
    hi = ((hi << 4) | (lo >>> 28)) >>> 0;
    lo = ((lo << 4) | d) >>> 0;
  }
  scratch.lo = lo;
  scratch.hi = hi;
  return true;
}

/** The field-value form of a 64-bit value: a number below 2^53, else a hex string (no `0x`). */
export function halvesToValue(lo: number, hi: number): number | string {
  hi >>>= 0;
  lo >>>= 0;
  if (hi < 0x20_0000) return hi * TWO32 + lo;
  // SHADOW_NONPRESENT_VALUE is the old value of nearly every new mapping: don't format it each time.
  if (hi === 0x8000_0000 && lo === 0) return NONPRESENT_TEXT;
  // Consecutive SPTEs share their high half (attribute bits, bit 63): format it once.
  if (hi !== lastHi) {
    lastHi = hi;
    lastHiText = hex32(hi);
  }
  return lastHiText + hex32Pad8(lo);
}

let lastHi = -1;
let lastHiText = '';

const NONPRESENT_TEXT = '8000000000000000';

/** Lower-case hex of halves, no prefix, at least `width` digits (zero-padded). */
export function hexHalves(lo: number, hi: number, width = 0): string {
  hi >>>= 0;
  lo >>>= 0;
  const s = hi === 0 ? hex32(lo) : hex32(hi) + hex32Pad8(lo);
  return width > s.length ? s.padStart(width, '0') : s;
}

// Number#toString(16) of a value that is not a small integer (>= 2^30 here) takes V8's slow double path;
// 16-bit pieces stay small integers (about 3x faster on the replay's summary of every SPTE).
function hex32(v: number): string {
  if (v < 0x4000_0000) return v.toString(16);
  return (v >>> 16).toString(16) + ((v & 0xffff) | 0x1_0000).toString(16).slice(1);
}

function hex32Pad8(v: number): string {
  return ((v >>> 16) | 0x1_0000).toString(16).slice(1) + ((v & 0xffff) | 0x1_0000).toString(16).slice(1);
}

/** Unsigned decimal of halves (exact below 2^53; larger values go through BigInt, off any hot path). */
export function decHalves(lo: number, hi: number): string {
  hi >>>= 0;
  lo >>>= 0;
  if (hi < 0x20_0000) return String(hi * TWO32 + lo);
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
}
