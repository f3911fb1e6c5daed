/**
 * struct kvm_mmu_page: one 4 KiB table of 512 SPTEs plus its bookkeeping, and the pool that gives each
 * table a host pfn. Child tables are found from a non-leaf SPTE by indexing an array with the pfn the
 * SPTE points to (the kernel uses page_private of the table's struct page; no string keys, no Map).
 *
 * Each table is a Uint32Array(1024): entry i is [2i] = bits 31:0, [2i+1] = bits 63:32.
 */

/** Page-table pages come from their own host pfn range so a table pfn never collides with guest RAM. */
export const MMU_TABLE_PFN_BASE = 0x40000;

/** Role word bits this file needs (kvm-x86-mmu.md 1.1); role.ts owns the full encode/decode. */
const ROLE_LEVEL_MASK = 0xf;
const ROLE_INVALID = 0x800;
const ROLE_AD_DISABLED = 0x1_0000;
const ROLE_GUEST_MODE = 0x2_0000;
const ROLE_IS_MIRROR = 0x8_0000;

/** SHADOW_NONPRESENT_VALUE = BIT_ULL(63): the high word of a fresh entry. */
export const SHADOW_NONPRESENT_HI = 0x8000_0000;

const NONPRESENT_TABLE = new Uint32Array(1024);
/** Small enough that an unused remainder stays well under the TDP bench's bytes-per-page budget. */
const SLAB_TABLES = 16;
for (let i = 1; i < 1024; i += 2) NONPRESENT_TABLE[i] = SHADOW_NONPRESENT_HI;

export class KvmMmuPage {
  role: number;
  gfn: number;
  /** The 512 SPTEs as 1024 32-bit halves. */
  spt: Uint32Array;
  /** Host pfn of spt (what __pa(sp->spt) >> PAGE_SHIFT gives). */
  readonly spt_pfn: number;
  tdp_mmu_page: boolean;
  /** TDP MMU: tdp_mmu_root_count (refcount); shadow MMU: root_count. */
  root_count = 0;
  /** Shadow MMU generation, or (TDP MMU) the tdp_mmu_scheduled_root_to_zap flag stored in the same byte. */
  mmu_valid_gen = 0;
  tdp_mmu_scheduled_root_to_zap = false;
  nx_huge_page_disallowed = false;
  /** On kvm->arch.possible_nx_huge_pages (possible_nx_huge_page_link is non-empty). */
  on_possible_nx_list = false;
  unsync = false;
  has_mapped_host_mmio = false;
  /** TDP MMU: the parent table and index whose SPTE points here (sp->ptep); null for roots. */
  parent: KvmMmuPage | null = null;
  parent_index = 0;
  /** TDX mirror SP: pfn of the page handed to the TDX module (sp->external_spt); 0 if none. */
  external_spt = 0;
  /** Design variant tdx_stolen_bits=sp_field: the stolen GPA bits (as a gfn mask) this SP maps. */
  gfn_stolen_bits = 0;
  /** Set once freed; a freed SP must never be reached again (catches use-after-free in the model). */
  freed = false;
  /** Shadow-MMU fields, unused by the TDP MMU (the shadow-MMU model extends them). */
  unsync_children = 0;
  write_flooding_count = 0;
  /** Shadow MMU (shadow_mmu.ts): gfn << 12 | ACC_* per entry, for indirect SPs up to 1G level; else null. */
  shadowed_translation: Float64Array | null = null;
  /** Shadow MMU: kvm_rmap_head of the parent SPTEs pointing here (encoding in rmap.ts; 0 = none). */
  parent_ptes = 0;
  /** Shadow MMU: 512-bit unsync_child_bitmap as 16 words (allocated with the shadow page). */
  unsync_child_bitmap: Uint32Array | null = null;
  /** Shadow MMU: next SP in the same mmu_page_hash bucket (hash_link). */
  hash_next: KvmMmuPage | null = null;
  /** Shadow MMU: neighbours on kvm->arch.active_mmu_pages (link); both null when off the list. */
  link_prev: KvmMmuPage | null = null;
  link_next: KvmMmuPage | null = null;

