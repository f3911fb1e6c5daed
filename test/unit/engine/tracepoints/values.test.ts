import { test } from 'node:test';
import assert from 'node:assert/strict';
import { halvesToValue, hexHalves } from '../../../../src/engine/tracepoints/values';

/** The obvious formatting, for comparison with the one built from 16-bit pieces. */
function reference(lo: number, hi: number, width = 0): string {
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16).padStart(width, '0');
}

test('hexHalves and halvesToValue agree with BigInt formatting at every 16-bit boundary', () => {
  const edges = [0, 1, 0xf, 0x10, 0xffff, 0x1_0000, 0x1_0001, 0xfff_ffff, 0x1000_0000, 0x3fff_ffff, 0x4000_0000, 0x8000_0000, 0xdead_beef, 0xffff_fffe, 0xffff_ffff];
  for (const hi of edges) {
    for (const lo of edges) {
      assert.equal(hexHalves(lo, hi), reference(lo, hi), `hexHalves(${lo}, ${hi})`);
      assert.equal(hexHalves(lo, hi, 16), reference(lo, hi, 16));
      const v = halvesToValue(lo, hi);
      assert.equal(typeof v === 'number' ? v.toString(16) : v, reference(lo, hi));
    }
  }
  // negative int32 inputs are read as unsigned
  assert.equal(hexHalves(-1, -1), 'ffffffffffffffff');
});
