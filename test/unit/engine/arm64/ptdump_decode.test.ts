import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KvmPgtable, kvm_pgtable_stage2_map, kvm_pgtable_stage2_set_owner } from '../../../../src/engine/arm64/pgtable';
import { KvmMmuMemoryCache, kvm_mmu_topup_memory_cache } from '../../../../src/engine/arm64/page_alloc';
import { KVM_PGTABLE_PROT_RW, KVM_PGTABLE_PROT_RWX } from '../../../../src/engine/arm64/pgtable_desc';
import { kvm_pgtable_levels_show, kvm_pgtable_range_show, kvm_ptdump_guest_show } from '../../../../src/engine/arm64/ptdump';
import { decodeS2Descriptor } from '../../../../src/engine/arm64/decode';
import { diffOwnerEncodings, encodeOwner, decodeOwner, ownerIdFits } from '../../../../src/engine/arm64/variants';

function small(encoding: 'set_owner_2021' | 'annotate_2026' = 'annotate_2026'): { pgt: KvmPgtable; mc: KvmMmuMemoryCache } {
  const pgt = new KvmPgtable({ granule: '4k', iaBits: 32, encoding }); // start level 2, 4 concatenated pages
  const mc = new KvmMmuMemoryCache(pgt.mm_ops.alloc, { capacity: 4 });
  kvm_mmu_topup_memory_cache(mc, 4);
  return { pgt, mc };
}

describe('stage2_page_tables (ptdump) text', () => {
  it('merges runs by level and masked attributes; the final run is never printed', () => {
    const { pgt, mc } = small();
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x1000, 0x1000, 0x8000_1000, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x20_0000, 0x20_0000, 0x8020_0000, KVM_PGTABLE_PROT_RWX, mc), 0);
    // "0x%016lx-0x%016lx   " + "%9lu%c %s" (+ " %s" per attribute when the masked value is non-zero)
    const expected =
      '---[ Guest IPA ]---\n' +
      '0x0000000000000000-0x0000000000001000           4K 3\n' +
      '0x0000000000001000-0x0000000000002000           4K 3   R W PXNUXN AF    \n' +
      '0x0000000000002000-0x0000000000200000        2040K 3\n' +
      '0x0000000000200000-0x0000000000400000           2M 2   R W px ux  AF BLK\n';
    assert.equal(kvm_ptdump_guest_show(pgt), expected);
  });

  it('an empty table prints only the marker', () => {
    const { pgt } = small();
    assert.equal(kvm_ptdump_guest_show(pgt), '---[ Guest IPA ]---\n');
  });

  it('owner annotations are invisible unless they touch a masked bit (set_owner_2021 bits 6/7)', () => {
    const { pgt, mc } = small('set_owner_2021');
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x3000, 0x1000, mc, 1), 0); // 0x4: not in the mask
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x5000, 0x1000, mc, 0x30), 0); // 0xc0: bits 6 and 7
    const expected =
      '---[ Guest IPA ]---\n' +
      '0x0000000000000000-0x0000000000005000          20K 3\n' +
      // invalid (F), R and W from owner bits, XN field 00 ("px ux "), AF clear, bits 1:0 = 00 (not BLK)
      '0x0000000000005000-0x0000000000006000           4K 3 F R W px ux        \n' +
      // rest of the L3 table, then a level change to the empty L2 entries (that last run is not printed)
      '0x0000000000006000-0x0000000000200000        2024K 3\n';
    assert.equal(kvm_ptdump_guest_show(pgt), expected);
  });

  it('ipa_range and stage2_levels', () => {
    const { pgt } = small();
    assert.equal(kvm_pgtable_range_show(pgt), '32\n');
    assert.equal(kvm_pgtable_levels_show(pgt), '2\n');
    assert.equal(kvm_pgtable_levels_show(new KvmPgtable({ granule: '4k', iaBits: 48 })), '4\n');
  });
});

