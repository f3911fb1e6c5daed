import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../../src/cli/verbs/decode/s2pte';

interface Captured {
  code: number;
  out: string;
  err: string;
}

async function call(argv: string[]): Promise<Captured> {
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

async function json(argv: string[]): Promise<any> {
  const r = await call([...argv, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  return JSON.parse(r.out);
}

test('decode s2pte: 4K page, RW, XN, AF, SH=IS, Normal WB', async () => {
  // 0x4000_07ff | XN=0b10 (bit 54): valid page at 0x40000000
  const j = await json(['0x00400000400007ff', '--level', '3']);
  assert.equal(j.kind, 'page');
  assert.equal(j.outputAddress, '0x40000000');
  assert.equal(j.granule, '4k');
  assert.equal(j.variant, 'annotate_2026');
  const f = Object.fromEntries(j.fields.map((x: any) => [x.name, x]));
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR.value, 0xf);
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR.bits, '[5:2]');
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R.value, 1);
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W.value, 1);
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_SH.value, 3);
  assert.equal(f.KVM_PTE_LEAF_ATTR_LO_S2_AF.bits, '[10]');
  assert.equal(f.KVM_PTE_LEAF_ATTR_HI_S2_XN.bits, '[54:53]');
  assert.equal(f.KVM_PTE_LEAF_ATTR_HI_S2_XN.value, 2);
  assert.equal(f.KVM_PTE_ADDR_MASK.bits, '[47:12]');
});

test('decode s2pte: block at level 2, table at level 1, 64K OA[51:48]', async () => {
  const b = await json(['402007fd', '--level', '2']);
  assert.equal(b.kind, 'block');
  assert.equal(b.outputAddress, '0x40200000');
  assert.equal(b.mapSize, 2 ** 21);
  const t = await json(['0x123456003', '--level', '1']);
  assert.equal(t.kind, 'table');
  assert.equal(t.outputAddress, '0x123456000');
  const s = await json(['0x20000000a7ff', '--level', '3', '--granule', '64k']);
  assert.equal(s.kind, 'page');
  assert.equal(s.outputAddress, '0xa200000000000'); // OA[51:48]=0xa from bits 15:12, OA[47:16] in place
});

test('decode s2pte: owner annotations differ by variant', async () => {
  const a = await json(['0x4', '--level', '3', '--variant', 'set_owner_2021']);
  assert.equal(a.kind, 'owner-annotated');
  assert.deepEqual(a.owner, { id: 1, name: 'hyp' });
  assert.ok(a.fields.some((x: any) => x.name === 'KVM_INVALID_PTE_OWNER_MASK' && x.bits === '[9:2]' && x.value === 1));
  const b = await json(['0x2000000000000002', '--level', '3', '--variant', 'annotate_2026']);
  assert.equal(b.kind, 'owner-annotated');
  assert.equal(b.type, 'KVM_HOST_INVALID_PTE_TYPE_DONATION');
  assert.deepEqual(b.owner, { id: 1, name: 'hyp' });
  // guest donation: owner 2, handle 0x1000 at bits 19:4, gfn 0x42 at bits 59:20
  const g = await json(['0x2000000004210004', '--level', '3']);
  assert.deepEqual(g.owner, { id: 2, name: 'guest', handle: 0x1000, gfn: '0x42' });
  const l = await json(['0x400', '--level', '3', '--variant', 'set_owner_2021']);
  assert.equal(l.kind, 'locked');
  assert.equal((await json(['0', '--level', '2'])).kind, 'invalid');
});

test('decode s2pte: readable table without --json', async () => {
  const r = await call(['0x402007fd', '--level', '2']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^stage-2 descriptor 0x402007fd {2}level 2 {2}4k {2}annotate_2026\nkind: block {2}output address 0x40200000 {2}maps 2M\n/);
  assert.match(r.out, /\nKVM_PTE_LEAF_ATTR_LO_S2_AF +\[10\] +0x1 +young/);
});

test('decode s2pte: bad arguments are one line on stderr, exit 2', async () => {
  for (const argv of [
    ['0x4'],
    ['0x4', '--level', '4'],
    ['0x4', '--level', 'x'],
    ['zz', '--level', '3'],
    ['0x4', '--level', '3', '--granule', '8k'],
    ['0x4', '--level', '3', '--variant', 'bogus'],
    ['0x4', '--level', '3', '--bogus'],
    ['0x4', '0x5', '--level', '3'],
    ['0x4', '--level=-1'],
    ['0x4', '--level', '3', '--granule', '64k', '--lpa2'],
  ]) {
    const r = await call(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.equal(r.out, '');
    assert.equal(r.err.trim().split('\n').length, 1, argv.join(' '));
    assert.match(r.err, /^kvm-mmu decode s2pte: /);
  }
  const ok = await call(['0x3', '--level=-1', '--lpa2']); // negative values need the = form
  assert.equal(ok.code, 0, ok.err);
});
