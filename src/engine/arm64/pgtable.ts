/**
 * arm64 KVM stage-2 page tables (arch/arm64/kvm/hyp/pgtable.c): `struct kvm_pgtable`, the generic walker
 * with LEAF / TABLE_PRE / TABLE_POST visits, and the stage-2 operations (map, unmap, annotate/set_owner,
 * attribute updates, split, destroy), with break-before-make and the table-page refcount rule.
 *
 * Modelled after 6.16-6.18 (s8 levels, `kvm_pgtable_visit_ctx`, `KVM_PGTABLE_WALK_HANDLE_FAULT`); the invalid
 * descriptor layout (owner annotations, BBM marker) follows the table's `OwnerEncoding` (see variants.ts).
 *
 * Table pages are Uint32Array halves from `PtPageAllocator`; entry i of a page is data[2i] (lo), data[2i+1] (hi).
 * A PTE's address (`ptep` in the kernel) is the page's PA + 8 * index.
 */
import { defineProbe, probes } from '../probes';
import * as E from './errno';
import { KvmMmuMemoryCache, PtPage, PtPageAllocator, kvm_mmu_memory_cache_alloc } from './page_alloc';
import {
  type Granule,
  type GranuleInfo,
  type Stage2Geometry,
  KVM_PGTABLE_LAST_LEVEL,
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_PX,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW_MASK,
  KVM_PGTABLE_PROT_SW_SHIFT,
  KVM_PGTABLE_PROT_UX,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  KVM_PHYS_INVALID,
  KVM_PTE_LEAF_ATTR_HI_HI,
  KVM_PTE_LEAF_ATTR_HI_S2_XN_HI,
  KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI,
  KVM_PTE_LEAF_ATTR_HI_S2_XN_XN,
  KVM_PTE_LEAF_ATTR_HI_SW_HI,
  KVM_PTE_LEAF_ATTR_HI_SW_SHIFT_HI,
  KVM_PTE_LEAF_ATTR_LO,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  KVM_PTE_LEAF_ATTR_LO_S2_SH_IS,
  KVM_PTE_LEAF_ATTR_S2_PERMS_HI,
  KVM_PTE_LEAF_ATTR_S2_PERMS_LO,
  KVM_PTE_TYPE,
  KVM_PTE_VALID,
  MT_S2_DEVICE_nGnRE,
  MT_S2_FWB_DEVICE_nGnRE,
  MT_S2_FWB_NORMAL,
  MT_S2_FWB_NORMAL_NC,
  MT_S2_NORMAL,
  MT_S2_NORMAL_NC,
  kvm_granule_size,
  kvm_level_supports_block_mapping,
  kvm_phys_is_valid,
  kvm_phys_to_pte_hi,
  kvm_phys_to_pte_lo,
  kvm_pte_to_phys,
  stage2Geometry,
} from './pgtable_desc';
import {
  type OwnerEncoding,
  KVM_INVALID_PTE_OWNER_SHIFT,
  KVM_INVALID_PTE_TYPE_LOCKED,
  KVM_INVALID_PTE_TYPE_SHIFT_HI,
  SET_OWNER_2021_FIELD_MAX,
  isLocked,
  lockedMarker,
} from './variants';

const FILE = 'arch/arm64/kvm/hyp/pgtable.c';
const G = 'stage2';

// enum kvm_pgtable_walk_flags [6.16]
export const KVM_PGTABLE_WALK_LEAF = 1 << 0;
export const KVM_PGTABLE_WALK_TABLE_PRE = 1 << 1;
export const KVM_PGTABLE_WALK_TABLE_POST = 1 << 2;
export const KVM_PGTABLE_WALK_SHARED = 1 << 3;
export const KVM_PGTABLE_WALK_HANDLE_FAULT = 1 << 4;
export const KVM_PGTABLE_WALK_SKIP_BBM_TLBI = 1 << 5;
export const KVM_PGTABLE_WALK_SKIP_CMO = 1 << 6;

// enum kvm_pgtable_stage2_flags [6.16]
export const KVM_PGTABLE_S2_NOFWB = 1 << 0;
export const KVM_PGTABLE_S2_IDMAP = 1 << 1;

export const P = {
  kvm_pgtable_walk: defineProbe('kvm_pgtable_walk', G, FILE, 'walk [addr, addr+size) calling the walker at LEAF / TABLE_PRE / TABLE_POST', ['pgt', 'addr', 'size', 'flags']),
  kvm_pgtable_stage2_map: defineProbe('kvm_pgtable_stage2_map', G, FILE, 'install valid leaves for an IPA range (blocks where allowed)', ['pgt', 'addr', 'size', 'phys', 'prot', 'flags']),
  stage2_map_walker_try_leaf: defineProbe('stage2_map_walker_try_leaf', G, FILE, 'try to write a leaf (or annotation) at this level; -E2BIG asks for a table', ['ctx', 'old', 'new', 'owner']),
  stage2_map_walk_leaf: defineProbe('stage2_map_walk_leaf', G, FILE, 'map visitor for a leaf: try_leaf, else replace by a new table (block is not copied down)', ['ctx', 'old']),
  stage2_map_walk_table_pre: defineProbe('stage2_map_walk_table_pre', G, FILE, 'map visitor before a table: replace the table by a block when a leaf is allowed', ['ctx', 'old']),
  stage2_try_break_pte: defineProbe('stage2_try_break_pte', G, FILE, 'break-before-make, first half: lock the PTE, TLBI, drop its count', ['ctx', 'old']),
  stage2_make_pte: defineProbe('stage2_make_pte', G, FILE, 'break-before-make, second half: publish the new PTE', ['ctx', 'new']),
  kvm_pgtable_stage2_unmap: defineProbe('kvm_pgtable_stage2_unmap', G, FILE, 'remove leaves and annotations; free tables left empty', ['pgt', 'addr', 'size']),
  stage2_unmap_walker: defineProbe('stage2_unmap_walker', G, FILE, 'unmap visitor (LEAF and TABLE_POST)', ['ctx', 'old', 'visit']),
  kvm_pgtable_stage2_set_owner: defineProbe('kvm_pgtable_stage2_set_owner', G, FILE, '[<=6.16] mark pages owned by owner_id (bits 9:2 of an invalid PTE)', ['pgt', 'addr', 'size', 'owner']),
  kvm_pgtable_stage2_annotate: defineProbe('kvm_pgtable_stage2_annotate', G, FILE, '[2026] write typed invalid annotations (type 63:60, payload 59:1)', ['pgt', 'addr', 'size', 'type', 'annotation']),
  kvm_pgtable_stage2_mkyoung: defineProbe('kvm_pgtable_stage2_mkyoung', G, FILE, 'set AF on the leaf mapping an IPA', ['pgt', 'addr']),
  kvm_pgtable_stage2_mkold: defineProbe('kvm_pgtable_stage2_mkold', G, FILE, 'clear AF on the leaf mapping an IPA (pre-6.5 name of test_clear_young(mkold))', ['pgt', 'addr']),
  kvm_pgtable_stage2_test_clear_young: defineProbe('kvm_pgtable_stage2_test_clear_young', G, FILE, 'report (and optionally clear) AF over a range', ['pgt', 'addr', 'size', 'mkold']),
  kvm_pgtable_stage2_relax_perms: defineProbe('kvm_pgtable_stage2_relax_perms', G, FILE, 'add R/W and rewrite XN of the leaf at an IPA, no BBM', ['pgt', 'addr', 'prot']),
  kvm_pgtable_stage2_wrprotect: defineProbe('kvm_pgtable_stage2_wrprotect', G, FILE, 'clear S2AP_W over a range; the caller flushes TLBs', ['pgt', 'addr', 'size']),
  stage2_attr_walker: defineProbe('stage2_attr_walker', G, FILE, 'attribute visitor: set/clear bits of a valid leaf without BBM', ['ctx', 'old', 'new']),
  kvm_pgtable_stage2_flush: defineProbe('kvm_pgtable_stage2_flush', G, FILE, 'clean cacheable leaves to the point of coherency (no-op with FWB)', ['pgt', 'addr', 'size']),
  kvm_pgtable_stage2_split: defineProbe('kvm_pgtable_stage2_split', G, FILE, 'split blocks into tables built unlinked from the memcache', ['pgt', 'addr', 'size']),
  stage2_split_walker: defineProbe('stage2_split_walker', G, FILE, 'split visitor for one block', ['ctx', 'old']),
  kvm_pgtable_stage2_create_unlinked: defineProbe('kvm_pgtable_stage2_create_unlinked', G, FILE, 'build a detached subtree mapping one block worth of memory', ['phys', 'level', 'prot']),
  kvm_pgtable_stage2_free_unlinked: defineProbe('kvm_pgtable_stage2_free_unlinked', G, FILE, 'free a detached subtree', ['table', 'level']),
  kvm_pgtable_stage2_destroy: defineProbe('kvm_pgtable_stage2_destroy', G, FILE, 'free every table and the PGD', ['pgt']),
  kvm_pgtable_get_leaf: defineProbe('kvm_pgtable_get_leaf', G, FILE, 'the entry that terminates a walk of one page, and its level', ['pgt', 'addr']),
  __kvm_tlb_flush_vmid_ipa: defineProbe('__kvm_tlb_flush_vmid_ipa', G, 'arch/arm64/kvm/hyp/nvhe/tlb.c', 'TLBI IPAS2E1IS for one IPA at a level (inner shareable)', ['mmu', 'ipa', 'level']),
  __kvm_tlb_flush_vmid_ipa_nsh: defineProbe('__kvm_tlb_flush_vmid_ipa_nsh', G, 'arch/arm64/kvm/hyp/nvhe/tlb.c', 'TLBI for one IPA, local CPU only (after relax_perms)', ['mmu', 'ipa', 'level']),
  kvm_tlb_flush_vmid_range: defineProbe('kvm_tlb_flush_vmid_range', G, 'arch/arm64/kvm/mmu.c', 'range TLBI (whole VMID without TLBIRANGE)', ['mmu', 'addr', 'size']),
} as const;

