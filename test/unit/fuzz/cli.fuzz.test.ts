// Fuzzing the command line: every verb module's `run(argv)` (and `main`) is called in-process with
// random argv built from its real options, real and broken files, and random strings. It returns 0, 1
// or 2, never throws, and never prints a stack trace or a raw JS error. stdout/stderr are captured by
// swapping process.stdout.write / process.stderr.write for the duration of the call.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { main } from '../../../src/cli/main';
import * as runVerb from '../../../src/cli/verbs/run';
import * as replayVerb from '../../../src/cli/verbs/replay';
import * as decodeVerb from '../../../src/cli/verbs/decode';
import * as walkVerb from '../../../src/cli/verbs/walk';
import * as dapVerb from '../../../src/cli/verbs/dap';
import * as benchVerb from '../../../src/cli/verbs/bench';

const ROOT = resolve(__dirname, '..', '..', '..');
let cases = 0;
const byVerb: Record<string, Record<number, number>> = {};
after(() => console.log(`fuzz: ${cases} cases (CLI argv; exit codes by verb ${JSON.stringify(byVerb)})`));

let dir = '';
const cwd0 = process.cwd();
const F: Record<string, string> = {};
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-cli-fuzz-'));
  // --trace-out and friends write relative to the cwd: keep them in the scratch folder
  process.chdir(dir);
  F['small'] = join(dir, 'small.kvmmmu');
  writeFileSync(F['small'], 'vm arch=x86 vendor=intel\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=2M hva=0x7f0000000000\nexpect ret 0\nguest read gpa=0x1000\nexpect stat pf_fixed=1\n');
  F['failing'] = join(dir, 'failing.kvmmmu');
  writeFileSync(F['failing'], 'vm arch=x86 vendor=intel\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=2M hva=0x7f0000000000\nexpect ret -EINVAL\n');
  F['syntax'] = join(dir, 'syntax.kvmmmu');
  writeFileSync(F['syntax'], 'vm arch=x87\nguest rread gpa=zz\n"unterminated\n');
  F['empty'] = join(dir, 'empty.txt');
  writeFileSync(F['empty'], '');
  F['binary'] = join(dir, 'binary.bin');
  writeFileSync(F['binary'], Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)));
  F['trace'] = join(ROOT, 'test', 'fixtures', 'traces', 'raw_trace.txt');
  F['perf'] = join(ROOT, 'test', 'fixtures', 'traces', 'perf_script.txt');
  F['arm64'] = join(ROOT, 'examples', 'arm64-stage2-faults.kvmmmu');
  F['dir'] = join(dir, 'sub');
  mkdirSync(F['dir']);
  F['missing'] = join(dir, 'does-not-exist');
});
after(() => {
  process.chdir(cwd0);
  rmSync(dir, { recursive: true, force: true });
});

interface Captured {
  code: unknown;
  out: string;
  err: string;
  threw?: unknown;
}

