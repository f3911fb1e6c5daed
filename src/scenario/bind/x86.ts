/**
 * The x86 binding: scenario statements onto the TDP MMU model through its facade
 * (src/engine/x86/index.ts). Guest accesses are by GPA (what an EPT violation / #NPF reports); guest
 * page tables (x86_guest.ts), shadow paging (x86_shadow.ts) and SEV-SNP's RMP checks (x86_snp.ts) are
 * layered on top; what is not modelled reports itself as not supported at its line.
 */
import { type HostBacking, type KvmMmuPage, KVM_X86_DEFAULT_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM, X86Vm } from '../../engine/x86/index';
import { KVM_LPAGE_MIXED_FLAG, lpage_info_slot } from '../../engine/x86/memslot';
import { KVM_EXIT_MMIO, kvm_mmu_do_page_fault } from '../../engine/x86/mmu';
import { disableQuirks2 } from './x86_quirks';
import { KVM_EXIT_MEMORY_FAULT } from '../../engine/x86/vcpu';
import { set_gmem_prepare_variant } from '../../engine/x86/gmem_prepare_variant';
import { kvm_gmem_create, kvm_gmem_fallocate } from '../../engine/kvm/guest_memfd';
import { PFERR_GUEST_FINAL_MASK_HI, PFERR_PRIVATE_ACCESS_HI } from '../../engine/x86/pferr';
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, RET_PF_WRITE_PROTECTED } from '../../engine/x86/ret_pf';
import type { KvmX86ModuleParams, KvmX86VendorConfig, NxHugePagesMode } from '../../engine/x86/params';
import {
  type AccessOp,
  type Fields,
  type MemoryRegionOp,
  NotSupportedYet,
  type Outcome,
  type RangeOp,
  type ScenarioEngine,
  type VmConfig,
} from '../engine_api';
import { roleExpectFields, spteExpectFields } from './x86_fields';
import { X86Guest } from './x86_guest';
import { createShadowEngine } from './x86_shadow';
import { SnpLayer } from './x86_snp';
import { kvm_enable_cap_exit_hypercall, vmm_run_map_gpa } from '../../engine/x86/hypercall_exit';
import { tdx_map_gpa, tdx_map_gpa_state } from '../../engine/x86/tdx_map_gpa';
import { vmm_handle_map_gpa_range } from '../../engine/x86/sev_snp';
import {
  KVM_SEV_SNP_PAGE_TYPE_CPUID, KVM_SEV_SNP_PAGE_TYPE_NORMAL, KVM_SEV_SNP_PAGE_TYPE_SECRETS, KVM_SEV_SNP_PAGE_TYPE_UNMEASURED,
  KVM_SEV_SNP_PAGE_TYPE_ZERO, snp_launch_finish, snp_launch_start, snp_launch_update,
} from '../../engine/x86/sev_launch';

const SNP_PAGE_TYPES: Record<string, number> = {
  NORMAL: KVM_SEV_SNP_PAGE_TYPE_NORMAL, ZERO: KVM_SEV_SNP_PAGE_TYPE_ZERO, UNMEASURED: KVM_SEV_SNP_PAGE_TYPE_UNMEASURED,
  SECRETS: KVM_SEV_SNP_PAGE_TYPE_SECRETS, CPUID: KVM_SEV_SNP_PAGE_TYPE_CPUID,
};

const PAGE = 4096;

const yes = (v: string | undefined, dflt: boolean) => (v === undefined ? dflt : /^(y|yes|on|1|true)$/i.test(v));

function nxMode(v: string | undefined): NxHugePagesMode | undefined {
  if (v === undefined) return undefined;
  const l = v.toLowerCase();
  if (l === 'never') return 'never';
  if (l === 'force' || l === 'y' || l === 'on') return 'on';
  // `auto` resolves to on only with X86_BUG_ITLB_MULTIHIT; the modelled host does not have it.
  return 'off';
}

function backingOf(bytes: number): HostBacking {
  return bytes >= 2 ** 30 ? '1g-hugetlb' : bytes >= 2 ** 21 ? '2m-thp' : '4k';
}

class X86Engine implements ScenarioEngine {
  readonly name: string;
  readonly vm: X86Vm;
  private readonly gmemFds = new Map<string, number>();
  private migratedPfn = 0x7_0000_0000 / PAGE;
  private guestSide: X86Guest | undefined;
  /** SEV-SNP VMs: the RMP and the hardware's checks. */
  private readonly snp: SnpLayer | undefined;

