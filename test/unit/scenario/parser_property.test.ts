import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseScenario, parseNumber, parseRange } from '../../../src/scenario/parser';
import { KEYWORDS, STATEMENTS } from '../../../src/scenario/grammar';

const words = [...KEYWORDS.flatMap((k) => k.split(' ')), ...STATEMENTS.flatMap((s) => s.args.map((a) => a.name)), 'gpa=0x1000', '0x0..0x2000', '"x"', '#', '=', '>=', '|', '4K', '-EINVAL'];

describe('parser properties', () => {
  it('never throws; every diagnostic lies on a real line, inside it or just past its end', () => {
    const line = fc.array(fc.oneof(fc.constantFrom(...words), fc.string({ maxLength: 8 })), { maxLength: 8 }).map((ws) => ws.join(' '));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), (lines) => {
        const text = lines.join('\n');
        const r = parseScenario(text, 'p');
        const src = text.split('\n');
        for (const d of r.diagnostics) {
          assert.ok(d.line >= 1 && d.line <= src.length, `line ${d.line}`);
          assert.ok(d.col >= 1 && d.col <= src[d.line - 1]!.length + 2, `col ${d.col} of ${JSON.stringify(src[d.line - 1])}`);
          assert.ok(d.endCol > d.col);
          assert.ok(d.message.length > 0);
        }
        for (const s of r.statements) assert.ok(s.line >= 1 && s.line <= src.length);
      }),
      { numRuns: 400 },
    );
  });

  it('numbers: hex and decimal with suffixes read as value << 10·k', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 40n) - 1n }), fc.constantFrom(['', 0n], ['K', 10n], ['M', 20n], ['G', 30n]), (v, [suf, sh]) => {
        assert.equal(parseNumber(`0x${v.toString(16)}${suf}`), v << (sh as bigint));
        assert.equal(parseNumber(`${v}${suf}`), v << (sh as bigint));
      }),
    );
  });

  it('ranges: A..B and A+S describe the same half-open interval', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 1n << 50n }), fc.bigInt({ min: 1n, max: 1n << 40n }), (a, s) => {
        const r1 = parseRange(`0x${a.toString(16)}..0x${(a + s).toString(16)}`);
        const r2 = parseRange(`0x${a.toString(16)}+0x${s.toString(16)}`);
        assert.deepEqual(r1, { start: a, end: a + s, single: false });
        assert.deepEqual(r2, r1);
      }),
    );
  });
});
