/**
 * Editor help from the grammar table: completions and hovers for a position in a scenario. Pure
 * functions over the text, so the VS Code providers (and any other editor) stay thin. Positions are
 * 1-based like diagnostics.
 */
import { type ArgSpec, BY_FIRST_WORD, PARAMS, STATEMENTS, type StmtSpec, VARIANTS } from './grammar';

export type CompletionKind = 'keyword' | 'argument' | 'value' | 'field';

export interface Completion {
  label: string;
  kind: CompletionKind;
  /** One line. */
  detail: string;
  /** Text to insert (e.g. `slot=`); the label when absent. */
  insert?: string;
}

export interface Hover {
  /** Markdown. */
  text: string;
  col: number;
  endCol: number;
}

interface Word {
  text: string;
  col: number;
  endCol: number;
}

/** A table entry by name, own properties only (a word like `constructor` must not find Object's). */
function own<T>(table: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

function words(line: string): Word[] {
  const out: Word[] = [];
  const hash = line.search(/(^|\s)#/);
  const body = hash >= 0 ? line.slice(0, hash) : line;
  const re = /"[^"]*"?|[^\s"]+/g;
  for (let m = re.exec(body); m; m = re.exec(body)) out.push({ text: m[0], col: m.index + 1, endCol: m.index + 1 + m[0].length });
  return out;
}

function specFor(ws: Word[]): { spec: StmtSpec; used: number } | undefined {
  if (!ws[0]) return undefined;
  const cands = BY_FIRST_WORD.get(ws[0].text);
  if (!cands) return undefined;
  if (cands.length === 1 && !cands[0]!.keyword.includes(' ')) return { spec: cands[0]!, used: 1 };
  const second = ws[1]?.text;
  const s = cands.find((c) => c.keyword.split(' ')[1] === second);
  return s ? { spec: s, used: 2 } : undefined;
}

function argDetail(a: ArgSpec): string {
  const v = a.values ? ` (${a.values.join(' | ')})` : '';
  return `${a.type}${v}: ${a.doc}`;
}

/** Completions for the cursor at (line, col); col is where the next character would go. */
export function completionsAt(text: string, line: number, col: number): Completion[] {
  const src = text.split('\n')[line - 1] ?? '';
  const before = src.slice(0, col - 1);
  if (/(^|\s)#/.test(before)) return [];
  const ws = words(before);
  const typing = before.length > 0 && !/\s$/.test(before) ? ws.pop() : undefined;
  const prefix = typing?.text ?? '';
  const keep = (cs: Completion[]) => cs.filter((c) => c.label.toLowerCase().startsWith(prefix.toLowerCase().replace(/^[^=]*=/, '')) || prefix.includes('='));

  if (ws.length === 0) {
    const seen = new Set<string>();
    const out: Completion[] = [];
    for (const s of STATEMENTS) {
      const first = s.keyword.split(' ')[0]!;
      if (s.keyword.includes(' ')) {
        if (seen.has(first)) continue;
        seen.add(first);
        const seconds = BY_FIRST_WORD.get(first)!.map((x) => x.keyword.split(' ')[1]).join(', ');
        out.push({ label: first, kind: 'keyword', detail: `${first} ${seconds}`, insert: `${first} ` });
      } else out.push({ label: s.keyword, kind: 'keyword', detail: s.doc, insert: `${s.keyword} ` });
    }
    return keep(out);
  }
  const cands = BY_FIRST_WORD.get(ws[0]!.text);
  if (ws.length === 1 && cands && cands[0]!.keyword.includes(' ')) {
    return keep(cands.map((c) => ({ label: c.keyword.split(' ')[1]!, kind: 'keyword' as const, detail: c.doc, insert: `${c.keyword.split(' ')[1]} ` })));
  }
  const found = specFor(ws);
  if (!found) return [];
  const { spec } = found;
  // A value after `name=`.
  const eq = /^([A-Za-z_][A-Za-z0-9_.]*)(=|==|!=)(.*)$/.exec(prefix);
  if (eq) {
    const name = eq[1]!;
    const a = spec.args.find((x) => x.name === name || x.aliases?.includes(name));
    let values: readonly string[] = a?.values ?? (a?.type === 'bool' ? ['on', 'off'] : []);
    if (spec.keyword === 'param') values = (own(PARAMS, name) ?? []).filter((v) => v !== '*');
    if (spec.keyword === 'variant') values = own(VARIANTS, name) ?? [];
    const lastPart = eq[3]!.split(/[|,]/).pop() ?? '';
    return values.filter((v) => v.toLowerCase().startsWith(lastPart.toLowerCase())).map((v) => ({ label: v, kind: 'value' as const, detail: a ? a.doc : name }));
  }
  const given = new Set(ws.slice(found.used).map((w) => w.text.replace(/(==|!=|<=|>=|=|<|>).*$/, '')));
  const out: Completion[] = [];
  for (const a of spec.args) {
    if (given.has(a.name)) continue;
    if (a.bare) for (const v of a.values ?? []) out.push({ label: v, kind: 'value', detail: `${a.name}: ${a.doc}` });
    else if (!a.positional || a.type === 'enum') {
      if (a.positional) for (const v of a.values ?? []) out.push({ label: v, kind: 'value', detail: a.doc });
      else out.push({ label: a.name, kind: 'argument', detail: argDetail(a), insert: `${a.name}=` });
    }
  }
  for (const c of spec.checks ?? []) {
    if (c.endsWith('.*') || given.has(c)) continue;
    out.push({ label: c, kind: spec.group === 'expect' ? 'field' : 'argument', detail: spec.group === 'expect' ? `field of ${spec.keyword}` : spec.keyword, insert: `${c}=` });
  }
  return keep(out);
}

/** What the word under (line, col) is, from the grammar table. */
export function hoverAt(text: string, line: number, col: number): Hover | undefined {
  const src = text.split('\n')[line - 1] ?? '';
  const ws = words(src);
  const i = ws.findIndex((w) => col >= w.col && col < w.endCol);
  if (i < 0) return undefined;
  const w = ws[i]!;
  const found = specFor(ws);
  if (!found) return undefined;
  const { spec, used } = found;
  if (i < used) {
    return { text: `**${spec.keyword}**: ${spec.doc}\n\n\`${spec.example}\``, col: ws[0]!.col, endCol: ws[used - 1]!.endCol };
  }
  const name = w.text.replace(/(==|!=|<=|>=|=|<|>).*$/s, '');
  const a = spec.args.find((x) => x.name === name || x.aliases?.includes(name) || (x.bare && x.values?.includes(name)));
  if (a) return { text: `**${a.name}** (${a.type}${a.required ? ', required' : ''}): ${a.doc}${a.values ? `\n\nvalues: ${a.values.join(', ')}` : ''}`, col: w.col, endCol: w.endCol };
  if (spec.keyword === 'param' && own(PARAMS, name)) return { text: `module parameter **${name}**: ${own(PARAMS, name)!.join(', ').replace('*', 'a number')}`, col: w.col, endCol: w.endCol };
  if (spec.keyword === 'variant' && own(VARIANTS, name)) return { text: `design variant **${name}**: ${own(VARIANTS, name)!.join(', ')}`, col: w.col, endCol: w.endCol };
  if (spec.checks?.includes(name)) return { text: `field **${name}** of \`${spec.keyword}\``, col: w.col, endCol: w.endCol };
  return undefined;
}
