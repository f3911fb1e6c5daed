/**
 * pKVM page ownership (arch/arm64/kvm/hyp/nvhe/mem_protect.c): the host stage-2 identity map, page states,
 * and the host/hyp/guest share and donate transitions with their checks and error codes.
 *
 * Transition rules follow the 2026 mainline (state machine in `struct hyp_page`, see the facts sheet A3).
 * The `owner_encoding` variant decides what the host stage-2 records:
 * - `annotate_2026`: host state lives in the vmemmap (`hyp_page.__host_state`); donations are annotated
 *   with type DONATION, owner in bits 3:1, and for guests the VM handle and gfn; giving a page back to the
 *   host re-installs the RWX idmap.
 * - `set_owner_2021`: host state lives in the host stage-2 itself (SW0 = SHARED_OWNED, SW1 =
 *   SHARED_BORROWED on page-granular valid PTEs; an invalid non-zero PTE is NOPAGE), ownership is the owner
 *   id in bits 9:2, and giving a page back writes the zero PTE that the host refaults lazily. There is no
 *   room for a guest handle/gfn and no POISONED type, so the host-side force-reclaim is unavailable.
 * The hyp side is modelled as page states plus the set of pages mapped at EL2 (no hyp stage-1 tables).
 */
import { defineProbe, probes } from '../probes';
import * as E from './errno';
import { KvmMmuMemoryCache, PtPageAllocator, kvm_mmu_topup_memory_cache } from './page_alloc';
import {
  KVM_PGTABLE_S2_IDMAP,
  KvmPgtable,
  kvm_pgtable_get_leaf,
  kvm_pgtable_stage2_annotate,
  kvm_pgtable_stage2_map,
  kvm_pgtable_stage2_mkyoung,
  kvm_pgtable_stage2_pte_prot,
  kvm_pgtable_stage2_relax_perms,
  kvm_pgtable_stage2_set_owner,
  kvm_pgtable_stage2_test_clear_young,
  kvm_pgtable_stage2_unmap,
  kvm_pgtable_stage2_wrprotect,
  kvm_pte_valid,
  type LeafResult,
} from './pgtable';
import {
  type Granule,
  KVM_PGTABLE_LAST_LEVEL,
  KVM_PGTABLE_PROT_RWX,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_SW1,
  KVM_PGTABLE_PROT_SW_SHIFT,
  PKVM_HOST_MEM_PROT,
  PKVM_HOST_MMIO_PROT,
  granuleInfo,
  kvm_granule_size,
  kvm_level_supports_block_mapping,
  kvm_pte_to_phys,
} from './pgtable_desc';
import {
  type OwnerEncoding,
  type OwnerInfo,
  KVM_GUEST_INVALID_PTE_TYPE_POISONED,
  KVM_HOST_DONATION_PTE_OWNER_SHIFT,
  KVM_HOST_INVALID_PTE_TYPE_DONATION,
  PKVM_ID_GUEST,
  PKVM_ID_HOST,
  PKVM_ID_HYP,
  decodeOwner,
  encodeOwner,
  invalidPteType,
} from './variants';

const FILE = 'arch/arm64/kvm/hyp/nvhe/mem_protect.c';
const G = 'stage2';

// enum pkvm_page_state ([2026]).
export const PKVM_PAGE_OWNED = 0;
export const PKVM_PAGE_SHARED_OWNED = 1 << 0;
export const PKVM_PAGE_SHARED_BORROWED = 1 << 1;
export const PKVM_NOPAGE = (1 << 0) | (1 << 1);
export const PKVM_POISON = 1 << 2;
export const PKVM_PAGE_STATE_PROT_MASK = KVM_PGTABLE_PROT_SW0 | KVM_PGTABLE_PROT_SW1;

export function pageStateName(s: number): string {
  switch (s) {
    case PKVM_PAGE_OWNED:
      return 'PKVM_PAGE_OWNED';
    case PKVM_PAGE_SHARED_OWNED:
      return 'PKVM_PAGE_SHARED_OWNED';
    case PKVM_PAGE_SHARED_BORROWED:
      return 'PKVM_PAGE_SHARED_BORROWED';
    case PKVM_NOPAGE:
      return 'PKVM_NOPAGE';
    case PKVM_POISON:
      return 'PKVM_POISON';
    default:
      return `state ${s}`;
  }
}

export function pkvm_mkstate(prot: number, state: number): number {
  return (prot & ~PKVM_PAGE_STATE_PROT_MASK) | ((state << KVM_PGTABLE_PROT_SW_SHIFT) & PKVM_PAGE_STATE_PROT_MASK);
}

export function pkvm_getstate(prot: number): number {
  return (prot & PKVM_PAGE_STATE_PROT_MASK) >>> KVM_PGTABLE_PROT_SW_SHIFT;
}

const U32_MAX = 0xffff_ffff;
/** HANDLE_OFFSET: pKVM VM handles start here. */
export const HANDLE_OFFSET = 0x1000;

