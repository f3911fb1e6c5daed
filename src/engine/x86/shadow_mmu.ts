/**
 * The shadow MMU's page bookkeeping (mmu.c): the shadow-page hash keyed on gfn + role word, the
 * active list, the page budget, rmaps, linking/unlinking, mmu_set_spte, unsync/sync and zapping.
 *
 * `ShadowMmu` stands for the shadow-MMU half of kvm->arch; `ShadowVcpu` for the vCPU's shadow
 * kvm_mmu. Functions named like kernel functions take them where the kernel takes kvm / vcpu.
 * An sptep is a number (table pfn * 512 + index, see rmap.ts). Tables are Uint32Array(1024).
 */
import { probes, defineProbe } from '../probes';
import { onRestore } from '../snapshot';
import { EEXIST, ENOSPC } from '../errno';
import { trace } from '../trace_sink';
import { emitTracepoint, halvesToValue } from '../tracepoints/index';
import type { U64 } from '../bits/u64';
import { HostMemory, __GFP_DMA32 } from '../mem/host_memory';
import { KvmMmuPage, SHADOW_NONPRESENT_HI } from './mmu_page';
import type { Kvm } from './vm';
import { KVM_REQ_MMU_FREE_OBSOLETE_ROOTS } from './vm';
import {
  ACC_ALL,
  ACC_WRITE_MASK,
  PG_LEVEL_4K,
  PT_WRITABLE_MASK,
  SHADOW_NONPRESENT_VALUE_HI,
  SHADOW_NONPRESENT_VALUE_LO,
  SPTE_MMU_PRESENT_MASK,
  PT_PRESENT_MASK,
  type MakeSpteArgs,
  newMakeSpteArgs,
  make_spte,
  make_nonleaf_spte,
  make_mmio_spte,
  is_shadow_present_pte,
  is_large_pte,
  is_last_spte,
  is_mmio_spte,
  spte_to_pfn,
  leaf_spte_change_needs_tlb_flush,
  is_mmu_writable_spte,
  is_executable_pte,
  KVM_PAGES_PER_HPAGE,
  type SpteMasks,
} from './spte';
import {
  ROLE_DIRECT,
  ROLE_PASSTHROUGH,
  ROLE_INVALID,
  ROLE_LEVEL_MASK,
  ROLE_ACCESS_SHIFT,
  ROLE_AD_DISABLED,
  SYNC_PAGE_ROLE_IGNORE,
  kvm_mmu_child_role,
  ROLE_HAS_4_BYTE_GPTE,
  ROLE_QUADRANT_MASK,
  ROLE_QUADRANT_SHIFT,
} from './role';
import {
  PteListDescPool,
  RMAP_RECYCLE_THRESHOLD,
  RmapIterator,
  pte_list_add,
  pte_list_count,
  pte_list_remove,
  rmap_get_first,
  rmap_get_next,
} from './rmap';
import { KVM_MAX_HUGEPAGE_LEVEL, type KvmMemorySlot, gfn_to_index, kvm_mmu_gfn_allow_lpage, kvm_mmu_gfn_disallow_lpage, slot_gfn_to_host_pfn, kvm_slot_dirty_track_enabled } from './memslot';
import type { KvmVcpu, kvm_page_fault } from './vcpu';
import { is_noslot_pfn } from './vcpu';
import { is_obsolete_sp, kvm_gfn_is_write_tracked, mark_page_dirty_in_slot } from './mmu';
import { sptep_va } from './tdp_mmu';
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from './ret_pf';
import type { GuestMmu, GuestPageTableAccess, GuestWalker } from './paging_tmpl';

const F = 'arch/x86/kvm/mmu/mmu.c';
const SP_ARGS = ['as_id', 'gfn', 'level', 'sptep', 'old_spte', 'new_spte', 'sp'];

export const KVM_MMU_HASH_SHIFT = 12;
export const KVM_NUM_MMU_PAGES = 1 << KVM_MMU_HASH_SHIFT;
export const KVM_MIN_FREE_MMU_PAGES = 5;
export const KVM_REFILL_PAGES = 25;
/** Minimum default n_max_mmu_pages (KVM_MIN_ALLOC_MMU_PAGES). */
export const KVM_MIN_ALLOC_MMU_PAGES = 64;
/** KVM_PERMILLE_MMU_PAGES: the default budget is 2% of guest memory. */
export const KVM_PERMILLE_MMU_PAGES = 20;
export { KVM_MAX_HUGEPAGE_LEVEL };
export const PTE_PREFETCH_NUM = 8;
/** KVM_PAGE_ARRAY_NR: unsync pages gathered per mmu_unsync_walk batch. */
export const KVM_PAGE_ARRAY_NR = 16;
export const KVM_REQ_MMU_SYNC = 1 << 8;
export { EEXIST, ENOSPC };

/**
 * Design variant `pae_root` (seed 002) stores its role bit in the first unused role bit (20). Upstream
 * has no such bit; with `special` it is never set.
 */
export const ROLE_PAE_ROOT = 1 << 20;

export type SplitAccessVariant = 'cached' | 'propagate';
export type PaeRootVariant = 'special' | 'shadow_page';

// Probes (one per modelled kernel function).
const PR_GET_CHILD_SP = defineProbe('kvm_mmu_get_child_sp', 'shadow_mmu', F, 'find or create the child shadow page under an SPTE (-EEXIST when a table is already linked)', ['sptep', 'gfn', 'direct', 'access']);
const PR_GET_SP = defineProbe('kvm_mmu_get_shadow_page', 'shadow_mmu', F, 'shadow page for (gfn, role) with the vCPU caches', ['gfn', 'role']);
const PR___GET_SP = defineProbe('__kvm_mmu_get_shadow_page', 'shadow_mmu', F, 'hash lookup, else allocate; traces kvm_mmu_get_page', ['gfn', 'role']);
const PR_FIND_SP = defineProbe('kvm_mmu_find_shadow_page', 'shadow_mmu', F, 'walk the hash bucket: role mismatch, zap unsync, sync, miss', ['gfn', 'role']);
const PR_ALLOC_SP = defineProbe('kvm_mmu_alloc_shadow_page', 'shadow_mmu', F, 'allocate a shadow page, add it to the active list head and the hash', ['gfn', 'role']);
const PR_ACCOUNT_SHADOWED = defineProbe('account_shadowed', 'shadow_mmu', F, 'write-track (upper levels) or disallow huge pages over (4K) the guest table gfn', ['gfn', 'level']);
const PR_UNACCOUNT_SHADOWED = defineProbe('unaccount_shadowed', 'shadow_mmu', F, 'undo account_shadowed', ['gfn', 'level']);
const PR_LINK = defineProbe('link_shadow_page', 'shadow_mmu', F, 'point an SPTE at a child shadow page', ['sptep', 'parent_spte', 'new_spte', 'sp', 'role']);
const PR___LINK = defineProbe('__link_shadow_page', 'shadow_mmu', F, 'drop a huge leaf, install the non-leaf SPTE, add the parent pte, propagate unsync', ['sptep', 'parent_spte', 'new_spte', 'sp', 'role']);
const PR_SET_SPTE = defineProbe('mmu_set_spte', 'shadow_mmu', F, 'install a leaf SPTE (or MMIO SPTE) and its rmap', SP_ARGS);
const PR_DROP_PARENT = defineProbe('drop_parent_pte', 'shadow_mmu', F, 'unlink a parent SPTE from a child and clear it', SP_ARGS);
const PR_DROP_SPTE = defineProbe('drop_spte', 'shadow_mmu', F, 'clear a leaf SPTE and remove it from the rmap', SP_ARGS);
const PR_VALIDATE_DIRECT = defineProbe('validate_direct_spte', 'shadow_mmu', F, 'drop a direct child whose access no longer matches the guest PTE', ['sptep', 'direct_access', 'child_access']);
const PR_RMAP_ADD = defineProbe('rmap_add', 'shadow_mmu', F, 'record the translation and add the SPTE to the gfn rmap', ['sptep', 'gfn', 'access', 'level']);
const PR_PREP_ZAP = defineProbe('__kvm_mmu_prepare_zap_page', 'shadow_mmu', F, 'unlink a shadow page from children and parents and queue it for freeing', ['sp']);
const PR_COMMIT_ZAP = defineProbe('kvm_mmu_commit_zap_page', 'shadow_mmu', F, 'flush remote TLBs and free the queued shadow pages', ['count']);
const PR_ZAP_OLDEST = defineProbe('kvm_mmu_zap_oldest_mmu_pages', 'shadow_mmu', F, 'reclaim shadow pages from the active list tail (skipping roots)', ['nr_to_zap']);
const PR_MAKE_AVAIL = defineProbe('make_mmu_pages_available', 'shadow_mmu', F, 'keep at least KVM_MIN_FREE_MMU_PAGES free', ['avail']);
const PR_TRY_UNSYNC = defineProbe('mmu_try_to_unsync_pages', 'shadow_mmu', F, 'may a writable SPTE map this gfn? unsync its 4K shadow pages, or refuse', ['gfn', 'synchronizing', 'prefetch']);
const PR_UNSYNC = defineProbe('kvm_unsync_page', 'shadow_mmu', F, 'mark a 4K shadow page unsync and tell its parents', ['sp']);
const PR_SYNC_CHILDREN = defineProbe('mmu_sync_children', 'shadow_mmu', F, 'write-protect and resync every unsync page below a shadow page', ['sp', 'can_yield']);
const PR_SYNC_PAGE = defineProbe('kvm_sync_page', 'shadow_mmu', F, 're-read every gPTE of an unsync page (sync_spte)', ['sp']);
const PR_WRPROT_MASKED = defineProbe('kvm_mmu_write_protect_pt_masked', 'shadow_mmu', F, 'dirty log harvest: clear W in the 4K SPTEs of up to 64 gfns through their rmaps', ['gfn_offset', 'mask']);
const PR_WRPROT = defineProbe('kvm_mmu_slot_gfn_write_protect', 'shadow_mmu', F, 'clear W (and MMU-writable) in every SPTE mapping a gfn', ['gfn', 'min_level']);
const PR_ZAP_GFN_RMAP = defineProbe('kvm_zap_rmap', 'shadow_mmu', F, 'zap every SPTE in one gfn rmap', ['gfn', 'level']);

