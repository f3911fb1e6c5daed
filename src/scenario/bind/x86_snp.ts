/**
 * SEV-SNP on top of the x86 TDP binding: the RMP (src/engine/x86/sev_snp.ts), private faults served
 * by guest_memfd (whose prepare hook makes pages private in the RMP), the hardware's RMP check of
 * guest accesses, PVALIDATE and page-state changes. What the CPU does (the NPT walk, the RMP check,
 * PVALIDATE) runs here; what KVM does runs in the engine: npf_interception for every #NPF and, for
 * an RMP violation, sev_handle_rmp_fault as npf_interception's tail.
 */
import type { PrivateMemKvm } from '../../engine/kvm/attributes';
import type { X86Vm } from '../../engine/x86/index';
import { npf_interception } from '../../engine/x86/mmu';
import { KVM_EXIT_MEMORY_FAULT } from '../../engine/x86/vcpu';
import {
  PFERR_FETCH_MASK, PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_PRESENT_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK,
} from '../../engine/x86/pferr';
import {
  RMP_PG_SIZE_2M, RMP_PG_SIZE_4K, SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_SHARED, pvalidate, snp_begin_psc,
  snp_lookup_rmpentry, snp_rmp_view, to_kvm_sev_info, type PscEntry, type SevInfo,
} from '../../engine/x86/sev_snp';
import type { Exit, Fields, Outcome } from '../engine_api';

const PAGE = 4096;

interface NptLeaf {
  present: boolean;
  w: boolean;
  x: boolean;
  level: number;
  pfn: number;
}

export class SnpLayer {
  readonly sev: SevInfo;
  private readonly pk: PrivateMemKvm;

  constructor(readonly vm: X86Vm) {
    this.pk = vm.kvm as unknown as PrivateMemKvm;
    // X86Vm ran sev_snp_init for the SNP VM: guest_memfd's prepare hook assigns pages in the RMP.
    this.sev = to_kvm_sev_info(this.pk)!;
  }

  /** The NPT leaf for a gfn in the vCPU's root: permissions (P/RW/NX), level, and the pfn behind the gfn. */
  private leaf(id: number, gfn: number): NptLeaf | undefined {
    const root = this.vm.current_root(id);
    if (!root) return undefined;
    for (let level = root.role & 0xf; level >= 1; level--) {
      const v = this.vm.read_spte(gfn, level, root);
      if (!v || (v.lo & 0x800) === 0) return undefined;
      if (level === 1 || (v.lo & 0x80) !== 0) {
        const pages = 512 ** (level - 1);
        return { present: (v.lo & 1) !== 0, w: (v.lo & 2) !== 0, x: (v.hi & 0x8000_0000) === 0, level, pfn: v.pfn + (gfn % pages) };
      }
    }
    return undefined;
  }

