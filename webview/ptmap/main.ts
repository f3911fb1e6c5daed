/**
 * Page-Table Map: every table of a root drawn as a block of entries coloured by kind, one column per
 * level: x86 TDP roots (512 entries a table) and arm64 stage-2 tables (4K/16K/64K granules, LPA2), where
 * under pKVM the entries can be coloured by page state and owner instead. Virtualised: tables are
 * pre-drawn into an atlas and only those inside the viewport are copied, scaled, each frame. Wheel zooms
 * around the pointer, dragging pans, clicking an entry asks "Where is GFN X?" for the first page it maps.
 */
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import './style.css';
import { fitCanvas } from '../shared/canvas';
import { buildAtlas, blend, parseColor, type Atlas } from './atlas';
import { TileCache, tablesIn, type Scene } from './tiles';
import {
  BLOCK_GAP,
  KIND_LETTERS,
  OWNER_LETTERS,
  STAGE2_KIND_LETTERS,
  blockSize,
  layout,
  pagesPerEntry,
  parseToMap,
  walkPath,
  type BlockPos,
  type FromMap,
  type KindLetter,
  type MapData,
  type OwnerLetter,
} from '../shared/ptmap_protocol';

type ColorBy = 'kind' | 'owner';
interface State {
  root?: number;
  zoom?: number;
  panX?: number;
  panY?: number;
  colorBy?: ColorBy;
}
interface VsCodeApi {
  postMessage(m: FromMap): void;
  getState(): unknown;
  setState(s: State): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

const KIND_VAR: Record<KindLetter, string> = {
  '.': '--vscode-disabledForeground',
  n: '--vscode-disabledForeground',
  L: '--vscode-charts-blue',
  H: '--vscode-charts-purple',
  T: '--vscode-charts-green',
  M: '--vscode-charts-orange',
  F: '--vscode-charts-red',
};
const OWNER_VAR: Record<OwnerLetter, string> = {
  '-': '--vscode-disabledForeground',
  o: '--vscode-charts-blue',
  s: '--vscode-charts-green',
  b: '--vscode-charts-yellow',
  y: '--vscode-charts-purple',
  g: '--vscode-terminal-ansiCyan',
  p: '--vscode-charts-red',
  m: '--vscode-foreground',
};
/** Never-written entries (and, coloured by owner, entries without a state) are the faint background of a table. */
const FAINT = 0.18;
const HINT = 'wheel: zoom, drag: pan, click an entry: Where is GFN?';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function option(value: string, text: string): HTMLElement {
  const o = document.createElement('vscode-option');
  o.setAttribute('value', value);
  o.textContent = text;
  return o;
}

const saved = (vscode.getState() as State | undefined) ?? {};
const app = document.getElementById('app')!;
const bar = el('div', 'toolbar');
const rootSel = document.createElement('vscode-single-select') as HTMLElement & { value: string };
rootSel.setAttribute('aria-label', 'Root');
const colorSel = document.createElement('vscode-single-select') as HTMLElement & { value: string };
colorSel.setAttribute('aria-label', 'Colour entries by');
colorSel.classList.add('color-by');
colorSel.append(option('kind', 'entry kind'), option('owner', 'pKVM state and owner'));
const colorLbl = el('label', 'lbl color-by', 'Colour');
const info = el('span', 'info');
const fit = document.createElement('vscode-button');
fit.setAttribute('secondary', '');
fit.textContent = 'Fit';
fit.setAttribute('aria-label', 'Fit the map to the panel width');
const rootGroup = el('span', 'group');
rootGroup.append(el('label', 'lbl', 'Root'), rootSel);
const colorGroup = el('span', 'group');
colorGroup.append(colorLbl, colorSel);
bar.append(rootGroup, colorGroup, fit, info);
const legend = el('div', 'legend');
const wrap = el('div', 'canvas-wrap');
const canvas = el('canvas');
canvas.setAttribute('role', 'img');
canvas.setAttribute('aria-label', 'page-table map');
wrap.append(canvas);
const status = el('div', 'status', HINT);
const err = el('div', 'error');
app.append(bar, legend, err, wrap, status);

let map: MapData | undefined;
let pos: BlockPos[] = [];
let block = blockSize(512);
let zoom = saved.zoom ?? 10; // pixels per entry cell
let panX = saved.panX ?? 10;
let panY = saved.panY ?? 10;
// Page states are what a pKVM map is for: shown first where the map has them.
let colorBy: ColorBy = saved.colorBy ?? 'owner';
let atlas: Atlas | undefined;
let scene: Scene | undefined;
let walk: Array<{ table: number; entry: number }> = [];
let lastRendered = '';
const tiles = new TileCache();
const css = { bg: '#000', label: '#ccc', focus: '#07f', walk: '#f80' };

const canColorByOwner = (): boolean => !!map && (map.ownership === 'guest' || map.ownership === 'host');
const mode = (): ColorBy => (colorBy === 'owner' && canColorByOwner() ? 'owner' : 'kind');
const kindText = (): Record<KindLetter, string> => (map?.arch === 'arm64' ? STAGE2_KIND_LETTERS : KIND_LETTERS);

/** Colours resolved from the theme and the atlas drawn with them; after a map, a mode or a theme change. */
function rebuild(): void {
  const cs = getComputedStyle(document.body);
  const v = (name: string, dflt: string): string => cs.getPropertyValue(name).trim() || dflt;
  css.bg = v('--vscode-editor-background', '#000');
  css.label = v('--vscode-foreground', '#ccc');
  css.focus = v('--vscode-focusBorder', '#07f');
  css.walk = v('--vscode-editorWarning-foreground', v('--vscode-charts-orange', '#f80'));
  if (!map) return;
  const bg = parseColor(css.bg);
  const kindRgb = new Map<string, readonly [number, number, number]>();
  for (const k of Object.keys(KIND_VAR) as KindLetter[]) kindRgb.set(k, blend(parseColor(v(KIND_VAR[k], '#888')), bg, k === '.' ? FAINT : 1));
  const faintKind = new Map<string, readonly [number, number, number]>();
  for (const k of Object.keys(KIND_VAR) as KindLetter[]) faintKind.set(k, blend(parseColor(v(KIND_VAR[k], '#888')), bg, FAINT));
  const ownerRgb = new Map<string, readonly [number, number, number]>();
  for (const o of Object.keys(OWNER_VAR) as OwnerLetter[]) ownerRgb.set(o, blend(parseColor(v(OWNER_VAR[o], '#888')), bg, 1));
  const fallback = [136, 136, 136] as const;
  const m = map;
  const byOwner = mode() === 'owner';
  atlas = buildAtlas(m, (t, e) => {
    const table = m.tables[t]!;
    const k = table.kinds[e]!;
    if (byOwner) {
      const o = table.owners?.[e] ?? '-';
      // Entries without a page state (tables, empty slots) stay visible, faint, in their kind's colour.
      return o === '-' ? faintKind.get(k) ?? fallback : ownerRgb.get(o) ?? fallback;
    }
    return kindRgb.get(k) ?? fallback;
  });
  scene = sceneOf(m, atlas);
  tiles.reset();
  lastRendered = '';
  drawLegend();
}

function sceneOf(m: MapData, a: Atlas): Scene {
  const byX = new Map<number, number[]>();
  pos.forEach((p, i) => {
    const col = byX.get(p.x);
    if (col) col.push(i);
    else byX.set(p.x, [i]);
  });
  const shift = m.pageShift ?? 12;
  return {
    atlas: a,
    pos,
    columns: [...byX.entries()].map(([x, tables]) => ({ x, tables })),
    rowStep: block.h + BLOCK_GAP,
    block,
    bg: css.bg,
    fg: css.label,
    label: (i) => {
      const t = m.tables[i]!;
      const at = addrText(t);
      return `L${t.level} ${at.what} ${hex(at.what === 'gfn' ? at.first : at.first * 2 ** shift)}`;
    },
  };
}

function drawLegend(): void {
  const items: Array<[string, string]> = mode() === 'owner'
    ? (Object.keys(OWNER_LETTERS) as OwnerLetter[]).filter((o) => o !== '-').map((o) => [`o${o}`, OWNER_LETTERS[o]])
    : (Object.keys(KIND_LETTERS) as KindLetter[]).filter((k) => map?.arch !== 'arm64' || k !== 'M').map((k) => [`k${k === '.' ? 'dot' : k}`, kindText()[k]]);
  legend.replaceChildren(...items.map(([cls, text]) => {
    const item = el('span', 'item');
    item.append(el('span', `swatch ${cls}`), el('span', 'ltext', text));
    return item;
  }));
  if (mode() === 'owner') legend.append(el('span', 'ltext note', map?.ownership === 'host' ? 'host stage-2: the host\'s state of each page (hyp_vmemmap), or who it was donated to' : 'guest stage-2: the guest\'s state of each page (PTE SW bits)'));
}

function save(): void {
  vscode.setState({ root: map?.root, zoom, panX, panY, colorBy });
}

let frame = 0;
function schedule(): void {
  if (!frame) frame = requestAnimationFrame(draw);
}

function addrText(t: MapData['tables'][number], entry = 0): { what: string; first: number; pages: number } {
  const m = map!;
  const pages = pagesPerEntry(t.level, m.leafLevel, m.bitsPerLevel);
  const first = t.gfn + entry * pages;
  return { what: m.arch === 'arm64' ? (m.space === 'pa' ? 'pa' : 'ipa') : 'gfn', first, pages };
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

function draw(): void {
  frame = 0;
  const { g, w, h } = fitCanvas(canvas, wrap);
  g.fillStyle = css.bg;
  g.fillRect(0, 0, w, h);
  if (!map || !scene) return;
  // Tiles still to draw come on the next frames; the rest of the map is already on screen.
  if (tiles.draw(g, scene, zoom, panX, panY, w, h)) schedule();
  const cell = zoom;
  if (walk.length) drawWalk(g, cell);
  if (hover) {
    const p = pos[hover.table]!;
    g.strokeStyle = css.focus;
    g.lineWidth = 2;
    g.strokeRect(Math.round(panX) + (p.x + (hover.entry % block.w)) * cell - 1, Math.round(panY) + (p.y + Math.floor(hover.entry / block.w)) * cell - 1, cell + 1, cell + 1);
  }
  const drawn = tablesIn(scene, -panX / zoom, -panY / zoom, (w - panX) / zoom, (h - panY) / zoom).length;
  // Once per map, colouring or theme, and when the count in view changes: not 60 messages a second while panning.
  const said = `${map.tables.length}:${drawn}`;
  if (said !== lastRendered) {
    lastRendered = said;
    vscode.postMessage({ type: 'rendered', tables: map.tables.length, drawn });
  }
}

let hover: { table: number; entry: number } | undefined;

/** The current fault's walk: each entry it reads outlined, joined to the table it leads to. */
function drawWalk(g: CanvasRenderingContext2D, cell: number): void {
  const px = Math.round(panX);
  const py = Math.round(panY);
  const centre = (w: { table: number; entry: number }) => {
    const p = pos[w.table]!;
    return { x: px + (p.x + (w.entry % block.w) + 0.5) * cell, y: py + (p.y + Math.floor(w.entry / block.w) + 0.5) * cell };
  };
  g.save();
  g.strokeStyle = css.walk;
  g.lineWidth = 2;
  g.setLineDash([5, 3]);
  g.beginPath();
  walk.forEach((w, i) => {
    const c = centre(w);
    if (i === 0) g.moveTo(c.x, c.y);
    else g.lineTo(c.x, c.y);
  });
  g.stroke();
  g.setLineDash([]);
  const r = Math.max(4, cell / 2 + 2);
  for (const w of walk) {
    const c = centre(w);
    g.strokeRect(c.x - r, c.y - r, 2 * r, 2 * r);
  }
  g.restore();
}

function hit(clientX: number, clientY: number): { table: number; entry: number } | undefined {
  if (!map || !scene) return undefined;
  const r = canvas.getBoundingClientRect();
  const wx = (clientX - r.left - Math.round(panX)) / zoom;
  const wy = (clientY - r.top - Math.round(panY)) / zoom;
  for (const i of tablesIn(scene, wx, wy, wx + 1e-9, wy + 1e-9)) {
    const p = pos[i]!;
    if (wx >= p.x && wx < p.x + block.w && wy >= p.y && wy < p.y + block.h) {
      return { table: i, entry: Math.floor(wy - p.y) * block.w + Math.floor(wx - p.x) };
    }
  }
  return undefined;
}

function describe(hv: { table: number; entry: number }): string {
  const m = map!;
  const t = m.tables[hv.table]!;
  const k = t.kinds[hv.entry] as KindLetter;
  const { what, first, pages } = addrText(t, hv.entry);
  const shift = m.pageShift ?? 12;
  const range = what === 'gfn'
    ? `gfn ${hex(first)}${pages > 1 ? `-${hex(first + pages - 1)}` : ''}`
    : `${what} ${hex(first * 2 ** shift)}-${hex((first + pages) * 2 ** shift - 1)}`;
  const o = t.owners?.[hv.entry] as OwnerLetter | undefined;
  const own = o && o !== '-' ? `  ${OWNER_LETTERS[o]}` : '';
  return `L${t.level} table ${what} ${hex(what === 'gfn' ? t.gfn : t.gfn * 2 ** shift)} [${hv.entry}]  ${range}  ${kindText()[k]}${own}`;
}

let drag: { x: number; y: number; panX: number; panY: number; moved: boolean } | undefined;
canvas.addEventListener('mousedown', (e) => {
  drag = { x: e.clientX, y: e.clientY, panX, panY, moved: false };
});
window.addEventListener('mouseup', (e) => {
  if (drag && !drag.moved && map) {
    const hv = hit(e.clientX, e.clientY);
    if (hv) {
      // The host stage-2 maps host physical addresses: there is no guest frame to look up.
      if (map.space === 'pa') status.textContent = `${describe(hv)}  (a host physical address: no guest frame)`;
      else vscode.postMessage({ type: 'where', gfn: addrText(map.tables[hv.table]!, hv.entry).first });
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
  const hv = hit(e.clientX, e.clientY);
  if (hv?.table !== hover?.table || hv?.entry !== hover?.entry) {
    hover = hv;
    status.textContent = hv ? describe(hv) : HINT;
    schedule();
  }
});
canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  const r = canvas.getBoundingClientRect();
  const mx = e.clientX - r.left;
  const my = e.clientY - r.top;
  const f = Math.exp(-e.deltaY * 0.0015);
  const nz = Math.min(40, Math.max(0.02, zoom * f));
  panX = mx - ((mx - panX) * nz) / zoom;
  panY = my - ((my - panY) * nz) / zoom;
  zoom = nz;
  save();
  schedule();
}, { passive: false });
new ResizeObserver(() => schedule()).observe(wrap);
new MutationObserver(() => {
  rebuild();
  schedule();
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

/** Zoom so every level column fits the panel width, top of the map in view. */
function fitWidth(): void {
  if (!map || pos.length === 0) return;
  let maxX = 0;
  for (const p of pos) maxX = Math.max(maxX, p.x + block.w);
  zoom = Math.min(40, Math.max(0.02, (wrap.clientWidth - 20) / maxX));
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
colorSel.addEventListener('change', () => {
  colorBy = colorSel.value === 'owner' ? 'owner' : 'kind';
  save();
  rebuild();
  schedule();
});

const n = (c: number, what: string): string => `${c} ${what}${c === 1 ? '' : 's'}`;

function summary(m: MapData): string {
  const count: Record<string, number> = {};
  for (const t of m.tables) for (const k of t.kinds) count[k] = (count[k] ?? 0) + 1;
  const levels = m.tables.length ? Math.abs(m.rootLevel - (m.leafLevel ?? 1)) + 1 : 0;
  const head = m.arch === 'arm64'
    ? `stage-2 ${m.granule?.toUpperCase() ?? ''} granule${m.lpa2 ? ', LPA2' : ''}, ${levels} levels from L${m.rootLevel}  ${n(m.tables.length, 'table')}  ${n(count.L ?? 0, 'page')}  ${n(count.H ?? 0, 'block')}${count.n ? `  ${count.n} annotated` : ''}${count.F ? `  ${count.F} locked` : ''}`
    : `${m.format.toUpperCase()}  ${m.tables.length} tables  ${count.L ?? 0} 4K leaves  ${count.H ?? 0} huge leaves${count.M ? `  ${count.M} MMIO` : ''}${count.F ? `  ${count.F} frozen` : ''}`;
  return `${head}${m.truncated ? '  (truncated)' : ''}${m.at ? `  at ${m.at}` : ''}`;
}

window.addEventListener('message', (ev: MessageEvent) => {
  const m = parseToMap(ev.data);
  if (!m) return;
  if (m.type === 'error') {
    err.textContent = m.message;
    return;
  }
  err.textContent = '';
  const first = !map && saved.zoom === undefined;
  const rootChanged = map !== undefined && (map.root !== m.map.root || map.format !== m.map.format);
  map = m.map;
  block = blockSize(map.entries ?? 512);
  pos = layout(map);
  hover = undefined;
  rootSel.replaceChildren(...map.roots.map((r) => option(String(r.table), r.label)));
  rootSel.value = String(map.root);
  colorGroup.style.display = canColorByOwner() ? '' : 'none';
  colorSel.value = mode();
  walk = map.walk ? walkPath(map, map.walk.gfn) : [];
  info.textContent = summary(map) + (map.walk ? `  |  walk of the ${map.walk.label}` : '');
  rebuild();
  if (first || rootChanged) fitWidth();
  save();
  schedule();
});

rebuild();
vscode.postMessage(saved.root !== undefined ? { type: 'ready', root: saved.root } : { type: 'ready' });
