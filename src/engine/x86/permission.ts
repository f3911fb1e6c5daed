/**
 * Guest permission checks as KVM precomputes and applies them (mmu.c `update_permission_bitmask`,
 * `update_pkru_bitmask`; mmu.h `permission_fault`).
 *
 * `permissions[pfec >> 1]` has one bit per ACC value (X=1, W=2, U=4; 8 values) saying "this access
 * faults". Index bits are the error code's W, U, RSVD and F. RSVD is never set in a real error code, so
 * KVM reuses that slot to mean "SMAP is overridden" (EFLAGS.AC=1 on an explicit access). `pkru_mask`
 * holds 2 bits per even pfec, with the RSVD slot reused for the PTE's U bit.
 */
import { defineProbe, probes } from '../probes';
import * as pferr from './pferr';
import * as spte from './spte';

// Module-local copies: under a CommonJS loader (tsx in tests) an imported binding is a getter call, and
// permission_fault runs on every walk.
const PFERR_PRESENT_MASK = pferr.PFERR_PRESENT_MASK | 0;
const PFERR_WRITE_MASK = pferr.PFERR_WRITE_MASK | 0;
const PFERR_USER_MASK = pferr.PFERR_USER_MASK | 0;
const PFERR_RSVD_MASK = pferr.PFERR_RSVD_MASK | 0;
const PFERR_FETCH_MASK = pferr.PFERR_FETCH_MASK | 0;
const PFERR_PK_MASK = pferr.PFERR_PK_MASK | 0;
const PFERR_IMPLICIT_ACCESS_HI = pferr.PFERR_IMPLICIT_ACCESS_HI | 0;
const ACC_EXEC_MASK = spte.ACC_EXEC_MASK | 0;
const ACC_WRITE_MASK = spte.ACC_WRITE_MASK | 0;
const ACC_USER_MASK = spte.ACC_USER_MASK | 0;