async function capture(fn: () => Promise<number>): Promise<Captured> {
  const ow = process.stdout.write;
  const ew = process.stderr.write;
  let out = '';
  let err = '';
  // The test runner reports through this process's stdout with binary (serialized) chunks, possibly
  // while a verb is running: those pass through; the verbs write text.
  process.stdout.write = function (this: unknown, chunk: string | Uint8Array, ...rest: unknown[]) {
    if (typeof chunk !== 'string') return (ow as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
    out += chunk;
    return true;
  } as typeof process.stdout.write;
  process.stderr.write = function (this: unknown, chunk: string | Uint8Array, ...rest: unknown[]) {
    if (typeof chunk !== 'string') return (ew as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
    err += chunk;
    return true;
  } as typeof process.stderr.write;
  try {
    return { code: await fn(), out, err };
  } catch (e) {
    return { code: undefined, out, err, threw: e };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

const STACK_RE = /^\s+at (?:.+ \()?(?:file:|node:|\/|[A-Za-z]:\\).*:\d+:\d+\)?$/m;
const RAW_ERROR_RE = /\b(?:TypeError|RangeError|ReferenceError|SyntaxError|AssertionError)\b|\[object Object\]|Cannot read propert/;

function check(verb: string, argv: string[], r: Captured): void {
  cases++;
  const what = `${verb} ${JSON.stringify(argv)}`;
  if (r.threw !== undefined) {
    assert.fail(`${what} threw: ${r.threw instanceof Error ? r.threw.stack : String(r.threw)}`);
  }
  assert.ok(r.code === 0 || r.code === 1 || r.code === 2, `${what} returned ${String(r.code)}`);
  const codes = (byVerb[verb] ??= {});
  codes[r.code as number] = (codes[r.code as number] ?? 0) + 1;
  for (const [name, text] of [['stdout', r.out], ['stderr', r.err]] as const) {
    assert.doesNotMatch(text, STACK_RE, `${what}: stack trace on ${name}:\n${text.slice(0, 2000)}`);
    assert.doesNotMatch(text, RAW_ERROR_RE, `${what}: raw JS error on ${name}:\n${text.slice(0, 2000)}`);
  }
  if (r.code === 2) assert.ok(r.err.length > 0 || r.out.length > 0, `${what}: exit 2 without saying why`);
}

const junk = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ maxLength: 12, unit: 'binary' }),
  fc.constantFrom('', '-', '--', '---', '-h', '--help', '--json', '--=', '--x=y', '0x', '0x0', '-1', '1e400', 'NaN', 'Infinity', '0x' + 'f'.repeat(40),
    '99999999999999999999', '0b101', '0o17', ' 0x10 ', '0x1_000', 'null', 'undefined', '__proto__', 'constructor', '\0', '🙂'),
);
const numLike = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 70n) }).map((v) => `0x${v.toString(16)}`),
  fc.bigInt({ min: -(1n << 64n), max: 1n << 64n }).map(String),
  fc.constantFrom('0', '1', '2', '3', '4', '5', '0x6000001234b77', '0x3784', '0x100000006', '0x40000000000747', '0x1007,0x2007,0x3007,0x4005', ',', ',,0x1', '0x1,zz'),
);
const fileArg = fc.constantFrom('small', 'failing', 'syntax', 'empty', 'binary', 'trace', 'perf', 'arm64', 'dir', 'missing').map((k) => F[k]!);

/** argv from a verb's own option names, their plausible values, files and junk. */
function argvFor(flags: readonly string[], values: readonly string[]) {
  return fc.array(fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...flags) },
    { weight: 3, arbitrary: fc.oneof(fc.constantFrom(...values), numLike) },
    { weight: 2, arbitrary: fileArg },
    { weight: 2, arbitrary: junk },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...flags), fc.oneof(fc.constantFrom(...values), numLike, junk)).map(([f, v]) => `${f}=${v}`) },
  ), { maxLength: 8 });
}

const RUN_FLAGS = ['--json', '--set', '--trace-out', '--help', '-h', '--sett', '-j'];
const RUN_VALS = ['constructor=1', '__proto__=x', 'toString=Y', 'variant.constructor=x', 'eager_page_split=N', 'tdp_mmu=Y', 'nx_huge_pages=on', 'x=1', '=', 'bogus', 'eager_page_split=maybe', 'trace.out', ''];
const REPLAY_FLAGS = ['--json', '--kernel', '--fault-loop', '--storm', '--max', '--help', '-h'];
const REPLAY_VALS = ['constructor', '__proto__', '6.18', '6.1', '5.10', '7', '0', '1', '1000000000', '1000000001', 'abc', 'v6.18', '6.18-rc1', ''];
const WALK_FLAGS = ['--mode', '--addr', '--access', '--user', '--implicit', '--cr0-wp', '--efer-nx', '--smep', '--smap', '--ac', '--pke', '--pkru', '--gbpages', '--pse', '--pse36', '--amd', '--maxphyaddr', '--execonly', '--ept-ad', '--ptes', '--cr3', '--pferr', '--from-trace', '--json', '--help'];
const WALK_VALS = ['constructor', '__proto__', 'none', '32', 'pae', 'long4', 'long5', 'ept4', 'ept5', 'read', 'write', 'fetch', '0', '1', 'on', 'off', 'y', 'n', '52', '64', '65', '0x7fff1000', '0xffffffffffffffff'];
const DECODE_FLAGS = ['--format', '--level', '--maxphyaddr', '--no-ad', '--exec-only', '--cbit', '--json', '--granule', '--variant', '--lpa2', '--fwb', '--help'];
const DECODE_VALS = ['constructor', '__proto__', 'toString', 'ept', 'npt', 'legacy', '4k', '16k', '64k', '0', '1', '2', '3', '4', '5', '-1', '51', '52', '63', '64', 'set_owner', 'annotate_2026'];

