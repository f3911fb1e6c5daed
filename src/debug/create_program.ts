/** Builds the program a launch configuration names: a scenario (`program`) or a captured trace (`trace`). */
import { existsSync } from 'node:fs';
import type { DebugProgram } from './program';
import type { LaunchOptions } from './protocol';
import { ScenarioProgram } from './scenario_program';

export function createProgram(o: LaunchOptions): DebugProgram {
  if (o.program && o.trace) throw new Error('a launch takes "program" or "trace", not both');
  if (o.program) {
    if (!existsSync(o.program)) throw new Error(`scenario not found: ${o.program}`);
    const overrides: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.variants ?? {})) overrides[k] = String(v);
    for (const [k, v] of Object.entries(o.parameters ?? {})) overrides[k] = String(v);
    return new ScenarioProgram(o.program, overrides);
  }
  if (o.trace) {
    throw new Error('trace replay sessions arrive with the trace replay issue; use `kvm-mmu replay FILE` meanwhile');
  }
  throw new Error('nothing to run: set "program" (a .kvmmmu scenario) or "trace" (a captured trace)');
}
