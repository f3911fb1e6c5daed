/**
 * KVM x86 SPTE formats (arch/x86/kvm/mmu/spte.h, spte.c): the global shadow_* masks, the software bits
 * KVM keeps in SPTEs, the predicates and the constructors.
 *
 * The kernel keeps the masks in module globals; one process here may model several VMs on different
 * vendors, so the globals live in a `SpteMasks` object that every mask-dependent helper takes first.
 * `eptMasks()` / `nptMasks()` build one the way the vendor module's hardware setup does.
 *
 * 64-bit SPTEs travel as (lo, hi) 32-bit halves. Constructors write into a caller-owned `U64` so the TDP
 * fault path allocates nothing. Masks are stored as `U64` objects created once.
 */
import type { U64 } from '../bits/u64';
import { defineProbe, probes } from '../probes';
import { PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from './memslot';
import { KVM_PAGES_PER_HPAGE } from './tdp_iter';

// ---------------------------------------------------------------------------------------------------
// Constants (spte.h, mmu.h, asm/vmx.h). `_LO`/`_HI` name the half a single-bit constant lives in.

/** PT_PRESENT_MASK: x86 P; on EPT bit 0 is R. */
export const PT_PRESENT_MASK = 1 << 0;
/** PT_WRITABLE_MASK: x86 RW and EPT W share bit 1. */
export const PT_WRITABLE_MASK = 1 << 1;
export const PT_USER_MASK = 1 << 2;
export const PT_ACCESSED_MASK = 1 << 5;
export const PT_DIRTY_MASK = 1 << 6;
/** PT_PAGE_SIZE_MASK: PS, bit 7 in both formats. */
export const PT_PAGE_SIZE_MASK = 1 << 7;
/** PT64_NX_MASK, bit 63. */
export const PT64_NX_MASK_HI = 0x8000_0000;

export const VMX_EPT_READABLE_MASK = 0x1;
export const VMX_EPT_WRITABLE_MASK = 0x2;
export const VMX_EPT_EXECUTABLE_MASK = 0x4;
export const VMX_EPT_RWX_MASK = 0x7;
/** W|X without R: the value KVM uses to make EPT MMIO SPTEs raise EPT misconfigurations. */
export const VMX_EPT_MISCONFIG_WX_VALUE = 0x6;
export const VMX_EPT_MT_EPTE_SHIFT = 3;
/** Memtype bits 5:3 of a leaf EPT entry. */
export const VMX_EPT_MT_MASK = 7 << VMX_EPT_MT_EPTE_SHIFT;
export const VMX_EPT_IPAT_BIT = 1 << 6;
export const VMX_EPT_ACCESS_BIT = 1 << 8;
export const VMX_EPT_DIRTY_BIT = 1 << 9;
/** VMX_EPT_SUPPRESS_VE_BIT, bit 63. */
export const VMX_EPT_SUPPRESS_VE_BIT_HI = 0x8000_0000;

export const MTRR_TYPE_UNCACHABLE = 0;
export const MTRR_TYPE_WRCOMB = 1;
export const MTRR_TYPE_WRTHROUGH = 4;
export const MTRR_TYPE_WRPROT = 5;
export const MTRR_TYPE_WRBACK = 6;

/** ACC_* (the format of role.access and pte_access). */
export const ACC_EXEC_MASK = 1;
export const ACC_WRITE_MASK = PT_WRITABLE_MASK;
export const ACC_USER_MASK = PT_USER_MASK;
export const ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;

export const PAGE_SHIFT = 12;
export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G };
export const SPTE_LEVEL_BITS = 9;
export const SPTE_ENT_PER_PAGE = 512;

/** SPTE_MMU_PRESENT_MASK: bit 11, KVM's own "this SPTE maps memory" bit. */
export const SPTE_MMU_PRESENT_MASK = 1 << 11;

/** SPTE_TDP_AD_* live in bits 53:52, i.e. bits 21:20 of the high half. */
export const SPTE_TDP_AD_SHIFT = 52;
export const SPTE_TDP_AD_MASK_HI = 3 << 20;
export const SPTE_TDP_AD_ENABLED = 0;
export const SPTE_TDP_AD_DISABLED = 1;
export const SPTE_TDP_AD_WRPROT_ONLY = 2;
export const SPTE_TDP_AD_DISABLED_HI = SPTE_TDP_AD_DISABLED << 20;
export const SPTE_TDP_AD_WRPROT_ONLY_HI = SPTE_TDP_AD_WRPROT_ONLY << 20;

/** Access tracking saves EPT R (bit 0) and X (bit 2) at 54 and 56. */
export const SHADOW_ACC_TRACK_SAVED_BITS_MASK = VMX_EPT_READABLE_MASK | VMX_EPT_EXECUTABLE_MASK;
export const SHADOW_ACC_TRACK_SAVED_BITS_SHIFT = 54;
/** The saved bits as they sit in the high half (bits 22 and 24). */
const ACC_TRACK_SAVED_HI = SHADOW_ACC_TRACK_SAVED_BITS_MASK << (SHADOW_ACC_TRACK_SAVED_BITS_SHIFT - 32);

export const DEFAULT_SPTE_HOST_WRITABLE = 1 << 9;
export const DEFAULT_SPTE_MMU_WRITABLE = 1 << 10;
export const EPT_SPTE_HOST_WRITABLE_HI = 1 << (57 - 32);
export const EPT_SPTE_MMU_WRITABLE_HI = 1 << (58 - 32);

/** MMIO generation: gen[7:0] in SPTE bits 10:3, gen[18:8] in SPTE bits 62:52. */
export const MMIO_SPTE_GEN_LOW_START = 3;
export const MMIO_SPTE_GEN_LOW_END = 10;
export const MMIO_SPTE_GEN_HIGH_START = 52;
export const MMIO_SPTE_GEN_HIGH_END = 62;
export const MMIO_SPTE_GEN_LOW_BITS = 8;
export const MMIO_SPTE_GEN_HIGH_BITS = 11;
export const MMIO_SPTE_GEN_MASK = 0x7ffff;

/** SPTE_MMIO_ALLOWED_MASK = bit 63 | bits 51:12 | bits 2:0. */
export const SPTE_MMIO_ALLOWED_MASK: Readonly<U64> = Object.freeze({ lo: 0xffff_f007, hi: 0x800f_ffff });

