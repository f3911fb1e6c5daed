/**
 * Design variant `pae_root` (seed 002: "Alloc pae_root shadow page").
 *
 * - `special` (upstream): mmu->pae_root is a per-vCPU page below 4 GiB that is not a shadow page. Its
 *   four entries point at level-2 root SPs (root_count held by the PDPTE), INVALID_PAE_ROOT (0) marks
 *   a not-present PDPTE. Such roots have no kvm_mmu_page, so they are never cached in prev_roots and
 *   count as obsolete whenever obsolete roots are freed.
 * - `shadow_page`: the PAE root is a shadow page with role bit `pae_root` (the model uses unused role
 *   bit 20), its table taken from a per-vCPU DMA32 cache (vcpu->arch.mmu_pae_root_cache, refilled by
 *   mmu_topup_pae_root_cache). Its four entries start as default_pae_pdpte: present for the CPU (P)
 *   but not for KVM (no SPTE_MMU_PRESENT_MASK), pointing at a zero page. The fault path links level-2
 *   children lazily with make_pae_pdpte (P | bit 11, the only ignored bits of a PDPTE being 11:9);
 *   drop_parent_pte writes the default back. A 2-level guest's children take quadrant = PDPTE index.
 *   The root is an SP, so CR3 switches may find it in prev_roots; a reused root re-checks its links
 *   against the current PDPTRs (the model's answer to PDPTEs changing under a cached root).
 *
 * The mechanics live where the kernel would have them (shadow_mmu.ts: alloc, link, drop_parent_pte;
 * shadow_roots.ts: root allocation); this module holds the comparison workload.
 */
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from './shadow_vm';
import type { PaeRootVariant } from './shadow_mmu';
export { make_pae_pdpte, ROLE_PAE_ROOT } from './shadow_mmu';
export { mmu_topup_pae_root_cache } from './shadow_roots';

export interface PaeRootRun {
  variant: PaeRootVariant;
  cr3_switches: number;
  /** kvm_mmu_load calls (a root had to be built or re-filled). */
  root_loads: number;
  shadow_pages_created: number;
  mmu_cache_miss: number;
  /** Pages below 4 GiB held at the end (pae_root pages, DMA32 cache, PAE-root SPs). */
  dma32_pages: number;
  faults: number;
}

export interface PaeRootReport {
  special: PaeRootRun;
  shadow_page: PaeRootRun;
}

/**
 * Two PAE "processes" (two PDPTs), each touching `pages` pages; the vCPU switches CR3 between them
 * `switches` times and touches the pages again after each switch.
 */
export function paeRootReport(switches = 16, pages = 8): PaeRootReport {
  const run = (variant: PaeRootVariant): PaeRootRun => {
    const cr4 = 0x20 | 0x10;
    const vm = new ShadowVm({ mem_bytes: 128 << 20, pae_root: variant, cr0: 0x8001_0011, cr4, efer: 0 });
    const a = new GuestPageTableBuilder(vm.mem, 3, 0x10_0000);
    const b = new GuestPageTableBuilder(vm.mem, 3, 0x40_0000);
    const flags = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
    for (let i = 0; i < pages; i++) {
      a.map(0x4000_0000 + i * 0x1000, 0x100_0000 + i * 0x1000, flags);
      b.map(0x4000_0000 + i * 0x1000, 0x200_0000 + i * 0x1000, flags);
    }
    vm.setRegs(vm.cr0, cr4, 0, a.cr3);
    let faults = 0;
    let lookups = 0;
    const count = (): void => {
      const before = vm.stats().mmu_cache_miss!;
      for (let i = 0; i < pages; i++) faults += Math.max(0, vm.access(0x4000_0000 + i * 0x1000));
      lookups += vm.stats().mmu_cache_miss! - before;
    };
    count();
    for (let s = 0; s < switches; s++) {
      vm.loadCr3(s % 2 === 0 ? b.cr3 : a.cr3);
      count();
    }
    return {
      variant, cr3_switches: switches, root_loads: vm.sk.counters.root_loads, shadow_pages_created: vm.sk.counters.sp_created,
      mmu_cache_miss: lookups, dma32_pages: vm.sk.counters.dma32_pages, faults,
    };
  };
  return { special: run('special'), shadow_page: run('shadow_page') };
}
