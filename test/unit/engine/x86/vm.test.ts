import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, slot, vm } from './fault_helpers';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_X86_TDX_VM } from '../../../../src/engine/x86/index';
import { nx_huge_pages_recovery_period, default_module_params } from '../../../../src/engine/x86/params';
import { probes, kvmStack } from '../../../../src/engine/probes';
import { kvm_gmem_create } from '../../../../src/engine/kvm/guest_memfd';

const U = 0x7f00_0000_0000;
const region = (slotn: number, gpa: number, size: number, flags = 0, uaddr = U + gpa) => ({ slot: slotn, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: uaddr });

test('KVM_SET_USER_MEMORY_REGION2 argument checks', () => {
  const v = vm();
  assert.equal(v.set_user_memory_region(region(0, 0, 0x1800)), -22, 'size not page aligned');
  assert.equal(v.set_user_memory_region(region(0, 0x800, 0x1000)), -22, 'gpa not page aligned');
  assert.equal(v.set_user_memory_region(region(0, 0, 0x1000, 1 << 3)), -22, 'unknown flag');
  assert.equal(v.set_user_memory_region(region(0, 0, 0x1000, KVM_MEM_GUEST_MEMFD)), -22, 'no private memory on a default VM');
  assert.equal(v.set_user_memory_region(region(2 << 16, 0, 0x1000)), -22, 'address space 2 does not exist');
  assert.equal(v.set_user_memory_region(region(32764, 0, 0x1000)), -22, 'slot id beyond KVM_USER_MEM_SLOTS');
  assert.equal(v.set_user_memory_region(region(0, 0, 0)), -22, 'deleting a slot that does not exist');
  assert.equal(v.set_user_memory_region(region(0, 0, GiB)), 0);
  assert.equal(v.set_user_memory_region(region(1, GiB - 0x1000, 0x2000)), -17, 'overlap');
  assert.equal(v.set_user_memory_region(region(0, 0, 2 * GiB)), -22, 'resizing');
  assert.equal(v.set_user_memory_region(region(0, 0, GiB, KVM_MEM_READONLY)), -22, 'toggling READONLY');
  assert.equal(v.set_user_memory_region(region(0, 0, GiB, 0, U + 0x1000)), -22, 'changing the HVA');
  assert.equal(v.set_user_memory_region(region(1 << 16, 0, GiB)), 0, 'the SMM address space is separate');
  assert.equal(v.set_user_memory_region(region(0, 0, GiB)), 0, 'no change is a no-op');
});

test('TDX: one address space, guest_memfd slots can be neither read-only nor dirty-logged, and no alias gfns', () => {
  const v = vm({ vm_type: KVM_X86_TDX_VM });
  assert.equal(kvm_gmem_create(v.kvm.private_mem, { size: GiB, flags: 0 }), 3);
  assert.equal(v.set_user_memory_region(region(1 << 16, 0, GiB)), -22);
  assert.equal(v.set_user_memory_region({ ...region(0, 0, GiB, KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY), guest_memfd: 3 }), -22);
  assert.equal(v.set_user_memory_region({ ...region(0, 0, GiB, KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES), guest_memfd: 3 }), -22);
  assert.equal(v.set_user_memory_region(region(0, 2 ** 47, GiB)), -22, 'a slot in the shared alias');
  assert.equal(v.set_user_memory_region({ ...region(0, 0, GiB, KVM_MEM_GUEST_MEMFD), guest_memfd: 3 }), 0);
  assert.equal(v.set_user_memory_region({ ...region(0, 0, GiB, KVM_MEM_GUEST_MEMFD), guest_memfd: 3 }), -22, 'guest_memfd slots are immutable');
});

test('memslot generation: +2 per update with SMM, delete publishes twice, TDX counts by 1', () => {
  const v = vm();
  assert.equal(v.kvm.kvm_memslots(0).generation, 0);
  assert.equal(v.kvm.kvm_memslots(1).generation, 1);
  slot(v, 0, 0, GiB);
  assert.equal(v.kvm.kvm_memslots(0).generation, 2);
  assert.equal(v.kvm.kvm_memslots(1).generation, 1);
  v.set_user_memory_region(region(0, 0, 0));
  assert.equal(v.kvm.kvm_memslots(0).generation, 6);
  const t = vm({ vm_type: KVM_X86_TDX_VM });
  assert.equal(kvm_gmem_create(t.kvm.private_mem, { size: GiB, flags: 0 }), 3);
  t.set_user_memory_region({ ...region(0, 0, GiB, KVM_MEM_GUEST_MEMFD), guest_memfd: 3 });
  assert.equal(t.kvm.kvm_memslots(0).generation, 1);
});

