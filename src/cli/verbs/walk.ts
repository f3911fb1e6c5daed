/**
 * `kvm-mmu walk`: walk guest page tables the way KVM's `walk_addr_generic` does and explain the result.
 *
 *   kvm-mmu walk --mode long4 --addr 7fff23456123 --access write --user --ptes 2007,3007,4007,5005
 *   kvm-mmu walk --from-trace capture.txt
 *
 * `--ptes` lists the entries the walk meets, top level first (PAE: the PDPTE first), in hex; they are
 * used whatever their address fields say. `--from-trace` reads kvm_mmu_pagetable_walk /
 * kvm_mmu_paging_element / kvm_mmu_walker_error lines from a capture and explains each walk.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeFields, type DecodedField } from '../../engine/bits/fields';
import { hex, parseU64, type U64 } from '../../engine/bits/u64';
import { trace } from '../../engine/trace_sink';
import {
  __is_bad_mt_xwr,
  bitListText,
  EPT_MEMTYPE_NAMES,
  guestPteFields,
  reservedBitsSet,
  setBitNumbers,
  type GuestPteFormat,
} from '../../engine/x86/guest_pte';
import {
  createGuestEptMmu,
  createGuestMmu,
  GuestWalker,
  ListGuestPageTables,
  MissingEntryError,
  nonpaging_gva_to_gpa,
  PTTYPE_32,
  PTTYPE_EPT,
  walk_addr_generic,
  WalkResult,
  WalkStep,
  type GuestMmu,
} from '../../engine/x86/paging_tmpl';
import { walkerPferrFlags } from '../../engine/x86/paging_trace';

class UsageError extends Error {}

const MODES = ['none', '32', 'pae', 'long4', 'long5', 'ept4', 'ept5'] as const;
type Mode = (typeof MODES)[number];

const PFERR_W = 2;
const PFERR_U = 4;
const PFERR_RSVD = 8;
const PFERR_F = 0x10;
const PFERR_PK = 0x20;

const HELP = `usage: kvm-mmu walk --mode none|32|pae|long4|long5|ept4|ept5 --addr HEX --access read|write|fetch
                     [--user] [--implicit] [--cr0-wp 0|1] [--efer-nx 0|1] [--smep 0|1] [--smap 0|1] [--ac 0|1]
                     [--pke 0|1 --pkru HEX] [--gbpages 0|1] [--pse 0|1] [--pse36 0|1] [--amd 0|1]
                     [--maxphyaddr N] [--execonly 0|1] [--ept-ad 0|1] [--cr3 HEX] --ptes HEX,HEX,... [--json]
       kvm-mmu walk --mode ... --addr HEX --pferr HEX [flags as above] --ptes ...
       kvm-mmu walk --from-trace FILE [--mode ...] [flags as above] [--json]

Walks guest page tables as KVM's walk_addr_generic does (arch/x86/kvm/mmu/paging_tmpl.h).
--ptes      the entries the walk meets, top level first (PAE: the PDPTE first), hex; their address
            fields are not followed
--pferr     the access as a raw error code (e.g. from kvm_page_fault; RSVD is dropped as
            FNAME(page_fault) does), instead of --access/--user
--cr3       only used for the A/D tracepoints' gpa of the top-level entry (CR3 or EPTP; default 0)
--access    read|write|fetch; --user makes it a user-mode access, --implicit an implicit supervisor
            access (descriptor tables: EFLAGS.AC cannot override SMAP). For ept4/ept5 the walk is of
            L1's EPT tables for an L2 GPA and read means PFERR_USER, as KVM encodes EPT reads.
defaults    --cr0-wp 1 --efer-nx 1 --smep 0 --smap 0 --ac 0 --pke 0 --pkru 0 --gbpages 1 --pse 1
            --pse36 1 --amd 0 --maxphyaddr 52 --execonly 1 --ept-ad 1
--from-trace  explain walks in a capture (raw trace, trace-cmd report, perf script or bare lines)
--json      machine-readable output`;

function bool01(name: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === '0') return false;
  if (v === '1') return true;
  throw new UsageError(`--${name} must be 0 or 1, not '${v}'`);
}

function hexArg(name: string, v: string): U64 {
  const r = parseU64(v);
  if (!r) throw new UsageError(`--${name}: '${v}' is not a 64-bit hex value`);
  return r;
}

function u64hex(v: U64): string {
  return '0x' + hex(v.lo, v.hi);
}

interface WalkConfig {
  mode: Mode;
  addr: U64;
  access: 'read' | 'write' | 'fetch';
  user: boolean;
  implicit: boolean;
  cr0wp: boolean;
  eferNx: boolean;
  smep: boolean;
  smap: boolean;
  ac: boolean;
  pke: boolean;
  pkru: number;
  gbpages: boolean;
  pse: boolean;
  pse36: boolean;
  amd: boolean;
  maxphyaddr: number;
  execonly: boolean;
  eptAd: boolean;
  cr3: U64;
  /** Raw access error code (--pferr, or the capture's pferr), used instead of --access/--user. */
  pferr?: U64;
}

