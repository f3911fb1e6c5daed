/**
 * Bit-field tables: one description of a register or entry format, shared by the decoders, the CLI's
 * `decode` verb, DAP variables and the bit-decoder panel, so that every view names bits identically.
 */
import { getField } from './u64';

export interface BitField {
  /** The kernel's or the manual's name for the field. */
  name: string;
  msb: number;
  lsb: number;
  /** What the field means, in one line. */
  desc: string;
  /** Names of particular values (e.g. EPT memory types), shown as the field's meaning. */
  values?: Readonly<Record<number, string>>;
}

export interface DecodedField {
  name: string;
  msb: number;
  lsb: number;
  /** `[msb:lsb]` or `[n]`. */
  bits: string;
  value: number;
  /** Hex text of the value, for wide fields. */
  hex: string;
  meaning: string;
}

export function bitRange(msb: number, lsb: number): string {
  return msb === lsb ? `[${msb}]` : `[${msb}:${lsb}]`;
}

export function decodeFields(lo: number, hi: number, table: readonly BitField[]): DecodedField[] {
  return table.map((f) => {
    const value = getField(lo, hi, f.msb, f.lsb);
    const named = f.values?.[value];
    return {
      name: f.name,
      msb: f.msb,
      lsb: f.lsb,
      bits: bitRange(f.msb, f.lsb),
      value,
      hex: '0x' + value.toString(16),
      meaning: named ?? f.desc,
    };
  });
}
