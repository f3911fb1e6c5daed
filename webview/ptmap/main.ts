/**
 * Page-Table Map: every table of a root drawn as a 32x16 block of entries coloured by kind, one column per
 * level. A virtualised canvas: only blocks inside the viewport are drawn, and at small zoom a block is
 * drawn as runs of rows instead of single cells. Wheel zooms around the pointer, dragging pans, clicking
 * an entry asks "Where is GFN X?" for the first gfn it maps.
 */
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import './style.css';
import { fitCanvas } from '../shared/canvas';
import {
  BLOCK_H,
  BLOCK_W,
  KIND_LETTERS,
  layout,
  pagesPerEntry,
  parseToMap,
  type BlockPos,
  type FromMap,
  type KindLetter,
  type MapData,
} from '../shared/ptmap_protocol';

interface State {
  root?: number;
  zoom?: number;
  panX?: number;
  panY?: number;
}
interface VsCodeApi {
  postMessage(m: FromMap): void;
  getState(): unknown;
  setState(s: State): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const saved = (vscode.getState() as State | undefined) ?? {};
const app = document.getElementById('app')!;
const bar = el('div', 'toolbar');
const rootSel = document.createElement('vscode-single-select') as HTMLElement & { value: string };
rootSel.setAttribute('aria-label', 'Root');
const info = el('span', 'info');
const fit = document.createElement('vscode-button');
fit.setAttribute('secondary', '');
fit.textContent = 'Fit';
fit.setAttribute('aria-label', 'Fit the map to the panel width');
bar.append(el('label', 'lbl', 'Root'), rootSel, fit, info);
const legend = el('div', 'legend');
const VAR_OF: Record<KindLetter, string> = {
  '.': '--vscode-disabledForeground',
  n: '--vscode-disabledForeground',
  L: '--vscode-charts-blue',
  H: '--vscode-charts-purple',
  T: '--vscode-charts-green',
  M: '--vscode-charts-orange',
  F: '--vscode-charts-red',
};
for (const k of Object.keys(KIND_LETTERS) as KindLetter[]) {
  const sw = el('span', `swatch k${k === '.' ? 'dot' : k}`);
  const item = el('span', 'item');
  item.append(sw, el('span', 'ltext', KIND_LETTERS[k]));
  legend.append(item);
}
const wrap = el('div', 'canvas-wrap');
const canvas = el('canvas');
canvas.setAttribute('role', 'img');
canvas.setAttribute('aria-label', 'page-table map');
wrap.append(canvas);
const status = el('div', 'status', 'wheel: zoom, drag: pan, click an entry: Where is GFN?');
const err = el('div', 'error');
app.append(bar, legend, err, wrap, status);

let map: MapData | undefined;
let pos: BlockPos[] = [];
let zoom = saved.zoom ?? 10; // pixels per entry cell
let panX = saved.panX ?? 10;
let panY = saved.panY ?? 10;
const colors: Record<string, string> = {};

function readColors(): void {
  const cs = getComputedStyle(document.body);
  for (const k of Object.keys(VAR_OF) as KindLetter[]) colors[k] = cs.getPropertyValue(VAR_OF[k]).trim() || '#888';
  colors.grid = cs.getPropertyValue('--vscode-editor-background').trim() || '#000';
  colors.label = cs.getPropertyValue('--vscode-foreground').trim() || '#ccc';
  colors.focus = cs.getPropertyValue('--vscode-focusBorder').trim() || '#07f';
}

function save(): void {
  vscode.setState({ root: map?.root, zoom, panX, panY });
}

let frame = 0;
function schedule(): void {
  if (!frame) frame = requestAnimationFrame(draw);
}

function draw(): void {
  frame = 0;
  const { g, w, h } = fitCanvas(canvas, wrap);
  g.fillStyle = colors.grid;
  g.fillRect(0, 0, w, h);
  if (!map) return;
  let drawn = 0;
  const cell = zoom;
  const gap = cell >= 4 ? 1 : 0;
  g.font = '11px sans-serif';
  for (let i = 0; i < map.tables.length; i++) {
    const t = map.tables[i]!;
    const p = pos[i]!;
    const x0 = panX + p.x * cell;
    const y0 = panY + p.y * cell;
    if (x0 > w || y0 > h || x0 + BLOCK_W * cell < 0 || y0 + BLOCK_H * cell < 0) continue;
    drawn++;
    if (cell >= 2) {
      for (let e = 0; e < 512; e++) {
        const k = t.kinds[e] as KindLetter;
        // Never-written entries are the background of a table: present but faint.
        g.globalAlpha = k === '.' ? 0.18 : 1;
        g.fillStyle = colors[k] ?? '#888';
        g.fillRect(x0 + (e % 32) * cell, y0 + Math.floor(e / 32) * cell, cell - gap, cell - gap);
      }
      g.globalAlpha = 1;
    } else {
      // Too small for cells: one line per row of 32 entries, in the row's most common non-empty kind.
      for (let r = 0; r < 16; r++) {
        const row = t.kinds.slice(r * 32, r * 32 + 32);
        let best = '.';
        let n = 0;
        for (const k of 'FMTHLn') {
          const c = row.split(k).length - 1;
          if (c > n) {
            n = c;
            best = k;
          }
        }
        g.globalAlpha = best === '.' ? 0.18 : 1;
        g.fillStyle = colors[best as KindLetter] ?? '#888';
        g.fillRect(x0, y0 + r * cell, BLOCK_W * cell, Math.max(cell, 0.5));
        g.globalAlpha = 1;
      }
    }
    if (cell >= 6) {
      g.fillStyle = colors.label;
      g.fillText(`L${t.level} gfn 0x${t.gfn.toString(16)}`, x0, y0 - 3);
    }
  }
  if (hover) {
    const p = pos[hover.table]!;
    g.strokeStyle = colors.focus;
    g.lineWidth = 2;
    g.strokeRect(panX + (p.x + (hover.entry % 32)) * cell - 1, panY + (p.y + Math.floor(hover.entry / 32)) * cell - 1, cell + 1, cell + 1);
  }
  vscode.postMessage({ type: 'rendered', tables: map.tables.length, drawn });
}

let hover: { table: number; entry: number } | undefined;

function hit(clientX: number, clientY: number): { table: number; entry: number } | undefined {
  if (!map) return undefined;
  const r = canvas.getBoundingClientRect();
  const wx = (clientX - r.left - panX) / zoom;
  const wy = (clientY - r.top - panY) / zoom;
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i]!;
    if (wx >= p.x && wx < p.x + BLOCK_W && wy >= p.y && wy < p.y + BLOCK_H) {
      return { table: i, entry: Math.floor(wy - p.y) * 32 + Math.floor(wx - p.x) };
    }
  }
  return undefined;
}