const PR2_DROP_LARGE_SPTE = defineProbe('drop_large_spte', 'shadow_mmu', F, 'drop a huge leaf SPTE that a table is about to replace', ['sptep', 'flush']);
const PR2_RMAP_REMOVE = defineProbe('rmap_remove', 'shadow_mmu', F, 'remove an SPTE from its gfn rmap', ['sptep']);
const PR2_MARK_UNSYNC = defineProbe('mark_unsync', 'shadow_mmu', F, 'set the bit of the SPTE in the parent unsync_child_bitmap, recursing up on 0 -> 1', ['sptep']);
const PR2_KVM_MMU_MARK_PARENTS_UNSYNC = defineProbe('kvm_mmu_mark_parents_unsync', 'shadow_mmu', F, 'mark_unsync on every parent SPTE', ['sp']);
const PR2_KVM_UNLINK_UNSYNC_PAGE = defineProbe('kvm_unlink_unsync_page', 'shadow_mmu', F, 'clear sp->unsync; traces kvm_mmu_sync_page', ['sp']);
const PR2_KVM_SYNC_PAGE = defineProbe('__kvm_sync_page', 'shadow_mmu', F, 'role check, then sync_spte for every present entry', ['sp']);
const PR2_MMU_UNSYNC_WALK = defineProbe('mmu_unsync_walk', 'shadow_mmu', F, 'gather unsync 4K pages below a shadow page (KVM_PAGE_ARRAY_NR per batch)', ['sp']);
const PR2_MMU_PAGE_ZAP_PTE = defineProbe('mmu_page_zap_pte', 'shadow_mmu', F, 'zap one SPTE: leaf -> drop_spte, table -> drop_parent_pte, MMIO -> clear', ['sp', 'index']);
const PR2_KVM_MMU_PAGE_UNLINK_CHILDREN = defineProbe('kvm_mmu_page_unlink_children', 'shadow_mmu', F, 'mmu_page_zap_pte on every entry', ['sp']);
const PR2_KVM_MMU_UNLINK_PARENTS = defineProbe('kvm_mmu_unlink_parents', 'shadow_mmu', F, 'drop every parent SPTE pointing at the page', ['sp']);
const PR2_MMU_ZAP_UNSYNC_CHILDREN = defineProbe('mmu_zap_unsync_children', 'shadow_mmu', F, 'zap the unsync pages below a page being zapped', ['sp']);
const PR2_KVM_MMU_PREPARE_ZAP_PAGE = defineProbe('kvm_mmu_prepare_zap_page', 'shadow_mmu', F, '__kvm_mmu_prepare_zap_page without the zapped count', ['sp']);
const PR2_KVM_MMU_FREE_SHADOW_PAGE = defineProbe('kvm_mmu_free_shadow_page', 'shadow_mmu', F, 'unhash and free a zapped shadow page', ['sp']);
const PR2_KVM_MMU_CHANGE_MMU_PAGES = defineProbe('kvm_mmu_change_mmu_pages', 'shadow_mmu', F, 'set n_max_mmu_pages, zapping the oldest pages down to it', ['goal']);
const PR2_KVM_MMU_ZAP_ALL = defineProbe('kvm_mmu_zap_all', 'shadow_mmu', F, 'zap every shadow page', []);
const PR2_KVM_MMU_ZAP_MEMSLOT = defineProbe('kvm_mmu_zap_memslot', 'shadow_mmu', F, 'zap shadow pages and rmaps of one memslot', ['slot']);
const PR2_DIRECT_PTE_PREFETCH = defineProbe('direct_pte_prefetch', 'shadow_mmu', F, 'prefetch the neighbours of a direct 4K SPTE', ['sptep']);
const PR2___DIRECT_PTE_PREFETCH = defineProbe('__direct_pte_prefetch', 'shadow_mmu', F, 'find runs of non-present SPTEs in the 8-entry group', ['sptep']);
const PR2_DIRECT_PTE_PREFETCH_MANY = defineProbe('direct_pte_prefetch_many', 'shadow_mmu', F, 'map a run of direct SPTEs from the memslot', ['start', 'end']);
const PR2_SPTE_WRITE_PROTECT = defineProbe('spte_write_protect', 'shadow_mmu', F, 'clear W (and MMU-writable with pt_protect)', ['sptep', 'pt_protect']);
const PR2_MARK_MMIO_SPTE = defineProbe('mark_mmio_spte', 'shadow_mmu', F, 'install an MMIO SPTE with the memslot generation', ['sptep', 'gfn', 'access']);

/** hash_64(gfn, KVM_MMU_HASH_SHIFT): the top 12 bits of gfn * GOLDEN_RATIO_64 (mod 2^64), in 32-bit pieces. */
export function kvm_page_table_hashfn(gfn: number): number {
  const gl = gfn >>> 0;
  const gh = Math.floor(gfn / 0x1_0000_0000) >>> 0;
  const Gl = 0x80b583eb;
  const Gh = 0x61c88646;
  // High 32 bits of gl * Gl from two exact double products (each below 2^48):
  // floor(gl*Gl / 2^32) = floor((a1*Gl + floor(a0*Gl / 2^16)) / 2^16) with gl = a1*2^16 + a0.
  const mulhi = Math.floor(((gl >>> 16) * Gl + Math.floor((gl & 0xffff) * Gl / 0x10000)) / 0x10000);
  const hi = (mulhi + Math.imul(gl, Gh) + Math.imul(gh, Gl)) >>> 0;
  return hi >>> (32 - KVM_MMU_HASH_SHIFT);
}

/** Model-wide scratch (no allocation per SPTE). */
const tmp: U64 = { lo: 0, hi: 0 };
const rmap_res = { head: 0 };

/** The shadow-MMU fields of kvm->arch. */
export class ShadowMmu {
  readonly kvm: Kvm;
  readonly masks: SpteMasks;
  /** kvm->arch.mmu_page_hash: bucket heads; SPs chain through hash_next. */
  readonly mmu_page_hash: (KvmMmuPage | null)[] = new Array(KVM_NUM_MMU_PAGES).fill(null);
  /** kvm->arch.active_mmu_pages: head = newest. */
  active_head: KvmMmuPage | null = null;
  active_tail: KvmMmuPage | null = null;
  n_max_mmu_pages = KVM_MIN_ALLOC_MMU_PAGES;
  n_requested_mmu_pages = 0;
  indirect_shadow_pages = 0;
  shadow_root_allocated = false;
  readonly desc_pool = new PteListDescPool(1024);
  /** slot->arch.rmap[level - 1]. */
  readonly rmaps = new Map<KvmMemorySlot, Int32Array[]>();
  /** gfn_write_track counts (kvm.arch.gfn_write_track, which the fault path's page-track check reads). */
  get write_track(): Map<number, number> {
    return this.kvm.arch.gfn_write_track;
  }
  /** slot->arch.gfn_write_track (see slot_write_track) and a one-entry cache of the last slot's array. */
  readonly slot_write_track = new Map<KvmMemorySlot, Uint16Array>();
  wt_last_slot: KvmMemorySlot | null = null;
  wt_last: Uint16Array | null = null;
  /** Shadow pages whose table is not a pool page (DMA32 PAE roots of the `shadow_page` variant). */
  readonly extra_sp = new Map<number, KvmMmuPage>();
  /** Host pages below 4 GiB (pae_root) and other special-root pages. */
  readonly host: HostMemory;
  readonly make_spte_args: MakeSpteArgs = newMakeSpteArgs();
  /** shadowed_translation arrays of freed pages, and never-used ones cut from a slab (alloc_shadowed_translation). */
  readonly st_free: Float64Array[] = [];
  readonly st_fresh: Float64Array[] = [];
  readonly split_access: SplitAccessVariant;
  /** Model knob: let eager splitting cover L1 shadow pages too (upstream: nested guest_mode pages only). */
  split_non_nested = false;
  readonly pae_root_variant: PaeRootVariant;
  /** default_pae_pdpte of the `shadow_page` variant: P set, SPTE_MMU_PRESENT clear, points at a zero page. */
  default_pae_pdpte_lo = 0;
  default_pae_pdpte_hi = 0;
  readonly vcpus: ShadowVcpu[] = [];
  /** Model counters used by reports. */
  readonly counters = { sp_created: 0, sp_freed: 0, validate_direct_drops: 0, split_huge_pages: 0, root_loads: 0, dma32_pages: 0 };
  readonly rmap_it = new RmapIterator();

  constructor(kvm: Kvm, opts: { split_access?: SplitAccessVariant; pae_root?: PaeRootVariant; n_max_mmu_pages?: number } = {}) {
    this.kvm = kvm;
    this.masks = kvm.masks;
    this.split_access = opts.split_access ?? 'cached';
    this.pae_root_variant = opts.pae_root ?? 'special';
    // Zone layout: a small DMA32 range under the pool's pfns (pool tables start at 1 GiB).
    this.host = new HostMemory({ firstPfn: 0x1000, endPfn: 0x3_f000 });
    if (opts.n_max_mmu_pages !== undefined) this.n_max_mmu_pages = opts.n_max_mmu_pages;
    const a = this.make_spte_args;
    a.mmu_try_to_unsync_pages = (slot: unknown, gfn: number, synchronizing: boolean, prefetch: boolean) =>
      mmu_try_to_unsync_pages(this, slot as KvmMemorySlot | null, gfn, synchronizing, prefetch);
    a.mark_page_dirty_in_slot = (slot: unknown, gfn: number) => mark_page_dirty_in_slot(kvm, slot as KvmMemorySlot, gfn);
    a.nx_huge_page_enabled = kvm.is_nx_huge_page_enabled();
    if (this.pae_root_variant === 'shadow_page') {
      const zero = this.host.alloc_page(0);
      this.host.page(zero);
      const pa = zero * 4096;
      this.default_pae_pdpte_lo = ((pa >>> 0) | PT_PRESENT_MASK | this.masks.shadow_me_value.lo) >>> 0;
      this.default_pae_pdpte_hi = (Math.floor(pa / 0x1_0000_0000) | this.masks.shadow_me_value.hi) >>> 0;
    }
  }

  /** sptep_to_sp / spte_to_child_sp by table pfn. */
  sp_of_pfn(pfn: number): KvmMmuPage | undefined {
    return this.kvm.pool.sp_of_pfn(pfn) ?? this.extra_sp.get(pfn);
  }

  /** Active list in order, newest first (views, tests; allocates). */
  active_list(): KvmMmuPage[] {
    const out: KvmMmuPage[] = [];
    for (let sp = this.active_head; sp !== null; sp = sp.link_next) out.push(sp);
    return out;
  }
}

/** One entry of mmu->prev_roots. */
export interface KvmMmuRootInfo {
  pgd: number;
  /** The root SP; null = INVALID_PAGE. Special roots are never cached. */
  sp: KvmMmuPage | null;
}

export const ROOT_INVALID = 0;
export const ROOT_SP = 1;
export const ROOT_PAE = 2;
export const ROOT_PML4 = 3;
export const ROOT_PML5 = 4;
export const ROOT_DUMMY = 5;

/** The shadow-paging struct kvm_mmu of one vCPU (root_mmu with TDP off). */
export class ShadowVcpu {
  readonly vcpu: KvmVcpu;
  readonly sk: ShadowMmu;
  cpu_role_base = 0;
  cpu_role_ext = 0;
  root_role = 0;
  /** What root.hpa is: ROOT_INVALID / ROOT_SP / ROOT_PAE / ROOT_PML4 / ROOT_PML5 / ROOT_DUMMY. */
  root_kind = ROOT_INVALID;
  root_sp: KvmMmuPage | null = null;
  root_pgd = 0;
  readonly prev_roots: KvmMmuRootInfo[] = [{ pgd: 0, sp: null }, { pgd: 0, sp: null }, { pgd: 0, sp: null }];
  /** mmu->pae_root: host pfn (below 4 GiB) and contents; -1 = not allocated. */
  pae_root_pfn = -1;
  pae_root: Uint32Array | null = null;
  pml4_root_pfn = -1;
  pml4_root: Uint32Array | null = null;
  pml5_root_pfn = -1;
  pml5_root: Uint32Array | null = null;
  /** `shadow_page` variant: vcpu->arch.mmu_pae_root_cache (a DMA32 pfn, -1 = empty). */
  mmu_pae_root_cache = -1;
  /** Host root level for PAE-or-smaller guests (3 with shadow paging; 4/5 with a special-root host). */
  guest: GuestMmu | null = null;
  src: GuestPageTableAccess | null = null;
  walker: GuestWalker | null = null;
  /** mmu->sync_spte (FNAME(sync_spte)); set by shadow_paging.ts. */
  sync_spte: ((sv: ShadowVcpu, sp: KvmMmuPage, i: number) => number) | null = null;
  /** mmu->pdptrs: four cached PDPTEs (PAE guests), [2i] lo, [2i+1] hi. */
  readonly pdptrs = new Uint32Array(8);
  /** Last injected #PF (kvm_inject_emulated_page_fault), or null. */
  injected: { vector: number; error_code: number; address: number } | null = null;
  /** vcpu->requests: the KvmVcpu's own word (one set of requests per vCPU). */
  get requests(): number {
    return this.vcpu.requests;
  }
  set requests(v: number) {
    this.vcpu.requests = v;
  }
  readonly walk_it = new ShadowWalkIterator();
  /** Walk state of kvm_mmu_invalidate_addr (INVLPG / INVPCID), apart from the fault's. */
  readonly invalidate_it = new ShadowWalkIterator();
  /** Walk state of the lockless walks (fast_page_fault, MMIO SPTE lookup). */
  readonly lockless_it = new ShadowWalkIterator();
  /** gw->prefetch_ptes: the 4K gPTE group of the last fault (lo, hi pairs), read by FNAME(gpte_changed). */
  readonly prefetch_ptes = new Uint32Array(2 * PTE_PREFETCH_NUM);
  /** What the guest walker reads of the vCPU (RFLAGS.AC, PKRU). */
  readonly walk_vcpu = { vcpu_id: 0, rflags: 0x2, pkru: 0 };

