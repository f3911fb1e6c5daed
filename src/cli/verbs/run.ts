/**
 * `kvm-mmu run FILE [--json] [--set NAME=VALUE]... [--trace-out FILE]`: run a scenario and check its
 * expectations. Exit 0 when every expect holds, 1 when one fails (or a statement could not run),
 * 2 on bad input (arguments, syntax).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatDiagnostic, hasErrors } from '../../scenario/diagnostics';
import { createEngine } from '../../scenario/engines';
import type { FieldValue, Fields } from '../../scenario/engine_api';
import { loadScenario } from '../../scenario/load';
import { nodeReader } from '../../scenario/node_reader';
import { parseOverrides, ScenarioRunner } from '../../scenario/runner';
import { formatTraceLine } from '../../scenario/trace_text';

const USAGE = `usage: kvm-mmu run FILE [--json] [--set NAME=VALUE]... [--trace-out FILE]

Run a scenario (.kvmmmu) against the model and check its expect lines.
  --json             print the results as one JSON object
  --set NAME=VALUE   override a param or variant line (repeatable), e.g. --set eager_page_split=N
  --trace-out FILE   write the tracepoint events in raw tracefs 'trace' format
exit status: 0 all expectations hold, 1 one failed, 2 bad input`;

function fail2(msg: string): number {
  process.stderr.write(`kvm-mmu run: ${msg}\n`);
  return 2;
}

function jsonValue(v: FieldValue): number | string | boolean {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (typeof v === 'number' && !Number.isSafeInteger(v)) return String(v);
  return v;
}

function jsonFields(f: Fields): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(f)) out[k] = jsonValue(v);
  return out;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        set: { type: 'string', multiple: true },
        'trace-out': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    return fail2(`${e instanceof Error ? e.message.split('\n')[0] : String(e)}; see 'kvm-mmu run --help'`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (positionals.length !== 1) return fail2(positionals.length ? `one scenario file, not ${positionals.length}` : "missing FILE; see 'kvm-mmu run --help'");
  const file = positionals[0]!;
  const overrides = parseOverrides(values.set ?? []);
  if (typeof overrides === 'string') return fail2(overrides);

  const src = nodeReader.read(file);
  if (src === undefined) return fail2(`cannot read ${file}`);
  const program = loadScenario(file, nodeReader, src);
  for (const d of program.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
  if (hasErrors(program.diagnostics)) return 2;

  let traceFd: number | undefined;
  const traceOut = values['trace-out'];
  if (traceOut !== undefined) {
    try {
      traceFd = openSync(traceOut, 'w');
    } catch (e) {
      return fail2(`cannot write ${traceOut}: ${e instanceof Error ? (e as NodeJS.ErrnoException).code ?? e.message : String(e)}`);
    }
  }
  let pending: string[] = [];
  let seq = 0;
  const flush = () => {
    if (traceFd !== undefined && pending.length) writeSync(traceFd, pending.join(''));
    pending = [];
  };
  const runner = new ScenarioRunner(program, {
    overrides,
    engineFactory: createEngine,
    ...(traceFd !== undefined
      ? {
          onEvent: (e, task) => {
            pending.push(formatTraceLine(e, seq++, runner.config.arch === 'arm64' ? 'qemu-system-aar' : 'qemu-system-x86', task) + '\n');
            if (pending.length >= 4096) flush();
          },
        }
      : {}),
  });
  let stats: Record<string, number> = {};
  try {
    runner.run();
    // Before dispose: tearing the VM down zaps every mapping and would change the page counts.
    stats = runner.stats();
  } finally {
    flush();
    if (traceFd !== undefined) closeSync(traceFd);
    runner.dispose();
  }

  const passed = runner.expects.filter((e) => e.ok).length;
  const failed = runner.expects.length - passed;
  const ok = runner.ok;
  if (values.json) {
    const byName: Record<string, number> = {};
    for (const [k, v] of [...runner.eventCounts].sort((a, b) => a[0].localeCompare(b[0]))) byName[k] = v;
    const out = {
      ok,
      file,
      engine: runner.engine?.name ?? null,
      config: runner.config,
      expects: {
        passed,
        failed,
        results: runner.expects.map((e) => ({ file: e.file, line: e.line, text: e.text, ok: e.ok, ...(e.ok ? {} : { message: e.message }) })),
      },
      problems: runner.problems.filter((p) => p.code !== 'expect-failed').map((p) => ({ file: p.file, line: p.line, col: p.col, severity: p.severity, code: p.code, message: p.message, hint: p.hint })),
      stats,
      exits: runner.exits.map((x) => ({ file: x.file, line: x.line, vcpu: x.vcpu, reason: x.reason, ...jsonFields(x.fields) })),
      events: { total: runner.eventTotal, byName },
    };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    for (const p of runner.problems) process.stdout.write(formatDiagnostic(p) + '\n');
    const others = runner.problems.filter((p) => p.code !== 'expect-failed' && p.severity === 'error').length;
    process.stdout.write(`${file}: ${runner.expects.length} expect${runner.expects.length === 1 ? '' : 's'}: ${passed} passed, ${failed} failed` +
      (others ? `; ${others} statement${others === 1 ? '' : 's'} could not run as written` : '') + `; ${runner.eventTotal} trace events\n`);
  }
  return ok ? 0 : 1;
}