function buildMmu(c: WalkConfig): GuestMmu | undefined {
  if (c.mode === 'none') return undefined;
  if (c.mode === 'ept4' || c.mode === 'ept5') {
    return createGuestEptMmu({ level: c.mode === 'ept4' ? 4 : 5, execonly: c.execonly, huge_page_level: 3, accessed_dirty: c.eptAd, maxphyaddr: c.maxphyaddr });
  }
  return createGuestMmu(
    {
      cr0_pg: true,
      cr0_wp: c.cr0wp,
      cr4_pae: c.mode !== '32',
      cr4_pse: c.pse,
      cr4_smep: c.smep,
      cr4_smap: c.smap,
      cr4_pke: c.pke,
      cr4_la57: c.mode === 'long5',
      efer_lma: c.mode === 'long4' || c.mode === 'long5',
      efer_nx: c.eferNx,
    },
    { maxphyaddr: c.maxphyaddr, gbpages: c.gbpages, pse36: c.pse36, amd: c.amd },
  );
}

function accessCode(c: WalkConfig): { lo: number; hi: number } {
  if (c.pferr) return { lo: c.pferr.lo, hi: c.pferr.hi | (c.implicit ? 1 << 16 : 0) };
  const ept = c.mode === 'ept4' || c.mode === 'ept5';
  let lo = 0;
  if (c.access === 'write') lo |= PFERR_W;
  if (c.access === 'fetch') lo |= PFERR_F;
  if (ept ? c.access === 'read' : c.user) lo |= PFERR_U;
  return { lo, hi: c.implicit ? 1 << 16 : 0 };
}

function format(mode: Mode): GuestPteFormat {
  return mode === '32' ? 'pte32' : mode === 'pae' ? 'pae' : mode === 'ept4' || mode === 'ept5' ? 'ept' : 'long';
}

function entryName(mode: Mode, level: number, pdptr: boolean): string {
  const ept = mode === 'ept4' || mode === 'ept5';
  if (pdptr) return 'PDPTE (PDPTR)';
  const base = mode === '32' ? (level === 2 ? 'PDE' : 'PTE') : (['PTE', 'PDE', 'PDPTE', 'PML4E', 'PML5E'][level - 1] ?? `L${level}`);
  return ept ? `EPT ${base}` : base;
}

function isLarge(mode: Mode, level: number, lo: number, pse: boolean): boolean {
  if (level === 1 || (lo & 0x80) === 0) return false;
  if (mode === '32') return level === 2 && pse;
  return true;
}

function fieldSummary(fields: DecodedField[]): string {
  const parts: string[] = [];
  for (const f of fields) {
    if (f.value === 0) continue;
    if (f.msb === f.lsb) parts.push(f.name);
    else if (f.name === 'MT') parts.push(`MT=${f.meaning}`);
    else parts.push(`${f.name}=${f.hex}`);
  }
  return parts.join(' ');
}

function pageSizeAt(mode: Mode, level: number): string {
  if (level === 1) return '4K';
  if (mode === '32') return '4M';
  return level === 2 ? '2M' : level === 3 ? '1G' : `level-${level}`;
}

/** Which reserved bits an entry has, with the fields they fall in. */
function explainReserved(mmu: GuestMmu, mode: Mode, level: number, lo: number, hi: number, maxphyaddr: number, pse: boolean): string {
  const set = setBitNumbers(reservedBitsSet(mmu.guest_rsvd_check, lo, hi, level));
  const table = guestPteFields(format(mode), level, isLarge(mode, level, lo, pse));
  const notes: string[] = [];
  for (const f of table) {
    const inField = set.filter((b) => b >= f.lsb && b <= f.msb);
    if (inField.length === 0) continue;
    let why = f.name;
    // Only PAE paging reserves bits 62:52; long mode clips the MAXPHYADDR mask at bit 51.
    if (inField.some((b) => b >= maxphyaddr && b < 63)) {
      why = `${f.name}, above MAXPHYADDR ${maxphyaddr}${mode === 'pae' && inField.some((b) => b > 51) ? ' (PAE reserves up to bit 62)' : ''}`;
    }
    if (f.name === 'XD' || (f.name === 'RSVD63' && !mmu.efer_nx)) why = `${f.name}, reserved without EFER.NXE`;
    if (f.name === 'PS' && level >= 4) why = 'PS, never allowed in a PML4E/PML5E';
    if (f.name === 'PS' && level === 3 && mode !== 'pae') why = 'PS, a 1G page needs GBPAGES';
    if (f.name === 'IGN8' && level >= 4) why = 'bit 8, reserved on AMD in a non-leaf PML4E/PML5E';
    notes.push(`${bitListText(inField)} (${why})`);
  }
  return notes.length ? notes.join('; ') : 'none';
}

