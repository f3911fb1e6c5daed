/**
 * One parsed trace event. The parser reuses a single `ParsedEvent` for every line (no per-line allocation
 * on the hot path): consumers read it inside their callback and call `toRecord()` if they keep it.
 *
 * Field values live in `lo`/`hi` (32-bit halves) at the index the field has in the event's schema
 * (src/engine/tracepoints/schema.ts, i.e. the format file's field order). `has` has bit i set when field i
 * was read from the text (fields a print fmt does not show, or an older text generation lacks, stay unset).
 */
import { halvesToValue, type EventSchema, type TraceFields } from '../engine/tracepoints/index';

export const MAX_FIELDS = 16;

/** Values a print fmt derives from fields (`valid %d`, `spurious %d`, `fixed %d`): -1 unknown, else 0/1. */
export interface DerivedFlags {
  valid: number;
  spurious: number;
  fixed: number;
}

export class ParsedEvent {
  schema!: EventSchema;
  /** 1-based line number of the event's first line. */
  line = 0;
  /** Line number of its last line: after `line` when a mail client wrapped the event over several lines. */
  endLine = 0;
  /** Index of the event among the parsed events of this stream (0-based). */
  seq = 0;
  // The line prefix (`COMM-PID [CPU] FLAGS TS:`) is decoded only when read: most consumers never look.
  private src = '';
  private la = 0;
  private lb = 0;
  private pa = -1;
  private pt0 = -1;
  private pt1 = -1;
  private decoded = true;
  private _comm = '';
  private c0 = 0;
  private c1 = -1;
  private _pid = -1;
  private _cpu = -1;
  private _ts = NaN;

  /** Record where the prefix is: s[a, t0) is `COMM-PID [CPU] FLAGS`, s[t0, t1) the timestamp; a < 0: none. */
  setPrefix(s: string, a: number, t0: number, t1: number): void {
    this.src = s;
    this.pa = a;
    this.pt0 = t0;
    this.pt1 = t1;
    this.decoded = false;
  }

  /** Where the whole event text is: s[a, b) (for a wrapped event, its lines joined as the parser joined them). */
  setBounds(a: number, b: number): void {
    this.la = a;
    this.lb = b;
  }

  /** The event's text as the capture shows it, prefix included, wrapped lines joined. */
  get text(): string {
    return this.src.slice(this.la, this.lb);
  }

  /** Task name (`<...>` when the comm cache missed), '' without a prefix. */
  get comm(): string {
    if (!this.decoded) this.decode();
    if (this.c1 >= 0) {
      this._comm = this.src.slice(this.c0, this.c1);
      this.c1 = -1;
    }
    return this._comm;
  }
  /** Task pid (thread id), -1 without a prefix. */
  get pid(): number {
    if (!this.decoded) this.decode();
    return this._pid;
  }
  /** CPU, -1 when absent. */
  get cpu(): number {
    if (!this.decoded) this.decode();
    return this._cpu;
  }
  /** Timestamp in seconds, NaN when absent. */
  get ts(): number {
    if (!this.decoded) this.decode();
    return this._ts;
  }

  private decode(): void {
    this.decoded = true;
    if (this.pa < 0) {
      this._comm = '';
      this.c1 = -1;
      this._pid = -1;
      this._cpu = -1;
      this._ts = NaN;
      return;
    }
    decodePrefix(this.src, this.pa, this.pt0, this);
    this._ts = parseTimestamp(this.src, this.pt0, this.pt1);
  }

  /** @internal written by decodePrefix */
  setDecoded(c0: number, c1: number, pid: number, cpu: number): void {
    this.c0 = c0;
    this.c1 = c1;
    this._pid = pid;
    this._cpu = cpu;
  }
  /** 0 = the 6.18 text; 1 = an older text generation (see schema `older`). */
  variant = 0;
  /** Role-word bits that the shadow-page text revealed (SP_TEXT_ROLE_MASK or SP_OLD_TEXT_ROLE_MASK). */
  roleMask = 0;
  readonly lo = new Uint32Array(MAX_FIELDS);
  readonly hi = new Uint32Array(MAX_FIELDS);
  has = 0;
  readonly derived: DerivedFlags = { valid: -1, spurious: -1, fixed: -1 };

  reset(schema: EventSchema): void {
    this.schema = schema;
    this.has = 0;
    this.variant = 0;
    this.roleMask = 0;
    this.derived.valid = -1;
    this.derived.spurious = -1;
    this.derived.fixed = -1;
  }