function describe(h: { table: number; entry: number }): string {
  const t = map!.tables[h.table]!;
  const k = t.kinds[h.entry] as KindLetter;
  const n = pagesPerEntry(t.level);
  const gfn = t.gfn + h.entry * n;
  return `L${t.level} table gfn 0x${t.gfn.toString(16)} [${h.entry}]  gfn 0x${gfn.toString(16)}${n > 1 ? `-0x${(gfn + n - 1).toString(16)}` : ''}  ${KIND_LETTERS[k]}`;
}

let drag: { x: number; y: number; panX: number; panY: number; moved: boolean } | undefined;
canvas.addEventListener('mousedown', (e) => {
  drag = { x: e.clientX, y: e.clientY, panX, panY, moved: false };
});
window.addEventListener('mouseup', (e) => {
  if (drag && !drag.moved) {
    const h = hit(e.clientX, e.clientY);
    if (h && map) {
      const t = map.tables[h.table]!;
      vscode.postMessage({ type: 'where', gfn: t.gfn + h.entry * pagesPerEntry(t.level) });
    }
  }
  if (drag) save();
  drag = undefined;
});
window.addEventListener('mousemove', (e) => {
  if (drag) {
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    panX = drag.panX + dx;
    panY = drag.panY + dy;
    schedule();
    return;
  }
  const h = hit(e.clientX, e.clientY);
  if (h?.table !== hover?.table || h?.entry !== hover?.entry) {
    hover = h;
    status.textContent = h ? describe(h) : 'wheel: zoom, drag: pan, click an entry: Where is GFN?';
    schedule();
  }
});
canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  const r = canvas.getBoundingClientRect();
  const mx = e.clientX - r.left;
  const my = e.clientY - r.top;
  const f = Math.exp(-e.deltaY * 0.0015);
  const nz = Math.min(40, Math.max(0.05, zoom * f));
  panX = mx - ((mx - panX) * nz) / zoom;
  panY = my - ((my - panY) * nz) / zoom;
  zoom = nz;
  save();
  schedule();
}, { passive: false });
new ResizeObserver(() => schedule()).observe(wrap);
new MutationObserver(() => {
  readColors();
  schedule();
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

/** Zoom so every level column fits the panel width, top of the map in view. */
function fitWidth(): void {
  if (!map || pos.length === 0) return;
  let maxX = 0;
  for (const p of pos) maxX = Math.max(maxX, p.x + BLOCK_W);
  zoom = Math.min(40, Math.max(0.05, (wrap.clientWidth - 20) / maxX));
  panX = 10;
  panY = 18;
  save();
  schedule();
}
fit.addEventListener('click', fitWidth);

rootSel.addEventListener('change', () => {
  const r = Number(rootSel.value);
  if (Number.isInteger(r) && r !== map?.root) vscode.postMessage({ type: 'selectRoot', root: r });
});

window.addEventListener('message', (ev: MessageEvent) => {
  const m = parseToMap(ev.data);
  if (!m) return;
  if (m.type === 'error') {
    err.textContent = m.message;
    return;
  }
  err.textContent = '';
  const first = !map && saved.zoom === undefined;
  const rootChanged = map !== undefined && map.root !== m.map.root;
  map = m.map;
  pos = layout(map);
  if (first || rootChanged) fitWidth();
  rootSel.replaceChildren(...map.roots.map((r) => {
    const o = document.createElement('vscode-option');
    o.setAttribute('value', String(r.table));
    o.textContent = r.label;
    return o;
  }));
  rootSel.value = String(map.root);
  const count: Record<string, number> = {};
  for (const t of map.tables) for (const k of t.kinds) count[k] = (count[k] ?? 0) + 1;
  info.textContent = `${map.format.toUpperCase()}  ${map.tables.length} tables  ${count.L ?? 0} 4K leaves  ${count.H ?? 0} huge leaves${count.M ? `  ${count.M} MMIO` : ''}${count.F ? `  ${count.F} frozen` : ''}${map.truncated ? '  (truncated)' : ''}${map.at ? `  at ${map.at}` : ''}`;
  save();
  schedule();
});

readColors();
vscode.postMessage(saved.root !== undefined ? { type: 'ready', root: saved.root } : { type: 'ready' });
