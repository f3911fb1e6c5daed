/**
 * Execution control inside the engine worker: runs the program step by step, stops at line
 * breakpoints, at probes (function, data and exception breakpoints, stepping into the MMU), and goes
 * backwards by deterministic re-execution from the nearest checkpoint (see ./checkpoints.ts).
 *
 * A stop inside an engine function happens *inside* the probe call: the controller serves the session's
 * requests from there, so the whole engine state (and the JavaScript stack of KVM functions) is live.
 *
 * Positions: (step, hit) where `hit` counts probe hits since step `step` began (hit 0 is the line stop
 * before the step runs). A step that can stop inside is always armed from its start, so hit numbers
 * are exact and re-execution reaches the same place.
 */
import type { DebugProtocol } from '@vscode/debugprotocol';
import { kvmStack, probes, type KvmFrame, type ProbeArgs } from '../../engine/probes';
import { trace, type TraceEvent } from '../../engine/trace_sink';
import { ConditionError, conditionHolds, parseCondition, parseHitCondition, type Resolver } from '../condition';
import { VariableStore, findDecoder, asU64 } from '../inspect';
import type { DebugProgram } from '../program';
import type { WorkerRequest } from '../protocol';
import type { WorkerChannel, Incoming } from './channel';
import { EXCEPTION_FILTERS, exceptionFilterFor } from '../exception_filters';
import { evaluateCommand, completeCommand } from '../console_commands';
import { findKernelFunction } from '../kernel_source';
import { handleQuery } from './queries';
import { vcpuTimeline } from './vcpu_timeline';
import { stage2Map } from './stage2_map';
import { additiveDataBreakpoint } from './view_watches';
import { auditEngine, canAudit, formatViolations, type AuditReport } from '../../engine/audit/audit';
import { takeSnapshot, type Snapshot } from '../../engine/snapshot';
import { CheckpointStore, cmpKey, type Checkpoint } from './checkpoints';
import { findSourceMap } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Position {
  step: number;
  hit: number;
}

type Mode = 'run' | 'stepOver' | 'stepIn' | 'stepOut';

interface LineBp {
  id: number;
  line: number;
  cond?: ReturnType<typeof parseCondition>;
  hitCond?: (n: number) => boolean;
  logMessage?: string;
  hits: number;
}

interface FnBp {
  id: number;
  name: string;
  cond?: ReturnType<typeof parseCondition>;
  hitCond?: (n: number) => boolean;
  hits: number;
}

/** A data breakpoint: a watched value identified by the probe arguments that change it. */
export interface DataBp {
  id: number;
  dataId: string;
  /** Matches probe args of a value change (old/new) against the watched location. */
  match: (args: ProbeArgs) => boolean;
  hits: number;
  hitCond?: (n: number) => boolean;
  /** Added by kvmMmu/addDataBreakpoint (a view): kept when the client replaces its own set. */
  additive?: boolean;
}

interface StopInfo {
  pos: Position;
  reason: string;
  description?: string;
  probe?: { name: string; args: ProbeArgs; frames: KvmFrame[] };
}

/** Thrown out of a paused probe to unwind the engine when the user goes backwards or restarts. */
class Rewind extends Error {
  constructor(readonly target: Position | 'reverseContinue' | 'restart' | { event: number }) {
    super('rewind');
  }
}

let nextBpId = 1;
let progressSeq = 0;

/**
 * Checkpoint spacing, in execution time: at least this, and at least COST_FACTOR times what the last
 * snapshot took, so checkpoints cost the forward run a few percent while bounding how much a jump back
 * re-executes.
 */
const MIN_INTERVAL_MS = 50;
const COST_FACTOR = 8;
/** Between-access calls per checkpoint opportunity inside a step (keeps the per-access cost to a counter). */
const BETWEEN_MASK = 255;

export class Controller {
  private pos: Position = { step: 0, hit: 0 };
  private mode: Mode = 'run';
  /** Depth (KVM frames) of the stop a step-over/out started from; 0 at a line. */
  private modeDepth = 0;
  private modeFromStep = -1;
  private armedThisStep = false;
  private lineBps = new Map<string, LineBp[]>();
  private fnBps: FnBp[] = [];
  private dataBps: DataBp[] = [];
  private exceptionFilters = new Set<string>();
  private stop: StopInfo | undefined;
  private readonly vars = new VariableStore();
  private hexDisplay = false;
  /** Re-execution target: stop when this position is reached (no other stops on the way). */
  private target: Position | undefined;
  /** While scanning history for reverseContinue: collect would-be stops instead of stopping. */
  private scanning: Position[] | undefined;
  private scanLimit: Position | undefined;
  private terminated = false;
  private configured = false;
  private frameIds: Array<{ kind: 'kvm'; frame: KvmFrame } | { kind: 'program' }> = [];

  private readonly checkpoints = new CheckpointStore();
  private readonly roots: ReturnType<NonNullable<DebugProgram['checkpointRoots']>> | undefined;
  /** Execution clock (ms), pauses and snapshot time excluded: `clockBase + now - clockStart` while running. */
  private clockBase = 0;
  private clockStart = performance.now();
  /** Clock of the checkpoint last taken, restored or run past. */
  private lastCpClock = -Infinity;
  /** The first stored checkpoint after the current position (run past it resets the spacing timer). */
  private nextCp: Checkpoint | undefined;
  private snapCost = 0;
  /** The snapshot last taken or restored: the next one shares its unchanged page tables. */
  private lastSnap: Snapshot | undefined;
  /** Between-access calls in the current step (a checkpoint's `sub`). */
  private sub = 0;
  /** A checkpoint inside the current step was restored: finish the step without its line stop. */
  private resumeMid = false;
  /** Probe hits in the current step are counted from its start (armed all along). */
  private hitKnown = false;

  constructor(
    private readonly program: DebugProgram,
    private readonly chan: WorkerChannel,
    private readonly opts: { stopOnEntry: boolean; kernelSource?: string; checkpointInterval?: number },
  ) {
    this.roots = program.checkpointRoots?.();
  }

  // ---------------------------------------------------------------- main loop

