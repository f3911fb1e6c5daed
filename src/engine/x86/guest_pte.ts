/**
 * x86 paging-structure entries as the guest (and the hardware) sees them: legacy/PAE/long-mode PTEs and
 * EPT entries, their bit-field tables, and the reserved-bit masks KVM derives for each paging mode and
 * level (mmu.c `__reset_rsvds_bits_mask`, `__reset_rsvds_bits_mask_ept`; mmu.h / spte.h checks).
 *
 * KVM's own SPTE layout lives in spte.ts; this file is only about entries that the guest writes.
 * Masks are kept as 32-bit halves in typed arrays so that the walker checks them without allocating.
 */
import type { BitField } from '../bits/fields';
import { fieldMask, type U64 } from '../bits/u64';
import { PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from './memslot';

// ---------------------------------------------------------------------------------------------------
// Architectural bits (mmu.h PT_*, asm/vmx.h VMX_EPT_*). Numbers are bit positions unless named *_MASK.

export const PT_PRESENT_SHIFT = 0;
export const PT_WRITABLE_SHIFT = 1;
export const PT_USER_SHIFT = 2;
export const PT_PWT_SHIFT = 3;
export const PT_PCD_SHIFT = 4;
export const PT_ACCESSED_SHIFT = 5;
export const PT_DIRTY_SHIFT = 6;
export const PT_PAGE_SIZE_SHIFT = 7;
export const PT_PAT_SHIFT = 7;
export const PT_GLOBAL_SHIFT = 8;
/** PAT bit of a 2M/4M/1G leaf. */
export const PT_DIR_PAT_SHIFT = 12;
export const PT64_NX_SHIFT = 63;

export const PT_PRESENT_MASK = 1 << PT_PRESENT_SHIFT;
export const PT_WRITABLE_MASK = 1 << PT_WRITABLE_SHIFT;
export const PT_USER_MASK = 1 << PT_USER_SHIFT;
export const PT_PWT_MASK = 1 << PT_PWT_SHIFT;
export const PT_PCD_MASK = 1 << PT_PCD_SHIFT;
export const PT_ACCESSED_MASK = 1 << PT_ACCESSED_SHIFT;
export const PT_DIRTY_MASK = 1 << PT_DIRTY_SHIFT;
export const PT_PAGE_SIZE_MASK = 1 << PT_PAGE_SIZE_SHIFT;
export const PT_GLOBAL_MASK = 1 << PT_GLOBAL_SHIFT;
/** NX (bit 63) as a mask on the high half. */
export const PT64_NX_MASK_HI = 0x8000_0000;

/** PSE-36: 4M PDE bits 16:13 carry physical-address bits 35:32. */
export const PT32_DIR_PSE36_SHIFT = 13;
export const PT32_DIR_PSE36_SIZE = 4;
export const PT32_DIR_PSE36_MASK = ((1 << PT32_DIR_PSE36_SIZE) - 1) << PT32_DIR_PSE36_SHIFT;

/** Protection key of a long-mode leaf, bits 62:59 (bits 30:27 of the high half). */
export const PT64_PKEY_SHIFT_HI = 27;

export const PT32_ROOT_LEVEL = 2;
export const PT32E_ROOT_LEVEL = 3;
export const PT64_ROOT_4LEVEL = 4;
export const PT64_ROOT_5LEVEL = 5;
export const PT64_ROOT_MAX_LEVEL = 5;

export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G };

export const VMX_EPT_READABLE_MASK = 0x1;
export const VMX_EPT_WRITABLE_MASK = 0x2;
export const VMX_EPT_EXECUTABLE_MASK = 0x4;
export const VMX_EPT_RWX_MASK = 0x7;
export const VMX_EPT_MT_EPTE_SHIFT = 3;
export const VMX_EPT_IPAT_BIT = 1 << 6;
export const VMX_EPT_LARGE_BIT = 1 << 7;
export const VMX_EPT_ACCESS_BIT = 1 << 8;
export const VMX_EPT_DIRTY_BIT = 1 << 9;
export const VMX_EPT_USER_EXECUTABLE_MASK = 1 << 10;
/** Suppress #VE, bit 63, on the high half. */
export const VMX_EPT_SUPPRESS_VE_BIT_HI = 0x8000_0000;
export const VMX_EPT_MISCONFIG_WX_VALUE = VMX_EPT_WRITABLE_MASK | VMX_EPT_EXECUTABLE_MASK;

