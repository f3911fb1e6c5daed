/**
 * Snapshots of the model's state, for reverse execution by checkpoints.
 *
 * A snapshot records the own contents of every object reachable from its roots (fields, array elements,
 * Map/Set entries, typed-array bytes); restoring writes those contents back into the *same* objects. Keeping
 * identity, rather than cloning, is what makes this safe for the engine: callbacks it stores as closures
 * (an MMU's `root_to_sp`, a page table's `force_pte_cb`, the scenario runner's trace subscription) capture
 * objects, not copies, so they stay bound to the state that is restored. Objects created after the snapshot
 * simply become unreachable again.
 *
 * State the object graph cannot reach must opt in: side tables keyed by engine objects use
 * `TrackedWeakMap`, and module-level caches register a `onRestore` reset. The trace sink's next event
 * index and the probe hub's hit count are saved too. Emitted trace events are immutable and kept by reference.
 */

import { probes } from './probes';
import { isTraceEvent, trace } from './trace_sink';

/** A WeakMap whose entries for snapshotted keys are recorded and restored with them. */
export class TrackedWeakMap<K extends object, V> extends WeakMap<K, V> {
  private refs: Array<WeakRef<K>> = [];
  private readonly known = new WeakSet<K>();

  constructor() {
    super();
    tracked.push(this as unknown as TrackedWeakMap<object, unknown>);
  }

  override set(key: K, value: V): this {
    if (!this.known.has(key)) {
      this.known.add(key);
      this.refs.push(new WeakRef(key));
      // Drop dead references now and then so a long session does not accumulate them.
      if (this.refs.length > 64 && (this.refs.length & (this.refs.length - 1)) === 0) this.refs = this.refs.filter((r) => r.deref() !== undefined);
    }
    return super.set(key, value);
  }

  /** Keys still alive (some may have no entry any more). */
  liveKeys(): K[] {
    const out: K[] = [];
    for (const r of this.refs) {
      const k = r.deref();
      if (k !== undefined) out.push(k);
    }
    return out;
  }
}

const tracked: Array<TrackedWeakMap<object, unknown>> = [];
const restoreHooks: Array<() => void> = [];

/** A module-level cache keyed by engine objects must be forgotten when a snapshot is restored. */
export function onRestore(fn: () => void): void {
  restoreHooks.push(fn);
}

export interface SnapshotOptions {
  /** Objects treated as values: kept by reference, never walked nor restored (immutable inputs). */
  atoms?: (o: object) => boolean;
  /**
   * An earlier snapshot of the same state: typed arrays whose contents have not changed since share its
   * copies instead of being copied again (most page tables do not change between two checkpoints).
   */
  base?: Snapshot;
}

export interface Snapshot {
  /** Rough size of the recorded contents, for memory caps. */
  readonly bytes: number;
  /** Objects recorded. */
  readonly objects: number;
  restore(): void;
}

type Copy = [arena: TypedArray, offset: number, length: number];

/** Each snapshot's typed-array copies, for the next snapshot to share. */
const copiesOf = new WeakMap<Snapshot, Map<object, Copy>>();

const enum Kind { Object, Array, Map, Set, Typed, Buffer }

type TypedArray = Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array | BigUint64Array | BigInt64Array | Uint8ClampedArray;