  /** KVM's #NPF handling: npf_interception (which runs sev_handle_rmp_fault for an RMP violation). */
  private npf(id: number, gpa: number, err_lo: number, err_hi: number): Outcome | undefined {
    const vcpu = this.vm.vcpu(id);
    const ret = npf_interception(vcpu, gpa, err_lo, err_hi);
    if (ret > 0) return undefined;
    const ex = vcpu.run_exit;
    if (ex && ex.exit_reason === KVM_EXIT_MEMORY_FAULT) return { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', vcpu: id, fields: { flags: ex.flags, gpa: ex.gpa, size: ex.size } } };
    if (ret === 0) return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: id, fields: { gpa, is_write: (err_lo & PFERR_WRITE_MASK) !== 0 ? 1 : 0 } } };
    return { ret };
  }

  /** Make sure the NPT maps gpa for the access; undefined when it does, else what stopped it. */
  private mapped(id: number, gpa: number, kind: 'read' | 'write' | 'fetch', isPrivate: boolean): { leaf?: NptLeaf; stop?: Outcome } {
    const gfn = Math.floor(gpa / PAGE);
    for (let i = 0; i < 8; i++) {
      this.vm.enter(this.vm.vcpu(id));
      const l = this.leaf(id, gfn);
      const ok = l !== undefined && l.present && (kind === 'read' || (kind === 'write' ? l.w : l.x));
      if (ok) return { leaf: l };
      const err_lo = PFERR_USER_MASK | (kind === 'write' ? PFERR_WRITE_MASK : 0) | (kind === 'fetch' ? PFERR_FETCH_MASK : 0) | (l?.present ? PFERR_PRESENT_MASK : 0);
      const stop = this.npf(id, gpa, err_lo, PFERR_GUEST_FINAL_MASK_HI | (isPrivate ? PFERR_GUEST_ENC_MASK_HI : 0));
      if (stop) return { stop };
    }
    return { stop: { ret: -5 } };
  }

  /**
   * A guest access with the C-bit set (private) or clear (shared): the engine's X86Vm.access does the NPT
   * walk and the RMP check, and KVM's #NPF handling. The CPU retries while KVM resumes the guest. An
   * unvalidated private page raises #VC in the guest (nothing reaches userspace).
   */
  access(id: number, gpa: number, kind: 'read' | 'write' | 'fetch', isPrivate: boolean): Outcome & { vc?: boolean } {
    const vcpu = this.vm.vcpu(id);
    for (let i = 0; i < 8; i++) {
      const r = this.vm.access(id, gpa, kind === 'fetch' ? 'exec' : kind, isPrivate);
      if (r.exit === 'none') return {};
      if (r.exit === 'vc') return { vc: true };
      const ret = r.ret ?? 1;
      if (ret > 0) continue;
      const ex = vcpu.run_exit;
      if (ex && ex.exit_reason === KVM_EXIT_MEMORY_FAULT) return { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', vcpu: id, fields: { flags: ex.flags, gpa: ex.gpa, size: ex.size } } };
      if (ret === 0) return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: id, fields: { gpa, is_write: kind === 'write' ? 1 : 0 } } };
      return { ret };
    }
    return { ret: -5 };
  }

  /** PVALIDATE of the page at gpa: rc in `ret` (0, 6 = FAIL_SIZEMISMATCH, ...), rFLAGS.CF in `cf`. */
  pvalidate(id: number, gpa: number, size: number, validate: boolean): Outcome & { cf?: boolean } {
    const rmpSize = size >= 2 << 20 ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K;
    for (let i = 0; i < 8; i++) {
      const m = this.mapped(id, gpa, 'read', true);
      if (m.stop) return m.stop;
      const r = pvalidate(this.sev.rmp, this.sev.asid, gpa, m.leaf!.pfn, m.leaf!.level, rmpSize, validate);
      if (r.result !== 'npf') return { ret: r.rc, cf: r.cf };
      const stop = this.npf(id, gpa, r.err_lo, r.err_hi);
      if (stop) return stop;
    }
    return { ret: -5 };
  }

  /** A page-state change request: KVM turns it into KVM_HC_MAP_GPA_RANGE exits for userspace. */
  psc(id: number, start: number, end: number, to: 'private' | 'shared'): Outcome {
    const entries: PscEntry[] = [];
    const op = to === 'private' ? SNP_PAGE_STATE_PRIVATE : SNP_PAGE_STATE_SHARED;
    for (let a = start - (start % PAGE); a < end; ) {
      const big = a % (2 << 20) === 0 && a + (2 << 20) <= end;
      entries.push({ gfn: a / PAGE, operation: op, pagesize: big ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K });
      a += big ? 2 << 20 : PAGE;
    }
    const exits = snp_begin_psc(this.pk, entries);
    const e = exits[0];
    if (!e) return {};
    const exit: Exit = { reason: 'KVM_EXIT_HYPERCALL', vcpu: id, fields: { nr: e.nr, args0: e.gpa, args1: e.npages, args2: e.attrs, exits: exits.length } };
    return { exit };
  }

  /** `expect rmp`: by gpa through the guest_memfd slot, or by host pfn. */
  query(sel: Fields): Fields[] {
    if (sel['gpa'] !== undefined) {
      const v = snp_rmp_view(this.pk, Math.floor(Number(sel['gpa']) / PAGE));
      if (!v) return [];
      return [{ assigned: v.assigned, pagesize: v.pagesize, immutable: v.immutable, gpa: v.gpa, asid: v.asid, validated: v.validated, vmsa: v.vmsa, level: v.level, pfn: v.pfn }];
    }
    const pfn = Number(sel['pfn']);
    const e = this.sev.rmp.entry(pfn);
    const l = { assigned: false, level: 1 };
    snp_lookup_rmpentry(this.sev.rmp, pfn, l);
    return [{ ...e, level: l.level, pfn }];
  }
}
