/**
 * The guest page-table walker KVM uses to emulate the CPU's walk (paging_tmpl.h, instantiated for
 * PTTYPE 32, 64 and EPT): `walk_addr_generic` walks from CR3 (or the PAE PDPTRs, or EPTP), accumulates
 * W/U/NX (or EPT R/W/X) over the levels, checks present and reserved bits at each level, runs
 * `permission_fault` on the result and only then sets A/D bits (upper levels' A first, then the leaf's
 * A and, on a write, D). On failure it builds the #PF error code the way KVM does and records a
 * per-level explanation.
 *
 * Guest memory is reached through `GuestPageTableAccess`, so the same walker reads sparse guest memory
 * (`MemoryGuestPageTables`) or the list of entries a user pasted (`ListGuestPageTables`).
 *
 * Hot path: no BigInt, no allocation per walk (the `GuestWalker` result is reused; scratch is typed).
 */
import { defineProbe, probes } from '../probes';
import { trace } from '../trace_sink';
import type { GuestMemory } from '../mem/guest_memory';
import * as gp from './guest_pte';
import { __reset_rsvds_bits_mask, __reset_rsvds_bits_mask_ept, reserved_gpa_bits, RsvdBitsValidate } from './guest_pte';
import * as perm from './permission';
import {
  permission_fault,
  update_permission_bitmask,
  update_pkru_bitmask,
  type PermissionMmu,
  type PermissionVcpu,
} from './permission';
import * as pferr from './pferr';
import {
  emit_kvm_mmu_pagetable_walk,
  emit_kvm_mmu_paging_element,
  emit_kvm_mmu_set_accessed_bit,
  emit_kvm_mmu_set_dirty_bit,
  emit_kvm_mmu_walker_error,
} from './paging_trace';

// Module-local copies: under a CommonJS loader (tsx in tests) every imported binding is a getter call,
// which the walk would otherwise pay several times per level.
const PFERR_PRESENT_MASK = pferr.PFERR_PRESENT_MASK | 0;
const PFERR_WRITE_MASK = pferr.PFERR_WRITE_MASK | 0;
const PFERR_USER_MASK = pferr.PFERR_USER_MASK | 0;
const PFERR_RSVD_MASK = pferr.PFERR_RSVD_MASK | 0;
const PFERR_FETCH_MASK = pferr.PFERR_FETCH_MASK | 0;
const PFERR_PK_MASK = pferr.PFERR_PK_MASK | 0;
const is_rsvd_bits_set_raw = gp.__is_rsvd_bits_set;
const is_bad_mt_xwr_raw = gp.__is_bad_mt_xwr;
const PT32_DIR_PSE36_MASK = gp.PT32_DIR_PSE36_MASK | 0;
const PT32_DIR_PSE36_SHIFT = gp.PT32_DIR_PSE36_SHIFT | 0;
const PT32_ROOT_LEVEL = gp.PT32_ROOT_LEVEL | 0;
const PT32E_ROOT_LEVEL = gp.PT32E_ROOT_LEVEL | 0;
const PT64_ROOT_4LEVEL = gp.PT64_ROOT_4LEVEL | 0;
const PT64_ROOT_5LEVEL = gp.PT64_ROOT_5LEVEL | 0;
const PG_LEVEL_1G = gp.PG_LEVEL_1G | 0;
const ACC_EXEC_MASK = perm.ACC_EXEC_MASK | 0;
const ACC_WRITE_MASK = perm.ACC_WRITE_MASK | 0;
const ACC_USER_MASK = perm.ACC_USER_MASK | 0;
const check_permission = permission_fault;

export const PF_VECTOR = 14;

/** EPT-violation exit-qualification bits the walker fills in for a nested EPT fault (asm/vmx.h). */
export const EPT_VIOLATION_ACC_READ = 1 << 0;
export const EPT_VIOLATION_ACC_WRITE = 1 << 1;
export const EPT_VIOLATION_ACC_INSTR = 1 << 2;
export const EPT_VIOLATION_PROT_SHIFT = 3;

/** Which instantiation of paging_tmpl.h: 4-byte entries, 8-byte entries, or EPT. */
export const PTTYPE_32 = 32;
export const PTTYPE_64 = 64;
export const PTTYPE_EPT = 18;
export type PtType = typeof PTTYPE_32 | typeof PTTYPE_64 | typeof PTTYPE_EPT;

/** Control-register and EFER bits that decide the guest paging mode (`struct kvm_mmu_role_regs`). */
export interface GuestPagingRegs {
  cr0_pg: boolean;
  cr0_wp: boolean;
  cr4_pae: boolean;
  cr4_pse: boolean;
  cr4_smep: boolean;
  cr4_smap: boolean;
  cr4_pke: boolean;
  cr4_la57: boolean;
  efer_lma: boolean;
  efer_nx: boolean;
}

