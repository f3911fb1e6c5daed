/**
 * KVM_GET_DIRTY_LOG with shadow paging: the harvest write-protects each logged gfn's 4K SPTEs through
 * the rmaps (kvm_mmu_write_protect_pt_masked), lowest and highest 32 bits of each 64-bit long alike,
 * and leaves them MMU-writable; pages not logged keep W.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { is_mmu_writable_spte } from '../../../../src/engine/x86/spte';

const CR0 = 0x8001_0011, CR4 = 1 << 5, EFER = (1 << 8) | (1 << 10) | (1 << 11);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const GVA = 0x7f_0000_0000;
/** Frames 0x200..0x27f: long 8 (bits 0-63) and long 9 of the bitmap. */
const FRAME0 = 0x200;

const bit = (bm: Uint32Array, i: number): boolean => ((bm[i >>> 5]! >>> (i & 31)) & 1) === 1;

test('harvest write-protects exactly the logged pages (both halves of a long), and a write logs again', () => {
  const vm = new ShadowVm({ mem_bytes: 16 << 20, cr0: CR0, cr4: CR4, efer: EFER, cr3: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(CR0, CR4, EFER, b.cr3);
  // Page 70's gPTE is clean (D clear).
  for (let i = 0; i < 128; i++) b.map(GVA + i * 0x1000, (FRAME0 + i) * 0x1000, i === 70 ? ALL & ~GPTE_D : ALL);
  vm.reload();
  vm.setDirtyLogging(true);
  const written = [0, 5, 31, 32, 40, 63, 64, 100];
  for (const i of written) vm.guestWrite(GVA + i * 0x1000, 0xabc);
  // A read of a page whose gPTE is clean maps it read-only (the first write must set D): not logged.
  // (A read of a dirty gPTE's page maps it writable and logs it, like a write.)
  vm.access(GVA + 70 * 0x1000);
  assert.equal(vm.translate(GVA + 70 * 0x1000)!.lo & 2, 0);
  const bm = vm.getDirtyLog();
  assert.ok(typeof bm !== 'number');
  const logged = [...Array(128).keys()].filter((i) => bit(bm, FRAME0 + i));
  assert.deepEqual(logged, written);
  for (const i of written) {
    const leaf = vm.translate(GVA + i * 0x1000)!;
    assert.equal(leaf.lo & 2, 0, `page ${i}: W cleared by the harvest`);
    assert.ok(is_mmu_writable_spte(vm.kvm.masks, leaf.lo, leaf.hi), `page ${i}: still MMU-writable`);
  }
  // The next harvest is empty; one more write logs that page only.
  const empty = vm.getDirtyLog() as Uint32Array;
  assert.ok(empty.every((w) => w === 0));
  vm.guestWrite(GVA + 32 * 0x1000, 1);
  assert.equal(vm.translate(GVA + 32 * 0x1000)!.lo & 2, 2);
  const again = vm.getDirtyLog() as Uint32Array;
  assert.deepEqual([...Array(128).keys()].filter((i) => bit(again, FRAME0 + i)), [32]);
});