/** SHADOW_NONPRESENT_VALUE = BIT(63) on 64-bit hosts. */
export const SHADOW_NONPRESENT_VALUE_LO = 0;
export const SHADOW_NONPRESENT_VALUE_HI = 0x8000_0000;
/** FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5a0. */
export const FROZEN_SPTE_LO = 0x5a0;
export const FROZEN_SPTE_HI = SHADOW_NONPRESENT_VALUE_HI;
/** REMOVED_SPTE of kernels before ~6.11: 0x5a0 without bit 63. Only decoders recognise it. */
export const REMOVED_SPTE_LEGACY_LO = 0x5a0;
export const REMOVED_SPTE_LEGACY_HI = 0;

export const SHADOW_NONPRESENT_OR_RSVD_MASK_LEN = 5;

// ---------------------------------------------------------------------------------------------------
// The shadow_* masks.

function z(): U64 {
  return { lo: 0, hi: 0 };
}

function set64(dst: U64, lo: number, hi: number): void {
  dst.lo = lo >>> 0;
  dst.hi = hi >>> 0;
}

/** GENMASK_ULL(msb, lsb) into dst (msb >= lsb, both in 0..63). */
function genmask(dst: U64, msb: number, lsb: number): U64 {
  let lo = 0;
  let hi = 0;
  for (let b = lsb; b <= msb; b++) {
    if (b < 32) lo |= 1 << b;
    else hi |= 1 << (b - 32);
  }
  set64(dst, lo, hi);
  return dst;
}

/**
 * What the host CPU tells KVM at module load. Only the facts the mask setup reads.
 */
export interface HostCpu {
  /** Raw CPUID.0x80000008:EAX[7:0] (`kvm_host.maxphyaddr`), not reduced by SME. */
  maxphyaddr: number;
  /**
   * AMD memory encryption enabled in SYSCFG: the C-bit position (CPUID 0x8000001F EBX[5:0]) and the PA
   * bits the CPU steals for it (EBX[11:6]). `sme_active`: the host itself runs with SME, so
   * `sme_me_mask` = BIT(c_bit) and `physical_mask` loses the C-bit.
   */
  mem_encrypt?: { c_bit: number; phys_bits_reduction: number; sme_active: boolean };
  /** Intel MKTME/TDX: PA bits below MAXPHYADDR the CPU uses as KeyID bits (reduce x86_phys_bits). */
  keyid_bits?: number;
  /** Present when the CPU has X86_BUG_L1TF: `boot_cpu_data.x86_cache_bits`. */
  l1tf_cache_bits?: number;
  /** Module parameter `mmio_caching` (default true). */
  mmio_caching?: boolean;
}

/** The kernel's shadow_* globals (spte.c) for one vendor configuration. */
export class SpteMasks {
  kvm_ad_enabled = true;
  /** Module param as loaded (`allow_mmio_caching`) and as finally in effect (`enable_mmio_caching`). */
  allow_mmio_caching = true;
  enable_mmio_caching = true;

  readonly shadow_host_writable_mask = z();
  readonly shadow_mmu_writable_mask = z();
  readonly shadow_nx_mask = z();
  readonly shadow_x_mask = z();
  readonly shadow_user_mask = z();
  readonly shadow_accessed_mask = z();
  readonly shadow_dirty_mask = z();
  readonly shadow_mmio_value = z();
  readonly shadow_mmio_mask = z();
  /** u32 in the kernel (ACC_* bits an MMIO SPTE keeps). */
  shadow_mmio_access_mask = 0;
  readonly shadow_present_mask = z();
  readonly shadow_me_value = z();
  readonly shadow_me_mask = z();
  readonly shadow_acc_track_mask = z();
  readonly shadow_nonpresent_or_rsvd_mask = z();
  readonly shadow_nonpresent_or_rsvd_lower_gfn_mask = z();

  /** SPTE_BASE_ADDR_MASK: `physical_mask & ~0xfff` (the SME C-bit is not an address bit). */
  readonly spte_base_addr_mask: U64 = genmask(z(), 51, 12);

  /** Host facts the masks were derived from. */
  maxphyaddr = 52;
  /** `boot_cpu_data.x86_phys_bits` (MAXPHYADDR minus the memory-encryption reduction). */
  x86_phys_bits = 52;
  /** `sme_me_mask` of the host (0 without SME). */
  readonly sme_me_mask = z();
  /** Set by kvm_mmu_set_ept_masks: the masks describe EPT entries. */
  is_ept = false;

  /** WARN_ON()s the setup hit, in order (the kernel prints a splat and carries on). */
  readonly warnings: string[] = [];
}

/** Build a host MMU mask set: `kvm_mmu_reset_all_pte_masks` (shadow paging / NPT before vendor tweaks). */
export function newSpteMasks(host: HostCpu): SpteMasks {
  const m = new SpteMasks();
  kvm_mmu_reset_all_pte_masks(m, host);
  return m;
}

/**
 * kvm_mmu_set_mmio_spte_mask: install the MMIO value/mask/access, disabling MMIO caching (value 0)
 * whenever the pair would be ambiguous or unsafe.
 */
export function kvm_mmu_set_mmio_spte_mask(
  m: SpteMasks,
  mmio_value: Readonly<U64>,
  mmio_mask: Readonly<U64>,
  access_mask: number,
): void {
  let vlo = mmio_value.lo >>> 0;
  let vhi = mmio_value.hi >>> 0;
  const mlo = mmio_mask.lo >>> 0;
  const mhi = mmio_mask.hi >>> 0;
  const lg = m.shadow_nonpresent_or_rsvd_lower_gfn_mask;
  if ((vlo & lg.lo) !== 0 || (vhi & lg.hi) !== 0) m.warnings.push('mmio value overlaps the low GFN bits');

  m.enable_mmio_caching = m.allow_mmio_caching;
  if (!m.enable_mmio_caching) vlo = vhi = 0;

  // Only bits carved out for MMIO may be in the mask (never the generation or MMU-present bits).
  if ((mlo & ~SPTE_MMIO_ALLOWED_MASK.lo) !== 0 || (mhi & ~SPTE_MMIO_ALLOWED_MASK.hi) !== 0) {
    m.warnings.push('mmio mask uses bits outside SPTE_MMIO_ALLOWED_MASK');
    vlo = vhi = 0;
  }

  // The L1TF mitigation parks high GFN bits 5 places up; the value must not collide with them.
  const r = m.shadow_nonpresent_or_rsvd_mask;
  const rlo = (r.lo << SHADOW_NONPRESENT_OR_RSVD_MASK_LEN) >>> 0;
  const rhi = ((r.hi << SHADOW_NONPRESENT_OR_RSVD_MASK_LEN) | (r.lo >>> (32 - SHADOW_NONPRESENT_OR_RSVD_MASK_LEN))) >>> 0;
  if ((vlo & rlo) !== 0 || (vhi & rhi) !== 0) {
    m.warnings.push('mmio value collides with the L1TF relocated GFN bits');
    vlo = vhi = 0;
  }

  // The value must match itself under the mask, and FROZEN_SPTE must not look like MMIO.
  if (((vlo & mlo) >>> 0) !== vlo || ((vhi & mhi) >>> 0) !== vhi) {
    m.warnings.push('mmio value is not covered by the mmio mask');
    vlo = vhi = 0;
  } else if ((vlo !== 0 || vhi !== 0) && ((FROZEN_SPTE_LO & mlo) >>> 0) === vlo && ((FROZEN_SPTE_HI & mhi) >>> 0) === vhi) {
    m.warnings.push('FROZEN_SPTE would match the mmio value');
    vlo = vhi = 0;
  }

  if (vlo === 0 && vhi === 0) m.enable_mmio_caching = false;

  set64(m.shadow_mmio_value, vlo, vhi);
  set64(m.shadow_mmio_mask, mlo, mhi);
  m.shadow_mmio_access_mask = access_mask >>> 0;
}

