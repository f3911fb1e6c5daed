/**
 * Describe an SPTE value for people (CLI `decode spte`, DAP variables, views): its kind under a mask
 * set, the predicates KVM would apply, and every field of the matching bit-field table. Not a hot path.
 */
import { decodeFields, type BitField, type DecodedField } from '../bits/fields';
import { hex0x } from '../bits/u64';
import {
  PT_PAGE_SIZE_MASK,
  classifySpte,
  get_mmio_spte_access,
  get_mmio_spte_generation,
  get_mmio_spte_gfn,
  is_access_track_spte,
  is_accessed_spte,
  is_executable_pte,
  is_host_writable_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  isLegacyRemovedSpte,
  kvm_mmu_set_spte_flags,
  spte_ad_type,
  spte_to_pfn,
  type SpteKind,
  type SpteMasks,
} from './spte';
import { EPT_MMIO_SPTE_FIELDS, EPT_SPTE_FIELDS, NPT_MMIO_SPTE_FIELDS, NPT_SPTE_FIELDS } from './spte_fields';

export interface SpteLevelGuess {
  level: number;
  reason: string;
}

/**
 * Guess the level of the table holding an SPTE from bits only leaves carry (make_nonleaf_spte never
 * sets D, host-/MMU-writable, EPT memtype/IPAT or access-track saved bits). PS means a huge leaf,
 * assumed 2M. Without any hint the SPTE reads as non-leaf, level unknown (2 assumed).
 */
export function guessSpteLevel(m: SpteMasks, lo: number, hi: number): SpteLevelGuess {
  if (!is_shadow_present_pte(lo, hi)) return { level: 1, reason: 'not shadow-present (bit 11 clear): the level does not change the reading' };
  if ((lo & PT_PAGE_SIZE_MASK) !== 0) return { level: 2, reason: 'PS set: huge leaf, assumed 2M (pass the level for 1G)' };
  const hints: string[] = [];
  if ((lo & m.shadow_dirty_mask.lo) !== 0 || (hi & m.shadow_dirty_mask.hi) !== 0) hints.push('D set');
  if (is_host_writable_spte(m, lo, hi) || is_mmu_writable_spte(m, lo, hi)) hints.push('host/MMU-writable bits');
  if (m.is_ept && (lo & 0x78) !== 0) hints.push('memtype/IPAT bits');
  if (m.is_ept && (hi & ((1 << 22) | (1 << 24))) !== 0) hints.push('access-track saved bits');
  if (hints.length > 0) return { level: 1, reason: `4K leaf (${hints.join(', ')}; non-leaf SPTEs never carry them)` };
  return { level: 2, reason: 'no leaf-only bits: non-leaf, table level unknown (assumed 2)' };
}

const AD_TYPE_NAMES = ['SPTE_TDP_AD_ENABLED', 'SPTE_TDP_AD_DISABLED', 'SPTE_TDP_AD_WRPROT_ONLY', 'invalid'] as const;

export interface SpteDescription {
  kind: SpteKind;
  /** Present, level > 1 and PS. */
  large: boolean;
  /** is_writable_pte of a shadow-present SPTE (false otherwise). */
  writable: boolean;
  /** is_executable_pte of a shadow-present SPTE (false otherwise). */
  executable: boolean;
  /** spte_to_pfn of the raw value, hex. */
  pfn: string;
  /** The `rwxu` group kvm_mmu_set_spte would print. */
  traceFlags: string;
  /** Present SPTEs only. */
  hostWritable?: boolean;
  mmuWritable?: boolean;
  accessed?: boolean;
  dirty?: boolean;
  adType?: string;
  accessTracked?: boolean;
  /** MMIO SPTEs only. */
  mmio?: { gfn: string; generation: string; access: number };
  /** Frozen SPTEs only: which generation of the marker. */
  frozenAs?: 'FROZEN_SPTE' | 'REMOVED_SPTE (pre-6.11)';
  fields: DecodedField[];
}

/** The bit-field table for an SPTE of `kind` under `m`. */
export function spteFieldTable(m: SpteMasks, kind: SpteKind): readonly BitField[] {
  if (kind === 'mmio') return m.is_ept ? EPT_MMIO_SPTE_FIELDS : NPT_MMIO_SPTE_FIELDS;
  return m.is_ept ? EPT_SPTE_FIELDS : NPT_SPTE_FIELDS;
}

export function describeSpte(m: SpteMasks, lo: number, hi: number, level: number): SpteDescription {
  const kind = classifySpte(m, lo, hi, level);
  const present = kind === 'leaf' || kind === 'nonleaf';
  const d: SpteDescription = {
    kind,
    large: present && level > 1 && (lo & PT_PAGE_SIZE_MASK) !== 0,
    writable: present && is_writable_pte(lo, hi),
    executable: present && is_executable_pte(m, lo, hi),
    pfn: '0x' + spte_to_pfn(m, lo, hi).toString(16),
    traceFlags: kvm_mmu_set_spte_flags(m, lo, hi),
    fields: decodeFields(lo, hi, spteFieldTable(m, kind)),
  };
  if (present) {
    d.hostWritable = is_host_writable_spte(m, lo, hi);
    d.mmuWritable = is_mmu_writable_spte(m, lo, hi);
    d.accessed = is_accessed_spte(m, lo, hi);
    d.dirty = (lo & m.shadow_dirty_mask.lo) !== 0 || (hi & m.shadow_dirty_mask.hi) !== 0;
    d.adType = AD_TYPE_NAMES[spte_ad_type(lo, hi)];
    d.accessTracked = is_access_track_spte(m, lo, hi);
  }
  if (kind === 'mmio') {
    d.mmio = {
      gfn: '0x' + get_mmio_spte_gfn(m, lo, hi).toString(16),
      generation: '0x' + get_mmio_spte_generation(lo, hi).toString(16),
      access: get_mmio_spte_access(m, lo, hi),
    };
  }
  if (kind === 'frozen') d.frozenAs = isLegacyRemovedSpte(lo, hi) ? 'REMOVED_SPTE (pre-6.11)' : 'FROZEN_SPTE';
  return d;
}

/** The mask set in words, for "assumptions" lines. */
export function describeMasks(m: SpteMasks): Record<string, string | number | boolean> {
  return {
    adBits: m.kvm_ad_enabled,
    maxphyaddr: m.maxphyaddr,
    x86PhysBits: m.x86_phys_bits,
    presentMask: hex0x(m.shadow_present_mask.lo, m.shadow_present_mask.hi),
    meMask: hex0x(m.shadow_me_mask.lo, m.shadow_me_mask.hi),
    mmioCaching: m.enable_mmio_caching,
    mmioValue: hex0x(m.shadow_mmio_value.lo, m.shadow_mmio_value.hi),
    mmioMask: hex0x(m.shadow_mmio_mask.lo, m.shadow_mmio_mask.hi),
    baseAddrMask: hex0x(m.spte_base_addr_mask.lo, m.spte_base_addr_mask.hi),
  };
}
