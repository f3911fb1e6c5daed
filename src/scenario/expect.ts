/** Comparing what an `expect` line says with what the engine reports. */
import type { CheckNode, Value } from './ast';
import { CONSTANTS, type FieldValue, type Fields } from './engine_api';

/** The number a check value stands for, if it stands for one (numbers, named constants, flag lists, booleans). */
export function valueAsBigInt(v: Value): bigint | undefined {
  switch (v.kind) {
    case 'num':
      return v.v;
    case 'bool':
      return v.v ? 1n : 0n;
    case 'word': {
      const c = CONSTANTS[v.v];
      if (c !== undefined) return BigInt(c);
      const l = v.v.toLowerCase();
      if (l === 'true' || l === 'y' || l === 'yes' || l === 'on') return 1n;
      if (l === 'false' || l === 'n' || l === 'no' || l === 'off') return 0n;
      return undefined;
    }
    case 'words': {
      let acc = 0n;
      for (const w of v.v) {
        const c = CONSTANTS[w];
        if (c === undefined) return undefined;
        acc |= BigInt(c);
      }
      return acc;
    }
    default:
      return undefined;
  }
}

function actualAsBigInt(a: FieldValue): bigint | undefined {
  if (typeof a === 'bigint') return a;
  if (typeof a === 'number') return Number.isInteger(a) ? BigInt(a) : undefined;
  if (typeof a === 'boolean') return a ? 1n : 0n;
  if (/^(0x[0-9a-f]+|-?[0-9]+)$/i.test(a)) return BigInt(a);
  return undefined;
}

/** How an actual value is shown next to an expected one: hex when the expectation was hex. */
export function showActual(a: FieldValue | undefined, like?: Value): string {
  if (a === undefined) return '(not reported)';
  if (typeof a === 'boolean') return a ? '1' : '0';
  if (typeof a === 'string') return a;
  const b = BigInt(a);
  const hexish = like && like.kind === 'num' && /^-?0x/i.test(like.text);
  if (hexish || b > 0xffffn || b < -0xffffn) return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
  return b.toString();
}

/** Does `actual` satisfy `check`? */
export function checkHolds(check: CheckNode, actual: FieldValue | undefined): boolean {
  if (actual === undefined) return false;
  const want = check.value;
  const wantN = valueAsBigInt(want);
  const haveN = actualAsBigInt(actual);
  let cmp: number | undefined;
  if (wantN !== undefined && haveN !== undefined) cmp = haveN < wantN ? -1 : haveN > wantN ? 1 : 0;
  else if (typeof actual === 'string' && (want.kind === 'word' || want.kind === 'str')) cmp = actual.toLowerCase() === want.v.toLowerCase() ? 0 : 1;
  else if (typeof actual === 'string' && want.kind === 'words') cmp = actual.split(/[|,]/).sort().join('|').toLowerCase() === [...want.v].sort().join('|').toLowerCase() ? 0 : 1;
  else if (typeof actual === 'string' && want.kind === 'num') cmp = 1;
  if (cmp === undefined) return false;
  switch (check.op) {
    case '=':
      return cmp === 0;
    case '!=':
      return cmp !== 0;
    case '<':
      return cmp < 0;
    case '<=':
      return cmp <= 0;
    case '>':
      return cmp > 0;
    case '>=':
      return cmp >= 0;
  }
}

/** `bit.N` fields read bit N of the object's raw `value`. */
export function fieldOf(obj: Fields, name: string): FieldValue | undefined {
  if (name in obj) return obj[name];
  const m = /^bit\.(\d+)$/.exec(name);
  if (m && obj['value'] !== undefined) {
    const raw = actualAsBigInt(obj['value']);
    if (raw !== undefined) return Number((raw >> BigInt(m[1]!)) & 1n);
  }
  return undefined;
}

export interface CheckFailure {
  check: CheckNode;
  actual: string;
}

/** Failed checks of `checks` against one object (empty: all hold). */
export function failedChecks(checks: readonly CheckNode[], obj: Fields): CheckFailure[] {
  const out: CheckFailure[] = [];
  for (const c of checks) {
    const a = fieldOf(obj, c.name);
    if (!checkHolds(c, a)) out.push({ check: c, actual: showActual(a, c.value) });
  }
  return out;
}

export function describeFailures(fs: readonly CheckFailure[]): string {
  return fs.map((f) => `${f.check.name}: expected ${f.check.op === '=' ? '' : f.check.op + ' '}${f.check.value.text}, got ${f.actual}`).join('; ');
}

/** Glob with `*` only, matched against the whole text. */
export function globMatch(pattern: string, text: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === text;
  if (!text.startsWith(parts[0]!)) return false;
  let pos = parts[0]!.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const at = text.indexOf(parts[i]!, pos);
    if (at < 0) return false;
    pos = at + parts[i]!.length;
  }
  const last = parts[parts.length - 1]!;
  return text.length - last.length >= pos && text.endsWith(last);
}