describe('fuzz: CLI verbs in-process', () => {
  it('run FILE ... returns 0/1/2 and never throws or prints a stack', async () => {
    await fc.assert(fc.asyncProperty(argvFor(RUN_FLAGS, RUN_VALS), async (argv) => check('run', argv, await capture(() => runVerb.run(argv)))), { numRuns: 250 });
  });

  it('run --set NAME=VALUE FILE: any name (incl. Object.prototype members) is accepted or refused with 2', async () => {
    const name = fc.oneof(fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'eager_page_split', 'tdp_mmu', 'kvm.tdp_mmu', 'kvm_intel.ept', 'tdx_stolen_bits', 'nx_huge_pages'), fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.]{0,12}$/));
    const value = fc.oneof(fc.constantFrom('Y', 'N', 'on', 'off', '1', '0', 'x', '-1', 'sp_field'), fc.string({ minLength: 1, maxLength: 6 }));
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 3 }), async (sets) => {
      const argv = [...sets.flatMap(([n, v]) => ['--set', `${n}=${v}`]), F['small']!];
      const r = await capture(() => runVerb.run(argv));
      check('run', argv, r);
      if (r.code === 2) assert.match(r.err, /--set|not a module parameter|takes/, r.err);
    }), { numRuns: 300 });
  });

  it('replay FILE ... returns 0/2 and never throws or prints a stack', async () => {
    await fc.assert(fc.asyncProperty(argvFor(REPLAY_FLAGS, REPLAY_VALS), async (argv) => {
      const r = await capture(() => replayVerb.run(argv));
      check('replay', argv, r);
      assert.notEqual(r.code, 1, 'replay has no exit 1');
    }), { numRuns: 250 });
  });

  it('decode KIND VALUE ... (every kind) returns 0/2 and never throws or prints a stack', async () => {
    const kind = fc.constantFrom('spte', 'role', 'pferr', 's2pte', 'spt', '', '--help', 'SPTE', 'constructor', '__proto__', 'toString', 'hasOwnProperty');
    await fc.assert(fc.asyncProperty(kind, argvFor(DECODE_FLAGS, DECODE_VALS), async (k, rest) => {
      const argv = [k, ...rest];
      check('decode', argv, await capture(() => decodeVerb.run(argv)));
    }), { numRuns: 800 });
  });

  it('decode of any 64-bit value of every kind succeeds; --json prints one JSON object', async () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((x) => `0x${x.toString(16)}`);
    const kindOpts = fc.oneof(
      fc.constantFrom<string[]>(['spte'], ['spte', '--format', 'ept'], ['spte', '--format', 'npt'], ['spte', '--format', 'ept', '--no-ad'], ['spte', '--format', 'ept', '--exec-only']),
      fc.constantFrom<string[]>(['role'], ['pferr']),
      fc.nat({ max: 3 }).map((l) => ['s2pte', '--level', String(l)]),
    );
    await fc.assert(fc.asyncProperty(kindOpts, u64, fc.boolean(), async (k, v, json) => {
      const argv = [k[0]!, v, ...k.slice(1), ...(json ? ['--json'] : [])];
      const r = await capture(() => decodeVerb.run(argv));
      check('decode', argv, r);
      assert.equal(r.code, 0, `${JSON.stringify(argv)}: ${r.err}`);
      if (json) assert.equal(typeof JSON.parse(r.out), 'object');
      else assert.ok(r.out.length > 0);
    }), { numRuns: 400 });
  });

  it('walk ... returns 0/1/2 and never throws or prints a stack', async () => {
    await fc.assert(fc.asyncProperty(argvFor(WALK_FLAGS, WALK_VALS), async (argv) => check('walk', argv, await capture(() => walkVerb.run(argv)))), { numRuns: 800 });
  });

  it('walk with a complete set of options and random values returns 0/1/2', async () => {
    const v = fc.oneof(fc.constantFrom(...WALK_VALS), numLike, junk);
    const pte = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((x) => `0x${x.toString(16)}`), fc.constantFrom('0x1007', '0x2007', '0x3007', '0x4005', '0x83', '0x80000000000000e7', '0x0', '0x1'));
    const ptes = fc.oneof({ weight: 4, arbitrary: fc.array(pte, { minLength: 1, maxLength: 6 }).map((a) => a.join(',')) }, { weight: 1, arbitrary: numLike });
    const addr = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 57n) - 1n }).map((x) => `0x${x.toString(16)}`), numLike);
    await fc.assert(fc.asyncProperty(fc.constantFrom('none', '32', 'pae', 'long4', 'long5', 'ept4', 'ept5'), addr, fc.constantFrom('read', 'write', 'fetch'), ptes,
      fc.array(fc.tuple(fc.constantFrom(...WALK_FLAGS.filter((f) => !['--help', '--from-trace', '--json', '--user', '--implicit'].includes(f))), v), { maxLength: 5 }),
      async (mode, addr, access, ptes, extra) => {
        const argv = ['--mode', mode, '--addr', addr, '--access', access, '--ptes', ptes, ...extra.flat()];
        check('walk', argv, await capture(() => walkVerb.run(argv)));
      }), { numRuns: 600 });
  });

  it('dap with arguments answers usage or refuses, without starting a server', async () => {
    await fc.assert(fc.asyncProperty(fc.array(junk, { minLength: 1, maxLength: 4 }).filter((a) => a.length > 0), async (argv) => check('dap', argv, await capture(() => dapVerb.run(argv)))), { numRuns: 100 });
  });

  it('bench with arguments it refuses (or --help) returns 2 (or 0) without measuring', async () => {
    const benchOpts = { json: { type: 'boolean' }, quick: { type: 'boolean' }, only: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } } as const;
    // argv that would start a real measurement are not sent (the bench is minutes long)
    const measures = (argv: string[]) => {
      try {
        return !parseArgs({ args: argv, options: benchOpts, strict: true, allowPositionals: false }).values.help;
      } catch {
        return false;
      }
    };
    await fc.assert(fc.asyncProperty(argvFor(['--json', '--quick', '--only', '--help', '-h', '--fast'], ['tdp', 'x']).filter((a) => !measures(a)), async (argv) => {
      check('bench', argv, await capture(() => benchVerb.run(argv)));
    }), { numRuns: 200 });
  });

  it('main: any verb name with random arguments returns 0/1/2', async () => {
    const verb = fc.constantFrom('run', 'replay', 'decode', 'walk', 'help', '--help', '-h', '--version', 'dapp', '', 'RUN', 'bench', 'dap');
    await fc.assert(fc.asyncProperty(verb, fc.array(junk, { maxLength: 4 }), async (v, rest) => {
      // dap/bench with no (or accepted) arguments would serve stdio / measure: give them --help or junk only
      if ((v === 'dap' || v === 'bench') && !rest.some((a) => a === '--help' || a === '-h')) rest = ['--no-such-option', ...rest];
      const argv = [v, ...rest];
      check('main', argv, await capture(() => main(argv)));
    }), { numRuns: 300 });
  });
});
