// Re-exports for the guest_pte tests plus a BigInt-based decode helper (tests only).
import { decodeFields, type BitField } from '../../../../src/engine/bits/fields';
export * from '../../../../src/engine/x86/guest_pte';

export function decodeGuestEntryFieldsForTest(v: bigint, table: readonly BitField[]): Record<string, number> {
  const lo = Number(v & 0xffff_ffffn);
  const hi = Number(v >> 32n);
  const out: Record<string, number> = {};
  for (const f of decodeFields(lo, hi, table)) out[f.name] = f.value;
  return out;
}
