/**
 * arm64 stage-2 descriptor format and geometry (asm/kvm_pgtable.h, asm/kvm_arm.h, asm/stage2_pgtable.h).
 *
 * Descriptors travel as 32-bit halves: bit n < 32 lives in `lo`, bit n >= 32 in `hi` at n - 32.
 * Addresses (IPA/PA, at most 52 bits) are plain JS numbers, exact below 2^53, so address arithmetic
 * uses division and multiplication rather than 32-bit shifts.
 */
import type { BitField } from '../bits/fields';

export type Granule = '4k' | '16k' | '64k';

export const GRANULES: readonly Granule[] = ['4k', '16k', '64k'];

export interface GranuleInfo {
  name: Granule;
  /** PAGE_SHIFT. */
  pageShift: number;
  pageSize: number;
  /** PTRS_PER_PTE: 2^(PAGE_SHIFT-3) eight-byte entries per table page. */
  ptrsPerPte: number;
  /** VTCR_EL2_TGRAN_SL0_BASE: 2 for 4K, 3 for 16K and 64K. */
  sl0Base: number;
  /** VTCR_EL2.TG0 encoding (4K=0, 64K=1, 16K=2). */
  tg0: number;
  /** KVM_PGTABLE_MIN_BLOCK_LEVEL for this granule. */
  minBlockLevel: number;
}

const GRANULE_INFO: Record<Granule, GranuleInfo> = {
  '4k': { name: '4k', pageShift: 12, pageSize: 4096, ptrsPerPte: 512, sl0Base: 2, tg0: 0, minBlockLevel: 1 },
  '16k': { name: '16k', pageShift: 14, pageSize: 16384, ptrsPerPte: 2048, sl0Base: 3, tg0: 2, minBlockLevel: 2 },
  '64k': { name: '64k', pageShift: 16, pageSize: 65536, ptrsPerPte: 8192, sl0Base: 3, tg0: 1, minBlockLevel: 2 },
};

export function granuleInfo(g: Granule): GranuleInfo {
  return GRANULE_INFO[g];
}

export function parseGranule(text: string): Granule | undefined {
  const t = text.toLowerCase();
  return t === '4k' || t === '16k' || t === '64k' ? t : undefined;
}

/** Levels are s8 since 6.8: -1 exists only with LPA2 and 4K pages, and KVM's stage-2 never starts there. */
export const KVM_PGTABLE_FIRST_LEVEL = -1;
export const KVM_PGTABLE_LAST_LEVEL = 3;

/** ARM64_HW_PGTABLE_LEVEL_SHIFT(level): the input-address shift a level resolves. */
export function kvm_granule_shift(pageShift: number, level: number): number {
  return (pageShift - 3) * (4 - level) + 3;
}

export function kvm_granule_size(pageShift: number, level: number): number {
  return Math.pow(2, kvm_granule_shift(pageShift, level));
}

/** ARM64_HW_PGTABLE_LEVELS(va_bits). */
export function ARM64_HW_PGTABLE_LEVELS(pageShift: number, vaBits: number): number {
  return Math.floor((vaBits - 4) / (pageShift - 3));
}

/** The "- 4" is the up-to-16 concatenated tables at the start level absorbing four bits. */
export function stage2_pgtable_levels(pageShift: number, ipaBits: number): number {
  return ARM64_HW_PGTABLE_LEVELS(pageShift, ipaBits - 4);
}

export function kvm_level_supports_block_mapping(g: GranuleInfo, level: number): boolean {
  return level >= g.minBlockLevel;
}

/** kvm_supported_block_sizes(): BIT(shift) for every level from MIN_BLOCK to LAST, as sizes in bytes. */
export function kvm_supported_block_sizes(g: GranuleInfo): number[] {
  const out: number[] = [];
  for (let l = g.minBlockLevel; l <= KVM_PGTABLE_LAST_LEVEL; l++) out.push(kvm_granule_size(g.pageShift, l));
  return out;
}

/** Number of concatenated PGD pages at the start level: index of the top address at level start-1, plus one. */
export function kvm_pgd_pages(pageShift: number, iaBits: number, startLevel: number): number {
  const top = Math.pow(2, iaBits) - 1;
  return Math.floor(top / Math.pow(2, kvm_granule_shift(pageShift, startLevel - 1))) + 1;
}

export interface Stage2Geometry {
  granule: GranuleInfo;
  iaBits: number;
  levels: number;
  startLevel: number;
  /** VTCR_EL2.SL0 as KVM programs it. */
  sl0: number;
  pgdPages: number;
  /** FEAT_LPA2 descriptors (VTCR_EL2.DS): OA[51:50] in bits 9:8, no SH field. */
  lpa2: boolean;
}