  /** Runs the whole session: configuration, execution, rewinds, end. Returns when disconnected. */
  serve(): void {
    // Configuration phase: breakpoints arrive before configurationDone.
    while (!this.configured) {
      const m = this.chan.receive();
      if (this.handle(m) === 'disconnect') return;
    }
    let start: Position | undefined;
    if (this.opts.stopOnEntry) start = { step: 0, hit: 0 };
    const unsubscribe = trace.subscribe(this.onTraceEvent);
    if (this.roots) this.program.onBetween?.(this.onBetween);
    for (;;) {
      try {
        this.execute(start);
        start = undefined;
        // Reached the end.
        if (this.targetEvent !== undefined) {
          const missing = this.targetEvent;
          this.targetEvent = undefined;
          this.pos = { step: this.program.length(), hit: 0 };
          this.pauseAt({ pos: this.pos, reason: 'goto', description: `event #${missing} is never emitted; stopped at the end` });
        } else if (this.mode !== 'run') {
          this.pos = { step: this.program.length(), hit: 0 };
          this.pauseAt({ pos: this.pos, reason: 'step', description: 'End of program' });
          // Continuing from the end terminates.
        }
        this.finish();
        if (this.waitAfterEnd() === 'disconnect') {
          unsubscribe();
          return;
        }
      } catch (e) {
        if (e instanceof Rewind) {
          this.pendingRewind = undefined;
          start = this.resolveRewind(e.target);
          continue;
        }
        if (e instanceof Disconnect) {
          unsubscribe();
          return;
        }
        throw e;
      }
    }
  }

  /** Run to `stopAt` from the nearest checkpoint before it, or continue from the current position. */
  private execute(stopAt?: Position): void {
    if (stopAt) {
      this.rewindTo(beforePosition(stopAt), (c) => c.event);
      this.target = stopAt;
    }
    const n = this.program.length();
    let lastProgress = performance.now();
    while (this.pos.step < n) {
      const step = this.pos.step;
      const resumed = this.resumeMid;
      this.resumeMid = false;
      // Long runs (re-execution to go back, a long scenario) report progress every half second.
      const now = performance.now();
      if (now - lastProgress > 500) {
        lastProgress = now;
        if (!this.progressId) {
          this.progressId = `kvm-mmu-run-${++progressSeq}`;
          this.chan.event({ event: 'progress', kind: 'start', id: this.progressId, title: this.target || this.targetEvent !== undefined || this.scanning ? 'Going back (re-executing)' : 'Running scenario' });
        }
        this.chan.event({ event: 'progress', kind: 'update', id: this.progressId, message: `statement ${step + 1} of ${n}`, percentage: Math.floor((100 * step) / n) });
      }
      if (!resumed) {
        this.pos.hit = 0;
        this.sub = 0;
        this.maybeCheckpoint(false);
        this.lineStop(step);
      }
      this.armedThisStep = this.needProbes(step);
      if (resumed) {
        // A mid-step checkpoint is only chosen with a known hit count when this step counts hits.
        this.hitKnown = this.armedThisStep && this.hitKnown;
        if (!this.armedThisStep) this.pos.hit = 0;
      } else this.hitKnown = this.armedThisStep;
      if (this.armedThisStep) probes.listen(this.onProbe);
      else probes.listen(undefined);
      let result;
      try {
        result = this.program.execute(step);
      } catch (e) {
        if (e instanceof Rewind || e instanceof Disconnect) throw e;
        this.chan.event({ event: 'output', category: 'stderr', output: `${(e as Error).message ?? e}\n` });
        result = { failure: { kind: 'error', message: String((e as Error).message ?? e) } };
      } finally {
        probes.listen(undefined);
      }
      if (this.pendingRewind) {
        const r = this.pendingRewind;
        this.pendingRewind = undefined;
        throw r;
      }
      if (this.exceptionFilters.has('audit_violation') && !this.target && !this.scanning && this.targetEvent === undefined) {
        const r = this.audit();
        if (r && r.violations.length) {
          result = { ...(result ?? {}), failure: { kind: 'audit', message: formatViolations(r).slice(0, 5).join('; ') } };
        }
      }
      if (result && !this.target && !this.scanning) {
        for (const o of result.output ?? []) {
          this.chan.event({ event: 'output', category: o.category, output: o.text.endsWith('\n') ? o.text : o.text + '\n', file: o.location?.file, line: o.location?.line });
        }
        if (result.failure && this.exceptionFilters.has(exceptionFilterFor(result.failure.kind))) {
          this.pos = { step: step + 1, hit: 0 };
          this.pauseAt({ pos: { ...this.pos }, reason: 'exception', description: result.failure.message });
          continue;
        }
      } else if (result?.failure && this.scanning && this.exceptionFilters.has(exceptionFilterFor(result.failure.kind))) {
        this.scanning.push({ step: step + 1, hit: 0 });
      }
      this.pos = { step: step + 1, hit: 0 };
    }
  }

  private pendingRewind: Rewind | undefined;
  private progressId: string | undefined;

  /**
   * Run the invariant auditor over the engine. Probes are silenced meanwhile: a violation found while
   * stopped at a probe must not start a nested stop.
   */
  private auditText(): string {
    const r = this.audit();
    if (!r) return 'this program has no engine state to audit';
    return r.violations.length ? `${r.violations.length} violation(s) in ${r.checks} checks:\n${formatViolations(r).join('\n')}` : `no violation (${r.checks} checks)`;
  }

  private audit(): AuditReport | undefined {
    const vm = (this.program.state() as { VM?: unknown }).VM;
    if (!vm || !canAudit(vm)) return undefined;
    probes.listen(undefined);
    try {
      return auditEngine(vm);
    } finally {
      if (this.armedThisStep) probes.listen(this.onProbe);
    }
  }

  private endProgress(): void {
    if (!this.progressId) return;
    this.chan.event({ event: 'progress', kind: 'end', id: this.progressId });
    this.progressId = undefined;
  }
  /** Going to an event by its index in the run (Events view, timeline). */
  private targetEvent: number | undefined;

