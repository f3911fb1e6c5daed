/**
 * Design variant `owner_encoding` (seed thread 003, "KVM: arm64: Use page-table to track page ownership"):
 * how an invalid stage-2 descriptor carries pKVM ownership and the break-before-make lock marker.
 *
 * - `set_owner_2021`: the layout merged from that series and kept up to 6.16: the owner id sits in
 *   bits 9:2 (`KVM_INVALID_PTE_OWNER_MASK`) of an invalid PTE and the BBM marker is BIT(10)
 *   (`KVM_INVALID_PTE_LOCKED`). Owner 0 is the zero PTE, i.e. "owned by the table's owner".
 *   Review question (Will Deacon): why a 32-bit owner id? A 32-bit id would take half the descriptor;
 *   the merged field is 8 bits, so ids 0..255 fit, and kernels up to 6.16 cap it further at
 *   KVM_MAX_OWNER_ID = 1 (only the hypervisor is ever written). Nothing else fits: no VM handle, no gfn,
 *   so a page donated to a guest cannot be traced back to its guest mapping from the host stage-2.
 *   How the map walker tells an annotation from a mapping was also argued there (flag the valid bit in
 *   `attr`, an invalid `phys`, or a separate flag); the model does what the kernel ended up with: a
 *   separate `annotation` flag in `stage2_map_data`, with phys = KVM_PHYS_INVALID (pgtable.ts).
 * - `annotate_2026`: `kvm_pgtable_stage2_annotate`: a type in bits 63:60 (`KVM_INVALID_PTE_TYPE_MASK`;
 *   1 = LOCKED, 2 = host DONATION, 3 = guest POISONED) and a payload in bits 59:1. A host DONATION
 *   carries the owner in bits 3:1 and 56 bits of metadata in 59:4 (guest VM handle 15:0 and gfn 55:16 of
 *   that metadata).
 */
import type { BitField } from '../bits/fields';

export type OwnerEncoding = 'set_owner_2021' | 'annotate_2026';
export const OWNER_ENCODINGS: readonly OwnerEncoding[] = ['set_owner_2021', 'annotate_2026'];

export function parseOwnerEncoding(text: string): OwnerEncoding | undefined {
  return text === 'set_owner_2021' || text === 'annotate_2026' ? text : undefined;
}

// enum pkvm_component_id ([2026]); the ≤6.16 enum had FFA at 2 instead.
export const PKVM_ID_HOST = 0;
export const PKVM_ID_HYP = 1;
export const PKVM_ID_GUEST = 2;

export function ownerName(id: number): string {
  return id === PKVM_ID_HOST ? 'host' : id === PKVM_ID_HYP ? 'hyp' : id === PKVM_ID_GUEST ? 'guest' : `owner ${id}`;
}

// [≤6.16] layout.
export const KVM_INVALID_PTE_OWNER_MASK_LO = 0xff << 2;
export const KVM_INVALID_PTE_OWNER_SHIFT = 2;
export const KVM_INVALID_PTE_LOCKED_LO = 1 << 10;
/** Kernel cap in ≤6.16 (`KVM_MAX_OWNER_ID`). */
export const KVM_MAX_OWNER_ID = 1;
/** What the 8-bit field can hold at all. */
export const SET_OWNER_2021_FIELD_MAX = 0xff;

// [2026] layout.
export const KVM_INVALID_PTE_TYPE_SHIFT_HI = 28; // bits 63:60
export const KVM_INVALID_PTE_TYPE_LOCKED = 1;
export const KVM_HOST_INVALID_PTE_TYPE_DONATION = 2;
export const KVM_GUEST_INVALID_PTE_TYPE_POISONED = 3;
export const KVM_HOST_DONATION_PTE_OWNER_SHIFT = 1; // GENMASK(3,1)
export const KVM_HOST_DONATION_PTE_OWNER_MAX = 7;
export const KVM_HOST_DONATION_PTE_EXTRA_SHIFT = 4; // GENMASK(59,4)
export const KVM_HOST_PTE_OWNER_GUEST_HANDLE_BITS = 16; // metadata 15:0
export const KVM_HOST_PTE_OWNER_GUEST_GFN_BITS = 40; // metadata 55:16

export const INVALID_PTE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'none',
  [KVM_INVALID_PTE_TYPE_LOCKED]: 'KVM_INVALID_PTE_TYPE_LOCKED',
  [KVM_HOST_INVALID_PTE_TYPE_DONATION]: 'KVM_HOST_INVALID_PTE_TYPE_DONATION',
  [KVM_GUEST_INVALID_PTE_TYPE_POISONED]: 'KVM_GUEST_INVALID_PTE_TYPE_POISONED',
};

