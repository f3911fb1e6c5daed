/**
 * Scenario binding of the shadow MMU over several memslots: guest tables in a high slot, a gfn without a
 * slot exiting as MMIO, and slot move and delete flushing shadow pages (kvm_arch_flush_shadow_memslot).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadScenario } from '../../../src/scenario/load';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';

function run(text: string): ScenarioRunner {
  const prog = loadScenario('t', { read: (p) => (p === 't' ? text : undefined), resolve: (_f, rel) => rel });
  assert.deepEqual(prog.diagnostics.map(formatDiagnostic), []);
  const r = new ScenarioRunner(prog);
  r.run();
  r.dispose();
  return r;
}

const SETUP = [
  'vm arch=x86 vendor=intel tdp=off maxphyaddr=46 vcpus=1',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M',
  'KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x100000000 size=16M',
  'expect ret 0',
  'guest map cr3=0x100010000 gva 0x400000..0x401000 gpa=0x200000 page=4K flags=rw',
  'guest map cr3=0x100010000 gva 0x800000..0x801000 gpa=0x100400000 page=4K flags=rw',
  'guest map cr3=0x100010000 gva 0xc00000..0xc01000 gpa=0x80000000 page=4K flags=rw',
  'guest set cr3=0x100010000 cr4=0x20 efer=0xd00 cr0=0x80010011',
];

describe('shadow paging over several memslots', () => {
  it('shadows tables in a high slot and exits to userspace for a gfn without a slot', () => {
    const r = run([
      ...SETUP,
      'guest write gva=0x800000',
      'expect spte gva=0x800000 kind=leaf level=1 w=1',
      'expect sp gfn=0x100010 level=4',
      'guest read gva=0xc00010',
      'expect exit KVM_EXIT_MMIO gpa=0x80000010 is_write=0',
      'expect trace mark_mmio_spte count=1',
      'expect memslot slot=1 base_gfn=0x100000 npages=4096',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });

  it('moving and deleting slots zaps all roots fast (KVM_X86_QUIRK_SLOT_ZAP_ALL) and the old GPAs turn into MMIO', () => {
    const r = run([
      ...SETUP,
      'guest read gva=0x400000',
      'expect exit none',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0x200000000 size=16M',
      'expect ret 0',
      'expect trace kvm_mmu_zap_all_fast count=1',
      'expect memslot slot=0 base_gfn=0x200000',
      'guest read gva=0x400000',
      'expect exit KVM_EXIT_MMIO gpa=0x200000',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0x200000000 size=0',
      'expect ret 0',
      'expect trace kvm_mmu_zap_all_fast count=1',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0x200000000 size=0',
      'expect ret -22',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });

  it('dirty logging and KVM_GET_DIRTY_LOG work per slot', () => {
    const r = run([
      ...SETUP,
      'dirty_log enable slot=1',
      'guest write gva=0x400000',
      'guest write gva=0x800000',
      'KVM_GET_DIRTY_LOG slot=1',
      'expect ret 0',
      'expect dirty slot=1 gfn=0x100400 dirty=1',
      'KVM_GET_DIRTY_LOG slot=0',
      'expect ret -2',
      'KVM_GET_DIRTY_LOG slot=7',
      'expect ret -2',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });

  it('with KVM_X86_QUIRK_SLOT_ZAP_ALL disabled a delete zaps only the slot (kvm_mmu_zap_memslot)', () => {
    const r = run([
      ...SETUP,
      'KVM_ENABLE_CAP KVM_CAP_DISABLE_QUIRKS2 args0=KVM_X86_QUIRK_SLOT_ZAP_ALL',
      'expect ret 0',
      'guest read gva=0x400000',
      'guest read gva=0x800000',
      'memslot delete slot=0',
      'expect ret 0',
      'expect trace kvm_mmu_zap_all_fast count=0',
      // The tables live in slot 1: their shadow pages stay, only the leaf into slot 0 is gone.
      'expect sp gfn=0x100010 level=4 role.invalid=0',
      'expect spte gva=0x400000 kind=nonpresent',
      'expect spte gva=0x800000 kind=leaf level=1',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });

  it('the TDP MMU honours the disabled quirk too', () => {
    const r = run([
      'vm arch=x86 vendor=intel tdp=on maxphyaddr=46 vcpus=1',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M',
      'KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x100000000 size=16M',
      'memslot delete slot=1',
      'expect trace kvm_mmu_zap_all_fast count=1',
      'KVM_ENABLE_CAP KVM_CAP_DISABLE_QUIRKS2 args0=KVM_X86_QUIRK_SLOT_ZAP_ALL',
      'memslot delete slot=0',
      'expect ret 0',
      'expect trace kvm_mmu_zap_all_fast count=0',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });
});
