/**
 * Payload parser: walks an event's print-fmt parts (the same parts the printer uses) over the text with
 * char codes and `startsWith`, writing field halves into a `ParsedEvent`. No regex, no substring on the
 * common path.
 */
import {
  EVENTS,
  PFERR_FLAG_NAMES,
  SP_ACCESS_STR,
  SP_OLD_TEXT_ROLE_MASK,
  SP_TEXT_ROLE_MASK,
  SVM_EXIT_REASONS,
  VMX_EXIT_REASONS,
  type EventSchema,
  type Part,
} from '../engine/tracepoints/index';
import type { ParsedEvent } from './event';
import { retPfNumbers, type KernelVersion } from './kernel_version';

export const PAYLOAD_OK = 0;
/** The text ended before the parts did: the line may have been wrapped. */
export const PAYLOAD_TRUNCATED = 1;
export const PAYLOAD_MISMATCH = 2;

/** Parse cursor results (module scratch so that readers return a position, not an object). */
// the halves live in a typed array: a module `let` holding a value >= 2^30 would box it on every store
const VH = new Uint32Array(2);
let vNum = 0;

/** Hex digit values by char code (-1: not a digit). */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[97 + i] = 10 + i;
  HEX[65 + i] = 10 + i;
}

/** The same table for bytes (0..255). */
const HEXB = new Int8Array(256).fill(-1);
HEXB.set(HEX);
/** Two hex digits by their bytes (first << 8 | second) -> 0..255, -1 unless both are digits. */
const HEX2 = new Int16Array(0x10000).fill(-1);
for (let x = 0; x < 128; x++) {
  for (let y = 0; y < 128; y++) if (HEX[x]! >= 0 && HEX[y]! >= 0) HEX2[(x << 8) | y] = HEX[x]! * 16 + HEX[y]!;
}

function hexVal(c: number): number {
  return c < 128 ? HEX[c]! : -1;
}

/** Hex digits at pos into vLo/vHi; returns the end position, or -1 when there is no digit or > 16 digits. */
function readHex(s: string, pos: number, end: number): number {
  // up to 13 digits fit a double exactly: one multiply-add per digit, split into halves at the end
  const start = pos;
  let v = 0;
  const fast = end - pos < 13 ? end : pos + 13;
  while (pos < fast) {
    const c = s.charCodeAt(pos);
    const d = c < 128 ? HEX[c]! : -1;
    if (d < 0) break;
    v = v * 16 + d;
    pos++;
  }
  if (pos === start) return -1;
  let lo = v >>> 0;
  let hi = (v / 0x1_0000_0000) >>> 0;
  if (pos === fast && pos < end) {
    while (pos < end) {
      const d = hexVal(s.charCodeAt(pos));
      if (d < 0) break;
      hi = ((hi << 4) | (lo >>> 28)) >>> 0;
      lo = ((lo << 4) | d) >>> 0;
      pos++;
    }
    if (pos - start > 16) {
      // leading zeros are harmless; more than 16 significant digits is not a 64-bit value
      let z = start;
      while (z < pos && s.charCodeAt(z) === 48) z++;
      if (pos - z > 16) return -1;
    }
  }
  VH[0] = lo;
  VH[1] = hi;
  return pos;
}

/** Signed or unsigned decimal into vNum (and two's complement halves into vLo/vHi). */
function readDec(s: string, pos: number, end: number, signed: boolean): number {
  let neg = false;
  if (signed && pos < end && s.charCodeAt(pos) === 45) {
    neg = true;
    pos++;
  }
  const start = pos;
  let n = 0;
  while (pos < end) {
    const c = s.charCodeAt(pos) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
    pos++;
  }
  if (pos === start) return -1;
  vNum = neg ? -n : n;
  if (neg) {
    // two's complement of a value below 2^53
    let lo = n % 0x1_0000_0000 >>> 0;
    let hi = Math.floor(n / 0x1_0000_0000) >>> 0;
    lo = ~lo >>> 0;
    hi = ~hi >>> 0;
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
    VH[0] = lo;
    VH[1] = hi;
  } else if (n <= 0x7fff_ffff) {
    // the usual small number: no floating-point remainder
    VH[0] = n;
    VH[1] = 0;
  } else {
    VH[0] = n % 0x1_0000_0000 >>> 0;
    VH[1] = Math.floor(n / 0x1_0000_0000) >>> 0;
  }
  return pos;
}

