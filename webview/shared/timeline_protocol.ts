/** Messages of the Timeline panel: tracepoint events bucketed by event index, one lane per event name. */

export interface TimelineData {
  /** Event indexes in the session's window: [first, end). */
  first: number;
  end: number;
  /** The range shown: [from, to). */
  from: number;
  to: number;
  buckets: number;
  lanes: Array<{ name: string; total: number }>;
  /** counts[lane][bucket]. */
  counts: number[][];
  /** Step (statement) and index of the first event in each bucket, -1 when empty. */
  stepAt: number[];
  firstAt: number[];
  /** Where a new statement starts emitting, with its source line. */
  steps: Array<{ step: number; index: number; line: number }>;
}

export type ToTimeline = { type: 'timeline'; data: TimelineData } | { type: 'error'; message: string };

export type FromTimeline =
  | { type: 'ready' }
  | { type: 'range'; from: number; to: number; buckets: number }
  | { type: 'reveal'; step: number }
  | { type: 'goto'; index: number }
  | { type: 'rendered'; lanes: number; buckets: number };

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;
const intArray = (v: unknown, n: number, min: number): v is number[] => Array.isArray(v) && v.length === n && v.every((x) => isInt(x, min));

export function parseToTimeline(m: unknown): ToTimeline | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'error' && typeof o.message === 'string') return { type: 'error', message: o.message };
  if (o.type !== 'timeline' || !o.data || typeof o.data !== 'object') return undefined;
  const d = o.data as Record<string, unknown>;
  if (!isInt(d.first) || !isInt(d.end) || !isInt(d.from) || !isInt(d.to) || !isInt(d.buckets, 1) || d.buckets > 4000) return undefined;
  if (!Array.isArray(d.lanes) || !d.lanes.every((l) => l && typeof l === 'object' && typeof (l as { name?: unknown }).name === 'string' && isInt((l as { total?: unknown }).total))) return undefined;
  const buckets = d.buckets;
  if (!Array.isArray(d.counts) || d.counts.length !== d.lanes.length || !d.counts.every((c) => intArray(c, buckets, 0))) return undefined;
  if (!intArray(d.stepAt, buckets, -1) || !intArray(d.firstAt, buckets, -1)) return undefined;
  if (!Array.isArray(d.steps) || !d.steps.every((s) => s && typeof s === 'object' && isInt((s as { step?: unknown }).step) && isInt((s as { index?: unknown }).index) && isInt((s as { line?: unknown }).line))) return undefined;
  return { type: 'timeline', data: d as unknown as TimelineData };
}

export function parseFromTimeline(m: unknown): FromTimeline | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'ready') return { type: 'ready' };
  if (o.type === 'range' && isInt(o.from) && isInt(o.to) && isInt(o.buckets, 1) && o.buckets <= 4000) return { type: 'range', from: o.from, to: o.to, buckets: o.buckets };
  if (o.type === 'reveal' && isInt(o.step)) return { type: 'reveal', step: o.step };
  if (o.type === 'goto' && isInt(o.index)) return { type: 'goto', index: o.index };
  if (o.type === 'rendered' && isInt(o.lanes) && isInt(o.buckets)) return { type: 'rendered', lanes: o.lanes, buckets: o.buckets };
  return undefined;
}
