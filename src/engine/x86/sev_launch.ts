/**
 * SEV-SNP launch (arch/x86/kvm/svm/sev.c, KVM_MEMORY_ENCRYPT_OP): KVM_SEV_SNP_LAUNCH_START checks the
 * guest policy and creates the firmware context; KVM_SEV_SNP_LAUNCH_UPDATE populates initial private
 * pages through kvm_gmem_populate, each page made private in the RMP (4K, immutable while the firmware
 * works on it) and handed to the firmware, which measures it by page type and leaves it assigned and
 * validated; KVM_SEV_SNP_LAUNCH_FINISH does the same for every vCPU's VMSA and then allows pre-faulting.
 *
 * The firmware (SEV-SNP ABI) is modelled only as far as the RMP and the launch state go: it has no
 * measurement digest here, just per-type page counts.
 */
import { defineProbe, probes } from '../probes';
import { EINVAL, kvm_private_ctx, kvm_slot_has_gmem } from '../kvm/attributes';
import { kvm_gmem_populate } from '../kvm/guest_memfd';
import {
  FL_IMMUTABLE, FL_VALIDATED, FL_VMSA, rmp_make_private, rmp_make_shared, snp_lookup_rmpentry, to_kvm_sev_info, type RmpLookup,
  type SevInfo,
} from './sev_snp';
import { PG_LEVEL_4K } from './memslot';
import type { Kvm } from './vm';

export const KVM_SEV_SNP_LAUNCH_START = 100;
export const KVM_SEV_SNP_LAUNCH_UPDATE = 101;
export const KVM_SEV_SNP_LAUNCH_FINISH = 102;

/** KVM_SEV_SNP_PAGE_TYPE_* (uapi), the firmware's page types; VMSA is KVM's own (SNP_PAGE_TYPE_VMSA). */
export const KVM_SEV_SNP_PAGE_TYPE_NORMAL = 0x1;
export const SNP_PAGE_TYPE_VMSA = 0x2;
export const KVM_SEV_SNP_PAGE_TYPE_ZERO = 0x3;
export const KVM_SEV_SNP_PAGE_TYPE_UNMEASURED = 0x4;
export const KVM_SEV_SNP_PAGE_TYPE_SECRETS = 0x5;
export const KVM_SEV_SNP_PAGE_TYPE_CPUID = 0x6;

/** Guest policy bits (SEV-SNP firmware ABI, "Guest Policy"). */
export const SNP_POLICY_MASK_API_MINOR = 0xff;
export const SNP_POLICY_MASK_API_MAJOR = 0xff00;
export const SNP_POLICY_MASK_SMT = 1 << 16;
export const SNP_POLICY_MASK_RSVD_MBO = 1 << 17;
export const SNP_POLICY_MASK_MIGRATE_MA = 1 << 18;
export const SNP_POLICY_MASK_DEBUG = 1 << 19;
export const SNP_POLICY_MASK_SINGLE_SOCKET = 1 << 20;
/** The bits KVM lets through (KVM_SNP_POLICY_MASK_VALID). */
export const KVM_SNP_POLICY_MASK_VALID = SNP_POLICY_MASK_API_MINOR | SNP_POLICY_MASK_API_MAJOR | SNP_POLICY_MASK_SMT | SNP_POLICY_MASK_RSVD_MBO |
  SNP_POLICY_MASK_DEBUG | SNP_POLICY_MASK_SINGLE_SOCKET;

/** The GPA the firmware records for the initial VMSA pages. */
export const INITIAL_VMSA_GPA = 0xf_ffff_f000;
/** Firmware status: a launch command in a guest that is no longer launching. */
export const SEV_RET_INVALID_GUEST_STATE = 0x2;

const ENOTTY = -25;
const EIO = -5;

/** Firmware context and launch bookkeeping of one SNP VM (sev->snp_context and what the firmware keeps). */
export interface SnpLaunch {
  snp_context: boolean;
  policy: number;
  /** The firmware's guest state: LAUNCH until LAUNCH_FINISH succeeds, then RUNNING. */
  state: 'launch' | 'running';
  /** Pages the firmware took by page type (KVM_SEV_SNP_PAGE_TYPE_* and SNP_PAGE_TYPE_VMSA). */
  pages: Record<number, number>;
  /** Host pfns of the vCPUs' initial VMSAs. */
  vmsa_pfns: number[];
}

const launches = new WeakMap<object, SnpLaunch>();

export function snp_launch_info(kvm: Kvm): SnpLaunch | undefined {
  return launches.get(kvm.private_mem);
}

