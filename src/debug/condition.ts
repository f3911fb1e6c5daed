/**
 * Breakpoint conditions over a probe's arguments: `gfn == 0x800 && level == 2`, `role.direct`,
 * `spte.writable`, `!fault.prefetch || error_code & 0x2`. A small, safe expression language (no
 * JavaScript eval): identifiers with dotted paths, numbers (hex or decimal), comparisons, bitwise
 * and/or, logical operators, parentheses. Values are compared as BigInt (conditions run only where a
 * breakpoint is set, never on the unwatched hot path).
 */

export type Resolver = (path: string[]) => unknown;

type Tok = { t: 'num'; v: bigint } | { t: 'id'; v: string[] } | { t: 'op'; v: string } | { t: 'str'; v: string };

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<<', '>>', '<', '>', '!', '(', ')', '&', '|', '^', '~', '+', '-'];

export class ConditionError extends Error {}

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    const num = /^(0x[0-9a-fA-F_]+|\d[\d_]*)/.exec(src.slice(i));
    if (num) { out.push({ t: 'num', v: BigInt(num[1].replace(/_/g, '')) }); i += num[1].length; continue; }
    const id = /^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*|\[\d+\])*/.exec(src.slice(i));
    if (id) {
      const path = id[0].replace(/\[(\d+)\]/g, '.$1').split('.');
      if (path.length === 1 && (path[0] === 'true' || path[0] === 'false')) out.push({ t: 'num', v: path[0] === 'true' ? 1n : 0n });
      else out.push({ t: 'id', v: path });
      i += id[0].length;
      continue;
    }
    const str = /^(['"])(.*?)\1/.exec(src.slice(i));
    if (str) { out.push({ t: 'str', v: str[2] }); i += str[0].length; continue; }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) throw new ConditionError(`unexpected '${c}' at column ${i + 1}`);
    out.push({ t: 'op', v: op });
    i += op.length;
  }
  return out;
}

type Node =
  | { k: 'lit'; v: bigint | string }
  | { k: 'id'; path: string[] }
  | { k: 'un'; op: string; a: Node }
  | { k: 'bin'; op: string; a: Node; b: Node };

const PREC: Record<string, number> = { '||': 1, '&&': 2, '|': 3, '^': 4, '&': 5, '==': 6, '!=': 6, '<': 7, '<=': 7, '>': 7, '>=': 7, '<<': 8, '>>': 8, '+': 9, '-': 9 };

export function parseCondition(src: string): Node {
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p];
  function primary(): Node {
    const t = toks[p++];
    if (!t) throw new ConditionError('expression ends too early');
    if (t.t === 'num' || t.t === 'str') return { k: 'lit', v: t.v };
    if (t.t === 'id') return { k: 'id', path: t.v };
    if (t.v === '(') {
      const e = expr(0);
      const close = toks[p++];
      if (!close || close.t !== 'op' || close.v !== ')') throw new ConditionError("missing ')'");
      return e;
    }
    if (t.v === '!' || t.v === '~' || t.v === '-') return { k: 'un', op: t.v, a: primary() };
    throw new ConditionError(`unexpected '${t.v}'`);
  }
  function expr(min: number): Node {
    let a = primary();
    for (;;) {
      const t = peek();
      if (!t || t.t !== 'op' || !(t.v in PREC) || PREC[t.v] < min) break;
      p++;
      const b = expr(PREC[t.v] + 1);
      a = { k: 'bin', op: t.v, a, b };
    }
    return a;
  }
  const n = expr(0);
  if (p !== toks.length) throw new ConditionError(`unexpected '${(toks[p] as { v: unknown }).v}'`);
  return n;
}

/** Convert an argument value to BigInt for comparison: numbers, booleans, {lo,hi}, hex strings. */
export function toBig(v: unknown): bigint | string {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : BigInt(Math.trunc(v));
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (v === undefined || v === null) return 0n;
  if (typeof v === 'string') return /^(0x)?[0-9a-f]+$/i.test(v) && v.startsWith('0x') ? BigInt(v) : v;
  if (typeof v === 'object' && 'lo' in (v as object) && 'hi' in (v as object)) {
    const u = v as { lo: number; hi: number };
    return (BigInt(u.hi >>> 0) << 32n) | BigInt(u.lo >>> 0);
  }
  return 1n;
}

function truthy(v: bigint | string): boolean {
  return typeof v === 'string' ? v.length > 0 : v !== 0n;
}

export function evalCondition(n: Node, resolve: Resolver): bigint | string {
  switch (n.k) {
    case 'lit':
      return n.v;
    case 'id': {
      const v = resolve(n.path);
      if (v === undefined) throw new ConditionError(`unknown name '${n.path.join('.')}'`);
      return toBig(v);
    }
    case 'un': {
      const a = evalCondition(n.a, resolve);
      if (n.op === '!') return truthy(a) ? 0n : 1n;
      if (typeof a === 'string') throw new ConditionError(`'${n.op}' needs a number`);
      return n.op === '-' ? -a : BigInt.asUintN(64, ~a);
    }
    case 'bin': {
      if (n.op === '&&') return truthy(evalCondition(n.a, resolve)) && truthy(evalCondition(n.b, resolve)) ? 1n : 0n;
      if (n.op === '||') return truthy(evalCondition(n.a, resolve)) || truthy(evalCondition(n.b, resolve)) ? 1n : 0n;
      const a = evalCondition(n.a, resolve);
      const b = evalCondition(n.b, resolve);
      if (n.op === '==') return a === b ? 1n : 0n;
      if (n.op === '!=') return a !== b ? 1n : 0n;
      if (typeof a === 'string' || typeof b === 'string') throw new ConditionError(`'${n.op}' needs numbers`);
      switch (n.op) {
        case '<': return a < b ? 1n : 0n;
        case '<=': return a <= b ? 1n : 0n;
        case '>': return a > b ? 1n : 0n;
        case '>=': return a >= b ? 1n : 0n;
        case '&': return a & b;
        case '|': return a | b;
        case '^': return a ^ b;
        case '<<': return BigInt.asUintN(64, a << b);
        case '>>': return a >> b;
        case '+': return a + b;
        case '-': return a - b;
      }
      throw new ConditionError(`unknown operator ${n.op}`);
    }
  }
}

export function conditionHolds(n: Node, resolve: Resolver): boolean {
  return truthy(evalCondition(n, resolve));
}

/** `>= 3`, `== 5`, `% 10`, or a bare number meaning `>=`, as VS Code's hit-count field allows. */
export function parseHitCondition(src: string): (hits: number) => boolean {
  const m = /^\s*(==|>=|>|<=|<|%)?\s*(\d+)\s*$/.exec(src);
  if (!m) throw new ConditionError(`hit count '${src}' is not '[== | >= | > | < | <= | %] N'`);
  const n = +m[2];
  switch (m[1]) {
    case '==': return (h) => h === n;
    case '>': return (h) => h > n;
    case '<': return (h) => h < n;
    case '<=': return (h) => h <= n;
    case '%': return (h) => n > 0 && h % n === 0;
    default: return (h) => h >= n;
  }
}