  private get guest(): X86Guest {
    this.guestSide ??= new X86Guest(this.vm, this.cfg.maxphyaddr, this.cfg.vendor === 'amd');
    return this.guestSide;
  }

  setRegs(op: { vcpu: number; cr0?: bigint; cr3?: bigint; cr4?: bigint; efer?: bigint }): Outcome {
    this.vm.vcpu(op.vcpu);
    return { ret: this.guest.setRegs(op.vcpu, op) };
  }

  guestMap(op: { cr3: number; gvaStart: bigint; gvaEnd: bigint; gpa: number; pageSize: number; flags: string[]; mode: string; pool?: { start: number; end: number } }): Outcome {
    return { ret: this.guest.map(op) };
  }

  /** A guest store into its own page table: a write to that GPA through the TDP tables, then the new entry. */
  guestWritePte(op: { vcpu: number; gva: bigint; level: number; value: bigint; cr3?: number }): Outcome {
    const g = this.guest;
    const at = g.entryGpa(op.vcpu, op.gva, op.level, op.cr3);
    if (at === undefined) return { ret: -14 }; // -EFAULT: no such entry (paging off or a missing table)
    const o = this.gpaAccess(op.vcpu, at, 'write');
    if (o.exit || o.ret !== undefined) return o;
    g.writeEntry(at, op.value, g.entrySize(op.vcpu));
    return {};
  }

  /**
   * KVM_PRE_FAULT_MEMORY (kvm_vcpu_pre_fault_memory -> kvm_arch_vcpu_pre_fault_memory ->
   * kvm_tdp_map_page): a prefetch fault at the final GPA per step, advancing by what the mapping
   * level covers.
   */
  preFaultMemory(op: { vcpu: number; gpa: number; size: number }): Outcome {
    if (op.gpa % PAGE !== 0 || op.size % PAGE !== 0 || op.size === 0) return { ret: -22 };
    const kvm = this.vm.kvm;
    if (kvm.is_tdx) throw new NotSupportedYet('pre-faulting TDX VMs (pre_fault_allowed after the TD is finalized) is not modelled');
    if (!kvm.pre_fault_allowed) return { ret: -95 }; // -EOPNOTSUPP: an SNP VM before KVM_SEV_SNP_LAUNCH_FINISH
    const vcpu = this.vm.vcpu(op.vcpu);
    let gpa = op.gpa;
    let left = op.size;
    while (left > 0) {
      this.vm.enter(vcpu);
      let hi = PFERR_GUEST_FINAL_MASK_HI;
      if (kvm.arch.has_private_mem && kvm.kvm_mem_is_private(Math.floor(gpa / PAGE))) hi |= PFERR_PRIVATE_ACCESS_HI;
      let r: number;
      let tries = 0;
      do {
        r = kvm_mmu_do_page_fault(vcpu, gpa, 0, hi, true);
      } while (r === RET_PF_RETRY && ++tries < 64);
      if (r < 0) return { ret: r };
      if (r === RET_PF_EMULATE) return { ret: -2 }; // -ENOENT: nothing KVM could map (no memslot / MMIO)
      if (r !== RET_PF_FIXED && r !== RET_PF_SPURIOUS && r !== RET_PF_WRITE_PROTECTED) return { ret: -5 }; // -EIO
      const span = PAGE * 512 ** (vcpu.fault.goal_level - 1);
      const end = gpa - (gpa % span) + span;
      const step = Math.min(left, end - gpa);
      gpa += step;
      left -= step;
    }
    return { ret: 0 };
  }

  pvalidate(op: { vcpu: number; gva?: bigint; gpa?: number; size: number; validate: boolean }): Outcome {
    if (!this.snp) throw new NotSupportedYet('PVALIDATE needs an SEV-SNP VM (vm type=snp vendor=amd)');
    let gpa = op.gpa;
    if (gpa === undefined) {
      // PVALIDATE takes a virtual address (rAX): the CPU walks the guest tables first, with private reads.
      const t = this.snpTranslate(op.vcpu, op.gva!, 'read', false);
      if (t.stop) return t.stop;
      gpa = t.gpa!;
    }
    const r = this.snp.pvalidate(op.vcpu, gpa, op.size, op.validate);
    // As the guest kernel's pvalidate() helper: CF set (nothing to change) reads as PVALIDATE_FAIL_NOUPDATE.
    if (!r.exit && r.ret === 0 && r.cf) return { ret: 255 };
    return r.exit ? { exit: r.exit } : { ret: r.ret ?? 0 };
  }