/**
 * kvm_mmu_set_mmio_spte_value: TDX gives a VM its own MMIO value; the result is that VM's
 * `kvm->arch.shadow_mmio_value`, which callers pass to is_mmio_spte / make_mmio_spte.
 */
export function kvm_mmu_set_mmio_spte_value(kvm_arch: { shadow_mmio_value: U64 }, mmio_value: Readonly<U64>): void {
  kvm_arch.shadow_mmio_value.lo = mmio_value.lo >>> 0;
  kvm_arch.shadow_mmio_value.hi = mmio_value.hi >>> 0;
}

/** kvm_mmu_set_me_spte_mask: the memory-encryption bit for SPTEs (SVM passes sme_me_mask twice). */
export function kvm_mmu_set_me_spte_mask(m: SpteMasks, me_value: Readonly<U64>, me_mask: Readonly<U64>): void {
  let vlo = me_value.lo >>> 0;
  let vhi = me_value.hi >>> 0;
  let klo = me_mask.lo >>> 0;
  let khi = me_mask.hi >>> 0;
  if ((vlo & ~klo) !== 0 || (vhi & ~khi) !== 0) {
    m.warnings.push('shadow_me_value is not a subset of shadow_me_mask');
    vlo = vhi = klo = khi = 0;
  }
  set64(m.shadow_me_value, vlo, vhi);
  set64(m.shadow_me_mask, klo, khi);
}

/**
 * kvm_mmu_reset_all_pte_masks: the legacy/NPT defaults every vendor starts from, plus the host facts
 * (MAXPHYADDR, SME physical mask, L1TF) that shape the reserved-bit and MMIO masks.
 */
export function kvm_mmu_reset_all_pte_masks(m: SpteMasks, host: HostCpu): void {
  const enc = host.mem_encrypt;
  m.maxphyaddr = host.maxphyaddr;
  m.x86_phys_bits = host.maxphyaddr - (enc ? enc.phys_bits_reduction : 0) - (host.keyid_bits ?? 0);
  m.allow_mmio_caching = host.mmio_caching ?? true;
  m.is_ept = false;
  if (enc && enc.sme_active) set64(m.sme_me_mask, enc.c_bit < 32 ? 1 << enc.c_bit : 0, enc.c_bit >= 32 ? 1 << (enc.c_bit - 32) : 0);
  else set64(m.sme_me_mask, 0, 0);
  genmask(m.spte_base_addr_mask, 51, 12);
  m.spte_base_addr_mask.lo = (m.spte_base_addr_mask.lo & ~m.sme_me_mask.lo) >>> 0;
  m.spte_base_addr_mask.hi = (m.spte_base_addr_mask.hi & ~m.sme_me_mask.hi) >>> 0;

  m.kvm_ad_enabled = true;

  // L1TF: non-present SPTEs carry the top cache-address bits so their PFN can never hit the L1D.
  set64(m.shadow_nonpresent_or_rsvd_mask, 0, 0);
  let low_phys_bits = m.x86_phys_bits;
  const cache_bits = host.l1tf_cache_bits;
  if (cache_bits !== undefined) {
    if (cache_bits >= 52 - SHADOW_NONPRESENT_OR_RSVD_MASK_LEN) {
      m.warnings.push('x86_cache_bits too large for the L1TF mask');
    } else {
      low_phys_bits = cache_bits - SHADOW_NONPRESENT_OR_RSVD_MASK_LEN;
      genmask(m.shadow_nonpresent_or_rsvd_mask, cache_bits - 1, low_phys_bits);
    }
  }
  genmask(m.shadow_nonpresent_or_rsvd_lower_gfn_mask, low_phys_bits - 1, PAGE_SHIFT);

  set64(m.shadow_user_mask, PT_USER_MASK, 0);
  set64(m.shadow_accessed_mask, PT_ACCESSED_MASK, 0);
  set64(m.shadow_dirty_mask, PT_DIRTY_MASK, 0);
  set64(m.shadow_nx_mask, 0, PT64_NX_MASK_HI);
  set64(m.shadow_x_mask, 0, 0);
  set64(m.shadow_present_mask, PT_PRESENT_MASK, 0);
  set64(m.shadow_acc_track_mask, 0, 0);
  set64(m.shadow_me_mask, 0, 0);
  set64(m.shadow_me_value, 0, 0);
  set64(m.shadow_host_writable_mask, DEFAULT_SPTE_HOST_WRITABLE, 0);
  set64(m.shadow_mmu_writable_mask, DEFAULT_SPTE_MMU_WRITABLE, 0);

  // A reserved PA bit (51) makes MMIO accesses fault with RSVD; with 52 PA bits there is none to use.
  const mask: U64 = host.maxphyaddr < 52 ? { lo: PT_PRESENT_MASK, hi: 1 << (51 - 32) } : { lo: 0, hi: 0 };
  kvm_mmu_set_mmio_spte_mask(m, mask, mask, ACC_WRITE_MASK | ACC_USER_MASK);
}

