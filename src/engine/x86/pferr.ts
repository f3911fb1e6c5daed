/**
 * Page-fault error codes as KVM carries them (asm/kvm_host.h PFERR_*): the hardware #PF bits, AMD #NPF
 * EXITINFO1 bits 31-36, and KVM's synthetic bits 48/49. Error codes are u64, so they travel as halves.
 */
import type { BitField } from '../bits/fields';

export const PFERR_PRESENT_BIT = 0;
export const PFERR_WRITE_BIT = 1;
export const PFERR_USER_BIT = 2;
export const PFERR_RSVD_BIT = 3;
export const PFERR_FETCH_BIT = 4;
export const PFERR_PK_BIT = 5;
export const PFERR_SS_BIT = 6;
export const PFERR_SGX_BIT = 15;
export const PFERR_GUEST_RMP_BIT = 31;
export const PFERR_GUEST_FINAL_BIT = 32;
export const PFERR_GUEST_PAGE_BIT = 33;
export const PFERR_GUEST_ENC_BIT = 34;
export const PFERR_GUEST_SIZEM_BIT = 35;
export const PFERR_GUEST_VMPL_BIT = 36;
export const PFERR_IMPLICIT_ACCESS_BIT = 48;
export const PFERR_PRIVATE_ACCESS_BIT = 49;

// Low-half masks.
export const PFERR_PRESENT_MASK = 1 << PFERR_PRESENT_BIT;
export const PFERR_WRITE_MASK = 1 << PFERR_WRITE_BIT;
export const PFERR_USER_MASK = 1 << PFERR_USER_BIT;
export const PFERR_RSVD_MASK = 1 << PFERR_RSVD_BIT;
export const PFERR_FETCH_MASK = 1 << PFERR_FETCH_BIT;
export const PFERR_PK_MASK = 1 << PFERR_PK_BIT;
export const PFERR_SS_MASK = 1 << PFERR_SS_BIT;
export const PFERR_SGX_MASK = 1 << PFERR_SGX_BIT;
export const PFERR_GUEST_RMP_MASK = 0x8000_0000;

// High-half masks (bit n >= 32 is 1 << (n - 32) of `hi`).
export const PFERR_GUEST_FINAL_MASK_HI = 1 << (PFERR_GUEST_FINAL_BIT - 32);
export const PFERR_GUEST_PAGE_MASK_HI = 1 << (PFERR_GUEST_PAGE_BIT - 32);
export const PFERR_GUEST_ENC_MASK_HI = 1 << (PFERR_GUEST_ENC_BIT - 32);
export const PFERR_GUEST_SIZEM_MASK_HI = 1 << (PFERR_GUEST_SIZEM_BIT - 32);
export const PFERR_GUEST_VMPL_MASK_HI = 1 << (PFERR_GUEST_VMPL_BIT - 32);
export const PFERR_IMPLICIT_ACCESS_HI = 1 << (PFERR_IMPLICIT_ACCESS_BIT - 32);
export const PFERR_PRIVATE_ACCESS_HI = 1 << (PFERR_PRIVATE_ACCESS_BIT - 32);
/** PFERR_SYNTHETIC_MASK: bits only KVM sets; vendor exit handlers strip them if hardware reports them. */
export const PFERR_SYNTHETIC_MASK_HI = PFERR_IMPLICIT_ACCESS_HI | PFERR_PRIVATE_ACCESS_HI;
/** PFERR_NESTED_GUEST_PAGE = GUEST_PAGE | WRITE | PRESENT. */
export const PFERR_NESTED_GUEST_PAGE_LO = PFERR_WRITE_MASK | PFERR_PRESENT_MASK;
export const PFERR_NESTED_GUEST_PAGE_HI = PFERR_GUEST_PAGE_MASK_HI;

export interface PferrBit {
  /** The kernel's macro. */
  name: string;
  bit: number;
  /** Who sets it. */
  source: 'hw' | 'amd-npf' | 'kvm';
  desc: string;
}

