/**
 * SPTE kind of a value seen in a capture, with the names `kvm-mmu decode spte` uses:
 * `leaf`, `nonleaf`, `frozen`, `mmio`, `nonpresent`.
 *
 * A capture does not say which SPTE format (EPT or NPT/legacy) or which MMIO masks the host used, so this
 * classifier is deliberately format-agnostic (kvm-x86-mmu.md 3.1-3.3):
 * - frozen: exactly FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5a0 (bit 63 | 0x5a0), or the pre-6.11
 *   REMOVED_SPTE 0x5a0; neither has bit 11 set, so both are non-present on every kernel;
 * - leaf / nonleaf: bit 11 (SPTE_MMU_PRESENT_MASK) set; leaf when level is 1 or bit 7 (PS) is set;
 * - mmio: bit 11 clear and either the EPT MMIO value (RWX|SVE masked equals 0b110, the EPT-misconfig WX value)
 *   or the NPT/legacy value (bit 51 and bit 0 set, used when MAXPHYADDR < 52);
 * - nonpresent: anything else (0, SHADOW_NONPRESENT_VALUE, access-tracked values without bit 11, ...).
 */

export type SpteKind = 'leaf' | 'nonleaf' | 'frozen' | 'mmio' | 'nonpresent';

export const KIND_NONPRESENT = 0;
export const KIND_LEAF = 1;
export const KIND_NONLEAF = 2;
export const KIND_FROZEN = 3;
export const KIND_MMIO = 4;

export const KIND_NAMES: readonly SpteKind[] = ['nonpresent', 'leaf', 'nonleaf', 'frozen', 'mmio'];

/** Numeric kind (KIND_*) of halves at `level`; allocation-free. */
export function spteKindCode(lo: number, hi: number, level: number): number {
  lo >>>= 0;
  hi >>>= 0;
  if (lo === 0x5a0 && (hi === 0 || hi === 0x8000_0000)) return KIND_FROZEN;
  if (lo & 0x800) return level === 1 || lo & 0x80 ? KIND_LEAF : KIND_NONLEAF;
  if ((lo & 7) === 6 && hi >>> 31 === 0) return KIND_MMIO;
  if (lo & 1 && hi & (1 << (51 - 32))) return KIND_MMIO;
  return KIND_NONPRESENT;
}

export function spteKind(lo: number, hi: number, level: number): SpteKind {
  return KIND_NAMES[spteKindCode(lo, hi, level)]!;
}

/** Present for the MMU: a leaf or a page-table pointer. */
export function isPresentKind(k: number): boolean {
  return k === KIND_LEAF || k === KIND_NONLEAF;
}
