/**
 * Decode one stage-2 descriptor: what kind it is at a given level, its fields (from the BitField tables in
 * pgtable_desc.ts / variants.ts), its output address, and for invalid entries the owner annotation under
 * the chosen `owner_encoding` variant. Used by the CLI (`decode s2pte`), DAP variables and views.
 */
import { type DecodedField, decodeFields } from '../bits/fields';
import { type Granule, KVM_PGTABLE_LAST_LEVEL, granuleInfo, kvm_pte_to_phys, s2LeafFields, s2TableFields } from './pgtable_desc';
import {
  type OwnerEncoding,
  INVALID_PTE_TYPE_NAMES,
  KVM_GUEST_INVALID_PTE_TYPE_POISONED,
  KVM_HOST_INVALID_PTE_TYPE_DONATION,
  decodeOwner,
  invalidFields,
  invalidPteType,
  isLocked,
  ownerName,
} from './variants';

export type S2DescriptorKind = 'invalid' | 'table' | 'block' | 'page' | 'reserved' | 'owner-annotated' | 'locked' | 'poisoned' | 'annotated';

export interface S2DecodeOptions {
  level: number;
  granule: Granule;
  lpa2?: boolean;
  fwb?: boolean;
  encoding: OwnerEncoding;
}

export interface S2Decoded {
  kind: S2DescriptorKind;
  level: number;
  granule: Granule;
  encoding: OwnerEncoding;
  fields: DecodedField[];
  /** Hex text, for tables and valid leaves. */
  outputAddress?: string;
  /** Bytes a leaf at this level maps. */
  mapSize?: number;
  owner?: { id: number; name: string; handle?: number; gfn?: string };
  /** 2026 invalid-PTE type name. */
  annotationType?: string;
  note?: string;
}

/** Levels where the architecture allows block descriptors for a granule. */
export function archBlockLevels(g: Granule, lpa2: boolean): number[] {
  if (g === '4k') return lpa2 ? [0, 1, 2] : [1, 2];
  if (g === '16k') return lpa2 ? [1, 2] : [2];
  return [1, 2]; // a 64K level-1 block (4TB) needs FEAT_LPA
}

export function validLevels(g: Granule, lpa2: boolean): [number, number] {
  return [g === '4k' && lpa2 ? -1 : g === '64k' ? 1 : 0, KVM_PGTABLE_LAST_LEVEL];
}

export function decodeS2Descriptor(lo: number, hi: number, o: S2DecodeOptions): S2Decoded {
  const gi = granuleInfo(o.granule);
  const lpa2 = o.lpa2 ?? false;
  const base = { level: o.level, granule: o.granule, encoding: o.encoding };
  lo >>>= 0;
  hi >>>= 0;
  if (!(lo & 1)) {
    const fields = decodeFields(lo, hi, invalidFields(o.encoding, lo, hi));
    if (lo === 0 && hi === 0) return { ...base, kind: 'invalid', fields, note: 'zero: not mapped, no annotation (uncounted)' };
    if (isLocked(o.encoding, lo, hi)) return { ...base, kind: 'locked', fields, note: 'break-before-make in progress (KVM_INVALID_PTE_LOCKED)' };
    const own = decodeOwner(o.encoding, lo, hi);
    if (own) {
      const owner: S2Decoded['owner'] = { id: own.owner, name: ownerName(own.owner) };
      if (own.handle !== undefined) owner.handle = own.handle;
      if (own.gfn !== undefined) owner.gfn = '0x' + own.gfn.toString(16);
      const r: S2Decoded = { ...base, kind: 'owner-annotated', fields, owner };
      if (o.encoding === 'annotate_2026') r.annotationType = INVALID_PTE_TYPE_NAMES[KVM_HOST_INVALID_PTE_TYPE_DONATION]!;
      return r;
    }
    if (o.encoding === 'annotate_2026') {
      const t = invalidPteType(lo, hi);
      const tn = INVALID_PTE_TYPE_NAMES[t] ?? `type ${t}`;
      if (t === KVM_GUEST_INVALID_PTE_TYPE_POISONED) return { ...base, kind: 'poisoned', fields, annotationType: tn, note: 'guest page taken back by force (PKVM_POISON)' };
      return { ...base, kind: 'annotated', fields, annotationType: tn };
    }
    return { ...base, kind: 'annotated', fields, note: 'invalid, non-zero, no owner bits (counted)' };
  }
  const isTableBit = (lo & 2) !== 0;
  const oa = '0x' + kvm_pte_to_phys(lo, hi, gi.pageShift, lpa2).toString(16);
  const size = Math.pow(2, (gi.pageShift - 3) * (4 - o.level) + 3);
  if (o.level === KVM_PGTABLE_LAST_LEVEL) {
    const fields = decodeFields(lo, hi, s2LeafFields(gi.pageShift, lpa2, o.fwb ?? false));
    if (!isTableBit) return { ...base, kind: 'reserved', fields, note: 'type 0 at the last level: reserved, translation fault' };
    return { ...base, kind: 'page', fields, outputAddress: oa, mapSize: size };
  }
  if (isTableBit) return { ...base, kind: 'table', fields: decodeFields(lo, hi, s2TableFields(gi.pageShift, lpa2)), outputAddress: oa };
  const fields = decodeFields(lo, hi, s2LeafFields(gi.pageShift, lpa2, o.fwb ?? false));
  if (!archBlockLevels(o.granule, lpa2).includes(o.level)) {
    return { ...base, kind: 'reserved', fields, note: `no block descriptors at level ${o.level} with ${o.granule} pages` };
  }
  return { ...base, kind: 'block', fields, outputAddress: oa, mapSize: size };
}
