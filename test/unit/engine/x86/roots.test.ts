import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, capture, slot, vm } from './fault_helpers';

test('a new TDP root starts with two references; a second vCPU with the same role reuses it', () => {
  const v = vm({ nr_vcpus: 2 });
  v.enter(v.vcpu(0));
  assert.equal(v.roots().length, 1);
  assert.equal(v.roots()[0]!.root_count, 2);
  v.enter(v.vcpu(1));
  assert.equal(v.roots().length, 1);
  assert.equal(v.roots()[0]!.root_count, 3);
  assert.equal(v.current_root(0), v.current_root(1));
});

test('SMM uses its own root (role.smm, as_id 1); leaving SMM reuses the first root', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x1000, 'read');
  const normal = v.current_root(0)!;
  v.smm(0, true);
  v.access(0, 0x1000, 'read');
  const smm = v.current_root(0)!;
  assert.notEqual(smm, normal);
  assert.equal(smm.role, 0x0100_3784);
  const views = v.roots();
  assert.equal(views[0]!.as_id, 1, 'newest root is at the head of tdp_mmu_roots');
  assert.equal(views[1]!.as_id, 0);
  // The SMM address space has no memslots here: the access is MMIO in as 1.
  assert.equal(v.stats().vcpus[0]!.pf_mmio_spte_created, 1);
  v.smm(0, false);
  v.access(0, 0x1000, 'read');
  assert.equal(v.current_root(0), normal);
  assert.equal(normal.root_count, 2);
});

test('kvm_mmu_zap_all_fast: traces the old generation, toggles it, invalidates and zaps direct roots', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x1000, 'write');
  const old = v.current_root(0)!;
  const c = capture();
  v.zap_all_fast();
  c.stop();
  assert.equal(c.events[0]!.name, 'kvm_mmu_zap_all_fast');
  assert.equal(c.events[0]!.text, 'kvm-mmu-valid-gen 0 used_pages 0');
  assert.equal(v.kvm.arch.mmu_valid_gen, 1);
  assert.equal(v.roots()[0]!.invalid, true);
  // The TDP MMU's reference is gone, the vCPU's is left until it reloads.
  assert.equal(old.root_count, 1);
  assert.equal(v.stats().vm.pages_4k, 0);
  // Zap order: 4K pass first (the leaf), then the tables from the root level pass.
  const changed = c.events.filter((e) => e.name === 'kvm_tdp_mmu_spte_changed');
  assert.equal((changed[0]!.fields['level'] as number), 1);
  // The vCPU gets KVM_REQ_MMU_FREE_OBSOLETE_ROOTS and loads a fresh root on entry.
  v.access(0, 0x1000, 'write');
  assert.notEqual(v.current_root(0), old);
  assert.equal(old.freed, true);
  assert.equal(v.roots().length, 1);
  assert.equal(v.kvm.arch.mmu_valid_gen, 1);
});

test('zapping a root frees every table (prepare_zap_page once per table) and keeps stats balanced', () => {
  const v = vm();
  slot(v, 0, 0, 4 * GiB);
  for (const gpa of [0x1000, 0x20_0000, 0x4000_0000, 0xc000_0000]) v.access(0, gpa, 'write');
  const live = v.kvm.pool.live;
  const c = capture();
  v.zap_all_fast();
  v.access(0, 0x1000, 'read'); // drops the old root
  c.stop();
  const zapped = c.events.filter((e) => e.name === 'kvm_mmu_prepare_zap_page').length;
  // Tables below the root: 2 PDPT? no - one PDPT, PDs for 0-1G, 1-2G, 3-4G, PTs for 0, 2M, 1G, 3G.
  assert.equal(zapped, 1 + 3 + 4);
  assert.equal(live, 1 + 1 + 3 + 4);
  assert.equal(v.stats().vm.pages_4k, 1);
});

