/**
 * Tracepoint text, print side: the payload exactly as the 6.18 kernel's `print fmt` renders it (no
 * `COMM-PID [CPU] FLAGS TS: EVENT: ` prefix).
 *
 * Field names are the format file's field names. Values follow the convention of ./values.ts: numbers, or
 * for 64-bit values >= 2^53 a lower-case hex string without `0x` (both forms are accepted everywhere).
 * Callers guard with `if (trace.enabled)` so that a run with no consumer formats nothing.
 */
import { F_BOOL, F_NUM, F_U64, trace, TraceShape, type TraceEvent } from '../trace_sink';
import { role_trace_text } from '../x86/role';
import {
  kvm_mmu_pagetable_walk_text,
  kvm_mmu_paging_element_text,
  kvm_mmu_set_ad_bit_text,
  kvm_mmu_walker_error_text,
} from '../x86/paging_trace';
import { VMX_EXIT_REASONS, SVM_EXIT_REASONS } from './exit_reasons';
import {
  EVENT_BY_NAME,
  PFERR_FLAG_NAMES,
  RET_PF_FIXED_6_18,
  RET_PF_SPURIOUS_6_18,
  type EventSchema,
  type FieldSpec,
  type Part,
} from './schema';
import { decHalves, hexHalves, loadHalves, scratch, type TraceFields } from './values';

export { EVENTS, EVENT_BY_NAME, PFERR_FLAG_NAMES, SP_ACCESS_STR, SP_TEXT_ROLE_MASK, SP_OLD_TEXT_ROLE_MASK } from './schema';
export type { EventSchema, FieldSpec, Part, Conv, CustomKind } from './schema';
export { RET_PF_SPURIOUS_6_18, RET_PF_FIXED_6_18 } from './schema';
export { VMX_EXIT_REASONS, SVM_EXIT_REASONS } from './exit_reasons';
export type { FieldValue, TraceFields } from './values';
export { halvesToValue, hexHalves, loadHalves } from './values';

/** `kvm_exit`'s isa field values (KVM_ISA_VMX / KVM_ISA_SVM). */
export const KVM_ISA_VMX = 1;
export const KVM_ISA_SVM = 2;

const VMX_NAME = new Map<number, string>(VMX_EXIT_REASONS.map(([k, n]) => [k, n]));
const SVM_NAME = new Map<number, string>(SVM_EXIT_REASONS.filter(([k]) => k >= 0).map(([k, n]) => [k, n]));

/** Load field `f` of `fields` into scratch, truncated to the record field's width (what C stores). */
function loadField(spec: FieldSpec, v: TraceFields[string] | undefined): void {
  loadHalves(v);
  if (spec.bits === 64) return;
  scratch.hi = 0;
  if (spec.bits === 8) scratch.lo &= 0xff;
  else if (spec.bits === 16) scratch.lo &= 0xffff;
}

/** The signed value of the truncated field in scratch. */
function signedScratch(bits: number): number {
  const lo = scratch.lo >>> 0;
  if (bits === 8) return (lo << 24) >> 24;
  if (bits === 16) return (lo << 16) >> 16;
  return lo | 0;
}

/** `__print_flags(v, "|", ...)` of the page-fault error code (64-bit, halves). */
export function pferrFlagsText(lo: number, hi: number): string {
  let out = '';
  let first = true;
  lo >>>= 0;
  hi >>>= 0;
  for (const [bit, name] of PFERR_FLAG_NAMES) {
    if (lo === 0 && hi === 0) break;
    const m = (1 << bit) >>> 0;
    if ((lo & m) !== m) continue;
    lo = (lo & ~m) >>> 0;
    if (!first) out += '|';
    first = false;
    out += name;
  }
  if (lo !== 0 || hi !== 0) {
    if (!first) out += '|';
    out += '0x' + hexHalves(lo, hi);
  }
  return out;
}

/**
 * The shadow-page text shared by kvm_mmu_get_page / sync_page / unsync_page / prepare_zap_page. The role
 * part (`lL B-byte qQ[ direct] ACC[ invalid] [!]nxe [!]ad`) is the role module's, so that the role word has
 * one decoder.
 */
export function spText(mmuValidGen: number, gfnLo: number, gfnHi: number, role: number, rootCount: number, unsync: boolean): string {
  return `sp gen ${mmuValidGen & 0xff} gfn ${hexHalves(gfnLo, gfnHi)} ${role_trace_text(role >>> 0)} root ${rootCount >>> 0} ${unsync ? 'unsync' : 'sync'}`;
}