export const PP = {
  __pkvm_host_share_hyp: defineProbe('__pkvm_host_share_hyp', G, FILE, 'host shares a page with the hypervisor', ['pfn', 'ret']),
  __pkvm_host_unshare_hyp: defineProbe('__pkvm_host_unshare_hyp', G, FILE, 'host takes back a page shared with the hypervisor', ['pfn', 'ret']),
  __pkvm_host_donate_hyp: defineProbe('__pkvm_host_donate_hyp', G, FILE, 'host gives pages to the hypervisor (host stage-2 annotated)', ['pfn', 'nr_pages', 'owner']),
  __pkvm_hyp_donate_host: defineProbe('__pkvm_hyp_donate_host', G, FILE, 'hypervisor gives pages back to the host', ['pfn', 'nr_pages', 'owner']),
  __pkvm_host_share_ffa: defineProbe('__pkvm_host_share_ffa', G, FILE, 'host shares pages through the FF-A proxy (host side only)', ['pfn', 'nr_pages']),
  __pkvm_host_unshare_ffa: defineProbe('__pkvm_host_unshare_ffa', G, FILE, 'host ends an FF-A share', ['pfn', 'nr_pages']),
  hyp_pin_shared_mem: defineProbe('hyp_pin_shared_mem', G, FILE, 'hypervisor pins memory the host shared with it', ['phys', 'size']),
  hyp_unpin_shared_mem: defineProbe('hyp_unpin_shared_mem', G, FILE, 'hypervisor unpins shared memory', ['phys', 'size']),
  __pkvm_host_share_guest: defineProbe('__pkvm_host_share_guest', G, FILE, 'host shares pages with a (non-protected) guest', ['pfn', 'gfn', 'nr_pages', 'handle', 'prot']),
  __pkvm_host_unshare_guest: defineProbe('__pkvm_host_unshare_guest', G, FILE, 'host stops sharing pages with a guest', ['gfn', 'nr_pages', 'handle']),
  __pkvm_host_donate_guest: defineProbe('__pkvm_host_donate_guest', G, FILE, 'host donates a page to a protected guest (annotation with handle and gfn)', ['pfn', 'gfn', 'handle', 'owner']),
  __pkvm_guest_share_host: defineProbe('__pkvm_guest_share_host', G, FILE, 'guest shares one of its pages back with the host', ['handle', 'gfn']),
  __pkvm_guest_unshare_host: defineProbe('__pkvm_guest_unshare_host', G, FILE, 'guest takes back a page it shared with the host', ['handle', 'gfn']),
  __pkvm_host_reclaim_page_guest: defineProbe('__pkvm_host_reclaim_page_guest', G, FILE, 'host reclaims a page from a guest being torn down', ['handle', 'gfn']),
  __pkvm_host_force_reclaim_page_guest: defineProbe('__pkvm_host_force_reclaim_page_guest', G, FILE, 'host takes a donated page back by force; the guest PTE is poisoned', ['phys']),
  host_stage2_set_owner_locked: defineProbe('host_stage2_set_owner_locked', G, FILE, 'record a new owner in the host stage-2', ['addr', 'size', 'owner']),
  host_stage2_idmap_locked: defineProbe('host_stage2_idmap_locked', G, FILE, 'identity-map a range in the host stage-2', ['addr', 'size', 'prot']),
  handle_host_mem_abort: defineProbe('handle_host_mem_abort', G, FILE, 'host stage-2 fault: idmap the range, or refuse a page the host does not own', ['addr', 'ret', 'owner']),
} as const;

export interface MemblockRegion {
  base: number;
  size: number;
}

/** struct hyp_page, as far as ownership goes. */
export interface HypPage {
  /** 2026: host state; 2021 variant: unused (host state lives in the host stage-2). */
  host_state: number;
  hyp_state: number;
  refcount: number;
  host_share_guest_count: number;
}

/** A VM as the hypervisor knows it (`struct pkvm_hyp_vm`): its guest stage-2 lives at EL2. */
export class PkvmHypVm {
  constructor(
    readonly handle: number,
    readonly pgt: KvmPgtable,
    readonly isProtected: boolean,
    /** vcpu->arch.pkvm_memcache: pages the host topped up for this guest's tables. */
    readonly memcache: KvmMmuMemoryCache,
  ) {}
}

export interface PkvmOptions {
  granule: Granule;
  /** Host PA size = host stage-2 IPA size. */
  paBits: number;
  encoding: OwnerEncoding;
  memory: MemblockRegion[];
  /** Pages in the host stage-2 pool (host_s2_pool). */
  hostS2PoolPages?: number;
}

export interface HostAbortResult {
  ret: number;
  /** annotate_2026 (2026 tree): -EPERM is re-injected into the host as an abort (ESR marked with S1PTW). */
  injected: boolean;
  /** set_owner_2021 (kernels up to 6.18): any error other than -EAGAIN hits BUG_ON: the hypervisor panics. */
  bug: boolean;
  /** The idmap range installed, if any. */
  mapped?: { start: number; size: number };
  owner?: OwnerInfo;
}

export interface PageOwnership {
  pa: number;
  owner: number;
  hostState: number;
  hypState: number;
  handle?: number;
  gfn?: number;
}

export class PkvmHyp {
  readonly encoding: OwnerEncoding;
  readonly pageShift: number;
  readonly pageSize: number;
  readonly host_pgt: KvmPgtable;
  readonly host_s2_pool: KvmMmuMemoryCache;
  readonly memory: MemblockRegion[];
  readonly pages = new Map<number, HypPage>();
  /** Pages mapped in the hypervisor's stage-1. */
  readonly hypMapped = new Set<number>();
  readonly vms = new Map<number, PkvmHypVm>();
  /** Pages zeroed on reclaim. */
  zeroedPages = 0;
  private nextHandle = HANDLE_OFFSET;
  private readonly guestAlloc: PtPageAllocator;