function explainBadMtXwr(lo: number): string {
  const xwr = lo & 7;
  const mt = (lo >>> 3) & 7;
  const parts: string[] = [];
  if (mt === 2 || mt === 3 || mt === 7) parts.push(`memory type ${mt} is ${EPT_MEMTYPE_NAMES[mt]}`);
  if (xwr === 2) parts.push('XWR=010: write without read');
  else if (xwr === 6) parts.push('XWR=110: write+execute without read');
  else if (xwr === 4) parts.push('XWR=100: execute-only, not supported (--execonly 0)');
  return parts.join('; ');
}

/** Why permission_fault said no, from the combined access of the walk. */
function explainPermission(mmu: GuestMmu, c: WalkConfig, w: GuestWalker, errcode: number): string[] {
  const acc = w.pte_access;
  const out: string[] = [];
  if (mmu.pttype === PTTYPE_EPT) {
    if (c.access === 'read' && !(acc & 4)) out.push('read of an EPT translation that is not readable (R=0 at some level)');
    if (c.access === 'write' && !(acc & 2)) out.push('write to an EPT translation that is not writable (W=0 at some level)');
    if (c.access === 'fetch' && !(acc & 1)) out.push('fetch from an EPT translation that is not executable (X=0 at some level)');
    return out;
  }
  const userPage = (acc & 4) !== 0;
  if (c.user && !userPage) out.push('user-mode access to a supervisor page (U/S=0 at some level)');
  if (c.access === 'write' && !(acc & 2) && (c.user || mmu.cr0_wp)) {
    out.push(`write to a read-only page (R/W=0 at some level${c.user ? '' : ', CR0.WP=1'})`);
  }
  if (c.access === 'fetch' && mmu.efer_nx && !(acc & 1)) out.push('fetch from a non-executable page (XD=1 at some level)');
  if (c.access === 'fetch' && !c.user && mmu.cr4_smep && userPage) out.push('SMEP: supervisor-mode fetch from a user page');
  if (c.access !== 'fetch' && !c.user && mmu.cr4_smap && userPage && !(c.ac && !c.implicit)) {
    out.push(`SMAP: supervisor-mode data access to a user page (${c.implicit ? 'implicit access: EFLAGS.AC cannot override' : 'EFLAGS.AC=0'})`);
  }
  if (errcode & PFERR_PK) {
    const k = w.pte_pkey;
    const bits = (c.pkru >>> (2 * k)) & 3;
    out.push(bits & 1 ? `protection key ${k}: PKRU.AD${k}=1 denies data access` : `protection key ${k}: PKRU.WD${k}=1 denies the write`);
  }
  return out;
}

interface StepOut {
  level: number;
  entry: string;
  pte: string;
  decoded: string;
  fields: Record<string, number>;
  reason: string;
  explanation: string;
  written?: string;
}

interface WalkOut {
  mode: Mode;
  addr: string;
  access: string;
  pferr: string;
  fault: boolean;
  errorCode: string;
  errorFlags: string;
  level: number;
  gpa?: string;
  pageSize?: string;
  pteAccess?: string;
  exitQualification?: string;
  why?: string[];
  steps: StepOut[];
  unusedPtes?: string[];
  trace: string[];
}

const REASONS: Record<number, string> = {
  [WalkStep.PDPTR]: 'pdptr',
  [WalkStep.NEXT]: 'next',
  [WalkStep.LEAF]: 'leaf',
  [WalkStep.NOT_PRESENT]: 'not-present',
  [WalkStep.RSVD]: 'reserved',
  [WalkStep.BAD_MT_XWR]: 'ept-misconfig',
  [WalkStep.BAD_GPA]: 'bad-gpa',
  [WalkStep.NESTED_FAULT]: 'nested-fault',
};

