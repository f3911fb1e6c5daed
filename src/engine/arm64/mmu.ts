/**
 * Guest stage-2 faults (arch/arm64/kvm/mmu.c): `kvm_handle_guest_abort` -> `handle_access_fault` /
 * `io_mem_abort` / `user_mem_abort`, and a small VM object (`Arm64Vm`) a scenario can drive: memslots with a
 * host backing (page, THP or hugetlb), guest accesses checked against stage-2 as the hardware would, pKVM
 * host share/donate calls, descriptor and owner queries, the ptdump text and statistics.
 *
 * Host memory is modelled as a linear backing per memslot: the PA behind an IPA is slot.pa + (ipa - slot.gpa),
 * and the host VA is slot.hva + (ipa - slot.gpa). The backing page size stands for the VMA: hugetlb of that
 * size, or a THP (PMD size only) on a regular VMA.
 */
import { defineProbe, probes } from '../probes';
import * as E from './errno';
import { KvmMmuMemoryCache, PtPageAllocator, kvm_mmu_topup_memory_cache } from './page_alloc';
import {
  KVM_PGTABLE_WALK_HANDLE_FAULT,
  KVM_PGTABLE_WALK_SHARED,
  KvmPgtable,
  kvm_pgtable_get_leaf,
  kvm_pgtable_stage2_map,
  kvm_pgtable_stage2_mkyoung,
  kvm_pgtable_stage2_relax_perms,
  kvm_pgtable_stage2_unmap,
  kvm_pgtable_stage2_wrprotect,
  kvm_pgtable_stage2_split,
  kvm_pgtable_stage2_test_clear_young,
  kvm_pgtable_stage2_destroy,
  kvm_pte_valid,
  stage2Counts,
  stage2DescriptorAt,
} from './pgtable';
import {
  type Granule,
  KVM_PGTABLE_LAST_LEVEL,
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  KVM_PTE_LEAF_ATTR_LO_S2_AF,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R,
  KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W,
  granuleInfo,
  kvm_granule_size,
  kvm_pte_to_phys,
} from './pgtable_desc';
import { type OwnerEncoding } from './variants';
import { type MemblockRegion, type PageOwnership, PkvmHyp, type PkvmHypVm } from './pkvm_mem_protect';
import { decodeS2Descriptor, type S2Decoded } from './decode';
import { kvm_ptdump_guest_show } from './ptdump';

const FILE = 'arch/arm64/kvm/mmu.c';
export const MP = {
  kvm_handle_guest_abort: defineProbe('kvm_handle_guest_abort', 'fault', FILE, 'stage-2 abort from a guest: AF fault, MMIO, or user_mem_abort', ['ipa', 'fsc', 'level', 'write', 'exec']),
  user_mem_abort: defineProbe('user_mem_abort', 'fault', FILE, 'fault memory in: pick the mapping size from the VMA, then map or relax permissions', ['ipa', 'vma_pagesize', 'prot', 'phys']),
  handle_access_fault: defineProbe('handle_access_fault', 'fault', FILE, 'access-flag fault: make the leaf young', ['ipa']),
  io_mem_abort: defineProbe('io_mem_abort', 'fault', 'arch/arm64/kvm/mmio.c', 'no memslot: exit to userspace for MMIO emulation', ['ipa', 'write']),
} as const;

export type Access = 'read' | 'write' | 'exec';

const FAULT_LOG_MAX = 1024;
export type Fsc = 'translation' | 'access_flag' | 'permission';

export interface MemslotSpec {
  /** Base IPA (page aligned). */
  gpa: number;
  size: number;
  /** userspace_addr. Defaults to gpa + 0x7f00_0000_0000 so IPA and HVA share every alignment. */
  hva?: number;
  /** Host PA backing the first byte. Defaults to gpa + 0x1_0000_0000. */
  pa?: number;
  /** Host mapping size: PAGE_SIZE, a THP (PMD size) or a hugetlb size. */
  backingPageSize?: number;
  /** The VMA is hugetlb (otherwise a PMD-sized backing is a THP). */
  hugetlb?: boolean;
  readonly?: boolean;
  logDirty?: boolean;
  /** VM_PFNMAP device memory. */
  device?: boolean;
}