/** Who a host stage-2 annotation says owns a page. */
export interface OwnerInfo {
  owner: number;
  /** 2026 guest donations only. */
  handle?: number;
  gfn?: number;
}

export interface Pte {
  lo: number;
  hi: number;
}

/** The break-before-make marker. */
export function lockedMarker(enc: OwnerEncoding): Pte {
  return enc === 'set_owner_2021' ? { lo: KVM_INVALID_PTE_LOCKED_LO, hi: 0 } : { lo: 0, hi: (KVM_INVALID_PTE_TYPE_LOCKED << KVM_INVALID_PTE_TYPE_SHIFT_HI) >>> 0 };
}

export function isLocked(enc: OwnerEncoding, lo: number, hi: number): boolean {
  if (lo & 1) return false;
  if (enc === 'set_owner_2021') return (lo & KVM_INVALID_PTE_LOCKED_LO) !== 0;
  return hi >>> KVM_INVALID_PTE_TYPE_SHIFT_HI === KVM_INVALID_PTE_TYPE_LOCKED;
}

/** Invalid-PTE type (2026 layout), 0 for none. */
export function invalidPteType(lo: number, hi: number): number {
  return lo & 1 ? 0 : hi >>> KVM_INVALID_PTE_TYPE_SHIFT_HI;
}

/** Whether an owner id fits the encoding at all (independent of kernel caps). */
export function ownerIdFits(enc: OwnerEncoding, owner: number): boolean {
  if (!Number.isInteger(owner) || owner < 0) return false;
  return owner <= (enc === 'set_owner_2021' ? SET_OWNER_2021_FIELD_MAX : KVM_HOST_DONATION_PTE_OWNER_MAX);
}

/** host_stage2_encode_gfn_meta: metadata word (bits 55:0) as halves. */
export function host_stage2_encode_gfn_meta(handle: number, gfn: number): Pte {
  // metadata = handle | gfn << 16
  const lo = ((handle & 0xffff) | ((gfn % 0x10000) << 16)) >>> 0;
  const hi = Math.floor(gfn / 0x10000) >>> 0;
  return { lo, hi };
}

/**
 * The invalid host stage-2 descriptor recording `owner`. Returns undefined when the owner does not fit.
 * For set_owner_2021, owner 0 is the zero descriptor; the guest handle/gfn are dropped (no room).
 */