  /** Trace consumer: stops inside the engine function that emits the awaited event. */
  private readonly onTraceEvent = (e: TraceEvent): void => {
    if (this.targetEvent === undefined || e.index !== this.targetEvent || this.pendingRewind) return;
    this.targetEvent = undefined;
    const frames = kvmStack();
    this.pauseAt({ pos: { ...this.pos }, reason: 'goto', description: `event #${e.index}: ${e.name}`, probe: { name: frames[0]?.name ?? e.name, args: { event: e.name, text: e.text, ...e.fields }, frames } });
  };

  /** Would the step need probe hits: breakpoints inside the engine, stepping in, or a target inside it. */
  private needProbes(step: number): boolean {
    if (this.target) return this.target.step === step && this.target.hit > 0;
    if (this.scanning) return true;
    if (this.fnBps.length || this.dataBps.length) return true;
    for (const f of this.exceptionFilters) if (EXCEPTION_FILTERS.find((x) => x.filter === f)?.probeGroups?.length) return true;
    if (this.mode === 'stepIn') return true;
    if ((this.mode === 'stepOver' || this.mode === 'stepOut') && this.modeDepth > 0 && this.modeFromStep === step) return true;
    return false;
  }

  /** The stop before a step runs: entry, line breakpoints, line stepping, pause. */
  private lineStop(step: number): void {
    const pos = { step, hit: 0 };
    if (this.targetEvent !== undefined) return;
    if (this.target) {
      if (this.target.step === step && this.target.hit === 0) {
        this.target = undefined;
        this.pauseAt({ pos, reason: step === 0 ? 'entry' : 'goto' });
      }
      return;
    }
    if (this.scanning) {
      if (this.scanLimit && !before(pos, this.scanLimit)) throw new ScanDone();
      if (this.lineBreakpointAt(step, false)) this.scanning.push(pos);
      return;
    }
    if (this.chan.pauseRequested()) {
      this.chan.clearPause();
      this.pauseAt({ pos, reason: 'pause' });
      return;
    }
    const bp = this.lineBreakpointAt(step, true);
    if (bp) {
      this.pauseAt({ pos, reason: 'breakpoint', description: `Breakpoint at line ${this.program.locationOf(step).line}` }, [bp.id]);
      return;
    }
    if (this.mode !== 'run') {
      this.pauseAt({ pos, reason: 'step' });
    }
  }

  private lineBreakpointAt(step: number, count: boolean): LineBp | undefined {
    const loc = this.program.locationOf(step);
    const bps = this.lineBps.get(loc.file);
    if (!bps) return undefined;
    for (const bp of bps) {
      if (bp.line !== loc.line) continue;
      if (bp.cond && !this.safeCondition(bp.cond, this.stateResolver())) continue;
      if (count) bp.hits++;
      if (count && bp.hitCond && !bp.hitCond(bp.hits)) continue;
      if (bp.logMessage !== undefined) {
        if (count) this.chan.event({ event: 'output', category: 'console', output: this.interpolate(bp.logMessage, this.stateResolver()) + '\n', file: loc.file, line: loc.line });
        continue;
      }
      return bp;
    }
    return undefined;
  }

  /** The probe listener; `this`-bound so it can be handed to the hub. */
  private readonly onProbe = (name: string, args: ProbeArgs): void => {
    if (this.pendingRewind) return;
    const pos = { step: this.pos.step, hit: ++this.pos.hit };
    if (this.targetEvent !== undefined) return;
    if (this.target) {
      if (this.target.step === pos.step && this.target.hit === pos.hit) {
        this.target = undefined;
        this.pauseAt({ pos, reason: 'goto', probe: { name, args, frames: kvmStack() } });
      }
      return;
    }
    if (this.scanning) {
      if (this.scanLimit && !before(pos, this.scanLimit)) throw new ScanDone();
      if (this.probeBreakpoint(name, args, false)) this.scanning.push(pos);
      return;
    }
    const bp = this.probeBreakpoint(name, args, true);
    if (bp) {
      this.pauseAt({ pos, reason: bp.reason, description: bp.description, probe: { name, args, frames: kvmStack() } }, bp.ids);
      return;
    }
    if (this.chan.pauseRequested()) {
      this.chan.clearPause();
      this.pauseAt({ pos, reason: 'pause', probe: { name, args, frames: kvmStack() } });
      return;
    }
    if (this.mode === 'stepIn') {
      this.pauseAt({ pos, reason: 'step', probe: { name, args, frames: kvmStack() } });
      return;
    }
    if ((this.mode === 'stepOver' || this.mode === 'stepOut') && this.modeDepth > 0 && this.modeFromStep === pos.step) {
      const frames = kvmStack();
      const depth = frames.length;
      if (this.mode === 'stepOver' ? depth <= this.modeDepth : depth < this.modeDepth) {
        this.pauseAt({ pos, reason: 'step', probe: { name, args, frames } });
      }
    }
  };

  private probeBreakpoint(name: string, args: ProbeArgs, count: boolean): { reason: string; description?: string; ids?: number[] } | undefined {
    const resolver = argsResolver(args);
    for (const bp of this.fnBps) {
      if (bp.name !== name) continue;
      if (bp.cond && !this.safeCondition(bp.cond, resolver)) continue;
      if (count) bp.hits++;
      if (count && bp.hitCond && !bp.hitCond(bp.hits)) continue;
      return { reason: 'function breakpoint', description: `Paused on ${name}`, ids: [bp.id] };
    }
    for (const bp of this.dataBps) {
      if (!bp.match(args)) continue;
      if (count) bp.hits++;
      if (count && bp.hitCond && !bp.hitCond(bp.hits)) continue;
      return { reason: 'data breakpoint', description: `${bp.dataId} changed in ${name}`, ids: [bp.id] };
    }
    const info = probes.info(name);
    for (const f of this.exceptionFilters) {
      const def = EXCEPTION_FILTERS.find((x) => x.filter === f);
      if (def?.matches && def.matches(name, info?.group ?? '', args)) {
        return { reason: 'exception', description: `${def.label}: ${name}` };
      }
    }
    return undefined;
  }

