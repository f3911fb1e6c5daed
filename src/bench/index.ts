/** `kvm-mmu bench`: every performance target, each against a same-run baseline where one exists. */
import { type BenchContext, type Metric, type MetricResult, enableGc } from './metric';
import { tdpFaultIn } from './tdp_fault_in';
import { traceParse } from './trace_parse';
import { activation } from './activation';
import { vsixSize } from './vsix_size';
import { dapStop } from './dap';
import { shadowMmu } from './shadow';
import { tdpOps } from './tdp_ops';
import { views } from './views';
import { timelineBench } from './timeline';

export const METRICS: Metric[] = [tdpFaultIn, tdpOps, shadowMmu, traceParse, dapStop, views, timelineBench, activation, vsixSize];

export async function runBench(opts: { quick: boolean; only?: string[]; log: (s: string) => void }): Promise<MetricResult[]> {
  enableGc();
  const ctx: BenchContext = { quick: opts.quick, log: opts.log };
  const out: MetricResult[] = [];
  for (const m of METRICS) {
    if (opts.only && !opts.only.some((o) => m.name.includes(o))) continue;
    try {
      const r = await m.run(ctx);
      out.push(...(Array.isArray(r) ? r : [r]));
    } catch (e) {
      out.push({ name: m.name, value: NaN, unit: '', target: 'runs', met: false, note: `failed: ${(e as Error).message}` });
    }
  }
  return out;
}

export function formatTable(rows: MetricResult[]): string {
  const head = ['metric', 'value', 'baseline', 'ratio', 'target', 'met'];
  const body = rows.map((r) => [
    r.name,
    Number.isNaN(r.value) ? 'n/a' : `${r.value.toLocaleString('en-US')} ${r.unit}`,
    r.baseline !== undefined ? `${r.baseline.toLocaleString('en-US')} ${r.unit}` : '',
    r.ratio !== undefined ? r.ratio.toFixed(2) : '',
    r.target,
    r.met === undefined ? 'report' : r.met ? 'yes' : 'NO',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |';
  return [line(head), '|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|', ...body.map(line)].join('\n');
}