export interface Memslot extends Required<Omit<MemslotSpec, 'backingPageSize'>> {
  id: number;
  backingPageSize: number;
  dirty: Set<number>;
}

export interface Arm64VmOptions {
  granule?: Granule;
  ipaBits?: number;
  lpa2?: boolean;
  /** Protected KVM: the guest stage-2 lives at EL2 and every mapping is a host share/donate. */
  pkvm?: boolean;
  /** With pKVM: a protected VM (pages donated) rather than a shared one. */
  protectedVm?: boolean;
  variant?: OwnerEncoding;
  fwb?: boolean;
  xnx?: boolean;
  /** ARM64_HAS_CACHE_DIC: normal memory is mapped executable up front. */
  dic?: boolean;
  /** VTCR_EL2.HA: hardware sets AF, no access-flag faults. */
  hwAf?: boolean;
  /** pKVM: host PA size and memory map. */
  paBits?: number;
  hostMemory?: MemblockRegion[];
}

export interface FaultRecord {
  ipa: number;
  fsc: Fsc;
  level: number;
  access: Access;
  ret: number;
  outcome: 'mapped' | 'relaxed' | 'young' | 'mmio' | 'inject' | 'error' | 'retry';
}

export interface AccessResult {
  outcome: 'hit' | 'mmio' | 'inject' | 'error';
  /** PA the access reached, on a hit. */
  pa?: number;
  faults: FaultRecord[];
  ret: number;
}

export const PKVM_CALLS = [
  '__pkvm_host_share_hyp',
  '__pkvm_host_unshare_hyp',
  '__pkvm_host_donate_hyp',
  '__pkvm_hyp_donate_host',
  '__pkvm_host_share_guest',
  '__pkvm_host_unshare_guest',
  '__pkvm_host_donate_guest',
  '__pkvm_guest_share_host',
  '__pkvm_guest_unshare_host',
  '__pkvm_host_reclaim_page_guest',
  '__pkvm_host_force_reclaim_page_guest',
] as const;
export type PkvmCallName = (typeof PKVM_CALLS)[number];

export interface Arm64VmStats {
  faults: number;
  faultsByFsc: Record<Fsc, number>;
  mmioExits: number;
  leaves: Record<number, number>;
  tablePages: Record<number, number>;
  annotations: number;
  tlbi: { ipa: number; ipa_nsh: number; range: number; vmid: number };
  cmo: { dcache: number; icache: number };
  memcacheObjs: number;
  /** Page-table pages: live now (incl. PGD and memcache), allocated and freed so far. */
  ptPages: { live: number; allocated: number; freed: number; peak: number };
}

/** kvm_vcpu_trap_get_fault_type and friends, reduced to what the fault path reads. */
export interface GuestAbort {
  ipa: number;
  fsc: Fsc;
  /** Level the fault was reported at (the fault granule). */
  level: number;
  access: Access;
}

export class Arm64Vm {
  readonly granule: Granule;
  readonly pageSize: number;
  readonly pgt: KvmPgtable;
  readonly memcache: KvmMmuMemoryCache;
  readonly memslots: Memslot[] = [];
  readonly pkvm: PkvmHyp | undefined;
  readonly hypVm: PkvmHypVm | undefined;
  readonly dic: boolean;
  readonly hwAf: boolean;
  /** The most recent faults (at most FAULT_LOG_MAX), oldest first. */
  readonly faultLog: FaultRecord[] = [];
  private readonly faultCounts: Record<Fsc, number> = { translation: 0, access_flag: 0, permission: 0 };
  private faultTotal = 0;
  mmioExits = 0;
  private nextSlot = 0;

