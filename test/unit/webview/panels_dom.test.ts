/**
 * The map and timeline bundles in headless Chromium, driven with the mouse: what a click asks of the
 * extension, what the status line says, what the colour switch changes. Skipped when the built bundles,
 * Chromium or the test host's playwright-core are not there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScenarioProgram } from '../../../src/debug/scenario_program';
import { handleQuery } from '../../../src/debug/worker/queries';
import { vcpuTimeline } from '../../../src/debug/worker/vcpu_timeline';
import { stage2Map } from '../../../src/debug/worker/stage2_map';
import { WebviewHost, deliver, webviewHostMissing, type Page } from '../../../src/bench/webview_host';
import { layout, parseToMap, type MapData } from '../../../webview/shared/ptmap_protocol';

const missing = webviewHostMissing(['ptmap', 'timeline']);
const skip = missing.length ? `not available: ${missing.join(', ')}` : false;

function run(text: string, stopAtLine = Infinity): ScenarioProgram {
  const file = join(mkdtempSync(join(tmpdir(), 'kvm-mmu-dom-')), 's.kvmmmu');
  writeFileSync(file, text);
  const p = new ScenarioProgram(file, {});
  for (let s = 0; s < p.length() && p.locationOf(s).line < stopAtLine; s++) p.execute(s);
  return p;
}

const posted = (page: Page) => page.evaluate(() => (window as unknown as { posted: Array<Record<string, unknown>> }).posted);
const statusText = (page: Page) => page.evaluate(() => document.querySelector('.status')!.textContent ?? '');

async function canvasBox(page: Page): Promise<{ x: number; y: number; w: number; h: number }> {
  return page.evaluate(() => {
    const r = document.querySelector('canvas')!.getBoundingClientRect();
    return { x: r.left, y: r.top, w: r.width, h: r.height };
  });
}

/** The colour of one CSS pixel of the canvas. */
function pixel(page: Page, x: number, y: number): Promise<number[]> {
  return page.evaluate(([px, py]) => [...document.querySelector('canvas')!.getContext('2d')!.getImageData(px!, py!, 1, 1).data], [x, y]);
}

test('page-table map: hovering names an entry, a click asks Where is GFN for the page it maps', { skip, timeout: 60000 }, async () => {
  const p = run('vm arch=x86 vendor=intel tdp=on vcpus=1\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G backing=4K\nguest read gpa 0x200000..0x220000 step 4K\n');
  const map = handleQuery('kvmMmu/tableMap', { root: -1, maxTables: 64 }, { program: p }) as MapData;
  const host = await WebviewHost.launch();
  try {
    // Zoom 5 at (10, 10): entry e of a table at world (x, y) is at (10 + (x + e % 32) * 5, 10 + (y + e / 32) * 5).
    const { page, errors } = await host.open('ptmap', 'dark', { width: 1000, height: 640 }, { zoom: 5, panX: 10, panY: 10 });
    await deliver(page, { type: 'map', map }, 'rendered');
    const leaf = map.tables.findIndex((t) => t.level === 1);
    const at = layout(map)[leaf]!;
    const box = await canvasBox(page);
    const e = 21; // row 0, column 21: gfn 0x200 + 21 = 0x215
    const x = box.x + 10 + (at.x + (e % 32) + 0.5) * 5;
    const y = box.y + 10 + (at.y + Math.floor(e / 32) + 0.5) * 5;
    await page.mouse.move(x, y);
    assert.match(await statusText(page), /^L1 table gfn 0x200 \[21\]\s+gfn 0x215\s+leaf 4K$/);
    await page.mouse.down();
    await page.mouse.up();
    assert.deepEqual((await posted(page)).filter((m) => m.type === 'where'), [{ type: 'where', gfn: 0x215 }]);
    // A drag pans and asks nothing.
    await page.mouse.move(x, y);
    await page.mouse.down();
    await page.mouse.move(x - 200, y - 100);
    await page.mouse.up();
    assert.equal((await posted(page)).filter((m) => m.type === 'where').length, 1);
    assert.deepEqual(errors, []);
  } finally {
    await host.close();
    p.dispose();
  }
});

