/**
 * Private memory for the model check (./model_check.ts): which confidential VM type a capture comes from,
 * and the memory attributes the model needs so that its faults take the private or shared path (and map
 * at the level) the capture shows. KVM_SET_MEMORY_ATTRIBUTES and guest_memfd are not traced, so the
 * attributes are reconstructed from their effects:
 * - the kind of each fault: TDX by the shared bit of the faulting GPA, SEV-SNP by the #NPF error code's
 *   encrypted bit (PFERR_GUEST_ENC, bit 34); a SW-protected VM's fault follows the attribute, so its kind
 *   never shows (private and shared SPTEs of such a VM look alike);
 * - conversions: a run of leaf removals outside a fault is the zap of a conversion away from the side
 *   that leaf was on (TDX: mirror root = private, direct root = shared; otherwise the model's attribute);
 * - mixed huge pages: a fault that mapped smaller than the model could means its huge page has gfns of
 *   both kinds (KVM_LPAGE_MIXED_FLAG); one gfn of that huge page that the capture never faults on is
 *   given the other kind.
 */
import { EVENT_BY_NAME, KVM_ISA_VMX } from '../engine/tracepoints/index';
import { kvm_gmem_create, kvm_gmem_file } from '../engine/kvm/guest_memfd';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, KVM_X86_TDX_VM, type HostBacking, type X86Vm } from '../engine/x86/index';
import { __kvm_mmu_max_mapping_level } from '../engine/x86/mmu';
import type { ParsedEvent } from './event';

const S_EXIT = EVENT_BY_NAME.get('kvm_exit')!;
const S_RMP = EVENT_BY_NAME.get('kvm_rmp_fault')!;
const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4];
/** VMX basic exit reason of a TDG.VP.VMCALL (only a TD exits with it). */
const EXIT_REASON_TDCALL = 77;
/** PFERR_GUEST_ENC_MASK (bit 34) and PFERR_GUEST_RMP_MASK (bit 31) of the #NPF error code. */
const PFERR_GUEST_ENC_HI = 1 << 2;
export const PFERR_GUEST_RMP_LO = 0x8000_0000;
/** PFERR_SYNTHETIC_MASK (bits 48-49): npf_interception traces PRIVATE_ACCESS it added itself. */
export const PFERR_SYNTHETIC_HI = 0x3_0000;

export type PrivateKind = 'tdx' | 'snp' | 'sw';

/** What the capture shows of private memory, gathered during the scan. */
export class PrivateEvidence {
  /** TDX shared bit (47 or 51): a fault at a GPA with it set requested the gfn without it. */
  sharedBit = 0;
  tdcallExits = 0;
  /** #NPF faults with PFERR_GUEST_ENC, and kvm_rmp_fault events (both only in SEV-SNP guests). */
  encFaults = 0;
  rmpFaults = 0;
  /** A huge leaf zapped outside a fault, then refaulted smaller (an attribute change made it mixed). */
  shrinkAfterZap = 0;
  /** 2M regions (by index) of the zapped huge leaves that were refaulted smaller. */
  readonly shrinkRegions = new Set<number>();
  /** Every gfn a fault requested (a page to give the other kind must not be one of them). */
  readonly requested = new Set<number>();
  /** Huge leaves zapped outside faults: `${level}:${index}`. */
  private readonly zappedHuge = new Set<string>();

  onEvent(ev: ParsedEvent): void {
    if (ev.schema === S_EXIT) {
      if (ev.lo[S_EXIT.index['isa']!] === KVM_ISA_VMX && (ev.lo[S_EXIT.index['exit_reason']!]! & 0xffff) === EXIT_REASON_TDCALL) this.tdcallExits++;
    } else if (ev.schema === S_RMP) this.rmpFaults++;
  }

  onFault(errHi: number): void {
    if ((errHi & PFERR_GUEST_ENC_HI) !== 0) this.encFaults++;
  }

  /** A request of a fault at `gpa` (-1: no kvm_page_fault). */
  onRequest(gpa: number, gfn: number, level: number): void {
    this.requested.add(gfn);
    if (gpa >= 0 && this.sharedBit === 0) {
      for (const bit of [47, 51]) {
        const b = 2 ** bit;
        if (Math.floor(gpa / b) % 2 === 1 && Math.floor((gpa - b) / 4096) === gfn) this.sharedBit = bit;
      }
    }
    for (let l = level + 1; l <= 3; l++) {
      if (this.zappedHuge.has(`${l}:${Math.floor(gfn / SPAN[l]!)}`)) {
        this.shrinkAfterZap++;
        this.shrinkRegions.add(Math.floor(gfn / 512));
        break;
      }
    }
  }

  onZappedLeaf(gfn: number, level: number): void {
    if (level >= 2) this.zappedHuge.add(`${level}:${Math.floor(gfn / SPAN[level]!)}`);
  }

