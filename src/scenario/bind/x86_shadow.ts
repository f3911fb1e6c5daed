/**
 * The x86 binding with TDP off: the shadow MMU through its facade (src/engine/x86/shadow_vm.ts). The
 * VM (all of the scenario's vCPUs) is built when the scenario creates its first memslot, and later
 * KVM_SET_USER_MEMORY_REGION2 calls create, move, re-flag or delete slots. Each guest statement runs on
 * its vCPU (the facade's current one). Guest page tables live in the facade's guest memory, written by `guest map` and read by the
 * shadow MMU when it shadows them; guest stores go through the MMU (a store to a write-protected guest
 * table faults and is emulated).
 */
import { ShadowVm } from '../../engine/x86/shadow_vm';
import type { HostBacking } from '../../engine/x86/memslot';
import type { KvmX86ModuleParams, KvmX86VendorConfig } from '../../engine/x86/params';
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
import { disableQuirks2 } from './x86_quirks';

const PAGE = 4096;
const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
const CR0_PG = 1n << 31n;

function backingOf(bytes: number): HostBacking {
  return bytes >= 2 ** 30 ? '1g-hugetlb' : bytes >= 2 ** 21 ? '2m-thp' : '4k';
}

class ShadowEngine implements ScenarioEngine {
  readonly name: string;
  private vm: ShadowVm | undefined;
  private guestSide: X86Guest | undefined;

  constructor(
    readonly cfg: VmConfig,
    private readonly params: Partial<KvmX86ModuleParams>,
    private readonly tdp: ShadowTdpOptions | undefined,
  ) {
    this.name = tdp ? `x86 legacy MMU under TDP (tdp_mmu=0, ${cfg.vendor})` : `x86 shadow MMU (tdp=off, ${cfg.vendor})`;
  }

  private get sv(): ShadowVm {
    if (!this.vm) throw new NotSupportedYet('the shadow-paging model is built with its first memslot: KVM_SET_USER_MEMORY_REGION2 first');
    return this.vm;
  }

  private get guest(): X86Guest {
    void this.sv;
    return this.guestSide!;
  }

  /** The facade acting on vCPU `id`. */
  private on(id: number | undefined): ShadowVm {
    const sv = this.sv;
    sv.useVcpu(id ?? 0);
    return sv;
  }

  setUserMemoryRegion2(op: MemoryRegionOp): Outcome {
    if (op.asId !== 0) throw new NotSupportedYet('the shadow-paging model has no SMM address space (as_id=1)');
    if (op.guestMemfd !== undefined) throw new NotSupportedYet('guest_memfd slots need TDP');
    if (this.vm) return { ret: this.vm.setMemoryRegion(op.slot, op.gpa, op.size, op.flags, backingOf(op.backing), op.hva) };
    if (op.size === 0) return { ret: -22 }; // deleting a slot that does not exist: -EINVAL
    const v = this.cfg.variants;
    const l1 = this.cfg.params['shadow_eager_split_l1'];
    this.vm = new ShadowVm({
      vendor: this.cfg.vendor === 'amd' ? 'svm' : 'vmx',
      mem_bytes: op.size,
      first_slot: { id: op.slot, gpa: op.gpa, flags: op.flags, hva: op.hva },
      host_backing: backingOf(op.backing),
      // The vCPU comes out of reset with paging off.
      cr0: 0x10, cr4: 0, efer: 0, cr3: 0,
      vcpus: this.cfg.vcpus,
      cpu: { maxphyaddr: this.cfg.maxphyaddr },
      split_access: v['split_access'] === 'proposed' || v['split_access'] === 'propagate' ? 'propagate' : 'cached',
      pae_root: v['pae_root'] === 'proposed' || v['pae_root'] === 'shadow_page' ? 'shadow_page' : 'special',
      // Model option (not a kernel parameter): the nested-MMU eager split applied to L1 shadow pages.
      eager_split_l1: l1 !== undefined && /^(y|yes|on|true|1)$/i.test(l1),
      tdp: this.tdp !== undefined,
      kvm: this.tdp ? { params: this.params, vendor_config: this.tdp.vendor_config, guest_maxphyaddr: this.cfg.maxphyaddr } : { params: this.params },
    });
    this.guestSide = new X86Guest(undefined, this.cfg.maxphyaddr, this.cfg.vendor === 'amd', this.vm.mem);
    return { ret: 0 };
  }

