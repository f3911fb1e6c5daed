// Fuzzing the trace parser: real-looking lines in every prefix style (raw trace, trace-cmd report, perf
// script, mail-wrapped, trimmed), mutated, mixed with binary garbage and pushed in random chunks. The
// parser never throws and loses no line: every non-blank line is an event, a header, a stack marker or
// frame, a continuation joined to the line before it, a ring-buffer overrun warning, or counted as
// unrecognized.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { TraceParser, parseStream, replayStream } from '../../../src/trace/index';

const FIX = join(__dirname, '..', '..', 'fixtures', 'traces');
const FIXTURE_LINES = readdirSync(FIX).sort().flatMap((f) => readFileSync(join(FIX, f), 'utf8').split('\n'));

/** `EVENT: PAYLOAD` bodies taken from the fixtures' event lines, whatever their prefix. */
const BODIES = [...new Set(FIXTURE_LINES.flatMap((l) => {
  const m = /\d+\.\d+: (?:[a-z_]+:)?([a-z0-9_]+:\s+.*)$/.exec(l);
  return m ? [m[1]!.replace(/^([a-z0-9_]+:)\s+/, '$1 ')] : [];
}))];

let cases = 0;
let linesFed = 0;
let eventsParsed = 0;
let joined = 0;
after(() => console.log(`fuzz: ${cases} cases (trace parser; ${linesFed} lines fed, ${eventsParsed} events parsed, ${joined} wrapped lines joined)`));

interface Tally {
  parser: TraceParser;
  frames: number;
}

function parse(text: string, chunks: readonly number[] = []): Tally {
  let frames = 0;
  const parser = new TraceParser({ onStack: (s) => (frames += s.frames.length), maxDetails: 5 });
  let pos = 0;
  for (const c of chunks) {
    if (pos >= text.length) break;
    parser.push(text.slice(pos, pos + c));
    pos += c;
  }
  parser.push(text.slice(pos));
  parser.end();
  return { parser, frames };
}

/** Lines as the parser counts them: split on \n, a final empty piece after a trailing \n is not a line. */
function inputLines(text: string): string[] {
  const ls = text.split('\n');
  if (ls.length && ls[ls.length - 1] === '') ls.pop();
  return ls;
}

/** Header lines of the capture formats (trace-text.md): `#` comments, `cpus=N`, `version = N`, `CPU N is empty`. */
function isHeader(l: string): boolean {
  const t = l.replace(/^[ \t]+/, '').replace(/[ \t\r]+$/, '');
  return t.startsWith('#') || t.startsWith('cpus=') || t.startsWith('version = ') || (t.length < 24 && t.startsWith('CPU ') && t.endsWith(' is empty'));
}

function isBlank(l: string): boolean {
  return /^[ \t\r]*$/.test(l);
}

function checkAccounting(text: string, t: Tally): void {
  const ls = inputLines(text);
  const p = t.parser;
  linesFed += ls.length;
  eventsParsed += p.events;
  joined += p.joinedLines;
  assert.equal(p.lines, ls.length, 'every input line is read once');
  const nonBlank = ls.filter((l) => !isBlank(l)).length;
  const headers = ls.filter((l) => !isBlank(l) && isHeader(l)).length;
  const accounted = p.events + p.unrecognizedCount + p.joinedLines + p.stackCount + t.frames + headers + p.warningCount;
  assert.equal(accounted, nonBlank,
    `lines lost: events ${p.events} + unrecognized ${p.unrecognizedCount} + joined ${p.joinedLines} + stacks ${p.stackCount} + frames ${t.frames} + headers ${headers} + warnings ${p.warningCount} != ${nonBlank} non-blank lines`);
  const listed = p.unrecognized.length;
  assert.ok(listed <= 5 && listed <= p.unrecognizedCount);
  for (const u of p.unrecognized) {
    assert.ok(u.line >= 1 && u.line <= ls.length, `unrecognized line number ${u.line}`);
    assert.ok(u.reason.length > 0);
    assert.ok(u.text.length <= 200);
  }
}