/** Truncated-or-mismatch verdict when literal `lit` does not match at pos. */
function litFail(s: string, pos: number, end: number, lit: string): number {
  const avail = end - pos;
  if (avail < lit.length && s.startsWith(lit.slice(0, avail), pos)) return PAYLOAD_TRUNCATED;
  return PAYLOAD_MISMATCH;
}

const VMX_BY_NAME = new Map<string, number>(VMX_EXIT_REASONS.map(([k, n]) => [n, k]));
const SVM_BY_NAME = new Map<string, number>(SVM_EXIT_REASONS.map(([k, n]) => [n, k >>> 0]));
const PFERR_BY_NAME = new Map<string, number>(PFERR_FLAG_NAMES.map(([b, n]) => [n, b]));
const ACC_BY_TEXT = new Map<string, number>(SP_ACCESS_STR.map((t, i) => [t, i]));

export interface PayloadOptions {
  kernel: KernelVersion;
}

let failCode = PAYLOAD_MISMATCH;

/** Position after the token (up to a space or end). */
function tokenEnd(s: string, pos: number, end: number): number {
  while (pos < end && s.charCodeAt(pos) !== 32) pos++;
  return pos;
}

function parsePferrFlags(s: string, pos: number, end: number): number {
  const te = tokenEnd(s, pos, end);
  let lo = 0;
  let hi = 0;
  let p = pos;
  while (p < te) {
    let q = s.indexOf('|', p);
    if (q < 0 || q > te) q = te;
    if (s.charCodeAt(p) === 48 && s.charCodeAt(p + 1) === 120) {
      const r = readHex(s, p + 2, q);
      if (r !== q) return -1;
      lo |= VH[0]!;
      hi |= VH[1]!;
    } else {
      const bit = PFERR_BY_NAME.get(s.slice(p, q));
      if (bit === undefined) return -1;
      lo |= 1 << bit;
    }
    p = q + 1;
  }
  VH[0] = lo >>> 0;
  VH[1] = hi >>> 0;
  return te;
}

/** Current shadow-page text into the SP fields of ev. Returns the end position or -1. */
function parseSp(s: string, pos: number, end: number, ev: ParsedEvent): number {
  const idx = ev.schema.index;
  if (!s.startsWith('sp gen ', pos)) return spFail(s, pos, end, 'sp gen ');
  pos = readDec(s, pos + 7, end, false);
  if (pos < 0) return -1;
  ev.set(idx['mmu_valid_gen']!, vNum & 0xff, 0);
  if (!s.startsWith(' gfn ', pos)) return spFail(s, pos, end, ' gfn ');
  pos = readHex(s, pos + 5, end);
  if (pos < 0) return -1;
  ev.set(idx['gfn']!, VH[0]!, VH[1]!);
  if (!s.startsWith(' l', pos)) return spFail(s, pos, end, ' l');
  pos = readDec(s, pos + 2, end, false);
  if (pos < 0) return -1;
  let role = vNum & 0xf;
  if (s.startsWith(' 4-byte q', pos)) role |= 0x10;
  else if (!s.startsWith(' 8-byte q', pos)) return spFail(s, pos, end, ' 8-byte q');
  pos = readDec(s, pos + 9, end, false);
  if (pos < 0) return -1;
  pos = readDirectAccInvalid(s, pos, end, role | ((vNum & 3) << 5));
  if (pos < 0) return -1;
  role = vRole;
  if (s.startsWith(' nxe ', pos)) {
    role |= 0x1000;
    pos += 5;
  } else if (s.startsWith(' !nxe ', pos)) pos += 6;
  else return spFail(s, pos, end, ' nxe ');
  if (s.startsWith('!ad root ', pos)) {
    role |= 0x10000;
    pos += 9;
  } else if (s.startsWith('ad root ', pos)) pos += 8;
  else return spFail(s, pos, end, 'ad root ');
  pos = readDec(s, pos, end, false);
  if (pos < 0) return -1;
  ev.set(idx['root_count']!, vNum >>> 0, 0);
  if (s.startsWith(' unsync', pos)) {
    ev.set(idx['unsync']!, 1, 0);
    pos += 7;
  } else if (s.startsWith(' sync', pos)) {
    ev.set(idx['unsync']!, 0, 0);
    pos += 5;
  } else return spFail(s, pos, end, ' sync');
  ev.set(idx['role']!, role >>> 0, 0);
  ev.roleMask = SP_TEXT_ROLE_MASK;
  return pos;
}

