/**
 * The Timeline panel on a replayed capture of a million events from four vCPUs: the first
 * `kvmMmu/vcpuTimeline` of a stop (reads the window), then a zoom (reuses it), end to end through a DAP
 * session. Report only: the issue sets no target for it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessDapClient } from './dap_driver';
import { type BenchContext, type Metric, type MetricResult } from './metric';

/** `faults` page faults, four events each, round-robin over vCPU threads "CPU n/KVM". */
function capture(faults: number): string {
  const file = join(mkdtempSync(join(tmpdir(), 'kvm-mmu-bench-tl-')), 'four-vcpus.trace');
  const out: string[] = [];
  let ts = 900.000001;
  for (let i = 0; i < faults; i++) {
    const gfn = 0x1000 + i;
    const g = gfn.toString(16);
    const pfn = (0x3f0000 + gfn).toString(16);
    const v = i % 4;
    const pre = `       CPU ${v}/KVM-${4711 + v}    [00${v}] .....   ${ts.toFixed(6)}: `;
    ts += 0.000003;
    out.push(
      `${pre}kvm_page_fault: vcpu ${v} rip 0xffffffff81000010 address 0x${(gfn * 4096).toString(16).padStart(16, '0')} error_code 0x182`,
      `${pre}kvm_mmu_spte_requested: gfn ${g} pfn ${pfn} level 1`,
      `${pre}kvm_tdp_mmu_spte_changed: as id 0 gfn ${g} level 1 old_spte 8000000000000000 new_spte 6000${pfn}b77`,
      `${pre}kvm_mmu_set_spte: gfn ${g} spte 6000${pfn}b77 (rwxu) level 1 at 1c4f0d10`,
    );
  }
  writeFileSync(file, out.join('\n') + '\n');
  return file;
}

interface Timeline { rows: Array<{ vcpu: number; total: number }>; end: number }

export const timelineBench: Metric = {
  name: 'timeline',
  async run(ctx: BenchContext): Promise<MetricResult[]> {
    const events = ctx.quick ? 250_000 : 1_000_000;
    ctx.log(`timeline: a replayed capture of ${events} events from 4 vCPUs`);
    const file = capture(events / 4);
    const dc = new InProcessDapClient();
    try {
      const stopped = dc.waitFor('stopped');
      await dc.launch({ trace: file, stopOnEntry: false }, () => dc.request('setBreakpoints', { source: { path: file }, breakpoints: [{ line: events }] }));
      await stopped;
      let t0 = performance.now();
      const first = await dc.request<Timeline>('kvmMmu/vcpuTimeline', { buckets: 400 });
      const firstMs = performance.now() - t0;
      if (first.rows.length !== 4) throw new Error(`expected 4 vCPU rows, got ${first.rows.map((r) => r.vcpu).join(',')}`);
      let zoomMs = Infinity;
      for (let i = 0; i < 5; i++) {
        t0 = performance.now();
        await dc.request('kvmMmu/vcpuTimeline', { from: first.end / 2, to: first.end / 2 + first.end / 10, buckets: 400 });
        zoomMs = Math.min(zoomMs, performance.now() - t0);
      }
      return [
        { name: 'timeline_first_read', value: Number(firstMs.toFixed(1)), unit: 'ms', target: 'report', note: `${events} events in the window, 4 vCPU rows, 400 buckets: the first request of a stop reads the window` },
        { name: 'timeline_zoom', value: Number(zoomMs.toFixed(2)), unit: 'ms', target: 'report', note: `a tenth of the same window in 400 buckets, best of 5 (the window is reused)` },
      ];
    } finally {
      await dc.close();
    }
  },
};