  psc(op: { vcpu: number; start: number; end: number; to: 'private' | 'shared' | 'psmash' | 'unsmash'; via?: 'ghcb' | 'msr'; serve?: boolean }): Outcome {
    if (!this.snp) throw new NotSupportedYet('page-state changes need an SEV-SNP VM (TDX: guest map_gpa)');
    if (op.end - op.start > 64 * 2 ** 30) throw new NotSupportedYet('a page-state change of more than 64 GiB in one line');
    return this.snp.psc(op.vcpu, op.start, op.end, op.to, op.via ?? 'ghcb', op.serve === true);
  }

  /**
   * TDG.VP.VMCALL<MapGPA>. Without `serve` the first KVM_HC_MAP_GPA_RANGE exit (later chunks are dropped:
   * the VMM never re-enters); with it the VMM converts every chunk and `ret` is the TDVMCALL status in R10
   * (0 success; the error statuses have bit 63 set, so only their value as a double is exact).
   */
  mapGpa(op: { vcpu: number; start: number; end: number; to: 'private' | 'shared'; serve: boolean }): Outcome {
    const kvm = this.vm.kvm;
    if (!kvm.is_tdx) throw new NotSupportedYet('MapGPA is a TDX call; SEV-SNP guests use guest psc');
    if (op.end - op.start > 64 * 2 ** 30) throw new NotSupportedYet('a MapGPA of more than 64 GiB in one line');
    const vcpu = this.vm.vcpu(op.vcpu);
    const start = op.start - (op.start % PAGE);
    const gpa = op.to === 'shared' ? start + kvm.arch.gfn_direct_bits * PAGE : start;
    const first = tdx_map_gpa(vcpu, gpa, Math.max(op.end - start, 0));
    const exits = vmm_run_map_gpa(vcpu, first, op.serve ? (ex) => vmm_handle_map_gpa_range(kvm.private_mem, ex, { punch_hole: true }) : undefined);
    if (!op.serve && exits.length > 0) {
      const e = exits[0]!;
      return { exit: { reason: 'KVM_EXIT_HYPERCALL', vcpu: op.vcpu, fields: { nr: e.nr, args0: e.gpa, args1: e.npages, args2: e.attrs, exits: 1 } } };
    }
    const s = tdx_map_gpa_state(vcpu);
    return { ret: s.r10_hi * 2 ** 32 + s.r10_lo };
  }

  snpLaunchStart(op: { policy: number; flags: number }): Outcome {
    if (!this.snp) return { ret: -25 }; // -ENOTTY: not an SNP VM
    return { ret: snp_launch_start(this.vm.kvm, op) };
  }

  snpLaunchUpdate(op: { gfnStart: number; len: number; type: string; flags: number }): Outcome {
    if (!this.snp) return { ret: -22 };
    const type = SNP_PAGE_TYPES[op.type] ?? 0;
    return { ret: snp_launch_update(this.vm.kvm, { gfn_start: op.gfnStart, len: op.len, type, flags: op.flags }).ret };
  }

  snpLaunchFinish(op: { flags: number }): Outcome {
    if (!this.snp) return { ret: -25 };
    return { ret: snp_launch_finish(this.vm.kvm, op) };
  }

  /** INVLPG is not intercepted under EPT/NPT: the guest's TLB flush runs no KVM code. */
  invlpg(op: { vcpu: number; gva: bigint }): Outcome {
    this.vm.vcpu(op.vcpu);
    return {};
  }

  /** Nor is INVPCID (the guest's PCIDs tag its own TLB entries; EPT/NPT mappings are not per PCID). */
  invpcid(op: { vcpu: number; type: number; pcid: bigint; gva: bigint }): Outcome {
    this.vm.vcpu(op.vcpu);
    return {};
  }

  constructor(readonly cfg: VmConfig, opts: ConstructorParameters<typeof X86Vm>[0]) {
    this.vm = new X86Vm(opts);
    const kvm = this.vm.kvm;
    // X86Vm itself wires the private-memory model (attributes, guest_memfd, SEV-SNP) into its MMU.
    this.snp = cfg.type === 'snp' ? new SnpLayer(this.vm) : undefined;
    const gp = cfg.variants['gmem_prepare'];
    if (this.snp && gp !== undefined) set_gmem_prepare_variant(kvm, gp === 'proposed' || gp === 'on_fault' ? 'on_fault' : 'on_alloc');
    this.name = `x86 TDP MMU (${cfg.vendor === 'amd' ? 'NPT' : 'EPT'}, ${this.vm.kvm.vendor.max_tdp_level}-level)`;
  }

