/**
 * Streaming line parser for kvm/kvmmmu captures in every shape trace-text.md lists:
 *
 * - raw `trace` / `trace_pipe`: `COMM-PID [CPU] FLAGS SECONDS.USECS: EVENT: PAYLOAD` (FLAGS 4 or 5 chars;
 *   COMM may hold spaces and slashes or be `<...>`);
 * - `trace-cmd report`: no FLAGS, event names padded, `cpus=N` / `CPU N is empty` lines;
 * - `perf script`: `COMM PID[/TID] [CPU] SECONDS: SYSTEM:EVENT: PAYLOAD`;
 * - `<stack trace>` blocks (` => func` frames) attached to the event before them;
 * - mail-wrapped copies (the payload continues on the next line) and trimmed `EVENT: PAYLOAD` lines.
 *
 * Nothing is dropped silently: every line that is neither an event, a header, a stack frame nor a
 * continuation is counted in `unrecognizedCount` and (the first `maxUnrecognized`) listed with its line
 * number and the reason.
 *
 * Hot path: one `indexOf('\n')` per line, a few `indexOf`/`charCodeAt` for the prefix, a small MRU of event
 * names compared with `startsWith`, and the payload parser of ./payload.ts. Text is pushed chunk by chunk;
 * only the unfinished last line of a chunk is carried over.
 */
import { EVENTS, EVENT_BY_NAME, type EventSchema } from '../engine/tracepoints/index';
import { ParsedEvent } from './event';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel_version';
import { PAYLOAD_OK, PAYLOAD_TRUNCATED, parsePayload, type PayloadOptions } from './payload';

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

export interface ParserOptions {
  /** Kernel that wrote the capture (RET_PF_* numbering); default 6.18. */
  kernel?: KernelVersion;
  /** Called for every modelled event. The object is reused: copy with `toRecord()` to keep it. */
  onEvent?: (ev: ParsedEvent) => void;
  /** Called when a `<stack trace>` block ends. */
  onStack?: (s: StackBlock) => void;
  /** How many unrecognized lines / warnings to keep with details (all are counted). Default 100. */
  maxDetails?: number;
  /** Keep the COMM text of each event (default true; the replay hot path turns it off). */
  keepComm?: boolean;
}

const EV_OK = 0;
const EV_TRUNC = 1;
const EV_BAD = 2;
const EV_UNMODELLED = 3;
const EV_NOT_EVENT = 4;
const EV_STACK = 5;

