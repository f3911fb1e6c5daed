/**
 * Bit-field tables for SPTEs as KVM builds them: hardware bits plus KVM's software bits (spte.h). One
 * table per format and kind; decoders, the CLI and views all read these.
 */
import type { BitField } from '../bits/fields';

const AD_TYPES: Readonly<Record<number, string>> = {
  0: 'SPTE_TDP_AD_ENABLED: hardware A/D bits in use',
  1: 'SPTE_TDP_AD_DISABLED: no hardware A/D; access tracking via RWX',
  2: 'SPTE_TDP_AD_WRPROT_ONLY: A/D enabled but writes tracked by write-protection (PML for L2)',
  3: '(invalid A/D type)',
};

const EPT_MEMTYPES: Readonly<Record<number, string>> = {
  0: 'UC (uncacheable)',
  1: 'WC (write-combining)',
  4: 'WT (write-through)',
  5: 'WP (write-protected)',
  6: 'WB (write-back)',
};

/** EPT leaf/non-leaf SPTE (VMX). Memtype/IPAT are leaf-only; bits 3-7 are reserved in non-leaf entries. */
export const EPT_SPTE_FIELDS: readonly BitField[] = [
  { name: 'R', msb: 0, lsb: 0, desc: 'read (VMX_EPT_READABLE_MASK); KVM also uses it as shadow_user_mask' },
  { name: 'W', msb: 1, lsb: 1, desc: 'write (PT_WRITABLE_MASK position)' },
  { name: 'X', msb: 2, lsb: 2, desc: 'execute (VMX_EPT_EXECUTABLE_MASK = shadow_x_mask)' },
  { name: 'MT', msb: 5, lsb: 3, desc: 'EPT memory type (leaf only)', values: EPT_MEMTYPES },
  { name: 'IPAT', msb: 6, lsb: 6, desc: 'ignore guest PAT (VMX_EPT_IPAT_BIT, leaf only)' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size: huge leaf at level 2/3 (PT_PAGE_SIZE_MASK)' },
  { name: 'A', msb: 8, lsb: 8, desc: 'accessed (VMX_EPT_ACCESS_BIT = shadow_accessed_mask; software A when A/D is off)' },
  { name: 'D', msb: 9, lsb: 9, desc: 'dirty (VMX_EPT_DIRTY_BIT = shadow_dirty_mask, leaf only)' },
  { name: 'UX', msb: 10, lsb: 10, desc: 'user-mode execute (mode-based execute control); KVM leaves it 0' },
  { name: 'MMU_PRESENT', msb: 11, lsb: 11, desc: 'SPTE_MMU_PRESENT_MASK: KVM software bit, shadow-present' },
  { name: 'PFN', msb: 51, lsb: 12, desc: 'host physical frame number (SPTE_BASE_ADDR_MASK >> 12)' },
  { name: 'AD_TYPE', msb: 53, lsb: 52, desc: 'SPTE_TDP_AD_MASK: how A/D are tracked', values: AD_TYPES },
  { name: 'SAVED_R', msb: 54, lsb: 54, desc: 'access tracking: saved R (SHADOW_ACC_TRACK_SAVED_BITS_SHIFT)' },
  { name: 'SAVED_X', msb: 56, lsb: 56, desc: 'access tracking: saved X' },
  { name: 'HOST_WRITABLE', msb: 57, lsb: 57, desc: 'EPT_SPTE_HOST_WRITABLE: host mapping is writable' },
  { name: 'MMU_WRITABLE', msb: 58, lsb: 58, desc: 'EPT_SPTE_MMU_WRITABLE: KVM is not write-protecting it (W may be set lock-free)' },
  { name: 'SVE', msb: 63, lsb: 63, desc: 'suppress #VE (VMX_EPT_SUPPRESS_VE_BIT); part of shadow_present_mask and SHADOW_NONPRESENT_VALUE' },
];

/** NPT / legacy 64-bit shadow-paging SPTE (SVM, or shadow paging on either vendor). */
export const NPT_SPTE_FIELDS: readonly BitField[] = [
  { name: 'P', msb: 0, lsb: 0, desc: 'present (PT_PRESENT_MASK = shadow_present_mask)' },
  { name: 'RW', msb: 1, lsb: 1, desc: 'writable (PT_WRITABLE_MASK)' },
  { name: 'US', msb: 2, lsb: 2, desc: 'user (PT_USER_MASK = shadow_user_mask)' },
  { name: 'PWT', msb: 3, lsb: 3, desc: 'page write-through' },
  { name: 'PCD', msb: 4, lsb: 4, desc: 'page cache disable' },
  { name: 'A', msb: 5, lsb: 5, desc: 'accessed (PT_ACCESSED_MASK = shadow_accessed_mask)' },
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty (PT_DIRTY_MASK = shadow_dirty_mask, leaf only)' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size: huge leaf at level 2/3 (PT_PAGE_SIZE_MASK)' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global' },
  { name: 'HOST_WRITABLE', msb: 9, lsb: 9, desc: 'DEFAULT_SPTE_HOST_WRITABLE: host mapping is writable' },
  { name: 'MMU_WRITABLE', msb: 10, lsb: 10, desc: 'DEFAULT_SPTE_MMU_WRITABLE: KVM is not write-protecting it' },
  { name: 'MMU_PRESENT', msb: 11, lsb: 11, desc: 'SPTE_MMU_PRESENT_MASK: KVM software bit, shadow-present' },
  { name: 'PFN', msb: 51, lsb: 12, desc: 'host physical frame number (SPTE_BASE_ADDR_MASK >> 12; excludes an SME C-bit)' },
  { name: 'AD_TYPE', msb: 53, lsb: 52, desc: 'SPTE_TDP_AD_MASK: always ENABLED (0) outside EPT', values: AD_TYPES },
  { name: 'NX', msb: 63, lsb: 63, desc: 'no-execute (PT64_NX_MASK = shadow_nx_mask); alone it is SHADOW_NONPRESENT_VALUE' },
];

/** EPT MMIO SPTE: RWX = 110b (misconfig), generation split around the MMU-present bit. */
export const EPT_MMIO_SPTE_FIELDS: readonly BitField[] = [
  { name: 'RWX', msb: 2, lsb: 0, desc: 'shadow_mmio_value 110b (VMX_EPT_MISCONFIG_WX_VALUE): EPT misconfig on access' },
  { name: 'GEN_LOW', msb: 10, lsb: 3, desc: 'MMIO generation bits 7:0' },
  { name: 'MMU_PRESENT', msb: 11, lsb: 11, desc: 'SPTE_MMU_PRESENT_MASK (always 0 for MMIO)' },
  { name: 'GPA', msb: 51, lsb: 12, desc: 'guest frame (get_mmio_spte_gfn)' },
  { name: 'GEN_HIGH', msb: 62, lsb: 52, desc: 'MMIO generation bits 18:8' },
  { name: 'SVE', msb: 63, lsb: 63, desc: 'suppress #VE (part of the MMIO mask, 0 in the value)' },
];

/** NPT/legacy MMIO SPTE: a reserved PA bit plus P so accesses fault with PFERR_RSVD. */
export const NPT_MMIO_SPTE_FIELDS: readonly BitField[] = [
  { name: 'P', msb: 0, lsb: 0, desc: 'present (part of shadow_mmio_value)' },
  { name: 'ACCESS', msb: 2, lsb: 1, desc: 'cached ACC_WRITE_MASK|ACC_USER_MASK (shadow_mmio_access_mask)' },
  { name: 'GEN_LOW', msb: 10, lsb: 3, desc: 'MMIO generation bits 7:0' },
  { name: 'MMU_PRESENT', msb: 11, lsb: 11, desc: 'SPTE_MMU_PRESENT_MASK (always 0 for MMIO)' },
  { name: 'GPA', msb: 51, lsb: 12, desc: 'guest frame plus the reserved MMIO PA bits (shadow_mmio_mask)' },
  { name: 'GEN_HIGH', msb: 62, lsb: 52, desc: 'MMIO generation bits 18:8' },
  { name: 'NX', msb: 63, lsb: 63, desc: 'bit 63 (not part of MMIO SPTEs)' },
];