  constructor(o: PkvmOptions) {
    this.encoding = o.encoding;
    const gi = granuleInfo(o.granule);
    this.pageShift = gi.pageShift;
    this.pageSize = gi.pageSize;
    this.memory = [...o.memory].sort((a, b) => a.base - b.base);
    for (const r of this.memory) {
      if (r.base % this.pageSize || r.size % this.pageSize || r.size <= 0) throw new RangeError('memblock regions must be page aligned and non-empty');
    }
    const poolPages = o.hostS2PoolPages ?? 4096;
    // The pool is the allocator: pages freed by the host stage-2 go back to it, as with hyp_pool.
    const pool = new PtPageAllocator(this.pageSize, 0x7f_0000_0000 - (0x7f_0000_0000 % this.pageSize), poolPages);
    this.host_s2_pool = new KvmMmuMemoryCache(pool, { capacity: 0, atomicFallback: true });
    this.host_pgt = new KvmPgtable({
      granule: o.granule,
      iaBits: o.paBits,
      flags: KVM_PGTABLE_S2_IDMAP,
      encoding: o.encoding,
      alloc: pool,
      force_pte_cb: (addr, end, prot) => this.host_stage2_force_pte_cb(addr, end, prot),
    });
    this.guestAlloc = new PtPageAllocator(this.pageSize, 0x7e_0000_0000 - (0x7e_0000_0000 % this.pageSize));
  }

  // -------------------------------------------------------------------------------------------------------
  // Memory map.

  addr_is_memory(addr: number): boolean {
    for (const r of this.memory) if (addr >= r.base && addr < r.base + r.size) return true;
    return false;
  }

  range_is_memory(start: number, end: number): boolean {
    for (const r of this.memory) if (start >= r.base && end <= r.base + r.size) return true;
    return false;
  }

  /** find_mem_range: the memblock region holding addr, or the hole around it. */
  find_mem_range(addr: number): { start: number; end: number; isMemory: boolean } {
    let start = 0;
    for (const r of this.memory) {
      if (addr < r.base) return { start, end: r.base, isMemory: false };
      if (addr < r.base + r.size) return { start: r.base, end: r.base + r.size, isMemory: true };
      start = r.base + r.size;
    }
    return { start, end: Math.pow(2, this.host_pgt.ia_bits), isMemory: false };
  }

  hyp_page(phys: number): HypPage | undefined {
    const pfn = Math.floor(phys / this.pageSize);
    let p = this.pages.get(pfn);
    if (!p) {
      if (!this.addr_is_memory(phys)) return undefined;
      // A zeroed vmemmap reads as host OWNED and hyp NOPAGE (hyp state is stored complemented).
      p = { host_state: PKVM_PAGE_OWNED, hyp_state: PKVM_NOPAGE, refcount: 0, host_share_guest_count: 0 };
      this.pages.set(pfn, p);
    }
    return p;
  }

  // -------------------------------------------------------------------------------------------------------
  // Host stage-2.

  host_stage2_force_pte_cb(addr: number, end: number, prot: number): boolean {
    // Blocks only for plain idmaps that a later fault could rebuild; anything carrying state stays page-granular.
    if (this.range_is_memory(addr, end)) return prot !== PKVM_HOST_MEM_PROT;
    return prot !== PKVM_HOST_MMIO_PROT;
  }

  /** host_stage2_try: on -ENOMEM, drop every MMIO mapping and try once more. */
  private host_stage2_try(fn: () => number): number {
    let ret = fn();
    if (ret === -E.ENOMEM) {
      this.host_stage2_unmap_dev_all();
      ret = fn();
    }
    return ret;
  }

  host_stage2_unmap_dev_all(): number {
    let start = 0;
    for (const r of this.memory) {
      if (r.base > start) kvm_pgtable_stage2_unmap(this.host_pgt, start, r.base - start);
      start = r.base + r.size;
    }
    const top = Math.pow(2, this.host_pgt.ia_bits);
    if (top > start) kvm_pgtable_stage2_unmap(this.host_pgt, start, top - start);
    return 0;
  }

  host_stage2_idmap_locked(addr: number, size: number, prot: number): number {
    if (probes.armed) probes.hit(PP.host_stage2_idmap_locked, { addr, size, prot });
    return this.host_stage2_try(() => kvm_pgtable_stage2_map(this.host_pgt, addr, size, addr, prot, this.host_s2_pool, 0));
  }

  /** host_stage2_adjust_range: the largest block-aligned range around addr that fits its memblock range. */
  host_stage2_adjust_range(addr: number, range: { start: number; end: number }): number {
    const leaf = kvm_pgtable_get_leaf(this.host_pgt, addr);
    if (leaf.ret) return leaf.ret;
    // Already mapped (another CPU won the race): -EAGAIN in 6.16-6.18 (-EEXIST in the 2026 tree).
    if (kvm_pte_valid(leaf.lo)) return -E.EAGAIN;
    if (leaf.lo !== 0 || leaf.hi !== 0) return -E.EPERM;
    const gi = this.host_pgt.gi;
    for (let level = leaf.level; level <= KVM_PGTABLE_LAST_LEVEL; level++) {
      if (!kvm_level_supports_block_mapping(gi, level)) continue;
      const g = kvm_granule_size(this.pageShift, level);
      const start = addr - (addr % g);
      // the last level always fits: a page never straddles memblock boundaries
      if ((start >= range.start && start + g <= range.end) || level === KVM_PGTABLE_LAST_LEVEL) {
        range.start = start;
        range.end = start + g;
        return 0;
      }
    }
    return -E.EINVAL; // WARN_ON(1)
  }

  host_stage2_idmap(addr: number, out: HostAbortResult): number {
    const r = this.find_mem_range(addr);
    const prot = r.isMemory ? PKVM_HOST_MEM_PROT : PKVM_HOST_MMIO_PROT;
    const range = { start: r.start, end: r.end };
    const ret = this.host_stage2_adjust_range(addr, range);
    if (ret) return ret;
    out.mapped = { start: range.start, size: range.end - range.start };
    return this.host_stage2_idmap_locked(range.start, range.end - range.start, prot);
  }

