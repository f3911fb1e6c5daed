/**
 * Reserved-bit masks per paging mode and level, written from the SDM / kvm-x86-mmu.md 3.5 tables and
 * arm64-stage2-and-x86-guest-walk.md B5, as bit lists (independent of the code's construction).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  __is_bad_mt_xwr,
  __is_rsvd_bits_set,
  __reset_rsvds_bits_mask,
  __reset_rsvds_bits_mask_ept,
  decodeGuestEntryFieldsForTest,
  EPT_ENTRY_FIELDS,
  GUEST_PTE_FIELDS,
  reserved_gpa_bits,
  RsvdBitsValidate,
  rsvd_bits,
} from './guest_pte_helpers';

/** Mask from bit numbers and inclusive ranges, via BigInt (test edge only). */
function mask(...parts: Array<number | [number, number]>): bigint {
  let m = 0n;
  for (const p of parts) {
    if (typeof p === 'number') m |= 1n << BigInt(p);
    else for (let b = p[0]; b <= p[1]; b++) m |= 1n << BigInt(b);
  }
  return m;
}

function row(r: RsvdBitsValidate, bit7: 0 | 1, level: number): bigint {
  const v = r.get(bit7, level);
  return (BigInt(v.hi) << 32n) | BigInt(v.lo);
}

function hexes(a: bigint): string {
  return '0x' + a.toString(16);
}

function assertRow(r: RsvdBitsValidate, bit7: 0 | 1, level: number, want: bigint, what: string): void {
  assert.equal(hexes(row(r, bit7, level)), hexes(want), `${what} [${bit7}][${level - 1}]`);
}

test('rsvd_bits is GENMASK and empty when end < start', () => {
  const m = rsvd_bits(13, 20);
  assert.equal(m.lo, 0x1fe000);
  assert.equal(m.hi, 0);
  assert.deepEqual(rsvd_bits(52, 51), { lo: 0, hi: 0 });
  const r = reserved_gpa_bits(46);
  assert.equal(r.lo, 0);
  assert.equal(r.hi, 0xffffc000);
});

test('4-level, MAXPHYADDR 46, NX, GBPAGES, Intel', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(46), 4, true, true, false, false, false);
  const hi = mask([46, 51]);
  assertRow(r, 0, 4, hi | mask(7), 'PML4E');
  assertRow(r, 1, 4, hi | mask(7), 'PML4E with PS');
  assertRow(r, 0, 3, hi, 'PDPTE');
  assertRow(r, 1, 3, hi | mask([13, 29]), '1G PDPTE');
  assertRow(r, 0, 2, hi, 'PDE');
  assertRow(r, 1, 2, hi | mask([13, 20]), '2M PDE');
  assertRow(r, 0, 1, hi, 'PTE');
  assertRow(r, 1, 1, hi, 'PTE with PAT');
  assertRow(r, 0, 5, 0n, 'no level 5 in 4-level paging');
});

test('4-level without NX reserves bit 63 everywhere; without GBPAGES reserves PDPTE.PS; AMD reserves PML4E bit 8', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(52), 4, false, false, false, true, false);
  const b63 = mask(63);
  assertRow(r, 0, 4, b63 | mask(7, 8), 'PML4E');
  assertRow(r, 0, 3, b63 | mask(7), 'PDPTE');
  assertRow(r, 1, 3, b63 | mask(7) | mask([13, 29]), '1G PDPTE without GBPAGES');
  assertRow(r, 1, 2, b63 | mask([13, 20]), '2M PDE');
  assertRow(r, 0, 1, b63, 'PTE');
});

test('5-level: PML5E like PML4E', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(52), 5, true, true, false, false, false);
  assertRow(r, 0, 5, mask(7), 'PML5E');
  assertRow(r, 1, 5, mask(7), 'PML5E with PS');
  assertRow(r, 0, 4, mask(7), 'PML4E');
});

test('PAE, MAXPHYADDR 36, NX: PDPTE rules; bits 62:36 reserved in every entry', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(36), 3, true, true, true, false, false);
  const hi = mask([36, 62]);
  assertRow(r, 0, 3, mask(63) | hi | mask([5, 8]) | mask([1, 2]), 'PDPTE');
  assertRow(r, 0, 2, hi, 'PDE');
  assertRow(r, 1, 2, hi | mask([13, 20]), '2M PDE (bit 12 = PAT stays legal)');
  assertRow(r, 0, 1, hi, 'PTE');
  assertRow(r, 1, 1, hi, 'PTE with PAT');
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(36), 3, false, true, true, false, false);
  assertRow(r, 0, 1, hi | mask(63), 'PTE without NX');
});

test('2-level: nothing reserved except in 4M PDEs with PSE (21:17 with PSE-36, 21:13 without)', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(36), 2, false, false, true, false, true);
  assertRow(r, 0, 2, 0n, 'PDE');
  assertRow(r, 0, 1, 0n, 'PTE');
  assertRow(r, 1, 1, 0n, 'PTE with PAT');
  assertRow(r, 1, 2, mask([17, 21]), '4M PDE, PSE-36');
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(36), 2, false, false, true, false, false);
  assertRow(r, 1, 2, mask([13, 21]), '4M PDE, no PSE-36');
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(36), 2, false, false, false, false, true);
  assertRow(r, 1, 2, 0n, 'PDE bit 7 without CR4.PSE');
});