  setUserMemoryRegion2(op: MemoryRegionOp): Outcome {
    let gmem: number | undefined;
    if (op.guestMemfd !== undefined) {
      gmem = this.gmemFds.get(op.guestMemfd);
      if (gmem === undefined) return { ret: -9 }; // -EBADF: no such file
    }
    const ret = this.vm.set_user_memory_region({
      slot: (op.asId << 16) | op.slot,
      flags: op.flags,
      guest_phys_addr: op.gpa,
      memory_size: op.size,
      userspace_addr: op.hva ?? 0x7f00_0000_0000 + op.gpa,
      host_backing: backingOf(op.backing),
      ...(gmem !== undefined ? { guest_memfd: gmem, guest_memfd_offset: op.guestMemfdOffset } : {}),
    });
    return { ret };
  }

  /** KVM_CREATE_GUEST_MEMFD; the scenario's name stands for the returned fd. */
  createGuestMemfd(op: { fd: string; size: number; flags: number; folio?: string }): Outcome {
    if (this.gmemFds.has(op.fd)) throw new NotSupportedYet(`a second file named ${op.fd}`);
    // folio=2M is the model's huge-folio option (upstream 6.18 guest_memfd allocates order-0 folios only).
    const huge_folios = op.folio !== undefined && op.folio.toUpperCase() === '2M';
    const fd = kvm_gmem_create(this.vm.kvm, { size: op.size, flags: op.flags }, { huge_folios });
    if (fd < 0) return { ret: fd };
    this.gmemFds.set(op.fd, fd);
    return { ret: 0 };
  }

  fallocate(op: { fd: string; mode: number; offset: number; len: number }): Outcome {
    const fd = this.gmemFds.get(op.fd);
    if (fd === undefined) return { ret: -9 }; // -EBADF
    return { ret: kvm_gmem_fallocate(this.vm.kvm, fd, op.mode, op.offset, op.len) };
  }

  setMemoryAttributes(op: { address: number; size: number; attributes: number }): Outcome {
    return { ret: this.vm.set_memory_attributes(op.address, op.size, op.attributes) };
  }

  getDirtyLog(op: { slot: number; asId: number }): Outcome & { bitmap?: Uint8Array } {
    const r = this.vm.get_dirty_log((op.asId << 16) | op.slot);
    if (typeof r === 'number') return { ret: r };
    // Bit i of word i/32 is bit i%8 of byte i/8 in the little-endian layout KVM copies out.
    const bytes = new Uint8Array(r.length * 4);
    for (let i = 0; i < r.length; i++) {
      const w = r[i]!;
      bytes[i * 4] = w & 0xff;
      bytes[i * 4 + 1] = (w >>> 8) & 0xff;
      bytes[i * 4 + 2] = (w >>> 16) & 0xff;
      bytes[i * 4 + 3] = w >>> 24;
    }
    return { ret: 0, bitmap: bytes };
  }

  clearDirtyLog(op: { slot: number; asId: number; firstPage: number; numPages: number }): Outcome {
    // KVM's range check comes before anything is allocated for the bitmap.
    const kvm = this.vm.kvm;
    const s = op.asId < kvm.nr_as_ids ? kvm.kvm_memslots(op.asId).byId(op.slot) : undefined;
    if (!s) return { ret: -22 };
    if (op.firstPage > s.npages || op.numPages > s.npages - op.firstPage) return { ret: -22 };
    const words = Math.ceil(op.numPages / 32);
    const bm = new Uint32Array(words);
    for (let i = 0; i < op.numPages; i++) bm[i >>> 5]! |= 1 << (i & 31);
    return { ret: this.vm.clear_dirty_log((op.asId << 16) | op.slot, op.firstPage, op.numPages, bm) };
  }

