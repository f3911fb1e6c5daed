// "Why?" for the current fault, on the engine directly: each outcome is attributed to the kernel
// function whose predicate decided it, with the inputs it tested.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm } from '../../../src/engine/x86/index';
import { trace, type TraceEvent } from '../../../src/engine/trace_sink';
import { explainFault, currentFaultVcpu, type WhyFault } from '../../../src/debug/worker/why';

const GiB = 0x4000_0000;

function setup(opts: ConstructorParameters<typeof X86Vm>[0] = {}): { v: X86Vm; events: TraceEvent[]; why: (vcpu?: number) => WhyFault } {
  const v = new X86Vm(opts);
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  test.after(stop);
  const why = (vcpu?: number) => {
    const id = vcpu ?? currentFaultVcpu(events) ?? 0;
    const w = explainFault(v.kvm, v.vcpu(id), events);
    assert.ok(w, 'a fault to explain');
    return w;
  };
  return { v, events, why };
}

function slot(v: X86Vm, gpa: number, size: number, flags = 0): void {
  v.set_user_memory_region({ slot: 0, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: 0x7f00_0000_0000 + gpa, host_backing: '4k', host_pfn_base: 0x40_0000 + gpa / 4096 });
}

const keys = (w: WhyFault) => w.chain.map((d) => d.key);
const said = (w: WhyFault, key: string) => w.chain.find((d) => d.key === key)?.value ?? '';

test('a stale fault: an invalidation between faultin and mmu_lock is RET_PF_RETRY from is_page_fault_stale (mmu_invalidate_retry_gfn)', () => {
  const { v, why } = setup();
  slot(v, 0, GiB);
  const vc = v.vcpu(0);
  let once = true;
  vc.on_faultin_done = () => {
    if (!once) return;
    once = false;
    v.notifier_invalidate(0x7f00_0000_0000 + 0x8000, 0x7f00_0000_0000 + 0x9000);
  };
  assert.equal(v.access(0, 0x8000, 'write').ret_pf, 1);
  const w = why();
  assert.equal(w.ret_pf, 'RET_PF_RETRY');
  assert.equal(w.gfn, 8);
  assert.ok(keys(w).includes('kvm_mmu_faultin_pfn'), keys(w).join(' > '));
  assert.match(said(w, 'is_page_fault_stale'), /mmu_invalidate_retry_gfn.*mmu_invalidate_seq 1 != fault->mmu_seq 0/);
  assert.equal(keys(w).at(-1), 'is_page_fault_stale', 'the last decision is the one that made it RETRY');
  // The retry maps it: the slow path, decided by kvm_tdp_mmu_map.
  assert.equal(v.access(0, 0x8000, 'write').outcome, 'fixed');
  const again = why();
  assert.equal(again.ret_pf, 'RET_PF_FIXED');
  assert.equal(again.path, 'slow');
  assert.match(said(again, 'kvm_tdp_mmu_map'), /^RET_PF_FIXED: installed a 4K leaf/);
  assert.ok(!keys(again).includes('is_page_fault_stale'));
});

test('the fast path: a write to an SPTE write-protected for dirty logging is fixed by fast_page_fault', () => {
  const { v, why } = setup();
  slot(v, 0, GiB);
  v.access(0, 0x3000, 'write');
  assert.equal(why().path, 'slow');
  assert.match(said(why(), 'page_fault_can_be_fast'), /^no: a not-present fault with A\/D bits enabled/);
  // KVM_GET_DIRTY_LOG write-protects the logged SPTE: the next write is the fast path's to fix.
  assert.equal(v.set_dirty_logging(0, true), 0);
  assert.ok(v.get_dirty_log(0) instanceof Uint32Array);
  v.access(0, 0x3000, 'write');
  const w = why();
  assert.equal(w.ret_pf, 'RET_PF_FIXED');
  assert.equal(w.path, 'fast');
  assert.match(said(w, 'page_fault_can_be_fast'), /^yes: a present write/);
  assert.match(said(w, 'fast_page_fault'), /^RET_PF_FIXED: fixed locklessly/);
  assert.ok(!keys(w).includes('kvm_mmu_faultin_pfn'), 'no faultin on the fast path');
});

