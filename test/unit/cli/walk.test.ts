/**
 * `kvm-mmu walk`: JSON shape and values (worked out by hand from the walk rules and print fmt), the
 * readable output, --from-trace over every capture prefix style, and bad arguments (one line, exit 2).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../src/cli/verbs/walk';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    const code = await run(args);
    return { code, out, err };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

test('long4 user write to a read-only PTE: fault 0x7, stops at level 1, exact trace', async () => {
  const r = await cli(['--mode', 'long4', '--addr', '0x7fff23456123', '--access', 'write', '--user', '--cr0-wp', '1', '--efer-nx', '1', '--smep', '0', '--smap', '0', '--gbpages', '1', '--ptes', '2007,3007,4007,5005', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.fault, true);
  assert.equal(j.errorCode, '0x7');
  assert.equal(j.level, 1);
  assert.deepEqual(
    j.steps.map((s: { level: number; entry: string; reason: string }) => [s.level, s.entry, s.reason]),
    [
      [4, 'PML4E', 'next'],
      [3, 'PDPTE', 'next'],
      [2, 'PDE', 'next'],
      [1, 'PTE', 'leaf'],
    ],
  );
  assert.equal(j.steps[3].fields.RW, 0);
  assert.equal(j.steps[3].fields.US, 1);
  assert.match(j.why.join(' '), /read-only/);
  assert.deepEqual(j.trace, [
    'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 6 W|U',
    'kvm_mmu_paging_element: pte 2007 level 4',
    'kvm_mmu_paging_element: pte 3007 level 3',
    'kvm_mmu_paging_element: pte 4007 level 2',
    'kvm_mmu_paging_element: pte 5005 level 1',
    'kvm_mmu_walker_error: pferr 7 P|W|U',
  ]);
});

test('successful write: gpa, A/D written values, set_accessed/dirty gpas from --cr3 and the entries', async () => {
  const r = await cli(['--mode', 'long4', '--addr', '7fff23456123', '--access', 'write', '--cr3', '1000', '--ptes', '2007,3007,4007,5007', '--json']);
  const j = JSON.parse(r.out);
  assert.equal(j.fault, false);
  assert.equal(j.gpa, '0x5123');
  assert.deepEqual(
    j.steps.map((s: { written?: string }) => s.written),
    ['0x2027', '0x3027', '0x4027', '0x5067'],
  );
  assert.deepEqual(j.trace.slice(5), [
    'kvm_mmu_set_accessed_bit: gpa 17f8',
    'kvm_mmu_set_accessed_bit: gpa 2fe0',
    'kvm_mmu_set_accessed_bit: gpa 38d0',
    'kvm_mmu_set_accessed_bit: gpa 42b0',
    'kvm_mmu_set_dirty_bit: gpa 42b0',
  ]);
});

test('PML4E with PS: reserved bit 7 named in the explanation', async () => {
  const r = await cli(['--mode', 'long4', '--addr', '0', '--access', 'read', '--ptes', '2087', '--json']);
  const j = JSON.parse(r.out);
  assert.equal(j.errorCode, '0x9');
  assert.equal(j.steps[0].reason, 'reserved');
  assert.match(j.steps[0].explanation, /bit 7 \(PS, never allowed in a PML4E/);
  assert.equal(j.trace.at(-1), 'kvm_mmu_walker_error: pferr 9 P|RSVD');
});

test('XD without EFER.NXE and address bits above MAXPHYADDR are explained', async () => {
  const nx = JSON.parse((await cli(['--mode', 'long4', '--addr', '0', '--access', 'read', '--efer-nx', '0', '--ptes', '8000000000002007', '--json'])).out);
  assert.equal(nx.errorCode, '0x9');
  assert.match(nx.steps[0].explanation, /bit 63 \(XD, reserved without EFER.NXE\)/);
  const mp = JSON.parse((await cli(['--mode', 'long4', '--addr', '0', '--access', 'read', '--maxphyaddr', '40', '--ptes', '0000010000002007', '--json'])).out);
  assert.match(mp.steps[0].explanation, /bit 40 \(ADDR, above MAXPHYADDR 40\)/);
});

test('PAE: not-present PDPTE faults with error code 0x4 for a user read; stops at level 3', async () => {
  const j = JSON.parse((await cli(['--mode', 'pae', '--addr', 'a3456123', '--access', 'read', '--user', '--ptes', '3000', '--json'])).out);
  assert.equal(j.fault, true);
  assert.equal(j.errorCode, '0x4');
  assert.equal(j.level, 3);
  assert.equal(j.steps[0].reason, 'not-present');
  assert.deepEqual(j.trace, ['kvm_mmu_pagetable_walk: addr a3456123 pferr 4 U', 'kvm_mmu_paging_element: pte 3000 level 3', 'kvm_mmu_walker_error: pferr 4 U']);
});

test('32-bit PSE-36 4M page: gpa bits 35:32 from PDE bits 16:13', async () => {
  const j = JSON.parse((await cli(['--mode', '32', '--addr', '87654321', '--access', 'read', '--pse36', '1', '--ptes', 'c01e087', '--json'])).out);
  assert.equal(j.fault, false);
  assert.equal(j.gpa, '0xf0c254321');
  assert.equal(j.pageSize, '4M');
  assert.equal(j.steps[0].fields.PSE36, 0xf);
});

test('SMAP with EFLAGS.AC: explicit access allowed, implicit access faults', async () => {
  const base = ['--mode', 'long4', '--addr', '0', '--access', 'read', '--smap', '1', '--ac', '1', '--ptes', '2007,3007,4007,5007', '--json'];
  assert.equal(JSON.parse((await cli(base)).out).fault, false);
  const imp = JSON.parse((await cli([...base, '--implicit'])).out);
  assert.equal(imp.fault, true);
  assert.equal(imp.errorCode, '0x1');
  assert.match(imp.why[0], /SMAP/);
});

test('mode none: the address is the GPA, nothing traced', async () => {
  const j = JSON.parse((await cli(['--mode', 'none', '--addr', '12345678', '--access', 'fetch', '--json'])).out);
  assert.equal(j.fault, false);
  assert.equal(j.gpa, '0x12345678');
  assert.deepEqual(j.trace, []);
});

test('readable output names the verdict and the trace', async () => {
  const r = await cli(['--mode', 'long4', '--addr', '7fff23456123', '--access', 'fetch', '--ptes', '2007,3007,4007,8000000000005007']);
  assert.equal(r.code, 0);
  assert.match(r.out, /FAULT, error code 0x11 \(P\|F\)/);
  assert.match(r.out, /non-executable/);
  assert.match(r.out, /kvm_mmu_walker_error: pferr 11 P\|F/);
});

for (const [args, pattern] of [
  [['--mode', 'long9', '--addr', '0', '--access', 'read', '--ptes', '1'], /--mode/],
  [['--mode', 'long4', '--addr', '0', '--access', 'read', '--cr0-wp', '2', '--ptes', '1'], /--cr0-wp must be 0 or 1/],
  [['--mode', 'long4', '--addr', 'zz', '--access', 'read', '--ptes', '1'], /--addr/],
  [['--mode', 'long4', '--addr', '0', '--access', 'exec', '--ptes', '1'], /--access/],
  [['--mode', 'long4', '--addr', '0', '--access', 'read'], /--ptes is required/],
  [['--mode', 'long4', '--addr', '0', '--access', 'read', '--ptes', '2007,3007'], /needs an entry at level 2 but only 2/],
  [['--mode', '32', '--addr', '0', '--access', 'read', '--ptes', '100000000'], /4-byte/],
  [['--mode', 'long4', '--addr', '0', '--access', 'read', '--ptes', '1', '--bogus'], /bogus/],
  [['--mode', 'long4', '--addr', '0', '--access', 'read', '--maxphyaddr', '60', '--ptes', '1'], /--maxphyaddr/],
  [['--from-trace', '/nonexistent/capture.txt'], /cannot read/],
] as const) {
  test(`bad arguments (${args.join(' ')}): one line on stderr, exit 2`, async () => {
    const r = await cli([...args]);
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    assert.match(r.err, pattern as RegExp);
    assert.equal(r.err.trim().split('\n').length, 1);
    assert.doesNotMatch(r.err, /\bat .*\.ts:\d+/);
  });
}

test('--from-trace: raw, trace-cmd, perf and bare lines; wrapped payloads; interleaved vCPUs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walk-'));
  const f = join(dir, 'cap.txt');
  writeFileSync(
    f,
    [
      'cpus=4',
      ' qemu-system-x86-4711  [003] .....  812.000100: kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 6 W|U',
      ' qemu-system-x86-4711  [003] .....  812.000101: kvm_mmu_paging_element: pte 2007 level 4',
      '   CPU 0/KVM-4712 [002]  812.000130: kvm_mmu_pagetable_walk: addr ffff923400000000 pferr 10 F',
      ' qemu-system-x86-4711  [003] .....  812.000102: kvm_mmu_paging_element: pte 3007 level 3',
      '   CPU 0/KVM-4712 [002]  812.000131: kvm_mmu_paging_element:     pte 1007 level 4',
      ' qemu-system-x86-4711  [003] .....  812.000103: kvm_mmu_paging_element: pte 602087 level',
      ' 2',
      ' qemu-system-x86-4711  [003] .....  812.000104: kvm_mmu_walker_error: pferr f P|W|U|RSVD',
      '   CPU 0/KVM-4712 [002]  812.000132: kvm_mmu_paging_element: pte 1007 level 3',
      '   CPU 0/KVM-4712 [002]  812.000133: kvm_mmu_paging_element: pte 1007 level 2',
      '   CPU 0/KVM-4712 [002]  812.000134: kvm_mmu_paging_element: pte 8000000000001007 level 1',
      '   CPU 0/KVM-4712 [002]  812.000135: kvm_mmu_walker_error: pferr 11 P|F',
      'qemu-system-x86  4713 [001]   900.1: kvmmmu:kvm_mmu_pagetable_walk: addr a3456123 pferr 4 U',
      'qemu-system-x86  4713 [001]   900.1: kvmmmu:kvm_mmu_paging_element: pte 3000 level 3',
      'qemu-system-x86  4713 [001]   900.1: kvmmmu:kvm_mmu_walker_error: pferr 4 U',
      'kvm_mmu_pagetable_walk: addr 87654321 pferr 0 ',
      'kvm_mmu_paging_element: pte c000087 level 2',
      'kvm_mmu_set_accessed_bit: gpa 1874',
    ].join('\n'),
  );
  const r = await cli(['--from-trace', f, '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.walks.length, 4);
  const [w1, w2, w3, w4] = j.walks;
  // Walk 1: 2M PDE with bit 13 set -> reserved.
  assert.equal(w1.mode, 'long4');
  assert.equal(w1.traceErrorCode, '0xf');
  assert.equal(w1.explanation.steps[2].reason, 'reserved');
  assert.match(w1.explanation.steps[2].explanation, /bit 13/);
  assert.equal(w1.modelAgrees, true);
  // Walk 2 (other vCPU, interleaved): NX on the leaf, fetch -> P|F.
  assert.equal(w2.addr, '0xffff923400000000');
  assert.equal(w2.explanation.steps.length, 4);
  assert.match(w2.explanation.why.join(' '), /non-executable/);
  assert.equal(w2.modelAgrees, true);
  // Walk 3 (perf): PAE with a not-present PDPTE.
  assert.equal(w3.mode, 'pae');
  assert.equal(w3.explanation.steps[0].reason, 'not-present');
  assert.equal(w3.modelAgrees, true);
  // Walk 4 (bare): 2-level 4M page, no error.
  assert.equal(w4.mode, '32');
  assert.equal(w4.traceFault, false);
  assert.equal(w4.explanation.gpa, '0xc254321');
  assert.deepEqual(w4.accessedGpas, ['0x1874']);
  // Readable form too.
  const t = await cli(['--from-trace', f]);
  assert.match(t.out, /== walk at line 2: addr 0x7fff23456123/);
  assert.match(t.out, /model: agrees/);
});

test('--from-trace: a walk that ends without a table to read is explained as a missing memslot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walk-'));
  const f = join(dir, 'cap.txt');
  writeFileSync(f, 'kvm_mmu_pagetable_walk: addr 0 pferr 4 U\nkvm_mmu_paging_element: pte 2007 level 4\nkvm_mmu_walker_error: pferr 4 U\n');
  const j = JSON.parse((await cli(['--from-trace', f, '--json'])).out);
  assert.equal(j.walks[0].modelAgrees, true);
  assert.equal(j.walks[0].explanation.steps[1].reason, 'bad-gpa');
});

test('--pferr gives the raw access: P is kept in the walk event, RSVD dropped as FNAME(page_fault) does', async () => {
  const j = JSON.parse((await cli(['--mode', 'long4', '--addr', '7fff23456123', '--pferr', 'f', '--ptes', '2007,3007,4007,5005', '--json'])).out);
  assert.equal(j.trace[0], 'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 7 P|W|U');
  assert.equal(j.errorCode, '0x7');
  const bad = await cli(['--mode', 'long4', '--addr', '0', '--pferr', '2', '--access', 'read', '--ptes', '1']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--pferr gives the access itself/);
});

test('--from-trace replays the walk with the captured pferr, so the model trace matches the capture', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walk-'));
  const f = join(dir, 'cap.txt');
  const capture = [
    'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 7 P|W|U',
    'kvm_mmu_paging_element: pte 2027 level 4',
    'kvm_mmu_paging_element: pte 3027 level 3',
    'kvm_mmu_paging_element: pte 4027 level 2',
    'kvm_mmu_paging_element: pte 5025 level 1',
    'kvm_mmu_walker_error: pferr 7 P|W|U',
  ];
  writeFileSync(f, capture.join('\n') + '\n');
  const j = JSON.parse((await cli(['--from-trace', f, '--json'])).out);
  assert.deepEqual(j.walks[0].explanation.trace, capture);
  assert.equal(j.walks[0].modelAgrees, true);
});
