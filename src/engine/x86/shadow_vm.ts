/**
 * Facade for a shadow-paging VM (TDP off): guest-physical contents in GuestMemory, reachable through
 * memslots that can be created, moved and deleted; vCPUs sharing the shadow pages, each with its own
 * CR0/CR4/EFER/CR3 and roots; faults by GVA, guest writes (emulated when they hit a shadowed guest
 * table), INVLPG, CR3 loads, zaps, and read-outs of SPTEs, shadow pages, roots and stats. Calls act on
 * the current vCPU (useVcpu). Used by the scenario binding, the bench and the tests.
 */
import { GuestMemory } from '../mem/guest_memory';
import type { KvmMmuPage } from './mmu_page';
import { Kvm, type KvmCreateOptions } from './vm';
import { KvmVcpu } from './vcpu';
import { kvm_dirty_bitmap_words32, type HostBacking, type KvmMemorySlot } from './memslot';
import { kvm_get_dirty_log_protect } from './dirty_log';
import { kvm_mmu_reset_all_pte_masks, is_mmio_spte, get_mmio_spte_gfn, spte_to_pfn, SPTE_MMU_PRESENT_MASK, PT_PAGE_SIZE_MASK } from './spte';
import { kvm_calc_cpu_role, shadowMmuRootRole, shadowNptRoles, ROLE_DIRECT, decodeRole, X86_CR0_PG, X86_CR0_WP, X86_CR4_PAE, X86_CR4_PSE, X86_CR4_SMEP, X86_CR4_SMAP, X86_CR4_PKE, X86_CR4_LA57, EFER_LMA, EFER_NX, ROLE_LEVEL_MASK, type KvmMmuPageRole } from './role';
import { createGuestMmu, MemoryGuestPageTables, GuestWalker, type GuestCpuModel } from './paging_tmpl';
import { PFERR_PRESENT_MASK, PFERR_RSVD_MASK, PFERR_WRITE_MASK, PFERR_USER_MASK, PFERR_FETCH_MASK } from './pferr';
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS } from './ret_pf';
import {
  ShadowMmu,
  ShadowVcpu,
  ShadowWalkIterator,
  shadow_walk_init,
  shadow_walk_okay,
  shadow_walk_next,
  kvm_mmu_calculate_default_mmu_pages,
  kvm_mmu_zap_all,
  kvm_mmu_zap_all_fast,
  kvm_mmu_zap_memslot,
  kvm_mmu_write_protect_pt_masked,
  kvm_unmap_gfn_range,
  kvm_mmu_change_mmu_pages,
  ROOT_INVALID,
  ROOT_SP,
  ROOT_PAE,
  ROOT_DUMMY,
  ROOT_PML4,
  ROOT_PML5,
  ROLE_PAE_ROOT,
  type SplitAccessVariant,
  type PaeRootVariant,
} from './shadow_mmu';
import { kvm_mmu_free_roots, kvm_mmu_reload, kvm_mmu_pdptrs_changed, KVM_MMU_ROOTS_ALL, pae_root_entries, pae_root_pfn } from './shadow_roots';
import { kvm_set_cr3, kvm_post_set_cr4, kvm_handle_invpcid, shadow_service_requests, X86_CR3_PCID_NOFLUSH_HI, KVM_REQ_TLB_FLUSH_GUEST, type SetCr3Env } from './shadow_cr3';
import { shadow_mmu_slot_apply_flags } from './shadow_split';
import { SlotGuestPageTables, shadow_commit_budget } from './shadow_slots';
import { kvm_rmap_age_gfn_range } from './shadow_age';
import { kvm_mmu_track_write, kvm_mmu_invlpg, shadow_paging_init_hooks, shadow_tdp_init_hooks } from './shadow_paging';
import { kvm_mmu_page_fault, kvm_init_mmu, mark_page_dirty_in_slot } from './mmu';
import { wire_make_spte_args } from './tdp_mmu';

export interface ShadowVmOptions {
  vendor?: 'vmx' | 'svm';
  /** Size in bytes of the first memslot. Default 1 GiB. */
  mem_bytes?: number;
  /** Id and GPA of the first memslot (default slot 0 at GPA 0); more come from setMemoryRegion. */
  first_slot?: { id: number; gpa: number; flags?: number; hva?: number };
  host_backing?: HostBacking;
  cr0?: number;
  cr4?: number;
  efer?: number;
  cr3?: number;
  cpu?: Partial<GuestCpuModel>;
  split_access?: SplitAccessVariant;
  pae_root?: PaeRootVariant;
  /**
   * 3 (default): shadow paging. 4 or 5: shadow NPT (L1's NPT tables shadowed at the host's TDP level):
   * guest-mode roles, the pml4/pml5 special roots over a 32-bit/PAE L1, and a passthrough 5-level root
   * over a 4-level L1.
   */
  host_root_level?: 3 | 4 | 5;
  /**
   * TDP enabled with the TDP MMU off (kvm.tdp_mmu=0): the legacy MMU builds direct shadow pages under
   * a TDP-role root (mmu_alloc_direct_roots), and faults are guest physical (kvm_tdp_page_fault →
   * direct_page_fault → direct_map). Default false: shadow paging (TDP off).
   */
  tdp?: boolean;
  /** Eager splitting also covers L1 shadow pages (model knob; upstream splits nested pages only). */
  eager_split_l1?: boolean;
  /** Number of vCPUs (default 1), each starting with the registers above. */
  vcpus?: number;
  /** KVM_SET_NR_MMU_PAGES (default: none, the budget follows the memslots). */
  n_max_mmu_pages?: number;
  kvm?: KvmCreateOptions;
}