function accText(mmu: GuestMmu, acc: number): string {
  if (mmu.pttype === PTTYPE_EPT) return `${acc & 4 ? 'r' : '-'}${acc & 2 ? 'w' : '-'}${acc & 1 ? 'x' : '-'}`;
  return `${acc & 2 ? 'w' : '-'}${acc & 4 ? 'u' : '-'}${acc & 1 ? 'x' : '-'}`;
}

function runWalk(c: WalkConfig, ptes: U64[], missingIsBadGpa = false): WalkOut {
  const acc = accessCode(c);
  const base: WalkOut = {
    mode: c.mode,
    addr: u64hex(c.addr),
    access: `${c.user ? 'user' : 'supervisor'} ${c.access}${c.implicit ? ' (implicit)' : ''}`,
    pferr: '0x' + acc.lo.toString(16),
    fault: false,
    errorCode: '0x0',
    errorFlags: '',
    level: 0,
    steps: [],
    trace: [],
  };
  const mmu = buildMmu(c);
  if (!mmu) {
    const gpa = nonpaging_gva_to_gpa(c.addr.lo, c.addr.hi);
    base.gpa = '0x' + (gpa < 2 ** 53 ? gpa.toString(16) : hex(c.addr.lo, c.addr.hi));
    if (ptes.length) base.unusedPtes = ptes.map(u64hex);
    return base;
  }
  if (mmu.pttype === PTTYPE_32) {
    for (const p of ptes) if (p.hi !== 0) throw new UsageError(`--ptes: ${u64hex(p)} does not fit a 4-byte 2-level entry`);
  }
  const src = new ListGuestPageTables(ptes);
  src.cr3Lo = c.cr3.lo;
  src.cr3Hi = c.cr3.hi;
  src.missingIsBadGpa = missingIsBadGpa;
  const w = new GuestWalker();
  const lines: string[] = [];
  const off = trace.subscribe((e) => lines.push(`${e.name}: ${e.text}`));
  let ok: number;
  try {
    ok = walk_addr_generic(w, { vcpu_id: 0, rflags: c.ac ? 1 << 18 : 0, pkru: c.pkru }, mmu, src, c.addr.lo, c.addr.hi, acc.lo, acc.hi);
  } catch (e) {
    if (e instanceof MissingEntryError) {
      throw new UsageError(`--ptes: the walk needs an entry at level ${e.level} but only ${e.given} were given`);
    }
    throw e;
  } finally {
    off();
  }
  base.trace = lines;
  base.fault = ok === 0;
  base.errorCode = '0x' + w.error_code.toString(16);
  base.errorFlags = walkerPferrFlags(w.error_code);
  for (let i = 0; i < w.nsteps; i++) {
    const level = w.step_level[i]!;
    const lo = w.step_pte[2 * i]!;
    const hi = w.step_pte[2 * i + 1]!;
    const reason = w.step_reason[i]!;
    const pdptr = reason === WalkStep.PDPTR || (c.mode === 'pae' && level === 3);
    const large = isLarge(c.mode, level, lo, c.pse);
    const table = guestPteFields(format(c.mode), level, large, pdptr);
    const dec = decodeFields(lo, hi, table);
    const fields: Record<string, number> = {};
    for (const f of dec) fields[f.name] = f.value;
    let explanation = '';
    const frameGpa = (): string => {
      const frame = mmu.pttype === PTTYPE_32 ? (lo >>> 12) * 4096 : ((hi & 0xfffff) * 0x10_0000 + (lo >>> 12)) * 4096;
      return '0x' + frame.toString(16);
    };
    switch (reason) {
      case WalkStep.PDPTR:
        explanation = `present PDPTR (from the cached PDPTRs; reserved bits are checked at CR3 load, not here): page directory at ${frameGpa()}`;
        break;
      case WalkStep.NEXT:
        explanation = `present, not a leaf: next table at ${frameGpa()}`;
        if (c.mode === '32' && level === 2 && lo & 0x80 && !c.pse) explanation += ' (PS ignored: CR4.PSE=0)';
        break;
      case WalkStep.LEAF:
        explanation = `leaf: maps a ${pageSizeAt(c.mode, level)} page`;
        break;
      case WalkStep.NOT_PRESENT:
        explanation = mmu.pttype === PTTYPE_EPT ? 'not present (R=W=X=0): the walk stops' : 'not present (P=0): the walk stops';
        break;
      case WalkStep.RSVD:
        explanation = `reserved bits set: ${explainReserved(mmu, c.mode, level, lo, hi, c.maxphyaddr, c.pse)}`;
        break;
      case WalkStep.BAD_GPA:
        explanation = `no entry: the table at ${'0x' + (w.step_gpa[i]! - (w.step_gpa[i]! % 4096)).toString(16)} is not backed by a visible memslot, so the walk faults without P`;
        break;
      case WalkStep.BAD_MT_XWR:
        explanation = `EPT misconfiguration: ${explainBadMtXwr(lo)}`;
        break;
      default:
        explanation = REASONS[reason] ?? String(reason);
    }
    const noEntry = reason === WalkStep.BAD_GPA || reason === WalkStep.NESTED_FAULT;
    const step: StepOut = {
      level,
      entry: entryName(c.mode, level, pdptr),
      pte: noEntry ? '-' : '0x' + hex(lo, hi),
      decoded: noEntry ? '' : fieldSummary(dec),
      fields,
      reason: REASONS[reason] ?? String(reason),
      explanation,
    };
    if (!pdptr && w.ad_set[level - 1]) {
      // The list source holds the updated value at the position this level consumed.
      const set = w.ad_set[level - 1]!;
      const newLo = (lo | (set & 1 ? (mmu.pttype === PTTYPE_EPT ? 0x100 : 0x20) : 0) | (set & 2 ? (mmu.pttype === PTTYPE_EPT ? 0x200 : 0x40) : 0)) >>> 0;
      step.written = '0x' + hex(newLo, hi);
      step.explanation += `; the walk set ${set === 3 ? 'A and D' : set & 1 ? 'A' : 'D'}`;
    }
    base.steps.push(step);
  }
  base.level = w.nsteps ? w.step_level[w.nsteps - 1]! : 0;
  if (ok) {
    base.gpa = '0x' + w.gpa(c.addr.lo).toString(16);
    base.pageSize = pageSizeAt(c.mode, w.level);
    base.pteAccess = accText(mmu, w.pte_access);
  } else {
    if (w.result === WalkResult.PERMISSION || w.result === WalkResult.PKEY) {
      base.pteAccess = accText(mmu, w.pte_access);
      base.why = explainPermission(mmu, c, w, w.error_code);
      const last = base.steps[base.steps.length - 1];
      if (last) last.explanation += `; permission_fault: ${base.why.join('; ') || 'denied'}`;
    } else if (w.result === WalkResult.NOT_PRESENT) base.why = ['not present'];
    else if (w.result === WalkResult.BAD_GPA) base.why = ['page table outside guest memory (no memslot)'];
    else if (w.result === WalkResult.RSVD) base.why = [base.steps[base.steps.length - 1]?.explanation ?? 'reserved bits'];
    if (mmu.pttype === PTTYPE_EPT && !(w.error_code & PFERR_RSVD)) base.exitQualification = '0x' + w.exit_qualification.toString(16);
  }
  if (src.used < src.count) base.unusedPtes = ptes.slice(src.used).map(u64hex);
  return base;
}