  private safeCondition(cond: ReturnType<typeof parseCondition>, resolver: Resolver): boolean {
    try {
      return conditionHolds(cond, resolver);
    } catch (e) {
      if (e instanceof ConditionError) {
        // A condition naming an argument this probe lacks is false here, not an error for the session.
        return false;
      }
      // Anything else (a BigInt too large, a stack overflow) would otherwise unwind through the engine in
      // the middle of the operation the probe sits in: false too, said once per condition.
      if (!this.badConditions.has(cond)) {
        this.badConditions.add(cond);
        this.chan.event({ event: 'output', category: 'stderr', output: `breakpoint condition cannot be evaluated (${e instanceof Error ? e.message : String(e)}); it is treated as false\n` });
      }
      return false;
    }
  }

  private readonly badConditions = new WeakSet<object>();

  private stateResolver(): Resolver {
    const state = this.program.state();
    return (path) => lookupPath(state, path);
  }

  private interpolate(msg: string, resolver: Resolver): string {
    return msg.replace(/\{([^}]+)\}/g, (_m, expr: string) => {
      try {
        const v = resolver(expr.trim().split('.'));
        return formatValue(v);
      } catch {
        return `{${expr}}`;
      }
    });
  }

  // ---------------------------------------------------------------- pausing

  /** Stop here and serve requests until the user resumes (or goes backwards, which unwinds). */
  private pauseAt(stop: StopInfo, hitBreakpointIds?: number[]): void {
    this.clockBase = this.clock();
    this.endProgress();
    this.stop = stop;
    this.pos = { ...stop.pos };
    this.vars.reset();
    this.frameIds = [];
    this.chan.event({ event: 'stopped', reason: stop.reason, description: stop.description, hitBreakpointIds });
    for (;;) {
      const m = this.chan.receive();
      const r = this.handle(m);
      if (r === 'resume') break;
      if (r === 'disconnect') throw new Disconnect();
      if (r instanceof Rewind) {
        // Unwind the engine's stack; the main loop re-executes to the target.
        this.pendingRewind = r;
        probes.listen(undefined);
        throw r;
      }
    }
    this.stop = undefined;
    this.clockStart = performance.now();
    this.chan.event({ event: 'continued' });
  }

  // ---------------------------------------------------------------- checkpoints

  private clock(): number {
    return this.clockBase + performance.now() - this.clockStart;
  }

  private readonly onBetween = (): void => {
    if ((++this.sub & BETWEEN_MASK) !== 0 || this.pendingRewind) return;
    this.maybeCheckpoint(true);
  };

  /** Take a checkpoint here if the last one is far enough behind (always at the very start). */
  private maybeCheckpoint(mid: boolean): void {
    if (!this.roots) return;
    const key = { step: this.pos.step, sub: mid ? this.sub : 0 };
    const now = this.clock();
    while (this.nextCp && cmpKey(this.nextCp, key) <= 0) {
      this.lastCpClock = now;
      this.nextCp = this.checkpoints.after(this.nextCp);
    }
    const interval = this.opts.checkpointInterval ?? Math.max(MIN_INTERVAL_MS, COST_FACTOR * this.snapCost);
    if (this.checkpoints.size > 0 && now - this.lastCpClock < interval) return;
    if (this.checkpoints.has(key)) return;
    const t0 = performance.now();
    const snap = takeSnapshot(this.roots.roots, { atoms: this.roots.atoms, base: this.lastSnap });
    this.lastSnap = snap;
    const cost = performance.now() - t0;
    this.clockStart += cost;
    // Smoothed: one snapshot that met a garbage collection should not space the next ones out.
    this.snapCost = this.snapCost ? (this.snapCost + cost) / 2 : cost;
    this.checkpoints.add({ step: key.step, sub: key.sub, hit: !mid ? 0 : this.hitKnown ? this.pos.hit : undefined, event: trace.position, clock: now, snap });
    this.lastCpClock = now;
    this.nextCp = this.checkpoints.after(key);
  }

  /** Restore the latest checkpoint `ok` accepts, or start the program over when there is none. */
  /**
   * `stopsAfter`: a lower bound of the trace position at the stop, when the program shows recent events
   * (its `history`) that checkpoints do not save; undefined when nothing is shown before the next rewind.
   */
  private rewindTo(ok: (c: Checkpoint) => boolean, stopsAfter?: (c: Checkpoint) => number): void {
    let cp = this.roots ? this.checkpoints.latest(ok) : undefined;
    const history = this.roots?.history ?? 0;
    if (cp && history > 0 && stopsAfter) {
      // Start early enough for re-execution to regenerate the events shown before the stop.
      const bound = Math.max(0, stopsAfter(cp) - history);
      cp = this.checkpoints.latest((c) => ok(c) && c.event <= bound);
    }
    // Once checkpoints exist they refer to the program's objects, so it is never reset again: the first
    // checkpoint is its start.
    if (this.roots) cp ??= this.checkpoints.all()[0];
    if (!cp) {
      this.program.reset();
      probes.reset();
      this.pos = { step: 0, hit: 0 };
      this.sub = 0;
      this.resumeMid = false;
      this.clockBase = 0;
      this.clockStart = performance.now();
      this.lastCpClock = -Infinity;
      this.nextCp = this.checkpoints.after({ step: -1, sub: 0 });
      return;
    }
    cp.snap.restore();
    this.roots!.afterRestore?.();
    this.lastSnap = cp.snap;
    this.pos = { step: cp.step, hit: cp.hit ?? 0 };
    // The program calls the between hook again for the access it stopped before.
    this.sub = cp.sub > 0 ? cp.sub - 1 : 0;
    this.resumeMid = cp.sub > 0;
    this.hitKnown = cp.hit !== undefined;
    this.clockBase = cp.clock;
    this.clockStart = performance.now();
    this.lastCpClock = cp.clock;
    this.nextCp = this.checkpoints.after(cp);
  }

  private finish(): void {
    this.endProgress();
    if (this.terminated) return;
    for (const line of this.program.summary()) this.chan.event({ event: 'output', category: 'console', output: line + '\n' });
    this.terminated = true;
    this.chan.event({ event: 'terminated', exitCode: 0 });
  }

  /** After the end the session may still go backwards (reverse continue / step back) or restart. */
  private waitAfterEnd(): 'disconnect' {
    for (;;) {
      const m = this.chan.receive();
      const r = this.handle(m);
      if (r === 'disconnect') return 'disconnect';
      if (r instanceof Rewind) {
        this.terminated = false;
        throw r;
      }
    }
  }

  private resolveRewind(t: Position | 'reverseContinue' | 'restart' | { event: number }): Position | undefined {
    this.mode = 'run';
    if (t === 'restart') return { step: 0, hit: 0 };
    if (typeof t === 'object' && 'event' in t) {
      // Re-execute from the last checkpoint before the event until it is emitted; the stop happens inside
      // its emitter. A checkpoint inside a step serves if the step will not count hits, or knows them.
      this.targetEvent = t.event;
      const event = t.event;
      this.rewindTo((c) => c.event <= event && (c.sub === 0 || c.hit !== undefined || !this.needProbes(c.step)), () => event + 1);
      return undefined;
    }
    if (t !== 'reverseContinue') return t;
    // Scan history backwards, one stretch between checkpoints at a time, for the last would-be stop
    // before the current position.
    let limit = { ...this.pos };
    let bound: Checkpoint | undefined;
    for (;;) {
      const lim = limit;
      const end = bound;
      const from = this.roots ? this.checkpoints.latest((c) => (c.sub === 0 || c.hit !== undefined) && (end ? cmpKey(c, end) < 0 : strictlyBefore(c, lim))) : undefined;
      const found = this.scan(from, lim);
      if (found.length) return found[found.length - 1];
      if (!from || (from.step === 0 && from.sub === 0)) return { step: 0, hit: 0 };
      limit = { step: from.step, hit: from.sub === 0 ? 0 : from.hit! + 1 };
      bound = from;
    }
  }

  /** Would-be stops from checkpoint `from` (or the start) up to, not including, `limit`. */
  private scan(from: Checkpoint | undefined, limit: Position): Position[] {
    const found: Position[] = [];
    this.rewindTo((c) => c === from);
    this.scanning = found;
    this.scanLimit = limit;
    try {
      this.execute();
    } catch (e) {
      if (!(e instanceof ScanDone)) {
        this.scanning = undefined;
        throw e;
      }
    } finally {
      this.scanning = undefined;
      this.scanLimit = undefined;
      this.pendingRewind = undefined;
      probes.listen(undefined);
    }
    return found;
  }

  // ---------------------------------------------------------------- requests

  private handle(m: Incoming): 'resume' | 'disconnect' | Rewind | undefined {
    try {
      const r = this.dispatch(m.req);
      if (r && typeof r === 'object' && 'control' in r) {
        this.chan.respond(m.seq, true, {});
        return (r as { control: 'resume' | 'disconnect' | Rewind }).control;
      }
      this.chan.respond(m.seq, true, r);
      return undefined;
    } catch (e) {
      if (e instanceof Rewind) throw e;
      this.chan.respond(m.seq, false, undefined, e instanceof Error ? e.message : String(e));
      return undefined;
    }
  }

  private dispatch(req: WorkerRequest): unknown {
    switch (req.cmd) {
      case 'configurationDone':
        this.configured = true;
        return {};
      case 'setBreakpoints':
        return this.setLineBreakpoints(req.file, req.lines);
      case 'setFunctionBreakpoints':
        return this.setFunctionBreakpoints(req.breakpoints);
      case 'setExceptionBreakpoints':
        this.exceptionFilters = new Set(req.filters.filter((f) => EXCEPTION_FILTERS.some((x) => x.filter === f)));
        return {};
      case 'dataBreakpointInfo':
        return this.dataBreakpointInfo(req.name, req.variablesReference);
      case 'setDataBreakpoints':
        return this.setDataBreakpoints(req.breakpoints);
      case 'continue':
        return this.resume('run');
      case 'next':
        return this.resume('stepOver');
      case 'stepIn':
        return this.resume('stepIn');
      case 'stepOut':
        return this.resume('stepOut');
      case 'stepBack': {
        const p = this.stop?.pos ?? this.pos;
        const target = p.hit > 0 ? { step: p.step, hit: p.hit - 1 } : { step: Math.max(0, p.step - 1), hit: 0 };
        return { control: new Rewind(target) };
      }
      case 'reverseContinue':
        return { control: new Rewind('reverseContinue') };
      case 'restart':
        return { control: new Rewind('restart') };
      case 'goto':
        return { control: new Rewind(decodePosition(req.position)) };
      case 'gotoEvent':
        if (!Number.isInteger(req.index) || req.index < 0) throw new Error('event index must be a non-negative integer');
        return { control: new Rewind({ event: req.index }) };
      case 'disconnect':
        return { control: 'disconnect' as const };
      case 'stackTrace':
        return this.stackTrace();
      case 'scopes':
        return this.scopes(req.frameId);
      case 'variables':
        // start/count come straight from the client: a negative or huge start made the paging loop run
        // 2^40 times (the worker spun, the session hung); page within what an array can hold
        return { variables: this.vars.children(req.variablesReference, req.hex ?? this.hexDisplay, pageArg(req.start), pageArg(req.count)) };
      case 'evaluate':
        return this.evaluate(req.expression, req.context, req.hex);
      case 'completions':
        return { targets: completeCommand(req.text, req.column, this.program) };
      case 'readMemory':
        return this.readMemory(String(req.memoryReference), pageArg(req.offset), pageArg(req.count));
      case 'writeMemory':
        throw new Error('page-table pages are written by the MMU model only; writeMemory is not supported on them');
      case 'custom':
        return this.custom(req.name, req.args);
    }
  }

  private resume(mode: Mode): { control: 'resume' } {
    this.mode = mode;
    this.modeDepth = this.stop?.probe ? this.stop.probe.frames.length : 0;
    this.modeFromStep = this.stop?.pos.step ?? this.pos.step;
    if (this.stop && !this.stop.probe && mode !== 'run') {
      // From a line: step over runs the statement; step in enters it at its first probe.
      this.modeDepth = 0;
    }
    if (this.terminated && mode !== 'run') this.mode = 'run';
    return { control: 'resume' };
  }

  private setLineBreakpoints(file: string, lines: Array<{ line: number; condition?: string; hitCondition?: string; logMessage?: string }>): { breakpoints: DebugProtocol.Breakpoint[] } {
    const out: DebugProtocol.Breakpoint[] = [];
    const bps: LineBp[] = [];
    const valid = this.validLines(file);
    for (const l of lines) {
      const id = nextBpId++;
      try {
        // a line inside a step written over several lines (a mail-wrapped event) binds to that step
        const line = valid ? (valid.within.get(l.line) ?? snapLine(valid.starts, l.line)) : l.line;
        const endLine = valid?.ends.get(line);
        bps.push({ id, line, hits: 0, cond: l.condition ? parseCondition(l.condition) : undefined, hitCond: l.hitCondition ? parseHitCondition(l.hitCondition) : undefined, logMessage: l.logMessage });
        out.push({ id, verified: line > 0, line: line > 0 ? line : l.line, endLine, message: line > 0 ? undefined : 'no statement on or after this line' });
      } catch (e) {
        out.push({ id, verified: false, line: l.line, message: (e as Error).message });
      }
    }
    this.lineBps.set(file, bps.filter((b) => b.line > 0));
    return { breakpoints: out };
  }

  /** Lines where steps of `file` start; for steps over several lines, their other lines and last lines. */
  private validLines(file: string): { starts: number[]; within: Map<number, number>; ends: Map<number, number> } | undefined {
    const lines: number[] = [];
    const within = new Map<number, number>();
    const ends = new Map<number, number>();
    for (let i = 0; i < this.program.length(); i++) {
      const loc = this.program.locationOf(i);
      if (loc.file !== file) continue;
      lines.push(loc.line);
      if (loc.endLine !== undefined && loc.endLine > loc.line) {
        ends.set(loc.line, loc.endLine);
        for (let l = loc.line + 1; l <= loc.endLine; l++) within.set(l, loc.line);
      }
    }
    return lines.length ? { starts: [...new Set(lines)].sort((a, b) => a - b), within, ends } : undefined;
  }

  private setFunctionBreakpoints(bps: Array<{ name: string; condition?: string; hitCondition?: string }>): { breakpoints: DebugProtocol.Breakpoint[] } {
    this.fnBps = [];
    const out: DebugProtocol.Breakpoint[] = [];
    for (const b of bps) {
      const id = nextBpId++;
      const known = probes.info(b.name);
      if (!known) {
        out.push({ id, verified: false, message: `no probe named '${b.name}' (try 'probes' in the debug console)` });
        continue;
      }
      try {
        this.fnBps.push({ id, name: b.name, hits: 0, cond: b.condition ? parseCondition(b.condition) : undefined, hitCond: b.hitCondition ? parseHitCondition(b.hitCondition) : undefined });
        out.push({ id, verified: true, message: known.doc });
      } catch (e) {
        out.push({ id, verified: false, message: (e as Error).message });
      }
    }
    return { breakpoints: out };
  }

  private dataBreakpointInfo(name: string, ref?: number): DebugProtocol.DataBreakpointInfoResponse['body'] {
    const id = dataIdFor(name, ref, this.stop?.probe?.args);
    if (!id) return { dataId: null, description: `${name} is not an SPTE, RMP entry or stage-2 descriptor location` };
    return { dataId: id, description: `${id} changes`, accessTypes: ['write'], canPersist: true };
  }

  private setDataBreakpoints(bps: Array<{ dataId: string; hitCondition?: string }>): { breakpoints: DebugProtocol.Breakpoint[] } {
    // setDataBreakpoints is whole-set for the client's own breakpoints only; a view's watches stay.
    this.dataBps = this.dataBps.filter((b) => b.additive);
    const out: DebugProtocol.Breakpoint[] = [];
    for (const b of bps) {
      const id = nextBpId++;
      const match = dataMatcher(b.dataId);
      if (!match) {
        out.push({ id, verified: false, message: `cannot watch '${b.dataId}'` });
        continue;
      }
      this.dataBps.push({ id, dataId: b.dataId, match, hits: 0, hitCond: b.hitCondition ? parseHitCondition(b.hitCondition) : undefined });
      out.push({ id, verified: true, message: `stops where ${b.dataId} changes` });
    }
    return { breakpoints: out };
  }

  // ---------------------------------------------------------------- inspection

  private stackTrace(): DebugProtocol.StackTraceResponse['body'] {
    const frames: DebugProtocol.StackFrame[] = [];
    this.frameIds = [];
    // A replayed event knows its real call stack; the engine's JavaScript stack does not have it.
    const own = this.program.frames?.() ?? [];
    const kvm = own.length ? own : this.stop?.probe?.frames ?? [];
    for (const f of kvm) {
      this.frameIds.push({ kind: 'kvm', frame: f });
      const id = this.frameIds.length;
      const kernel = this.opts.kernelSource ? findKernelFunction(this.opts.kernelSource, f.name) : undefined;
      const pos = engineSource(f);
      const engine = pos ? { name: shortName(pos.path), path: pos.path, origin: 'KVM MMU model' } : undefined;
      frames.push({
        id,
        name: f.name,
        source: kernel ? { name: kernel.file.split('/').pop(), path: kernel.path, origin: 'Linux source' } : engine,
        line: kernel ? kernel.line : pos?.line ?? 0,
        column: kernel ? 1 : pos?.column ?? 0,
        moduleId: engine ? `${engine.path}:${f.line}` : undefined,
        presentationHint: 'normal',
      });
    }
    this.frameIds.push({ kind: 'program' });
    const step = Math.min(this.pos.step, this.program.length() - 1);
    const loc = step >= 0 ? this.program.locationOf(step) : { file: this.program.file, line: 1 };
    const atEnd = this.pos.step >= this.program.length();
    frames.push({
      id: this.frameIds.length,
      name: atEnd ? '<end>' : this.program.labelOf(step),
      source: { name: shortName(loc.file), path: loc.file },
      line: atEnd ? loc.line + 1 : loc.line,
      column: loc.column ?? 1,
      endLine: atEnd ? undefined : loc.endLine,
      presentationHint: kvm.length ? 'subtle' : 'normal',
    });
    return { stackFrames: frames, totalFrames: frames.length };
  }

  private scopes(frameId: number): DebugProtocol.ScopesResponse['body'] {
    const scopes: DebugProtocol.Scope[] = [];
    const frame = this.frameIds[frameId - 1];
    const probe = this.stop?.probe;
    // Without any KVM frame (a replayed event with no recorded stack) the arguments go with the only frame.
    if (probe && ((frame?.kind === 'kvm' && (frame.frame === probe.frames[0] || (probe.frames.length === 0 && frameId === 1))) || (frame?.kind === 'program' && this.frameIds.length === 1))) {
      scopes.push({ name: `Arguments of ${probe.name}`, variablesReference: this.vars.addObject(probe.args), expensive: false, presentationHint: 'arguments' });
    } else if (probe && frame?.kind === 'kvm') {
      scopes.push({ name: `Probe ${probe.name} (innermost)`, variablesReference: this.vars.addObject(probe.args), expensive: false, presentationHint: 'arguments' });
    }
    const state = this.program.state();
    for (const [name, value] of Object.entries(state)) {
      if (value === undefined) continue;
      scopes.push({ name, variablesReference: typeof value === 'object' && value !== null ? this.vars.addObject(value) : 0, expensive: false });
    }
    return { scopes };
  }

  private evaluate(expression: string, context: string | undefined, hexOn?: boolean): DebugProtocol.EvaluateResponse['body'] {
    const expr = expression.trim();
    const args = this.stop?.probe?.args;
    // Hover and watch: a name or dotted path over the probe's arguments, then the program state.
    if (context !== 'repl' || /^[A-Za-z_][\w.[\]]*$/.test(expr)) {
      const path = expr.replace(/\[(\d+)\]/g, '.$1').split('.');
      const v = (args && lookupPath(args, path)) ?? lookupPath(this.program.state(), path);
      if (v !== undefined) {
        const r = this.vars.render(path[path.length - 1], v, hexOn ?? false, expr);
        return { result: r.value, variablesReference: r.variablesReference, indexedVariables: r.indexedVariables, memoryReference: r.memoryReference };
      }
      if (context !== 'repl') throw new Error(`'${expr}' is not available here`);
    }
    const out = evaluateCommand(expr, { args, state: this.program.state(), conditionResolver: args ? argsResolver(args) : this.stateResolver(), query: this.program.query?.bind(this.program), audit: () => this.auditText() });
    return { result: out, variablesReference: 0 };
  }

  private readMemory(ref: string, offset: number, count: number): DebugProtocol.ReadMemoryResponse['body'] {
    const table = this.vars.memoryRefs.get(ref);
    if (!table) return { address: '0x0', unreadableBytes: count };
    const bytes = new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
    const start = Math.max(0, offset);
    const end = Math.min(bytes.length, start + count);
    const data = Buffer.from(bytes.subarray(start, end)).toString('base64');
    return { address: '0x' + start.toString(16), data, unreadableBytes: count - (end - start) };
  }

  private custom(name: string, args: Record<string, unknown>): unknown {
    switch (name) {
      case 'kvmMmu/state':
        return { position: encodePosition(this.pos), stopped: !!this.stop, probe: this.stop?.probe?.name, step: this.pos.step, length: this.program.length() };
      case 'kvmMmu/probes':
        return { probes: probes.all() };
      case 'kvmMmu/setHex':
        this.hexDisplay = !!args.hex;
        return {};
      case 'kvmMmu/audit': {
        const r = this.audit();
        return r ? { checks: r.checks, violations: r.violations, text: formatViolations(r) } : { checks: 0, violations: [], text: ['this program has no engine state to audit'] };
      }
      case 'kvmMmu/addDataBreakpoint':
      case 'kvmMmu/removeDataBreakpoint':
      case 'kvmMmu/dataBreakpoints':
        return additiveDataBreakpoint(this.dataBps, name, args, () => nextBpId++, dataMatcher);
      // The webview panels' own readings (views part A); the views' queries live in queries.ts.
      case 'kvmMmu/vcpuTimeline':
        // Where the session stands, so the timeline marks the stop (a replayed trace lists events past it).
        return vcpuTimeline(this.program, { ...args, stopStep: this.pos.step });
      case 'kvmMmu/stage2Map':
        return stage2Map(this.program, args);
      default:
        return handleQuery(name, args, { program: this.program });
    }
  }
}

