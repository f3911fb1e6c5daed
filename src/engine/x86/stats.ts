/**
 * The kernel's binary statistics for the x86 MMU (struct kvm_vm_stat / struct kvm_vcpu_stat), with the
 * names KVM exposes in debugfs and through KVM_GET_STATS_FD.
 */

export class KvmVmStat {
  mmu_shadow_zapped = 0;
  mmu_pte_write = 0;
  mmu_pde_zapped = 0;
  mmu_flooded = 0;
  mmu_recycled = 0;
  mmu_cache_miss = 0;
  mmu_unsync = 0;
  /** pages[level - 1]: leaf SPTEs mapped at 4K, 2M, 1G (pages_4k, pages_2m, pages_1g). */
  readonly pages = new Float64Array(3);
  nx_lpage_splits = 0;
  max_mmu_page_hash_collisions = 0;
  max_mmu_rmap_size = 0;
  remote_tlb_flush = 0;
  remote_tlb_flush_requests = 0;

  get pages_4k(): number {
    return this.pages[0]!;
  }
  get pages_2m(): number {
    return this.pages[1]!;
  }
  get pages_1g(): number {
    return this.pages[2]!;
  }

  snapshot(): Record<string, number> {
    return {
      mmu_shadow_zapped: this.mmu_shadow_zapped,
      mmu_pte_write: this.mmu_pte_write,
      mmu_pde_zapped: this.mmu_pde_zapped,
      mmu_flooded: this.mmu_flooded,
      mmu_recycled: this.mmu_recycled,
      mmu_cache_miss: this.mmu_cache_miss,
      mmu_unsync: this.mmu_unsync,
      pages_4k: this.pages_4k,
      pages_2m: this.pages_2m,
      pages_1g: this.pages_1g,
      nx_lpage_splits: this.nx_lpage_splits,
      max_mmu_page_hash_collisions: this.max_mmu_page_hash_collisions,
      max_mmu_rmap_size: this.max_mmu_rmap_size,
      remote_tlb_flush: this.remote_tlb_flush,
      remote_tlb_flush_requests: this.remote_tlb_flush_requests,
    };
  }
}

export class KvmVcpuStat {
  pf_taken = 0;
  pf_fixed = 0;
  pf_emulate = 0;
  pf_spurious = 0;
  pf_fast = 0;
  pf_mmio_spte_created = 0;
  pf_guest = 0;
  tlb_flush = 0;
  invlpg = 0;
  exits = 0;

  snapshot(): Record<string, number> {
    return {
      pf_taken: this.pf_taken,
      pf_fixed: this.pf_fixed,
      pf_emulate: this.pf_emulate,
      pf_spurious: this.pf_spurious,
      pf_fast: this.pf_fast,
      pf_mmio_spte_created: this.pf_mmio_spte_created,
      pf_guest: this.pf_guest,
      tlb_flush: this.tlb_flush,
      invlpg: this.invlpg,
      exits: this.exits,
    };
  }
}
