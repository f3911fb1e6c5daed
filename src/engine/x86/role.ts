/**
 * MMU roles (asm/kvm_host.h unions, mmu.c role computations): `kvm_mmu_page_role` (u32 word),
 * `kvm_mmu_extended_role` (u32) and `kvm_cpu_role` (u64: base in the low half, ext in the high half).
 *
 * Roles travel as plain numbers (the u32 word) on hot paths; `decodeRole` / `encodeRole` convert to and
 * from an object with the kernel's field names for views and tests.
 */
import type { BitField } from '../bits/fields';
import type { U64 } from '../bits/u64';
import { ACC_ALL } from './spte';

// kvm_mmu_page_role, x86-64 GCC layout: fields packed from bit 0 upward.
export const ROLE_LEVEL_SHIFT = 0;
export const ROLE_LEVEL_MASK = 0xf;
export const ROLE_HAS_4_BYTE_GPTE = 1 << 4;
export const ROLE_QUADRANT_SHIFT = 5;
export const ROLE_QUADRANT_MASK = 0x3 << 5;
export const ROLE_DIRECT = 1 << 7;
export const ROLE_ACCESS_SHIFT = 8;
export const ROLE_ACCESS_MASK = 0x7 << 8;
export const ROLE_INVALID = 1 << 11;
export const ROLE_EFER_NX = 1 << 12;
export const ROLE_CR0_WP = 1 << 13;
export const ROLE_SMEP_ANDNOT_WP = 1 << 14;
export const ROLE_SMAP_ANDNOT_WP = 1 << 15;
export const ROLE_AD_DISABLED = 1 << 16;
export const ROLE_GUEST_MODE = 1 << 17;
export const ROLE_PASSTHROUGH = 1 << 18;
export const ROLE_IS_MIRROR = 1 << 19;
export const ROLE_SMM_SHIFT = 24;
export const ROLE_SMM_MASK = 0xff00_0000;

// kvm_mmu_extended_role.
export const EXT_VALID = 1 << 0;
export const EXT_EXECONLY = 1 << 1;
export const EXT_CR4_PSE = 1 << 2;
export const EXT_CR4_PKE = 1 << 3;
export const EXT_CR4_SMAP = 1 << 4;
export const EXT_CR4_SMEP = 1 << 5;
export const EXT_CR4_LA57 = 1 << 6;
export const EXT_EFER_LMA = 1 << 7;

export const PT32_ROOT_LEVEL = 2;
export const PT32E_ROOT_LEVEL = 3;
export const PT64_ROOT_4LEVEL = 4;
export const PT64_ROOT_5LEVEL = 5;

// Architectural control-register bits read by kvm_calc_cpu_role.
export const X86_CR0_WP = 1 << 16;
export const X86_CR0_PG = 1 << 31;
export const X86_CR4_PSE = 1 << 4;
export const X86_CR4_PAE = 1 << 5;
export const X86_CR4_LA57 = 1 << 12;
export const X86_CR4_SMEP = 1 << 20;
export const X86_CR4_SMAP = 1 << 21;
export const X86_CR4_PKE = 1 << 22;
export const EFER_LMA = 1 << 10;
export const EFER_NX = 1 << 11;

/** union kvm_mmu_page_role as named fields. Booleans for 1-bit flags, numbers for wider fields. */
export interface KvmMmuPageRole {
  level: number;
  has_4_byte_gpte: boolean;
  quadrant: number;
  direct: boolean;
  access: number;
  invalid: boolean;
  efer_nx: boolean;
  cr0_wp: boolean;
  smep_andnot_wp: boolean;
  smap_andnot_wp: boolean;
  ad_disabled: boolean;
  guest_mode: boolean;
  passthrough: boolean;
  is_mirror: boolean;
  smm: number;
}

export interface KvmMmuExtendedRole {
  valid: boolean;
  execonly: boolean;
  cr4_pse: boolean;
  cr4_pke: boolean;
  cr4_smap: boolean;
  cr4_smep: boolean;
  cr4_la57: boolean;
  efer_lma: boolean;
}

