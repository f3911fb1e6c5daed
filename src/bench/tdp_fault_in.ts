/**
 * TDP MMU 4K fault-in: every 4K page of a guest faulted once through kvm_mmu_page_fault, no breakpoints.
 * Baseline: a minimal 4-level radix map in the same run (walk from the root, allocate tables on demand,
 * store the leaf) — the least work any TDP fault must do.
 */
import { create_x86_vm } from '../engine/x86/index';
import { type BenchContext, type Metric, type MetricResult, collectGarbage, engineBytes } from './metric';

const PAGE = 4096;

/** The least a TDP fault does: index 4 levels, allocate missing tables, write the leaf. */
function radixBaseline(pages: number): number {
  const tables: Uint32Array[] = [new Uint32Array(1024)];
  const children: Int32Array[] = [new Int32Array(512).fill(-1)];
  const t0 = performance.now();
  for (let gfn = 0; gfn < pages; gfn++) {
    let t = 0;
    for (let level = 4; level > 1; level--) {
      const idx = Math.floor(gfn / 2 ** (9 * (level - 1))) & 511;
      let c = children[t]![idx]!;
      if (c < 0) {
        c = tables.length;
        tables.push(new Uint32Array(1024));
        children.push(new Int32Array(512).fill(-1));
        children[t]![idx] = c;
        tables[t]![idx * 2] = (c << 12) | 0x807;
      }
      t = c;
    }
    const i = (gfn & 511) * 2;
    const pfn = gfn + 0x100000;
    tables[t]![i] = ((pfn << 12) | 0xb77) >>> 0;
    tables[t]![i + 1] = Math.floor(pfn / 0x100000);
  }
  return performance.now() - t0;
}

export function faultIn(bytes: number, opts: { attachProbes?: () => () => void } = {}): { ms: number; pages: number; bytesPerPage: number; pages4k: number } {
  collectGarbage();
  const before = engineBytes();
  const vm = create_x86_vm({});
  if (vm.add_slot(0, 0, bytes, {}) !== 0) throw new Error('memslot rejected');
  const pages = bytes / PAGE;
  const detach = opts.attachProbes?.();
  const t0 = performance.now();
  // Error code: WRITE | USER (what an EPT violation for a guest write becomes).
  for (let i = 0; i < pages; i++) vm.fault(0, i * PAGE, 0x6);
  const ms = performance.now() - t0;
  detach?.();
  const pages4k = vm.stats().vm.pages_4k ?? 0;
  collectGarbage();
  const bytesPerPage = (engineBytes() - before) / pages;
  vm.destroy();
  return { ms, pages, bytesPerPage, pages4k };
}

export const tdpFaultIn: Metric = {
  name: 'tdp_fault_in_4k',
  async run(ctx: BenchContext): Promise<MetricResult[]> {
    const gib = ctx.quick ? 1 : 16;
    const bytes = gib * 2 ** 30;
    ctx.log(`TDP MMU: faulting in ${gib} GiB at 4K`);
    const r = faultIn(bytes);
    if (r.pages4k !== r.pages) throw new Error(`expected ${r.pages} 4K mappings, the engine made ${r.pages4k}`);
    const rate = r.pages / (r.ms / 1000);
    const base = r.pages / (radixBaseline(r.pages) / 1000);
    return [
      {
        name: 'tdp_fault_in_4k', value: Math.round(rate), unit: 'faults/s', baseline: Math.round(base), ratio: rate / base,
        target: '>= 3000000 faults/s and >= 10% of the radix baseline', met: rate >= 3_000_000 && rate / base >= 0.1,
        note: `${gib} GiB, ${r.pages} faults through kvm_mmu_page_fault, ${r.ms.toFixed(0)} ms`,
      },
      {
        name: 'tdp_engine_bytes_per_4k_page', value: Number(r.bytesPerPage.toFixed(2)), unit: 'bytes/page', target: '<= 12', met: r.bytesPerPage <= 12,
        note: 'heap + array buffers after GC, minus before, over mapped pages',
      },
    ];
  },
};