  constructor(sk: ShadowMmu, vcpu: KvmVcpu) {
    this.sk = sk;
    this.vcpu = vcpu;
    this.walk_vcpu.vcpu_id = vcpu.vcpu_id;
    sk.vcpus.push(this);
    shadow_vcpus.set(vcpu, this);
  }

  get root_level(): number {
    return this.root_role & ROLE_LEVEL_MASK;
  }

  get cpu_level(): number {
    return this.cpu_role_base & ROLE_LEVEL_MASK;
  }

  get direct(): boolean {
    return (this.root_role & ROLE_DIRECT) !== 0;
  }
}

/** The shadow-MMU half of each vCPU, for entry points that the common code calls with the KvmVcpu. */
const shadow_vcpus = new WeakMap<KvmVcpu, ShadowVcpu>();

export function shadow_vcpu_of(vcpu: KvmVcpu): ShadowVcpu {
  const sv = shadow_vcpus.get(vcpu);
  if (sv === undefined) throw new Error(`vCPU ${vcpu.vcpu_id} has no shadow MMU`);
  return sv;
}

/** struct kvm_shadow_walk_iterator: addr, the current table and index, level. */
export class ShadowWalkIterator {
  addr = 0;
  /** addr as 32-bit halves, so each level's index is shifts and masks. */
  addr_lo = 0;
  addr_hi = 0;
  level = 0;
  table: Uint32Array | null = null;
  table_pfn = 0;
  index = 0;
  sptep = 0;
}

/** gfn_to_gpa-free helpers for table physical addresses as halves. */
function pfn_pa_lo(pfn: number): number {
  return (pfn * 4096) % 0x1_0000_0000;
}
function pfn_pa_hi(pfn: number): number {
  return Math.floor(pfn / 0x10_0000);
}

function table_of_pfn(sk: ShadowMmu, sv: ShadowVcpu | null, pfn: number): Uint32Array | null {
  const sp = sk.sp_of_pfn(pfn);
  if (sp !== undefined) return sp.spt;
  if (sv !== null) {
    if (pfn === sv.pae_root_pfn) return sv.pae_root;
    if (pfn === sv.pml4_root_pfn) return sv.pml4_root;
    if (pfn === sv.pml5_root_pfn) return sv.pml5_root;
  }
  return null;
}

/** The table behind a present SPTE's address bits (child SP or special table). */
function spte_table_pfn(sk: ShadowMmu, lo: number, hi: number): number {
  return spte_to_pfn(sk.masks, lo, hi);
}

/** shadow_walk_init_using_root() for a root shadow page (prev_roots entries are always SPs). */
export function shadow_walk_init_using_root(it: ShadowWalkIterator, sv: ShadowVcpu, root: KvmMmuPage, addr: number): void {
  set_walk_addr(it, addr);
  it.level = root.role & ROLE_LEVEL_MASK;
  it.table_pfn = root.spt_pfn;
  it.table = root.spt;
  if (it.level >= 4 && !sv.direct && sv.cpu_level < 4) it.level = 0;
}

/** shadow_walk_init_using_root + shadow_walk_init. */
export function shadow_walk_init(it: ShadowWalkIterator, sv: ShadowVcpu, addr: number): void {
  const sk = sv.sk;
  set_walk_addr(it, addr);
  it.level = sv.root_level;
  if (sv.root_kind === ROOT_INVALID || sv.root_kind === ROOT_DUMMY) {
    it.level = 0;
    return;
  }
  let pfn: number;
  if (sv.root_kind === ROOT_SP) pfn = sv.root_sp!.spt_pfn;
  else if (sv.root_kind === ROOT_PAE) pfn = sv.pae_root_pfn;
  else if (sv.root_kind === ROOT_PML4) pfn = sv.pml4_root_pfn;
  else pfn = sv.pml5_root_pfn;
  // A 4/5-level shadow root over a < 4-level guest (non-direct): start at the PAE table.
  if (it.level >= 4 && !sv.direct && sv.cpu_level < 4) {
    pfn = sv.pae_root_pfn;
    it.level = 3;
  }
  if (it.level === 3 && (sv.root_kind !== ROOT_SP || (sv.root_sp!.role & ROLE_PAE_ROOT) === 0)) {
    // Special PAE root: select the PDPTE and step to the level-2 shadow page it names.
    const t = table_of_pfn(sk, sv, pfn)!;
    const i = Math.floor(addr / 0x4000_0000) & 3;
    const lo = t[2 * i]!;
    const hi = t[2 * i + 1]!;
    if ((lo & PT_PRESENT_MASK) === 0) {
      it.level = 0;
      return;
    }
    pfn = spte_table_pfn(sk, lo, hi);
    it.level = 2;
  }
  it.table_pfn = pfn;
  it.table = table_of_pfn(sk, sv, pfn);
  if (it.table === null) it.level = 0;
}

function set_walk_addr(it: ShadowWalkIterator, addr: number): void {
  it.addr = addr;
  it.addr_lo = addr >>> 0;
  it.addr_hi = Math.floor(addr / 0x1_0000_0000) >>> 0;
}

/** shadow_walk_okay: computes the index at this level (address bits 12 + 9 * (level - 1) and up). */
export function shadow_walk_okay(it: ShadowWalkIterator): boolean {
  const level = it.level;
  if (level < PG_LEVEL_4K) return false;
  const shift = 3 + 9 * level;
  it.index = (shift < 32 ? (it.addr_lo >>> shift) | (it.addr_hi << (32 - shift)) : it.addr_hi >>> (shift - 32)) & 511;
  it.sptep = it.table_pfn * 512 + it.index;
  return true;
}

/** __shadow_walk_next / shadow_walk_next. */
export function shadow_walk_next(it: ShadowWalkIterator, sk: ShadowMmu): void {
  const t = it.table!;
  const lo = t[2 * it.index]!;
  const hi = t[2 * it.index + 1]!;
  if (!is_shadow_present_pte(lo, hi) || is_last_spte(lo, hi, it.level)) {
    it.level = 0;
    return;
  }
  const pfn = spte_table_pfn(sk, lo, hi);
  const sp = sk.sp_of_pfn(pfn);
  if (sp === undefined) {
    it.level = 0;
    return;
  }
  it.table_pfn = pfn;
  it.table = sp.spt;
  it.level--;
}

// ---------------------------------------------------------------------------------------------------
// SPTE access helpers.

export function sptep_to_sp(sk: ShadowMmu, sptep: number): KvmMmuPage {
  const sp = sk.sp_of_pfn(sptep >>> 9);
  if (sp === undefined) throw new Error(`sptep ${sptep} is not in a shadow page`);
  return sp;
}

function spt_lo(sk: ShadowMmu, sptep: number): number {
  return sptep_to_sp(sk, sptep).spt[2 * (sptep & 511)]!;
}

/** spte_to_child_sp for a present non-leaf SPTE. */
export function spte_to_child_sp(sk: ShadowMmu, lo: number, hi: number): KvmMmuPage | null {
  return sk.sp_of_pfn(spte_to_pfn(sk.masks, lo, hi)) ?? null;
}

function spte_obj(lo: number, hi: number): { lo: number; hi: number } {
  return { lo, hi };
}

function sp_as_id(sp: KvmMmuPage): number {
  return sp.role >>> 24 !== 0 ? 1 : 0;
}

/** sp_has_gptes(): indirect and not passthrough. */
export function sp_has_gptes(sp: KvmMmuPage): boolean {
  return (sp.role & (ROLE_DIRECT | ROLE_PASSTHROUGH | ROLE_PAE_ROOT)) === 0;
}

/** kvm_mmu_page_get_gfn(). */
export function kvm_mmu_page_get_gfn(sp: KvmMmuPage, index: number): number {
  if ((sp.role & ROLE_PASSTHROUGH) !== 0) return sp.gfn;
  if (sp.shadowed_translation !== null) return Math.floor(sp.shadowed_translation[index]! / 4096);
  return sp.gfn + index * 2 ** (((sp.role & ROLE_LEVEL_MASK) - 1) * 9);
}

