/**
 * SEV-SNP guest page-state changes (arch/x86/kvm/svm/sev.c, asm/sev-common.h): the GHCB MSR protocol
 * request (one 4K page per VMGEXIT) and the GHCB Page State Change NAE event (a buffer of up to 253
 * entries). KVM does not convert anything itself: it forwards each run of adjacent same-operation
 * entries to userspace as KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) and, when userspace re-enters
 * KVM_RUN, marks those entries done and moves on to the next run. PSMASH/UNSMASH entries are hints
 * KVM completes without an exit. The conversion itself (KVM_SET_MEMORY_ATTRIBUTES, guest_memfd
 * invalidate -> RMPUPDATE to shared, prepare -> RMPUPDATE to private) is the VMM's job.
 *
 * 64-bit GHCB values (MSR contents, sw_exit_info_2) are kept as 32-bit halves.
 */
import { defineProbe, probes } from '../probes';
import {
  KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
  SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_SHARED, to_kvm_sev_info, vmm_handle_map_gpa_range, type PscExit,
} from './sev_snp';
import {
  KVM_HC_MAP_GPA_RANGE, kvm_map_gpa_range_exit, user_exit_on_hypercall, vcpu_run_state, vmm_run_map_gpa,
  type HypercallVcpu,
} from './hypercall_exit';

/** GHCB MSR protocol: request/response codes in GHCBData[11:0]. */
export const GHCB_MSR_INFO_MASK = 0xfff;
export const GHCB_MSR_PSC_REQ = 0x014;
export const GHCB_MSR_PSC_RESP = 0x015;
/** GHCB_MSR_PSC_RESP_ERROR: the response with bit 63 set (KVM's generic error). */
export const GHCB_MSR_PSC_RESP_ERROR_HI = 0x8000_0000;
/** enum psc_op beyond private/shared: hints KVM accepts and completes without an exit. */
export const SNP_PAGE_STATE_PSMASH = 3;
export const SNP_PAGE_STATE_UNSMASH = 4;
/** SVM_VMGEXIT_PSC, the NAE event code of a PSC buffer request. */
export const SVM_VMGEXIT_PSC = 0x8000_0010;
/** The GHCB-defined maximum number of entries; end_entry must be below it. */
export const VMGEXIT_PSC_MAX_COUNT = 253;
/** PSC NAE results in sw_exit_info_2, as [lo, hi]. */
export const VMGEXIT_PSC_ERROR_GENERIC: readonly [number, number] = [0, 0x100];
export const VMGEXIT_PSC_ERROR_INVALID_HDR: readonly [number, number] = [1, 1];
export const VMGEXIT_PSC_ERROR_INVALID_ENTRY: readonly [number, number] = [2, 1];

const PTRS_PER_PMD = 512;

/** struct psc_entry (cur_page:12, gfn:40, operation:4, pagesize:1). */
export interface PscBufEntry {
  cur_page: number;
  gfn: number;
  operation: number;
  pagesize: number;
}

/** struct psc_buffer: psc_hdr {cur_entry, end_entry} and the entries, in guest memory (the GHCB scratch area). */
export interface PscBuffer {
  cur_entry: number;
  end_entry: number;
  entries: PscBufEntry[];
}

/** Per-vCPU PSC state (svm->sev_es.psc_* and the GHCB fields the PSC paths read and write). */
export interface SnpPscVcpu {
  /** control->ghcb_gpa while the MSR protocol is in use: the request, then KVM's response. */
  ghcb_msr_lo: number;
  ghcb_msr_hi: number;
  /** GHCB sw_exit_info_2: the PSC NAE result. */
  sw_exit_info_2_lo: number;
  sw_exit_info_2_hi: number;
  psc: PscBuffer | null;
  psc_idx: number;
  psc_inflight: number;
  psc_2m: boolean;
}

/** The vCPU fields the PSC paths use. */
export type PscVcpu = HypercallVcpu;

const states = new WeakMap<object, SnpPscVcpu>();

export function snp_psc_state(vcpu: PscVcpu): SnpPscVcpu {
  let s = states.get(vcpu);
  if (s === undefined) {
    s = {
      ghcb_msr_lo: 0, ghcb_msr_hi: 0, sw_exit_info_2_lo: 0, sw_exit_info_2_hi: 0, psc: null, psc_idx: 0, psc_inflight: 0, psc_2m: false,
    };
    states.set(vcpu, s);
  }
  return s;
}

const FK = 'arch/x86/kvm/svm/sev.c';
const PR_PSC_MSR = defineProbe('snp_begin_psc_msr', 'rmp', FK, 'GHCB MSR page-state change: one 4K page to KVM_HC_MAP_GPA_RANGE', ['gpa', 'operation']);
const PR_PSC = defineProbe('snp_begin_psc', 'rmp', FK, 'GHCB PSC NAE: the next run of adjacent entries to KVM_HC_MAP_GPA_RANGE', ['cur_entry', 'end_entry']);

