/**
 * Shared plumbing of the `kvm-mmu decode <kind>` sub-verbs: argument errors, value parsing and the
 * plain-text table. Every sub-verb exits 2 with one line on stderr for bad input and never prints a
 * stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { hex0x, parseU64, type U64 } from '../../../engine/bits/u64';

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs (strict) that turns its errors into UsageError. */
export function parseDecodeArgs<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/, ''));
  }
}

/** The single VALUE positional: hex with or without 0x (underscores allowed), up to 64 bits. */
export function parseValue(positionals: string[], what: string): U64 {
  if (positionals.length === 0) throw new UsageError(`missing ${what} VALUE`);
  if (positionals.length > 1) throw new UsageError(`expected one ${what} VALUE, got ${positionals.length}`);
  const text = positionals[0]!;
  if (!/^(0x)?[0-9a-f_]+$/i.test(text.trim())) throw new UsageError(`not a hex value: '${text}'`);
  const v = parseU64(text, 16);
  if (!v) throw new UsageError(`not a 64-bit hex value: '${text}'`);
  return v;
}

/** A decimal integer option within [min, max]. */
export function intOption(text: string | undefined, name: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`--${name} expects an integer, got '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

export function hexOf(v: U64): string {
  return hex0x(v.lo, v.hi);
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function write(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

/** Run a sub-verb body: UsageError -> one line on stderr and exit 2. */
export async function runDecode(kind: string, usage: string, argv: string[], body: (argv: string[]) => number): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    write(usage);
    return 0;
  }
  try {
    return body(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`kvm-mmu decode ${kind}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