  constructor(o: Arm64VmOptions = {}) {
    this.granule = o.granule ?? '4k';
    this.pageSize = granuleInfo(this.granule).pageSize;
    const ipaBits = o.ipaBits ?? 40;
    const variant = o.variant ?? 'annotate_2026';
    this.dic = o.dic ?? false;
    this.hwAf = o.hwAf ?? false;
    if (o.pkvm) {
      const mem = o.hostMemory ?? [{ base: 0x1_0000_0000, size: 0x1_0000_0000 }];
      this.pkvm = new PkvmHyp({ granule: this.granule, paBits: o.paBits ?? 40, encoding: variant, memory: mem });
      this.hypVm = this.pkvm.createVm({ iaBits: ipaBits, isProtected: o.protectedVm ?? false });
      this.pgt = this.hypVm.pgt;
      this.memcache = this.hypVm.memcache;
    } else {
      this.pkvm = undefined;
      this.hypVm = undefined;
      const alloc = new PtPageAllocator(this.pageSize);
      this.pgt = new KvmPgtable({ granule: this.granule, iaBits: ipaBits, lpa2: o.lpa2 ?? false, encoding: variant, fwbCap: o.fwb ?? false, xnxCap: o.xnx ?? false, alloc });
      this.memcache = new KvmMmuMemoryCache(alloc, { atomicFallback: true });
    }
  }

  addMemslot(spec: MemslotSpec): number {
    const ps = this.pageSize;
    const s: Memslot = {
      id: this.nextSlot++,
      gpa: spec.gpa,
      size: spec.size,
      hva: spec.hva ?? spec.gpa + 0x7f00_0000_0000,
      pa: spec.pa ?? spec.gpa + 0x1_0000_0000,
      backingPageSize: spec.backingPageSize ?? ps,
      hugetlb: spec.hugetlb ?? false,
      readonly: spec.readonly ?? false,
      logDirty: spec.logDirty ?? false,
      device: spec.device ?? false,
      dirty: new Set(),
    };
    if (s.gpa % ps || s.size % ps || s.size <= 0 || s.hva % ps || s.pa % ps) throw new RangeError('memslot gpa, size, hva and pa must be page aligned');
    for (const m of this.memslots) if (s.gpa < m.gpa + m.size && m.gpa < s.gpa + s.size) throw new RangeError('memslots overlap');
    this.memslots.push(s);
    return s.id;
  }

  memslotFor(ipa: number): Memslot | undefined {
    for (const m of this.memslots) if (ipa >= m.gpa && ipa < m.gpa + m.size) return m;
    return undefined;
  }

  /**
   * KVM_MEM_LOG_DIRTY_PAGES on/off. Turning it on write-protects the slot (kvm_mmu_wp_memory_region) and,
   * with an eager-split chunk size set, splits its blocks up front (kvm_mmu_split_memory_region).
   */
  setDirtyLogging(slotId: number, on: boolean): void {
    const s = this.memslots.find((m) => m.id === slotId);
    if (!s) throw new RangeError(`no memslot ${slotId}`);
    s.logDirty = on;
    if (!on) return;
    kvm_pgtable_stage2_wrprotect(this.pgt, s.gpa, s.size);
    if (this.eagerSplitChunk) this.kvm_mmu_split_huge_pages(s.gpa, s.gpa + s.size);
  }

  /** KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE (0: off). */
  eagerSplitChunk = 0;
  /** kvm->arch.mmu.split_page_cache. */
  private splitCache: KvmMmuMemoryCache | undefined;

  /** kvm_mmu_split_nr_page_tables: tables a full split of `range` bytes may need (PUD and PMD levels). */
  kvm_mmu_split_nr_page_tables(range: number): number {
    const shift = this.pgt.pageShift;
    let n = Math.ceil(range / kvm_granule_size(shift, 2));
    if (this.pgt.gi.minBlockLevel <= 1) n += Math.ceil(range / kvm_granule_size(shift, 1));
    return n;
  }

