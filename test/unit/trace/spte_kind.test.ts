// The replay's SPTE classification reads the MMIO masks once; it must agree with the engine's predicates.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spteKindCode, spteKindCodeReference, KIND_MMIO } from '../../../src/trace/spte_kind';

describe('spteKindCode', () => {
  it('agrees with the engine predicates on typical and random values', () => {
    const values: Array<[number, number]> = [
      [0, 0], [0xb77, 0x6000_0003], [0x5a0, 0x8000_0000], [0x5a0, 0], [0, 0x8000_0000],
      [0x6, 0], [0x7, 0], [0x1, 0x0008_0000], [0x1, 0x0008_0000 | 0x7ff0_0000], [0x806, 0x8000_0000],
    ];
    let seed = 7;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    for (let i = 0; i < 20000; i++) {
      // random values, and values with few bits set (MMIO and frozen patterns are sparse)
      const lo = i & 1 ? rnd() : rnd() & rnd() & rnd() & 0xfff;
      const hi = i & 2 ? rnd() : (rnd() & rnd() & rnd()) & 0x800f_ffff;
      values.push([lo >>> 0, hi >>> 0]);
    }
    let mmio = 0;
    for (const [lo, hi] of values) {
      for (let level = 1; level <= 5; level++) {
        const k = spteKindCode(lo, hi, level);
        assert.equal(k, spteKindCodeReference(lo, hi, level), `lo ${lo.toString(16)} hi ${hi.toString(16)} level ${level}`);
        if (k === KIND_MMIO) mmio++;
      }
    }
    assert.ok(mmio > 0, 'some values are MMIO');
  });
});