export interface ShadowSpteInfo {
  level: number;
  lo: number;
  hi: number;
  sptep: number;
  sp: KvmMmuPage | null;
}

export interface ShadowPageInfo {
  gfn: number;
  role: number;
  decoded: KvmMmuPageRole & { pae_root: boolean };
  root_count: number;
  unsync: boolean;
  unsync_children: number;
  spt_pfn: number;
  parent_count: number;
}

/**
 * One vCPU of the facade: the KVM vCPU, its shadow-MMU half (roots, prev_roots, requests), the guest's
 * control registers and the CR3/PDPTRs its walks start from.
 */
export class ShadowVmVcpu {
  cr0 = 0;
  cr4 = 0;
  efer = 0;
  cr3 = 0;
  /** kvm_calc_cpu_role of the last setRegs: a change resets the MMU context. */
  guest_role_lo = -1;
  guest_role_hi = -1;
  constructor(
    readonly vcpu: KvmVcpu,
    readonly sv: ShadowVcpu,
    readonly src: MemoryGuestPageTables,
  ) {}
}

export class ShadowVm {
  readonly kvm: Kvm;
  readonly sk: ShadowMmu;
  readonly mem: GuestMemory;
  /** Every vCPU; the calls below act on the current one (useVcpu). */
  readonly vcpus: ShadowVmVcpu[] = [];
  private cur!: ShadowVmVcpu;
  /** Id of the first memslot: the default of the slot-taking calls. */
  readonly slot_id: number;
  readonly cpu: GuestCpuModel;
  readonly host_root_level: number;
  /** TDP on with tdp_mmu=0: direct roots on shadow pages, faults by GPA (EPT violation / #NPF). */
  readonly tdp: boolean;

  get vcpu(): KvmVcpu {
    return this.cur.vcpu;
  }
  get sv(): ShadowVcpu {
    return this.cur.sv;
  }
  get src(): MemoryGuestPageTables {
    return this.cur.src;
  }
  get cr0(): number {
    return this.cur.cr0;
  }
  set cr0(v: number) {
    this.cur.cr0 = v;
  }
  get cr4(): number {
    return this.cur.cr4;
  }
  set cr4(v: number) {
    this.cur.cr4 = v;
  }
  get efer(): number {
    return this.cur.efer;
  }
  set efer(v: number) {
    this.cur.efer = v;
  }
  get cr3(): number {
    return this.cur.cr3;
  }
  set cr3(v: number) {
    this.cur.cr3 = v;
  }
  /** Emulated writes performed by guestWrite (write-protected guest tables). */
  emulated_writes = 0;

  constructor(o: ShadowVmOptions = {}) {
    const vendor = o.vendor ?? 'vmx';
    this.host_root_level = o.host_root_level ?? 3;
    this.tdp = o.tdp ?? false;
    this.kvm = new Kvm({ ...o.kvm, vendor, params: { ...o.kvm?.params, ...(this.tdp ? { tdp_mmu: false } : {}) } });
    if (this.tdp) {
      // TDP keeps the EPT/NPT SPTE format the VM was created with, and EPT's memory type bits.
      wire_make_spte_args(this.kvm);
    } else {
      // With TDP off the host uses the legacy (non-EPT) SPTE format on both vendors.
      kvm_mmu_reset_all_pte_masks(this.kvm.masks, { maxphyaddr: this.kvm.vendor.host_maxphyaddr, mmio_caching: this.kvm.params.mmio_caching });
      this.kvm.masks.is_ept = false;
      this.kvm.arch.shadow_mmio_value = { lo: this.kvm.masks.shadow_mmio_value.lo, hi: this.kvm.masks.shadow_mmio_value.hi };
      this.kvm.arch.cpu_dirty_log_size = 0;
    }
    const mem_bytes = o.mem_bytes ?? 1 << 30;
    this.sk = new ShadowMmu(this.kvm, { split_access: o.split_access, pae_root: o.pae_root, n_max_mmu_pages: o.n_max_mmu_pages ?? kvm_mmu_calculate_default_mmu_pages(0) });
    const sk = this.sk;
    if (o.n_max_mmu_pages !== undefined) sk.n_requested_mmu_pages = o.n_max_mmu_pages;
    if (this.tdp) sk.make_spte_args.get_mt_mask = this.kvm.make_spte_args.get_mt_mask;
    sk.split_non_nested = o.eager_split_l1 ?? false;
    this.kvm.mmu_ops = {
      flush_shadow_memslot: (_kvm, slot) => {
        if (this.kvm.quirk_slot_zap_all) kvm_mmu_zap_all_fast(sk);
        else kvm_mmu_zap_memslot(sk, slot);
      },
      commit_memory_region: (_kvm, old, neu, change, old_flags) => {
        shadow_commit_budget(sk, change);
        shadow_mmu_slot_apply_flags(sk, old, neu, change, old_flags);
      },
      memslots_updated: () => {},
      write_protect_pt_masked: (_kvm, slot, gfn_offset, mask_lo, mask_hi) => kvm_mmu_write_protect_pt_masked(sk, slot, gfn_offset, mask_lo, mask_hi),
    };
    this.slot_id = o.first_slot?.id ?? 0;
    // Sparse guest-physical contents over the whole address space; only memslots make them reachable.
    this.mem = new GuestMemory();
    const r = this.setMemoryRegion(this.slot_id, o.first_slot?.gpa ?? 0, mem_bytes, o.first_slot?.flags ?? 0, o.host_backing ?? '4k', o.first_slot?.hva);
    if (r !== 0) throw new RangeError(`first memslot rejected: ${r}`);
    this.cpu = { maxphyaddr: 46, gbpages: true, pse36: true, amd: vendor === 'svm', ...o.cpu };
    for (let i = 0; i < (o.vcpus ?? 1); i++) {
      this.useVcpu(this.addVcpu());
      this.setRegs(o.cr0 ?? 0x8001_0011, o.cr4 ?? 0x20, o.efer ?? 0x500 | 0x800, o.cr3 ?? 0);
    }
    this.useVcpu(0);
  }