/**
 * What `kvm_get_vtcr` and `__kvm_pgtable_stage2_init` derive from an IPA size: levels (at least 2),
 * SL0, start level and the concatenated PGD size. Throws RangeError for an IPA size KVM refuses.
 */
export function stage2Geometry(g: Granule, iaBits: number, lpa2 = false): Stage2Geometry {
  const gi = granuleInfo(g);
  const maxIpa = lpa2 || g === '64k' ? 52 : 48;
  if (!Number.isInteger(iaBits) || iaBits < 32 || iaBits > maxIpa) {
    throw new RangeError(`IPA size ${iaBits} not supported with ${g} pages${lpa2 ? ' and LPA2' : ''} (32..${maxIpa})`);
  }
  if (lpa2 && g === '64k') throw new RangeError('LPA2 applies to the 4K and 16K granules only');
  let levels = stage2_pgtable_levels(gi.pageShift, iaBits);
  if (levels < 2) levels = 2;
  const sl0 = gi.sl0Base - (4 - levels);
  const startLevel = gi.sl0Base - sl0;
  return { granule: gi, iaBits, levels, startLevel, sl0, pgdPages: kvm_pgd_pages(gi.pageShift, iaBits, startLevel), lpa2 };
}

// ---------------------------------------------------------------------------------------------------------
// Descriptor bits. `_LO` constants are masks on the low half, `_HI` on the high half (bit - 32).

export const KVM_PTE_VALID = 1 << 0;
export const KVM_PTE_TYPE = 1 << 1;
export const KVM_PTE_TYPE_BLOCK = 0;
export const KVM_PTE_TYPE_PAGE = 1;
export const KVM_PTE_TYPE_TABLE = 1;

export const KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR = 0xf << 2;
export const KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R = 1 << 6;
export const KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W = 1 << 7;
export const KVM_PTE_LEAF_ATTR_LO_S2_SH = 3 << 8;
export const KVM_PTE_LEAF_ATTR_LO_S2_SH_IS = 3;
export const KVM_PTE_LEAF_ATTR_LO_S2_AF = 1 << 10;
/** KVM_PTE_LEAF_ATTR_LO = GENMASK(11, 2). */
export const KVM_PTE_LEAF_ATTR_LO = 0xffc;
/** KVM_PTE_LEAF_ATTR_HI = GENMASK(63, 50), on the high half. */
export const KVM_PTE_LEAF_ATTR_HI_HI = 0xfffc0000;
/** Bit 50: stage-1 guarded page; listed for completeness, never written at stage 2. */
export const KVM_PTE_LEAF_ATTR_HI_S1_GP_HI = 1 << 18;
/** Bit 51: DBM (architectural, unused by KVM at stage 2). */
export const PTE_DBM_HI = 1 << 19;
/** Bit 52: Contiguous (architectural, never set by KVM at stage 2). */
export const PTE_CONT_HI = 1 << 20;
/** KVM_PTE_LEAF_ATTR_HI_S2_XN = GENMASK(54, 53). */
export const KVM_PTE_LEAF_ATTR_HI_S2_XN_HI = 3 << 21;
export const KVM_PTE_LEAF_ATTR_HI_S2_XN_SHIFT_HI = 21;
export const KVM_PTE_LEAF_ATTR_HI_S2_XN_PXN = 1;
export const KVM_PTE_LEAF_ATTR_HI_S2_XN_UXN = 3;
export const KVM_PTE_LEAF_ATTR_HI_S2_XN_XN = 2;
/** KVM_PTE_LEAF_ATTR_HI_SW = GENMASK(58, 55). */
export const KVM_PTE_LEAF_ATTR_HI_SW_HI = 0xf << 23;
export const KVM_PTE_LEAF_ATTR_HI_SW_SHIFT_HI = 23;

/** Permission-only bits (S2AP_R | S2AP_W | XN) that `stage2_pte_needs_update()` ignores. */
export const KVM_PTE_LEAF_ATTR_S2_PERMS_LO = KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R | KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W;
export const KVM_PTE_LEAF_ATTR_S2_PERMS_HI = KVM_PTE_LEAF_ATTR_HI_S2_XN_HI;

// MemAttr values, before the shift into bits 5:2.
export const MT_S2_NORMAL = 0xf;
export const MT_S2_NORMAL_NC = 0x5;
export const MT_S2_DEVICE_nGnRE = 0x1;
export const MT_S2_FWB_NORMAL = 6;
export const MT_S2_FWB_NORMAL_NC = 5;
export const MT_S2_FWB_DEVICE_nGnRE = 1;