  /** A host access at `addr` that missed in the host stage-2 (or: the host touching a page, fault or not). */
  handle_host_mem_abort(addr: number): HostAbortResult {
    const out: HostAbortResult = { ret: 0, injected: false, bug: false };
    const leaf = kvm_pgtable_get_leaf(this.host_pgt, addr);
    if (kvm_pte_valid(leaf.lo)) return out; // no fault: the host owns or shares it
    let ret = this.host_stage2_idmap(addr, out);
    if (ret === -E.EEXIST || ret === -E.EAGAIN) {
      ret = 0;
    } else if (ret) {
      if (ret === -E.EPERM && this.encoding === 'annotate_2026') out.injected = true;
      else out.bug = true;
      const own = decodeOwner(this.encoding, leaf.lo, leaf.hi);
      if (own) out.owner = own;
    }
    out.ret = ret;
    if (probes.armed) probes.hit(PP.handle_host_mem_abort, { addr, ret, owner: out.owner });
    return out;
  }

  /** Encode and write an owner annotation (or, for the host, give the page back). */
  host_stage2_set_owner_locked(addr: number, size: number, owner: OwnerInfo): number {
    if (probes.armed) probes.hit(PP.host_stage2_set_owner_locked, { addr, size, owner: owner.owner });
    if (!this.range_is_memory(addr, addr + size)) return -E.EPERM;
    let ret: number;
    if (this.encoding === 'set_owner_2021') {
      ret = this.host_stage2_try(() => kvm_pgtable_stage2_set_owner(this.host_pgt, addr, size, this.host_s2_pool, owner.owner));
    } else if (owner.owner === PKVM_ID_HOST) {
      ret = this.host_stage2_idmap_locked(addr, size, PKVM_HOST_MEM_PROT);
    } else {
      const pte = encodeOwner('annotate_2026', owner);
      if (!pte) return -E.EINVAL;
      const annotHi = pte.hi & 0x0fff_ffff; // payload only; the type goes in through the type argument
      ret = this.host_stage2_try(() =>
        kvm_pgtable_stage2_annotate(this.host_pgt, addr, size, this.host_s2_pool, KVM_HOST_INVALID_PTE_TYPE_DONATION, pte.lo, annotHi),
      );
    }
    if (!ret) this.__host_update_page_state(addr, size, owner.owner === PKVM_ID_HOST ? PKVM_PAGE_OWNED : PKVM_NOPAGE);
    return ret;
  }

  // -------------------------------------------------------------------------------------------------------
  // Page states.

  get_host_state(phys: number): number {
    if (this.encoding === 'annotate_2026') return this.hyp_page(phys)?.host_state ?? PKVM_NOPAGE;
    const leaf = kvm_pgtable_get_leaf(this.host_pgt, phys);
    if (!kvm_pte_valid(leaf.lo) && (leaf.lo !== 0 || leaf.hi !== 0)) return PKVM_NOPAGE;
    return pkvm_getstate(kvm_pgtable_stage2_pte_prot(leaf.lo, leaf.hi));
  }

  /** Record a host state for OWNED/SHARED_* (2021: page-granular idmap with SW bits; 2026: vmemmap). */
  __host_set_page_state_range(addr: number, size: number, state: number): number {
    if (this.encoding === 'set_owner_2021') return this.host_stage2_idmap_locked(addr, size, pkvm_mkstate(PKVM_HOST_MEM_PROT, state));
    this.__host_update_page_state(addr, size, state);
    return 0;
  }

  __host_update_page_state(addr: number, size: number, state: number): void {
    for (let a = addr; a < addr + size; a += this.pageSize) {
      const p = this.hyp_page(a);
      if (p) p.host_state = state;
    }
  }

  get_hyp_state(phys: number): number {
    return this.hyp_page(phys)?.hyp_state ?? PKVM_NOPAGE;
  }

  private __host_check_page_state_range(addr: number, size: number, state: number): number {
    if (!this.range_is_memory(addr, addr + size)) return -E.EPERM; // check_range_allowed_memory
    for (let a = addr; a < addr + size; a += this.pageSize) if (this.get_host_state(a) !== state) return -E.EPERM;
    return 0;
  }

  private __hyp_check_page_state_range(addr: number, size: number, state: number): number {
    for (let a = addr; a < addr + size; a += this.pageSize) if (this.get_hyp_state(a) !== state) return -E.EPERM;
    return 0;
  }

  private __hyp_set_page_state_range(addr: number, size: number, state: number): void {
    for (let a = addr; a < addr + size; a += this.pageSize) {
      const p = this.hyp_page(a);
      if (p) p.hyp_state = state;
    }
  }

  private pfn_range_is_valid(pfn: number, nr: number): boolean {
    return Number.isInteger(pfn) && Number.isInteger(nr) && nr > 0 && pfn >= 0 && this.range_is_memory(pfn * this.pageSize, (pfn + nr) * this.pageSize);
  }

  // -------------------------------------------------------------------------------------------------------
  // Host <-> hyp.

  __pkvm_host_share_hyp(pfn: number): number {
    const phys = pfn * this.pageSize;
    const size = this.pageSize;
    let ret = this.__host_check_page_state_range(phys, size, PKVM_PAGE_OWNED);
    if (!ret) ret = this.__hyp_check_page_state_range(phys, size, PKVM_NOPAGE);
    if (!ret) {
      this.__hyp_set_page_state_range(phys, size, PKVM_PAGE_SHARED_BORROWED);
      ret = this.__host_set_page_state_range(phys, size, PKVM_PAGE_SHARED_OWNED);
    }
    if (probes.armed) probes.hit(PP.__pkvm_host_share_hyp, { pfn, ret });
    return ret;
  }

