/**
 * Probes and the KVM call stack of the shadow fault path, memslot removal and generation-based zaps.
 * The call chains are the kernel's: kvm_mmu_page_fault → kvm_mmu_do_page_fault → paging64_page_fault
 * → paging64_fetch → kvm_mmu_get_child_sp → kvm_mmu_get_shadow_page → __kvm_mmu_get_shadow_page …
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probes, kvmStack } from '../../../../src/engine/probes';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { RET_PF_FIXED } from '../../../../src/engine/x86/ret_pf';

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;

function vm4() {
  const vm = new ShadowVm({ mem_bytes: 256 << 20 });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(vm.cr0, vm.cr4, vm.efer, b.cr3);
  return { vm, b };
}

function withProbes(fn: () => void): Array<{ name: string; args: Record<string, unknown>; stack: string[] }> {
  const hits: Array<{ name: string; args: Record<string, unknown>; stack: string[] }> = [];
  probes.listen((name, args) => hits.push({ name, args, stack: kvmStack().map((f) => f.name) }));
  try {
    fn();
  } finally {
    probes.listen(undefined);
  }
  return hits;
}

test('the KVM stack of a shadow page allocation under a guest fault', () => {
  const { vm, b } = vm4();
  b.map(0x1000, 0x40_0000, ALL);
  vm.reload();
  const hits = withProbes(() => assert.equal(vm.fault(0x1000, 0), RET_PF_FIXED));
  const alloc = hits.find((h) => h.name === 'kvm_mmu_alloc_shadow_page' && h.stack.includes('paging64_fetch'))!;
  assert.deepEqual(alloc.stack.slice(0, 8), [
    'kvm_mmu_alloc_shadow_page', '__kvm_mmu_get_shadow_page', 'kvm_mmu_get_shadow_page', 'kvm_mmu_get_child_sp',
    'paging64_fetch', 'paging64_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault',
  ]);
  const link = hits.find((h) => h.name === 'link_shadow_page')!;
  const a = link.args as { sptep: number; parent_spte: { lo: number; hi: number }; new_spte: { lo: number; hi: number }; sp: { role: number; gfn: number; spt_pfn: number }; role: number };
  assert.deepEqual(a.parent_spte, { lo: 0, hi: 0x8000_0000 }, 'SHADOW_NONPRESENT_VALUE before the link');
  assert.equal(a.role, a.sp.role);
  assert.equal((a.new_spte.lo & ~0xfff) >>> 0, (a.sp.spt_pfn * 4096) % 2 ** 32, 'the new SPTE points at the child table');
  assert.equal(a.new_spte.lo & 0x807, 0x807, 'P|W|U and SPTE_MMU_PRESENT');
  const set = hits.find((h) => h.name === 'mmu_set_spte')!;
  const s = set.args as { as_id: number; gfn: number; level: number; sptep: number; old_spte: { lo: number; hi: number }; new_spte: { lo: number; hi: number } };
  assert.equal(s.gfn, 0x400);
  assert.equal(s.level, 1);
  assert.equal(s.as_id, 0);
  assert.equal(Math.floor(((s.new_spte.hi & 0xfffff) * 2 ** 32 + s.new_spte.lo) / 4096) > 0, true);
  assert.deepEqual(s.old_spte, { lo: 0, hi: 0x8000_0000 });
});

test('memslot deletion with the zap-all quirk: new generation, obsolete pages zapped, roots rebuilt', () => {
  const { vm, b } = vm4();
  vm.kvm.kvm_set_memory_region({ slot: 1, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 16 << 20, userspace_addr: 0x7e00_0000_0000 });
  b.map(0x1000, 0x40_0000, ALL);
  vm.fault(0x1000, 0);
  const gen = vm.kvm.arch.mmu_valid_gen;
  vm.kvm.kvm_set_memory_region({ slot: 1, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 0, userspace_addr: 0x7e00_0000_0000 });
  assert.equal(vm.kvm.arch.mmu_valid_gen, gen ^ 1);
  assert.equal(vm.shadowPages().length, 0, 'obsolete non-root pages zapped; the root left the active list');
  assert.equal(vm.access(0x1000), 1);
  assert.equal(vm.roots().root!.root_count, 1);
  assert.equal(vm.kvm.arch.n_used_mmu_pages, vm.shadowPages().length);
});

test('memslot deletion without the quirk zaps only shadow pages and rmaps of that slot', () => {
  const vm = new ShadowVm({ mem_bytes: 256 << 20, kvm: { quirk_slot_zap_all: false } });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(vm.cr0, vm.cr4, vm.efer, b.cr3);
  vm.kvm.kvm_set_memory_region({ slot: 1, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 16 << 20, userspace_addr: 0x7e00_0000_0000 });
  b.map(0x1000, 0x40_0000, ALL);
  b.map(0x2000, 0x4000_0000, ALL);
  vm.fault(0x1000, 0);
  vm.fault(0x2000, 0);
  const n = vm.shadowPages().length;
  vm.kvm.kvm_set_memory_region({ slot: 1, flags: 0, guest_phys_addr: 0x4000_0000, memory_size: 0, userspace_addr: 0x7e00_0000_0000 });
  assert.equal(vm.shadowPages().length, n, 'no shadow page lives in slot 1');
  assert.equal(vm.translate(0x2000), null, 'the leaf into slot 1 is gone');
  assert.notEqual(vm.translate(0x1000), null);
});

test('with probes armed, unsync/sync/zap/split paths run and report their kernel functions', () => {
  const { vm, b } = vm4();
  const gva = 0x60_0000;
  b.map(gva, 0x40_0000, ALL);
  b.map(0x80_0000, 0x60_0000, ALL, 2);
  const hits = withProbes(() => {
    vm.access(gva);
    b.map(0x7000_0000, b.entryGpa(gva, 1) & ~0xfff, ALL);
    vm.access(0x7000_0000, true);
    vm.loadCr3(b.cr3);
    vm.invlpg(gva);
    vm.notifierInvalidate(0x400, 0x401);
    vm.zapAll();
    vm.access(gva);
  });
  const names = new Set(hits.map((h) => h.name));
  for (const n of ['mmu_try_to_unsync_pages', 'kvm_unsync_page', 'mark_unsync', 'mmu_sync_children', 'kvm_sync_page', 'paging64_sync_spte',
    'kvm_mmu_invlpg', 'kvm_mmu_zap_all', '__kvm_mmu_prepare_zap_page', 'kvm_mmu_page_unlink_children', 'mmu_page_zap_pte', 'drop_parent_pte',
    'kvm_mmu_commit_zap_page', 'kvm_mmu_free_shadow_page', 'account_shadowed', 'unaccount_shadowed', 'rmap_add', 'rmap_remove', 'kvm_mmu_free_roots', 'kvm_mmu_load']) {
    assert.ok(names.has(n), `${n} was hit`);
  }
  const sync = hits.find((h) => h.name === 'paging64_sync_spte')!;
  assert.deepEqual(sync.stack.slice(0, 4), ['paging64_sync_spte', '__kvm_sync_page', 'kvm_sync_page', 'mmu_sync_children']);
});