/** KVM_PHYS_INVALID (-1ULL): the phys of an annotation; never a valid output address. */
export const KVM_PHYS_INVALID = -1;
/** ID_AA64MMFR0_EL1_PARANGE_MAX is 52 bits on kernels with LPA support. */
export const PARANGE_MAX_BITS = 52;

export function kvm_phys_is_valid(phys: number): boolean {
  return phys >= 0 && phys < 2 ** PARANGE_MAX_BITS;
}

// ---------------------------------------------------------------------------------------------------------
// enum kvm_pgtable_prot [6.16]. The SW bits are BIT(55..58) in the kernel; a JS number cannot carry bit 55
// through bitwise operators, so they sit at bits 8..11 here and move to PTE bits 55..58 on the way in/out.

export const KVM_PGTABLE_PROT_PX = 1 << 0;
export const KVM_PGTABLE_PROT_UX = 1 << 1;
export const KVM_PGTABLE_PROT_X = KVM_PGTABLE_PROT_PX | KVM_PGTABLE_PROT_UX;
export const KVM_PGTABLE_PROT_W = 1 << 2;
export const KVM_PGTABLE_PROT_R = 1 << 3;
export const KVM_PGTABLE_PROT_DEVICE = 1 << 4;
export const KVM_PGTABLE_PROT_NORMAL_NC = 1 << 5;
export const KVM_PGTABLE_PROT_SW0 = 1 << 8;
export const KVM_PGTABLE_PROT_SW1 = 1 << 9;
export const KVM_PGTABLE_PROT_SW2 = 1 << 10;
export const KVM_PGTABLE_PROT_SW3 = 1 << 11;
export const KVM_PGTABLE_PROT_SW_MASK = 0xf << 8;
export const KVM_PGTABLE_PROT_SW_SHIFT = 8;
export const KVM_PGTABLE_PROT_RW = KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W;
export const KVM_PGTABLE_PROT_RWX = KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_X;
export const PKVM_HOST_MEM_PROT = KVM_PGTABLE_PROT_RWX;
export const PKVM_HOST_MMIO_PROT = KVM_PGTABLE_PROT_RW;
export const PAGE_HYP = KVM_PGTABLE_PROT_RW;

export function protToString(prot: number): string {
  const parts: string[] = [];
  if (prot & KVM_PGTABLE_PROT_R) parts.push('R');
  if (prot & KVM_PGTABLE_PROT_W) parts.push('W');
  if ((prot & KVM_PGTABLE_PROT_X) === KVM_PGTABLE_PROT_X) parts.push('X');
  else if (prot & KVM_PGTABLE_PROT_PX) parts.push('PX');
  else if (prot & KVM_PGTABLE_PROT_UX) parts.push('UX');
  if (prot & KVM_PGTABLE_PROT_DEVICE) parts.push('DEVICE');
  if (prot & KVM_PGTABLE_PROT_NORMAL_NC) parts.push('NORMAL_NC');
  for (let i = 0; i < 4; i++) if (prot & (KVM_PGTABLE_PROT_SW0 << i)) parts.push(`SW${i}`);
  return parts.length ? parts.join('|') : '0';
}

// ---------------------------------------------------------------------------------------------------------
// Output address <-> descriptor.

const TWO32 = 0x1_0000_0000;

/** Low-half mask of the OA bits held in place, for a page shift. */
function oaLoMask(pageShift: number): number {
  return (0xffff_ffff << pageShift) >>> 0;
}

/** kvm_phys_to_pte: the OA field of a descriptor, as halves; the result holds no other bits. */
export function kvm_phys_to_pte_lo(pa: number, pageShift: number, lpa2: boolean): number {
  let lo = (pa % TWO32) & oaLoMask(pageShift);
  if (pageShift === 16) {
    // 64K: OA[51:48] lives in bits 15:12.
    const top = Math.floor(pa / 2 ** 48) & 0xf;
    lo |= top << 12;
  } else if (lpa2) {
    const top = Math.floor(pa / 2 ** 50) & 0x3;
    lo |= top << 8;
  }
  return lo >>> 0;
}

export function kvm_phys_to_pte_hi(pa: number, pageShift: number, lpa2: boolean): number {
  const hi = Math.floor(pa / TWO32);
  // In-place OA reaches bit 47 (hi bit 15), or bit 49 (hi bit 17) with LPA2.
  return (hi & (lpa2 && pageShift !== 16 ? 0x3ffff : 0xffff)) >>> 0;
}

