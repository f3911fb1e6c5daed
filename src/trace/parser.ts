/**
 * Streaming line parser for kvm/kvmmmu captures in every shape trace-text.md lists:
 *
 * - raw `trace` / `trace_pipe`: `COMM-PID [CPU] FLAGS SECONDS.USECS: EVENT: PAYLOAD` (FLAGS 4 or 5 chars;
 *   COMM may hold spaces and slashes or be `<...>`);
 * - `trace-cmd report`: no FLAGS, event names padded, `cpus=N` / `CPU N is empty` lines;
 * - `perf script`: `COMM PID[/TID] [CPU] SECONDS: SYSTEM:EVENT: PAYLOAD`;
 * - `<stack trace>` blocks (` => func` frames) attached to the event before them, and `perf script -g`
 *   callchains (indented `ADDRESS symbol+off (dso)` lines) attached to the perf event before them;
 * - mail-wrapped copies (the payload continues on the next line) and trimmed `EVENT: PAYLOAD` lines.
 *
 * Nothing is dropped silently: every line that is neither an event, a header, a stack frame nor a
 * continuation is counted in `unrecognizedCount` and (the first `maxDetails`) listed with its line number
 * and the reason. Well-formed lines of events that are not modelled count there too (and in `otherEvents`).
 *
 * Hot path: one `indexOf('\n')` per line, a few `indexOf`/`charCodeAt` for the prefix, event names found
 * by length and `startsWith` (no substring), and the payload parser of ./payload.ts. Text is pushed chunk by chunk;
 * only the unfinished last line of a chunk is carried over.
 */
import { EVENTS, EVENT_BY_NAME } from '../engine/tracepoints/index';
import { ParsedEvent } from './event';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel_version';
import { PAYLOAD_OK, PAYLOAD_TRUNCATED, parseBytesFast, parsePayloadById, wordOf, type PayloadOptions } from './payload';

export interface UnrecognizedLine {
  line: number;
  reason: string;
  /** The line (cut to 200 characters). */
  text: string;
}

export interface TraceWarning {
  line: number;
  message: string;
}

export interface StackBlock {
  /** Line of the `<stack trace>` marker. */
  line: number;
  /** The event the stack belongs to (the event line before the marker). */
  eventLine: number;
  eventName: string;
  /** `seq` of that event when it is a modelled event, else -1. */
  eventSeq: number;
  /** Frames, innermost first, as printed after `=> `. */
  frames: string[];
}

export interface EventSink {
  onEvent(ev: ParsedEvent): void;
}

export interface ParserOptions {
  /** Kernel that wrote the capture (RET_PF_* numbering); default 6.18. */
  kernel?: KernelVersion;
  /** Called for every modelled event. The object is reused: copy with `toRecord()` to keep it. */
  onEvent?: (ev: ParsedEvent) => void;
  /**
   * Like onEvent, as a method of an object (a `Rebuilder`): the call goes to the same function in every
   * parser, so code optimized for one replay stays valid in the next (a fresh closure per parser would
   * deoptimize it). Called before onEvent when both are given.
   */
  sink?: EventSink;
  /** Called when a `<stack trace>` block ends. */
  onStack?: (s: StackBlock) => void;
  /** How many unrecognized lines / warnings to keep with details (all are counted). Default 100. */
  maxDetails?: number;
}

const EV_OK = 0;
const EV_TRUNC = 1;
const EV_BAD = 2;
const EV_UNMODELLED = 3;
const EV_NOT_EVENT = 4;
const EV_STACK = 5;

const MAX_CARRY = 1 << 20;
/** Chunks shorter than this are read from the string only (the copy would not pay). */
const MIN_BYTES_CHUNK = 4096;