/** struct kvm_s2_mmu, as far as TLB maintenance goes: counters and an optional log. */
export class KvmS2Mmu {
  tlbi_ipa = 0;
  tlbi_ipa_nsh = 0;
  tlbi_range = 0;
  tlbi_vmid = 0;
  dcache_clean = 0;
  icache_inval = 0;
  /** When non-null, one line per maintenance operation. */
  log: string[] | null = null;
  constructor(
    readonly vmid = 1,
    /** FEAT_TLBIRANGE. */
    readonly tlbRange = false,
  ) {}
}

export function __kvm_tlb_flush_vmid_ipa(mmu: KvmS2Mmu, ipa: number, level: number): void {
  if (probes.armed) probes.hit(P.__kvm_tlb_flush_vmid_ipa, { mmu, ipa, level });
  mmu.tlbi_ipa++;
  if (mmu.log) mmu.log.push(`tlbi ipas2e1is vmid=${mmu.vmid} ipa=0x${ipa.toString(16)} level=${level}`);
}

export function __kvm_tlb_flush_vmid_ipa_nsh(mmu: KvmS2Mmu, ipa: number, level: number): void {
  if (probes.armed) probes.hit(P.__kvm_tlb_flush_vmid_ipa_nsh, { mmu, ipa, level });
  mmu.tlbi_ipa_nsh++;
  if (mmu.log) mmu.log.push(`tlbi ipas2e1 vmid=${mmu.vmid} ipa=0x${ipa.toString(16)} level=${level}`);
}

export function kvm_tlb_flush_vmid_range(mmu: KvmS2Mmu, addr: number, size: number): void {
  if (probes.armed) probes.hit(P.kvm_tlb_flush_vmid_range, { mmu, addr, size });
  if (mmu.tlbRange) {
    mmu.tlbi_range++;
    if (mmu.log) mmu.log.push(`tlbi ripas2e1is vmid=${mmu.vmid} addr=0x${addr.toString(16)} size=0x${size.toString(16)}`);
  } else {
    mmu.tlbi_vmid++;
    if (mmu.log) mmu.log.push(`tlbi vmalls12e1is vmid=${mmu.vmid}`);
  }
}

/**
 * struct kvm_pgtable_mm_ops. `get_page`/`put_page` take the address of the entry (or of a table page) and
 * act on the page that contains it, as the kernel's callbacks do through virt_to_page().
 */
export class KvmPgtableMmOps {
  constructor(
    readonly alloc: PtPageAllocator,
    readonly mmu: KvmS2Mmu,
  ) {}

  zalloc_page(mc: KvmMmuMemoryCache | null): PtPage | undefined {
    if (!mc) return undefined;
    return kvm_mmu_memory_cache_alloc(mc);
  }

  get_page(pa: number): void {
    const p = this.alloc.pageOf(pa);
    if (!p) throw new Error(`get_page on a non-table address 0x${pa.toString(16)}`);
    p.refcount++;
  }

  put_page(pa: number): void {
    const p = this.alloc.pageOf(pa);
    if (!p) throw new Error(`put_page on a non-table address 0x${pa.toString(16)}`);
    if (--p.refcount === 0) this.alloc.free(p.pa);
  }

  page_count(pa: number): number {
    return this.alloc.pageOf(pa)?.refcount ?? 0;
  }

  phys_to_virt(pa: number): PtPage {
    const p = this.alloc.page(pa);
    if (!p) throw new Error(`no table page at 0x${pa.toString(16)}`);
    return p;
  }

  dcache_clean_inval_poc(pa: number, size: number): void {
    this.mmu.dcache_clean++;
    if (this.mmu.log) this.mmu.log.push(`dc civac pa=0x${pa.toString(16)} size=0x${size.toString(16)}`);
  }

  icache_inval_pou(pa: number, size: number): void {
    this.mmu.icache_inval++;
    if (this.mmu.log) this.mmu.log.push(`ic ivau pa=0x${pa.toString(16)} size=0x${size.toString(16)}`);
  }

  free_unlinked_table(pgt: KvmPgtable, childPa: number, level: number): void {
    kvm_pgtable_stage2_free_unlinked(pgt, childPa, level);
  }
}

export interface KvmPgtableOptions {
  granule: Granule;
  iaBits: number;
  lpa2?: boolean;
  /** enum kvm_pgtable_stage2_flags. */
  flags?: number;
  encoding?: OwnerEncoding;
  /** ARM64_HAS_STAGE2_FWB. */
  fwbCap?: boolean;
  /** ARM64_HAS_XNX. */
  xnxCap?: boolean;
  /** FEAT_TLBIRANGE. */
  tlbRange?: boolean;
  alloc?: PtPageAllocator;
  mmu?: KvmS2Mmu;
  force_pte_cb?: (addr: number, end: number, prot: number) => boolean;
  /** Largest owner id set_owner accepts (set_owner_2021 only); default: what the 8-bit field fits. */
  maxOwnerId?: number;
}

/** struct kvm_pgtable (stage-2). */
export class KvmPgtable {
  readonly ia_bits: number;
  readonly start_level: number;
  readonly geo: Stage2Geometry;
  readonly gi: GranuleInfo;
  readonly pageShift: number;
  readonly pageSize: number;
  readonly ptrs: number;
  /** Concatenated PGD pages (zalloc_pages_exact), contiguous physical addresses. */
  pgd: PtPage[] | null;
  readonly mm_ops: KvmPgtableMmOps;
  readonly mmu: KvmS2Mmu;
  readonly flags: number;
  readonly force_pte_cb: ((addr: number, end: number, prot: number) => boolean) | undefined;
  readonly encoding: OwnerEncoding;
  readonly fwbCap: boolean;
  readonly xnxCap: boolean;
  readonly lpa2: boolean;
  readonly maxOwnerId: number;
  /** The BBM marker for this table's encoding. */
  readonly lockedLo: number;
  readonly lockedHi: number;