  set(i: number, lo: number, hi: number): void {
    this.lo[i] = lo;
    this.hi[i] = hi;
    this.has |= 1 << i;
  }

  /** The field's value as a field value (number; hex string >= 2^53; boolean for bool fields), or undefined. */
  get(name: string): number | string | boolean | undefined {
    const i = this.schema.index[name];
    if (i === undefined || !(this.has & (1 << i))) return undefined;
    return this.valueAt(i);
  }

  valueAt(i: number): number | string | boolean {
    const spec = this.schema.fields[i]!;
    const lo = this.lo[i]!;
    const hi = this.hi[i]!;
    if (spec.bool) return lo !== 0;
    if (spec.signed && spec.bits === 8) return (lo << 24) >> 24;
    if (spec.signed && spec.bits === 16) return (lo << 16) >> 16;
    if (spec.signed && spec.bits === 32) return lo | 0;
    return halvesToValue(lo, hi);
  }

  /** A detached copy. */
  toRecord(): TraceRecord {
    const fields: TraceFields = {};
    for (let i = 0; i < this.schema.fields.length; i++) {
      if (this.has & (1 << i)) fields[this.schema.fields[i]!.name] = this.valueAt(i);
    }
    if (this.derived.valid >= 0) fields['valid'] = this.derived.valid === 1;
    if (this.derived.spurious >= 0) fields['spurious'] = this.derived.spurious === 1;
    if (this.derived.fixed >= 0) fields['fixed'] = this.derived.fixed === 1;
    const r: TraceRecord = {
      line: this.line,
      // an event refilled from storage may not carry its last line: then it is its first
      endLine: Math.max(this.endLine, this.line),
      seq: this.seq,
      system: this.schema.system,
      name: this.schema.name,
      comm: this.comm,
      pid: this.pid,
      cpu: this.cpu,
      ts: this.ts,
      variant: this.variant,
      fields,
    };
    if (this.roleMask) r.roleMask = this.roleMask;
    return r;
  }
}

export interface TraceRecord {
  line: number;
  /** Last line of the event (> line for a mail-wrapped event). */
  endLine: number;
  seq: number;
  system: 'kvm' | 'kvmmmu';
  name: string;
  comm: string;
  pid: number;
  cpu: number;
  ts: number;
  variant: number;
  /**
   * Field values named as in the format file; plus, where the print fmt shows them, the derived booleans
   * `valid` (check_mmio_spte), `spurious` and `fixed` (fast_page_fault).
   */
  fields: TraceFields;
  roleMask?: number;
  /** Frames of the `<stack trace>` block that followed the event, innermost first. */
  stack?: string[];
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
}

const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12];

/** `SECONDS.FRACTION` in [t0, t1) -> seconds, or NaN. */
export function parseTimestamp(s: string, t0: number, t1: number): number {
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
  const d = i - fs;
  return ip + fp / (d < POW10.length ? POW10[d]! : Math.pow(10, d));
}

/**
 * `COMM-PID [CPU] FLAGS` (raw trace; FLAGS 4 or 5 chars; an optional `(TGID)` column), `COMM-PID [CPU]`
 * (trace-cmd) or `COMM PID[/TID] [CPU]` (perf script) in [a, pe).
 */
export function decodePrefix(s: string, a: number, pe: number, ev: ParsedEvent): void {
  while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
  if (pe > a && s.charCodeAt(pe - 1) !== 93 /* ] */) {
    let f0 = pe;
    let digits = true;
    while (f0 > a && !isSpace(s.charCodeAt(f0 - 1))) {
      if (!isDigit(s.charCodeAt(f0 - 1))) digits = false;
      f0--;
    }
    if (s.charCodeAt(f0 - 1) === 32 && pe - f0 <= 6 && !digits) {
      pe = f0;
      while (pe > a && isSpace(s.charCodeAt(pe - 1))) pe--;
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
    } else if (sep === 32) {
      pid = v;
      commEnd = d0;
    }
  }
  let c0 = a;
  while (c0 < commEnd && isSpace(s.charCodeAt(c0))) c0++;
  let c1 = commEnd;
  while (c1 > c0 && isSpace(s.charCodeAt(c1 - 1))) c1--;
  ev.setDecoded(c0, c1, pid, cpu);
}
