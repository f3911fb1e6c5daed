import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario } from '../../../src/scenario/parser';
import { loadScenario } from '../../../src/scenario/load';
import { ScenarioRunner } from '../../../src/scenario/runner';

describe('expect trace with record fields', () => {
  it('names are checked against the event\'s tracefs format', () => {
    const ds = parseScenario('expect trace kvm_mmu_set_spt level=1\nexpect trace kvm_mmu_set_spte levle=1\nexpect trace level=1', 't').diagnostics;
    assert.deepEqual(ds.map((d) => [d.line, d.col, d.code]), [[1, 14, 'unknown-event'], [2, 31, 'unknown-name'], [3, 14, 'missing-argument']]);
    assert.match(ds[0]!.hint, /kvm_mmu_set_spte/);
    assert.match(ds[1]!.hint, /'level'/);
  });

  it('filters the last statement\'s events by field values (x86 engine)', () => {
    // THP backing and no NX mitigation: the fault at GPA 0x1000 maps a 2M leaf at gfn 0.
    const text = [
      'vm arch=x86 vendor=intel tdp=on vcpus=1',
      'param nx_huge_pages=off',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G backing=2M',
      'guest read gpa=0x1000',
      'expect trace kvm_mmu_set_spte level=2 gfn=0 count=1',
      'expect trace kvm_mmu_set_spte level=1',
      'expect trace kvm_mmu_spte_requested gfn=1 level=2',
    ].join('\n');
    const r = new ScenarioRunner(loadScenario('t', { read: () => text, resolve: (_a, b) => b }, text));
    r.run();
    r.dispose();
    assert.deepEqual(r.expects.map((e) => [e.line, e.ok]), [[5, true], [6, false], [7, true]]);
    assert.match(r.expects[1]!.message, /no kvm_mmu_set_spte with level=1 in the last statement; saw kvm_mmu_set_spte: gfn 0 spte [0-9a-f]+ \(rwxu\) level 2/);
  });
});
