/**
 * struct kvm for x86 with a TDP MMU: the VM-wide MMU state (kvm->arch), memslots and their ioctl,
 * mmu_notifier invalidation bookkeeping, memory attributes, remote TLB flushes and vCPU requests.
 */
import type { U64 } from '../bits/u64';
import { defineProbe, probes } from '../probes';
import { trace } from '../trace_sink';
import { emitTracepoint } from '../tracepoints/index';
import {
  KvmMemorySlot, KvmMemslots, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEMSLOT_INVALID,
  KVM_USER_MEM_SLOTS, type HostBacking, kvm_dirty_bitmap_words32,
} from './memslot';
import { MmuPagePool, type KvmMmuPage } from './mmu_page';
import {
  default_module_params, default_vendor_config, is_nx_huge_page_enabled, validate_params, type KvmX86ModuleParams,
  type KvmX86VendorConfig, type Vendor,
} from './params';
import { eptMasks, nptMasks, MMIO_SPTE_GEN_MASK, type SpteMasks, newMakeSpteArgs, type MakeSpteArgs } from './spte';
import { KvmVmStat } from './stats';
import {
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM,
  kvm_arch_has_private_mem_type, kvm_mmu_init_memslot_memory_attributes, type PrivateMemKvm,
} from '../kvm/attributes';
import { EAGAIN, EBUSY, EEXIST, EFAULT, EINTR, EINVAL, EIO, ENOENT, ENOMEM } from '../errno';
import { kvm_gmem_bind, kvm_gmem_unbind } from '../kvm/guest_memfd';

export {
  KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM, KVM_MEMORY_ATTRIBUTE_PRIVATE,
};

/** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags. */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;

/** vCPU request bits (the subset the MMU raises). */
export const KVM_REQ_TLB_FLUSH = 1 << 0;
export const KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = 1 << 1;
export const KVM_REQ_MMU_RELOAD = 1 << 2;

export { EAGAIN, EBUSY, EEXIST, EFAULT, EINTR, EINVAL, EIO, ENOENT, ENOMEM };

/** TDX shared-bit positions by guest physical address width (TDX_SHARED_BIT_PWL_4 / _PWL_5). */
export const TDX_SHARED_BIT_PWL_4 = 47;
export const TDX_SHARED_BIT_PWL_5 = 51;

/** Design variant of seed 000: where the TDX stolen GPA bits live. */
export type TdxStolenBitsVariant = 'mirror_role' | 'sp_field';

export interface KvmCreateOptions {
  vendor?: Vendor;
  params?: Partial<KvmX86ModuleParams>;
  vendor_config?: Partial<KvmX86VendorConfig>;
  vm_type?: number;
  /** Guest MAXPHYADDR (CPUID 0x80000008 EAX[7:0]); decides 4- vs 5-level TDP when max_tdp_level is 5. */
  guest_maxphyaddr?: number;
  /** TDX: guest physical address width, 48 (shared bit 47) or 52 (shared bit 51). */
  tdx_gpaw?: 48 | 52;
  tdx_variant?: TdxStolenBitsVariant;
  /** kvm->arch.disable_nx_huge_pages (the per-VM opt-out). */
  disable_nx_huge_pages?: boolean;
  /** KVM_X86_QUIRK_SLOT_ZAP_ALL (default on): memslot delete/move zaps everything fast. */
  quirk_slot_zap_all?: boolean;
  /** Model knob: need_resched() becomes true after this many iterator steps (0 = never yield). */
  resched_every?: number;
}

export interface FlushRecord {
  kind: 'all' | 'range' | 'memslot';
  gfn: number;
  pages: number;
}

export interface KvmTdxHooks {
  link_external_spt(kvm: Kvm, gfn: number, level: number, external_spt: number): number;
  set_external_spte(kvm: Kvm, gfn: number, level: number, pfn: number): number;
  free_external_spt(kvm: Kvm, gfn: number, level: number, external_spt: number): number;
  remove_external_spte(kvm: Kvm, gfn: number, level: number, pfn: number): number;
}

