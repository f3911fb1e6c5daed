/**
 * Debug-console commands (`evaluate` with context "repl"): decode values, list probes, test a
 * condition against the current probe's arguments. Each answers in one text block.
 */
import { decodeFields, type DecodedField } from '../engine/bits/fields';
import { parseU64, hex } from '../engine/bits/u64';
import { probes, type ProbeArgs } from '../engine/probes';
import { EPT_SPTE_FIELDS, NPT_SPTE_FIELDS } from '../engine/x86/spte_fields';
import { ROLE_FIELDS, role_trace_text } from '../engine/x86/role';
import { PFERR_FIELDS, pferr_trace_flags } from '../engine/x86/pferr';
import { conditionHolds, parseCondition, evalCondition, type Resolver } from './condition';
import type { DebugProgram } from './program';
import type { DebugProtocol } from '@vscode/debugprotocol';

export interface CommandContext {
  args: ProbeArgs | undefined;
  state: Record<string, unknown>;
  conditionResolver: Resolver;
  /** The program's state queries (the subjects `expect` uses), when it has them. */
  query?: (subject: string, selector: Record<string, string | number | boolean>) => Array<Record<string, unknown>> | undefined;
  /** Runs the invariant auditor and describes the result. */
  audit?: () => string;
}

/** Console verbs that read MMU state, mapped to the query subject they ask. */
const QUERIES: Record<string, { subject: string; usage: string }> = {
  spte: { subject: 'spte', usage: 'spte gpa=ADDR | gfn=N | gva=ADDR [at_level=L]' },
  sp: { subject: 'sp', usage: 'sp [gfn=N] [level=L] [root=mirror|direct]' },
  roots: { subject: 'roots', usage: 'roots' },
  rmp: { subject: 'rmp', usage: 'rmp pfn=N' },
  owner: { subject: 'page_state', usage: 'owner pfn=N' },
  stage2: { subject: 'stage2', usage: 'stage2 ipa=ADDR' },
  memslot: { subject: 'memslot', usage: 'memslot slot=N [as_id=N]' },
  walk: { subject: 'walk', usage: 'walk gva=ADDR [access=read|write|fetch] [cpl=user]' },
};

function parseSelector(words: string[]): Record<string, string | number | boolean> {
  const sel: Record<string, string | number | boolean> = {};
  for (const w of words) {
    const m = /^([A-Za-z_][\w.]*)=(.+)$/.exec(w);
    if (!m) throw new Error(`'${w}' is not NAME=VALUE`);
    const v = m[2]!;
    sel[m[1]!] = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
  }
  return sel;
}