export const PFERR_BITS: readonly PferrBit[] = [
  { name: 'PFERR_PRESENT_MASK', bit: 0, source: 'hw', desc: 'the translation was present (protection fault)' },
  { name: 'PFERR_WRITE_MASK', bit: 1, source: 'hw', desc: 'write access' },
  { name: 'PFERR_USER_MASK', bit: 2, source: 'hw', desc: 'user-mode access' },
  { name: 'PFERR_RSVD_MASK', bit: 3, source: 'hw', desc: 'reserved bit set (MMIO SPTE) / EPT misconfig' },
  { name: 'PFERR_FETCH_MASK', bit: 4, source: 'hw', desc: 'instruction fetch' },
  { name: 'PFERR_PK_MASK', bit: 5, source: 'hw', desc: 'protection-key violation' },
  { name: 'PFERR_SS_MASK', bit: 6, source: 'hw', desc: 'shadow-stack access' },
  { name: 'PFERR_SGX_MASK', bit: 15, source: 'hw', desc: 'SGX EPCM violation' },
  { name: 'PFERR_GUEST_RMP_MASK', bit: 31, source: 'amd-npf', desc: 'SNP: RMP check failed' },
  { name: 'PFERR_GUEST_FINAL_MASK', bit: 32, source: 'amd-npf', desc: 'fault on the final guest physical address' },
  { name: 'PFERR_GUEST_PAGE_MASK', bit: 33, source: 'amd-npf', desc: 'fault while walking the guest page tables' },
  { name: 'PFERR_GUEST_ENC_MASK', bit: 34, source: 'amd-npf', desc: 'encrypted (private) access' },
  { name: 'PFERR_GUEST_SIZEM_MASK', bit: 35, source: 'amd-npf', desc: 'page-size mismatch against the RMP entry' },
  { name: 'PFERR_GUEST_VMPL_MASK', bit: 36, source: 'amd-npf', desc: 'VMPL permission check failed' },
  { name: 'PFERR_IMPLICIT_ACCESS', bit: 48, source: 'kvm', desc: 'KVM-only: implicit supervisor access (SMAP checks)' },
  { name: 'PFERR_PRIVATE_ACCESS', bit: 49, source: 'kvm', desc: 'KVM-only: access to private (guest_memfd) memory' },
];

/** One-bit fields for decodeFields, named by the kernel's macros. */
export const PFERR_FIELDS: readonly BitField[] = PFERR_BITS.map((b) => ({ name: b.name, msb: b.bit, lsb: b.bit, desc: b.desc }));

function isSet(lo: number, hi: number, bit: number): boolean {
  return bit < 32 ? ((lo >>> bit) & 1) === 1 : ((hi >>> (bit - 32)) & 1) === 1;
}

/** The named bits set in an error code, lowest first. */
export function pferrSetBits(lo: number, hi: number): PferrBit[] {
  return PFERR_BITS.filter((b) => isSet(lo, hi, b.bit));
}

/** Set bit numbers that have no PFERR_* name. */
export function pferrUnknownBits(lo: number, hi: number): number[] {
  const named = new Set(PFERR_BITS.map((b) => b.bit));
  const r: number[] = [];
  for (let i = 0; i < 64; i++) if (isSet(lo, hi, i) && !named.has(i)) r.push(i);
  return r;
}

/** Flag table of the kvmmmu walker / fast_page_fault tracepoints, in print order. */
const TRACE_FLAGS: ReadonlyArray<readonly [number, string]> = [
  [PFERR_PRESENT_MASK, 'P'],
  [PFERR_WRITE_MASK, 'W'],
  [PFERR_USER_MASK, 'U'],
  [PFERR_PK_MASK, 'PK'],
  [PFERR_SS_MASK, 'SS'],
  [PFERR_SGX_MASK, 'SGX'],
  [PFERR_RSVD_MASK, 'RSVD'],
  [PFERR_FETCH_MASK, 'F'],
];

/**
 * `__print_flags(pferr, "|", kvm_mmu_trace_pferr_flags)` as kvm_mmu_pagetable_walk, kvm_mmu_walker_error
 * and fast_page_fault print it: known flags in table order joined by `|`, then any leftover bits as
 * `0x%lx`. `hi` is the upper half for fast_page_fault's u64 error code (0 for the u32 walker fields).
 */
export function pferr_trace_flags(lo: number, hi = 0): string {
  let rest = lo >>> 0;
  const parts: string[] = [];
  for (const [mask, name] of TRACE_FLAGS) {
    if ((rest & mask) === mask) {
      parts.push(name);
      rest = (rest & ~mask) >>> 0;
    }
  }
  if (rest !== 0 || hi >>> 0 !== 0) {
    const h = hi >>> 0;
    parts.push('0x' + (h === 0 ? rest.toString(16) : h.toString(16) + rest.toString(16).padStart(8, '0')));
  }
  return parts.join('|');
}