/** Event ids by name length, for a lookup without a substring. */
const NAMES: readonly string[] = EVENTS.map((e) => e.name);
const BY_LEN: number[][] = [];
EVENTS.forEach((e, i) => (BY_LEN[e.name.length] ??= []).push(i));
const PROBE: readonly number[] = NAMES.map((n) => n.charCodeAt(n.length - 2));
/** Char codes of each name: an inline compare costs less than a `startsWith` call per line. */
const NAME_CODES: readonly Int32Array[] = NAMES.map((n) => Int32Array.from(n, (ch) => ch.charCodeAt(0)));
/** Each name's leading 4-byte little-endian words, for the compare on a chunk's bytes. */
const NAME_WORDS: readonly Int32Array[] = NAMES.map((n) => Int32Array.from({ length: n.length >> 2 }, (_, i) => wordOf(n, 4 * i)));
/** Name lengths by event id. */
const NAME_LEN: Int32Array = Int32Array.from(NAMES, (n) => n.length);
/** Event id by a hash of a line's name bytes 4..11 (see eventLine); -1: none yet. Any entry is confirmed. */
const NAME_CACHE = new Int16Array(256).fill(-1);

/** True when the bytes at n0 spell the name of event id. */
function nameAt(bytes: Uint8Array, view: DataView, n0: number, id: number): boolean {
  const words = NAME_WORDS[id]!;
  const codes = NAME_CODES[id]!;
  let w = 0;
  while (w < words.length && view.getInt32(n0 + 4 * w, true) === words[w]) w++;
  if (w !== words.length) return false;
  for (let j = 4 * w; j < codes.length; j++) if (bytes[n0 + j] !== codes[j]) return false;
  return true;
}