test('EPT reserved bits: non-leaf 7:3 at levels 4/5, 6:3 at 2/3; large leaves 29:12 / 20:12', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask_ept(r, reserved_gpa_bits(46), false, 3);
  const hi = mask([46, 51]);
  assertRow(r, 0, 5, hi | mask([3, 7]), 'EPT PML5E');
  assertRow(r, 0, 4, hi | mask([3, 7]), 'EPT PML4E');
  assertRow(r, 1, 4, hi | mask([3, 7]), 'EPT PML4E with bit 7');
  assertRow(r, 0, 3, hi | mask([3, 6]), 'EPT PDPTE');
  assertRow(r, 1, 3, hi | mask([12, 29]), 'EPT 1G');
  assertRow(r, 0, 2, hi | mask([3, 6]), 'EPT PDE');
  assertRow(r, 1, 2, hi | mask([12, 20]), 'EPT 2M');
  assertRow(r, 0, 1, hi, 'EPT PTE');
  __reset_rsvds_bits_mask_ept(r, reserved_gpa_bits(46), false, 2);
  assertRow(r, 1, 3, hi | mask([12, 29]) | mask(7), 'EPT 1G when only 2M is supported');
  assertRow(r, 0, 3, hi | mask([3, 6]) | mask(7), 'EPT PDPTE row when only 2M is supported');
  __reset_rsvds_bits_mask_ept(r, reserved_gpa_bits(46), false, 1);
  assertRow(r, 1, 2, hi | mask([12, 20]) | mask(7), 'EPT 2M when only 4K is supported');
});

test('EPT bad memtype / XWR combinations', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask_ept(r, reserved_gpa_bits(46), false, 3);
  const e = (mt: number, xwr: number) => ((mt << 3) | xwr) >>> 0;
  // memtypes: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB are legal; 2, 3, 7 are not.
  for (const mt of [0, 1, 4, 5, 6]) assert.equal(__is_bad_mt_xwr(r, e(mt, 7)), false, `mt ${mt}`);
  for (const mt of [2, 3, 7]) assert.equal(__is_bad_mt_xwr(r, e(mt, 7)), true, `mt ${mt}`);
  // XWR: write without read (010, 110) is always bad; exec-only (100) only without the capability.
  for (const xwr of [1, 3, 5, 7]) assert.equal(__is_bad_mt_xwr(r, e(6, xwr)), false, `xwr ${xwr}`);
  for (const xwr of [2, 6, 4]) assert.equal(__is_bad_mt_xwr(r, e(6, xwr)), true, `xwr ${xwr}`);
  __reset_rsvds_bits_mask_ept(r, reserved_gpa_bits(46), true, 3);
  assert.equal(__is_bad_mt_xwr(r, e(6, 4)), false, 'exec-only allowed');
  assert.equal(__is_bad_mt_xwr(r, e(6, 2)), true);
});

test('__is_rsvd_bits_set picks the row with bit 7 of the entry', () => {
  const r = new RsvdBitsValidate();
  __reset_rsvds_bits_mask(r, reserved_gpa_bits(46), 4, true, true, false, false, false);
  // 2M PDE with bit 13 set: reserved; the same bit in a non-leaf PDE is an address bit.
  assert.equal(__is_rsvd_bits_set(r, 0x2083, 0, 2), true);
  assert.equal(__is_rsvd_bits_set(r, 0x2003, 0, 2), false);
  // PTE with address bit 46 set (hi bit 14) is reserved at MAXPHYADDR 46.
  assert.equal(__is_rsvd_bits_set(r, 0x1003, 1 << 14, 1), true);
  assert.equal(__is_rsvd_bits_set(r, 0x1003, 1 << 13, 1), false);
});

test('bit-field tables name the SDM bits', () => {
  const d = decodeGuestEntryFieldsForTest(0x8000_0000_0000_0067n, GUEST_PTE_FIELDS);
  assert.equal(d.P, 1);
  assert.equal(d.RW, 1);
  assert.equal(d.US, 1);
  assert.equal(d.A, 1);
  assert.equal(d.D, 1);
  assert.equal(d.XD, 1);
  assert.equal(d.PK, 0);
  const k = decodeGuestEntryFieldsForTest(0x7800_0000_0000_0001n, GUEST_PTE_FIELDS);
  assert.equal(k.PK, 15);
  const ept = decodeGuestEntryFieldsForTest(0x8000_0000_1234_5737n, EPT_ENTRY_FIELDS);
  assert.equal(ept.R, 1);
  assert.equal(ept.W, 1);
  assert.equal(ept.X, 1);
  assert.equal(ept.MT, 6);
  assert.equal(ept.IPAT, 0);
  assert.equal(ept.PS, 0);
  assert.equal(ept.A, 1);
  assert.equal(ept.D, 1);
  assert.equal(ept.UX, 1);
  assert.equal(ept.ADDR, 0x12345);
  assert.equal(ept.SVE, 1);
});
