/**
 * Facade over the x86 TDP MMU model for the scenario language, the CLI and the debugger: create a VM,
 * set memslots and attributes, make a vCPU access a GPA (the hardware walk decides whether it exits
 * and with which EPT qualification / #NPF error code) or inject a fault directly, read SPTEs and roots,
 * and run the zap / notifier / dirty-log / aging / NX operations.
 */
import { halvesToValue } from '../tracepoints/index';
import { decodeRole } from './role';
import { dirty_bitmap_test, kvm_dirty_bitmap_words32, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, type HostBacking, type KvmMemorySlot } from './memslot';
import { kvm_mmu_page_as_id, type KvmMmuPage } from './mmu_page';
import {
  EPT_VIOLATION_ACC_INSTR, EPT_VIOLATION_ACC_READ, EPT_VIOLATION_ACC_WRITE, EPT_VIOLATION_GVA_IS_VALID, EPT_VIOLATION_GVA_TRANSLATED,
  handle_ept_misconfig, handle_ept_violation, kvm_init_mmu, kvm_mmu_init_vm, kvm_mmu_notifier_invalidate_range_end,
  kvm_mmu_notifier_invalidate_range_start, kvm_mmu_page_fault, kvm_mmu_reload, kvm_mmu_unload, kvm_mmu_zap_all_fast, kvm_smm_changed,
  kvm_unmap_gfn_range, kvm_zap_gfn_range, kvm_arch_vcpu_pre_fault_memory, kvm_set_cpuid_maxphyaddr, mark_page_dirty_in_slot, npf_interception,
} from './mmu';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, kvm_vm_ioctl_set_mem_attributes } from '../kvm/attributes';
import { kvm_gmem_create } from '../kvm/guest_memfd';
import { kvm_x86_private_mem_init } from './private_fault';
import { sev_snp_init, snp_check_guest_access } from './sev_snp';
import {
  kvm_clear_dirty_log_protect, kvm_enable_manual_dirty_log_protect, kvm_get_dirty_log_protect, kvm_mmu_notifier_age,
} from './dirty_log';
import { NxRecoveryWorker, set_nx_huge_pages, kvm_recover_nx_huge_pages } from './nx_huge_pages';
import type { NxHugePagesMode } from './params';
import { PFERR_FETCH_MASK, PFERR_PRESENT_MASK, PFERR_RSVD_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK, PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI } from './pferr';
import { is_mmio_spte, spte_ad_enabled } from './spte';
import { for_each_tdp_spte, kvm_tdp_mmu_invalidate_roots, kvm_tdp_mmu_zap_invalidated_roots, KVM_VALID_ROOTS } from './tdp_mmu';
import { spte_pfn, tdp_iter, tdp_iter_next, tdp_iter_start } from './tdp_iter';
import { tdx_mmu_release_hkid, tdx_td_init, type TdxModule } from './tdx';
import { KvmVcpu } from './vcpu';
import { Kvm, KVM_X86_SNP_VM, type KvmCreateOptions, type UserspaceMemoryRegion2 } from './vm';

