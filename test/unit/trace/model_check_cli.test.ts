// `kvm-mmu replay FILE --model-check`: exit status and output, run from source.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
let dir = '';

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'replay', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-mc-cli-'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('kvm-mmu replay --model-check', () => {
  it('exits 0 and says so when the model agrees', () => {
    const r = cli(FIXTURE, '--model-check');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /EPT \(VMX kvm_exit events\), 4-level TDP/);
    assert.match(r.stdout, /result: the model makes the same SPTE changes as the capture/);
  });

  it('exits 1 and shows both sides of the first mismatch, at its line', () => {
    const lines = readFileSync(FIXTURE, 'utf8').split('\n');
    // line 32: the write fault's leaf for gfn 1a3; drop its dirty bit (bit 9): 0xb77 -> 0x977
    assert.match(lines[31]!, /gfn 1a3 level 1 old_spte 8000000000000000 new_spte 86000003f00a3b77$/);
    lines[31] = lines[31]!.replace(/86000003f00a3b77$/, '86000003f00a3977');
    const copy = join(dir, 'edited.txt');
    writeFileSync(copy, lines.join('\n'));
    const r = cli(copy, '--model-check');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /line 32: as 0 gfn 1a3 level 1: new_spte differs/);
    assert.match(r.stdout, /capture: kvm_tdp_mmu_spte_changed: as id 0 gfn 1a3 level 1 old_spte 8000000000000000 new_spte 86000003f00a3977/);
    assert.match(r.stdout, /model: {3}kvm_tdp_mmu_spte_changed: as id 0 gfn 1a3 level 1 old_spte 8000000000000000 new_spte [0-9a-f]+b77/);
    const j = cli(copy, '--model-check', '--json');
    assert.equal(j.status, 1);
    const parsed = JSON.parse(j.stdout) as { ok: boolean; mismatches: Array<{ line: number }> };
    assert.equal(parsed.ok, false);
    assert.equal(parsed.mismatches[0]!.line, 32);
  });

  it('exits 3 on a capture it cannot check, 2 on --mismatches without --model-check', () => {
    const shadow = join(dir, 'shadow.txt');
    writeFileSync(shadow, '       CPU 0/KVM-4711    [002] .....   812.000110: kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b77 (rwxu) level 1 at 1c4f0d10\n');
    const r = cli(shadow, '--model-check');
    assert.equal(r.status, 3);
    assert.match(r.stdout, /not checked: no kvm_mmu_pagetable_walk or kvm_mmu_spte_requested events to drive the shadow MMU/);
    assert.equal(cli(FIXTURE, '--mismatches', '2').status, 2);
  });
});