  __pkvm_host_unshare_hyp(pfn: number): number {
    const phys = pfn * this.pageSize;
    const size = this.pageSize;
    let ret = this.__host_check_page_state_range(phys, size, PKVM_PAGE_SHARED_OWNED);
    if (!ret) ret = this.__hyp_check_page_state_range(phys, size, PKVM_PAGE_SHARED_BORROWED);
    if (!ret && (this.hyp_page(phys)?.refcount ?? 0) !== 0) ret = -E.EBUSY;
    if (!ret) {
      this.__hyp_set_page_state_range(phys, size, PKVM_NOPAGE);
      ret = this.__host_set_page_state_range(phys, size, PKVM_PAGE_OWNED);
    }
    if (probes.armed) probes.hit(PP.__pkvm_host_unshare_hyp, { pfn, ret });
    return ret;
  }

  hyp_pin_shared_mem(phys: number, size: number): number {
    if (probes.armed) probes.hit(PP.hyp_pin_shared_mem, { phys, size });
    const start = phys - (phys % this.pageSize);
    const end = Math.ceil((phys + size) / this.pageSize) * this.pageSize;
    let ret = this.__host_check_page_state_range(start, end - start, PKVM_PAGE_SHARED_OWNED);
    if (!ret) ret = this.__hyp_check_page_state_range(start, end - start, PKVM_PAGE_SHARED_BORROWED);
    if (ret) return ret;
    for (let a = start; a < end; a += this.pageSize) {
      const p = this.hyp_page(a)!;
      if (p.refcount++ === 0) this.hypMapped.add(a / this.pageSize);
    }
    return 0;
  }

  hyp_unpin_shared_mem(phys: number, size: number): void {
    if (probes.armed) probes.hit(PP.hyp_unpin_shared_mem, { phys, size });
    const start = phys - (phys % this.pageSize);
    const end = Math.ceil((phys + size) / this.pageSize) * this.pageSize;
    for (let a = start; a < end; a += this.pageSize) {
      const p = this.hyp_page(a);
      if (!p || p.refcount === 0) continue;
      if (--p.refcount === 0) this.hypMapped.delete(a / this.pageSize);
    }
  }