function showRows(rows: Array<Record<string, unknown>>): string {
  if (rows.length === 0) return 'none';
  return rows.slice(0, 50).map((r) => Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? (Number.isInteger(v) && v > 9 ? '0x' + v.toString(16) : String(v)) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ')).join('\n') + (rows.length > 50 ? `\n... ${rows.length - 50} more` : '');
}

const HELP = [
  'KVM MMU debug console:',
  '  decode spte VALUE [ept|npt]   bit fields of an SPTE',
  '  decode role VALUE             kvm_mmu_page_role fields and tracepoint text',
  '  decode pferr VALUE            page-fault error code bits',
  '  spte gpa=A | gfn=N | gva=A    the SPTE(s) mapping an address, per level',
  '  sp [gfn=N] [level=L]          shadow pages / TDP tables',
  '  roots                         the MMU roots',
  '  rmp pfn=N                     an SEV-SNP RMP entry',
  '  owner pfn=N                   pKVM page state (host / hyp / guest)',
  '  stage2 ipa=A                  an arm64 stage-2 descriptor',
  '  audit                         check every MMU invariant now',
  '  probes [FILTER]               probe names usable as function breakpoints',
  '  cond EXPR                     evaluate a breakpoint condition here (e.g. cond gfn == 0x800 && level == 1)',
  '  NAME[.FIELD]                  a probe argument or state value (as in Watch)',
].join('\n');

function table(fields: DecodedField[]): string {
  const w = Math.max(...fields.map((f) => f.name.length));
  return fields.map((f) => `${f.bits.padEnd(8)} ${f.name.padEnd(w)}  ${(f.msb - f.lsb >= 3 ? f.hex : String(f.value)).padEnd(14)} ${f.meaning}`).join('\n');
}

export function evaluateCommand(expr: string, ctx: CommandContext): string {
  const words = expr.split(/\s+/).filter(Boolean);
  if (words.length === 0 || words[0] === 'help') return HELP;
  if (words[0] === 'decode') {
    const v = words[2] ? parseU64(words[2]) : undefined;
    if (!v) throw new Error('usage: decode spte|role|pferr VALUE');
    switch (words[1]) {
      case 'spte':
        return `0x${hex(v.lo, v.hi)} (${words[3] === 'npt' ? 'NPT' : 'EPT'})\n` + table(decodeFields(v.lo, v.hi, words[3] === 'npt' ? NPT_SPTE_FIELDS : EPT_SPTE_FIELDS));
      case 'role':
        return `role 0x${v.lo.toString(16)}: ${role_trace_text(v.lo)}\n` + table(decodeFields(v.lo, 0, ROLE_FIELDS));
      case 'pferr':
        return `error code 0x${hex(v.lo, v.hi)} ${pferr_trace_flags(v.lo, v.hi)}\n` + table(decodeFields(v.lo, v.hi, PFERR_FIELDS).filter((f) => f.value !== 0));
      default:
        throw new Error(`cannot decode '${words[1]}' (spte, role, pferr)`);
    }
  }
  const q = Object.hasOwn(QUERIES, words[0]!) ? QUERIES[words[0]!] : undefined;
  if (q) {
    if (!ctx.query) throw new Error('this session cannot answer state queries');
    const rows = ctx.query(q.subject, parseSelector(words.slice(1)));
    if (rows === undefined) throw new Error(`the engine of this VM cannot answer '${words[0]}' (usage: ${q.usage})`);
    return showRows(rows);
  }
  if (words[0] === 'audit') {
    if (!ctx.audit) throw new Error('this session has no engine state to audit');
    return ctx.audit();
  }
  if (words[0] === 'probes') {
    const filter = words[1];
    return probes.all().filter((p) => !filter || p.name.includes(filter) || p.group === filter)
      .map((p) => `${p.group.padEnd(12)} ${p.name.padEnd(36)} ${p.doc}`).join('\n') || 'no probes match';
  }
  if (words[0] === 'cond') {
    const src = expr.slice(expr.indexOf('cond') + 4).trim();
    const node = parseCondition(src);
    const v = evalCondition(node, ctx.conditionResolver);
    return `${conditionHolds(node, ctx.conditionResolver)} (${typeof v === 'bigint' ? '0x' + v.toString(16) : v})`;
  }
  // A condition expression on its own.
  const node = parseCondition(expr);
  const v = evalCondition(node, ctx.conditionResolver);
  return typeof v === 'bigint' ? `0x${v.toString(16)} (${v})` : v;
}

export function completeCommand(text: string, column: number, _program: DebugProgram): DebugProtocol.CompletionItem[] {
  const upto = text.slice(0, Math.max(0, column - 1));
  const words = upto.split(/\s+/);
  const last = words[words.length - 1] ?? '';
  const items: DebugProtocol.CompletionItem[] = [];
  if (words.length <= 1) {
    for (const c of ['decode', 'probes', 'cond', 'help', ...Object.keys(QUERIES)]) if (c.startsWith(last)) items.push({ label: c, type: 'keyword' });
  }
  if (words[0] === 'decode' && words.length === 2) {
    for (const c of ['spte', 'role', 'pferr']) if (c.startsWith(last)) items.push({ label: c, type: 'enum' });
  }
  if (words[0] === 'probes' || words.length <= 1 || words[0] === 'cond') {
    for (const p of probes.all()) if (p.name.startsWith(last) && last.length > 0) items.push({ label: p.name, type: 'function', detail: p.doc });
  }
  return items.map((i) => ({ ...i, start: column - 1 - last.length, length: last.length }));
}
