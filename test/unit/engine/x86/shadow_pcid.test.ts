/**
 * PCID rules for the shadow MMU's root cache (x86.c kvm_set_cr3 / kvm_invalidate_pcid /
 * kvm_post_set_cr4 / kvm_handle_invpcid, mmu.c kvm_mmu_new_pgd / fast_pgd_switch /
 * kvm_mmu_invpcid_gva): which cached roots a CR3 load or INVPCID keeps, frees or resyncs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { INVPCID_TYPE_INDIV_ADDR, INVPCID_TYPE_SINGLE_CTXT, INVPCID_TYPE_ALL_NON_GLOBAL, INVPCID_TYPE_ALL_INCL_GLOBAL } from '../../../../src/engine/x86/shadow_cr3';

const CR0 = (1 | 0x10 | (1 << 16) | (1 << 31)) >>> 0;
const CR4 = (1 << 5) | (1 << 4);
const PCIDE = 1 << 17;
const PGE = 1 << 7;
const EFER = (1 << 8) | (1 << 10);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const GVA = 0x60_0000;
const ALIAS = 0x7000_0000;

/** Three guest address spaces A, B, C; each maps GVA, and A also maps its own last-level table at ALIAS (writable). */
function setup(cr4 = CR4 | PCIDE) {
  const vm = new ShadowVm({ mem_bytes: 256 << 20, cr0: CR0, cr4: CR4, efer: EFER, cr3: 0 });
  const a = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x80_0000);
  const c = new GuestPageTableBuilder(vm.mem, 4, 0xc0_0000);
  a.map(GVA, 0x400_0000, ALL);
  b.map(GVA, 0x410_0000, ALL);
  c.map(GVA, 0x420_0000, ALL);
  const ptA = a.entryGpa(GVA, 1) & ~0xfff;
  a.map(ALIAS, ptA, ALL);
  vm.setRegs(CR0, cr4, EFER, a.cr3);
  return { vm, a, b, c, ptA };
}

/** Load `cr3 | pcid` and fault GVA in through it. */
function enter(vm: ShadowVm, cr3: number, pcid: number, noflush = false): void {
  assert.equal(vm.loadCr3(cr3 + pcid, noflush), true);
  vm.access(GVA);
}

/** Make A's last-level table unsync: the guest writes it through ALIAS (A must be current). */
function unsyncA(vm: ShadowVm, ptA: number): void {
  vm.access(ALIAS, true);
  assert.equal(vm.sk.active_list().find((s) => s.gfn === ptA / 4096)!.unsync, true);
}

function prevPgds(vm: ShadowVm): Array<number | null> {
  return vm.roots().prev.map((p) => (p.root === null ? null : p.pgd));
}

test('PCIDE=1: a flushing MOV CR3 frees only the prev roots whose CR3 carries the new PCID', () => {
  const { vm, a, b, c } = setup();
  enter(vm, a.cr3, 1);
  enter(vm, b.cr3, 2);
  enter(vm, c.cr3, 3);
  assert.deepEqual(prevPgds(vm), [b.cr3 + 2, a.cr3 + 1, null]);
  // C again, now with PCID 2 and a flush: B's cached root (PCID 2) goes, A's (PCID 1) stays.
  enter(vm, c.cr3, 2);
  assert.deepEqual(prevPgds(vm), [c.cr3 + 3, null, a.cr3 + 1]);
});

test('PCIDE=1: the root cache is keyed on the whole CR3, so one table under two PCIDs is two entries of one root SP', () => {
  const { vm, a } = setup();
  enter(vm, a.cr3, 1);
  const created = vm.stats().sp_created;
  enter(vm, a.cr3, 5, true);
  assert.equal(vm.stats().sp_created, created, 'the same gfn and role: the root shadow page is reused');
  assert.equal(vm.roots().root!.root_count, 2, 'held by the current root and prev_roots[0]');
  assert.deepEqual(prevPgds(vm), [a.cr3 + 1, null, null]);
});

test('PCIDE=1: MOV CR3 with bit 63 switches to a cached root without syncing it; without bit 63 it syncs', () => {
  const { vm, a, b, ptA } = setup();
  enter(vm, a.cr3, 1);
  unsyncA(vm, ptA);
  enter(vm, b.cr3, 2, true);
  const pt = () => vm.sk.active_list().find((s) => s.gfn === ptA / 4096)!;
  assert.equal(pt().unsync, true);
  // Back to A without a flush: the cached root is reused as is, still unsync below.
  const created = vm.stats().sp_created;
  enter(vm, a.cr3, 1, true);
  assert.equal(vm.stats().sp_created, created);
  assert.equal(pt().unsync, true, 'no KVM_REQ_MMU_SYNC without a flush');
  // The same CR3 with a flush: the current PCID is flushed, so the root is synced on entry.
  assert.equal(vm.loadCr3(a.cr3 + 1), true);
  assert.equal(pt().unsync, false);
});

test('PCIDE=0: every MOV CR3 flushes PCID 0, prev roots survive it, and bit 63 is a reserved bit (#GP)', () => {
  const { vm, a, b, ptA } = setup(CR4);
  enter(vm, a.cr3, 0);
  unsyncA(vm, ptA);
  enter(vm, b.cr3, 0);
  assert.deepEqual(prevPgds(vm), [a.cr3, null, null], 'kept: a later switch back syncs it');
  assert.equal(vm.roots().prev[0]!.root!.unsync_children, 1);
  const cr3 = vm.cr3;
  assert.equal(vm.loadCr3(a.cr3, true), false, '#GP');
  assert.equal(vm.cr3, cr3, 'CR3 unchanged');
  // Switching back flushes PCID 0, which is now the cached root's: synced on entry.
  enter(vm, a.cr3, 0);
  assert.equal(vm.roots().root!.unsync_children, 0);
});

