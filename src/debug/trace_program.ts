/**
 * A captured trace as a debug program: one step per parsed (modelled) event, located at the event's line
 * in the capture, so line breakpoints in the capture file work. Executing a step feeds the event to a
 * `Rebuilder`, so the MMU state is rebuilt incrementally; `reset()` starts a fresh one (re-execution is
 * deterministic: the events are stored, not re-parsed).
 *
 * Each event is also a probe hit named after its tracepoint (`kvm_mmu_set_spte`, `kvm_page_fault`, ...)
 * with the event's fields as arguments, so function breakpoints with conditions (`gfn == 0x1a2`) and data
 * breakpoints on an SPTE (`spte:AS:GFN:LEVEL`, matched on `as_id`/`gfn`/`level`/`old_spte`/`new_spte`)
 * work as in a scenario session. The `<stack trace>` frames recorded with an event are its call stack.
 *
 * Memory: the capture is read once, in 1 MiB chunks; events are kept as typed-array columns (field
 * halves, line, byte offset, task), frames as interned strings. The text itself is not kept: labels and
 * Events-view lines are read back from the file by byte offset when asked for.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { defineProbe, probes, type KvmFrame } from '../engine/probes';
import { trace } from '../engine/trace_sink';
import { EVENTS, type EventSchema } from '../engine/tracepoints/index';
import { eptMasks, nptMasks } from '../engine/x86/spte';
import { roleExpectFields, spteExpectFields } from '../scenario/bind/x86_fields';
import { ParsedEvent } from '../trace/event';
import { DEFAULT_KERNEL, type KernelVersion } from '../trace/kernel_version';
import { VmEvidence } from '../trace/model_check';
import { TraceParser } from '../trace/parser';
import { Rebuilder, type RebuildSummary, type RebuiltSpte } from '../trace/rebuild';
import { setSpteFormat } from './decoders';
import type { DebugProgram, EventsOptions, ProgramEvent, SourceLocation, StepResult } from './program';
import type { RebuiltMmu } from './worker/trace_views';

// ---------------------------------------------------------------------------------------------------
// Probes named after the tracepoints. Some names are also kernel functions the engine already defines
// (fast_page_fault, kvm_mmu_prepare_zap_page, kvm_mmu_zap_all_fast): those keep the engine's definition,
// and a breakpoint on them stops at the event in a trace session.

const TRACE_HEADER: Record<string, string> = {
  kvmmmu: 'arch/x86/kvm/mmu/mmutrace.h',
  kvm: 'arch/x86/kvm/trace.h',
};
const GENERIC_KVM_EVENTS = new Set(['kvm_age_hva', 'kvm_unmap_hva_range', 'kvm_try_async_get_page', 'kvm_async_pf_repeated_fault']);

for (const e of EVENTS) {
  if (probes.info(e.name)) continue;
  const file = GENERIC_KVM_EVENTS.has(e.name) ? 'include/trace/events/kvm.h' : TRACE_HEADER[e.system] ?? 'arch/x86/kvm/trace.h';
  const args = e.fields.map((f) => f.name);
  if (e.name === 'kvm_mmu_set_spte') args.push('as_id', 'old_spte', 'new_spte');
  defineProbe(e.name, 'trace', file, `tracepoint ${e.system}:${e.name} (a replayed event)`, args);
}

const SCHEMA_INDEX = new Map<EventSchema, number>(EVENTS.map((e, i) => [e, i]));
const SET_SPTE = EVENTS.findIndex((e) => e.name === 'kvm_mmu_set_spte');
const PAGE_FAULT = EVENTS.findIndex((e) => e.name === 'kvm_page_fault');

// ---------------------------------------------------------------------------------------------------
// Growable typed-array columns

type Typed = Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array;

class Column<T extends Typed> {
  a: T;
  n = 0;
  constructor(private readonly make: (n: number) => T) {
    this.a = make(1024);
  }
  /** Room for k more values; callers then write `a[n++]` at their own (monomorphic) site. */
  reserve(k: number): T {
    if (this.n + k > this.a.length) {
      const b = this.make(Math.max(this.a.length * 2, this.n + k));
      b.set(this.a as never);
      this.a = b;
    }
    return this.a;
  }
  push(v: number): void {
    this.reserve(1)[this.n++] = v;
  }
}