  enableCap(op: { cap: string; args0: number }): Outcome {
    if (op.cap === 'KVM_CAP_DISABLE_QUIRKS2') return disableQuirks2(this.vm.kvm, op.args0);
    if (op.cap === 'KVM_CAP_EXIT_HYPERCALL') {
      return { ret: kvm_enable_cap_exit_hypercall(this.vm.kvm.private_mem, op.args0) };
    }
    if (op.cap !== 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2') throw new NotSupportedYet(op.cap);
    return { ret: this.vm.enable_manual_dirty_log_protect(op.args0) };
  }

  access(op: AccessOp): Outcome {
    if (op.space === 'gva') {
      if (this.snp) return this.snpGvaAccess(op);
      const g = this.guest;
      const gpa = g.translateHalves(op.vcpu, op.lo, op.hi, op.kind, op.user);
      // Table accesses happen whether or not the walk ends in a #PF.
      const stop = g.tableAccesses(op.vcpu);
      if (stop?.exit) return { exit: { reason: stop.exit.reason, vcpu: op.vcpu, fields: stop.exit.fields } };
      if (stop?.ret !== undefined) return { ret: stop.ret };
      // A #PF is delivered to the guest; with TDP KVM does not intercept it.
      if (gpa < 0) return { exception: { vector: 'PF', fields: { error_code: g.walkErrorCode, address: op.addr } } };
      return this.store(op, gpa, this.gpaAccess(op.vcpu, gpa, op.kind, op.private));
    }
    return this.store(op, op.addr, this.gpaAccess(op.vcpu, op.addr, op.kind, op.private));
  }

  /**
   * A GVA access in an SEV-SNP guest: the CPU's walk of the guest tables, each table read a private access
   * (page tables are always private: APM vol. 2 15.34), then the data access. The model's guest tables carry
   * no C-bit, so the access's `private`/`shared` word stands for the leaf's C-bit (shared when absent).
   */
  private snpGvaAccess(op: AccessOp): Outcome {
    const t = this.snpTranslate(op.vcpu, (BigInt(op.hi >>> 0) << 32n) | BigInt(op.lo >>> 0), op.kind, op.user);
    if (t.stop) return t.stop.exception?.vector === 'PF' ? { exception: { vector: 'PF', fields: { ...t.stop.exception.fields, address: op.addr } } } : t.stop;
    return this.store(op, t.gpa!, this.gpaAccess(op.vcpu, t.gpa!, op.kind, op.private));
  }

  /** The CPU's walk of an SNP guest's tables: every table read is a private access with the RMP check. */
  private snpTranslate(id: number, gva: bigint, kind: 'read' | 'write' | 'fetch', user: boolean): { gpa?: number; stop?: Outcome } {
    const g = this.guest;
    const t = g.translate(id, gva, kind, user);
    const w = t.walker;
    for (let i = 0; i < w.nsteps; i++) {
      const gpa = w.step_gpa[i]!;
      if (gpa < 0) continue;
      const write = w.ad_set[w.step_level[i]! - 1] !== 0;
      const r = this.snp!.access(id, gpa - (gpa % PAGE), write ? 'write' : 'read', true);
      if (r.vc) return { stop: { exception: { vector: 'VC', fields: { address: gpa - (gpa % PAGE) } } } };
      if (r.exit || (r.ret !== undefined && r.ret !== 0)) return { stop: r };
    }
    if (t.gpa === undefined) return { stop: { exception: { vector: 'PF', fields: { error_code: g.walkErrorCode, address: Number(gva) } } } };
    return { gpa: t.gpa };
  }

  /** A completed write with `value=` lands in guest memory (8 bytes, aligned down), where the guest's tables live. */
  private store(op: AccessOp, gpa: number, o: Outcome): Outcome {
    if (op.kind === 'write' && op.hasValue && !o.exit && o.ret === undefined) {
      this.guest.writeEntry(gpa - (gpa % 8), op.value, 8);
    }
    return o;
  }

  private gpaAccess(id: number, addr: number, k: 'read' | 'write' | 'fetch', priv?: boolean): Outcome {
    if (this.snp) {
      // The C-bit: private only when the access says so.
      const r = this.snp.access(id, addr, k, priv === true);
      return r.vc ? { exception: { vector: 'VC', fields: { address: addr } } } : r;
    }
    const op = { vcpu: id, kind: k, private: priv };
    const kvm = this.vm.kvm;
    let gpa = addr;
    if (op.private !== undefined) {
      if (!kvm.is_tdx) throw new NotSupportedYet('private/shared accesses outside TDX (SNP C-bit, SW-protected) are decided by the attributes here; drop the word');
      const shared = kvm.arch.gfn_direct_bits * PAGE;
      gpa = op.private ? gpa % shared : (gpa % shared) + shared;
    }
    const vcpu = this.vm.vcpu(op.vcpu);
    const kind = op.kind === 'fetch' ? 'exec' : op.kind;
    let last;
    // The CPU retries the access after KVM resumes the guest; stop at an exit to userspace.
    for (let i = 0; i < 8; i++) {
      last = this.vm.access(op.vcpu, gpa, kind);
      if (last.exit === 'none' || last.exit === 've' || last.ret !== 1) break;
    }
    if (!last || last.exit === 'none') return {};
    if (last.exit === 've') return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa, ve: 1 } } };
    const ex = vcpu.run_exit;
    if (last.ret === 0 || (ex && (last.ret ?? 0) < 0)) {
      if (ex?.exit_reason === KVM_EXIT_MEMORY_FAULT) {
        return { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', vcpu: op.vcpu, fields: { flags: ex.flags, gpa: ex.gpa, size: ex.size } } };
      }
      if (ex?.exit_reason === KVM_EXIT_MMIO || last.ret === 0) {
        return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa, is_write: op.kind === 'write' ? 1 : 0 } } };
      }
    }
    if ((last.ret ?? 0) < 0) return { ret: last.ret! };
    return {};
  }

  private hvaRange(op: RangeOp): Array<[number, number]> {
    if (op.space === 'hva') return [[op.start, op.end]];
    const out: Array<[number, number]> = [];
    for (const ms of this.vm.kvm.memslots) {
      for (const s of ms.slots) {
        const a = Math.max(op.start, s.base_gfn * PAGE);
        const b = Math.min(op.end, (s.base_gfn + s.npages) * PAGE);
        if (a < b) out.push([s.userspace_addr + (a - s.base_gfn * PAGE), s.userspace_addr + (b - s.base_gfn * PAGE)]);
      }
    }
    return out;
  }

  invalidateRange(op: RangeOp & { event: string }): Outcome {
    for (const [a, b] of this.hvaRange(op)) {
      if (op.event === 'MMU_NOTIFY_MIGRATE') {
        if ((b - a) / PAGE > 1 << 24) throw new NotSupportedYet('migrating more than 64 GiB in one line');
        // Each page moves to a new host pfn; KVM refaults it there.
        this.vm.notifier_invalidate(a, b, (slot, first, last) => {
          for (let i = first; i <= last; i++) {
            slot.host_migrated.set(i, this.migratedPfn++);
            slot.host_split_2m.add(Math.floor(i / 512));
          }
        });
      } else this.vm.notifier_invalidate(a, b);
    }
    return {};
  }

  ageRange(op: RangeOp & { op: string }): Outcome {
    let young = false;
    for (const [a, b] of this.hvaRange(op)) young = this.vm.notifier_age(a, b, op.op as 'clear_young') || young;
    return { ret: young ? 1 : 0 };
  }

  nxRecovery(): Outcome {
    this.vm.recover_nx_huge_pages();
    return { ret: 0 };
  }

  private rootFor(sel: Fields): KvmMmuPage | null {
    const vcpu = sel['vcpu'] !== undefined ? Number(sel['vcpu']) : 0;
    return this.vm.current_root(vcpu, sel['root'] === 'mirror');
  }

  /** Every SP reachable from the roots (roots included), pre-order. */
  private *allSps(): Generator<KvmMmuPage> {
    const pool = this.vm.kvm.pool;
    for (const root of this.vm.kvm.arch.tdp_mmu_roots) {
      yield root;
      for (const e of this.vm.iterate(root)) {
        if ((e.lo & 0x800) !== 0 && e.level > 1 && (e.lo & 0x80) === 0) {
          const child = pool.sp_of_pfn(e.pfn);
          if (child) yield child;
        }
      }
    }
  }

  private spFields(sp: KvmMmuPage): Fields {
    let present = 0;
    for (let i = 0; i < 1024; i += 2) if ((sp.spt[i]! & 0x800) !== 0) present++;
    return roleExpectFields(sp.role, {
      gfn: sp.gfn, level: sp.role & 0xf, unsync: sp.unsync ? 1 : 0, nx_huge_page_disallowed: sp.nx_huge_page_disallowed ? 1 : 0,
      root_count: sp.root_count, tdp_mmu_page: sp.tdp_mmu_page ? 1 : 0, mmu_valid_gen: sp.mmu_valid_gen, present_sptes: present,
    });
  }

  query(subject: string, sel: Fields): Fields[] | undefined {
    const kvm = this.vm.kvm;
    switch (subject) {
      case 'spte': {
        const root = this.rootFor(sel);
        if (!root) return [];
        let gfn: number;
        if (sel['gva'] !== undefined) {
          // The EPT/NPT entry behind a GVA: the guest's translation first (no A/D updates).
          const t = this.guest.translate(sel['vcpu'] !== undefined ? Number(sel['vcpu']) : 0, BigInt(sel['gva']), 'read', false, true);
          if (t.gpa === undefined) return [];
          gfn = Math.floor(t.gpa / PAGE);
        } else gfn = sel['gfn'] !== undefined ? Number(sel['gfn']) : Math.floor(Number(sel['gpa']) / PAGE);
        if (sel['at_level'] !== undefined) {
          const v = this.vm.read_spte(gfn, Number(sel['at_level']), root);
          return v ? [spteExpectFields(kvm.masks, v.lo, v.hi, v.level, v.sptep)] : [];
        }
        // The last entry the walk reaches: a leaf, or the first non-present one.
        for (let level = root.role & 0xf; level >= 1; level--) {
          const v = this.vm.read_spte(gfn, level, root);
          if (!v) return [];
          const present = (v.lo & 0x800) !== 0;
          if (!present || level === 1 || (v.lo & 0x80) !== 0) return [spteExpectFields(kvm.masks, v.lo, v.hi, level, v.sptep)];
        }
        return [];
      }
      case 'sp': {
        const out: Fields[] = [];
        const mirror = sel['root'] === 'mirror' ? 1 : sel['root'] === 'direct' ? 0 : undefined;
        for (const sp of this.allSps()) {
          if (sel['gfn'] !== undefined && sp.gfn !== Number(sel['gfn'])) continue;
          if (sel['level'] !== undefined && (sp.role & 0xf) !== Number(sel['level'])) continue;
          if (mirror !== undefined && ((sp.role >>> 19) & 1) !== mirror) continue;
          out.push(this.spFields(sp));
        }
        return out;
      }
      case 'roots':
        return this.vm.roots()
          .filter((r) => sel['type'] === undefined || (sel['type'] === 'mirror') === r.mirror)
          .map((r) => roleExpectFields(r.role, { hpa: r.hpa, root_count: r.root_count, as_id: r.as_id }));
      case 'root': {
        const r = this.rootFor(sel);
        return r ? [roleExpectFields(r.role, { hpa: r.spt_pfn * PAGE, root_count: r.root_count })] : [];
      }
      case 'rmp':
        return this.snp ? this.snp.query(sel) : undefined;
      case 'walk': {
        const id = sel['vcpu'] !== undefined ? Number(sel['vcpu']) : 0;
        const gva = BigInt(sel['gva']!);
        const access = (sel['access'] as string | undefined) ?? 'read';
        // KVM's view of the translation (gva_to_gpa), without touching A/D bits.
        const t = this.guest.translate(id, gva, access as 'read', sel['cpl'] === 'user', true);
        const w = t.walker;
        return [t.gpa !== undefined
          ? { gpa: t.gpa, fault: 0, level: w.level, pte_access: w.pte_access }
          : { fault: 1, error_code: w.error_code, level: w.level }];
      }
      case 'attributes': {
        const priv = kvm.kvm_mem_is_private(Math.floor(Number(sel['gpa']) / PAGE));
        return [{ private: priv ? 1 : 0, attributes: priv ? 8 : 0 }];
      }
      case 'memslot': {
        const as = sel['as_id'] !== undefined ? Number(sel['as_id']) : 0;
        const s = as < kvm.nr_as_ids ? kvm.kvm_memslots(as).byId(Number(sel['slot'])) : undefined;
        if (!s) return [];
        return [{ base_gfn: s.base_gfn, npages: s.npages, flags: s.flags, userspace_addr: s.userspace_addr, dirty_logging: s.flags & 1 }];
      }
      case 'lpage': {
        const gfn = Number(sel['gfn']);
        const level = Number(sel['level']);
        const s = kvm.kvm_memslots(0).lookup(gfn);
        if (!s) return [];
        const v = lpage_info_slot(gfn, s, level) >>> 0;
        return [{ disallow_lpage: v, mixed: (v & KVM_LPAGE_MIXED_FLAG) !== 0 ? 1 : 0 }];
      }
      default:
        return undefined;
    }
  }

  stats(): Record<string, number> {
    const s = this.vm.stats();
    const out: Record<string, number> = { ...s.vm };
    for (const v of s.vcpus) for (const [k, n] of Object.entries(v)) out[k] = (out[k] ?? 0) + n;
    if (this.snp) {
      // Model counters of the RMP (not KVM stats): assigned entries by size now, PSMASHes so far.
      const rmp = this.snp.sev.rmp;
      const c = rmp.census();
      out['rmp_assigned_2m'] = c.assigned_2m;
      out['rmp_assigned_4k'] = c.assigned_4k;
      out['rmp_psmash'] = rmp.stats.psmash;
      out['rmp_rmpupdate'] = rmp.stats.rmpupdate;
      out['psc_exits'] = this.snp.sev.psc_exits.length;
    }
    return out;
  }

  dispose(): void {
    this.vm.destroy();
  }
}

