/**
 * `kvmMmu/vcpuTimeline`: the session's events bucketed by event index, one row per vCPU and one count per
 * kind of MMU activity, so a view of any zoom costs rows x kinds x buckets numbers however many events
 * there are. Scenario and trace-replay programs answer alike (both list their events).
 */
import type { DebugProgram, ProgramEvent } from '../program';

/**
 * Kinds in drawing order. The first pattern that matches a tracepoint name decides; names come from
 * Linux 6.18's kvm, kvmmmu, kvm_x86 (SEV/TDX) and arm64 trace systems and from the model's probes.
 */
export const EVENT_KINDS: ReadonlyArray<{ kind: string; re: RegExp }> = [
  { kind: 'rmp', re: /rmp|psc|snp|page_state|gmem|convert|private|tdx_|sept/ },
  { kind: 'notifier', re: /hva|notifier|invalidate_range|mmu_invalidate|(^|_)age_/ },
  { kind: 'split', re: /split/ },
  { kind: 'zap', re: /zap|unmap|unlink|free_|drop_|reclaim/ },
  { kind: 'flush', re: /flush|tlb|tlbi/ },
  { kind: 'fault', re: /fault|pagetable_walk|paging_element|walker_error|spte_requested|mmio_spte|async_pf|async_get_page|guest_abort|mem_abort|kvm_exit|kvm_entry|npf|ept_violation/ },
  { kind: 'map', re: /spte|get_page|sync_page|accessed_bit|dirty_bit|map|link/ },
];
export const OTHER_KIND = 'other';

export function eventKind(name: string): string {
  for (const k of EVENT_KINDS) if (k.re.test(name)) return k.kind;
  return OTHER_KIND;
}

function int(v: unknown, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'number' ? v : NaN;
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : dflt;
}

export interface VcpuTimeline {
  first: number;
  end: number;
  from: number;
  to: number;
  buckets: number;
  kinds: Array<{ kind: string; total: number; names: string[] }>;
  /** One row per vCPU in id order; vcpu -1 holds events no vCPU raised (notifiers, ioctls, the host). */
  rows: Array<{ vcpu: number; total: number }>;
  /** counts[row][kind][bucket]. */
  counts: number[][][];
  /** Index and step of each row's first event in each bucket, -1 when none. */
  firstAt: number[][];
  stepAt: number[][];
  steps: Array<{ step: number; index: number; line: number }>;
  /** Index of the first event at or after the stop (end when the stop is after them all); absent without a stop. */
  stop?: number;
}

/**
 * The event window in columns: index, step, row (vCPU) and kind of each event, plus the per-window totals.
 * Read once per window: an event keeps its index across re-execution, so the same first index and count
 * mean the same events, and every zoom or pan of the window (a request each) reuses this.
 */
interface Window {
  first: number;
  total: number;
  index: Float64Array;
  step: Float64Array;
  row: Int32Array;
  kind: Uint8Array;
  rows: Array<{ vcpu: number; total: number }>;
  kinds: VcpuTimeline['kinds'];
}

const windows = new WeakMap<DebugProgram, Window>();