const FK = 'arch/x86/kvm/svm/sev.c';
const PR_START = defineProbe('snp_launch_start', 'rmp', FK, 'KVM_SEV_SNP_LAUNCH_START: check the policy, create and activate the firmware context', ['policy']);
const PR_POST = defineProbe(
  'sev_gmem_post_populate', 'rmp', FK, 'LAUNCH_UPDATE, per page: rmp_make_private (immutable), then the firmware validates and measures it',
  ['gfn', 'pfn', 'type', 'old_entry', 'new_entry'],
);
const PR_UPDATE = defineProbe('snp_launch_update', 'rmp', FK, 'KVM_SEV_SNP_LAUNCH_UPDATE: populate initial private pages through guest_memfd', ['gfn_start', 'len', 'type']);
const PR_FINISH = defineProbe('snp_launch_finish', 'rmp', FK, 'KVM_SEV_SNP_LAUNCH_FINISH: the VMSAs go through LAUNCH_UPDATE, then pre-faulting is allowed', ['nr_vcpus']);

/** The params of KVM_SEV_SNP_LAUNCH_START. */
export interface SnpLaunchStartParams {
  policy: number;
  flags?: number;
}

export function snp_launch_start(kvm: Kvm, params: SnpLaunchStartParams): number {
  const sev = to_kvm_sev_info(kvm.private_mem);
  if (sev === undefined) return ENOTTY;
  if (probes.armed) probes.hit(PR_START, { policy: params.policy });
  if (launches.get(kvm.private_mem)?.snp_context) return -EINVAL;
  if ((params.flags ?? 0) !== 0) return -EINVAL;
  const policy = params.policy;
  if (!Number.isSafeInteger(policy) || policy < 0 || policy > 0xffff_ffff || (policy & ~KVM_SNP_POLICY_MASK_VALID) !== 0) return -EINVAL;
  if ((policy & SNP_POLICY_MASK_RSVD_MBO) === 0 || (policy & SNP_POLICY_MASK_SMT) === 0) return -EINVAL;
  if ((policy & SNP_POLICY_MASK_SINGLE_SOCKET) !== 0) return -EINVAL;
  launches.set(kvm.private_mem, { snp_context: true, policy, state: 'launch', pages: {}, vmsa_pfns: [] });
  return 0;
}

/** KVM_SEV_SNP_LAUNCH_UPDATE params; on return gfn_start/len describe what is left. */
export interface SnpLaunchUpdateParams {
  gfn_start: number;
  len: number;
  type: number;
  flags?: number;
}

/** Result of KVM_SEV_SNP_LAUNCH_UPDATE: ret, the firmware error (argp->error) and the advanced params. */
export interface SnpLaunchUpdateResult {
  ret: number;
  error: number;
  gfn_start: number;
  len: number;
}

const VALID_TYPES = new Set([KVM_SEV_SNP_PAGE_TYPE_NORMAL, KVM_SEV_SNP_PAGE_TYPE_ZERO, KVM_SEV_SNP_PAGE_TYPE_UNMEASURED, KVM_SEV_SNP_PAGE_TYPE_SECRETS, KVM_SEV_SNP_PAGE_TYPE_CPUID]);

/**
 * The firmware's SNP_LAUNCH_UPDATE of one page KVM made private (and immutable): in the LAUNCH state the
 * page is measured and ends validated and mutable (Guest-Valid); in any other state it fails.
 */
function fw_launch_update(sev: SevInfo, l: SnpLaunch, pfn: number, type: number): number {
  if (l.state !== 'launch') return SEV_RET_INVALID_GUEST_STATE;
  sev.rmp.set_flag(pfn, FL_VALIDATED, true);
  sev.rmp.set_flag(pfn, FL_IMMUTABLE, false);
  if (type === SNP_PAGE_TYPE_VMSA) sev.rmp.set_flag(pfn, FL_VMSA, true);
  l.pages[type] = (l.pages[type] ?? 0) + 1;
  return 0;
}

/**
 * snp_page_reclaim(): the firmware's SNP_PAGE_RECLAIM takes a page it owns back to the hypervisor (clearing
 * Immutable, which RMPUPDATE would refuse), then KVM makes it shared.
 */
function snp_page_reclaim(sev: SevInfo, pfn: number): number {
  sev.rmp.set_flag(pfn, FL_IMMUTABLE, false);
  return rmp_make_shared(sev.rmp, pfn, PG_LEVEL_4K);
}

const lk: RmpLookup = { assigned: false, level: PG_LEVEL_4K };