/** A vCPU as the VM sees it; vcpu.ts supplies the real class. */
export interface KvmVcpuLike {
  vcpu_id: number;
  requests: number;
}

/** kvm->arch fields the MMU uses. */
export class KvmArch {
  mmu_valid_gen = 0;
  /** kvm->arch.tdp_mmu_roots, head first: list_add_rcu puts new roots at the head. */
  tdp_mmu_roots: KvmMmuPage[] = [];
  /** kvm->arch.possible_nx_huge_pages in list order (insertion order of a Set). */
  readonly possible_nx_huge_pages = new Set<KvmMmuPage>();
  n_used_mmu_pages = 0;
  /** kvm->arch.gfn_direct_bits: the TDX shared bit as a gfn bit value (0 for other VM types). */
  gfn_direct_bits = 0;
  disable_nx_huge_pages = false;
  /** PML buffer size when the vendor logs dirty pages in hardware (0 without PML). */
  cpu_dirty_log_size = 0;
  /** Per-VM MMIO value (TDX overrides it). */
  shadow_mmio_value: U64 = { lo: 0, hi: 0 };
  has_private_mem = false;
  /** Model of kvm_page_track's external users (KVMGT): gfns they write-track. */
  readonly write_tracked = new Set<number>();
  /** slot->arch.gfn_write_track counts: the shadow MMU write-tracks the gfns of upper-level guest tables. */
  readonly gfn_write_track = new Map<number, number>();
  /** Number of TDP MMU tables currently linked (tdp_mmu_pages under CONFIG_KVM_PROVE_MMU). */
  tdp_mmu_pages = 0;
}

const KVM_SET_USER_MEMORY_REGION2 = defineProbe(
  'kvm_set_memory_region', 'memslot', 'virt/kvm/kvm_main.c', 'KVM_SET_USER_MEMORY_REGION2: create, move, delete or re-flag a memslot',
  ['slot', 'flags', 'guest_phys_addr', 'memory_size', 'userspace_addr', 'change'],
);
const KVM_FLUSH_REMOTE_TLBS = defineProbe('kvm_flush_remote_tlbs', 'tlb', 'virt/kvm/kvm_main.c', 'flush every vCPU\'s TLB for this VM', ['kind', 'gfn', 'pages']);
const KVM_FLUSH_REMOTE_TLBS_RANGE = defineProbe('kvm_flush_remote_tlbs_range', 'tlb', 'virt/kvm/kvm_main.c', 'flush a gfn range (a full flush without a ranged hook)', ['gfn', 'pages']);
const KVM_FLUSH_REMOTE_TLBS_MEMSLOT = defineProbe('kvm_flush_remote_tlbs_memslot', 'tlb', 'virt/kvm/kvm_main.c', 'flush a memslot\'s range after a dirty-logging change', ['slot']);

export interface UserspaceMemoryRegion2 {
  /** as_id << 16 | slot id. */
  slot: number;
  flags: number;
  guest_phys_addr: number;
  memory_size: number;
  userspace_addr: number;
  guest_memfd?: number;
  guest_memfd_offset?: number;
  /** Model: page size backing the VMA (default 4K). */
  host_backing?: HostBacking;
  /** Model: host pfn of the first page (default: allocated, congruent with the HVA modulo 1 GiB). */
  host_pfn_base?: number;
}

export type KvmMrChange = 'create' | 'delete' | 'move' | 'flags_only';

/** Hooks the MMU installs so the VM core can call into it without an import cycle. */
export interface KvmMmuOps {
  flush_shadow_memslot(kvm: Kvm, slot: KvmMemorySlot): void;
  commit_memory_region(kvm: Kvm, old: KvmMemorySlot | undefined, neu: KvmMemorySlot | undefined, change: KvmMrChange, old_flags: number): void;
  memslots_updated(kvm: Kvm, gen: number): void;
  /** kvm_mmu_write_protect_pt_masked()'s rmap half, when the memslots have rmaps (the shadow MMU). */
  write_protect_pt_masked?(kvm: Kvm, slot: KvmMemorySlot, gfn_offset: number, mask_lo: number, mask_hi: number): void;
}

