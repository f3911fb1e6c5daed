/**
 * Timeline: tracepoint events of the session along the event index, one lane per tracepoint, with the
 * statements that emitted them marked above. The extension buckets the events (kvmMmu/timeline), so a
 * zoom or a pan is one small request whatever the number of events. Wheel zooms, drag pans, click reveals
 * the statement, shift-click goes back to that event.
 */
import './style.css';
import { fitCanvas } from '../shared/canvas';
import { parseToTimeline, type FromTimeline, type TimelineData } from '../shared/timeline_protocol';

interface VsCodeApi {
  postMessage(m: FromTimeline): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

const LABEL_W = 200;
const LANE_H = 22;
const TOP = 26;
const PALETTE = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const app = document.getElementById('app')!;
const head = el('div', 'head');
const wrap = el('div', 'canvas-wrap');
const canvas = el('canvas');
canvas.setAttribute('role', 'img');
canvas.setAttribute('aria-label', 'tracepoint timeline');
wrap.append(canvas);
const status = el('div', 'status', 'wheel: zoom, drag: pan, click: reveal the statement, shift-click: go to the event');
const err = el('div', 'error');
app.append(head, err, wrap, status);

let data: TimelineData | undefined;
const colors: string[] = [];
let fg = '#ccc';
let dim = '#888';
let bg = '#000';
let focus = '#07f';

function readColors(): void {
  const cs = getComputedStyle(document.body);
  colors.length = 0;
  for (const v of PALETTE) colors.push(cs.getPropertyValue(v).trim() || '#888');
  fg = cs.getPropertyValue('--vscode-foreground').trim() || fg;
  dim = cs.getPropertyValue('--vscode-descriptionForeground').trim() || dim;
  bg = cs.getPropertyValue('--vscode-editor-background').trim() || bg;
  focus = cs.getPropertyValue('--vscode-focusBorder').trim() || focus;
}

function plotWidth(): number {
  return Math.max(50, wrap.clientWidth - LABEL_W - 10);
}

let frame = 0;
function schedule(): void {
  if (!frame) frame = requestAnimationFrame(draw);
}

let hoverBucket = -1;

function draw(): void {
  frame = 0;
  const { g, w, h } = fitCanvas(canvas, wrap);
  g.fillStyle = bg;
  g.fillRect(0, 0, w, h);
  if (!data) return;
  const pw = plotWidth();
  const bw = pw / data.buckets;
  g.font = '12px sans-serif';
  g.textBaseline = 'middle';
  // Statement markers.
  const span = data.to - data.from;
  let lastX = -100;
  g.strokeStyle = dim;
  g.globalAlpha = 0.5;
  for (const s of data.steps) {
    const x = LABEL_W + ((s.index - data.from) / span) * pw;
    g.beginPath();
    g.moveTo(x, TOP - 4);
    g.lineTo(x, TOP + data.lanes.length * LANE_H);
    g.stroke();
    if (x - lastX > 40) {
      g.globalAlpha = 1;
      g.fillStyle = dim;
      g.fillText(`L${s.line}`, x + 2, 10);
      g.globalAlpha = 0.5;
      lastX = x;
    }
  }
  g.globalAlpha = 1;
  data.lanes.forEach((lane, l) => {
    const y = TOP + l * LANE_H;
    g.fillStyle = fg;
    g.fillText(lane.name.length > 28 ? lane.name.slice(0, 27) + '…' : lane.name, 4, y + LANE_H / 2);
    const row = data!.counts[l]!;
    const max = Math.max(1, ...row);
    g.fillStyle = colors[l % colors.length]!;
    for (let b = 0; b < row.length; b++) {
      const c = row[b]!;
      if (!c) continue;
      const hh = Math.max(2, ((LANE_H - 4) * Math.log(c + 1)) / Math.log(max + 1));
      g.fillRect(LABEL_W + b * bw, y + LANE_H - 2 - hh, Math.max(1, bw - (bw > 3 ? 1 : 0)), hh);
    }
  });
  // The stop: after the newest event.
  if (data.to >= data.end) {
    g.strokeStyle = focus;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(LABEL_W + pw, TOP - 4);
    g.lineTo(LABEL_W + pw, TOP + data.lanes.length * LANE_H);
    g.stroke();
    g.lineWidth = 1;
  }
  if (hoverBucket >= 0) {
    g.strokeStyle = focus;
    g.strokeRect(LABEL_W + hoverBucket * bw, TOP - 2, Math.max(1, bw), data.lanes.length * LANE_H + 2);
  }
  vscode.postMessage({ type: 'rendered', lanes: data.lanes.length, buckets: data.buckets });
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

function bucketAt(clientX: number): number {
  if (!data) return -1;
  const r = canvas.getBoundingClientRect();
  const x = clientX - r.left - LABEL_W;
  if (x < 0 || x >= plotWidth()) return -1;
  return Math.floor((x / plotWidth()) * data.buckets);
}

canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  if (!data) return;
  const r = canvas.getBoundingClientRect();
  const frac = Math.min(1, Math.max(0, (e.clientX - r.left - LABEL_W) / plotWidth()));
  const span = data.to - data.from;
  const at = data.from + frac * span;
  const ns = Math.max(16, span * Math.exp(e.deltaY * 0.002));
  requestRange(at - frac * ns, at + (1 - frac) * ns);
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
      const shift = (-dx / plotWidth()) * (drag.to - drag.from);
      const span = drag.to - drag.from;
      let from = drag.from + shift;
      from = Math.max(data.first, Math.min(data.end - span, from));
      requestRange(from, from + span);
    }
    return;
  }
  const b = bucketAt(e.clientX);
  if (b !== hoverBucket) {
    hoverBucket = b;
    if (data && b >= 0) {
      const parts = data.lanes.map((l, i) => [l.name, data!.counts[i]![b]!] as const).filter(([, c]) => c > 0).map(([n, c]) => `${n} ×${c}`);
      const first = data.firstAt[b]!;
      status.textContent = first >= 0 ? `events from #${first}: ${parts.join(', ')}` : 'no events here';
    }
    schedule();
  }
});
window.addEventListener('mouseup', (e) => {
  if (drag && !drag.moved && data) {
    const b = bucketAt(e.clientX);
    if (b >= 0 && data.firstAt[b]! >= 0) {
      if (e.shiftKey) vscode.postMessage({ type: 'goto', index: data.firstAt[b]! });
      else vscode.postMessage({ type: 'reveal', step: data.stepAt[b]! });
    }
  }
  drag = undefined;
});
canvas.addEventListener('dblclick', () => {
  if (data) requestRange(data.first, data.end);
});
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
  const total = data.lanes.reduce((a, l) => a + l.total, 0);
  head.textContent = `${total} events in the window #${data.first}-#${Math.max(data.first, data.end - 1)}; showing #${data.from}-#${data.to - 1} (double-click: all)`;
  schedule();
});

readColors();
vscode.postMessage({ type: 'ready' });
