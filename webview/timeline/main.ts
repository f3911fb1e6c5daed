/**
 * Timeline: the session's events along the event index, one row per vCPU, each bucket a stacked bar of
 * the kinds of MMU activity in it (faults, SPTE updates, zaps, splits, flushes, notifier invalidations,
 * RMP conversions). The extension buckets the events (kvmMmu/vcpuTimeline), so a zoom or a pan is one
 * small request whatever the number of events. Wheel zooms, drag pans, click reveals the statement,
 * shift-click goes back to that vCPU's event.
 */
import './style.css';
import { fitCanvas } from '../shared/canvas';
import { TIMELINE_KINDS, parseToTimeline, type FromTimeline, type TimelineData, type TimelineKind } from '../shared/timeline_protocol';

interface VsCodeApi {
  postMessage(m: FromTimeline): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

const LABEL_W = 96;
/** Row height: rows share the panel's height, between these bounds. */
const ROW_MIN = 40;
const ROW_MAX = 96;
let ROW_H = ROW_MIN;
const TOP = 22;
const HINT = 'wheel: zoom, drag: pan, click: reveal the statement, shift-click: go back to the event, double-click: all';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const kindOf = (k: string): (typeof TIMELINE_KINDS)[TimelineKind] => TIMELINE_KINDS[(k in TIMELINE_KINDS ? k : 'other') as TimelineKind];

const app = document.getElementById('app')!;
const head = el('div', 'head');
const legend = el('div', 'legend');
const wrap = el('div', 'canvas-wrap');
const canvas = el('canvas');
canvas.setAttribute('role', 'img');
canvas.setAttribute('aria-label', 'MMU events per vCPU over event time');
wrap.append(canvas);
const status = el('div', 'status', HINT);
const err = el('div', 'error');
app.append(head, legend, err, wrap, status);

let data: TimelineData | undefined;
let kindColor: string[] = [];
const pal = { fg: '#ccc', dim: '#888', bg: '#000', focus: '#07f', grid: '#444' };

function readColors(): void {
  const cs = getComputedStyle(document.body);
  const v = (name: string, dflt: string) => cs.getPropertyValue(name).trim() || dflt;
  kindColor = data ? data.kinds.map((k) => v(kindOf(k.kind).color, '#888')) : [];
  pal.fg = v('--vscode-foreground', pal.fg);
  pal.dim = v('--vscode-descriptionForeground', pal.dim);
  pal.bg = v('--vscode-editor-background', pal.bg);
  pal.focus = v('--vscode-focusBorder', pal.focus);
  pal.grid = v('--vscode-panel-border', v('--vscode-contrastBorder', pal.dim));
}

function plotWidth(): number {
  return Math.max(50, wrap.clientWidth - LABEL_W - 10);
}

let frame = 0;
function schedule(): void {
  if (!frame) frame = requestAnimationFrame(draw);
}

let hover: { row: number; bucket: number } | undefined;

function rowName(vcpu: number): string {
  return vcpu < 0 ? 'VM / host' : `vCPU ${vcpu}`;
}

function draw(): void {
  frame = 0;
  const { g, w, h } = fitCanvas(canvas, wrap);
  g.fillStyle = pal.bg;
  g.fillRect(0, 0, w, h);
  if (!data) return;
  const d = data;
  ROW_H = Math.max(ROW_MIN, Math.min(ROW_MAX, Math.floor((h - TOP - 4) / Math.max(1, d.rows.length))));
  const pw = plotWidth();
  const bw = pw / d.buckets;
  const bottom = TOP + d.rows.length * ROW_H;
  g.font = '12px sans-serif';
  g.textBaseline = 'middle';
  // Statement markers: where each statement (or trace line) starts emitting.
  const span = d.to - d.from;
  let lastX = -100;
  g.strokeStyle = pal.dim;
  for (const s of d.steps) {
    const x = Math.round(LABEL_W + ((s.index - d.from) / span) * pw) + 0.5;
    g.globalAlpha = 0.35;
    g.beginPath();
    g.moveTo(x, TOP - 4);
    g.lineTo(x, bottom);
    g.stroke();
    if (x - lastX > 44) {
      g.globalAlpha = 1;
      g.fillStyle = pal.dim;
      const label = `L${s.line}`;
      g.fillText(label, Math.min(x + 3, w - g.measureText(label).width - 2), 9);
      lastX = x;
    }
  }
  g.globalAlpha = 1;
  d.rows.forEach((row, r) => {
    const y = TOP + r * ROW_H;
    g.strokeStyle = pal.grid;
    g.beginPath();
    g.moveTo(LABEL_W, y + ROW_H - 0.5);
    g.lineTo(LABEL_W + pw, y + ROW_H - 0.5);
    g.stroke();
    g.fillStyle = pal.fg;
    g.fillText(rowName(row.vcpu), 4, y + ROW_H / 2 - 6);
    g.fillStyle = pal.dim;
    g.fillText(`${row.total} events`, 4, y + ROW_H / 2 + 8);
    const counts = d.counts[r]!;
    let max = 1;
    for (let b = 0; b < d.buckets; b++) {
      let t = 0;
      for (const c of counts) t += c[b]!;
      if (t > max) max = t;
    }
    const full = ROW_H - 6;
    const barW = Math.max(1, bw - (bw > 3 ? 1 : 0));
    for (let b = 0; b < d.buckets; b++) {
      let t = 0;
      for (const c of counts) t += c[b]!;
      if (!t) continue;
      // Log height so a single fault next to a 512-SPTE split stays visible; kinds share it by count.
      const hh = Math.max(3, (full * Math.log(t + 1)) / Math.log(max + 1));
      let yy = y + ROW_H - 3;
      for (let k = 0; k < counts.length; k++) {
        const c = counts[k]![b]!;
        if (!c) continue;
        const seg = Math.max(1, (hh * c) / t);
        g.fillStyle = kindColor[k] ?? '#888';
        g.fillRect(LABEL_W + b * bw, yy - seg, barW, seg);
        yy -= seg;
      }
    }
  });
  // The stop: before the first event it has not yet run (after the newest one when it ran them all).
  const stop = d.stop ?? d.end;
  if (stop >= d.from && stop <= d.to) {
    const x = LABEL_W + ((stop - d.from) / span) * pw;
    g.strokeStyle = pal.focus;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(x, TOP - 4);
    g.lineTo(x, bottom);
    g.stroke();
    g.lineWidth = 1;
  }
  if (hover) {
    g.strokeStyle = pal.focus;
    g.strokeRect(LABEL_W + hover.bucket * bw - 0.5, TOP + hover.row * ROW_H + 0.5, Math.max(2, bw), ROW_H - 2);
  }
  vscode.postMessage({ type: 'rendered', rows: d.rows.length, buckets: d.buckets });
}

function drawLegend(): void {
  if (!data) return;
  legend.replaceChildren(...data.kinds.filter((k) => k.total > 0).map((k) => {
    const item = el('span', 'item');
    const sw = el('span', 'swatch');
    sw.dataset.kind = k.kind in TIMELINE_KINDS ? k.kind : 'other';
    item.title = k.names.join(', ');
    item.append(sw, el('span', 'ltext', `${kindOf(k.kind).label} ${k.total}`));
    return item;
  }));
}

let pending: ReturnType<typeof setTimeout> | undefined;
function requestRange(from: number, to: number): void {
  if (!data) return;
  from = Math.max(data.first, Math.floor(from));
  to = Math.min(data.end, Math.ceil(to));
  if (to - from < 8) return;
  const buckets = Math.max(10, Math.min(4000, Math.floor(plotWidth() / 3)));
  vscode.setState({ from, to });
  if (pending) clearTimeout(pending);
  pending = setTimeout(() => vscode.postMessage({ type: 'range', from, to, buckets }), 60);
}

function at(clientX: number, clientY: number): { row: number; bucket: number } | undefined {
  if (!data) return undefined;
  const r = canvas.getBoundingClientRect();
  const x = clientX - r.left - LABEL_W;
  const row = Math.floor((clientY - r.top - TOP) / ROW_H);
  if (x < 0 || x >= plotWidth() || row < 0 || row >= data.rows.length) return undefined;
  return { row, bucket: Math.floor((x / plotWidth()) * data.buckets) };
}

canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  if (!data) return;
  const r = canvas.getBoundingClientRect();
  const frac = Math.min(1, Math.max(0, (e.clientX - r.left - LABEL_W) / plotWidth()));
  const span = data.to - data.from;
  const x = data.from + frac * span;
  const ns = Math.max(16, span * Math.exp(e.deltaY * 0.002));
  requestRange(x - frac * ns, x + (1 - frac) * ns);
}, { passive: false });