const VM_TYPES: Record<string, number> = {
  default: KVM_X86_DEFAULT_VM,
  sw_protected: KVM_X86_SW_PROTECTED_VM,
  snp: KVM_X86_SNP_VM,
  tdx: KVM_X86_TDX_VM,
};

export function createX86Engine(cfg: VmConfig): ScenarioEngine | string {
  const p = cfg.params;
  const params: Partial<KvmX86ModuleParams> = {};
  if (p['tdp_mmu'] !== undefined) params.tdp_mmu = yes(p['tdp_mmu'], true);
  if (p['eager_page_split'] !== undefined) params.eager_page_split = yes(p['eager_page_split'], true);
  const nx = nxMode(p['nx_huge_pages']);
  if (nx) params.nx_huge_pages = nx;
  if (p['nx_huge_pages_recovery_ratio'] !== undefined) params.nx_huge_pages_recovery_ratio = Number(p['nx_huge_pages_recovery_ratio']);
  if (p['nx_huge_pages_recovery_period_ms'] !== undefined) params.nx_huge_pages_recovery_period_ms = Number(p['nx_huge_pages_recovery_period_ms']);
  if (p['mmio_caching'] !== undefined) params.mmio_caching = yes(p['mmio_caching'], true);
  if (p['tdp_root_level'] !== undefined) params.tdp_root_level = Number(p['tdp_root_level']);
  // ept=N / npt=N turn TDP off as the vm line's tdp=off does.
  const tdp = cfg.tdp && !(p['ept'] !== undefined && !yes(p['ept'], true)) && !(p['npt'] !== undefined && !yes(p['npt'], true));
  if (!tdp) return createShadowEngine(cfg, params);
  if (p['shadow_eager_split_l1'] !== undefined && yes(p['shadow_eager_split_l1'], false)) {
    return 'shadow_eager_split_l1 is a model option of the shadow MMU: use tdp=off';
  }
  for (const v of ['split_access', 'pae_root', 'gmem_prepare'] as const) {
    const val = cfg.variants[v];
    if (val !== undefined && val !== 'upstream' && val !== 'cached' && val !== 'special' && val !== 'on_alloc') {
      if (v === 'gmem_prepare' && cfg.type === 'snp') continue;
      return v === 'gmem_prepare' ? 'variant gmem_prepare only shows in SEV-SNP VMs (type=snp)' : `variant ${v} concerns the shadow MMU: use tdp=off`;
    }
  }
  const vendor_config: Partial<KvmX86VendorConfig> = {
    max_tdp_level: cfg.tdpLevels === 5 ? 5 : 4,
    host_maxphyaddr: Math.max(46, cfg.maxphyaddr),
  };
  if (p['eptad'] !== undefined) vendor_config.ept_ad = yes(p['eptad'], true);
  if (p['pml'] !== undefined) vendor_config.pml = yes(p['pml'], false);
  // tdp_mmu=N: the legacy MMU builds the TDP tables from direct shadow pages.
  if (params.tdp_mmu === false) return createShadowEngine(cfg, params, { vendor_config });
  if (cfg.type === 'snp' && cfg.vendor !== 'amd') return 'SEV-SNP VMs need vendor=amd';
  const vmType = VM_TYPES[cfg.type];
  if (vmType === undefined) return `VM type ${cfg.type} is not an x86 type`;
  const tdx = cfg.variants['tdx_stolen_bits'];
  try {
    return new X86Engine(cfg, {
      vendor: cfg.vendor === 'amd' ? 'svm' : 'vmx',
      params,
      vendor_config,
      vm_type: vmType,
      guest_maxphyaddr: cfg.maxphyaddr,
      ...(cfg.type === 'tdx' ? { tdx_gpaw: cfg.gpaw === 52 ? 52 : 48 } : {}),
      ...(tdx === 'proposed' || tdx === 'sp_field' ? { tdx_variant: 'sp_field' as const } : {}),
      nr_vcpus: cfg.vcpus,
    });
  } catch (e) {
    return `the x86 model refused this configuration: ${e instanceof Error ? e.message : String(e)}`;
  }
}