test('CR4.PCIDE 0->1 frees the current and every cached root; PGE toggling syncs roots and frees unsync prev roots', () => {
  const { vm, a, b, ptA } = setup(CR4);
  enter(vm, a.cr3, 0);
  enter(vm, b.cr3, 0);
  assert.notEqual(vm.roots().prev[0]!.root, null);
  vm.setRegs(CR0, CR4 | PCIDE, EFER, b.cr3);
  assert.equal(vm.roots().prev.every((p) => p.root === null), true);
  enter(vm, a.cr3, 1);
  unsyncA(vm, ptA);
  enter(vm, b.cr3, 2, true);
  assert.equal(vm.roots().prev[0]!.root!.unsync_children, 1);
  vm.setRegs(CR0, CR4 | PCIDE | PGE, EFER, b.cr3 + 2);
  // KVM_REQ_TLB_FLUSH_GUEST: kvm_mmu_sync_roots + kvm_mmu_sync_prev_roots (frees unsync prev roots).
  assert.deepEqual(prevPgds(vm), [null, null, null]);
});

test('INVPCID single-context: frees cached roots of that PCID, syncs the current root when it is that PCID', () => {
  const { vm, a, b, c, ptA } = setup();
  enter(vm, a.cr3, 1);
  enter(vm, b.cr3, 2);
  enter(vm, c.cr3, 3);
  assert.equal(vm.invpcid(INVPCID_TYPE_SINGLE_CTXT, 2, 0), true);
  assert.deepEqual(prevPgds(vm), [null, a.cr3 + 1, null]);
  enter(vm, a.cr3, 1, true);
  unsyncA(vm, ptA);
  assert.equal(vm.invpcid(INVPCID_TYPE_SINGLE_CTXT, 1, 0), true);
  assert.equal(vm.roots().root!.unsync_children, 0, 'the current root is PCID 1: KVM_REQ_MMU_SYNC');
});

test('INVPCID individual-address: resyncs the address only under roots whose CR3 carries the PCID', () => {
  const { vm, a, b, ptA } = setup();
  enter(vm, a.cr3, 1);
  unsyncA(vm, ptA);
  enter(vm, b.cr3, 2, true);
  const pt = vm.sk.active_list().find((s) => s.gfn === ptA / 4096)!;
  const i = (GVA / 4096) % 512;
  // The guest makes GVA read-only in A's table (no exit: the table is unsync).
  vm.mem.write64(a.entryGpa(GVA, 1), (0x400_0000 | GPTE_P | GPTE_U | GPTE_A) >>> 0, 0);
  assert.equal(pt.spt[2 * i]! & 2, 2);
  const invlpg = vm.stats().invlpg!;
  assert.equal(vm.invpcid(INVPCID_TYPE_INDIV_ADDR, 2, GVA), true);
  assert.equal(pt.spt[2 * i]! & 2, 2, 'PCID 2 is B only: A is out of scope');
  assert.equal(vm.invpcid(INVPCID_TYPE_INDIV_ADDR, 1, GVA), true);
  assert.equal(pt.spt[2 * i]! & 2, 0, "resynced through prev_roots[0] (A's PCID)");
  assert.equal(vm.stats().invlpg, invlpg + 2);
});

test('INVPCID all-context (either type): sync the current root, free unsync prev roots', () => {
  for (const type of [INVPCID_TYPE_ALL_NON_GLOBAL, INVPCID_TYPE_ALL_INCL_GLOBAL]) {
    const { vm, a, b, c, ptA } = setup();
    enter(vm, c.cr3, 3);
    enter(vm, a.cr3, 1);
    unsyncA(vm, ptA);
    enter(vm, b.cr3, 2, true);
    assert.deepEqual(prevPgds(vm), [a.cr3 + 1, c.cr3 + 3, null]);
    assert.equal(vm.invpcid(type, 0, 0), true);
    assert.deepEqual(prevPgds(vm), [null, c.cr3 + 3, null], 'only the unsync one is freed');
  }
});

test('INVPCID #GP: PCID above 12 bits, a nonzero PCID with PCIDE=0, a non-canonical address, an unknown type', () => {
  const { vm } = setup();
  assert.equal(vm.invpcid(INVPCID_TYPE_SINGLE_CTXT, 0x1000, 0), false);
  assert.equal(vm.invpcid(INVPCID_TYPE_INDIV_ADDR, 1, 0x8000_0000_0000), false);
  assert.equal(vm.invpcid(INVPCID_TYPE_INDIV_ADDR, 1, 0x7fff_ffff_f000), true);
  assert.equal(vm.invpcid(4, 0, 0), false);
  const off = setup(CR4).vm;
  assert.equal(off.invpcid(INVPCID_TYPE_SINGLE_CTXT, 1, 0), false);
  assert.equal(off.invpcid(INVPCID_TYPE_INDIV_ADDR, 1, 0x1000), false);
  assert.equal(off.invpcid(INVPCID_TYPE_SINGLE_CTXT, 0, 0), true);
});
