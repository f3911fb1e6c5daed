/**
 * The guest side of an x86 VM under TDP: guest memory holding the guest's own page tables, its
 * control registers, and accesses by GVA. With EPT/NPT the CPU walks the guest tables itself, so the
 * walk here uses the engine's walker with tracepoints and probes muted (KVM runs no code for a
 * hardware walk); every guest table the walk touches is a guest-physical access through the TDP
 * tables and may exit like any other (an EPT violation with "GVA valid, not translated" / an #NPF
 * with PFERR_GUEST_PAGE).
 */
import { GuestMemory } from '../../engine/mem/guest_memory';
import { probes } from '../../engine/probes';
import { trace } from '../../engine/trace_sink';
import type { X86Vm } from '../../engine/x86/index';
import {
  EPT_VIOLATION_ACC_READ,
  EPT_VIOLATION_ACC_WRITE,
  EPT_VIOLATION_GVA_IS_VALID,
  handle_ept_violation,
  npf_interception,
} from '../../engine/x86/mmu';
import {
  createGuestMmu,
  type GuestMmu,
  GuestWalker,
  MemoryGuestPageTables,
  walk_addr_generic,
} from '../../engine/x86/paging_tmpl';
import { PFERR_FETCH_MASK, PFERR_GUEST_PAGE_MASK_HI, PFERR_PRESENT_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK } from '../../engine/x86/pferr';

const PAGE = 4096;
const EINVAL = -22;

// Architectural register bits (SDM vol. 3, 2.5 / APM vol. 2, 3.1).
const CR0_PG = 31;
const CR0_WP = 16;
const CR4_PSE = 4;
const CR4_PAE = 5;
const CR4_LA57 = 12;
const CR4_SMEP = 20;
const CR4_SMAP = 21;
const CR4_PKE = 22;
const EFER_LME = 8;
const EFER_LMA = 10;
const EFER_NX = 11;

const bit = (v: bigint, n: number) => ((v >> BigInt(n)) & 1n) === 1n;

interface Regs {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

interface VcpuGuest {
  regs: Regs;
  src: MemoryGuestPageTables;
  mmu: GuestMmu;
}

export type Mode = '32bit' | 'pae' | '4level' | '5level';

/** Outcome of a guest step: nothing (done), or what stopped it. */
export interface GuestStop {
  exit?: { reason: string; fields: Record<string, number> };
  ret?: number;
}

const ALWAYS = (): boolean => true;

export class X86Guest {
  readonly mem: GuestMemory;
  private readonly vcpus: VcpuGuest[] = [];
  /** Next free table page per CR3 for `guest map`. */
  private readonly poolNext = new Map<number, { next: number; end: number }>();
  private readonly walker = new GuestWalker();
  private readonly wvcpu = { vcpu_id: 0, rflags: 0, pkru: 0 };

  /** `vm`: the TDP VM whose tables the CPU's table accesses go through (none under shadow paging). */
  constructor(
    private readonly tdpVm: X86Vm | undefined,
    readonly maxphyaddr: number,
    readonly amd: boolean,
    mem?: GuestMemory,
  ) {
    this.mem = mem ?? new GuestMemory(2 ** maxphyaddr);
  }

  private get vm(): X86Vm {
    if (!this.tdpVm) throw new Error('TDP table accesses on a shadow-paging VM');
    return this.tdpVm;
  }

  /** Error code of the last failed walk. */
  get walkErrorCode(): number {
    return this.walker.error_code;
  }

  /** Current registers of a vCPU. */
  regs(id: number): { cr0: bigint; cr3: bigint; cr4: bigint; efer: bigint } {
    return { ...this.vc(id).regs };
  }

  private vc(id: number): VcpuGuest {
    let v = this.vcpus[id];
    if (!v) {
      const src = new MemoryGuestPageTables(this.mem);
      v = { regs: { cr0: 0x10n, cr3: 0n, cr4: 0n, efer: 0n }, src, mmu: this.mmuFor({ cr0: 0x10n, cr3: 0n, cr4: 0n, efer: 0n }) };
      this.vcpus[id] = v;
    }
    return v;
  }

