/**
 * Memslot side of the shadow-paging facade: guest page tables are read through the memslots (a table
 * in a gfn without a slot fails the walk, as kvm_vcpu_gfn_to_hva_prot does), and the default shadow
 * page budget follows the slots that exist.
 */
import type { GuestMemory } from '../mem/guest_memory';
import { MemoryGuestPageTables } from './paging_tmpl';
import { KVM_MEM_READONLY, type KvmMemorySlot } from './memslot';
import { kvm_mmu_calculate_default_mmu_pages, kvm_mmu_change_mmu_pages, type ShadowMmu } from './shadow_mmu';
import type { Kvm } from './vm';

const EFAULT = 14;

/** Guest tables in memory, reachable only where a memslot of the vCPU's address space maps the gfn. */
export class SlotGuestPageTables extends MemoryGuestPageTables {
  /**
   * The slot the last read_gpte looked up for gfn `read_gfn` (-1: none). The walker asks gpte_writable
   * about the entry it has just read, so that answer needs no second lookup; it is used once, then dropped.
   */
  private read_gfn = -1;
  private read_slot: KvmMemorySlot | undefined = undefined;
  private readonly slotReadOnly: (gpa: number) => boolean;

  constructor(
    mem: GuestMemory,
    private readonly slotOf: (gfn: number) => KvmMemorySlot | undefined,
  ) {
    super(mem);
    // A/D updates are skipped in a read-only slot (the walk cannot write back).
    this.readOnly = (gpa) => ((this.slotOf(Math.floor(gpa / 4096))?.flags ?? 0) & KVM_MEM_READONLY) !== 0;
    this.slotReadOnly = this.readOnly;
  }

  /** load_pdptrs reads guest memory: a CR3 in a gfn without a slot fails the load (#GP). */
  override load_pdptrs(maxphyaddr: number): boolean {
    if (this.slotOf(Math.floor(this.cr3Lo / 4096)) === undefined) return false;
    return super.load_pdptrs(maxphyaddr);
  }

  override read_gpte(gpa: number, size: 4 | 8, level: number, out: Uint32Array): boolean {
    const gfn = Math.floor(gpa / 4096);
    const slot = this.slotOf(gfn);
    this.read_gfn = gfn;
    this.read_slot = slot;
    if (slot === undefined) return false;
    return super.read_gpte(gpa, size, level, out);
  }

  override gpte_writable(gpa: number, level: number): boolean {
    const gfn = Math.floor(gpa / 4096);
    if (gfn !== this.read_gfn || this.readOnly !== this.slotReadOnly) return super.gpte_writable(gpa, level);
    const slot = this.read_slot;
    this.read_gfn = -1;
    this.read_slot = undefined;
    return ((slot?.flags ?? 0) & KVM_MEM_READONLY) === 0;
  }

  override cmpxchg_gpte(gpa: number, size: 4 | 8, level: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    if (this.slotOf(Math.floor(gpa / 4096)) === undefined) return -EFAULT;
    return super.cmpxchg_gpte(gpa, size, level, oldLo, oldHi, newLo, newHi);
  }
}

/** kvm_mmu_calculate_default_mmu_pages() over every memslot of every address space. */
export function shadow_default_mmu_pages(kvm: Kvm): number {
  let pages = 0;
  for (let as = 0; as < kvm.nr_as_ids; as++) for (const s of kvm.kvm_memslots(as).slots) pages += s.npages;
  return kvm_mmu_calculate_default_mmu_pages(pages);
}

/**
 * kvm_arch_commit_memory_region's budget step: creating or deleting a slot resizes the shadow page
 * budget unless userspace set one (KVM_SET_NR_MMU_PAGES).
 */
export function shadow_commit_budget(sk: ShadowMmu, change: string): void {
  if (sk.n_requested_mmu_pages !== 0 || (change !== 'create' && change !== 'delete')) return;
  kvm_mmu_change_mmu_pages(sk, shadow_default_mmu_pages(sk.kvm));
}
