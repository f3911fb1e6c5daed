import { halvesToValue } from './tracepoints/values';

/**
 * Where the engine's tracepoint events go. Like probes, emitting is guarded by a flag so that a model
 * run with no consumer pays one property read per tracepoint.
 *
 * Event text is exactly what the 6.18 kernel's `print fmt` produces (see src/engine/tracepoints/), so a
 * model trace and a real capture compare line by line.
 */

export interface TraceEvent {
  /** Monotonic index of the event in this run (0-based). */
  index: number;
  /** TRACE_SYSTEM: `kvmmmu` or `kvm`. */
  system: 'kvmmmu' | 'kvm';
  /** Event name, e.g. `kvm_mmu_set_spte`. */
  name: string;
  /** vCPU index, or -1 when the event is not tied to a vCPU (ioctls, notifiers, workers). */
  vcpu: number;
  /** Payload text as the kernel prints it (no prefix); may be formatted on first read. */
  readonly text: string;
  /** Structured fields, named as in the format file. Numbers above 2^53 are hex strings. */
  fields: Record<string, number | string | boolean>;
}

type Fields = TraceEvent['fields'];
type Formatter = (name: string, fields: Fields) => string;

/** Kinds of a raw record's fields: a number as given, a 64-bit value as two 32-bit halves, a boolean (0/1). */
export const F_NUM = 0;
export const F_U64 = 1;
export const F_BOOL = 2;

/**
 * The field layout of a hot tracepoint emitted with `emitRaw`: its values travel as a flat number array
 * (64-bit values as lo, hi halves), and the `fields` record, with its hex strings for values >= 2^53, is
 * built only if a consumer reads it. Most runs only count events, and the debugger's event window copies
 * the numbers into typed arrays, so no per-event object outlives the next scavenge.
 */
export class TraceShape {
  /** Numbers per record (a 64-bit field takes two). */
  readonly width: number;
  readonly id: number;
  constructor(
    readonly system: TraceEvent['system'],
    readonly name: string,
    readonly keys: readonly string[],
    readonly kinds: readonly number[],
    readonly format: Formatter,
  ) {
    this.width = kinds.reduce((w, k) => w + (k === F_U64 ? 2 : 1), 0);
    this.id = shapes.length;
    shapes.push(this);
  }

  fields(raw: ArrayLike<number>, at = 0): Fields {
    const f: Fields = {};
    let j = at;
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.kinds[i];
      if (k === F_U64) {
        f[this.keys[i]!] = halvesToValue(raw[j]!, raw[j + 1]!);
        j += 2;
      } else {
        f[this.keys[i]!] = k === F_BOOL ? raw[j] !== 0 : raw[j]!;
        j++;
      }
    }
    return f;
  }
}

const shapes: TraceShape[] = [];

/** An event whose text (and, for a raw record, whose fields) are made only when someone reads them. */
class SinkEvent implements TraceEvent {
  private cached: string | undefined;
  private fieldsCache: Fields | undefined;
  constructor(
    readonly index: number,
    readonly system: TraceEvent['system'],
    readonly name: string,
    readonly vcpu: number,
    fields: Fields | undefined,
    private format: Formatter | undefined,
    text: string | undefined,
    /** With `raw`: the layout of a record emitted by `emitRaw`. */
    readonly shape: TraceShape | undefined,
    readonly raw: ArrayLike<number> | undefined,
  ) {
    this.cached = text;
    this.fieldsCache = fields;
  }

  get fields(): Fields {
    return (this.fieldsCache ??= this.shape!.fields(this.raw!));
  }

  get text(): string {
    if (this.cached === undefined) {
      this.cached = this.format!(this.name, this.fields);
      this.format = undefined;
    }
    return this.cached;
  }

  toJSON(): object {
    return { index: this.index, system: this.system, name: this.name, vcpu: this.vcpu, text: this.text, fields: this.fields };
  }
}

class TraceSink {
  enabled = false;
  private next = 0;
  private consumers: Array<(e: TraceEvent) => void> = [];

  subscribe(fn: (e: TraceEvent) => void): () => void {
    this.consumers.push(fn);
    this.enabled = true;
    return () => {
      this.consumers = this.consumers.filter((c) => c !== fn);
      this.enabled = this.consumers.length > 0;
    };
  }