/** Role bits both shadow-page text generations print alike: `[ direct] ACC[ invalid]`; result in vRole. */
let vRole = 0;
function readDirectAccInvalid(s: string, pos: number, end: number, role: number): number {
  if (s.startsWith(' direct', pos)) {
    role |= 0x80;
    pos += 7;
  }
  if (s.charCodeAt(pos) !== 32 || pos + 4 > end) return spFail(s, pos, end, ' ---');
  const acc = ACC_BY_TEXT.get(s.slice(pos + 1, pos + 4));
  if (acc === undefined) return -1;
  role |= acc << 8;
  pos += 4;
  if (s.startsWith(' invalid', pos)) {
    role |= 0x800;
    pos += 8;
  }
  vRole = role;
  return pos;
}

function spFail(s: string, pos: number, end: number, lit: string): number {
  failCode = litFail(s, pos, end, lit);
  return -1;
}

/**
 * The pre-5.10 text: `[new ]sp gfn X L qQ[ direct] ACC[ invalid] pae|!pae [!]nxe [!]wp root R sync|unsync`.
 * `pae` means 8-byte guest PTEs (has_4_byte_gpte = 0).
 */
function parseSpOld(s: string, pos: number, end: number, ev: ParsedEvent): number {
  const idx = ev.schema.index;
  let created = 0;
  if (s.startsWith('new ', pos)) {
    created = 1;
    pos += 4;
  }
  if (!s.startsWith('sp gfn ', pos)) return spFail(s, pos, end, 'sp gfn ');
  pos = readHex(s, pos + 7, end);
  if (pos < 0) return -1;
  ev.set(idx['gfn']!, VH[0]!, VH[1]!);
  if (s.charCodeAt(pos) !== 32) return spFail(s, pos, end, ' ');
  pos = readDec(s, pos + 1, end, false);
  if (pos < 0) return -1;
  let role = vNum & 0xf;
  if (!s.startsWith(' q', pos)) return spFail(s, pos, end, ' q');
  pos = readDec(s, pos + 2, end, false);
  if (pos < 0) return -1;
  pos = readDirectAccInvalid(s, pos, end, role | ((vNum & 3) << 5));
  if (pos < 0) return -1;
  role = vRole;
  if (s.startsWith(' !pae', pos)) {
    role |= 0x10;
    pos += 5;
  } else if (s.startsWith(' pae', pos)) pos += 4;
  else return spFail(s, pos, end, ' pae');
  if (s.startsWith(' nxe', pos)) {
    role |= 0x1000;
    pos += 4;
  } else if (s.startsWith(' !nxe', pos)) pos += 5;
  else return spFail(s, pos, end, ' nxe');
  if (s.startsWith(' wp', pos)) {
    role |= 0x2000;
    pos += 3;
  } else if (s.startsWith(' !wp', pos)) pos += 4;
  else return spFail(s, pos, end, ' wp');
  if (!s.startsWith(' root ', pos)) return spFail(s, pos, end, ' root ');
  pos = readDec(s, pos + 6, end, false);
  if (pos < 0) return -1;
  ev.set(idx['root_count']!, vNum >>> 0, 0);
  if (s.startsWith(' unsync', pos)) {
    ev.set(idx['unsync']!, 1, 0);
    pos += 7;
  } else if (s.startsWith(' sync', pos)) {
    ev.set(idx['unsync']!, 0, 0);
    pos += 5;
  } else return spFail(s, pos, end, ' sync');
  ev.set(idx['role']!, role >>> 0, 0);
  const ci = idx['created'];
  if (ci !== undefined) ev.set(ci, created, 0);
  ev.roleMask = SP_OLD_TEXT_ROLE_MASK;
  ev.variant = 1;
  return pos;
}

