/**
 * Shadow-MMU bench workloads, timed by the caller's clock: fault-in through guest 4K page tables and
 * eager split of 2M mappings. They live in the engine so the bench and the tests drive the same code.
 */
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from './shadow_vm';

export interface ShadowFaultInResult {
  /** Guest 4K pages touched (each once, in order). */
  pages: number;
  /** Faults actually taken (kvm_mmu_page_fault calls): pte_prefetch maps the rest of each group of 8. */
  faults: number;
  /** SPTEs installed by prefetch rather than by the faulting access. */
  prefetched: number;
  ms: number;
}

const GVA_BASE = 0x100_0000_0000;
const FLAGS = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;

/**
 * A 4-level guest maps `bytes` with 4K gPTEs (tables above the mapped range); the guest then touches
 * every page once in order. The "hardware" check (is a leaf SPTE present?) runs for every page and a
 * fault is taken only where it fails, so the time covers the touches as well as the faults.
 * `settle` runs between the setup and the timed loop.
 */
export function shadowFaultIn(now: () => number, bytes: number, settle?: () => void): ShadowFaultInResult {
  const pages = bytes / 4096;
  const vm = new ShadowVm({ mem_bytes: bytes + (64 << 20) });
  vm.kvm.record_flushes = false;
  const b = new GuestPageTableBuilder(vm.mem, 4, bytes);
  vm.setRegs(vm.cr0, vm.cr4, vm.efer, b.cr3);
  for (let i = 0; i < pages; i++) b.map(GVA_BASE + i * 4096, i * 4096, FLAGS);
  vm.reload();
  // The caller may collect the setup's garbage here, so the timed loop does not pay for it.
  settle?.();
  const pf0 = vm.vcpu.stat.pf_taken;
  let faults = 0;
  const t0 = now();
  for (let i = 0; i < pages; i++) {
    const gva = GVA_BASE + i * 4096;
    if (!vm.leafPresent(gva)) {
      vm.fault(gva, 0);
      faults++;
    }
  }
  const ms = now() - t0;
  if (vm.vcpu.stat.pf_taken - pf0 !== faults) throw new Error('shadowFaultIn: pf_taken disagrees with the faults the loop took');
  const mapped = vm.kvm.stat.pages[0]!;
  if (mapped !== pages) throw new Error(`shadowFaultIn: ${mapped} 4K SPTEs for ${pages} touched pages`);
  return { pages, faults, prefetched: mapped - faults, ms };
}

export interface ShadowSplitResult {
  huge_pages: number;
  split_huge_pages: number;
  ms: number;
}

/** `bytes` mapped by guest 2M pages over host THP, all faulted in; then dirty logging starts (eager split, L1 pages included). */
export function shadowEagerSplit(now: () => number, bytes: number): ShadowSplitResult {
  const huge = bytes / 0x20_0000;
  const sv = new ShadowVm({ mem_bytes: bytes + (64 << 20), host_backing: '2m-thp', eager_split_l1: true });
  sv.kvm.record_flushes = false;
  const sb = new GuestPageTableBuilder(sv.mem, 4, bytes);
  sv.setRegs(sv.cr0, sv.cr4, sv.efer, sb.cr3);
  for (let i = 0; i < huge; i++) sb.map(GVA_BASE + i * 0x20_0000, i * 0x20_0000, FLAGS, 2);
  sv.reload();
  for (let i = 0; i < huge; i++) sv.fault(GVA_BASE + i * 0x20_0000, 0);
  const t0 = now();
  sv.setDirtyLogging(true);
  const ms = now() - t0;
  return { huge_pages: huge, split_huge_pages: sv.sk.counters.split_huge_pages, ms };
}