/** kvm_mmu_set_ept_masks: switch the masks to EPT entries (VMX hardware setup, after the reset). */
export function kvm_mmu_set_ept_masks(m: SpteMasks, has_ad_bits: boolean, has_exec_only: boolean): void {
  m.kvm_ad_enabled = has_ad_bits;
  m.is_ept = true;
  set64(m.shadow_user_mask, VMX_EPT_READABLE_MASK, 0);
  // Set even without A/D: KVM then uses bit 8 as a software Accessed bit.
  set64(m.shadow_accessed_mask, VMX_EPT_ACCESS_BIT, 0);
  set64(m.shadow_dirty_mask, VMX_EPT_DIRTY_BIT, 0);
  set64(m.shadow_nx_mask, 0, 0);
  set64(m.shadow_x_mask, VMX_EPT_EXECUTABLE_MASK, 0);
  // SVE is part of "present" so that W/X violations on present SPTEs never become #VE.
  set64(m.shadow_present_mask, has_exec_only ? 0 : VMX_EPT_READABLE_MASK, VMX_EPT_SUPPRESS_VE_BIT_HI);
  set64(m.shadow_acc_track_mask, VMX_EPT_RWX_MASK, 0);
  set64(m.shadow_host_writable_mask, 0, EPT_SPTE_HOST_WRITABLE_HI);
  set64(m.shadow_mmu_writable_mask, 0, EPT_SPTE_MMU_WRITABLE_HI);
  kvm_mmu_set_mmio_spte_mask(
    m,
    { lo: VMX_EPT_MISCONFIG_WX_VALUE, hi: 0 },
    { lo: VMX_EPT_RWX_MASK, hi: VMX_EPT_SUPPRESS_VE_BIT_HI },
    0,
  );
}

/**
 * svm_adjust_mmio_mask: with memory encryption on, the reserved-PA MMIO mask starts at the reduced
 * x86_phys_bits (skipping the C-bit) instead of bit 51 alone.
 */
export function svm_adjust_mmio_mask(m: SpteMasks, host: HostCpu): void {
  const enc = host.mem_encrypt;
  if (!enc) return;
  let mask_bit = m.x86_phys_bits;
  if (enc.c_bit === mask_bit) mask_bit++;
  const mask = z();
  if (mask_bit < 52) {
    genmask(mask, 51, mask_bit);
    mask.lo = (mask.lo | PT_PRESENT_MASK) >>> 0;
  }
  kvm_mmu_set_mmio_spte_mask(m, mask, mask, PT_WRITABLE_MASK | PT_USER_MASK);
}

/**
 * vmx_setup_me_spte_mask: KeyID bits (between x86_phys_bits and MAXPHYADDR) go in shadow_me_mask so
 * they are never taken for address bits; KVM itself never sets a KeyID, so shadow_me_value stays 0.
 */
export function vmx_setup_me_spte_mask(m: SpteMasks): void {
  const me_mask = z();
  if (m.x86_phys_bits !== m.maxphyaddr) genmask(me_mask, m.maxphyaddr - 1, m.x86_phys_bits);
  kvm_mmu_set_me_spte_mask(m, z(), me_mask);
}

/** VMX setup: reset, then kvm_mmu_set_ept_masks and vmx_setup_me_spte_mask. */
export function eptMasks(host: HostCpu, has_ad_bits = true, has_exec_only = false): SpteMasks {
  const m = newSpteMasks(host);
  kvm_mmu_set_ept_masks(m, has_ad_bits, has_exec_only);
  vmx_setup_me_spte_mask(m);
  return m;
}

/** SVM setup: reset, then kvm_mmu_set_me_spte_mask(sme_me_mask, sme_me_mask) and svm_adjust_mmio_mask. */
export function nptMasks(host: HostCpu): SpteMasks {
  const m = newSpteMasks(host);
  kvm_mmu_set_me_spte_mask(m, m.sme_me_mask, m.sme_me_mask);
  svm_adjust_mmio_mask(m, host);
  return m;
}

/** Whether `vmx_get_mt_mask` forces WB and sets IPAT (6.14+: no non-coherent DMA and quirk or no self-snoop). */
export function vmx_ignore_guest_pat(has_noncoherent_dma: boolean, quirk_ignore_guest_pat: boolean, has_selfsnoop: boolean): boolean {
  return !has_noncoherent_dma && (quirk_ignore_guest_pat || !has_selfsnoop);
}

/** vmx_get_mt_mask: EPT memtype bits for a leaf. Host MMIO is always UC. */
export function vmx_get_mt_mask(is_mmio: boolean, ignore_guest_pat: boolean): number {
  if (is_mmio) return MTRR_TYPE_UNCACHABLE << VMX_EPT_MT_EPTE_SHIFT;
  if (ignore_guest_pat) return (MTRR_TYPE_WRBACK << VMX_EPT_MT_EPTE_SHIFT) | VMX_EPT_IPAT_BIT;
  return MTRR_TYPE_WRBACK << VMX_EPT_MT_EPTE_SHIFT;
}

// ---------------------------------------------------------------------------------------------------
// Predicates.

export function is_shadow_present_pte(lo: number, _hi: number): boolean {
  return (lo & SPTE_MMU_PRESENT_MASK) !== 0;
}

export function is_frozen_spte(lo: number, hi: number): boolean {
  return lo >>> 0 === FROZEN_SPTE_LO && hi >>> 0 === FROZEN_SPTE_HI;
}

/** The pre-6.11 REMOVED_SPTE (0x5a0). Not a kernel helper: decoders of old captures need it. */
export function isLegacyRemovedSpte(lo: number, hi: number): boolean {
  return lo >>> 0 === REMOVED_SPTE_LEGACY_LO && hi >>> 0 === REMOVED_SPTE_LEGACY_HI;
}

export function is_mmio_spte(m: SpteMasks, lo: number, hi: number, kvm_mmio_value: Readonly<U64> = m.shadow_mmio_value): boolean {
  return (
    ((lo & m.shadow_mmio_mask.lo) >>> 0) === kvm_mmio_value.lo &&
    ((hi & m.shadow_mmio_mask.hi) >>> 0) === kvm_mmio_value.hi &&
    m.enable_mmio_caching
  );
}

export function is_large_pte(lo: number, _hi: number): boolean {
  return (lo & PT_PAGE_SIZE_MASK) !== 0;
}

export function is_last_spte(lo: number, _hi: number, level: number): boolean {
  return level === PG_LEVEL_4K || (lo & PT_PAGE_SIZE_MASK) !== 0;
}

export function is_writable_pte(lo: number, _hi: number): boolean {
  return (lo & PT_WRITABLE_MASK) !== 0;
}

export function is_executable_pte(m: SpteMasks, lo: number, hi: number): boolean {
  const x = m.shadow_x_mask;
  const nx = m.shadow_nx_mask;
  return ((lo & (x.lo | nx.lo)) >>> 0) === x.lo && ((hi & (x.hi | nx.hi)) >>> 0) === x.hi;
}