/** Guest CPUID facts the reserved-bit masks depend on. */
export interface GuestCpuModel {
  maxphyaddr: number;
  gbpages: boolean;
  pse36: boolean;
  /** AMD-compatible vendor: bit 8 of non-leaf PML4E/PML5E is reserved. */
  amd: boolean;
}

export interface EptMmuOptions {
  /** 4 or 5 (from EPTP bits 5:3). */
  level: number;
  /** Execute-only translations supported (XWR=100 allowed). */
  execonly: boolean;
  /** Largest leaf: PG_LEVEL_1G, PG_LEVEL_2M or PG_LEVEL_4K. */
  huge_page_level: number;
  /** EPTP bit 6: A/D flags enabled. */
  accessed_dirty: boolean;
  maxphyaddr: number;
}

/**
 * The walker's view of a `struct kvm_mmu`: the CPU role bits that matter, the reserved-bit masks, and
 * the precomputed permission tables.
 */
export class GuestMmu implements PermissionMmu {
  readonly permissions = new Uint8Array(16);
  pkru_mask = 0;
  readonly guest_rsvd_check = new RsvdBitsValidate();
  /** cpu_role.base.level: 0 when paging is off (direct), else 2..5. */
  level = 0;
  direct = true;
  pttype: PtType = PTTYPE_64;
  cr0_wp = false;
  cr4_smep = false;
  cr4_smap = false;
  cr4_pse = false;
  /** Guest CPUID PSE36 (4M PDE bits 16:13 are address bits 35:32). */
  pse36 = false;
  cr4_pke = false;
  efer_nx = false;
  efer_lma = false;
  /** EPT only: EPTP A/D disabled. */
  ad_disabled = false;
  /** EPT only. */
  execonly = false;
  /**
   * False for an MMU that is not the vCPU's walk_mmu (the nested EPT/NPT guest_mmu): its faults are
   * nested page faults.
   */
  is_walk_mmu = true;
}

/** `kvm_calc_cpu_role` + `reset_guest_paging_metadata` for a legacy/PAE/long-mode guest. */
export function createGuestMmu(regs: GuestPagingRegs, cpu: GuestCpuModel): GuestMmu {
  const mmu = new GuestMmu();
  if (!regs.cr0_pg) return mmu;
  mmu.direct = false;
  mmu.efer_nx = regs.efer_nx;
  mmu.cr0_wp = regs.cr0_wp;
  mmu.cr4_smep = regs.cr4_smep;
  mmu.cr4_smap = regs.cr4_smap;
  mmu.cr4_pse = regs.cr4_pse;
  mmu.pse36 = cpu.pse36;
  mmu.efer_lma = regs.efer_lma;
  // Protection keys (and LA57) exist only in long mode.
  mmu.cr4_pke = regs.efer_lma && regs.cr4_pke;
  if (regs.efer_lma) mmu.level = regs.cr4_la57 ? PT64_ROOT_5LEVEL : PT64_ROOT_4LEVEL;
  else if (regs.cr4_pae) mmu.level = PT32E_ROOT_LEVEL;
  else mmu.level = PT32_ROOT_LEVEL;
  mmu.pttype = regs.cr4_pae ? PTTYPE_64 : PTTYPE_32;
  __reset_rsvds_bits_mask(
    mmu.guest_rsvd_check,
    reserved_gpa_bits(cpu.maxphyaddr),
    mmu.level,
    mmu.efer_nx,
    cpu.gbpages,
    mmu.cr4_pse,
    cpu.amd,
    cpu.pse36,
  );
  update_permission_bitmask(mmu, false);
  update_pkru_bitmask(mmu);
  return mmu;
}

/** `kvm_init_shadow_ept_mmu`: the MMU that walks L1's EPT tables for an L2 GPA. */
export function createGuestEptMmu(o: EptMmuOptions): GuestMmu {
  const mmu = new GuestMmu();
  mmu.direct = false;
  mmu.pttype = PTTYPE_EPT;
  mmu.level = o.level;
  mmu.ad_disabled = !o.accessed_dirty;
  mmu.execonly = o.execonly;
  mmu.is_walk_mmu = false;
  // The EPT role carries no CR0/CR4/EFER bits: no NX/SMEP (so no F in the error code), no PKRU.
  update_permission_bitmask(mmu, true);
  mmu.pkru_mask = 0;
  __reset_rsvds_bits_mask_ept(mmu.guest_rsvd_check, reserved_gpa_bits(o.maxphyaddr), o.execonly, o.huge_page_level ?? PG_LEVEL_1G);
  return mmu;
}