/** Record everything reachable from `roots`. */
export function takeSnapshot(roots: readonly object[], opts: SnapshotOptions = {}): Snapshot {
  const atoms = opts.atoms;
  const tracePos = trace.position;
  const probeCount = probes.count;
  const seen = new Set<object>();
  const objs: object[] = [];
  const kinds: Kind[] = [];
  const data: unknown[] = [];
  let bytes = 0;
  const typed: number[] = [];
  const stack: unknown[] = [...roots];
  const push = (v: unknown): void => {
    if (v !== null && typeof v === 'object' && !seen.has(v)) stack.push(v);
  };
  const walk = (): void => {
    while (stack.length) {
      const o = stack.pop() as object;
      if (seen.has(o)) continue;
      seen.add(o);
      if (isTraceEvent(o) || atoms?.(o)) continue;
      if (ArrayBuffer.isView(o)) {
        if (o instanceof DataView) {
          objs.push(o.buffer); kinds.push(Kind.Buffer); data.push(o.buffer.slice(0));
          bytes += o.buffer.byteLength;
        } else {
          // Copied after the walk into one arena per element type: thousands of small page-table arrays
          // would otherwise mean thousands of small allocations per snapshot.
          objs.push(o); kinds.push(Kind.Typed); data.push(undefined);
          typed.push(objs.length - 1);
        }
        continue;
      }
      if (o instanceof ArrayBuffer) {
        objs.push(o); kinds.push(Kind.Buffer); data.push(o.slice(0));
        bytes += o.byteLength;
        continue;
      }
      if (Array.isArray(o)) {
        const copy = o.slice();
        objs.push(o); kinds.push(Kind.Array); data.push(copy);
        bytes += 16 + 8 * copy.length;
        for (let i = 0; i < copy.length; i++) push(copy[i]);
        continue;
      }
      if (o instanceof Map) {
        const flat: unknown[] = [];
        for (const [k, v] of o) {
          flat.push(k, v);
          push(k);
          push(v);
        }
        objs.push(o); kinds.push(Kind.Map); data.push(flat);
        bytes += 32 + 16 * o.size;
        continue;
      }
      if (o instanceof Set) {
        const vals = [...o];
        for (const v of vals) push(v);
        objs.push(o); kinds.push(Kind.Set); data.push(vals);
        bytes += 32 + 8 * vals.length;
        continue;
      }
      if (typeof (o as { then?: unknown }).then === 'function' || o instanceof RegExp || o instanceof Date || o instanceof WeakMap || o instanceof WeakSet || o instanceof WeakRef) continue;
      // A frozen object cannot change, but what it points to may.
      // Two native calls (same order) instead of a keyed read per field across many object shapes.
      const keys = Object.keys(o);
      const vals = Object.values(o);
      const frozen = Object.isFrozen(o);
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i];
        if (v !== null && typeof v === 'object') push(v);
      }
      if (!frozen) {
        objs.push(o); kinds.push(Kind.Object); data.push([keys, vals]);
        bytes += 32 + 16 * keys.length;
      }
    }
  };
  walk();
  // Side-table entries of reached keys, and what they reach (which may reach further keys).
  const side: Array<{ map: TrackedWeakMap<object, unknown>; entries: Map<object, unknown> }> = tracked.map((map) => ({ map, entries: new Map() }));
  for (let changed = true; changed;) {
    changed = false;
    for (const s of side) {
      for (const k of s.map.liveKeys()) {
        if (!seen.has(k) || s.entries.has(k) || !s.map.has(k)) continue;
        const v = s.map.get(k);
        s.entries.set(k, v);
        push(v);
        changed = true;
      }
    }
    walk();
  }
  const copies = new Map<object, Copy>();
  bytes += copyTyped(objs as TypedArray[], data, typed, opts.base ? copiesOf.get(opts.base) : undefined, copies);
  const count = objs.length;
  const snapshot: Snapshot = {
    bytes,
    objects: count,
    restore(): void {
      for (let i = 0; i < count; i++) {
        const o = objs[i]!;
        switch (kinds[i]) {
          case Kind.Object: {
            const [keys, vals] = data[i] as [string[], unknown[]];
            const rec = o as Record<string, unknown>;
            const now = Object.keys(rec);
            if (now.length !== keys.length) {
              const keep = new Set(keys);
              for (const k of now) if (!keep.has(k)) delete rec[k];
            }
            // Unchanged fields are left alone: a store, even of the same value, can cost V8 its assumption
            // that a field is constant, and the re-execution that follows every restore its optimized code.
            for (let j = 0; j < keys.length; j++) {
              const k = keys[j]!;
              if (!same(rec[k], vals[j]) || !Object.hasOwn(rec, k)) rec[k] = vals[j];
            }
            break;
          }
          case Kind.Array: {
            const a = o as unknown[];
            const src = data[i] as unknown[];
            if (a.length !== src.length) a.length = src.length;
            for (let j = 0; j < src.length; j++) if (!same(a[j], src[j]) || !(j in a)) a[j] = src[j];
            break;
          }
          case Kind.Map: {
            const m = o as Map<unknown, unknown>;
            const flat = data[i] as unknown[];
            m.clear();
            for (let j = 0; j < flat.length; j += 2) m.set(flat[j], flat[j + 1]);
            break;
          }
          case Kind.Set: {
            const s = o as Set<unknown>;
            s.clear();
            for (const v of data[i] as unknown[]) s.add(v);
            break;
          }
          case Kind.Typed: {
            const [arena, off, len] = data[i] as [TypedArray, number, number];
            (o as Uint8Array).set((arena as Uint8Array).subarray(off, off + len));
            break;
          }
          case Kind.Buffer:
            new Uint8Array(o as ArrayBuffer).set(new Uint8Array(data[i] as ArrayBuffer));
            break;
        }
      }
      for (const s of side) {
        for (const k of s.map.liveKeys()) {
          if (!seen.has(k)) continue;
          if (s.entries.has(k)) s.map.set(k, s.entries.get(k));
          else s.map.delete(k);
        }
      }
      trace.seek(tracePos);
      probes.count = probeCount;
      for (const h of restoreHooks) h();
    },
  };
  copiesOf.set(snapshot, copies);
  return snapshot;
}