  constructor(o: KvmPgtableOptions) {
    this.geo = stage2Geometry(o.granule, o.iaBits, o.lpa2 ?? false);
    this.gi = this.geo.granule;
    this.ia_bits = this.geo.iaBits;
    this.start_level = this.geo.startLevel;
    this.pageShift = this.gi.pageShift;
    this.pageSize = this.gi.pageSize;
    this.ptrs = this.gi.ptrsPerPte;
    this.lpa2 = this.geo.lpa2;
    this.flags = o.flags ?? 0;
    this.encoding = o.encoding ?? 'annotate_2026';
    this.fwbCap = o.fwbCap ?? false;
    this.xnxCap = o.xnxCap ?? false;
    this.force_pte_cb = o.force_pte_cb;
    this.maxOwnerId = o.maxOwnerId ?? SET_OWNER_2021_FIELD_MAX;
    this.mmu = o.mmu ?? new KvmS2Mmu(1, o.tlbRange ?? false);
    const alloc = o.alloc ?? new PtPageAllocator(this.pageSize);
    if (alloc.pageSize !== this.pageSize) throw new RangeError('allocator page size differs from the granule');
    this.mm_ops = new KvmPgtableMmOps(alloc, this.mmu);
    const m = lockedMarker(this.encoding);
    this.lockedLo = m.lo;
    this.lockedHi = m.hi;
    // zalloc_pages_exact: the concatenated PGD, each page with its own refcount of 1.
    const pgd: PtPage[] = [];
    for (let i = 0; i < this.geo.pgdPages; i++) {
      const p = alloc.alloc();
      if (!p) throw new Error('-ENOMEM allocating the stage-2 PGD');
      pgd.push(p);
    }
    this.pgd = pgd;
    this.granules = new Float64Array(5);
    for (let l = -1; l <= KVM_PGTABLE_LAST_LEVEL; l++) this.granules[l + 1] = kvm_granule_size(this.pageShift, l);
    this.iaSize = Math.pow(2, this.ia_bits);
  }

  /** 2^ia_bits. */
  readonly iaSize: number;

  get pgdPa(): number {
    return this.pgd ? this.pgd[0]!.pa : 0;
  }

  /** kvm_granule_size(level) for levels -1..3, at [level + 1]. */
  readonly granules: Float64Array;

  granuleSize(level: number): number {
    return this.granules[level + 1]!;
  }

  /** Table page behind a table PTE. */
  child(lo: number, hi: number): PtPage {
    return this.mm_ops.phys_to_virt(kvm_pte_to_phys(lo, hi, this.pageShift, this.lpa2));
  }
}

/** Build a stage-2 table (`kvm_init_stage2_mmu` -> `__kvm_pgtable_stage2_init`). Throws on a bad geometry. */
export function __kvm_pgtable_stage2_init(o: KvmPgtableOptions): KvmPgtable {
  return new KvmPgtable(o);
}

// ---------------------------------------------------------------------------------------------------------
// PTE predicates. Halves are passed separately so nothing allocates.

export function kvm_pte_valid(lo: number): boolean {
  return (lo & KVM_PTE_VALID) !== 0;
}

export function kvm_pte_table(lo: number, level: number): boolean {
  if (level === KVM_PGTABLE_LAST_LEVEL) return false;
  if (!(lo & KVM_PTE_VALID)) return false;
  return (lo & KVM_PTE_TYPE) !== 0;
}

/** Counted entries hold a reference on their table page: anything non-zero (valid, annotation, LOCKED). */
export function stage2_pte_is_counted(lo: number, hi: number): boolean {
  return lo !== 0 || hi !== 0;
}

export function stage2_pte_is_locked(pgt: KvmPgtable, lo: number, hi: number): boolean {
  return isLocked(pgt.encoding, lo, hi);
}

function memattrOf(pgt: KvmPgtable, kind: 'normal' | 'nc' | 'device'): number {
  const fwb = stage2_has_fwb(pgt);
  if (kind === 'device') return fwb ? MT_S2_FWB_DEVICE_nGnRE : MT_S2_DEVICE_nGnRE;
  if (kind === 'nc') return fwb ? MT_S2_FWB_NORMAL_NC : MT_S2_NORMAL_NC;
  return fwb ? MT_S2_FWB_NORMAL : MT_S2_NORMAL;
}

export function stage2_has_fwb(pgt: KvmPgtable): boolean {
  if (!pgt.fwbCap) return false;
  return !(pgt.flags & KVM_PGTABLE_S2_NOFWB);
}

export function stage2_pte_cacheable(pgt: KvmPgtable, lo: number): boolean {
  return kvm_pte_valid(lo) && ((lo & KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR) >>> 2) === memattrOf(pgt, 'normal');
}

export function stage2_pte_executable(lo: number, hi: number): boolean {
  return kvm_pte_valid(lo) && ((hi & KVM_PTE_LEAF_ATTR_HI_S2_XN_HI) >>> KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI) !== KVM_PTE_LEAF_ATTR_HI_S2_XN_XN;
}

// ---------------------------------------------------------------------------------------------------------
// Prot <-> attributes.

/** Result holder for functions producing a descriptor or attribute pair. */
export interface Halves {
  lo: number;
  hi: number;
}

/** stage2_set_xn_attr: the XN[1:0] value for the PX/UX bits of prot, or -EINVAL. */
export function stage2_set_xn_attr(pgt: KvmPgtable, prot: number): number {
  const px = (prot & KVM_PGTABLE_PROT_PX) !== 0;
  const ux = (prot & KVM_PGTABLE_PROT_UX) !== 0;
  if (!pgt.xnxCap && px !== ux) return -E.EINVAL;
  if (px && ux) return 0b00;
  if (!px && ux) return 0b01;
  if (!px && !ux) return 0b10;
  return 0b11;
}

/** stage2_set_prot_attr: fills `out` with the leaf attributes for `prot`; returns 0 or -EINVAL. */
export function stage2_set_prot_attr(pgt: KvmPgtable, prot: number, out: Halves): number {
  const device = (prot & KVM_PGTABLE_PROT_DEVICE) !== 0;
  const nc = (prot & KVM_PGTABLE_PROT_NORMAL_NC) !== 0;
  if (device && nc) return -E.EINVAL;
  if ((device || nc) && prot & KVM_PGTABLE_PROT_X) return -E.EINVAL;
  const xn = stage2_set_xn_attr(pgt, prot);
  if (xn < 0) return xn;
  let lo = memattrOf(pgt, device ? 'device' : nc ? 'nc' : 'normal') << 2;
  let hi = xn << KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI;
  if (prot & KVM_PGTABLE_PROT_R) lo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R;
  if (prot & KVM_PGTABLE_PROT_W) lo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
  if (!pgt.lpa2) lo |= KVM_PTE_LEAF_ATTR_LO_S2_SH_IS << 8;
  lo |= KVM_PTE_LEAF_ATTR_LO_S2_AF;
  hi |= ((prot & KVM_PGTABLE_PROT_SW_MASK) >>> KVM_PGTABLE_PROT_SW_SHIFT) << KVM_PTE_LEAF_ATTR_HI_SW_SHIFT_HI;
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  return 0;
}

/** kvm_pgtable_stage2_pte_prot: prot of a leaf; an invalid PTE reports only its SW bits. */
export function kvm_pgtable_stage2_pte_prot(lo: number, hi: number): number {
  let prot = ((hi & KVM_PTE_LEAF_ATTR_HI_SW_HI) >>> KVM_PTE_LEAF_ATTR_HI_SW_SHIFT_HI) << KVM_PGTABLE_PROT_SW_SHIFT;
  if (!kvm_pte_valid(lo)) return prot;
  if (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R) prot |= KVM_PGTABLE_PROT_R;
  if (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W) prot |= KVM_PGTABLE_PROT_W;
  switch ((hi & KVM_PTE_LEAF_ATTR_HI_S2_XN_HI) >>> KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI) {
    case 0b00:
      prot |= KVM_PGTABLE_PROT_X;
      break;
    case 0b01:
      prot |= KVM_PGTABLE_PROT_UX;
      break;
    case 0b11:
      prot |= KVM_PGTABLE_PROT_PX;
      break;
    default:
      break;
  }
  return prot;
}

// ---------------------------------------------------------------------------------------------------------
// The walker.

export type KvmPgtableVisitor = (ctx: KvmPgtableVisitCtx, visit: number) => number;

