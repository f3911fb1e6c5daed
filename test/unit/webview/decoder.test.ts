/**
 * Bit Decoder: the message protocol (both sides validate) and the extension-side decodes. Expected values
 * are built from the architecture's layouts (SDM EPT entry format, AMD/Intel #PF error code, Arm ARM
 * stage-2 descriptors, KVM's spte.h software bits), not from the decoder's output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bitOf,
  normaliseHex,
  parseFromPanel,
  parseToPanel,
  toggleBit,
  DECODE_KINDS,
} from '../../../webview/shared/decoder_protocol';
import { decodeValue, kindForName } from '../../../src/extension/panels/decode_kinds';

test('hex helpers: normalise, toggle and read bits without BigInt', () => {
  assert.equal(normaliseHex(' 0x0000_ABC '), '0xabc');
  assert.equal(normaliseHex('ffffffffffffffff'), '0xffffffffffffffff');
  assert.equal(normaliseHex('1ffffffffffffffff'), undefined, '65 bits');
  assert.equal(normaliseHex('0xg'), undefined);
  assert.equal(toggleBit('0x0', 63), '0x8000000000000000');
  assert.equal(toggleBit('0x8000000000000000', 63), '0x0');
  assert.equal(toggleBit('0x0', 0), '0x1');
  assert.equal(toggleBit('0xff', 4), '0xef');
  for (let b = 0; b < 64; b++) {
    const v = toggleBit('0x0', b);
    assert.equal(bitOf(v, b), 1);
    assert.equal(BigInt(v), 1n << BigInt(b));
  }
});

test('protocol: malformed messages are refused on both sides', () => {
  assert.equal(parseFromPanel({ type: 'decode', request: { kind: 'nope', value: '0x1', level: 0 } }), undefined);
  assert.equal(parseFromPanel({ type: 'decode', request: { kind: 'pferr', value: '<script>', level: 0 } }), undefined);
  assert.equal(parseFromPanel({ type: 'evil' }), undefined);
  assert.deepEqual(parseFromPanel({ type: 'decode', request: { kind: 'pferr', value: '0x2', level: 99 } }), { type: 'decode', request: { kind: 'pferr', value: '0x2', level: 0 } });
  assert.deepEqual(parseFromPanel({ type: 'ready' }), { type: 'ready' });
  assert.equal(parseToPanel({ type: 'decoded', result: { kind: 'pferr', value: '0x1', level: 0, width: 64, levels: [], headline: 'x', facts: [], fields: [{ name: 'a' }] } }), undefined);
  for (const kind of DECODE_KINDS) {
    const r = decodeValue({ kind, value: '0x8000000000000ef7', level: 0 });
    assert.ok(parseToPanel({ type: 'decoded', result: r }), `${kind}: the extension's own result passes the webview's check`);
  }
});

test('EPT SPTE: a 4K writable WB leaf with host/MMU-writable', () => {
  // R W X | MT=6 (WB) in 5:3 | A bit 8 | D bit 9 | SPTE_MMU_PRESENT bit 11 | pfn 0x1234 | bits 57, 58.
  const lo = 0x7 | (6 << 3) | (1 << 8) | (1 << 9) | (1 << 11) | (0x1234 << 12);
  const hi = (1 << (57 - 32)) | (1 << (58 - 32));
  const value = '0x' + ((BigInt(hi) << 32n) | BigInt(lo >>> 0)).toString(16);
  const r = decodeValue({ kind: 'ept-spte', value, level: 1 });
  assert.equal(r.width, 64);
  assert.match(r.headline, /^leaf\s+pfn 0x1234/);
  const f = Object.fromEntries(r.fields.map((x) => [x.name, x]));
  assert.equal(f.MT.value, 6);
  assert.match(f.MT.meaning, /WB/);
  assert.equal(f.PFN.hex, '0x1234');
  assert.equal(f.PFN.bits, '[51:12]');
  assert.equal(f.HOST_WRITABLE.value, 1);
  assert.equal(f.MMU_WRITABLE.value, 1);
  assert.equal(f.MMU_PRESENT.bits, '[11]');
  assert.equal(f.SVE.value, 0);
});

test('NPT SPTE and frozen SPTE', () => {
  const r = decodeValue({ kind: 'npt-spte', value: '0x8000000000000000', level: 1 });
  assert.equal(r.fields.find((f) => f.name === 'NX')?.value, 1);
  assert.match(r.headline, /^nonpresent/, 'SHADOW_NONPRESENT_VALUE on NPT is bit 63 alone');
  // FROZEN_SPTE (6.11+): SHADOW_NONPRESENT_VALUE | 0x5a0.
  const z = decodeValue({ kind: 'ept-spte', value: '0x80000000000005a0', level: 1 });
  assert.match(z.headline, /^frozen/);
});

test('role word 0x3784: level 4, direct, access wux, efer_nx, cr0_wp', () => {
  const r = decodeValue({ kind: 'role', value: '0x3784', level: 0 });
  assert.equal(r.width, 32);
  const f = Object.fromEntries(r.fields.map((x) => [x.name, x.value]));
  assert.equal(f.level, 4);
  assert.equal(f.direct, 1);
  assert.equal(f.access, 7);
  assert.equal(f.efer_nx, 1);
  assert.equal(f.cr0_wp, 1);
  assert.equal(f.smm, 0);
  assert.match(r.headline, /^l4 8-byte q0 direct wux/);
});

test('PFERR: write + user + guest page walk (bit 33)', () => {
  const r = decodeValue({ kind: 'pferr', value: '0x200000006', level: 0 });
  const set = r.fields.filter((f) => f.value !== 0).map((f) => f.name);
  assert.deepEqual(set, ['PFERR_WRITE_MASK', 'PFERR_USER_MASK', 'PFERR_GUEST_PAGE_MASK']);
});

test('guest PTE by level, EPT entry, stage-2 page descriptor', () => {
  const pde = decodeValue({ kind: 'guest-pte', value: '0x2000e3', level: 2 });
  assert.ok(pde.fields.some((f) => f.name === 'ADDR' && f.bits === '[51:21]'), 'a PS=1 PDE is a 2M leaf: address from bit 21');
  const pte = decodeValue({ kind: 'guest-pte', value: '0x8000000000001063', level: 1 });
  assert.equal(pte.fields.find((f) => f.name === 'XD')?.value, 1);
  const ept = decodeValue({ kind: 'ept-entry', value: '0x5', level: 0 });
  assert.match(ept.headline, /R-X/);
  // Valid page (bits 1:0 = 11) at level 3, MemAttr 0xf, S2AP RW, SH inner, AF, OA 0x80010000.
  const s2 = decodeValue({ kind: 's2-desc', value: '0x' + ((0x80010000 | 0x3 | (0xf << 2) | 0xc0 | 0x300 | 0x400) >>> 0).toString(16), level: 3 });
  assert.match(s2.headline, /^page at level 3/);
  assert.ok(s2.facts.some((x) => /output address 0x80010000/.test(x)));
});

test('a variable name suggests the decode kind', () => {
  assert.equal(kindForName('error_code'), 'pferr');
  assert.equal(kindForName('role'), 'role');
  assert.equal(kindForName('old_spte'), undefined, 'EPT or NPT depends on the VM');
});