const u8 = () => new Column((n) => new Uint8Array(n));
const u16 = () => new Column((n) => new Uint16Array(n));
const u32 = () => new Column((n) => new Uint32Array(n));
const i32 = () => new Column((n) => new Int32Array(n));
const f64 = () => new Column((n) => new Float64Array(n));

/** An event rebuilt from the columns; its task fields come from the columns, not from a text prefix. */
class StoredEvent extends ParsedEvent {
  xpid = -1;
  xcpu = -1;
  xts = NaN;
  override get pid(): number {
    return this.xpid;
  }
  override get cpu(): number {
    return this.xcpu;
  }
  override get ts(): number {
    return this.xts;
  }
  override get comm(): string {
    return '';
  }
}

export interface TraceProgramOptions {
  kernel?: KernelVersion;
  /**
   * Called while the capture is read, after each chunk: bytes read so far and the file size. It may throw
   * (a `TraceLoadCancelled`) to abandon the load; the capture file is closed and the constructor rethrows.
   */
  onProgress?: (bytesRead: number, total: number) => void;
}

/** Thrown by an `onProgress` that abandons the load (the user cancelled it). */
export class TraceLoadCancelled extends Error {
  constructor(readonly bytesRead: number, readonly total: number) {
    super(`trace load cancelled after ${Math.round(bytesRead / 1e6)} MB`);
    this.name = 'TraceLoadCancelled';
  }
}

/** Window of recent line-start byte offsets kept while reading (events and stacks close within it). */
const LINE_WINDOW = 1 << 16;

/** One SPTE of the rebuilt state, shown in the Variables view (expands into its bit fields). */
class SpteNode {
  constructor(
    readonly spte: string,
    readonly kind: string,
    readonly level: number,
    readonly gfn: string,
    readonly line: number,
  ) {}
  toString(): string {
    return `0x${this.spte} ${this.kind} (line ${this.line})`;
  }
}

export class TraceProgram implements DebugProgram {
  readonly kind = 'trace' as const;
  readonly file: string;
  private readonly kernel: KernelVersion;
  // event columns
  private readonly schema = u8();
  private readonly line = u32();
  private readonly offset = f64();
  /** Lines after the first that a mail-wrapped event took (0 for most). */
  private readonly span = u16();
  private readonly has = u16();
  private readonly flags = u8();
  private readonly roleMask = u32();
  private readonly pid = i32();
  private readonly fstart = u32();
  private readonly halves = u32();
  /** Per event: first frame (index into frameIds, -1 without a stack), frame count, line of the first frame. */
  private readonly stackFirst = i32();
  private readonly stackCount = u16();
  private readonly stackLine = u32();
  private readonly frameIds = i32();
  private readonly frameNames: string[] = [];
  private readonly frameIndex = new Map<string, number>();
  private readonly evidence = new VmEvidence();
  private readonly format: 'ept' | 'npt';
  readonly parseStats: { lines: number; unrecognized: number; bytes: number };

  // replay state
  private rebuilder!: Rebuilder;
  private readonly ev = new StoredEvent();
  /** For inspection while paused inside an event (the Events view, the Event scope). */
  private readonly peek = new StoredEvent();
  private cursor = 0;
  private warnings: Array<{ line: number; message: string }> = [];
  private faultsByGfn = new Map<number, number>();
  private cached: { at: number; summary: RebuildSummary } | undefined;
  private textCache = new Map<number, string>();

  constructor(file: string, opts: TraceProgramOptions = {}) {
    this.file = resolve(file);
    this.kernel = opts.kernel ?? DEFAULT_KERNEL;
    this.parseStats = this.load(opts.onProgress);
    this.format = this.evidence.format;
    setSpteFormat(this.format);
    this.reset();
  }

  // ------------------------------------------------------------------------------------- loading