export interface KvmPgtableWalker {
  cb: KvmPgtableVisitor;
  arg: unknown;
  flags: number;
}

/**
 * struct kvm_pgtable_visit_ctx. `ptep` is the table page and `idx` the entry within it (the kernel's pointer
 * is page + idx); `pgt` is the table the walk belongs to (for an unlinked subtree, the table it will join).
 * Contexts are reused across visits: a visitor must not keep one past its return.
 */
export class KvmPgtableVisitCtx {
  ptep!: PtPage;
  idx = 0;
  oldLo = 0;
  oldHi = 0;
  arg: unknown = undefined;
  mm_ops!: KvmPgtableMmOps;
  start = 0;
  addr = 0;
  end = 0;
  level = 0;
  flags = 0;
  pgt!: KvmPgtable;

  /** Physical address of the entry. */
  get ptepPa(): number {
    return this.ptep.pa + this.idx * 8;
  }

  read(): void {
    const d = this.ptep.data;
    this.oldLo = d[this.idx * 2]!;
    this.oldHi = d[this.idx * 2 + 1]!;
  }

  /** A plain snapshot for probes and debuggers. */
  snapshot(): Record<string, unknown> {
    return {
      ptep: '0x' + this.ptepPa.toString(16),
      old: hex64(this.oldLo, this.oldHi),
      start: '0x' + this.start.toString(16),
      addr: '0x' + this.addr.toString(16),
      end: '0x' + this.end.toString(16),
      level: this.level,
      flags: this.flags,
    };
  }
}

export function hex64(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

interface WalkData {
  pgt: KvmPgtable;
  walker: KvmPgtableWalker;
  start: number;
  addr: number;
  end: number;
  depth: number;
}

/** One context per (nesting depth, level): recursion and nested walks never share one. */
const ctxPool: KvmPgtableVisitCtx[][] = [];
let walkDepth = 0;

function ctxFor(depth: number, level: number): KvmPgtableVisitCtx {
  let row = ctxPool[depth];
  if (!row) {
    row = [];
    for (let i = 0; i < 5; i++) row.push(new KvmPgtableVisitCtx());
    ctxPool[depth] = row;
  }
  return row[level + 1]!;
}

function writePte(page: PtPage, idx: number, lo: number, hi: number): void {
  page.data[idx * 2] = lo;
  page.data[idx * 2 + 1] = hi;
}

export function kvm_pgtable_walk_shared(ctx: KvmPgtableVisitCtx): boolean {
  return (ctx.flags & KVM_PGTABLE_WALK_SHARED) !== 0;
}

function kvm_pgtable_walk_continue(walker: KvmPgtableWalker, r: number): boolean {
  // -EAGAIN means "the PTE changed under us": a fault handler retries the guest, anyone else keeps walking.
  if (r === -E.EAGAIN) return !(walker.flags & KVM_PGTABLE_WALK_HANDLE_FAULT);
  return r === 0;
}

function __kvm_pgtable_visit(data: WalkData, page: PtPage, idx: number, level: number): number {
  const walker = data.walker;
  const flags = walker.flags;
  const pgt = data.pgt;
  const ctx = ctxFor(data.depth, level);
  ctx.ptep = page;
  ctx.idx = idx;
  ctx.oldLo = page.data[idx * 2]!;
  ctx.oldHi = page.data[idx * 2 + 1]!;
  ctx.arg = walker.arg;
  ctx.mm_ops = pgt.mm_ops;
  ctx.start = data.start;
  ctx.addr = data.addr;
  ctx.end = data.end;
  ctx.level = level;
  ctx.flags = flags;
  ctx.pgt = pgt;
  let ret = 0;
  let reload = false;
  let table = kvm_pte_table(ctx.oldLo, level);

  if (table && flags & KVM_PGTABLE_WALK_TABLE_PRE) {
    ret = walker.cb(ctx, KVM_PGTABLE_WALK_TABLE_PRE);
    reload = true;
  }
  if (!table && flags & KVM_PGTABLE_WALK_LEAF) {
    ret = walker.cb(ctx, KVM_PGTABLE_WALK_LEAF);
    reload = true;
  }
  // A LEAF visit may have installed a table to descend into; a TABLE_PRE visit may have replaced one.
  if (reload) {
    ctx.read();
    table = kvm_pte_table(ctx.oldLo, level);
  }
  if (!kvm_pgtable_walk_continue(walker, ret)) return ret;

  if (!table) {
    const g = pgt.granules[level + 1]!;
    data.addr = data.addr - (data.addr % g) + g;
    return 0;
  }

  const child = pgt.child(ctx.oldLo, ctx.oldHi);
  ret = __kvm_pgtable_walk(data, child, level + 1);
  if (!kvm_pgtable_walk_continue(walker, ret)) return ret;

  if (flags & KVM_PGTABLE_WALK_TABLE_POST) ret = walker.cb(ctx, KVM_PGTABLE_WALK_TABLE_POST);
  return kvm_pgtable_walk_continue(walker, ret) ? 0 : ret;
}

function kvm_pgtable_idx(pgt: KvmPgtable, addr: number, level: number): number {
  return Math.floor(addr / pgt.granules[level + 1]!) % pgt.ptrs;
}

function __kvm_pgtable_walk(data: WalkData, page: PtPage, level: number): number {
  if (level > KVM_PGTABLE_LAST_LEVEL) return -E.EINVAL;
  const ptrs = data.pgt.ptrs;
  for (let idx = kvm_pgtable_idx(data.pgt, data.addr, level); idx < ptrs; idx++) {
    if (data.addr >= data.end) break;
    const ret = __kvm_pgtable_visit(data, page, idx, level);
    if (ret) return ret;
  }
  return 0;
}

function kvm_pgd_page_idx(pgt: KvmPgtable, addr: number): number {
  return Math.floor((addr % pgt.iaSize) / pgt.granules[pgt.start_level]!);
}

function _kvm_pgtable_walk(data: WalkData): number {
  const pgt = data.pgt;
  const limit = pgt.iaSize;
  if (data.addr > limit || data.end > limit) return -E.ERANGE;
  if (!pgt.pgd) return -E.EINVAL;
  for (let idx = kvm_pgd_page_idx(pgt, data.addr); data.addr < data.end; idx++) {
    const ret = __kvm_pgtable_walk(data, pgt.pgd[idx]!, pgt.start_level);
    if (ret) return ret;
  }
  return 0;
}

/** kvm_pgtable_walk: walk [ALIGN_DOWN(addr), PAGE_ALIGN(addr + size)). */
export function kvm_pgtable_walk(pgt: KvmPgtable, addr: number, size: number, walker: KvmPgtableWalker): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_walk, { pgt, addr, size, flags: walker.flags });
  const ps = pgt.pageSize;
  const start = addr - (addr % ps);
  const endRaw = start + size;
  const end = Math.ceil(endRaw / ps) * ps;
  const data: WalkData = { pgt, walker, start, addr: start, end, depth: ++walkDepth };
  try {
    return _kvm_pgtable_walk(data);
  } finally {
    walkDepth--;
  }
}

/** Walk a detached subtree rooted at `page` (level `level`), covering [0, end). */
function walkUnlinked(pgt: KvmPgtable, page: PtPage, level: number, end: number, walker: KvmPgtableWalker): number {
  const data: WalkData = { pgt, walker, start: 0, addr: 0, end, depth: ++walkDepth };
  try {
    return __kvm_pgtable_walk(data, page, level);
  } finally {
    walkDepth--;
  }
}

/** kvm_pgtable_get_leaf: the entry ending a one-page walk and its level; ret 0 or an error. */
export interface LeafResult {
  ret: number;
  lo: number;
  hi: number;
  level: number;
}

export function kvm_pgtable_get_leaf(pgt: KvmPgtable, addr: number, out?: LeafResult): LeafResult {
  if (probes.armed) probes.hit(P.kvm_pgtable_get_leaf, { pgt, addr });
  const res = out ?? { ret: 0, lo: 0, hi: 0, level: 0 };
  const walker: KvmPgtableWalker = {
    cb: leafWalkerCb,
    arg: res,
    flags: KVM_PGTABLE_WALK_LEAF,
  };
  const ps = pgt.pageSize;
  res.ret = kvm_pgtable_walk(pgt, addr - (addr % ps), ps, walker);
  return res;
}

