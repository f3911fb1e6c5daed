/**
 * The scenario interpreter. `step()` executes exactly one statement (one line) and returns, so the
 * debugger can stop between lines; `line`/`file` tell where the next statement is. Results (expects,
 * exits, statistics, tracepoint counts, runtime errors) accumulate on the runner.
 */
import type { CheckNode, Statement, Value } from './ast';
import { type Diagnostic, diag } from './diagnostics';
import {
  CONSTANTS,
  NotSupportedYet,
  type AccessOp,
  type Exit,
  type Fields,
  type GuestException,
  type MemoryRegionOp,
  type Outcome,
  type ScenarioEngine,
  type VmConfig,
} from './engine_api';
import { describeFailures, failedChecks, globMatch, showActual, valueAsBigInt } from './expect';
import { ERRNO_VALUES, INVPCID_TYPES, KVM_MEM_MAX_NR_PAGES, PARAMS, VARIANTS } from './grammar';
import type { Program } from './load';
import { createEngine } from './engines';
import { trace, type TraceEvent } from '../engine/trace_sink';

export interface ExpectResult {
  file: string;
  line: number;
  col: number;
  endCol: number;
  text: string;
  ok: boolean;
  /** Empty when ok; otherwise expected vs. actual. */
  message: string;
}

export interface RecordedExit extends Exit {
  file: string;
  line: number;
}

export interface StepResult {
  statement: Statement;
  /** False when the statement failed (an expect, an unsupported operation, an unchecked error). */
  ok: boolean;
  /** Problems found while running this statement. */
  diagnostics: Diagnostic[];
  outcome: Outcome;
  /** Tracepoint events the statement emitted. */
  events: number;
}

export interface RunnerOptions {
  /** `--set NAME=VALUE` overrides of `param` / `variant` lines (already validated). */
  overrides?: Record<string, string>;
  /** Builds the engine for a configuration; a string means "cannot" and says why. Default: createEngine. */
  engineFactory?: (cfg: VmConfig) => ScenarioEngine | string;
  /**
   * Every tracepoint event as it is emitted (for --trace-out). `task` is the thread that ran it: the
   * vCPU of a guest statement or KVM_PRE_FAULT_MEMORY, else -1 (the VMM's ioctl thread).
   */
  onEvent?: (e: TraceEvent, task: number) => void;
  /** Events kept in memory for `expect trace scope=all` (default 200000). */
  keepEvents?: number;
  /**
   * Called before each access of a range statement: the runner's state is then complete (the loop's
   * position is in its fields), so a debugger can snapshot it there and later finish the statement from
   * that access with `step()` (see src/engine/snapshot.ts).
   */
  betweenAccesses?: () => void;
}

/** The statement `step()` is running, kept in the runner so that a snapshot taken inside it can finish it. */
interface Running {
  before: number;
  evBefore: number;
  /** Range loop position: repeat round and next address; `a` undefined until the loop starts. */
  k: number;
  a: number | bigint | undefined;
  last: Outcome;
}

const SETUP = new Set(['vm', 'param', 'variant']);
const PAGE = 4096;

/** Build the VM configuration from the set-up lines and overrides. */
export function configOf(statements: readonly Statement[], overrides: Record<string, string> = {}): VmConfig {
  const cfg: VmConfig = {
    arch: 'x86', vendor: 'intel', tdp: true, tdpLevels: 4, maxphyaddr: 46, type: 'default', mode: 'vhe', gpaw: 48, ipaBits: 40, vcpus: 1,
    paBits: 40, hostMemory: { start: 0x8000_0000, end: 0x8000_0000 + 2 * 2 ** 30 },
    params: {}, variants: {},
  };
  for (const st of statements) {
    if (st.keyword === 'vm') {
      const w = (n: string) => (st.args[n]?.value.kind === 'word' ? (st.args[n]!.value as { v: string }).v : undefined);
      const i = (n: string) => (st.args[n]?.value.kind === 'num' ? Number((st.args[n]!.value as { v: bigint }).v) : undefined);
      cfg.arch = (w('arch') as VmConfig['arch']) ?? cfg.arch;
      cfg.vendor = (w('vendor') as VmConfig['vendor']) ?? cfg.vendor;
      const tdp = st.args['tdp']?.value;
      if (tdp?.kind === 'bool') cfg.tdp = tdp.v;
      cfg.tdpLevels = i('tdp_levels') ?? cfg.tdpLevels;
      cfg.maxphyaddr = i('maxphyaddr') ?? cfg.maxphyaddr;
      cfg.type = w('type') ?? cfg.type;
      cfg.mode = w('mode') ?? cfg.mode;
      cfg.gpaw = i('gpaw') ?? cfg.gpaw;
      cfg.ipaBits = i('ipa_bits') ?? cfg.ipaBits;
      cfg.vcpus = i('vcpus') ?? cfg.vcpus;
      cfg.paBits = i('pa_bits') ?? cfg.paBits;
      const hm = st.args['host_memory']?.value;
      if (hm?.kind === 'range') cfg.hostMemory = { start: Number(hm.start), end: Number(hm.single ? hm.start + 4096n : hm.end) };
      if (cfg.arch === 'arm64' && !st.args['type']) cfg.type = 'default';
    } else if (st.keyword === 'param' || st.keyword === 'variant') {
      const into = st.keyword === 'param' ? cfg.params : cfg.variants;
      for (const c of st.checks) into[c.name] = c.value.text;
    }
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (k in PARAMS) cfg.params[k] = v;
    else if (k in VARIANTS) cfg.variants[k] = v;
  }
  return cfg;
}