  /** KVM_CREATE_VCPU: a vCPU with no MMU context yet (its first setRegs builds it). Returns its index. */
  private addVcpu(): number {
    const id = this.vcpus.length;
    const vcpu = new KvmVcpu(this.kvm, id);
    this.kvm.vcpus.push(vcpu);
    const sv = new ShadowVcpu(this.sk, vcpu);
    const src = new SlotGuestPageTables(this.mem, (gfn) => this.kvm.kvm_memslots(vcpu.smm ? 1 : 0).lookup(gfn));
    // KVM's own walk sets A/D in guest tables only with TDP off; it logs the table page it wrote
    // (FNAME(update_accessed_dirty_bits) -> kvm_vcpu_mark_page_dirty).
    if (!this.tdp) src.mark_page_dirty = (gfn) => mark_page_dirty_in_slot(this.kvm, this.kvm.kvm_memslots(vcpu.smm ? 1 : 0).lookup(gfn) ?? null, gfn);
    sv.src = src;
    sv.walker = new GuestWalker();
    if (this.tdp) {
      // kvm_init_mmu() for TDP: the root role comes from the TDP level and A/D support, not the guest.
      kvm_init_mmu(vcpu);
      sv.root_role = vcpu.mmu.root_role;
      sv.cpu_role_base = sv.root_role;
      shadow_tdp_init_hooks(sv);
    }
    this.vcpus.push(new ShadowVmVcpu(vcpu, sv, src));
    return id;
  }

  /** Make vCPU `i` the one the calls act on (the vCPU that runs the next guest statement). */
  useVcpu(i: number): void {
    const v = this.vcpus[i];
    if (v === undefined) throw new RangeError(`no vCPU ${i}`);
    this.cur = v;
  }

  /**
   * Set CR0/CR4/EFER/CR3 (kvm_init_mmu → kvm_init_shadow_mmu). A different CPU role resets the MMU
   * context (all roots freed); the same role with another CR3 is a CR3 load (`noflush`: bit 63 set),
   * which returns false when it raises #GP.
   */
  setRegs(cr0: number, cr4: number, efer: number, cr3: number, noflush = false): boolean {
    const role = kvm_calc_cpu_role({ cr0, cr4, efer, smm: this.vcpu.smm });
    const sv = this.sv;
    const c = this.cur;
    if (this.tdp) {
      // With TDP, CR3 loads are not intercepted; a paging-mode change resets the MMU context
      // (kvm_mmu_unload), and the next entry finds the same TDP-role root in the page hash.
      if (role.lo !== c.guest_role_lo || role.hi !== c.guest_role_hi) kvm_mmu_free_roots(sv, KVM_MMU_ROOTS_ALL);
      c.guest_role_lo = role.lo;
      c.guest_role_hi = role.hi;
      this.cr0 = cr0 >>> 0;
      this.cr4 = cr4 >>> 0;
      this.efer = efer >>> 0;
      this.cr3 = cr3;
      return true;
    }
    const changed = role.lo !== c.guest_role_lo || role.hi !== c.guest_role_hi;
    c.guest_role_lo = role.lo;
    c.guest_role_hi = role.hi;
    const old_cr4 = this.cr4;
    this.cr0 = cr0 >>> 0;
    this.cr4 = cr4 >>> 0;
    this.efer = efer >>> 0;
    if (changed) {
      kvm_mmu_free_roots(sv, KVM_MMU_ROOTS_ALL);
      sv.cpu_role_base = role.lo;
      sv.cpu_role_ext = role.hi;
      sv.root_role = shadowMmuRootRole(role.lo);
      const hl = this.host_root_level;
      if (hl > 3 && (role.lo & ROLE_DIRECT) === 0) {
        // Shadow NPT (kvm_init_shadow_npt_mmu): guest-mode roles at the host's TDP level; a 5-level host
        // root over a 4-level L1 table is a passthrough root.
        const npt = shadowNptRoles(cr0, cr4, efer, this.vcpu.smm, hl);
        sv.cpu_role_base = npt.cpu_role.lo;
        sv.cpu_role_ext = npt.cpu_role.hi;
        sv.root_role = npt.root_role;
      }
      sv.guest = createGuestMmu(
        {
          cr0_pg: (cr0 & X86_CR0_PG) !== 0, cr0_wp: (cr0 & X86_CR0_WP) !== 0, cr4_pae: (cr4 & X86_CR4_PAE) !== 0, cr4_pse: (cr4 & X86_CR4_PSE) !== 0,
          cr4_smep: (cr4 & X86_CR4_SMEP) !== 0, cr4_smap: (cr4 & X86_CR4_SMAP) !== 0, cr4_pke: (cr4 & X86_CR4_PKE) !== 0, cr4_la57: (cr4 & X86_CR4_LA57) !== 0,
          efer_lma: (efer & EFER_LMA) !== 0, efer_nx: (efer & EFER_NX) !== 0,
        },
        this.cpu,
      );
      shadow_paging_init_hooks(sv);
      kvm_post_set_cr4(sv, old_cr4, this.cr4);
      this.cr3 = cr3;
      this.src.setCr3(cr3 % 0x1_0000_0000, Math.floor(cr3 / 0x1_0000_0000));
      if (this.isPae()) this.src.load_pdptrs(this.cpu.maxphyaddr);
      return true;
    }
    if (old_cr4 !== this.cr4) kvm_post_set_cr4(sv, old_cr4, this.cr4);
    return this.loadCr3(cr3, noflush);
  }

