import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFields } from '../../../../src/engine/bits/fields';
import {
  PFERR_FIELDS,
  PFERR_GUEST_ENC_MASK_HI,
  PFERR_GUEST_FINAL_MASK_HI,
  PFERR_GUEST_PAGE_MASK_HI,
  PFERR_GUEST_RMP_MASK,
  PFERR_GUEST_SIZEM_MASK_HI,
  PFERR_GUEST_VMPL_MASK_HI,
  PFERR_IMPLICIT_ACCESS_HI,
  PFERR_NESTED_GUEST_PAGE_HI,
  PFERR_NESTED_GUEST_PAGE_LO,
  PFERR_PRIVATE_ACCESS_HI,
  PFERR_SYNTHETIC_MASK_HI,
  pferrSetBits,
  pferrUnknownBits,
  pferr_trace_flags,
} from '../../../../src/engine/x86/pferr';
import { RET_PF_SPURIOUS, RET_PF_FIXED, ret_pf_name, ret_pf_value } from '../../../../src/engine/x86/ret_pf';

// Bit numbers from kvm-x86-mmu.md 4.1 (and PFERR_SS at 6 from the 6.18 walker print fmt).
const EXPECTED: Array<[string, number]> = [
  ['PFERR_PRESENT_MASK', 0],
  ['PFERR_WRITE_MASK', 1],
  ['PFERR_USER_MASK', 2],
  ['PFERR_RSVD_MASK', 3],
  ['PFERR_FETCH_MASK', 4],
  ['PFERR_PK_MASK', 5],
  ['PFERR_SS_MASK', 6],
  ['PFERR_SGX_MASK', 15],
  ['PFERR_GUEST_RMP_MASK', 31],
  ['PFERR_GUEST_FINAL_MASK', 32],
  ['PFERR_GUEST_PAGE_MASK', 33],
  ['PFERR_GUEST_ENC_MASK', 34],
  ['PFERR_GUEST_SIZEM_MASK', 35],
  ['PFERR_GUEST_VMPL_MASK', 36],
  ['PFERR_IMPLICIT_ACCESS', 48],
  ['PFERR_PRIVATE_ACCESS', 49],
];

const halves = (v: bigint): [number, number] => [Number(v & 0xffff_ffffn), Number(v >> 32n)];

test('each PFERR bit decodes alone under its kernel name', () => {
  for (const [name, bit] of EXPECTED) {
    const [lo, hi] = halves(1n << BigInt(bit));
    assert.deepEqual(pferrSetBits(lo, hi).map((b) => b.name), [name], name);
    const f = decodeFields(lo, hi, PFERR_FIELDS).filter((d) => d.value === 1).map((d) => d.name);
    assert.deepEqual(f, [name]);
  }
  assert.equal(PFERR_FIELDS.length, EXPECTED.length);
});

test('high-half masks and composites', () => {
  assert.equal(PFERR_GUEST_RMP_MASK, 2 ** 31);
  assert.equal(PFERR_GUEST_FINAL_MASK_HI, 1 << 0);
  assert.equal(PFERR_GUEST_PAGE_MASK_HI, 1 << 1);
  assert.equal(PFERR_GUEST_ENC_MASK_HI, 1 << 2);
  assert.equal(PFERR_GUEST_SIZEM_MASK_HI, 1 << 3);
  assert.equal(PFERR_GUEST_VMPL_MASK_HI, 1 << 4);
  assert.equal(PFERR_IMPLICIT_ACCESS_HI, 1 << 16);
  assert.equal(PFERR_PRIVATE_ACCESS_HI, 1 << 17);
  assert.equal(PFERR_SYNTHETIC_MASK_HI, (1 << 16) | (1 << 17));
  assert.equal(PFERR_NESTED_GUEST_PAGE_LO, 0b11);
  assert.equal(PFERR_NESTED_GUEST_PAGE_HI, 1 << 1);
});

test('an SNP #NPF error code: final GPA, encrypted, RMP, write, present', () => {
  const [lo, hi] = halves((1n << 32n) | (1n << 34n) | (1n << 31n) | 0b11n);
  assert.deepEqual(pferrSetBits(lo, hi).map((b) => b.name), [
    'PFERR_PRESENT_MASK',
    'PFERR_WRITE_MASK',
    'PFERR_GUEST_RMP_MASK',
    'PFERR_GUEST_FINAL_MASK',
    'PFERR_GUEST_ENC_MASK',
  ]);
  assert.deepEqual(pferrUnknownBits(lo, hi), []);
  assert.deepEqual(pferrUnknownBits(1 << 7, 1 << 5), [7, 37]);
});

test('pferr_trace_flags follows the print fmt order P W U PK SS SGX RSVD F, leftovers in hex', () => {
  assert.equal(pferr_trace_flags(0), '');
  assert.equal(pferr_trace_flags(0b11), 'P|W');
  assert.equal(pferr_trace_flags(0x1f), 'P|W|U|RSVD|F');
  assert.equal(pferr_trace_flags(0x8061), 'P|PK|SS|SGX');
  assert.equal(pferr_trace_flags(0x80 | 0x2), 'W|0x80');
  assert.equal(pferr_trace_flags(0x1, 0x1), 'P|0x100000000');
});

test('RET_PF_* in both numberings', () => {
  assert.equal(ret_pf_name(3), 'RET_PF_WRITE_PROTECTED');
  assert.equal(ret_pf_name(4), 'RET_PF_INVALID');
  assert.equal(ret_pf_name(5), 'RET_PF_FIXED');
  assert.equal(ret_pf_name(6), 'RET_PF_SPURIOUS');
  assert.equal(ret_pf_name(3, 'pre-6.12'), 'RET_PF_INVALID');
  assert.equal(ret_pf_name(4, 'pre-6.12'), 'RET_PF_FIXED');
  assert.equal(ret_pf_name(5, 'pre-6.12'), 'RET_PF_SPURIOUS');
  assert.equal(ret_pf_name(6, 'pre-6.12'), undefined);
  assert.equal(ret_pf_name(0, 'pre-6.12'), 'RET_PF_CONTINUE');
  assert.equal(ret_pf_name(2), 'RET_PF_EMULATE');
  assert.equal(ret_pf_value('SPURIOUS'), 6);
  assert.equal(ret_pf_value('RET_PF_SPURIOUS', 'pre-6.12'), 5);
  assert.equal(ret_pf_value('WRITE_PROTECTED', 'pre-6.12'), undefined);
  // fast_page_fault's 6.18 print fmt tests ret == 6 for spurious and ret == 5 for fixed.
  assert.equal(RET_PF_SPURIOUS, 6);
  assert.equal(RET_PF_FIXED, 5);
});