/** EPT memory types (bits 5:3 of a leaf). */
export const EPT_MEMTYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'UC',
  1: 'WC',
  2: 'reserved (2)',
  3: 'reserved (3)',
  4: 'WT',
  5: 'WP',
  6: 'WB',
  7: 'reserved (7)',
};

// ---------------------------------------------------------------------------------------------------
// Bit-field tables. One per entry shape, so every view names the bits the way the SDM/APM does.

const PTE_LOW_COMMON: BitField[] = [
  { name: 'P', msb: 0, lsb: 0, desc: 'present' },
  { name: 'RW', msb: 1, lsb: 1, desc: 'writable' },
  { name: 'US', msb: 2, lsb: 2, desc: 'user accessible' },
  { name: 'PWT', msb: 3, lsb: 3, desc: 'page-level write-through' },
  { name: 'PCD', msb: 4, lsb: 4, desc: 'page-level cache disable' },
  { name: 'A', msb: 5, lsb: 5, desc: 'accessed' },
];

/** Long-mode / PAE 4K leaf (PTE). */
export const GUEST_PTE_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty' },
  { name: 'PAT', msb: 7, lsb: 7, desc: 'PAT index bit 2 (4K leaf)' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'ADDR', msb: 51, lsb: 12, desc: 'page frame, physical address bits 51:12' },
  { name: 'AVL_HI', msb: 58, lsb: 52, desc: 'ignored (software)' },
  { name: 'PK', msb: 62, lsb: 59, desc: 'protection key (CR4.PKE, long mode only)' },
  { name: 'XD', msb: 63, lsb: 63, desc: 'execute disable (NX; reserved without EFER.NXE)' },
];

/** Long-mode / PAE non-leaf entry (PML5E, PML4E, PDPTE or PDE pointing to a table). */
export const GUEST_NONLEAF_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'IGN6', msb: 6, lsb: 6, desc: 'ignored' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size (0 = points to a table; reserved in PML4E/PML5E)' },
  { name: 'IGN8', msb: 8, lsb: 8, desc: 'ignored (reserved on AMD in PML4E/PML5E/PDPTE per KVM)' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'ADDR', msb: 51, lsb: 12, desc: 'next table, physical address bits 51:12' },
  { name: 'AVL_HI', msb: 62, lsb: 52, desc: 'ignored' },
  { name: 'XD', msb: 63, lsb: 63, desc: 'execute disable for everything below' },
];

/** Long-mode / PAE 2M leaf (PDE with PS=1). */
export const GUEST_PDE_2M_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size: 2M leaf' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'PAT', msb: 12, lsb: 12, desc: 'PAT index bit 2 (large leaf)' },
  { name: 'RSVD', msb: 20, lsb: 13, desc: 'reserved (must be 0)' },
  { name: 'ADDR', msb: 51, lsb: 21, desc: '2M frame, physical address bits 51:21' },
  { name: 'AVL_HI', msb: 58, lsb: 52, desc: 'ignored (software)' },
  { name: 'PK', msb: 62, lsb: 59, desc: 'protection key (CR4.PKE, long mode only)' },
  { name: 'XD', msb: 63, lsb: 63, desc: 'execute disable' },
];

/** Long-mode 1G leaf (PDPTE with PS=1). */
export const GUEST_PDPTE_1G_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size: 1G leaf (reserved without GBPAGES)' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'PAT', msb: 12, lsb: 12, desc: 'PAT index bit 2 (large leaf)' },
  { name: 'RSVD', msb: 29, lsb: 13, desc: 'reserved (must be 0)' },
  { name: 'ADDR', msb: 51, lsb: 30, desc: '1G frame, physical address bits 51:30' },
  { name: 'AVL_HI', msb: 58, lsb: 52, desc: 'ignored (software)' },
  { name: 'PK', msb: 62, lsb: 59, desc: 'protection key (CR4.PKE, long mode only)' },
  { name: 'XD', msb: 63, lsb: 63, desc: 'execute disable' },
];