export { Kvm, KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM, KVM_X86_SNP_VM, KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from './vm';
export type { KvmCreateOptions, TdxStolenBitsVariant, UserspaceMemoryRegion2, FlushRecord } from './vm';
export { KvmVcpu } from './vcpu';
export { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD } from './memslot';
export type { HostBacking } from './memslot';
export type { KvmMmuPage } from './mmu_page';
export { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../kvm/attributes';
export type { TdxModule } from './tdx';

export type Access = 'read' | 'write' | 'exec';

export interface AccessResult {
  /**
   * What the hardware did: no exit, or which exit KVM handled. TDX shared MMIO becomes a #VE; an SNP
   * private access to a page the guest has not PVALIDATEd becomes a #VC (both stay in the guest).
   */
  exit: 'none' | 'ept_violation' | 'ept_misconfig' | 'npf' | 've' | 'vc';
  /** EPT exit qualification or #NPF error code (low 32 bits / high 32 bits). */
  info_lo: number;
  info_hi: number;
  /** Return of the exit handler (1 resume, 0 userspace exit, <0 -errno); undefined without an exit. */
  ret?: number;
  ret_pf?: number;
  outcome?: string;
}

export interface SpteView {
  level: number;
  gfn: number;
  spte: number | string;
  lo: number;
  hi: number;
  sptep: number;
  pfn: number;
}

export interface RootView {
  hpa: number;
  role: number;
  role_decoded: ReturnType<typeof decodeRole>;
  as_id: number;
  mirror: boolean;
  invalid: boolean;
  root_count: number;
}

export interface X86VmOptions extends KvmCreateOptions {
  nr_vcpus?: number;
  /** SEV-SNP: the guest's ASID (KVM_SEV_INIT2 / KVM_SEV_SNP_LAUNCH_START). */
  sev_asid?: number;
}

/** One x86 VM with its vCPUs. */
export class X86Vm {
  readonly kvm: Kvm;
  readonly vcpus: KvmVcpu[] = [];
  readonly nx_worker: NxRecoveryWorker;
  readonly tdx: TdxModule | undefined;
  private destroyed = false;

  constructor(opts: X86VmOptions = {}) {
    this.kvm = new Kvm(opts);
    kvm_mmu_init_vm(this.kvm);
    if (this.kvm.arch.has_private_mem) {
      // The attribute, guest_memfd and SNP code zap through the MMU's own entry points.
      kvm_x86_private_mem_init(this.kvm.private_mem, { kvm_unmap_gfn_range, kvm_zap_gfn_range });
      if (this.kvm.vm_type === KVM_X86_SNP_VM) {
        sev_snp_init(this.kvm.private_mem, { asid: opts.sev_asid ?? 1 });
        // kvm_arch_init_vm allows KVM_PRE_FAULT_MEMORY only for default and SW-protected VMs; SNP gets it at LAUNCH_FINISH.
        this.kvm.pre_fault_allowed = false;
      }
    }
    if (this.kvm.is_tdx) this.tdx = tdx_td_init(this.kvm);
    const n = opts.nr_vcpus ?? 1;
    for (let i = 0; i < n; i++) this.create_vcpu();
    this.nx_worker = new NxRecoveryWorker(this.kvm);
  }

  /** KVM_CREATE_VCPU (kvm_mmu_create + kvm_init_mmu; roots load on first entry). */
  create_vcpu(): KvmVcpu {
    const v = new KvmVcpu(this.kvm, this.vcpus.length);
    kvm_init_mmu(v);
    this.vcpus.push(v);
    this.kvm.vcpus.push(v);
    return v;
  }

  vcpu(id: number): KvmVcpu {
    const v = this.vcpus[id];
    if (!v) throw new RangeError(`no vCPU ${id}`);
    return v;
  }

  set_user_memory_region(r: UserspaceMemoryRegion2): number {
    return this.kvm.kvm_set_memory_region(r);
  }

  /**
   * Convenience: a slot at gpa of `size` bytes, HVA = 0x7f00_0000_0000 + gpa. A KVM_MEM_GUEST_MEMFD slot
   * without a `guest_memfd` gets a new file of the slot's size (KVM_CREATE_GUEST_MEMFD first, as a VMM does).
   */
  add_slot(slot: number, gpa: number, size: number, opts: { flags?: number; host_backing?: HostBacking; userspace_addr?: number; guest_memfd?: number; guest_memfd_offset?: number } = {}): number {
    const flags = opts.flags ?? 0;
    let guest_memfd = opts.guest_memfd;
    if (guest_memfd === undefined && (flags & KVM_MEM_GUEST_MEMFD) !== 0) {
      guest_memfd = kvm_gmem_create(this.kvm.private_mem, { size, flags: 0 });
      if (guest_memfd < 0) return guest_memfd;
    }
    return this.kvm.kvm_set_memory_region({
      slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: opts.userspace_addr ?? 0x7f00_0000_0000 + gpa,
      host_backing: opts.host_backing ?? '4k', guest_memfd, guest_memfd_offset: opts.guest_memfd_offset,
    });
  }

  /** KVM_SET_MEMORY_ATTRIBUTES for [gpa, gpa + size). 0 or -errno. */
  set_memory_attributes(gpa: number, size: number, attributes: number): number {
    return kvm_vm_ioctl_set_mem_attributes(this.kvm.private_mem, { address: gpa, size, attributes, flags: 0 });
  }

  /** KVM_RUN entry work the MMU does: service requests and make sure a root is loaded. */
  enter(vcpu: KvmVcpu): void {
    if (this.destroyed) throw new Error('VM destroyed');
    vcpu.has_run = true;
    kvm_mmu_reload(vcpu);
    vcpu.requests &= ~1; // KVM_REQ_TLB_FLUSH serviced on entry
  }

  /**
   * One guest access to `gpa`: the hardware walk either completes (setting A/D like the CPU does) or
   * exits; KVM handles the exit once. Returns what happened. In an SEV-SNP VM `c_bit` marks a private
   * access, and a completed NPT walk is followed by the hardware RMP check (an RMP #NPF goes to
   * npf_interception, which ends in sev_handle_rmp_fault).
   */
  access(vcpu_id: number, gpa: number, access: Access, c_bit = false): AccessResult {
    const vcpu = this.vcpu(vcpu_id);
    const snp = this.kvm.vm_type === KVM_X86_SNP_VM;
    // SNP instruction fetches are always private (APM vol. 2, 15.34: code is always decrypted with the guest key).
    const enc = snp && (c_bit || access === 'exec');
    this.enter(vcpu);
    const kvm = this.kvm;
    const m = kvm.masks;
    const isEpt = kvm.vendor.vendor === 'vmx';
    const priv = kvm.is_tdx && !kvm.kvm_is_addr_direct(gpa);
    const root = priv && kvm.kvm_has_mirrored_tdp() ? vcpu.mmu.mirror_root! : vcpu.mmu.root!;
    // The hardware walks the full GPA: a shared TDX GPA carries its shared bit into the table index.
    const gfn = Math.floor(gpa / 4096);
    const it = new tdp_iter();
    let leaf_lo = 0;
    let leaf_hi = 0;
    let leaf_sp: KvmMmuPage | null = null;
    let leaf_idx = 0;
    let leaf_level = 0;
    for (tdp_iter_start(it, kvm.pool, root, 1, gfn, 0); it.valid && it.gfn < gfn + 1; tdp_iter_next(it)) {
      leaf_lo = it.old_lo;
      leaf_hi = it.old_hi;
      leaf_sp = it.sp;
      leaf_idx = it.index;
      leaf_level = it.level;
    }
    const mmio = leaf_sp !== null && (leaf_lo & 0x800) === 0 && is_mmio_spte(m, leaf_lo, leaf_hi, kvm.arch.shadow_mmio_value);
    let present = false;
    let allowed = false;
    let perms = 0;
    if (leaf_sp !== null && (leaf_lo & 0x800) !== 0) {
      if (isEpt) {
        perms = leaf_lo & 7;
        present = perms !== 0;
        allowed = access === 'read' ? (perms & 1) !== 0 : access === 'write' ? (perms & 2) !== 0 : (perms & 4) !== 0;
      } else {
        present = (leaf_lo & 1) !== 0;
        const user = (leaf_lo & 4) !== 0;
        allowed = present && user && (access === 'read' || (access === 'write' ? (leaf_lo & 2) !== 0 : (leaf_hi & 0x8000_0000) === 0));
      }
    }
    if (allowed && snp) {
      // After the NPT walk the CPU checks the RMP entry of the host page reached (APM vol. 2, 15.36.10).
      const pfn = spte_pfn(leaf_lo, leaf_hi) + (gfn % 512 ** (leaf_level - 1));
      const chk = snp_check_guest_access(kvm.private_mem, gpa, pfn, leaf_level, enc, access === 'write');
      if (chk !== null && chk.result === 'vc') return { exit: 'vc', info_lo: 0, info_hi: 0 };
      if (chk !== null && chk.result === 'npf') {
        const lo = (chk.err_lo | (access === 'exec' ? PFERR_FETCH_MASK : 0)) >>> 0;
        const ret = npf_interception(vcpu, gpa, lo, chk.err_hi);
        return { exit: 'npf', info_lo: lo, info_hi: chk.err_hi, ret, ret_pf: vcpu.last_ret_pf, outcome: vcpu.last_outcome };
      }
    }
    if (allowed) {
      // The CPU sets Accessed (and Dirty on a write) in entries that use A/D bits.
      if (!(priv && kvm.kvm_has_mirrored_tdp()) && spte_ad_enabled(leaf_lo, leaf_hi) && m.kvm_ad_enabled) {
        const j = leaf_idx << 1;
        let lo = leaf_sp!.spt[j]! | m.shadow_accessed_mask.lo;
        const was_dirty = (lo & m.shadow_dirty_mask.lo) !== 0;
        if (access === 'write') lo |= m.shadow_dirty_mask.lo;
        leaf_sp!.spt[j] = lo >>> 0;
        // PML logs the GPA when the CPU sets D; KVM moves it to the dirty bitmap.
        if (access === 'write' && !was_dirty && kvm.arch.cpu_dirty_log_size !== 0 && leaf_level === 1) {
          const g = kvm.kvm_is_gfn_alias(gfn) ? gfn - kvm.arch.gfn_direct_bits : gfn;
          const slot = kvm.kvm_memslots(vcpu.smm ? 1 : 0).lookup(g);
          if (slot) mark_page_dirty_in_slot(kvm, slot, g);
        }
      }
      return { exit: 'none', info_lo: 0, info_hi: 0 };
    }
    if (mmio && kvm.is_tdx) return { exit: 've', info_lo: 0, info_hi: 0 };
    let ret: number;
    let info_lo: number;
    let info_hi = 0;
    let exit: AccessResult['exit'];
    if (isEpt) {
      if (mmio) {
        exit = 'ept_misconfig';
        info_lo = 0;
        ret = handle_ept_misconfig(vcpu, gpa);
      } else {
        exit = 'ept_violation';
        info_lo = (access === 'read' ? EPT_VIOLATION_ACC_READ : access === 'write' ? EPT_VIOLATION_ACC_WRITE : EPT_VIOLATION_ACC_INSTR) |
          (present ? perms << 3 : 0) | EPT_VIOLATION_GVA_IS_VALID | EPT_VIOLATION_GVA_TRANSLATED;
        ret = handle_ept_violation(vcpu, gpa, info_lo);
      }
    } else {
      exit = 'npf';
      info_lo = PFERR_USER_MASK | (access === 'write' ? PFERR_WRITE_MASK : 0) | (access === 'exec' ? PFERR_FETCH_MASK : 0);
      if (present || mmio) info_lo |= PFERR_PRESENT_MASK;
      if (mmio) info_lo |= PFERR_RSVD_MASK;
      info_hi = PFERR_GUEST_FINAL_MASK_HI | (enc ? PFERR_GUEST_ENC_MASK_HI : 0);
      ret = npf_interception(vcpu, gpa, info_lo, info_hi);
    }
    return { exit, info_lo, info_hi, ret, ret_pf: vcpu.last_ret_pf, outcome: vcpu.last_outcome };
  }

  /** Repeat the access while KVM resumes the guest with the fault still pending (RETRY), up to `max`. */
  touch(vcpu_id: number, gpa: number, access: Access, max = 8, c_bit = false): AccessResult[] {
    const res: AccessResult[] = [];
    for (let i = 0; i < max; i++) {
      const r = this.access(vcpu_id, gpa, access, c_bit);
      res.push(r);
      if (r.exit === 'none' || r.exit === 've' || r.exit === 'vc' || r.ret !== 1) break;
    }
    return res;
  }

  /** Call kvm_mmu_page_fault directly with an error code (no vendor exit, no kvm_page_fault event). */
  fault(vcpu_id: number, gpa: number, err_lo: number, err_hi = 0): number {
    const vcpu = this.vcpu(vcpu_id);
    this.enter(vcpu);
    return kvm_mmu_page_fault(vcpu, gpa, err_lo, err_hi);
  }

  /**
   * KVM_PRE_FAULT_MEMORY for [gpa, gpa + size): maps page by page like the ioctl's loop. Returns the bytes
   * pre-faulted, or -errno if the first page failed.
   */
  pre_fault_memory(vcpu_id: number, gpa: number, size: number): number {
    const vcpu = this.vcpu(vcpu_id);
    let done = 0;
    while (done < size) {
      const r = kvm_arch_vcpu_pre_fault_memory(vcpu, gpa + done, size - done);
      if (r < 0) return done === 0 ? r : done;
      done += r;
    }
    return done;
  }

  /** The roots on kvm->arch.tdp_mmu_roots, head first. */
  roots(): RootView[] {
    return this.kvm.arch.tdp_mmu_roots.map((r) => ({
      hpa: r.spt_pfn * 4096, role: r.role, role_decoded: decodeRole(r.role), as_id: kvm_mmu_page_as_id(r),
      mirror: (r.role & 0x8_0000) !== 0, invalid: (r.role & 0x800) !== 0, root_count: r.root_count,
    }));
  }

  /** The vCPU's current (or mirror) root. */
  current_root(vcpu_id = 0, mirror = false): KvmMmuPage | null {
    const v = this.vcpu(vcpu_id);
    return mirror ? v.mmu.mirror_root : v.mmu.root;
  }

  /**
   * The SPTE at `level` on the path to `gfn` in the given root (default: vCPU 0's current root), or
   * undefined if the walk stops above that level. `gfn` is the full gfn (with the TDX shared bit for
   * shared aliases).
   */
  read_spte(gfn: number, level: number, root?: KvmMmuPage | null): SpteView | undefined {
    const r = root ?? this.vcpus[0]?.mmu.root;
    if (!r) return undefined;
    const it = new tdp_iter();
    for (tdp_iter_start(it, this.kvm.pool, r, level, gfn, 0); it.valid && it.gfn < gfn + 1; tdp_iter_next(it)) {
      if (it.level === level) return { level, gfn: it.gfn, spte: halvesToValue(it.old_lo, it.old_hi), lo: it.old_lo, hi: it.old_hi, sptep: it.sptep_pa(), pfn: spte_pfn(it.old_lo, it.old_hi) };
    }
    return undefined;
  }

  /** Every SPTE of a root that is not SHADOW_NONPRESENT_VALUE, in pre-order. */
  *iterate(root: KvmMmuPage): Generator<SpteView> {
    for (const e of for_each_tdp_spte(this.kvm, root)) {
      yield { level: e.level, gfn: e.gfn, spte: halvesToValue(e.lo, e.hi), lo: e.lo, hi: e.hi, sptep: e.sp.sptep_pa(e.index), pfn: spte_pfn(e.lo, e.hi) };
    }
  }

  /** Leaf SPTEs of a root as gfn -> level (for tests and views). */
  leaves(root: KvmMmuPage): Map<number, number> {
    const out = new Map<number, number>();
    for (const e of for_each_tdp_spte(this.kvm, root)) if ((e.lo & 0x800) !== 0 && (e.level === 1 || (e.lo & 0x80) !== 0)) out.set(e.gfn, e.level);
    return out;
  }

  stats(): { vm: Record<string, number>; vcpus: Array<Record<string, number>> } {
    return { vm: this.kvm.stat.snapshot(), vcpus: this.vcpus.map((v) => v.stat.snapshot()) };
  }

  zap_gfn_range(start: number, end: number): void {
    kvm_zap_gfn_range(this.kvm, start, end);
  }

  zap_all_fast(): void {
    kvm_mmu_zap_all_fast(this.kvm);
  }

  /** An mmu_notifier invalidation of [hva_start, hva_end) with the host change applied in between. */
  notifier_invalidate(hva_start: number, hva_end: number, host_change?: (slot: KvmMemorySlot, first_index: number, last_index: number) => void): void {
    kvm_mmu_notifier_invalidate_range_start(this.kvm, hva_start, hva_end);
    if (host_change) {
      for (const ms of this.kvm.memslots) {
        for (const s of ms.slots) {
          const a = Math.max(hva_start, s.userspace_addr);
          const b = Math.min(hva_end, s.userspace_addr + s.npages * 4096);
          if (a < b) host_change(s, Math.floor((a - s.userspace_addr) / 4096), Math.ceil((b - s.userspace_addr) / 4096) - 1);
        }
      }
    }
    kvm_mmu_notifier_invalidate_range_end(this.kvm, hva_start, hva_end);
  }

  /** The host migrates the page at `hva` to `new_pfn` (NUMA balancing, compaction). */
  host_migrate_page(hva: number, new_pfn: number): void {
    this.notifier_invalidate(hva, hva + 4096, (slot, i) => {
      slot.host_migrated.set(i, new_pfn);
      slot.host_split_2m.add(Math.floor(i / 512));
    });
  }

  /** The host splits the THP around `hva` into 4K pages (same pfns). */
  host_split_thp(hva: number): void {
    const start = hva - (hva % 0x20_0000);
    this.notifier_invalidate(start, start + 0x20_0000, (slot, i) => slot.host_split_2m.add(Math.floor(i / 512)));
  }

  notifier_age(hva_start: number, hva_end: number, kind: 'clear_flush_young' | 'clear_young' | 'test_young'): boolean {
    return kvm_mmu_notifier_age(this.kvm, hva_start, hva_end, kind);
  }

  /** Toggle KVM_MEM_LOG_DIRTY_PAGES on an existing slot (a FLAGS_ONLY KVM_SET_USER_MEMORY_REGION2). */
  set_dirty_logging(slotArg: number, on: boolean): number {
    const as_id = slotArg >>> 16;
    if (as_id >= this.kvm.nr_as_ids) return -22;
    const s = this.kvm.kvm_memslots(as_id).byId(slotArg & 0xffff);
    if (!s) return -22;
    return this.kvm.kvm_set_memory_region({
      slot: slotArg, flags: on ? s.flags | KVM_MEM_LOG_DIRTY_PAGES : s.flags & ~KVM_MEM_LOG_DIRTY_PAGES,
      guest_phys_addr: s.base_gfn * 4096, memory_size: s.npages * 4096, userspace_addr: s.userspace_addr,
    });
  }

  enable_manual_dirty_log_protect(flags: number): number {
    return kvm_enable_manual_dirty_log_protect(this.kvm, flags);
  }

  /** KVM_GET_DIRTY_LOG: the bitmap as 32-bit words, or -errno. */
  get_dirty_log(slotArg: number): Uint32Array | number {
    const s = (slotArg >>> 16) < this.kvm.nr_as_ids ? this.kvm.kvm_memslots(slotArg >>> 16).byId(slotArg & 0xffff) : undefined;
    const out = new Uint32Array(kvm_dirty_bitmap_words32(s ? s.npages : 0));
    const r = kvm_get_dirty_log_protect(this.kvm, slotArg, out);
    return r < 0 ? r : out;
  }

  /** Dirty gfns (slot-relative) of a bitmap returned by get_dirty_log. */
  static dirty_pages(bm: Uint32Array, npages: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < npages; i++) if (dirty_bitmap_test(bm, i)) out.push(i);
    return out;
  }

  clear_dirty_log(slotArg: number, first_page: number, num_pages: number, bitmap: Uint32Array): number {
    return kvm_clear_dirty_log_protect(this.kvm, slotArg, first_page, num_pages, bitmap);
  }

  /** KVM_SET_CPUID2 with a guest MAXPHYADDR (0x80000008 EAX[7:0]); 0 or -errno. */
  set_guest_maxphyaddr(vcpu_id: number, bits: number): number {
    return kvm_set_cpuid_maxphyaddr(this.vcpu(vcpu_id), bits);
  }

  smm(vcpu_id: number, enter: boolean): void {
    kvm_smm_changed(this.vcpu(vcpu_id), enter);
  }

  set_nx_huge_pages(mode: NxHugePagesMode): number {
    const r = set_nx_huge_pages(this.kvm, mode);
    if (r === 0) this.nx_worker.wake();
    return r;
  }

  nx_recovery_tick(now_ms: number): number {
    return this.nx_worker.tick(now_ms);
  }

  recover_nx_huge_pages(): number {
    return kvm_recover_nx_huge_pages(this.kvm);
  }

  /** VM teardown: vCPUs drop their roots, TDX releases the HKID, then every root is invalidated and zapped. */
  destroy(): void {
    if (this.destroyed) return;
    for (const v of this.vcpus) kvm_mmu_unload(v);
    if (this.kvm.is_tdx) tdx_mmu_release_hkid(this.kvm);
    kvm_tdp_mmu_invalidate_roots(this.kvm, KVM_VALID_ROOTS);
    kvm_tdp_mmu_zap_invalidated_roots(this.kvm, false);
    this.destroyed = true;
  }
}

export function create_x86_vm(opts: X86VmOptions = {}): X86Vm {
  return new X86Vm(opts);
}

export { KVM_MEMORY_ATTRIBUTE_PRIVATE as PRIVATE };