  setRegs(op: { vcpu: number; cr0?: bigint; cr3?: bigint; cr4?: bigint; efer?: bigint }): Outcome {
    const sv = this.on(op.vcpu);
    const r = this.guest.setRegs(op.vcpu, op);
    if (r < 0) return { ret: r };
    const g = this.guest.regs(op.vcpu);
    // Bit 63 of CR3 is the PCID no-flush bit (a reserved bit, so #GP, with CR4.PCIDE=0).
    const noflush = (g.cr3 >> 63n) !== 0n;
    const ok = sv.setRegs(Number(g.cr0 & 0xffff_ffffn), Number(g.cr4 & 0xffff_ffffn), Number(g.efer & 0xffff_ffffn), Number(g.cr3 & ((1n << 63n) - 1n)), noflush);
    if (!ok) return { exception: { vector: 'GP', fields: { error_code: 0 } } };
    return { ret: 0 };
  }

  guestMap(op: { cr3: number; gvaStart: bigint; gvaEnd: bigint; gpa: number; pageSize: number; flags: string[]; mode: string; pool?: { start: number; end: number } }): Outcome {
    return { ret: this.guest.map(op) };
  }

  /** The guest's store to its own PTE, through the GVA where it maps that table. */
  guestWritePte(op: { vcpu: number; gva: bigint; level: number; value: bigint; cr3?: number; via?: bigint }): Outcome {
    const sv = this.on(op.vcpu);
    if (this.tdp) {
      // With TDP the guest's page tables are plain guest memory to KVM: no write-protection, no exit.
      const at = this.guest.entryGpa(op.vcpu, op.gva, op.level, op.cr3);
      if (at === undefined) return { ret: -14 };
      const size = this.guest.entrySize(op.vcpu);
      sv.access(at, true);
      this.guest.writeEntry(at, op.value, size);
      return {};
    }
    if (op.via === undefined) throw new NotSupportedYet('under shadow paging the store needs the GVA of the page table: add via=');
    const at = this.guest.entryGpa(op.vcpu, op.gva, op.level, op.cr3);
    const t = this.guest.translate(op.vcpu, op.via, 'write', false, true);
    if (at === undefined || t.gpa === undefined || t.gpa - (t.gpa % PAGE) !== at - (at % PAGE)) return { ret: -14 }; // via does not map the table
    const via = Number(op.via) + (at % PAGE) - Number(op.via % 4096n);
    const size = this.guest.entrySize(op.vcpu);
    sv.guestWrite(via, Number(op.value & 0xffff_ffffn), Number((op.value >> 32n) & 0xffff_ffffn), size);
    return {};
  }

  access(op: AccessOp): Outcome {
    const sv = this.on(op.vcpu);
    if (this.tdp) return this.tdpAccess(op);
    let gva = op.addr;
    if (op.space === 'gpa') {
      if ((this.guest.regs(op.vcpu).cr0 & CR0_PG) !== 0n) throw new NotSupportedYet('with shadow paging and CR0.PG set, guest accesses are by GVA');
      gva = op.addr;
    }
    if (op.private !== undefined) throw new NotSupportedYet('private/shared accesses under shadow paging');
    if (op.kind === 'write' && op.hasValue) {
      if (sv.guestWrite(gva - (gva % 8), Number(op.value & 0xffff_ffffn), Number((op.value >> 32n) & 0xffff_ffffn), 8) === 'mmio') return this.mmioExit(op, gva);
      return {};
    }
    if (sv.access(gva, op.kind === 'write', op.user, op.kind === 'fetch') < 0 && sv.sv.injected) {
      return { exception: { vector: 'PF', fields: { error_code: sv.sv.injected.error_code, address: sv.sv.injected.address } } };
    }
    // A gfn without a memslot: the fault installed (or hit) an MMIO SPTE and the emulator exits.
    return sv.mmioGpa(gva) >= 0 ? this.mmioExit(op, gva) : {};
  }

