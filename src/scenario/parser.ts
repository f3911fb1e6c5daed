/**
 * Scenario parser: text in, statements and diagnostics out. Pure (no I/O), so the editor can call it
 * on every keystroke; `include` lines are kept as statements and expanded by `loadScenario`.
 */
import type { CheckNode, CompareOp, ParseResult, Statement, Value } from './ast';
import { type Diagnostic, diag, didYouMean, nearest } from './diagnostics';
import { EVENT_BY_NAME } from '../engine/tracepoints/schema';
import {
  type ArgSpec,
  BY_FIRST_WORD,
  ERRNO_NAMES,
  ERRNO_VALUES,
  KEYWORDS,
  KVM_MEM_MAX_NR_PAGES,
  MAX_ITERATIONS,
  PARAMS,
  type StmtSpec,
  VARIANTS,
} from './grammar';

export interface ParseOptions {
  /**
   * Guest physical address width used for bound checks when the text has no `vm` line (an included
   * fragment). Default 52, the architectural maximum.
   */
  defaultPhysBits?: number;
}

interface Chunk {
  text: string;
  col: number;
  endCol: number;
  quoted: boolean;
}

const OPS: readonly string[] = ['==', '!=', '<=', '>=', '=', '<', '>'];
const CHECK_RE = /^([A-Za-z_][A-Za-z0-9_.]*)(==|!=|<=|>=|=|<|>)(.*)$/s;
const NUM_RE = /^(-?)(0x[0-9a-f_]+|0b[01_]+|[0-9][0-9_]*)(k|m|g|t|p|kib|mib|gib|tib|pib)?$/i;
const SUFFIX: Record<string, bigint> = { k: 10n, m: 20n, g: 30n, t: 40n, p: 50n };
const U64_MAX = (1n << 64n) - 1n;

/** Split a line into whitespace-separated chunks; `"..."` is one chunk; `#` starts a comment. */
function chunkLine(line: string, file: string, lineNo: number, out: Diagnostic[]): Chunk[] {
  const chunks: Chunk[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i]!;
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    if (c === '#') break;
    const start = i;
    let quoted = false;
    let text = '';
    while (i < n) {
      const d = line[i]!;
      if (d === ' ' || d === '\t' || d === '\r') break;
      if (d === '#' && !quoted) break;
      if (d === '"') {
        quoted = true;
        const close = line.indexOf('"', i + 1);
        if (close < 0) {
          out.push(diag(file, lineNo, i + 1, n + 1, 'unterminated-string', 'unterminated string', 'close it with a double quote on the same line'));
          text += line.slice(i + 1);
          i = n;
          break;
        }
        text += line.slice(i + 1, close);
        i = close + 1;
        continue;
      }
      text += d;
      i++;
    }
    chunks.push({ text, col: start + 1, endCol: i + 1, quoted });
  }
  return chunks;
}

export function parseNumber(text: string): bigint | undefined {
  const m = NUM_RE.exec(text);
  if (!m) return undefined;
  const digits = m[2]!.replace(/_/g, '');
  if (digits === '0x' || digits === '0b') return undefined;
  let v = BigInt(digits);
  const suf = m[3];
  if (suf) v <<= SUFFIX[suf[0]!.toLowerCase()]!;
  return m[1] ? -v : v;
}

/** `4K`, `2M`, `0x1000`: for messages. */
export function formatSize(v: bigint): string {
  for (const [s, sh] of [['P', 50n], ['T', 40n], ['G', 30n], ['M', 20n], ['K', 10n]] as const) {
    if (v >= 1n << sh && v % (1n << sh) === 0n) return `${v >> sh}${s}`;
  }
  return `0x${v.toString(16)}`;
}

interface Ctx {
  file: string;
  line: number;
  diags: Diagnostic[];
  physBits: number;
  vmSeen: boolean;
  nonSetupLine: number;
}

function err(ctx: Ctx, col: number, endCol: number, code: string, message: string, hint = ''): void {
  ctx.diags.push(diag(ctx.file, ctx.line, col, endCol, code, message, hint));
}
function warn(ctx: Ctx, col: number, endCol: number, code: string, message: string, hint = ''): void {
  ctx.diags.push(diag(ctx.file, ctx.line, col, endCol, code, message, hint, 'warning'));
}

function canonical(word: string, values: readonly string[]): string | undefined {
  const exact = values.find((v) => v === word);
  if (exact) return exact;
  const lw = word.toLowerCase();
  return values.find((v) => v.toLowerCase() === lw);
}

