/**
 * Shadow MMU: fault-in of 1 GiB mapped by guest 4K page tables (TDP off), and eager split of 64 GiB
 * mapped by 2M pages when dirty logging starts.
 */
import { shadowFaultIn, shadowEagerSplit } from '../engine/x86/shadow_bench';
import { type BenchContext, type Metric, type MetricResult, collectGarbage } from './metric';

const WARMUP_BYTES = 32 << 20;
const WARMUP_RUNS = 3;
const TIMED_RUNS = 3;

export const shadowMmu: Metric = {
  name: 'shadow',
  async run(ctx: BenchContext): Promise<MetricResult[]> {
    const splitGib = ctx.quick ? 8 : 64;
    ctx.log(`shadow MMU: 1 GiB fault-in through guest 4K tables, eager split of ${splitGib} GiB of 2M mappings`);
    const clock = (): number => performance.now();
    // Untimed runs first, so the timed one measures optimised code rather than V8's tiers. Several VMs,
    // because call sites that see a second VM's per-instance hooks deoptimise once more.
    for (let i = 0; i < WARMUP_RUNS; i++) shadowFaultIn(clock, WARMUP_BYTES);
    // Best of 3 fresh VMs (metric.ts's convention for a shared machine: the minimum is the signal).
    let f = null as ReturnType<typeof shadowFaultIn> | null;
    for (let i = 0; i < TIMED_RUNS; i++) {
      const r = shadowFaultIn(clock, 2 ** 30, collectGarbage);
      if (f === null || r.ms < f.ms) f = r;
    }
    if (f === null) throw new Error('no timed run');
    const faultsPerS = f.faults / (f.ms / 1000);
    const pagesPerS = f.pages / (f.ms / 1000);
    collectGarbage();
    const s = shadowEagerSplit(clock, splitGib * 2 ** 30);
    return [
      {
        name: 'shadow_fault_in_4k', value: Math.round(faultsPerS), unit: 'faults/s', target: '>= 500000 faults taken/s', met: faultsPerS >= 500_000,
        note:
          `${f.faults} faults taken for ${f.pages} guest pages touched in order (pte_prefetch mapped the other ${f.prefetched}), ${f.ms.toFixed(0)} ms ` +
          `including the per-page SPTE presence check; ${Math.round(pagesPerS)} pages/s; best of ${TIMED_RUNS} runs after ${WARMUP_RUNS} untimed 32 MiB warm-up runs`,
      },
      {
        name: 'shadow_eager_split_2m', value: Number(s.ms.toFixed(0)), unit: 'ms', target: `<= 1000 ms for 64 GiB`, met: splitGib === 64 ? s.ms <= 1000 : undefined,
        note: `${s.split_huge_pages} huge SPTEs split to 4K (${splitGib} GiB)${splitGib === 64 ? '' : ' — quick size, target applies to the full run'}`,
      },
    ];
  },
};