  /** kvm_mmu_split_huge_pages: split [start, end) chunk by chunk, topping the split cache up per chunk. */
  kvm_mmu_split_huge_pages(start: number, end: number): number {
    const chunk = this.eagerSplitChunk;
    if (!chunk) return 0;
    const need = this.kvm_mmu_split_nr_page_tables(chunk);
    const mc = (this.splitCache ??= new KvmMmuMemoryCache(this.pgt.mm_ops.alloc, { capacity: need }));
    for (let addr = start; addr < end; ) {
      const next = Math.min(end, addr - (addr % chunk) + chunk);
      if (mc.nobjs < need) {
        const r = kvm_mmu_topup_memory_cache(mc, need);
        if (r) return r;
      }
      const ret = kvm_pgtable_stage2_split(this.pgt, addr, next - addr, mc);
      if (ret) return ret;
      addr = next;
    }
    return 0;
  }

  /** MMU-notifier aging (kvm_age_gfn / kvm_test_age_gfn): was any leaf in range young; clear AF if mkold. */
  ageRange(ipa: number, size: number, mkold = true): boolean {
    return kvm_pgtable_stage2_test_clear_young(this.pgt, ipa, size, mkold);
  }

  /** VM teardown: kvm_pgtable_stage2_destroy (non-pKVM VMs). */
  destroy(): void {
    if (!this.pkvm) kvm_pgtable_stage2_destroy(this.pgt);
  }

  /** Drop the stage-2 for a range (MMU notifier invalidation: kvm_unmap_gfn_range). */
  unmapRange(ipa: number, size: number): number {
    return kvm_pgtable_stage2_unmap(this.pgt, ipa, size);
  }

  /**
   * A guest access: the stage-2 check the hardware does, then on a fault `kvm_handle_guest_abort` and a retry,
   * until the access hits or leaves the guest (MMIO exit, injected abort, error).
   */
  access(ipa: number, kind: Access, opts: { el0?: boolean } = {}): AccessResult {
    const faults: FaultRecord[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const hw = this.stage2Check(ipa, kind, opts.el0 ?? false);
      if (hw.fsc === undefined) {
        const res: AccessResult = { outcome: 'hit', faults, ret: 0 };
        if (hw.pa !== undefined) res.pa = hw.pa;
        return res;
      }
      const rec = this.kvm_handle_guest_abort({ ipa, fsc: hw.fsc, level: hw.level, access: kind });
      faults.push(rec);
      this.faultTotal++;
      this.faultCounts[rec.fsc]++;
      this.faultLog.push(rec);
      if (this.faultLog.length > FAULT_LOG_MAX) this.faultLog.shift();
      if (rec.outcome === 'mmio' || rec.outcome === 'inject' || rec.outcome === 'error') {
        return { outcome: rec.outcome, faults, ret: rec.ret };
      }
    }
    return { outcome: 'error', faults, ret: -E.EFAULT };
  }

  /** What the MMU would do with an access: a fault status, or the PA reached. */
  stage2Check(ipa: number, kind: Access, el0: boolean): { fsc?: Fsc; level: number; pa?: number } {
    const leaf = kvm_pgtable_get_leaf(this.pgt, ipa);
    if (leaf.ret || !kvm_pte_valid(leaf.lo)) return { fsc: 'translation', level: leaf.level };
    const lo = leaf.lo;
    if (!(lo & KVM_PTE_LEAF_ATTR_LO_S2_AF)) {
      if (!this.hwAf) return { fsc: 'access_flag', level: leaf.level };
      kvm_pgtable_stage2_mkyoung(this.pgt, ipa, 0); // hardware AF update
    }
    const xn = (leaf.hi >>> 21) & 3;
    let ok: boolean;
    if (kind === 'read') ok = (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R) !== 0;
    else if (kind === 'write') ok = (lo & KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W) !== 0;
    else ok = el0 ? xn === 0 || xn === 1 : xn === 0 || xn === 3;
    if (!ok) return { fsc: 'permission', level: leaf.level };
    const g = kvm_granule_size(this.pgt.pageShift, leaf.level);
    return { level: leaf.level, pa: kvm_pte_to_phys(lo, leaf.hi, this.pgt.pageShift, this.pgt.lpa2) + (ipa % g) };
  }

