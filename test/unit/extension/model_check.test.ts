// The model check as VS Code runs it: the texts and problems made from a result (pure), and the worker
// thread (dist/modelCheckWorker.js, from `npm run build`) answering with a result or stopping on cancel.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ModelCheckResult } from '../../../src/trace/model_check';
import { mismatchProblems, percentOf, reportText, summaryLine } from '../../../src/extension/model_check/format';
import { runModelCheck } from '../../../src/extension/model_check/run';
import { writeRepeatedCapture } from '../../fixtures/big_capture';

const ROOT = resolve(__dirname, '..', '..', '..');
const WORKER = join(ROOT, 'dist', 'modelCheckWorker.js');
const TRACES = join(ROOT, 'test', 'fixtures', 'traces');

function result(over: Partial<ModelCheckResult>): ModelCheckResult {
  return {
    ok: true,
    vm: { format: 'ept', levels: 4, description: 'EPT, 4-level TDP', slots: [{ slot: 0, gpa: '0x0', size: '0x200000', backing: '4k' }] },
    faultsReplayed: 3,
    faultSource: 'kvm_page_fault',
    realChanges: 7,
    modelChanges: 7,
    compared: 7,
    notReplayed: 0,
    operations: { fault: 3 },
    mismatches: [],
    ...over,
  };
}

const twoSided = {
  line: 42,
  asId: 0,
  gfn: '1a2',
  level: 1,
  reason: 'different new SPTE',
  real: { old: '0', new: '600', text: 'kvm_tdp_mmu_spte_changed: as id 0 gfn 1a2 level 1 old_spte 0 new_spte 600' },
  model: { old: '0', new: '607', text: 'kvm_tdp_mmu_spte_changed: as id 0 gfn 1a2 level 1 old_spte 0 new_spte 607' },
};

describe('model check texts', () => {
  it('tells agreement with the number of compared changes and faults', () => {
    const s = summaryLine(result({}), '/x/cap.txt');
    assert.match(s, /^cap\.txt: the x86 model \(EPT, 4-level TDP\) makes the same 7 SPTE changes as the capture over 3 faults/);
    assert.deepEqual(mismatchProblems(result({})), []);
    assert.match(reportText(result({}), '/x/cap.txt'), /result: the model makes the same SPTE changes/);
  });

  it('tells why a capture was not checked', () => {
    const r = result({ ok: false, skipped: 'no kvm_tdp_mmu_spte_changed events' });
    assert.equal(summaryLine(r, 'c.dat'), 'c.dat was not model-checked: no kvm_tdp_mmu_spte_changed events');
    assert.match(reportText(r, 'c.dat'), /not checked: no kvm_tdp_mmu_spte_changed events$/);
  });

  it('shows the first mismatch with both sides, and one problem per mismatch at its 0-based line', () => {
    const oneSided = { line: 1, asId: 1, gfn: '0', level: 4, reason: 'the model changes this SPTE, the capture does not', model: twoSided.model };
    const r = result({ ok: false, mismatches: [twoSided, oneSided] });
    const s = summaryLine(r, 'cap.trace');
    assert.match(s, /^cap\.trace line 42: as 0 gfn 1a2 level 1: different new SPTE \(2 mismatches, see Problems\)\. /);
    assert.match(s, /capture: kvm_tdp_mmu_spte_changed: .*new_spte 600; model: kvm_tdp_mmu_spte_changed: .*new_spte 607$/);
    const p = mismatchProblems(r);
    assert.deepEqual(p.map((x) => x.line), [41, 0]);
    assert.match(p[0]!.message, /^model check: as 0 gfn 1a2 level 1: different new SPTE\ncapture: .*600\nmodel: .*607$/);
    assert.match(p[1]!.message, /\ncapture: \(no such change\)\nmodel: /);
    const rep = reportText(r, 'cap.trace');
    assert.match(rep, /result: 2 mismatch\(es\)\n  line 42: as 0 gfn 1a2 level 1: different new SPTE\n    capture: .*\n    model: .*\n  line 1:/);
  });

  it('turns bytes into a whole percentage, 0 for an unknown size', () => {
    assert.equal(percentOf(0, 100), 0);
    assert.equal(percentOf(333, 1000), 33);
    assert.equal(percentOf(1000, 1000), 100);
    assert.equal(percentOf(5, 0), 0);
    assert.equal(percentOf(2000, 1000), 100);
  });
});

describe('model check worker', () => {
  let dir: string;
  let big: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-mc-'));
    big = join(dir, 'big.txt');
    writeRepeatedCapture(big, join(TRACES, 'tdp_stacks.txt'), 200e6);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('answers with the result of modelCheckFile: agreement, and a mismatch at its capture line', async () => {
    const ok = await runModelCheck(WORKER, join(TRACES, 'tdp_stacks.txt'));
    assert.equal(ok.kind, 'result');
    assert.equal(ok.kind === 'result' && ok.result.ok, true);
    const bad = await runModelCheck(WORKER, join(TRACES, 'raw_trace.txt'));
    assert.ok(bad.kind === 'result' && !bad.result.ok);
    assert.equal(bad.result.mismatches[0]!.line, 14);
  });

  it('stops between chunks when cancelled, long before the end of a 200 MB capture', async () => {
    const ac = new AbortController();
    let reported = 0;
    const t0 = performance.now();
    const o = await runModelCheck(WORKER, big, {
      signal: ac.signal,
      // the worker must stop by itself: the hard stop after the grace would come after the time limit below
      cancelGraceMs: 60_000,
      onProgress: (bytes) => {
        reported = bytes;
        ac.abort();
      },
    });
    assert.equal(o.kind, 'cancelled');
    assert.ok(o.kind === 'cancelled' && o.total >= 200e6 && o.bytes >= reported && o.bytes < o.total / 4, JSON.stringify(o));
    assert.ok(performance.now() - t0 < 30_000);
  });

  it('rejects with the reason when the capture cannot be read', async () => {
    await assert.rejects(runModelCheck(WORKER, join(dir, 'missing.txt')), /ENOENT/);
  });
});