/** How the walker reaches guest page tables. */
export interface GuestPageTableAccess {
  /** CR3, or EPTP for the EPT MMU, into out[0] (lo) and out[1] (hi). */
  get_guest_pgd(out: Uint32Array): void;
  /** PAE: cached PDPTR `index` (0..3) into out. */
  get_pdptr(index: number, out: Uint32Array): void;
  /**
   * Read the entry of `size` bytes at guest physical `gpa`, met at walk level `level`, into out[0]/out[1]
   * (hi 0 for 4-byte entries). False when no visible memslot backs it.
   */
  read_gpte(gpa: number, size: 4 | 8, level: number, out: Uint32Array): boolean;
  /** Whether the memslot holding the entry is writable (A/D updates skip read-only slots). */
  gpte_writable(gpa: number, level: number): boolean;
  /** Atomic update of an entry: 0 written, 1 it changed meanwhile (the walk restarts), negative: fault. */
  cmpxchg_gpte(gpa: number, size: 4 | 8, level: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number;
  /**
   * Nested translation of a GPA (`kvm_translate_gpa`), page-aligned in and out; -1 when it faults (the
   * nested fault is then the caller's to report). Absent: identity.
   */
  translate_gpa?(gpa: number, accessLo: number, accessHi: number): number;
  /** `kvm_vcpu_mark_page_dirty` of a page-table gfn after an A/D update (dirty logging). */
  mark_page_dirty?(table_gfn: number): void;
}

/** vCPU state the walker reads. */
export interface WalkVcpu extends PermissionVcpu {
  vcpu_id: number;
}

/** Why the walk went on or stopped at a step. */
export const WalkStep = {
  /** PAE PDPTR present: the walk continues in the page directory it names. */
  PDPTR: 1,
  /** Present, no reserved bit, not a leaf: descend. */
  NEXT: 2,
  /** Present, no reserved bit, leaf (bit 7 or level 1): translation found. */
  LEAF: 3,
  NOT_PRESENT: 4,
  RSVD: 5,
  /** EPT: memtype/XWR combination that is a misconfiguration. */
  BAD_MT_XWR: 6,
  /** No memslot behind the table: fault without P. */
  BAD_GPA: 7,
  /** The nested translation of the table address faulted. */
  NESTED_FAULT: 8,
} as const;
export type WalkStep = (typeof WalkStep)[keyof typeof WalkStep];

/** Outcome of the whole walk. */
export const WalkResult = {
  OK: 0,
  NOT_PRESENT: 1,
  RSVD: 2,
  PERMISSION: 3,
  PKEY: 4,
  BAD_GPA: 5,
  NESTED_FAULT: 6,
  /** The A/D cmpxchg faulted. */
  AD_FAULT: 7,
} as const;
export type WalkResult = (typeof WalkResult)[keyof typeof WalkResult];

const MAX_STEPS = 6;

/** `struct guest_walker` plus the explanation the debugger shows. Reused across walks. */
export class GuestWalker {
  level = 0;
  max_level = 0;
  readonly table_gfn = new Float64Array(5);
  /** ptes[level-1]: [2i] lo, [2i+1] hi. */
  readonly ptes = new Uint32Array(10);
  readonly pte_gpa = new Float64Array(5);
  /** Where the entry was really read (after a nested translation). */
  readonly pte_real_gpa = new Float64Array(5);
  readonly pte_writable = new Uint8Array(5);
  /** Access accumulated above each level (ACC bits). */
  readonly pt_access = new Uint8Array(5);
  pte_access = 0;
  pte_pkey = 0;
  gfn = 0;

  // struct x86_exception
  vector = 0;
  error_code_valid = false;
  error_code = 0;
  fault_address_lo = 0;
  fault_address_hi = 0;
  nested_page_fault = false;
  exit_qualification = 0;

  // Explanation.
  result: WalkResult = WalkResult.OK;
  retries = 0;
  nsteps = 0;
  readonly step_level = new Uint8Array(MAX_STEPS);
  readonly step_reason = new Uint8Array(MAX_STEPS);
  /** [2i] lo, [2i+1] hi of the entry at step i (0 for BAD_GPA). */
  readonly step_pte = new Uint32Array(MAX_STEPS * 2);
  /** GPA the entry was read from; -1 for a PDPTR. */
  readonly step_gpa = new Float64Array(MAX_STEPS);
  /** Per level: 1 = A set by this walk, 2 = D set by this walk. */
  readonly ad_set = new Uint8Array(5);

  resetSteps(): void {
    this.nsteps = 0;
    // Five stores: a fill() builtin call costs more than this on every walk.
    const a = this.ad_set;
    a[0] = 0;
    a[1] = 0;
    a[2] = 0;
    a[3] = 0;
    a[4] = 0;
  }

  addStep(level: number, lo: number, hi: number, gpa: number, reason: WalkStep): void {
    const i = this.nsteps;
    if (i >= MAX_STEPS) return;
    this.step_level[i] = level;
    this.step_reason[i] = reason;
    this.step_pte[2 * i] = lo;
    this.step_pte[2 * i + 1] = hi;
    this.step_gpa[i] = gpa;
    this.nsteps = i + 1;
  }

