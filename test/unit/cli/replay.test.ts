// `kvm-mmu replay` as a user runs it: real stdout/stderr and exit codes from a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../../..');
const FIX = join(ROOT, 'test/fixtures/traces');

function replay(...args: string[]): { code: number; out: string; err: string } {
  return replayWithInput('', ...args);
}

function replayWithInput(input: string, ...args: string[]): { code: number; out: string; err: string } {
  const code = `import(${JSON.stringify(join(ROOT, 'src/cli/verbs/replay.ts'))}).then(m => (m.run ?? m.default.run)(${JSON.stringify(args)})).then(c => { process.exitCode = c; });`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT, encoding: 'utf8', input });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test('replay --json: counts, unrecognized lines with numbers, stacks, rebuilt SPTEs, warnings, detectors', () => {
  const r = replay(join(FIX, 'raw_trace.txt'), '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.events, 9);
  assert.equal(j.byType.kvm_exit, 1);
  assert.equal(j.byType.kvm_tdp_mmu_spte_changed, 1);
  assert.equal(j.unrecognized.count, 2);
  assert.deepEqual(
    j.unrecognized.first.map((u: { line: number }) => u.line),
    [29, 30],
  );
  assert.equal(j.stacks.count, 1);
  assert.equal(j.stacks.first[0].event, 'kvm_mmu_set_spte');
  assert.equal(j.stacks.first[0].line, 17);
  assert.deepEqual(j.sptes, [{ asId: 0, root: 0, gfn: '1a2', level: 1, spte: '6000003f00a2b77', kind: 'leaf', line: 16 }]);
  assert.deepEqual(j.warnings, { count: 1, first: [{ line: 27, message: 'ring buffer overrun: CPU:5 [LOST 120 EVENTS]' }] });
  assert.deepEqual(j.detectors, []);
  assert.ok(Array.isArray(j.shadowPages));
});

test('replay --json reports detector findings; --fault-loop raises the bar', () => {
  const j = JSON.parse(replay(join(FIX, 'fault_loop.txt'), '--json').out);
  assert.equal(j.detectors.length, 1);
  assert.equal(j.detectors[0].detector, 'fault_loop');
  assert.equal(j.detectors[0].gfn, '1a2');
  const k = JSON.parse(replay(join(FIX, 'fault_loop.txt'), '--json', '--fault-loop', '20').out);
  assert.equal(k.detectors.length, 0);
});

test('replay --max-sptes limits the listing, not the count', () => {
  const j = JSON.parse(replay(join(FIX, 'zap_subtree.txt'), '--json', '--max-sptes', '2').out);
  assert.equal(j.sptes.length, 2);
  assert.equal(j.sptesTotal, 4);
});

test("replay - reads standard input (a trace_pipe)", () => {
  const r = replayWithInput(readFileSync(join(FIX, 'perf_script.txt'), 'utf8'), '-', '--json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.events, 8);
  assert.equal(j.walks.total, 1);
});

test('replay --kernel decides the RET_PF numbering', () => {
  const j = JSON.parse(replay(join(FIX, 'old_kernel.txt'), '--json', '--kernel', '5.10').out);
  assert.equal(j.kernel, '5.10');
  assert.equal(j.fastPageFaults.spurious, 1);
});

test('human output names the findings', () => {
  const r = replay(join(FIX, 'huge_over_4k.txt'));
  assert.equal(r.code, 0);
  assert.match(r.out, /huge_leaf_over_4k_leaves\] lines 6-6: level-2 leaf at gfn 0/);
});

test('bad input: one line on stderr, exit 2, no stack trace', () => {
  for (const args of [[join(FIX, 'no_such_capture.txt')], [], ['--bogus', join(FIX, 'raw_trace.txt')], [join(FIX, 'raw_trace.txt'), '--kernel', 'banana'], [join(FIX, 'raw_trace.txt'), '--storm', '0'], [FIX]]) {
    const r = replay(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.out, '');
    const lines = r.err.split('\n').filter((l) => l !== '' && !l.startsWith('npm warn'));
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0]!, /^kvm-mmu replay: /);
    assert.doesNotMatch(r.err, /\n\s+at /);
  }
  assert.match(replay(join(FIX, 'no_such_capture.txt')).err, /no such file/);
});
