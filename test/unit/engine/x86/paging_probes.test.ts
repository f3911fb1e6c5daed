/**
 * Probes and the nested-translation hook of the walker: the KVM call stack at a permission_fault stop
 * shows walk_addr_generic under it; a failing nested translation ends the walk without a walker_error
 * (the nested fault is reported by the translation).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../../src/engine/mem';
import { kvmStack, probes } from '../../../../src/engine/probes';
import { trace } from '../../../../src/engine/trace_sink';
import { createGuestMmu, GuestWalker, MemoryGuestPageTables, walk_addr_generic, WalkResult } from '../../../../src/engine/x86/paging_tmpl';

const mmu = () =>
  createGuestMmu(
    { cr0_pg: true, cr0_wp: true, cr4_pae: true, cr4_pse: true, cr4_smep: false, cr4_smap: false, cr4_pke: false, cr4_la57: false, efer_lma: true, efer_nx: true },
    { maxphyaddr: 46, gbpages: true, pse36: false, amd: false },
  );

function tables(): MemoryGuestPageTables {
  // addr 0: every index 0.
  const mem = new GuestMemory(2 ** 32);
  mem.write64(0x1000, 0x2007, 0);
  mem.write64(0x2000, 0x3007, 0);
  mem.write64(0x3000, 0x4007, 0);
  mem.write64(0x4000, 0x5007, 0);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1000);
  return src;
}

test('probes: walk_addr_generic and permission_fault hit in order; the stack at permission_fault is walk_addr_generic <- permission_fault', () => {
  const hits: Array<{ name: string; stack: string[]; args: Record<string, unknown> }> = [];
  probes.listen((name, args) => hits.push({ name, args, stack: kvmStack().map((f) => f.name) }));
  try {
    walk_addr_generic(new GuestWalker(), { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu(), tables(), 0x123, 0, 2);
  } finally {
    probes.listen(undefined);
  }
  const names = hits.map((h) => h.name);
  assert.deepEqual(names, ['walk_addr_generic', 'permission_fault', 'update_accessed_dirty_bits']);
  assert.equal(hits[0]!.args.addr, '0x123');
  assert.deepEqual(hits[1]!.stack.slice(0, 2), ['permission_fault', 'walk_addr_generic']);
  assert.equal(hits[1]!.args.errcode, 0);
  assert.ok(probes.info('walk_addr_generic'));
});

test('nested: table and final GPAs go through translate_gpa; a failed translation returns without walker_error', () => {
  const src = tables();
  // L2 GPA -> L1 GPA: identity below 4 GiB but record what was asked.
  const asked: Array<[number, number]> = [];
  src.translate_gpa = (gpa, access) => {
    asked.push([gpa, access]);
    return gpa;
  };
  const w = new GuestWalker();
  assert.equal(walk_addr_generic(w, { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu(), src, 0x123, 0, 4), 1);
  // Table reads are translated as user + write (A/D may be written), the final GPA with the access itself.
  assert.deepEqual(asked, [
    [0x1000, 6],
    [0x2000, 6],
    [0x3000, 6],
    [0x4000, 6],
    [0x5000, 4],
  ]);
  const lines: string[] = [];
  const off = trace.subscribe((e) => lines.push(e.name));
  src.translate_gpa = (gpa) => (gpa === 0x3000 ? -1 : gpa);
  try {
    assert.equal(walk_addr_generic(w, { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu(), src, 0x123, 0, 4), 0);
  } finally {
    off();
  }
  assert.equal(w.result, WalkResult.NESTED_FAULT);
  assert.deepEqual(lines, ['kvm_mmu_pagetable_walk', 'kvm_mmu_paging_element', 'kvm_mmu_paging_element']);
});

test('A/D updates mark the page-table gfns dirty, top level first; gva_to_gpa returns INVALID_GPA on a fault', async () => {
  const { gva_to_gpa, INVALID_GPA } = await import('../../../../src/engine/x86/paging_tmpl');
  const src = tables();
  const dirty: number[] = [];
  src.mark_page_dirty = (gfn) => dirty.push(gfn);
  const w = new GuestWalker();
  assert.equal(gva_to_gpa(w, { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu(), src, 0x123, 0, 6), 0x5123);
  assert.deepEqual(dirty, [1, 2, 3, 4]);
  // A supervisor fetch of a user page with NX set at the leaf faults.
  src.mem.write64(0x4000, 0x5067, 0x8000_0000);
  assert.equal(gva_to_gpa(w, { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu(), src, 0x123, 0, 0x10), INVALID_GPA);
  assert.equal(w.error_code, 0x11);
});