const TRUE_WORDS = ['on', 'y', 'yes', 'true', '1'];
const FALSE_WORDS = ['off', 'n', 'no', 'false', '0'];

function parseBool(text: string): boolean | undefined {
  const l = text.toLowerCase();
  if (TRUE_WORDS.includes(l)) return true;
  if (FALSE_WORDS.includes(l)) return false;
  return undefined;
}

/** Parse a value for an argument of known type; pushes a located diagnostic and returns undefined on error. */
function parseValue(ctx: Ctx, spec: ArgSpec, text: string, col: number, endCol: number, quoted: boolean): Value | undefined {
  const bad = (message: string, hint = '') => {
    err(ctx, col, endCol, 'bad-value', message, hint);
    return undefined;
  };
  if (text.length === 0) return bad(`'${spec.name}' needs a value`, `e.g. ${spec.name}=${sampleOf(spec)}`);
  switch (spec.type) {
    case 'u64':
    case 'size': {
      const v = parseNumber(text);
      if (v === undefined) return bad(`'${text}' is not a number`, 'write hex (0x1000), decimal (4096) or a size (4K, 2M, 1G)');
      if (v < 0n) return bad(`'${spec.name}' cannot be negative`);
      if (v > U64_MAX) return bad(`'${text}' does not fit in 64 bits`);
      return { kind: 'num', v, text };
    }
    case 'int': {
      const v = parseNumber(text);
      if (v === undefined) return bad(`'${text}' is not a number`, `'${spec.name}' takes an integer`);
      if ((spec.min !== undefined && v < BigInt(spec.min)) || (spec.max !== undefined && v > BigInt(spec.max))) {
        return bad(`'${spec.name}' must be between ${spec.min} and ${spec.max}, not ${text}`);
      }
      return { kind: 'num', v, text };
    }
    case 'range': {
      const r = parseRange(text);
      if (typeof r === 'string') return bad(r, 'write START..END (END excluded), START+SIZE, or one address');
      return { kind: 'range', start: r.start, end: r.end, single: r.single, text };
    }
    case 'enum': {
      const c = canonical(text, spec.values ?? []);
      if (!c) {
        const dm = didYouMean(text, spec.values ?? []);
        return bad(`'${text}' is not a valid ${spec.name}`, `${dm ? dm + ' ' : ''}one of: ${(spec.values ?? []).join(', ')}`);
      }
      return { kind: 'word', v: c, text };
    }
    case 'flags': {
      const num = parseNumber(text);
      if (num !== undefined) {
        if (num < 0n || num > U64_MAX) return bad(`'${text}' does not fit in 64 bits`);
        return { kind: 'num', v: num, text };
      }
      const parts = text.split(/[|,]/);
      const out: string[] = [];
      for (const p of parts) {
        const c = canonical(p, spec.values ?? []);
        if (!c) {
          const dm = didYouMean(p, spec.values ?? []);
          return bad(`'${p}' is not a flag of '${spec.name}'`, `${dm ? dm + ' ' : ''}flags: ${(spec.values ?? []).join(', ')} (join with | or ,)`);
        }
        out.push(c);
      }
      return { kind: 'words', v: out, text };
    }
    case 'bool': {
      const b = parseBool(text);
      if (b === undefined) return bad(`'${text}' is not on/off`, 'use on/off, Y/N, 1/0, true/false');
      return { kind: 'bool', v: b, text };
    }
    case 'ident':
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(text)) return bad(`'${text}' is not a name`, 'names are letters, digits and _, e.g. gmem0');
      return { kind: 'word', v: text, text };
    case 'string':
      if (!quoted) return bad(`'${spec.name}' must be a double-quoted string`, `write "${text}"`);
      return { kind: 'str', v: text, text };
    case 'errno': {
      const m = /^-(E[A-Z0-9]+)$/.exec(text);
      if (m) {
        const e = ERRNO_VALUES[m[1]!];
        if (e === undefined) {
          const dm = didYouMean(m[1]!, ERRNO_NAMES);
          return bad(`unknown errno '${m[1]}'`, dm || `known: ${ERRNO_NAMES.join(', ')}`);
        }
        return { kind: 'num', v: BigInt(-e), text };
      }
      const v = parseNumber(text);
      if (v === undefined) return bad(`'${text}' is not a return value`, 'write 0, -EINVAL, -EPERM, ... or a number');
      return { kind: 'num', v, text };
    }
    case 'value':
      return parseAnyValue(text, quoted);
  }
}

