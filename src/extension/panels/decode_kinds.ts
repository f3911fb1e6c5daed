/**
 * Decoding for the Bit Decoder panel: one function per kind over the engine's bit-field tables, so the
 * panel names every bit exactly as the CLI, the Variables view and the kernel do. No `vscode` import:
 * unit tests run it in Node.
 */
import { decodeFields, type BitField, type DecodedField } from '../../engine/bits/fields';
import { parseU64, hex0x } from '../../engine/bits/u64';
import { EPT_SPTE_FIELDS, NPT_SPTE_FIELDS } from '../../engine/x86/spte_fields';
import { eptMasks, nptMasks } from '../../engine/x86/spte';
import { describeSpte, guessSpteLevel, spteFieldTable } from '../../engine/x86/spte_decode';
import { EXT_ROLE_FIELDS, ROLE_FIELDS, role_trace_text } from '../../engine/x86/role';
import { PFERR_FIELDS, pferr_trace_flags, pferrUnknownBits } from '../../engine/x86/pferr';
import { EPT_ENTRY_FIELDS, guestPteFields } from '../../engine/x86/guest_pte';
import { decodeS2Descriptor } from '../../engine/arm64/decode';
import type { DecodeRequest, DecodeResult, DecodedFieldView, DecodeKind } from '../../../webview/shared/decoder_protocol';

function withDesc(decoded: DecodedField[], table: readonly BitField[]): DecodedFieldView[] {
  const desc = new Map(table.map((f) => [`${f.name}@${f.lsb}`, f.desc]));
  return decoded.map((f) => ({ ...f, desc: desc.get(`${f.name}@${f.lsb}`) ?? f.meaning }));
}

function fieldsOf(lo: number, hi: number, table: readonly BitField[]): DecodedFieldView[] {
  return withDesc(decodeFields(lo, hi, table), table);
}

const yes = (b: boolean | undefined): string => (b ? 'yes' : 'no');

function decodeSpteKind(lo: number, hi: number, level: number, ept: boolean): Omit<DecodeResult, keyof DecodeRequest | 'width' | 'levels'> {
  const m = ept ? eptMasks({ maxphyaddr: 52 }, true, false) : nptMasks({ maxphyaddr: 48 });
  const guess = level > 0 ? undefined : guessSpteLevel(m, lo, hi);
  const lvl = level > 0 ? level : guess!.level;
  const d = describeSpte(m, lo, hi, lvl);
  const table = spteFieldTable(m, d.kind);
  const facts: string[] = [];
  facts.push(level > 0 ? `level ${lvl} (chosen)` : `level ${lvl} inferred: ${guess!.reason}`);
  facts.push(ept ? 'masks: kvm_mmu_set_ept_masks, A/D enabled, no exec-only, MAXPHYADDR 52' : 'masks: NPT/legacy, MAXPHYADDR 48, no SME C-bit');
  if (d.kind === 'leaf' || d.kind === 'nonleaf') {
    facts.push(`is_writable_pte ${yes(d.writable)}, is_executable_pte ${yes(d.executable)}, host-writable ${yes(d.hostWritable)}, MMU-writable ${yes(d.mmuWritable)}`);
    facts.push(`accessed ${yes(d.accessed)}, dirty ${yes(d.dirty)}, ${d.adType}${d.accessTracked ? ', access-tracked' : ''}`);
  }
  if (d.mmio) facts.push(`MMIO gfn ${d.mmio.gfn}, generation ${d.mmio.generation}, access ${d.mmio.access}`);
  if (d.frozenAs) facts.push(d.frozenAs);
  const kindText = d.kind === 'leaf' && d.large ? `huge leaf (${lvl === 3 ? '1G' : lvl === 2 ? '2M' : `level ${lvl}`})` : d.kind;
  return {
    headline: `${kindText}  pfn ${d.pfn}  ${d.traceFlags}`,
    facts,
    fields: withDesc(d.fields, table),
  };
}

