/**
 * Shadow NPT with a 5-level host root over L1's 4-level NPT (kvm_init_shadow_npt_mmu): the root is a
 * passthrough shadow page — it shadows no guest table, so it is neither write-tracked nor counted as
 * indirect, kvm_mmu_page_get_gfn returns its own gfn, and its only child shadows L1's top-level table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { kvm_mmu_page_get_gfn, sp_has_gptes } from '../../../../src/engine/x86/shadow_mmu';

const CR0 = (1 | 0x10 | (1 << 16) | (1 << 31)) >>> 0;
const CR4 = 1 << 5;
const EFER = (1 << 8) | (1 << 10) | (1 << 11);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const GVA = 0x7f_1234_5000;

function run(host_root_level: 4 | 5) {
  const vm = new ShadowVm({ mem_bytes: 128 << 20, host_root_level, cr0: CR0, cr4: CR4, efer: EFER });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  b.map(GVA, 0x80_0000, ALL);
  vm.setRegs(CR0, CR4, EFER, b.cr3);
  assert.equal(vm.access(GVA), 1);
  return { vm, b };
}

test('5-level host over a 4-level L1 NPT: a passthrough level-5 root whose only child shadows the L1 root table', () => {
  const { vm, b } = run(5);
  const root = vm.roots().root!;
  assert.equal(root.decoded.level, 5);
  assert.equal(root.decoded.passthrough, true);
  assert.equal(root.decoded.guest_mode, true);
  assert.equal(root.decoded.direct, false);
  assert.equal(root.gfn, b.cr3 / 4096);
  const path = vm.sptes(GVA);
  assert.deepEqual(path.map((p) => p.level), [5, 4, 3, 2, 1]);
  assert.equal(path[0]!.sptep & 511, 0, 'a 48-bit address always takes entry 0 of the passthrough root');
  const l4 = path[1]!.sp!;
  assert.equal(l4.gfn, b.cr3 / 4096, 'the level-4 page shadows L1 CR3');
  assert.equal((l4.role >>> 18) & 1, 0, 'kvm_mmu_child_role clears passthrough');
  const rootSp = path[0]!.sp!;
  assert.equal(sp_has_gptes(rootSp), false);
  assert.equal(kvm_mmu_page_get_gfn(rootSp, 0), rootSp.gfn);
  assert.equal(kvm_mmu_page_get_gfn(rootSp, 7), rootSp.gfn, 'every entry of a passthrough page names the same gfn');
  // Only the level-4 page write-tracks the L1 root table; the passthrough root is not indirect.
  assert.equal(vm.kvm.arch.gfn_write_track.get(b.cr3 / 4096), 1);
  assert.equal(vm.stats().indirect_shadow_pages, 4, 'levels 4 to 1; not the passthrough root');
  assert.equal(vm.shadowPages().filter((s) => !s.decoded.passthrough).length, 4);
  assert.equal(vm.gvaToGpa(GVA), 0x80_0000);
});

test('4-level host over a 4-level L1 NPT: no passthrough, the root shadows L1 CR3 itself', () => {
  const { vm, b } = run(4);
  const root = vm.roots().root!;
  assert.equal(root.decoded.level, 4);
  assert.equal(root.decoded.passthrough, false);
  assert.equal(root.decoded.guest_mode, true);
  assert.equal(root.gfn, b.cr3 / 4096);
  assert.deepEqual(vm.sptes(GVA).map((p) => p.level), [4, 3, 2, 1]);
});

test('the passthrough root is reused for the same L1 CR3 and a new one for another', () => {
  const { vm, b } = run(5);
  const created = vm.stats().sp_created;
  const b2 = new GuestPageTableBuilder(vm.mem, 4, 0x80_0000);
  b2.map(GVA, 0x90_0000, ALL);
  vm.loadCr3(b2.cr3);
  vm.access(GVA);
  assert.equal(vm.roots().root!.gfn, b2.cr3 / 4096);
  assert.equal(vm.roots().root!.decoded.passthrough, true);
  assert.equal(vm.gvaToGpa(GVA), 0x90_0000);
  const mid = vm.stats().sp_created;
  assert.equal(mid - created, 5, 'a passthrough root and four shadowed tables');
  vm.loadCr3(b.cr3);
  vm.access(GVA);
  assert.equal(vm.stats().sp_created, mid, 'back through prev_roots: nothing new');
  assert.equal(vm.gvaToGpa(GVA), 0x80_0000);
});