/** `kvm_exit`'s reason text (`%s%s%s`): symbolic reason, then for VMX a space and the flag names of bits 31:16. */
export function exitReasonText(exitReason: number, isa: number): string {
  exitReason >>>= 0;
  if (isa === KVM_ISA_VMX) {
    const basic = exitReason & 0xffff;
    let s = VMX_NAME.get(basic) ?? '0x' + basic.toString(16);
    const upper = (exitReason & 0xffff_0000) >>> 0;
    if (upper !== 0) {
      s += ' ';
      let rest = upper;
      let first = true;
      if ((rest & 0x8000_0000) >>> 0 === 0x8000_0000) {
        s += 'FAILED_VMENTRY';
        rest = (rest & 0x7fff_ffff) >>> 0;
        first = false;
      }
      if (rest !== 0) s += (first ? '' : ' ') + '0x' + rest.toString(16);
    }
    return s;
  }
  return SVM_NAME.get(exitReason) ?? '0x' + exitReason.toString(16);
}

function fieldBool(v: TraceFields[string] | undefined): boolean {
  if (v === undefined) return false;
  loadHalves(v);
  return scratch.lo !== 0 || scratch.hi !== 0;
}

function formatCustom(schema: EventSchema, p: Extract<Part, { t: 'custom' }>, fields: TraceFields): string {
  const f = schema.fields;
  const get = (name: string): TraceFields[string] | undefined => fields[name];
  switch (p.kind) {
    case 'pferr_flags': {
      loadField(f[p.field]!, get(f[p.field]!.name));
      return pferrFlagsText(scratch.lo, scratch.hi);
    }
    case 'sp': {
      loadField(schema.fields[schema.index['gfn']!]!, get('gfn'));
      const gLo = scratch.lo;
      const gHi = scratch.hi;
      loadField(schema.fields[schema.index['mmu_valid_gen']!]!, get('mmu_valid_gen'));
      const gen = scratch.lo;
      loadField(schema.fields[schema.index['role']!]!, get('role'));
      const role = scratch.lo;
      loadField(schema.fields[schema.index['root_count']!]!, get('root_count'));
      const root = scratch.lo;
      return spText(gen, gLo, gHi, role, root, fieldBool(get('unsync')));
    }
    case 'sp_old':
      throw new Error('the pre-5.10 shadow-page text is parse-only');
    case 'created':
      return fieldBool(get('created')) ? 'new' : 'existing';
    case 'rwxu': {
      loadHalves(get('spte'));
      const w = (scratch.lo & 2) !== 0;
      loadField(schema.fields[schema.index['u']!]!, get('u'));
      const u = (scratch.lo << 24) >> 24;
      return (fieldBool(get('r')) ? 'r' : '-') + (w ? 'w' : '-') + (fieldBool(get('x')) ? 'x' : '-') + (u === -1 ? '' : u ? 'u' : '-');
    }
    case 'exit_reason': {
      loadHalves(get('exit_reason'));
      const reason = scratch.lo;
      loadHalves(get('isa'));
      return exitReasonText(reason, scratch.lo);
    }
    case 'immediate_exit':
      return fieldBool(get('immediate_exit')) ? '[immediate exit]' : '';
    case 'gen_valid': {
      loadHalves(get('kvm_gen'));
      const a = scratch.lo;
      loadHalves(get('spte_gen'));
      return a === scratch.lo ? '1' : '0';
    }
    case 'ret_spurious':
    case 'ret_fixed': {
      loadHalves(get('ret'));
      const ret = scratch.lo | 0;
      return ret === (p.kind === 'ret_spurious' ? RET_PF_SPURIOUS_6_18 : RET_PF_FIXED_6_18) ? '1' : '0';
    }
  }
}

function formatConv(spec: FieldSpec, conv: string, v: TraceFields[string] | undefined): string {
  loadField(spec, v);
  const lo = scratch.lo;
  const hi = scratch.hi;
  switch (conv) {
    case 'x':
      return hexHalves(lo, hi);
    case 'u':
      return decHalves(lo, hi);
    case 'd':
      if (spec.bits === 64) return hi >>> 31 ? '-' + decHalves((~lo + 1) >>> 0, (~hi + (lo === 0 ? 1 : 0)) >>> 0) : decHalves(lo, hi);
      // a narrower unsigned field is promoted to a non-negative int; a 32-bit one is reinterpreted
      if (spec.bits < 32 && !spec.signed) return String(lo);
      return String(signedScratch(spec.bits));
    case 'x08':
      return hexHalves(lo, hi, 8);
    case 'x016':
    case 'p':
      return hexHalves(lo, hi, 16);
    case 'x#':
      return '0x' + hexHalves(lo, hi);
    case 'x#016':
      return '0x' + hexHalves(lo, hi, 14);
  }
  throw new Error(`unknown conversion ${conv}`);
}

