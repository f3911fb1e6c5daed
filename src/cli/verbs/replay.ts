/**
 * `kvm-mmu replay FILE [--json] [--kernel VERSION] [--fault-loop N] [--storm N] [--max N] [--max-sptes N]`: parse a real
 * kvm/kvmmmu capture (raw trace, trace-cmd report, perf script, mail-wrapped or trimmed), rebuild the
 * SPTE / shadow-page state and run the detectors. Exit 0 on a completed replay (findings are output, not
 * failures), 2 on bad arguments or an unreadable file.
 *
 * `--model-check [--mismatches N]`: instead, drive the x86 model with the capture's faults and report the
 * first SPTE change that differs from the capture (src/trace/model_check.ts). Exit 0 when the model agrees,
 * 1 on a mismatch, 3 when the capture cannot be model-checked (no TDP MMU changes or no faults).
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseKernelVersion } from '../../trace/kernel_version';
import { replayFile, replayStream, type ReplayOptions, type ReplayResult } from '../../trace/replay';
import { modelCheckFile, modelCheckStream, type ModelCheckOptions, type ModelCheckResult } from '../../trace/model_check';
import { modelCheckText } from '../../trace/model_check_text';

const USAGE = `usage: kvm-mmu replay FILE [--json] [--kernel VERSION] [--fault-loop N] [--storm N] [--max N] [--max-sptes N]
       kvm-mmu replay FILE --model-check [--mismatches N] [--json] [--kernel VERSION]

Parse a kvm/kvmmmu trace capture and rebuild the MMU state from it. FILE '-' reads standard input
(e.g. 'cat /sys/kernel/tracing/trace_pipe | kvm-mmu replay -', ended with Ctrl-C or end of input).
  --json            print the result as one JSON object
  --kernel VERSION  kernel that wrote the capture (default 6.18); decides RET_PF_* numbers of fast_page_fault
  --fault-loop N    faults on one (vCPU, gfn) with no SPTE change before a fault loop is reported (default 8)
  --storm N         spurious fast_page_faults in a row on one (vCPU, gfn) before a storm is reported (default 16)
  --max N           unrecognized lines / warnings / stacks listed in full (all are counted; default 100)
  --max-sptes N     rebuilt SPTEs listed in the JSON (all are counted in sptesTotal; default 100000)
  --model-check     drive the x86 model with the capture's faults (VM, memslots and operations inferred
                    from the capture) and report the first SPTE change where model and capture differ
  --mismatches N    with --model-check: report up to N mismatches (default 1)
exit status: 0 replayed (with --model-check: the model agrees), 1 model mismatch, 2 bad arguments or
unreadable file, 3 the capture cannot be model-checked`;

function fail2(msg: string): number {
  process.stderr.write(`kvm-mmu replay: ${msg}\n`);
  return 2;
}

function posInt(v: string | undefined, name: string): number | string | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 1e9) return `--${name} wants a positive integer, got '${v}'`;
  return Number(v);
}

function human(r: ReplayResult, file: string): string {
  const out: string[] = [];
  out.push(`${file}: ${r.events} events in ${r.lines} lines (kernel ${r.kernel} numbering)`);
  const styles = Object.entries(r.styles)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  if (styles) out.push(`  line styles: ${styles}${r.joinedLines ? `; ${r.joinedLines} wrapped lines joined` : ''}`);
  for (const [name, n] of Object.entries(r.byType).sort((a, b) => b[1] - a[1])) out.push(`  ${String(n).padStart(9)}  ${name}`);
  if (Object.keys(r.otherEvents).length) {
    out.push(`  not modelled: ${Object.entries(r.otherEvents).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }
  out.push(`unrecognized lines: ${r.unrecognized.count}`);
  for (const u of r.unrecognized.first.slice(0, 10)) out.push(`  line ${u.line}: ${u.reason}: ${u.text}`);
  out.push(`warnings: ${r.warnings.count}`);
  for (const w of r.warnings.first.slice(0, 10)) out.push(`  line ${w.line}: ${w.message}`);
  out.push(`stack traces: ${r.stacks.count}`);
  out.push(`roots: ${r.roots.length}; rebuilt SPTEs: ${r.sptesTotal}; live shadow pages: ${r.shadowPagesTotal} (created ${r.shadowPageCounts.created}, zapped ${r.shadowPageCounts.zapped})`);
  const kinds: Record<string, number> = {};
  for (const s of r.sptes) kinds[s.kind] = (kinds[s.kind] ?? 0) + 1;
  if (r.sptes.length) out.push(`  by kind: ${Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  out.push(`faults: ${r.faults.total}; fast_page_fault: ${r.fastPageFaults.total} (spurious ${r.fastPageFaults.spurious}, fixed ${r.fastPageFaults.fixed}); guest walks: ${r.walks.total} (errors ${r.walks.errors})`);
  out.push(`detectors: ${r.detectors.length === 0 ? 'nothing found' : r.detectors.length + ' finding(s)'}`);
  for (const d of r.detectors) out.push(`  [${d.detector}] lines ${d.line}-${d.lastLine}: ${d.message}`);
  return out.join('\n');
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
        kernel: { type: 'string' },
        'fault-loop': { type: 'string' },
        storm: { type: 'string' },
        max: { type: 'string' },
        'max-sptes': { type: 'string' },
        'model-check': { type: 'boolean' },
        mismatches: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    return fail2(`${e instanceof Error ? e.message.split('\n')[0] : String(e)}; see 'kvm-mmu replay --help'`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (positionals.length !== 1) return fail2(`expected exactly one FILE, got ${positionals.length}; see 'kvm-mmu replay --help'`);
  const file = positionals[0]!;
  const opts: ReplayOptions = {};
  if (values.kernel !== undefined) {
    const k = parseKernelVersion(values.kernel);
    if (!k) return fail2(`--kernel wants a version like 6.18 or 5.10, got '${values.kernel}'`);
    opts.kernel = k;
  }
  const loop = posInt(values['fault-loop'], 'fault-loop');
  const storm = posInt(values.storm, 'storm');
  const max = posInt(values.max, 'max');
  const maxSptes = posInt(values['max-sptes'], 'max-sptes');
  const mismatches = posInt(values.mismatches, 'mismatches');
  for (const v of [loop, storm, max, maxSptes, mismatches]) if (typeof v === 'string') return fail2(v);
  if (mismatches !== undefined && !values['model-check']) return fail2(`--mismatches goes with --model-check`);
  opts.detectors = {};
  if (typeof loop === 'number') opts.detectors.faultLoop = loop;
  if (typeof storm === 'number') opts.detectors.spuriousStorm = storm;
  if (typeof max === 'number') opts.maxDetails = max;
  if (typeof maxSptes === 'number') opts.maxSptes = maxSptes;

  const stdin = file === '-';
  let size = 0;
  if (!stdin) {
    try {
      const st = statSync(file);
      if (!st.isFile()) return fail2(`${file}: not a regular file`);
      size = st.size;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return fail2(`${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : 'cannot read'}`);
    }
  }

  const tty = process.stderr.isTTY === true;
  let lastShown = 0;
  if (tty) {
    opts.onProgress = (bytes) => {
      const now = Date.now();
      if (now - lastShown < 200) return;
      lastShown = now;
      const mib = (bytes / 1048576).toFixed(1);
      process.stderr.write(stdin ? `\rkvm-mmu replay: ${mib} MiB` : `\rkvm-mmu replay: ${size > 0 ? Math.min(100, Math.floor((bytes * 100) / size)) : 100}% (${mib} MiB)`);
    };
  }
  if (values['model-check']) {
    const mc: ModelCheckOptions = { maxMismatches: typeof mismatches === 'number' ? mismatches : 1 };
    if (opts.kernel) mc.kernel = opts.kernel;
    if (opts.onProgress) mc.onProgress = opts.onProgress;
    let r: ModelCheckResult;
    try {
      r = stdin ? await modelCheckStream(process.stdin, mc) : await modelCheckFile(file, mc);
    } catch (e) {
      if (tty) process.stderr.write('\r\x1b[K');
      const code = (e as NodeJS.ErrnoException).code;
      return fail2(`${file}: ${code ? `read failed (${code})` : e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    }
    if (tty) process.stderr.write('\r\x1b[K');
    process.stdout.write((values.json ? JSON.stringify(r, null, 2) : modelCheckText(r, stdin ? '<stdin>' : file)) + '\n');
    return r.skipped ? 3 : r.ok ? 0 : 1;
  }
  let result: ReplayResult;
  try {
    result = stdin ? await replayStream(process.stdin, opts) : await replayFile(file, opts);
  } catch (e) {
    if (tty) process.stderr.write('\r\x1b[K');
    const code = (e as NodeJS.ErrnoException).code;
    return fail2(`${file}: ${code ? `read failed (${code})` : e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
  if (tty) process.stderr.write('\r\x1b[K');
  process.stdout.write((values.json ? JSON.stringify(result, null, 2) : human(result, stdin ? '<stdin>' : file)) + '\n');
  return 0;
}
