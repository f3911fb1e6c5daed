/** Builds the program a launch configuration names: a scenario (`program`) or a captured trace (`trace`). */
import { existsSync } from 'node:fs';
import type { DebugProgram } from './program';
import type { LaunchOptions } from './protocol';
import { ScenarioProgram } from './scenario_program';
import { TraceProgram } from './trace_program';
import { parseKernelVersion } from '../trace/kernel_version';

/** `onProgress` reports reading a large capture (bytes read, file size). */
export function createProgram(o: LaunchOptions, onProgress?: (bytesRead: number, total: number) => void): DebugProgram {
  if (o.program && o.trace) throw new Error('a launch takes "program" or "trace", not both');
  if (o.program) {
    if (!existsSync(o.program)) throw new Error(`scenario not found: ${o.program}`);
    const overrides: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.variants ?? {})) overrides[k] = String(v);
    for (const [k, v] of Object.entries(o.parameters ?? {})) overrides[k] = String(v);
    return new ScenarioProgram(o.program, overrides);
  }
  if (o.trace) {
    if (!existsSync(o.trace)) throw new Error(`trace not found: ${o.trace}`);
    const kernel = o.parameters?.['kernel'];
    if (kernel !== undefined) {
      const k = parseKernelVersion(String(kernel));
      if (!k) throw new Error(`parameters.kernel: '${kernel}' is not a kernel version (e.g. 6.18)`);
      return new TraceProgram(o.trace, { kernel: k, onProgress });
    }
    return new TraceProgram(o.trace, { onProgress });
  }
  throw new Error('nothing to run: set "program" (a .kvmmmu scenario) or "trace" (a captured trace)');
}