export function is_mmu_writable_spte(m: SpteMasks, lo: number, hi: number): boolean {
  return (lo & m.shadow_mmu_writable_mask.lo) !== 0 || (hi & m.shadow_mmu_writable_mask.hi) !== 0;
}

export function is_host_writable_spte(m: SpteMasks, lo: number, hi: number): boolean {
  return (lo & m.shadow_host_writable_mask.lo) !== 0 || (hi & m.shadow_host_writable_mask.hi) !== 0;
}

export function is_accessed_spte(m: SpteMasks, lo: number, hi: number): boolean {
  return (lo & m.shadow_accessed_mask.lo) !== 0 || (hi & m.shadow_accessed_mask.hi) !== 0;
}

/**
 * Dirty as older kernels' is_dirty_spte judged it (the helper is gone by 6.18): the D bit when the
 * SPTE uses A/D bits, otherwise the W bit (write-protection stands in for dirty tracking).
 */
export function is_dirty_spte(m: SpteMasks, lo: number, hi: number): boolean {
  if (spte_ad_enabled(lo, hi) && (m.shadow_dirty_mask.lo | m.shadow_dirty_mask.hi) !== 0) {
    return (lo & m.shadow_dirty_mask.lo) !== 0 || (hi & m.shadow_dirty_mask.hi) !== 0;
  }
  return (lo & PT_WRITABLE_MASK) !== 0;
}

/** The SPTE's A/D type field (SPTE_TDP_AD_*). */
export function spte_ad_type(_lo: number, hi: number): number {
  return (hi & SPTE_TDP_AD_MASK_HI) >>> 20;
}

export function spte_ad_enabled(_lo: number, hi: number): boolean {
  return (hi & SPTE_TDP_AD_MASK_HI) !== SPTE_TDP_AD_DISABLED_HI;
}

export function spte_ad_need_write_protect(_lo: number, hi: number): boolean {
  return (hi & SPTE_TDP_AD_MASK_HI) !== 0;
}

export function is_access_track_spte(m: SpteMasks, lo: number, hi: number): boolean {
  return !spte_ad_enabled(lo, hi) && (lo & m.shadow_acc_track_mask.lo) === 0 && (hi & m.shadow_acc_track_mask.hi) === 0;
}

export function is_ept_ve_possible(m: SpteMasks, lo: number, hi: number): boolean {
  return (
    (m.shadow_present_mask.hi & VMX_EPT_SUPPRESS_VE_BIT_HI) !== 0 &&
    (hi & VMX_EPT_SUPPRESS_VE_BIT_HI) === 0 &&
    (lo & VMX_EPT_RWX_MASK) !== VMX_EPT_MISCONFIG_WX_VALUE
  );
}

/** spte_to_pfn: the address bits under SPTE_BASE_ADDR_MASK, shifted down (< 2^40, exact). */
export function spte_to_pfn(m: SpteMasks, lo: number, hi: number): number {
  const b = m.spte_base_addr_mask;
  return ((hi & b.hi) >>> 0) * 0x10_0000 + (((lo & b.lo) >>> 0) >>> PAGE_SHIFT);
}

/** The access a fault asks for (the fields of struct kvm_page_fault that is_access_allowed reads). */
export interface FaultAccess {
  exec: boolean;
  write: boolean;
}

export function is_access_allowed(m: SpteMasks, fault: FaultAccess, lo: number, hi: number): boolean {
  if (fault.exec) return is_executable_pte(m, lo, hi);
  if (fault.write) return (lo & PT_WRITABLE_MASK) !== 0;
  return (lo & PT_PRESENT_MASK) !== 0;
}

/** spte_needs_atomic_update: bits of this SPTE may change outside mmu_lock and must not be lost. */
export function spte_needs_atomic_update(m: SpteMasks, lo: number, hi: number): boolean {
  const w = (lo & PT_WRITABLE_MASK) !== 0;
  if (!w && is_mmu_writable_spte(m, lo, hi)) return true;
  if (!spte_ad_enabled(lo, hi)) return true;
  return w && (lo & m.shadow_dirty_mask.lo) === 0 && (hi & m.shadow_dirty_mask.hi) === 0;
}

/** check_spte_writable_invariants: true when H/M/W form one of the four legal states. */
export function check_spte_writable_invariants(m: SpteMasks, lo: number, hi: number): boolean {
  if (is_mmu_writable_spte(m, lo, hi)) return is_host_writable_spte(m, lo, hi);
  return (lo & PT_WRITABLE_MASK) === 0;
}

export function leaf_spte_change_needs_tlb_flush(m: SpteMasks, old_lo: number, old_hi: number, new_lo: number, new_hi: number): boolean {
  return is_mmu_writable_spte(m, old_lo, old_hi) && !is_mmu_writable_spte(m, new_lo, new_hi);
}

export function get_mmio_spte_generation(lo: number, hi: number): number {
  return ((lo >>> MMIO_SPTE_GEN_LOW_START) & 0xff) | (((hi >>> (MMIO_SPTE_GEN_HIGH_START - 32)) & 0x7ff) << MMIO_SPTE_GEN_LOW_BITS);
}

/** get_mmio_spte_gfn (mmu.c): the low GFN bits plus the L1TF-relocated high ones. */
export function get_mmio_spte_gfn(m: SpteMasks, lo: number, hi: number): number {
  const l = m.shadow_nonpresent_or_rsvd_lower_gfn_mask;
  const r = m.shadow_nonpresent_or_rsvd_mask;
  const n = SHADOW_NONPRESENT_OR_RSVD_MASK_LEN;
  const slo = ((lo >>> n) | (hi << (32 - n))) >>> 0;
  const shi = hi >>> n;
  const glo = ((lo & l.lo) | (slo & r.lo)) >>> 0;
  const ghi = ((hi & l.hi) | (shi & r.hi)) >>> 0;
  return ghi * 0x10_0000 + (glo >>> PAGE_SHIFT);
}

/** get_mmio_spte_access (mmu.c). */
export function get_mmio_spte_access(m: SpteMasks, lo: number, _hi: number): number {
  return (lo & m.shadow_mmio_access_mask) >>> 0;
}

/** spte_index: the entry's index in its table, from the SPTE's address. */
export function spte_index(sptep_lo: number): number {
  return (sptep_lo >>> 3) & (SPTE_ENT_PER_PAGE - 1);
}

export { KVM_PAGES_PER_HPAGE };

