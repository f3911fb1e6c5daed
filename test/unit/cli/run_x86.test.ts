import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../src/cli/verbs/run';

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: await run(argv), out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

// One 4K EPT fault: the root (level 4), then tables at levels 3, 2 and 1, then the leaf.
const SMALL = [
  'vm arch=x86 vendor=intel tdp=on tdp_levels=4 vcpus=1',
  'param nx_huge_pages=off',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=2M backing=4K',
  'guest write gpa=0x3000',
  'expect spte gpa=0x3000 kind=leaf level=1 w=1 d=1',
  'expect trace kvm_mmu_get_page count=4',
  'expect trace kvm_mmu_set_spte "gfn 3 spte * (rwxu) level 1 at *"',
].join('\n');

describe('kvm-mmu run with the x86 TDP MMU engine', () => {
  let dir = '';
  before(() => (dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-run-x86-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a 4K fault: exit 0, and --json counts the events by name', async () => {
    const f = join(dir, 'small.kvmmmu');
    writeFileSync(f, SMALL);
    const r = await capture([f, '--json']);
    assert.equal(r.code, 0, r.out);
    const j = JSON.parse(r.out);
    assert.equal(j.ok, true);
    assert.equal(j.events.byName.kvm_mmu_get_page, 4);
    assert.equal(j.events.byName.kvm_mmu_set_spte, 1);
    assert.equal(j.events.byName.kvm_page_fault, 1);
    assert.equal(j.stats.pf_fixed, 1);
    assert.equal(j.stats.pages_4k, 1);
  });

  it('--trace-out is byte-identical across runs and puts fault events on the vCPU thread', async () => {
    const f = join(dir, 'small.kvmmmu');
    writeFileSync(f, SMALL);
    const t1 = join(dir, 't1');
    const t2 = join(dir, 't2');
    assert.equal((await capture([f, '--trace-out', t1])).code, 0);
    assert.equal((await capture([f, '--trace-out', t2])).code, 0);
    const a = readFileSync(t1, 'utf8');
    assert.equal(a, readFileSync(t2, 'utf8'));
    const lines = a.split('\n').filter(Boolean);
    assert.ok(lines.every((l) => /^ {7}CPU 0\/KVM-1235 {4}\[000\] \.{5} {4}12\.\d{6}: \w+: /.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => / kvm_page_fault: vcpu 0 rip 0x[0-9a-f]+ address 0x0000000000003000 error_code 0x/.test(l)));
  });

  it('tdp-basics with one expectation changed fails at that line', async () => {
    const src = readFileSync(new URL('../../../examples/tdp-basics.kvmmmu', import.meta.url), 'utf8');
    const lines = src.split('\n');
    const i = lines.indexOf('expect stat pf_fixed=512 pages_2m=512');
    assert.ok(i > 0);
    lines[i] = 'expect stat pf_fixed=512 pages_2m=511';
    const f = join(dir, 'tdp.kvmmmu');
    writeFileSync(f, lines.join('\n'));
    const r = await capture([f]);
    assert.equal(r.code, 1);
    assert.ok(r.out.includes(`${f}:${i + 1}:26: error: expectation failed: pages_2m: expected 511, got 512`), r.out);
    assert.match(r.out, /1 failed/);
  });
});