export function encodeOwner(enc: OwnerEncoding, o: OwnerInfo): Pte | undefined {
  if (!ownerIdFits(enc, o.owner)) return undefined;
  if (enc === 'set_owner_2021') return { lo: (o.owner << KVM_INVALID_PTE_OWNER_SHIFT) >>> 0, hi: 0 };
  if (o.owner === PKVM_ID_HOST) return { lo: 0, hi: 0 };
  let lo = o.owner << KVM_HOST_DONATION_PTE_OWNER_SHIFT;
  let hi = (KVM_HOST_INVALID_PTE_TYPE_DONATION << KVM_INVALID_PTE_TYPE_SHIFT_HI) >>> 0;
  if (o.handle !== undefined || o.gfn !== undefined) {
    const m = host_stage2_encode_gfn_meta(o.handle ?? 0, o.gfn ?? 0);
    // metadata << 4 into bits 59:4
    lo |= (m.lo << 4) >>> 0;
    hi |= ((m.hi << 4) | (m.lo >>> 28)) & 0x0fff_ffff;
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Owner recorded in an invalid host PTE, or undefined when it records none (valid, zero, locked, other type). */
export function decodeOwner(enc: OwnerEncoding, lo: number, hi: number): OwnerInfo | undefined {
  if (lo & 1) return undefined;
  if (enc === 'set_owner_2021') {
    const owner = (lo >>> KVM_INVALID_PTE_OWNER_SHIFT) & 0xff;
    return owner === 0 ? undefined : { owner };
  }
  if (hi >>> KVM_INVALID_PTE_TYPE_SHIFT_HI !== KVM_HOST_INVALID_PTE_TYPE_DONATION) return undefined;
  const owner = (lo >>> KVM_HOST_DONATION_PTE_OWNER_SHIFT) & 0x7;
  if (owner !== PKVM_ID_GUEST) return { owner };
  // metadata = bits 59:4
  const mLo = ((lo >>> 4) | (hi << 28)) >>> 0;
  const mHi = (hi >>> 4) & 0x00ff_ffff;
  const handle = mLo & 0xffff;
  const gfn = (mLo >>> 16) + mHi * 0x10000;
  return { owner, handle, gfn };
}

/** Field table for an invalid descriptor under an encoding. */
export function invalidFields(enc: OwnerEncoding, lo: number, hi: number): BitField[] {
  const valid: BitField = { name: 'KVM_PTE_VALID', msb: 0, lsb: 0, desc: 'valid', values: { 0: 'invalid: hardware ignores bits 63:1' } };
  if (enc === 'set_owner_2021') {
    return [
      valid,
      { name: 'KVM_INVALID_PTE_OWNER_MASK', msb: 9, lsb: 2, desc: 'owner id (0 = the page-table owner)', values: { 0: 'host (no annotation)', 1: 'PKVM_ID_HYP', 2: 'PKVM_ID_GUEST' } },
      { name: 'KVM_INVALID_PTE_LOCKED', msb: 10, lsb: 10, desc: 'break-before-make in progress', values: { 0: 'not locked', 1: 'locked' } },
    ];
  }
  const type = invalidPteType(lo, hi);
  const typeField: BitField = { name: 'KVM_INVALID_PTE_TYPE_MASK', msb: 63, lsb: 60, desc: 'invalid-PTE type', values: INVALID_PTE_TYPE_NAMES };
  if (type === KVM_HOST_INVALID_PTE_TYPE_DONATION) {
    const f: BitField[] = [
      valid,
      { name: 'KVM_HOST_DONATION_PTE_OWNER_MASK', msb: 3, lsb: 1, desc: 'owner id', values: { 1: 'PKVM_ID_HYP', 2: 'PKVM_ID_GUEST' } },
    ];
    if (((lo >>> 1) & 7) === PKVM_ID_GUEST) {
      f.push({ name: 'KVM_HOST_PTE_OWNER_GUEST_HANDLE_MASK', msb: 19, lsb: 4, desc: 'guest VM handle (metadata 15:0)' });
      f.push({ name: 'KVM_HOST_PTE_OWNER_GUEST_GFN_MASK', msb: 59, lsb: 20, desc: 'guest frame number (metadata 55:16)' });
    } else {
      f.push({ name: 'KVM_HOST_DONATION_PTE_EXTRA_MASK', msb: 59, lsb: 4, desc: 'donation metadata' });
    }
    f.push(typeField);
    return f;
  }
  return [valid, { name: 'KVM_INVALID_PTE_ANNOT_MASK', msb: 59, lsb: 1, desc: 'annotation payload' }, typeField];
}

/** What differs between the two encodings for one owner: both descriptors and a list of sentences. */
export interface OwnerEncodingDiff {
  owner: OwnerInfo;
  set_owner_2021: Pte | undefined;
  annotate_2026: Pte | undefined;
  differences: string[];
}

function hex64(p: Pte | undefined): string {
  if (!p) return '(does not fit)';
  return '0x' + p.hi.toString(16).padStart(8, '0') + p.lo.toString(16).padStart(8, '0');
}

export function diffOwnerEncodings(o: OwnerInfo): OwnerEncodingDiff {
  const a = encodeOwner('set_owner_2021', o);
  const b = encodeOwner('annotate_2026', o);
  const d: string[] = [];
  if (!a !== !b) d.push(`owner ${o.owner} fits ${a ? 'set_owner_2021 only' : 'annotate_2026 only'} (8-bit owner field vs 3-bit owner field)`);
  if (a && b && (a.lo !== b.lo || a.hi !== b.hi)) d.push(`descriptor ${hex64(a)} (set_owner_2021) vs ${hex64(b)} (annotate_2026)`);
  if (o.owner !== PKVM_ID_HOST) {
    d.push('set_owner_2021 has no type field: any non-zero invalid PTE is an owner; annotate_2026 tags it KVM_HOST_INVALID_PTE_TYPE_DONATION in bits 63:60');
  } else {
    d.push('host ownership: set_owner_2021 writes the zero PTE (refaulted lazily); annotate_2026 re-establishes the RWX idmap');
  }
  if (o.owner === PKVM_ID_GUEST && (o.handle !== undefined || o.gfn !== undefined)) {
    d.push('guest handle and gfn are recorded only by annotate_2026 (set_owner_2021 has no room), so only it can force-reclaim from the host side');
  }
  d.push('BBM lock marker: BIT(10) (set_owner_2021) vs type 1 in bits 63:60 (annotate_2026)');
  if (o.owner !== PKVM_ID_HOST) d.push('a host access to the page: BUG() in the set_owner era, an abort re-injected into the host with annotate_2026');
  return { owner: o, set_owner_2021: a, annotate_2026: b, differences: d };
}
