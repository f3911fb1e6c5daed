/**
 * Payload parser: walks an event's print-fmt parts (the same parts the printer uses) over the text with
 * char codes and `startsWith`, writing field halves into a `ParsedEvent`. No regex, no substring on the
 * common path.
 */
import {
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
let vLo = 0;
let vHi = 0;
let vNum = 0;

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Hex digits at pos into vLo/vHi; returns the end position, or -1 when there is no digit or > 16 digits. */
function readHex(s: string, pos: number, end: number): number {
  let lo = 0;
  let hi = 0;
  const start = pos;
  while (pos < end) {
    const d = hexVal(s.charCodeAt(pos));
    if (d < 0) break;
    hi = ((hi << 4) | (lo >>> 28)) >>> 0;
    lo = ((lo << 4) | d) >>> 0;
    pos++;
  }
  if (pos === start) return -1;
  if (pos - start > 16) {
    // leading zeros are harmless; more than 16 significant digits is not a 64-bit value
    let z = start;
    while (z < pos && s.charCodeAt(z) === 48) z++;
    if (pos - z > 16) return -1;
  }
  vLo = lo;
  vHi = hi;
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
    vLo = lo;
    vHi = hi;
  } else {
    vLo = n % 0x1_0000_0000 >>> 0;
    vHi = Math.floor(n / 0x1_0000_0000) >>> 0;
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
      lo |= vLo;
      hi |= vHi;
    } else {
      const bit = PFERR_BY_NAME.get(s.slice(p, q));
      if (bit === undefined) return -1;
      lo |= 1 << bit;
    }
    p = q + 1;
  }
  vLo = lo >>> 0;
  vHi = hi >>> 0;
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
  ev.set(idx['gfn']!, vLo, vHi);
  if (!s.startsWith(' l', pos)) return spFail(s, pos, end, ' l');
  pos = readDec(s, pos + 2, end, false);
  if (pos < 0) return -1;
  let role = vNum & 0xf;
  if (s.startsWith(' 4-byte q', pos)) role |= 0x10;
  else if (!s.startsWith(' 8-byte q', pos)) return spFail(s, pos, end, ' 8-byte q');
  pos = readDec(s, pos + 9, end, false);
  if (pos < 0) return -1;
  role |= (vNum & 3) << 5;
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
  ev.set(idx['gfn']!, vLo, vHi);
  if (s.charCodeAt(pos) !== 32) return spFail(s, pos, end, ' ');
  pos = readDec(s, pos + 1, end, false);
  if (pos < 0) return -1;
  let role = vNum & 0xf;
  if (!s.startsWith(' q', pos)) return spFail(s, pos, end, ' q');
  pos = readDec(s, pos + 2, end, false);
  if (pos < 0) return -1;
  role |= (vNum & 3) << 5;
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
    reason = vLo;
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
      reason |= vLo;
      isa = 1;
    } else return -1;
  }
  ev.set(idx['exit_reason']!, reason >>> 0, 0);
  if (isa) ev.set(idx['isa']!, isa, 0);
  return stop;
}

/** True when parts[k..] may print nothing: blank literals, a zero flag list, no `[immediate exit]`. */
function tailCanBeEmpty(parts: readonly Part[], k: number, ev: ParsedEvent): boolean {
  for (let j = k; j < parts.length; j++) {
    const p = parts[j]!;
    if (p.t === 'lit') {
      if (p.s.trim() !== '') return false;
    } else if (p.t === 'custom' && p.kind === 'pferr_flags') {
      if (!(ev.has & (1 << p.field)) || ev.lo[p.field] !== 0 || ev.hi[p.field] !== 0) return false;
    } else if (p.t === 'custom' && p.kind === 'immediate_exit') {
      ev.set(p.field, 0, 0);
    } else return false;
  }
  return true;
}

/**
 * Parse `parts` over s[pos, end). Returns PAYLOAD_OK / PAYLOAD_TRUNCATED / PAYLOAD_MISMATCH. The event must
 * have been `reset` to `schema` by the caller.
 */
