/**
 * Shadow paging with several vCPUs (kvm-x86-mmu.md 4.8, 5.4): shadow pages shared by role with a
 * root_count per vCPU using them, per-vCPU roots/prev_roots and requests, and one vCPU's guest
 * page-table writes (unsync, emulated zap, flooding) reaching the other vCPU through remote TLB
 * flushes, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS and the sync on its next CR3 load.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { ROLE_INVALID } from '../../../../src/engine/x86/role';

const CR0 = (1 | 0x10 | (1 << 16) | (1 << 31)) >>> 0;
const CR4 = (1 << 5) | (1 << 4);
const EFER = (1 << 8) | (1 << 10);
const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;

/** Two vCPUs on the same CR3; the guest maps its own tables at 0x4000_0000 + table gpa. */
function twoVcpus() {
  const vm = new ShadowVm({ mem_bytes: 64 << 20, cr0: CR0, cr4: CR4, efer: EFER, cr3: 0, vcpus: 2 });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  b.map(0x40_0000, 0x20_0000, ALL);
  b.map(0x40_1000, 0x20_1000, ALL);
  const pt = b.entryGpa(0x40_0000, 1) - (b.entryGpa(0x40_0000, 1) % 4096);
  const pd = b.entryGpa(0x40_0000, 2) - (b.entryGpa(0x40_0000, 2) % 4096);
  b.map(0x4000_0000 + pt, pt, ALL);
  b.map(0x4000_0000 + pd, pd, ALL);
  for (const i of [0, 1]) {
    vm.useVcpu(i);
    vm.setRegs(CR0, CR4, EFER, b.cr3);
  }
  return { vm, b, pt, pd };
}

test('vCPUs with the same CR3 and role share the root shadow page: one root_count per vCPU', () => {
  const { vm } = twoVcpus();
  vm.useVcpu(0);
  vm.access(0x40_0000);
  const root0 = vm.sv.root_sp!;
  assert.equal(root0.root_count, 1);
  vm.useVcpu(1);
  const created = vm.sk.counters.sp_created;
  assert.equal(vm.access(0x40_0000), 0, 'the shared shadow pages already map it');
  assert.equal(vm.sv.root_sp, root0);
  assert.equal(root0.root_count, 2);
  assert.equal(vm.sk.counters.sp_created, created);
  // Each vCPU has its own CR3 root cache: vCPU 1 switching CR3 puts the root in its prev_roots only.
  const b2 = new GuestPageTableBuilder(vm.mem, 4, 0x80_0000);
  vm.setRegs(CR0, CR4, EFER, b2.cr3);
  vm.reload();
  assert.notEqual(vm.sv.root_sp, root0);
  assert.equal(vm.sv.prev_roots[0]!.sp, root0);
  vm.useVcpu(0);
  assert.equal(vm.sv.root_sp, root0);
  assert.ok(vm.sv.prev_roots.every((p) => p.sp === null));
  assert.equal(root0.root_count, 2, 'a prev_roots entry keeps its reference');
});

test("one vCPU's write to a leaf guest table unsyncs the shared page; the other vCPU sees the old SPTE until its CR3 load syncs", () => {
  const { vm, pt } = twoVcpus();
  for (const i of [0, 1]) {
    vm.useVcpu(i);
    vm.access(0x40_1000);
  }
  vm.useVcpu(0);
  // The guest repoints gva 0x401000 from gfn 0x201 to gfn 0x300 with a store through its own mapping.
  assert.equal(vm.guestWrite(0x4000_0000 + pt + 8, (0x30_0000 | ALL) >>> 0, 0), 'direct');
  const sp = vm.sk.active_list().find((p) => p.gfn === pt / 4096)!;
  assert.equal(sp.unsync, true);
  assert.equal(vm.sv.root_sp!.unsync_children, 1);
  vm.useVcpu(1);
  vm.reload();
  assert.equal(vm.gvaToGpa(0x40_1000), 0x20_1000, 'stale until the guest flushes its TLB');
  // MOV CR3 with the same value: KVM_REQ_MMU_SYNC and KVM_REQ_TLB_FLUSH_CURRENT, serviced at entry.
  assert.ok(vm.loadCr3(vm.cr3));
  assert.equal(sp.unsync, false);
  assert.equal(vm.sv.root_sp!.unsync_children, 0);
  vm.access(0x40_1000);
  assert.equal(vm.gvaToGpa(0x40_1000), 0x30_0000);
});

test("an emulated write to an upper-level table zaps the SPTE both vCPUs use and flushes every vCPU's TLB", () => {
  const { vm, pd } = twoVcpus();
  for (const i of [0, 1]) {
    vm.useVcpu(i);
    vm.access(0x40_0000);
  }
  const flushes = vm.kvm.stat.remote_tlb_flush;
  const tlb1 = vm.vcpus[1]!.vcpu.stat.tlb_flush;
  vm.useVcpu(0);
  // Clear the PDE of 0x400000 (index 2 of the PD page).
  assert.equal(vm.guestWrite(0x4000_0000 + pd + 2 * 8, 0, 0), 'emulated');
  assert.equal(vm.kvm.stat.remote_tlb_flush, flushes + 1);
  assert.notEqual(vm.vcpus[1]!.vcpu.requests & 1, 0, 'KVM_REQ_TLB_FLUSH pending on vCPU 1');
  vm.useVcpu(1);
  vm.reload();
  assert.equal(vm.vcpus[1]!.vcpu.stat.tlb_flush, tlb1 + 1);
  assert.equal(vm.translate(0x40_0000), null);
  assert.equal(vm.access(0x40_0000), -1, 'the guest now gets #PF');
});

test('write flooding of the root table from one vCPU zaps the shared root; every vCPU drops it on its next entry', () => {
  const { vm, b } = twoVcpus();
  for (const i of [0, 1]) {
    vm.useVcpu(i);
    vm.access(0x40_0000);
  }
  const root = vm.vcpus[0]!.sv.root_sp!;
  assert.equal(root.root_count, 2);
  // The guest maps its PML4 page and stores to an unused entry until the flooding check zaps the page.
  vm.useVcpu(0);
  b.map(0x5000_0000, b.cr3, ALL);
  vm.access(0x5000_0000);
  for (let i = 0; i < 4 && (root.role & ROLE_INVALID) === 0; i++) vm.guestWrite(0x5000_0000 + 400 * 8, 0, 0);
  assert.notEqual(root.role & ROLE_INVALID, 0);
  for (const i of [0, 1]) {
    vm.useVcpu(i);
    vm.reload();
    assert.notEqual(vm.sv.root_sp, root, `vCPU ${i} loaded a new root`);
  }
  assert.equal(vm.vcpus[0]!.sv.root_sp, vm.vcpus[1]!.sv.root_sp);
  assert.equal(vm.vcpus[0]!.sv.root_sp!.root_count, 2);
});

test('per-vCPU statistics are summed over the vCPUs', () => {
  const { vm, b } = twoVcpus();
  b.map(0x80_0000, 0x28_0000, ALL);
  vm.useVcpu(0);
  vm.access(0x40_0000);
  vm.useVcpu(1);
  vm.access(0x80_0000);
  const per = vm.vcpus.map((v) => v.vcpu.stat.snapshot()['pf_taken'] ?? 0);
  assert.equal(vm.stats()['pf_taken'], per[0]! + per[1]!);
  assert.ok(per[0]! > 0 && per[1]! > 0);
});