/** `kvm_exit` reason text up to ` rip 0x`. Sets exit_reason and, when the name tells, isa. */
function parseExitReason(s: string, pos: number, end: number, ev: ParsedEvent): number {
  const stop = s.indexOf(' rip 0x', pos);
  if (stop < 0 || stop > end) {
    failCode = PAYLOAD_TRUNCATED;
    return -1;
  }
  const idx = ev.schema.index;
  // SVM names may hold a space (`DF excp`) and carry no flag part: try the whole text first
  const svm = SVM_BY_NAME.get(s.slice(pos, stop));
  if (svm !== undefined) {
    ev.set(idx['exit_reason']!, svm, 0);
    ev.set(idx['isa']!, 2, 0);
    return stop;
  }
  let te = tokenEnd(s, pos, stop);
  let reason = 0;
  let isa = 0;
  if (s.charCodeAt(pos) === 48 && s.charCodeAt(pos + 1) === 120) {
    if (readHex(s, pos + 2, te) !== te) return -1;
    reason = VH[0]!;
  } else {
    const name = s.slice(pos, te);
    const v = VMX_BY_NAME.get(name);
    if (v !== undefined) {
      reason = v;
      isa = 1;
    } else {
      const a = SVM_BY_NAME.get(name);
      if (a === undefined) return -1;
      reason = a;
      isa = 2;
    }
  }
  // VMX flag names of bits 31:16, space separated
  while (te < stop) {
    const ts = te + 1;
    te = tokenEnd(s, ts, stop);
    if (s.startsWith('FAILED_VMENTRY', ts) && te - ts === 14) {
      reason |= 0x8000_0000;
      isa = 1;
    } else if (s.charCodeAt(ts) === 48 && s.charCodeAt(ts + 1) === 120) {
      if (readHex(s, ts + 2, te) !== te) return -1;
      reason |= VH[0]!;
      isa = 1;
    } else return -1;
  }
  ev.set(idx['exit_reason']!, reason >>> 0, 0);
  if (isa) ev.set(idx['isa']!, isa, 0);
  return stop;
}

const OP_LIT = 0;
const OP_HEX = 1;
const OP_DEC = 2;
const OP_HEX0X = 3;
const OP_PFERR = 10;
const OP_SP = 11;
const OP_SP_OLD = 12;
const OP_CREATED = 13;
const OP_RWXU = 14;
const OP_EXIT = 15;
const OP_IMMEDIATE = 16;
const OP_GEN_VALID = 17;
const OP_RET_SPURIOUS = 18;
const OP_RET_FIXED = 19;

const CUSTOM_OP: Record<string, number> = {
  pferr_flags: OP_PFERR,
  sp: OP_SP,
  sp_old: OP_SP_OLD,
  created: OP_CREATED,
  rwxu: OP_RWXU,
  exit_reason: OP_EXIT,
  immediate_exit: OP_IMMEDIATE,
  gen_valid: OP_GEN_VALID,
  ret_spurious: OP_RET_SPURIOUS,
  ret_fixed: OP_RET_FIXED,
};

/** A part list flattened to parallel arrays (numeric op, field index, literal) for the hot loop. */
interface Compiled {
  ops: Int32Array;
  fields: Int32Array;
  /** Field width mask for the low half (0xff, 0xffff, 0xffffffff) and whether the high half is kept. */
  /** Low-half mask as an int32 (0xffffffff is -1): `&` on int32s, no double conversion. */
  loMask: Int32Array;
  keepHi: Uint8Array;
  isBool: Uint8Array;
  signed: Uint8Array;
  lits: string[];
  /** All literals' char codes in one array (litAt[k], length litLen[k]), for an inline compare in the hot loop. */
  allLits: Uint16Array;
  litAt: Int32Array;
  litLen: Int32Array;
  /** The same literals as little-endian 4-byte words (litWAt[k], litLen[k] >> 2 of them) for the byte path. */
  litWords: Int32Array;
  litWAt: Int32Array;
  /**
   * The 1-3 characters after a literal's whole words as a little-endian word (litTail[k]) and the mask of
   * its bytes (litTailMask[k]; 0 when the length is a multiple of 4): one masked compare on the byte path.
   */
  litTail: Int32Array;
  litTailMask: Int32Array;
  /** Per value part: its field index | 0x100 when the high half is kept | 0x200 for a bool field. */
  meta: Int32Array;
  parts: readonly Part[];
  /** Field indices of r, x and u when the parts hold a `rwxu` text. */
  rwxu: Int32Array | null;
}

const compiledCache = new WeakMap<readonly Part[], Compiled>();