  /** The guest physical address of the translation (valid after a successful walk). */
  gpa(addrLo: number): number {
    return this.gfn * 4096 + (addrLo & 0xfff);
  }
}

export const PROBE_WALK_ADDR_GENERIC = defineProbe(
  'walk_addr_generic',
  'walk',
  'arch/x86/kvm/mmu/paging_tmpl.h',
  'Guest page-table walk (FNAME(walk_addr_generic)): accumulate access, check present/reserved bits, permission_fault, then A/D',
  ['addr', 'access', 'level', 'pttype'],
);

export const PROBE_UPDATE_ACCESSED_DIRTY_BITS = defineProbe(
  'update_accessed_dirty_bits',
  'walk',
  'arch/x86/kvm/mmu/paging_tmpl.h',
  'Set guest A bits top-down and the leaf D bit on a write, after the walk passed its permission check',
  ['level', 'write_fault'],
);

const scratch = new Uint32Array(2);

/** Index of `addr` in the table at `level`. */
function pt_index(pttype: PtType, addrLo: number, addrHi: number, level: number): number {
  if (pttype === PTTYPE_32) return (addrLo >>> (12 + 10 * (level - 1))) & 1023;
  const shift = 12 + 9 * (level - 1);
  if (shift >= 32) return (addrHi >>> (shift - 32)) & 511;
  if (shift + 9 <= 32) return (addrLo >>> shift) & 511;
  return ((addrLo >>> shift) | (addrHi << (32 - shift))) & 511;
}

/** Frame number in entry bits 51:12 (31:12 for 4-byte entries). */
function gpte_to_gfn(pttype: PtType, lo: number, hi: number): number {
  if (pttype === PTTYPE_32) return lo >>> 12;
  return (hi & 0xfffff) * 0x10_0000 + (lo >>> 12);
}

/** ACC bits of an entry (or of accumulated access) given with its NX bit already in its natural sense. */
function gpte_access(pttype: PtType, lo: number, hi: number): number {
  if (pttype === PTTYPE_EPT) {
    return (lo & 2 ? ACC_WRITE_MASK : 0) | (lo & 4 ? ACC_EXEC_MASK : 0) | (lo & 1 ? ACC_USER_MASK : 0);
  }
  // The P slot doubles as "executable": P (always 1 here) XOR NX.
  return (lo & 7) ^ (hi >>> 31);
}

/** Bit 7 ends the walk above level 1, except in 2-level paging without CR4.PSE, where it is ignored. */
export function is_last_gpte(mmu: GuestMmu, level: number, gpteLo: number): boolean {
  if (level === 1) return true;
  if ((gpteLo & 0x80) === 0) return false;
  return !(mmu.pttype === PTTYPE_32 && level === PT32_ROOT_LEVEL && !mmu.cr4_pse);
}

function is_present_gpte(pttype: PtType, lo: number): boolean {
  return pttype === PTTYPE_EPT ? (lo & 7) !== 0 : (lo & 1) !== 0;
}

function is_rsvd_bits_set(mmu: GuestMmu, lo: number, hi: number, level: number): WalkStep | 0 {
  if (is_rsvd_bits_set_raw(mmu.guest_rsvd_check, lo, hi, level)) return WalkStep.RSVD;
  if (mmu.pttype === PTTYPE_EPT && is_bad_mt_xwr_raw(mmu.guest_rsvd_check, lo)) return WalkStep.BAD_MT_XWR;
  return 0;
}

/** Returns 0, 1 (retry the walk) or negative (fault). */
function update_accessed_dirty_bits(
  vcpu: WalkVcpu,
  mmu: GuestMmu,
  walker: GuestWalker,
  src: GuestPageTableAccess,
  write_fault: boolean,
): number {
  if (mmu.pttype === PTTYPE_EPT && mmu.ad_disabled) return 0;
  if (probes.armed) probes.hit(PROBE_UPDATE_ACCESSED_DIRTY_BITS, { level: walker.level, write_fault });
  const aMask = mmu.pttype === PTTYPE_EPT ? 1 << 8 : 1 << 5;
  const dMask = mmu.pttype === PTTYPE_EPT ? 1 << 9 : 1 << 6;
  const size = mmu.pttype === PTTYPE_32 ? 4 : 8;
  for (let level = walker.max_level; level >= walker.level; level--) {
    const oLo = walker.ptes[2 * (level - 1)]!;
    const oHi = walker.ptes[2 * (level - 1) + 1]!;
    let nLo = oLo;
    const gpa = walker.pte_gpa[level - 1]!;
    let set = 0;
    if ((nLo & aMask) === 0) {
      if (trace.enabled) emit_kvm_mmu_set_accessed_bit(vcpu.vcpu_id, gpa);
      nLo |= aMask;
      set |= 1;
    }
    if (level === walker.level && write_fault && (nLo & dMask) === 0) {
      if (trace.enabled) emit_kvm_mmu_set_dirty_bit(vcpu.vcpu_id, gpa);
      nLo |= dMask;
      set |= 2;
    }
    if (nLo === oLo) continue;
    // Page tables in a read-only slot (ROM) keep their A/D bits as they are.
    if (!walker.pte_writable[level - 1]) continue;
    const ret = src.cmpxchg_gpte(walker.pte_real_gpa[level - 1]!, size, level, oLo, oHi, nLo >>> 0, oHi);
    if (ret !== 0) return ret;
    if (src.mark_page_dirty !== undefined) src.mark_page_dirty(walker.table_gfn[level - 1]!);
    walker.ptes[2 * (level - 1)] = nLo >>> 0;
    walker.ad_set[level - 1] = set;
  }
  return 0;
}

/**
 * FNAME(walk_addr_generic). `access` is an error code (W/U/F, optionally P; the high half carries
 * PFERR_IMPLICIT_ACCESS). Returns 1 with `walker.gfn`/`walker.pte_access` filled, or 0 with the fault
 * in `walker` (error_code, and exit_qualification for EPT).
 */
export function walk_addr_generic(
  walker: GuestWalker,
  vcpu: WalkVcpu,
  mmu: GuestMmu,
  src: GuestPageTableAccess,
  addrLo: number,
  addrHi: number,
  accessLo: number,
  accessHi = 0,
): number {
  if (probes.armed) {
    probes.hit(PROBE_WALK_ADDR_GENERIC, { addr: '0x' + ((addrHi >>> 0) * 0x1_0000_0000 + (addrLo >>> 0)).toString(16), access: accessLo >>> 0, level: mmu.level, pttype: mmu.pttype });
  }
  const pttype = mmu.pttype;
  const write_fault = (accessLo & PFERR_WRITE_MASK) !== 0;
  const user_fault = (accessLo & PFERR_USER_MASK) !== 0;
  const fetch_fault = (accessLo & PFERR_FETCH_MASK) !== 0;
  const size: 4 | 8 = pttype === PTTYPE_32 ? 4 : 8;
  // NX is inverted while accumulating so that "executable" can be ANDed like W and U.
  const nxHi = pttype === PTTYPE_64 ? 0x8000_0000 : 0;
  const have_ad = pttype !== PTTYPE_EPT || !mmu.ad_disabled;
  const aMask = pttype === PTTYPE_EPT ? 1 << 8 : 1 << 5;

  if (trace.enabled) emit_kvm_mmu_pagetable_walk(vcpu.vcpu_id, addrLo, addrHi, accessLo);

  walker.retries = 0;
  walker.result = WalkResult.OK;
  walker.error_code_valid = false;
  walker.error_code = 0;
  walker.exit_qualification = 0;
  walker.pte_pkey = 0;

  let errcode = 0;
  let pteAccLo = 0xffff_ffff;
  let pteAccHi = 0xffff_ffff;
  let result: WalkResult = WalkResult.OK;

  retry: for (;;) {
    walker.resetSteps();
    walker.level = mmu.level;
    src.get_guest_pgd(scratch);
    let pteLo = scratch[0]!;
    let pteHi = pttype === PTTYPE_32 ? 0 : scratch[1]!;

    fail: {
      if (pttype === PTTYPE_64 && walker.level === PT32E_ROOT_LEVEL) {
        src.get_pdptr((addrLo >>> 30) & 3, scratch);
        pteLo = scratch[0]!;
        pteHi = scratch[1]!;
        if (trace.enabled) emit_kvm_mmu_paging_element(vcpu.vcpu_id, pteLo, pteHi, walker.level);
        if ((pteLo & 1) === 0) {
          walker.addStep(3, pteLo, pteHi, -1, WalkStep.NOT_PRESENT);
          result = WalkResult.NOT_PRESENT;
          break fail;
        }
        walker.addStep(3, pteLo, pteHi, -1, WalkStep.PDPTR);
        walker.level--;
      }
      walker.max_level = walker.level;
      const nested_access = (have_ad ? PFERR_WRITE_MASK : 0) | PFERR_USER_MASK;
      pteAccLo = 0xffff_ffff;
      pteAccHi = 0xffff_ffff;
      walker.level++;
      let ptAccLo = 0;
      let ptAccHi = 0;
      do {
        ptAccLo = pteAccLo;
        ptAccHi = pteAccHi;
        const level = --walker.level;
        const index = pt_index(pttype, addrLo, addrHi, level);
        const table_gfn = gpte_to_gfn(pttype, pteLo, pteHi);
        const offset = index * size;
        const pte_gpa = table_gfn * 4096 + offset;
        walker.table_gfn[level - 1] = table_gfn;
        walker.pte_gpa[level - 1] = pte_gpa;

        let tableGpa = table_gfn * 4096;
        if (src.translate_gpa !== undefined) {
          tableGpa = src.translate_gpa(tableGpa, nested_access, 0);
          if (tableGpa < 0) {
            // The nested fault is reported by the translation, not by this walk: no walker_error.
            walker.addStep(level, 0, 0, pte_gpa, WalkStep.NESTED_FAULT);
            walker.result = WalkResult.NESTED_FAULT;
            return 0;
          }
        }
        const realGpa = tableGpa + offset;
        walker.pte_real_gpa[level - 1] = realGpa;
        if (!src.read_gpte(realGpa, size, level, scratch)) {
          walker.addStep(level, 0, 0, pte_gpa, WalkStep.BAD_GPA);
          result = WalkResult.BAD_GPA;
          break fail;
        }
        walker.pte_writable[level - 1] = src.gpte_writable(realGpa, level) ? 1 : 0;
        pteLo = scratch[0]!;
        pteHi = size === 4 ? 0 : scratch[1]!;
        if (trace.enabled) emit_kvm_mmu_paging_element(vcpu.vcpu_id, pteLo, pteHi, level);

        pteAccLo = (ptAccLo & pteLo) >>> 0;
        pteAccHi = (ptAccHi & (pteHi ^ nxHi)) >>> 0;

        if (!is_present_gpte(pttype, pteLo)) {
          walker.addStep(level, pteLo, pteHi, pte_gpa, WalkStep.NOT_PRESENT);
          result = WalkResult.NOT_PRESENT;
          break fail;
        }
        const rsvd = is_rsvd_bits_set(mmu, pteLo, pteHi, level);
        if (rsvd !== 0) {
          walker.addStep(level, pteLo, pteHi, pte_gpa, rsvd);
          errcode = PFERR_RSVD_MASK | PFERR_PRESENT_MASK;
          result = WalkResult.RSVD;
          break fail;
        }
        walker.ptes[2 * (level - 1)] = pteLo;
        walker.ptes[2 * (level - 1) + 1] = pteHi;
        walker.pt_access[level - 1] = gpte_access(pttype, ptAccLo, (ptAccHi ^ nxHi) >>> 0);
        walker.addStep(level, pteLo, pteHi, pte_gpa, is_last_gpte(mmu, walker.level, pteLo) ? WalkStep.LEAF : WalkStep.NEXT);
      } while (!is_last_gpte(mmu, walker.level, pteLo));

      const level = walker.level;
      walker.pte_pkey = pttype === PTTYPE_64 ? (pteHi >>> 27) & 15 : 0;
      let accessed_dirty = have_ad ? pteAccLo & aMask : 0;
      walker.pte_access = gpte_access(pttype, pteAccLo, (pteAccHi ^ nxHi) >>> 0);
      errcode = check_permission(vcpu, mmu, walker.pte_access, walker.pte_pkey, accessLo, accessHi);
      if (errcode !== 0) {
        result = errcode & PFERR_PK_MASK ? WalkResult.PKEY : WalkResult.PERMISSION;
        break fail;
      }

      // Frame of the leaf at its level plus the offset of addr inside a large page.
      let gfn: number;
      if (pttype === PTTYPE_32) {
        const bits = 10 * (level - 1);
        gfn = (((pteLo >>> 12) >>> bits) << bits) >>> 0;
        gfn += (addrLo >>> 12) & ((1 << bits) - 1);
        if (level > 1 && mmu.pse36) gfn += ((pteLo & PT32_DIR_PSE36_MASK) >>> PT32_DIR_PSE36_SHIFT) * 0x10_0000;
      } else {
        const bits = 9 * (level - 1);
        const frame = gpte_to_gfn(pttype, pteLo, pteHi);
        // A 4K leaf is the common case; above it, divide rather than `%` (a floating-point modulo).
        if (bits === 0) gfn = frame;
        else {
          const span = 2 ** bits;
          gfn = Math.floor(frame / span) * span + ((addrLo >>> 12) & (span - 1));
        }
      }
      if (src.translate_gpa !== undefined) {
        const real = src.translate_gpa(gfn * 4096, accessLo, accessHi);
        if (real < 0) {
          walker.result = WalkResult.NESTED_FAULT;
          return 0;
        }
        gfn = Math.floor(real / 4096);
      }
      walker.gfn = gfn;

      if (!write_fault) {
        // A clean leaf stays read-only in the shadow so that the first write comes back to set D.
        if (have_ad) {
          const dShift = pttype === PTTYPE_EPT ? 9 : 6;
          walker.pte_access &= ~ACC_WRITE_MASK | ((pteLo >>> (dShift - 1)) & ACC_WRITE_MASK);
        }
      } else {
        // D sits one bit above A in both layouts: fold the leaf's D into the all-levels-A summary.
        accessed_dirty &= pteLo >>> 1;
      }
      if (accessed_dirty === 0) {
        const ret = update_accessed_dirty_bits(vcpu, mmu, walker, src, write_fault);
        if (ret < 0) {
          result = WalkResult.AD_FAULT;
          break fail;
        }
        if (ret > 0) {
          walker.retries++;
          continue retry;
        }
      }
      walker.result = WalkResult.OK;
      return 1;
    }

    // error:
    errcode |= accessLo & (PFERR_WRITE_MASK | PFERR_USER_MASK);
    if (fetch_fault && (mmu.efer_nx || mmu.cr4_smep)) errcode |= PFERR_FETCH_MASK;
    walker.vector = PF_VECTOR;
    walker.error_code_valid = true;
    walker.error_code = errcode & 0xffff;
    if (pttype === PTTYPE_EPT && (errcode & PFERR_RSVD_MASK) === 0) {
      // The accessed RWX bits as seen at the failing level (raw EPT bits, not ACC).
      let q = 0;
      if (write_fault) q |= EPT_VIOLATION_ACC_WRITE;
      if (user_fault) q |= EPT_VIOLATION_ACC_READ;
      if (fetch_fault) q |= EPT_VIOLATION_ACC_INSTR;
      q |= (pteAccLo & 7) << EPT_VIOLATION_PROT_SHIFT;
      walker.exit_qualification = q;
    }
    walker.fault_address_lo = addrLo >>> 0;
    walker.fault_address_hi = addrHi >>> 0;
    walker.nested_page_fault = !mmu.is_walk_mmu;
    walker.result = result;
    if (trace.enabled) emit_kvm_mmu_walker_error(vcpu.vcpu_id, walker.error_code);
    return 0;
  }
}

/** CR0.PG=0: the address is the physical address, nothing to walk, never a fault. */
export function nonpaging_gva_to_gpa(addrLo: number, addrHi: number): number {
  return (addrHi >>> 0) * 0x1_0000_0000 + (addrLo >>> 0);
}

/** `INVALID_GPA` as returned by the gva_to_gpa helpers. */
export const INVALID_GPA = -1;

/**
 * `mmu->gva_to_gpa` (FNAME(gva_to_gpa) or nonpaging_gva_to_gpa by mode): the GPA of `addr`, or
 * INVALID_GPA with the exception left in `walker`.
 */
export function gva_to_gpa(
  walker: GuestWalker,
  vcpu: WalkVcpu,
  mmu: GuestMmu,
  src: GuestPageTableAccess,
  addrLo: number,
  addrHi: number,
  accessLo: number,
  accessHi = 0,
): number {
  if (mmu.direct) return nonpaging_gva_to_gpa(addrLo, addrHi);
  if (!walk_addr_generic(walker, vcpu, mmu, src, addrLo, addrHi, accessLo, accessHi)) return INVALID_GPA;
  return walker.gpa(addrLo);
}

// ---------------------------------------------------------------------------------------------------
// Page-table sources.

/** Walk guest tables stored in sparse guest memory. */
export class MemoryGuestPageTables implements GuestPageTableAccess {
  cr3Lo = 0;
  cr3Hi = 0;
  /** PAE PDPTRs as loaded at the last CR3 write: [2i] lo, [2i+1] hi. */
  readonly pdptrs = new Uint32Array(8);
  /** Optional read-only predicate (a read-only memslot: A/D bits are then left alone). */
  readOnly: ((gpa: number) => boolean) | undefined;
  /** Optional nested translation (see GuestPageTableAccess.translate_gpa). */
  translate_gpa?: (gpa: number, accessLo: number, accessHi: number) => number;
  /** Optional dirty-log hook. */
  mark_page_dirty?: (table_gfn: number) => void;