  private isPae(): boolean {
    return (this.sv.cpu_role_base & ROLE_LEVEL_MASK) === 3;
  }

  private readonly old_pdptrs = new Uint32Array(8);

  private readonly cr3_env: SetCr3Env = {
    maxphyaddr: 0,
    pae: false,
    load_pdptrs: (cr3: number): boolean => {
      const src = this.src;
      const olo = src.cr3Lo;
      const ohi = src.cr3Hi;
      this.old_pdptrs.set(src.pdptrs);
      src.setCr3(cr3 % 0x1_0000_0000, Math.floor(cr3 / 0x1_0000_0000));
      if (!src.load_pdptrs(this.cpu.maxphyaddr)) {
        src.setCr3(olo, ohi);
        return false;
      }
      for (let i = 0; i < 8; i++) {
        if (src.pdptrs[i] !== this.old_pdptrs[i]) {
          kvm_mmu_pdptrs_changed(this.sv, cr3 === this.cr3);
          break;
        }
      }
      return true;
    },
  };

  /**
   * MOV to CR3 with a 64-bit operand (kvm_set_cr3): with CR4.PCIDE=1, bit 63 of `hi` skips the flush
   * and bits 11:0 are the PCID. Then the vCPU re-enters, servicing the requests the load raised. False
   * when the guest gets #GP.
   */
  movCr3(lo: number, hi: number): boolean {
    const env = this.cr3_env;
    env.maxphyaddr = this.cpu.maxphyaddr;
    env.pae = this.isPae();
    if (kvm_set_cr3(this.sv, this, env, lo, hi) !== 0) return false;
    this.src.setCr3(this.cr3 % 0x1_0000_0000, Math.floor(this.cr3 / 0x1_0000_0000));
    shadow_service_requests(this.sv);
    return true;
  }

  /** MOV to CR3 of `cr3` (< 2^52); `noflush` sets bit 63, which only means something with CR4.PCIDE=1. */
  loadCr3(cr3: number, noflush = false): boolean {
    return this.movCr3(cr3 % 0x1_0000_0000, Math.floor(cr3 / 0x1_0000_0000) | (noflush ? X86_CR3_PCID_NOFLUSH_HI : 0));
  }

  /**
   * INVPCID with descriptor {pcid, gla} (pcid < 2^32 here; larger values are #GP anyway). Returns
   * false when the guest gets #GP; otherwise the vCPU re-enters and services the requests raised.
   */
  invpcid(type: number, pcid: number, gla: number): boolean {
    return this.invpcidDesc(type, pcid >>> 0, Math.floor(pcid / 0x1_0000_0000), gla % 0x1_0000_0000, Math.floor(gla / 0x1_0000_0000));
  }

  /** INVPCID with the descriptor's two quadwords as 32-bit halves (any 64-bit value, canonical or not). */
  invpcidDesc(type: number, pcid_lo: number, pcid_hi: number, gla_lo: number, gla_hi: number): boolean {
    const r = kvm_handle_invpcid(this.sv, this, type, pcid_lo >>> 0, pcid_hi >>> 0, gla_lo >>> 0, gla_hi >>> 0, (this.cr4 & X86_CR4_LA57) !== 0);
    if (r === 'gp') return false;
    shadow_service_requests(this.sv);
    return true;
  }

  /** vcpu_enter_guest's kvm_mmu_reload. */
  reload(): number {
    shadow_service_requests(this.sv);
    return kvm_mmu_reload(this.sv);
  }

  /**
   * A guest #PF exit at `gva` with `error_code` (PFERR_* bits): KVM_RUN's root reload, then the intercepted
   * #PF into mmu.ts's kvm_mmu_page_fault (the one fault entry). Returns RET_PF_* (or -errno).
   */
  fault(gva: number, error_code: number): number {
    const sv = this.sv;
    sv.injected = null;
    shadow_service_requests(sv);
    if (kvm_mmu_reload(sv) !== 0) return RET_PF_RETRY;
    const r = kvm_mmu_page_fault(this.vcpu, gva, error_code, 0);
    return r < 0 ? r : this.vcpu.last_ret_pf;
  }