function renderWalk(o: WalkOut): string {
  const out: string[] = [];
  const verdict = o.fault ? `FAULT, error code ${o.errorCode}${o.errorFlags ? ` (${o.errorFlags})` : ''}` : `ok, gpa ${o.gpa}${o.pageSize ? ` (${o.pageSize} page, access ${o.pteAccess})` : ''}`;
  out.push(`walk ${o.addr} [${o.mode}] ${o.access} (pferr ${o.pferr}): ${verdict}`);
  if (o.steps.length) {
    const rows = o.steps.map((s) => [String(s.level), s.entry, s.pte, s.decoded, s.explanation]);
    const head = ['lvl', 'entry', 'value', 'bits', 'what the walk did'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i < 4 ? r[i]!.length : 0))));
    const fmt = (r: string[]) => r.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c)).join('  ');
    out.push(fmt(head));
    for (const r of rows) out.push(fmt(r));
    for (const s of o.steps) if (s.written) out.push(`  ${s.entry} becomes ${s.written}`);
  }
  if (o.why && o.why.length) out.push(`why: ${o.why.join('; ')}`);
  if (o.exitQualification !== undefined) out.push(`EPT violation exit qualification: ${o.exitQualification}`);
  if (o.unusedPtes) out.push(`unused entries: ${o.unusedPtes.join(',')}`);
  if (o.trace.length) {
    out.push('trace:');
    for (const l of o.trace) out.push(`  ${l}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// --from-trace

const EVENT_RE =
  /(?:^|[\s:])(?:kvmmmu:)?(kvm_mmu_pagetable_walk|kvm_mmu_paging_element|kvm_mmu_walker_error|kvm_mmu_set_accessed_bit|kvm_mmu_set_dirty_bit):\s*(.*)$/;
// Raw trace and trace-cmd print COMM-PID [CPU]; perf script prints COMM PID [CPU].
const PID_RE = /[-\s](\d+)\s+\[(\d+)\]/;

interface TraceEventLine {
  line: number;
  name: string;
  payload: string;
  pid: string;
}

const PAYLOAD_RE: Record<string, RegExp> = {
  kvm_mmu_pagetable_walk: /^addr ([0-9a-f]+) pferr ([0-9a-f]+)\b/,
  kvm_mmu_paging_element: /^pte ([0-9a-f]+) level (\d+)\b/,
  kvm_mmu_walker_error: /^pferr ([0-9a-f]+)\b/,
  kvm_mmu_set_accessed_bit: /^gpa ([0-9a-f]+)\b/,
  kvm_mmu_set_dirty_bit: /^gpa ([0-9a-f]+)\b/,
};

export function parseWalkTrace(text: string): TraceEventLine[] {
  const out: TraceEventLine[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const m = EVENT_RE.exec(lines[i]!);
    if (!m) continue;
    const name = m[1]!;
    const pid = PID_RE.exec(lines[i]!.slice(0, m.index + 1))?.[1] ?? '';
    let payload = m[2]!.trim();
    // Mail-wrapped captures continue the payload on the next line.
    while (!PAYLOAD_RE[name]!.test(payload) && i + 1 < lines.length && !EVENT_RE.test(lines[i + 1]!)) {
      payload = `${payload} ${lines[++i]!.trim()}`.trim();
    }
    out.push({ line: i + 1, name, payload, pid });
  }
  return out;
}

interface TraceWalk {
  addr: U64;
  pferr: number;
  ptes: Array<{ v: U64; level: number }>;
  error?: number;
  accessed: string[];
  dirty: string[];
  line: number;
}

function groupWalks(events: TraceEventLine[]): TraceWalk[] {
  const walks: TraceWalk[] = [];
  const current = new Map<string, TraceWalk>();
  for (const e of events) {
    const m = PAYLOAD_RE[e.name]!.exec(e.payload);
    if (!m) throw new UsageError(`line ${e.line}: cannot read ${e.name} payload '${e.payload}'`);
    if (e.name === 'kvm_mmu_pagetable_walk') {
      const w: TraceWalk = { addr: parseU64(m[1]!)!, pferr: parseInt(m[2]!, 16) >>> 0, ptes: [], accessed: [], dirty: [], line: e.line };
      walks.push(w);
      current.set(e.pid, w);
      continue;
    }
    const w = current.get(e.pid);
    if (!w) continue; // an element whose walk started before the capture
    if (e.name === 'kvm_mmu_paging_element') {
      const v = parseU64(m[1]!);
      if (!v) throw new UsageError(`line ${e.line}: bad pte '${m[1]}'`);
      w.ptes.push({ v, level: parseInt(m[2]!, 10) });
    } else if (e.name === 'kvm_mmu_walker_error') {
      w.error = parseInt(m[1]!, 16) >>> 0;
      current.delete(e.pid);
    } else if (e.name === 'kvm_mmu_set_accessed_bit') w.accessed.push('0x' + m[1]!);
    else w.dirty.push('0x' + m[1]!);
  }
  return walks;
}

function inferMode(w: TraceWalk, hint: Mode | undefined): Mode {
  if (hint) return hint;
  const first = w.ptes[0];
  if (!first) return 'long4';
  if (first.level === 5) return 'long5';
  if (first.level === 4) return 'long4';
  if (first.level === 3) return 'pae';
  return w.ptes.every((p) => p.v.hi === 0) ? '32' : 'pae';
}

interface TraceWalkOut {
  line: number;
  mode: Mode;
  addr: string;
  pferr: string;
  pferrFlags: string;
  traceFault: boolean;
  traceErrorCode?: string;
  explanation: WalkOut;
  modelAgrees: boolean;
  accessedGpas: string[];
  dirtyGpas: string[];
}

function explainTraceWalk(w: TraceWalk, base: WalkConfig, hint: Mode | undefined): TraceWalkOut {
  const mode = inferMode(w, hint);
  // A retried walk repeats its elements: keep the last attempt (it starts at the top level again).
  let ptes = w.ptes;
  for (let i = ptes.length - 1; i > 0; i--) {
    if (ptes[i]!.level > ptes[i - 1]!.level) {
      ptes = ptes.slice(i);
      break;
    }
  }
  const access = w.pferr & PFERR_F ? 'fetch' : w.pferr & PFERR_W ? 'write' : 'read';
  const ept = mode === 'ept4' || mode === 'ept5';
  const c: WalkConfig = { ...base, mode, addr: w.addr, access, user: !ept && (w.pferr & PFERR_U) !== 0, pferr: { lo: w.pferr, hi: 0 } };
  // Fewer elements than the walk needs means the real walk could not read the next table (no
  // memslot there), which the model reproduces as a fault without P.
  const explanation = runWalk(c, ptes.map((p) => p.v), true);
  const traceFault = w.error !== undefined;
  const agrees = explanation.fault === traceFault && (!traceFault || explanation.errorCode === '0x' + w.error!.toString(16));
  if (traceFault && w.error! & PFERR_RSVD && !explanation.why) explanation.why = ['reserved bit set'];
  return {
    line: w.line,
    mode,
    addr: u64hex(w.addr),
    pferr: '0x' + w.pferr.toString(16),
    pferrFlags: walkerPferrFlags(w.pferr),
    traceFault,
    ...(traceFault ? { traceErrorCode: '0x' + w.error!.toString(16) } : {}),
    explanation,
    modelAgrees: agrees,
    accessedGpas: w.accessed,
    dirtyGpas: w.dirty,
  };
}

function renderTraceWalk(t: TraceWalkOut): string {
  const out: string[] = [];
  out.push(`== walk at line ${t.line}: addr ${t.addr} pferr ${t.pferr} (${t.pferrFlags || 'read'}), ${t.mode}`);
  out.push(t.traceFault ? `capture: walker error ${t.traceErrorCode} (${walkerPferrFlags(parseInt(t.traceErrorCode!, 16))})` : 'capture: no walker error (translation found)');
  const e = t.explanation;
  const body = renderWalk({ ...e, trace: [] }).split('\n').slice(1);
  out.push(...body);
  if (t.accessedGpas.length) out.push(`A set at: ${t.accessedGpas.join(' ')}`);
  if (t.dirtyGpas.length) out.push(`D set at: ${t.dirtyGpas.join(' ')}`);
  out.push(
    t.modelAgrees
      ? `model: agrees (${e.fault ? `error code ${e.errorCode}` : `gpa ${e.gpa}`})`
      : `model: DISAGREES: it gives ${e.fault ? `error code ${e.errorCode}` : `gpa ${e.gpa}`}; check --cr0-wp/--smep/--smap/--efer-nx/--maxphyaddr`,
  );
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------

const OPTIONS = {
  mode: { type: 'string' },
  addr: { type: 'string' },
  access: { type: 'string' },
  user: { type: 'boolean' },
  implicit: { type: 'boolean' },
  'cr0-wp': { type: 'string' },
  'efer-nx': { type: 'string' },
  smep: { type: 'string' },
  smap: { type: 'string' },
  ac: { type: 'string' },
  pke: { type: 'string' },
  pkru: { type: 'string' },
  gbpages: { type: 'string' },
  pse: { type: 'string' },
  pse36: { type: 'string' },
  amd: { type: 'string' },
  maxphyaddr: { type: 'string' },
  execonly: { type: 'string' },
  'ept-ad': { type: 'string' },
  ptes: { type: 'string' },
  cr3: { type: 'string' },
  pferr: { type: 'string' },
  'from-trace': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function config(v: Record<string, string | boolean | undefined>, needWalk: boolean): WalkConfig & { modeGiven: boolean } {
  const s = (k: string) => v[k] as string | undefined;
  const modeText = s('mode');
  if (modeText !== undefined && !(MODES as readonly string[]).includes(modeText)) {
    throw new UsageError(`--mode must be one of ${MODES.join('|')}, not '${modeText}'`);
  }
  if (needWalk && modeText === undefined) throw new UsageError('--mode is required');
  const mode = (modeText ?? 'long4') as Mode;
  let addr: U64 = { lo: 0, hi: 0 };
  if (needWalk) {
    const a = s('addr');
    if (a === undefined) throw new UsageError('--addr is required');
    addr = hexArg('addr', a);
  }
  let pferr: U64 | undefined;
  if (s('pferr') !== undefined) {
    if (s('access') !== undefined || v.user === true) throw new UsageError('--pferr gives the access itself; drop --access/--user');
    pferr = hexArg('pferr', s('pferr')!);
    // As FNAME(page_fault) does before walking: RSVD describes the SPTE, not the guest access.
    pferr = { lo: pferr.lo & ~PFERR_RSVD, hi: pferr.hi };
  }
  const accessText = s('access') ?? (needWalk && !pferr ? undefined : pferr ? (pferr.lo & PFERR_F ? 'fetch' : pferr.lo & PFERR_W ? 'write' : 'read') : 'read');
  if (accessText === undefined) throw new UsageError('--access is required (or --pferr)');
  if (accessText !== 'read' && accessText !== 'write' && accessText !== 'fetch') {
    throw new UsageError(`--access must be read, write or fetch, not '${accessText}'`);
  }
  let maxphyaddr = 52;
  if (s('maxphyaddr') !== undefined) {
    const t = s('maxphyaddr')!;
    if (!/^\d+$/.test(t) || +t < 32 || +t > 52) throw new UsageError(`--maxphyaddr must be a number from 32 to 52, not '${t}'`);
    maxphyaddr = +t;
  }
  let pkru = 0;
  if (s('pkru') !== undefined) {
    const p = hexArg('pkru', s('pkru')!);
    if (p.hi !== 0) throw new UsageError('--pkru is a 32-bit register');
    pkru = p.lo;
  }
  const user = v.user === true || (pferr !== undefined && (pferr.lo & PFERR_U) !== 0 && !(modeText ?? '').startsWith('ept'));
  const implicit = v.implicit === true;
  if (user && implicit) throw new UsageError('--implicit accesses are supervisor accesses; drop --user');
  return {
    mode,
    modeGiven: modeText !== undefined,
    addr,
    access: accessText,
    user,
    implicit,
    cr0wp: bool01('cr0-wp', s('cr0-wp'), true),
    eferNx: bool01('efer-nx', s('efer-nx'), true),
    smep: bool01('smep', s('smep'), false),
    smap: bool01('smap', s('smap'), false),
    ac: bool01('ac', s('ac'), false),
    pke: bool01('pke', s('pke'), false),
    pkru,
    gbpages: bool01('gbpages', s('gbpages'), true),
    pse: bool01('pse', s('pse'), true),
    pse36: bool01('pse36', s('pse36'), true),
    amd: bool01('amd', s('amd'), false),
    maxphyaddr,
    execonly: bool01('execonly', s('execonly'), true),
    eptAd: bool01('ept-ad', s('ept-ad'), true),
    cr3: s('cr3') !== undefined ? hexArg('cr3', s('cr3')!) : { lo: 0, hi: 0 },
    ...(pferr ? { pferr } : {}),
  };
}

function parsePtes(text: string | undefined): U64[] {
  if (text === undefined || text.trim() === '') return [];
  return text.split(',').map((t) => {
    const v = parseU64(t.trim());
    if (!v) throw new UsageError(`--ptes: '${t.trim()}' is not a 64-bit hex value`);
    return v;
  });
}

export async function run(argv: string[]): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message.split('\n')[0]! : String(e));
    }
    const v = parsed.values as Record<string, string | boolean | undefined>;
    if (v.help) {
      process.stdout.write(HELP + '\n');
      return 0;
    }
    const json = v.json === true;
    const fromTrace = v['from-trace'] as string | undefined;
    if (fromTrace !== undefined) {
      if (v.ptes !== undefined || v.addr !== undefined) throw new UsageError('--from-trace takes the walk from the capture; drop --ptes/--addr');
      const c = config(v, false);
      let text: string;
      try {
        text = readFileSync(fromTrace, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read ${fromTrace}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const walks = groupWalks(parseWalkTrace(text));
      if (walks.length === 0) throw new UsageError(`${fromTrace}: no kvm_mmu_pagetable_walk events found`);
      const outs = walks.map((w) => explainTraceWalk(w, c, c.modeGiven ? c.mode : undefined));
      if (json) process.stdout.write(JSON.stringify({ walks: outs }, null, 2) + '\n');
      else process.stdout.write(outs.map(renderTraceWalk).join('\n\n') + '\n');
      return 0;
    }
    const c = config(v, true);
    if (c.mode !== 'none' && v.ptes === undefined) throw new UsageError('--ptes is required (the entries the walk meets, top level first)');
    const o = runWalk(c, parsePtes(v.ptes as string | undefined));
    process.stdout.write((json ? JSON.stringify(o, null, 2) : renderWalk(o)) + '\n');
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`kvm-mmu walk: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

// Exposed for tests.
export const __test = { runWalk, config, groupWalks, explainTraceWalk, __is_bad_mt_xwr };
