/**
 * TDP MMU bulk operations (report-only targets): KVM_CLEAR_DIRTY_LOG over a whole dirty 16 GiB slot
 * with manual protection, and zapping a fully populated 64 GiB range at 4K.
 */
import { create_x86_vm, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_MEM_LOG_DIRTY_PAGES } from '../engine/x86/index';
import { type BenchContext, type Metric, type MetricResult } from './metric';

const PAGE = 4096;

export const tdpOps: Metric = {
  name: 'tdp_ops',
  async run(ctx: BenchContext): Promise<MetricResult[]> {
    const out: MetricResult[] = [];
    {
      const gib = ctx.quick ? 1 : 16;
      ctx.log(`TDP MMU: KVM_CLEAR_DIRTY_LOG over ${gib} GiB`);
      const vm = create_x86_vm({});
      if (vm.enable_manual_dirty_log_protect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0) throw new Error('manual protect refused');
      if (vm.add_slot(0, 0, gib * 2 ** 30, { flags: KVM_MEM_LOG_DIRTY_PAGES }) !== 0) throw new Error('slot refused');
      const pages = (gib * 2 ** 30) / PAGE;
      for (let i = 0; i < pages; i++) vm.fault(0, i * PAGE, 0x6);
      const bm = vm.get_dirty_log(0);
      if (typeof bm === 'number') throw new Error(`KVM_GET_DIRTY_LOG failed: ${bm}`);
      const all = new Uint32Array(bm.length).fill(0xffff_ffff);
      const t0 = performance.now();
      const r = vm.clear_dirty_log(0, 0, pages, all);
      const ms = performance.now() - t0;
      if (r !== 0) throw new Error(`KVM_CLEAR_DIRTY_LOG failed: ${r}`);
      out.push({ name: 'clear_dirty_log', value: Number(ms.toFixed(1)), unit: 'ms', target: 'report', note: `${gib} GiB slot, every 4K page dirty and write-protected again` });
      vm.destroy();
    }
    {
      const gib = ctx.quick ? 4 : 64;
      ctx.log(`TDP MMU: zap of a fully populated ${gib} GiB range at 4K`);
      const vm = create_x86_vm({});
      if (vm.add_slot(0, 0, gib * 2 ** 30) !== 0) throw new Error('slot refused');
      const pages = (gib * 2 ** 30) / PAGE;
      for (let i = 0; i < pages; i++) vm.fault(0, i * PAGE, 0x6);
      const t0 = performance.now();
      vm.zap_gfn_range(0, pages);
      const ms = performance.now() - t0;
      const left = vm.stats().vm.pages_4k ?? -1;
      if (left !== 0) throw new Error(`zap left ${left} 4K mappings`);
      out.push({ name: 'zap_populated_root', value: Number(ms.toFixed(1)), unit: 'ms', target: 'report', note: `${gib} GiB, ${pages} 4K leaves, kvm_zap_gfn_range over the whole slot` });
      vm.destroy();
    }
    return out;
  },
};
