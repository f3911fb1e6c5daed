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

/** An event whose text is formatted only when someone reads it (most consumers never do). */
class SinkEvent implements TraceEvent {
  private cached: string | undefined;
  constructor(
    readonly index: number,
    readonly system: TraceEvent['system'],
    readonly name: string,
    readonly vcpu: number,
    readonly fields: TraceEvent['fields'],
    private format: ((name: string, fields: TraceEvent['fields']) => string) | undefined,
    text: string | undefined,
  ) {
    this.cached = text;
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
    const e = new SinkEvent(this.next++, system, name, vcpu, fields, undefined, text);
    for (const c of this.consumers) c(e);
  }

  /**
   * Like emit, but the payload text is produced by `format(name, fields)` only if a consumer reads
   * `text`: a session that merely counts events pays no string formatting on the fault path.
   */
  emitLazy(system: TraceEvent['system'], name: string, vcpu: number, fields: TraceEvent['fields'], format: (name: string, fields: TraceEvent['fields']) => string): void {
    const e = new SinkEvent(this.next++, system, name, vcpu, fields, format, undefined);
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
