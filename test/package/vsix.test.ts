// Packages the extension with vsce and checks what the VSIX holds: only the bundles, media/, the
// manifest, README, CHANGELOG, LICENSE and the language files; no sources, tests or node_modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

const VSIX = 'dist/kvm-mmu-debugger.vsix';

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  localOffset: number;
}

/** The zip's central directory (enough of the format for a listing and reading small entries). */
function zipEntries(buf: Buffer): ZipEntry[] {
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  assert.ok(eocd >= 0, 'zip end-of-central-directory found');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(p), 0x02014b50);
    const n = buf.readUInt16LE(p + 28), x = buf.readUInt16LE(p + 30), c = buf.readUInt16LE(p + 32);
    out.push({ name: buf.toString('utf8', p + 46, p + 46 + n), method: buf.readUInt16LE(p + 10), compressedSize: buf.readUInt32LE(p + 20), localOffset: buf.readUInt32LE(p + 42) });
    p += 46 + n + x + c;
  }
  return out;
}

/** An entry's bytes: sizes come from the central directory (local headers may defer them). */
function readEntry(buf: Buffer, entries: ZipEntry[], name: string): Buffer | undefined {
  const e = entries.find((x) => x.name === name);
  if (!e) return undefined;
  const n = buf.readUInt16LE(e.localOffset + 26), x = buf.readUInt16LE(e.localOffset + 28);
  const start = e.localOffset + 30 + n + x;
  const data = buf.subarray(start, start + e.compressedSize);
  return e.method === 8 ? inflateRawSync(data) : data;
}

test('npm run package produces a clean VSIX of at most 1.5 MB', () => {
  execFileSync('npm', ['run', '--silent', 'package'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const size = statSync(VSIX).size;
  assert.ok(size <= 1.5 * 1024 * 1024, `VSIX is ${size} bytes`);
  const buf = readFileSync(VSIX);
  const entries = zipEntries(buf);
  const files = entries.map((e) => e.name).filter((f) => f.startsWith('extension/')).map((f) => f.slice('extension/'.length));
  const allowed = /^(dist\/[^/]+\.js|dist\/webview\/[^/]+\.(js|css)|media\/.+|package\.json|readme\.md|changelog\.md|LICENSE(\.txt)?|language-configuration\.json|syntaxes\/.+\.json|snippets\/.+\.json)$/i;
  const stray = files.filter((f) => !allowed.test(f));
  assert.deepEqual(stray, [], `unexpected files in the VSIX: ${stray.join(', ')}`);
  for (const need of ['dist/extension.js', 'package.json', 'media/icon.png']) assert.ok(files.includes(need), `VSIX holds ${need}`);
  assert.ok(!files.some((f) => /^(src|test|node_modules|scripts)\//.test(f)));
  assert.ok(!files.some((f) => f.endsWith('.map') || f.endsWith('.ts')), 'no source maps or TypeScript sources');
  const manifest = JSON.parse(readEntry(buf, entries, 'extension/package.json')!.toString('utf8'));
  assert.equal(manifest.name, 'kvm-mmu-debugger');
  assert.equal(manifest.main, './dist/extension.js');
});