/**
 * Validate `--set NAME=VALUE` texts. Returns the overrides, or the first error as one line.
 */
export function parseOverrides(sets: readonly string[]): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const s of sets) {
    const m = /^([A-Za-z_][A-Za-z0-9_.]*)=(.+)$/.exec(s);
    if (!m) return `--set '${s}': expected NAME=VALUE`;
    const [, rawName, value] = m as unknown as [string, string, string];
    const name = rawName.replace(/^(kvm|kvm_intel|kvm_amd)\./, '');
    // own properties only: 'constructor' or 'toString' are not parameters
    const legal = (Object.hasOwn(PARAMS, name) ? PARAMS[name] : undefined) ?? (Object.hasOwn(VARIANTS, name) ? VARIANTS[name] : undefined);
    if (!legal) return `--set '${s}': '${name}' is not a module parameter or design variant`;
    if (legal.includes('*') ? !/^-?[0-9]+$/.test(value) : !legal.some((l) => l.toLowerCase() === value.toLowerCase())) {
      return `--set '${s}': ${name} takes ${legal.includes('*') ? 'a number' : legal.join(', ')}`;
    }
    out[name] = legal.includes('*') ? value : legal.find((l) => l.toLowerCase() === value.toLowerCase())!;
  }
  return out;
}

class Unsupported extends Error {}

function big(v: Value | undefined): bigint | undefined {
  if (!v) return undefined;
  if (v.kind === 'num') return v.v;
  if (v.kind === 'bool') return v.v ? 1n : 0n;
  return valueAsBigInt(v);
}

export class ScenarioRunner {
  readonly program: Program;
  readonly config: VmConfig;
  engine: ScenarioEngine | undefined;
  /** Index of the next statement to execute. */
  pc = 0;
  readonly expects: ExpectResult[] = [];
  /** Runtime problems: unsupported operations, unchecked errors, failed expects (also in `expects`). */
  readonly problems: Diagnostic[] = [];
  readonly exits: RecordedExit[] = [];
  readonly eventCounts = new Map<string, number>();
  eventTotal = 0;

  private readonly opts: RunnerOptions;
  private engineError: string | undefined;
  private stmtEvents: TraceEvent[] = [];
  private stmtCounts = new Map<string, number>();
  private stmtTotal = 0;
  private stmtEventsDropped = 0;
  private allEvents: TraceEvent[] = [];
  private allEventsDropped = 0;
  private lastExits: RecordedExit[] = [];
  private lastException: (GuestException & { vcpu: number }) | undefined;
  private lastRet: { st: Statement; ret: number } | undefined;
  /** The last non-expect statement, when it could not run. */
  private lastDidNotRun: Statement | undefined;
  private pendingRet: { st: Statement; ret: number } | undefined;
  private readonly slots = new Map<number, MemoryRegionOp>();
  private readonly dirty = new Map<number, Uint8Array>();
  private unsubscribe: (() => void) | undefined;
  /** Thread the current statement runs on (see RunnerOptions.onEvent). */
  private task = -1;
  private running: Running | undefined;

  constructor(program: Program, opts: RunnerOptions = {}) {
    this.program = program;
    this.opts = opts;
    this.config = configOf(program.statements, opts.overrides);
    trace.reset();
    // Events are kept only if an `expect trace "pattern"` will look at their text; counts need none.
    const patterns = program.statements.filter((s) => s.keyword === 'expect trace' && (s.args['text'] || s.checks.some((c) => c.name !== 'count')));
    const keep = patterns.length ? (opts.keepEvents ?? 200_000) : 0;
    const keepAll = patterns.some((s) => s.args['scope']?.value.kind === 'word' && (s.args['scope'].value as { v: string }).v === 'all') ? keep : 0;
    this.unsubscribe = trace.subscribe((e) => {
      this.eventTotal++;
      this.eventCounts.set(e.name, (this.eventCounts.get(e.name) ?? 0) + 1);
      this.stmtTotal++;
      this.stmtCounts.set(e.name, (this.stmtCounts.get(e.name) ?? 0) + 1);
      if (this.stmtEvents.length < keep) this.stmtEvents.push(e);
      else this.stmtEventsDropped++;
      if (this.allEvents.length < keepAll) this.allEvents.push(e);
      else this.allEventsDropped++;
      opts.onEvent?.(e, this.task);
    });
  }

  get done(): boolean {
    return this.pc >= this.program.statements.length;
  }
  /** The statement `step()` runs next. */
  get current(): Statement | undefined {
    return this.program.statements[this.pc];
  }
  get line(): number {
    return this.current?.line ?? 0;
  }
  get file(): string {
    return this.current?.file ?? this.program.file;
  }
  get failed(): number {
    return this.problems.filter((p) => p.severity === 'error').length;
  }
  get ok(): boolean {
    return this.failed === 0;
  }
  stats(): Record<string, number> {
    return this.engine?.stats?.() ?? {};
  }