  constructor(readonly mem: GuestMemory) {}

  setCr3(lo: number, hi = 0): void {
    this.cr3Lo = lo >>> 0;
    this.cr3Hi = hi >>> 0;
  }

  /**
   * x86.c `load_pdptrs`: read the 4 PDPTEs at CR3 bits 31:5, as MOV to CR3 (or CR0/CR4) in PAE mode does.
   * A present PDPTE with a reserved bit (above MAXPHYADDR, 8:5 or 2:1) fails the load (the guest gets
   * #GP) and leaves the cached PDPTRs as they were. These are the only checks PDPTEs get: the walk takes
   * them from the cache without re-checking.
   */
  load_pdptrs(maxphyaddr: number): boolean {
    const base = (this.cr3Lo & ~0x1f) >>> 0;
    const tmp = new Uint32Array(8);
    const gpaRsvd = reserved_gpa_bits(maxphyaddr);
    // Bits 8:5 and 2:1 of the low half.
    const rsvdLo = (gpaRsvd.lo | 0x1e0 | 0x6) >>> 0;
    for (let i = 0; i < 4; i++) {
      if (!this.mem.readEntry(base + 8 * i, 8, scratch)) return false;
      tmp[2 * i] = scratch[0]!;
      tmp[2 * i + 1] = scratch[1]!;
      if (scratch[0]! & 1 && ((scratch[0]! & rsvdLo) | (scratch[1]! & gpaRsvd.hi)) !== 0) return false;
    }
    this.pdptrs.set(tmp);
    return true;
  }

