/**
 * SPTE kind of a value seen in a capture, with the names `kvm-mmu decode spte` uses:
 * `leaf`, `nonleaf`, `frozen`, `mmio`, `nonpresent` — decided by the engine's predicates
 * (src/engine/x86/spte.ts), so a replay and the model classify a value the same way.
 *
 * A capture does not say which SPTE format (EPT or NPT/legacy) the host used, so MMIO is recognised with
 * either vendor's MMIO value (EPT: RWX|SVE masked equals 0b110; NPT/legacy with MAXPHYADDR < 52: bit 51 | P).
 * Frozen accepts both generations (`80000000000005a0` and the pre-6.11 REMOVED_SPTE `5a0`).
 */
import {
  eptMasks,
  is_frozen_spte,
  is_last_spte,
  is_mmio_spte,
  is_shadow_present_pte,
  isLegacyRemovedSpte,
  nptMasks,
  type SpteKind,
} from '../engine/x86/spte';

export type { SpteKind };

export const KIND_NONPRESENT = 0;
export const KIND_LEAF = 1;
export const KIND_NONLEAF = 2;
export const KIND_FROZEN = 3;
export const KIND_MMIO = 4;

export const KIND_NAMES: readonly SpteKind[] = ['nonpresent', 'leaf', 'nonleaf', 'frozen', 'mmio'];

// Any MAXPHYADDR below 52 gives the NPT/legacy MMIO value its bit 51; the EPT value does not depend on it.
const EPT = eptMasks({ maxphyaddr: 46 });
const NPT = nptMasks({ maxphyaddr: 46 });

// The two MMIO tests of is_mmio_spte(EPT | NPT, lo, hi) with their masks and values read once: the replay
// classifies every old and new SPTE, and the generic predicate loads four objects per call.
const E_MASK_LO = EPT.shadow_mmio_mask.lo;
const E_MASK_HI = EPT.shadow_mmio_mask.hi;
const E_VAL_LO = EPT.shadow_mmio_value.lo;
const E_VAL_HI = EPT.shadow_mmio_value.hi;
const E_ON = EPT.enable_mmio_caching;
const N_MASK_LO = NPT.shadow_mmio_mask.lo;
const N_MASK_HI = NPT.shadow_mmio_mask.hi;
const N_VAL_LO = NPT.shadow_mmio_value.lo;
const N_VAL_HI = NPT.shadow_mmio_value.hi;
const N_ON = NPT.enable_mmio_caching;

function isMmioEither(lo: number, hi: number): boolean {
  return (
    (E_ON && ((lo & E_MASK_LO) >>> 0) === E_VAL_LO && ((hi & E_MASK_HI) >>> 0) === E_VAL_HI) ||
    (N_ON && ((lo & N_MASK_LO) >>> 0) === N_VAL_LO && ((hi & N_MASK_HI) >>> 0) === N_VAL_HI)
  );
}

/** Numeric kind (KIND_*) of halves at `level`; allocation-free. */
export function spteKindCode(lo: number, hi: number, level: number): number {
  if (is_frozen_spte(lo, hi) || isLegacyRemovedSpte(lo, hi)) return KIND_FROZEN;
  if (is_shadow_present_pte(lo, hi)) return is_last_spte(lo, hi, level) ? KIND_LEAF : KIND_NONLEAF;
  if (isMmioEither(lo, hi)) return KIND_MMIO;
  return KIND_NONPRESENT;
}

/** The same through the engine's predicates as they are called elsewhere (tests compare the two). */
export function spteKindCodeReference(lo: number, hi: number, level: number): number {
  if (is_frozen_spte(lo, hi) || isLegacyRemovedSpte(lo, hi)) return KIND_FROZEN;
  if (is_shadow_present_pte(lo, hi)) return is_last_spte(lo, hi, level) ? KIND_LEAF : KIND_NONLEAF;
  if (is_mmio_spte(EPT, lo, hi) || is_mmio_spte(NPT, lo, hi)) return KIND_MMIO;
  return KIND_NONPRESENT;
}

export function spteKind(lo: number, hi: number, level: number): SpteKind {
  return KIND_NAMES[spteKindCode(lo, hi, level)]!;
}

/** Present for the MMU: a leaf or a page-table pointer. */
export function isPresentKind(k: number): boolean {
  return k === KIND_LEAF || k === KIND_NONLEAF;
}