export const ROLE_FIELDS: readonly BitField[] = [
  { name: 'level', msb: 3, lsb: 0, desc: 'table level: 1 PT, 2 PD, 3 PDPT, 4 PML4, 5 PML5 (0: no paging)' },
  { name: 'has_4_byte_gpte', msb: 4, lsb: 4, desc: 'shadows a 32-bit non-PAE guest table' },
  { name: 'quadrant', msb: 6, lsb: 5, desc: 'which part of a 4-byte-gPTE guest table this page shadows' },
  { name: 'direct', msb: 7, lsb: 7, desc: 'maps a linear gfn range; no guest table behind it' },
  {
    name: 'access',
    msb: 10,
    lsb: 8,
    desc: 'inherited ACC_* permissions (1 exec, 2 write, 4 user)',
    values: { 0: '---', 1: '--x', 2: 'w--', 3: 'w-x', 4: '-u-', 5: '-ux', 6: 'wu-', 7: 'wux' },
  },
  { name: 'invalid', msb: 11, lsb: 11, desc: 'being zapped / invalidated root; never reused' },
  { name: 'efer_nx', msb: 12, lsb: 12, desc: 'EFER.NX the page is valid for' },
  { name: 'cr0_wp', msb: 13, lsb: 13, desc: 'CR0.WP the page is valid for' },
  { name: 'smep_andnot_wp', msb: 14, lsb: 14, desc: 'CR4.SMEP && !CR0.WP' },
  { name: 'smap_andnot_wp', msb: 15, lsb: 15, desc: 'CR4.SMAP && !CR0.WP' },
  { name: 'ad_disabled', msb: 16, lsb: 16, desc: 'this MMU cannot use hardware A/D bits' },
  { name: 'guest_mode', msb: 17, lsb: 17, desc: 'belongs to a nested (L2) MMU' },
  { name: 'passthrough', msb: 18, lsb: 18, desc: 'no guest table; entry 0 points at the real shadowed table' },
  { name: 'is_mirror', msb: 19, lsb: 19, desc: 'TDX mirror page (private S-EPT image)' },
  { name: 'unused', msb: 23, lsb: 20, desc: 'unused' },
  { name: 'smm', msb: 31, lsb: 24, desc: 'address space: nonzero = SMM (kvm_mmu_role_as_id 1)' },
];

export const EXT_ROLE_FIELDS: readonly BitField[] = [
  { name: 'valid', msb: 0, lsb: 0, desc: 'set once computed, so all-zero never matches' },
  { name: 'execonly', msb: 1, lsb: 1, desc: 'nested EPT allows execute-only' },
  { name: 'cr4_pse', msb: 2, lsb: 2, desc: 'CR4.PSE' },
  { name: 'cr4_pke', msb: 3, lsb: 3, desc: 'CR4.PKE (only with EFER.LMA)' },
  { name: 'cr4_smap', msb: 4, lsb: 4, desc: 'CR4.SMAP' },
  { name: 'cr4_smep', msb: 5, lsb: 5, desc: 'CR4.SMEP' },
  { name: 'cr4_la57', msb: 6, lsb: 6, desc: 'CR4.LA57 (only with EFER.LMA)' },
  { name: 'efer_lma', msb: 7, lsb: 7, desc: 'EFER.LMA' },
];

export function decodeRole(word: number): KvmMmuPageRole {
  const w = word >>> 0;
  return {
    level: w & ROLE_LEVEL_MASK,
    has_4_byte_gpte: (w & ROLE_HAS_4_BYTE_GPTE) !== 0,
    quadrant: (w & ROLE_QUADRANT_MASK) >>> ROLE_QUADRANT_SHIFT,
    direct: (w & ROLE_DIRECT) !== 0,
    access: (w & ROLE_ACCESS_MASK) >>> ROLE_ACCESS_SHIFT,
    invalid: (w & ROLE_INVALID) !== 0,
    efer_nx: (w & ROLE_EFER_NX) !== 0,
    cr0_wp: (w & ROLE_CR0_WP) !== 0,
    smep_andnot_wp: (w & ROLE_SMEP_ANDNOT_WP) !== 0,
    smap_andnot_wp: (w & ROLE_SMAP_ANDNOT_WP) !== 0,
    ad_disabled: (w & ROLE_AD_DISABLED) !== 0,
    guest_mode: (w & ROLE_GUEST_MODE) !== 0,
    passthrough: (w & ROLE_PASSTHROUGH) !== 0,
    is_mirror: (w & ROLE_IS_MIRROR) !== 0,
    smm: w >>> ROLE_SMM_SHIFT,
  };
}