function leafWalkerCb(ctx: KvmPgtableVisitCtx, _visit: number): number {
  const r = ctx.arg as LeafResult;
  r.lo = ctx.oldLo;
  r.hi = ctx.oldHi;
  r.level = ctx.level;
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// Break-before-make.

function stage2_try_set_pte(ctx: KvmPgtableVisitCtx, lo: number, hi: number): boolean {
  const d = ctx.ptep.data;
  const i = ctx.idx * 2;
  if (!kvm_pgtable_walk_shared(ctx)) {
    d[i] = lo;
    d[i + 1] = hi;
    return true;
  }
  // cmpxchg against the value the visit started from.
  if (d[i] !== ctx.oldLo >>> 0 || d[i + 1] !== ctx.oldHi >>> 0) return false;
  d[i] = lo;
  d[i + 1] = hi;
  return true;
}

export function stage2_try_break_pte(ctx: KvmPgtableVisitCtx, mmu: KvmS2Mmu): boolean {
  if (probes.armed) probes.hit(P.stage2_try_break_pte, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi) });
  const pgt = ctx.pgt;
  if (stage2_pte_is_locked(pgt, ctx.oldLo, ctx.oldHi)) return false; // another walker is mid-BBM
  if (!stage2_try_set_pte(ctx, pgt.lockedLo, pgt.lockedHi)) return false;
  if (!(ctx.flags & KVM_PGTABLE_WALK_SKIP_BBM_TLBI)) {
    if (kvm_pte_table(ctx.oldLo, ctx.level)) {
      const size = pgt.granuleSize(ctx.level);
      kvm_tlb_flush_vmid_range(mmu, ctx.addr - (ctx.addr % size), size);
    } else if (kvm_pte_valid(ctx.oldLo)) {
      __kvm_tlb_flush_vmid_ipa(mmu, ctx.addr, ctx.level);
    }
  }
  if (stage2_pte_is_counted(ctx.oldLo, ctx.oldHi)) ctx.mm_ops.put_page(ctx.ptepPa);
  return true;
}

export function stage2_make_pte(ctx: KvmPgtableVisitCtx, lo: number, hi: number): void {
  if (probes.armed) probes.hit(P.stage2_make_pte, { ctx: ctx.snapshot(), new: hex64(lo, hi) });
  const d = ctx.ptep.data;
  const i = ctx.idx * 2;
  if (!stage2_pte_is_locked(ctx.pgt, d[i]!, d[i + 1]!)) throw new Error('WARN_ON: stage2_make_pte on an entry that is not locked');
  if (stage2_pte_is_counted(lo, hi)) ctx.mm_ops.get_page(ctx.ptepPa);
  d[i] = lo >>> 0;
  d[i + 1] = hi >>> 0;
}

// ---------------------------------------------------------------------------------------------------------
// Map / annotate.

/** struct stage2_map_data. `annotLo/Hi` is the invalid PTE written when `annotation` is set. */
export interface Stage2MapData {
  phys: number;
  attrLo: number;
  attrHi: number;
  annotation: boolean;
  annotLo: number;
  annotHi: number;
  /** Owner id / type written (for probes). */
  owner: number;
  mmu: KvmS2Mmu;
  memcache: KvmMmuMemoryCache | null;
  force_pte: boolean;
}

function stage2_map_walker_phys_addr(ctx: KvmPgtableVisitCtx, data: Stage2MapData): number {
  if (data.phys === KVM_PHYS_INVALID) return data.phys;
  return data.phys + (ctx.addr - ctx.start);
}

/** kvm_block_mapping_supported(ctx, phys). */
export function kvm_block_mapping_supported(ctx: KvmPgtableVisitCtx, phys: number): boolean {
  const pgt = ctx.pgt;
  const granule = pgt.granuleSize(ctx.level);
  if (!kvm_level_supports_block_mapping(pgt.gi, ctx.level)) return false;
  if (granule > ctx.end - ctx.addr) return false;
  if (kvm_phys_is_valid(phys) && phys % granule !== 0) return false;
  return ctx.addr % granule === 0;
}

function stage2_leaf_mapping_allowed(ctx: KvmPgtableVisitCtx, data: Stage2MapData): boolean {
  if (data.force_pte && ctx.level < KVM_PGTABLE_LAST_LEVEL) return false;
  if (data.annotation) return true;
  return kvm_block_mapping_supported(ctx, stage2_map_walker_phys_addr(ctx, data));
}

function stage2_pte_needs_update(oldLo: number, oldHi: number, newLo: number, newHi: number): boolean {
  if (!kvm_pte_valid(oldLo) || !kvm_pte_valid(newLo)) return true;
  return ((oldLo ^ newLo) & ~KVM_PTE_LEAF_ATTR_S2_PERMS_LO) !== 0 || ((oldHi ^ newHi) & ~KVM_PTE_LEAF_ATTR_S2_PERMS_HI) !== 0;
}

/** kvm_init_valid_leaf_pte, writing into `out`. */
export function kvm_init_valid_leaf_pte(pgt: KvmPgtable, pa: number, attrLo: number, attrHi: number, level: number, out: Halves): void {
  let lo = kvm_phys_to_pte_lo(pa, pgt.pageShift, pgt.lpa2);
  let hi = kvm_phys_to_pte_hi(pa, pgt.pageShift, pgt.lpa2);
  lo |= attrLo & KVM_PTE_LEAF_ATTR_LO;
  hi |= attrHi & KVM_PTE_LEAF_ATTR_HI_HI;
  if (level === KVM_PGTABLE_LAST_LEVEL) lo |= KVM_PTE_TYPE;
  lo |= KVM_PTE_VALID;
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

const scratch: Halves = { lo: 0, hi: 0 };

export function stage2_map_walker_try_leaf(ctx: KvmPgtableVisitCtx, data: Stage2MapData): number {
  const pgt = ctx.pgt;
  const phys = stage2_map_walker_phys_addr(ctx, data);
  const granule = pgt.granuleSize(ctx.level);
  if (!stage2_leaf_mapping_allowed(ctx, data)) {
    if (probes.armed) probes.hit(P.stage2_map_walker_try_leaf, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi), new: null, owner: data.owner, ret: -E.E2BIG });
    return -E.E2BIG;
  }
  let newLo: number;
  let newHi: number;
  if (data.annotation) {
    newLo = data.annotLo;
    newHi = data.annotHi;
  } else {
    kvm_init_valid_leaf_pte(pgt, phys, data.attrLo, data.attrHi, ctx.level, scratch);
    newLo = scratch.lo;
    newHi = scratch.hi;
  }
  if (probes.armed) probes.hit(P.stage2_map_walker_try_leaf, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi), new: hex64(newLo, newHi), owner: data.owner });
  // Same mapping, or a permission-only change: leave it to relax_perms (and to the racing vCPU).
  if (!stage2_pte_needs_update(ctx.oldLo, ctx.oldHi, newLo, newHi)) return -E.EAGAIN;

  // Only software bits change: rewrite in place, no BBM, adjusting the count if "counted" flipped.
  if (!kvm_pgtable_walk_shared(ctx) && ((ctx.oldLo ^ newLo) >>> 0) === 0 && ((ctx.oldHi ^ newHi) & ~KVM_PTE_LEAF_ATTR_HI_SW_HI) === 0) {
    const oldCounted = stage2_pte_is_counted(ctx.oldLo, ctx.oldHi);
    if (oldCounted !== stage2_pte_is_counted(newLo, newHi)) {
      if (oldCounted) ctx.mm_ops.put_page(ctx.ptepPa);
      else ctx.mm_ops.get_page(ctx.ptepPa);
    }
    writePte(ctx.ptep, ctx.idx, newLo, newHi);
    return 0;
  }

  if (!stage2_try_break_pte(ctx, data.mmu)) return -E.EAGAIN;

  if (!(ctx.flags & KVM_PGTABLE_WALK_SKIP_CMO)) {
    if (stage2_pte_cacheable(pgt, newLo) && !stage2_has_fwb(pgt)) ctx.mm_ops.dcache_clean_inval_poc(phys, granule);
    if (stage2_pte_executable(newLo, newHi)) ctx.mm_ops.icache_inval_pou(phys, granule);
  }
  stage2_make_pte(ctx, newLo, newHi);
  return 0;
}