/** PAE PDPTE, loaded into the PDPTR registers (not walked). */
export const GUEST_PAE_PDPTE_FIELDS: readonly BitField[] = [
  { name: 'P', msb: 0, lsb: 0, desc: 'present' },
  { name: 'RSVD2_1', msb: 2, lsb: 1, desc: 'reserved (must be 0)' },
  { name: 'PWT', msb: 3, lsb: 3, desc: 'page-level write-through' },
  { name: 'PCD', msb: 4, lsb: 4, desc: 'page-level cache disable' },
  { name: 'RSVD8_5', msb: 8, lsb: 5, desc: 'reserved (must be 0)' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'ADDR', msb: 51, lsb: 12, desc: 'page directory, physical address bits 51:12' },
  { name: 'RSVD62_52', msb: 62, lsb: 52, desc: 'reserved (must be 0)' },
  { name: 'RSVD63', msb: 63, lsb: 63, desc: 'reserved (no NX in a PDPTE)' },
];

/** 2-level (32-bit) PTE or PDE pointing to a page table. */
export const GUEST_PTE32_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty (leaf only)' },
  { name: 'PAT_PS', msb: 7, lsb: 7, desc: 'PAT (4K leaf); PS in a PDE (only with CR4.PSE)' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global (leaf only)' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'ADDR', msb: 31, lsb: 12, desc: 'frame, physical address bits 31:12' },
];

/** 2-level 4M PDE (PS=1 with CR4.PSE=1). */
export const GUEST_PDE32_4M_FIELDS: readonly BitField[] = [
  ...PTE_LOW_COMMON,
  { name: 'D', msb: 6, lsb: 6, desc: 'dirty' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'page size: 4M leaf' },
  { name: 'G', msb: 8, lsb: 8, desc: 'global' },
  { name: 'AVL', msb: 11, lsb: 9, desc: 'ignored (software)' },
  { name: 'PAT', msb: 12, lsb: 12, desc: 'PAT index bit 2 (large leaf)' },
  { name: 'PSE36', msb: 16, lsb: 13, desc: 'physical address bits 35:32 (PSE-36)' },
  { name: 'RSVD', msb: 21, lsb: 17, desc: 'reserved (bits 21:13 without PSE-36)' },
  { name: 'ADDR', msb: 31, lsb: 22, desc: '4M frame, physical address bits 31:22' },
];

/** EPT entry (non-leaf or leaf; memtype/IPAT/D only mean something in a leaf). */
export const EPT_ENTRY_FIELDS: readonly BitField[] = [
  { name: 'R', msb: 0, lsb: 0, desc: 'read access' },
  { name: 'W', msb: 1, lsb: 1, desc: 'write access' },
  { name: 'X', msb: 2, lsb: 2, desc: 'execute access (supervisor-mode with MBEC)' },
  { name: 'MT', msb: 5, lsb: 3, desc: 'memory type (leaf; reserved in non-leaf)', values: EPT_MEMTYPE_NAMES },
  { name: 'IPAT', msb: 6, lsb: 6, desc: 'ignore guest PAT (leaf; reserved in non-leaf)' },
  { name: 'PS', msb: 7, lsb: 7, desc: 'large page (level 2/3); reserved at level 4/5; ignored at level 1' },
  { name: 'A', msb: 8, lsb: 8, desc: 'accessed (EPTP A/D enable)' },
  { name: 'D', msb: 9, lsb: 9, desc: 'dirty (leaf; EPTP A/D enable)' },
  { name: 'UX', msb: 10, lsb: 10, desc: 'user-mode execute (mode-based execute control)' },
  { name: 'AVL', msb: 11, lsb: 11, desc: 'ignored' },
  { name: 'ADDR', msb: 51, lsb: 12, desc: 'physical address bits 51:12' },
  { name: 'AVL_HI', msb: 62, lsb: 52, desc: 'ignored' },
  { name: 'SVE', msb: 63, lsb: 63, desc: 'suppress #VE' },
];

