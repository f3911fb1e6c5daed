/**
 * TDX TDG.VP.VMCALL<MapGPA> (arch/x86/kvm/vmx/tdx.c tdx_map_gpa): the TD asks to convert a GPA range to
 * private (shared bit clear) or shared (shared bit set). KVM checks the range, then forwards it to
 * userspace as KVM_HC_MAP_GPA_RANGE exits of at most 2M each so interrupts can be delivered between
 * chunks; the GHCI status goes back in R10 and, for errors and retries, the GPA to resume from in R11.
 *
 * 64-bit statuses are kept as [lo, hi] halves. The model has no interrupt delivery, so the RETRY path
 * (an interrupt pending between chunks) never triggers here.
 */
import { defineProbe, probes } from '../probes';
import type { KvmVcpu } from './vcpu';
import { KVM_MAP_GPA_RANGE_DECRYPTED, KVM_MAP_GPA_RANGE_ENCRYPTED } from './sev_snp';
import {
  KVM_EXIT_HYPERCALL_LONG_MODE, KVM_HC_MAP_GPA_RANGE, kvm_map_gpa_range_exit, user_exit_on_hypercall, vcpu_run_state, type HypercallVcpu,
} from './hypercall_exit';

/** TDVMCALL leaf of MapGPA (GHCI). */
export const TDVMCALL_MAP_GPA = 0x10001;
/** TDVMCALL_STATUS_* as [lo, hi]. */
export const TDVMCALL_STATUS_SUCCESS: readonly [number, number] = [0, 0];
export const TDVMCALL_STATUS_RETRY: readonly [number, number] = [1, 0];
export const TDVMCALL_STATUS_INVALID_OPERAND: readonly [number, number] = [0, 0x8000_0000];
export const TDVMCALL_STATUS_ALIGN_ERROR: readonly [number, number] = [2, 0x8000_0000];
export const TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED: readonly [number, number] = [3, 0x8000_0000];
/** Chunk size of one KVM_HC_MAP_GPA_RANGE exit. */
export const TDX_MAP_GPA_MAX_LEN = 2 * 1024 * 1024;

/** The vCPU: its VM's shared bit (kvm_gfn_direct_bits) and its MAXPHYADDR come from the x86 model. */
export type TdxMapGpaVcpu = KvmVcpu;

/** vcpu_tdx.map_gpa_next/map_gpa_end and the R10/R11 outputs. */
export interface TdxMapGpaState {
  map_gpa_next: number;
  map_gpa_end: number;
  r10_lo: number;
  r10_hi: number;
  r11: number;
}

const states = new WeakMap<object, TdxMapGpaState>();

export function tdx_map_gpa_state(vcpu: HypercallVcpu): TdxMapGpaState {
  let s = states.get(vcpu);
  if (s === undefined) {
    s = { map_gpa_next: 0, map_gpa_end: 0, r10_lo: 0, r10_hi: 0, r11: 0 };
    states.set(vcpu, s);
  }
  return s;
}

const PR_MAP_GPA = defineProbe('tdx_map_gpa', 'tdx', 'arch/x86/kvm/vmx/tdx.c', 'TDG.VP.VMCALL<MapGPA>: check the range, then KVM_HC_MAP_GPA_RANGE in 2M chunks', ['gpa', 'size']);

/** The shared bit of a TD GPA (private when clear). */
function is_private_gpa(vcpu: TdxMapGpaVcpu, gpa: number): boolean {
  return Math.floor(Math.floor(gpa / 4096) / vcpu.kvm.arch.gfn_direct_bits) % 2 === 0;
}

function set_status(s: TdxMapGpaState, st: readonly [number, number], r11?: number): void {
  s.r10_lo = st[0];
  s.r10_hi = st[1];
  if (r11 !== undefined) s.r11 = r11;
}

function __tdx_map_gpa(vcpu: TdxMapGpaVcpu): number {
  const s = tdx_map_gpa_state(vcpu);
  const gpa = s.map_gpa_next;
  const size = Math.min(s.map_gpa_end - s.map_gpa_next, TDX_MAP_GPA_MAX_LEN);
  // args[0] is the unaliased GPA: the shared bit stripped.
  const unaliased = is_private_gpa(vcpu, gpa) ? gpa : gpa - vcpu.kvm.arch.gfn_direct_bits * 4096;
  const attrs = is_private_gpa(vcpu, gpa) ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED;
  return kvm_map_gpa_range_exit(vcpu, unaliased, size / 4096, attrs, KVM_EXIT_HYPERCALL_LONG_MODE, tdx_complete_vmcall_map_gpa as (v: HypercallVcpu) => number);
}

/** Back from userspace: a failure ends the call with INVALID_OPERAND; otherwise the next 2M chunk, or done. */
export function tdx_complete_vmcall_map_gpa(vcpu: TdxMapGpaVcpu): number {
  const s = tdx_map_gpa_state(vcpu);
  if (vcpu_run_state(vcpu).run!.ret !== 0) {
    set_status(s, TDVMCALL_STATUS_INVALID_OPERAND, s.map_gpa_next);
    return 1;
  }
  s.map_gpa_next += TDX_MAP_GPA_MAX_LEN;
  if (s.map_gpa_next >= s.map_gpa_end) return 1;
  return __tdx_map_gpa(vcpu);
}

/**
 * TDG.VP.VMCALL<MapGPA> with R12 = gpa, R13 = size. Returns 1 (back to the TD; the status is in R10) or
 * 0 (KVM_EXIT_HYPERCALL for the first chunk).
 */
export function tdx_map_gpa(vcpu: TdxMapGpaVcpu, gpa: number, size: number): number {
  const s = tdx_map_gpa_state(vcpu);
  if (probes.armed) probes.hit(PR_MAP_GPA, { gpa, size });
  const maxphyaddr = vcpu.guest_maxphyaddr || vcpu.kvm.guest_maxphyaddr;
  const legal = (a: number) => a >= 0 && a < 2 ** maxphyaddr;
  if (!user_exit_on_hypercall(vcpu.kvm.private_mem, KVM_HC_MAP_GPA_RANGE)) {
    set_status(s, TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED, gpa);
    return 1;
  }
  if (!(gpa + size > gpa) || !legal(gpa) || !legal(gpa + size - 1) || is_private_gpa(vcpu, gpa) !== is_private_gpa(vcpu, gpa + size - 1)) {
    set_status(s, TDVMCALL_STATUS_INVALID_OPERAND, gpa);
    return 1;
  }
  if (gpa % 4096 !== 0 || size % 4096 !== 0) {
    set_status(s, TDVMCALL_STATUS_ALIGN_ERROR, gpa);
    return 1;
  }
  set_status(s, TDVMCALL_STATUS_SUCCESS);
  s.map_gpa_end = gpa + size;
  s.map_gpa_next = gpa;
  return __tdx_map_gpa(vcpu);
}