  __pkvm_host_donate_hyp(pfn: number, nr_pages: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_donate_hyp, { pfn, nr_pages, owner: PKVM_ID_HYP });
    if (!this.pfn_range_is_valid(pfn, nr_pages)) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const size = nr_pages * this.pageSize;
    let ret = this.__host_check_page_state_range(phys, size, PKVM_PAGE_OWNED);
    if (!ret) ret = this.__hyp_check_page_state_range(phys, size, PKVM_NOPAGE);
    if (ret) return ret;
    this.__hyp_set_page_state_range(phys, size, PKVM_PAGE_OWNED);
    for (let i = 0; i < nr_pages; i++) this.hypMapped.add(pfn + i);
    return this.host_stage2_set_owner_locked(phys, size, { owner: PKVM_ID_HYP });
  }

  __pkvm_hyp_donate_host(pfn: number, nr_pages: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_hyp_donate_host, { pfn, nr_pages, owner: PKVM_ID_HOST });
    if (!this.pfn_range_is_valid(pfn, nr_pages)) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const size = nr_pages * this.pageSize;
    let ret = this.__hyp_check_page_state_range(phys, size, PKVM_PAGE_OWNED);
    if (!ret) ret = this.__host_check_page_state_range(phys, size, PKVM_NOPAGE);
    if (ret) return ret;
    for (let i = 0; i < nr_pages; i++) this.hypMapped.delete(pfn + i);
    this.__hyp_set_page_state_range(phys, size, PKVM_NOPAGE);
    return this.host_stage2_set_owner_locked(phys, size, { owner: PKVM_ID_HOST });
  }

  /** FF-A sharing with secure world: only the host side changes (OWNED -> SHARED_OWNED). */
  __pkvm_host_share_ffa(pfn: number, nr_pages: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_share_ffa, { pfn, nr_pages });
    if (!this.pfn_range_is_valid(pfn, nr_pages)) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const size = nr_pages * this.pageSize;
    const ret = this.__host_check_page_state_range(phys, size, PKVM_PAGE_OWNED);
    if (ret) return ret;
    return this.__host_set_page_state_range(phys, size, PKVM_PAGE_SHARED_OWNED);
  }

  __pkvm_host_unshare_ffa(pfn: number, nr_pages: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_unshare_ffa, { pfn, nr_pages });
    if (!this.pfn_range_is_valid(pfn, nr_pages)) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const size = nr_pages * this.pageSize;
    const ret = this.__host_check_page_state_range(phys, size, PKVM_PAGE_SHARED_OWNED);
    if (ret) return ret;
    return this.__host_set_page_state_range(phys, size, PKVM_PAGE_OWNED);
  }

  // -------------------------------------------------------------------------------------------------------
  // Guests.

  /** __pkvm_init_vm, reduced: a guest stage-2 at EL2 and a handle. */
  createVm(opts: { iaBits: number; isProtected: boolean; memcachePages?: number }): PkvmHypVm {
    const handle = this.nextHandle++;
    const pgt = new KvmPgtable({
      granule: this.host_pgt.gi.name,
      iaBits: opts.iaBits,
      encoding: this.encoding,
      alloc: this.guestAlloc,
    });
    const mc = new KvmMmuMemoryCache(this.guestAlloc, { capacity: opts.memcachePages ?? 16 });
    kvm_mmu_topup_memory_cache(mc, mc.capacity);
    const vm = new PkvmHypVm(handle, pgt, opts.isProtected, mc);
    this.vms.set(handle, vm);
    return vm;
  }

  /** Top up a guest's memcache (the host does this before each call that may allocate). */
  topupGuestMemcache(vm: PkvmHypVm, min: number): number {
    return kvm_mmu_topup_memory_cache(vm.memcache, min);
  }

  guest_get_page_state(lo: number, hi: number): number {
    if (this.encoding === 'annotate_2026' && invalidPteType(lo, hi) === KVM_GUEST_INVALID_PTE_TYPE_POISONED) return PKVM_POISON;
    if (!kvm_pte_valid(lo)) return PKVM_NOPAGE;
    return pkvm_getstate(kvm_pgtable_stage2_pte_prot(lo, hi));
  }

  private __guest_check_page_state_range(vm: PkvmHypVm, ipa: number, size: number, state: number): number {
    const leaf: LeafResult = { ret: 0, lo: 0, hi: 0, level: 0 };
    for (let a = ipa; a < ipa + size; a += this.pageSize) {
      kvm_pgtable_get_leaf(vm.pgt, a, leaf);
      if (leaf.ret) return leaf.ret;
      if (this.guest_get_page_state(leaf.lo, leaf.hi) !== state) return -E.EPERM;
    }
    return 0;
  }

  /** __guest_check_transition_size: one page, or exactly one block at the level above the last. */
  private __guest_check_transition_size(phys: number, ipa: number, nr_pages: number): number {
    if (nr_pages === 1) return this.pageSize;
    const blk = kvm_granule_size(this.pageShift, KVM_PGTABLE_LAST_LEVEL - 1);
    if (nr_pages * this.pageSize !== blk || phys % blk || ipa % blk) return -E.EINVAL;
    return blk;
  }

  __pkvm_host_share_guest(pfn: number, gfn: number, nr_pages: number, handle: number, prot: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_share_guest, { pfn, gfn, nr_pages, handle, prot });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    if (prot & ~KVM_PGTABLE_PROT_RWX) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const ipa = gfn * this.pageSize;
    const size = this.__guest_check_transition_size(phys, ipa, nr_pages);
    if (size < 0) return size;
    if (!this.range_is_memory(phys, phys + size)) return -E.EPERM;
    let ret = this.__guest_check_page_state_range(vm, ipa, size, PKVM_NOPAGE);
    if (ret) return ret;
    for (let a = phys; a < phys + size; a += this.pageSize) {
      const st = this.get_host_state(a);
      const p = this.hyp_page(a)!;
      if (st === PKVM_PAGE_OWNED) continue;
      if (st === PKVM_PAGE_SHARED_OWNED && p.host_share_guest_count > 0 && !vm.isProtected) {
        if (p.host_share_guest_count === U32_MAX) return -E.EBUSY;
        continue;
      }
      return -E.EPERM;
    }
    for (let a = phys; a < phys + size; a += this.pageSize) {
      const p = this.hyp_page(a)!;
      if (p.host_share_guest_count++ === 0) {
        ret = this.__host_set_page_state_range(a, this.pageSize, PKVM_PAGE_SHARED_OWNED);
        if (ret) return ret;
      }
    }
    return kvm_pgtable_stage2_map(vm.pgt, ipa, size, phys, pkvm_mkstate(prot, PKVM_PAGE_SHARED_BORROWED), vm.memcache, 0);
  }

  __pkvm_host_unshare_guest(gfn: number, nr_pages: number, handle: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_unshare_guest, { gfn, nr_pages, handle });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    const ipa = gfn * this.pageSize;
    const leaf = kvm_pgtable_get_leaf(vm.pgt, ipa);
    if (leaf.ret) return leaf.ret;
    if (!kvm_pte_valid(leaf.lo)) return -E.ENOENT;
    const size = nr_pages * this.pageSize;
    if (kvm_granule_size(this.pageShift, leaf.level) !== size) return -E.E2BIG;
    if (this.guest_get_page_state(leaf.lo, leaf.hi) !== PKVM_PAGE_SHARED_BORROWED) return -E.EPERM;
    const phys = kvm_pte_to_phys(leaf.lo, leaf.hi, this.pageShift, vm.pgt.lpa2);
    if (!this.range_is_memory(phys, phys + size)) return -E.EPERM;
    for (let a = phys; a < phys + size; a += this.pageSize) {
      if (this.get_host_state(a) !== PKVM_PAGE_SHARED_OWNED) return -E.EPERM;
      if (!this.hyp_page(a)!.host_share_guest_count) return -E.EINVAL;
    }
    const ret = kvm_pgtable_stage2_unmap(vm.pgt, ipa, size);
    if (ret) return ret;
    for (let a = phys; a < phys + size; a += this.pageSize) {
      const p = this.hyp_page(a)!;
      if (--p.host_share_guest_count === 0) this.__host_set_page_state_range(a, this.pageSize, PKVM_PAGE_OWNED);
    }
    return 0;
  }

  __pkvm_host_donate_guest(pfn: number, gfn: number, handle: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_donate_guest, { pfn, gfn, handle, owner: PKVM_ID_GUEST });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    const phys = pfn * this.pageSize;
    const ipa = gfn * this.pageSize;
    let ret = this.__host_check_page_state_range(phys, this.pageSize, PKVM_PAGE_OWNED);
    if (!ret) ret = this.__guest_check_page_state_range(vm, ipa, this.pageSize, PKVM_NOPAGE);
    if (ret) return ret;
    // __guest_check_pgtable_memcache: enough pages for every table level below the root
    if (vm.memcache.nobjs < vm.pgt.geo.levels - 1) return -E.ENOMEM;
    ret = this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_GUEST, handle, gfn });
    if (ret) return ret;
    ret = kvm_pgtable_stage2_map(vm.pgt, ipa, this.pageSize, phys, pkvm_mkstate(KVM_PGTABLE_PROT_RWX, PKVM_PAGE_OWNED), vm.memcache, 0);
    if (ret) this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_HOST }); // roll back
    return ret;
  }

  /** get_valid_guest_pte. */
  private get_valid_guest_pte(vm: PkvmHypVm, ipa: number, leaf: LeafResult): number {
    kvm_pgtable_get_leaf(vm.pgt, ipa, leaf);
    if (leaf.ret) return leaf.ret;
    if (this.guest_get_page_state(leaf.lo, leaf.hi) === PKVM_POISON) return -E.EHWPOISON;
    if (!kvm_pte_valid(leaf.lo)) return -E.ENOENT;
    if (leaf.level !== KVM_PGTABLE_LAST_LEVEL) return -E.E2BIG;
    return 0;
  }

  __pkvm_guest_share_host(handle: number, gfn: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_guest_share_host, { handle, gfn });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    const ipa = gfn * this.pageSize;
    const leaf: LeafResult = { ret: 0, lo: 0, hi: 0, level: 0 };
    let ret = this.get_valid_guest_pte(vm, ipa, leaf);
    if (ret) return ret;
    if (this.guest_get_page_state(leaf.lo, leaf.hi) !== PKVM_PAGE_OWNED) return -E.EPERM;
    const phys = kvm_pte_to_phys(leaf.lo, leaf.hi, this.pageShift, vm.pgt.lpa2);
    ret = this.__host_check_page_state_range(phys, this.pageSize, PKVM_NOPAGE);
    if (ret) return ret;
    const prot = kvm_pgtable_stage2_pte_prot(leaf.lo, leaf.hi);
    ret = kvm_pgtable_stage2_map(vm.pgt, ipa, this.pageSize, phys, pkvm_mkstate(prot, PKVM_PAGE_SHARED_OWNED), null, 0);
    if (ret) return ret;
    if (this.encoding === 'annotate_2026') {
      ret = this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_HOST });
      if (!ret) this.__host_update_page_state(phys, this.pageSize, PKVM_PAGE_SHARED_BORROWED);
      return ret;
    }
    return this.__host_set_page_state_range(phys, this.pageSize, PKVM_PAGE_SHARED_BORROWED);
  }

  /** The guest stops sharing a page with the host: it is the guest's alone again (host NOPAGE). */
  __pkvm_guest_unshare_host(handle: number, gfn: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_guest_unshare_host, { handle, gfn });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    const ipa = gfn * this.pageSize;
    const leaf: LeafResult = { ret: 0, lo: 0, hi: 0, level: 0 };
    let ret = this.get_valid_guest_pte(vm, ipa, leaf);
    if (ret) return ret;
    if (this.guest_get_page_state(leaf.lo, leaf.hi) !== PKVM_PAGE_SHARED_OWNED) return -E.EPERM;
    const phys = kvm_pte_to_phys(leaf.lo, leaf.hi, this.pageShift, vm.pgt.lpa2);
    ret = this.__host_check_page_state_range(phys, this.pageSize, PKVM_PAGE_SHARED_BORROWED);
    if (ret) return ret;
    ret = this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_GUEST, handle, gfn });
    if (ret) return ret;
    const prot = kvm_pgtable_stage2_pte_prot(leaf.lo, leaf.hi);
    return kvm_pgtable_stage2_map(vm.pgt, ipa, this.pageSize, phys, pkvm_mkstate(prot, PKVM_PAGE_OWNED), null, 0);
  }

  __pkvm_host_reclaim_page_guest(handle: number, gfn: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_reclaim_page_guest, { handle, gfn });
    const vm = this.vms.get(handle);
    if (!vm) return -E.EINVAL;
    const ipa = gfn * this.pageSize;
    const leaf: LeafResult = { ret: 0, lo: 0, hi: 0, level: 0 };
    let ret = this.get_valid_guest_pte(vm, ipa, leaf);
    if (ret === -E.EHWPOISON) {
      kvm_pgtable_stage2_unmap(vm.pgt, ipa, this.pageSize);
      return 0;
    }
    if (ret) return ret;
    const phys = kvm_pte_to_phys(leaf.lo, leaf.hi, this.pageShift, vm.pgt.lpa2);
    const gst = this.guest_get_page_state(leaf.lo, leaf.hi);
    if (gst === PKVM_PAGE_OWNED) {
      ret = this.__host_check_page_state_range(phys, this.pageSize, PKVM_NOPAGE);
      if (!ret) this.zeroedPages++;
    } else if (gst === PKVM_PAGE_SHARED_OWNED) {
      ret = this.__host_check_page_state_range(phys, this.pageSize, PKVM_PAGE_SHARED_BORROWED);
    } else {
      ret = -E.EPERM;
    }
    if (ret) return ret;
    kvm_pgtable_stage2_unmap(vm.pgt, ipa, this.pageSize);
    return this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_HOST });
  }

  __pkvm_host_force_reclaim_page_guest(phys: number): number {
    if (probes.armed) probes.hit(PP.__pkvm_host_force_reclaim_page_guest, { phys });
    if (this.encoding !== 'annotate_2026') return -E.EOPNOTSUPP; // no handle/gfn recorded, no POISONED type
    phys -= phys % this.pageSize;
    const st = this.get_host_state(phys);
    if (st === PKVM_PAGE_OWNED || st === PKVM_PAGE_SHARED_OWNED || st === PKVM_PAGE_SHARED_BORROWED) return -E.EAGAIN;
    const leaf = kvm_pgtable_get_leaf(this.host_pgt, phys);
    if (kvm_pte_valid(leaf.lo) || invalidPteType(leaf.lo, leaf.hi) !== KVM_HOST_INVALID_PTE_TYPE_DONATION) return -E.EINVAL;
    if (((leaf.lo >>> KVM_HOST_DONATION_PTE_OWNER_SHIFT) & 7) !== PKVM_ID_GUEST) return -E.EPERM;
    const own = decodeOwner('annotate_2026', leaf.lo, leaf.hi)!;
    const vm = this.vms.get(own.handle!);
    if (!vm) return -E.EAGAIN;
    const ipa = own.gfn! * this.pageSize;
    const gl = kvm_pgtable_get_leaf(vm.pgt, ipa);
    if (!kvm_pte_valid(gl.lo) || this.guest_get_page_state(gl.lo, gl.hi) !== PKVM_PAGE_OWNED) return -E.EPERM;
    const ret = kvm_pgtable_stage2_annotate(vm.pgt, ipa, this.pageSize, null, KVM_GUEST_INVALID_PTE_TYPE_POISONED, 0, 0);
    if (ret) return ret;
    this.zeroedPages++;
    return this.host_stage2_set_owner_locked(phys, this.pageSize, { owner: PKVM_ID_HOST });
  }

  /** Non-protected VMs only: the matching kvm_pgtable operations on the guest stage-2. */
  __pkvm_host_relax_perms_guest(handle: number, gfn: number, prot: number): number {
    const vm = this.vms.get(handle);
    if (!vm || vm.isProtected) return -E.EPERM;
    if (prot & ~KVM_PGTABLE_PROT_RWX) return -E.EINVAL;
    return kvm_pgtable_stage2_relax_perms(vm.pgt, gfn * this.pageSize, prot, 0);
  }

  __pkvm_host_wrprotect_guest(handle: number, gfn: number, nr_pages: number): number {
    const vm = this.vms.get(handle);
    if (!vm || vm.isProtected) return -E.EPERM;
    return kvm_pgtable_stage2_wrprotect(vm.pgt, gfn * this.pageSize, nr_pages * this.pageSize);
  }

  __pkvm_host_test_clear_young_guest(handle: number, gfn: number, nr_pages: number, mkold: boolean): number {
    const vm = this.vms.get(handle);
    if (!vm || vm.isProtected) return -E.EPERM;
    return kvm_pgtable_stage2_test_clear_young(vm.pgt, gfn * this.pageSize, nr_pages * this.pageSize, mkold) ? 1 : 0;
  }

  __pkvm_host_mkyoung_guest(handle: number, gfn: number): number {
    const vm = this.vms.get(handle);
    if (!vm || vm.isProtected) return -E.EPERM;
    return kvm_pgtable_stage2_mkyoung(vm.pgt, gfn * this.pageSize, 0);
  }

  // -------------------------------------------------------------------------------------------------------
  // Queries.

  /** Who owns the page at `pa`, from what the host stage-2 and the vmemmap record. */
  ownerOf(pa: number): PageOwnership {
    const phys = pa - (pa % this.pageSize);
    const leaf = kvm_pgtable_get_leaf(this.host_pgt, phys);
    const hostState = this.get_host_state(phys);
    const hypState = this.get_hyp_state(phys);
    const own = kvm_pte_valid(leaf.lo) ? undefined : decodeOwner(this.encoding, leaf.lo, leaf.hi);
    const r: PageOwnership = { pa: phys, owner: own ? own.owner : PKVM_ID_HOST, hostState, hypState };
    if (own?.handle !== undefined) r.handle = own.handle;
    if (own?.gfn !== undefined) r.gfn = own.gfn;
    return r;
  }

  guestPageState(handle: number, gfn: number): number {
    const vm = this.vms.get(handle);
    if (!vm) return PKVM_NOPAGE;
    const leaf = kvm_pgtable_get_leaf(vm.pgt, gfn * this.pageSize);
    return this.guest_get_page_state(leaf.lo, leaf.hi);
  }
}

