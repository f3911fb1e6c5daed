// The byte path reads most payloads with a tight loop (literals as words, numbers in 32-bit halves) and
// leaves everything else to the general parser. Whatever the text, an event must come out with the same
// fields either way: this feeds every modelled event's 6.18 text, printed by the engine's own formatter
// from random field values, and then edited where the fast loop draws its lines (leading zeros past 16
// digits, upper-case hex, 10-digit decimals, signs, a missing or doubled separator, the end of the line).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EVENTS, formatParts, type EventSchema, type TraceFields } from '../../../src/engine/tracepoints/index';
import { TraceParser } from '../../../src/trace/index';

const PREFIX = 'qemu-system-x86-4711  [003] .....  812.000001: ';
/** Pad each line to make the chunk long enough for the byte path (it skips chunks under 4 KiB). */
const FILL = `# ${'x'.repeat(4200)}\n`;

function fieldValue(spec: EventSchema['fields'][number], a: number, b: number): TraceFields[string] {
  if (spec.bool) return (a & 1) === 1;
  // 64-bit values as hex strings (the engine's form for values past 2^53)
  if (spec.bits === 64) return '0x' + ((BigInt(b >>> 0) << 32n) | BigInt(a >>> 0)).toString(16);
  const v = spec.bits === 32 ? a >>> 0 : a & ((1 << spec.bits) - 1);
  if (spec.signed) return spec.bits === 32 ? v | 0 : (v << (32 - spec.bits)) >> (32 - spec.bits);
  return v;
}

function parse(text: string, bytes: boolean): unknown {
  const out: unknown[] = [];
  const p = new TraceParser({ onEvent: (ev) => out.push(ev.toRecord()), maxDetails: 1000 });
  p.push(text, bytes ? true : false);
  p.end();
  return { out, unrecognized: p.unrecognized.map((u) => [u.line, u.reason]), warnings: p.warnings };
}

const EDITS: Array<(s: string, at: number) => string> = [
  (s) => s,
  // leading zeros before a number (a hex one then has more than 16 digits)
  (s, at) => s.replace(/(?<=[ x])([0-9a-f]+)/g, (m, _g, off: number) => (off === at % s.length || m.length > 12 ? '0000' + m : m)),
  (s) => s.toUpperCase().replace(/^([A-Z_]+)/, (m) => m.toLowerCase()),
  (s, at) => s.slice(0, at % (s.length + 1)),
  (s, at) => s.slice(0, at % (s.length + 1)) + ' ' + s.slice(at % (s.length + 1)),
  (s, at) => s.slice(0, at % (s.length + 1)) + s.slice((at % (s.length + 1)) + 1),
  (s, at) => s.slice(0, at % (s.length + 1)) + '-' + s.slice(at % (s.length + 1)),
  (s, at) => s.slice(0, at % (s.length + 1)) + '9999999999' + s.slice(at % (s.length + 1)),
  (s) => s + '  \r',
  (s) => s + ' x',
];

test('byte path and string path read every event text alike, also edited where the fast loop gives up', () => {
  const printable = EVENTS.filter((e) => !e.parts.some((p) => p.t === 'custom' && (p.kind === 'sp_old')));
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: printable.length - 1 }),
      fc.array(fc.tuple(fc.integer(), fc.integer()), { minLength: 16, maxLength: 16 }),
      fc.integer({ min: 0, max: EDITS.length - 1 }),
      fc.nat(),
      (ei, vals, edit, at) => {
        const schema = printable[ei]!;
        const fields: TraceFields = {};
        schema.fields.forEach((f, i) => (fields[f.name] = fieldValue(f, vals[i]![0], vals[i]![1])));
        let payload: string;
        try {
          payload = formatParts(schema, schema.parts, fields);
        } catch {
          return true; // values the printer rejects (an exit reason without a name) are not this test's subject
        }
        const line = `${PREFIX}${schema.name}: ${EDITS[edit]!(payload, at)}\n`;
        const text = FILL + line + line;
        assert.deepEqual(parse(text, true), parse(text, false));
        return true;
      },
    ),
    { numRuns: 3000, seed: 20261124 },
  );
});

test('the fast loop takes the common kvmmmu lines: 64-bit values round-trip exactly', () => {
  const lines = [
    'kvm_tdp_mmu_spte_changed: as id 1 gfn fffffffffffff level 5 old_spte ffffffffffffffff new_spte 8000000000000000',
    'kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b77 (rwxu) level 1 at 1c4f0d10',
    'kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b75 (r-x) level 2 at 1c4f0d10',
    'kvm_page_fault: vcpu 3 rip 0xffffffff81000000 address 0x0000000001001000 error_code 0x182',
  ];
  const text = FILL + lines.map((l) => PREFIX + l).join('\n') + '\n';
  const got = parse(text, true) as { out: Array<{ fields: Record<string, unknown> }> };
  assert.deepEqual(got, parse(text, false));
  assert.deepEqual(got.out[0]!.fields, { as_id: 1, gfn: 0xfffffffffffff, level: 5, old_spte: 'ffffffffffffffff', new_spte: '8000000000000000' });
  assert.deepEqual(got.out[2]!.fields['u'], -1);
  assert.equal(got.out[1]!.fields['u'], 1);
});
