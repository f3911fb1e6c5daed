/**
 * TDG.VP.VMCALL<MapGPA> as KVM 6.18 handles it (vmx/tdx.c tdx_map_gpa, __tdx_map_gpa,
 * tdx_complete_vmcall_map_gpa): operand checks and their GHCI status codes, KVM_HC_MAP_GPA_RANGE exits
 * of at most 2M with the shared bit stripped from args[0], and the conversion the VMM performs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, slot, vm } from './fault_helpers';
import { KVM_X86_TDX_VM, KVM_MEM_GUEST_MEMFD, PRIVATE } from '../../../../src/engine/x86/index';
import { KVM_MAP_GPA_RANGE_ENCRYPTED, vmm_handle_map_gpa_range } from '../../../../src/engine/x86/sev_snp';
import {
  KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE, KVM_HC_MAP_GPA_RANGE, kvm_complete_userspace_hypercall, kvm_enable_cap_exit_hypercall,
  vcpu_run_state, vmm_run_map_gpa,
} from '../../../../src/engine/x86/hypercall_exit';
import {
  TDVMCALL_STATUS_ALIGN_ERROR, TDVMCALL_STATUS_INVALID_OPERAND, TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED, TDVMCALL_STATUS_SUCCESS,
  tdx_map_gpa, tdx_map_gpa_state,
} from '../../../../src/engine/x86/tdx_map_gpa';

const SHARED = 2 ** 47; // GPAW 48: GPA bit 47
const MiB = 1 << 20;

function td() {
  const v = vm({ vm_type: KVM_X86_TDX_VM });
  assert.equal(slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD }), 0);
  assert.equal(v.set_memory_attributes(0, GiB, PRIVATE), 0);
  return { v, vcpu: v.vcpu(0), kvm: v.kvm };
}

const status = (vcpu: object) => {
  const s = tdx_map_gpa_state(vcpu as never);
  return [s.r10_lo, s.r10_hi];
};

test('operand checks: no KVM_CAP_EXIT_HYPERCALL, wrap or illegal GPA, private/shared mix, misalignment', () => {
  const { vcpu, kvm } = td();
  assert.equal(kvm_enable_cap_exit_hypercall(kvm.private_mem, 0), 0);
  assert.equal(tdx_map_gpa(vcpu, SHARED, 4096), 1);
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED]);
  assert.equal(tdx_map_gpa_state(vcpu).r11, SHARED, 'R11 reports where to resume');
  assert.equal(kvm_enable_cap_exit_hypercall(kvm.private_mem, 1 << KVM_HC_MAP_GPA_RANGE), 0);
  assert.equal(tdx_map_gpa(vcpu, SHARED - 4096, 8192), 1, 'the range straddles the shared bit');
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_INVALID_OPERAND]);
  assert.equal(tdx_map_gpa(vcpu, 2 ** 48 - 4096, 8192), 1, 'beyond MAXPHYADDR');
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_INVALID_OPERAND]);
  assert.equal(tdx_map_gpa(vcpu, 0x1000, 0), 1, 'empty');
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_INVALID_OPERAND]);
  assert.equal(tdx_map_gpa(vcpu, SHARED + 0x800, 4096), 1);
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_ALIGN_ERROR]);
  assert.equal(vcpu_run_state(vcpu).run, null, 'no exit for any of them');
});

test('a 5M shared request: three exits of 2M, 2M and 1M with the shared bit stripped; the VMM converts each', () => {
  const { v, vcpu, kvm } = td();
  const gpa = SHARED + 0x20_0000;
  assert.equal(tdx_map_gpa(vcpu, gpa, 5 * MiB), 0);
  const r = vcpu_run_state(vcpu).run!;
  assert.deepEqual([r.exit_reason, r.nr, r.gpa, r.npages, r.attrs, r.flags], [KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, 0x20_0000, 512, 0, KVM_EXIT_HYPERCALL_LONG_MODE]);
  const exits = vmm_run_map_gpa(vcpu, 0, (ex) => vmm_handle_map_gpa_range(kvm.private_mem, ex));
  assert.deepEqual(exits.map((e) => [e.gpa, e.npages]), [[0x20_0000, 512], [0x40_0000, 512], [0x60_0000, 256]]);
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_SUCCESS]);
  assert.equal(kvm.kvm_mem_is_private(0x200), false);
  assert.equal(kvm.kvm_mem_is_private(0x6ff), false);
  assert.equal(kvm.kvm_mem_is_private(0x700), true, 'nothing past the request');
  // Shared now: an access through the shared alias maps without a memory-fault exit.
  const a = v.access(0, SHARED + 0x20_0000, 'read');
  assert.equal(a.ret, 1);
});

test('private requests carry ENCRYPTED; a failed conversion ends the call with INVALID_OPERAND and R11 at the failed chunk', () => {
  const { vcpu } = td();
  assert.equal(tdx_map_gpa(vcpu, 0x40_0000, 4 * MiB), 0);
  assert.equal(vcpu_run_state(vcpu).run!.attrs, KVM_MAP_GPA_RANGE_ENCRYPTED);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 0), 0, 'the second chunk');
  assert.equal(vcpu_run_state(vcpu).run!.gpa, 0x60_0000);
  assert.equal(kvm_complete_userspace_hypercall(vcpu, 1), 1);
  assert.deepEqual(status(vcpu), [...TDVMCALL_STATUS_INVALID_OPERAND]);
  assert.equal(tdx_map_gpa_state(vcpu).r11, 0x60_0000);
});