/** Pack named fields into the word; wider-than-field values are truncated as a C bitfield store would. */
export function encodeRole(r: Partial<KvmMmuPageRole>): number {
  let w = 0;
  w |= (r.level ?? 0) & ROLE_LEVEL_MASK;
  if (r.has_4_byte_gpte) w |= ROLE_HAS_4_BYTE_GPTE;
  w |= ((r.quadrant ?? 0) & 3) << ROLE_QUADRANT_SHIFT;
  if (r.direct) w |= ROLE_DIRECT;
  w |= ((r.access ?? 0) & 7) << ROLE_ACCESS_SHIFT;
  if (r.invalid) w |= ROLE_INVALID;
  if (r.efer_nx) w |= ROLE_EFER_NX;
  if (r.cr0_wp) w |= ROLE_CR0_WP;
  if (r.smep_andnot_wp) w |= ROLE_SMEP_ANDNOT_WP;
  if (r.smap_andnot_wp) w |= ROLE_SMAP_ANDNOT_WP;
  if (r.ad_disabled) w |= ROLE_AD_DISABLED;
  if (r.guest_mode) w |= ROLE_GUEST_MODE;
  if (r.passthrough) w |= ROLE_PASSTHROUGH;
  if (r.is_mirror) w |= ROLE_IS_MIRROR;
  w |= ((r.smm ?? 0) & 0xff) << ROLE_SMM_SHIFT;
  return w >>> 0;
}

export function decodeExtRole(word: number): KvmMmuExtendedRole {
  const w = word >>> 0;
  return {
    valid: (w & EXT_VALID) !== 0,
    execonly: (w & EXT_EXECONLY) !== 0,
    cr4_pse: (w & EXT_CR4_PSE) !== 0,
    cr4_pke: (w & EXT_CR4_PKE) !== 0,
    cr4_smap: (w & EXT_CR4_SMAP) !== 0,
    cr4_smep: (w & EXT_CR4_SMEP) !== 0,
    cr4_la57: (w & EXT_CR4_LA57) !== 0,
    efer_lma: (w & EXT_EFER_LMA) !== 0,
  };
}

export function encodeExtRole(e: Partial<KvmMmuExtendedRole>): number {
  let w = 0;
  if (e.valid) w |= EXT_VALID;
  if (e.execonly) w |= EXT_EXECONLY;
  if (e.cr4_pse) w |= EXT_CR4_PSE;
  if (e.cr4_pke) w |= EXT_CR4_PKE;
  if (e.cr4_smap) w |= EXT_CR4_SMAP;
  if (e.cr4_smep) w |= EXT_CR4_SMEP;
  if (e.cr4_la57) w |= EXT_CR4_LA57;
  if (e.efer_lma) w |= EXT_EFER_LMA;
  return w >>> 0;
}

export function role_level(word: number): number {
  return word & ROLE_LEVEL_MASK;
}