/** The little-endian 32-bit word of t's chars at i..i+3 (as a DataView reads ASCII bytes). */
export function wordOf(t: string, i: number): number {
  return (t.charCodeAt(i) | (t.charCodeAt(i + 1) << 8) | (t.charCodeAt(i + 2) << 16) | (t.charCodeAt(i + 3) << 24)) | 0;
}

function compileParts(schema: EventSchema, parts: readonly Part[]): Compiled {
  const n = parts.length;
  const c: Compiled = {
    ops: new Int32Array(n),
    fields: new Int32Array(n),
    loMask: new Int32Array(n),
    keepHi: new Uint8Array(n),
    isBool: new Uint8Array(n),
    signed: new Uint8Array(n),
    lits: new Array<string>(n).fill(''),
    allLits: new Uint16Array(parts.reduce((a, p) => a + (p.t === 'lit' ? p.s.length : 0), 0)),
    litAt: new Int32Array(n),
    litLen: new Int32Array(n),
    litWords: new Int32Array(parts.reduce((a, p) => a + (p.t === 'lit' ? p.s.length >> 2 : 0), 0)),
    litWAt: new Int32Array(n),
    litTail: new Int32Array(n),
    litTailMask: new Int32Array(n),
    meta: new Int32Array(n),
    parts,
    rwxu: null,
  };
  let litFill = 0;
  let wordFill = 0;
  parts.forEach((p, k) => {
    if (p.t === 'lit') {
      c.ops[k] = OP_LIT;
      c.lits[k] = p.s;
      c.litAt[k] = litFill;
      c.litLen[k] = p.s.length;
      for (let i = 0; i < p.s.length; i++) c.allLits[litFill++] = p.s.charCodeAt(i);
      c.litWAt[k] = wordFill;
      for (let i = 0; i + 4 <= p.s.length; i += 4) c.litWords[wordFill++] = wordOf(p.s, i);
      const rest = p.s.length & 3;
      if (rest !== 0) {
        const t = p.s.slice(p.s.length - rest);
        c.litTail[k] = wordOf(t + '\0\0\0', 0) & ((1 << (8 * rest)) - 1);
        c.litTailMask[k] = (1 << (8 * rest)) - 1;
      }
      return;
    }
    c.fields[k] = p.field;
    if (p.t === 'conv') {
      const spec = schema.fields[p.field]!;
      c.ops[k] = p.conv === 'u' || p.conv === 'd' ? OP_DEC : p.conv === 'x#' || p.conv === 'x#016' ? OP_HEX0X : OP_HEX;
      c.loMask[k] = spec.bits === 8 ? 0xff : spec.bits === 16 ? 0xffff : -1;
      c.keepHi[k] = spec.bits === 64 ? 1 : 0;
      c.isBool[k] = spec.bool ? 1 : 0;
      c.signed[k] = p.conv === 'd' && spec.signed ? 1 : 0;
      c.meta[k] = p.field | (c.keepHi[k]! << 8) | (c.isBool[k]! << 9);
      return;
    }
    c.ops[k] = CUSTOM_OP[p.kind]!;
    if (p.kind === 'rwxu') c.rwxu = Int32Array.of(schema.index['r']!, schema.index['x']!, schema.index['u']!);
  });
  return c;
}

function compiled(schema: EventSchema, parts: readonly Part[]): Compiled {
  let c = compiledCache.get(parts);
  if (!c) compiledCache.set(parts, (c = compileParts(schema, parts)));
  return c;
}

/** True when parts[k..] may print nothing: blank literals, a zero flag list, no `[immediate exit]`. */
function tailCanBeEmpty(c: Compiled, k: number, ev: ParsedEvent): boolean {
  for (let j = k; j < c.ops.length; j++) {
    const op = c.ops[j]!;
    if (op === OP_LIT) {
      if (c.lits[j]!.trim() !== '') return false;
    } else if (op === OP_PFERR) {
      const f = c.fields[j]!;
      if (!(ev.has & (1 << f)) || ev.lo[f] !== 0 || ev.hi[f] !== 0) return false;
    } else if (op === OP_IMMEDIATE) {
      ev.set(c.fields[j]!, 0, 0);
    } else return false;
  }
  return true;
}

// the exit-reason text of the previous kvm_exit, to skip the name lookups when it repeats
let lastExitText = '';
let lastExitReason = 0;
let lastExitIsa = 0;

