/**
 * The Bit Decoder webview bundle in headless Chromium (no VS Code): a stub `acquireVsCodeApi` records what
 * the page posts; the test plays the extension's part with the real decoder. Skipped when the built bundle,
 * Chromium or the test host's playwright-core are not there (they come with `npm run build` and the
 * VS Code test host set-up).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { decodeValue } from '../../../src/extension/panels/decode_kinds';

const ROOT = resolve(__dirname, '..', '..', '..');
const PW = join(ROOT, '.vscode-host', 'node_modules', 'playwright-core');
const BUNDLE = join(ROOT, 'dist', 'webview', 'decoder.js');
const CHROMIUM = '/usr/bin/chromium';
const missing = [PW, BUNDLE, CHROMIUM].filter((p) => !existsSync(p));

// The little of playwright-core used here (it lives in the test host's tools folder, not our dependencies).
interface Page {
  on(event: 'pageerror', cb: (e: Error) => void): void;
  setContent(html: string): Promise<void>;
  evaluate<R, A = undefined>(fn: string | ((arg: A) => R), arg?: A): Promise<R>;
  addScriptTag(o: { content: string }): Promise<unknown>;
  waitForFunction(fn: () => boolean): Promise<unknown>;
  click(selector: string): Promise<void>;
}
interface Browser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
interface Playwright {
  chromium: { launch(o: { executablePath: string; headless: boolean; args: string[] }): Promise<Browser> };
}

test('decoder webview: draws the grid from a snapshot, a click asks for the toggled value', { skip: missing.length ? `not available: ${missing.join(', ')}` : false, timeout: 60000 }, async () => {
  const { chromium } = createRequire(__filename)(PW) as Playwright;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.setContent('<!DOCTYPE html><html><head></head><body class="vscode-dark"><div id="app"></div></body></html>');
    // tsx keeps function names with an `__name` helper; functions handed to evaluate() carry calls to it.
    await page.evaluate('globalThis.__name = (f) => f');
    await page.evaluate(() => {
      const w = window as unknown as { posted: unknown[]; acquireVsCodeApi: () => unknown };
      w.posted = [];
      w.acquireVsCodeApi = () => ({ postMessage: (m: unknown) => w.posted.push(m), getState: () => undefined, setState: () => undefined });
    });
    await page.addScriptTag({ content: readFileSync(BUNDLE, 'utf8') });
    const posted = () => page.evaluate(() => (window as unknown as { posted: Array<Record<string, unknown>> }).posted);
    assert.deepEqual(errors, [], 'the bundle loads without errors');
    assert.deepEqual((await posted())[0], { type: 'ready', state: { kind: 'ept-spte', value: '0x0', level: 0 } });

    const result = decodeValue({ kind: 'ept-spte', value: '0x600000001234b37', level: 1 });
    await page.evaluate((r) => window.postMessage({ type: 'decoded', result: r }, '*'), result);
    await page.waitForFunction(() => document.querySelectorAll('.bit').length === 64);
    const dom = await page.evaluate(() => ({
      bits: document.querySelectorAll('.bit').length,
      ones: [...document.querySelectorAll<HTMLElement>('.bit.one')].map((b) => Number(b.dataset.bit)).sort((a, b) => a - b),
      bands: [...document.querySelectorAll('.band .bname')].map((b) => b.textContent),
      headline: document.querySelector('.headline')?.textContent,
      rows: document.querySelectorAll('table.fields tbody tr').length,
    }));
    assert.equal(dom.bits, 64);
    // 0x0600000001234b37: bits 0-2, 4, 5, 8, 9, 11, 14, 16, 17, 21, 24 (pfn 0x1234 << 12), 57, 58.
    assert.deepEqual(dom.ones, [0, 1, 2, 4, 5, 8, 9, 11, 14, 16, 17, 21, 24, 57, 58]);
    assert.ok(dom.bands.includes('PFN') && dom.bands.includes('MMU_PRESENT') && dom.bands.includes('SVE'), dom.bands.join(','));
    assert.match(dom.headline ?? '', /EPT SPTE\s+0x600000001234b37\s+—\s+leaf/);
    assert.equal(dom.rows, result.fields.length);
    const rendered = (await posted()).find((m) => m.type === 'rendered');
    assert.deepEqual(rendered, { type: 'rendered', value: '0x600000001234b37', bits: 64, fields: result.fields.length });

    // Clicking bit 1 (W) asks the extension for the value with W cleared.
    await page.click('.bit[data-bit="1"]');
    const last = (await posted()).at(-1);
    assert.deepEqual(last, { type: 'decode', request: { kind: 'ept-spte', value: '0x600000001234b35', level: 1 } });
    // A message that fails validation changes nothing.
    await page.evaluate(() => window.postMessage({ type: 'decoded', result: { kind: 'ept-spte', value: '<img src=x onerror=alert(1)>' } }, '*'));
    assert.equal(await page.evaluate(() => document.querySelectorAll('img').length), 0);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