function set_ghcb_msr(s: SnpPscVcpu, lo: number, hi: number): void {
  s.ghcb_msr_lo = lo >>> 0;
  s.ghcb_msr_hi = hi >>> 0;
}

/** GHCB_MSR_PSC_REQ_GFN(gfn, op) as halves: info 0x014, gfn in [51:12], operation in [55:52]. */
export function ghcb_msr_psc_req(gfn: number, op: number): [number, number] {
  const lo = ((gfn % 2 ** 20) * 4096 + GHCB_MSR_PSC_REQ) >>> 0;
  const hi = ((Math.floor(gfn / 2 ** 20) & 0xf_ffff) | ((op & 0xf) << 20)) >>> 0;
  return [lo, hi];
}

function request_hypercall(vcpu: PscVcpu, gpa: number, npages: number, attrs: number, done: (vcpu: PscVcpu) => number): number {
  // Unlike TDX's MapGPA, the SNP paths leave hypercall.flags alone.
  const r = kvm_map_gpa_range_exit(vcpu, gpa, npages, attrs, 0, done);
  to_kvm_sev_info(vcpu.kvm)?.psc_exits.push(vcpu_run_state(vcpu).run!);
  return r;
}

/**
 * The MSR protocol request in GHCBData (lo/hi). Returns 1 to resume the guest (an error response is in the
 * GHCB MSR) or 0 for a KVM_EXIT_HYPERCALL of one 4K page.
 */
export function snp_begin_psc_msr(vcpu: PscVcpu, lo: number, hi: number): number {
  const s = snp_psc_state(vcpu);
  set_ghcb_msr(s, lo, hi);
  const gfn = Math.floor((lo >>> 0) / 4096) + (hi & 0xf_ffff) * 2 ** 20;
  const op = (hi >>> 20) & 0xf;
  if (probes.armed) probes.hit(PR_PSC_MSR, { gpa: gfn * 4096, operation: op });
  if (op !== SNP_PAGE_STATE_PRIVATE && op !== SNP_PAGE_STATE_SHARED) {
    set_ghcb_msr(s, GHCB_MSR_PSC_RESP, GHCB_MSR_PSC_RESP_ERROR_HI);
    return 1;
  }
  if (!user_exit_on_hypercall(vcpu.kvm, KVM_HC_MAP_GPA_RANGE)) {
    set_ghcb_msr(s, GHCB_MSR_PSC_RESP, GHCB_MSR_PSC_RESP_ERROR_HI);
    return 1;
  }
  const attrs = (op === SNP_PAGE_STATE_PRIVATE ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED) | KVM_MAP_GPA_RANGE_PAGE_SZ_4K;
  return request_hypercall(vcpu, gfn * 4096, 1, attrs, snp_complete_psc_msr);
}

/** Back from userspace after an MSR PSC: GHCB_MSR_PSC_RESP, with bit 63 set if the conversion failed. */
export function snp_complete_psc_msr(vcpu: PscVcpu): number {
  const s = snp_psc_state(vcpu);
  set_ghcb_msr(s, GHCB_MSR_PSC_RESP, vcpu_run_state(vcpu).run!.ret !== 0 ? GHCB_MSR_PSC_RESP_ERROR_HI : 0);
  return 1;
}

function snp_complete_psc(s: SnpPscVcpu, ret: readonly [number, number]): void {
  s.psc_inflight = 0;
  s.psc_idx = 0;
  s.psc_2m = false;
  s.sw_exit_info_2_lo = ret[0];
  s.sw_exit_info_2_hi = ret[1];
}

/** The in-flight entries are done: each gets cur_page = its size, and the header moves past them. */
function __snp_complete_one_psc(s: SnpPscVcpu): void {
  const psc = s.psc!;
  let idx = s.psc_idx;
  for (; s.psc_inflight > 0; s.psc_inflight--, idx++) {
    const e = psc.entries[idx]!;
    e.cur_page = e.pagesize ? PTRS_PER_PMD : 1;
  }
  psc.cur_entry = idx;
}

function snp_complete_one_psc(vcpu: PscVcpu): number {
  const s = snp_psc_state(vcpu);
  if (vcpu_run_state(vcpu).run!.ret !== 0) {
    snp_complete_psc(s, VMGEXIT_PSC_ERROR_GENERIC);
    return 1;
  }
  __snp_complete_one_psc(s);
  return snp_begin_psc(vcpu);
}

