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
  /** Index of the event among the parsed events of this stream (0-based). */
  seq = 0;
  comm = '';
  /** Task pid from the prefix, -1 when the line had no prefix. */
  pid = -1;
  /** CPU from the prefix, -1 when absent. */
  cpu = -1;
  /** Timestamp in seconds, NaN when absent. */
  ts = NaN;
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