describe('decodeS2Descriptor', () => {
  const o = { granule: '4k' as const, encoding: 'annotate_2026' as const };
  it('page, block, table, reserved by level and bits 1:0', () => {
    assert.equal(decodeS2Descriptor(0x4000_07ff, 0, { ...o, level: 3 }).kind, 'page');
    assert.equal(decodeS2Descriptor(0x4000_07ff, 0, { ...o, level: 3 }).outputAddress, '0x40000000');
    assert.equal(decodeS2Descriptor(0x4020_07fd, 0, { ...o, level: 2 }).kind, 'block');
    assert.equal(decodeS2Descriptor(0x4020_07fd, 0, { ...o, level: 2 }).mapSize, 2 ** 21);
    assert.equal(decodeS2Descriptor(0x4020_07fd, 0, { ...o, level: 3 }).kind, 'reserved');
    assert.equal(decodeS2Descriptor(0x4020_07fd, 0, { ...o, level: 0 }).kind, 'reserved'); // no L0 blocks with 4K
    assert.equal(decodeS2Descriptor(0x1234_5003, 0x12, { ...o, level: 1 }).kind, 'table');
    assert.equal(decodeS2Descriptor(0x1234_5003, 0x12, { ...o, level: 1 }).outputAddress, '0x1212345000');
    assert.equal(decodeS2Descriptor(0x4000_07fd, 0, { ...o, granule: '16k', level: 1 }).kind, 'reserved');
  });

  it('leaf fields carry S2AP, SH, AF, XN and SW values', () => {
    const d = decodeS2Descriptor(0x4000_07ff, (1 << 22) | (1 << 23), { ...o, level: 3 });
    const f = Object.fromEntries(d.fields.map((x) => [x.name, x.value]));
    assert.equal(f['KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR'], 0xf);
    assert.equal(f['KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R'], 1);
    assert.equal(f['KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W'], 1);
    assert.equal(f['KVM_PTE_LEAF_ATTR_LO_S2_SH'], 3);
    assert.equal(f['KVM_PTE_LEAF_ATTR_LO_S2_AF'], 1);
    assert.equal(f['KVM_PTE_LEAF_ATTR_HI_S2_XN'], 2);
    assert.equal(f['KVM_PTE_LEAF_ATTR_HI_SW'], 1);
    assert.equal(f['KVM_PTE_ADDR_MASK'], 0x40000);
    // LPA2: no SH field, OA[51:50] from bits 9:8
    const l = decodeS2Descriptor(0x4000_0703, 0, { ...o, level: 3, lpa2: true });
    assert.ok(!l.fields.some((x) => x.name === 'KVM_PTE_LEAF_ATTR_LO_S2_SH'));
    assert.equal(l.outputAddress, '0xc000040000000');
  });

  it('invalid descriptors under each owner encoding', () => {
    assert.equal(decodeS2Descriptor(0, 0, { ...o, level: 3 }).kind, 'invalid');
    const a = decodeS2Descriptor(0x4, 0, { ...o, encoding: 'set_owner_2021', level: 3 });
    assert.equal(a.kind, 'owner-annotated');
    assert.equal(a.owner?.name, 'hyp');
    assert.equal(decodeS2Descriptor(0x400, 0, { ...o, encoding: 'set_owner_2021', level: 3 }).kind, 'locked');
    assert.equal(decodeS2Descriptor(0, 0x1000_0000, { ...o, level: 3 }).kind, 'locked');
    assert.equal(decodeS2Descriptor(0, 0x3000_0000, { ...o, level: 3 }).kind, 'poisoned');
    // DONATION to guest: owner 2 (bits 3:1), handle 0x1000 (bits 19:4), gfn 0x42 (bits 59:20)
    const g = decodeS2Descriptor(0x0420_0004 | (0x1000 << 4), 0x2000_0000, { ...o, level: 3 });
    assert.equal(g.kind, 'owner-annotated');
    assert.deepEqual(g.owner, { id: 2, name: 'guest', handle: 0x1000, gfn: '0x42' });
  });
});

describe('owner_encoding helpers', () => {
  it('what owner ids fit: 8 bits (bits 9:2) vs 3 bits (bits 3:1)', () => {
    assert.equal(ownerIdFits('set_owner_2021', 255), true);
    assert.equal(ownerIdFits('set_owner_2021', 256), false);
    assert.equal(ownerIdFits('annotate_2026', 7), true);
    assert.equal(ownerIdFits('annotate_2026', 8), false);
  });

  it('encode/decode round trip, and the diff names what differs', () => {
    const o = { owner: 2, handle: 0x1001, gfn: 0xff_ffff_ffff };
    const e = encodeOwner('annotate_2026', o)!;
    assert.deepEqual(decodeOwner('annotate_2026', e.lo, e.hi), o);
    assert.deepEqual(decodeOwner('set_owner_2021', encodeOwner('set_owner_2021', o)!.lo, 0), { owner: 2 });
    const d = diffOwnerEncodings({ owner: 1 });
    assert.deepEqual(d.set_owner_2021, { lo: 4, hi: 0 });
    assert.deepEqual(d.annotate_2026, { lo: 2, hi: 0x2000_0000 });
    assert.ok(d.differences.length >= 2);
  });
});