// ---------------------------------------------------------------------------------------------------
// kvm_mmu_set_spte trace flags.

/**
 * The `(rwxu)` group of the kvm_mmu_set_spte tracepoint: r when the format has a present mask or bit 0
 * is set, w from bit 1, x from is_executable_pte, u from the user mask (empty if the format had none).
 */
export function kvm_mmu_set_spte_flags(m: SpteMasks, lo: number, hi: number): string {
  const hasPresentMask = (m.shadow_present_mask.lo | m.shadow_present_mask.hi) !== 0;
  const r = hasPresentMask || (lo & PT_PRESENT_MASK) !== 0 ? 'r' : '-';
  const w = (lo & PT_WRITABLE_MASK) !== 0 ? 'w' : '-';
  const x = is_executable_pte(m, lo, hi) ? 'x' : '-';
  const um = m.shadow_user_mask;
  let u = '';
  if ((um.lo | um.hi) !== 0) u = (lo & um.lo) !== 0 || (hi & um.hi) !== 0 ? 'u' : '-';
  return r + w + x + u;
}

/** The r/x/u fields kvm_mmu_set_spte records (u is -1 when the format has no user mask). */
export interface SetSpteTraceFields {
  r: boolean;
  x: boolean;
  u: -1 | 0 | 1;
}

/** Fill the kvm_mmu_set_spte record fields for an SPTE (call only when tracing is enabled). */
export function kvm_mmu_set_spte_trace_fields(m: SpteMasks, lo: number, hi: number): SetSpteTraceFields {
  const um = m.shadow_user_mask;
  return {
    r: (m.shadow_present_mask.lo | m.shadow_present_mask.hi) !== 0 || (lo & PT_PRESENT_MASK) !== 0,
    x: is_executable_pte(m, lo, hi),
    u: (um.lo | um.hi) === 0 ? -1 : (lo & um.lo) !== 0 || (hi & um.hi) !== 0 ? 1 : 0,
  };
}

// ---------------------------------------------------------------------------------------------------
// Constructors.

const MAKE_SPTE = defineProbe('make_spte', 'spte', 'arch/x86/kvm/mmu/spte.c', 'build a leaf SPTE for a pfn', [
  'level',
  'pte_access',
  'gfn',
  'pfn',
  'prefetch',
  'synchronizing',
  'host_writable',
]);
const MAKE_NONLEAF_SPTE = defineProbe('make_nonleaf_spte', 'spte', 'arch/x86/kvm/mmu/spte.c', 'build an SPTE pointing at a child table', [
  'child_pa',
  'ad_disabled',
]);
const MAKE_MMIO_SPTE = defineProbe('make_mmio_spte', 'spte', 'arch/x86/kvm/mmu/spte.c', 'build an MMIO SPTE carrying gfn, access and generation', [
  'gfn',
  'access',
  'gen',
]);
const MAKE_SMALL_SPTE = defineProbe('make_small_spte', 'spte', 'arch/x86/kvm/mmu/spte.c', 'build one child SPTE of a huge SPTE being split', [
  'huge_spte',
  'role',
  'index',
]);
const MAKE_HUGE_SPTE = defineProbe('make_huge_spte', 'spte', 'arch/x86/kvm/mmu/spte.c', 'build a huge SPTE from one of its small SPTEs', [
  'small_spte',
  'level',
]);

/**
 * What make_spte reads from its vcpu/sp/slot arguments. Reuse one object per caller: nothing here is
 * allocated per call. Callbacks are optional hooks into other engine parts; null means "not wired".
 */
export interface MakeSpteArgs {
  /** sp->role.level. */
  level: number;
  /** sp->role.ad_disabled. */
  ad_disabled: boolean;
  /** kvm_mmu_page_ad_need_write_protect(kvm, sp): cpu_dirty_log_size && sp->role.guest_mode. */
  ad_need_write_protect: boolean;
  /** ACC_* bits. */
  pte_access: number;
  gfn: number;
  /** Host pfn (< 2^40). */
  pfn: number;
  /** The SPTE being replaced. */
  old_lo: number;
  old_hi: number;
  prefetch: boolean;
  synchronizing: boolean;
  host_writable: boolean;
  /** is_nx_huge_page_enabled(kvm). */
  nx_huge_page_enabled: boolean;
  /** kvm_is_mmio_pfn(pfn): the pfn is host MMIO (not RAM). */
  is_host_mmio: boolean;
  /** kvm_x86_ops.get_mt_mask (VMX only; see vmx_get_mt_mask). Returns the memtype/IPAT bits. */
  get_mt_mask: ((gfn: number, is_mmio: boolean) => number) | null;
  /** Opaque slot handed back to the slot callbacks. */
  slot: unknown;
  /** mmu_try_to_unsync_pages(kvm, slot, gfn, synchronizing, prefetch): nonzero write-protects the SPTE. */
  mmu_try_to_unsync_pages: ((slot: unknown, gfn: number, synchronizing: boolean, prefetch: boolean) => number) | null;
  /** kvm_slot_dirty_track_enabled(slot). */
  slot_dirty_track_enabled: boolean;
  mark_page_dirty_in_slot: ((slot: unknown, gfn: number) => void) | null;
  /** static_branch cpu_buf_vm_clear (MMIO stale-data mitigation). */
  cpu_buf_vm_clear: boolean;
  /** kvm_vcpu_can_access_host_mmio(vcpu). */
  vcpu_can_access_host_mmio: boolean;
  kvm_track_host_mmio_mapping: (() => void) | null;
}

/** A MakeSpteArgs with neutral values (4K, ACC_ALL, host-writable, nothing wired). */
export function newMakeSpteArgs(): MakeSpteArgs {
  return {
    level: PG_LEVEL_4K,
    ad_disabled: false,
    ad_need_write_protect: false,
    pte_access: ACC_ALL,
    gfn: 0,
    pfn: 0,
    old_lo: SHADOW_NONPRESENT_VALUE_LO,
    old_hi: SHADOW_NONPRESENT_VALUE_HI,
    prefetch: false,
    synchronizing: false,
    host_writable: true,
    nx_huge_page_enabled: false,
    is_host_mmio: false,
    get_mt_mask: null,
    slot: null,
    mmu_try_to_unsync_pages: null,
    slot_dirty_track_enabled: false,
    mark_page_dirty_in_slot: null,
    cpu_buf_vm_clear: false,
    vcpu_can_access_host_mmio: true,
    kvm_track_host_mmio_mapping: null,
  };
}