  kvm_handle_guest_abort(a: GuestAbort): FaultRecord {
    if (probes.armed) probes.hit(MP.kvm_handle_guest_abort, { ipa: a.ipa, fsc: a.fsc, level: a.level, write: a.access === 'write', exec: a.access === 'exec' });
    const rec: FaultRecord = { ipa: a.ipa, fsc: a.fsc, level: a.level, access: a.access, ret: 0, outcome: 'retry' };
    if (a.fsc === 'access_flag') {
      this.handle_access_fault(a.ipa);
      rec.ret = 1;
      rec.outcome = 'young';
      return rec;
    }
    const slot = this.memslotFor(a.ipa);
    const write = a.access === 'write';
    if (!slot || (write && slot.readonly)) {
      if (a.access === 'exec') {
        // instruction fetch outside RAM: the abort goes back to the guest
        rec.ret = 1;
        rec.outcome = 'inject';
        return rec;
      }
      this.io_mem_abort(a.ipa, write);
      rec.ret = 0;
      rec.outcome = 'mmio';
      return rec;
    }
    const ret = this.user_mem_abort(a, slot, rec);
    rec.ret = ret === 0 ? 1 : ret;
    if (ret < 0) rec.outcome = 'error';
    return rec;
  }

  handle_access_fault(ipa: number): void {
    if (probes.armed) probes.hit(MP.handle_access_fault, { ipa });
    kvm_pgtable_stage2_mkyoung(this.pgt, ipa, 0);
  }

  io_mem_abort(ipa: number, write: boolean): void {
    if (probes.armed) probes.hit(MP.io_mem_abort, { ipa, write });
    this.mmioExits++;
  }

  /** fault_supports_stage2_huge_mapping: same offset within the block for HVA and IPA, block inside the slot. */
  fault_supports_stage2_huge_mapping(slot: Memslot, hva: number, mapSize: number): boolean {
    if (mapSize === this.pageSize) return true;
    if (slot.gpa % mapSize !== slot.hva % mapSize) return false;
    const start = hva - (hva % mapSize);
    return start >= slot.hva && start + mapSize <= slot.hva + slot.size;
  }

