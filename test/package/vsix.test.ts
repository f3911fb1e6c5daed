// Packages the extension with vsce and checks what the VSIX holds: only the bundles, media/, the
// manifest, README, CHANGELOG, LICENSE and the language files; no sources, tests or node_modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

const VSIX = 'dist/kvm-mmu-debugger.vsix';

/** Names in a zip's central directory (enough of the format for a listing). */
function zipEntries(buf: Buffer): string[] {
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  assert.ok(eocd >= 0, 'zip end-of-central-directory found');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(p), 0x02014b50);
    const n = buf.readUInt16LE(p + 28), x = buf.readUInt16LE(p + 30), c = buf.readUInt16LE(p + 32);
    names.push(buf.toString('utf8', p + 46, p + 46 + n));
    p += 46 + n + x + c;
  }
  return names;
}

function readEntry(buf: Buffer, name: string): Buffer | undefined {
  let p = 0;
  while (p + 30 <= buf.length && buf.readUInt32LE(p) === 0x04034b50) {
    const method = buf.readUInt16LE(p + 8), size = buf.readUInt32LE(p + 18);
    const n = buf.readUInt16LE(p + 26), x = buf.readUInt16LE(p + 28);
    const entry = buf.toString('utf8', p + 30, p + 30 + n);
    const data = buf.subarray(p + 30 + n + x, p + 30 + n + x + size);
    if (entry === name) return method === 8 ? inflateRawSync(data) : data;
    p += 30 + n + x + size;
  }
  return undefined;
}

test('npm run package produces a clean VSIX of at most 1.5 MB', () => {
  execFileSync('npm', ['run', '--silent', 'package'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const size = statSync(VSIX).size;
  assert.ok(size <= 1.5 * 1024 * 1024, `VSIX is ${size} bytes`);
  const buf = readFileSync(VSIX);
  const files = zipEntries(buf).filter((f) => f.startsWith('extension/')).map((f) => f.slice('extension/'.length));
  const allowed = /^(dist\/[^/]+\.js|dist\/webview\/[^/]+\.(js|css)|media\/.+|package\.json|readme\.md|changelog\.md|LICENSE(\.txt)?|language-configuration\.json|syntaxes\/.+\.json|snippets\/.+\.json)$/i;
  const stray = files.filter((f) => !allowed.test(f));
  assert.deepEqual(stray, [], `unexpected files in the VSIX: ${stray.join(', ')}`);
  for (const need of ['dist/extension.js', 'package.json', 'media/icon.png']) assert.ok(files.includes(need), `VSIX holds ${need}`);
  assert.ok(!files.some((f) => /^(src|test|node_modules|scripts)\//.test(f)));
  assert.ok(!files.some((f) => f.endsWith('.map') || f.endsWith('.ts')), 'no source maps or TypeScript sources');
  const manifest = JSON.parse(readEntry(buf, 'extension/package.json')!.toString('utf8'));
  assert.equal(manifest.name, 'kvm-mmu-debugger');
  assert.equal(manifest.main, './dist/extension.js');
});
