// Round trip for every event: random field values -> formatTracepoint -> the replay parser (as a trimmed
// line and as a raw trace line) -> the same field values, and re-formatting the parsed fields gives the
// same text. Fields a print fmt does not show exactly are compared as the kernel prints them:
// role words only in the bits the shadow-page text shows, fast_page_fault's ret only when it is
// RET_PF_SPURIOUS (6) or RET_PF_FIXED (5), kvm_mmu_set_spte's u as -1/0/1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EVENTS, formatTracepoint, halvesToValue, SP_TEXT_ROLE_MASK, VMX_EXIT_REASONS, SVM_EXIT_REASONS, type EventSchema, type FieldSpec, type TraceFields } from '../../../../src/engine/tracepoints/index';
import { parseTraceText } from '../../../../src/trace/index';

const u64Arb = fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })).map(([hi, lo]) => {
  // exercise both field-value forms: numbers below 2^53 and hex strings above
  const v = halvesToValue(lo, hi);
  return v;
});

function fieldArb(spec: FieldSpec): fc.Arbitrary<number | string | boolean> {
  if (spec.bool) return fc.boolean();
  if (spec.bits === 64) return fc.oneof(u64Arb, fc.nat({ max: 0xffff }));
  if (spec.signed) return spec.bits === 8 ? fc.integer({ min: -128, max: 127 }) : fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
  const max = spec.bits === 8 ? 0xff : spec.bits === 16 ? 0xffff : 0xffff_ffff;
  return fc.oneof(fc.nat({ max }), fc.nat({ max: 0x20 }));
}

function eventArb(schema: EventSchema): fc.Arbitrary<TraceFields> {
  const rec: Record<string, fc.Arbitrary<number | string | boolean>> = {};
  for (const f of schema.fields) rec[f.name] = fieldArb(f);
  if (schema.name === 'kvm_mmu_set_spte') rec['u'] = fc.constantFrom(-1, 0, 1);
  if (schema.name === 'fast_page_fault') rec['ret'] = fc.constantFrom(0, 1, 2, 3, 4, 5, 6);
  // a guest physical address is below 2^52 (MAXPHYADDR); the walker's text helper takes it as a number
  if (schema.name === 'kvm_mmu_set_accessed_bit' || schema.name === 'kvm_mmu_set_dirty_bit') rec['gpa'] = fc.nat({ max: 2 ** 52 - 1 });
  if (schema.name === 'kvm_exit') {
    return fc
      .record(rec)
      .chain((f) =>
        fc.oneof(
          fc.tuple(fc.constantFrom(...VMX_EXIT_REASONS.map(([k]) => k)), fc.boolean()).map(([k, failed]) => ({ ...f, isa: 1, exit_reason: (k | (failed ? 0x8000_0000 : 0)) >>> 0 })),
          fc.constantFrom(...SVM_EXIT_REASONS.filter(([k]) => k >= 0).map(([k]) => k)).map((k) => ({ ...f, isa: 2, exit_reason: k })),
        ),
      );
  }
  return fc.record(rec);
}

/** The value the record field holds after C truncation, in field-value form. */
function stored(spec: FieldSpec, v: number | string | boolean): number | string | boolean {
  if (spec.bool) return Boolean(v);
  if (typeof v === 'string') {
    const big = BigInt('0x' + v);
    return halvesToValue(Number(big & 0xffff_ffffn), Number(big >> 32n));
  }
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (spec.bits === 64) return v;
  const m = spec.bits === 8 ? 0xff : spec.bits === 16 ? 0xffff : 0xffff_ffff;
  let t = v < 0 ? (v >>> 0) & m : v & m;
  t >>>= 0;
  if (spec.signed) t = spec.bits === 8 ? (t << 24) >> 24 : t | 0;
  return t;
}

function expected(schema: EventSchema, f: TraceFields): TraceFields {
  const out: TraceFields = {};
  for (const spec of schema.fields) out[spec.name] = stored(spec, f[spec.name]!);
  switch (schema.name) {
    case 'kvm_mmu_get_page':
    case 'kvm_mmu_sync_page':
    case 'kvm_mmu_unsync_page':
    case 'kvm_mmu_prepare_zap_page':
      out['role'] = ((out['role'] as number) & SP_TEXT_ROLE_MASK) >>> 0;
      break;
    case 'fast_page_fault': {
      const ret = out['ret'] as number;
      out['spurious'] = ret === 6;
      out['fixed'] = ret === 5;
      if (ret !== 5 && ret !== 6) delete out['ret'];
      break;
    }
    case 'check_mmio_spte':
      out['valid'] = out['kvm_gen'] === out['spte_gen'];
      break;
  }
  return out;
}

for (const schema of EVENTS) {
  test(`round trip: ${schema.system}:${schema.name}`, () => {
    fc.assert(
      fc.property(eventArb(schema), fc.boolean(), (fields, raw) => {
        const text = formatTracepoint(schema.name, fields);
        const line = raw ? `  CPU 3/KVM-4711    [005] d..1.  1234.567890: ${schema.name}: ${text}\n` : `${schema.name}: ${text}\n`;
        const { records, parser } = parseTraceText(line);
        assert.equal(parser.unrecognizedCount, 0, `not parsed: ${line}`);
        assert.equal(records.length, 1);
        const r = records[0]!;
        assert.equal(r.name, schema.name);
        assert.equal(r.variant, 0);
        assert.deepEqual(r.fields, expected(schema, fields), line);
        assert.equal(formatTracepoint(schema.name, r.fields), text);
        if (raw) {
          assert.equal(r.comm, 'CPU 3/KVM');
          assert.equal(r.pid, 4711);
          assert.equal(r.cpu, 5);
        }
      }),
      { numRuns: 150 },
    );
  });
}