/**
 * Parse `parts` (a print fmt of `schema`) over s[pos, end). Returns PAYLOAD_OK / PAYLOAD_TRUNCATED /
 * PAYLOAD_MISMATCH. The event must have been `reset` to `schema` by the caller.
 */
export function parseParts(schema: EventSchema, parts: readonly Part[], s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  return run(schema, compiled(schema, parts), s, pos, end, ev, opts);
}

function run(schema: EventSchema, c: Compiled, s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  const ops = c.ops;
  const n = ops.length;
  for (let k = 0; k < n; k++) {
    const op = ops[k]!;
    if (op === OP_LIT) {
      const lits = c.allLits;
      const L = c.litLen[k]!;
      const at = c.litAt[k]! - pos;
      let j = pos;
      const stop = pos + L;
      if (stop <= end) while (j < stop && s.charCodeAt(j) === lits[at + j]) j++;
      if (j !== stop) {
        // a trimmed line loses the trailing space before an empty flag list (`pferr 0 `)
        if (pos >= end && tailCanBeEmpty(c, k, ev)) return PAYLOAD_OK;
        return litFail(s, pos, end, c.lits[k]!);
      }
      pos += L;
      continue;
    }
    if (pos >= end) return tailCanBeEmpty(c, k, ev) ? PAYLOAD_OK : PAYLOAD_TRUNCATED;
    const field = c.fields[k]!;
    if (op <= OP_HEX0X) {
      let r: number;
      if (op === OP_HEX) r = readHex(s, pos, end);
      else if (op === OP_DEC) r = readDec(s, pos, end, c.signed[k] === 1);
      else {
        if (s.charCodeAt(pos) !== 48 || s.charCodeAt(pos + 1) !== 120) return pos + 2 > end ? PAYLOAD_TRUNCATED : PAYLOAD_MISMATCH;
        r = readHex(s, pos + 2, end);
      }
      if (r < 0) return PAYLOAD_MISMATCH;
      let lo = (VH[0]! & c.loMask[k]!) >>> 0;
      if (c.isBool[k] === 1) lo = lo !== 0 ? 1 : 0;
      ev.lo[field] = lo;
      ev.hi[field] = c.keepHi[k] === 1 ? VH[1]! : 0;
      ev.has |= 1 << field;
      pos = r;
      continue;
    }
    let r = -1;
    failCode = PAYLOAD_MISMATCH;
    switch (op) {
      case OP_PFERR: {
        r = parsePferrFlags(s, pos, end);
        // fast_page_fault prints the error code only as flags; the walker events print the number too
        if (r >= 0 && !(ev.has & (1 << field))) ev.set(field, VH[0]!, VH[1]!);
        break;
      }
      case OP_SP:
        r = parseSp(s, pos, end, ev);
        break;
      case OP_SP_OLD:
        r = parseSpOld(s, pos, end, ev);
        break;
      case OP_CREATED:
        if (s.startsWith('new', pos)) {
          ev.set(field, 1, 0);
          r = pos + 3;
        } else if (s.startsWith('existing', pos)) {
          ev.set(field, 0, 0);
          r = pos + 8;
        } else failCode = litFail(s, pos, end, 'existing');
        break;
      case OP_RWXU: {
        const idx = schema.index;
        const close = s.indexOf(')', pos);
        if (close < 0 || close > end) {
          failCode = PAYLOAD_TRUNCATED;
          break;
        }
        const len = close - pos;
        if (len !== 3 && len !== 4) break;
        const c0 = s.charCodeAt(pos);
        const c2 = s.charCodeAt(pos + 2);
        if ((c0 !== 114 && c0 !== 45) || (c2 !== 120 && c2 !== 45)) break;
        ev.set(idx['r']!, c0 === 114 ? 1 : 0, 0);
        ev.set(idx['x']!, c2 === 120 ? 1 : 0, 0);
        if (len === 3) ev.set(idx['u']!, 0xff, 0);
        else ev.set(idx['u']!, s.charCodeAt(pos + 3) === 117 ? 1 : 0, 0);
        r = close;
        break;
      }
      case OP_EXIT: {
        // common case: the same reason as the previous kvm_exit
        const L = lastExitText.length;
        if (L !== 0 && s.startsWith(lastExitText, pos) && s.startsWith(' rip 0x', pos + L)) {
          ev.set(schema.index['exit_reason']!, lastExitReason, 0);
          if (lastExitIsa) ev.set(schema.index['isa']!, lastExitIsa, 0);
          r = pos + L;
        } else {
          r = parseExitReason(s, pos, end, ev);
          if (r >= 0) {
            lastExitText = s.slice(pos, r);
            lastExitReason = ev.lo[schema.index['exit_reason']!]!;
            lastExitIsa = ev.has & (1 << schema.index['isa']!) ? ev.lo[schema.index['isa']!]! : 0;
          }
        }
        break;
      }
      case OP_IMMEDIATE:
        if (s.startsWith('[immediate exit]', pos)) {
          ev.set(field, 1, 0);
          r = pos + 16;
        } else {
          ev.set(field, 0, 0);
          r = pos;
        }
        break;
      case OP_GEN_VALID:
      case OP_RET_SPURIOUS:
      case OP_RET_FIXED: {
        const ch = s.charCodeAt(pos);
        if (ch !== 48 && ch !== 49) break;
        const v = ch - 48;
        if (op === OP_GEN_VALID) ev.derived.valid = v;
        else if (op === OP_RET_SPURIOUS) ev.derived.spurious = v;
        else {
          ev.derived.fixed = v;
          // ret is only known through the two comparisons; its number depends on the kernel's RET_PF_* enum
          const nums = retPfNumbers(opts.kernel);
          if (ev.derived.spurious === 1) ev.set(field, nums.spurious >>> 0, 0);
          else if (v === 1) ev.set(field, nums.fixed >>> 0, 0);
        }
        r = pos + 1;
        break;
      }
    }
    if (r < 0) return failCode;
    pos = r;
  }
  // trailing blanks are fine; anything else means the text is not this event's
  while (pos < end) {
    const ch = s.charCodeAt(pos);
    if (ch !== 32 && ch !== 9 && ch !== 13) return PAYLOAD_MISMATCH;
    pos++;
  }
  return PAYLOAD_OK;
}