  /** True after restoring a snapshot taken inside a statement: `step()` finishes that statement. */
  get resuming(): boolean {
    return this.running !== undefined;
  }

  /** Execute one statement (or finish the one a restored snapshot was taken in). */
  step(): StepResult {
    const resume = this.running;
    const st = this.program.statements[resume ? this.pc - 1 : this.pc++];
    if (!st) throw new Error('step() past the end of the scenario');
    const before = resume ? resume.before : this.problems.length;
    const isExpect = st.spec.group === 'expect';
    if (!resume && this.pendingRet && !(isExpect && st.keyword === 'expect ret')) this.reportUnchecked();
    let outcome: Outcome = {};
    let events = 0;
    if (!isExpect && !resume) {
      this.stmtEvents = [];
      this.stmtEventsDropped = 0;
      this.stmtCounts = new Map();
      this.stmtTotal = 0;
      this.lastExits = [];
      this.lastRet = undefined;
      this.lastDidNotRun = undefined;
      this.lastException = undefined;
    }
    const evBefore = resume ? resume.evBefore : this.eventTotal;
    this.running = resume ?? { before, evBefore, k: 0, a: undefined, last: {} };
    try {
      if (isExpect) this.runExpect(st);
      else if (!SETUP.has(st.keyword)) {
        const onVcpu = st.spec.group === 'guest' || st.keyword === 'KVM_PRE_FAULT_MEMORY';
        this.task = onVcpu ? Number(big(st.args['vcpu']?.value) ?? 0n) : -1;
        outcome = this.exec(st);
      }
    } catch (e) {
      if (e instanceof NotSupportedYet) this.problem(st, 'unsupported', `not supported yet by the engine: ${st.keyword} (${e.message})`, 'this statement needs an engine part that has not landed; the run continues');
      else if (e instanceof Unsupported) this.problem(st, 'unsupported', e.message, 'this statement needs an engine part that has not landed; the run continues');
      else this.problem(st, 'engine-error', `the engine failed: ${e instanceof Error ? e.message : String(e)}`, 'this is a bug in the model; please report it with the scenario');
    }
    this.running = undefined;
    this.task = -1;
    events = this.eventTotal - evBefore;
    if (!isExpect && this.problems.slice(before).some((p) => p.code === 'unsupported' || p.code === 'engine-error')) this.lastDidNotRun = st;
    if (!isExpect && outcome.ret !== undefined) {
      this.lastRet = { st, ret: outcome.ret };
      if (outcome.ret < 0) this.pendingRet = { st, ret: outcome.ret };
    }
    if (this.done && this.pendingRet) this.reportUnchecked();
    const diagnostics = this.problems.slice(before);
    return { statement: st, ok: !diagnostics.some((d) => d.severity === 'error'), diagnostics, outcome, events };
  }