  get_guest_pgd(out: Uint32Array): void {
    out[0] = this.cr3Lo;
    out[1] = this.cr3Hi;
  }

  get_pdptr(index: number, out: Uint32Array): void {
    out[0] = this.pdptrs[2 * index]!;
    out[1] = this.pdptrs[2 * index + 1]!;
  }

  read_gpte(gpa: number, size: 4 | 8, _level: number, out: Uint32Array): boolean {
    return this.mem.readEntry(gpa, size, out);
  }

  gpte_writable(gpa: number, _level: number): boolean {
    return this.readOnly === undefined || !this.readOnly(gpa);
  }

  cmpxchg_gpte(gpa: number, size: 4 | 8, _level: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    if (!this.mem.contains(gpa, size)) return -14; // -EFAULT
    return this.mem.cmpxchg(gpa, size, oldLo, oldHi, newLo, newHi) ? 0 : 1;
  }
}

/** Thrown by `ListGuestPageTables` when the walk needs more entries than were given. */
export class MissingEntryError extends Error {
  constructor(
    readonly level: number,
    readonly given: number,
  ) {
    super(`the walk needs an entry at level ${level} but only ${given} were given`);
  }
}

/**
 * Feed the walker "the entries it meets, top level first", whatever their address fields say (the
 * `kvm-mmu walk --ptes` case). For PAE the first entry is the PDPTR. A/D updates are written back into
 * `entries`, so after the walk they show the values the guest would see.
 */
export class ListGuestPageTables implements GuestPageTableAccess {
  /** [2i] lo, [2i+1] hi. */
  readonly entries: Uint32Array;
  readonly count: number;
  /** Number of entries the last walk consumed. */
  used = 0;
  /** Entry position consumed at each level (-1: none). */
  private readonly posAtLevel = new Int8Array(6);
  readOnlyLevels = 0;
  /** Top-level table address (CR3/EPTP) reported to the walker; only the A/D trace gpa depends on it. */
  cr3Lo = 0;
  cr3Hi = 0;
  /** When the list runs out, report "no memslot" (fault without P) instead of throwing. */
  missingIsBadGpa = false;