  user_mem_abort(a: GuestAbort, slot: Memslot, rec: FaultRecord): number {
    const ps = this.pageSize;
    const pageShift = this.pgt.pageShift;
    const PMD_SIZE = kvm_granule_size(pageShift, 2);
    const PUD_SIZE = kvm_granule_size(pageShift, 1);
    const write_fault = a.access === 'write';
    const exec_fault = a.access === 'exec';
    const fault_is_perm = a.fsc === 'permission';
    if (fault_is_perm && !write_fault && !exec_fault) return -E.EFAULT; // unexpected read permission fault
    const logging_active = slot.logDirty;
    const device = slot.device;
    let force_pte = logging_active || device;
    if (!fault_is_perm || (logging_active && write_fault)) {
      const r = kvm_mmu_topup_memory_cache(this.memcache, this.pgt.geo.levels - 1);
      if (r) return r;
    }
    const hva = slot.hva + (a.ipa - slot.gpa);
    let vma_pagesize = ps;
    if (!force_pte && slot.hugetlb) {
      // hugetlb: try the VMA's size, falling back PUD -> PMD -> PAGE (contiguous sizes go to the level below)
      let size = slot.backingPageSize;
      if (size >= PUD_SIZE) size = this.fault_supports_stage2_huge_mapping(slot, hva, PUD_SIZE) ? PUD_SIZE : PMD_SIZE;
      if (size > PMD_SIZE && size < PUD_SIZE) size = PMD_SIZE;
      if (size >= PMD_SIZE && size < PUD_SIZE) size = this.fault_supports_stage2_huge_mapping(slot, hva, PMD_SIZE) ? PMD_SIZE : ps;
      if (size < PMD_SIZE) {
        size = ps;
        force_pte = true;
      }
      vma_pagesize = size;
    }
    if (this.pkvm && vma_pagesize > PMD_SIZE) vma_pagesize = PMD_SIZE; // pKVM shares pages or one level-2 block
    let writable = !slot.readonly;
    if (logging_active && !write_fault) writable = false;
    if (exec_fault && device) return -E.ENOEXEC;
    const fault_granule = kvm_granule_size(pageShift, a.level);
    if (vma_pagesize === ps && !force_pte) {
      if (fault_is_perm && fault_granule > ps) vma_pagesize = fault_granule;
      else vma_pagesize = this.transparent_hugepage_adjust(slot, hva);
    }
    const ipa = a.ipa - (a.ipa % vma_pagesize);
    const phys = slot.pa + (ipa - slot.gpa);
    let prot = KVM_PGTABLE_PROT_R;
    if (writable) prot |= KVM_PGTABLE_PROT_W;
    if (exec_fault) prot |= KVM_PGTABLE_PROT_X;
    if (device) prot |= KVM_PGTABLE_PROT_DEVICE;
    else if (this.dic) prot |= KVM_PGTABLE_PROT_X;
    if (probes.armed) probes.hit(MP.user_mem_abort, { ipa, vma_pagesize, prot, phys });
    const flags = KVM_PGTABLE_WALK_HANDLE_FAULT | KVM_PGTABLE_WALK_SHARED;
    let ret: number;
    if (fault_is_perm && vma_pagesize === fault_granule) {
      ret = this.pkvm ? this.pkvm.__pkvm_host_relax_perms_guest(this.hypVm!.handle, ipa / ps, prot) : kvm_pgtable_stage2_relax_perms(this.pgt, ipa, prot, flags);
      rec.outcome = 'relaxed';
    } else if (this.pkvm) {
      ret = this.pkvm_stage2_map(ipa, vma_pagesize, phys, prot);
      rec.outcome = 'mapped';
    } else {
      ret = kvm_pgtable_stage2_map(this.pgt, ipa, vma_pagesize, phys, prot, this.memcache, flags);
      rec.outcome = 'mapped';
    }
    if (ret === 0 && writable && write_fault) slot.dirty.add(Math.floor((a.ipa - slot.gpa) / ps));
    return ret !== -E.EAGAIN ? ret : 0;
  }

  /** A THP backs the HVA (PMD-sized, regular VMA): map the whole PMD if the slot allows. */
  transparent_hugepage_adjust(slot: Memslot, hva: number): number {
    const PMD_SIZE = kvm_granule_size(this.pgt.pageShift, 2);
    if (!slot.hugetlb && slot.backingPageSize === PMD_SIZE && this.fault_supports_stage2_huge_mapping(slot, hva, PMD_SIZE)) return PMD_SIZE;
    return this.pageSize;
  }

  /** pkvm_pgtable_stage2_map: the host asks EL2 to share (or, for a protected VM, donate) the pages. */
  private pkvm_stage2_map(ipa: number, size: number, phys: number, prot: number): number {
    const h = this.pkvm!;
    const vm = this.hypVm!;
    const ps = this.pageSize;
    h.topupGuestMemcache(vm, vm.pgt.geo.levels - 1);
    if (vm.isProtected) {
      for (let off = 0; off < size; off += ps) {
        const r = h.__pkvm_host_donate_guest((phys + off) / ps, (ipa + off) / ps, vm.handle);
        if (r) return r;
      }
      return 0;
    }
    return h.__pkvm_host_share_guest(phys / ps, ipa / ps, size / ps, vm.handle, prot & ~KVM_PGTABLE_PROT_DEVICE);
  }