// ACC_* bits of a walk result (the P slot is reused for "executable"), shared with the SPTE code.
export { ACC_ALL, ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from './spte';

export const X86_EFLAGS_AC = 1 << 18;

/** The part of `struct kvm_mmu` the permission checks read and write. */
export interface PermissionMmu {
  /** 16 bytes. */
  readonly permissions: Uint8Array;
  pkru_mask: number;
  cr0_wp: boolean;
  cr4_smep: boolean;
  cr4_smap: boolean;
  /** `cpu_role.ext.cr4_pke` (CR4.PKE and EFER.LMA). */
  cr4_pke: boolean;
  efer_nx: boolean;
}

/** The vCPU state a permission check reads at lookup time. */
export interface PermissionVcpu {
  rflags: number;
  /** PKRU register (32 bits: AD/WD pairs, key 0 in bits 1:0). */
  pkru: number;
}

/** Bit n set for every ACC value n (0..7) that has `acc`. */
function byteMask(acc: number): number {
  let m = 0;
  for (let n = 0; n < 8; n++) if (n & acc) m |= 1 << n;
  return m;
}

const X_BYTE = byteMask(ACC_EXEC_MASK);
const W_BYTE = byteMask(ACC_WRITE_MASK);
const U_BYTE = byteMask(ACC_USER_MASK);

export function update_permission_bitmask(mmu: PermissionMmu, ept: boolean): void {
  for (let byte = 0; byte < 16; byte++) {
    const pfec = byte << 1;
    const write = (pfec & PFERR_WRITE_MASK) !== 0;
    const user = (pfec & PFERR_USER_MASK) !== 0;
    const fetch = (pfec & PFERR_FETCH_MASK) !== 0;
    // For EPT the U slot means "readable": a read (signalled as PFERR_USER) of a non-readable entry faults.
    let wf = write ? ~W_BYTE & 0xff : 0;
    const uf = user ? ~U_BYTE & 0xff : 0;
    let ff = fetch ? ~X_BYTE & 0xff : 0;
    let smepf = 0;
    let smapf = 0;
    if (!ept) {
      // A supervisor access touching a user page: the shared ingredient of SMEP and SMAP.
      const kf = user ? 0 : U_BYTE;
      // Without EFER.NX no page is non-executable, and NX set in a PTE is a reserved-bit fault instead.
      if (!mmu.efer_nx) ff = 0;
      // CR0.WP=0 lets supervisor writes ignore R/W.
      if (!mmu.cr0_wp && !user) wf = 0;
      if (mmu.cr4_smep && fetch) smepf = kf;
      // The RSVD slot carries "SMAP overridden"; fetches are SMEP's business.
      if (mmu.cr4_smap && !(pfec & (PFERR_RSVD_MASK | PFERR_FETCH_MASK))) smapf = kf;
    }
    mmu.permissions[byte] = (ff | uf | wf | smepf | smapf) & 0xff;
  }
}

export function update_pkru_bitmask(mmu: PermissionMmu): void {
  mmu.pkru_mask = 0;
  if (!mmu.cr4_pke) return;
  let mask = 0;
  for (let bit = 0; bit < 16; bit++) {
    const pfec = bit << 1;
    const ff = (pfec & PFERR_FETCH_MASK) !== 0;
    const uf = (pfec & PFERR_USER_MASK) !== 0;
    const wf = (pfec & PFERR_WRITE_MASK) !== 0;
    const pteUser = (pfec & PFERR_RSVD_MASK) !== 0;
    // Keys apply to data accesses to user pages; WD also binds supervisor writes only when CR0.WP=1.
    const checkPkey = !ff && pteUser;
    const checkWrite = checkPkey && wf && (uf || mmu.cr0_wp);
    const bits = (checkPkey ? 1 : 0) | (checkWrite ? 2 : 0);
    mask |= bits << pfec;
  }
  mmu.pkru_mask = mask >>> 0;
}

export const PROBE_PERMISSION_FAULT = defineProbe(
  'permission_fault',
  'walk',
  'arch/x86/kvm/mmu.h',
  'Guest permission check of a completed walk: permissions[] lookup (W/U/F, SMEP, SMAP) and PKRU',
  ['pte_access', 'pte_pkey', 'access', 'errcode'],
);

/**
 * Returns 0 when `access` (an error code; the low half, plus the high half for PFERR_IMPLICIT_ACCESS)
 * may use a translation with ACC bits `pte_access` and key `pte_pkey`; otherwise PFERR_PRESENT, plus
 * PFERR_PK when the protection key is what denies it.
 */
export function permission_fault(
  vcpu: PermissionVcpu,
  mmu: PermissionMmu,
  pte_access: number,
  pte_pkey: number,
  accessLo: number,
  accessHi = 0,
): number {
  const pfec = accessLo >>> 0;
  // SMAP is overridden only by EFLAGS.AC on an explicit access; implicit supervisor accesses never are.
  const notSmap = (vcpu.rflags & X86_EFLAGS_AC) !== 0 && (accessHi & PFERR_IMPLICIT_ACCESS_HI) === 0;
  const index = ((pfec | (notSmap ? PFERR_RSVD_MASK : 0)) >>> 1) & 15;
  let errcode = PFERR_PRESENT_MASK;
  let fault = (mmu.permissions[index]! >>> pte_access) & 1;
  if (mmu.pkru_mask !== 0) {
    let pkruBits = (vcpu.pkru >>> (pte_pkey * 2)) & 3;
    const offset = (pfec & ~1 & 0x1f) | (pte_access & ACC_USER_MASK ? PFERR_RSVD_MASK : 0);
    pkruBits &= mmu.pkru_mask >>> offset;
    if (pkruBits !== 0) {
      errcode |= PFERR_PK_MASK;
      fault = 1;
    }
  }
  const r = fault ? errcode : 0;
  if (probes.armed) probes.hit(PROBE_PERMISSION_FAULT, { pte_access, pte_pkey, access: pfec, errcode: r });
  return r;
}