  private load(onProgress?: (bytes: number, total: number) => void): { lines: number; unrecognized: number; bytes: number } {
    const fd = openSync(this.file, 'r');
    const win = new Float64Array(LINE_WINDOW * 2);
    let winBase = 1;
    let winLen = 0;
    const offsetOf = (line: number) => (line >= winBase && line < winBase + winLen ? win[line - winBase]! : -1);
    let ending = false;
    const parser: TraceParser = new TraceParser({
      kernel: this.kernel,
      maxDetails: 20,
      onEvent: (ev) => this.store(ev, offsetOf(ev.line)),
      onStack: (s) => {
        if (s.eventSeq < 0 || s.eventSeq >= this.line.n || s.frames.length === 0) return;
        // The block's frames are the lines just before the one that closed it (or the last lines).
        const lastFrameLine = ending ? parser.lines : parser.lines - 1;
        const first = this.frameIds.n;
        for (const f of s.frames) {
          let id = this.frameIndex.get(f);
          if (id === undefined) {
            id = this.frameNames.length;
            this.frameNames.push(f);
            this.frameIndex.set(f, id);
          }
          this.frameIds.push(id);
        }
        this.stackFirst.a[s.eventSeq] = first;
        this.stackCount.a[s.eventSeq] = Math.min(s.frames.length, 0xffff);
        this.stackLine.a[s.eventSeq] = lastFrameLine - s.frames.length + 1;
      },
    });
    const buf = Buffer.allocUnsafe(1 << 20);
    const decoder = new StringDecoder('utf8');
    let pos = 0;
    let lastByte = 10;
    let size = 0;
    try {
      size = fstatSync(fd).size;
    } catch {
      size = 0;
    }
    // line 1 starts at byte 0
    win[0] = 0;
    winLen = 1;
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n <= 0) break;
        const chunk = buf.subarray(0, n);
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) {
          if (winLen === win.length) {
            win.copyWithin(0, winLen - LINE_WINDOW, winLen);
            winBase += winLen - LINE_WINDOW;
            winLen = LINE_WINDOW;
          }
          win[winLen++] = pos + i + 1;
        }
        lastByte = chunk[n - 1]!;
        pos += n;
        parser.push(decoder.write(chunk));
        onProgress?.(pos, size);
      }
    } finally {
      closeSync(fd);
    }
    const tail = decoder.end();
    if (tail) parser.push(tail);
    // A last line without a newline is completed here, so that end() only closes what is open.
    if (lastByte !== 10) parser.push('\n');
    ending = true;
    parser.end();
    return { lines: parser.lines, unrecognized: parser.unrecognizedCount, bytes: pos };
  }

  private store(ev: ParsedEvent, offset: number): void {
    this.evidence.onEvent(ev);
    // one write site per column keeps each monomorphic (this runs once per event of the capture)
    const d = ev.derived;
    const i = this.line.n;
    this.schema.reserve(1)[i] = SCHEMA_INDEX.get(ev.schema)!;
    this.line.reserve(1)[i] = ev.line;
    this.offset.reserve(1)[i] = offset;
    this.span.reserve(1)[i] = Math.min(ev.endLine - ev.line, 0xffff);
    this.has.reserve(1)[i] = ev.has;
    this.flags.reserve(1)[i] = (ev.variant & 1) | ((d.valid + 1) << 1) | ((d.spurious + 1) << 3) | ((d.fixed + 1) << 5);
    this.roleMask.reserve(1)[i] = ev.roleMask;
    this.pid.reserve(1)[i] = ev.pid;
    this.stackFirst.reserve(1)[i] = -1;
    this.stackCount.reserve(1)[i] = 0;
    this.stackLine.reserve(1)[i] = 0;
    const h = this.halves;
    this.fstart.reserve(1)[i] = h.n;
    this.span.n = i + 1;
    this.schema.n = this.line.n = this.offset.n = this.has.n = this.flags.n = this.roleMask.n = this.pid.n = this.fstart.n = i + 1;
    this.stackFirst.n = this.stackCount.n = this.stackLine.n = i + 1;
    const nf = ev.schema.fields.length;
    const a = h.reserve(2 * nf);
    let k = h.n;
    for (let f = 0; f < nf; f++) {
      a[k++] = ev.lo[f]!;
      a[k++] = ev.hi[f]!;
    }
    h.n = k;
  }

  /** Refill a reused event object (by default the one execution uses) with stored event i. */
  private fill(i: number, ev: StoredEvent = this.ev): StoredEvent {
    const schema = EVENTS[this.schema.a[i]!]!;
    ev.reset(schema);
    ev.line = this.line.a[i]!;
    ev.seq = i;
    const fl = this.flags.a[i]!;
    ev.variant = fl & 1;
    ev.derived.valid = ((fl >> 1) & 3) - 1;
    ev.derived.spurious = ((fl >> 3) & 3) - 1;
    ev.derived.fixed = ((fl >> 5) & 3) - 1;
    ev.roleMask = this.roleMask.a[i]!;
    ev.xpid = this.pid.a[i]!;
    const has = this.has.a[i]!;
    const base = this.fstart.a[i]!;
    for (let f = 0; f < schema.fields.length; f++) {
      ev.lo[f] = this.halves.a[base + 2 * f]!;
      ev.hi[f] = this.halves.a[base + 2 * f + 1]!;
    }
    ev.has = has;
    return ev;
  }

  // --------------------------------------------------------------------------------- file text

  /**
   * The capture text of event i (trimmed), read back from the file. A mail-wrapped event is read over all
   * its lines and joined by the parser itself, so the label is the whole event, as parsed.
   */
  private lineText(i: number): string {
    const hit = this.textCache.get(i);
    if (hit !== undefined) return hit;
    const off = this.offset.a[i]!;
    const span = this.span.a[i]!;
    let text = '';
    if (off >= 0) {
      let fd = -1;
      try {
        fd = openSync(this.file, 'r');
        const buf = Buffer.allocUnsafe(span === 0 ? 4096 : 16384);
        const n = readSync(fd, buf, 0, buf.length, off);
        let end = -1;
        for (let k = 0; k <= span; k++) {
          end = buf.subarray(0, n).indexOf(10, end + 1);
          if (end < 0) break;
        }
        if (end < 0) end = n;
        text = buf.toString('utf8', 0, end);
        if (span > 0) text = joinedEventText(text, this.kernel) ?? text.slice(0, Math.max(0, text.indexOf('\n')));
        text = text.trim();
      } catch {
        text = '';
      } finally {
        if (fd >= 0) closeSync(fd);
      }
    }
    if (this.textCache.size > 4096) this.textCache.clear();
    this.textCache.set(i, text);
    return text;
  }

  /** `NAME: PAYLOAD` of event i as the capture shows it (the line prefix dropped). */
  private eventText(i: number): string {
    const name = EVENTS[this.schema.a[i]!]!.name;
    const t = this.lineText(i);
    const at = t.indexOf(name + ':');
    if (at < 0) return t || name;
    return `${name}: ${t.slice(at + name.length + 1).trim()}`;
  }

  private payload(i: number): string {
    const t = this.eventText(i);
    const c = t.indexOf(': ');
    return c >= 0 ? t.slice(c + 2) : t;
  }

  // ------------------------------------------------------------------------------- DebugProgram

  length(): number {
    return this.line.n;
  }

  locationOf(step: number): SourceLocation {
    if (step >= this.line.n) return { file: this.file, line: this.parseStats.lines };
    const line = this.line.a[step]!;
    const span = this.span.a[step]!;
    return span > 0 ? { file: this.file, line, column: 1, endLine: line + span } : { file: this.file, line, column: 1 };
  }

  labelOf(step: number): string {
    return step < this.line.n ? this.eventText(step) : '<end>';
  }

  nameOf(step: number): string {
    return EVENTS[this.schema.a[step]!]!.name;
  }

  execute(step: number): StepResult {
    if (step !== this.cursor) throw new Error(`internal: trace at event ${this.cursor}, asked for ${step}`);
    const ev = this.fill(step);
    const idx = this.schema.a[step]!;
    const name = ev.schema.name;
    let before: { lo: number; hi: number } | undefined;
    if (idx === SET_SPTE && probes.armed) {
      const gfn = Number(ev.get('gfn') ?? 0);
      before = this.rebuilder.spteAt(0, gfn, Number(ev.get('level') ?? 1));
    }
    const warned = this.warnings.length;
    this.rebuilder.onEvent(ev);
    if (idx === PAGE_FAULT) {
      const gfn = Math.floor(Number(ev.get('fault_address') ?? 0) / 4096);
      this.faultsByGfn.set(gfn, (this.faultsByGfn.get(gfn) ?? 0) + 1);
    }
    if (trace.enabled || probes.armed) {
      const fields = fieldsOf(ev);
      const vcpu = typeof fields['vcpu_id'] === 'number' ? fields['vcpu_id'] : -1;
      if (trace.enabled) trace.emitLazy(ev.schema.system, name, vcpu, fields, () => this.payload(step));
      if (probes.armed) {
        const args: Record<string, unknown> = { ...fields };
        if (idx === SET_SPTE) {
          args['as_id'] = 0;
          // the event has no old value: the rebuilt one, or 0 (non-present) when nothing was rebuilt there
          args['old_spte'] = before ? '0x' + ((BigInt(before.hi) << 32n) | BigInt(before.lo)).toString(16) : 0;
          args['new_spte'] = fields['spte'];
        }
        args['line'] = this.line.a[step]!;
        probes.hit(name, args);
      }
    }
    this.cursor = step + 1;
    if (this.warnings.length === warned) return {};
    return {
      output: this.warnings.slice(warned).map((w) => ({ category: 'console' as const, text: `line ${w.line}: ${w.message}`, location: { file: this.file, line: w.line } })),
    };
  }

  reset(): void {
    this.warnings = [];
    this.rebuilder = new Rebuilder((line, message) => {
      if (this.warnings.length < 10_000) this.warnings.push({ line, message: typeof message === 'string' ? message : message() });
    });
    this.cursor = 0;
    this.faultsByGfn = new Map();
    this.cached = undefined;
    trace.reset();
  }

  checkpointRoots(): { roots: object[]; atoms: (o: object) => boolean } {
    // The parsed capture (columns, frame names, evidence) never changes; `ev` is refilled by every step;
    // the payload text cache holds what a step's text always is.
    const fixed = new Set<object>([this.ev, this.peek, this.frameNames, this.frameIndex, this.evidence, this.textCache, this.parseStats, this.kernel as object]);
    return { roots: [this], atoms: (o) => o instanceof Column || fixed.has(o) };
  }

  /** The `<stack trace>` of the current event (the one about to run, or running), innermost first. */
  frames(): KvmFrame[] {
    const i = this.cursor;
    if (i >= this.line.n || this.stackFirst.a[i]! < 0) return [];
    const first = this.stackFirst.a[i]!;
    const line = this.stackLine.a[i]!;
    const out: KvmFrame[] = [];
    for (let k = 0; k < this.stackCount.a[i]!; k++) {
      const text = this.frameNames[this.frameIds.a[first + k]!]!;
      out.push({ name: frameFunction(text), file: this.file, line: line + k, column: 1 });
    }
    return out;
  }

  private summaryNow(): RebuildSummary {
    if (this.cached?.at !== this.cursor) this.cached = { at: this.cursor, summary: this.rebuilder.summary(1_000_000, 100_000) };
    return this.cached.summary;
  }

  rebuilt(): RebuiltMmu {
    return { format: this.format, levels: this.evidence.levels, description: this.evidence.describe(), events: this.line.n, replayed: this.cursor, summary: this.summaryNow() };
  }

  state(): Record<string, unknown> {
    const self = this;
    const st: Record<string, unknown> = {};
    const lazy = (name: string, get: () => unknown) => Object.defineProperty(st, name, { enumerable: true, get });
    lazy('Event', () => self.currentEvent());
    lazy('Replay', () => ({
      file: self.file,
      events: self.line.n,
      replayed: self.cursor,
      lines: self.parseStats.lines,
      unrecognizedLines: self.parseStats.unrecognized,
      kernel: `${self.kernel.major}.${self.kernel.minor}`,
      vm: self.evidence.describe(),
    }));
    lazy('SPTEs', () => self.spteTree());
    lazy('Shadow pages', () => {
      const s = self.summaryNow();
      return { total: s.shadowPagesTotal, counts: s.shadowPageCounts, pages: s.shadowPages };
    });
    lazy('Faults', () => {
      const s = self.summaryNow();
      const byGfn = new Map<string, number>();
      for (const [g, n] of [...self.faultsByGfn].sort((a, b) => a[0] - b[0])) byGfn.set('0x' + g.toString(16), n);
      return { total: s.faults.total, byVcpu: s.faults.byVcpu, byGfn, fastPageFaults: s.fastPageFaults };
    });
    lazy('Findings', () => self.summaryNow().detectors);
    lazy('Warnings', () => self.warnings.slice(0, 1000));
    return st;
  }

  private currentEvent(): Record<string, unknown> | undefined {
    const i = this.cursor;
    if (i >= this.line.n) return undefined;
    const peek = this.fill(i, this.peek);
    const rec = peek.toRecord();
    rec.fields = fieldsOf(peek);
    const out: Record<string, unknown> = { index: i, name: rec.name, line: rec.line, text: this.eventText(i), ...rec.fields };
    if (rec.pid >= 0) out['pid'] = rec.pid;
    if (rec.cpu >= 0) out['cpu'] = rec.cpu;
    const st = this.frames();
    if (st.length) out['stack'] = st.map((f, k) => `${this.frameNames[this.frameIds.a[this.stackFirst.a[i]! + k]!]} (line ${f.line})`);
    return out;
  }

  /** Address space -> root -> top-level entries -> child tables, built when expanded. */
  private spteTree(): Record<string, unknown> {
    const s = this.summaryNow();
    const byRoot = new Map<number, RebuiltSpte[]>();
    for (const e of s.sptes) {
      let l = byRoot.get(e.root);
      if (!l) byRoot.set(e.root, (l = []));
      l.push(e);
    }
    const out: Record<string, unknown> = { total: s.sptesTotal };
    for (const r of s.roots) {
      const entries = byRoot.get(r.id) ?? [];
      const label = `as ${r.asId} root ${r.id}${r.invalid ? ' (invalid)' : ''}`;
      const node: Record<string, unknown> = { as_id: r.asId, invalid: r.invalid, sptes: r.sptes, firstLine: r.line };
      if (r.sp) node['sp'] = r.sp.text;
      Object.defineProperty(node, 'entries', { enumerable: true, get: () => tableOf(entries, undefined) });
      out[label] = node;
    }
    return out;
  }

  query(subject: string, sel: Record<string, string | number | boolean>): Array<Record<string, unknown>> | undefined {
    const masks = this.format === 'ept' ? eptMasks({ maxphyaddr: 46 }) : nptMasks({ maxphyaddr: 46 });
    const hexed = (r: Record<string, unknown>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? '0x' + v.toString(16) : v]));
    const s = this.summaryNow();
    switch (subject) {
      case 'spte': {
        const asId = sel['as_id'] !== undefined ? Number(sel['as_id']) : 0;
        const gfn = sel['gfn'] !== undefined ? Number(sel['gfn']) : sel['gpa'] !== undefined ? Math.floor(Number(sel['gpa']) / 4096) : NaN;
        if (!Number.isFinite(gfn)) return [];
        if (sel['at_level'] !== undefined) {
          const v = this.rebuilder.spteAt(asId, gfn, Number(sel['at_level']));
          return v ? [hexed(spteExpectFields(masks, v.lo, v.hi, Number(sel['at_level'])))] : [];
        }
        // The last entry a walk reaches among those rebuilt: a leaf, or the deepest table entry seen.
        const top = Math.max(4, ...s.roots.map((r) => (r.sp ? Number.parseInt(r.sp.role, 16) & 0xf : 0)));
        let last: Record<string, unknown> | undefined;
        for (let level = top; level >= 1; level--) {
          const v = this.rebuilder.spteAt(asId, gfn, level);
          if (!v) continue;
          last = hexed(spteExpectFields(masks, v.lo, v.hi, level));
          if (v.kind !== 'nonleaf') break;
        }
        return last ? [last] : [];
      }
      case 'roots':
      case 'root': {
        const rows = s.roots
          .filter((r) => sel['as_id'] === undefined || r.asId === Number(sel['as_id']))
          .filter((r) => subject === 'roots' || !r.invalid)
          .map((r) => {
            const row: Record<string, unknown> = { root: r.id, as_id: r.asId, invalid: r.invalid ? 1 : 0, sptes: r.sptes, line: r.line };
            return r.sp ? roleExpectFields(Number.parseInt(r.sp.role, 16), { ...row, gfn: Number.parseInt(r.sp.gfn, 16) }) : row;
          });
        return subject === 'root' ? rows.slice(-1) : rows;
      }
      case 'sp':
        return s.shadowPages
          .filter((p) => sel['gfn'] === undefined || Number.parseInt(p.gfn, 16) === Number(sel['gfn']))
          .filter((p) => sel['level'] === undefined || p.level === Number(sel['level']))
          .map((p) => roleExpectFields(Number.parseInt(p.role, 16), { gfn: Number.parseInt(p.gfn, 16), level: p.level, unsync: p.unsync ? 1 : 0, root_count: p.rootCount, mmu_valid_gen: p.gen, line: p.line }));
      default:
        return undefined;
    }
  }

  events(start: number, count: number, filter?: string, opts?: EventsOptions): { total: number; first: number; events: ProgramEvent[] } {
    const n = this.line.n;
    const withText = opts?.text !== false;
    const make = (i: number): ProgramEvent => {
      const ev = this.fill(i, this.peek);
      const vcpu = ev.get('vcpu_id');
      return { index: i, name: ev.schema.name, vcpu: typeof vcpu === 'number' ? vcpu : -1, text: withText ? this.payload(i) : '', step: i, pid: ev.pid };
    };
    if (!filter) {
      const events: ProgramEvent[] = [];
      for (let i = Math.max(0, start); i < Math.min(n, start + count); i++) events.push(make(i));
      return { total: n, first: 0, events };
    }
    // By name; by text too on captures small enough to read back whole.
    const byText = n <= 200_000;
    const matching: number[] = [];
    for (let i = 0; i < n; i++) {
      if (EVENTS[this.schema.a[i]!]!.name.includes(filter) || (byText && this.lineText(i).includes(filter))) matching.push(i);
    }
    return { total: matching.length, first: 0, events: matching.slice(start, start + count).map(make) };
  }

  summary(): string[] {
    const s = this.summaryNow();
    return [
      `trace ${this.file}: ${this.cursor} of ${this.line.n} event(s) replayed (${this.evidence.describe()}); ${s.sptesTotal} SPTE(s) in ${s.roots.length} root(s), ${s.shadowPagesTotal} shadow page(s), ${s.faults.total} fault(s), ${s.detectors.length} detector finding(s), ${this.warnings.length} warning(s)`,
      ...s.detectors.slice(0, 20).map((f) => `  line ${f.line}: ${f.detector}: ${f.message}`),
    ];
  }
}