export function snp_launch_update(kvm: Kvm, params: SnpLaunchUpdateParams): SnpLaunchUpdateResult {
  const pk = kvm.private_mem;
  const sev = to_kvm_sev_info(pk);
  const l = launches.get(pk);
  const res: SnpLaunchUpdateResult = { ret: 0, error: 0, gfn_start: params.gfn_start, len: params.len };
  if (probes.armed) probes.hit(PR_UPDATE, { gfn_start: params.gfn_start, len: params.len, type: params.type });
  const fail = (ret: number): SnpLaunchUpdateResult => ({ ...res, ret });
  if (sev === undefined || l === undefined || !l.snp_context) return fail(-EINVAL);
  if (params.len % 4096 !== 0 || (params.flags ?? 0) !== 0 || !VALID_TYPES.has(params.type)) return fail(-EINVAL);
  const npages = params.len / 4096;
  const slot = kvm.memslots[0]!.lookup(params.gfn_start) ?? null;
  if (!kvm_slot_has_gmem(slot)) return fail(-EINVAL);
  let fw_error = 0;
  // sev_gmem_post_populate: every page of the folio must still be in its initial shared state.
  // Named as the kernel's callback so the debugger's KVM stack shows it between populate and the RMP update.
  const sev_gmem_post_populate = (_k: unknown, gfn_start: number, pfn: number, order: number): number => {
    let n_private = 0;
    let ret = 0;
    for (let i = 0; i < 2 ** order; i++) {
      const gfn = gfn_start + i;
      const rc = snp_lookup_rmpentry(sev.rmp, pfn + i, lk);
      if (rc !== 0 || lk.assigned) {
        ret = rc !== 0 ? -EINVAL : -17; // -EEXIST
        break;
      }
      const old_entry = probes.armed ? sev.rmp.entry(pfn + i) : null;
      ret = rmp_make_private(sev.rmp, pfn + i, gfn * 4096, PG_LEVEL_4K, sev.asid, true);
      if (ret !== 0) break;
      n_private++;
      fw_error = fw_launch_update(sev, l, pfn + i, params.type);
      if (fw_error !== 0) {
        // The firmware failed this page: reclaim it before the common cleanup of the pages before it.
        snp_page_reclaim(sev, pfn + i);
        n_private--;
        ret = EIO;
        break;
      }
      if (probes.armed) probes.hit(PR_POST, { gfn, pfn: pfn + i, type: params.type, old_entry, new_entry: sev.rmp.entry(pfn + i) });
    }
    if (ret !== 0) for (let i = 0; i < n_private; i++) rmp_make_shared(sev.rmp, pfn + i, PG_LEVEL_4K);
    return ret;
  };
  const count = kvm_gmem_populate(pk, slot, params.gfn_start, npages, sev_gmem_post_populate);
  if (count < 0) return { ...res, ret: EIO, error: fw_error };
  return { ret: 0, error: 0, gfn_start: params.gfn_start + count, len: params.len - count * 4096 };
}

/** A host page for a vCPU's VMSA, never 2M-aligned (snp_safe_alloc_page works around an RMP erratum). */
function alloc_vmsa_pfn(kvm: Kvm): number {
  const ctx = kvm_private_ctx(kvm.private_mem);
  let pfn = ctx.next_gmem_pfn;
  if (pfn % 512 === 0) pfn++;
  ctx.next_gmem_pfn = pfn + 1;
  return pfn;
}

export function snp_launch_finish(kvm: Kvm, params: { flags?: number } = {}): number {
  const sev = to_kvm_sev_info(kvm.private_mem);
  if (sev === undefined) return ENOTTY;
  const l = launches.get(kvm.private_mem);
  if (l === undefined || !l.snp_context) return -EINVAL;
  if ((params.flags ?? 0) !== 0) return -EINVAL;
  if (probes.armed) probes.hit(PR_FINISH, { nr_vcpus: kvm.vcpus.length });
  // snp_launch_update_vmsa: each vCPU's VMSA becomes a firmware page at INITIAL_VMSA_GPA.
  for (let i = 0; i < kvm.vcpus.length; i++) {
    const pfn = l.vmsa_pfns[i] ?? alloc_vmsa_pfn(kvm);
    l.vmsa_pfns[i] = pfn;
    const r = rmp_make_private(sev.rmp, pfn, INITIAL_VMSA_GPA, PG_LEVEL_4K, sev.asid, true);
    if (r !== 0) return r;
    if (fw_launch_update(sev, l, pfn, SNP_PAGE_TYPE_VMSA) !== 0) {
      snp_page_reclaim(sev, pfn);
      return EIO;
    }
  }
  l.state = 'running';
  // No more LAUNCH_UPDATE: private pages can now be made private on first access or KVM_PRE_FAULT_MEMORY.
  kvm.pre_fault_allowed = true;
  return 0;
}