/** A paging argument from the client as a non-negative integer no larger than an array index (else 0). */
function pageArg(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? Math.min(v, 2 ** 32 - 1) : 0;
}

class Disconnect extends Error {}
class ScanDone extends Error {}

/** The engine's own source position of a frame: the TypeScript file when the bundle has a source map. */
function engineSource(f: KvmFrame): { path: string; line: number; column: number } | undefined {
  if (!f.file) return undefined;
  const path = f.file.replace(/^file:\/\//, '');
  try {
    const map = findSourceMap(path);
    const e = map?.findEntry(f.line - 1, f.column - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number } | undefined;
    if (e && e.originalSource && e.originalLine !== undefined) {
      const orig = e.originalSource.startsWith('file://') ? fileURLToPath(e.originalSource) : resolvePath(dirname(path), e.originalSource);
      if (existsSync(orig)) return { path: orig, line: e.originalLine + 1, column: (e.originalColumn ?? 0) + 1 };
    }
  } catch {
    // No source map: the bundle position is still a real place in the shipped code.
  }
  return { path, line: f.line, column: f.column };
}

function before(a: Position, b: Position): boolean {
  return a.step < b.step || (a.step === b.step && a.hit < b.hit);
}

/** Checkpoints from which re-execution reaches position `t` (a mid-step one in t's step needs its hit count). */
function beforePosition(t: Position): (c: Checkpoint) => boolean {
  return (c) => c.step < t.step || (c.step === t.step && (c.sub === 0 || (t.hit > 0 && c.hit !== undefined && c.hit < t.hit)));
}

/** The checkpoint lies before position `p` (one inside p's step with an unknown hit count never does). */
function strictlyBefore(c: Checkpoint, p: Position): boolean {
  if (c.step !== p.step) return c.step < p.step;
  if (c.sub === 0) return p.hit > 0;
  return c.hit !== undefined && c.hit < p.hit;
}

/** Positions travel as one number: step * 2^24 + hit (enough for 2^24 hits in one statement). */
export function encodePosition(p: Position): number {
  return p.step * 0x100_0000 + p.hit;
}

export function decodePosition(n: number): Position {
  return { step: Math.floor(n / 0x100_0000), hit: n % 0x100_0000 };
}

function snapLine(valid: number[], line: number): number {
  for (const v of valid) if (v >= line) return v;
  return -1;
}

function shortName(file: string): string {
  return file.replace(/^file:\/\//, '').split('/').pop() ?? file;
}

export function lookupPath(root: unknown, path: string[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || v === undefined) return undefined;
    if (v instanceof Map) v = v.get(p) ?? v.get(Number(p));
    else if (typeof v === 'object') v = (v as Record<string, unknown>)[p];
    else return undefined;
  }
  return v;
}

function argsResolver(args: ProbeArgs): Resolver {
  return (path) => {
    const direct = lookupPath(args, path);
    if (direct !== undefined) return direct;
    // `gfn` also finds `fault.gfn`: conditions name fields the way the kernel's struct does.
    for (const v of Object.values(args)) {
      if (v && typeof v === 'object') {
        const nested = lookupPath(v, path);
        if (nested !== undefined) return nested;
      }
    }
    return derived(args, path);
  };
}

/** Derived names usable in conditions: `spte.writable`, `role.direct` (through the registered decoders). */
function derived(args: ProbeArgs, path: string[]): unknown {
  if (path.length !== 2) return undefined;
  const base = lookupPath(args, [path[0]]);
  if (base === undefined) return undefined;
  return decodedProperty(path[0], base, path[1]);
}

function decodedProperty(key: string, value: unknown, prop: string): unknown {
  const d = findDecoder(key, value);
  if (!d) return undefined;
  const f = d.fields(key, value).find((x) => x.name === prop || x.name.toLowerCase() === prop.toLowerCase());
  if (f) return f.value;
  const props = (d as { properties?: (k: string, v: unknown) => Record<string, unknown> }).properties?.(key, value);
  return props?.[prop];
}

function formatValue(v: unknown): string {
  if (typeof v === 'number') return '0x' + v.toString(16);
  if (v && typeof v === 'object' && 'lo' in v && 'hi' in v) {
    const u = v as { lo: number; hi: number };
    return '0x' + ((BigInt(u.hi >>> 0) << 32n) | BigInt(u.lo >>> 0)).toString(16);
  }
  return String(v);
}

/**
 * Data breakpoint ids: `spte:AS:GFN:LEVEL` (an SPTE by address space, gfn and level), `sptep:TABLEPFN:INDEX`,
 * `rmp:PFN`, `s2:IPA:LEVEL`. They match value-change probes by those arguments.
 */
export function dataMatcher(dataId: string): ((args: ProbeArgs) => boolean) | undefined {
  const parts = dataId.split(':');
  const num = (s: string) => Number.parseInt(s, 16);
  const changed = (a: ProbeArgs) => {
    const o = a.old_spte ?? a.old ?? a.old_entry ?? a.old_desc;
    const n = a.new_spte ?? a.new ?? a.new_entry ?? a.new_desc;
    if (o === undefined || n === undefined) return false;
    const uo = asU64(o);
    const un = asU64(n);
    if (uo && un) return uo.lo !== un.lo || uo.hi !== un.hi;
    return JSON.stringify(o) !== JSON.stringify(n);
  };
  switch (parts[0]) {
    case 'spte': {
      if (parts.length !== 4) return undefined;
      const as = +parts[1], gfn = num(parts[2]), level = +parts[3];
      return (a) => changed(a) && Number(a.gfn) === gfn && Number(a.level) === level && (a.as_id === undefined || Number(a.as_id) === as);
    }
    case 'sptep': {
      if (parts.length !== 2) return undefined;
      return (a) => changed(a) && a.sptep !== undefined && String(a.sptep) === parts[1];
    }
    case 'rmp': {
      if (parts.length !== 2) return undefined;
      const pfn = num(parts[1]);
      return (a) => changed(a) && Number(a.pfn) === pfn;
    }
    case 's2': {
      if (parts.length !== 3) return undefined;
      const ipa = num(parts[1]), level = +parts[2];
      // Stage-2 visitors carry the walk position in their visitor context (ctx.addr, ctx.level).
      return (a) => {
        const c = (a.ctx ?? a) as ProbeArgs;
        return changed(a) && Number(c.addr ?? c.ipa) === ipa && Number(c.level) === level;
      };
    }
  }
  return undefined;
}

/** The data id for a variable the user picked at a stop ("Break on Value Change"). */
function dataIdFor(name: string, _ref: number | undefined, args: ProbeArgs | undefined): string | undefined {
  if (/^(spte|sptep|old_spte|new_spte)$/.test(name) && args && args.gfn !== undefined && args.level !== undefined) {
    return `spte:${Number(args.as_id ?? 0)}:${Number(args.gfn).toString(16)}:${Number(args.level)}`;
  }
  if (/^(rmp|old_entry|new_entry)$/.test(name) && args && args.pfn !== undefined) return `rmp:${Number(args.pfn).toString(16)}`;
  const c = (args?.ctx ?? args) as ProbeArgs | undefined;
  if (/^(old_desc|new_desc|desc|ptep|old|new)$/.test(name) && c && (c.addr ?? c.ipa) !== undefined && c.level !== undefined) {
    return `s2:${Number(c.addr ?? c.ipa).toString(16)}:${Number(c.level)}`;
  }
  if (/^(spte|rmp|s2):/.test(name) && dataMatcher(name)) return name;
  return undefined;
}