export function parseParts(schema: EventSchema, parts: readonly Part[], s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  const fields = schema.fields;
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k]!;
    if (p.t === 'lit') {
      if (!s.startsWith(p.s, pos)) {
        // a trimmed line loses the trailing space before an empty flag list (`pferr 0 `)
        if (pos >= end && tailCanBeEmpty(parts, k, ev)) return PAYLOAD_OK;
        return litFail(s, pos, end, p.s);
      }
      pos += p.s.length;
      continue;
    }
    if (pos >= end) return tailCanBeEmpty(parts, k, ev) ? PAYLOAD_OK : PAYLOAD_TRUNCATED;
    if (p.t === 'conv') {
      const spec = fields[p.field]!;
      let r: number;
      switch (p.conv) {
        case 'u':
          r = readDec(s, pos, end, false);
          break;
        case 'd':
          r = readDec(s, pos, end, spec.signed);
          break;
        case 'x#':
        case 'x#016':
          if (s.charCodeAt(pos) !== 48 || s.charCodeAt(pos + 1) !== 120) return pos + 2 > end ? PAYLOAD_TRUNCATED : PAYLOAD_MISMATCH;
          r = readHex(s, pos + 2, end);
          break;
        default:
          r = readHex(s, pos, end);
      }
      if (r < 0) return PAYLOAD_MISMATCH;
      let lo = vLo;
      let hi = vHi;
      if (spec.bits !== 64) {
        hi = 0;
        if (spec.bits === 8) lo &= 0xff;
        else if (spec.bits === 16) lo &= 0xffff;
      }
      if (spec.bool) lo = lo !== 0 ? 1 : 0;
      ev.set(p.field, lo >>> 0, hi >>> 0);
      pos = r;
      continue;
    }
    let r = -1;
    failCode = PAYLOAD_MISMATCH;
    switch (p.kind) {
      case 'pferr_flags': {
        r = parsePferrFlags(s, pos, end);
        // fast_page_fault prints the error code only as flags; the walker events print the number too
        if (r >= 0 && !(ev.has & (1 << p.field))) ev.set(p.field, vLo, vHi);
        break;
      }
      case 'sp':
        r = parseSp(s, pos, end, ev);
        break;
      case 'sp_old':
        r = parseSpOld(s, pos, end, ev);
        break;
      case 'created':
        if (s.startsWith('new', pos)) {
          ev.set(p.field, 1, 0);
          r = pos + 3;
        } else if (s.startsWith('existing', pos)) {
          ev.set(p.field, 0, 0);
          r = pos + 8;
        } else failCode = litFail(s, pos, end, 'existing');
        break;
      case 'rwxu': {
        const idx = schema.index;
        const close = s.indexOf(')', pos);
        if (close < 0 || close > end) {
          failCode = PAYLOAD_TRUNCATED;
          break;
        }
        const n = close - pos;
        if (n !== 3 && n !== 4) break;
        const c0 = s.charCodeAt(pos);
        const c2 = s.charCodeAt(pos + 2);
        if ((c0 !== 114 && c0 !== 45) || (c2 !== 120 && c2 !== 45)) break;
        ev.set(idx['r']!, c0 === 114 ? 1 : 0, 0);
        ev.set(idx['x']!, c2 === 120 ? 1 : 0, 0);
        if (n === 3) ev.set(idx['u']!, 0xff, 0);
        else ev.set(idx['u']!, s.charCodeAt(pos + 3) === 117 ? 1 : 0, 0);
        r = close;
        break;
      }
      case 'exit_reason':
        r = parseExitReason(s, pos, end, ev);
        break;
      case 'immediate_exit':
        if (s.startsWith('[immediate exit]', pos)) {
          ev.set(p.field, 1, 0);
          r = pos + 16;
        } else {
          ev.set(p.field, 0, 0);
          r = pos;
        }
        break;
      case 'gen_valid':
      case 'ret_spurious':
      case 'ret_fixed': {
        const c = s.charCodeAt(pos);
        if (c !== 48 && c !== 49) break;
        const v = c - 48;
        if (p.kind === 'gen_valid') ev.derived.valid = v;
        else if (p.kind === 'ret_spurious') ev.derived.spurious = v;
        else {
          ev.derived.fixed = v;
          // ret is only known through the two comparisons; its number depends on the kernel's RET_PF_* enum
          const nums = retPfNumbers(opts.kernel);
          if (ev.derived.spurious === 1) ev.set(p.field, nums.spurious >>> 0, 0);
          else if (v === 1) ev.set(p.field, nums.fixed >>> 0, 0);
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
    const c = s.charCodeAt(pos);
    if (c !== 32 && c !== 9 && c !== 13) return PAYLOAD_MISMATCH;
    pos++;
  }
  return PAYLOAD_OK;
}

/** Try the 6.18 text, then each older generation. */
export function parsePayload(schema: EventSchema, s: string, pos: number, end: number, ev: ParsedEvent, opts: PayloadOptions): number {
  const r = parseParts(schema, schema.parts, s, pos, end, ev, opts);
  if (r === PAYLOAD_OK || schema.older.length === 0) return r;
  for (const parts of schema.older) {
    ev.reset(schema);
    const o = parseParts(schema, parts, s, pos, end, ev, opts);
    if (o === PAYLOAD_OK) {
      ev.variant = 1;
      return o;
    }
  }
  ev.reset(schema);
  // report the current text's verdict (truncated lets the caller try a wrapped continuation)
  return parseParts(schema, schema.parts, s, pos, end, ev, opts);
}