  constructor(values: ReadonlyArray<{ lo: number; hi: number }>) {
    this.count = values.length;
    this.entries = new Uint32Array(values.length * 2);
    values.forEach((v, i) => {
      this.entries[2 * i] = v.lo >>> 0;
      this.entries[2 * i + 1] = v.hi >>> 0;
    });
  }

  private take(level: number, out: Uint32Array): void {
    if (this.used >= this.count) throw new MissingEntryError(level, this.count);
    const i = this.used++;
    this.posAtLevel[level] = i;
    out[0] = this.entries[2 * i]!;
    out[1] = this.entries[2 * i + 1]!;
  }

  get_guest_pgd(out: Uint32Array): void {
    // A new attempt (first walk or retry) starts again from the top of the list.
    this.used = 0;
    this.posAtLevel.fill(-1);
    out[0] = this.cr3Lo;
    out[1] = this.cr3Hi;
  }

  get_pdptr(_index: number, out: Uint32Array): void {
    this.take(3, out);
  }

  read_gpte(_gpa: number, _size: 4 | 8, level: number, out: Uint32Array): boolean {
    if (this.missingIsBadGpa && this.used >= this.count) return false;
    this.take(level, out);
    return true;
  }

  gpte_writable(_gpa: number, level: number): boolean {
    return ((this.readOnlyLevels >>> level) & 1) === 0;
  }

  cmpxchg_gpte(_gpa: number, size: 4 | 8, level: number, oldLo: number, oldHi: number, newLo: number, newHi: number): number {
    const i = this.posAtLevel[level]!;
    if (i < 0) return -14;
    if (this.entries[2 * i] !== oldLo >>> 0 || (size === 8 && this.entries[2 * i + 1] !== oldHi >>> 0)) return 1;
    this.entries[2 * i] = newLo >>> 0;
    if (size === 8) this.entries[2 * i + 1] = newHi >>> 0;
    return 0;
  }
}