  constructor(spt: Uint32Array, spt_pfn: number, role: number, gfn: number, tdp_mmu_page: boolean) {
    this.spt = spt;
    this.spt_pfn = spt_pfn;
    this.role = role;
    this.gfn = gfn;
    this.tdp_mmu_page = tdp_mmu_page;
  }

  get level(): number {
    return this.role & ROLE_LEVEL_MASK;
  }

  /** Physical address of entry `i` (what the kernel's sptep is, through __pa). */
  sptep_pa(i: number): number {
    return this.spt_pfn * 4096 + i * 8;
  }
}

export function sp_level(sp: KvmMmuPage): number {
  return sp.role & ROLE_LEVEL_MASK;
}

export function is_mirror_sp(sp: KvmMmuPage): boolean {
  return (sp.role & ROLE_IS_MIRROR) !== 0;
}

export function sp_role_invalid(sp: KvmMmuPage): boolean {
  return (sp.role & ROLE_INVALID) !== 0;
}

export function sp_ad_disabled(sp: KvmMmuPage): boolean {
  return (sp.role & ROLE_AD_DISABLED) !== 0;
}

export function sp_guest_mode(sp: KvmMmuPage): boolean {
  return (sp.role & ROLE_GUEST_MODE) !== 0;
}

/** kvm_mmu_page_as_id(): role.smm (bits 31:24) nonzero -> address space 1. */
export function kvm_mmu_page_as_id(sp: KvmMmuPage): number {
  return sp.role >>> 24 !== 0 ? 1 : 0;
}

/**
 * Table pages: hands out host pfns from MMU_TABLE_PFN_BASE upward (freed pfns are reused, lowest
 * first is not promised) and maps pfn -> SP with a dense array.
 */
export class MmuPagePool {
  private readonly by_pfn: (KvmMmuPage | undefined)[] = [];
  private readonly free_pfns: number[] = [];
  private readonly free_tables: Uint32Array[] = [];
  /**
   * Never-used tables, cut SLAB_TABLES at a time from one buffer: one off-heap backing store per slab
   * instead of per table. Only the views are kept (a snapshot copies views, not the slab twice).
   */
  private readonly fresh_tables: Uint32Array[] = [];
  private next = 0;
  /** Number of live SPs (n_used_mmu_pages counts shadow pages only; this counts every table). */
  live = 0;

  alloc(role: number, gfn: number, tdp_mmu_page: boolean): KvmMmuPage {
    const slot = this.free_pfns.length !== 0 ? this.free_pfns.pop()! : this.next++;
    let spt = this.free_tables.pop();
    if (spt === undefined) {
      if (this.fresh_tables.length === 0) {
        const slab = new Uint32Array(1024 * SLAB_TABLES);
        for (let i = SLAB_TABLES - 1; i >= 0; i--) this.fresh_tables.push(slab.subarray(1024 * i, 1024 * (i + 1)));
      }
      spt = this.fresh_tables.pop()!;
    }
    // New tables start with every entry SHADOW_NONPRESENT_VALUE (the shadow page cache's init value).
    spt.set(NONPRESENT_TABLE);
    const sp = new KvmMmuPage(spt, MMU_TABLE_PFN_BASE + slot, role, gfn, tdp_mmu_page);
    this.by_pfn[slot] = sp;
    this.live++;
    return sp;
  }

  /** The SP whose table lives at host pfn `pfn`, if any (spte_to_child_sp / sptep_to_sp). */
  sp_of_pfn(pfn: number): KvmMmuPage | undefined {
    return this.by_pfn[pfn - MMU_TABLE_PFN_BASE];
  }

  free(sp: KvmMmuPage): void {
    if (sp.freed) throw new Error(`double free of SP at pfn ${sp.spt_pfn.toString(16)}`);
    sp.freed = true;
    const slot = sp.spt_pfn - MMU_TABLE_PFN_BASE;
    this.by_pfn[slot] = undefined;
    this.free_pfns.push(slot);
    this.free_tables.push(sp.spt);
    this.live--;
  }

  /** Bytes held by table storage (for memory accounting in benchmarks). */
  table_bytes(): number {
    return (this.live + this.free_tables.length) * 4096;
  }
}