/** kvm_pte_to_phys. */
export function kvm_pte_to_phys(lo: number, hi: number, pageShift: number, lpa2: boolean): number {
  let pa: number;
  if (pageShift === 16) {
    pa = (hi & 0xffff) * TWO32 + ((lo & 0xffff0000) >>> 0);
    pa += ((lo >>> 12) & 0xf) * 2 ** 48;
  } else if (lpa2) {
    pa = (hi & 0x3ffff) * TWO32 + ((lo & oaLoMask(pageShift)) >>> 0);
    pa += ((lo >>> 8) & 0x3) * 2 ** 50;
  } else {
    pa = (hi & 0xffff) * TWO32 + ((lo & oaLoMask(pageShift)) >>> 0);
  }
  return pa;
}

/** The output-address field's bit range(s), for tables and decoders. */
export function oaFieldsFor(pageShift: number, lpa2: boolean): BitField[] {
  if (pageShift === 16) {
    return [
      { name: 'KVM_PTE_ADDR_MASK', msb: 47, lsb: 16, desc: 'output address OA[47:16]' },
      { name: 'KVM_PTE_ADDR_51_48', msb: 15, lsb: 12, desc: 'output address OA[51:48] (64K granule)' },
    ];
  }
  if (lpa2) {
    return [
      { name: 'KVM_PTE_ADDR_MASK_LPA2', msb: 49, lsb: pageShift, desc: `output address OA[49:${pageShift}]` },
      { name: 'KVM_PTE_ADDR_51_50_LPA2', msb: 9, lsb: 8, desc: 'output address OA[51:50] (LPA2)' },
    ];
  }
  return [{ name: 'KVM_PTE_ADDR_MASK', msb: 47, lsb: pageShift, desc: `output address OA[47:${pageShift}]` }];
}

export function memattrValues(fwb: boolean): Record<number, string> {
  return fwb
    ? {
        [MT_S2_FWB_NORMAL]: 'MT_S2_FWB_NORMAL (FWB: Normal Write-Back, stage-2 forces cacheability)',
        [MT_S2_FWB_NORMAL_NC]: 'MT_S2_FWB_NORMAL_NC (FWB: Normal Non-cacheable)',
        [MT_S2_FWB_DEVICE_nGnRE]: 'MT_S2_FWB_DEVICE_nGnRE (FWB: Device-nGnRE)',
        0: 'Device-nGnRnE',
      }
    : {
        [MT_S2_NORMAL]: 'MT_S2_NORMAL (Normal Inner/Outer Write-Back)',
        [MT_S2_NORMAL_NC]: 'MT_S2_NORMAL_NC (Normal Inner/Outer Non-cacheable)',
        [MT_S2_DEVICE_nGnRE]: 'MT_S2_DEVICE_nGnRE (Device-nGnRE)',
        0: 'Device-nGnRnE',
      };
}

export const XN_VALUES: Readonly<Record<number, string>> = {
  0: '00: EL1 and EL0 may execute',
  1: '01: PXN, EL0 may execute, EL1 may not',
  2: '10: XN, no execution',
  3: '11: UXN, EL1 may execute, EL0 may not',
};

/** Valid leaf (block or page) descriptor fields. */
export function s2LeafFields(pageShift: number, lpa2: boolean, fwb: boolean): BitField[] {
  const f: BitField[] = [
    { name: 'KVM_PTE_VALID', msb: 0, lsb: 0, desc: 'valid', values: { 0: 'invalid', 1: 'valid' } },
    { name: 'KVM_PTE_TYPE', msb: 1, lsb: 1, desc: 'descriptor type', values: { 0: 'block', 1: 'page (last level)' } },
    {
      name: 'KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR',
      msb: 5,
      lsb: 2,
      desc: fwb ? 'MemAttr[3:0] (FWB encoding)' : 'MemAttr[3:0]',
      values: memattrValues(fwb),
    },
    { name: 'KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R', msb: 6, lsb: 6, desc: 'S2AP[0]: read', values: { 0: 'no read', 1: 'read allowed' } },
    { name: 'KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W', msb: 7, lsb: 7, desc: 'S2AP[1]: write', values: { 0: 'no write', 1: 'write allowed' } },
  ];
  if (!lpa2) {
    f.push({
      name: 'KVM_PTE_LEAF_ATTR_LO_S2_SH',
      msb: 9,
      lsb: 8,
      desc: 'shareability',
      values: { 0: 'non-shareable', 1: 'reserved', 2: 'outer shareable', 3: 'inner shareable (KVM_PTE_LEAF_ATTR_LO_S2_SH_IS)' },
    });
  }
  f.push({ name: 'KVM_PTE_LEAF_ATTR_LO_S2_AF', msb: 10, lsb: 10, desc: 'access flag', values: { 0: 'old (AF clear)', 1: 'young (AF set)' } });
  f.push(...oaFieldsFor(pageShift, lpa2));
  f.push({ name: 'DBM', msb: 51, lsb: 51, desc: 'dirty bit modifier (unused by KVM stage 2)' });
  f.push({ name: 'CONT', msb: 52, lsb: 52, desc: 'contiguous hint (never set by KVM stage 2)' });
  f.push({ name: 'KVM_PTE_LEAF_ATTR_HI_S2_XN', msb: 54, lsb: 53, desc: 'execute never XN[1:0]', values: XN_VALUES });
  f.push({ name: 'KVM_PTE_LEAF_ATTR_HI_SW', msb: 58, lsb: 55, desc: 'software bits SW0..SW3 (pKVM page state in SW0/SW1)' });
  return f;
}