const HOST_PFN_REGION_BASE = 0x100_0000; // guest RAM is backed from host 64 GiB upward
const PAGES_PER_1G = 0x40000;

export class Kvm {
  readonly params: KvmX86ModuleParams;
  readonly vendor: KvmX86VendorConfig;
  readonly masks: SpteMasks;
  readonly vm_type: number;
  readonly arch = new KvmArch();
  readonly stat = new KvmVmStat();
  readonly pool = new MmuPagePool();
  readonly memslots: KvmMemslots[];
  readonly guest_maxphyaddr: number;
  readonly tdx_variant: TdxStolenBitsVariant;
  /** KVM_X86_QUIRK_SLOT_ZAP_ALL still enabled (KVM_CAP_DISABLE_QUIRKS2 clears it). */
  quirk_slot_zap_all: boolean;
  /** kvm_arch_nr_memslot_as_ids(): 2 with SMM, 1 for VMs without SMM (TDX). */
  readonly nr_as_ids: number;
  vcpus: KvmVcpuLike[] = [];
  /** vCPU whose thread is running MMU code now (-1: an ioctl, notifier or worker). */
  cur_vcpu = -1;

  mmu_invalidate_seq = 0;
  mmu_invalidate_in_progress = 0;
  mmu_invalidate_range_start = -1;
  mmu_invalidate_range_end = -1;

  manual_dirty_log_protect = 0;
  /** kvm->arch.pre_fault_allowed: KVM_PRE_FAULT_MEMORY works (TDX: only after the TD is finalized). */
  pre_fault_allowed = true;
  /** kvm->nr_memslots_dirty_logging. */
  nr_memslots_dirty_logging = 0;

  /** Memory attributes as sorted disjoint [start, end) gfn ranges that are PRIVATE. */
  private private_ranges: Array<[number, number]> = [];

  /** External page-table hooks (TDX); null for other VM types. */
  tdx_hooks: KvmTdxHooks | null = null;
  /** Installed by the MMU (mmu.ts) at VM creation. */
  mmu_ops: KvmMmuOps | null = null;

  /** Remote TLB flushes requested (each also counted in stat.remote_tlb_flush*). */
  readonly flush_log: FlushRecord[] = [];
  record_flushes = true;

  /** need_resched() model: counts iterator steps. */
  resched_every: number;
  resched_counter = 0;
  yields = 0;

  /** Reused argument block for make_spte (kvm-wide; the model runs one fault at a time). */
  readonly make_spte_args: MakeSpteArgs = newMakeSpteArgs();

  private next_host_pfn = HOST_PFN_REGION_BASE;
  /** TDX: pfns of S-EPT pages the TDX module refused to give back (leaked on purpose). */
  readonly leaked_external_spts: number[] = [];
  /** Model knob: the next N eager-split allocations fail with -ENOMEM. */
  split_alloc_fails = 0;
  private next_external_spt = 0x80_0000;
  /** sp_field variant: kvm->arch.mmu_page_hash keyed by (gfn | stolen bits, role). */
  readonly sp_hash = new Map<string, KvmMmuPage>();
  sp_hash_lookups = 0;
  sp_hash_hits = 0;
  /** KVM_BUG_ON / WARN splats the model hit, newest last. */
  readonly warnings: string[] = [];
  bugged = false;