test('an MMIO generation wrap zaps all roots fast', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x1000, 'read');
  v.kvm.kvm_memslots(0).generation = 0x7fffe;
  slot(v, 1, GiB, GiB); // 0x7fffe + 2 = 0x80000: the 19-bit MMIO generation is 0
  assert.equal(v.kvm.arch.mmu_valid_gen, 1);
  assert.equal(v.stats().vm.pages_4k, 0);
});

test('moving a slot: the old mappings go, the new gpa range maps the same host pages', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x3000, 'read');
  const pfn = v.read_spte(3, 1)!.pfn;
  assert.equal(v.set_user_memory_region(region(0, 4 * GiB, GiB, 0, U)), 0);
  assert.equal(v.stats().vm.pages_4k, 0);
  v.access(0, 4 * GiB + 0x3000, 'read');
  assert.equal(v.read_spte(0x100003, 1)!.pfn, pfn);
  v.access(0, 0x3000, 'read');
  assert.equal(v.stats().vcpus[0]!.pf_mmio_spte_created, 1, 'the old range is MMIO now');
});

test('module parameters: NX recovery period derives from the ratio', () => {
  const p = default_module_params();
  assert.deepEqual(nx_huge_pages_recovery_period(p), { enabled: true, period_ms: 60_000 });
  assert.deepEqual(nx_huge_pages_recovery_period({ ...p, nx_huge_pages_recovery_ratio: 7200 }), { enabled: true, period_ms: 1000 });
  assert.deepEqual(nx_huge_pages_recovery_period({ ...p, nx_huge_pages_recovery_period_ms: 5 }), { enabled: true, period_ms: 5 });
  assert.equal(nx_huge_pages_recovery_period({ ...p, nx_huge_pages_recovery_ratio: 0 }).enabled, false);
  assert.throws(() => vm({ params: { tdp_root_level: 5 } }), /exceeds max_tdp_level/);
});

test('probes: every fault-path function is a stop point with its arguments, and the KVM stack is derived from it', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.enter(v.vcpu(0));
  const hits: string[] = [];
  let stack: string[] = [];
  let gfnAtMap = -1;
  probes.listen((name, args) => {
    hits.push(name);
    if (name === 'tdp_mmu_map_handle_target_level') {
      stack = kvmStack().map((f) => f.name);
      gfnAtMap = (args['fault'] as { gfn: number }).gfn;
    }
  });
  try {
    v.access(0, 0x12_3000, 'write');
  } finally {
    probes.listen(undefined);
  }
  for (const n of ['handle_ept_violation', 'kvm_mmu_page_fault', 'kvm_mmu_do_page_fault', 'kvm_tdp_page_fault', 'kvm_tdp_mmu_page_fault',
    'kvm_mmu_faultin_pfn', 'is_page_fault_stale', 'kvm_tdp_mmu_map', 'kvm_mmu_hugepage_adjust', 'tdp_mmu_link_sp', 'handle_changed_spte',
    'tdp_mmu_map_handle_target_level', 'make_spte', 'kvm_mmu_finish_page_fault']) {
    assert.ok(hits.includes(n), `probe ${n} hit`);
  }
  assert.deepEqual(stack.slice(0, 7), ['tdp_mmu_map_handle_target_level', 'kvm_tdp_mmu_map', 'kvm_tdp_mmu_page_fault', 'kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault', '__vmx_handle_ept_violation']);
  assert.equal(gfnAtMap, 0x123);
});

test('KVM_SET_CPUID2: guest MAXPHYADDR > 48 needs a 5-level root; after KVM_RUN only identical values pass', () => {
  const v = vm({ vendor_config: { max_tdp_level: 5, host_maxphyaddr: 52 }, guest_maxphyaddr: 48 });
  assert.equal(v.set_guest_maxphyaddr(0, 52), 0);
  v.enter(v.vcpu(0));
  assert.equal(v.current_root(0)!.role, 0x3785);
  assert.equal(v.set_guest_maxphyaddr(0, 48), -22);
  assert.equal(v.set_guest_maxphyaddr(0, 52), 0);
  const w = vm({ vendor_config: { max_tdp_level: 5, host_maxphyaddr: 52 } });
  assert.equal(w.set_guest_maxphyaddr(0, 46), 0);
  w.enter(w.vcpu(0));
  assert.equal(w.current_root(0)!.role, 0x3784);
});