function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * Start of the token s[?, c) when it is a timestamp (digits, one dot not at either end, digits), else
 * -1 - start (the token then may be a trimmed line's event name).
 */
function timestampStart(s: string, a: number, c: number): number {
  let t0 = c;
  let dots = 0;
  let other = 0;
  while (t0 > a) {
    const ch = s.charCodeAt(t0 - 1);
    if (ch === 32 || ch === 9) break;
    if (ch === 46) dots++;
    else if (ch < 48 || ch > 57) other++;
    t0--;
  }
  return other === 0 && dots === 1 && s.charCodeAt(t0) !== 46 && s.charCodeAt(c - 1) !== 46 ? t0 : -1 - t0;
}

/** Character classes for timestampStartB. */
const TS_DIGIT = 0;
const TS_DOT = 1;
const TS_END = 2;
const TS_OTHER = 3;
const TS_CLASS = new Uint8Array(256).fill(TS_OTHER);
for (let d = 48; d <= 57; d++) TS_CLASS[d] = TS_DIGIT;
TS_CLASS[46] = TS_DOT;
TS_CLASS[32] = TS_END;
TS_CLASS[9] = TS_END;

/** timestampStart over the bytes of an ASCII chunk. */
function timestampStartB(bytes: Uint8Array, view: DataView, a: number, c: number): number {
  let t0 = c;
  let dot = -1;
  let other = 0;
  // the usual `SECONDS.USECS`: six digits after the dot checked as two words (a byte outside '0'-'9'
  // sets its high bit in one of the two sums), then the seconds byte by byte
  if (c - 8 >= a && bytes[c - 7] === 46) {
    const w0 = view.getInt32(c - 6, true);
    const w1 = view.getUint16(c - 2, true);
    if ((((w0 + 0x46464646) | (w0 - 0x30303030)) & 0x80808080) === 0 && (((w1 + 0x4646) | (w1 - 0x3030)) & 0x8080) === 0) {
      t0 = c - 7;
      dot = t0;
    }
  }
  while (t0 > a) {
    const k = TS_CLASS[bytes[t0 - 1]!]!;
    if (k === TS_END) break;
    if (k !== TS_DIGIT) {
      if (k === TS_DOT && dot < 0) dot = t0 - 1;
      else other++;
    }
    t0--;
  }
  return other === 0 && dot > t0 && dot < c - 1 ? t0 : -1 - t0;
}

export interface LineStyles {
  raw: number;
  traceCmd: number;
  perf: number;
  trimmed: number;
}

export class TraceParser {
  readonly ev = new ParsedEvent();
  /** Lines read (including headers and blanks). */
  lines = 0;
  /** Modelled events parsed. */
  events = 0;
  /** Events per schema (index into EVENTS). */
  readonly byTypeCounts = new Float64Array(EVENTS.length);
  /** Well-formed events of other tracepoints (counted, also listed as unrecognized). */
  readonly otherEvents = new Map<string, number>();
  unrecognizedCount = 0;
  readonly unrecognized: UnrecognizedLine[] = [];
  warningCount = 0;
  readonly warnings: TraceWarning[] = [];
  /** Number of `<stack trace>` blocks (one per marker line). */
  stackCount = 0;
  /** Number of `perf script -g` callchains (frame lines with no marker line). */
  callchainCount = 0;
  readonly styles: LineStyles = { raw: 0, traceCmd: 0, perf: 0, trimmed: 0 };
  /** Lines that were joined to the line before them (mail wrapping). */
  joinedLines = 0;

  private readonly kernelOpts: PayloadOptions;
  private readonly onEvent: ((ev: ParsedEvent) => void) | undefined;
  private readonly sink: EventSink | null;
  private readonly onStack: ((s: StackBlock) => void) | undefined;
  private readonly maxDetails: number;
  private carry = '';
  /**
   * The bytes of the chunk being read when it is ASCII (bytes[i] === chunk.charCodeAt(i)), for the payload
   * readers; null while a line that is not a slice of that chunk (a joined or carried line) is read.
   */
  private lineBytes: Uint8Array | null = null;
  /** A DataView over lineBytes (4-byte compares), null when lineBytes is. */
  private lineView: DataView | null = null;
  private byteBuf: Buffer = Buffer.alloc(0);
  private byteView: DataView | null = null;
  /** The last event line was `perf script` style (its callchain lines may follow). */
  private lastPerf = false;
  /** Inside a line longer than MAX_CARRY that was already counted. */
  private skipping = false;
  private pending: string | null = null;
  private pendingLine = 0;
  private stack: StackBlock | null = null;
  private lastName = '';
  private lastLine = 0;
  private lastSeq = -1;

  constructor(opts: ParserOptions = {}) {
    this.kernelOpts = { kernel: opts.kernel ?? DEFAULT_KERNEL };
    this.onEvent = opts.onEvent;
    this.sink = opts.sink ?? null;
    this.onStack = opts.onStack;
    this.maxDetails = opts.maxDetails ?? 100;
  }

  /** Event counts by name (only names that occurred). */
  byType(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < EVENTS.length; i++) if (this.byTypeCounts[i]) out[EVENTS[i]!.name] = this.byTypeCounts[i]!;
    return out;
  }

  /**
   * Feed text. Lines may span chunks. `ascii`: the caller knows whether the chunk is pure ASCII (else it
   * is checked here); an ASCII chunk is also read as bytes.
   */
  push(chunk: string, ascii?: boolean): void {
    this.feed(chunk, ascii, null);
  }

  /** push(), returning the chunk's size in UTF-8 bytes (what a file of it would hold). */
  pushCounting(chunk: string): number {
    return this.feed(chunk, undefined, null, true);
  }

  /** push() of the latin1 decoding of `bytes`, which the caller knows are ASCII: they are read in place. */
  pushAscii(chunk: string, bytes: Uint8Array): void {
    this.feed(chunk, true, bytes);
  }

  private feed(chunk: string, ascii: boolean | undefined, given: Uint8Array | null, count = false): number {
    let size = -1;
    if (this.skipping) {
      // still inside a line already reported as too long: drop up to its end
      if (count) size = Buffer.byteLength(chunk);
      const nl = chunk.indexOf('\n');
      if (nl < 0) return size;
      chunk = chunk.slice(nl + 1);
      if (given !== null) given = given.subarray(nl + 1);
      this.skipping = false;
    }
    let pos = 0;
    if (this.carry.length !== 0) {
      // only the line that spans the chunk boundary is joined: a concatenation of the whole chunk would make
      // every charCodeAt below go through a cons string (about 2.5x slower)
      const nl = chunk.indexOf('\n');
      if (nl < 0) {
        this.carry += chunk;
        this.checkCarry();
        return size >= 0 || !count ? size : Buffer.byteLength(chunk);
      }
      const first = this.carry + chunk.slice(0, nl);
      this.carry = '';
      this.lineBytes = null;
      this.lineView = null;
      this.line(first, 0, first.length);
      pos = nl + 1;
    }
    if (given !== null && chunk.length >= MIN_BYTES_CHUNK) {
      this.lineBytes = given;
      this.lineView = new DataView(given.buffer, given.byteOffset, given.byteLength);
    } else {
      if (count && size < 0) {
        const ok = this.copyUtf8(chunk);
        size = ok ? chunk.length : Buffer.byteLength(chunk);
        this.lineBytes = ok ? this.byteBuf : null;
      } else this.lineBytes = this.bytesOf(chunk, ascii);
      this.lineView = this.lineBytes !== null ? this.byteView : null;
    }
    for (;;) {
      const nl = chunk.indexOf('\n', pos);
      if (nl < 0) break;
      this.line(chunk, pos, nl);
      pos = nl + 1;
    }
    this.lineBytes = null;
    this.lineView = null;
    this.carry = pos < chunk.length ? chunk.slice(pos) : '';
    this.checkCarry();
    return size >= 0 || !count ? size : Buffer.byteLength(chunk);
  }

  /** The chunk's bytes in a reused buffer when it is ASCII and long enough to be worth copying, else null. */
  private bytesOf(chunk: string, ascii: boolean | undefined): Uint8Array | null {
    if (chunk.length < MIN_BYTES_CHUNK) return null;
    if (ascii === undefined) ascii = Buffer.byteLength(chunk, 'utf8') === chunk.length;
    if (!ascii) return null;
    this.reserve(chunk.length);
    this.byteBuf.write(chunk, 0, 'latin1');
    return this.byteBuf;
  }

  /**
   * Write the chunk as UTF-8 into the byte buffer; true when that took exactly one byte per character, i.e.
   * the chunk is ASCII (with 4 bytes of room to spare, a non-ASCII chunk writes more bytes than it has
   * characters, or fills the buffer past that). One pass for both the check and the copy.
   */
  private copyUtf8(chunk: string): boolean {
    if (chunk.length < MIN_BYTES_CHUNK) return false;
    this.reserve(chunk.length + 4);
    return this.byteBuf.write(chunk, 0, 'utf8') === chunk.length;
  }

  private reserve(n: number): void {
    if (this.byteBuf.length < n) {
      const buf = Buffer.allocUnsafe(Math.max(n, this.byteBuf.length * 2));
      this.byteBuf = buf;
      this.byteView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
  }

  private checkCarry(): void {
    if (this.carry.length > MAX_CARRY) {
      // a "line" this long is not trace text; account for it and move on
      this.lines++;
      this.unrecognizedAt(this.lines, 'line longer than 1 MiB', this.carry);
      this.carry = '';
      this.skipping = true;
    }
  }

  /** End of input: the last line without a newline, an open stack block, a pending wrapped line. */
  end(): void {
    this.skipping = false;
    if (this.carry.length !== 0) {
      const t = this.carry;
      this.carry = '';
      this.line(t, 0, t.length);
    }
    this.flushPending();
    this.closeStack();
  }

  /** Count a warning; the message may be a function, called only when the warning is kept in full. */
  warn(line: number, message: string | (() => string)): void {
    this.warningCount++;
    if (this.warnings.length < this.maxDetails) this.warnings.push({ line, message: typeof message === 'string' ? message : message() });
  }

  private unrecognizedAt(line: number, reason: string, text: string): void {
    this.unrecognizedCount++;
    if (this.unrecognized.length < this.maxDetails) this.unrecognized.push({ line, reason, text: text.length > 200 ? text.slice(0, 200) : text });
  }

  private flushPending(): void {
    if (this.pending !== null) {
      this.unrecognizedAt(this.pendingLine, 'event text ends early (truncated or wrapped line)', this.pending);
      this.pending = null;
    }
  }

  private stackIsCallchain = false;

  private closeStack(): void {
    const s = this.stack;
    if (s) {
      this.stack = null;
      if (this.stackIsCallchain) this.callchainCount++;
      else this.stackCount++;
      this.stackIsCallchain = false;
      if (this.onStack) this.onStack(s);
    }
  }

  /** Number of the line being read (the last line of an event joined from wrapped lines). */
  private curLine = 0;

  private line(s: string, a: number, b: number): void {
    const lineNo = ++this.lines;
    this.curLine = lineNo;
    let f = a;
    const bytes = this.lineBytes;
    if (bytes !== null) {
      // lineBytes is set only while lines of the chunk it mirrors are read
      while (b > a) {
        const c = bytes[b - 1]!;
        if (c === 13 || c === 32 || c === 9) b--;
        else break;
      }
      while (f < b && isSpace(bytes[f]!)) f++;
    } else {
      while (b > a) {
        const c = s.charCodeAt(b - 1);
        if (c === 13 || c === 32 || c === 9) b--;
        else break;
      }
      while (f < b && isSpace(s.charCodeAt(f))) f++;
    }
    if (f === b) {
      this.flushPending();
      this.closeStack();
      return;
    }
    const c0 = bytes !== null ? bytes[f]! : s.charCodeAt(f);
    // ` => frame`
    if (c0 === 61 && s.charCodeAt(f + 1) === 62) {
      if (this.stack) {
        let g = f + 2;
        while (g < b && isSpace(s.charCodeAt(g))) g++;
        this.stack.frames.push(s.slice(g, b));
      } else {
        this.flushPending();
        this.unrecognizedAt(lineNo, 'stack frame outside a <stack trace> block', s.slice(a, b));
      }
      return;
    }
    // `perf script -g` callchain: indented `ADDRESS symbol+off (dso)` lines after a perf event line
    if (f > a && this.lastPerf && this.pending === null && isHex(c0)) {
      let h = f;
      while (h < b && isHex(s.charCodeAt(h))) h++;
      if (h - f >= 8 && h < b && isSpace(s.charCodeAt(h))) {
        if (!this.stack) {
          this.stack = { line: lineNo, eventLine: this.lastLine, eventName: this.lastName, eventSeq: this.lastSeq, frames: [] };
          this.stackIsCallchain = true;
        }
        let g = h;
        while (g < b && isSpace(s.charCodeAt(g))) g++;
        this.stack.frames.push(s.slice(g, b));
        return;
      }
    }
    if (this.stack !== null) this.closeStack();
    // headers (`#` comments, trace-cmd's `cpus=N`, `version = N`, `CPU N is empty`)
    if (
      c0 === 35 ||
      (c0 === 99 && s.startsWith('cpus=', f)) ||
      (c0 === 118 && s.startsWith('version = ', f)) ||
      (c0 === 67 && b - f < 24 && s.startsWith('CPU ', f) && s.endsWith(' is empty', b))
    ) {
      this.flushPending();
      return;
    }
    const r = this.eventLine(s, a, b, lineNo, this.lineBytes, this.lineView);
    if (this.pending !== null) {
      if (r === EV_NOT_EVENT) {
        // continuation of a wrapped line: join with the space the wrap replaced, or with nothing (a hard
        // wrap in the middle of a token)
        const rest = s.slice(f, b);
        for (const sep of [' ', '']) {
          const joined = this.pending + sep + rest;
          const j = this.eventLine(joined, 0, joined.length, this.pendingLine);
          if (j === EV_OK) {
            this.pending = null;
            this.joinedLines++;
            return;
          }
          if (j === EV_TRUNC) {
            this.pending = joined;
            this.joinedLines++;
            return;
          }
        }
        this.flushPending();
        this.unrecognizedAt(lineNo, 'not a trace line', s.slice(a, b));
        return;
      }
      this.flushPending();
    }
    switch (r) {
      case EV_OK:
        return;
      case EV_STACK:
        this.stack = { line: lineNo, eventLine: this.lastLine, eventName: this.lastName, eventSeq: this.lastSeq, frames: [] };
        return;
      case EV_TRUNC:
        this.pending = s.slice(a, b);
        this.pendingLine = lineNo;
        return;
      case EV_BAD:
        this.unrecognizedAt(lineNo, `${this.lastBadName}: payload not understood`, s.slice(a, b));
        return;
      case EV_UNMODELLED:
        this.unrecognizedAt(lineNo, `event ${this.lastBadName} is not modelled`, s.slice(a, b));
        return;
      default: {
        const lost = s.indexOf('LOST ', f);
        const evs = lost >= 0 && lost < b ? s.indexOf('EVENTS', lost) : -1;
        if (evs > 0 && evs < b) {
          this.warn(lineNo, `ring buffer overrun: ${s.slice(f, b)}`);
          return;
        }
        this.unrecognizedAt(lineNo, 'not a trace line', s.slice(a, b));
      }
    }
  }

  private lastBadName = '';

  /** Index in EVENTS of the event named s[n0, n1) (optionally `system:name`), or -1. */
  private lookup(s: string, n0: number, n1: number, bytes: Uint8Array | null, view: DataView | null): number {
    const len = n1 - n0;
    const cands = BY_LEN[len];
    if (cands !== undefined) {
      // names of one length differ at the char before the last; compare that before the whole name
      const probe = s.charCodeAt(n1 - 2);
      for (let i = 0; i < cands.length; i++) {
        const id = cands[i]!;
        if (PROBE[id] !== probe) continue;
        const codes = NAME_CODES[id]!;
        let j = 0;
        if (view !== null) {
          // four bytes at a time, then the rest
          const words = NAME_WORDS[id]!;
          let w = 0;
          while (w < words.length && view.getInt32(n0 + j, true) === words[w]) {
            w++;
            j += 4;
          }
          if (w === words.length) while (j < len && bytes![n0 + j] === codes[j]) j++;
        } else if (bytes !== null) while (j < len && bytes[n0 + j] === codes[j]) j++;
        else while (j < len && s.charCodeAt(n0 + j) === codes[j]) j++;
        if (j === len) return id;
      }
    }
    let name = s.slice(n0, n1);
    const colon = name.lastIndexOf(':');
    let system = '';
    if (colon >= 0) {
      system = name.slice(0, colon);
      name = name.slice(colon + 1);
    }
    const sc = EVENT_BY_NAME.get(name);
    if (!sc || (system !== '' && system !== sc.system)) {
      this.lastBadName = system ? `${system}:${name}` : name;
      return -1;
    }
    return EVENTS.indexOf(sc);
  }

  /** Classify and, for a modelled event, parse and deliver the line s[a, b). */
  private eventLine(s: string, a: number, b: number, lineNo: number, bytes: Uint8Array | null = null, view: DataView | null = null): number {
    let c = s.indexOf(': ', a);
    if (c < 0 || c >= b) {
      if (s.charCodeAt(b - 1) === 58) c = b - 1;
      else return EV_NOT_EVENT;
    }
    // the token before `: ` is a timestamp (digits, one dot, digits) or, on a trimmed line, the event name
    let t0 = bytes !== null ? timestampStartB(bytes, view!, a, c) : timestampStart(s, a, c);
    let n0: number;
    let trimmed = false;
    if (t0 >= 0) {
      n0 = c + 2;
      if (bytes !== null) while (n0 < b && isSpace(bytes[n0]!)) n0++;
      else while (n0 < b && isSpace(s.charCodeAt(n0))) n0++;
      if (n0 >= b) return EV_TRUNC;
    } else {
      // `EVENT: PAYLOAD` with no prefix: the first token must be an event name
      t0 = -1 - t0;
      let f = a;
      while (f < b && isSpace(s.charCodeAt(f))) f++;
      if (f !== t0) return EV_NOT_EVENT;
      n0 = f;
      trimmed = true;
    }
    if (s.charCodeAt(n0) === 60 /* < */) {
      if (s.startsWith('<stack trace', n0) || s.startsWith('<user stack trace', n0)) return EV_STACK;
      this.lastBadName = 'pseudo-event';
      return trimmed ? EV_NOT_EVENT : EV_BAD;
    }
    this.lastBadName = 'event name';
    let n1 = -1;
    let id = -1;
    let slot = -1;
    if (view !== null && !trimmed && n0 + 12 <= b) {
      // the event a line's name bytes 4..11 named last time, confirmed in full: the name and then `: ` (a
      // name holds no `:`, so that is the first `: ` the search below would find)
      slot = Math.imul(view.getInt32(n0 + 4, true) ^ Math.imul(view.getInt32(n0 + 8, true), 0x85ebca6b), 0x9e3779b1) >>> 24;
      const guess = NAME_CACHE[slot]!;
      if (guess >= 0) {
        const len = NAME_LEN[guess]!;
        const e = n0 + len;
        if (e + 1 < b && bytes![e] === 58 && bytes![e + 1] === 32 && nameAt(bytes!, view, n0, guess)) {
          n1 = e;
          id = guess;
        }
      }
    }
    if (id < 0) {
      // the name runs to the next `: ` (or a `:` ending the line)
      n1 = trimmed ? c : s.indexOf(': ', n0);
      if (n1 < 0 || n1 >= b) {
        if (s.charCodeAt(b - 1) !== 58) return trimmed ? EV_NOT_EVENT : EV_TRUNC;
        n1 = b - 1;
      }
      if (n1 === n0) return trimmed ? EV_NOT_EVENT : EV_BAD;
      id = this.lookup(s, n0, n1, bytes, view);
      if (slot >= 0 && id >= 0 && n1 - n0 === NAME_LEN[id]!) NAME_CACHE[slot] = id;
    }
    if (id < 0) {
      // without a prefix, an unknown `word: text` is more likely prose or a wrapped fragment than an event
      if (trimmed) return EV_NOT_EVENT;
      if (s.startsWith('kernel_stack', n0) && n1 - n0 === 12) return EV_STACK;
      const sp = s.indexOf(' ', n0);
      if (sp >= 0 && sp < n1) return EV_NOT_EVENT;
      this.otherEvents.set(this.lastBadName, (this.otherEvents.get(this.lastBadName) ?? 0) + 1);
      this.lastName = this.lastBadName;
      this.lastLine = lineNo;
      this.lastSeq = -1;
      this.lastPerf = this.lastBadName.indexOf(':') >= 0;
      return EV_UNMODELLED;
    }
    let p0 = n1 + 1;
    if (bytes !== null) while (p0 < b && isSpace(bytes[p0]!)) p0++;
    else while (p0 < b && isSpace(s.charCodeAt(p0))) p0++;
    const schema = EVENTS[id]!;
    const ev = this.ev;
    ev.reset(schema);
    const r = view !== null && parseBytesFast(id, bytes!, view, p0, b, ev) === PAYLOAD_OK ? PAYLOAD_OK : parsePayloadById(id, s, p0, b, ev, this.kernelOpts);
    if (r !== PAYLOAD_OK) {
      this.lastBadName = schema.name;
      return r === PAYLOAD_TRUNCATED ? EV_TRUNC : EV_BAD;
    }
    if (trimmed) {
      this.lastPerf = false;
      ev.setPrefix(s, -1, -1, -1);
      this.styles.trimmed++;
    } else {
      ev.setPrefix(s, a, t0, c);
      this.lastPerf = n1 - n0 !== NAME_LEN[id]!;
      if (this.lastPerf) this.styles.perf++;
      else {
        let q = t0;
        let ch = 0;
        if (bytes !== null) while (q > a && isSpace((ch = bytes[q - 1]!))) q--;
        else while (q > a && isSpace((ch = s.charCodeAt(q - 1)))) q--;
        if (ch === 93 /* ] */) this.styles.traceCmd++;
        else this.styles.raw++;
      }
    }
    ev.setBounds(a, b);
    ev.line = lineNo;
    ev.endLine = this.curLine;
    ev.seq = this.events++;
    this.byTypeCounts[id]!++;
    this.lastName = schema.name;
    this.lastLine = lineNo;
    this.lastSeq = ev.seq;
    if (this.sink !== null) this.sink.onEvent(ev);
    if (this.onEvent) this.onEvent(ev);
    return EV_OK;
  }
}