/**
 * make_spte: build the leaf SPTE for `a` into `out` and return `wrprot` (true when the SPTE had to stay
 * read-only because the gfn's shadow pages could not be unsynced). Steps follow spte.c in order.
 */
export function make_spte(m: SpteMasks, a: MakeSpteArgs, out: U64): boolean {
  if (probes.armed) {
    probes.hit(MAKE_SPTE, {
      level: a.level,
      pte_access: a.pte_access,
      gfn: a.gfn,
      pfn: a.pfn,
      prefetch: a.prefetch,
      synchronizing: a.synchronizing,
      host_writable: a.host_writable,
    });
  }
  const level = a.level;
  let pte_access = a.pte_access;
  let lo = SPTE_MMU_PRESENT_MASK;
  let hi = 0;
  let wrprot = false;

  if (a.ad_disabled) hi |= SPTE_TDP_AD_DISABLED_HI;
  else if (a.ad_need_write_protect) hi |= SPTE_TDP_AD_WRPROT_ONLY_HI;

  lo |= m.shadow_present_mask.lo;
  hi |= m.shadow_present_mask.hi;
  if (!a.prefetch || a.synchronizing) {
    lo |= m.shadow_accessed_mask.lo;
    hi |= m.shadow_accessed_mask.hi;
  }

  // NX huge page mitigation: executable huge pages are never created.
  if (level > PG_LEVEL_4K && (pte_access & ACC_EXEC_MASK) !== 0 && a.nx_huge_page_enabled) pte_access &= ~ACC_EXEC_MASK;

  if ((pte_access & ACC_EXEC_MASK) !== 0) {
    lo |= m.shadow_x_mask.lo;
    hi |= m.shadow_x_mask.hi;
  } else {
    lo |= m.shadow_nx_mask.lo;
    hi |= m.shadow_nx_mask.hi;
  }
  if ((pte_access & ACC_USER_MASK) !== 0) {
    lo |= m.shadow_user_mask.lo;
    hi |= m.shadow_user_mask.hi;
  }
  if (level > PG_LEVEL_4K) lo |= PT_PAGE_SIZE_MASK;

  if (a.get_mt_mask !== null) lo |= a.get_mt_mask(a.gfn, a.is_host_mmio) & 0xff;

  if (a.host_writable) {
    lo |= m.shadow_host_writable_mask.lo;
    hi |= m.shadow_host_writable_mask.hi;
  } else {
    pte_access &= ~ACC_WRITE_MASK;
  }

  if ((m.shadow_me_value.lo | m.shadow_me_value.hi) !== 0 && !a.is_host_mmio) {
    lo |= m.shadow_me_value.lo;
    hi |= m.shadow_me_value.hi;
  }

  // pfn << PAGE_SHIFT: pfn * 4096 is exact below 2^53 and `|=` keeps it modulo 2^32, which is the low
  // half; a `%` here would be a floating-point modulo (a C call in V8) once pfn is not a small integer.
  const pfn = a.pfn;
  lo |= pfn * 4096;
  hi |= (pfn / 0x10_0000) >>> 0;

  if ((pte_access & ACC_WRITE_MASK) !== 0) {
    // An old writable leaf means any shadow pages for the gfn are already unsync.
    if (
      (!is_last_spte(a.old_lo, a.old_hi, level) || (a.old_lo & PT_WRITABLE_MASK) === 0) &&
      a.mmu_try_to_unsync_pages !== null &&
      a.mmu_try_to_unsync_pages(a.slot, a.gfn, a.synchronizing, a.prefetch) !== 0
    ) {
      wrprot = true;
    } else {
      lo |= PT_WRITABLE_MASK | m.shadow_mmu_writable_mask.lo | m.shadow_dirty_mask.lo;
      hi |= m.shadow_mmu_writable_mask.hi | m.shadow_dirty_mask.hi;
    }
  }

  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  if (a.prefetch && !a.synchronizing) mark_spte_for_access_track(m, out.lo, out.hi, out);

  // After access tracking, so a prefetched SPTE is judged by its final W bit.
  if ((out.lo & PT_WRITABLE_MASK) !== 0 && a.slot_dirty_track_enabled && a.mark_page_dirty_in_slot !== null) {
    a.mark_page_dirty_in_slot(a.slot, a.gfn);
  }

  if (a.cpu_buf_vm_clear && !a.vcpu_can_access_host_mmio && a.is_host_mmio && a.kvm_track_host_mmio_mapping !== null) {
    a.kvm_track_host_mmio_mapping();
  }
  return wrprot;
}

