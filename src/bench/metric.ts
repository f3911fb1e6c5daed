/** One benchmark result: a value with its unit, an optional same-run baseline, and a target. */
export interface MetricResult {
  name: string;
  value: number;
  unit: string;
  /** The same-run baseline's value, in the same unit, where the metric has one. */
  baseline?: number;
  /** value / baseline (rates) — how close to the least work any implementation must do. */
  ratio?: number;
  /** Human text of the target, e.g. ">= 3000000 faults/s and ratio >= 0.10". */
  target: string;
  /** undefined for "report only" metrics. */
  met?: boolean;
  /** How it was measured, sizes used, anything a reader needs to trust the figure. */
  note?: string;
}

export interface BenchContext {
  quick: boolean;
  /** Progress lines go here (stderr). */
  log(line: string): void;
}

export interface Metric {
  name: string;
  run(ctx: BenchContext): Promise<MetricResult | MetricResult[]>;
}

/** Force a full collection if the runtime allows it (for memory figures). */
export function collectGarbage(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

export function enableGc(): void {
  if ((globalThis as { gc?: () => void }).gc) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const v8 = require('node:v8') as typeof import('node:v8');
  v8.setFlagsFromString('--expose-gc');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vm = require('node:vm') as typeof import('node:vm');
  (globalThis as { gc?: () => void }).gc = vm.runInNewContext('gc') as () => void;
}

/** Best of `n` runs of `fn`, in milliseconds (shared machines are noisy; the minimum is the signal). */
export function bestOf(n: number, fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

export function engineBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