  /**
   * The hardware view: does the current shadow translation allow this access? Returns the #PF error
   * code the CPU would report, or -1 when the access goes through.
   */
  hwAccess(gva: number, write: boolean, user: boolean, fetch: boolean): number {
    const info = this.translate(gva);
    const ec = (write ? PFERR_WRITE_MASK : 0) | (user ? PFERR_USER_MASK : 0) | (fetch ? PFERR_FETCH_MASK : 0);
    if (info === null) {
      // An MMIO SPTE has reserved bits set: a #PF with P|RSVD, or an EPT misconfiguration (RSVD only).
      if (this.mmioGpa(gva) < 0) return ec;
      return this.kvm.masks.is_ept ? PFERR_RSVD_MASK : ec | PFERR_PRESENT_MASK | PFERR_RSVD_MASK;
    }
    const { lo, hi } = info;
    const m = this.kvm.masks;
    // Bit 0 is P in the x86 format and R in EPT: an access-tracked EPT SPTE is not readable.
    if ((lo & 1) === 0) return ec;
    const um = m.shadow_user_mask;
    const denied_user = user && (um.lo | um.hi) !== 0 && (lo & um.lo) === 0 && (hi & um.hi) === 0;
    const xm = m.shadow_x_mask;
    const denied_exec = fetch && ((xm.lo | xm.hi) !== 0 ? (lo & xm.lo) === 0 && (hi & xm.hi) === 0 : (hi & m.shadow_nx_mask.hi) !== 0);
    if ((write && (lo & 2) === 0) || denied_user || denied_exec) return ec | PFERR_PRESENT_MASK;
    return -1;
  }

  /**
   * Guest access through the MMU: fault until the shadow translation allows it (at most 8 tries).
   * Returns the number of faults taken, or -1 when #PF was injected into the guest.
   */
  access(gva: number, write = false, user = false, fetch = false): number {
    let faults = 0;
    for (let i = 0; i < 8; i++) {
      this.reload();
      const ec = this.hwAccess(gva, write, user, fetch);
      if (ec < 0) return faults;
      faults++;
      const r = this.fault(gva, ec);
      if (this.sv.injected !== null) return -1;
      if (r === RET_PF_EMULATE) return faults;
    }
    return faults;
  }

  /**
   * A guest write of `bytes` (4 or 8) at `gva`. Faults first; if the fault ends in emulation (a
   * write-protected guest page table), the write lands in guest memory and kvm_mmu_track_write runs.
   */
  guestWrite(gva: number, lo: number, hi = 0, bytes: 4 | 8 = 8): 'direct' | 'emulated' | 'pf' | 'mmio' {
    for (let i = 0; i < 8; i++) {
      this.reload();
      const ec = this.hwAccess(gva, true, false, false);
      if (ec < 0) break;
      const r = this.fault(gva, ec);
      if (this.sv.injected !== null) return 'pf';
      if (r === RET_PF_EMULATE) {
        const gpa = this.emulatedGpa(gva);
        // A gfn no memslot maps is MMIO: the emulated store exits to userspace (KVM_EXIT_MMIO).
        if (this.kvm.kvm_memslots(this.vcpu.smm ? 1 : 0).lookup(Math.floor(gpa / 4096)) === undefined) return 'mmio';
        this.writeGpa(gpa, lo, hi, bytes);
        this.emulated_writes++;
        kvm_mmu_track_write(this.sv, gpa, bytes);
        return 'emulated';
      }
      if (r !== RET_PF_FIXED && r !== RET_PF_SPURIOUS && i > 4) break;
    }
    this.writeGpa(this.gvaToGpa(gva), lo, hi, bytes);
    return 'direct';
  }

  private writeGpa(gpa: number, lo: number, hi: number, bytes: 4 | 8): void {
    if (bytes === 8) this.mem.write64(gpa, lo, hi);
    else this.mem.write32(gpa, lo);
  }

  /** The GPA the emulator writes: the shadow translation, else (an MMIO SPTE) the fault's guest walk. */
  private emulatedGpa(gva: number): number {
    const gpa = this.gvaToGpa(gva);
    if (gpa >= 0 || this.tdp) return gpa >= 0 ? gpa : gva;
    return this.sv.walker!.gfn * 4096 + (gva % 4096);
  }

  /** Shadow translation of a GVA: gpa via the leaf SPTE's gfn (shadowed translation). */
  gvaToGpa(gva: number): number {
    const leaf = this.translate(gva);
    if (leaf === null || leaf.sp === null) return -1;
    const i = leaf.sptep & 511;
    const sp = leaf.sp;
    const st = sp.shadowed_translation;
    const per = 2 ** (12 + 9 * (leaf.level - 1));
    const base = st !== null ? Math.floor(st[i]! / 4096) : sp.gfn + i * 2 ** (9 * (leaf.level - 1));
    return base * 4096 + (gva % per);
  }

  private readonly probe_it = new ShadowWalkIterator();

  /** Whether a present leaf SPTE maps `gva` (no allocation; for loops and the bench). */
  leafPresent(gva: number): boolean {
    const sv = this.sv;
    const root = sv.root_sp;
    // The common case, a 4/5-level root shadow page, walked inline: this check runs once per guest touch.
    if (sv.root_kind === ROOT_SP && root !== null && sv.cpu_level >= 4) {
      const lo32 = gva >>> 0;
      const hi32 = Math.floor(gva / 0x1_0000_0000) >>> 0;
      const pool = this.kvm.pool;
      const masks = this.kvm.masks;
      let t = root.spt;
      for (let level = root.role & ROLE_LEVEL_MASK; level >= 1; level--) {
        const shift = 3 + 9 * level;
        const i = (shift < 32 ? (lo32 >>> shift) | (hi32 << (32 - shift)) : hi32 >>> (shift - 32)) & 511;
        const lo = t[2 * i]!;
        if ((lo & SPTE_MMU_PRESENT_MASK) === 0) return false;
        if (level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0) return true;
        const child = pool.sp_of_pfn(spte_to_pfn(masks, lo, t[2 * i + 1]!));
        if (child === undefined) return false;
        t = child.spt;
      }
      return false;
    }
    const it = this.probe_it;
    for (shadow_walk_init(it, sv, gva); shadow_walk_okay(it); shadow_walk_next(it, this.sk)) {
      const lo = it.table![2 * it.index]!;
      if ((lo & SPTE_MMU_PRESENT_MASK) === 0) return false;
      if (it.level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0) return true;
    }
    return false;
  }

