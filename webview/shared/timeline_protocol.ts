/**
 * Messages of the Timeline panel: the session's events bucketed by event index, one row per vCPU, each
 * bucket counted per kind of MMU activity (the answer of `kvmMmu/vcpuTimeline`).
 */

/** Kinds the timeline colours, in drawing order, with the theme colour and legend text of each. */
export const TIMELINE_KINDS = {
  fault: { color: '--vscode-charts-blue', label: 'fault' },
  map: { color: '--vscode-charts-green', label: 'SPTE change / shadow page' },
  zap: { color: '--vscode-charts-red', label: 'zap' },
  split: { color: '--vscode-charts-purple', label: 'huge page split' },
  flush: { color: '--vscode-charts-yellow', label: 'TLB flush' },
  notifier: { color: '--vscode-charts-orange', label: 'mmu_notifier invalidation / aging' },
  rmp: { color: '--vscode-terminal-ansiCyan', label: 'RMP / private conversion' },
  other: { color: '--vscode-disabledForeground', label: 'other' },
} as const;
export type TimelineKind = keyof typeof TIMELINE_KINDS;

export interface TimelineData {
  /** Event indexes in the session's window: [first, end). */
  first: number;
  end: number;
  /** The range shown: [from, to). */
  from: number;
  to: number;
  buckets: number;
  kinds: Array<{ kind: string; total: number; names: string[] }>;
  /** One row per vCPU; vcpu -1 holds the events no vCPU raised. */
  rows: Array<{ vcpu: number; total: number }>;
  /** counts[row][kind][bucket]. */
  counts: number[][][];
  /** Index and step of each row's first event in each bucket, -1 when empty. */
  firstAt: number[][];
  stepAt: number[][];
  /** Where a new statement starts emitting, with its source line. */
  steps: Array<{ step: number; index: number; line: number }>;
  /** Index of the first event at or after the session's stop (end: after all of them). */
  stop?: number;
}

export type ToTimeline = { type: 'timeline'; data: TimelineData } | { type: 'error'; message: string };

export type FromTimeline =
  | { type: 'ready' }
  | { type: 'range'; from: number; to: number; buckets: number }
  | { type: 'reveal'; step: number }
  | { type: 'goto'; index: number }
  | { type: 'rendered'; rows: number; buckets: number };

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;
const intArray = (v: unknown, n: number, min: number): v is number[] => Array.isArray(v) && v.length === n && v.every((x) => isInt(x, min));
const obj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object';

export function parseToTimeline(m: unknown): ToTimeline | undefined {
  if (!obj(m)) return undefined;
  if (m.type === 'error' && typeof m.message === 'string') return { type: 'error', message: m.message };
  if (m.type !== 'timeline' || !obj(m.data)) return undefined;
  const d = m.data;
  if (!isInt(d.first) || !isInt(d.end) || !isInt(d.from) || !isInt(d.to) || !isInt(d.buckets, 1) || d.buckets > 4000) return undefined;
  const b = d.buckets;
  if (!Array.isArray(d.kinds) || !d.kinds.every((k) => obj(k) && typeof k.kind === 'string' && isInt(k.total) && Array.isArray(k.names) && k.names.every((n) => typeof n === 'string'))) return undefined;
  if (!Array.isArray(d.rows) || d.rows.length > 1024 || !d.rows.every((r) => obj(r) && isInt(r.vcpu, -1) && isInt(r.total))) return undefined;
  const nk = d.kinds.length;
  const nr = d.rows.length;
  if (!Array.isArray(d.counts) || d.counts.length !== nr || !d.counts.every((row) => Array.isArray(row) && row.length === nk && row.every((c) => intArray(c, b, 0)))) return undefined;
  if (!Array.isArray(d.firstAt) || d.firstAt.length !== nr || !d.firstAt.every((r) => intArray(r, b, -1))) return undefined;
  if (!Array.isArray(d.stepAt) || d.stepAt.length !== nr || !d.stepAt.every((r) => intArray(r, b, -1))) return undefined;
  if (!Array.isArray(d.steps) || !d.steps.every((s) => obj(s) && isInt(s.step) && isInt(s.index) && isInt(s.line))) return undefined;
  if (d.stop !== undefined && !isInt(d.stop)) return undefined;
  return { type: 'timeline', data: d as unknown as TimelineData };
}

export function parseFromTimeline(m: unknown): FromTimeline | undefined {
  if (!obj(m)) return undefined;
  if (m.type === 'ready') return { type: 'ready' };
  if (m.type === 'range' && isInt(m.from) && isInt(m.to) && isInt(m.buckets, 1) && m.buckets <= 4000) return { type: 'range', from: m.from, to: m.to, buckets: m.buckets };
  if (m.type === 'reveal' && isInt(m.step)) return { type: 'reveal', step: m.step };
  if (m.type === 'goto' && isInt(m.index)) return { type: 'goto', index: m.index };
  if (m.type === 'rendered' && isInt(m.rows) && isInt(m.buckets)) return { type: 'rendered', rows: m.rows, buckets: m.buckets };
  return undefined;
}