test('page-table map of a pKVM host stage-2: the colour switch shows page states; a click names a PA, asks nothing', { skip, timeout: 60000 }, async () => {
  const p = run([
    'vm arch=arm64 mode=protected type=protected ipa_bits=40 pa_bits=40 host_memory=0x80000000+2G',
    '__pkvm_host_donate_hyp pfn=0x80012 nr_pages=1',
    'host stage2_fault addr=0x80011000 read',
    '',
  ].join('\n'));
  const raw = stage2Map(p, { root: 1 });
  const parsed = parseToMap({ type: 'map', map: raw });
  assert.ok(parsed && parsed.type === 'map');
  const map = parsed.map;
  const leaf = map.tables.findIndex((t) => t.level === 3);
  assert.equal(map.tables[leaf]!.owners![0x11], 'o');
  assert.equal(map.tables[leaf]!.owners![0x12], 'y');
  const host = await WebviewHost.launch();
  try {
    const { page, errors } = await host.open('ptmap', 'light', { width: 1000, height: 640 }, { zoom: 5, panX: 10, panY: 10, colorBy: 'kind' });
    await deliver(page, { type: 'map', map: raw }, 'rendered');
    const at = layout(map)[leaf]!;
    const cell = (e: number) => ({ x: 10 + (at.x + (e % 32) + 0.5) * 5, y: 10 + (at.y + Math.floor(e / 32) + 0.5) * 5 });
    const hyp = cell(0x12);
    const byKind = await pixel(page, hyp.x, hyp.y);
    // Coloured by kind the donated page is an annotated invalid entry; by owner it is the hypervisor's.
    await page.evaluate(() => {
      const sel = document.querySelector('vscode-single-select.color-by') as HTMLElement & { value: string };
      sel.value = 'owner';
      sel.dispatchEvent(new Event('change'));
    });
    await page.waitForFunction(() => (window as unknown as { posted: Array<{ type: string }> }).posted.filter((m) => m.type === 'rendered').length >= 2);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const byOwner = await pixel(page, hyp.x, hyp.y);
    assert.notDeepEqual(byOwner, byKind, 'the entry changes colour');
    assert.ok(await page.evaluate(() => [...document.querySelectorAll('.legend .ltext')].some((e) => e.textContent === 'owner PKVM_ID_HYP')), 'the legend lists owners');
    // The legend grew a line: the canvas moved.
    const box = await canvasBox(page);
    await page.mouse.move(box.x + hyp.x, box.y + hyp.y);
    assert.match(await statusText(page), /^L3 table pa 0x80000000 \[18\]\s+pa 0x80012000-0x80012fff\s+invalid, owner annotation\s+owner PKVM_ID_HYP$/);
    await page.mouse.down();
    await page.mouse.up();
    assert.equal((await posted(page)).filter((m) => m.type === 'where').length, 0, 'a host PA is no guest frame');
    assert.match(await statusText(page), /no guest frame/);
    assert.deepEqual(errors, []);
  } finally {
    await host.close();
    p.dispose();
  }
});

test('timeline: one row per vCPU; a click on a vCPU\'s bar reveals the statement that vCPU ran', { skip, timeout: 60000 }, async () => {
  const p = run([
    'vm arch=x86 vendor=intel tdp=on vcpus=2',
    'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G backing=4K',
    'guest read gpa 0x0..0x10000 step 4K vcpu=0',
    'guest read gpa 0x100000..0x110000 step 4K vcpu=1',
    '',
  ].join('\n'));
  const t = vcpuTimeline(p, { buckets: 100 });
  assert.deepEqual(t.rows.map((r) => r.vcpu), [0, 1]);
  const host = await WebviewHost.launch();
  try {
    const { page, errors } = await host.open('timeline', 'hc', { width: 1000, height: 400 });
    await deliver(page, { type: 'timeline', data: t }, 'rendered');
    assert.match(await page.evaluate(() => document.querySelector('.head')!.textContent ?? ''), /from 2 vCPUs/);
    // vCPU 1's first bucket with events, in the second row.
    const b = t.firstAt[1]!.findIndex((x) => x >= 0);
    const box = await canvasBox(page);
    const rowH = Math.max(40, Math.min(96, Math.floor((box.h - 22 - 4) / 2)));
    const plot = box.w - 96 - 10;
    const x = box.x + 96 + ((b + 0.5) / t.buckets) * plot;
    const y = box.y + 22 + rowH * 1.5;
    await page.mouse.move(x, y);
    assert.match(await statusText(page), new RegExp(`^vCPU 1, events from #${t.firstAt[1]![b]}: fault ×\\d+`));
    await page.mouse.down();
    await page.mouse.up();
    const reveal = (await posted(page)).filter((m) => m.type === 'reveal');
    assert.deepEqual(reveal, [{ type: 'reveal', step: t.stepAt[1]![b] }]);
    assert.equal(p.locationOf(t.stepAt[1]![b]!).line, 4, 'the statement vCPU 1 ran');
    assert.deepEqual(errors, []);
  } finally {
    await host.close();
    p.dispose();
  }
});