/** kvm_mmu_role_as_id: SMM pages live in address space 1. */
export function kvm_mmu_role_as_id(word: number): number {
  return word >>> ROLE_SMM_SHIFT !== 0 ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------
// Role computations (mmu.c).

/** struct kvm_mmu_role_regs plus the vCPU state kvm_calc_cpu_role reads. */
export interface MmuRoleRegs {
  cr0: number;
  cr4: number;
  /** Low 32 bits of EFER are enough (LMA bit 10, NX bit 11). */
  efer: number;
  /** is_smm(vcpu). */
  smm?: boolean;
  /** is_guest_mode(vcpu). */
  guest_mode?: boolean;
}

/** kvm_calc_cpu_role: the guest's paging mode as a kvm_cpu_role (lo = base word, hi = ext word). */
export function kvm_calc_cpu_role(regs: MmuRoleRegs): U64 {
  let base = ACC_ALL << ROLE_ACCESS_SHIFT;
  if (regs.smm) base |= 1 << ROLE_SMM_SHIFT;
  if (regs.guest_mode) base |= ROLE_GUEST_MODE;
  let ext = EXT_VALID;

  if ((regs.cr0 & X86_CR0_PG) === 0) {
    base |= ROLE_DIRECT;
    return { lo: base >>> 0, hi: ext >>> 0 };
  }

  const wp = (regs.cr0 & X86_CR0_WP) !== 0;
  const smep = (regs.cr4 & X86_CR4_SMEP) !== 0;
  const smap = (regs.cr4 & X86_CR4_SMAP) !== 0;
  const pae = (regs.cr4 & X86_CR4_PAE) !== 0;
  const la57 = (regs.cr4 & X86_CR4_LA57) !== 0;
  const lma = (regs.efer & EFER_LMA) !== 0;

  if ((regs.efer & EFER_NX) !== 0) base |= ROLE_EFER_NX;
  if (wp) base |= ROLE_CR0_WP;
  if (smep && !wp) base |= ROLE_SMEP_ANDNOT_WP;
  if (smap && !wp) base |= ROLE_SMAP_ANDNOT_WP;
  if (!pae) base |= ROLE_HAS_4_BYTE_GPTE;
  base |= lma ? (la57 ? PT64_ROOT_5LEVEL : PT64_ROOT_4LEVEL) : pae ? PT32E_ROOT_LEVEL : PT32_ROOT_LEVEL;

  if (smep) ext |= EXT_CR4_SMEP;
  if (smap) ext |= EXT_CR4_SMAP;
  if ((regs.cr4 & X86_CR4_PSE) !== 0) ext |= EXT_CR4_PSE;
  // PKE and LA57 only mean something in long mode.
  if (lma && (regs.cr4 & X86_CR4_PKE) !== 0) ext |= EXT_CR4_PKE;
  if (lma && la57) ext |= EXT_CR4_LA57;
  if (lma) ext |= EXT_EFER_LMA;
  return { lo: base >>> 0, hi: ext >>> 0 };
}

/**
 * kvm_mmu_get_tdp_level: a forced `tdp_root_level` wins; otherwise 5-level TDP is used only when the
 * guest's MAXPHYADDR needs more than 48 bits.
 */
export function kvm_mmu_get_tdp_level(tdp_root_level: number, max_tdp_level: number, guest_maxphyaddr: number): number {
  if (tdp_root_level) return tdp_root_level;
  if (max_tdp_level === 5 && guest_maxphyaddr <= 48) return 4;
  return max_tdp_level;
}

/** kvm_calc_tdp_mmu_root_page_role: TDP roots are direct, ACC_ALL, WP=NX=1; only SMM/guest mode vary. */
export function kvm_calc_tdp_mmu_root_page_role(cpu_role_base: number, kvm_ad_enabled: boolean, tdp_level: number): number {
  let r = (ACC_ALL << ROLE_ACCESS_SHIFT) | ROLE_CR0_WP | ROLE_EFER_NX | ROLE_DIRECT;
  r |= cpu_role_base & (ROLE_SMM_MASK | ROLE_GUEST_MODE);
  if (!kvm_ad_enabled) r |= ROLE_AD_DISABLED;
  r |= tdp_level & ROLE_LEVEL_MASK;
  return r >>> 0;
}

/** The root_role kvm_init_shadow_mmu derives: the CPU role's base, at least PAE level, EFER.NX forced. */
export function shadowMmuRootRole(cpu_role_base: number): number {
  const level = Math.max(cpu_role_base & ROLE_LEVEL_MASK, PT32E_ROOT_LEVEL);
  return ((cpu_role_base & ~ROLE_LEVEL_MASK) | level | ROLE_EFER_NX) >>> 0;
}

/**
 * The roles kvm_init_shadow_npt_mmu computes for L1's NPT (CR4.PKE is ignored; the vCPU is in guest
 * mode): cpu_role from L1's registers, root_role = its base at the TDP level, passthrough when a 5-level
 * host root shadows a 4-level L1 table.
 */
export function shadowNptRoles(cr0: number, cr4: number, efer: number, smm: boolean, tdp_level: number): { cpu_role: U64; root_role: number } {
  const cpu_role = kvm_calc_cpu_role({ cr0, cr4: cr4 & ~X86_CR4_PKE, efer, smm, guest_mode: true });
  let root = ((cpu_role.lo & ~ROLE_LEVEL_MASK) | (tdp_level & ROLE_LEVEL_MASK)) >>> 0;
  if (tdp_level === PT64_ROOT_5LEVEL && (cpu_role.lo & ROLE_LEVEL_MASK) === PT64_ROOT_4LEVEL) root = (root | ROLE_PASSTHROUGH) >>> 0;
  return { cpu_role, root_role: root };
}

/**
 * kvm_calc_shadow_ept_root_page_role: the cpu_role of a nested-EPT MMU (level from EPTP12). Indirect,
 * guest mode, ACC_ALL; CR0.WP / EFER.NX stay 0; SMM is always 0. The root_role is its base.
 */
export function kvm_calc_shadow_ept_root_page_role(accessed_dirty: boolean, execonly: boolean, level: number): U64 {
  let base = (level & ROLE_LEVEL_MASK) | ROLE_GUEST_MODE | (ACC_ALL << ROLE_ACCESS_SHIFT);
  if (!accessed_dirty) base |= ROLE_AD_DISABLED;
  let ext = EXT_VALID;
  if (execonly) ext |= EXT_EXECONLY;
  return { lo: base >>> 0, hi: ext >>> 0 };
}

/**
 * kvm_mmu_child_role: the parent's role one level down with the caller's access/direct and passthrough
 * cleared. Under a 4-byte-gPTE parent the child is a PT and the quadrant picks which 2 MiB half of the
 * guest's 4 MiB PDE (parent SPTE index bit 0).
 */
export function kvm_mmu_child_role(parent_role: number, parent_spte_index: number, direct: boolean, access: number): number {
  let r = parent_role >>> 0;
  const level = (r & ROLE_LEVEL_MASK) - 1;
  r = (r & ~ROLE_LEVEL_MASK) | (level & ROLE_LEVEL_MASK);
  r = (r & ~ROLE_ACCESS_MASK) | ((access & 7) << ROLE_ACCESS_SHIFT);
  r = direct ? r | ROLE_DIRECT : r & ~ROLE_DIRECT;
  r &= ~ROLE_PASSTHROUGH;
  if ((r & ROLE_HAS_4_BYTE_GPTE) !== 0) r = (r & ~ROLE_QUADRANT_MASK) | ((parent_spte_index & 1) << ROLE_QUADRANT_SHIFT);
  return r >>> 0;
}

/** Bits kvm_sync_page_check ignores when comparing an unsync SP's role with the root role. */
export const SYNC_PAGE_ROLE_IGNORE = ROLE_LEVEL_MASK | ROLE_ACCESS_MASK | ROLE_QUADRANT_MASK | ROLE_PASSTHROUGH;

// ---------------------------------------------------------------------------------------------------
// Trace text.

const ACCESS_STR = ['---', '--x', 'w--', 'w-x', '-u-', '-ux', 'wu-', 'wux'] as const;

/**
 * The role part of the kvm_mmu_get_page / kvm_mmu_prepare_zap_page text (6.18 print fmt):
 * `lL B-byte qQ[ direct] ACC[ invalid] [!]nxe [!]ad`, e.g. `l4 8-byte q0 direct wux nxe ad`.
 */
export function role_trace_text(word: number): string {
  const w = word >>> 0;
  return (
    `l${w & ROLE_LEVEL_MASK} ${(w & ROLE_HAS_4_BYTE_GPTE) !== 0 ? 4 : 8}-byte q${(w & ROLE_QUADRANT_MASK) >>> ROLE_QUADRANT_SHIFT}` +
    `${(w & ROLE_DIRECT) !== 0 ? ' direct' : ''} ${ACCESS_STR[(w & ROLE_ACCESS_MASK) >>> ROLE_ACCESS_SHIFT]}` +
    `${(w & ROLE_INVALID) !== 0 ? ' invalid' : ''} ${(w & ROLE_EFER_NX) !== 0 ? '' : '!'}nxe ${(w & ROLE_AD_DISABLED) !== 0 ? '!' : ''}ad`
  );
}
