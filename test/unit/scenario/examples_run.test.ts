import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadScenario } from '../../../src/scenario/load';
import { nodeReader } from '../../../src/scenario/node_reader';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { createEngine } from '../../../src/scenario/engines';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';

const ex = (name: string) => fileURLToPath(new URL(`../../../examples/${name}`, import.meta.url));

function runExample(name: string, overrides: Record<string, string> = {}) {
  const prog = loadScenario(ex(name), nodeReader);
  assert.deepEqual(prog.diagnostics.map(formatDiagnostic), []);
  const r = new ScenarioRunner(prog, { engineFactory: createEngine, overrides });
  r.run();
  r.dispose();
  return r;
}

describe('examples run against the engine', () => {
  it('pkvm-stage2-ownership: every expect holds', () => {
    const r = runExample('pkvm-stage2-ownership.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.ok(r.expects.length >= 30);
  });

  it('tdp-basics: every expect holds', () => {
    const r = runExample('tdp-basics.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.ok(r.expects.length >= 20);
  });

  it('tdp-basics without eager_page_split: the split expectations fail at their lines', () => {
    const r = runExample('tdp-basics.kvmmmu', { eager_page_split: 'N' });
    const failed = r.expects.filter((e) => !e.ok);
    // Without the split the 2M leaves stay until a write fault; no kvm_mmu_split_huge_page at all.
    assert.equal(failed[0]!.text, 'expect stat pages_2m=0 pages_4k=262144');
    assert.match(failed[0]!.message, /pages_2m: expected 0, got 512/);
    assert.ok(failed.some((e) => e.text === 'expect trace kvm_mmu_split_huge_page count=512'));
  });

  it('private-memory: every expect holds', () => {
    const r = runExample('private-memory.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 15);
    assert.equal(r.exits.length, 1);
    assert.equal(r.exits[0]!.reason, 'KVM_EXIT_MEMORY_FAULT');
  });

  it('guest-paging: every expect holds', () => {
    const r = runExample('guest-paging.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.ok(r.expects.length >= 10);
  });

  it('prefault-memory: every expect holds', () => {
    const r = runExample('prefault-memory.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 5);
  });

  it('tdx-mirror-roots: upstream passes; the 2021 stolen-bits variant has no mirror root', () => {
    assert.deepEqual(runExample('tdx-mirror-roots.kvmmmu').problems.map(formatDiagnostic), []);
    const r = runExample('tdx-mirror-roots.kvmmmu', { tdx_stolen_bits: 'proposed' });
    assert.deepEqual(r.expects.filter((e) => !e.ok).map((e) => e.line), [25, 26, 27, 28]);
  });

  it('host-notifiers: every expect holds', () => {
    const r = runExample('host-notifiers.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 11);
  });

  it('nx-huge-pages: every expect holds; with the mitigation off the fetch maps 2M', () => {
    assert.deepEqual(runExample('nx-huge-pages.kvmmmu').problems.map(formatDiagnostic), []);
    const r = runExample('nx-huge-pages.kvmmmu', { nx_huge_pages: 'off' });
    assert.equal(r.expects.find((e) => !e.ok)!.text, 'expect spte gpa=0x201000 kind=leaf level=1 x=1');
  });

  it('shadow-paging: every expect holds', () => {
    const r = runExample('shadow-paging.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 17);
  });

  it('pae-roots: upstream passes; the proposed PAE root is a shadow page', () => {
    assert.deepEqual(runExample('pae-roots.kvmmmu').problems.map(formatDiagnostic), []);
    const r = runExample('pae-roots.kvmmmu', { pae_root: 'proposed' });
    assert.deepEqual(r.expects.filter((e) => !e.ok).map((e) => e.line), [18, 21]);
  });

  it('snp-rmp: every expect holds', () => {
    const r = runExample('snp-rmp.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 10);
  });

  it('dirty-log-manual: every expect holds', () => {
    const r = runExample('dirty-log-manual.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.equal(r.expects.length, 12);
  });

  it('arm64-stage2-faults: every expect holds', () => {
    const r = runExample('arm64-stage2-faults.kvmmmu');
    assert.deepEqual(r.problems.map(formatDiagnostic), []);
    assert.ok(r.expects.length >= 10);
  });

  it('pkvm-stage2-ownership with the 2021 owner encoding: force-reclaim is refused', () => {
    const r = runExample('pkvm-stage2-ownership.kvmmmu', { owner_encoding: 'proposed' });
    const failed = r.expects.filter((e) => !e.ok);
    assert.ok(failed.length > 0);
    // The first divergence is the typed DONATION annotation, which the 2021 layout does not have.
    assert.match(failed[0]!.text, /annotation=KVM_HOST_INVALID_PTE_TYPE_DONATION/);
    assert.ok(failed.some((e) => /expected -EAGAIN, got -EOPNOTSUPP/.test(e.message)));
  });
});
