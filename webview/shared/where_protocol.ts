/**
 * Messages of the "Where is GFN X?" panel. JSON only; both sides validate with the functions here.
 */
import { isDecodeKind, type DecodeRequest } from './decoder_protocol';

export interface WhereRowView {
  key: string;
  value: string;
  decode?: DecodeRequest;
}

export interface WhereSectionView {
  title: string;
  rows: WhereRowView[];
  note?: string;
}

export interface WhereAnswer {
  gfn: string;
  gpa: string;
  sections: WhereSectionView[];
  /** Where the session was when this was read (statement text), for the header. */
  at?: string;
}

export type ToWhere =
  | { type: 'answer'; answer: WhereAnswer }
  | { type: 'error'; gfn?: string; message: string };

export type FromWhere =
  | { type: 'ready'; gfn?: string }
  | { type: 'lookup'; text: string }
  | { type: 'decode'; request: DecodeRequest };

const HEXV = /^0x[0-9a-f]{1,16}$/;

function str(v: unknown, max = 4096): v is string {
  return typeof v === 'string' && v.length <= max;
}

function parseDecode(d: unknown): DecodeRequest | undefined {
  if (!d || typeof d !== 'object') return undefined;
  const o = d as Record<string, unknown>;
  if (!isDecodeKind(o.kind) || !str(o.value) || !HEXV.test(o.value) || typeof o.level !== 'number') return undefined;
  return { kind: o.kind, value: o.value, level: o.level };
}

export function parseFromWhere(m: unknown): FromWhere | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'ready') return str(o.gfn, 40) && HEXV.test(o.gfn) ? { type: 'ready', gfn: o.gfn } : { type: 'ready' };
  if (o.type === 'lookup' && str(o.text, 100)) return { type: 'lookup', text: o.text };
  if (o.type === 'decode') {
    const request = parseDecode(o.request);
    return request ? { type: 'decode', request } : undefined;
  }
  return undefined;
}

export function parseToWhere(m: unknown): ToWhere | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  if (o.type === 'error' && str(o.message)) return { type: 'error', message: o.message, gfn: str(o.gfn, 40) ? o.gfn : undefined };
  if (o.type !== 'answer' || !o.answer || typeof o.answer !== 'object') return undefined;
  const a = o.answer as Record<string, unknown>;
  if (!str(a.gfn, 40) || !str(a.gpa, 40) || !Array.isArray(a.sections)) return undefined;
  const sections: WhereSectionView[] = [];
  for (const s of a.sections) {
    if (!s || typeof s !== 'object') return undefined;
    const so = s as Record<string, unknown>;
    if (!str(so.title) || !Array.isArray(so.rows)) return undefined;
    const rows: WhereRowView[] = [];
    for (const r of so.rows) {
      if (!r || typeof r !== 'object') return undefined;
      const ro = r as Record<string, unknown>;
      if (!str(ro.key) || !str(ro.value)) return undefined;
      const decode = ro.decode === undefined ? undefined : parseDecode(ro.decode);
      rows.push(decode ? { key: ro.key, value: ro.value, decode } : { key: ro.key, value: ro.value });
    }
    sections.push(str(so.note) ? { title: so.title, rows, note: so.note } : { title: so.title, rows });
  }
  return { type: 'answer', answer: { gfn: a.gfn, gpa: a.gpa, sections, at: str(a.at) ? a.at : undefined } };
}

/**
 * What the user typed: `0x1f`, `1f` (a gfn, hex), `gpa 0x1000` or `0x1000 gpa` (a guest physical address).
 * Returns the gfn as `0x` hex, or undefined.
 */
export function parseGfnText(text: string, pageShift = 12): string | undefined {
  const t = text.trim().toLowerCase();
  const m = /^(?:(gpa|ipa)\s+)?(?:0x)?([0-9a-f_]{1,16})(?:\s+(gpa|ipa))?$/.exec(t);
  if (!m) return undefined;
  const digits = m[2]!.replace(/_/g, '');
  if (!digits) return undefined;
  const isAddr = !!(m[1] || m[3]);
  const v = BigInt('0x' + digits);
  const gfn = isAddr ? v >> BigInt(pageShift) : v;
  if (gfn >= 1n << 52n) return undefined;
  return '0x' + gfn.toString(16);
}