/** SVM_VMGEXIT_PSC: the guest's buffer (already copied from the GHCB scratch area). */
export function sev_vmgexit_psc(vcpu: PscVcpu, psc: PscBuffer): number {
  snp_psc_state(vcpu).psc = psc;
  return snp_begin_psc(vcpu);
}

/**
 * Process the buffer from hdr.cur_entry: skip finished entries, resume a half-done 2M entry at 4K,
 * merge following entries that continue the range with the same operation and size, and exit to
 * userspace for private/shared runs. Returns 1 to resume the guest (result in sw_exit_info_2) or 0.
 */
export function snp_begin_psc(vcpu: PscVcpu): number {
  const s = snp_psc_state(vcpu);
  const psc = s.psc!;
  if (!user_exit_on_hypercall(vcpu.kvm, KVM_HC_MAP_GPA_RANGE)) {
    snp_complete_psc(s, VMGEXIT_PSC_ERROR_GENERIC);
    return 1;
  }
  for (;;) {
    if (probes.armed) probes.hit(PR_PSC, { cur_entry: psc.cur_entry, end_entry: psc.end_entry });
    const idx_end = psc.end_entry;
    if (idx_end >= VMGEXIT_PSC_MAX_COUNT) {
      snp_complete_psc(s, VMGEXIT_PSC_ERROR_INVALID_HDR);
      return 1;
    }
    let idx = psc.cur_entry;
    let start: PscBufEntry | undefined;
    let gfn = 0;
    let npages = 0;
    let huge = false;
    for (; idx <= idx_end; idx++, psc.cur_entry++) {
      start = psc.entries[idx];
      if (start === undefined) {
        snp_complete_psc(s, VMGEXIT_PSC_ERROR_INVALID_ENTRY);
        return 1;
      }
      gfn = start.gfn;
      huge = start.pagesize !== 0;
      npages = huge ? PTRS_PER_PMD : 1;
      if (start.cur_page > npages || gfn % npages !== 0) {
        snp_complete_psc(s, VMGEXIT_PSC_ERROR_INVALID_ENTRY);
        return 1;
      }
      if (start.cur_page !== 0) {
        // What is left of a partly converted 2M entry is effectively split: finish it at 4K.
        npages -= start.cur_page;
        gfn += start.cur_page;
        huge = false;
      }
      if (npages !== 0) break;
    }
    if (idx > idx_end) {
      snp_complete_psc(s, [0, 0]);
      return 1;
    }
    s.psc_2m = huge;
    s.psc_idx = idx;
    s.psc_inflight = 1;
    while (++idx <= idx_end) {
      const e = psc.entries[idx];
      if (e === undefined || e.operation !== start!.operation || e.gfn !== start!.gfn + npages || e.cur_page !== 0 || (e.pagesize !== 0) !== huge) break;
      s.psc_inflight++;
      npages += huge ? PTRS_PER_PMD : 1;
    }
    const op = start!.operation;
    if (op === SNP_PAGE_STATE_PRIVATE || op === SNP_PAGE_STATE_SHARED) {
      const attrs = (op === SNP_PAGE_STATE_PRIVATE ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED) |
        (start!.pagesize ? KVM_MAP_GPA_RANGE_PAGE_SZ_2M : KVM_MAP_GPA_RANGE_PAGE_SZ_4K);
      return request_hypercall(vcpu, gfn * 4096, npages, attrs, snp_complete_one_psc);
    }
    // PSMASH/UNSMASH (or any other operation): done without an exit; go on with the next run.
    __snp_complete_one_psc(s);
  }
}

/** What a VMM's run loop did for one page-state change. */
export interface PscRun {
  /** Every KVM_EXIT_HYPERCALL KVM raised, in order. */
  exits: PscExit[];
  /** GHCB MSR contents after the MSR protocol, or sw_exit_info_2 after a PSC NAE, as [lo, hi]. */
  result: [number, number];
}

/**
 * A VMM that serves each KVM_HC_MAP_GPA_RANGE exit (KVM_SET_MEMORY_ATTRIBUTES, and for shared optionally
 * a guest_memfd PUNCH_HOLE) and re-enters until KVM resumes the guest. `first` is the begin call's
 * return; with `serve: false` the VMM stops at the first exit.
 */
export function vmm_run_psc(vcpu: PscVcpu, first: number, msr: boolean, opts: { punch_hole?: boolean; serve?: boolean } = {}): PscRun {
  const s = snp_psc_state(vcpu);
  const exits = vmm_run_map_gpa(vcpu, first, opts.serve === false ? undefined : (ex) => vmm_handle_map_gpa_range(vcpu.kvm, ex, { punch_hole: opts.punch_hole }));
  return { exits, result: msr ? [s.ghcb_msr_lo, s.ghcb_msr_hi] : [s.sw_exit_info_2_lo, s.sw_exit_info_2_hi] };
}