/** runBytes could not decide: run() must. */
const FAST_UNDECIDED = -1;

/**
 * The common case of run() on an ASCII chunk's bytes, as one tight loop: literals, plain numbers and the
 * `rwxu` text, every one matching. Anything else (another custom part, a mismatch, a short line, a number
 * it does not take) is left to run(), which gives the verdict; so this only has to agree with run() when
 * it returns PAYLOAD_OK. A third of the parse went to run()'s generality on lines that need none of it.
 */
function runBytes(c: Compiled, b: Uint8Array, view: DataView, pos: number, end: number, ev: ParsedEvent): number {
  const ops = c.ops;
  const n = ops.length;
  const lits = c.allLits;
  const words = c.litWords;
  const evLo = ev.lo;
  const evHi = ev.hi;
  let has = 0;
  for (let k = 0; k < n; k++) {
    const op = ops[k]!;
    if (op === OP_LIT) {
      const L = c.litLen[k]!;
      const stop = pos + L;
      if (stop > end) return FAST_UNDECIDED;
      let w = c.litWAt[k]!;
      const w1 = w + (L >> 2);
      while (w < w1) {
        if (view.getInt32(pos, true) !== words[w]) return FAST_UNDECIDED;
        w++;
        pos += 4;
      }
      if (pos !== stop) {
        // the last 1-3 characters: one masked word where four bytes are readable, else byte by byte
        if (pos + 4 <= b.length) {
          if ((view.getInt32(pos, true) & c.litTailMask[k]!) !== c.litTail[k]) return FAST_UNDECIDED;
          pos = stop;
        } else {
          let at = c.litAt[k]! + (L & ~3);
          while (pos < stop) {
            if (b[pos] !== lits[at]) return FAST_UNDECIDED;
            pos++;
            at++;
          }
        }
      }
      continue;
    }
    let lo = 0;
    let hi = 0;
    if (op === OP_HEX || op === OP_HEX0X) {
      if (op === OP_HEX0X) {
        if (pos + 2 > end || b[pos] !== 48 || b[pos + 1] !== 120) return FAST_UNDECIDED;
        pos += 2;
      }
      // up to 16 digits into 32-bit halves, a pair of digits per step
      const start = pos;
      const fast = end - pos < 16 ? end : pos + 16;
      while (pos + 1 < fast) {
        const dd = HEX2[view.getUint16(pos)]!;
        if (dd < 0) break;
        hi = (hi << 8) | (lo >>> 24);
        lo = (lo << 8) | dd;
        pos += 2;
      }
      if (pos < fast) {
        const d = HEXB[b[pos]!]!;
        if (d >= 0) {
          hi = (hi << 4) | (lo >>> 28);
          lo = (lo << 4) | d;
          pos++;
        }
      }
      if (pos === start || (pos < end && HEXB[b[pos]!]! >= 0)) return FAST_UNDECIDED;
    } else if (op === OP_DEC) {
      // up to 9 digits (below 2^31) and no sign
      const start = pos;
      const fast = end - pos < 9 ? end : pos + 9;
      while (pos < fast) {
        const d = b[pos]! - 48;
        if (d < 0 || d > 9) break;
        lo = lo * 10 + d;
        pos++;
      }
      if (pos === start || (pos < end && b[pos]! >= 48 && b[pos]! <= 57)) return FAST_UNDECIDED;
    } else if (op === OP_RWXU && c.rwxu !== null) {
      // `rwx` (the format has no user bit: u = 0xff) or `rwx` + `u`/`-`, then `)`
      const c0 = b[pos]!;
      const c2 = b[pos + 2]!;
      let u = 0xff;
      let e = pos + 3;
      if (b[e] !== 41) {
        const c3 = b[e]!;
        if (c3 === 117) u = 1;
        else if (c3 === 45) u = 0;
        else return FAST_UNDECIDED;
        e++;
        if (b[e] !== 41) return FAST_UNDECIDED;
      }
      if (e >= end || (c0 !== 114 && c0 !== 45) || (c2 !== 120 && c2 !== 45)) return FAST_UNDECIDED;
      const f = c.rwxu;
      evLo[f[0]!] = c0 === 114 ? 1 : 0;
      evLo[f[1]!] = c2 === 120 ? 1 : 0;
      evLo[f[2]!] = u;
      evHi[f[0]!] = 0;
      evHi[f[1]!] = 0;
      evHi[f[2]!] = 0;
      has |= (1 << f[0]!) | (1 << f[1]!) | (1 << f[2]!);
      pos = e;
      continue;
    } else return FAST_UNDECIDED;
    const meta = c.meta[k]!;
    const field = meta & 0xff;
    lo &= c.loMask[k]!;
    if ((meta & 0x200) !== 0) lo = lo !== 0 ? 1 : 0;
    evLo[field] = lo;
    evHi[field] = (meta & 0x100) !== 0 ? hi : 0;
    has |= 1 << field;
  }
  while (pos < end) {
    const ch = b[pos]!;
    if (ch !== 32 && ch !== 9 && ch !== 13) return FAST_UNDECIDED;
    pos++;
  }
  ev.has |= has;
  return PAYLOAD_OK;
}