  /** Call only behind `if (trace.enabled)`. */
  emit(system: TraceEvent['system'], name: string, vcpu: number, text: string, fields: TraceEvent['fields']): void {
    const e = new SinkEvent(this.next++, system, name, vcpu, fields, undefined, text, undefined, undefined);
    for (const c of this.consumers) c(e);
  }

  /**
   * Like emit, but the payload text is produced by `format(name, fields)` only if a consumer reads
   * `text`: a session that merely counts events pays no string formatting on the fault path.
   */
  emitLazy(system: TraceEvent['system'], name: string, vcpu: number, fields: TraceEvent['fields'], format: (name: string, fields: TraceEvent['fields']) => string): void {
    const e = new SinkEvent(this.next++, system, name, vcpu, fields, format, undefined, undefined, undefined);
    for (const c of this.consumers) c(e);
  }

  /**
   * A hot event as numbers in `shape`'s layout (`raw` is kept: pass a fresh array). Fields and text are
   * made on first read, exactly as `emitLazy` with the same fields would give them.
   */
  emitRaw(shape: TraceShape, vcpu: number, raw: number[]): void {
    const e = new SinkEvent(this.next++, shape.system, shape.name, vcpu, undefined, shape.format, undefined, shape, raw);
    for (const c of this.consumers) c(e);
  }

  reset(): void {
    this.next = 0;
  }

  /** Index the next event gets; with `seek`, what a checkpoint saves and restores. */
  get position(): number {
    return this.next;
  }

  seek(next: number): void {
    this.next = next;
  }
}

export const trace = new TraceSink();

/** Events never change once emitted (their text is only formatted lazily): snapshots keep them by reference. */
export function isTraceEvent(o: unknown): o is TraceEvent {
  return o instanceof SinkEvent;
}

/** Widest raw record the event window stores in its columns; wider ones (none today) are kept as objects. */
const WINDOW_WIDTH = 8;

/**
 * The most recent events of a run, slot by slot, for the debugger's Events view. Raw records are copied
 * into typed columns, so the window keeps no event object alive: a kept object was copied by every
 * scavenge and then promoted, which made the garbage collector a large part of an attached run. Other
 * events (rare on hot paths) are kept by reference. `get` rebuilds an equal event (same index, name,
 * vcpu, fields and text).
 */
export class EventWindow {
  private readonly shapeIds: Int32Array;
  private readonly vcpus: Int32Array;
  private readonly indexes: Float64Array;
  private readonly vals: Float64Array;
  private readonly objs: Array<TraceEvent | undefined>;

  constructor(readonly size: number) {
    this.shapeIds = new Int32Array(size).fill(-1);
    this.vcpus = new Int32Array(size);
    this.indexes = new Float64Array(size);
    this.vals = new Float64Array(size * WINDOW_WIDTH);
    this.objs = new Array(size);
  }

  set(slot: number, e: TraceEvent): void {
    const shape = e instanceof SinkEvent ? e.shape : undefined;
    if (shape !== undefined && shape.width <= WINDOW_WIDTH) {
      const raw = (e as SinkEvent).raw!;
      const at = slot * WINDOW_WIDTH;
      for (let i = 0; i < shape.width; i++) this.vals[at + i] = raw[i]!;
      this.shapeIds[slot] = shape.id;
      this.vcpus[slot] = e.vcpu;
      this.indexes[slot] = e.index;
      this.objs[slot] = undefined;
    } else {
      this.shapeIds[slot] = -1;
      this.objs[slot] = e;
    }
  }

  get(slot: number): TraceEvent | undefined {
    const id = this.shapeIds[slot]!;
    if (id < 0) return this.objs[slot];
    const shape = shapes[id]!;
    const at = slot * WINDOW_WIDTH;
    const raw = Array.from(this.vals.subarray(at, at + shape.width));
    return new SinkEvent(this.indexes[slot]!, shape.system, shape.name, this.vcpus[slot]!, undefined, shape.format, undefined, shape, raw);
  }

  clear(): void {
    this.shapeIds.fill(-1);
    this.objs.fill(undefined);
  }
}
