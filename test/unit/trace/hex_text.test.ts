import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hexOfHalves } from '../../../src/trace/hex_text';

test('hexOfHalves agrees with BigInt formatting, also when the cached high half changes', () => {
  const edges = [0, 1, 0xf, 0x10, 0xffff, 0x1_0000, 0xfff_ffff, 0x1000_0000, 0x4000_0000, 0x8000_0000, 0xdead_beef, 0xffff_ffff];
  for (const hi of edges) {
    for (const lo of edges) {
      const want = ((BigInt(hi) << 32n) | BigInt(lo)).toString(16);
      assert.equal(hexOfHalves(lo, hi), want, `${hi.toString(16)}:${lo.toString(16)}`);
      // the same value again (cache hit) and negative int32 inputs read as unsigned
      assert.equal(hexOfHalves(lo | 0, hi | 0), want);
    }
  }
});