/** kvm_mmu_page_get_access(). */
export function kvm_mmu_page_get_access(sp: KvmMmuPage, index: number): number {
  if (sp.shadowed_translation !== null) return sp.shadowed_translation[index]! % 8;
  return (sp.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL;
}

/** kvm_mmu_page_set_translation(). */
export function kvm_mmu_page_set_translation(sp: KvmMmuPage, index: number, gfn: number, access: number): void {
  if (sp.shadowed_translation !== null) {
    sp.shadowed_translation[index] = gfn * 4096 + (access & ACC_ALL);
  }
}

/** kvm_mmu_page_set_access(). */
export function kvm_mmu_page_set_access(sp: KvmMmuPage, index: number, access: number): void {
  kvm_mmu_page_set_translation(sp, index, kvm_mmu_page_get_gfn(sp, index), access);
}

function sp_level(sp: KvmMmuPage): number {
  return sp.role & ROLE_LEVEL_MASK;
}

/** Remote TLB flush of the gfn range an SPTE at `level` maps. */
function kvm_flush_remote_tlbs_gfn(sk: ShadowMmu, gfn: number, level: number): void {
  const pages = KVM_PAGES_PER_HPAGE(level);
  sk.kvm.kvm_flush_remote_tlbs_range(gfn - (gfn % pages), pages);
}

function kvm_flush_remote_tlbs_sptep(sk: ShadowMmu, sptep: number): void {
  const sp = sptep_to_sp(sk, sptep);
  kvm_flush_remote_tlbs_gfn(sk, kvm_mmu_page_get_gfn(sp, sptep & 511), sp_level(sp));
}

/** mmu_spte_set(): install into a non-present entry. */
function mmu_spte_set(sk: ShadowMmu, sptep: number, lo: number, hi: number): void {
  const t = sptep_to_sp(sk, sptep).spt;
  const j = 2 * (sptep & 511);
  t[j] = lo;
  t[j + 1] = hi;
}

/** mmu_spte_update(): returns whether a TLB flush is needed. */
function mmu_spte_update(sk: ShadowMmu, sptep: number, lo: number, hi: number): boolean {
  const t = sptep_to_sp(sk, sptep).spt;
  const j = 2 * (sptep & 511);
  const olo = t[j]!;
  const ohi = t[j + 1]!;
  t[j] = lo;
  t[j + 1] = hi;
  if (!is_shadow_present_pte(olo, ohi)) return false;
  return leaf_spte_change_needs_tlb_flush(sk.masks, olo, ohi, lo, hi);
}

/** mmu_spte_clear_no_track(). */
function mmu_spte_clear_no_track(sk: ShadowMmu, sptep: number): void {
  mmu_spte_set(sk, sptep, SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI);
}

// ---------------------------------------------------------------------------------------------------
// Rmaps.

/** gfn_to_rmap(): slot->arch.rmap[level - 1] and the index; allocates the level array on first use. */
function slot_rmap(sk: ShadowMmu, slot: KvmMemorySlot, level: number): Int32Array {
  if (slot === last_rmap_slot && sk === last_rmap_sk) return last_rmap_arrays![level - 1]!;
  let r = sk.rmaps.get(slot);
  if (r === undefined) {
    r = [];
    for (let l = 1; l <= KVM_MAX_HUGEPAGE_LEVEL; l++) {
      const n = gfn_to_index(slot.base_gfn + slot.npages - 1, slot.base_gfn, l) + 1;
      r.push(new Int32Array(n));
    }
    sk.rmaps.set(slot, r);
  }
  last_rmap_sk = sk;
  last_rmap_slot = slot;
  last_rmap_arrays = r;
  return r[level - 1]!;
}

/** One-entry cache of the last slot's rmap arrays (the fault path hits the same slot over and over). */
let last_rmap_sk: ShadowMmu | null = null;
let last_rmap_slot: KvmMemorySlot | null = null;
let last_rmap_arrays: Int32Array[] | null = null;
onRestore(() => {
  last_rmap_sk = null;
  last_rmap_slot = null;
  last_rmap_arrays = null;
});

/** Forget cached rmap arrays of a slot whose rmaps are being dropped. */
function slot_rmap_forget(sk: ShadowMmu, slot: KvmMemorySlot): void {
  sk.rmaps.delete(slot);
  if (last_rmap_slot === slot) {
    last_rmap_sk = null;
    last_rmap_slot = null;
    last_rmap_arrays = null;
  }
}

function slot_of_sp_gfn(sk: ShadowMmu, sp: KvmMmuPage, gfn: number): KvmMemorySlot | null {
  return sk.kvm.kvm_memslots(sp_as_id(sp)).lookup(gfn) ?? null;
}

/** The rmap_add probe, out of line so its argument object does not weigh on rmap_add's inlining. */
function rmap_add_probe_hit(sptep: number, gfn: number, access: number, level: number): void {
  probes.hit(PR_RMAP_ADD, { sptep, gfn, access, level });
}

/** rmap_add() / __rmap_add(). */
function rmap_add(sk: ShadowMmu, slot: KvmMemorySlot, sptep: number, gfn: number, access: number, sp_: KvmMmuPage | null = null): void {
  const sp = sp_ ?? sptep_to_sp(sk, sptep);
  const level = sp_level(sp);
  if (probes.armed) rmap_add_probe_hit(sptep, gfn, access, level);
  kvm_mmu_page_set_translation(sp, sptep & 511, gfn, access);
  sk.kvm.stat.pages[level - 1]!++;
  // slot_rmap's one-entry cache, tested here: the call itself is what the fault path would pay.
  const arr = slot === last_rmap_slot && sk === last_rmap_sk ? last_rmap_arrays![level - 1]! : slot_rmap(sk, slot, level);
  const idx = level === PG_LEVEL_4K ? gfn - slot.base_gfn : gfn_to_index(gfn, slot.base_gfn, level);
  const res = rmap_res;
  const count = pte_list_add(sk.desc_pool, arr[idx]!, sptep, res);
  arr[idx] = res.head;
  if (count > sk.kvm.stat.max_mmu_rmap_size) sk.kvm.stat.max_mmu_rmap_size = count;
  if (count > RMAP_RECYCLE_THRESHOLD) {
    kvm_zap_all_rmap_sptes(sk, arr, idx);
    kvm_flush_remote_tlbs_gfn(sk, gfn, level);
  }
}

/** rmap_remove(). */
function rmap_remove(sk: ShadowMmu, sptep: number): void {
  if (probes.armed) probes.hit(PR2_RMAP_REMOVE, { sptep });
  const sp = sptep_to_sp(sk, sptep);
  const gfn = kvm_mmu_page_get_gfn(sp, sptep & 511);
  const slot = slot_of_sp_gfn(sk, sp, gfn);
  if (slot === null) return;
  const level = sp_level(sp);
  const arr = slot_rmap(sk, slot, level);
  const idx = level === PG_LEVEL_4K ? gfn - slot.base_gfn : gfn_to_index(gfn, slot.base_gfn, level);
  arr[idx] = pte_list_remove(sk.desc_pool, arr[idx]!, sptep);
}

/** kvm_zap_all_rmap_sptes(): clear every SPTE of one rmap (track bits, stats) and free the list. */
function kvm_zap_all_rmap_sptes(sk: ShadowMmu, arr: Int32Array, idx: number): boolean {
  const head = arr[idx]!;
  if (head === 0) return false;
  const it = new RmapIterator();
  const list: number[] = [];
  for (let s = rmap_get_first(sk.desc_pool, head, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) list.push(s);
  for (const s of list) {
    const sp = sptep_to_sp(sk, s);
    mmu_spte_clear_no_track(sk, s);
    sk.kvm.stat.pages[sp_level(sp) - 1]!--;
  }
  let h = head;
  for (const s of list) h = pte_list_remove(sk.desc_pool, h, s);
  arr[idx] = h;
  return true;
}

/** mmu_spte_clear_track_bits + rmap_remove: drop_spte(). */
export function drop_spte(sk: ShadowMmu, sptep: number): void {
  const sp = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  const olo = sp.spt[j]!;
  const ohi = sp.spt[j + 1]!;
  if (probes.armed) {
    probes.hit(PR_DROP_SPTE, { as_id: sp_as_id(sp), gfn: kvm_mmu_page_get_gfn(sp, sptep & 511), level: sp_level(sp), sptep, old_spte: spte_obj(olo, ohi), new_spte: spte_obj(SHADOW_NONPRESENT_VALUE_LO, SHADOW_NONPRESENT_VALUE_HI), sp });
  }
  mmu_spte_clear_no_track(sk, sptep);
  if (is_shadow_present_pte(olo, ohi)) {
    sk.kvm.stat.pages[sp_level(sp) - 1]!--;
    rmap_remove(sk, sptep);
  }
}

/** drop_large_spte(). */
function drop_large_spte(sk: ShadowMmu, sptep: number, flush: boolean): void {
  if (probes.armed) probes.hit(PR2_DROP_LARGE_SPTE, { sptep, flush });
  const sp = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  if (!is_large_pte(sp.spt[j]!, sp.spt[j + 1]!)) return;
  drop_spte(sk, sptep);
  if (flush) kvm_flush_remote_tlbs_sptep(sk, sptep);
}

/** The rmap list of (gfn, level) in `slot` (views/tests; allocates). */
export function gfn_rmap_entries(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number, level: number): number[] {
  const arr = slot_rmap(sk, slot, level);
  const out: number[] = [];
  const it = new RmapIterator();
  for (let s = rmap_get_first(sk.desc_pool, arr[gfn_to_index(gfn, slot.base_gfn, level)]!, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) out.push(s);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Parent ptes, unsync propagation.

function mmu_page_add_parent_pte(sk: ShadowMmu, sp: KvmMmuPage, sptep: number): void {
  const res = rmap_res;
  pte_list_add(sk.desc_pool, sp.parent_ptes, sptep, res);
  sp.parent_ptes = res.head;
}

function mmu_page_remove_parent_pte(sk: ShadowMmu, sp: KvmMmuPage, sptep: number): void {
  sp.parent_ptes = pte_list_remove(sk.desc_pool, sp.parent_ptes, sptep);
}

/**
 * drop_parent_pte(): unlink `parent` from `sp` and clear it. Under the `shadow_page` PAE variant an
 * entry of a PAE-root shadow page goes back to the default PDPTE instead.
 */
export function drop_parent_pte(sk: ShadowMmu, sp: KvmMmuPage, sptep: number): void {
  const parent_sp = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  const olo = parent_sp.spt[j]!;
  const ohi = parent_sp.spt[j + 1]!;
  const pae = (parent_sp.role & ROLE_PAE_ROOT) !== 0;
  const nlo = pae ? sk.default_pae_pdpte_lo : SHADOW_NONPRESENT_VALUE_LO;
  const nhi = pae ? sk.default_pae_pdpte_hi : SHADOW_NONPRESENT_VALUE_HI;
  if (probes.armed) {
    probes.hit(PR_DROP_PARENT, { as_id: sp_as_id(parent_sp), gfn: kvm_mmu_page_get_gfn(parent_sp, sptep & 511), level: sp_level(parent_sp), sptep, old_spte: spte_obj(olo, ohi), new_spte: spte_obj(nlo, nhi), sp: parent_sp, child: sp });
  }
  mmu_page_remove_parent_pte(sk, sp, sptep);
  mmu_spte_set(sk, sptep, nlo, nhi);
}

function test_and_set_bit(bm: Uint32Array, i: number): boolean {
  const w = i >>> 5;
  const b = 1 << (i & 31);
  const was = (bm[w]! & b) !== 0;
  bm[w] = bm[w]! | b;
  return was;
}

/** mark_unsync(). */
function mark_unsync(sk: ShadowMmu, sptep: number): void {
  if (probes.armed) probes.hit(PR2_MARK_UNSYNC, { sptep });
  const sp = sptep_to_sp(sk, sptep);
  if (sp.unsync_child_bitmap === null) sp.unsync_child_bitmap = new Uint32Array(16);
  if (test_and_set_bit(sp.unsync_child_bitmap, sptep & 511)) return;
  if (sp.unsync_children++ !== 0) return;
  kvm_mmu_mark_parents_unsync(sk, sp);
}

/** kvm_mmu_mark_parents_unsync(). */
function kvm_mmu_mark_parents_unsync(sk: ShadowMmu, sp: KvmMmuPage): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_MARK_PARENTS_UNSYNC, { sp });
  const it = new RmapIterator();
  for (let s = rmap_get_first(sk.desc_pool, sp.parent_ptes, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) mark_unsync(sk, s);
}

function clear_unsync_child_bit(sp: KvmMmuPage, idx: number): void {
  sp.unsync_children--;
  sp.unsync_child_bitmap![idx >>> 5] = sp.unsync_child_bitmap![idx >>> 5]! & ~(1 << (idx & 31));
}

// ---------------------------------------------------------------------------------------------------
// Shadow page lifetime.

function emit_sp(name: string, sp: KvmMmuPage, vcpu_id: number, created?: boolean): void {
  const f: Record<string, number | string | boolean> = { mmu_valid_gen: sp.mmu_valid_gen, gfn: sp.gfn, role: sp.role, root_count: sp.root_count, unsync: sp.unsync };
  if (created !== undefined) f['created'] = created;
  emitTracepoint(name, vcpu_id, f);
}

function active_list_add_head(sk: ShadowMmu, sp: KvmMmuPage): void {
  sp.link_prev = null;
  sp.link_next = sk.active_head;
  if (sk.active_head !== null) sk.active_head.link_prev = sp;
  else sk.active_tail = sp;
  sk.active_head = sp;
}

function active_list_del(sk: ShadowMmu, sp: KvmMmuPage): void {
  if (sp.link_prev === null && sk.active_head !== sp) return;
  if (sp.link_prev !== null) sp.link_prev.link_next = sp.link_next;
  else sk.active_head = sp.link_next;
  if (sp.link_next !== null) sp.link_next.link_prev = sp.link_prev;
  else sk.active_tail = sp.link_prev;
  sp.link_prev = null;
  sp.link_next = null;
}

function hash_del(sk: ShadowMmu, sp: KvmMmuPage): void {
  const b = kvm_page_table_hashfn(sp.gfn);
  let p: KvmMmuPage | null = sk.mmu_page_hash[b]!;
  if (p === sp) {
    sk.mmu_page_hash[b] = sp.hash_next;
  } else {
    while (p !== null && p.hash_next !== sp) p = p.hash_next;
    if (p !== null) p.hash_next = sp.hash_next;
  }
  sp.hash_next = null;
}

/** write-track helpers (__kvm_write_track_add_gfn / remove). */
function __kvm_write_track_add_gfn(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number): void {
  sk.write_track.set(gfn, (sk.write_track.get(gfn) ?? 0) + 1);
  slot_write_track(sk, slot)[gfn - slot.base_gfn]!++;
  kvm_mmu_gfn_disallow_lpage(slot, gfn);
  if (kvm_mmu_slot_gfn_write_protect(sk, slot, gfn, PG_LEVEL_4K)) kvm_flush_remote_tlbs_gfn(sk, gfn, PG_LEVEL_4K);
}

function __kvm_write_track_remove_gfn(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number): void {
  const n = (sk.write_track.get(gfn) ?? 0) - 1;
  if (n <= 0) sk.write_track.delete(gfn);
  else sk.write_track.set(gfn, n);
  const counts = slot_write_track(sk, slot);
  if (counts[gfn - slot.base_gfn]! > 0) counts[gfn - slot.base_gfn]!--;
  kvm_mmu_gfn_allow_lpage(slot, gfn);
}

/**
 * slot->arch.gfn_write_track: per-slot counts (as the kernel keeps them), so mmu_try_to_unsync_pages
 * checks an array on every writable SPTE instead of hashing; kvm.arch.gfn_write_track mirrors them for
 * the fault entry's page-track check.
 */
function slot_write_track(sk: ShadowMmu, slot: KvmMemorySlot): Uint16Array {
  if (slot === sk.wt_last_slot) return sk.wt_last!;
  let a = sk.slot_write_track.get(slot);
  if (a === undefined) {
    a = new Uint16Array(slot.npages);
    sk.slot_write_track.set(slot, a);
  }
  sk.wt_last_slot = slot;
  sk.wt_last = a;
  return a;
}

function slot_gfn_write_tracked(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number): boolean {
  const ext = sk.kvm.arch.write_tracked;
  return slot_write_track(sk, slot)[gfn - slot.base_gfn]! !== 0 || (ext.size !== 0 && ext.has(gfn));
}


/** account_shadowed(). */
function account_shadowed(sk: ShadowMmu, sp: KvmMmuPage): void {
  const gfn = sp.gfn;
  if (probes.armed) probes.hit(PR_ACCOUNT_SHADOWED, { gfn, level: sp_level(sp) });
  sk.indirect_shadow_pages++;
  const slot = sk.kvm.kvm_memslots(sp_as_id(sp)).lookup(gfn);
  if (slot === undefined) return;
  if (sp_level(sp) > PG_LEVEL_4K) {
    __kvm_write_track_add_gfn(sk, slot, gfn);
    return;
  }
  kvm_mmu_gfn_disallow_lpage(slot, gfn);
  if (kvm_mmu_slot_gfn_write_protect(sk, slot, gfn, PG_LEVEL_4K)) kvm_flush_remote_tlbs_gfn(sk, gfn, PG_LEVEL_4K);
}

/** unaccount_shadowed(). */
function unaccount_shadowed(sk: ShadowMmu, sp: KvmMmuPage): void {
  const gfn = sp.gfn;
  if (probes.armed) probes.hit(PR_UNACCOUNT_SHADOWED, { gfn, level: sp_level(sp) });
  sk.indirect_shadow_pages--;
  const slot = sk.kvm.kvm_memslots(sp_as_id(sp)).lookup(gfn);
  if (slot === undefined) return;
  if (sp_level(sp) > PG_LEVEL_4K) __kvm_write_track_remove_gfn(sk, slot, gfn);
  else kvm_mmu_gfn_allow_lpage(slot, gfn);
}

/** kvm_mmu_alloc_shadow_page(). The `shadow_page` PAE variant takes a PAE root's table from the DMA32 cache. */
export function kvm_mmu_alloc_shadow_page(sk: ShadowMmu, sv: ShadowVcpu | null, gfn: number, role: number): KvmMmuPage {
  if (probes.armed) probes.hit(PR_ALLOC_SP, { gfn, role });
  let sp: KvmMmuPage;
  if ((role & ROLE_PAE_ROOT) !== 0) {
    let pfn = sv !== null ? sv.mmu_pae_root_cache : -1;
    if (pfn < 0) {
      pfn = sk.host.alloc_page(__GFP_DMA32);
      sk.counters.dma32_pages++;
    }
    else sv!.mmu_pae_root_cache = -1;
    const spt = sk.host.page(pfn);
    for (let i = 0; i < 1024; i += 2) {
      spt[i] = SHADOW_NONPRESENT_VALUE_LO;
      spt[i + 1] = SHADOW_NONPRESENT_HI;
    }
    for (let i = 0; i < 4; i++) {
      spt[2 * i] = sk.default_pae_pdpte_lo;
      spt[2 * i + 1] = sk.default_pae_pdpte_hi;
    }
    sp = new KvmMmuPage(spt, pfn, role, gfn, false);
    sk.extra_sp.set(pfn, sp);
  } else {
    sp = sk.kvm.pool.alloc(role, gfn, false);
  }
  sp.shadowed_translation = (role & ROLE_DIRECT) === 0 && (role & ROLE_LEVEL_MASK) <= KVM_MAX_HUGEPAGE_LEVEL && (role & ROLE_PAE_ROOT) === 0 ? alloc_shadowed_translation(sk) : null;
  // unsync_child_bitmap is allocated on the first mark_unsync (most SPs never need it).
  sp.unsync_child_bitmap = null;
  sp.mmu_valid_gen = sk.kvm.arch.mmu_valid_gen;
  active_list_add_head(sk, sp);
  sk.kvm.arch.n_used_mmu_pages++;
  sk.counters.sp_created++;
  const b = kvm_page_table_hashfn(gfn);
  sp.hash_next = sk.mmu_page_hash[b]!;
  sk.mmu_page_hash[b] = sp;
  if (sp_has_gptes(sp)) account_shadowed(sk, sp);
  return sp;
}

/** Reused invalid_list of kvm_mmu_find_shadow_page (emptied by kvm_mmu_commit_zap_page before return). */
const find_invalid_list: KvmMmuPage[] = [];

/** kvm_mmu_find_shadow_page(). */
export function kvm_mmu_find_shadow_page(sk: ShadowMmu, sv: ShadowVcpu | null, gfn: number, role: number): KvmMmuPage | null {
  if (probes.armed) probes.hit(PR_FIND_SP, { gfn, role });
  const invalid_list = find_invalid_list;
  let collisions = 0;
  let found: KvmMmuPage | null = null;
  let sp: KvmMmuPage | null = sk.mmu_page_hash[kvm_page_table_hashfn(gfn)]!;
  for (; sp !== null; sp = sp.hash_next) {
    if (is_obsolete_sp(sk.kvm, sp)) continue;
    if (sp.gfn !== gfn) {
      collisions++;
      continue;
    }
    if (sp.role !== role) {
      // A new upper-level page for a gfn whose 4K page is unsync: the gfn is about to be write-tracked.
      if ((role & ROLE_LEVEL_MASK) > PG_LEVEL_4K && sp.unsync) kvm_mmu_prepare_zap_page(sk, sp, invalid_list);
      continue;
    }
    if ((sp.role & ROLE_DIRECT) !== 0) {
      found = sp;
      break;
    }
    if (sp.unsync) {
      if (sv === null) break;
      const ret = kvm_sync_page(sv, sp, invalid_list);
      if (ret < 0) break;
      if (ret > 0) sk.kvm.kvm_flush_remote_tlbs();
    }
    sp.write_flooding_count = 0;
    found = sp;
    break;
  }
  if (found === null) sk.kvm.stat.mmu_cache_miss++;
  kvm_mmu_commit_zap_page(sk, invalid_list);
  if (collisions > sk.kvm.stat.max_mmu_page_hash_collisions) sk.kvm.stat.max_mmu_page_hash_collisions = collisions;
  return found;
}

/** __kvm_mmu_get_shadow_page(). */
export function __kvm_mmu_get_shadow_page(sk: ShadowMmu, sv: ShadowVcpu | null, gfn: number, role: number): KvmMmuPage {
  if (probes.armed) probes.hit(PR___GET_SP, { gfn, role });
  let created = false;
  let sp = kvm_mmu_find_shadow_page(sk, sv, gfn, role);
  if (sp === null) {
    created = true;
    sp = kvm_mmu_alloc_shadow_page(sk, sv, gfn, role);
  }
  if (trace.enabled) emit_sp('kvm_mmu_get_page', sp, sv !== null ? sv.vcpu.vcpu_id : -1, created);
  return sp;
}

/** kvm_mmu_get_shadow_page(): with the vCPU's caches. */
export function kvm_mmu_get_shadow_page(sv: ShadowVcpu, gfn: number, role: number): KvmMmuPage {
  if (probes.armed) probes.hit(PR_GET_SP, { gfn, role });
  return __kvm_mmu_get_shadow_page(sv.sk, sv, gfn, role);
}

/**
 * kvm_mmu_child_role() including the `shadow_page` PAE variant: a level-2 child of a PAE-root shadow
 * page takes the root's access, and for a 2-level guest quadrant = PDPTE index (each quarter of the
 * 4-byte PD), i.e. the role an upstream PAE root would have.
 */
export function shadow_child_role(parent: KvmMmuPage, index: number, direct: boolean, access: number): number {
  if ((parent.role & ROLE_PAE_ROOT) !== 0) {
    // A PDPTE carries no access bits: the child keeps the root's access, as an upstream PAE root does.
    access = (parent.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL;
    let r = kvm_mmu_child_role(parent.role & ~ROLE_PAE_ROOT, index, direct, access) & ~ROLE_PAE_ROOT;
    if ((r & ROLE_HAS_4_BYTE_GPTE) !== 0) r = (r & ~ROLE_QUADRANT_MASK) | ((index & 3) << ROLE_QUADRANT_SHIFT);
    return r >>> 0;
  }
  return kvm_mmu_child_role(parent.role, index, direct, access);
}

/** kvm_mmu_get_child_sp(): null stands for ERR_PTR(-EEXIST). */
export function kvm_mmu_get_child_sp(sv: ShadowVcpu, sptep: number, gfn: number, direct: boolean, access: number): KvmMmuPage | null {
  if (probes.armed) probes.hit(PR_GET_CHILD_SP, { sptep, gfn, direct, access });
  const parent = sptep_to_sp(sv.sk, sptep);
  const j = 2 * (sptep & 511);
  const lo = parent.spt[j]!;
  const hi = parent.spt[j + 1]!;
  if (is_shadow_present_pte(lo, hi) && !is_large_pte(lo, hi)) return null;
  return kvm_mmu_get_shadow_page(sv, gfn, shadow_child_role(parent, sptep & 511, direct, access));
}

/** make_pae_pdpte() (variant `shadow_page`): P | SPTE_MMU_PRESENT (bit 11, ignored in a PDPTE) | me. */
export function make_pae_pdpte(sk: ShadowMmu, child: KvmMmuPage, out: U64): void {
  out.lo = (pfn_pa_lo(child.spt_pfn) | PT_PRESENT_MASK | SPTE_MMU_PRESENT_MASK | sk.masks.shadow_me_value.lo) >>> 0;
  out.hi = (pfn_pa_hi(child.spt_pfn) | sk.masks.shadow_me_value.hi) >>> 0;
}

/** The SPTE that links `sp` under `parent`: make_pae_pdpte in a PAE-root SP, else make_nonleaf_spte. */
function link_spte_value(sk: ShadowMmu, parent: KvmMmuPage, sp: KvmMmuPage, out: U64): void {
  if ((parent.role & ROLE_PAE_ROOT) !== 0) make_pae_pdpte(sk, sp, out);
  else make_nonleaf_spte(sk.masks, pfn_pa_lo(sp.spt_pfn), pfn_pa_hi(sp.spt_pfn), (sp.role & ROLE_AD_DISABLED) !== 0, out);
}

/** __link_shadow_page(). */
export function __link_shadow_page(sk: ShadowMmu, sptep: number, sp: KvmMmuPage, flush: boolean): void {
  const parent = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  const olo = parent.spt[j]!;
  const ohi = parent.spt[j + 1]!;
  if (is_shadow_present_pte(olo, ohi)) drop_large_spte(sk, sptep, flush);
  link_spte_value(sk, parent, sp, tmp);
  if (probes.armed) probes.hit(PR___LINK, { sptep, parent_spte: spte_obj(olo, ohi), new_spte: spte_obj(tmp.lo, tmp.hi), sp, role: sp.role });
  mmu_spte_set(sk, sptep, tmp.lo, tmp.hi);
  mmu_page_add_parent_pte(sk, sp, sptep);
  if (sp.unsync_children !== 0 || sp.unsync) mark_unsync(sk, sptep);
}

/** link_shadow_page(). */
export function link_shadow_page(sv: ShadowVcpu, sptep: number, sp: KvmMmuPage): void {
  if (probes.armed) {
    const parent = sptep_to_sp(sv.sk, sptep);
    const j = 2 * (sptep & 511);
    const v = { lo: 0, hi: 0 };
    link_spte_value(sv.sk, parent, sp, v);
    probes.hit(PR_LINK, { sptep, parent_spte: spte_obj(parent.spt[j]!, parent.spt[j + 1]!), new_spte: v, sp, role: sp.role });
  }
  __link_shadow_page(sv.sk, sptep, sp, true);
}

/** validate_direct_spte(). */
export function validate_direct_spte(sv: ShadowVcpu, sptep: number, direct_access: number): void {
  const sk = sv.sk;
  const parent = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  const lo = parent.spt[j]!;
  const hi = parent.spt[j + 1]!;
  if (!is_shadow_present_pte(lo, hi) || is_large_pte(lo, hi)) return;
  const child = spte_to_child_sp(sk, lo, hi)!;
  const child_access = (child.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL;
  if (child_access === direct_access) return;
  if (probes.armed) probes.hit(PR_VALIDATE_DIRECT, { sptep, direct_access, child_access });
  sk.counters.validate_direct_drops++;
  drop_parent_pte(sk, child, sptep);
  kvm_flush_remote_tlbs_sptep(sk, sptep);
}

/** mark_mmio_spte(). */
function mark_mmio_spte(sv: ShadowVcpu, sptep: number, gfn: number, access: number): void {
  if (probes.armed) probes.hit(PR2_MARK_MMIO_SPTE, { sptep, gfn, access });
  const sk = sv.sk;
  const sp = sptep_to_sp(sk, sptep);
  const gen = sk.kvm.mmio_gen(sp_as_id(sp));
  make_mmio_spte(sk.masks, gfn, access, gen, tmp, sk.kvm.arch.shadow_mmio_value);
  mmu_spte_set(sk, sptep, tmp.lo, tmp.hi);
  sv.vcpu.stat.pf_mmio_spte_created++;
  if (trace.enabled) emitTracepoint('mark_mmio_spte', sv.vcpu.vcpu_id, { sptep: sptep_va(sp, sptep & 511), gfn, access, gen });
}

/**
 * mmu_set_spte(). `fault` null = prefetch (always a writable pfn). Returns RET_PF_*.
 */
export function mmu_set_spte(sv: ShadowVcpu, slot: KvmMemorySlot | null, sptep: number, pte_access: number, gfn: number, pfn: number, fault: kvm_page_fault | null): number {
  const sk = sv.sk;
  const sp = sptep_to_sp(sk, sptep);
  const level = sp_level(sp);
  const idx = sptep & 511;
  const j = 2 * idx;
  let was_rmapped = false;
  let ret = RET_PF_FIXED;
  let flush = false;
  const host_writable = fault === null || fault.map_writable;
  const prefetch = fault === null || fault.prefetch;
  const write_fault = fault !== null && fault.write;
  const olo0 = sp.spt[j]!;
  const ohi0 = sp.spt[j + 1]!;

  if (is_noslot_pfn(pfn)) {
    mark_mmio_spte(sv, sptep, gfn, pte_access);
    if (probes.armed) probes.hit(PR_SET_SPTE, { as_id: sp_as_id(sp), gfn, level, sptep, old_spte: spte_obj(olo0, ohi0), new_spte: spte_obj(sp.spt[j]!, sp.spt[j + 1]!), sp });
    return RET_PF_EMULATE;
  }
  if (is_shadow_present_pte(olo0, ohi0)) {
    if (prefetch && is_last_spte(olo0, ohi0, level) && pfn === spte_to_pfn(sk.masks, olo0, ohi0)) return RET_PF_SPURIOUS;
    if (level > PG_LEVEL_4K && !is_large_pte(olo0, ohi0)) {
      const child = spte_to_child_sp(sk, olo0, ohi0)!;
      drop_parent_pte(sk, child, sptep);
      flush = true;
    } else if (pfn !== spte_to_pfn(sk.masks, olo0, ohi0)) {
      sk.kvm.WARN_ON_ONCE(true, 'mmu_set_spte: pfn changed under a present SPTE');
      drop_spte(sk, sptep);
      flush = true;
    } else {
      was_rmapped = true;
    }
  }
  const a = sk.make_spte_args;
  a.level = level;
  a.ad_disabled = (sp.role & ROLE_AD_DISABLED) !== 0;
  a.ad_need_write_protect = sk.kvm.arch.cpu_dirty_log_size !== 0 && (sp.role & 0x2_0000) !== 0;
  a.pte_access = pte_access;
  a.gfn = gfn;
  a.pfn = pfn;
  a.old_lo = sp.spt[j]!;
  a.old_hi = sp.spt[j + 1]!;
  a.prefetch = prefetch;
  a.synchronizing = false;
  a.host_writable = host_writable;
  a.slot = slot;
  a.slot_dirty_track_enabled = slot !== null && kvm_slot_dirty_track_enabled(slot);
  // make_spte reads it only for huge leaves: skip the module-parameter lookup for the 4K ones.
  a.nx_huge_page_enabled = level > PG_LEVEL_4K && sk.kvm.is_nx_huge_page_enabled();
  const wrprot = make_spte(sk.masks, a, tmp);
  const nlo = tmp.lo;
  const nhi = tmp.hi;
  const clo = sp.spt[j]!;
  const chi = sp.spt[j + 1]!;
  if (clo === nlo && chi === nhi) {
    ret = RET_PF_SPURIOUS;
  } else {
    if (probes.armed) probes.hit(PR_SET_SPTE, { as_id: sp_as_id(sp), gfn, level, sptep, old_spte: spte_obj(clo, chi), new_spte: spte_obj(nlo, nhi), sp });
    sp.spt[j] = nlo;
    sp.spt[j + 1] = nhi;
    // mmu_spte_update(): only a change of a present SPTE can need a flush.
    if (is_shadow_present_pte(clo, chi) && leaf_spte_change_needs_tlb_flush(sk.masks, clo, chi, nlo, nhi)) flush = true;
    if (trace.enabled) {
      const m = sk.masks;
      const um = m.shadow_user_mask;
      emitTracepoint('kvm_mmu_set_spte', sv.vcpu.vcpu_id, {
        gfn, spte: halvesToValue(nlo, nhi), sptep: sp.sptep_pa(idx), level,
        r: (m.shadow_present_mask.lo | m.shadow_present_mask.hi) !== 0 || (nlo & 1) !== 0,
        x: is_executable_pte(m, nlo, nhi),
        u: (um.lo | um.hi) === 0 ? -1 : (nlo & um.lo) !== 0 || (nhi & um.hi) !== 0 ? 1 : 0,
      });
    }
  }
  if (wrprot && write_fault) ret = RET_PF_WRITE_PROTECTED;
  if (flush) kvm_flush_remote_tlbs_gfn(sk, gfn, level);
  if (!was_rmapped) {
    if (slot !== null) rmap_add(sk, slot, sptep, gfn, pte_access, sp);
    else kvm_mmu_page_set_translation(sp, idx, gfn, pte_access);
  } else {
    kvm_mmu_page_set_access(sp, idx, pte_access);
  }
  return ret;
}

// ---------------------------------------------------------------------------------------------------
// Prefetch for direct shadow pages.

/** gfn_to_memslot_dirty_bitmap(): no prefetch of writable SPTEs into a dirty-logged slot. */
export function gfn_to_memslot_dirty_bitmap(sv: ShadowVcpu, gfn: number, no_dirty_log: boolean): KvmMemorySlot | null {
  const slot = sv.sk.kvm.kvm_memslots(sv.vcpu.smm ? 1 : 0).lookup(gfn);
  if (slot === undefined) return null;
  if ((slot.flags & (1 << 16)) !== 0) return null;
  if (no_dirty_log && kvm_slot_dirty_track_enabled(slot)) return null;
  return slot;
}

/** direct_pte_prefetch_many(). */
function direct_pte_prefetch_many(sv: ShadowVcpu, sp: KvmMmuPage, start: number, end: number): number {
  if (probes.armed) probes.hit(PR2_DIRECT_PTE_PREFETCH_MANY, { start, end });
  let gfn = kvm_mmu_page_get_gfn(sp, start);
  const access = (sp.role >>> ROLE_ACCESS_SHIFT) & ACC_ALL;
  const slot = gfn_to_memslot_dirty_bitmap(sv, gfn, (access & ACC_WRITE_MASK) !== 0);
  if (slot === null) return -1;
  const n = end - start;
  // kvm_prefetch_pages: the whole run must lie inside the slot.
  if (gfn + n > slot.base_gfn + slot.npages) return -1;
  const base = sp.spt_pfn * 512;
  for (let i = start; i < end; i++, gfn++) mmu_set_spte(sv, slot, base + i, access, gfn, slot_gfn_to_host_pfn(slot, gfn), null);
  return 0;
}

/** __direct_pte_prefetch(). */
export function __direct_pte_prefetch(sv: ShadowVcpu, sp: KvmMmuPage, sptep: number): void {
  if (probes.armed) probes.hit(PR2___DIRECT_PTE_PREFETCH, { sptep });
  const first = (sptep & 511) & ~(PTE_PREFETCH_NUM - 1);
  let start = -1;
  let i = first;
  for (; i < first + PTE_PREFETCH_NUM; i++) {
    const present = is_shadow_present_pte(sp.spt[2 * i]!, sp.spt[2 * i + 1]!);
    if (present || i === (sptep & 511)) {
      if (start < 0) continue;
      if (direct_pte_prefetch_many(sv, sp, start, i) < 0) return;
      start = -1;
    } else if (start < 0) {
      start = i;
    }
  }
  if (start >= 0) direct_pte_prefetch_many(sv, sp, start, i);
}

/** direct_pte_prefetch(). */
export function direct_pte_prefetch(sv: ShadowVcpu, sptep: number): void {
  if (probes.armed) probes.hit(PR2_DIRECT_PTE_PREFETCH, { sptep });
  const sp = sptep_to_sp(sv.sk, sptep);
  if ((sp.role & ROLE_AD_DISABLED) !== 0) return;
  if (sp_level(sp) > PG_LEVEL_4K) return;
  if (sv.sk.kvm.mmu_invalidate_in_progress !== 0) return;
  __direct_pte_prefetch(sv, sp, sptep);
}

// ---------------------------------------------------------------------------------------------------
// Write protection and unsync.

/** spte_write_protect(). */
function spte_write_protect(sk: ShadowMmu, sptep: number, pt_protect: boolean): boolean {
  if (probes.armed) probes.hit(PR2_SPTE_WRITE_PROTECT, { sptep, pt_protect });
  const sp = sptep_to_sp(sk, sptep);
  const j = 2 * (sptep & 511);
  const lo = sp.spt[j]!;
  const hi = sp.spt[j + 1]!;
  if ((lo & PT_WRITABLE_MASK) === 0 && !(pt_protect && is_mmu_writable_spte(sk.masks, lo, hi))) return false;
  let nlo = lo & ~PT_WRITABLE_MASK;
  let nhi = hi;
  if (pt_protect) {
    nlo &= ~sk.masks.shadow_mmu_writable_mask.lo;
    nhi &= ~sk.masks.shadow_mmu_writable_mask.hi;
  }
  sp.spt[j] = nlo >>> 0;
  sp.spt[j + 1] = nhi >>> 0;
  return true;
}

/** rmap_write_protect() over one rmap head. */
function rmap_write_protect(sk: ShadowMmu, head: number, pt_protect: boolean): boolean {
  let flush = false;
  const it = sk.rmap_it;
  for (let s = rmap_get_first(sk.desc_pool, head, it); s !== 0; s = rmap_get_next(sk.desc_pool, it)) flush = spte_write_protect(sk, s, pt_protect) || flush;
  return flush;
}

/**
 * The rmap half of kvm_mmu_write_protect_pt_masked(): clear W (not MMU-writable, so the next write can
 * be fixed without the slow path) in the 4K SPTEs of the gfns set in the 64-bit mask at slot-relative
 * `gfn_offset`. The caller (kvm_get_dirty_log_protect) flushes.
 */
export function kvm_mmu_write_protect_pt_masked(sk: ShadowMmu, slot: KvmMemorySlot, gfn_offset: number, mask_lo: number, mask_hi: number): void {
  if (probes.armed) probes.hit(PR_WRPROT_MASKED, { gfn_offset, mask: [mask_lo >>> 0, mask_hi >>> 0] });
  if (!sk.rmaps.has(slot)) return;
  const arr = slot_rmap(sk, slot, PG_LEVEL_4K);
  for (let half = 0; half < 2; half++) {
    // Lowest set bit first, as the kernel's __ffs loop.
    for (let m = (half === 0 ? mask_lo : mask_hi) >>> 0; m !== 0; m = (m & (m - 1)) >>> 0) {
      const bit = 31 - Math.clz32(m & -m);
      rmap_write_protect(sk, arr[gfn_offset + 32 * half + bit]!, false);
    }
  }
}

/** kvm_mmu_slot_gfn_write_protect(). */
export function kvm_mmu_slot_gfn_write_protect(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number, min_level: number): boolean {
  if (probes.armed) probes.hit(PR_WRPROT, { gfn, min_level });
  if (!sk.rmaps.has(slot)) return false;
  let write_protected = false;
  for (let level = min_level; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const arr = slot_rmap(sk, slot, level);
    write_protected = rmap_write_protect(sk, arr[gfn_to_index(gfn, slot.base_gfn, level)]!, true) || write_protected;
  }
  return write_protected;
}

/** kvm_unsync_page(). */
function kvm_unsync_page(sk: ShadowMmu, sp: KvmMmuPage): void {
  if (probes.armed) probes.hit(PR_UNSYNC, { sp });
  if (trace.enabled) emit_sp('kvm_mmu_unsync_page', sp, -1);
  sk.kvm.stat.mmu_unsync++;
  sp.unsync = true;
  kvm_mmu_mark_parents_unsync(sk, sp);
}

/** mmu_try_to_unsync_pages(): 0 = the SPTE may be writable; nonzero = make_spte write-protects. */
export function mmu_try_to_unsync_pages(sk: ShadowMmu, slot: KvmMemorySlot | null, gfn: number, synchronizing: boolean, prefetch: boolean): number {
  if (probes.armed) probes.hit(PR_TRY_UNSYNC, { gfn, synchronizing, prefetch });
  if (slot !== null ? slot_gfn_write_tracked(sk, slot, gfn) : kvm_gfn_is_write_tracked(sk.kvm, gfn)) return -1; // -EPERM
  for (let sp: KvmMmuPage | null = sk.mmu_page_hash[kvm_page_table_hashfn(gfn)]!; sp !== null; sp = sp.hash_next) {
    if (sp.gfn !== gfn || is_obsolete_sp(sk.kvm, sp) || !sp_has_gptes(sp)) continue;
    if (synchronizing) return -1;
    if (sp.unsync) continue;
    if (prefetch) return -EEXIST;
    if (sp_level(sp) !== PG_LEVEL_4K) sk.kvm.WARN_ON_ONCE(true, 'unsync of a non-4K shadow page');
    kvm_unsync_page(sk, sp);
  }
  return 0;
}

/** kvm_unlink_unsync_page(). */
function kvm_unlink_unsync_page(sk: ShadowMmu, sp: KvmMmuPage, vcpu_id: number): void {
  if (probes.armed) probes.hit(PR2_KVM_UNLINK_UNSYNC_PAGE, { sp });
  if (trace.enabled) emit_sp('kvm_mmu_sync_page', sp, vcpu_id);
  sp.unsync = false;
  sk.kvm.stat.mmu_unsync--;
}

/** kvm_sync_page_check(). */
function kvm_sync_page_check(sv: ShadowVcpu, sp: KvmMmuPage): boolean {
  if ((sp.role & ROLE_DIRECT) !== 0 || sv.sync_spte === null) return false;
  return ((sp.role ^ sv.root_role) & ~SYNC_PAGE_ROLE_IGNORE & ~ROLE_PAE_ROOT) === 0;
}

/** __kvm_sync_page(): -1 failed, else whether a flush is needed (1/0). */
function __kvm_sync_page(sv: ShadowVcpu, sp: KvmMmuPage): number {
  if (probes.armed) probes.hit(PR2_KVM_SYNC_PAGE, { sp });
  if (!kvm_sync_page_check(sv, sp)) return -1;
  let flush = 0;
  for (let i = 0; i < 512; i++) {
    if (sp.spt[2 * i] === SHADOW_NONPRESENT_VALUE_LO && sp.spt[2 * i + 1] === SHADOW_NONPRESENT_VALUE_HI) continue;
    // Called as a plain function so the stack frame carries the FNAME(sync_spte) name, not the hook's.
    const sync_spte = sv.sync_spte!;
    const ret = sync_spte(sv, sp, i);
    if (ret < 0) return -1;
    flush |= ret;
  }
  return flush;
}

/** kvm_sync_page(). */
export function kvm_sync_page(sv: ShadowVcpu, sp: KvmMmuPage, invalid_list: KvmMmuPage[]): number {
  if (probes.armed) probes.hit(PR_SYNC_PAGE, { sp });
  const ret = __kvm_sync_page(sv, sp);
  if (ret < 0) kvm_mmu_prepare_zap_page(sv.sk, sp, invalid_list);
  return ret;
}

/** One unsync page found by mmu_unsync_walk, with the (parent, index) path from the walk's start. */
interface UnsyncEntry {
  sp: KvmMmuPage;
  path: Array<{ sp: KvmMmuPage; idx: number }>;
}

/** mmu_unsync_walk(): up to KVM_PAGE_ARRAY_NR unsync 4K pages below `parent`. */
function mmu_unsync_walk(sk: ShadowMmu, parent: KvmMmuPage, out: UnsyncEntry[], path: Array<{ sp: KvmMmuPage; idx: number }>): void {
  if (probes.armed) probes.hit(PR2_MMU_UNSYNC_WALK, { sp: parent });
  if (parent.unsync_child_bitmap === null) return;
  for (let w = 0; w < 16; w++) {
    let bits = parent.unsync_child_bitmap[w]!;
    while (bits !== 0) {
      if (out.length >= KVM_PAGE_ARRAY_NR) return;
      const b = 31 - Math.clz32(bits & -bits);
      bits &= bits - 1;
      const i = w * 32 + b;
      const lo = parent.spt[2 * i]!;
      const hi = parent.spt[2 * i + 1]!;
      const child = is_shadow_present_pte(lo, hi) && !is_last_spte(lo, hi, sp_level(parent)) ? spte_to_child_sp(sk, lo, hi) : null;
      if (child === null) {
        clear_unsync_child_bit(parent, i);
        continue;
      }
      if (child.unsync_children !== 0) {
        const before = out.length;
        path.push({ sp: parent, idx: i });
        mmu_unsync_walk(sk, child, out, path);
        path.pop();
        if (out.length === before && child.unsync_children === 0) clear_unsync_child_bit(parent, i);
      } else if (child.unsync) {
        out.push({ sp: child, path: [...path, { sp: parent, idx: i }] });
      } else {
        clear_unsync_child_bit(parent, i);
      }
    }
  }
}

/** mmu_pages_clear_parents(): clear the path bits bottom-up while a parent runs out of unsync children. */
function mmu_pages_clear_parents(path: Array<{ sp: KvmMmuPage; idx: number }>): void {
  for (let k = path.length - 1; k >= 0; k--) {
    const { sp, idx } = path[k]!;
    const w = idx >>> 5;
    if ((sp.unsync_child_bitmap![w]! & (1 << (idx & 31))) !== 0) clear_unsync_child_bit(sp, idx);
    if (sp.unsync_children !== 0) break;
  }
}

/** mmu_sync_children(): 0, or -EINTR (never here: the model does not yield). */
export function mmu_sync_children(sv: ShadowVcpu, parent: KvmMmuPage, can_yield: boolean): number {
  if (probes.armed) probes.hit(PR_SYNC_CHILDREN, { sp: parent, can_yield });
  const sk = sv.sk;
  const invalid_list: KvmMmuPage[] = [];
  let flush = false;
  for (;;) {
    const pages: UnsyncEntry[] = [];
    mmu_unsync_walk(sk, parent, pages, []);
    if (pages.length === 0) break;
    let protectedAny = false;
    for (const e of pages) {
      const slot = sk.kvm.kvm_memslots(sp_as_id(e.sp)).lookup(e.sp.gfn);
      if (slot !== undefined) protectedAny = kvm_mmu_slot_gfn_write_protect(sk, slot, e.sp.gfn, PG_LEVEL_4K) || protectedAny;
    }
    if (protectedAny) {
      sk.kvm.kvm_flush_remote_tlbs();
      flush = false;
    }
    for (const e of pages) {
      if (e.sp.unsync) {
        kvm_unlink_unsync_page(sk, e.sp, sv.vcpu.vcpu_id);
        flush = kvm_sync_page(sv, e.sp, invalid_list) > 0 || flush;
      }
      mmu_pages_clear_parents(e.path);
    }
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
  if (flush) sk.kvm.kvm_flush_remote_tlbs();
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Zapping.

/** mmu_page_zap_pte(): returns the number of SPs it zapped. */
function mmu_page_zap_pte(sk: ShadowMmu, sp: KvmMmuPage, i: number, invalid_list: KvmMmuPage[]): number {
  if (probes.armed) probes.hit(PR2_MMU_PAGE_ZAP_PTE, { sp, index: i });
  const lo = sp.spt[2 * i]!;
  const hi = sp.spt[2 * i + 1]!;
  const sptep = sp.spt_pfn * 512 + i;
  if (is_shadow_present_pte(lo, hi)) {
    if (is_last_spte(lo, hi, sp_level(sp))) {
      drop_spte(sk, sptep);
    } else {
      const child = spte_to_child_sp(sk, lo, hi);
      if (child !== null) drop_parent_pte(sk, child, sptep);
    }
  } else if (is_mmio_spte(sk.masks, lo, hi, sk.kvm.arch.shadow_mmio_value)) {
    mmu_spte_clear_no_track(sk, sptep);
  }
  return 0;
}

function kvm_mmu_page_unlink_children(sk: ShadowMmu, sp: KvmMmuPage, invalid_list: KvmMmuPage[]): number {
  if (probes.armed) probes.hit(PR2_KVM_MMU_PAGE_UNLINK_CHILDREN, { sp });
  let zapped = 0;
  // A PAE-root shadow page only has four PDPTEs; default PDPTEs are not shadow-present.
  for (let i = 0; i < 512; i++) zapped += mmu_page_zap_pte(sk, sp, i, invalid_list);
  return zapped;
}

function kvm_mmu_unlink_parents(sk: ShadowMmu, sp: KvmMmuPage): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_UNLINK_PARENTS, { sp });
  const it = new RmapIterator();
  for (;;) {
    const s = rmap_get_first(sk.desc_pool, sp.parent_ptes, it);
    if (s === 0) break;
    drop_parent_pte(sk, sp, s);
  }
}

/** mmu_zap_unsync_children(). */
function mmu_zap_unsync_children(sk: ShadowMmu, parent: KvmMmuPage, invalid_list: KvmMmuPage[]): number {
  if (probes.armed) probes.hit(PR2_MMU_ZAP_UNSYNC_CHILDREN, { sp: parent });
  if (sp_level(parent) === PG_LEVEL_4K) return 0;
  let zapped = 0;
  for (;;) {
    const pages: UnsyncEntry[] = [];
    mmu_unsync_walk(sk, parent, pages, []);
    if (pages.length === 0) break;
    for (const e of pages) {
      kvm_mmu_prepare_zap_page(sk, e.sp, invalid_list);
      mmu_pages_clear_parents(e.path);
      zapped++;
    }
  }
  return zapped;
}

/** __kvm_mmu_prepare_zap_page(): returns [list_unstable, nr_zapped]. */
export function __kvm_mmu_prepare_zap_page(sk: ShadowMmu, sp: KvmMmuPage, invalid_list: KvmMmuPage[], nr: { zapped: number }): boolean {
  if (probes.armed) probes.hit(PR_PREP_ZAP, { sp });
  if (trace.enabled) emit_sp('kvm_mmu_prepare_zap_page', sp, -1);
  sk.kvm.stat.mmu_shadow_zapped++;
  nr.zapped = mmu_zap_unsync_children(sk, sp, invalid_list);
  nr.zapped += kvm_mmu_page_unlink_children(sk, sp, invalid_list);
  kvm_mmu_unlink_parents(sk, sp);
  const list_unstable = nr.zapped !== 0;
  if ((sp.role & ROLE_INVALID) === 0 && sp_has_gptes(sp)) unaccount_shadowed(sk, sp);
  if (sp.unsync) kvm_unlink_unsync_page(sk, sp, -1);
  if (sp.root_count === 0) {
    nr.zapped++;
    active_list_del(sk, sp);
    invalid_list.push(sp);
    sk.kvm.arch.n_used_mmu_pages--;
  } else {
    active_list_del(sk, sp);
    if (!is_obsolete_sp(sk.kvm, sp)) {
      for (const v of sk.vcpus) v.requests |= KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
    }
  }
  sp.role = (sp.role | ROLE_INVALID) >>> 0;
  return list_unstable;
}

/** kvm_mmu_prepare_zap_page(). */
export function kvm_mmu_prepare_zap_page(sk: ShadowMmu, sp: KvmMmuPage, invalid_list: KvmMmuPage[]): boolean {
  if (probes.armed) probes.hit(PR2_KVM_MMU_PREPARE_ZAP_PAGE, { sp });
  const nr = { zapped: 0 };
  __kvm_mmu_prepare_zap_page(sk, sp, invalid_list, nr);
  return nr.zapped !== 0;
}

/** kvm_mmu_free_shadow_page(). */
function kvm_mmu_free_shadow_page(sk: ShadowMmu, sp: KvmMmuPage): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_FREE_SHADOW_PAGE, { sp });
  hash_del(sk, sp);
  active_list_del(sk, sp);
  sk.counters.sp_freed++;
  if (sk.extra_sp.has(sp.spt_pfn)) {
    sk.extra_sp.delete(sp.spt_pfn);
    sp.freed = true;
    sk.host.free_page(sp.spt_pfn);
    sk.counters.dma32_pages--;
  } else {
    sk.kvm.pool.free(sp);
  }
  if (sp.shadowed_translation !== null) sk.st_free.push(sp.shadowed_translation);
  sp.shadowed_translation = null;
}

/**
 * A zeroed shadowed_translation array: a freed page's, or one carved from a slab, because a fresh
 * 4 KiB typed array (an off-heap backing store) per shadow page showed up in the fault-in profile.
 */
function alloc_shadowed_translation(sk: ShadowMmu): Float64Array {
  const st = sk.st_free.pop();
  if (st !== undefined) return st.fill(0);
  if (sk.st_fresh.length === 0) {
    const slab = new Float64Array(512 * ST_SLAB);
    for (let i = ST_SLAB - 1; i >= 0; i--) sk.st_fresh.push(slab.subarray(512 * i, 512 * (i + 1)));
  }
  return sk.st_fresh.pop()!;
}
const ST_SLAB = 16;

/** kvm_mmu_commit_zap_page(). */
export function kvm_mmu_commit_zap_page(sk: ShadowMmu, invalid_list: KvmMmuPage[]): void {
  if (invalid_list.length === 0) return;
  if (probes.armed) probes.hit(PR_COMMIT_ZAP, { count: invalid_list.length });
  sk.kvm.kvm_flush_remote_tlbs();
  for (const sp of invalid_list) {
    sk.kvm.WARN_ON_ONCE((sp.role & ROLE_INVALID) === 0 || sp.root_count !== 0, 'freeing a valid or referenced shadow page');
    kvm_mmu_free_shadow_page(sk, sp);
  }
  invalid_list.length = 0;
}

/** kvm_mmu_zap_oldest_mmu_pages(). */
export function kvm_mmu_zap_oldest_mmu_pages(sk: ShadowMmu, nr_to_zap: number): number {
  if (probes.armed) probes.hit(PR_ZAP_OLDEST, { nr_to_zap });
  if (sk.active_head === null) return 0;
  const invalid_list: KvmMmuPage[] = [];
  let total = 0;
  const nr = { zapped: 0 };
  restart: for (;;) {
    for (let sp = sk.active_tail; sp !== null; ) {
      const prev: KvmMmuPage | null = sp.link_prev;
      if (sp.root_count !== 0) {
        sp = prev;
        continue;
      }
      const unstable = __kvm_mmu_prepare_zap_page(sk, sp, invalid_list, nr);
      total += nr.zapped;
      if (total >= nr_to_zap) break restart;
      if (unstable) continue restart;
      sp = prev;
    }
    break;
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
  sk.kvm.stat.mmu_recycled += total;
  return total;
}

export function kvm_mmu_available_pages(sk: ShadowMmu): number {
  const used = sk.kvm.arch.n_used_mmu_pages;
  return sk.n_max_mmu_pages > used ? sk.n_max_mmu_pages - used : 0;
}

/** make_mmu_pages_available(): 0 or -ENOSPC. */
export function make_mmu_pages_available(sv: ShadowVcpu): number {
  const sk = sv.sk;
  const avail = kvm_mmu_available_pages(sk);
  if (probes.armed) probes.hit(PR_MAKE_AVAIL, { avail });
  if (avail >= KVM_MIN_FREE_MMU_PAGES) return 0;
  kvm_mmu_zap_oldest_mmu_pages(sk, KVM_REFILL_PAGES - avail);
  if (kvm_mmu_available_pages(sk) === 0) return -ENOSPC;
  return 0;
}

/** kvm_mmu_change_mmu_pages(): a new budget; zaps the oldest pages down to it. */
export function kvm_mmu_change_mmu_pages(sk: ShadowMmu, goal: number): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_CHANGE_MMU_PAGES, { goal });
  const used = sk.kvm.arch.n_used_mmu_pages;
  if (used > goal) {
    kvm_mmu_zap_oldest_mmu_pages(sk, used - goal);
    goal = sk.kvm.arch.n_used_mmu_pages > goal ? sk.kvm.arch.n_used_mmu_pages : goal;
  }
  sk.n_max_mmu_pages = goal;
}

/** kvm_mmu_calculate_default_mmu_pages(): 2% of guest pages, at least 64. */
export function kvm_mmu_calculate_default_mmu_pages(total_pages: number): number {
  return Math.max(Math.floor((total_pages * KVM_PERMILLE_MMU_PAGES) / 1000), KVM_MIN_ALLOC_MMU_PAGES);
}

/** Zap every shadow page (kvm_mmu_zap_all): roots in use become invalid and are freed when released. */
export function kvm_mmu_zap_all(sk: ShadowMmu): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_ZAP_ALL, {});
  const invalid_list: KvmMmuPage[] = [];
  const nr = { zapped: 0 };
  restart: for (;;) {
    for (let sp = sk.active_head; sp !== null; sp = sp.link_next) {
      if ((sp.role & ROLE_INVALID) !== 0 && sp.root_count !== 0) continue;
      if (__kvm_mmu_prepare_zap_page(sk, sp, invalid_list, nr)) continue restart;
      continue restart;
    }
    break;
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
}

/** kvm_mmu_unprotect_gfn_and_retry's core: zap every shadow page with gPTEs at `gfn`. */
export function kvm_mmu_unprotect_page(sk: ShadowMmu, gfn: number): boolean {
  const invalid_list: KvmMmuPage[] = [];
  let r = false;
  for (let sp: KvmMmuPage | null = sk.mmu_page_hash[kvm_page_table_hashfn(gfn)]!; sp !== null; ) {
    const next: KvmMmuPage | null = sp.hash_next;
    if (sp.gfn === gfn && !is_obsolete_sp(sk.kvm, sp) && sp_has_gptes(sp)) {
      r = true;
      kvm_mmu_prepare_zap_page(sk, sp, invalid_list);
    }
    sp = next;
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
  return r;
}

/** Zap every rmap'd SPTE of [start, end) in `slot` (kvm_unmap_gfn_range / kvm_zap_gfn_range's rmap half). */
export function kvm_zap_gfn_range_rmaps(sk: ShadowMmu, slot: KvmMemorySlot, start: number, end: number): boolean {
  if (!sk.rmaps.has(slot)) return false;
  let flush = false;
  const s = Math.max(start, slot.base_gfn);
  const e = Math.min(end, slot.base_gfn + slot.npages);
  for (let level = PG_LEVEL_4K; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const arr = slot_rmap(sk, slot, level);
    if (s >= e) break;
    const i0 = gfn_to_index(s, slot.base_gfn, level);
    const i1 = gfn_to_index(e - 1, slot.base_gfn, level);
    for (let i = i0; i <= i1; i++) {
      if (arr[i] === 0) continue;
      if (probes.armed) probes.hit(PR_ZAP_GFN_RMAP, { gfn: slot.base_gfn + i * KVM_PAGES_PER_HPAGE(level), level });
      flush = kvm_zap_all_rmap_sptes(sk, arr, i) || flush;
    }
  }
  return flush;
}

/** kvm_unmap_gfn_range() for the shadow MMU (mmu-notifier invalidation): zap through the rmaps, then flush. */
export function kvm_unmap_gfn_range(sk: ShadowMmu, slot: KvmMemorySlot, start: number, end: number): boolean {
  const flush = kvm_zap_gfn_range_rmaps(sk, slot, start, end);
  if (flush) sk.kvm.kvm_flush_remote_tlbs_range(start, end - start);
  return flush;
}

/**
 * Memslot removal (kvm_mmu_zap_memslot without the zap-all quirk): zap every shadow page whose gfn
 * lies in the slot, then the slot's rmaps; the rmaps are dropped with the slot.
 */
export function kvm_mmu_zap_memslot(sk: ShadowMmu, slot: KvmMemorySlot): void {
  if (probes.armed) probes.hit(PR2_KVM_MMU_ZAP_MEMSLOT, { slot: slot.id });
  const invalid_list: KvmMmuPage[] = [];
  const end = slot.base_gfn + slot.npages;
  restart: for (;;) {
    for (let sp = sk.active_head; sp !== null; sp = sp.link_next) {
      if ((sp.role & ROLE_INVALID) !== 0) continue;
      if (sp.gfn >= slot.base_gfn && sp.gfn < end) {
        kvm_mmu_prepare_zap_page(sk, sp, invalid_list);
        continue restart;
      }
    }
    break;
  }
  kvm_zap_gfn_range_rmaps(sk, slot, slot.base_gfn, end);
  kvm_mmu_commit_zap_page(sk, invalid_list);
  sk.kvm.kvm_flush_remote_tlbs_memslot(slot);
  slot_rmap_forget(sk, slot);
}

/** The rmap count of (gfn, level) (tests and views). */
export function gfn_rmap_count(sk: ShadowMmu, slot: KvmMemorySlot, gfn: number, level: number): number {
  return pte_list_count(sk.desc_pool, slot_rmap(sk, slot, level)[gfn_to_index(gfn, slot.base_gfn, level)]!);
}

export { spt_lo as __spt_lo, pfn_pa_lo, pfn_pa_hi, table_of_pfn, mmu_spte_update, mmu_spte_set, mmu_spte_clear_no_track, rmap_add, __kvm_write_track_add_gfn, kvm_flush_remote_tlbs_gfn, kvm_unlink_unsync_page, slot_rmap };

const PR_ZAP_OBSOLETE = defineProbe('kvm_zap_obsolete_pages', 'shadow_mmu', F, 'zap shadow pages of the old generation, oldest first', ['mmu_valid_gen']);

/** kvm_zap_obsolete_pages(): from the list tail while pages are obsolete. */
export function kvm_zap_obsolete_pages(sk: ShadowMmu): void {
  if (probes.armed) probes.hit(PR_ZAP_OBSOLETE, { mmu_valid_gen: sk.kvm.arch.mmu_valid_gen });
  const invalid_list: KvmMmuPage[] = [];
  const nr = { zapped: 0 };
  restart: for (;;) {
    for (let sp = sk.active_tail; sp !== null; ) {
      const prev: KvmMmuPage | null = sp.link_prev;
      if (!is_obsolete_sp(sk.kvm, sp)) break;
      if ((sp.role & ROLE_INVALID) !== 0) {
        sp = prev;
        continue;
      }
      if (__kvm_mmu_prepare_zap_page(sk, sp, invalid_list, nr)) continue restart;
      sp = prev;
    }
    break;
  }
  kvm_mmu_commit_zap_page(sk, invalid_list);
}

/** kvm_mmu_zap_all_fast(): new generation, every vCPU frees its obsolete roots, old pages are zapped. */
export function kvm_mmu_zap_all_fast(sk: ShadowMmu): void {
  if (trace.enabled) emitTracepoint('kvm_mmu_zap_all_fast', -1, { mmu_valid_gen: sk.kvm.arch.mmu_valid_gen, mmu_used_pages: sk.kvm.arch.n_used_mmu_pages });
  sk.kvm.arch.mmu_valid_gen ^= 1;
  for (const v of sk.vcpus) v.requests |= KVM_REQ_MMU_FREE_OBSOLETE_ROOTS;
  kvm_zap_obsolete_pages(sk);
}
