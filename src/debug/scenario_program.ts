/** A scenario as a debug program: one step per statement, includes expanded. */
import { formatDiagnostic, loadScenario, nodeReader, ScenarioRunner, type Program as Loaded } from '../scenario';
import type { DebugProgram, ProgramEvent, SourceLocation, StepResult } from './program';
import { EventWindow, trace, type TraceEvent } from '../engine/trace_sink';

/** Events kept for the Events view: the most recent ones (older ones are reached by re-execution). */
const EVENT_WINDOW = 20_000;

export class ScenarioLoadError extends Error {
  constructor(readonly diagnostics: string[]) {
    super(diagnostics.join('\n'));
  }
}

export class ScenarioProgram implements DebugProgram {
  readonly kind = 'scenario' as const;
  private readonly loaded: Loaded;
  private runner: ScenarioRunner;
  /** The most recent events and the statement of each, at slot `index % EVENT_WINDOW`. */
  private readonly ring = new EventWindow(EVENT_WINDOW);
  private readonly ringSteps = new Int32Array(EVENT_WINDOW);
  /** Events before this index may be missing from the ring: checkpoints do not save it (see checkpointRoots). */
  private ringFrom = 0;
  /** Events recorded, which is also the index the next one gets. */
  private total = 0;
  private currentStep = 0;
  private readonly unsubscribe: () => void;
  private between: (() => void) | undefined;

  constructor(
    readonly file: string,
    private readonly overrides: Record<string, string>,
  ) {
    this.loaded = loadScenario(file, nodeReader);
    const errors = this.loaded.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length) throw new ScenarioLoadError(errors.map(formatDiagnostic));
    this.runner = this.newRunner();
    this.unsubscribe = trace.subscribe((e) => this.record(e));
  }

  private newRunner(): ScenarioRunner {
    return new ScenarioRunner(this.loaded, { overrides: this.overrides, betweenAccesses: () => this.between?.() });
  }

  checkpointRoots(): { roots: object[]; atoms: (o: object) => boolean; afterRestore: () => void; history: number } {
    // The loaded program (statements, specs) never changes. The event ring is not saved: a copy per
    // checkpoint would keep tens of thousands of events alive each, which the garbage collector pays for
    // on every major collection. Instead re-execution starts at least EVENT_WINDOW events before the
    // stop (`history`), which refills it.
    return {
      roots: [this],
      atoms: (o) => o === this.loaded || o === this.ring || o === this.ringSteps,
      afterRestore: () => {
        this.ringFrom = this.total;
      },
      history: EVENT_WINDOW,
    };
  }

  onBetween(fn: (() => void) | undefined): void {
    this.between = fn;
  }

  private record(e: TraceEvent): void {
    this.total++;
    // Kept as numbers where the event allows: its text is formatted only if the Events view asks for it.
    const slot = e.index % EVENT_WINDOW;
    this.ring.set(slot, e);
    this.ringSteps[slot] = this.currentStep;
  }

  events(start: number, count: number, filter?: string): { total: number; first: number; events: ProgramEvent[] } {
    const from = Math.max(this.ringFrom, this.total - EVENT_WINDOW);
    const row = (i: number, e: TraceEvent): ProgramEvent => ({ index: e.index, name: e.name, vcpu: e.vcpu, text: e.text, step: this.ringSteps[i % EVENT_WINDOW]! });
    if (!filter) {
      // Only the page asked for is rebuilt from the window (it keeps numbers, not event objects).
      const events: ProgramEvent[] = [];
      const first = this.ring.get(from % EVENT_WINDOW);
      for (let i = from + Math.max(0, start); i < this.total && events.length < count; i++) {
        const e = this.ring.get(i % EVENT_WINDOW);
        if (e) events.push(row(i, e));
      }
      return { total: Math.max(0, this.total - from), first: from < this.total ? first?.index ?? 0 : 0, events };
    }
    const matching: ProgramEvent[] = [];
    let first: number | undefined;
    for (let i = from; i < this.total; i++) {
      const e = this.ring.get(i % EVENT_WINDOW);
      if (!e) continue;
      first ??= e.index;
      if (e.name.includes(filter) || e.text.includes(filter)) matching.push(row(i, e));
    }
    return { total: matching.length, first: first ?? 0, events: matching.slice(start, start + count) };
  }

  query(subject: string, selector: Record<string, string | number | boolean>): Array<Record<string, unknown>> | undefined {
    const rows = this.runner.engine?.query?.(subject, selector);
    if (!rows) return rows;
    // BigInt values (64-bit SPTEs) travel as hex strings.
    return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? '0x' + v.toString(16) : v])));
  }

  length(): number {
    return this.loaded.statements.length;
  }

  locationOf(step: number): SourceLocation {
    const st = this.loaded.statements[step];
    return st ? { file: st.file, line: st.line, column: st.col } : { file: this.file, line: 1 };
  }

  labelOf(step: number): string {
    const st = this.loaded.statements[step];
    return st ? st.text : '<end>';
  }

  execute(step: number): StepResult {
    const at = this.runner.resuming ? this.runner.pc - 1 : this.runner.pc;
    if (at !== step) throw new Error(`internal: scenario at statement ${at}, asked for ${step}`);
    this.currentStep = step;
    const r = this.runner.step();
    const output: NonNullable<StepResult['output']> = [];
    for (const d of r.diagnostics) {
      output.push({ category: d.severity === 'error' ? 'stderr' : 'console', text: formatDiagnostic(d), location: { file: d.file, line: d.line, column: d.col } });
    }
    if (r.outcome.exit) {
      const e = r.outcome.exit;
      output.push({ category: 'console', text: `vcpu ${e.vcpu}: ${e.reason} ${Object.entries(e.fields).map(([k, v]) => `${k}=${typeof v === 'number' ? '0x' + v.toString(16) : String(v)}`).join(' ')}` });
    }
    const failed = r.diagnostics.find((d) => d.severity === 'error');
    return {
      output,
      failure: failed ? { kind: failed.code.startsWith('expect') || r.statement.spec.group === 'expect' ? 'expect' : 'error', message: failed.message } : undefined,
    };
  }

  reset(): void {
    this.runner.dispose();
    this.ring.clear();
    this.ringFrom = 0;
    this.total = 0;
    this.currentStep = 0;
    this.runner = this.newRunner();
  }

  state(): Record<string, unknown> {
    const r = this.runner;
    return {
      VM: r.engine ?? { config: r.config },
      Statistics: r.stats(),
      Exits: r.exits,
      Expectations: { passed: r.expects.filter((e) => e.ok).length, failed: r.expects.filter((e) => !e.ok).length, results: r.expects },
    };
  }

  summary(): string[] {
    const r = this.runner;
    const passed = r.expects.filter((e) => e.ok).length;
    const failed = r.expects.length - passed;
    return [`scenario ${this.file}: ${passed} expectation(s) passed, ${failed} failed, ${r.exits.length} exit(s), ${r.eventTotal} tracepoint event(s)`];
  }

  dispose(): void {
    this.unsubscribe();
    this.runner.dispose();
  }
}