/** make_nonleaf_spte: an SPTE pointing at the child table at physical address `child_pa`, full access. */
export function make_nonleaf_spte(m: SpteMasks, child_pa_lo: number, child_pa_hi: number, ad_disabled: boolean, out: U64): void {
  if (probes.armed) probes.hit(MAKE_NONLEAF_SPTE, { child_pa_lo, child_pa_hi, ad_disabled });
  let lo = SPTE_MMU_PRESENT_MASK | child_pa_lo | m.shadow_present_mask.lo | PT_WRITABLE_MASK | m.shadow_user_mask.lo | m.shadow_x_mask.lo | m.shadow_me_value.lo;
  let hi = child_pa_hi | m.shadow_present_mask.hi | m.shadow_user_mask.hi | m.shadow_x_mask.hi | m.shadow_me_value.hi;
  if (ad_disabled) {
    hi |= SPTE_TDP_AD_DISABLED_HI;
  } else {
    lo |= m.shadow_accessed_mask.lo;
    hi |= m.shadow_accessed_mask.hi;
  }
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

/**
 * make_mmio_spte: generation bits | the VM's MMIO value | (access & mmio access mask) | gpa | L1TF bits
 * | the gpa's high bits moved up by 5. `gen` is the memslots generation (only its low 19 bits are kept);
 * `kvm_mmio_value` is kvm->arch.shadow_mmio_value (TDX overrides the global one).
 */
export function make_mmio_spte(
  m: SpteMasks,
  gfn: number,
  access: number,
  gen: number,
  out: U64,
  kvm_mmio_value: Readonly<U64> = m.shadow_mmio_value,
): void {
  if (probes.armed) probes.hit(MAKE_MMIO_SPTE, { gfn, access, gen });
  const g = gen & MMIO_SPTE_GEN_MASK;
  let lo = (g & 0xff) << MMIO_SPTE_GEN_LOW_START;
  let hi = ((g >>> MMIO_SPTE_GEN_LOW_BITS) & 0x7ff) << (MMIO_SPTE_GEN_HIGH_START - 32);
  lo |= kvm_mmio_value.lo | (access & m.shadow_mmio_access_mask);
  hi |= kvm_mmio_value.hi;
  const gpa_lo = ((gfn % 0x10_0000) * 4096) >>> 0;
  const gpa_hi = (gfn / 0x10_0000) >>> 0;
  const r = m.shadow_nonpresent_or_rsvd_mask;
  lo |= gpa_lo | r.lo;
  hi |= gpa_hi | r.hi;
  const n = SHADOW_NONPRESENT_OR_RSVD_MASK_LEN;
  const mlo = gpa_lo & r.lo;
  const mhi = gpa_hi & r.hi;
  lo |= mlo << n;
  hi |= (mhi << n) | (mlo >>> (32 - n));
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

/**
 * mark_spte_for_access_track: with A/D bits just clear Accessed; otherwise save R/X in bits 54/56 and
 * clear RWX and Accessed so the next access faults.
 */
export function mark_spte_for_access_track(m: SpteMasks, lo: number, hi: number, out: U64): void {
  if (spte_ad_enabled(lo, hi)) {
    out.lo = (lo & ~m.shadow_accessed_mask.lo) >>> 0;
    out.hi = (hi & ~m.shadow_accessed_mask.hi) >>> 0;
    return;
  }
  if (is_access_track_spte(m, lo, hi)) {
    out.lo = lo >>> 0;
    out.hi = hi >>> 0;
    return;
  }
  hi |= (lo & SHADOW_ACC_TRACK_SAVED_BITS_MASK) << (SHADOW_ACC_TRACK_SAVED_BITS_SHIFT - 32);
  out.lo = (lo & ~(m.shadow_acc_track_mask.lo | m.shadow_accessed_mask.lo)) >>> 0;
  out.hi = (hi & ~(m.shadow_acc_track_mask.hi | m.shadow_accessed_mask.hi)) >>> 0;
}

/** restore_acc_track_spte: put the saved R/X back and clear the save area. */
export function restore_acc_track_spte(m: SpteMasks, lo: number, hi: number, out: U64): void {
  const saved = (hi >>> (SHADOW_ACC_TRACK_SAVED_BITS_SHIFT - 32)) & SHADOW_ACC_TRACK_SAVED_BITS_MASK;
  lo &= ~m.shadow_acc_track_mask.lo;
  hi &= ~m.shadow_acc_track_mask.hi;
  hi &= ~ACC_TRACK_SAVED_HI;
  out.lo = (lo | saved) >>> 0;
  out.hi = hi >>> 0;
}

/** modify_spte_protections: set/clear permission bits, seeing through access tracking. */
function modify_spte_protections(m: SpteMasks, lo: number, hi: number, set: Readonly<U64>, clear: Readonly<U64>, out: U64): void {
  const tracked = is_access_track_spte(m, lo, hi);
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
  if (tracked) restore_acc_track_spte(m, out.lo, out.hi, out);
  out.lo = ((out.lo | set.lo) & ~clear.lo) >>> 0;
  out.hi = ((out.hi | set.hi) & ~clear.hi) >>> 0;
  if (tracked) mark_spte_for_access_track(m, out.lo, out.hi, out);
}

export function make_spte_executable(m: SpteMasks, lo: number, hi: number, out: U64): void {
  modify_spte_protections(m, lo, hi, m.shadow_x_mask, m.shadow_nx_mask, out);
}

export function make_spte_nonexecutable(m: SpteMasks, lo: number, hi: number, out: U64): void {
  modify_spte_protections(m, lo, hi, m.shadow_nx_mask, m.shadow_x_mask, out);
}

/**
 * make_small_spte: child `index` of the huge SPTE being split into a table whose role word is
 * `child_role` (level and access are read from it). A 4K child drops PS and, under the NX mitigation,
 * regains exec when the role allows it.
 */
export function make_small_spte(
  m: SpteMasks,
  nx_huge_page_enabled: boolean,
  huge_lo: number,
  huge_hi: number,
  child_role: number,
  index: number,
  out: U64,
): void {
  if (probes.armed) probes.hit(MAKE_SMALL_SPTE, { huge_lo, huge_hi, role: child_role, index });
  const level = child_role & 0xf;
  const access = (child_role >>> 8) & 7;
  const off = index * KVM_PAGES_PER_HPAGE(level) * 4096;
  let lo = huge_lo | (off % 0x1_0000_0000);
  const hi = huge_hi | Math.floor(off / 0x1_0000_0000);
  if (level === PG_LEVEL_4K) {
    lo &= ~PT_PAGE_SIZE_MASK;
    if ((access & ACC_EXEC_MASK) !== 0 && nx_huge_page_enabled) {
      make_spte_executable(m, lo, hi, out);
      return;
    }
  }
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

/** make_huge_spte: PS set, address aligned down to the `level` page, exec dropped under NX mitigation. */
export function make_huge_spte(m: SpteMasks, nx_huge_page_enabled: boolean, small_lo: number, small_hi: number, level: number, out: U64): void {
  if (probes.armed) probes.hit(MAKE_HUGE_SPTE, { small_lo, small_hi, level });
  const shift = PAGE_SHIFT + (level - 1) * SPTE_LEVEL_BITS; // 21 or 30 (or 39)
  let lo = small_lo | PT_PAGE_SIZE_MASK;
  let hi = small_hi;
  // Clear address bits [shift-1 : 12]; bits 11:0 stay.
  if (shift <= 32) {
    lo &= ~((((2 ** shift) - 1) >>> 0) & ~0xfff);
  } else {
    lo &= 0xfff;
    hi &= ~((1 << (shift - 32)) - 1);
  }
  if (nx_huge_page_enabled) {
    make_spte_nonexecutable(m, lo >>> 0, hi >>> 0, out);
    return;
  }
  out.lo = lo >>> 0;
  out.hi = hi >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Classification (decoders, views).

export type SpteKind = 'leaf' | 'nonleaf' | 'frozen' | 'mmio' | 'nonpresent';

/** What an SPTE value is, as the TDP MMU / shadow MMU would treat it at `level`. */
export function classifySpte(m: SpteMasks, lo: number, hi: number, level: number): SpteKind {
  if (is_frozen_spte(lo, hi) || isLegacyRemovedSpte(lo, hi)) return 'frozen';
  if (is_shadow_present_pte(lo, hi)) return is_last_spte(lo, hi, level) ? 'leaf' : 'nonleaf';
  if (is_mmio_spte(m, lo, hi)) return 'mmio';
  return 'nonpresent';
}