/** Compiled current and older texts of every event, by index in EVENTS. */
const CUR: Compiled[] = EVENTS.map((e) => compiled(e, e.parts));
const OLD: Compiled[][] = EVENTS.map((e) => e.older.map((p) => compiled(e, p)));

/** Try the 6.18 text, then each older generation (schema given by its index in EVENTS). */
/**
 * The byte path's fast loop for event id's 6.18 text: PAYLOAD_OK, or FAST_UNDECIDED when parsePayloadById
 * must decide. Called by the parser before parsePayloadById, so the common line costs one call.
 */
export function parseBytesFast(id: number, b: Uint8Array, view: DataView, pos: number, end: number, ev: ParsedEvent): number {
  return runBytes(CUR[id]!, b, view, pos, end, ev);
}

export function parsePayloadById(id: number, s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  const schema = EVENTS[id]!;
  const r = run(schema, CUR[id]!, s, pos, end, ev, opts);
  const older = OLD[id]!;
  if (r === PAYLOAD_OK || older.length === 0) return r;
  for (const c of older) {
    ev.reset(schema);
    const o = run(schema, c, s, pos, end, ev, opts);
    if (o === PAYLOAD_OK) {
      ev.variant = 1;
      return o;
    }
  }
  ev.reset(schema);
  // report the current text's verdict (truncated lets the caller try a wrapped continuation)
  return run(schema, CUR[id]!, s, pos, end, ev, opts);
}

/** Same, by schema. */
export function parsePayload(schema: EventSchema, s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  return parsePayloadById(EVENTS.indexOf(schema), s, pos, end, ev, opts);
}