let drag: { x: number; from: number; to: number; moved: boolean } | undefined;
canvas.addEventListener('mousedown', (e) => {
  if (data) drag = { x: e.clientX, from: data.from, to: data.to, moved: false };
});
window.addEventListener('mousemove', (e) => {
  if (drag && data) {
    const dx = e.clientX - drag.x;
    if (Math.abs(dx) > 3) drag.moved = true;
    if (drag.moved) {
      const span = drag.to - drag.from;
      const from = Math.max(data.first, Math.min(data.end - span, drag.from + (-dx / plotWidth()) * span));
      requestRange(from, from + span);
    }
    return;
  }
  const h = at(e.clientX, e.clientY);
  if (h?.row !== hover?.row || h?.bucket !== hover?.bucket) {
    hover = h;
    status.textContent = h ? describe(h) : HINT;
    schedule();
  }
});
window.addEventListener('mouseup', (e) => {
  if (drag && !drag.moved && data) {
    const h = at(e.clientX, e.clientY);
    if (h && data.firstAt[h.row]![h.bucket]! >= 0) {
      if (e.shiftKey) vscode.postMessage({ type: 'goto', index: data.firstAt[h.row]![h.bucket]! });
      else vscode.postMessage({ type: 'reveal', step: data.stepAt[h.row]![h.bucket]! });
    }
  }
  drag = undefined;
});
canvas.addEventListener('dblclick', () => {
  if (data) requestRange(data.first, data.end);
});