  /**
   * A pKVM hypercall by its kernel name, e.g. `pkvmCall('__pkvm_host_share_hyp', [pfn])`. Guest-side calls take
   * this VM's handle implicitly. Throws RangeError for an unknown name or when pKVM is off.
   */
  pkvmCall(name: PkvmCallName, args: readonly number[]): number {
    const h = this.pkvm;
    if (!h) throw new RangeError('pKVM is off for this VM');
    const vm = this.hypVm!.handle;
    const a = (i: number): number => {
      const v = args[i];
      if (v === undefined) throw new RangeError(`${name}: missing argument ${i + 1}`);
      return v;
    };
    switch (name) {
      case '__pkvm_host_share_hyp':
        return h.__pkvm_host_share_hyp(a(0));
      case '__pkvm_host_unshare_hyp':
        return h.__pkvm_host_unshare_hyp(a(0));
      case '__pkvm_host_donate_hyp':
        return h.__pkvm_host_donate_hyp(a(0), args[1] ?? 1);
      case '__pkvm_hyp_donate_host':
        return h.__pkvm_hyp_donate_host(a(0), args[1] ?? 1);
      case '__pkvm_host_share_guest':
        return h.__pkvm_host_share_guest(a(0), a(1), args[2] ?? 1, vm, args[3] ?? KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X);
      case '__pkvm_host_unshare_guest':
        return h.__pkvm_host_unshare_guest(a(0), args[1] ?? 1, vm);
      case '__pkvm_host_donate_guest':
        return h.__pkvm_host_donate_guest(a(0), a(1), vm);
      case '__pkvm_guest_share_host':
        return h.__pkvm_guest_share_host(vm, a(0));
      case '__pkvm_guest_unshare_host':
        return h.__pkvm_guest_unshare_host(vm, a(0));
      case '__pkvm_host_reclaim_page_guest':
        return h.__pkvm_host_reclaim_page_guest(vm, a(0));
      case '__pkvm_host_force_reclaim_page_guest':
        return h.__pkvm_host_force_reclaim_page_guest(a(0));
      default:
        throw new RangeError(`unknown pKVM call '${String(name)}'`);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Queries.

  descriptorAt(ipa: number, level = KVM_PGTABLE_LAST_LEVEL): S2Decoded | undefined {
    const d = stage2DescriptorAt(this.pgt, ipa, level);
    if (!d) return undefined;
    return decodeS2Descriptor(d.lo, d.hi, { level: d.level, granule: this.granule, lpa2: this.pgt.lpa2, fwb: this.pgt.fwbCap, encoding: this.pgt.encoding });
  }

  /** The host stage-2 entry for a PA (pKVM only), decoded under this VM's owner encoding. */
  hostDescriptorAt(pa: number, level = KVM_PGTABLE_LAST_LEVEL): S2Decoded | undefined {
    const h = this.pkvm;
    if (!h) return undefined;
    const d = stage2DescriptorAt(h.host_pgt, pa, level);
    if (!d) return undefined;
    return decodeS2Descriptor(d.lo, d.hi, { level: d.level, granule: this.granule, encoding: h.encoding });
  }

  /** The host stage-2 in ptdump form (pKVM only; mainline has no debugfs file for it). */
  hostPtdump(): string | undefined {
    return this.pkvm ? kvm_ptdump_guest_show(this.pkvm.host_pgt) : undefined;
  }

  /** Host-side owner of a PA (pKVM only). */
  ownerOf(pa: number): PageOwnership | undefined {
    return this.pkvm?.ownerOf(pa);
  }

  /** A host access to a PA (pKVM only): faults in the idmap, or refuses a page the host gave away. */
  hostAccess(pa: number): ReturnType<PkvmHyp['handle_host_mem_abort']> | undefined {
    return this.pkvm?.handle_host_mem_abort(pa);
  }

  ptdump(): string {
    return kvm_ptdump_guest_show(this.pgt);
  }

  stats(): Arm64VmStats {
    const c = stage2Counts(this.pgt);
    const m = this.pgt.mmu;
    return {
      faults: this.faultTotal,
      faultsByFsc: { ...this.faultCounts },
      mmioExits: this.mmioExits,
      leaves: c.leaves,
      tablePages: c.tablePages,
      annotations: c.annotations,
      tlbi: { ipa: m.tlbi_ipa, ipa_nsh: m.tlbi_ipa_nsh, range: m.tlbi_range, vmid: m.tlbi_vmid },
      cmo: { dcache: m.dcache_clean, icache: m.icache_inval },
      memcacheObjs: this.memcache.nobjs,
      ptPages: { ...this.pgt.mm_ops.alloc.stats },
    };
  }
}
