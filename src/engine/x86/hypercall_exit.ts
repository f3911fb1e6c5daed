/**
 * KVM_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE, the one exit both confidential-VM conversion paths use
 * (SEV-SNP page-state changes, TDX TDG.VP.VMCALL<MapGPA>): the per-VM KVM_CAP_EXIT_HYPERCALL mask
 * (kvm->arch.hypercall_exit_enabled), the per-vCPU pending exit (the hypercall part of struct kvm_run) and
 * vcpu->arch.complete_userspace_io, which runs when userspace re-enters KVM_RUN.
 */
import { KVM_X86_SNP_VM, KVM_X86_TDX_VM, type PrivateMemKvm } from '../kvm/attributes';

export const KVM_EXIT_HYPERCALL = 3;
export const KVM_HC_MAP_GPA_RANGE = 12;
/** KVM_EXIT_HYPERCALL_VALID_MASK: the only hypercall userspace may take over. */
export const KVM_EXIT_HYPERCALL_VALID_MASK = 1 << KVM_HC_MAP_GPA_RANGE;
/** KVM_EXIT_HYPERCALL_LONG_MODE in hypercall.flags. */
export const KVM_EXIT_HYPERCALL_LONG_MODE = 1;

/** The KVM_HC_MAP_GPA_RANGE exit userspace sees (hypercall.nr, args[0..2], flags) and the ret it writes back. */
export interface HypercallRun {
  exit_reason: number;
  nr: number;
  /** args[0..2]: gpa, npages, attributes. */
  gpa: number;
  npages: number;
  attrs: number;
  flags: number;
  ret: number;
}

/** The vCPU fields the exit paths use. */
export interface HypercallVcpu {
  readonly kvm: PrivateMemKvm;
  readonly vcpu_id: number;
}

interface VcpuRunState {
  run: HypercallRun | null;
  complete_userspace_io: ((vcpu: HypercallVcpu) => number) | null;
}

const masks = new WeakMap<object, number>();
const runs = new WeakMap<object, VcpuRunState>();

/**
 * kvm->arch.hypercall_exit_enabled. SNP and TDX VMs start with KVM_HC_MAP_GPA_RANGE enabled, as the VMMs
 * that run them enable it before the guest starts; other VMs start with none.
 */
export function kvm_hypercall_exit_enabled(kvm: PrivateMemKvm): number {
  const m = masks.get(kvm);
  if (m !== undefined) return m;
  return kvm.vm_type === KVM_X86_SNP_VM || kvm.vm_type === KVM_X86_TDX_VM ? KVM_EXIT_HYPERCALL_VALID_MASK : 0;
}

/** user_exit_on_hypercall(): userspace asked for this hypercall to exit. */
export function user_exit_on_hypercall(kvm: PrivateMemKvm, nr: number): boolean {
  return (kvm_hypercall_exit_enabled(kvm) & (1 << nr)) !== 0;
}

/** KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL): args[0] replaces the mask; bits outside the valid mask are -EINVAL. */
export function kvm_enable_cap_exit_hypercall(kvm: PrivateMemKvm, mask: number): number {
  if (!Number.isSafeInteger(mask) || mask < 0 || (mask & ~KVM_EXIT_HYPERCALL_VALID_MASK) !== 0 || mask > KVM_EXIT_HYPERCALL_VALID_MASK) return -22;
  masks.set(kvm, mask);
  return 0;
}

export function vcpu_run_state(vcpu: HypercallVcpu): VcpuRunState {
  let s = runs.get(vcpu);
  if (s === undefined) {
    s = { run: null, complete_userspace_io: null };
    runs.set(vcpu, s);
  }
  return s;
}

/** Fill in the KVM_HC_MAP_GPA_RANGE exit and arm the completion; returns 0 (exit to userspace). */
export function kvm_map_gpa_range_exit(vcpu: HypercallVcpu, gpa: number, npages: number, attrs: number, flags: number, done: (vcpu: HypercallVcpu) => number): number {
  const s = vcpu_run_state(vcpu);
  s.run = { exit_reason: KVM_EXIT_HYPERCALL, nr: KVM_HC_MAP_GPA_RANGE, gpa, npages, attrs, flags, ret: 0 };
  s.complete_userspace_io = done;
  return 0;
}

/**
 * KVM_RUN after a KVM_EXIT_HYPERCALL: userspace's hypercall.ret goes back to KVM, which runs
 * complete_userspace_io. Returns its result (1 = the guest runs, 0 = another exit).
 */
export function kvm_complete_userspace_hypercall(vcpu: HypercallVcpu, ret: number): number {
  const s = vcpu_run_state(vcpu);
  const done = s.complete_userspace_io;
  if (s.run === null || done === null) return 1;
  s.run.ret = ret;
  s.complete_userspace_io = null;
  const r = done(vcpu);
  if (r !== 0) s.run = null;
  return r;
}

/**
 * A VMM's run loop for KVM_HC_MAP_GPA_RANGE: `serve` converts one exit (0 or -errno), and the loop
 * re-enters until KVM resumes the guest. `first` is the return of the call that may have exited; with
 * `serve` undefined the loop stops at the first exit. Returns every exit seen, oldest first.
 */
export function vmm_run_map_gpa(vcpu: HypercallVcpu, first: number, serve?: (run: HypercallRun) => number): HypercallRun[] {
  const s = vcpu_run_state(vcpu);
  const exits: HypercallRun[] = [];
  let r = first;
  for (let guard = 0; r === 0 && s.run !== null && guard < 1 << 20; guard++) {
    const ex = s.run;
    exits.push({ ...ex });
    if (serve === undefined) break;
    const rc = serve(ex);
    r = kvm_complete_userspace_hypercall(vcpu, rc === 0 ? 0 : 1);
  }
  return exits;
}
