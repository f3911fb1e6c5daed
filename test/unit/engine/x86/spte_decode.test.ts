import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eptMasks, kvm_mmu_set_mmio_spte_value, kvm_mmu_set_spte_trace_fields, is_mmio_spte, make_mmio_spte, nptMasks, SpteMasks } from '../../../../src/engine/x86/spte';
import { describeSpte, guessSpteLevel, spteFieldTable } from '../../../../src/engine/x86/spte_decode';
import { EPT_MMIO_SPTE_FIELDS, EPT_SPTE_FIELDS, NPT_SPTE_FIELDS } from '../../../../src/engine/x86/spte_fields';

const halves = (v: bigint): [number, number] => [Number(v & 0xffff_ffffn), Number(v >> 32n)];
const bit = (n: number): bigint => 1n << BigInt(n);

test('guessSpteLevel: leaf-only bits mean 4K, PS means huge, none means non-leaf', () => {
  const ept = eptMasks({ maxphyaddr: 46 });
  assert.equal(guessSpteLevel(ept, ...halves(bit(11) | 0x907n)).level, 2, 'make_nonleaf_spte shape');
  assert.match(guessSpteLevel(ept, ...halves(bit(11) | 0x907n)).reason, /non-leaf/);
  assert.equal(guessSpteLevel(ept, ...halves(bit(11) | 0x77n)).level, 1, 'memtype bits are leaf-only on EPT');
  assert.equal(guessSpteLevel(ept, ...halves(bit(11) | bit(7) | 7n)).level, 2);
  assert.equal(guessSpteLevel(ept, ...halves(bit(11) | bit(54))).level, 1, 'access-tracked leaf');
  const npt = nptMasks({ maxphyaddr: 48 });
  assert.equal(guessSpteLevel(npt, ...halves(bit(11) | bit(9) | 5n)).level, 1, 'host-writable');
  assert.equal(guessSpteLevel(npt, ...halves(bit(11) | 0x27n)).level, 2, 'P|RW|US|A only: non-leaf');
  // The EPT memtype heuristic does not apply to NPT (bits 3-4 are PWT/PCD there).
  assert.equal(guessSpteLevel(npt, ...halves(bit(11) | 0x3fn & ~0x40n)).level, 2);
});

test('describeSpte: tables follow format and kind', () => {
  const ept = eptMasks({ maxphyaddr: 46 });
  assert.equal(spteFieldTable(ept, 'leaf'), EPT_SPTE_FIELDS);
  assert.equal(spteFieldTable(ept, 'mmio'), EPT_MMIO_SPTE_FIELDS);
  assert.equal(spteFieldTable(nptMasks({ maxphyaddr: 48 }), 'nonleaf'), NPT_SPTE_FIELDS);
  const d = describeSpte(ept, ...halves(bit(63) | bit(52) | bit(54) | bit(56) | bit(57) | bit(58) | bit(11) | bit(9) | (0x10n << 12n)), 1);
  assert.equal(d.kind, 'leaf');
  assert.equal(d.accessTracked, true);
  assert.equal(d.adType, 'SPTE_TDP_AD_DISABLED');
  assert.equal(d.writable, false);
  assert.equal(d.executable, false);
  assert.equal(d.pfn, '0x10');
  assert.equal(d.traceFlags, 'r---');
});

test('kvm_mmu_set_spte_trace_fields: r from present mask, u from the user mask', () => {
  const ept = eptMasks({ maxphyaddr: 46 }, true, true);
  assert.deepEqual(kvm_mmu_set_spte_trace_fields(ept, 0x804, 0), { r: true, x: true, u: 0 });
  const npt = nptMasks({ maxphyaddr: 48 });
  assert.deepEqual(kvm_mmu_set_spte_trace_fields(npt, ...halves(bit(63) | 0x807n)), { r: true, x: false, u: 1 });
  // A mask set without a present or user mask (none of the kernel's) prints r from bit 0 and no u.
  const bare = new SpteMasks();
  assert.deepEqual(kvm_mmu_set_spte_trace_fields(bare, 0x2, 0), { r: false, x: true, u: -1 });
});

test('kvm_mmu_set_mmio_spte_value: a per-VM MMIO value is what is_mmio_spte matches', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const vm = { shadow_mmio_value: { lo: 6, hi: 0 } };
  kvm_mmu_set_mmio_spte_value(vm, { lo: 0, hi: 0 });
  const o = { lo: 0, hi: 0 };
  make_mmio_spte(m, 0x100, 0, 1, o, vm.shadow_mmio_value);
  assert.equal(is_mmio_spte(m, o.lo, o.hi, vm.shadow_mmio_value), true);
  assert.equal(is_mmio_spte(m, o.lo, o.hi), false, 'the global value (110b) does not match');
});