/** For checks: a number, a string, a flag list, or a word (booleans stay words; the comparison decides). */
export function parseAnyValue(text: string, quoted: boolean): Value {
  if (quoted) return { kind: 'str', v: text, text };
  const m = /^-(E[A-Z0-9]+)$/.exec(text);
  if (m && ERRNO_VALUES[m[1]!] !== undefined) return { kind: 'num', v: BigInt(-ERRNO_VALUES[m[1]!]!), text };
  const v = parseNumber(text);
  if (v !== undefined) return { kind: 'num', v, text };
  if (/[|,]/.test(text)) return { kind: 'words', v: text.split(/[|,]/), text };
  return { kind: 'word', v: text, text };
}

export function parseRange(text: string): { start: bigint; end: bigint; single: boolean } | string {
  const dots = text.indexOf('..');
  if (dots >= 0) {
    const a = parseNumber(text.slice(0, dots));
    const b = parseNumber(text.slice(dots + 2));
    if (a === undefined || a < 0n) return `'${text.slice(0, dots)}' is not an address`;
    if (b === undefined || b < 0n) return `'${text.slice(dots + 2)}' is not an address`;
    if (b <= a) return `empty range ${text}: the end (excluded) must be above the start`;
    if (b - 1n > U64_MAX) return `range ${text} does not fit in 64 bits`;
    return { start: a, end: b, single: false };
  }
  const plus = text.indexOf('+');
  if (plus >= 0) {
    const a = parseNumber(text.slice(0, plus));
    const s = parseNumber(text.slice(plus + 1));
    if (a === undefined || a < 0n) return `'${text.slice(0, plus)}' is not an address`;
    if (s === undefined || s <= 0n) return `'${text.slice(plus + 1)}' is not a size`;
    if (a + s - 1n > U64_MAX) return `range ${text} does not fit in 64 bits`;
    return { start: a, end: a + s, single: false };
  }
  const a = parseNumber(text);
  if (a === undefined || a < 0n) return `'${text}' is not an address or range`;
  if (a > U64_MAX) return `'${text}' does not fit in 64 bits`;
  return { start: a, end: a + 1n, single: true };
}

function sampleOf(spec: ArgSpec): string {
  switch (spec.type) {
    case 'enum':
    case 'flags':
      return spec.values?.[0] ?? '...';
    case 'bool':
      return 'on';
    case 'range':
      return '0x0..0x200000';
    case 'size':
      return '2M';
    case 'string':
      return '"..."';
    case 'errno':
      return '-EINVAL';
    case 'ident':
      return 'gmem0';
    default:
      return '0x1000';
  }
}

function findArg(spec: StmtSpec, name: string): ArgSpec | undefined {
  const ln = name.toLowerCase();
  return spec.args.find((a) => a.name === name || a.aliases?.includes(name)) ?? spec.args.find((a) => a.name.toLowerCase() === ln);
}

