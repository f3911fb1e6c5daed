/**
 * "Where is GFN X?" panel: a pure view of the last answer the extension sent. DOM from data only.
 */
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import './style.css';
import { parseToWhere, type FromWhere, type WhereAnswer } from '../shared/where_protocol';

interface State {
  gfn?: string;
}
interface VsCodeApi {
  postMessage(m: FromWhere): void;
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

const saved = vscode.getState() as State | undefined;
const app = document.getElementById('app')!;
const bar = el('div', 'toolbar');
const field = document.createElement('vscode-textfield') as HTMLElement & { value: string };
field.setAttribute('placeholder', 'gfn (hex) or "gpa 0x1000"');
field.setAttribute('aria-label', 'GFN or GPA');
const go = document.createElement('vscode-button');
go.textContent = 'Where is it?';
bar.append(el('label', 'lbl', 'GFN'), field, go);
const head = el('div', 'head');
const err = el('div', 'error');
const body = el('div', 'sections');
app.append(bar, err, head, body);

function lookup(): void {
  if (field.value.trim()) vscode.postMessage({ type: 'lookup', text: field.value });
}
go.addEventListener('click', lookup);
field.addEventListener('keydown', (e) => {
  if ((e as KeyboardEvent).key === 'Enter') lookup();
});

function render(a: WhereAnswer): void {
  vscode.setState({ gfn: a.gfn });
  err.textContent = '';
  head.replaceChildren(el('span', 'gfn', `gfn ${a.gfn}`), el('span', 'gpa', `gpa ${a.gpa}`));
  if (a.at) head.append(el('span', 'at', `at: ${a.at}`));
  body.replaceChildren();
  for (const s of a.sections) {
    const sec = el('section');
    sec.append(el('h3', undefined, s.title));
    if (s.note) sec.append(el('div', 'note', s.note));
    if (s.rows.length) {
      const t = el('table');
      for (const r of s.rows) {
        const tr = el('tr');
        const v = el('td', 'v', r.value);
        tr.append(el('td', 'k', r.key), v);
        const act = el('td', 'act');
        if (r.decode) {
          const b = el('button', 'decode', 'decode');
          b.type = 'button';
          b.title = `Open ${r.decode.value} in the Bit Decoder`;
          const req = r.decode;
          b.addEventListener('click', () => vscode.postMessage({ type: 'decode', request: req }));
          act.append(b);
        }
        tr.append(act);
        t.append(tr);
      }
      sec.append(t);
    }
    body.append(sec);
  }
}

window.addEventListener('message', (ev: MessageEvent) => {
  const m = parseToWhere(ev.data);
  if (!m) return;
  if (m.type === 'answer') {
    if (!field.value) field.value = m.answer.gfn;
    render(m.answer);
  } else {
    err.textContent = m.message;
  }
});

if (saved?.gfn) field.value = saved.gfn;
vscode.postMessage(saved?.gfn ? { type: 'ready', gfn: saved.gfn } : { type: 'ready' });
