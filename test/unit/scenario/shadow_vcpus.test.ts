/**
 * Scenario binding of the shadow MMU with several vCPUs: each statement runs on its vCPU, roots and
 * the CR3 root cache are per vCPU, shadow pages are shared, and vCPU statistics are summed.
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

describe('shadow paging with several vCPUs', () => {
  it('keeps roots and prev_roots per vCPU while the shadow pages are shared', () => {
    const r = run([
      'vm arch=x86 vendor=intel tdp=off maxphyaddr=46 vcpus=2',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M',
      'guest map cr3=0x10000 gva 0x400000..0x401000 gpa=0x200000 page=4K flags=rw',
      'guest map cr3=0x40000 gva 0x400000..0x401000 gpa=0x300000 page=4K flags=rw',
      'guest set cr3=0x10000 cr4=0x20 efer=0xd00 cr0=0x80010011',
      'guest set vcpu=1 cr3=0x10000 cr4=0x20 efer=0xd00 cr0=0x80010011',
      'guest read gva=0x400000',
      'guest read vcpu=1 gva=0x400000',
      'expect stat pf_taken=1',
      'guest set vcpu=1 cr3=0x40000',
      'guest read vcpu=1 gva=0x400000',
      'expect stat pf_taken=2',
      'expect roots vcpu=1 count=2',
      'expect roots vcpu=1 cached=1 pgd=0x10000 gfn=0x10 root_count=2',
      'expect roots vcpu=1 cached=0 pgd=0x40000 gfn=0x40 root_count=1',
      'expect roots count=1',
      'expect root pgd=0x10000 root_count=2',
      'expect spte gva=0x400000 kind=leaf pfn=0x1000200',
      'expect spte vcpu=1 gva=0x400000 kind=leaf pfn=0x1000300',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });

  it('under TDP with tdp_mmu=N both vCPUs share the direct root; a GPA without a slot exits as MMIO', () => {
    const r = run([
      'vm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=2',
      'param tdp_mmu=N eager_page_split=N nx_huge_pages=off pml=N',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M backing=4K',
      'guest read gpa=0x203000',
      'guest read vcpu=1 gpa=0x203000',
      'expect root vcpu=1 kind=sp role.direct=1 root_count=2',
      'expect stat pf_taken=1',
      'guest read vcpu=1 gpa=0x10000000',
      'expect exit KVM_EXIT_MMIO vcpu=1 gpa=0x10000000 is_write=0',
    ].join('\n'));
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
  });
});
