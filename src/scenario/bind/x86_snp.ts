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
  RMP_PG_SIZE_2M, RMP_PG_SIZE_4K, SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_SHARED, pvalidate,
  snp_lookup_rmpentry, snp_rmp_view, to_kvm_sev_info, type PscExit, type SevInfo,
} from '../../engine/x86/sev_snp';
import {
  SNP_PAGE_STATE_PSMASH, SNP_PAGE_STATE_UNSMASH, ghcb_msr_psc_req, sev_vmgexit_psc, snp_begin_psc_msr, vmm_run_psc, type PscBufEntry,
} from '../../engine/x86/sev_psc';
import type { Fields, Outcome } from '../engine_api';

const PAGE = 4096;
/** VMGEXIT_PSC_MAX_ENTRY: the guest kernel's PSC buffer size. */
const VMGEXIT_PSC_MAX_ENTRY = 64;
const PSC_OPS: Record<string, number> = {
  private: SNP_PAGE_STATE_PRIVATE, shared: SNP_PAGE_STATE_SHARED, psmash: SNP_PAGE_STATE_PSMASH, unsmash: SNP_PAGE_STATE_UNSMASH,
};

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

  /**
   * A page-state change request over [start, end): through the GHCB PSC NAE (a buffer with 2M entries where
   * the range allows) or the GHCB MSR protocol (one VMGEXIT per 4K page). KVM forwards private/shared runs
   * as KVM_HC_MAP_GPA_RANGE exits. Without `serve` the statement reports the first exit (and the VMM never
   * re-enters, so the rest of the request is dropped); with `serve` the VMM converts each range and
   * re-enters until the guest resumes, and the result is the GHCB's: sw_exit_info_2 for the NAE, the
   * response's GHCBData[63:32] for the MSR protocol (0 = done).
   */
  psc(id: number, start: number, end: number, to: 'private' | 'shared' | 'psmash' | 'unsmash', via: 'ghcb' | 'msr', serve: boolean): Outcome {
    const vcpu = this.vm.vcpu(id);
    const op = PSC_OPS[to]!;
    const exits: PscExit[] = [];
    const report = (): Outcome => {
      const e = exits[0]!;
      return { exit: { reason: 'KVM_EXIT_HYPERCALL', vcpu: id, fields: { nr: e.nr, args0: e.gpa, args1: e.npages, args2: e.attrs, exits: exits.length } } };
    };
    const first = start - (start % PAGE);
    if (via === 'msr') {
      for (let a = first; a < end; a += PAGE) {
        const [lo, hi] = ghcb_msr_psc_req(a / PAGE, op);
        const run = vmm_run_psc(vcpu, snp_begin_psc_msr(vcpu, lo, hi), true, { punch_hole: true, serve });
        exits.push(...run.exits);
        if (!serve && exits.length > 0) return report();
        if (run.result[1] !== 0) return { ret: run.result[1] };
      }
      return { ret: 0 };
    }
    const entries: PscBufEntry[] = [];
    for (let a = first; a < end; ) {
      const big = a % (2 << 20) === 0 && a + (2 << 20) <= end;
      entries.push({ cur_page: 0, gfn: a / PAGE, operation: op, pagesize: big ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K });
      a += big ? 2 << 20 : PAGE;
    }
    // The guest issues one VMGEXIT per buffer of at most VMGEXIT_PSC_MAX_ENTRY (64) entries.
    for (let i = 0; i < entries.length; i += VMGEXIT_PSC_MAX_ENTRY) {
      const chunk = entries.slice(i, i + VMGEXIT_PSC_MAX_ENTRY);
      const run = vmm_run_psc(vcpu, sev_vmgexit_psc(vcpu, { cur_entry: 0, end_entry: chunk.length - 1, entries: chunk }), false, { punch_hole: true, serve });
      exits.push(...run.exits);
      if (!serve && exits.length > 0) return report();
      if (run.result[0] !== 0 || run.result[1] !== 0) return { ret: run.result[1] * 2 ** 32 + run.result[0] }; // sw_exit_info_2 (error codes stay below 2^53)
    }
    return { ret: 0 };
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