  /** The shadow walk for `gva`: every SPTE on the path, root first. */
  sptes(gva: number): ShadowSpteInfo[] {
    const out: ShadowSpteInfo[] = [];
    const it = new ShadowWalkIterator();
    for (shadow_walk_init(it, this.sv, gva); shadow_walk_okay(it); shadow_walk_next(it, this.sk)) {
      const t = it.table!;
      out.push({ level: it.level, lo: t[2 * it.index]!, hi: t[2 * it.index + 1]!, sptep: it.sptep, sp: this.sk.sp_of_pfn(it.table_pfn) ?? null });
    }
    return out;
  }

  /** The GPA of the MMIO SPTE on `gva`'s shadow walk (KVM_EXIT_MMIO after emulation), or -1. */
  mmioGpa(gva: number): number {
    const path = this.sptes(gva);
    const last = path[path.length - 1];
    if (last === undefined || !is_mmio_spte(this.kvm.masks, last.lo, last.hi, this.kvm.arch.shadow_mmio_value)) return -1;
    return get_mmio_spte_gfn(this.kvm.masks, last.lo, last.hi) * 4096 + (gva % 4096);
  }

  /** The leaf SPTE mapping `gva`, or null. */
  translate(gva: number): ShadowSpteInfo | null {
    const path = this.sptes(gva);
    const last = path[path.length - 1];
    if (last === undefined) return null;
    if ((last.lo & 0x800) === 0) return null;
    if (last.level !== 1 && (last.lo & 0x80) === 0) return null;
    return last;
  }

  /** Live shadow pages, newest first (the active list). */
  shadowPages(): ShadowPageInfo[] {
    return this.sk.active_list().map((sp) => this.spInfo(sp));
  }

  spInfo(sp: KvmMmuPage): ShadowPageInfo {
    let parents = 0;
    if (sp.parent_ptes > 0) parents = 1;
    else if (sp.parent_ptes < 0) {
      const d = -sp.parent_ptes - 1;
      parents = this.sk.desc_pool.tail_count[d]! + this.sk.desc_pool.spte_count[d]!;
    }
    return {
      gfn: sp.gfn, role: sp.role, decoded: { ...decodeRole(sp.role & ~ROLE_PAE_ROOT), pae_root: (sp.role & ROLE_PAE_ROOT) !== 0 },
      root_count: sp.root_count, unsync: sp.unsync, unsync_children: sp.unsync_children, spt_pfn: sp.spt_pfn, parent_count: parents,
    };
  }

  /** Root state: kind, root role, the root SP or PAE entries and the PDPT page pfn. */
  roots(): { kind: string; root_role: number; cpu_role: number; root: ShadowPageInfo | null; pae: Array<{ lo: number; hi: number }> | null; pae_root_pfn: number; prev: Array<{ pgd: number; root: ShadowPageInfo | null }> } {
    const sv = this.sv;
    const kinds: Record<number, string> = { [ROOT_INVALID]: 'invalid', [ROOT_SP]: 'sp', [ROOT_PAE]: 'pae', [ROOT_PML4]: 'pml4', [ROOT_PML5]: 'pml5', [ROOT_DUMMY]: 'dummy' };
    const pae = sv.root_kind === ROOT_PAE || (sv.root_kind === ROOT_SP && (sv.root_sp!.role & ROLE_PAE_ROOT) !== 0) ? pae_root_entries(sv) : null;
    return {
      kind: kinds[sv.root_kind]!, root_role: sv.root_role, cpu_role: sv.cpu_role_base,
      root: sv.root_sp !== null ? this.spInfo(sv.root_sp) : null, pae, pae_root_pfn: pae_root_pfn(sv),
      prev: sv.prev_roots.map((p) => ({ pgd: p.pgd, root: p.sp !== null ? this.spInfo(p.sp) : null })),
    };
  }

  /** KVM_REQ_TLB_FLUSH_GUEST (e.g. INVPCID all-context): sync the current roots, free unsync prev roots. */
  flushTlbGuest(): void {
    this.sv.requests |= KVM_REQ_TLB_FLUSH_GUEST;
    shadow_service_requests(this.sv);
  }

  invlpg(gva: number): void {
    kvm_mmu_invlpg(this.sv, gva);
  }

  zapAll(): void {
    kvm_mmu_zap_all(this.sk);
  }

  zapAllFast(): void {
    kvm_mmu_zap_all_fast(this.sk);
  }

  /** Memslot `id` of address space 0. */
  slotById(id: number): KvmMemorySlot | undefined {
    return this.kvm.kvm_memslots(0).byId(id);
  }

  /** The first memslot (tests and the dirty-log calls' default); throws once it was deleted. */
  get slot(): KvmMemorySlot {
    const s = this.slotById(this.slot_id);
    if (s === undefined) throw new RangeError(`memslot ${this.slot_id} was deleted`);
    return s;
  }

  private next_hva = 0x7f00_0000_0000;

