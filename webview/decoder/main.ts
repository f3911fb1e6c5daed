/**
 * Bit Decoder panel. A pure view: it shows the last `decoded` snapshot the extension sent and asks for a
 * new decode when the user edits the value, toggles a bit, or changes the kind or level. The DOM is built
 * from data with createElement/textContent only (no HTML strings).
 */
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import './style.css';
import {
  DECODE_KINDS,
  KIND_LABELS,
  bitOf,
  normaliseHex,
  parseDecoderState,
  parseToPanel,
  toggleBit,
  type DecodeKind,
  type DecodeResult,
  type DecoderState,
  type FromPanel,
} from '../shared/decoder_protocol';

interface VsCodeApi {
  postMessage(m: FromPanel): void;
  getState(): unknown;
  setState(s: DecoderState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();

type SelectEl = HTMLElement & { value: string };
type TextEl = HTMLElement & { value: string; invalid: boolean };

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function custom(tag: string, cls?: string): HTMLElement {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

const app = document.getElementById('app')!;
let state: DecoderState = parseDecoderState(vscode.getState()) ?? { kind: 'ept-spte', value: '0x0', level: 0 };

// Toolbar.
const bar = el('div', 'toolbar');
const kindSel = custom('vscode-single-select', 'kind') as SelectEl;
kindSel.setAttribute('aria-label', 'Format');
for (const k of DECODE_KINDS) {
  const o = custom('vscode-option');
  o.setAttribute('value', k);
  o.textContent = KIND_LABELS[k];
  kindSel.appendChild(o);
}
const valueField = custom('vscode-textfield', 'value') as TextEl;
valueField.setAttribute('aria-label', 'Value (hex)');
valueField.setAttribute('placeholder', '0x...');
const levelSel = custom('vscode-single-select', 'level') as SelectEl;
levelSel.setAttribute('aria-label', 'Level');
const copyBtn = custom('vscode-button', 'copy');
copyBtn.setAttribute('secondary', '');
copyBtn.textContent = 'Copy';
const clearBtn = custom('vscode-button', 'clear');
clearBtn.setAttribute('secondary', '');
clearBtn.textContent = 'Clear';
const kindLabel = el('label', 'lbl', 'Format');
const valueLabel = el('label', 'lbl', 'Value');
const levelLabel = el('label', 'lbl level-lbl', 'Level');
bar.append(kindLabel, kindSel, valueLabel, valueField, levelLabel, levelSel, copyBtn, clearBtn);

const headline = el('div', 'headline');
const facts = el('ul', 'facts');
const grid = el('div', 'grid');
grid.setAttribute('role', 'grid');
const table = el('table', 'fields');
const error = el('div', 'error');
app.append(bar, error, headline, facts, grid, table);

function send(): void {
  vscode.setState(state);
  vscode.postMessage({ type: 'decode', request: { kind: state.kind, value: state.value, level: state.level } });
}

kindSel.addEventListener('change', () => {
  const k = kindSel.value as DecodeKind;
  if (!(DECODE_KINDS as readonly string[]).includes(k) || k === state.kind) return;
  state = { ...state, kind: k, level: 0 };
  send();
});
levelSel.addEventListener('change', () => {
  const n = Number(levelSel.value);
  if (!Number.isInteger(n) || n === state.level) return;
  state = { ...state, level: n };
  send();
});
function applyValueText(): void {
  const v = normaliseHex(valueField.value);
  valueField.invalid = v === undefined;
  if (v === undefined || v === state.value) return;
  state = { ...state, value: v };
  send();
}
valueField.addEventListener('change', applyValueText);
valueField.addEventListener('keydown', (e) => {
  if ((e as KeyboardEvent).key === 'Enter') applyValueText();
});
copyBtn.addEventListener('click', () => vscode.postMessage({ type: 'copy', text: state.value }));
clearBtn.addEventListener('click', () => {
  state = { ...state, value: '0x0' };
  send();
});

/** Colour slot per field (cycled), so neighbouring fields never share a colour. */
function fieldAt(r: DecodeResult, bit: number): number {
  return r.fields.findIndex((f) => bit >= f.lsb && bit <= f.msb);
}

function renderGrid(r: DecodeResult): void {
  grid.replaceChildren();
  const rows = r.width === 64 ? [63, 31] : [31];
  for (const top of rows) {
    const row = el('div', 'row');
    // Bit cells: number above, value below; a click toggles the bit.
    for (let i = 0; i < 32; i++) {
      const bit = top - i;
      const fi = fieldAt(r, bit);
      const cell = el('button', `bit ${bitOf(r.value, bit) ? 'one' : 'zero'} ${fi < 0 ? 'nofield' : `f${fi % 6}`}`);
      cell.type = 'button';
      cell.dataset.bit = String(bit);
      if (fi >= 0) cell.dataset.field = String(fi);
      cell.title = fi >= 0 ? `bit ${bit}: ${r.fields[fi].name} ${r.fields[fi].bits}` : `bit ${bit}`;
      cell.setAttribute('aria-label', `bit ${bit} is ${bitOf(r.value, bit)}${fi >= 0 ? `, field ${r.fields[fi].name}` : ''}`);
      cell.style.gridColumn = String(i + 1);
      cell.style.gridRow = '2';
      const num = el('span', 'num', String(bit));
      const val = el('span', 'val', String(bitOf(r.value, bit)));
      cell.append(num, val);
      cell.addEventListener('click', () => {
        state = { ...state, value: toggleBit(state.value, bit) };
        send();
      });
      cell.addEventListener('mouseenter', () => highlight(fi));
      cell.addEventListener('mouseleave', () => highlight(-1));
      row.appendChild(cell);
    }
    // Field bands under the bits they cover (a field crossing bit 32 is drawn in both rows).
    const low = top - 31;
    r.fields.forEach((f, fi) => {
      const msb = Math.min(f.msb, top);
      const lsb = Math.max(f.lsb, low);
      if (msb < lsb) return;
      const band = el('div', `band f${fi % 6}`);
      band.dataset.field = String(fi);
      band.style.gridColumn = `${top - msb + 1} / ${top - lsb + 2}`;
      band.style.gridRow = '3';
      const width = msb - lsb + 1;
      band.title = `${f.name} ${f.bits} = ${f.hex}: ${f.meaning}`;
      band.append(el('span', 'bname', f.name), el('span', 'brange', width >= 3 || f.msb === f.lsb ? f.bits : ''));
      if (width >= 6) band.append(el('span', 'bval', f.hex));
      band.addEventListener('mouseenter', () => highlight(fi));
      band.addEventListener('mouseleave', () => highlight(-1));
      row.appendChild(band);
    });
    grid.appendChild(row);
  }
}

function highlight(fi: number): void {
  for (const e of Array.from(document.querySelectorAll<HTMLElement>('[data-field]'))) {
    e.classList.toggle('hl', fi >= 0 && e.dataset.field === String(fi));
  }
}

function renderTable(r: DecodeResult): void {
  table.replaceChildren();
  const head = el('tr');
  for (const h of ['Field', 'Bits', 'Value', 'Meaning']) head.appendChild(el('th', undefined, h));
  const thead = el('thead');
  thead.appendChild(head);
  const body = el('tbody');
  // High bits first, as the grid reads.
  const order = r.fields.map((f, i) => ({ f, i })).sort((a, b) => b.f.msb - a.f.msb);
  for (const { f, i } of order) {
    const tr = el('tr', f.value !== 0 ? 'set' : 'clear');
    tr.dataset.field = String(i);
    const name = el('td', `fname f${i % 6}`, f.name);
    tr.append(name, el('td', 'mono', f.bits), el('td', 'mono', f.msb === f.lsb ? String(f.value) : f.hex), el('td', undefined, f.meaning === f.desc ? f.desc : `${f.meaning} — ${f.desc}`));
    tr.addEventListener('mouseenter', () => highlight(i));
    tr.addEventListener('mouseleave', () => highlight(-1));
    body.appendChild(tr);
  }
  table.append(thead, body);
}

function renderLevels(r: DecodeResult): void {
  levelSel.replaceChildren();
  const show = r.levels.length > 0;
  levelSel.hidden = !show;
  levelLabel.hidden = !show;
  for (const l of r.levels) {
    const o = custom('vscode-option');
    o.setAttribute('value', String(l));
    o.textContent = l === 0 && r.kind.endsWith('spte') ? 'infer' : `level ${l}`;
    levelSel.appendChild(o);
  }
  if (show) levelSel.value = String(r.levels.includes(r.level) ? r.level : r.levels[0]);
}

function render(r: DecodeResult): void {
  state = { kind: r.kind, value: r.value, level: r.level };
  vscode.setState(state);
  error.textContent = '';
  kindSel.value = r.kind;
  if (normaliseHex(valueField.value) !== r.value) valueField.value = r.value;
  valueField.invalid = false;
  renderLevels(r);
  headline.textContent = `${KIND_LABELS[r.kind]}  ${r.value}  —  ${r.headline}`;
  facts.replaceChildren(...r.facts.map((f) => el('li', undefined, f)));
  renderGrid(r);
  renderTable(r);
  document.body.dataset.kind = r.kind;
  vscode.postMessage({ type: 'rendered', value: r.value, bits: grid.querySelectorAll('.bit').length, fields: r.fields.length });
}

window.addEventListener('message', (ev: MessageEvent) => {
  const m = parseToPanel(ev.data);
  if (!m) return;
  if (m.type === 'error') error.textContent = m.message;
  else if (m.type === 'toggleBit') {
    state = { ...state, value: toggleBit(state.value, m.bit) };
    send();
  } else render(m.result);
});

valueField.value = state.value;
kindSel.value = state.kind;
// The extension answers with the value it was opened for, or else decodes the restored state.
vscode.postMessage({ type: 'ready', state: { kind: state.kind, value: state.value, level: state.level } });