  /** Run every remaining statement. */
  run(): void {
    while (!this.done) this.step();
  }

  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.engine?.dispose?.();
  }

  // ------------------------------------------------------------------ helpers

  private problem(st: Statement, code: string, message: string, hint = '', col = st.col, endCol = st.endCol): void {
    this.problems.push(diag(st.file, st.line, col, endCol, code, message, hint));
  }

  private reportUnchecked(): void {
    const p = this.pendingRet!;
    this.pendingRet = undefined;
    this.problem(p.st, 'unchecked-error', `${p.st.keyword} failed with ${errnoText(p.ret)}`,
      `if that is what you want to see, follow the line with \`expect ret ${errnoText(p.ret)}\``);
  }

  private need<K extends keyof ScenarioEngine>(st: Statement, method: K): NonNullable<ScenarioEngine[K]> {
    const eng = this.vm(st);
    const fn = eng[method];
    if (typeof fn !== 'function') {
      throw new Unsupported(`not supported yet by the engine: ${st.keyword} (${eng.name} has no ${String(method)})`);
    }
    return (fn as (...a: unknown[]) => unknown).bind(eng) as NonNullable<ScenarioEngine[K]>;
  }

  private vm(st: Statement): ScenarioEngine {
    if (this.engine) return this.engine;
    if (this.engineError) throw new Unsupported(`not supported yet by the engine: ${st.keyword} (${this.engineError})`);
    const made = (this.opts.engineFactory ?? createEngine)(this.config);
    if (typeof made === 'string') {
      this.engineError = made;
      throw new Unsupported(`not supported yet by the engine: ${st.keyword} (${made})`);
    }
    this.engine = made;
    return made;
  }

  private num(st: Statement, name: string, dflt?: number): number {
    const v = big(st.args[name]?.value);
    if (v === undefined) {
      if (dflt === undefined) throw new Error(`missing ${name}`);
      return dflt;
    }
    return Number(v);
  }

  private optBig(st: Statement, name: string): bigint | undefined {
    return big(st.args[name]?.value);
  }

  private word(st: Statement, name: string, dflt: string): string {
    const v = st.args[name]?.value;
    return v && (v.kind === 'word' || v.kind === 'str') ? v.v : dflt;
  }

  private flags(st: Statement, name: string): number {
    const v = st.args[name]?.value;
    if (!v) return 0;
    const b = valueAsBigInt(v);
    return b === undefined ? 0 : Number(b);
  }

  private recordExit(st: Statement, o: Outcome): void {
    if (o.exception) this.lastException = { ...o.exception, vcpu: this.task };
    if (!o.exit) return;
    const r: RecordedExit = { ...o.exit, file: st.file, line: st.line };
    this.exits.push(r);
    this.lastExits.push(r);
  }

  // ------------------------------------------------------------------ statements

  private exec(st: Statement): Outcome {
    let o: Outcome;
    switch (st.keyword) {
      case 'KVM_SET_USER_MEMORY_REGION2': {
        const op: MemoryRegionOp = {
          slot: this.num(st, 'slot'),
          asId: this.num(st, 'as_id', 0),
          gpa: this.num(st, 'gpa', 0),
          size: this.num(st, 'size'),
          hva: st.args['hva'] ? this.num(st, 'hva') : undefined,
          flags: this.flags(st, 'flags'),
          guestMemfd: st.args['guest_memfd'] ? this.word(st, 'guest_memfd', '') : undefined,
          guestMemfdOffset: this.num(st, 'guest_memfd_offset', 0),
          backing: backingBytes(this.word(st, 'backing', '4K')),
        };
        o = this.setRegion(st, op);
        break;
      }
      case 'memslot delete':
      case 'memslot move':
      case 'dirty_log enable':
      case 'dirty_log disable': {
        const slot = this.num(st, 'slot');
        const cur = this.slots.get(slot);
        if (!cur) {
          // As KVM: deleting or modifying a slot that does not exist is -EINVAL.
          o = { ret: -ERRNO_VALUES['EINVAL']! };
          break;
        }
        const op = { ...cur };
        if (st.keyword === 'memslot delete') op.size = 0;
        else if (st.keyword === 'memslot move') op.gpa = this.num(st, 'gpa');
        else if (st.keyword === 'dirty_log enable') op.flags |= CONSTANTS['KVM_MEM_LOG_DIRTY_PAGES']!;
        else op.flags &= ~CONSTANTS['KVM_MEM_LOG_DIRTY_PAGES']!;
        o = this.setRegion(st, op);
        break;
      }
      case 'KVM_CREATE_GUEST_MEMFD':
      {
        // `folio` is a model option (huge guest_memfd folios, not in 6.18); passed only when given.
        const folio = this.word(st, 'folio', '');
        const op = { fd: this.word(st, 'fd', ''), size: this.num(st, 'size'), flags: this.flags(st, 'flags'), ...(folio ? { folio } : {}) };
        o = this.need(st, 'createGuestMemfd')(op);
        break;
      }
      case 'fallocate':
        o = this.need(st, 'fallocate')({ fd: this.word(st, 'fd', ''), mode: this.flags(st, 'mode'), offset: this.num(st, 'offset'), len: this.num(st, 'len') });
        break;
      case 'KVM_SET_MEMORY_ATTRIBUTES':
        o = this.need(st, 'setMemoryAttributes')({ address: this.num(st, 'address'), size: this.num(st, 'size'), attributes: this.flags(st, 'attributes') });
        break;
      case 'KVM_GET_DIRTY_LOG': {
        const slot = this.num(st, 'slot');
        const r = this.need(st, 'getDirtyLog')({ slot, asId: 0 });
        if (r.bitmap) this.dirty.set(slot, r.bitmap);
        o = r;
        break;
      }
      case 'KVM_CLEAR_DIRTY_LOG':
        o = this.need(st, 'clearDirtyLog')({ slot: this.num(st, 'slot'), asId: 0, firstPage: this.num(st, 'first_page', 0), numPages: this.num(st, 'num_pages') });
        break;
      case 'KVM_ENABLE_CAP':
        o = this.need(st, 'enableCap')({ cap: this.word(st, 'cap', ''), args0: this.flags(st, 'args0') });
        break;
      case 'guest map_gpa': {
        const r = st.args['gpa']!.value as Extract<Value, { kind: 'range' }>;
        o = this.need(st, 'mapGpa')({
          vcpu: this.vcpu(st), start: Number(r.start), end: Number(r.single ? r.start + 4096n : r.end), to: this.word(st, 'to', 'private') as 'private',
          serve: this.optBig(st, 'serve') === 1n,
        });
        break;
      }
      case 'KVM_SEV_SNP_LAUNCH_START':
        o = this.need(st, 'snpLaunchStart')({ policy: this.num(st, 'policy'), flags: this.num(st, 'flags', 0) });
        break;
      case 'KVM_SEV_SNP_LAUNCH_UPDATE': {
        const gfnStart = st.args['gpa'] ? Math.floor(this.num(st, 'gpa') / 4096) : this.num(st, 'gfn_start');
        o = this.need(st, 'snpLaunchUpdate')({ gfnStart, len: this.num(st, 'len'), type: this.word(st, 'type', 'NORMAL'), flags: this.num(st, 'flags', 0) });
        break;
      }
      case 'KVM_SEV_SNP_LAUNCH_FINISH':
        o = this.need(st, 'snpLaunchFinish')({ flags: this.num(st, 'flags', 0) });
        break;
      case 'KVM_PRE_FAULT_MEMORY':
        o = this.need(st, 'preFaultMemory')({ vcpu: this.vcpu(st), gpa: this.num(st, 'gpa'), size: this.num(st, 'size') });
        break;
      case 'host invalidate': {
        const r = this.range(st);
        const event = st.args['event'] ? this.word(st, 'event', '') : NOTIFY_EVENT[this.word(st, 'reason', 'reclaim')]!;
        o = this.need(st, 'invalidateRange')({ ...r, event });
        break;
      }
      case 'host age':
        o = this.need(st, 'ageRange')({ ...this.range(st), op: this.word(st, 'op', 'clear_young') });
        break;
      case 'host nx_recovery':
        o = this.need(st, 'nxRecovery')();
        break;
      case 'host stage2_fault':
        o = this.need(st, 'hostStage2Fault')({ addr: this.num(st, 'addr'), access: this.word(st, 'access', 'read') as 'read' });
        break;
      case 'guest set': {
        const op: { vcpu: number; cr0?: bigint; cr3?: bigint; cr4?: bigint; efer?: bigint } = { vcpu: this.vcpu(st) };
        for (const r of ['cr0', 'cr3', 'cr4', 'efer'] as const) {
          const v = this.optBig(st, r);
          if (v !== undefined) op[r] = v;
        }
        o = this.need(st, 'setRegs')(op);
        break;
      }
      case 'guest map': {
        const gva = st.args['gva']!.value as Extract<Value, { kind: 'range' }>;
        const pool = st.args['pool']?.value;
        const flagsV = st.args['flags']?.value;
        o = this.need(st, 'guestMap')({
          cr3: this.num(st, 'cr3'), gvaStart: gva.start, gvaEnd: gva.end, gpa: this.num(st, 'gpa'),
          pageSize: backingBytes(this.word(st, 'page', '4K')),
          flags: flagsV?.kind === 'words' ? flagsV.v : ['rw'], mode: this.word(st, 'mode', '4level'),
          ...(pool?.kind === 'range' ? { pool: { start: Number(pool.start), end: Number(pool.end) } } : {}),
        });
        break;
      }
      case 'guest write_pte': {
        const cr3 = st.args['cr3'] ? this.num(st, 'cr3') : undefined;
        const via = this.optBig(st, 'via');
        o = this.need(st, 'guestWritePte')({
          vcpu: this.vcpu(st), gva: this.optBig(st, 'gva')!, level: this.num(st, 'level'), value: this.optBig(st, 'value')!,
          ...(cr3 !== undefined ? { cr3 } : {}), ...(via !== undefined ? { via } : {}),
        });
        break;
      }
      case 'guest read':
      case 'guest write':
      case 'guest fetch':
        o = this.accesses(st);
        break;
      case 'guest invlpg':
        o = this.need(st, 'invlpg')({ vcpu: this.vcpu(st), gva: this.optBig(st, 'gva')! });
        break;
      case 'guest invpcid':
        o = this.need(st, 'invpcid')({
          vcpu: this.vcpu(st),
          type: INVPCID_TYPES.indexOf(this.word(st, 'type', '')),
          pcid: this.optBig(st, 'pcid') ?? 0n,
          gva: this.optBig(st, 'gva') ?? 0n,
        });
        break;
      case 'guest pvalidate': {
        const gva = this.optBig(st, 'gva');
        o = this.need(st, 'pvalidate')({
          vcpu: this.vcpu(st), size: backingBytes(this.word(st, 'size', '4K')), validate: this.optBig(st, 'validate') === 1n,
          ...(gva !== undefined ? { gva } : { gpa: this.num(st, 'gpa') }),
        });
        break;
      }
      case 'guest psc': {
        const r = st.args['gpa']!.value as Extract<Value, { kind: 'range' }>;
        o = this.need(st, 'psc')({
          vcpu: this.vcpu(st), start: Number(r.start), end: Number(r.single ? r.start + 4096n : r.end), to: this.word(st, 'to', 'private') as 'private',
          via: this.word(st, 'via', 'ghcb') as 'ghcb', serve: this.optBig(st, 'serve') === 1n,
        });
        break;
      }
      default:
        if (st.spec.group === 'pkvm') {
          const prot = st.args['prot']?.value;
          const a: { pfn?: number; gfn?: number; nrPages: number; prot?: string[]; vcpu: number; phys?: number } = { nrPages: this.num(st, 'nr_pages', 1), vcpu: this.vcpu(st) };
          if (st.args['pfn']) a.pfn = this.num(st, 'pfn');
          if (st.args['gfn']) a.gfn = this.num(st, 'gfn');
          if (st.args['phys']) a.phys = this.num(st, 'phys');
          if (prot?.kind === 'words') a.prot = prot.v;
          else if (st.args['prot']) a.prot = [];
          o = this.need(st, 'pkvm')(st.keyword, a);
          break;
        }
        throw new Unsupported(`not supported yet by the runner: ${st.keyword}`);
    }
    this.recordExit(st, o);
    return o;
  }

  private vcpu(st: Statement): number {
    const v = this.num(st, 'vcpu', 0);
    if (v >= this.config.vcpus) throw new Unsupported(`vcpu ${v} does not exist: the vm line creates ${this.config.vcpus} vCPU${this.config.vcpus === 1 ? '' : 's'}`);
    return v;
  }

  private range(st: Statement): { space: 'hva' | 'gpa'; start: number; end: number } {
    const space = st.args['hva'] ? 'hva' : 'gpa';
    const r = st.args[space]!.value as Extract<Value, { kind: 'range' }>;
    const end = r.single ? r.start + 4096n : r.end;
    return { space, start: Number(r.start), end: Number(end) };
  }

  /** KVM's argument checks first (so absurd sizes never reach the engine), then the engine. */
  private setRegion(st: Statement, op: MemoryRegionOp): Outcome {
    const EINVAL = -ERRNO_VALUES['EINVAL']!;
    if (op.size % PAGE !== 0 || op.gpa % PAGE !== 0) return { ret: EINVAL };
    if (op.size / PAGE > KVM_MEM_MAX_NR_PAGES) return { ret: EINVAL };
    if (op.gpa + op.size > 2 ** 64) return { ret: EINVAL };
    const o = this.need(st, 'setUserMemoryRegion2')(op);
    if ((o.ret ?? 0) === 0) {
      if (op.size === 0) this.slots.delete(op.slot);
      else this.slots.set(op.slot, op);
    }
    return o;
  }

  private accesses(st: Statement): Outcome {
    const fn = this.need(st, 'access');
    const space = st.args['gva'] ? 'gva' : 'gpa';
    const r = st.args[space]!.value as Extract<Value, { kind: 'range' }>;
    const step = BigInt(this.num(st, 'step', PAGE));
    const repeat = this.num(st, 'repeat', 1);
    const cpl = this.word(st, 'cpl', 'supervisor');
    const vis = st.args['visibility'] ? this.word(st, 'visibility', '') : undefined;
    // One op object for the whole loop: the engine must not keep it.
    const op: AccessOp = {
      vcpu: this.vcpu(st), kind: st.keyword.slice(6) as AccessOp['kind'], space, addr: 0, lo: 0, hi: 0,
      user: cpl === 'user', private: vis === undefined ? undefined : vis === 'private', value: this.optBig(st, 'value') ?? 0n,
      hasValue: st.args['value'] !== undefined,
    };
    const stepN = Number(step);
    const startN = Number(r.start);
    const exact = r.end <= BigInt(Number.MAX_SAFE_INTEGER);
    const hook = this.opts.betweenAccesses;
    // The loop's position lives in `cur` (part of the runner) so a snapshot taken in `hook` can resume it.
    const cur = this.running!;
    for (; cur.k < repeat; cur.k++, cur.a = undefined) {
      if (exact) {
        const end = Number(r.end);
        for (let a = (cur.a as number | undefined) ?? startN; a < end; a += stepN) {
          if (hook) {
            cur.a = a;
            hook();
          }
          op.addr = a;
          op.lo = a >>> 0;
          op.hi = Math.floor(a / 0x1_0000_0000) >>> 0;
          const last = cur.last = fn(op);
          if (last.exit || last.exception) return last;
        }
      } else {
        for (let a = (cur.a as bigint | undefined) ?? r.start; a < r.end; a += step) {
          if (hook) {
            cur.a = a;
            hook();
          }
          op.addr = Number(a);
          op.lo = Number(a & 0xffff_ffffn);
          op.hi = Number((a >> 32n) & 0xffff_ffffn);
          const last = cur.last = fn(op);
          if (last.exit || last.exception) return last;
        }
      }
    }
    return cur.last;
  }

  // ------------------------------------------------------------------ expectations

  private pass(st: Statement): void {
    this.expects.push({ file: st.file, line: st.line, col: st.col, endCol: st.endCol, text: st.text, ok: true, message: '' });
  }

  private fail(st: Statement, message: string, col = st.col, endCol = st.endCol): void {
    this.expects.push({ file: st.file, line: st.line, col: st.col, endCol: st.endCol, text: st.text, ok: false, message });
    this.problems.push(diag(st.file, st.line, col, endCol, 'expect-failed', `expectation failed: ${message}`, ''));
  }

  private judge(st: Statement, failures: ReturnType<typeof failedChecks>): void {
    if (failures.length === 0) this.pass(st);
    else this.fail(st, describeFailures(failures), failures[0]!.check.col, failures[0]!.check.endCol);
  }

  private runExpect(st: Statement): void {
    const aboutLast = st.keyword === 'expect ret' || st.keyword === 'expect exit' || st.keyword === 'expect exception' || (st.keyword === 'expect trace' && this.word(st, 'scope', 'last') === 'last');
    if (aboutLast && this.lastDidNotRun) {
      this.fail(st, `line ${this.lastDidNotRun.line} (${this.lastDidNotRun.keyword}) did not run, so there is nothing to check`);
      return;
    }
    switch (st.keyword) {
      case 'expect ret': {
        const want = Number(big(st.args['value']!.value));
        const have = this.lastRet?.ret;
        this.pendingRet = undefined;
        if (have === want) this.pass(st);
        else this.fail(st, `return value: expected ${errnoText(want)}, got ${have === undefined ? 'none (the last statement returns nothing)' : errnoText(have)}`);
        return;
      }
      case 'expect exit': {
        const reason = this.word(st, 'reason', 'none');
        const vcpu = st.args['vcpu'] ? this.num(st, 'vcpu') : undefined;
        const exits = this.lastExits.filter((e) => vcpu === undefined || e.vcpu === vcpu);
        if (reason === 'none') {
          if (exits.length === 0) this.pass(st);
          else this.fail(st, `expected no exit, got ${exits[0]!.reason}${fmtFields(exits[0]!.fields)}`);
          return;
        }
        const match = exits.filter((e) => e.reason === reason);
        if (match.length === 0) {
          this.fail(st, `expected ${reason}, got ${exits.length ? exits.map((e) => e.reason).join(', ') : 'no exit'}`);
          return;
        }
        const results = match.map((e) => failedChecks(st.checks, e.fields));
        this.judge(st, results.find((r) => r.length === 0) ?? results[0]!);
        return;
      }
      case 'expect exception': {
        const want = this.word(st, 'vector', 'none');
        const have = this.lastException;
        if (want === 'none') {
          if (!have) this.pass(st);
          else this.fail(st, `expected no exception, got #${have.vector}${fmtFields(have.fields)}`);
          return;
        }
        if (!have || have.vector !== want) {
          this.fail(st, `expected #${want}, got ${have ? `#${have.vector}` : 'no exception'}`);
          return;
        }
        this.judge(st, failedChecks(st.checks, have.fields));
        return;
      }
      case 'expect stat': {
        const stats = this.vm(st).stats;
        if (!stats) throw new Unsupported(`not supported yet by the engine: expect stat (${this.engine!.name} has no stats)`);
        const values = stats.call(this.engine);
        const obj: Fields = {};
        for (const c of st.checks) if (c.name in values) obj[c.name] = values[c.name]!;
        this.judge(st, failedChecks(st.checks, obj));
        return;
      }
      case 'expect trace':
        this.expectTrace(st);
        return;
      case 'expect dirty': {
        const slot = this.num(st, 'slot');
        const bm = this.dirty.get(slot);
        if (!bm) {
          this.fail(st, `no KVM_GET_DIRTY_LOG of slot ${slot} before this line`);
          return;
        }
        const obj: Fields = { count: popcount(bm) };
        if (st.args['gfn']) {
          const base = Math.floor((this.slots.get(slot)?.gpa ?? 0) / PAGE);
          const i = this.num(st, 'gfn') - base;
          obj['dirty'] = i >= 0 && i < bm.length * 8 ? ((bm[i >> 3]! >> (i & 7)) & 1) : 0;
        }
        this.judge(st, failedChecks(st.checks, obj));
        return;
      }
      default:
        this.expectQuery(st);
    }
  }

  private expectTrace(st: Statement): void {
    const all = this.word(st, 'scope', 'last') === 'all';
    const events = all ? this.allEvents : this.stmtEvents;
    const dropped = all ? this.allEventsDropped : this.stmtEventsDropped;
    const name = st.args['event'] ? this.word(st, 'event', '') : undefined;
    const pattern = st.args['text'] ? this.word(st, 'text', '') : undefined;
    const fieldChecks = st.checks.filter((c) => c.name !== 'count');
    let n = 0;
    if (fieldChecks.length) {
      for (const e of events) if (e.name === name && (!pattern || globMatch(pattern, e.text)) && failedChecks(fieldChecks, e.fields).length === 0) n++;
    } else if (pattern === undefined) {
      // Counting by name needs no kept events.
      const counts = all ? this.eventCounts : this.stmtCounts;
      n = name ? counts.get(name) ?? 0 : all ? this.eventTotal : this.stmtTotal;
    } else for (const e of events) if ((!name || e.name === name) && globMatch(pattern, e.text)) n++;
    if (dropped && (pattern !== undefined || fieldChecks.length)) {
      this.fail(st, `${dropped} events were not kept in memory; narrow the statement`);
      return;
    }
    const countChecks = st.checks.filter((c) => c.name === 'count');
    if (countChecks.length) {
      this.judge(st, failedChecks(countChecks, { count: n }));
      return;
    }
    if (n > 0) this.pass(st);
    else {
      const same = events.filter((e) => !name || e.name === name);
      const shown = same.slice(0, 3).map((e) => `${e.name}: ${e.text}`).join(' | ');
      const with_ = fieldChecks.length ? ` with ${fieldChecks.map((c) => `${c.name}${c.op}${c.value.text}`).join(' ')}` : '';
      this.fail(st, `no ${name ?? 'event'}${pattern ? ` matching "${pattern}"` : ''}${with_} in the ${all ? 'run' : 'last statement'}${shown ? `; saw ${shown}` : events.length ? '' : ' (it emitted no events)'}`);
    }
  }

  private expectQuery(st: Statement): void {
    const subject = st.keyword.slice('expect '.length);
    const eng = this.vm(st);
    if (!eng.query) throw new Unsupported(`not supported yet by the engine: ${st.keyword} (${eng.name} cannot be queried)`);
    const sel: Fields = {};
    for (const [k, a] of Object.entries(st.args)) {
      const v = a.value;
      sel[k] = v.kind === 'num' ? (v.v <= BigInt(Number.MAX_SAFE_INTEGER) && v.v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v.v) : v.v) : v.kind === 'bool' ? v.v : v.kind === 'range' ? Number(v.start) : v.kind === 'words' ? v.v.join('|') : v.v;
    }
    let objs = eng.query(subject, sel);
    if (objs === undefined) throw new Unsupported(`not supported yet by the engine: ${st.keyword} (${eng.name} does not report ${subject})`);
    if (subject === 'spte' && objs.length === 0) objs = [{ kind: 'none', present: 0 }];
    const counts: CheckNode[] = [];
    const rest: CheckNode[] = [];
    for (const c of st.checks) (c.name === 'count' || c.name === 'exists' || (subject === 'roots' && (c.name === 'valid' || c.name === 'invalid')) ? counts : rest).push(c);
    if (counts.length) {
      // Counting: how many of the selected objects also satisfy the other checks.
      const matching = rest.length ? objs.filter((o) => failedChecks(rest, o).length === 0) : objs;
      const agg: Fields = { count: matching.length, exists: matching.length > 0 ? 1 : 0 };
      if (subject === 'roots') {
        const inv = matching.filter((o) => o['role.invalid'] === true || o['role.invalid'] === 1).length;
        agg['invalid'] = inv;
        agg['valid'] = matching.length - inv;
      }
      const failures = failedChecks(counts, agg);
      if (failures.length && rest.length && matching.length === 0 && objs.length > 0) {
        const other = objs.find((o) => failedChecks(rest, o).length > 0)!;
        this.fail(st, `${describeFailures(failures)} (of ${objs.length} selected, ${objs.length - matching.length} differ, e.g. ${describeFailures(failedChecks(rest, other))})`, failures[0]!.check.col, failures[0]!.check.endCol);
        return;
      }
      this.judge(st, failures);
      return;
    }
    const failures: ReturnType<typeof failedChecks> = [];
    if (rest.length) {
      if (objs.length === 0) {
        this.fail(st, `no ${subject} matches ${fmtFields(sel).trim() || 'the selector'}`);
        return;
      }
      const per = objs.map((o) => failedChecks(rest, o));
      failures.push(...(per.find((f) => f.length === 0) ?? per[0]!));
    }
    this.judge(st, failures);
  }
}