export function stage2_map_walk_table_pre(ctx: KvmPgtableVisitCtx, data: Stage2MapData): number {
  if (probes.armed) probes.hit(P.stage2_map_walk_table_pre, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi) });
  const pgt = ctx.pgt;
  const childPa = kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, pgt.pageShift, pgt.lpa2);
  if (!stage2_leaf_mapping_allowed(ctx, data)) return 0;
  const ret = stage2_map_walker_try_leaf(ctx, data);
  if (ret) return ret;
  ctx.mm_ops.free_unlinked_table(pgt, childPa, ctx.level);
  return 0;
}

export function stage2_map_walk_leaf(ctx: KvmPgtableVisitCtx, data: Stage2MapData): number {
  if (probes.armed) probes.hit(P.stage2_map_walk_leaf, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi) });
  const ret = stage2_map_walker_try_leaf(ctx, data);
  if (ret !== -E.E2BIG) return ret;
  if (ctx.level === KVM_PGTABLE_LAST_LEVEL) return -E.EINVAL;
  if (!data.memcache) return -E.ENOMEM;
  const child = ctx.mm_ops.zalloc_page(data.memcache);
  if (!child) return -E.ENOMEM;
  if (!stage2_try_break_pte(ctx, data.mmu)) {
    ctx.mm_ops.put_page(child.pa);
    return -E.EAGAIN;
  }
  // The old block is not copied into the new table: the rest of its range faults back in lazily.
  const pgt = ctx.pgt;
  const lo = (kvm_phys_to_pte_lo(child.pa, pgt.pageShift, pgt.lpa2) | KVM_PTE_TYPE | KVM_PTE_VALID) >>> 0;
  const hi = kvm_phys_to_pte_hi(child.pa, pgt.pageShift, pgt.lpa2);
  stage2_make_pte(ctx, lo, hi);
  return 0;
}

function stage2_map_walker(ctx: KvmPgtableVisitCtx, visit: number): number {
  const data = ctx.arg as Stage2MapData;
  if (visit === KVM_PGTABLE_WALK_TABLE_PRE) return stage2_map_walk_table_pre(ctx, data);
  if (visit === KVM_PGTABLE_WALK_LEAF) return stage2_map_walk_leaf(ctx, data);
  return -E.EINVAL;
}

/** kvm_pgtable_stage2_map(pgt, addr, size, phys, prot, mc, flags). */
export function kvm_pgtable_stage2_map(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  phys: number,
  prot: number,
  mc: KvmMmuMemoryCache | null,
  flags = 0,
): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_map, { pgt, addr, size, phys, prot, flags });
  if (pgt.flags & KVM_PGTABLE_S2_IDMAP && addr !== phys) return -E.EINVAL; // WARN_ON in the kernel
  const data: Stage2MapData = {
    phys: phys - (phys % pgt.pageSize),
    attrLo: 0,
    attrHi: 0,
    annotation: false,
    annotLo: 0,
    annotHi: 0,
    owner: 0,
    mmu: pgt.mmu,
    memcache: mc,
    force_pte: pgt.force_pte_cb ? pgt.force_pte_cb(addr, addr + size, prot) : false,
  };
  const attr: Halves = { lo: 0, hi: 0 };
  const r = stage2_set_prot_attr(pgt, prot, attr);
  if (r) return r;
  data.attrLo = attr.lo;
  data.attrHi = attr.hi;
  return kvm_pgtable_walk(pgt, addr, size, {
    cb: stage2_map_walker,
    arg: data,
    flags: flags | KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF,
  });
}

function annotateWalk(pgt: KvmPgtable, addr: number, size: number, mc: KvmMmuMemoryCache | null, lo: number, hi: number, owner: number): number {
  const data: Stage2MapData = {
    phys: KVM_PHYS_INVALID,
    attrLo: 0,
    attrHi: 0,
    annotation: true,
    annotLo: lo >>> 0,
    annotHi: hi >>> 0,
    owner,
    mmu: pgt.mmu,
    memcache: mc,
    force_pte: true,
  };
  return kvm_pgtable_walk(pgt, addr, size, {
    cb: stage2_map_walker,
    arg: data,
    flags: KVM_PGTABLE_WALK_TABLE_PRE | KVM_PGTABLE_WALK_LEAF,
  });
}

/**
 * [≤6.16 / set_owner_2021] kvm_pgtable_stage2_set_owner: page-granular invalid leaves carrying `owner_id` in
 * bits 9:2. Owner 0 writes the zero PTE (uncounted: "owned by whoever owns the table").
 */
export function kvm_pgtable_stage2_set_owner(pgt: KvmPgtable, addr: number, size: number, mc: KvmMmuMemoryCache | null, owner_id: number): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_set_owner, { pgt, addr, size, owner: owner_id });
  if (pgt.encoding !== 'set_owner_2021') return -E.EOPNOTSUPP;
  if (!Number.isInteger(owner_id) || owner_id < 0 || owner_id > pgt.maxOwnerId || owner_id > SET_OWNER_2021_FIELD_MAX) return -E.EINVAL;
  return annotateWalk(pgt, addr, size, mc, owner_id << KVM_INVALID_PTE_OWNER_SHIFT, 0, owner_id);
}

/**
 * [2026 / annotate_2026] kvm_pgtable_stage2_annotate: invalid leaves with `type` in bits 63:60 and the
 * annotation payload (bits 59:1). Type 0, type LOCKED, and a payload touching bit 0 or bits 63:60 are -EINVAL.
 */
export function kvm_pgtable_stage2_annotate(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  mc: KvmMmuMemoryCache | null,
  type: number,
  annotLo: number,
  annotHi: number,
): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_annotate, { pgt, addr, size, type, annotation: hex64(annotLo, annotHi) });
  if (pgt.encoding !== 'annotate_2026') return -E.EOPNOTSUPP;
  if (!Number.isInteger(type) || type <= 0 || type > 15 || type === KVM_INVALID_PTE_TYPE_LOCKED) return -E.EINVAL;
  if (annotLo & 1 || annotHi >>> KVM_INVALID_PTE_TYPE_SHIFT_HI) return -E.EINVAL;
  return annotateWalk(pgt, addr, size, mc, annotLo, (annotHi | (type << KVM_INVALID_PTE_TYPE_SHIFT_HI)) >>> 0, type);
}

// ---------------------------------------------------------------------------------------------------------
// Unmap.

function stage2_unmap_defer_tlb_flush(pgt: KvmPgtable): boolean {
  return pgt.mmu.tlbRange && stage2_has_fwb(pgt);
}

function stage2_unmap_put_pte(ctx: KvmPgtableVisitCtx, mmu: KvmS2Mmu): void {
  if (!stage2_unmap_defer_tlb_flush(ctx.pgt)) __kvm_tlb_flush_vmid_ipa(mmu, ctx.addr, ctx.level);
  writePte(ctx.ptep, ctx.idx, 0, 0);
  ctx.mm_ops.put_page(ctx.ptepPa);
}

export function stage2_unmap_walker(ctx: KvmPgtableVisitCtx, visit: number): number {
  if (probes.armed) probes.hit(P.stage2_unmap_walker, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi), visit });
  const pgt = ctx.pgt;
  const mmu = ctx.arg as KvmS2Mmu;
  if (!kvm_pte_valid(ctx.oldLo)) {
    // Annotations (and LOCKED) are counted: unmap erases owner annotations too.
    if (stage2_pte_is_counted(ctx.oldLo, ctx.oldHi)) {
      writePte(ctx.ptep, ctx.idx, 0, 0);
      ctx.mm_ops.put_page(ctx.ptepPa);
    }
    return 0;
  }
  let childPa = -1;
  let needFlush = false;
  if (kvm_pte_table(ctx.oldLo, ctx.level)) {
    childPa = kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, pgt.pageShift, pgt.lpa2);
    if (ctx.mm_ops.page_count(childPa) !== 1) return 0;
  } else if (stage2_pte_cacheable(pgt, ctx.oldLo)) {
    needFlush = !stage2_has_fwb(pgt);
  }
  // The whole leaf goes, even when the range covers only part of a block.
  stage2_unmap_put_pte(ctx, mmu);
  if (needFlush) ctx.mm_ops.dcache_clean_inval_poc(kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, pgt.pageShift, pgt.lpa2), pgt.granuleSize(ctx.level));
  if (childPa >= 0) ctx.mm_ops.put_page(childPa);
  return 0;
}

