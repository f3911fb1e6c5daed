/**
 * Custom requests the views use to read MMU state from a paused (or finished) session. Each answers
 * from the program's engine through `DebugProgram.query` (the same subjects `expect` uses), paged.
 */
import type { DebugProgram } from '../program';

export interface QueryContext {
  program: DebugProgram;
}

export function handleQuery(name: string, args: Record<string, unknown>, ctx: QueryContext): unknown {
  switch (name) {
    case 'kvmMmu/query': {
      const subject = String(args.subject ?? '');
      const selector = (args.selector ?? {}) as Record<string, string | number | boolean>;
      if (!ctx.program.query) throw new Error('this program cannot answer queries');
      const rows = ctx.program.query(subject, selector);
      if (rows === undefined) throw new Error(`the engine cannot answer '${subject}' yet`);
      const start = Number(args.start ?? 0);
      const count = Number(args.count ?? 500);
      return { total: rows.length, rows: rows.slice(start, start + count) };
    }
    case 'kvmMmu/events': {
      const start = Number(args.start ?? 0);
      const count = Number(args.count ?? 200);
      return ctx.program.events ? ctx.program.events(start, count, typeof args.filter === 'string' ? args.filter : undefined) : { total: 0, events: [] };
    }
    default:
      throw new Error(`unknown request ${name}`);
  }
}
