/**
 * One fault entry for every x86 MMU mode (kvm-x86-mmu.md §4.3): with TDP off, the intercepted #PF goes
 * through mmu.ts's kvm_mmu_page_fault and kvm_mmu_do_page_fault, which calls mmu->page_fault: the shadow
 * MMU's paging64/paging32_page_fault, or nonpaging_page_fault (max 2M) with CR0.PG = 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probes, kvmStack, type KvmFrame } from '../../../../src/engine/probes';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import * as shadow_paging from '../../../../src/engine/x86/shadow_paging';
import { kvm_tdp_page_fault } from '../../../../src/engine/x86/mmu';
import { PFERR_USER_MASK, PFERR_WRITE_MASK } from '../../../../src/engine/x86/pferr';
import { RET_PF_FIXED, RET_PF_RETRY } from '../../../../src/engine/x86/ret_pf';
import { X86Vm } from '../../../../src/engine/x86/index';

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;

function stackAt(probe: string, fn: () => void): KvmFrame[] {
  let stack: KvmFrame[] | undefined;
  probes.listen((name) => {
    if (name === probe && stack === undefined) stack = kvmStack();
  });
  try {
    fn();
  } finally {
    probes.listen(undefined);
  }
  assert.ok(stack, `${probe} was hit`);
  return stack;
}

test('TDP off, 4-level guest: the #PF enters mmu.ts and reaches paging64_page_fault through mmu->page_fault', () => {
  const vm = new ShadowVm({ mem_bytes: 256 << 20 });
  const b = new GuestPageTableBuilder(vm.mem, 4, 0x10_0000);
  vm.setRegs(vm.cr0, vm.cr4, vm.efer, b.cr3);
  b.map(0x1000, 0x40_0000, ALL);
  const stack = stackAt('paging64_page_fault', () => assert.equal(vm.fault(0x1000, PFERR_USER_MASK | PFERR_WRITE_MASK), RET_PF_FIXED));
  assert.deepEqual(stack.slice(0, 3).map((f) => f.name), ['paging64_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault']);
  assert.match(stack[1]!.file ?? '', /x86\/mmu\.ts$/, 'kvm_mmu_do_page_fault is mmu.ts\'s');
  assert.match(stack[2]!.file ?? '', /x86\/mmu\.ts$/, 'kvm_mmu_page_fault is mmu.ts\'s');
  const f = vm.vcpu.fault;
  assert.equal(f.is_tdp, false);
  assert.equal(f.gfn, 0x400, 'the gfn comes from the guest walk');
  assert.equal(vm.vcpu.stat.pf_taken, 1);
  assert.equal(vm.vcpu.stat.pf_fixed, 1);
  assert.equal(vm.vcpu.last_outcome, 'fixed');
  assert.equal(vm.translate(0x1000)!.level, 1);
  assert.notEqual(vm.vcpu.mmu.page_fault, kvm_tdp_page_fault);
  // The shadow MMU has no entry of its own any more.
  const sp = shadow_paging as unknown as Record<string, unknown>;
  assert.equal(sp['kvm_mmu_page_fault'], undefined);
  assert.equal(sp['kvm_mmu_do_page_fault'], undefined);
});

test('TDP off, 2-level guest: paging32_page_fault; a failed guest walk injects #PF and retries', () => {
  const vm = new ShadowVm({ mem_bytes: 64 << 20, cr4: 0x10, efer: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 2, 0x10_0000);
  vm.setRegs(0x8001_0011, 0x10, 0, b.cr3);
  b.map(0x2000, 0x30_0000, ALL);
  const stack = stackAt('paging32_page_fault', () => assert.equal(vm.fault(0x2000, PFERR_USER_MASK), RET_PF_FIXED));
  assert.deepEqual(stack.slice(0, 3).map((f) => f.name), ['paging32_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault']);
  assert.equal(vm.fault(0x80_0000, PFERR_USER_MASK), RET_PF_RETRY);
  assert.equal(vm.sv.injected!.vector, 14);
  assert.equal(vm.sv.injected!.address, 0x80_0000);
});

test('TDP off, CR0.PG = 0: nonpaging_page_fault maps gva = gpa directly, at most 2M', () => {
  const vm = new ShadowVm({ mem_bytes: 64 << 20, host_backing: '2m-thp', cr0: 0x11, cr4: 0, efer: 0 });
  const stack = stackAt('nonpaging_page_fault', () => assert.equal(vm.fault(0x20_1000, PFERR_USER_MASK), RET_PF_FIXED));
  assert.deepEqual(stack.slice(0, 3).map((f) => f.name), ['nonpaging_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault']);
  const f = vm.vcpu.fault;
  assert.equal(f.gfn, 0x201, 'a direct MMU knows the gfn before the handler');
  assert.equal(f.slot, vm.slot);
  assert.equal(f.max_level, 2);
  assert.equal(f.is_tdp, false);
});

test('TDP on: the same entry calls kvm_tdp_page_fault', () => {
  const v = new X86Vm();
  v.add_slot(0, 0, 1 << 30);
  assert.equal(v.vcpu(0).mmu.page_fault, kvm_tdp_page_fault);
  const stack = stackAt('kvm_tdp_page_fault', () => assert.equal(v.access(0, 0x3000, 'read').outcome, 'fixed'));
  assert.deepEqual(stack.slice(0, 3).map((f) => f.name), ['kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault']);
  assert.equal(v.vcpu(0).fault.is_tdp, true);
});