export function kvm_pgtable_stage2_unmap(pgt: KvmPgtable, addr: number, size: number): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_unmap, { pgt, addr, size });
  const ret = kvm_pgtable_walk(pgt, addr, size, {
    cb: stage2_unmap_walker,
    arg: pgt.mmu,
    flags: KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST,
  });
  if (stage2_unmap_defer_tlb_flush(pgt)) kvm_tlb_flush_vmid_range(pgt.mmu, addr, size);
  return ret;
}

// ---------------------------------------------------------------------------------------------------------
// Attribute updates (no BBM).

interface Stage2AttrData {
  setLo: number;
  setHi: number;
  clrLo: number;
  clrHi: number;
  pteLo: number;
  pteHi: number;
  level: number;
}

export function stage2_attr_walker(ctx: KvmPgtableVisitCtx, _visit: number): number {
  const data = ctx.arg as Stage2AttrData;
  if (!kvm_pte_valid(ctx.oldLo) || stage2_pte_is_locked(ctx.pgt, ctx.oldLo, ctx.oldHi)) return -E.EAGAIN;
  data.level = ctx.level;
  data.pteLo = ctx.oldLo;
  data.pteHi = ctx.oldHi;
  const lo = ((ctx.oldLo & ~data.clrLo) | data.setLo) >>> 0;
  const hi = ((ctx.oldHi & ~data.clrHi) | data.setHi) >>> 0;
  if (probes.armed) probes.hit(P.stage2_attr_walker, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi), new: hex64(lo, hi) });
  if (lo !== ctx.oldLo >>> 0 || hi !== ctx.oldHi >>> 0) {
    if (stage2_pte_executable(lo, hi) && !stage2_pte_executable(ctx.oldLo, ctx.oldHi)) {
      const pgt = ctx.pgt;
      ctx.mm_ops.icache_inval_pou(kvm_pte_to_phys(lo, hi, pgt.pageShift, pgt.lpa2), pgt.granuleSize(ctx.level));
    }
    if (!stage2_try_set_pte(ctx, lo, hi)) return -E.EAGAIN;
  }
  return 0;
}

function stage2_update_leaf_attrs(
  pgt: KvmPgtable,
  addr: number,
  size: number,
  setLo: number,
  setHi: number,
  clrLo: number,
  clrHi: number,
  flags: number,
  data: Stage2AttrData,
): number {
  data.setLo = setLo;
  data.setHi = setHi;
  data.clrLo = clrLo;
  data.clrHi = clrHi;
  data.level = -2;
  return kvm_pgtable_walk(pgt, addr, size, { cb: stage2_attr_walker, arg: data, flags: flags | KVM_PGTABLE_WALK_LEAF });
}

function attrData(): Stage2AttrData {
  return { setLo: 0, setHi: 0, clrLo: 0, clrHi: 0, pteLo: 0, pteHi: 0, level: -2 };
}

export function kvm_pgtable_stage2_wrprotect(pgt: KvmPgtable, addr: number, size: number): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_wrprotect, { pgt, addr, size });
  return stage2_update_leaf_attrs(pgt, addr, size, 0, 0, KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W, 0, 0, attrData());
}

export function kvm_pgtable_stage2_mkyoung(pgt: KvmPgtable, addr: number, flags = 0): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_mkyoung, { pgt, addr });
  return stage2_update_leaf_attrs(pgt, addr, 1, KVM_PTE_LEAF_ATTR_LO_S2_AF, 0, 0, 0, flags, attrData());
}

interface Stage2AgeData {
  mkold: boolean;
  young: boolean;
}

function stage2_age_walker(ctx: KvmPgtableVisitCtx, _visit: number): number {
  const data = ctx.arg as Stage2AgeData;
  if (!kvm_pte_valid(ctx.oldLo) || !(ctx.oldLo & KVM_PTE_LEAF_ATTR_LO_S2_AF)) return 0;
  data.young = true;
  if (data.mkold && !stage2_try_set_pte(ctx, (ctx.oldLo & ~KVM_PTE_LEAF_ATTR_LO_S2_AF) >>> 0, ctx.oldHi)) return -E.EAGAIN;
  return 0;
}

/** kvm_pgtable_stage2_test_clear_young: whether any valid leaf in range had AF set; clears AF when mkold. */
export function kvm_pgtable_stage2_test_clear_young(pgt: KvmPgtable, addr: number, size: number, mkold: boolean): boolean {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_test_clear_young, { pgt, addr, size, mkold });
  const data: Stage2AgeData = { mkold, young: false };
  kvm_pgtable_walk(pgt, addr, size, { cb: stage2_age_walker, arg: data, flags: KVM_PGTABLE_WALK_LEAF });
  return data.young;
}

/** kvm_pgtable_stage2_mkold (before 6.5): clear AF of one page's leaf; returns whether it was young. */
export function kvm_pgtable_stage2_mkold(pgt: KvmPgtable, addr: number): boolean {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_mkold, { pgt, addr });
  return kvm_pgtable_stage2_test_clear_young(pgt, addr, pgt.pageSize, true);
}

/** kvm_pgtable_stage2_relax_perms: only adds R/W and rewrites XN; SW bits in prot are -EINVAL. */
export function kvm_pgtable_stage2_relax_perms(pgt: KvmPgtable, addr: number, prot: number, flags = 0): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_relax_perms, { pgt, addr, prot });
  if (prot & KVM_PGTABLE_PROT_SW_MASK) return -E.EINVAL;
  let setLo = 0;
  if (prot & KVM_PGTABLE_PROT_R) setLo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R;
  if (prot & KVM_PGTABLE_PROT_W) setLo |= KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
  const xn = stage2_set_xn_attr(pgt, prot);
  if (xn < 0) return xn;
  const setHi = (xn << KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI) >>> 0;
  const clrHi = (~setHi & KVM_PTE_LEAF_ATTR_HI_S2_XN_HI) >>> 0;
  const data = attrData();
  const ret = stage2_update_leaf_attrs(pgt, addr, 1, setLo, setHi, 0, clrHi, flags, data);
  if (!ret || ret === -E.EAGAIN) __kvm_tlb_flush_vmid_ipa_nsh(pgt.mmu, addr, data.level < -1 ? KVM_PGTABLE_LAST_LEVEL : data.level);
  return ret;
}

function stage2_flush_walker(ctx: KvmPgtableVisitCtx, _visit: number): number {
  const pgt = ctx.pgt;
  if (!stage2_pte_cacheable(pgt, ctx.oldLo)) return 0;
  ctx.mm_ops.dcache_clean_inval_poc(kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, pgt.pageShift, pgt.lpa2), pgt.granuleSize(ctx.level));
  return 0;
}

/** kvm_pgtable_stage2_flush: clean every cacheable leaf to PoC; nothing to do with FWB. */
export function kvm_pgtable_stage2_flush(pgt: KvmPgtable, addr: number, size: number): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_flush, { pgt, addr, size });
  if (stage2_has_fwb(pgt)) return 0;
  return kvm_pgtable_walk(pgt, addr, size, { cb: stage2_flush_walker, arg: undefined, flags: KVM_PGTABLE_WALK_LEAF });
}

// ---------------------------------------------------------------------------------------------------------
// Free / destroy / unlinked subtrees / split.