const MAX_CARRY = 1 << 20;
const MRU = 4;

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
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
  /** Number of `<stack trace>` blocks. */
  stackCount = 0;
  readonly styles: LineStyles = { raw: 0, traceCmd: 0, perf: 0, trimmed: 0 };
  /** Lines that were joined to the line before them (mail wrapping). */
  joinedLines = 0;

  private readonly kernelOpts: PayloadOptions;
  private readonly onEvent: ((ev: ParsedEvent) => void) | undefined;
  private readonly onStack: ((s: StackBlock) => void) | undefined;
  private readonly maxDetails: number;
  private readonly keepComm: boolean;
  private carry = '';
  private pending: string | null = null;
  private pendingLine = 0;
  private stack: StackBlock | null = null;
  private lastName = '';
  private lastLine = 0;
  private lastSeq = -1;
  private readonly mru: EventSchema[] = [];
  private readonly schemaId = new Map<EventSchema, number>(EVENTS.map((e, i) => [e, i]));
  // prefix scratch
  private pPid = -1;
  private pCpu = -1;
  private pTs = NaN;
  private pComm = '';
  private pStyle = 0;

  constructor(opts: ParserOptions = {}) {
    this.kernelOpts = { kernel: opts.kernel ?? DEFAULT_KERNEL };
    this.onEvent = opts.onEvent;
    this.onStack = opts.onStack;
    this.maxDetails = opts.maxDetails ?? 100;
    this.keepComm = opts.keepComm ?? true;
  }

  /** Event counts by name (only names that occurred). */
  byType(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < EVENTS.length; i++) if (this.byTypeCounts[i]) out[EVENTS[i]!.name] = this.byTypeCounts[i]!;
    return out;
  }

  /** Feed text. Lines may span chunks. */
  push(chunk: string): void {
    const text = this.carry.length !== 0 ? this.carry + chunk : chunk;
    let pos = 0;
    for (;;) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) break;
      this.line(text, pos, nl);
      pos = nl + 1;
    }
    this.carry = pos === 0 ? text : pos < text.length ? text.slice(pos) : '';
    if (this.carry.length > MAX_CARRY) {
      // a "line" this long is not trace text; account for it and move on
      this.lines++;
      this.unrecognizedAt(this.lines, 'line longer than 1 MiB', this.carry);
      this.carry = '';
    }
  }

  /** End of input: the last line without a newline, an open stack block, a pending wrapped line. */
  end(): void {
    if (this.carry.length !== 0) {
      const t = this.carry;
      this.carry = '';
      this.line(t, 0, t.length);
    }
    this.flushPending();
    this.closeStack();
  }

  warn(line: number, message: string): void {
    this.warningCount++;
    if (this.warnings.length < this.maxDetails) this.warnings.push({ line, message });
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

  private closeStack(): void {
    const s = this.stack;
    if (s) {
      this.stack = null;
      this.stackCount++;
      if (this.onStack) this.onStack(s);
    }
  }

  private line(s: string, a: number, b: number): void {
    const lineNo = ++this.lines;
    while (b > a) {
      const c = s.charCodeAt(b - 1);
      if (c === 13 || c === 32 || c === 9) b--;
      else break;
    }
    let f = a;
    while (f < b && isSpace(s.charCodeAt(f))) f++;
    if (f === b) {
      this.flushPending();
      this.closeStack();
      return;
    }
    const c0 = s.charCodeAt(f);
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
    this.closeStack();
    // headers
    if (c0 === 35 /* # */ || s.startsWith('cpus=', f) || s.startsWith('version = ', f) || (s.startsWith('CPU ', f) && s.endsWith(' is empty', b) && b - f < 24)) {
      this.flushPending();
      return;
    }
    const r = this.eventLine(s, a, b, lineNo);
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
        if (lost >= 0 && lost < b && s.indexOf('EVENTS', lost) > 0) {
          this.warn(lineNo, `ring buffer overrun: ${s.slice(f, b)}`);
          return;
        }
        this.unrecognizedAt(lineNo, 'not a trace line', s.slice(a, b));
      }
    }
  }

  private lastBadName = '';

  /** Timestamp token [t0, t1) -> seconds, or NaN. */
  private static ts(s: string, t0: number, t1: number): number {
    let i = t0;
    let ip = 0;
    while (i < t1 && isDigit(s.charCodeAt(i))) {
      ip = ip * 10 + (s.charCodeAt(i) - 48);
      i++;
    }
    if (i === t0 || i >= t1 || s.charCodeAt(i) !== 46) return NaN;
    i++;
    const fs = i;
    let fp = 0;
    while (i < t1 && isDigit(s.charCodeAt(i))) {
      fp = fp * 10 + (s.charCodeAt(i) - 48);
      i++;
    }
    if (i !== t1 || i === fs) return NaN;
    return ip + fp / Math.pow(10, i - fs);
  }

  /** Parse `COMM-PID [CPU] FLAGS` / `COMM PID/TID [CPU]` in [a, pe). Always succeeds (fields may stay -1). */
  private prefix(s: string, a: number, pe: number): void {
    while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
    let style = 1; // trace-cmd unless flags or perf shapes are seen
    if (pe > a && s.charCodeAt(pe - 1) !== 93 /* ] */) {
      // FLAGS column (raw trace), e.g. `d..1.` or `....`
      let f0 = pe;
      while (f0 > a && !isSpace(s.charCodeAt(f0 - 1))) f0--;
      let digits = true;
      for (let i = f0; i < pe; i++) if (!isDigit(s.charCodeAt(i))) digits = false;
      if (s.charCodeAt(f0 - 1) === 32 && pe - f0 <= 6 && !digits) {
        pe = f0;
        while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
        style = 0;
      }
    }
    let cpu = -1;
    if (pe > a && s.charCodeAt(pe - 1) === 93) {
      const ob = s.lastIndexOf('[', pe - 1);
      if (ob >= a) {
        let v = 0;
        let ok = ob + 1 < pe - 1;
        for (let i = ob + 1; i < pe - 1; i++) {
          const c = s.charCodeAt(i);
          if (!isDigit(c)) {
            ok = false;
            break;
          }
          v = v * 10 + (c - 48);
        }
        if (ok) {
          cpu = v;
          pe = ob;
          while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
        }
      }
    }
    if (pe > a && s.charCodeAt(pe - 1) === 41 /* ) */) {
      // the `(TGID)` column of the record-tgid option
      const op = s.lastIndexOf('(', pe - 1);
      if (op > a) {
        pe = op;
        while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
      }
    }
    let d0 = pe;
    while (d0 > a && isDigit(s.charCodeAt(d0 - 1))) d0--;
    let pid = -1;
    let commEnd = pe;
    if (d0 < pe) {
      let v = 0;
      for (let i = d0; i < pe; i++) v = v * 10 + (s.charCodeAt(i) - 48);
      const sep = d0 > a ? s.charCodeAt(d0 - 1) : 32;
      if (sep === 45 /* - */) {
        pid = v;
        commEnd = d0 - 1;
      } else if (sep === 47 /* / */) {
        // perf `PID/TID`: the thread id is what ftrace calls the pid
        pid = v;
        let p0 = d0 - 1;
        while (p0 > a && isDigit(s.charCodeAt(p0 - 1))) p0--;
        commEnd = p0;
        style = 2;
      } else if (sep === 32) {
        pid = v;
        commEnd = d0;
        style = 2;
      }
    }
    this.pPid = pid;
    this.pCpu = cpu;
    this.pStyle = style;
    if (this.keepComm) {
      let c0 = a;
      while (c0 < commEnd && isSpace(s.charCodeAt(c0))) c0++;
      let c1 = commEnd;
      while (c1 > c0 && isSpace(s.charCodeAt(c1 - 1))) c1--;
      this.pComm = s.slice(c0, c1);
    }
  }

  private lookup(s: string, n0: number, n1: number): EventSchema | undefined {
    const len = n1 - n0;
    const mru = this.mru;
    for (let i = 0; i < mru.length; i++) {
      const m = mru[i]!;
      if (m.name.length === len && s.startsWith(m.name, n0)) {
        if (i !== 0) {
          mru.splice(i, 1);
          mru.unshift(m);
        }
        return m;
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
      return undefined;
    }
    if (colon < 0) {
      mru.unshift(sc);
      if (mru.length > MRU) mru.pop();
    }
    return sc;
  }

  /** Classify and, for a modelled event, parse and deliver the line s[a, b). */
  private eventLine(s: string, a: number, b: number, lineNo: number): number {
    let c = s.indexOf(': ', a);
    if (c < 0 || c >= b) {
      if (s.charCodeAt(b - 1) === 58) c = b - 1;
      else return EV_NOT_EVENT;
    }
    let t0 = c;
    while (t0 > a && !isSpace(s.charCodeAt(t0 - 1))) t0--;
    const ts = TraceParser.ts(s, t0, c);
    let n0: number;
    let trimmed = false;
    if (ts === ts) {
      this.prefix(s, a, t0);
      this.pTs = ts;
      n0 = c + 2;
      while (n0 < b && isSpace(s.charCodeAt(n0))) n0++;
      if (n0 >= b) return EV_TRUNC;
    } else {
      // `EVENT: PAYLOAD` with no prefix: the first token must be an event name
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
    let n1 = n0;
    while (n1 < b) {
      const ch = s.charCodeAt(n1);
      if (ch === 32 || ch === 9) break;
      n1++;
    }
    this.lastBadName = 'event name';
    if (s.charCodeAt(n1 - 1) !== 58) return trimmed ? EV_NOT_EVENT : n1 >= b ? EV_TRUNC : EV_BAD;
    n1--;
    if (n1 === n0) return trimmed ? EV_NOT_EVENT : EV_BAD;
    const schema = this.lookup(s, n0, n1);
    if (!schema) {
      // without a prefix, an unknown `word: text` is more likely prose or a wrapped fragment than an event
      if (trimmed) return EV_NOT_EVENT;
      if (s.startsWith('kernel_stack', n0) && n1 - n0 === 12) return EV_STACK;
      this.otherEvents.set(this.lastBadName, (this.otherEvents.get(this.lastBadName) ?? 0) + 1);
      this.lastName = this.lastBadName;
      this.lastLine = lineNo;
      this.lastSeq = -1;
      return EV_UNMODELLED;
    }
    let p0 = n1 + 1;
    while (p0 < b && isSpace(s.charCodeAt(p0))) p0++;
    const ev = this.ev;
    ev.reset(schema);
    const r = parsePayload(schema, s, p0, b, ev, this.kernelOpts);
    if (r !== PAYLOAD_OK) {
      this.lastBadName = schema.name;
      return r === PAYLOAD_TRUNCATED ? EV_TRUNC : EV_BAD;
    }
    if (trimmed) {
      ev.pid = -1;
      ev.cpu = -1;
      ev.ts = NaN;
      ev.comm = '';
      this.styles.trimmed++;
    } else {
      ev.pid = this.pPid;
      ev.cpu = this.pCpu;
      ev.ts = this.pTs;
      ev.comm = this.keepComm ? this.pComm : '';
      if (this.pStyle === 0) this.styles.raw++;
      else if (this.pStyle === 2 || n1 - n0 !== schema.name.length) this.styles.perf++;
      else this.styles.traceCmd++;
    }
    ev.line = lineNo;
    ev.seq = this.events++;
    this.byTypeCounts[this.schemaId.get(schema)!]!++;
    this.lastName = schema.name;
    this.lastLine = lineNo;
    this.lastSeq = ev.seq;
    if (this.onEvent) this.onEvent(ev);
    return EV_OK;
  }
}