/** Guest paging formats the walker understands. */
export type GuestPteFormat = 'pte32' | 'pae' | 'long' | 'ept';

/**
 * The table that fits an entry at `level`: `large` says whether bit 7 makes it a leaf there.
 * `pdpte` selects the PAE PDPTR layout.
 */
export function guestPteFields(format: GuestPteFormat, level: number, large: boolean, pdpte = false): readonly BitField[] {
  if (format === 'ept') return EPT_ENTRY_FIELDS;
  if (format === 'pte32') return level === 2 && large ? GUEST_PDE32_4M_FIELDS : GUEST_PTE32_FIELDS;
  if (pdpte) return GUEST_PAE_PDPTE_FIELDS;
  if (level === 1) return GUEST_PTE_FIELDS;
  if (!large) return GUEST_NONLEAF_FIELDS;
  return level === 2 ? GUEST_PDE_2M_FIELDS : level === 3 ? GUEST_PDPTE_1G_FIELDS : GUEST_NONLEAF_FIELDS;
}

// ---------------------------------------------------------------------------------------------------
// Reserved bits.

/** GENMASK_ULL(e, s), or 0 when e < s (mmu.h `rsvd_bits`). */
export function rsvd_bits(s: number, e: number): U64 {
  if (e < s) return { lo: 0, hi: 0 };
  return fieldMask(e, s);
}

/** Guest `reserved_gpa_bits`: bits MAXPHYADDR..63. */
export function reserved_gpa_bits(maxphyaddr: number): U64 {
  return rsvd_bits(maxphyaddr, 63);
}

/**
 * `struct rsvd_bits_validate`: `rsvd_bits_mask[bit7][level-1]` (bit 7 of the entry picks the row) and
 * the EPT `bad_mt_xwr` bitmap (one bit per value of entry bits 5:0).
 */
export class RsvdBitsValidate {
  /** [(bit7 * 5 + level - 1) * 2] = lo, [+1] = hi. */
  readonly rsvd_bits_mask = new Uint32Array(2 * PT64_ROOT_MAX_LEVEL * 2);
  /** 64-bit bitmap indexed by (memtype << 3 | XWR): [0] bits 0..31, [1] bits 32..63. */
  readonly bad_mt_xwr = new Uint32Array(2);

  set(bit7: 0 | 1, level: number, m: U64): void {
    const i = (bit7 * PT64_ROOT_MAX_LEVEL + level - 1) * 2;
    this.rsvd_bits_mask[i] = m.lo >>> 0;
    this.rsvd_bits_mask[i + 1] = m.hi >>> 0;
  }

  get(bit7: 0 | 1, level: number): U64 {
    const i = (bit7 * PT64_ROOT_MAX_LEVEL + level - 1) * 2;
    return { lo: this.rsvd_bits_mask[i]!, hi: this.rsvd_bits_mask[i + 1]! };
  }

  clear(): void {
    this.rsvd_bits_mask.fill(0);
    this.bad_mt_xwr.fill(0);
  }
}

function or3(a: U64, b: U64, c: U64 = { lo: 0, hi: 0 }, d: U64 = { lo: 0, hi: 0 }): U64 {
  return { lo: (a.lo | b.lo | c.lo | d.lo) >>> 0, hi: (a.hi | b.hi | c.hi | d.hi) >>> 0 };
}

function and2(a: U64, b: U64): U64 {
  return { lo: (a.lo & b.lo) >>> 0, hi: (a.hi & b.hi) >>> 0 };
}

/**
 * Reserved bits of guest (or shadow) entries for a non-EPT paging mode, as KVM computes them.
 * `pa_bits_rsvd` is the guest's reserved-GPA mask; `pse36` stands for the guest CPUID PSE36 bit that the
 * kernel reads inside the function.
 */