/**
 * The event's fields as probe arguments: 64-bit values too large for a number (hex text without a prefix
 * in a record) get their `0x`, so conditions compare them as numbers (`new_spte == 0x8000000000000000`).
 */
function fieldsOf(ev: ParsedEvent): Record<string, number | string | boolean> {
  const f = ev.toRecord().fields;
  for (const k in f) {
    const v = f[k];
    if (typeof v === 'string' && /^[0-9a-f]+$/.test(v)) f[k] = '0x' + v;
  }
  return f;
}

/** `kvm_tdp_mmu_map+0x1a2/0x5e0 [kvm]` or `kvm_tdp_mmu_map+0x1a2 ([kernel.kallsyms])` -> kvm_tdp_mmu_map. */
export function frameFunction(frame: string): string {
  const m = /^[^\s+(]+/.exec(frame.trim());
  return m ? m[0] : frame.trim();
}

const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4];

/**
 * Entries of one table: with `parent` undefined the root's top (entries whose parent entry was never
 * seen: the top level, and orphans of a capture that started mid-run), else the children of `parent`.
 */
function tableOf(all: RebuiltSpte[], parent: RebuiltSpte | undefined): Map<string, SpteNode> {
  const m = new Map<string, SpteNode>();
  let picked: RebuiltSpte[];
  if (parent) {
    const g = Number.parseInt(parent.gfn, 16);
    const end = g + (SPAN[parent.level] ?? 1);
    picked = all.filter((e) => e.level === parent.level - 1 && Number.parseInt(e.gfn, 16) >= g && Number.parseInt(e.gfn, 16) < end);
  } else {
    const present = new Set(all.map((e) => `${e.level}:${e.gfn}`));
    picked = all.filter((e) => {
      const up = e.level + 1;
      const g = Number.parseInt(e.gfn, 16);
      const pg = g - (g % (SPAN[up] ?? 1));
      return !present.has(`${up}:${pg.toString(16)}`);
    });
  }
  picked.sort((a, b) => b.level - a.level || Number.parseInt(a.gfn, 16) - Number.parseInt(b.gfn, 16));
  for (const e of picked) {
    const node = new SpteNode(e.spte, e.kind, e.level, '0x' + e.gfn, e.line);
    if (e.kind === 'nonleaf') Object.defineProperty(node, 'table', { enumerable: true, get: () => tableOf(all, e) });
    m.set(`L${e.level} gfn 0x${e.gfn}`, node);
  }
  return m;
}

/** The text of the one event that `lines` (a wrapped event's lines) parse into, or undefined. */
function joinedEventText(lines: string, kernel: KernelVersion): string | undefined {
  let text: string | undefined;
  const p = new TraceParser({ kernel, maxDetails: 0, onEvent: (ev) => (text ??= ev.text) });
  p.push(lines);
  p.end();
  return text;
}