  constructor(opts: KvmCreateOptions = {}) {
    const vendor = opts.vendor ?? 'vmx';
    this.vm_type = opts.vm_type ?? KVM_X86_DEFAULT_VM;
    const isTdx = this.vm_type === KVM_X86_TDX_VM;
    if (isTdx && vendor !== 'vmx') throw new Error('TDX VMs need the vmx vendor');
    this.params = { ...default_module_params(), ...opts.params };
    this.vendor = { ...default_vendor_config(vendor), ...(isTdx ? { host_maxphyaddr: 52 } : {}), ...opts.vendor_config, vendor };
    const err = validate_params(this.params, this.vendor);
    if (err) throw new Error(err);
    this.guest_maxphyaddr = opts.guest_maxphyaddr ?? (isTdx ? (opts.tdx_gpaw ?? 48) : Math.min(this.vendor.host_maxphyaddr, 48));
    this.tdx_variant = opts.tdx_variant ?? 'mirror_role';
    this.quirk_slot_zap_all = opts.quirk_slot_zap_all ?? true;
    this.resched_every = opts.resched_every ?? 0;
    this.arch.disable_nx_huge_pages = opts.disable_nx_huge_pages ?? false;
    this.nr_as_ids = isTdx || this.vm_type >= KVM_X86_SEV_ES_VM ? 1 : 2;
    // Address space i starts at generation i so the two never share a value.
    this.memslots = [];
    for (let i = 0; i < this.nr_as_ids; i++) this.memslots.push(new KvmMemslots(i));

    const host = { maxphyaddr: this.vendor.host_maxphyaddr, mmio_caching: this.params.mmio_caching };
    this.masks = vendor === 'vmx' ? eptMasks(host, this.vendor.ept_ad, this.vendor.ept_execonly) : nptMasks(host);
    this.arch.shadow_mmio_value = { lo: this.masks.shadow_mmio_value.lo, hi: this.masks.shadow_mmio_value.hi };
    this.arch.cpu_dirty_log_size = vendor === 'vmx' && this.vendor.pml && this.masks.kvm_ad_enabled ? 512 : 0;
    this.arch.has_private_mem = kvm_arch_has_private_mem_type(this.vm_type);
    if (isTdx) {
      const gpaw = opts.tdx_gpaw ?? 48;
      const bit = gpaw === 52 ? TDX_SHARED_BIT_PWL_5 : TDX_SHARED_BIT_PWL_4;
      if (bit >= this.vendor.host_maxphyaddr) throw new Error(`TDX shared bit ${bit} needs host MAXPHYADDR > ${bit}`);
      this.arch.gfn_direct_bits = 2 ** (bit - 12);
      // TDX MMIO SPTEs must cause #VE in the guest: value 0 under the RWX|SVE mask (suppress-#VE clear).
      this.arch.shadow_mmio_value = { lo: 0, hi: 0 };
    }
  }

  /** This VM as the private-memory model (kvm/attributes.ts, kvm/guest_memfd.ts) sees struct kvm. */
  get private_mem(): PrivateMemKvm {
    return this as unknown as PrivateMemKvm;
  }

  /** Host pfn for a page handed to the TDX module as an S-EPT table (kvm_mmu_alloc_external_spt). */
  alloc_external_spt_pfn(): number {
    return this.next_external_spt++;
  }

  /** sp_field variant: the hash lookup on gfn plus stolen bits before creating a child SP. */
  sp_hash_lookup_insert(gfn: number, stolen: number, role: number, sp: KvmMmuPage): void {
    const key = `${gfn + stolen}:${role}`;
    this.sp_hash_lookups++;
    if (this.sp_hash.has(key)) this.sp_hash_hits++;
    this.sp_hash.set(key, sp);
  }

  sp_hash_remove(sp: KvmMmuPage): void {
    const key = `${sp.gfn + sp.gfn_stolen_bits}:${sp.role}`;
    if (this.sp_hash.get(key) === sp) this.sp_hash.delete(key);
  }

  get is_tdx(): boolean {
    return this.vm_type === KVM_X86_TDX_VM;
  }

  /** kvm_has_mirrored_tdp(). */
  kvm_has_mirrored_tdp(): boolean {
    return this.vm_type === KVM_X86_TDX_VM && this.tdx_variant === 'mirror_role';
  }

  /** is_nx_huge_page_enabled(kvm). */
  is_nx_huge_page_enabled(): boolean {
    return is_nx_huge_page_enabled(this.params, this.arch.disable_nx_huge_pages);
  }