/** One page where two hypervisors (one per owner encoding) record the same ownership differently. */
export interface EncodingDifference {
  pa: number;
  a: { encoding: OwnerEncoding; pte: string; owner: number; hostState: number };
  b: { encoding: OwnerEncoding; pte: string; owner: number; hostState: number };
  /** Owner component and host state agree (the point of the variant: same semantics, other bits). */
  ownershipAgrees: boolean;
}

function pteText(h: PkvmHyp, pa: number): string {
  const l = kvm_pgtable_get_leaf(h.host_pgt, pa);
  return '0x' + (l.hi >>> 0).toString(16).padStart(8, '0') + (l.lo >>> 0).toString(16).padStart(8, '0') + `@L${l.level}`;
}

/**
 * Compare the host stage-2 of two hypervisors driven through the same operations, page by page over
 * [start, start+size): report every page whose descriptor differs, and whether ownership still agrees.
 */
export function compareOwnerEncodings(a: PkvmHyp, b: PkvmHyp, start: number, size: number): EncodingDifference[] {
  const out: EncodingDifference[] = [];
  const ps = a.pageSize;
  for (let pa = start - (start % ps); pa < start + size; pa += ps) {
    const ta = pteText(a, pa);
    const tb = pteText(b, pa);
    if (ta === tb) continue;
    const oa = a.ownerOf(pa);
    const ob = b.ownerOf(pa);
    out.push({
      pa,
      a: { encoding: a.encoding, pte: ta, owner: oa.owner, hostState: oa.hostState },
      b: { encoding: b.encoding, pte: tb, owner: ob.owner, hostState: ob.hostState },
      ownershipAgrees: oa.owner === ob.owner && oa.hostState === ob.hostState && oa.hypState === ob.hypState,
    });
  }
  return out;
}