/** Table descriptor fields: KVM writes only phys | TYPE | VALID. */
export function s2TableFields(pageShift: number, lpa2: boolean): BitField[] {
  return [
    { name: 'KVM_PTE_VALID', msb: 0, lsb: 0, desc: 'valid', values: { 0: 'invalid', 1: 'valid' } },
    { name: 'KVM_PTE_TYPE', msb: 1, lsb: 1, desc: 'descriptor type', values: { 1: 'table' } },
    ...oaFieldsFor(pageShift, lpa2).map((f) => ({ ...f, desc: f.desc.replace('output address', 'next-level table address') })),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// VTCR_EL2 as kvm_get_vtcr builds it.

export const VTCR_EL2_FIELDS: readonly BitField[] = [
  { name: 'T0SZ', msb: 5, lsb: 0, desc: '64 - IPA bits' },
  { name: 'SL0', msb: 7, lsb: 6, desc: 'starting level (TGRAN_SL0_BASE - start level)' },
  { name: 'IRGN0', msb: 9, lsb: 8, desc: 'inner cacheability of walks', values: { 1: 'WBWA' } },
  { name: 'ORGN0', msb: 11, lsb: 10, desc: 'outer cacheability of walks', values: { 1: 'WBWA' } },
  { name: 'SH0', msb: 13, lsb: 12, desc: 'shareability of walks', values: { 3: 'inner shareable' } },
  { name: 'TG0', msb: 15, lsb: 14, desc: 'granule', values: { 0: '4K', 1: '64K', 2: '16K' } },
  { name: 'PS', msb: 18, lsb: 16, desc: 'physical address size (PARange)' },
  { name: 'VS', msb: 19, lsb: 19, desc: 'VMID size', values: { 0: '8-bit', 1: '16-bit' } },
  { name: 'HA', msb: 21, lsb: 21, desc: 'hardware access flag update' },
  { name: 'RES1', msb: 31, lsb: 31, desc: 'reserved, 1' },
  { name: 'DS', msb: 32, lsb: 32, desc: '52-bit descriptors (LPA2)' },
];

/** PARange encodings (ID_AA64MMFR0_EL1.PARange) by PA bits. */
const PARANGE: Record<number, number> = { 32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5, 52: 6 };

export interface VtcrOptions {
  /** Host PA bits (PARange). */
  paBits: number;
  vmid16?: boolean;
  /** CONFIG_ARM64_HW_AFDBM (and not an erratum CPU): KVM sets HA. */
  hwAfdbm?: boolean;
}

/** kvm_get_vtcr: returns {lo, hi}. */
export function kvm_get_vtcr(geo: Stage2Geometry, opts: VtcrOptions): { lo: number; hi: number } {
  const ps = PARANGE[opts.paBits];
  if (ps === undefined) throw new RangeError(`PA size ${opts.paBits} is not a PARange value`);
  let lo = 64 - geo.iaBits;
  lo |= geo.sl0 << 6;
  lo |= 1 << 8; // IRGN0 WBWA
  lo |= 1 << 10; // ORGN0 WBWA
  lo |= 3 << 12; // SH0 inner
  lo |= geo.granule.tg0 << 14;
  lo |= ps << 16;
  if (opts.vmid16) lo |= 1 << 19;
  if (opts.hwAfdbm) lo |= 1 << 21;
  lo |= 1 << 31;
  const hi = geo.lpa2 ? 1 : 0;
  return { lo: lo >>> 0, hi };
}