test('kvm_zap_gfn_range zaps only leaves in range and requests one TLB flush', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  for (let g = 0; g < 8; g++) v.access(0, g * 0x1000, 'write');
  v.kvm.flush_log.length = 0;
  v.zap_gfn_range(2, 5);
  const present = [...v.leaves(v.current_root(0)!).keys()].sort((a, b) => a - b);
  assert.deepEqual(present, [0, 1, 5, 6, 7]);
  assert.deepEqual(v.kvm.flush_log, [{ kind: 'range', gfn: 2, pages: 3 }]);
  assert.equal(v.kvm.mmu_invalidate_seq, 1);
  assert.equal(v.kvm.mmu_invalidate_in_progress, 0);
});

test('mmu_notifier: host migration of one page zaps its SPTE (kvm_unmap_hva_range), flushes, and the next fault maps the new pfn', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x5000, 'write');
  const hva = 0x7f00_0000_0000 + 0x5000;
  v.kvm.flush_log.length = 0;
  const c = capture();
  v.host_migrate_page(hva, 0x99_9999);
  c.stop();
  assert.equal(c.events[0]!.name, 'kvm_unmap_hva_range');
  // %#016llx counts the 0x prefix in the width.
  assert.equal(c.events[0]!.text, 'mmu notifier unmap range: 0x007f0000005000 -- 0x007f0000006000');
  assert.equal(v.read_spte(5, 1)!.lo & 0x800, 0);
  assert.deepEqual(v.kvm.flush_log, [{ kind: 'all', gfn: 0, pages: 0 }]);
  v.access(0, 0x5000, 'read');
  assert.equal(v.read_spte(5, 1)!.pfn, 0x99_9999);
});

test('mmu_notifier: a THP split zaps the 2M mapping; the refault maps 4K', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x40_0000, 'read');
  assert.equal(v.stats().vm.pages_2m, 1);
  v.host_split_thp(0x7f00_0000_0000 + 0x40_0000);
  assert.equal(v.stats().vm.pages_2m, 0);
  v.access(0, 0x40_1000, 'read');
  assert.equal(v.stats().vm.pages_4k, 1);
});

test('memslot delete: the default VM zaps everything fast; without the quirk only the slot is zapped', () => {
  const a = vm();
  slot(a, 0, 0, GiB);
  slot(a, 1, GiB, GiB);
  a.access(0, 0x1000, 'write');
  a.access(0, GiB + 0x1000, 'write');
  const c = capture();
  assert.equal(a.set_user_memory_region({ slot: 1, flags: 0, guest_phys_addr: GiB, memory_size: 0, userspace_addr: 0x7f00_0000_0000 + GiB }), 0);
  c.stop();
  assert.equal(c.events.some((e) => e.name === 'kvm_mmu_zap_all_fast'), true);
  assert.equal(a.stats().vm.pages_4k, 0);

  const b = vm({ quirk_slot_zap_all: false });
  slot(b, 0, 0, GiB);
  slot(b, 1, GiB, GiB);
  b.access(0, 0x1000, 'write');
  b.access(0, GiB + 0x1000, 'write');
  assert.equal(b.set_user_memory_region({ slot: 1, flags: 0, guest_phys_addr: GiB, memory_size: 0, userspace_addr: 0x7f00_0000_0000 + GiB }), 0);
  assert.equal(b.stats().vm.pages_4k, 1);
  assert.equal(b.kvm.arch.mmu_valid_gen, 0);
  // The deleted range now faults as MMIO.
  b.access(0, GiB + 0x1000, 'read');
  assert.equal(b.stats().vcpus[0]!.pf_mmio_spte_created, 1);
});

test('yielding during a zap restarts the walk from the root and still zaps everything', () => {
  const v = vm({ resched_every: 3 });
  slot(v, 0, 0, GiB);
  for (let g = 0; g < 40; g++) v.access(0, g * 0x1000, 'write');
  v.zap_gfn_range(0, 40);
  assert.equal(v.leaves(v.current_root(0)!).size, 0);
  assert.ok(v.kvm.yields > 0);
});