  /**
   * KVM_SET_USER_MEMORY_REGION2 of address space 0: create (host memory at a fresh HVA), move (the
   * contents follow the host memory), delete (size 0) or re-flag a slot. Returns 0 or -errno.
   */
  setMemoryRegion(id: number, gpa: number, bytes: number, flags: number, host_backing: HostBacking = '4k', hva?: number): number {
    const old = this.slotById(id);
    const userspace_addr = hva ?? old?.userspace_addr ?? this.next_hva;
    const from = old?.base_gfn ?? 0;
    const npages = old?.npages ?? 0;
    const r = this.kvm.kvm_set_memory_region({ slot: id, flags, guest_phys_addr: gpa, memory_size: bytes, userspace_addr, host_backing });
    if (r !== 0) return r;
    if (old === undefined) this.next_hva = Math.max(this.next_hva, userspace_addr + Math.ceil(bytes / 2 ** 30) * 2 ** 30);
    else if (bytes === 0) this.mem.dropPages(from, npages);
    else if (gpa / 4096 !== from) this.mem.movePages(from, gpa / 4096, npages);
    return 0;
  }

  /**
   * An mmu-notifier invalidation of host addresses [start, end) (kvm_mmu_notifier_invalidate_range_start):
   * one begin/end around the unmap of every slot the range overlaps. Whether a flush was needed.
   */
  notifierInvalidateHva(start_hva: number, end_hva: number): boolean {
    let flush = false;
    let begun = false;
    for (const s of this.kvm.kvm_memslots(0).slots) {
      const lo = Math.max(start_hva, s.userspace_addr);
      const hi = Math.min(end_hva, s.userspace_addr + s.npages * 4096);
      if (lo >= hi) continue;
      if (!begun) this.kvm.kvm_mmu_invalidate_begin();
      begun = true;
      const g0 = s.base_gfn + Math.floor((lo - s.userspace_addr) / 4096);
      const g1 = s.base_gfn + Math.ceil((hi - s.userspace_addr) / 4096);
      this.kvm.kvm_mmu_invalidate_range_add(g0, g1);
      flush = kvm_unmap_gfn_range(this.sk, s, g0, g1) || flush;
    }
    if (begun) this.kvm.kvm_mmu_invalidate_end();
    return flush;
  }

  /** An mmu-notifier invalidation of guest frames [start, end) of the first slot. */
  notifierInvalidate(start_gfn: number, end_gfn: number): boolean {
    const s = this.slot;
    const hva = (g: number): number => s.userspace_addr + (g - s.base_gfn) * 4096;
    return this.notifierInvalidateHva(hva(start_gfn), hva(end_gfn));
  }

  /** mmu-notifier clear_young over guest frames [start, end) of the first slot (kvm_age_gfn): whether any was young. */
  ageGfnRange(start_gfn: number, end_gfn: number): boolean {
    return kvm_rmap_age_gfn_range(this.sk, this.slot, start_gfn, end_gfn, false);
  }

  /** mmu-notifier test_young (kvm_test_age_gfn). */
  testAgeGfnRange(start_gfn: number, end_gfn: number): boolean {
    return kvm_rmap_age_gfn_range(this.sk, this.slot, start_gfn, end_gfn, true);
  }

  /** KVM_SET_USER_MEMORY_REGION2 flags change on slot `id` (dirty logging on/off). */
  setDirtyLogging(on: boolean, id = this.slot_id): void {
    const s = this.slotById(id)!;
    this.setMemoryRegion(id, s.base_gfn * 4096, s.npages * 4096, (s.flags & ~1) | (on ? 1 : 0));
  }

  /**
   * KVM_GET_DIRTY_LOG on slot `id`: the bitmap (64-bit longs as 32-bit halves) or -errno. The harvested
   * gfns are write-protected through the rmaps, so their next write faults and is logged again.
   */
  getDirtyLog(id = this.slot_id): Uint32Array | number {
    const s = this.slotById(id);
    if (s === undefined) return -2; // -ENOENT
    const out = new Uint32Array(kvm_dirty_bitmap_words32(s.npages));
    const r = kvm_get_dirty_log_protect(this.kvm, id, out);
    return r < 0 ? r : out;
  }

  setMaxMmuPages(n: number): void {
    kvm_mmu_change_mmu_pages(this.sk, n);
  }

  /** VM statistics, with the per-vCPU ones summed over the vCPUs (as the VM's stats file reports them). */
  stats(): Record<string, number> {
    const per: Record<string, number> = {};
    for (const v of this.vcpus) for (const [k, n] of Object.entries(v.vcpu.stat.snapshot())) per[k] = (per[k] ?? 0) + n;
    return {
      ...this.kvm.stat.snapshot(),
      ...per,
      n_used_mmu_pages: this.kvm.arch.n_used_mmu_pages,
      n_max_mmu_pages: this.sk.n_max_mmu_pages,
      indirect_shadow_pages: this.sk.indirect_shadow_pages,
      sp_created: this.sk.counters.sp_created,
      sp_freed: this.sk.counters.sp_freed,
      validate_direct_drops: this.sk.counters.validate_direct_drops,
      emulated_writes: this.emulated_writes,
    };
  }
}

/** Guest page-table flags. */
export const GPTE_P = 1;
export const GPTE_W = 2;
export const GPTE_U = 4;
export const GPTE_A = 0x20;
export const GPTE_D = 0x40;
export const GPTE_PS = 0x80;

/**
 * Builds guest page tables in GuestMemory for any paging mode: `levels` 2 (4-byte entries), 3 (PAE: a
 * 32-byte PDPT at CR3), 4 or 5. Table pages come from a bump allocator starting at `table_base`.
 */
export class GuestPageTableBuilder {
  readonly cr3: number;
  private next: number;
  constructor(
    readonly mem: GuestMemory,
    readonly levels: 2 | 3 | 4 | 5,
    table_base: number,
  ) {
    this.next = table_base;
    this.cr3 = this.allocTable();
  }