function stage2_free_walker(ctx: KvmPgtableVisitCtx, _visit: number): number {
  if (!stage2_pte_is_counted(ctx.oldLo, ctx.oldHi)) return 0;
  ctx.mm_ops.put_page(ctx.ptepPa);
  if (kvm_pte_table(ctx.oldLo, ctx.level)) ctx.mm_ops.put_page(kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, ctx.pgt.pageShift, ctx.pgt.lpa2));
  return 0;
}

/** kvm_pgtable_stage2_free_unlinked: tear down a detached table whose parent was at `level`. */
export function kvm_pgtable_stage2_free_unlinked(pgt: KvmPgtable, tablePa: number, level: number): void {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_free_unlinked, { table: tablePa, level });
  const page = pgt.mm_ops.phys_to_virt(tablePa);
  walkUnlinked(pgt, page, level + 1, pgt.granuleSize(level), {
    cb: stage2_free_walker,
    arg: undefined,
    flags: KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST,
  });
  pgt.mm_ops.put_page(tablePa);
}

/** kvm_pgtable_stage2_destroy: destroy_range over the whole IPA space, then free the PGD. */
export function kvm_pgtable_stage2_destroy(pgt: KvmPgtable): void {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_destroy, { pgt });
  kvm_pgtable_walk(pgt, 0, Math.pow(2, pgt.ia_bits), {
    cb: stage2_free_walker,
    arg: undefined,
    flags: KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_TABLE_POST,
  });
  if (pgt.pgd) for (const p of pgt.pgd) pgt.mm_ops.alloc.free(p.pa);
  pgt.pgd = null;
}

/**
 * kvm_pgtable_stage2_create_unlinked: a detached table (for the level below `level`) mapping
 * granule(level) bytes from `phys` with `prot`. Returns the table page or a negative errno.
 */
export function kvm_pgtable_stage2_create_unlinked(
  pgt: KvmPgtable,
  phys: number,
  level: number,
  prot: number,
  mc: KvmMmuMemoryCache,
  force_pte: boolean,
): PtPage | number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_create_unlinked, { phys, level, prot });
  const granule = pgt.granuleSize(level);
  if (phys % granule !== 0) return -E.EINVAL;
  const attr: Halves = { lo: 0, hi: 0 };
  const r = stage2_set_prot_attr(pgt, prot, attr);
  if (r) return r;
  const data: Stage2MapData = {
    phys,
    attrLo: attr.lo,
    attrHi: attr.hi,
    annotation: false,
    annotLo: 0,
    annotHi: 0,
    owner: 0,
    mmu: pgt.mmu,
    memcache: mc,
    force_pte,
  };
  const table = pgt.mm_ops.zalloc_page(mc);
  if (!table) return -E.ENOMEM;
  const ret = walkUnlinked(pgt, table, level + 1, granule, {
    cb: stage2_map_walker,
    arg: data,
    flags: KVM_PGTABLE_WALK_LEAF | KVM_PGTABLE_WALK_SKIP_BBM_TLBI | KVM_PGTABLE_WALK_SKIP_CMO,
  });
  if (ret) {
    kvm_pgtable_stage2_free_unlinked(pgt, table.pa, level);
    return ret;
  }
  return table;
}

/** stage2_block_get_nr_page_tables: pages a full split of a block at `level` needs. */
export function stage2_block_get_nr_page_tables(pgt: KvmPgtable, level: number): number {
  if (level === KVM_PGTABLE_LAST_LEVEL) return 0;
  if (level === KVM_PGTABLE_LAST_LEVEL - 1) return 1;
  if (level === KVM_PGTABLE_LAST_LEVEL - 2 && kvm_level_supports_block_mapping(pgt.gi, level)) return pgt.ptrs + 1;
  return -E.EINVAL;
}

export function stage2_split_walker(ctx: KvmPgtableVisitCtx, _visit: number): number {
  if (probes.armed) probes.hit(P.stage2_split_walker, { ctx: ctx.snapshot(), old: hex64(ctx.oldLo, ctx.oldHi) });
  const mc = ctx.arg as KvmMmuMemoryCache | null;
  const pgt = ctx.pgt;
  const level = ctx.level;
  if (!kvm_pte_valid(ctx.oldLo) || level === KVM_PGTABLE_LAST_LEVEL) return 0;
  let nr = stage2_block_get_nr_page_tables(pgt, level);
  if (nr < 0) return nr;
  let force_pte: boolean;
  if (mc && mc.nobjs >= nr) {
    force_pte = true; // enough pages for a tree down to the last level
  } else {
    nr = 1; // one level at a time
    force_pte = false;
  }
  if (!mc || mc.nobjs < nr) return -E.ENOMEM;
  const phys = kvm_pte_to_phys(ctx.oldLo, ctx.oldHi, pgt.pageShift, pgt.lpa2);
  const prot = kvm_pgtable_stage2_pte_prot(ctx.oldLo, ctx.oldHi);
  const child = kvm_pgtable_stage2_create_unlinked(pgt, phys, level, prot, mc, force_pte);
  if (typeof child === 'number') return child;
  if (!stage2_try_break_pte(ctx, pgt.mmu)) {
    kvm_pgtable_stage2_free_unlinked(pgt, child.pa, level);
    return -E.EAGAIN;
  }
  const lo = (kvm_phys_to_pte_lo(child.pa, pgt.pageShift, pgt.lpa2) | KVM_PTE_TYPE | KVM_PTE_VALID) >>> 0;
  stage2_make_pte(ctx, lo, kvm_phys_to_pte_hi(child.pa, pgt.pageShift, pgt.lpa2));
  return 0;
}

export function kvm_pgtable_stage2_split(pgt: KvmPgtable, addr: number, size: number, mc: KvmMmuMemoryCache | null): number {
  if (probes.armed) probes.hit(P.kvm_pgtable_stage2_split, { pgt, addr, size });
  return kvm_pgtable_walk(pgt, addr, size, { cb: stage2_split_walker, arg: mc, flags: KVM_PGTABLE_WALK_LEAF });
}

// ---------------------------------------------------------------------------------------------------------
// Inspection helpers (not kernel functions).

export interface DescriptorAt {
  /** Level actually reached (a leaf above `level` stops the descent). */
  level: number;
  lo: number;
  hi: number;
  /** Physical address of the entry. */
  ptepPa: number;
}

/** The entry translating `ipa` at `level`, or at the shallower level where the walk ends. */
export function stage2DescriptorAt(pgt: KvmPgtable, ipa: number, level: number): DescriptorAt | undefined {
  if (!pgt.pgd || ipa < 0 || ipa >= Math.pow(2, pgt.ia_bits)) return undefined;
  let page = pgt.pgd[kvm_pgd_page_idx(pgt, ipa)]!;
  for (let l = pgt.start_level; ; l++) {
    const idx = kvm_pgtable_idx(pgt, ipa, l);
    const lo = page.data[idx * 2]!;
    const hi = page.data[idx * 2 + 1]!;
    if (l >= level || !kvm_pte_table(lo, l)) return { level: l, lo, hi, ptepPa: page.pa + idx * 8 };
    page = pgt.child(lo, hi);
  }
}

export interface Stage2Counts {
  /** Table pages reachable from the PGD, by level of the entries they hold. */
  tablePages: Record<number, number>;
  /** Valid leaves by level. */
  leaves: Record<number, number>;
  /** Non-zero invalid entries (annotations, LOCKED). */
  annotations: number;
}

export function stage2Counts(pgt: KvmPgtable): Stage2Counts {
  const c: Stage2Counts = { tablePages: {}, leaves: {}, annotations: 0 };
  if (!pgt.pgd) return c;
  const visit = (page: PtPage, level: number): void => {
    c.tablePages[level] = (c.tablePages[level] ?? 0) + 1;
    for (let i = 0; i < pgt.ptrs; i++) {
      const lo = page.data[i * 2]!;
      const hi = page.data[i * 2 + 1]!;
      if (kvm_pte_table(lo, level)) visit(pgt.child(lo, hi), level + 1);
      else if (kvm_pte_valid(lo)) c.leaves[level] = (c.leaves[level] ?? 0) + 1;
      else if (lo !== 0 || hi !== 0) c.annotations++;
    }
  };
  for (const p of pgt.pgd) visit(p, pgt.start_level);
  return c;
}

