/**
 * The views' targets with a million SPTEs mapped (4 GiB of guest memory at 4K, one TDP root):
 * - expanding the root in the MMU Pages tree: `kvmMmu/roots` then the first page of `kvmMmu/table` for the
 *   root, exactly the requests the tree sends, end to end through a DAP session on the engine worker;
 * - panning the page-table map of that root in headless Chromium, frames timed with requestAnimationFrame.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessDapClient } from './dap_driver';
import { type BenchContext, type Metric, type MetricResult } from './metric';
import { WebviewHost, deliver, webviewHostMissing, type Page } from './webview_host';

/** The MMU Pages tree's page size (src/extension/views/pages_view.ts PAGES_PAGE). */
const TREE_PAGE = 256;

function scenario(gib: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-bench-views-'));
  const file = join(dir, 'views.kvmmmu');
  writeFileSync(file, [
    'vm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=1',
    'param tdp_mmu=Y nx_huge_pages=off',
    `KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=${gib}G hva=0x7f0000000000 backing=4K`,
    `guest read gpa 0x0..0x${(gib * 2 ** 30).toString(16)} step 4K`,
    'guest read gpa=0x0',
    '',
  ].join('\n'));
  return file;
}

interface Table { rows: Array<{ child?: number }> }

async function expandRoot(dc: InProcessDapClient): Promise<{ ms: number; leafMs: number; rows: number }> {
  let best = Infinity;
  let rows = 0;
  let leafBest = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const r = await dc.request<{ roots: Array<{ table: number }> }>('kvmMmu/roots', {});
    const t = await dc.request<Table>('kvmMmu/table', { table: r.roots[0]!.table, start: 0, count: TREE_PAGE });
    best = Math.min(best, performance.now() - t0);
    rows = t.rows.length;
    // Down to the first leaf table: the largest page the tree ever asks for (256 decoded SPTEs).
    let child = t.rows[0]?.child;
    let page = t;
    for (;;) {
      const t1 = performance.now();
      page = await dc.request<Table>('kvmMmu/table', { table: child, start: 0, count: TREE_PAGE });
      const ms = performance.now() - t1;
      child = page.rows[0]?.child;
      if (child === undefined) {
        leafBest = Math.min(leafBest, ms);
        break;
      }
    }
  }
  return { ms: best, leafMs: leafBest, rows };
}

/** Times every animation-frame callback named `draw` (the map's) into `window.drawMs`. */
const TIME_DRAWS = `(() => {
  const raf = window.requestAnimationFrame.bind(window);
  window.drawMs = [];
  window.requestAnimationFrame = (cb) => raf((t) => {
    const s = performance.now();
    cb(t);
    if (cb.name === 'draw') window.drawMs.push(performance.now() - s);
  });
})()`;