const comm = fc.constantFrom('CPU 0/KVM', 'qemu-system-x86', '<...>', 'kworker/u16:3', 'a b c', 'x', '');
const pid = fc.integer({ min: 0, max: 4_194_304 });
const ts = fc.tuple(fc.nat({ max: 99999 }), fc.nat({ max: 999999 })).map(([s, u]) => `${s}.${String(u).padStart(6, '0')}`);
const cpu = fc.nat({ max: 255 }).map((c) => `[${String(c).padStart(3, '0')}]`);
const flags = fc.constantFrom('.....', 'd..1.', '....', 'dNh2.', 'X');
const body = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...BODIES) }, { weight: 1, arbitrary: fc.constantFrom('<stack trace>', '<user stack trace>', 'kernel_stack:', 'kvm_pio: pio_write at 0x70 size 1 count 1 val 0x8f', 'kvm_exit:', 'unknown_event: x=1') });

/** One event in one of the prefix styles. */
const styled = fc.tuple(fc.nat({ max: 4 }), comm, pid, cpu, flags, ts, body).map(([style, c, p, cp, f, t, b]) => {
  const colon = b.indexOf(': ');
  const name = colon > 0 ? b.slice(0, colon) : b;
  const rest = colon > 0 ? b.slice(colon + 2) : '';
  switch (style) {
    case 0: return `${c.padStart(16)}-${p}    ${cp} ${f} ${t.padStart(12)}: ${b}`;                       // raw trace
    case 1: return `${c.padStart(16)}-${p}  ${cp} ${t.padStart(12)}: ${(name + ':').padEnd(22)} ${rest}`; // trace-cmd report
    case 2: return `${c} ${p}/${p + 1} ${cp} ${t}: ${name.startsWith('kvm_mmu') || name.includes('spte') ? 'kvmmmu' : 'kvm'}:${b}`; // perf script
    case 3: return b;                                                                                      // trimmed
    default: return `${t}: ${b}`;
  }
});

/** Lines that may follow: frames, headers, blanks, garbage, overrun notes. */
const other = fc.oneof(
  fc.constantFrom(' => kvm_tdp_mmu_map', ' => kvm_mmu_page_fault',
    // perf script -g callchain lines (after a perf-style event they are frames; elsewhere, not trace text)
    '\tffffffffc0a1b2c3 kvm_tdp_mmu_map+0x1a3 ([kvm])', '            ffffffff81234567 kvm_mmu_page_fault+0x5b ([kernel.kallsyms])', '  deadbeef x', '\t12345678', '=>', '=> ', '# tracer: nop', 'cpus=4', 'version = 6', 'CPU 3 is empty', 'CPU 12345678901234567 is empty', '', '   ', '\r', '\t',
    'CPU:3 [LOST 12 EVENTS]', '##### CPU 2 buffer started ####', 'Hi all,', 'Thanks, Paolo', '> quoted: text', ': ', ':', 'a: b: c: d', '0.1: x', '1.: y', '.5: z'),
  fc.string({ maxLength: 60, unit: 'binary' }),
  fc.string({ maxLength: 60, unit: 'binary-ascii' }),
);

/** Wrap (split) a line at a random point, as a mail client does; or trim its prefix. */
const lineArb = fc.oneof(
  { weight: 6, arbitrary: styled },
  { weight: 3, arbitrary: other },
  { weight: 2, arbitrary: fc.tuple(styled, fc.nat()).map(([l, k]) => { const i = k % (l.length + 1); return `${l.slice(0, i)}\n${l.slice(i)}`; }) },
  { weight: 2, arbitrary: fc.tuple(styled, fc.nat(), fc.string({ maxLength: 3, unit: 'binary' })).map(([l, k, s]) => { const i = k % (l.length + 1); return l.slice(0, i) + s + l.slice(i + 1); }) },
  { weight: 1, arbitrary: fc.constantFrom(...FIXTURE_LINES) },
);

const capture = fc.array(lineArb, { maxLength: 60, size: 'medium' }).chain((ls) => fc.tuple(fc.constant(ls.join('\n')), fc.boolean(), fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 12 })))
  .map(([t, nl, chunks]) => [nl ? t + '\n' : t, chunks] as const);