export function decodeValue(req: DecodeRequest): DecodeResult {
  const v = parseU64(req.value);
  if (!v) throw new Error(`not a 64-bit hex value: ${req.value}`);
  const { lo, hi } = v;
  const base = { kind: req.kind, value: hex0x(lo, hi), level: req.level };
  switch (req.kind) {
    case 'ept-spte':
    case 'npt-spte':
      return { ...base, width: 64, levels: [0, 1, 2, 3, 4, 5], ...decodeSpteKind(lo, hi, req.level, req.kind === 'ept-spte') };
    case 'guest-pte': {
      const level = req.level > 0 ? req.level : 1;
      const large = (lo & 0x80) !== 0 && (level === 2 || level === 3);
      const table = guestPteFields('long', level, large);
      const what = level === 1 ? '4K PTE' : large ? (level === 2 ? '2M PDE (PS=1)' : '1G PDPTE (PS=1)') : `non-leaf entry at level ${level}`;
      return {
        ...base,
        level,
        width: 64,
        levels: [1, 2, 3, 4, 5],
        headline: `${(lo & 1) ? 'present' : 'not present'} ${what}`,
        facts: ['4- or 5-level paging (long mode / PAE layout)'],
        fields: fieldsOf(lo, hi, table),
      };
    }
    case 'ept-entry': {
      const rwx = lo & 7;
      return {
        ...base,
        width: 64,
        levels: [],
        headline: rwx === 0 ? 'not present (R=W=X=0)' : `present ${(rwx & 1) ? 'R' : '-'}${(rwx & 2) ? 'W' : '-'}${(rwx & 4) ? 'X' : '-'}`,
        facts: ['as the nested EPT walker (paging_tmpl.h, PTTYPE_EPT) reads it'],
        fields: fieldsOf(lo, hi, EPT_ENTRY_FIELDS),
      };
    }
    case 'role':
      return {
        ...base,
        value: hex0x(lo, 0),
        level: 0,
        width: 32,
        levels: [],
        headline: role_trace_text(lo),
        facts: hi !== 0 ? ['bits 63:32 ignored: a page role is a u32'] : [],
        fields: fieldsOf(lo, 0, ROLE_FIELDS),
      };
    case 'cpu-role': {
      const ext: BitField[] = EXT_ROLE_FIELDS.map((f) => ({ ...f, name: `ext.${f.name}`, msb: f.msb + 32, lsb: f.lsb + 32 }));
      const table = [...ROLE_FIELDS.map((f) => ({ ...f, name: `base.${f.name}` })), ...ext];
      return { ...base, level: 0, width: 64, levels: [], headline: `base: ${role_trace_text(lo)}`, facts: ['kvm_cpu_role: base word in bits 31:0, kvm_mmu_extended_role in 63:32'], fields: fieldsOf(lo, hi, table) };
    }
    case 'pferr': {
      const unknown = pferrUnknownBits(lo, hi);
      return {
        ...base,
        level: 0,
        width: 64,
        levels: [],
        headline: pferr_trace_flags(lo, hi) || '(no flags)',
        facts: unknown.length ? [`bits without a PFERR_* name: ${unknown.join(', ')}`] : [],
        fields: fieldsOf(lo, hi, PFERR_FIELDS),
      };
    }
    case 's2-desc': {
      const level = req.level >= 0 && req.level <= 3 ? req.level : 3;
      const d = decodeS2Descriptor(lo, hi, { level, granule: '4k', lpa2: false, fwb: false, encoding: 'annotate_2026' });
      const facts = ['4K granule, no LPA2, no FWB, pKVM owner encoding annotate_2026'];
      if (d.outputAddress) facts.push(`output address ${d.outputAddress}${d.mapSize ? `, maps 0x${d.mapSize.toString(16)} bytes` : ''}`);
      if (d.owner) facts.push(`owner ${d.owner.name} (id ${d.owner.id})${d.owner.handle !== undefined ? ` handle 0x${d.owner.handle.toString(16)}` : ''}${d.owner.gfn ? ` gfn ${d.owner.gfn}` : ''}`);
      if (d.annotationType) facts.push(`type ${d.annotationType}`);
      if (d.note) facts.push(d.note);
      return { ...base, level, width: 64, levels: [0, 1, 2, 3], headline: `${d.kind} at level ${level}`, facts, fields: d.fields.map((f) => ({ ...f, desc: f.meaning })) };
    }
  }
}

/** Guess the kind of a value from the name of the variable it came from (Variables view context menu). */
export function kindForName(name: string): DecodeKind | undefined {
  const n = name.toLowerCase();
  if (/error_code|pferr/.test(n)) return 'pferr';
  if (/cpu_role/.test(n)) return 'cpu-role';
  if (/role/.test(n)) return 'role';
  if (/spte/.test(n)) return undefined; // EPT or NPT: ask, unless the VM says
  if (/s2|stage2|desc|kvm_pte/.test(n)) return 's2-desc';
  if (/gpte|guest_pte|pte/.test(n)) return 'guest-pte';
  return undefined;
}

export const ALL_FIELD_TABLES = { EPT_SPTE_FIELDS, NPT_SPTE_FIELDS, ROLE_FIELDS, PFERR_FIELDS, EPT_ENTRY_FIELDS };