/** Drag across the map for `frames` animation frames; the frame rate the page kept. */
async function pan(page: Page, frames: number): Promise<{ fps: number; worstMs: number; drawMs: number }> {
  const { ts: times, busy } = await page.evaluate(async (n) => {
    const c = document.querySelector('canvas')!;
    const r = c.getBoundingClientRect();
    const x0 = r.left + r.width / 2;
    const y0 = r.top + r.height / 2;
    c.dispatchEvent(new MouseEvent('mousedown', { clientX: x0, clientY: y0, bubbles: true }));
    const ts: number[] = [];
    const w = window as unknown as { drawMs: number[] };
    w.drawMs.length = 0;
    await new Promise<void>((done) => {
      let i = 0;
      const tick = (t: number): void => {
        ts.push(t);
        if (i++ >= n) return done();
        // A figure-eight keeps new regions of the map coming into view every frame.
        window.dispatchEvent(new MouseEvent('mousemove', { clientX: x0 + 300 * Math.sin(i / 20), clientY: y0 + 240 * Math.sin(i / 10), bubbles: true }));
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    window.dispatchEvent(new MouseEvent('mouseup', { clientX: x0, clientY: y0 + 1000, bubbles: true }));
    return { ts, busy: w.drawMs.slice() };
  }, frames);
  const span = times[times.length - 1]! - times[0]!;
  let worst = 0;
  for (let i = 1; i < times.length; i++) worst = Math.max(worst, times[i]! - times[i - 1]!);
  const sorted = busy.slice().sort((a, b) => a - b);
  return { fps: ((times.length - 1) * 1000) / span, worstMs: worst, drawMs: sorted[Math.floor(sorted.length * 0.95)] ?? 0 };
}

export const views: Metric = {
  name: 'views',
  async run(ctx: BenchContext): Promise<MetricResult[]> {
    const gib = 4;
    const pages = gib * 262144;
    const file = scenario(gib);
    const out: MetricResult[] = [];
    ctx.log(`views: ${gib} GiB fault-in in a debug session (${pages} SPTEs)`);
    const dc = new InProcessDapClient();
    try {
      const stopped = dc.waitFor('stopped');
      await dc.launch({ program: file, stopOnEntry: false }, () => dc.request('setBreakpoints', { source: { path: file }, breakpoints: [{ line: 5 }] }));
      await stopped;
      const e = await expandRoot(dc);
      out.push({
        name: 'tree_expand_root_1m',
        value: Number(e.ms.toFixed(2)),
        unit: 'ms',
        target: '< 100 ms with 1 Mi SPTEs',
        met: e.ms < 100,
        note: `kvmMmu/roots + kvmMmu/table (first ${TREE_PAGE}) for a root over ${pages} SPTEs, through DAP, best of 5; a leaf table's first page of ${TREE_PAGE} decoded SPTEs: ${e.leafMs.toFixed(2)} ms`,
      });

      const missing = webviewHostMissing(['ptmap']);
      if (missing.length) {
        out.push({ name: 'ptmap_pan_fps_1m', value: NaN, unit: 'fps', target: '>= 60 fps', met: false, note: `not measured: missing ${missing.join(', ')}` });
        return out;
      }
      const t0 = performance.now();
      const map = await dc.request<{ tables: unknown[] }>('kvmMmu/tableMap', { root: -1, maxTables: 8192 });
      const mapMs = performance.now() - t0;
      ctx.log(`views: page-table map of ${map.tables.length} tables in headless Chromium`);
      const host = await WebviewHost.launch();
      try {
        const frames = ctx.quick ? 120 : 360;
        let worstFps = Infinity;
        let worstDraw = 0;
        const parts: string[] = [];
        // Fit (the default view), an overview with hundreds of tables in view, and a close-up.
        for (const zoom of [undefined, 0.05, 24]) {
          const { page, errors } = await host.open('ptmap', 'dark', { width: 1200, height: 800 }, zoom === undefined ? undefined : { zoom, panX: 10, panY: 10 }, TIME_DRAWS);
          await deliver(page, { type: 'map', map }, 'rendered');
          const r = await pan(page, frames);
          if (errors.length) throw new Error(errors.join('; '));
          worstFps = Math.min(worstFps, r.fps);
          worstDraw = Math.max(worstDraw, r.drawMs);
          parts.push(`${zoom === undefined ? 'fit' : `zoom ${zoom}`}: ${r.fps.toFixed(1)} fps, worst frame ${r.worstMs.toFixed(1)} ms, map draw p95 ${r.drawMs.toFixed(1)} ms`);
          await page.close();
        }
        out.push({
          name: 'ptmap_pan_fps_1m',
          value: Number(worstFps.toFixed(1)),
          unit: 'fps',
          target: '>= 60 fps while panning',
          // requestAnimationFrame runs at 60 Hz: a page that keeps up reads 59-60.
          met: worstFps >= 58,
          note: `${map.tables.length} tables (${pages} SPTEs), 1200x800 canvas, ${frames} drag frames per zoom, slowest of: ${parts.join('; ')}; map read in ${mapMs.toFixed(0)} ms`,
        });
        // The frame rate also counts everything else on a shared machine; the map's own share of a frame is this.
        out.push({
          name: 'ptmap_pan_draw_p95_1m',
          value: Number(worstDraw.toFixed(2)),
          unit: 'ms',
          target: '<= 16.7 ms (a 60 fps frame)',
          met: worstDraw <= 1000 / 60,
          note: 'the map\'s requestAnimationFrame callback while panning, 95th percentile, worst of the three zooms above',
        });
      } finally {
        await host.close();
      }
      return out;
    } finally {
      await dc.close();
    }
  },
};