function checkAllowed(spec: StmtSpec, name: string): string | undefined {
  if (!spec.checks) return undefined;
  for (const c of spec.checks) {
    if (c === name) return c;
    if (c === '*' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return name;
    if (c.endsWith('.*') && name.startsWith(c.slice(0, -1)) && name.length > c.length - 1) return name;
  }
  const ln = name.toLowerCase();
  return spec.checks.find((c) => c.toLowerCase() === ln);
}

function argNames(spec: StmtSpec): string[] {
  const names: string[] = [];
  for (const a of spec.args) {
    names.push(a.name, ...(a.aliases ?? []));
    if (a.bare) names.push(...(a.values ?? []));
  }
  for (const c of spec.checks ?? []) if (!c.endsWith('.*')) names.push(c);
  return names;
}

/** Resolve the keyword at the start of a line; returns the spec and how many chunks it used. */
function resolveKeyword(ctx: Ctx, chunks: Chunk[]): { spec: StmtSpec; used: number } | undefined {
  const first = chunks[0]!;
  let cands = BY_FIRST_WORD.get(first.text);
  if (!cands) {
    const lw = first.text.toLowerCase();
    for (const [w, l] of BY_FIRST_WORD) if (w.toLowerCase() === lw) cands = l;
  }
  if (!cands) {
    // Typo in a one- or two-word keyword: compare with both the first words and the full keywords.
    const two = chunks.length > 1 ? `${first.text} ${chunks[1]!.text}` : first.text;
    const full = nearest(two, KEYWORDS.filter((k) => k.includes(' ')));
    const one = nearest(first.text, [...BY_FIRST_WORD.keys()]);
    const sugg = one ?? full;
    err(ctx, first.col, first.endCol, 'unknown-keyword', `unknown statement '${first.text}'`,
      sugg ? `did you mean '${sugg}'?` : 'statements start with vm, param, variant, KVM_..., memslot, host, guest, __pkvm_..., expect or include');
    return undefined;
  }
  if (cands.length === 1 && !cands[0]!.keyword.includes(' ')) return { spec: cands[0]!, used: 1 };
  const second = chunks[1];
  const seconds = cands.map((c) => c.keyword.split(' ')[1]!);
  if (!second) {
    err(ctx, first.col, first.endCol, 'incomplete-keyword', `'${first.text}' needs a second word`, `one of: ${seconds.join(', ')}`);
    return undefined;
  }
  const idx = seconds.findIndex((s) => s === second.text || s.toLowerCase() === second.text.toLowerCase());
  if (idx < 0) {
    const near = nearest(second.text, seconds);
    err(ctx, second.col, second.endCol, 'unknown-keyword', `unknown statement '${first.text} ${second.text}'`,
      `${near ? `did you mean '${first.text} ${near}'? ` : ''}'${first.text}' is followed by one of: ${seconds.join(', ')}`);
    return undefined;
  }
  return { spec: cands[idx]!, used: 2 };
}

function parseStatement(ctx: Ctx, chunks: Chunk[], lineText: string): Statement | undefined {
  const kw = resolveKeyword(ctx, chunks);
  if (!kw) return undefined;
  const { spec } = kw;
  const stmt: Statement = {
    keyword: spec.keyword,
    spec,
    file: ctx.file,
    line: ctx.line,
    col: chunks[0]!.col,
    endCol: chunks[chunks.length - 1]!.endCol,
    args: {},
    checks: [],
    text: lineText.slice(chunks[0]!.col - 1, chunks[chunks.length - 1]!.endCol - 1),
  };
  const positional = spec.args.filter((a) => a.positional);
  // A name that is both a selector and a field (`expect rmp pfn=.. gpa=..`) selects only while no
  // other selector of its one-of group has been given, and never twice.
  const isSelector = (a: ArgSpec, name: string): boolean => {
    if (!checkAllowed(spec, name)) return true;
    if (stmt.args[a.name]) return false;
    return !(spec.oneOf?.includes(a.name) && spec.oneOf.some((o) => o !== a.name && stmt.args[o]));
  };
  const errorsBefore = ctx.diags.length;

  const setArg = (a: ArgSpec, valueText: string, col: number, endCol: number, valueCol: number, quoted: boolean) => {
    if (stmt.args[a.name]) {
      err(ctx, col, endCol, 'duplicate-argument', `'${a.name}' is given twice`, `the first is at column ${stmt.args[a.name]!.col}`);
      return;
    }
    const v = parseValue(ctx, a, valueText, valueCol, endCol, quoted);
    if (v) stmt.args[a.name] = { name: a.name, value: v, col, endCol, valueCol };
  };

  const addCheck = (rawName: string, op: string, valueText: string, col: number, endCol: number, valueCol: number, quoted: boolean) => {
    // Module parameters may carry their module, as on the kernel command line (kvm_intel.pml).
    const name = spec.keyword === 'param' ? rawName.replace(/^(kvm|kvm_intel|kvm_amd)\./, '') : rawName;
    const field = checkAllowed(spec, name);
    if (!field) {
      const dm = didYouMean(name, argNames(spec));
      const msg = spec.keyword === 'param' ? `unknown module parameter '${name}'`
        : spec.keyword === 'variant' ? `unknown design variant '${name}'`
        : spec.keyword === 'expect stat' ? `unknown statistic '${name}'`
        : spec.checks ? `'${spec.keyword}' has no field '${name}'` : `'${spec.keyword}' does not take '${name}'`;
      err(ctx, col, col + name.length, spec.checks ? 'unknown-name' : 'unknown-argument', msg, dm || listHint(spec));
      return;
    }
    let cop: CompareOp = (op === '==' ? '=' : op) as CompareOp;
    if (!spec.compare && cop !== '=') {
      err(ctx, col + name.length, col + name.length + op.length, 'bad-operator', `'${spec.keyword}' assigns with '=', not '${op}'`);
      cop = '=';
    }
    if (valueText.length === 0) {
      err(ctx, col, endCol, 'missing-value', `'${name}' needs a value after '${op}'`);
      return;
    }
    const value = parseAnyValue(valueText, quoted);
    if ((cop === '<' || cop === '<=' || cop === '>' || cop === '>=') && value.kind !== 'num') {
      err(ctx, valueCol, endCol, 'bad-value', `'${op}' compares numbers; '${valueText}' is not one`);
      return;
    }
    if (spec.keyword === 'param' || spec.keyword === 'variant') {
      const table = spec.keyword === 'param' ? PARAMS : VARIANTS;
      const legal = table[field]!;
      if (!legal.includes('*') && !legal.some((l) => l.toLowerCase() === valueText.toLowerCase())) {
        err(ctx, valueCol, endCol, 'bad-value', `'${valueText}' is not a value of ${field}`, `one of: ${legal.join(', ')}`);
        return;
      }
      if (legal.includes('*') && value.kind !== 'num') {
        err(ctx, valueCol, endCol, 'bad-value', `${field} takes a number, not '${valueText}'`);
        return;
      }
    }
    if (stmt.checks.some((c) => c.name === field) && !spec.compare) {
      err(ctx, col, endCol, 'duplicate-argument', `'${field}' is given twice`);
      return;
    }
    const node: CheckNode = { name: field, op: cop, value, col, endCol, valueCol };
    stmt.checks.push(node);
  };

  for (let i = kw.used; i < chunks.length; i++) {
    const ch = chunks[i]!;
    const next = chunks[i + 1];
    // `name OP value` written with spaces.
    if (!ch.quoted && next && !next.quoted && OPS.includes(next.text) && /^[A-Za-z_][A-Za-z0-9_.]*$/.test(ch.text)) {
      const val = chunks[i + 2];
      const a = findArg(spec, ch.text);
      if (!val) {
        err(ctx, ch.col, next.endCol, 'missing-value', `'${ch.text}' needs a value after '${next.text}'`);
        i += 1;
        continue;
      }
      if (a && isSelector(a, ch.text)) {
        if (next.text !== '=' && next.text !== '==') err(ctx, next.col, next.endCol, 'bad-operator', `'${a.name}' selects; it takes '=', not '${next.text}'`);
        else setArg(a, val.text, ch.col, val.endCol, val.col, val.quoted);
      } else addCheck(ch.text, next.text, val.text, ch.col, val.endCol, val.col, val.quoted);
      i += 2;
      continue;
    }
    const m = ch.quoted ? null : CHECK_RE.exec(ch.text);
    if (m) {
      const [, name, op, valueText] = m as unknown as [string, string, string, string];
      const a = findArg(spec, name);
      const valueCol = ch.col + name.length + op.length;
      if (a && isSelector(a, name)) {
        if (op !== '=' && op !== '==') err(ctx, ch.col + name.length, valueCol, 'bad-operator', `'${a.name}' selects; it takes '=', not '${op}'`);
        else if (valueText.length === 0) err(ctx, ch.col, ch.endCol, 'missing-value', `'${name}' needs a value`, `e.g. ${a.name}=${sampleOf(a)}`);
        else setArg(a, valueText, ch.col, ch.endCol, valueCol, false);
      } else addCheck(name, op, valueText, ch.col, ch.endCol, valueCol, false);
      continue;
    }
    if (!ch.quoted) {
      // `name value` for arguments that take a value.
      const a = findArg(spec, ch.text);
      if (a && !a.bare && !a.positional) {
        if (!next || (!next.quoted && CHECK_RE.test(next.text))) {
          err(ctx, ch.col, ch.endCol, 'missing-value', `'${ch.text}' needs a value`, `e.g. ${a.name}=${sampleOf(a)} or ${a.name} ${sampleOf(a)}`);
          continue;
        }
        setArg(a, next.text, ch.col, next.endCol, next.col, next.quoted);
        i += 1;
        continue;
      }
      // A bare word of a word group (`user`, `private`, `write`).
      const group = spec.args.find((g) => g.bare && canonical(ch.text, g.values ?? []));
      if (group) {
        if (group.type === 'flags' && stmt.args[group.name]?.value.kind === 'words') {
          (stmt.args[group.name]!.value as { v: string[] }).v.push(canonical(ch.text, group.values!)!);
          stmt.args[group.name]!.endCol = ch.endCol;
        } else setArg(group, ch.text, ch.col, ch.endCol, ch.col, false);
        continue;
      }
    }
    const pos = positional.find((p) => !stmt.args[p.name] && (p.type === 'string') === ch.quoted);
    if (pos) {
      setArg(pos, ch.text, ch.col, ch.endCol, ch.col, ch.quoted);
      continue;
    }
    if (!ch.quoted && checkAllowed(spec, ch.text)) {
      err(ctx, ch.col, ch.endCol, 'missing-value', `'${ch.text}' needs a value`, `e.g. ${ch.text}=1`);
      continue;
    }
    const dm = ch.quoted ? '' : didYouMean(ch.text, argNames(spec));
    err(ctx, ch.col, ch.endCol, 'unknown-argument', `'${spec.keyword}' does not take '${ch.text}'`, dm || listHint(spec));
  }

  if (ctx.diags.length === errorsBefore) {
    for (const a of spec.args) {
      if (a.required && !stmt.args[a.name]) {
        err(ctx, stmt.endCol, stmt.endCol + 1, 'missing-argument', `'${spec.keyword}' needs '${a.name}'`, `e.g. ${spec.example}`);
      }
    }
    if (spec.oneOf && !spec.oneOf.some((n) => stmt.args[n])) {
      err(ctx, stmt.endCol, stmt.endCol + 1, 'missing-argument', `'${spec.keyword}' needs one of ${spec.oneOf.join(', ')}`, `e.g. ${spec.example}`);
    }
    const given = spec.oneOf?.filter((n) => stmt.args[n]) ?? [];
    if (given.length > 1 && spec.keyword !== 'guest set') {
      const second = stmt.args[given[1]!]!;
      err(ctx, second.col, second.endCol, 'conflicting-arguments', `give either ${given.join(' or ')}, not both`);
    }
    if ((spec.keyword === 'param' || spec.keyword === 'variant' || spec.keyword === 'expect stat') && stmt.checks.length === 0) {
      err(ctx, stmt.endCol, stmt.endCol + 1, 'missing-argument', `'${spec.keyword}' needs at least one NAME=VALUE`, `e.g. ${spec.example}`);
    }
    if (spec.keyword === 'expect trace' && !stmt.args['event'] && !stmt.args['text'] && stmt.checks.length === 0) {
      err(ctx, stmt.endCol, stmt.endCol + 1, 'missing-argument', `'expect trace' needs an event name, a "pattern" or count=N`, `e.g. ${spec.example}`);
    }
    if (spec.keyword === 'expect trace') traceFieldChecks(ctx, stmt);
    staticChecks(ctx, stmt);
  }
  return stmt;
}

/** `expect trace EVENT field=..`: the event must be known and the fields must be in its format. */
function traceFieldChecks(ctx: Ctx, stmt: Statement): void {
  const fields = stmt.checks.filter((c) => c.name !== 'count');
  const ev = stmt.args['event'];
  if (ev && ev.value.kind === 'word' && !EVENT_BY_NAME.has(ev.value.v)) {
    err(ctx, ev.col, ev.endCol, 'unknown-event', `unknown tracepoint '${ev.value.v}'`, didYouMean(ev.value.v, EVENT_BY_NAME.keys()) || 'kvm and kvmmmu events only');
    return;
  }
  if (!fields.length) return;
  if (!ev || ev.value.kind !== 'word') {
    err(ctx, fields[0]!.col, fields[0]!.endCol, 'missing-argument', 'record fields need the event name', 'e.g. expect trace kvm_mmu_set_spte level=1');
    return;
  }
  const names = EVENT_BY_NAME.get(ev.value.v)!.fields.map((f) => f.name);
  for (const c of fields) {
    if (!names.includes(c.name)) {
      err(ctx, c.col, c.col + c.name.length, 'unknown-name', `${ev.value.v} has no field '${c.name}'`, didYouMean(c.name, names) || `fields: ${names.join(', ')}`);
    }
  }
}

function listHint(spec: StmtSpec): string {
  const names = spec.args.map((a) => (a.bare ? (a.values ?? []).join('|') : a.name));
  const checks = (spec.checks ?? []).slice(0, 12);
  const parts = [];
  if (names.length) parts.push(`arguments: ${names.join(', ')}`);
  if (checks.length) parts.push(`${spec.group === 'expect' ? 'fields' : 'names'}: ${checks.join(', ')}${(spec.checks?.length ?? 0) > 12 ? ', ...' : ''}`);
  return parts.join('; ') || `'${spec.keyword}' takes no arguments`;
}

function num(stmt: Statement, name: string): bigint | undefined {
  const v = stmt.args[name]?.value;
  return v?.kind === 'num' ? v.v : undefined;
}

/** Checks that need no engine: address bounds, iteration limits, KVM's memslot rules. */
function staticChecks(ctx: Ctx, stmt: Statement): void {
  const spec = stmt.spec;
  const physLimit = 1n << BigInt(ctx.physBits);
  for (const a of spec.args) {
    const n = stmt.args[a.name];
    if (!n || !a.space || a.space === 'gva' || a.space === 'hva') continue;
    const bits = a.space === 'pa' ? 52n : BigInt(ctx.physBits);
    const limit = 1n << bits;
    const v = n.value;
    const top = v.kind === 'num' ? v.v : v.kind === 'range' ? v.end - 1n : undefined;
    if (top !== undefined && top >= limit) {
      err(ctx, n.valueCol, n.endCol, 'address-out-of-range',
        `${a.name} ${v.text} is beyond the ${bits}-bit ${a.space === 'pa' ? 'host physical' : 'guest physical'} address space (${formatSize(limit)})`,
        a.space === 'pa' ? '' : ctx.vmSeen ? 'raise maxphyaddr/ipa_bits on the vm line, or use a lower address' : 'add a vm line with maxphyaddr= (or ipa_bits=)');
    }
  }
  if (ctx.diags.some((d) => d.line === ctx.line && d.code === 'address-out-of-range')) return;
  // Sizes paired with a start address.
  const start = num(stmt, 'gpa') ?? num(stmt, 'address');
  const size = num(stmt, 'size');
  if (start !== undefined && size !== undefined && spec.group === 'userspace' && start + size > physLimit && stmt.keyword !== 'KVM_SET_USER_MEMORY_REGION2') {
    const n = stmt.args['size']!;
    err(ctx, n.valueCol, n.endCol, 'size-out-of-range', `${formatSize(start)}+${formatSize(size)} reaches beyond the ${ctx.physBits}-bit guest physical address space`, 'use a smaller size');
  }
  if (stmt.keyword === 'KVM_SET_USER_MEMORY_REGION2' && size !== undefined) {
    const n = stmt.args['size']!;
    if (size / 4096n > BigInt(KVM_MEM_MAX_NR_PAGES)) {
      warn(ctx, n.valueCol, n.endCol, 'kvm-einval', `memory_size ${formatSize(size)} is more than KVM_MEM_MAX_NR_PAGES (2^31 - 1 pages): KVM returns -EINVAL`,
        'follow with `expect ret -EINVAL`, or use a size below 8T');
    } else if (size % 4096n !== 0n) {
      warn(ctx, n.valueCol, n.endCol, 'kvm-einval', `memory_size ${n.value.text} is not page aligned: KVM returns -EINVAL`, 'use a multiple of 4K');
    }
    const g = num(stmt, 'gpa');
    if (g !== undefined && g % 4096n !== 0n) {
      const gn = stmt.args['gpa']!;
      warn(ctx, gn.valueCol, gn.endCol, 'kvm-einval', `guest_phys_addr ${gn.value.text} is not page aligned: KVM returns -EINVAL`, 'use a multiple of 4K');
    }
  }
  if (stmt.keyword === 'KVM_CREATE_GUEST_MEMFD' && size !== undefined) {
    const n = stmt.args['size']!;
    if (size === 0n || size % 4096n !== 0n) warn(ctx, n.valueCol, n.endCol, 'kvm-einval', `guest_memfd size ${n.value.text} is not a non-zero multiple of 4K: KVM returns -EINVAL`);
    else if (size > physLimit) err(ctx, n.valueCol, n.endCol, 'size-out-of-range', `guest_memfd of ${formatSize(size)} is larger than the ${ctx.physBits}-bit guest physical address space`, 'use a smaller size');
  }
  if (stmt.keyword === 'KVM_PRE_FAULT_MEMORY' && size !== undefined && size / 4096n > BigInt(MAX_ITERATIONS)) {
    const n = stmt.args['size']!;
    err(ctx, n.valueCol, n.endCol, 'too-many-accesses', `pre-faulting ${formatSize(size)} may take ${size / 4096n} faults; one statement may make at most ${MAX_ITERATIONS}`,
      `split it into lines of at most ${formatSize(BigInt(MAX_ITERATIONS) * 4096n)}`);
  }
  if (stmt.keyword === 'guest map') {
    const r = stmt.args['gva'];
    const pw = stmt.args['page']?.value;
    const page = pw?.kind === 'word' ? (pw.v === '1G' ? 1n << 30n : pw.v === '2M' ? 1n << 21n : 4096n) : 4096n;
    if (r && r.value.kind === 'range') {
      const n = (r.value.end - r.value.start + page - 1n) / page;
      if (n > BigInt(MAX_ITERATIONS)) {
        err(ctx, r.valueCol, r.endCol, 'too-many-accesses', `${r.value.text} in ${formatSize(page)} pages is ${n} page-table entries; one statement may write at most ${MAX_ITERATIONS}`,
          'use larger pages (page=2M or 1G) or split the range');
      }
    }
  }
  // Repetition: ranges walked one access per step.
  if (stmt.keyword === 'guest read' || stmt.keyword === 'guest write' || stmt.keyword === 'guest fetch') {
    const r = stmt.args['gva'] ?? stmt.args['gpa'];
    const stepN = stmt.args['step'];
    const step = num(stmt, 'step') ?? 4096n;
    if (stepN && step === 0n) {
      err(ctx, stepN.valueCol, stepN.endCol, 'bad-value', 'step must be above 0');
      return;
    }
    if (r && r.value.kind === 'range') {
      const count = ((r.value.end - r.value.start + step - 1n) / step) * (num(stmt, 'repeat') ?? 1n);
      if (count > BigInt(MAX_ITERATIONS)) {
        err(ctx, r.valueCol, r.endCol, 'too-many-accesses',
          `${r.value.text} in steps of ${formatSize(step)} is ${count} accesses; one statement may make at most ${MAX_ITERATIONS}`,
          'use a larger step (2M, 1G) or split the range over several lines');
      }
    }
  }
}

const SETUP = new Set(['vm', 'param', 'variant', 'include']);

/** Parse one file's text. Never throws. */
export function parseScenario(text: string, file: string, opts: ParseOptions = {}): ParseResult {
  const diags: Diagnostic[] = [];
  const statements: Statement[] = [];
  const ctx: Ctx = { file, line: 0, diags, physBits: opts.defaultPhysBits ?? 52, vmSeen: false, nonSetupLine: 0 };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    ctx.line = i + 1;
    const lineText = lines[i]!;
    const chunks = chunkLine(lineText, file, ctx.line, diags);
    if (chunks.length === 0) continue;
    const st = parseStatement(ctx, chunks, lineText);
    if (!st) continue;
    if (st.keyword === 'vm') {
      if (ctx.vmSeen) err(ctx, st.col, st.col + 2, 'duplicate-vm', 'a scenario has one vm line', 'merge the two lines');
      ctx.vmSeen = true;
      const arch = st.args['arch']?.value;
      const isArm = arch?.kind === 'word' && arch.v === 'arm64';
      const bits = isArm ? num(st, 'ipa_bits') ?? 40n : num(st, 'maxphyaddr') ?? 46n;
      ctx.physBits = Number(bits);
      const t = st.args['type']?.value;
      const tv = t?.kind === 'word' ? t.v : 'default';
      const mode = st.args['mode']?.value;
      if (isArm && tv !== 'default' && tv !== 'protected') err(ctx, st.args['type']!.valueCol, st.args['type']!.endCol, 'wrong-arch', `type=${tv} is an x86 VM type; arm64 has default and protected`);
      else if (!isArm && (tv === 'protected' || mode)) {
        const bad = tv === 'protected' ? st.args['type']! : st.args['mode']!;
        err(ctx, bad.col, bad.endCol, 'wrong-arch', `'${bad.value.text}' is an arm64 setting; add arch=arm64`);
      } else if (isArm && tv === 'protected' && !(mode?.kind === 'word' && mode.v === 'protected')) {
        err(ctx, st.args['type']!.col, st.args['type']!.endCol, 'needs-pkvm', 'a protected VM needs protected KVM', 'add mode=protected (kvm-arm.mode=protected)');
      }
      const x86Only = ['vendor', 'tdp', 'tdp_levels', 'maxphyaddr', 'gpaw'].map((n) => st.args[n]).find((a) => a);
      const armOnly = ['ipa_bits', 'pa_bits', 'host_memory'].map((n) => st.args[n]).find((a) => a);
      if (isArm && x86Only) {
        err(ctx, x86Only.col, x86Only.endCol, 'wrong-arch', `'${x86Only.name}' is an x86 setting; this VM is arm64`, x86Only.name === 'maxphyaddr' ? 'use ipa_bits=' : '');
      } else if (!isArm && armOnly) {
        err(ctx, armOnly.col, armOnly.endCol, 'wrong-arch', `'${armOnly.name}' is an arm64 setting`, 'add arch=arm64');
      }
    }
    if (SETUP.has(st.keyword) && st.keyword !== 'include' && ctx.nonSetupLine) {
      err(ctx, st.col, st.col + st.keyword.length, 'setup-too-late',
        `'${st.keyword}' after the VM was created (line ${ctx.nonSetupLine} created it)`, `move this line above line ${ctx.nonSetupLine}`);
    }
    if (!SETUP.has(st.keyword) && !ctx.nonSetupLine) ctx.nonSetupLine = ctx.line;
    statements.push(st);
  }
  return { file, statements, diagnostics: diags };
}