  /** kvm_mmu_max_gfn(): bounded by the host's MAXPHYADDR with TDP. */
  kvm_mmu_max_gfn(): number {
    return 2 ** (this.vendor.host_maxphyaddr - 12) - 1;
  }

  /** kvm_mem_is_private(): the gfn's attribute is PRIVATE (only VMs with private memory have any). */
  kvm_mem_is_private(gfn: number): boolean {
    if (!this.arch.has_private_mem) return false;
    const r = this.private_ranges;
    for (let i = 0; i < r.length; i++) {
      const e = r[i]!;
      if (gfn < e[0]) return false;
      if (gfn < e[1]) return true;
    }
    return false;
  }

  /** Whether any gfn of [start, end) has attributes different from `priv`. */
  range_has_other_attrs(start: number, end: number, priv: boolean): boolean {
    for (let g = start; g < end; ) {
      const p = this.kvm_mem_is_private(g);
      if (p !== priv) return true;
      // jump to next boundary
      let next = end;
      for (const [s, e] of this.private_ranges) {
        if (s > g && s < next) next = s;
        if (e > g && e < next) next = e;
      }
      g = next;
    }
    return false;
  }

  /** Record the new attribute for [start, end) (the xarray update in kvm_vm_set_mem_attributes). */
  set_private_range(start: number, end: number, priv: boolean): void {
    const out: Array<[number, number]> = [];
    for (const [s, e] of this.private_ranges) {
      if (e <= start || s >= end) out.push([s, e]);
      else {
        if (s < start) out.push([s, start]);
        if (e > end) out.push([end, e]);
      }
    }
    if (priv) out.push([start, end]);
    out.sort((a, b) => a[0] - b[0]);
    const merged: Array<[number, number]> = [];
    for (const r of out) {
      const last = merged[merged.length - 1];
      if (last && last[1] >= r[0]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.private_ranges = merged;
  }

  private_ranges_snapshot(): Array<[number, number]> {
    return this.private_ranges.map(([s, e]) => [s, e]);
  }

  /** kvm_is_addr_direct(): a GPA with no direct bits configured, or with the shared bit set. */
  kvm_is_addr_direct(gpa: number): boolean {
    const bits = this.arch.gfn_direct_bits;
    if (bits === 0) return true;
    return Math.floor(gpa / (bits * 4096)) % 2 === 1;
  }

  /** kvm_is_gfn_alias(): the gfn carries the direct (shared) bit. */
  kvm_is_gfn_alias(gfn: number): boolean {
    const bits = this.arch.gfn_direct_bits;
    return bits !== 0 && Math.floor(gfn / bits) % 2 === 1;
  }

  /** kvm_gfn_root_bits(): mirror roots index private gfns; direct roots add the shared bit. */
  kvm_gfn_root_bits(root: KvmMmuPage): number {
    return (root.role & 0x8_0000) !== 0 ? 0 : this.arch.gfn_direct_bits;
  }

  /** KVM_BUG_ON: record and mark the VM bugged (the kernel stops running its vCPUs). */
  KVM_BUG_ON(cond: boolean, what: string): boolean {
    if (cond) {
      this.bugged = true;
      this.warnings.push(`KVM_BUG_ON: ${what}`);
    }
    return cond;
  }

  WARN_ON_ONCE(cond: boolean, what: string): boolean {
    if (cond) this.warnings.push(`WARN: ${what}`);
    return cond;
  }

  /** kvm_make_all_cpus_request(). */
  kvm_make_all_cpus_request(req: number): void {
    for (const v of this.vcpus) v.requests |= req;
  }

  /** kvm_flush_remote_tlbs(): without Hyper-V enlightenments x86 flushes by KVM_REQ_TLB_FLUSH to all vCPUs. */
  kvm_flush_remote_tlbs(): void {
    this.record_flush('all', 0, 0);
  }

  /** kvm_flush_remote_tlbs_range(): no ranged flush hook on bare-metal VMX/SVM, so it becomes a full flush. */
  kvm_flush_remote_tlbs_range(gfn: number, pages: number): void {
    if (probes.armed) probes.hit(KVM_FLUSH_REMOTE_TLBS_RANGE, { gfn, pages });
    this.record_flush('range', gfn, pages);
  }

  kvm_flush_remote_tlbs_memslot(slot: KvmMemorySlot): void {
    if (probes.armed) probes.hit(KVM_FLUSH_REMOTE_TLBS_MEMSLOT, { slot: slot.id });
    this.record_flush('memslot', slot.base_gfn, slot.npages);
  }

  private record_flush(kind: FlushRecord['kind'], gfn: number, pages: number): void {
    if (kind === 'all' && probes.armed) probes.hit(KVM_FLUSH_REMOTE_TLBS, { kind, gfn, pages });
    this.stat.remote_tlb_flush_requests++;
    this.stat.remote_tlb_flush++;
    this.kvm_make_all_cpus_request(KVM_REQ_TLB_FLUSH);
    if (this.record_flushes && this.flush_log.length < 100000) this.flush_log.push({ kind, gfn, pages });
  }

  /** need_resched() || rwlock_needbreak(), deterministically every `resched_every` steps. */
  need_resched(): boolean {
    if (this.resched_every === 0) return false;
    if (++this.resched_counter >= this.resched_every) {
      this.resched_counter = 0;
      return true;
    }
    return false;
  }

  /** kvm_mmu_invalidate_begin(). */
  kvm_mmu_invalidate_begin(): void {
    this.mmu_invalidate_in_progress++;
    if (this.mmu_invalidate_in_progress === 1) {
      this.mmu_invalidate_range_start = -1;
      this.mmu_invalidate_range_end = -1;
    }
  }

  /** kvm_mmu_invalidate_range_add(). */
  kvm_mmu_invalidate_range_add(start: number, end: number): void {
    this.WARN_ON_ONCE(this.mmu_invalidate_in_progress === 0, 'invalidate_range_add outside begin/end');
    if (this.mmu_invalidate_range_start === -1) {
      this.mmu_invalidate_range_start = start;
      this.mmu_invalidate_range_end = end;
    } else {
      this.mmu_invalidate_range_start = Math.min(this.mmu_invalidate_range_start, start);
      this.mmu_invalidate_range_end = Math.max(this.mmu_invalidate_range_end, end);
    }
  }

  /** kvm_mmu_invalidate_end(). */
  kvm_mmu_invalidate_end(): void {
    this.mmu_invalidate_seq++;
    this.mmu_invalidate_in_progress--;
    this.KVM_BUG_ON(this.mmu_invalidate_in_progress < 0, 'mmu_invalidate_in_progress < 0');
    this.WARN_ON_ONCE(this.mmu_invalidate_range_start === -1, 'invalidation without a range');
  }

  /** mmu_invalidate_retry_gfn(): an invalidation covers gfn, or one completed since mmu_seq. */
  mmu_invalidate_retry_gfn(mmu_seq: number, gfn: number): boolean {
    if (this.mmu_invalidate_in_progress !== 0 && gfn >= this.mmu_invalidate_range_start && gfn < this.mmu_invalidate_range_end) return true;
    return this.mmu_invalidate_seq !== mmu_seq;
  }

  /** __kvm_memslots() for an address space. */
  kvm_memslots(as_id: number): KvmMemslots {
    return this.memslots[as_id]!;
  }

  /**
   * KVM_SET_USER_MEMORY_REGION2 (kvm_set_memory_region). Returns 0 or a negative errno, as the ioctl.
   */
  kvm_set_memory_region(mem: UserspaceMemoryRegion2): number {
    const as_id = mem.slot >>> 16;
    const id = mem.slot & 0xffff;
    let valid = KVM_MEM_LOG_DIRTY_PAGES;
    if (this.arch.has_private_mem) valid |= KVM_MEM_GUEST_MEMFD;
    // Dirty logging of private memory is unsupported, and guest_memfd slots can't be read-only.
    if (mem.flags & KVM_MEM_GUEST_MEMFD) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
    else valid |= KVM_MEM_READONLY;
    if ((mem.flags & ~valid) !== 0) return -EINVAL;
    if (mem.memory_size % 4096 !== 0 || mem.guest_phys_addr % 4096 !== 0 || mem.userspace_addr % 4096 !== 0) return -EINVAL;
    if (mem.memory_size < 0 || mem.guest_phys_addr < 0) return -EINVAL;
    if (as_id >= this.nr_as_ids || id >= KVM_USER_MEM_SLOTS) return -EINVAL;
    const slots = this.memslots[as_id]!;
    const old = slots.byId(id);
    const npages = mem.memory_size / 4096;
    const base_gfn = mem.guest_phys_addr / 4096;
    let change: KvmMrChange;

    if (mem.memory_size === 0) {
      if (!old || old.npages === 0) return -EINVAL;
      change = 'delete';
    } else if (!old) {
      change = 'create';
      if (slots.overlaps(base_gfn, npages)) return -EEXIST;
    } else {
      if (mem.flags & KVM_MEM_GUEST_MEMFD) return -EINVAL;
      if (mem.userspace_addr !== old.userspace_addr || npages !== old.npages || ((mem.flags ^ old.flags) & KVM_MEM_READONLY) !== 0) return -EINVAL;
      if (base_gfn !== old.base_gfn) {
        change = 'move';
        if (slots.overlaps(base_gfn, npages, old)) return -EEXIST;
      } else if (mem.flags !== old.flags) change = 'flags_only';
      else return 0;
    }

    if (change === 'create' || change === 'move') {
      // kvm_arch_prepare_memory_region: the slot must fit below the max gfn and must not be an alias.
      if (base_gfn + npages - 1 > this.kvm_mmu_max_gfn()) return -EINVAL;
      if (this.kvm_is_gfn_alias(base_gfn + npages - 1)) return -EINVAL;
      if ((mem.flags & KVM_MEM_GUEST_MEMFD) && (mem.guest_memfd === undefined || mem.guest_memfd < 0)) return -EINVAL;
    }

    if (probes.armed) {
      probes.hit(KVM_SET_USER_MEMORY_REGION2, {
        slot: mem.slot, flags: mem.flags, guest_phys_addr: mem.guest_phys_addr, memory_size: mem.memory_size,
        userspace_addr: mem.userspace_addr, change,
      });
    }

    const ops = this.mmu_ops;
    if (change === 'delete' || change === 'move') {
      const o = old!;
      // kvm_invalidate_memslot: publish the old slot as INVALID, then flush its mappings.
      o.flags |= KVM_MEMSLOT_INVALID;
      this.kvm_swap_active_memslots(as_id);
      ops?.flush_shadow_memslot(this, o);
      o.flags &= ~KVM_MEMSLOT_INVALID;
      if (change === 'delete') {
        slots.remove(o);
        this.kvm_swap_active_memslots(as_id);
        ops?.commit_memory_region(this, o, undefined, change, o.flags);
        // kvm_free_memslot() of the old slot, once nothing can reach it any more.
        if (o.flags & KVM_MEM_GUEST_MEMFD) kvm_gmem_unbind(o);
        return 0;
      }
      slots.remove(o);
      const moved = this.rebuild_slot(o, base_gfn);
      kvm_mmu_init_memslot_memory_attributes(this.private_mem, moved);
      slots.insert(moved);
      this.kvm_swap_active_memslots(as_id);
      ops?.commit_memory_region(this, o, moved, change, o.flags);
      return 0;
    }

    if (change === 'create') {
      const backing = mem.host_backing ?? '4k';
      const uaddr_pfn = mem.userspace_addr / 4096;
      let host_pfn_base = mem.host_pfn_base;
      if (host_pfn_base === undefined) {
        const aligned = Math.ceil(this.next_host_pfn / PAGES_PER_1G) * PAGES_PER_1G;
        host_pfn_base = aligned + (uaddr_pfn % PAGES_PER_1G);
        this.next_host_pfn = host_pfn_base + npages;
      }
      const slot = new KvmMemorySlot({
        id, as_id, base_gfn, npages, flags: mem.flags, userspace_addr: mem.userspace_addr,
        guest_memfd: mem.guest_memfd ?? -1, guest_memfd_offset: mem.guest_memfd_offset ?? 0, host_backing: backing, host_pfn_base,
      });
      if (mem.flags & KVM_MEM_GUEST_MEMFD) {
        const r = kvm_gmem_bind(this.private_mem, slot, mem.guest_memfd!, mem.guest_memfd_offset ?? 0);
        if (r) return r;
      }
      // kvm_arch_prepare_memory_region -> kvm_alloc_memslot_metadata (a no-op without private memory).
      kvm_mmu_init_memslot_memory_attributes(this.private_mem, slot);
      if (mem.flags & KVM_MEM_LOG_DIRTY_PAGES) this.kvm_alloc_dirty_bitmap(slot);
      slots.insert(slot);
      this.kvm_swap_active_memslots(as_id);
      ops?.commit_memory_region(this, undefined, slot, change, 0);
      return 0;
    }

    // FLAGS_ONLY
    const o = old!;
    const old_flags = o.flags;
    o.flags = mem.flags;
    if ((mem.flags & KVM_MEM_LOG_DIRTY_PAGES) && !o.dirty_bitmap) this.kvm_alloc_dirty_bitmap(o);
    if (!(mem.flags & KVM_MEM_LOG_DIRTY_PAGES)) o.dirty_bitmap = undefined;
    this.kvm_swap_active_memslots(as_id);
    ops?.commit_memory_region(this, o, o, change, old_flags);
    return 0;
  }

  private rebuild_slot(o: KvmMemorySlot, base_gfn: number): KvmMemorySlot {
    const s = new KvmMemorySlot({
      id: o.id, as_id: o.as_id, base_gfn, npages: o.npages, flags: o.flags, userspace_addr: o.userspace_addr,
      guest_memfd: o.guest_memfd, guest_memfd_offset: o.guest_memfd_offset, host_backing: o.host_backing, host_pfn_base: o.host_pfn_base,
    });
    for (const k of o.host_split_2m) s.host_split_2m.add(k);
    for (const [k, v] of o.host_migrated) s.host_migrated.set(k, v);
    for (const k of o.host_hwpoison) s.host_hwpoison.add(k);
    // A moved slot keeps its dirty bitmap (kvm_prepare_memory_region reuses the old one).
    s.dirty_bitmap = o.dirty_bitmap;
    return s;
  }

  /** kvm_alloc_dirty_bitmap(); with KVM_DIRTY_LOG_INITIALLY_SET every bit starts set. */
  kvm_alloc_dirty_bitmap(slot: KvmMemorySlot): void {
    const bm = new Uint32Array(kvm_dirty_bitmap_words32(slot.npages));
    if ((this.manual_dirty_log_protect & KVM_DIRTY_LOG_INITIALLY_SET) !== 0) {
      for (let i = 0; i < slot.npages; i++) bm[i >>> 5] = (bm[i >>> 5]! | (1 << (i & 31))) >>> 0;
    }
    slot.dirty_bitmap = bm;
  }

  /** kvm_swap_active_memslots(): bump the generation by the number of address spaces. */
  private kvm_swap_active_memslots(as_id: number): void {
    const slots = this.memslots[as_id]!;
    const gen = slots.generation + this.nr_as_ids;
    this.mmu_ops?.memslots_updated(this, gen);
    slots.generation = gen;
  }

  /** The MMIO generation an MMIO SPTE created now carries (kvm_memslots(kvm)->generation & mask). */
  mmio_gen(as_id: number): number {
    return this.memslots[as_id]!.generation & MMIO_SPTE_GEN_MASK;
  }

  /** Emit a kvmmmu/kvm event; callers check trace.enabled first. */
  emit(name: string, vcpu: number, fields: Record<string, number | string | boolean>): void {
    if (trace.enabled) emitTracepoint(name, vcpu, fields);
  }
}
