/**
 * Shadow MMU bookkeeping against the kernel's rules (kvm-x86-mmu.md 4.8, 4.9, 5): write tracking of
 * shadowed guest tables, unsync/sync, emulated page-table writes, zapping, the page budget, the CR3
 * root cache, notifier invalidation through rmaps and the shadow-page tracepoints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { RET_PF_FIXED, RET_PF_EMULATE, RET_PF_SPURIOUS } from '../../../../src/engine/x86/ret_pf';
import { lpage_info_slot } from '../../../../src/engine/x86/memslot';
import { gfn_rmap_count, kvm_page_table_hashfn, kvm_mmu_get_shadow_page } from '../../../../src/engine/x86/shadow_mmu';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';

const CR0 = (1 | 0x10 | (1 << 16) | (1 << 31)) >>> 0;
const CR4 = (1 << 5) | (1 << 4);
const EFER = (1 << 8) | (1 << 10);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const PF_P = 1, PF_W = 2;

function setup(mem = 256 << 20, n_max?: number) {
  const vm = new ShadowVm({ mem_bytes: mem, cr0: CR0, cr4: CR4, efer: EFER, cr3: 0, n_max_mmu_pages: n_max });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(CR0, CR4, EFER, b.cr3);
  return { vm, b };
}

function capture(): { events: TraceEvent[]; stop: () => void } {
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  return { events, stop };
}

test('hash_64 bucket: top 12 bits of gfn * GOLDEN_RATIO_64', () => {
  // gfn 1 -> 0x61C8864680B583EB >> 52 = 0x61c; gfn 2 -> 0xC3910C8D016B07D6 >> 52 = 0xc39.
  assert.equal(kvm_page_table_hashfn(1), 0x61c);
  assert.equal(kvm_page_table_hashfn(2), 0xc39);
  assert.equal(kvm_page_table_hashfn(0), 0);
  // Against 64-bit arithmetic, across the gfn range (up to 52-bit physical addresses).
  let x = 0x1234_5678;
  for (let i = 0; i < 2000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const gfn = i % 3 === 0 ? x : (x % 0x10_0000) * 0x1_0000_0000 + ((x * 2654435761) >>> 0);
    const want = Number(((BigInt(gfn) * 0x61c8864680b583ebn) & 0xffff_ffff_ffff_ffffn) >> 52n);
    assert.equal(kvm_page_table_hashfn(gfn), want, `gfn ${gfn.toString(16)}`);
  }
});

test('account_shadowed: upper-level guest tables are write-tracked, the PT gfn only loses huge pages', () => {
  const { vm, b } = setup();
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const pml4 = b.cr3 / 4096, pdpt = b.entryGpa(gva, 3) >>> 12, pd = b.entryGpa(gva, 2) >>> 12, pt = b.entryGpa(gva, 1) >>> 12;
  assert.deepEqual([...vm.sk.write_track.keys()].sort((x, y) => x - y), [pml4, pdpt, pd].sort((x, y) => x - y));
  assert.ok(!vm.sk.write_track.has(pt));
  for (const g of [pml4, pdpt, pd, pt]) assert.ok(lpage_info_slot(g, vm.slot, 2) > 0, `2M disallowed over gfn ${g}`);
  assert.equal(vm.sk.indirect_shadow_pages, 4);
});

test('a guest mapping of a write-tracked table is read-only; writing it is emulated and zaps the written SPTE', () => {
  const { vm, b } = setup();
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const pdGpa = b.entryGpa(gva, 2) & ~0xfff;
  const alias = 0x7000_0000;
  b.map(alias, pdGpa, ALL);
  assert.equal(vm.access(alias, false), 1);
  assert.equal(vm.translate(alias)!.lo & 2, 0, 'SPTE for a write-tracked gfn is read-only');
  const leafBefore = vm.translate(gva);
  assert.ok(leafBefore !== null);
  // Rewrite the PDE of `gva` (same value): the emulated write zaps the shadow PDE.
  const pdeOff = b.entryGpa(gva, 2) & 0xfff;
  const cur = new Uint32Array(2);
  vm.mem.readEntry(pdGpa + pdeOff, 8, cur);
  const writes = vm.stats().mmu_pte_write!;
  assert.equal(vm.guestWrite(alias + pdeOff, cur[0]!, cur[1]!, 8), 'emulated');
  assert.equal(vm.stats().mmu_pte_write, writes + 1);
  assert.equal(vm.translate(gva), null, 'the shadow PDE was zapped');
  assert.equal(vm.stats().mmu_pde_zapped, 1);
  // Re-fault relinks the PT shadow page, which was only unlinked and still holds the leaf: spurious.
  assert.equal(vm.fault(gva, 0), RET_PF_SPURIOUS);
  assert.equal(vm.gvaToGpa(gva), 0x400_0000);
});

test('write flooding: the third emulated write to a non-4K shadow page zaps it', () => {
  const { vm, b } = setup();
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const pdGpa = b.entryGpa(gva, 2) & ~0xfff;
  const alias = 0x7000_0000;
  b.map(alias, pdGpa, ALL);
  vm.access(alias, false);
  const pdGfn = pdGpa / 4096;
  const hasPd = () => vm.shadowPages().some((s) => s.gfn === pdGfn && (s.role & 0xf) === 2);
  // Writes to an unused PDE slot (index 300) that nothing maps: no SPTE changes, only the counter.
  vm.guestWrite(alias + 300 * 8, 0, 0, 8);
  vm.guestWrite(alias + 300 * 8, 0, 0, 8);
  assert.ok(hasPd());
  vm.guestWrite(alias + 300 * 8, 0, 0, 8);
  assert.ok(!hasPd(), 'flooded PD shadow page zapped');
  assert.equal(vm.stats().mmu_flooded, 1);
});

test('unsync: a writable mapping of a guest PT unsyncs its shadow page; a flushing CR3 load syncs it again', () => {
  const { vm, b } = setup();
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const ptGpa = b.entryGpa(gva, 1) & ~0xfff;
  const ptGfn = ptGpa / 4096;
  const alias = 0x7000_0000;
  b.map(alias, ptGpa, ALL);
  const { events, stop } = capture();
  try {
    assert.equal(vm.access(alias, true), 1);
  } finally {
    stop();
  }
  const pt = vm.shadowPages().find((s) => s.gfn === ptGfn)!;
  assert.equal(pt.unsync, true);
  assert.equal(vm.translate(alias)!.lo & 2, 2, 'the alias is writable after unsync');
  assert.equal(vm.stats().mmu_unsync, 1);
  const unsyncEv = events.find((e) => e.name === 'kvm_mmu_unsync_page')!;
  // Traced before sp->unsync is set, so the text still says sync.
  assert.equal(unsyncEv.text, `sp gen 0 gfn ${ptGfn.toString(16)} l1 8-byte q0 wux nxe ad root 0 sync`);
  // The parents know: unsync_children set up to the root.
  for (const s of vm.shadowPages()) if ((s.role & 0xf) > 1 && s.gfn !== (alias >>> 12)) assert.ok(s.unsync_children >= 0);
  assert.equal(vm.roots().root!.unsync_children, 1);

  // The guest changes the PTE of `gva` to a different frame through its writable alias (no exit).
  const pteOff = b.entryGpa(gva, 1) & 0xfff;
  vm.mem.write64(ptGpa + pteOff, (0x500_0000 | ALL) >>> 0, 0);
  assert.equal(vm.gvaToGpa(gva), 0x400_0000, 'stale until synced');
  const s2 = capture();
  try {
    vm.loadCr3(b.cr3);
  } finally {
    s2.stop();
  }
  assert.ok(s2.events.some((e) => e.name === 'kvm_mmu_sync_page'));
  const pt2 = vm.shadowPages().find((s) => s.gfn === ptGfn)!;
  assert.equal(pt2.unsync, false);
  assert.equal(vm.roots().root!.unsync_children, 0);
  assert.equal(vm.translate(gva), null, 'sync_spte dropped the SPTE whose gfn changed');
  assert.equal(vm.translate(alias)!.lo & 2, 0, 'sync write-protected the PT again');
  vm.fault(gva, 0);
  assert.equal(vm.gvaToGpa(gva), 0x500_0000);
});

test('INVLPG resyncs the gPTE of an unsync page', () => {
  const { vm, b } = setup();
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const ptGpa = b.entryGpa(gva, 1) & ~0xfff;
  b.map(0x7000_0000, ptGpa, ALL);
  vm.access(0x7000_0000, true);
  const pteOff = b.entryGpa(gva, 1) & 0xfff;
  // Guest makes the page read-only and clean, then INVLPGs it.
  vm.mem.write64(ptGpa + pteOff, (0x400_0000 | GPTE_P | GPTE_U | GPTE_A) >>> 0, 0);
  assert.equal(vm.translate(gva)!.lo & 2, 2);
  vm.invlpg(gva);
  assert.equal(vm.translate(gva)!.lo & 2, 0, 'write access removed by sync_spte');
  assert.equal(vm.stats().invlpg, 1);
});

test('zap all: pages freed, roots in use become invalid and are replaced on the next reload', () => {
  const { vm, b } = setup();
  for (let i = 0; i < 4; i++) b.map(0x60_0000 + i * 0x20_0000, 0x400_0000 + i * 0x1000, ALL);
  for (let i = 0; i < 4; i++) vm.fault(0x60_0000 + i * 0x20_0000, 0);
  const oldRoot = vm.sv.root_sp!;
  const { events, stop } = capture();
  try {
    vm.zapAll();
  } finally {
    stop();
  }
  assert.ok(events.some((e) => e.name === 'kvm_mmu_prepare_zap_page'));
  assert.equal(vm.shadowPages().length, 0, 'nothing left on the active list');
  assert.equal(vm.kvm.arch.n_used_mmu_pages, 1, 'the referenced root is still accounted');
  assert.ok((vm.sv.root_sp!.role & 0x800) !== 0, 'root role.invalid');
  assert.equal(vm.sk.indirect_shadow_pages, 0);
  assert.equal(vm.sk.write_track.size, 0);
  assert.equal(vm.stats().pages_4k, 0);
  assert.equal(vm.fault(0x60_0000, 0), RET_PF_FIXED);
  assert.equal(vm.kvm.arch.n_used_mmu_pages, vm.shadowPages().length, 'the invalid root was freed on reload');
  assert.ok(oldRoot.freed && vm.sv.root_sp !== oldRoot, 'a new root replaced the freed invalid one');
});

test('page budget: make_mmu_pages_available recycles the oldest non-root pages', () => {
  const { vm, b } = setup(1 << 30, 16);
  for (let i = 0; i < 40; i++) b.map(i * 0x4000_0000 / 8, 0x400_0000 + i * 0x1000, ALL);
  for (let i = 0; i < 40; i++) vm.fault(i * 0x4000_0000 / 8, 0);
  assert.ok(vm.kvm.arch.n_used_mmu_pages <= 16);
  assert.ok(vm.stats().mmu_recycled! > 0);
  assert.ok(vm.roots().root!.root_count === 1, 'the root is never recycled');
  const active = vm.shadowPages();
  assert.equal(active[active.length - 1]!.root_count, 1, 'the root drifted to the list tail and stayed');
});

test('CR3 root cache: switching back to a previous CR3 reuses its root (no new shadow page)', () => {
  const { vm, b } = setup();
  b.map(0x1000, 0x400_0000, ALL);
  const b2 = new GuestPageTableBuilder(vm.mem, 4, 0x80_0000);
  b2.map(0x1000, 0x410_0000, ALL);
  vm.fault(0x1000, 0);
  const root1 = vm.roots().root!.gfn;
  vm.loadCr3(b2.cr3);
  vm.fault(0x1000, 0);
  assert.equal(vm.gvaToGpa(0x1000), 0x410_0000);
  assert.equal(vm.roots().prev[0]!.root!.gfn, root1, 'the old root went to prev_roots[0]');
  const created = vm.stats().sp_created;
  vm.loadCr3(b.cr3);
  vm.fault(0x1000, 0);
  assert.equal(vm.roots().root!.gfn, root1);
  assert.equal(vm.stats().sp_created, created, 'no shadow page created');
  assert.equal(vm.gvaToGpa(0x1000), 0x400_0000);
});

test('mmu-notifier invalidation zaps leaf SPTEs through the gfn rmaps', () => {
  const { vm, b } = setup();
  b.map(0x1000, 0x400_0000, ALL);
  b.map(0x9000, 0x400_0000, ALL); // two SPTEs map the same gfn
  vm.fault(0x1000, 0);
  vm.fault(0x9000, 0);
  assert.equal(gfn_rmap_count(vm.sk, vm.slot, 0x4000, 1), 2);
  const before = vm.stats().pages_4k!;
  assert.equal(vm.notifierInvalidate(0x4000, 0x4001), true);
  assert.equal(vm.translate(0x1000), null);
  assert.equal(vm.translate(0x9000), null);
  assert.equal(gfn_rmap_count(vm.sk, vm.slot, 0x4000, 1), 0);
  assert.equal(vm.stats().pages_4k, before - 2);
});

test('kvm_mmu_get_page trace: created for new pages, existing on reuse, root count 0 before the reference', () => {
  const { vm, b } = setup();
  b.map(0x1000, 0x400_0000, ALL);
  const { events, stop } = capture();
  try {
    vm.fault(0x1000, 0);
    vm.loadCr3(0x10_0000 * 5); // another CR3 with no tables behind it yet
    vm.loadCr3(b.cr3);
  } finally {
    stop();
  }
  const gp = events.filter((e) => e.name === 'kvm_mmu_get_page').map((e) => e.text);
  assert.equal(gp[0], `sp gen 0 gfn ${(b.cr3 / 4096).toString(16)} l4 8-byte q0 wux nxe ad root 0 sync new`);
  assert.ok(gp.slice(1, 4).every((t) => t.endsWith(' new')));
  void PF_P;
  void PF_W;
  void RET_PF_EMULATE;
});

test('RMAP_RECYCLE_THRESHOLD: adding to a gfn rmap that already holds 1001 SPTEs zaps them all', () => {
  const { vm, b } = setup();
  const target = 0x400_0000;
  const gvaOf = (i: number) => 0x1_0000_0000 + i * 0x1000;
  for (let i = 0; i < 1002; i++) b.map(gvaOf(i), target, ALL);
  // Every 8th page faults; prefetch maps the rest of its group, the last group is 1000..1001.
  for (let i = 0; i < 1000; i++) if (!vm.leafPresent(gvaOf(i))) vm.fault(gvaOf(i), 0);
  assert.equal(gfn_rmap_count(vm.sk, vm.slot, target / 4096, 1), 1000);
  vm.fault(gvaOf(1000), 0);
  assert.equal(vm.stats().max_mmu_rmap_size, 1001, 'max_mmu_rmap_size: entries found before the add');
  assert.equal(gfn_rmap_count(vm.sk, vm.slot, target / 4096, 1), 0, 'the 1002nd add zapped the whole rmap');
  assert.equal(vm.translate(gvaOf(0)), null);
  assert.equal(vm.stats().pages_4k, 0);
});

test('2-level guest: an emulated PDE write zaps both shadow PDEs of the matching quadrant', () => {
  const vm = new ShadowVm({ mem_bytes: 64 << 20, cr0: CR0, cr4: 1 << 4, efer: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 2, 0x10_0000);
  vm.setRegs(CR0, 1 << 4, 0, b.cr3);
  // Guest PDE 257 covers 0x4040_0000..0x407f_ffff: PAE root 1 (quadrant 1), shadow PDEs 2 and 3.
  const lo = 0x4040_0000, hi = 0x4060_0000;
  b.map(lo + 0x1000, 0x80_0000, ALL);
  b.map(hi + 0x1000, 0x90_0000, ALL);
  b.map(0x100_0000, b.cr3, ALL); // alias of the page directory
  vm.fault(lo + 0x1000, 0);
  vm.fault(hi + 0x1000, 0);
  vm.access(0x100_0000);
  assert.notEqual(vm.translate(lo + 0x1000), null);
  assert.notEqual(vm.translate(hi + 0x1000), null);
  const pde = b.entryGpa(lo, 2) & 0xfff;
  assert.equal(pde, 257 * 4);
  const cur = vm.mem.page(b.cr3 / 4096)[257]!;
  assert.equal(vm.guestWrite(0x100_0000 + pde, cur, 0, 4), 'emulated');
  assert.equal(vm.translate(lo + 0x1000), null);
  assert.equal(vm.translate(hi + 0x1000), null, 'both 2 MiB halves of the 4 MiB PDE were zapped');
  assert.equal(vm.stats().mmu_pde_zapped, 2);
});

test('mmu_sync_children handles more unsync pages than one KVM_PAGE_ARRAY_NR batch', () => {
  const { vm, b } = setup(1 << 30);
  const n = 20;
  const ptAliases: number[] = [];
  for (let i = 0; i < n; i++) {
    const gva = 0x1000_0000 + i * 0x20_0000;
    b.map(gva, 0x400_0000 + i * 0x1000, ALL);
    vm.fault(gva, 0);
    const ptGpa = b.entryGpa(gva, 1) & ~0xfff;
    const alias = 0x2000_0000 + i * 0x1000;
    b.map(alias, ptGpa, ALL);
    ptAliases.push(alias);
  }
  for (const a of ptAliases) vm.access(a, true);
  assert.equal(vm.shadowPages().filter((s) => s.unsync).length, n);
  assert.equal(vm.stats().mmu_unsync, n);
  vm.loadCr3(b.cr3);
  assert.equal(vm.shadowPages().filter((s) => s.unsync).length, 0);
  assert.equal(vm.stats().mmu_unsync, 0);
  assert.ok(vm.shadowPages().every((s) => s.unsync_children === 0));
  for (const a of ptAliases) assert.equal(vm.translate(a)!.lo & 2, 0, 'write-protected again');
});

test('a guest mapping of a gpa without a memslot becomes an MMIO SPTE and the access is emulated', () => {
  const { vm, b } = setup(64 << 20);
  b.map(0x3000, 0xfee0_0000, ALL);
  const { events, stop } = capture();
  let r: number;
  try {
    r = vm.fault(0x3000, 0);
  } finally {
    stop();
  }
  assert.equal(r, RET_PF_EMULATE);
  const ev = events.find((e) => e.name === 'mark_mmio_spte')!;
  // gen: the address space's memslot generation (what kvm_memslots()->generation gives).
  assert.match(ev.text, new RegExp(`^sptep:ffff888[0-9a-f]{9} gfn fee00 access 7 gen ${vm.kvm.mmio_gen(0).toString(16)}$`));
  assert.equal(vm.stats().pf_mmio_spte_created, 1);
  assert.equal(vm.stats().pf_emulate, 1);
  const leaf = vm.sptes(0x3000).pop()!;
  assert.equal(leaf.lo & 0x800, 0, 'an MMIO SPTE is not shadow-present');
});

test('INVLPG also resyncs unsync pages under prev_roots; a guest TLB flush frees unsync prev roots', () => {
  const { vm, b } = setup();
  vm.setRegs(CR0, CR4 | (1 << 17), EFER, b.cr3); // CR4.PCIDE, so MOV CR3 may skip the flush
  const gva = 0x60_0000;
  b.map(gva, 0x400_0000, ALL);
  vm.fault(gva, 0);
  const ptGpa = b.entryGpa(gva, 1) & ~0xfff;
  b.map(0x7000_0000, ptGpa, ALL);
  vm.access(0x7000_0000, true); // PT unsync
  const b2 = new GuestPageTableBuilder(vm.mem, 4, 0x80_0000);
  b2.map(0x1000, 0x410_0000, ALL);
  assert.equal(vm.loadCr3(b2.cr3, true), true); // bit 63: no flush, the first root goes to prev_roots[0] still unsync below
  assert.equal(vm.roots().prev[0]!.root!.unsync_children, 1);
  const pteOff = b.entryGpa(gva, 1) & 0xfff;
  vm.mem.write64(ptGpa + pteOff, (0x400_0000 | GPTE_P | GPTE_U | GPTE_A) >>> 0, 0);
  const pt = vm.sk.active_list().find((s) => s.gfn === ptGpa / 4096)!;
  const i = (gva / 4096) % 512;
  assert.equal(pt.spt[2 * i]! & 2, 2);
  vm.invlpg(gva);
  assert.equal(pt.spt[2 * i]! & 2, 0, 'synced through prev_roots[0]');
  vm.flushTlbGuest();
  assert.equal(vm.roots().prev[0]!.root, null, 'the unsync prev root was freed');
});

test('hash collisions: a lookup walking past an SP of another gfn in the bucket counts max_mmu_page_hash_collisions', () => {
  const { vm } = setup();
  vm.reload();
  const g1 = 0x1234;
  let g2 = g1 + 1;
  while (kvm_page_table_hashfn(g2) !== kvm_page_table_hashfn(g1)) g2++;
  const role = (1 | (1 << 7) | (7 << 8) | (1 << 12) | (1 << 13)) >>> 0;
  const a = kvm_mmu_get_shadow_page(vm.sv, g1, role);
  const miss = vm.stats().mmu_cache_miss!;
  const b2 = kvm_mmu_get_shadow_page(vm.sv, g2, role);
  assert.notEqual(a, b2);
  assert.equal(vm.stats().mmu_cache_miss, miss + 1);
  assert.equal(vm.stats().max_mmu_page_hash_collisions, 1);
  // Bucket order is newest first: looking up g1 now walks past g2.
  assert.equal(kvm_mmu_get_shadow_page(vm.sv, g1, role), a);
  assert.equal(vm.stats().max_mmu_page_hash_collisions, 1);
});

test('a guest 2M page over a shadowed guest page table is mapped with 4K SPTEs (huge pages disallowed over it)', () => {
  const vm = new ShadowVm({ mem_bytes: 256 << 20, host_backing: '2m-thp', cr0: CR0, cr4: CR4, efer: EFER, cr3: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(CR0, CR4, EFER, b.cr3);
  // 2M guest pages over gpa 0 (holds the guest's own tables at 1 MiB) and over 0x400_0000 (plain RAM).
  b.map(0x4000_0000, 0, ALL, 2);
  b.map(0x4020_0000, 0x400_0000, ALL, 2);
  vm.fault(0x4020_0000, 0);
  assert.equal(vm.translate(0x4020_0000)!.level, 2, 'plain RAM: a 2M SPTE');
  vm.fault(0x4000_0000 + 0x5000, 0);
  const leaf = vm.translate(0x4000_0000 + 0x5000)!;
  assert.equal(leaf.level, 1, 'the range holds shadowed tables: 4K');
  const direct = vm.shadowPages()[0]!;
  assert.equal(direct.decoded.direct, true);
  assert.equal(direct.gfn, 0);
});

test('a failed guest walk injects #PF with the guest error code and address, and builds nothing', () => {
  const { vm, b } = setup();
  b.map(0x5000, 0x400_0000, GPTE_P | GPTE_W | GPTE_A | GPTE_D); // supervisor-only
  vm.reload();
  const before = vm.kvm.arch.n_used_mmu_pages;
  vm.fault(0x9000_0000, PF_W);
  assert.deepEqual(vm.sv.injected, { vector: 14, error_code: PF_W, address: 0x9000_0000 }, 'not present: P clear, W kept');
  assert.equal(vm.kvm.arch.n_used_mmu_pages, before);
  vm.fault(0x5000, 4 /* U */);
  assert.deepEqual(vm.sv.injected, { vector: 14, error_code: PF_P | 4, address: 0x5000 }, 'protection: P|U');
  assert.equal(vm.stats().pf_guest, 2);
});