  /** The VM type the evidence points to (undefined: a VM without private memory). */
  kind(format: 'ept' | 'npt', nxHugePages: boolean): PrivateKind | undefined {
    if (format === 'ept' && (this.sharedBit !== 0 || this.tdcallExits > 0)) return 'tdx';
    if (format === 'npt' && (this.encFaults > 0 || this.rmpFaults > 0)) return 'snp';
    // with the NX mitigation on, an executable refault maps small for that reason alone
    if (this.shrinkAfterZap > 0 && !nxHugePages) return 'sw';
    return undefined;
  }

  /** A GPA without the TDX shared bit (the gfn KVM looks the memslot up with). */
  strip(gpa: number): number {
    if (this.sharedBit === 0) return gpa;
    const b = 2 ** this.sharedBit;
    return Math.floor(gpa / b) % 2 === 1 ? gpa - b : gpa;
  }

  describe(kind: PrivateKind | undefined, levels: number): string {
    if (kind === 'tdx') return `TDX (shared bit ${this.sharedBit || (levels === 5 ? 51 : 47)}: ${this.sharedBit ? 'stripped from faulting GPAs' : 'TDCALL exits'}; private faults through the mirror root)`;
    if (kind === 'snp') return `SEV-SNP (${this.encFaults ? 'PFERR_GUEST_ENC in #NPF error codes' : 'kvm_rmp_fault events'})`;
    if (kind === 'sw') return 'KVM_X86_SW_PROTECTED_VM (huge leaves zapped and refaulted smaller: attribute changes)';
    return '';
  }
}

/** A fault as the private-memory model needs it. */
export interface PrivateFault {
  gpa: number;
  errHi: number;
  /** The error code came from kvm_page_fault (else the kind follows the attribute, as for a prefault). */
  fromPageFault: boolean;
  gfn: number;
  /** Goal level of the capture's kvm_mmu_spte_requested. */
  level: number;
}

/** The model VM's private memory, kept in step with the capture. */
export class PrivateMemoryModel {
  conversions = 0;

  constructor(
    private readonly vm: X86Vm,
    readonly kind: PrivateKind,
    private readonly evidence: PrivateEvidence,
    private readonly nxHugePages: boolean,
  ) {}

  static vmType(kind: PrivateKind): number {
    return kind === 'tdx' ? KVM_X86_TDX_VM : kind === 'snp' ? KVM_X86_SNP_VM : KVM_X86_SW_PROTECTED_VM;
  }