  allocTable(): number {
    const gpa = this.next;
    this.next += 4096;
    this.mem.page(gpa / 4096).fill(0);
    return gpa;
  }

  private size(): 4 | 8 {
    return this.levels === 2 ? 4 : 8;
  }

  private index(gva: number, level: number): number {
    if (this.levels === 2) return Math.floor(gva / 2 ** (12 + 10 * (level - 1))) & 1023;
    if (this.levels === 3 && level === 3) return Math.floor(gva / 2 ** 30) & 3;
    return Math.floor(gva / 2 ** (12 + 9 * (level - 1))) & 511;
  }

  private readonly scratch = new Uint32Array(2);

  /** Entry at `gpa` into the scratch pair (no allocation: benches build millions of entries). */
  private read(gpa: number): Uint32Array {
    const out = this.scratch;
    this.mem.readEntry(gpa, this.size(), out);
    if (this.size() === 4) out[1] = 0;
    return out;
  }

  /** gPTE address of `gva` at `level` (creating intermediate tables with P|W|U|A). */
  entryGpa(gva: number, level: number, create = true): number {
    let table = this.cr3;
    for (let l = this.levels; l > level; l--) {
      const gpa = table + this.index(gva, l) * this.size();
      const e = this.read(gpa);
      const elo = e[0]!;
      const ehi = e[1]!;
      if ((elo & 1) === 0) {
        if (!create) return -1;
        const t = this.allocTable();
        // PAE PDPTEs only have P (bits 1-2, 5-8 are reserved).
        const flags = this.levels === 3 && l === 3 ? GPTE_P : GPTE_P | GPTE_W | GPTE_U | GPTE_A;
        this.write(gpa, (t % 0x1_0000_0000) + flags, Math.floor(t / 0x1_0000_0000));
        table = t;
      } else {
        table = ((elo & ~0xfff) >>> 0) + (ehi & 0xfffff) * 0x1_0000_0000;
      }
    }
    return table + this.index(gva, level) * this.size();
  }

  write(gpa: number, lo: number, hi: number): void {
    if (this.size() === 8) this.mem.write64(gpa, lo >>> 0, hi >>> 0);
    else this.mem.write32(gpa, lo >>> 0);
  }

  /** Map `gva` → `gpa` at `level` (1 = 4K; 2 = 2M, or 4M for 2-level) with low flag bits and optional NX. */
  map(gva: number, gpa: number, flags = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D, level = 1, nx = false): number {
    const e = this.entryGpa(gva, level);
    const lo = ((gpa % 0x1_0000_0000) & ~0xfff) | flags | (level > 1 ? GPTE_PS : 0);
    const hi = Math.floor(gpa / 0x1_0000_0000) | (nx ? 0x8000_0000 : 0);
    this.write(e, lo, hi);
    return e;
  }
}

export interface SplitAccessRun {
  variant: SplitAccessVariant;
  huge_pages: number;
  /** Faults taken while the guest touched the split range after dirty logging was turned on. */
  faults_after_split: number;
  /** Shadow pages created by the split and by those faults. */
  shadow_pages_created: number;
  validate_direct_drops: number;
  split_huge_pages: number;
}

export interface SplitAccessReport {
  cached: SplitAccessRun;
  propagate: SplitAccessRun;
  extra_faults: number;
  extra_shadow_pages: number;
}

/**
 * Seed 001 workload for variant `split_access`: a 4-level guest maps `huge_pages` executable 2 MiB
 * pages backed by host THP with the NX huge-page mitigation on; each is read once (2M SPTEs without
 * X), dirty logging is enabled (eager split, then 4K write protection), then the guest executes
 * `touch` 4K pages per 2 MiB region. Run for both variants on the same workload.
 */
export function splitAccessReport(huge_pages = 64, touch = 16): SplitAccessReport {
  const run = (variant: SplitAccessVariant): SplitAccessRun => {
    const bytes = huge_pages * 0x20_0000 + (64 << 20);
    const vm = new ShadowVm({ mem_bytes: bytes, host_backing: '2m-thp', split_access: variant, eager_split_l1: true, kvm: { params: { nx_huge_pages: 'on' } } });
    const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
    vm.setRegs(vm.cr0, vm.cr4, vm.efer | 0x800, b.cr3);
    const base = 0x400_0000;
    for (let i = 0; i < huge_pages; i++) b.map(0x8000_0000 + i * 0x20_0000, base + i * 0x20_0000, GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D, 2);
    for (let i = 0; i < huge_pages; i++) vm.access(0x8000_0000 + i * 0x20_0000, false, false, false);
    const created0 = vm.sk.counters.sp_created;
    vm.setDirtyLogging(true);
    let faults = 0;
    for (let i = 0; i < huge_pages; i++) for (let k = 0; k < touch; k++) faults += Math.max(0, vm.access(0x8000_0000 + i * 0x20_0000 + k * 0x1000, false, false, true));
    return {
      variant, huge_pages, faults_after_split: faults, shadow_pages_created: vm.sk.counters.sp_created - created0,
      validate_direct_drops: vm.sk.counters.validate_direct_drops, split_huge_pages: vm.sk.counters.split_huge_pages,
    };
  };
  const cached = run('cached');
  const propagate = run('propagate');
  return { cached, propagate, extra_faults: propagate.faults_after_split - cached.faults_after_split, extra_shadow_pages: propagate.shadow_pages_created - cached.shadow_pages_created };
}