test('a hardware-poisoned host page: RET_PF_RETRY from kvm_handle_error_pfn', () => {
  const { v, why } = setup();
  slot(v, 0, GiB);
  v.kvm.kvm_memslots(0).byId(0)!.host_hwpoison.add(0x10);
  v.access(0, 0x10000, 'read');
  const w = why();
  assert.equal(w.ret_pf, 'RET_PF_RETRY');
  assert.equal(keys(w).at(-1), 'kvm_handle_error_pfn');
  assert.match(said(w, 'kvm_handle_error_pfn'), /hardware-poisoned/);
});

test('a private/shared mismatch: KVM_EXIT_MEMORY_FAULT from kvm_mmu_faultin_pfn, with the attribute it compared', () => {
  const { v, why } = setup({ vm_type: 1 });
  v.set_user_memory_region({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: GiB, userspace_addr: 0x7f00_0000_0000, host_backing: '4k', host_pfn_base: 0x40_0000 });
  // A direct fault that claims private on a gfn whose attribute is shared.
  assert.equal(v.fault(0, 0x6000, 0, 1 << (49 - 32)), -14);
  const w = why();
  assert.equal(w.ret_pf, '-EFAULT');
  assert.equal(w.path, 'memory-fault');
  assert.match(said(w, 'kvm_mmu_faultin_pfn'), /^KVM_EXIT_MEMORY_FAULT \(gpa 0x6000 size 0x1000 flags KVM_MEMORY_EXIT_FLAG_PRIVATE\): the access is private but the gfn's attributes say shared/);
  assert.match(said(w, 'page_fault_can_be_fast'), /^no: the access is private but the gfn is shared/);
});

test('no memslot: kvm_handle_noslot_fault installs an MMIO SPTE; another vCPU\'s access takes handle_mmio_page_fault (check_mmio_spte)', () => {
  const { v, why } = setup({ nr_vcpus: 2 });
  slot(v, 0, GiB);
  v.access(0, 0xfee0_0000, 'write');
  let w = why();
  assert.equal(w.ret_pf, 'RET_PF_EMULATE');
  assert.ok(keys(w).includes('kvm_handle_noslot_fault'), keys(w).join(' > '));
  assert.ok(keys(w).includes('mark_mmio_spte'));
  assert.equal(keys(w).at(-1), 'x86_emulate_instruction');
  assert.match(said(w, 'x86_emulate_instruction'), /KVM_EXIT_MMIO/);
  // vCPU 1 has no MMIO info cached: its RSVD fault walks to the MMIO SPTE and checks its generation.
  v.access(1, 0xfee0_0000, 'read');
  w = why();
  assert.equal(w.vcpu, 1);
  assert.equal(w.path, 'mmio');
  assert.deepEqual(keys(w).slice(0, 3), ['kvm_mmu_page_fault', 'check_mmio_spte', 'handle_mmio_page_fault']);
  assert.match(said(w, 'handle_mmio_page_fault'), /^RET_PF_EMULATE via the MMIO SPTE/);
});

test('a write to a read-only memslot: KVM_PFN_ERR_RO_FAULT, emulated by kvm_handle_error_pfn', () => {
  const { v, why } = setup();
  slot(v, 0, GiB, 2);
  v.access(0, 0x2000, 'write');
  const w = why();
  assert.equal(w.ret_pf, 'RET_PF_EMULATE');
  assert.match(said(w, '__kvm_mmu_faultin_pfn'), /read-only memslot 0: KVM_PFN_ERR_RO_FAULT/);
  assert.match(said(w, 'kvm_handle_error_pfn'), /^RET_PF_EMULATE/);
});

test('multiple vCPUs: the current fault is the latest one, and a vCPU can be asked for by id', () => {
  const { v, why } = setup({ nr_vcpus: 2 });
  slot(v, 0, GiB);
  v.access(0, 0x1000, 'read');
  v.access(1, 0x5000, 'read');
  assert.equal(why().vcpu, 1);
  assert.equal(why().gfn, 5);
  assert.equal(why(0).gfn, 1);
});