export function __reset_rsvds_bits_mask(
  rsvd_check: RsvdBitsValidate,
  pa_bits_rsvd: U64,
  level: number,
  nx: boolean,
  gbpages: boolean,
  pse: boolean,
  amd: boolean,
  pse36: boolean,
): void {
  rsvd_check.clear();
  const zero: U64 = { lo: 0, hi: 0 };
  const gbpages_bit_rsvd = gbpages ? zero : rsvd_bits(7, 7);
  // PAE keeps bits 62:52 reserved (there is no PK/ignored field there); 64-bit clips at bit 51.
  let high_bits_rsvd = and2(pa_bits_rsvd, level === PT32E_ROOT_LEVEL ? rsvd_bits(0, 62) : rsvd_bits(0, 51));
  if (!nx) high_bits_rsvd = or3(high_bits_rsvd, rsvd_bits(63, 63));
  const nonleaf_bit8_rsvd = amd ? rsvd_bits(8, 8) : zero;

  switch (level) {
    case PT32_ROOT_LEVEL:
      // 2-level paging: MAXPHYADDR is not applied and 4K entries have no reserved bits at all.
      if (pse) rsvd_check.set(1, 2, pse36 ? rsvd_bits(17, 21) : rsvd_bits(13, 21));
      break;
    case PT32E_ROOT_LEVEL:
      rsvd_check.set(0, 3, or3(rsvd_bits(63, 63), high_bits_rsvd, rsvd_bits(5, 8), rsvd_bits(1, 2)));
      rsvd_check.set(0, 2, high_bits_rsvd);
      rsvd_check.set(0, 1, high_bits_rsvd);
      rsvd_check.set(1, 2, or3(high_bits_rsvd, rsvd_bits(13, 20)));
      rsvd_check.set(1, 1, high_bits_rsvd);
      break;
    case PT64_ROOT_5LEVEL:
    case PT64_ROOT_4LEVEL: {
      const top = or3(high_bits_rsvd, nonleaf_bit8_rsvd, rsvd_bits(7, 7));
      if (level === PT64_ROOT_5LEVEL) {
        rsvd_check.set(0, 5, top);
        rsvd_check.set(1, 5, top);
      }
      rsvd_check.set(0, 4, top);
      rsvd_check.set(1, 4, top);
      rsvd_check.set(0, 3, or3(high_bits_rsvd, gbpages_bit_rsvd));
      rsvd_check.set(0, 2, high_bits_rsvd);
      rsvd_check.set(0, 1, high_bits_rsvd);
      rsvd_check.set(1, 3, or3(high_bits_rsvd, gbpages_bit_rsvd, rsvd_bits(13, 29)));
      rsvd_check.set(1, 2, or3(high_bits_rsvd, rsvd_bits(13, 20)));
      rsvd_check.set(1, 1, high_bits_rsvd);
      break;
    }
    default:
      break;
  }
}

/**
 * Reserved bits and the memtype/XWR misconfiguration bitmap of guest EPT entries.
 * `huge_page_level` is the largest leaf the (nested) EPT supports: PG_LEVEL_1G, PG_LEVEL_2M or 4K.
 */
