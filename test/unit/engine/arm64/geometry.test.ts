import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  GRANULES,
  granuleInfo,
  kvm_get_vtcr,
  kvm_granule_size,
  kvm_supported_block_sizes,
  stage2Geometry,
} from '../../../../src/engine/arm64/pgtable_desc';

// Expected values from the Arm ARM translation-granule rules: each level resolves PAGE_SHIFT-3 bits, the
// start level may concatenate up to 16 tables, KVM uses at least two levels, and SL0 counts up from the
// deepest start level (4K: SL0=0 is level 2; 16K/64K: SL0=0 is level 3).
const TABLE: Array<[string, number, number, number, number, number]> = [
  // granule, ipa, levels, start level, SL0, concatenated PGD pages
  ['4k', 32, 2, 2, 0, 4],
  ['4k', 36, 3, 1, 1, 1],
  ['4k', 40, 3, 1, 1, 2],
  ['4k', 42, 3, 1, 1, 8],
  ['4k', 44, 4, 0, 2, 1],
  ['4k', 48, 4, 0, 2, 1],
  ['16k', 32, 2, 2, 1, 1],
  ['16k', 36, 2, 2, 1, 1],
  ['16k', 40, 2, 2, 1, 16],
  ['16k', 42, 3, 1, 2, 1],
  ['16k', 48, 3, 1, 2, 2],
  ['64k', 32, 2, 2, 1, 1],
  ['64k', 40, 2, 2, 1, 1],
  ['64k', 44, 2, 2, 1, 4],
  ['64k', 46, 2, 2, 1, 16],
  ['64k', 48, 3, 1, 2, 1],
  ['64k', 52, 3, 1, 2, 1],
];

describe('stage-2 geometry (kvm_get_vtcr / stage2_pgtable_levels / kvm_pgd_pages)', () => {
  for (const [g, ipa, levels, start, sl0, pages] of TABLE) {
    it(`${g} IPA ${ipa}: ${levels} levels from L${start}, SL0=${sl0}, ${pages} PGD page(s)`, () => {
      const geo = stage2Geometry(g as '4k', ipa);
      assert.equal(geo.levels, levels);
      assert.equal(geo.startLevel, start);
      assert.equal(geo.sl0, sl0);
      assert.equal(geo.pgdPages, pages);
    });
  }

  it('4K with LPA2 and a 52-bit IPA starts at level 0 with 16 concatenated tables', () => {
    const geo = stage2Geometry('4k', 52, true);
    assert.equal(geo.startLevel, 0);
    assert.equal(geo.pgdPages, 16);
  });

  it('refuses IPA sizes outside what the granule can address', () => {
    assert.throws(() => stage2Geometry('4k', 52), RangeError);
    assert.throws(() => stage2Geometry('4k', 31), RangeError);
    assert.throws(() => stage2Geometry('64k', 40, true), RangeError);
  });

  it('the start level is the deepest one needing at most 16 concatenated tables (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...GRANULES), fc.integer({ min: 32, max: 48 }), (g, ipa) => {
        const gi = granuleInfo(g);
        const geo = stage2Geometry(g, ipa);
        const bitsPerLevel = gi.pageShift - 3;
        // input bits resolved from the start level down
        const resolved = gi.pageShift + bitsPerLevel * (4 - geo.startLevel);
        const extra = ipa - resolved; // bits absorbed by concatenation
        assert.ok(extra <= 4, 'at most 16 tables concatenated');
        assert.equal(geo.pgdPages, extra > 0 ? 2 ** extra : 1);
        // one level deeper would need more than 16 tables, unless that would leave fewer than 2 levels
        if (geo.levels > 2) assert.ok(ipa - (resolved - bitsPerLevel) > 4);
        assert.ok(geo.levels >= 2);
      }),
    );
  });

  it('block sizes per granule (KVM_PGTABLE_MIN_BLOCK_LEVEL and up)', () => {
    assert.deepEqual(kvm_supported_block_sizes(granuleInfo('4k')), [2 ** 30, 2 ** 21, 2 ** 12]);
    assert.deepEqual(kvm_supported_block_sizes(granuleInfo('16k')), [2 ** 25, 2 ** 14]);
    assert.deepEqual(kvm_supported_block_sizes(granuleInfo('64k')), [2 ** 29, 2 ** 16]);
    assert.equal(kvm_granule_size(12, 0), 2 ** 39);
    assert.equal(kvm_granule_size(14, 1), 2 ** 36);
    assert.equal(kvm_granule_size(16, 1), 2 ** 42);
  });

  it('VTCR_EL2 fields: T0SZ, SL0, TG0, PS, HA, VS, DS', () => {
    const v = kvm_get_vtcr(stage2Geometry('4k', 40), { paBits: 48, hwAfdbm: true, vmid16: true });
    assert.equal(v.lo & 0x3f, 24); // 64 - 40
    assert.equal((v.lo >>> 6) & 3, 1); // level 1 start with 4K
    assert.equal((v.lo >>> 14) & 3, 0); // TG0 4K
    assert.equal((v.lo >>> 16) & 7, 5); // PARange 48 bits
    assert.equal((v.lo >>> 19) & 1, 1);
    assert.equal((v.lo >>> 21) & 1, 1);
    assert.equal(v.hi & 1, 0);
    const w = kvm_get_vtcr(stage2Geometry('16k', 52, true), { paBits: 52 });
    assert.equal((w.lo >>> 14) & 3, 2); // TG0 16K
    assert.equal(w.hi & 1, 1); // DS
  });
});