/** Format a part list (the current print fmt of `schema`). */
export function formatParts(schema: EventSchema, parts: readonly Part[], fields: TraceFields): string {
  let out = '';
  for (const p of parts) {
    if (p.t === 'lit') out += p.s;
    else if (p.t === 'conv') {
      const spec = schema.fields[p.field]!;
      out += formatConv(spec, p.conv, fields[spec.name]);
    } else out += formatCustom(schema, p, fields);
  }
  return out;
}

/**
 * Optional per-event delegates (one implementation per event): another module that owns an event's text
 * (e.g. the guest walker's events in src/engine/x86/paging_trace.ts) may register its formatter here.
 */
const delegates = new Map<string, (fields: TraceFields) => string>();

/** Guest-walker events: their text lives with the walker (src/engine/x86/paging_trace.ts). */
function walkerField(fields: TraceFields, name: string, bits: 32 | 64): void {
  loadHalves(fields[name]);
  if (bits === 32) scratch.hi = 0;
}
delegates.set('kvm_mmu_pagetable_walk', (f) => {
  walkerField(f, 'pferr', 32);
  const pferr = scratch.lo;
  walkerField(f, 'addr', 64);
  return kvm_mmu_pagetable_walk_text(scratch.lo, scratch.hi, pferr);
});
delegates.set('kvm_mmu_paging_element', (f) => {
  walkerField(f, 'level', 32);
  const level = scratch.lo;
  walkerField(f, 'pte', 64);
  return kvm_mmu_paging_element_text(scratch.lo, scratch.hi, level);
});
delegates.set('kvm_mmu_walker_error', (f) => {
  walkerField(f, 'pferr', 32);
  return kvm_mmu_walker_error_text(scratch.lo);
});
// a gpa is below 2^52 (MAXPHYADDR), so the walker's number form is exact
const adBit = (f: TraceFields): string => {
  walkerField(f, 'gpa', 64);
  return kvm_mmu_set_ad_bit_text(scratch.hi * 0x1_0000_0000 + scratch.lo);
};
delegates.set('kvm_mmu_set_accessed_bit', adBit);
delegates.set('kvm_mmu_set_dirty_bit', adBit);
export function registerTracepointFormatter(name: string, fn: (fields: TraceFields) => string): void {
  if (!EVENT_BY_NAME.has(name)) throw new Error(`unknown tracepoint ${name}`);
  delegates.set(name, fn);
}

/** The payload text of event `name` exactly as the 6.18 print fmt produces it. Throws on an unknown event. */
export function formatTracepoint(name: string, fields: TraceFields): string {
  const d = delegates.get(name);
  if (d) return d(fields);
  const schema = EVENT_BY_NAME.get(name);
  if (!schema) throw new Error(`unknown tracepoint ${name}`);
  return formatParts(schema, schema.parts, fields);
}

/** TRACE_SYSTEM of an event (`kvm` or `kvmmmu`), or undefined when the event is unknown. */
export function tracepointSystem(name: string): 'kvm' | 'kvmmmu' | undefined {
  return EVENT_BY_NAME.get(name)?.system;
}

/** Format and hand to the trace sink. Call only behind `if (trace.enabled)`. */
export function emitTracepoint(name: string, vcpu: number, fields: TraceFields): void {
  const schema = EVENT_BY_NAME.get(name);
  if (!schema) throw new Error(`unknown tracepoint ${name}`);
  trace.emitLazy(schema.system, name, vcpu, fields, formatTracepoint as (n: string, f: TraceEvent['fields']) => string);
}

/**
 * The raw layout of a hot tracepoint for `trace.emitRaw`: `keys` are format-file field names in the order
 * the emit site passes them, `name:u64` for a 64-bit value passed as lo, hi halves, `name:bool` for a
 * boolean passed as 0/1. Checked against the schema once, at load.
 */
export function tracepointShape(name: string, keys: readonly string[]): TraceShape {
  const schema = EVENT_BY_NAME.get(name);
  if (!schema) throw new Error(`unknown tracepoint ${name}`);
  const names: string[] = [];
  const kinds: number[] = [];
  for (const k of keys) {
    const [field, kind] = k.split(':') as [string, string | undefined];
    if (!schema.fields.some((f) => f.name === field) && !delegates.has(name)) throw new Error(`tracepoint ${name} has no field ${field}`);
    names.push(field);
    kinds.push(kind === 'u64' ? F_U64 : kind === 'bool' ? F_BOOL : F_NUM);
  }
  return new TraceShape(schema.system, name, names, kinds, formatTracepoint as (n: string, f: TraceEvent['fields']) => string);
}