function describe(h: { row: number; bucket: number }): string {
  const d = data!;
  const first = d.firstAt[h.row]![h.bucket]!;
  if (first < 0) return `${rowName(d.rows[h.row]!.vcpu)}: no events here`;
  const parts = d.kinds.map((k, i) => [kindOf(k.kind).label, d.counts[h.row]![i]![h.bucket]!] as const).filter(([, c]) => c > 0).map(([n, c]) => `${n} ×${c}`);
  return `${rowName(d.rows[h.row]!.vcpu)}, events from #${first}: ${parts.join(', ')}`;
}

new ResizeObserver(() => schedule()).observe(wrap);
new MutationObserver(() => {
  readColors();
  schedule();
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

window.addEventListener('message', (ev: MessageEvent) => {
  const m = parseToTimeline(ev.data);
  if (!m) return;
  if (m.type === 'error') {
    err.textContent = m.message;
    return;
  }
  err.textContent = '';
  data = m.data;
  hover = undefined;
  readColors();
  drawLegend();
  const total = data.rows.reduce((a, r) => a + r.total, 0);
  const vcpus = data.rows.filter((r) => r.vcpu >= 0).length;
  head.textContent = `${total} events from ${vcpus} vCPU${vcpus === 1 ? '' : 's'} in the window #${data.first}-#${Math.max(data.first, data.end - 1)}; showing #${data.from}-#${Math.max(data.from, data.to - 1)}`;
  schedule();
});

readColors();
vscode.postMessage({ type: 'ready' });
