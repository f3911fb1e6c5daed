/**
 * What the debugger executes: a scenario (statements) or a replayed trace (events). Both are a sequence
 * of steps that can be re-executed deterministically from the start, which is what reverse execution
 * relies on: going back is resetting and running forward to an earlier position.
 */

import type { KvmFrame } from '../engine/probes';
import type { RebuiltMmu } from './worker/trace_views';

export interface SourceLocation {
  file: string;
  /** 1-based. */
  line: number;
  column?: number;
  /** Last line of a step written over several lines (a mail-wrapped event), when it is not `line`. */
  endLine?: number;
}

export interface StepResult {
  /** Lines for the debug console (expect results, exits, diagnostics). */
  output?: Array<{ category: 'stdout' | 'stderr' | 'console'; text: string; location?: SourceLocation }>;
  /** An `expect` failed or the statement raised an exit/diagnostic the user should stop at. */
  failure?: { kind: string; message: string };
}

export interface DebugProgram {
  readonly kind: 'scenario' | 'trace';
  /** Main file (scenario or capture). */
  readonly file: string;
  /** Number of steps (statements or events). */
  length(): number;
  locationOf(step: number): SourceLocation;
  /** Short text of the step for the bottom stack frame. */
  labelOf(step: number): string;
  /** Execute step i; steps run in order 0..length-1 after `reset()`. May throw; the error becomes output. */
  execute(step: number): StepResult | void;
  /** Back to the state before step 0, deterministically. */
  reset(): void;
  /**
   * What a checkpoint saves (see src/engine/snapshot.ts): the objects holding the program's whole mutable
   * state, and a test for parts not recorded. Without it, going back re-executes from the start.
   */
  checkpointRoots?(): {
    roots: object[];
    atoms?: (o: object) => boolean;
    /** Called after a checkpoint is restored (for state the snapshot leaves out on purpose). */
    afterRestore?: () => void;
    /** How many events before a stop re-execution must regenerate (a window of recent events it shows). */
    history?: number;
  };
  /**
   * Install (undefined: remove) a function the program calls inside a long step, between two of its
   * accesses, where a checkpoint can be taken; after such a checkpoint is restored, `execute(step)`
   * finishes that step.
   */
  onBetween?(fn: (() => void) | undefined): void;
  /** Named roots of inspectable state (vCPU, VM, ...) for the Variables view and custom requests. */
  state(): Record<string, unknown>;
  /** Final summary (expects, exits) printed when the program ends. */
  summary(): string[];
  /** MMU state by subject (spte, sp, roots, root, rmp, stage2, memslot, ...), as `expect` sees it. */
  query?(subject: string, selector: Record<string, string | number | boolean>): Array<Record<string, unknown>> | undefined;
  /** Tracepoint events emitted so far, oldest first (a bounded window of the most recent ones). */
  events?(start: number, count: number, filter?: string, opts?: EventsOptions): { total: number; first: number; events: ProgramEvent[] };
  /**
   * The call stack of the current step when the program knows it better than the engine's JavaScript
   * stack (a replayed event's recorded `<stack trace>`), innermost first; empty when it does not.
   */
  frames?(): KvmFrame[];
  /** A replayed trace: the MMU rebuilt from the events replayed so far, which the views show. */
  rebuilt?(): RebuiltMmu;
}

export interface EventsOptions {
  /** false: leave `text` empty (a view that only counts events need not format a million payloads). */
  text?: boolean;
}

export interface ProgramEvent {
  /** Index of the event in the whole run (stable across re-execution). */
  index: number;
  name: string;
  vcpu: number;
  text: string;
  /** Step (statement) that emitted it. */
  step: number;
  /** The task that emitted it, where the program knows (a captured trace's `COMM-PID` prefix). */
  pid?: number;
}