  private mmuFor(r: Regs): GuestMmu {
    const pg = bit(r.cr0, CR0_PG);
    // EFER.LMA follows LME once paging is on (the CPU sets it); an explicit LMA is taken as given.
    const lma = bit(r.efer, EFER_LMA) || (pg && bit(r.efer, EFER_LME));
    return createGuestMmu(
      {
        cr0_pg: pg, cr0_wp: bit(r.cr0, CR0_WP), cr4_pae: bit(r.cr4, CR4_PAE), cr4_pse: bit(r.cr4, CR4_PSE), cr4_smep: bit(r.cr4, CR4_SMEP),
        cr4_smap: bit(r.cr4, CR4_SMAP), cr4_pke: bit(r.cr4, CR4_PKE), cr4_la57: bit(r.cr4, CR4_LA57), efer_lma: lma, efer_nx: bit(r.efer, EFER_NX),
      },
      { maxphyaddr: this.maxphyaddr, gbpages: true, pse36: true, amd: this.amd },
    );
  }

  /** MOV to CR0/CR3/CR4, WRMSR EFER. A PAE CR3 load reads the PDPTEs and #GPs on a reserved bit. */
  setRegs(id: number, op: { cr0?: bigint; cr3?: bigint; cr4?: bigint; efer?: bigint }): number {
    const v = this.vc(id);
    const r = { ...v.regs, ...Object.fromEntries(Object.entries(op).filter(([, x]) => x !== undefined)) } as Regs;
    if (bit(r.cr0, CR0_PG) && !bit(r.cr4, CR4_PAE) && (bit(r.efer, EFER_LME) || bit(r.efer, EFER_LMA))) return EINVAL; // #GP
    const mmu = this.mmuFor(r);
    v.src.setCr3(Number(r.cr3 & 0xffff_ffffn), Number(r.cr3 >> 32n));
    if (mmu.level === 3 && !v.src.load_pdptrs(this.maxphyaddr)) return EINVAL; // #GP
    v.regs = r;
    v.mmu = mmu;
    return 0;
  }

  private allocTable(cr3: number, pool?: { start: number; end: number }): number {
    let p = this.poolNext.get(cr3);
    if (!p || pool) {
      p = pool ? { next: pool.start, end: pool.end } : { next: (cr3 - (cr3 % PAGE)) + PAGE, end: 2 ** this.maxphyaddr };
      this.poolNext.set(cr3, p);
    }
    if (p.next + PAGE > p.end) throw new RangeError('the page-table pool is used up');
    const gpa = p.next;
    p.next += PAGE;
    return gpa;
  }

  /**
   * Write page tables under `cr3` mapping [gvaStart, gvaEnd) to gpa.. with `pageSize` leaves, as the
   * selftests' virt_map does from the host. Non-leaf entries are P|RW|US; PAE PDPTEs are P only.
   */
  map(op: { cr3: number; gvaStart: bigint; gvaEnd: bigint; gpa: number; pageSize: number; flags: string[]; mode: string; pool?: { start: number; end: number } }): number {
    const mode = op.mode as Mode;
    const ps = BigInt(op.pageSize);
    if (op.gvaStart % ps !== 0n || op.gpa % op.pageSize !== 0 || (op.gvaEnd - op.gvaStart) % ps !== 0n) return EINVAL;
    if (mode === '32bit' && op.pageSize !== PAGE) return EINVAL;
    if (mode === 'pae' && op.pageSize > 2 ** 21) return EINVAL;
    let leafLo = 1;
    let leafHi = 0;
    const f = new Set(op.flags);
    if (f.has('rw') && !f.has('ro')) leafLo |= 2;
    if (f.has('user')) leafLo |= 4;
    if (f.has('pwt')) leafLo |= 8;
    if (f.has('pcd')) leafLo |= 0x10;
    if (f.has('accessed')) leafLo |= 0x20;
    if (f.has('dirty')) leafLo |= 0x40;
    if (f.has('global')) leafLo |= 0x100;
    if (f.has('nx')) leafHi |= 0x8000_0000;
    const leafLevel = op.pageSize >= 2 ** 30 ? 3 : op.pageSize >= 2 ** 21 ? 2 : 1;
    if (leafLevel > 1) leafLo |= 0x80;
    const top = mode === '5level' ? 5 : mode === '4level' ? 4 : mode === 'pae' ? 3 : 2;
    const esize = mode === '32bit' ? 4 : 8;
    const cr3 = mode === 'pae' ? op.cr3 - (op.cr3 % 32) : op.cr3 - (op.cr3 % PAGE);
    const tmp = new Uint32Array(2);
    try {
      let gpa = op.gpa;
      for (let gva = op.gvaStart; gva < op.gvaEnd; gva += ps, gpa += op.pageSize) {
        let table = cr3;
        for (let level = top; level > leafLevel; level--) {
          const idx = this.index(mode, gva, level);
          const at = table + idx * esize;
          this.mem.readEntry(at, esize, tmp);
          if ((tmp[0]! & 1) === 0) {
            const child = this.allocTable(op.cr3, op.pool);
            op.pool = undefined;
            const lo = mode === 'pae' && level === 3 ? child | 1 : child | 7;
            if (esize === 4) this.mem.write32(at, lo);
            else this.mem.write64(at, lo >>> 0, Math.floor(child / 2 ** 32));
            table = child;
          } else {
            table = (tmp[0]! & ~0xfff) >>> 0;
            if (esize === 8) table += (tmp[1]! & 0xfffff) * 2 ** 32;
          }
        }
        const at = table + this.index(mode, gva, leafLevel) * esize;
        const lo = ((gpa % 2 ** 32) | leafLo) >>> 0;
        if (esize === 4) this.mem.write32(at, lo);
        else this.mem.write64(at, lo, (Math.floor(gpa / 2 ** 32) | leafHi) >>> 0);
      }
    } catch (e) {
      if (e instanceof RangeError) return -12; // -ENOMEM: no room for tables
      throw e;
    }
    return 0;
  }