function windowOf(program: DebugProgram): Window {
  const head = program.events!(0, 0);
  const cached = windows.get(program);
  if (cached && cached.first === head.first && cached.total === head.total) return cached;
  const evs: ProgramEvent[] = program.events!(0, Number.MAX_SAFE_INTEGER, undefined, { text: false }).events;
  const kindIndex = new Map<string, number>();
  const kinds: VcpuTimeline['kinds'] = [...EVENT_KINDS.map((k) => k.kind), OTHER_KIND].map((kind, i) => {
    kindIndex.set(kind, i);
    return { kind, total: 0, names: [] };
  });
  // A vCPU runs on a thread of its own ("CPU N/KVM"): in a captured trace, events without a vcpu_id
  // field (most kvmmmu ones) belong to the vCPU whose events that thread also emitted.
  const vcpuOfPid = new Map<number, number>();
  for (const e of evs) if (e.vcpu >= 0 && e.pid !== undefined && e.pid > 0 && !vcpuOfPid.has(e.pid)) vcpuOfPid.set(e.pid, e.vcpu);
  const n = evs.length;
  const w: Window = { first: head.first, total: head.total, index: new Float64Array(n), step: new Float64Array(n), row: new Int32Array(n), kind: new Uint8Array(n), rows: [], kinds };
  const kindOfName = new Map<string, number>();
  const vcpus = new Int32Array(n);
  const perVcpu = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const e = evs[i]!;
    let k = kindOfName.get(e.name);
    if (k === undefined) {
      k = kindIndex.get(eventKind(e.name))!;
      kindOfName.set(e.name, k);
      kinds[k]!.names.push(e.name);
    }
    kinds[k]!.total++;
    const v = e.vcpu >= 0 || e.pid === undefined ? e.vcpu : vcpuOfPid.get(e.pid) ?? -1;
    perVcpu.set(v, (perVcpu.get(v) ?? 0) + 1);
    vcpus[i] = v;
    w.index[i] = e.index;
    w.step[i] = e.step;
    w.kind[i] = k;
  }
  w.rows = [...perVcpu.entries()].sort((a, b) => a[0] - b[0]).map(([vcpu, total]) => ({ vcpu, total }));
  const rowOf = new Map(w.rows.map((r, i) => [r.vcpu, i]));
  for (let i = 0; i < n; i++) w.row[i] = rowOf.get(vcpus[i]!)!;
  windows.set(program, w);
  return w;
}

export function vcpuTimeline(program: DebugProgram, args: Record<string, unknown>): VcpuTimeline {
  if (!program.events) throw new Error('this program records no events');
  const w = windowOf(program);
  const n = w.index.length;
  const first = n ? w.index[0]! : 0;
  const end = n ? w.index[n - 1]! + 1 : 0;
  const from = Math.max(first, int(args.from, first));
  const to = Math.min(Math.max(end, from + 1), Math.max(from + 1, int(args.to, end)));
  const buckets = int(args.buckets, 400, 1, 4000);
  const { rows, kinds } = w;
  const counts = rows.map(() => kinds.map(() => new Array<number>(buckets).fill(0)));
  const firstAt = rows.map(() => new Array<number>(buckets).fill(-1));
  const stepAt = rows.map(() => new Array<number>(buckets).fill(-1));
  const width = (to - from) / buckets;
  // Events are in index order: binary search the first one in range.
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (w.index[mid]! < from) lo = mid + 1;
    else hi = mid;
  }
  const steps: VcpuTimeline['steps'] = [];
  let prevStep = -1;
  for (let i = lo; i < n && w.index[i]! < to; i++) {
    const index = w.index[i]!;
    const step = w.step[i]!;
    const b = Math.min(buckets - 1, Math.floor((index - from) / width));
    const r = w.row[i]!;
    counts[r]![w.kind[i]!]![b]!++;
    if (firstAt[r]![b] === -1) {
      firstAt[r]![b] = index;
      stepAt[r]![b] = step;
    }
    if (step !== prevStep) {
      prevStep = step;
      if (steps.length < 2000) steps.push({ step, index, line: program.locationOf(step).line });
    }
  }
  let stop: number | undefined;
  if (typeof args.stopStep === 'number' && Number.isInteger(args.stopStep)) {
    // Steps grow with the event index: the first event of the stop's step or of a later one.
    let a = 0;
    let b = n;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (w.step[mid]! < args.stopStep) a = mid + 1;
      else b = mid;
    }
    stop = a < n ? w.index[a]! : end;
  }
  return { stop, first, end, from, to, buckets, kinds: kinds.map((k) => ({ ...k, names: [...k.names] })), rows: rows.map((r) => ({ ...r })), counts, firstAt, stepAt, steps };
}