const NOTIFY_EVENT: Record<string, string> = {
  reclaim: 'MMU_NOTIFY_CLEAR',
  migration: 'MMU_NOTIFY_MIGRATE',
  numa: 'MMU_NOTIFY_PROTECTION_VMA',
  munmap: 'MMU_NOTIFY_UNMAP',
  mprotect: 'MMU_NOTIFY_PROTECTION_VMA',
  soft_dirty: 'MMU_NOTIFY_SOFT_DIRTY',
  ksm: 'MMU_NOTIFY_CLEAR',
};

function backingBytes(w: string): number {
  return w === '1G' ? 1 << 30 : w === '2M' ? 2 << 20 : PAGE;
}

export function errnoText(ret: number): string {
  if (ret >= 0) return String(ret);
  const name = Object.entries(ERRNO_VALUES).find(([, v]) => v === -ret)?.[0];
  return name ? `-${name}` : String(ret);
}

function fmtFields(f: Fields): string {
  const parts = Object.entries(f).map(([k, v]) => `${k}=${showActual(v, typeof v === 'number' && k !== 'size' && k !== 'len' && k !== 'vcpu' && k !== 'level' ? { kind: 'num', v: 0n, text: '0x0' } : undefined)}`);
  return parts.length ? ` (${parts.join(' ')})` : '';
}

/**
 * Set bits of a dirty bitmap. A slot of KVM_MEM_MAX_NR_PAGES has a 256 MiB bitmap: count 32 bits at a
 * time and skip zero words, not byte by byte through an iterator (seconds per `expect dirty`).
 */
function popcount(bm: Uint8Array): number {
  let count = 0;
  const head = (4 - (bm.byteOffset & 3)) & 3;
  const nWords = Math.max(0, (bm.length - head) >>> 2);
  const words = new Uint32Array(bm.buffer, bm.byteOffset + Math.min(head, bm.length), nWords);
  for (let i = 0; i < Math.min(head, bm.length); i++) for (let x = bm[i]!; x; x &= x - 1) count++;
  for (let i = 0; i < nWords; i++) {
    let x = words[i]!;
    if (x === 0) continue;
    x -= (x >>> 1) & 0x55555555;
    x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
    count += (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
  }
  for (let i = Math.min(head, bm.length) + nWords * 4; i < bm.length; i++) for (let x = bm[i]!; x; x &= x - 1) count++;
  return count;
}