describe('fuzz: trace parser', () => {
  it('never throws and accounts for every line (all prefix styles, wrapped, trimmed, mutated, chunked)', () => {
    fc.assert(
      fc.property(capture, ([text, chunks]) => {
        cases++;
        checkAccounting(text, parse(text, chunks));
      }),
      { numRuns: 4000 },
    );
  });

  it('the same text pushed whole or in random chunks gives the same counts', () => {
    fc.assert(
      fc.property(capture, ([text, chunks]) => {
        cases++;
        const a = parse(text).parser;
        const b = parse(text, chunks).parser;
        assert.deepEqual(
          [b.lines, b.events, b.unrecognizedCount, b.joinedLines, b.stackCount, b.warningCount, b.byType()],
          [a.lines, a.events, a.unrecognizedCount, a.joinedLines, a.stackCount, a.warningCount, a.byType()],
        );
      }),
      { numRuns: 800 },
    );
  });

  it('lines of pure garbage (no colon, no frame, no header) are each counted as unrecognized', () => {
    const garbage = fc.string({ minLength: 1, maxLength: 80, unit: 'binary' }).map((s) => s.replace(/[\n:#=]/g, '_')).filter((s) => !isBlank(s) && !/^[ \t]*(cpus|version|CPU )/.test(s) && !/LOST /.test(s));
    fc.assert(
      fc.property(fc.array(garbage, { minLength: 1, maxLength: 30 }), (ls) => {
        cases++;
        const t = parse(ls.join('\n'));
        assert.equal(t.parser.unrecognizedCount, ls.length);
        assert.equal(t.parser.events, 0);
      }),
      { numRuns: 500 },
    );
  });

  it('replay (parse + rebuild + detectors) of mutated captures never throws and agrees with the parser on counts', async () => {
    // whole fixture captures with lines dropped, duplicated, swapped or mutated: the rebuilder sees
    // events out of order, SPTE changes without their table, zaps of what was never mapped
    const mutated = fc.tuple(fc.array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...FIXTURE_LINES) }, { weight: 2, arbitrary: lineArb }), { minLength: 1, maxLength: 120 }), fc.array(fc.integer({ min: 1, max: 500 }), { maxLength: 6 }));
    await fc.assert(
      fc.asyncProperty(mutated, async ([ls, chunks]) => {
        cases++;
        const text = ls.join('\n');
        const parts: string[] = [];
        let pos = 0;
        for (const c of chunks) parts.push(text.slice(pos, (pos += c)));
        parts.push(text.slice(pos));
        const r = await replayStream((async function* () { yield* parts; })());
        const p = parse(text).parser;
        eventsParsed += r.events;
        assert.equal(r.events, p.events);
        assert.equal(r.lines, p.lines);
        assert.equal(r.unrecognized.count, p.unrecognizedCount);
      }),
      { numRuns: 300 },
    );
  });

  it('binary garbage through parseStream (invalid UTF-8, NULs, split multi-byte characters) never throws', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 400 }), { maxLength: 8 }), async (bufs) => {
        cases++;
        let frames = 0;
        const parser = new TraceParser({ onStack: (s) => (frames += s.frames.length) });
        const bytes = await parseStream(Readable.from(bufs.map((b) => Buffer.from(b))), parser);
        assert.equal(bytes, bufs.reduce((n, b) => n + b.length, 0));
        const text = Buffer.concat(bufs.map((b) => Buffer.from(b))).toString('utf8');
        checkAccounting(text, { parser, frames });
      }),
      { numRuns: 400 },
    );
  });

  // (found by this test: a 3 MiB line used to be counted once per MiB, shifting every later line number)
  it('a line longer than 1 MiB is one unrecognized line, and the parser goes on', () => {
    cases++;
    const good = BODIES[0]!;
    const text = `${good}\n${'x'.repeat(3 << 20)}\n${good}\n`;
    const t = parse(text, Array.from({ length: 64 }, () => 1 << 16));
    assert.equal(t.parser.events, 2);
    assert.equal(t.parser.lines, 3);
    assert.equal(t.parser.unrecognizedCount, 1);
    assert.ok(t.parser.unrecognized[0]!.text.length <= 200);
  });
});