export function __reset_rsvds_bits_mask_ept(
  rsvd_check: RsvdBitsValidate,
  pa_bits_rsvd: U64,
  execonly: boolean,
  huge_page_level: number,
): void {
  rsvd_check.clear();
  const zero: U64 = { lo: 0, hi: 0 };
  const high_bits_rsvd = and2(pa_bits_rsvd, rsvd_bits(0, 51));
  const large_1g_rsvd = huge_page_level < PG_LEVEL_1G ? rsvd_bits(7, 7) : zero;
  const large_2m_rsvd = huge_page_level < PG_LEVEL_2M ? rsvd_bits(7, 7) : zero;

  rsvd_check.set(0, 5, or3(high_bits_rsvd, rsvd_bits(3, 7)));
  rsvd_check.set(0, 4, or3(high_bits_rsvd, rsvd_bits(3, 7)));
  rsvd_check.set(0, 3, or3(high_bits_rsvd, rsvd_bits(3, 6), large_1g_rsvd));
  rsvd_check.set(0, 2, or3(high_bits_rsvd, rsvd_bits(3, 6), large_2m_rsvd));
  rsvd_check.set(0, 1, high_bits_rsvd);
  rsvd_check.set(1, 5, rsvd_check.get(0, 5));
  rsvd_check.set(1, 4, rsvd_check.get(0, 4));
  rsvd_check.set(1, 3, or3(high_bits_rsvd, rsvd_bits(12, 29), large_1g_rsvd));
  rsvd_check.set(1, 2, or3(high_bits_rsvd, rsvd_bits(12, 20), large_2m_rsvd));
  rsvd_check.set(1, 1, high_bits_rsvd);

  // Bitmap index = memtype * 8 + XWR. Memtypes 2, 3 and 7 are bad whatever XWR is (whole bytes 2, 3, 7);
  // XWR 010 (write-only) and 110 (write+exec, no read) are bad for every memtype; 100 (exec-only) too
  // unless the CPU supports execute-only translations.
  let lo = 0;
  let hi = 0;
  for (let mt = 0; mt < 8; mt++) {
    for (let xwr = 0; xwr < 8; xwr++) {
      const bad = mt === 2 || mt === 3 || mt === 7 || xwr === 2 || xwr === 6 || (!execonly && xwr === 4);
      if (!bad) continue;
      const n = mt * 8 + xwr;
      if (n < 32) lo |= 1 << n;
      else hi |= 1 << (n - 32);
    }
  }
  rsvd_check.bad_mt_xwr[0] = lo >>> 0;
  rsvd_check.bad_mt_xwr[1] = hi >>> 0;
}

/** Entry bits that are reserved at `level` (the mask row chosen by the entry's bit 7). */
export function get_rsvd_bits_lo(rsvd_check: RsvdBitsValidate, lo: number, level: number): number {
  return rsvd_check.rsvd_bits_mask[(((lo >>> 7) & 1) * PT64_ROOT_MAX_LEVEL + level - 1) * 2]!;
}

export function get_rsvd_bits_hi(rsvd_check: RsvdBitsValidate, lo: number, level: number): number {
  return rsvd_check.rsvd_bits_mask[(((lo >>> 7) & 1) * PT64_ROOT_MAX_LEVEL + level - 1) * 2 + 1]!;
}

export function __is_rsvd_bits_set(rsvd_check: RsvdBitsValidate, lo: number, hi: number, level: number): boolean {
  return ((lo & get_rsvd_bits_lo(rsvd_check, lo, level)) | (hi & get_rsvd_bits_hi(rsvd_check, lo, level))) !== 0;
}

/** The memtype/XWR combination of bits 5:0 is a misconfiguration (EPT only; 0 bitmap otherwise). */
export function __is_bad_mt_xwr(rsvd_check: RsvdBitsValidate, lo: number): boolean {
  const n = lo & 0x3f;
  return n < 32 ? ((rsvd_check.bad_mt_xwr[0]! >>> n) & 1) === 1 : ((rsvd_check.bad_mt_xwr[1]! >>> (n - 32)) & 1) === 1;
}

/** For explanations: the reserved bits that are actually set in an entry (pte & mask). */
export function reservedBitsSet(rsvd_check: RsvdBitsValidate, lo: number, hi: number, level: number): U64 {
  return {
    lo: (lo & get_rsvd_bits_lo(rsvd_check, lo, level)) >>> 0,
    hi: (hi & get_rsvd_bits_hi(rsvd_check, lo, level)) >>> 0,
  };
}

/** List of set bit numbers of a 64-bit value, low first (for messages). */
export function setBitNumbers(v: U64): number[] {
  const out: number[] = [];
  for (let b = 0; b < 32; b++) if ((v.lo >>> b) & 1) out.push(b);
  for (let b = 0; b < 32; b++) if ((v.hi >>> b) & 1) out.push(b + 32);
  return out;
}

/** Compact `bits 63, 13-20` text of a list of bit numbers. */
export function bitListText(bits: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < bits.length) {
    let j = i;
    while (j + 1 < bits.length && bits[j + 1] === bits[j]! + 1) j++;
    parts.push(i === j ? `${bits[i]}` : `${bits[i]}-${bits[j]}`);
    i = j + 1;
  }
  return (bits.length === 1 ? 'bit ' : 'bits ') + parts.join(', ');
}
