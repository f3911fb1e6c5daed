/**
 * `guest invpcid`: the type names map to INVPCID's register operand (SDM: 0 individual-address,
 * 1 single-context, 2 all-context including globals, 3 all-context), the descriptor reaches the engine
 * as full 64-bit values, and KVM sees the instruction only with TDP off.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadScenario } from '../../../src/scenario/load';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { createEngine } from '../../../src/scenario/engines';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';
import { INVPCID_TYPES } from '../../../src/scenario/grammar';
import type { MemoryRegionOp, Outcome, ScenarioEngine, VmConfig } from '../../../src/scenario/engine_api';
import {
  INVPCID_TYPE_INDIV_ADDR, INVPCID_TYPE_SINGLE_CTXT, INVPCID_TYPE_ALL_INCL_GLOBAL, INVPCID_TYPE_ALL_NON_GLOBAL,
} from '../../../src/engine/x86/shadow_cr3';

function run(text: string, engineFactory: (cfg: VmConfig) => ScenarioEngine | string = createEngine): ScenarioRunner {
  const prog = loadScenario('t', { read: (p) => (p === 't' ? text : undefined), resolve: (_f, rel) => rel });
  assert.deepEqual(prog.diagnostics.map(formatDiagnostic), []);
  const r = new ScenarioRunner(prog, { engineFactory });
  r.run();
  r.dispose();
  return r;
}

class Recorder implements ScenarioEngine {
  readonly name = 'recorder';
  readonly ops: Array<{ type: number; pcid: bigint; gva: bigint }> = [];
  setUserMemoryRegion2(_op: MemoryRegionOp): Outcome {
    return { ret: 0 };
  }
  invpcid(op: { vcpu: number; type: number; pcid: bigint; gva: bigint }): Outcome {
    this.ops.push({ type: op.type, pcid: op.pcid, gva: op.gva });
    return {};
  }
}

describe('guest invpcid', () => {
  it('type names are the kernel INVPCID_TYPE_* values, in register order', () => {
    assert.deepEqual(
      [INVPCID_TYPE_INDIV_ADDR, INVPCID_TYPE_SINGLE_CTXT, INVPCID_TYPE_ALL_INCL_GLOBAL, INVPCID_TYPE_ALL_NON_GLOBAL].map((t) => INVPCID_TYPES[t]),
      ['indiv_addr', 'single_ctxt', 'all_incl_global', 'all_non_global'],
    );
  });

  it('hands the engine the type number and the 64-bit descriptor', () => {
    let eng: Recorder | undefined;
    const r = run(
      [
        'vm arch=x86 tdp=off',
        'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M',
        'guest invpcid type=indiv_addr pcid=7 gva=0xffff888000001008',
        'guest invpcid type=all_non_global',
        'guest invpcid type=single_ctxt pcid=0xffffffffffffffff',
      ].join('\n'),
      () => (eng = new Recorder()),
    );
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.deepEqual(eng!.ops, [
      { type: 0, pcid: 7n, gva: 0xffff_8880_0000_1008n },
      { type: 3, pcid: 0n, gva: 0n },
      { type: 1, pcid: 0xffff_ffff_ffff_ffffn, gva: 0n },
    ]);
  });

  const GP_CASES = [
    // A kernel address with all 64 bits significant is canonical: no #GP.
    ['guest invpcid type=indiv_addr gva=0xffff888000001008', 'none'],
    ['guest invpcid type=indiv_addr gva=0x0000800000000000', 'GP'],
    // CR4.PCIDE=0: only PCID 0 may be named.
    ['guest invpcid type=single_ctxt pcid=1', 'GP'],
    ['guest invpcid type=single_ctxt pcid=0x100000000', 'GP'],
    ['guest invpcid type=all_incl_global pcid=1', 'none'],
  ] as const;

  for (const tdp of ['off', 'on']) {
    it(`#GP rules with tdp=${tdp}`, () => {
      const text = [
        `vm arch=x86 vendor=intel tdp=${tdp} maxphyaddr=46`,
        'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M',
        'guest map cr3=0x10000 gva 0x400000..0x401000 gpa=0x200000 page=4K flags=rw',
        'guest set cr3=0x10000 cr4=0x20 efer=0xd00 cr0=0x80010011',
        // With TDP on the instruction never reaches KVM, so nothing is checked there.
        ...GP_CASES.flatMap(([s, want]) => [s, `expect exception ${tdp === 'on' ? 'none' : want}`]),
      ].join('\n');
      const r = run(text);
      assert.deepEqual(r.problems.map(formatDiagnostic), []);
      assert.equal(r.expects.length, GP_CASES.length);
    });
  }
});