  private mmioExit(op: AccessOp, gva: number): Outcome {
    return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa: this.sv.mmioGpa(gva), is_write: op.kind === 'write' ? 1 : 0 } } };
  }

  /** TDP: the guest's own walk (no exit; a #PF goes straight to the guest), then the GPA access through the MMU. */
  private tdpAccess(op: AccessOp): Outcome {
    const sv = this.sv;
    if (op.private !== undefined) throw new NotSupportedYet('private/shared accesses need the TDP MMU (tdp_mmu=Y)');
    let gpa = op.addr;
    if (op.space === 'gva') {
      const t = this.guest.translate(op.vcpu, (BigInt(op.hi >>> 0) << 32n) | BigInt(op.lo >>> 0), op.kind, op.user);
      if (t.gpa === undefined) return { exception: { vector: 'PF', fields: { error_code: t.walker.error_code, address: op.addr } } };
      gpa = t.gpa;
    }
    sv.access(gpa, op.kind === 'write', false, op.kind === 'fetch');
    if (sv.kvm.kvm_memslots(0).lookup(Math.floor(gpa / PAGE)) === undefined) {
      return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa, is_write: op.kind === 'write' ? 1 : 0 } } };
    }
    if (op.kind === 'write' && op.hasValue) sv.mem.write64(gpa - (gpa % 8), Number(op.value & 0xffff_ffffn), Number((op.value >> 32n) & 0xffff_ffffn));
    return {};
  }

  invlpg(op: { vcpu: number; gva: bigint }): Outcome {
    // With TDP, INVLPG is not intercepted: nothing for the MMU to do.
    if (!this.tdp) this.on(op.vcpu).invlpg(Number(op.gva));
    return {};
  }

  getDirtyLog(op: { slot: number; asId: number }): Outcome & { bitmap?: Uint8Array } {
    if (op.asId !== 0) return { ret: -22 }; // -EINVAL: no SMM address space here
    // PML under the legacy TDP MMU harvests by clearing D bits in the rmaps, which is not modelled.
    if (this.sv.kvm.arch.cpu_dirty_log_size !== 0) throw new NotSupportedYet('KVM_GET_DIRTY_LOG with PML under tdp_mmu=N (param pml=N)');
    const r = this.sv.getDirtyLog(op.slot);
    if (typeof r === 'number') return { ret: r };
    // Little-endian bytes, as KVM copies the longs out.
    const bytes = new Uint8Array(r.length * 4);
    for (let i = 0; i < r.length; i++) for (let b = 0; b < 4; b++) bytes[4 * i + b] = (r[i]! >>> (8 * b)) & 0xff;
    return { ret: 0, bitmap: bytes };
  }

  enableCap(op: { cap: string; args0: number }): Outcome {
    if (op.cap === 'KVM_CAP_DISABLE_QUIRKS2') return disableQuirks2(this.sv.kvm, op.args0);
    throw new NotSupportedYet(`${op.cap} under the ${this.tdp ? 'legacy TDP' : 'shadow'} MMU`);
  }

  invpcid(op: { vcpu: number; type: number; pcid: bigint; gva: bigint }): Outcome {
    // With TDP, INVPCID is not intercepted either.
    if (this.tdp) return {};
    const half = (v: bigint, shift: bigint): number => Number((v >> shift) & 0xffff_ffffn);
    // Types above 3 are #GP; the statement only spells 0-3, anything else comes from a caller.
    if (!this.on(op.vcpu).invpcidDesc(op.type, half(op.pcid, 0n), half(op.pcid, 32n), half(op.gva, 0n), half(op.gva, 32n))) {
      return { exception: { vector: 'GP', fields: { error_code: 0 } } };
    }
    return {};
  }

  invalidateRange(op: RangeOp & { event: string }): Outcome {
    const sv = this.sv;
    if (op.space === 'hva') {
      sv.notifierInvalidateHva(op.start, op.end);
      return {};
    }
    // A GPA range stands for the host range behind each slot it overlaps.
    for (const s of sv.kvm.kvm_memslots(0).slots) {
      const lo = Math.max(op.start, s.base_gfn * PAGE);
      const hi = Math.min(op.end, (s.base_gfn + s.npages) * PAGE);
      if (lo < hi) sv.notifierInvalidateHva(s.userspace_addr + lo - s.base_gfn * PAGE, s.userspace_addr + hi - s.base_gfn * PAGE);
    }
    return {};
  }

  query(subject: string, sel: Fields): Fields[] | undefined {
    const id = sel['vcpu'] === undefined ? 0 : Number(sel['vcpu']);
    // A vCPU the VM does not have matches nothing.
    if (id >= this.sv.vcpus.length) return [];
    const sv = this.on(id);
    switch (subject) {
      case 'spte': {
        if (this.tdp && sel['gva'] !== undefined) throw new NotSupportedYet('with TDP, SPTEs map guest physical addresses: use gpa= or gfn=');
        if (!this.tdp && sel['gva'] === undefined && (this.guest.regs(id).cr0 & CR0_PG) !== 0n) {
          throw new NotSupportedYet('under shadow paging with CR0.PG set, SPTEs are found by gva=');
        }
        const gva = Number(sel['gva'] ?? sel['gpa'] ?? Number(sel['gfn']) * PAGE);
        const path = sv.sptes(gva);
        if (sel['at_level'] !== undefined) {
          const e = path.find((p) => p.level === Number(sel['at_level']));
          return e ? [spteExpectFields(sv.kvm.masks, e.lo, e.hi, e.level, e.sptep)] : [];
        }
        const last = path[path.length - 1];
        return last ? [spteExpectFields(sv.kvm.masks, last.lo, last.hi, last.level, last.sptep)] : [];
      }
      case 'sp':
        return sv.shadowPages()
          .filter((p) => (sel['gfn'] === undefined || p.gfn === Number(sel['gfn'])) && (sel['level'] === undefined || (p.role & 0xf) === Number(sel['level'])))
          .map((p) => roleExpectFields(p.role & ~(1 << 20), {
            gfn: p.gfn, level: p.role & 0xf, unsync: p.unsync ? 1 : 0, unsync_children: p.unsync_children, parent_count: p.parent_count,
            pae_root: p.decoded.pae_root ? 1 : 0, root_count: p.root_count, tdp_mmu_page: 0,
          }));
      case 'root': {
        const r = sv.roots();
        const f = roleExpectFields(r.root_role, { kind: r.kind, pgd: sv.sv.root_pgd });
        if (r.root) f['root_count'] = r.root.root_count;
        return [f];
      }
      case 'roots': {
        // The current root (cached=0) and the prev_roots entries (cached=1), each with the CR3 it was cached under.
        const r = sv.roots();
        const all = [{ root: r.root, pgd: sv.sv.root_pgd, cached: 0 }, ...r.prev.map((p) => ({ root: p.root, pgd: p.pgd, cached: 1 }))];
        return all.flatMap((e) => (e.root === null ? [] : [roleExpectFields(e.root.role & ~(1 << 20), { root_count: e.root.root_count, gfn: e.root.gfn, pgd: e.pgd, cached: e.cached })]));
      }
      case 'walk': {
        const t = this.guest.translate(id, BigInt(sel['gva']!), ((sel['access'] as string | undefined) ?? 'read') as 'read', sel['cpl'] === 'user', true);
        const w = t.walker;
        return [t.gpa !== undefined ? { gpa: t.gpa, fault: 0, level: w.level, pte_access: w.pte_access } : { fault: 1, error_code: w.error_code, level: w.level }];
      }
      case 'memslot': {
        const s = sv.slotById(Number(sel['slot']));
        if (s === undefined) return [];
        const dirty = (s.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 ? 1 : 0;
        return [{ base_gfn: s.base_gfn, npages: s.npages, flags: s.flags, userspace_addr: s.userspace_addr, dirty_logging: dirty }];
      }
      default:
        return undefined;
    }
  }

  stats(): Record<string, number> {
    return this.vm ? this.vm.stats() : {};
  }
}

/** TDP with tdp_mmu=0: the vendor's TDP configuration the legacy MMU's direct roots follow. */
export interface ShadowTdpOptions {
  vendor_config: Partial<KvmX86VendorConfig>;
}

/** The shadow MMU: TDP off (shadow paging), or with `tdp` TDP on and tdp_mmu=0 (direct shadow pages). */
export function createShadowEngine(cfg: VmConfig, params: Partial<KvmX86ModuleParams>, tdp?: ShadowTdpOptions): ScenarioEngine | string {
  if (cfg.type !== 'default') return tdp ? `VM type ${cfg.type} needs the TDP MMU (tdp_mmu=Y)` : `VM type ${cfg.type} needs TDP`;
  const gp = cfg.variants['gmem_prepare'];
  if (gp !== undefined && gp !== 'upstream' && gp !== 'on_alloc') return 'gmem_prepare concerns SEV-SNP, which needs TDP';
  return new ShadowEngine(cfg, params, tdp);
}
