/**
 * Messages between the Bit Decoder panel and the extension. Plain JSON only (64-bit values travel as hex
 * strings). Both sides validate what they receive with the functions here; this file has no imports, so
 * the webview bundle stays free of engine code.
 */

export const DECODE_KINDS = ['ept-spte', 'npt-spte', 'guest-pte', 'ept-entry', 'role', 'cpu-role', 'pferr', 's2-desc'] as const;
export type DecodeKind = (typeof DECODE_KINDS)[number];

export const KIND_LABELS: Readonly<Record<DecodeKind, string>> = {
  'ept-spte': 'EPT SPTE',
  'npt-spte': 'NPT SPTE',
  'guest-pte': 'guest PTE (64-bit paging)',
  'ept-entry': 'EPT entry (guest EPT / L1 EPT12)',
  role: 'kvm_mmu_page_role word',
  'cpu-role': 'kvm_cpu_role (base | ext << 32)',
  pferr: 'PFERR error code',
  's2-desc': 'stage-2 descriptor (arm64, 4K granule)',
};

export interface DecodeRequest {
  kind: DecodeKind;
  /** `0x`-prefixed hex, at most 16 digits. */
  value: string;
  /** Table level for kinds that depend on it; 0 = infer (SPTEs) or the kind's default. */
  level: number;
}

export interface DecodedFieldView {
  name: string;
  msb: number;
  lsb: number;
  bits: string;
  value: number;
  hex: string;
  meaning: string;
  desc: string;
}

export interface DecodeResult extends DecodeRequest {
  /** 64 or 32: how many bits the format has. */
  width: number;
  /** Levels the kind accepts (empty: no level selector). */
  levels: number[];
  /** One-line classification (kind, level, pfn, ...). */
  headline: string;
  /** Further facts, one per line. */
  facts: string[];
  fields: DecodedFieldView[];
}

export type ToPanel =
  | { type: 'decoded'; result: DecodeResult }
  | { type: 'error'; message: string }
  /** Flip one bit as a click would (keyboard commands, tests). */
  | { type: 'toggleBit'; bit: number };

export type FromPanel =
  | { type: 'ready'; state?: DecodeRequest }
  | { type: 'decode'; request: DecodeRequest }
  | { type: 'copy'; text: string }
  /** What the panel drew for a snapshot: lets the extension (and tests) know the grid is up. */
  | { type: 'rendered'; value: string; bits: number; fields: number };

const HEX = /^0x[0-9a-f]{1,16}$/;

export function isDecodeKind(k: unknown): k is DecodeKind {
  return typeof k === 'string' && (DECODE_KINDS as readonly string[]).includes(k);
}

export function parseDecodeRequest(r: unknown): DecodeRequest | undefined {
  if (!r || typeof r !== 'object') return undefined;
  const o = r as Record<string, unknown>;
  if (!isDecodeKind(o.kind)) return undefined;
  if (typeof o.value !== 'string' || !HEX.test(o.value)) return undefined;
  const level = typeof o.level === 'number' && Number.isInteger(o.level) && o.level >= -1 && o.level <= 5 ? o.level : 0;
  return { kind: o.kind, value: o.value, level };
}

export function parseFromPanel(m: unknown): FromPanel | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'ready') {
    const st = o.state === undefined ? undefined : parseDecodeRequest(o.state);
    return st ? { type: 'ready', state: st } : { type: 'ready' };
  }
  if (o.type === 'decode') {
    const request = parseDecodeRequest(o.request);
    return request ? { type: 'decode', request } : undefined;
  }
  if (o.type === 'copy' && typeof o.text === 'string' && o.text.length <= 4096) return { type: 'copy', text: o.text };
  if (o.type === 'rendered' && typeof o.value === 'string' && HEX.test(o.value) && typeof o.bits === 'number' && typeof o.fields === 'number') {
    return { type: 'rendered', value: o.value, bits: o.bits, fields: o.fields };
  }
  return undefined;
}

function isField(f: unknown): f is DecodedFieldView {
  if (!f || typeof f !== 'object') return false;
  const o = f as Record<string, unknown>;
  return (
    typeof o.name === 'string' && typeof o.msb === 'number' && typeof o.lsb === 'number' && typeof o.bits === 'string' &&
    typeof o.value === 'number' && typeof o.hex === 'string' && typeof o.meaning === 'string' && typeof o.desc === 'string' &&
    o.lsb >= 0 && o.msb >= o.lsb && o.msb < 64
  );
}

export function parseToPanel(m: unknown): ToPanel | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'error' && typeof o.message === 'string') return { type: 'error', message: o.message };
  if (o.type === 'toggleBit' && typeof o.bit === 'number' && Number.isInteger(o.bit) && o.bit >= 0 && o.bit < 64) return { type: 'toggleBit', bit: o.bit };
  if (o.type !== 'decoded' || !o.result || typeof o.result !== 'object') return undefined;
  const r = o.result as Record<string, unknown>;
  const req = parseDecodeRequest(r);
  if (!req) return undefined;
  if ((r.width !== 32 && r.width !== 64) || typeof r.headline !== 'string') return undefined;
  if (!Array.isArray(r.facts) || !r.facts.every((x) => typeof x === 'string')) return undefined;
  if (!Array.isArray(r.levels) || !r.levels.every((x) => typeof x === 'number')) return undefined;
  if (!Array.isArray(r.fields) || !r.fields.every(isField)) return undefined;
  return {
    type: 'decoded',
    result: { ...req, width: r.width, headline: r.headline, facts: r.facts as string[], levels: r.levels as number[], fields: r.fields as DecodedFieldView[] },
  };
}

/** Persisted panel state (webview setState and the serializer). */
export interface DecoderState {
  kind: DecodeKind;
  value: string;
  level: number;
}

export function parseDecoderState(s: unknown): DecoderState | undefined {
  const r = parseDecodeRequest(s);
  return r ? { kind: r.kind, value: r.value, level: r.level } : undefined;
}

/** Normalise user text (`0x`, `_`, spaces) to `0x` + lower-case hex; undefined if it is not a u64. */
export function normaliseHex(text: string): string | undefined {
  let s = text.trim().toLowerCase().replace(/[_\s]/g, '');
  if (s.startsWith('0x')) s = s.slice(2);
  if (!/^[0-9a-f]+$/.test(s)) return undefined;
  s = s.replace(/^0+(?=.)/, '');
  if (s.length > 16) return undefined;
  return '0x' + s;
}

/** Flip bit `bit` of a `0x` hex value (no BigInt: the webview may not need it, and JSON cannot carry it). */
export function toggleBit(value: string, bit: number): string {
  const digits = value.slice(2).padStart(16, '0').split('');
  const pos = 15 - Math.floor(bit / 4);
  const d = parseInt(digits[pos], 16) ^ (1 << (bit % 4));
  digits[pos] = d.toString(16);
  return '0x' + (digits.join('').replace(/^0+(?=.)/, ''));
}

export function bitOf(value: string, bit: number): 0 | 1 {
  const digits = value.slice(2).padStart(16, '0');
  const d = parseInt(digits[15 - Math.floor(bit / 4)], 16);
  return ((d >> (bit % 4)) & 1) as 0 | 1;
}