  /**
   * A slot of a TDX or SEV-SNP VM is bound to a guest_memfd (a private fault elsewhere exits), with huge
   * folios where the capture mapped huge pages (a model knob: 6.18 allocates order-0 folios); their VMMs
   * make all guest memory private before the guest runs. A SW-protected VM starts shared, and only the
   * slots where attribute changes showed get a guest_memfd.
   */
  addSlot(slot: number, gpa: number, size: number, backing: HostBacking, hva?: number): number {
    const kvm = this.vm.kvm;
    if (this.kind === 'sw' && ![...this.evidence.shrinkRegions].some((r) => r * 0x20_0000 >= gpa && r * 0x20_0000 < gpa + size)) {
      return this.vm.add_slot(slot, gpa, size, { host_backing: backing, ...(hva !== undefined ? { userspace_addr: hva } : {}) });
    }
    const fd = kvm_gmem_create(kvm.private_mem, { size, flags: 0 }, { huge_folios: backing !== '4k' });
    if (fd < 0) return fd;
    const o = { flags: KVM_MEM_GUEST_MEMFD, host_backing: backing, guest_memfd: fd, guest_memfd_offset: 0, ...(hva !== undefined ? { userspace_addr: hva } : {}) };
    const r = this.vm.add_slot(slot, gpa, size, o);
    if (r < 0 || this.kind === 'sw') return r;
    return this.vm.set_memory_attributes(gpa, size, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  }

  private isPrivate(gfn: number): boolean {
    return this.vm.kvm.kvm_mem_is_private(gfn);
  }

  private convert(start: number, end: number, priv: boolean): void {
    const r = this.vm.set_memory_attributes(start * 4096, (end - start) * 4096, priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
    if (r < 0) throw new Error(`KVM_SET_MEMORY_ATTRIBUTES of gfns ${start.toString(16)}-${(end - 1).toString(16)} failed (${r})`);
    this.conversions++;
  }

  /**
   * Before a fault the capture mapped at `f.level`: the fault's gfn gets the fault's kind (its huge page
   * too if the capture mapped a huge leaf), and a huge page the model would map but the capture did not
   * becomes mixed.
   */
  beforeFault(f: PrivateFault): void {
    const g = f.gfn;
    let priv: boolean;
    if (!f.fromPageFault) priv = this.isPrivate(g);
    else if (this.kind === 'tdx') priv = this.evidence.strip(f.gpa) === f.gpa;
    else if (this.kind === 'snp') priv = (f.errHi & PFERR_GUEST_ENC_HI) !== 0;
    else priv = this.isPrivate(g);
    const span = SPAN[f.level] ?? 1;
    const start = g - (g % span);
    if (this.isPrivate(g) !== priv) this.convert(start, start + span, priv);
    else if (f.level >= 2 && this.vm.kvm.range_has_other_attrs(start, start + span, priv)) this.convert(start, start + span, priv);
    if (f.level >= 3 || this.predictLevel(g, priv) <= f.level) return;
    // A gfn of the next larger page, outside the capture's own page, that no fault of the capture names.
    const bigSpan = SPAN[f.level + 1]!;
    const bigStart = g - (g % bigSpan);
    const slot = this.vm.kvm.kvm_memslots(0).lookup(g)!;
    const lo = Math.max(bigStart, slot.base_gfn);
    const hi = Math.min(bigStart + bigSpan, slot.base_gfn + slot.npages);
    for (let h = lo; h < hi; h++) {
      if ((h >= start && h < start + span) || this.evidence.requested.has(h)) continue;
      this.convert(h, h + 1, !priv);
      return;
    }
  }

  /** The level the model would map `gfn` at now (without the fault's own limits). */
  private predictLevel(gfn: number, priv: boolean): number {
    const kvm = this.vm.kvm;
    const slot = kvm.kvm_memslots(0).lookup(gfn);
    if (!slot || (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 || this.nxHugePages) return 1;
    let max = 3;
    if (priv) {
      if (this.kind === 'tdx') return 1;
      const file = slot.guest_memfd >= 0 ? kvm_gmem_file(kvm.private_mem, slot.guest_memfd) : undefined;
      max = file?.huge_folios ? 2 : 1;
    }
    return __kvm_mmu_max_mapping_level(kvm, slot, gfn, max, priv);
  }

  /** A present leaf at exactly `level` on the path to `gfn` (a table there is not one). */
  private leafAt(root: ReturnType<X86Vm['current_root']>, gfn: number, level: number): boolean {
    const v = root ? this.vm.read_spte(gfn, level, root) : undefined;
    return v !== undefined && (v.lo & 0x800) !== 0 && (level === 1 || (v.lo & 0x80) !== 0);
  }

  /**
   * A fault that requested nothing although no leaf maps its gfn: in a VM with private memory that is
   * KVM_EXIT_MEMORY_FAULT, the fault's kind disagreeing with the gfn's attribute (or, in a SW-protected
   * VM, a private gfn in a slot without guest_memfd). The model's attribute is made to disagree too.
   */
  beforeUnmappedFault(f: { gpa: number; errLo: number; errHi: number }): void {
    const gpa = this.evidence.strip(f.gpa);
    const gfn = Math.floor(gpa / 4096);
    const vm = this.vm;
    const slot = vm.kvm.kvm_memslots(0).lookup(gfn);
    if (!slot) return;
    let priv: boolean | undefined;
    let root = vm.current_root(0);
    let g = gfn;
    if (this.kind === 'tdx') {
      priv = gpa === f.gpa;
      if (priv) root = vm.current_root(0, true);
      else g = Math.floor(f.gpa / 4096);
    } else if (this.kind === 'snp') {
      // an MMIO access (RSVD) faults on an SPTE the model already has
      if ((f.errLo & 8) !== 0) return;
      priv = (f.errHi & PFERR_GUEST_ENC_HI) !== 0;
    }
    for (let level = 1; level <= 3; level++) if (this.leafAt(root, g - (g % SPAN[level]!), level)) return;
    if (priv === undefined) {
      // SW-protected: only a slot without guest_memfd makes a fault stop here, on a private gfn
      if (slot.guest_memfd >= 0 || this.isPrivate(gfn)) return;
      this.convert(gfn, gfn + 1, true);
    } else if (this.isPrivate(gfn) === priv) this.convert(gfn, gfn + 1, !priv);
  }

  /**
   * The leaves a run of removals outside a fault took away, converted away from the side each was on
   * (adjacent leaves of one side in one call). A leaf the model does not have on either side is zapped.
   */
  convertZapped(leaves: Array<{ gfn: number; level: number }>): void {
    const ranges: Array<{ start: number; end: number; priv: boolean }> = [];
    const vm = this.vm;
    const mirror = this.kind === 'tdx' ? vm.current_root(0, true) : null;
    const direct = vm.current_root(0);
    const alias = this.kind === 'tdx' ? 2 ** (this.evidence.sharedBit - 12) : 0;
    for (const { gfn, level } of leaves) {
      const span = SPAN[level] ?? 1;
      let priv: boolean;
      if (this.kind === 'tdx') {
        if (this.leafAt(mirror, gfn, level)) priv = true;
        else if (this.leafAt(direct, gfn + alias, level)) priv = false;
        else {
          vm.zap_gfn_range(gfn, gfn + span);
          continue;
        }
      } else priv = this.isPrivate(gfn);
      ranges.push({ start: gfn, end: gfn + span, priv });
    }
    ranges.sort((a, b) => a.start - b.start);
    const merged: typeof ranges = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && last.priv === r.priv && last.end >= r.start) last.end = Math.max(last.end, r.end);
      else merged.push({ ...r });
    }
    for (const r of merged) this.convert(r.start, r.end, !r.priv);
  }
}