/** `===`, except that 0 and -0 differ (restore must bring back exactly what was recorded). */
function same(a: unknown, b: unknown): boolean {
  return a === b && (a !== 0 || 1 / a === 1 / (b as number));
}

/**
 * Copy the typed arrays at `which` into one arena per element type (data[i] becomes [arena, offset,
 * length]), except those equal to their copy in `base`, which share it. Returns the bytes copied.
 */
function copyTyped(objs: TypedArray[], data: unknown[], which: number[], base: Map<object, Copy> | undefined, copies: Map<object, Copy>): number {
  const fresh: number[] = [];
  for (const i of which) {
    const t = objs[i]!;
    const old = base?.get(t);
    if (old && old[2] === t.length && sameContents(t, old)) {
      data[i] = old;
      copies.set(t, old);
    } else fresh.push(i);
  }
  const totals = new Map<new (n: number) => TypedArray, number>();
  for (const i of fresh) {
    const ctor = objs[i]!.constructor as new (n: number) => TypedArray;
    totals.set(ctor, (totals.get(ctor) ?? 0) + objs[i]!.length);
  }
  const arenas = new Map<new (n: number) => TypedArray, { a: TypedArray; off: number }>();
  for (const [ctor, n] of totals) arenas.set(ctor, { a: new ctor(n), off: 0 });
  let bytes = 0;
  for (const i of fresh) {
    const t = objs[i]!;
    const ar = arenas.get(t.constructor as new (n: number) => TypedArray)!;
    (ar.a as Uint8Array).set(t as Uint8Array, ar.off);
    const copy: Copy = [ar.a, ar.off, t.length];
    data[i] = copy;
    copies.set(t, copy);
    ar.off += t.length;
    bytes += t.byteLength;
  }
  return bytes;
}

/** Node's native byte comparison when there is one (the engine also runs in webviews, which lack it). */
const nativeCompare = (globalThis as { Buffer?: { compare(a: Uint8Array, b: Uint8Array): number } }).Buffer?.compare;

function sameContents(t: TypedArray, [arena, off, len]: Copy): boolean {
  if (arena.constructor !== t.constructor) return false;
  if (nativeCompare) {
    const size = t.BYTES_PER_ELEMENT;
    return nativeCompare(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), new Uint8Array(arena.buffer, arena.byteOffset + off * size, len * size)) === 0;
  }
  const a = t as Uint32Array;
  const b = arena as Uint32Array;
  for (let j = 0; j < len; j++) if (a[j] !== b[off + j]) return false;
  return true;
}
