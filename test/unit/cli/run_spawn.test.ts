import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'run', ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('kvm-mmu run as a process', () => {
  it('an example passes with exit 0', () => {
    const r = cli('examples/arm64-stage2-faults.kvmmmu');
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /13 expects: 13 passed, 0 failed/);
  });

  it('a failing expectation: exit 1 with file:line:col and expected vs. actual', () => {
    const d = mkdtempSync(join(tmpdir(), 'kvm-mmu-spawn-'));
    try {
      const f = join(d, 'f.kvmmmu');
      writeFileSync(f, 'vm arch=arm64 mode=nvhe\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0x40000000 size=2M backing=4K\nguest write ipa=0x40000000\nexpect stage2 ipa=0x40000000 level=3 w=0\n');
      const r = cli(f);
      assert.equal(r.code, 1, r.out + r.err);
      assert.ok(r.out.includes(`${f}:4:38: error: expectation failed: w: expected 0, got 1`), r.out);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('bad arguments: exit 2, one line, no stack trace', () => {
    const r = cli('--set');
    assert.equal(r.code, 2);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.doesNotMatch(r.err, /\bat .*:\d+:\d+\)?$/m);
  });
});