  private index(mode: Mode, gva: bigint, level: number): number {
    if (mode === '32bit') return Number((gva >> BigInt(12 + 10 * (level - 1))) & 0x3ffn);
    if (mode === 'pae' && level === 3) return Number((gva >> 30n) & 3n);
    return Number((gva >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
  }

  private modeOf(v: VcpuGuest): Mode | undefined {
    const m = v.mmu;
    if (m.direct) return undefined;
    return m.level === 5 ? '5level' : m.level === 4 ? '4level' : m.level === 3 ? 'pae' : '32bit';
  }

  /** GPA of the entry that maps `gva` at `level` under the vCPU's (or the given) CR3, following present entries. */
  entryGpa(id: number, gva: bigint, level: number, cr3?: number): number | undefined {
    const v = this.vc(id);
    const mode = this.modeOf(v);
    if (!mode) return undefined;
    const top = v.mmu.level;
    const esize = mode === '32bit' ? 4 : 8;
    let table = cr3 ?? Number(v.regs.cr3);
    table -= table % (mode === 'pae' ? 32 : PAGE);
    const tmp = new Uint32Array(2);
    for (let l = top; l >= level; l--) {
      const at = table + this.index(mode, gva, l) * esize;
      if (l === level) return at;
      this.mem.readEntry(at, esize, tmp);
      if ((tmp[0]! & 1) === 0 || (l > 1 && l < top && (tmp[0]! & 0x80) !== 0)) return undefined;
      table = ((tmp[0]! & ~0xfff) >>> 0) + (esize === 8 ? (tmp[1]! & 0xfffff) * 2 ** 32 : 0);
    }
    return undefined;
  }

  writeEntry(gpa: number, value: bigint, size: 4 | 8): void {
    if (size === 4) this.mem.write32(gpa, Number(value & 0xffff_ffffn));
    else this.mem.write64(gpa, Number(value & 0xffff_ffffn), Number((value >> 32n) & 0xffff_ffffn));
  }

  entrySize(id: number): 4 | 8 {
    return this.modeOf(this.vc(id)) === '32bit' ? 4 : 8;
  }

  /** The hardware walk for an access; returns the GPA, or undefined with the #PF in `walker`. */
  translate(id: number, gva: bigint, kind: 'read' | 'write' | 'fetch', user: boolean, readOnly = false): { gpa?: number; walker: GuestWalker } {
    const gpa = this.translateHalves(id, Number(gva & 0xffff_ffffn), Number(gva >> 32n), kind, user, readOnly);
    return gpa < 0 ? { walker: this.walker } : { gpa, walker: this.walker };
  }

  /** `translate` for the access loop: halves in, GPA or -1 (the #PF is in `walker`) out, no allocation. */
  translateHalves(id: number, lo: number, hi: number, kind: 'read' | 'write' | 'fetch', user: boolean, readOnly = false): number {
    const v = this.vc(id);
    if (v.mmu.direct) return lo >>> 0;
    const access = (kind === 'write' ? PFERR_WRITE_MASK : 0) | (kind === 'fetch' ? PFERR_FETCH_MASK : 0) | (user ? PFERR_USER_MASK : 0);
    this.wvcpu.vcpu_id = id;
    const prev = v.src.readOnly;
    if (readOnly) v.src.readOnly = ALWAYS;
    // The hardware's walk runs no KVM code: no tracepoints, no probes.
    const t = trace.enabled;
    const p = probes.armed;
    trace.enabled = false;
    probes.armed = false;
    try {
      const ok = walk_addr_generic(this.walker, this.wvcpu, v.mmu, v.src, lo, hi, access);
      return ok ? this.walker.gpa(lo) : -1;
    } finally {
      trace.enabled = t;
      probes.armed = p;
      v.src.readOnly = prev;
    }
  }

  /**
   * The CPU reads (and, setting A/D, writes) each guest table through the TDP tables. A miss is an
   * EPT violation with a valid GVA that was not the final translation, or an #NPF with
   * PFERR_GUEST_PAGE; KVM maps the page and the CPU retries.
   */
  tableAccesses(id: number): GuestStop | undefined {
    const w = this.walker;
    const kvm = this.vm.kvm;
    const isEpt = kvm.vendor.vendor === 'vmx';
    for (let i = 0; i < w.nsteps; i++) {
      const gpa = w.step_gpa[i]!;
      if (gpa < 0) continue; // a PAE PDPTR comes from the register cache
      const level = w.step_level[i]!;
      // With EPT A/D on, the CPU's accesses to guest paging structures count as writes.
      const write = (isEpt && kvm.vendor.ept_ad) || w.ad_set[level - 1] !== 0;
      const stop = this.tdpAccess(id, gpa - (gpa % PAGE), write);
      if (stop) return stop;
    }
    return undefined;
  }

  private tdpAccess(id: number, gpa: number, write: boolean): GuestStop | undefined {
    const vcpu = this.vm.vcpu(id);
    const kvm = this.vm.kvm;
    const isEpt = kvm.vendor.vendor === 'vmx';
    for (let attempt = 0; attempt < 8; attempt++) {
      this.vm.enter(vcpu);
      const perms = this.leafPerms(id, Math.floor(gpa / PAGE));
      if (perms.present && (write ? perms.w : perms.r)) return undefined;
      let ret: number;
      if (isEpt) {
        const qual = (write ? EPT_VIOLATION_ACC_WRITE : EPT_VIOLATION_ACC_READ) | (perms.present ? perms.bits << 3 : 0) | EPT_VIOLATION_GVA_IS_VALID;
        ret = handle_ept_violation(vcpu, gpa, qual);
      } else {
        const err = PFERR_USER_MASK | (write ? PFERR_WRITE_MASK : 0) | (perms.present ? PFERR_PRESENT_MASK : 0);
        ret = npf_interception(vcpu, gpa, err, PFERR_GUEST_PAGE_MASK_HI);
      }
      if (ret === 0) {
        const ex = vcpu.run_exit;
        if (ex && ex.exit_reason === 39) return { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', fields: { flags: ex.flags, gpa: ex.gpa, size: ex.size } } };
        return { exit: { reason: 'KVM_EXIT_MMIO', fields: { gpa, is_write: write ? 1 : 0 } } };
      }
      if (ret < 0) return { ret };
    }
    return undefined;
  }

  /** Permission bits of the TDP leaf for a gfn in the vCPU's root (EPT RWX, or NPT P/RW as R/W). */
  private leafPerms(id: number, gfn: number): { present: boolean; r: boolean; w: boolean; bits: number } {
    const root = this.vm.current_root(id);
    const none = { present: false, r: false, w: false, bits: 0 };
    if (!root) return none;
    const isEpt = this.vm.kvm.vendor.vendor === 'vmx';
    for (let level = root.role & 0xf; level >= 1; level--) {
      const v = this.vm.read_spte(gfn, level, root);
      if (!v || (v.lo & 0x800) === 0) return none;
      if (level === 1 || (v.lo & 0x80) !== 0) {
        if (isEpt) {
          const bits = v.lo & 7;
          return { present: bits !== 0, r: (bits & 1) !== 0, w: (bits & 2) !== 0, bits };
        }
        const p = (v.lo & 1) !== 0;
        return { present: p, r: p, w: p && (v.lo & 2) !== 0, bits: 0 };
      }
    }
    return none;
  }
}
