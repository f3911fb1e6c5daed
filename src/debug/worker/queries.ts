/**
 * Custom requests the views use to read MMU state from a paused (or finished) session. Each answers
 * from the program's engine through `DebugProgram.query` (the same subjects `expect` uses), paged.
 */
import type { DebugProgram } from '../program';
import { configOf, loadScenario, nodeReader } from '../../scenario';

export interface QueryContext {
  program: DebugProgram;
}

/** What the views need to know about the VM to choose which of them apply (context keys). */
export interface VmSummary {
  arch: string;
  vendor: string;
  tdp: boolean;
  tdpLevels: number;
  /** default | sw_protected | snp | tdx | protected */
  type: string;
  mode: string;
  vcpus: number;
}

const vmCache = new WeakMap<DebugProgram, VmSummary | null>();

function vmOf(program: DebugProgram): VmSummary | null {
  if (vmCache.has(program)) return vmCache.get(program) ?? null;
  let r: VmSummary | null = null;
  if (program.kind === 'scenario') {
    try {
      const loaded = loadScenario(program.file, nodeReader);
      const c = configOf(loaded.statements);
      r = { arch: c.arch, vendor: c.vendor, tdp: c.tdp, tdpLevels: c.tdpLevels, type: c.type, mode: c.mode, vcpus: c.vcpus };
    } catch {
      r = null;
    }
  }
  vmCache.set(program, r);
  return r;
}

function int(v: unknown, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : dflt;
}

export function handleQuery(name: string, args: Record<string, unknown>, ctx: QueryContext): unknown {
  switch (name) {
    case 'kvmMmu/query': {
      const subject = String(args.subject ?? '');
      const selector = (args.selector ?? {}) as Record<string, string | number | boolean>;
      if (!ctx.program.query) throw new Error('this program cannot answer queries');
      const rows = ctx.program.query(subject, selector);
      if (rows === undefined) throw new Error(`the engine cannot answer '${subject}' yet`);
      const start = int(args.start, 0);
      const count = int(args.count, 500, 0, 100_000);
      return { total: rows.length, rows: rows.slice(start, start + count) };
    }
    case 'kvmMmu/events': {
      const start = int(args.start, 0);
      const count = int(args.count, 200, 0, 10_000);
      return ctx.program.events ? ctx.program.events(start, count, typeof args.filter === 'string' && args.filter !== '' ? args.filter : undefined) : { total: 0, first: 0, events: [] };
    }
    case 'kvmMmu/stepLocation': {
      // Where a step (statement or trace line) is, for views that reveal the source of an event.
      const step = int(args.step, -1, -1);
      if (step < 0 || step >= ctx.program.length()) throw new Error(`no step ${String(args.step)}`);
      const loc = ctx.program.locationOf(step);
      return { step, file: loc.file, line: loc.line, column: loc.column ?? 1, label: ctx.program.labelOf(step) };
    }
    case 'kvmMmu/vm':
      return { kind: ctx.program.kind, file: ctx.program.file, vm: vmOf(ctx.program) };
    default:
      throw new Error(`unknown request ${name}`);
  }
}
