import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { run as runSpte } from '../../../src/cli/verbs/decode/spte';
import { run as runRole } from '../../../src/cli/verbs/decode/role';
import { run as runPferr } from '../../../src/cli/verbs/decode/pferr';
import { VERBS } from '../../../src/cli/verbs';

interface Captured {
  code: number;
  out: string;
  err: string;
}

/** Call a sub-verb's run() with stdout/stderr captured; the sub-verbs write synchronously. */
async function call(run: (argv: string[]) => Promise<number>, argv: string[]): Promise<Captured> {
  let out = '';
  let err = '';
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  process.stdout.write = ((s: string | Uint8Array) => ((out += String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  let p: Promise<number>;
  try {
    p = run(argv);
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
  return { code: await p, out, err };
}

async function json(run: (argv: string[]) => Promise<number>, argv: string[]): Promise<any> {
  const r = await call(run, [...argv, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  return JSON.parse(r.out);
}

// ------------------------------------------------------------------ spte

test('decode spte: EPT 4K leaf (MMU-present, RWX, WB+IPAT, A, D, H, M, SVE)', async () => {
  const j = await json(runSpte, ['86000003f00a2b77', '--format', 'ept']);
  assert.equal(j.kind, 'leaf');
  assert.equal(j.large, false);
  assert.equal(j.writable, true);
  assert.equal(j.executable, true);
  assert.equal(j.pfn, '0x3f00a2');
  assert.equal(j.traceFlags, 'rwxu');
  assert.equal(j.level, 1);
  assert.equal(j.levelSource, 'inferred');
  const f = Object.fromEntries(j.fields.map((x: any) => [x.name, x]));
  assert.equal(f.MT.value, 6);
  assert.equal(f.MT.bits, '[5:3]');
  assert.equal(f.IPAT.value, 1);
  assert.equal(f.MMU_PRESENT.bits, '[11]');
  assert.equal(f.MMU_PRESENT.value, 1);
  assert.equal(f.HOST_WRITABLE.bits, '[57]');
  assert.equal(f.MMU_WRITABLE.bits, '[58]');
  assert.equal(f.SVE.value, 1);
  assert.equal(f.PFN.bits, '[51:12]');
  assert.equal(f.PFN.hex, '0x3f00a2');
  for (const x of j.fields) for (const k of ['name', 'bits', 'value', 'meaning']) assert.ok(k in x, `${x.name} lacks ${k}`);
});

test('decode spte: both frozen values read as frozen', async () => {
  for (const [v, fmt] of [
    ['0x80000000000005a0', 'ept'],
    ['80000000000005a0', 'npt'],
    ['0x5a0', 'ept'],
    ['5a0', 'npt'],
  ]) {
    const j = await json(runSpte, [v!, '--format', fmt!]);
    assert.equal(j.kind, 'frozen', `${v} ${fmt}`);
    assert.equal(j.writable, false);
  }
});

test('decode spte: NPT MMIO SPTE (bit 51 | P, W|U access, generation 6, gfn 0xabc)', async () => {
  const v = ((1n << 51n) | 1n | 0b110n | (6n << 3n) | (0xabcn << 12n)).toString(16);
  const j = await json(runSpte, [v, '--format', 'npt']);
  assert.equal(j.kind, 'mmio');
  assert.deepEqual(j.mmio, { gfn: '0xabc', generation: '0x6', access: 6 });
  assert.equal(j.assumptions.maxphyaddr, 48);
  // A host with 52 PA bits has no reserved bit for MMIO: the same value is just not present.
  const k = await json(runSpte, [v, '--format', 'npt', '--maxphyaddr', '52']);
  assert.equal(k.kind, 'nonpresent');
  assert.equal(k.assumptions.mmioCaching, false);
});

test('decode spte: EPT MMIO SPTE (RWX 110b) with a split generation', async () => {
  const gen = 0x12345n;
  const v = ((gen & 0xffn) << 3n) | ((gen >> 8n) << 52n) | 0b110n | (0xfee00n << 12n);
  const j = await json(runSpte, ['0x' + v.toString(16)]);
  assert.equal(j.format, 'ept');
  assert.equal(j.kind, 'mmio');
  assert.equal(j.mmio.gfn, '0xfee00');
  assert.equal(j.mmio.generation, '0x12345');
  assert.ok(j.fields.some((f: any) => f.name === 'GEN_HIGH' && f.bits === '[62:52]' && f.value === 0x123));
});

test('decode spte: non-leaf, huge leaf, nonpresent, NPT NX', async () => {
  // make_nonleaf_spte with A/D disabled: MMU-present | RWX | AD_DISABLED | SVE.
  const nl = await json(runSpte, ['0x8010000012345807', '--level', '3']);
  assert.equal(nl.kind, 'nonleaf');
  assert.equal(nl.adType, 'SPTE_TDP_AD_DISABLED');
  assert.equal(nl.levelSource, 'option');
  const inferred = await json(runSpte, ['0x8010000012345807']);
  assert.equal(inferred.kind, 'nonleaf', 'no leaf-only bits -> non-leaf');
  // 2M NPT leaf, NX: P|RW|US|A|D|PS|H|M|MMU-present|NX.
  const huge = await json(runSpte, ['0x8000000000200ee7', '--format', 'npt']);
  assert.equal(huge.kind, 'leaf');
  assert.equal(huge.large, true);
  assert.equal(huge.executable, false);
  assert.equal(huge.pfn, '0x200');
  assert.equal(huge.traceFlags, 'rw-u');
  const np = await json(runSpte, ['8000000000000000', '--format', 'npt']);
  assert.equal(np.kind, 'nonpresent');
});

test('decode spte: exec-only and no-A/D assumptions change the masks', async () => {
  const j = await json(runSpte, ['0x86000003f00a2b74', '--exec-only', '--no-ad']);
  assert.equal(j.assumptions.presentMask, '0x8000000000000000');
  assert.equal(j.assumptions.adBits, false);
  assert.equal(j.traceFlags, 'r-x-', 'r from the non-zero present mask, no user (R) bit');
});

test('decode spte: SME C-bit is excluded from the pfn', async () => {
  const v = ((1n << 47n) | (0x1234n << 12n) | (1n << 11n) | 0x67n).toString(16);
  const j = await json(runSpte, [v, '--format', 'npt', '--cbit', '47']);
  assert.equal(j.pfn, '0x1234');
  assert.equal(j.assumptions.smeCbit, 47);
});

test('decode spte: text output has the summary and a field table', async () => {
  const r = await call(runSpte, ['0x86000003f00a2b77']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^kind\s+leaf$/m);
  assert.match(r.out, /^trace flags\s+\(rwxu\)$/m);
  assert.match(r.out, /^\[5:3\]\s+MT\s+6\s+WB/m);
  assert.match(r.out, /assumptions\s+EPT with A\/D/);
});

test('decode spte: bad arguments exit 2 with one line on stderr', async () => {
  for (const argv of [[], ['zz'], ['1', '2'], ['1', '--format', 'arm'], ['1', '--level', '0'], ['1', '--bogus'], ['1', '--cbit', '47'], ['12345678901234567']]) {
    const r = await call(runSpte, argv);
    assert.equal(r.code, 2, JSON.stringify(argv));
    assert.equal(r.out, '');
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, /^kvm-mmu decode spte: /);
  }
});

// ------------------------------------------------------------------ role

test('decode role: 0x3784 is a 4-level direct TDP root with A/D', async () => {
  const j = await json(runRole, ['3784']);
  assert.deepEqual(j.fields, {
    level: 4,
    has_4_byte_gpte: false,
    quadrant: 0,
    direct: true,
    access: 7,
    invalid: false,
    efer_nx: true,
    cr0_wp: true,
    smep_andnot_wp: false,
    smap_andnot_wp: false,
    ad_disabled: false,
    guest_mode: false,
    passthrough: false,
    is_mirror: false,
    smm: 0,
  });
  assert.equal(j.traceText, 'l4 8-byte q0 direct wux nxe ad');
});

test('decode role: every flag, SMM and a kvm_cpu_role ext half', async () => {
  const j = await json(runRole, ['0x000000bd010fff5a']);
  assert.equal(j.fields.level, 0xa);
  assert.equal(j.fields.has_4_byte_gpte, true);
  assert.equal(j.fields.quadrant, 2);
  assert.equal(j.fields.direct, false);
  assert.equal(j.fields.access, 7);
  assert.equal(j.fields.passthrough, true);
  assert.equal(j.fields.is_mirror, true);
  assert.equal(j.fields.smm, 1);
  assert.equal(j.asId, 1);
  assert.equal(j.traceText, 'l10 4-byte q2 wux invalid nxe !ad');
  assert.deepEqual(j.ext, { valid: true, execonly: false, cr4_pse: true, cr4_pke: true, cr4_smap: true, cr4_smep: true, cr4_la57: false, efer_lma: true });
  const r = await call(runRole, ['0x3784']);
  assert.match(r.out, /trace text: l4 8-byte q0 direct wux nxe ad/);
  assert.match(r.out, /^access\s+7 \(wux\)$/m);
  const bad = await call(runRole, ['0xg']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^kvm-mmu decode role: /);
});

// ------------------------------------------------------------------ pferr

test('decode pferr: SNP #NPF error code with private access', async () => {
  const j = await json(runPferr, ['0x0002000580000007']);
  assert.deepEqual(j.names, [
    'PFERR_PRESENT_MASK',
    'PFERR_WRITE_MASK',
    'PFERR_USER_MASK',
    'PFERR_GUEST_RMP_MASK',
    'PFERR_GUEST_FINAL_MASK',
    'PFERR_GUEST_ENC_MASK',
    'PFERR_PRIVATE_ACCESS',
  ]);
  assert.deepEqual(
    j.bits.map((b: any) => b.bit),
    [0, 1, 2, 31, 32, 34, 49],
  );
  assert.equal(j.synthetic, true);
  assert.deepEqual(j.unknownBits, []);
  const r = await call(runPferr, ['1b']);
  assert.match(r.out, /trace flags: P\|W\|RSVD\|F/);
  assert.match(r.out, /^3\s+PFERR_RSVD_MASK/m);
  const bad = await call(runPferr, ['0x1', '--json', 'extra']);
  assert.equal(bad.code, 2);
});

// ------------------------------------------------------------------ as a process

const ROOT = resolve(__dirname, '../../..');

test('sub-verb module as a process: exit code 2, one stderr line, no stack trace', () => {
  const src = `const m = await import(${JSON.stringify(resolve(ROOT, 'src/cli/verbs/decode/spte.ts'))}); process.exitCode = await (m.run ?? m.default.run)(process.argv.slice(1));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', src, '--', '1', '--level', 'x'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, "kvm-mmu decode spte: --level expects an integer, got 'x'\n");
});

test('kvm-mmu decode via bin.ts (once the lead wires the dispatcher)', (t) => {
  const decode = VERBS.find((v) => v.name === 'decode');
  if (!decode?.available) {
    t.skip('decode dispatcher not wired yet');
    return;
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'decode', 'role', '3784', '--json'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).traceText, 'l4 8-byte q0 direct wux nxe ad');
  const s = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'decode', 'spte', '0x5a0', '--json'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).kind, 'frozen');
});
