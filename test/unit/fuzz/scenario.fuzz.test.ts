// Fuzzing the scenario parser and loader: random text, mutated real examples, long lines, NULs, huge
// numbers and deep or cyclic includes. Whatever the input, parseScenario/loadScenario return (never
// throw) and every diagnostic is located: a file that was read (or the root), a line that exists in
// that file, a column inside the line (or just past its end, where a missing value would go).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseScenario } from '../../../src/scenario/parser';
import { completionsAt, hoverAt } from '../../../src/scenario/editor';
import { loadScenario, type FileReader, type Program } from '../../../src/scenario/load';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { auditEngine, formatViolations } from '../../../src/engine/audit/audit';
import { KEYWORDS, STATEMENTS } from '../../../src/scenario/grammar';
import type { Diagnostic } from '../../../src/scenario/diagnostics';

const EXAMPLES_DIR = join(__dirname, '..', '..', '..', 'examples');
const EXAMPLES = readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.kvmmmu')).sort().map((f) => readFileSync(join(EXAMPLES_DIR, f), 'utf8'));
const EXAMPLE_LINES = EXAMPLES.flatMap((t) => t.split('\n'));

let cases = 0;
let ran = 0;
let steps = 0;
after(() => console.log(`fuzz: ${cases} cases (scenario parser/loader/runner; ${ran} mutated examples run, ${steps} statements executed)`));

/** Split as the parser does (on \n only: a CR stays in the line). */
function linesOf(text: string): string[] {
  return text.split('\n');
}

function checkDiagnostics(diags: readonly Diagnostic[], files: ReadonlyMap<string, string>, root: string): void {
  for (const d of diags) {
    const where = `${d.code} ${d.file}:${d.line}:${d.col}-${d.endCol} ${d.message.slice(0, 120)}`;
    assert.equal(typeof d.message, 'string', where);
    assert.ok(d.message.length > 0, `empty message: ${where}`);
    assert.ok(d.severity === 'error' || d.severity === 'warning' || d.severity === 'info', where);
    const text = files.get(d.file);
    if (text === undefined) {
      // only a root that cannot be read is reported without text
      assert.equal(d.file, root, `diagnostic in a file never read: ${where}`);
      assert.equal(d.line, 1, where);
      assert.equal(d.col, 1, where);
      continue;
    }
    const lines = linesOf(text);
    assert.ok(Number.isInteger(d.line) && d.line >= 1 && d.line <= lines.length, `line out of the file (${lines.length} lines): ${where}`);
    const len = lines[d.line - 1]!.length;
    assert.ok(Number.isInteger(d.col) && d.col >= 1 && d.col <= len + 1, `column outside line of ${len} chars: ${where}`);
    assert.ok(Number.isInteger(d.endCol) && d.endCol > d.col && d.endCol <= len + 2, `end column outside line of ${len} chars: ${where}`);
  }
}

/** A reader over an in-memory tree of files; paths are plain names, resolved as written. */
function memReader(files: Map<string, string>): FileReader {
  return {
    read: (p) => files.get(p),
    resolve: (_from, rel) => rel,
  };
}

const tokens = [
  ...KEYWORDS.flatMap((k) => k.split(' ')),
  ...STATEMENTS.flatMap((s) => s.args.map((a) => a.name)),
  ...STATEMENTS.flatMap((s) => s.args.map((a) => `${a.name}=`)),
  'gpa=0x1000', '0x0..0x2000', '0x1000+4K', '"x"', '"', '#', '=', '==', '>=', '!=', '|', ',', '..', '+', '4K', '2M', '1G', '1P', '-EINVAL', '-E',
  'step', 'repeat', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'constructor=1', '__proto__=1', 'param constructor=1', 'variant __proto__=x', 'expect stat constructor=1', '0x', '0b', '_', '-0', '\t', '\r', '\0', '\u2028', '\uFEFF', '\uD800', 'é', '🙂',
];

const hugeNumber = fc.oneof(
  fc.bigInt({ min: 0n, max: 1n << 200n }).map((v) => `0x${v.toString(16)}`),
  fc.bigInt({ min: 0n, max: 1n << 200n }).map((v) => v.toString()),
  fc.constantFrom('18446744073709551615', '18446744073709551616', '0xffffffffffffffff', '0x10000000000000000', '16383P', '16384P', '9'.repeat(400), '0x' + 'f'.repeat(300), '-' + '9'.repeat(50), '0b' + '1'.repeat(70), '1_000_000_000'),
);

const line = fc.array(fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...tokens) },
  { weight: 2, arbitrary: hugeNumber },
  { weight: 2, arbitrary: fc.string({ maxLength: 10, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...STATEMENTS.flatMap((s) => s.args.map((a) => a.name))), hugeNumber).map(([n, v]) => `${n}=${v}`) },
), { maxLength: 10 }).map((ws) => ws.join(' '));

/** Mutations of a real example: the grammar is mostly right, so the parser goes deep. */
const mutatedExample = fc.tuple(
  fc.nat({ max: EXAMPLES.length - 1 }),
  fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 }), fc.oneof(fc.constantFrom(...tokens), hugeNumber, fc.string({ maxLength: 6, unit: 'binary' }))), { minLength: 1, maxLength: 8 }),
).map(([ei, muts]) => {
  const lines = linesOf(EXAMPLES[ei]!);
  for (const [pos, op, tok] of muts) {
    const i = pos % lines.length;
    const l = lines[i]!;
    const c = l.length ? pos % (l.length + 1) : 0;
    switch (op) {
      case 0: lines[i] = l.slice(0, c) + tok + l.slice(c); break;                   // insert
      case 1: lines[i] = l.slice(0, c) + l.slice(c + 1 + (pos % 5)); break;         // delete
      case 2: lines.splice(i, 1); break;                                            // drop a line
      case 3: lines.splice(i, 0, EXAMPLE_LINES[pos % EXAMPLE_LINES.length]!); break; // line from another example
      case 4: lines[i] = l.replace(/0x[0-9a-f]+|\b\d+[KMGT]?\b/i, tok); break;      // replace a number
      case 5: lines[i] = l.replace(/=/, ` ${tok} `); break;                         // break an arg
      case 6: lines.splice(i, 0, l); break;                                         // duplicate
      default: lines[i] = l.split('').reverse().join(''); break;                    // nonsense
    }
  }
  return lines.join(pos2nl(muts.length));
});

function pos2nl(n: number): string {
  return n % 5 === 0 ? '\r\n' : '\n';
}

describe('fuzz: scenario parser', () => {
  it('random text in any characters (incl. NUL, lone surrogates, CR) never throws and is located', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300, unit: 'binary' }), fc.string({ maxLength: 300, unit: 'grapheme' }), fc.array(line, { maxLength: 12 }).map((l) => l.join('\n'))), (text) => {
        cases++;
        const r = parseScenario(text, 'f.kvmmmu');
        checkDiagnostics(r.diagnostics, new Map([['f.kvmmmu', text]]), 'f.kvmmmu');
        for (const s of r.statements) {
          assert.ok(s.line >= 1 && s.line <= linesOf(text).length);
          assert.ok(s.col >= 1);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('mutated examples never throw and are located', () => {
    fc.assert(
      fc.property(mutatedExample, (text) => {
        cases++;
        const r = parseScenario(text, 'm.kvmmmu');
        checkDiagnostics(r.diagnostics, new Map([['m.kvmmmu', text]]), 'm.kvmmmu');
      }),
      { numRuns: 1000 },
    );
  });

  it('long lines, NUL runs and thousand-digit numbers are located and parsed in bounded time', () => {
    const big = 'x'.repeat(200_000);
    const texts = [
      big,
      `guest read gpa=${'9'.repeat(20_000)}`,
      `guest read gpa=0x${'f'.repeat(20_000)}`,
      `KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=${'1'.repeat(5000)}P hva=0`,
      '\0'.repeat(10_000),
      `vm arch=x86 ${'\0 '.repeat(5000)}`,
      `"${'a'.repeat(100_000)}`,
      `expect spte gpa=0x1000 ${'w=1 '.repeat(5_000)}`,
      '#'.repeat(100_000),
      'guest read gpa 0x0..0x' + 'f'.repeat(100),
      Array.from({ length: 20_000 }, () => 'expect ret 0').join('\n'),
      `guest read gpa=0x1000${' '.repeat(100_000)}=`,
    ];
    for (const text of texts) {
      cases++;
      const r = parseScenario(text, 'long.kvmmmu');
      checkDiagnostics(r.diagnostics, new Map([['long.kvmmmu', text]]), 'long.kvmmmu');
    }
    // a number that does not fit in 64 bits is an error at its column, not a wrapped value
    const r = parseScenario(`vm arch=x86\nguest read gpa=0x1${'0'.repeat(16)}`, 'n.kvmmmu');
    const d = r.diagnostics.find((x) => x.line === 2);
    assert.ok(d, 'a 65-bit gpa is reported');
    assert.equal(d.severity, 'error');
    assert.ok(d.col >= 12, `at the value, not the keyword (col ${d.col})`);
  });
});

describe('fuzz: editor help (completions, hovers) on every keystroke', () => {
  it('completionsAt / hoverAt never throw at any position of random or mutated text', () => {
    const text = fc.oneof(fc.array(line, { maxLength: 6 }).map((l) => l.join('\n')), mutatedExample,
      fc.constantFrom('param constructor=', 'param __proto__=', 'variant toString=', 'param constructor=1', 'expect stat constructor', 'variant hasOwnProperty=x', 'param ', 'variant ', 'expect spte '));
    fc.assert(
      fc.property(text, fc.nat(), fc.nat(), (t, a, b) => {
        cases++;
        const lines = linesOf(t);
        const ln = (a % (lines.length + 1)) + 1; // one past the last line too
        const col = (b % ((lines[ln - 1]?.length ?? 0) + 2)) + 1;
        const cs = completionsAt(t, ln, col);
        assert.ok(Array.isArray(cs));
        for (const c of cs) assert.equal(typeof c.label, 'string');
        const h = hoverAt(t, ln, col);
        if (h) assert.ok(typeof h.text === 'string' && h.col >= 1 && h.endCol > h.col);
      }),
      { numRuns: 1500 },
    );
  });
});

describe('fuzz: scenario loader (includes)', () => {
  // a random graph of files that include each other (cycles, self includes, missing files, deep chains)
  const tree = fc.tuple(
    fc.integer({ min: 1, max: 24 }),
    fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean()), { maxLength: 40 }),
    fc.array(fc.tuple(fc.nat(), line), { maxLength: 10 }),
  ).map(([n, edges, noise]) => {
    const bodies: string[][] = Array.from({ length: n }, (_, i) => (i === 0 ? ['vm arch=x86 vendor=intel'] : []));
    for (const [a, b, missing] of edges) bodies[a % n]!.push(`include "${missing ? `missing${b}` : `f${b % n}`}.kvmmmu"`);
    for (const [a, l] of noise) bodies[a % n]!.push(l);
    const files = new Map<string, string>();
    bodies.forEach((b, i) => files.set(`f${i}.kvmmmu`, b.join('\n')));
    return files;
  });

  it('random include graphs never throw; diagnostics are located in files that were read', () => {
    fc.assert(
      fc.property(tree, (files) => {
        cases++;
        const p = loadScenario('f0.kvmmmu', memReader(files));
        checkDiagnostics(p.diagnostics, files, 'f0.kvmmmu');
        for (const f of p.files) assert.ok(files.has(f), `read a file that does not exist: ${f}`);
        // cycles are cut: a file never appears twice on one include chain, so the expansion is finite
        assert.ok(p.statements.length < 1_000_000);
      }),
      { numRuns: 600 },
    );
  });

  it('a chain deeper than the include limit stops with a located diagnostic', () => {
    const files = new Map<string, string>();
    const n = 200;
    for (let i = 0; i < n; i++) files.set(`d${i}`, i + 1 < n ? `# level ${i}\ninclude "d${i + 1}"` : 'expect ret 0');
    cases++;
    const p = loadScenario('d0', memReader(files));
    checkDiagnostics(p.diagnostics, files, 'd0');
    const deep = p.diagnostics.filter((d) => d.code === 'include-depth');
    assert.equal(deep.length, 1, 'one include-depth diagnostic');
    assert.equal(deep[0]!.line, 2);
    assert.ok(p.files.length < n, 'the chain is cut');
  });

  it('a file including itself, and a missing root, are diagnostics', () => {
    cases += 2;
    const files = new Map([['a', 'include "a"']]);
    const p = loadScenario('a', memReader(files));
    assert.ok(p.diagnostics.some((d) => d.code === 'include-cycle' && d.file === 'a' && d.line === 1 && d.col === 9));
    const q = loadScenario('nope', memReader(new Map()));
    checkDiagnostics(q.diagnostics, new Map(), 'nope');
    assert.equal(q.diagnostics.length, 1);
  });

  it('an exponential include fan-out (every file includes the next one 8 times) is refused, not expanded', () => {
    // 8^15 copies of the leaf would be expanded by a naive loader: no cycle, and within the depth limit
    const files = new Map<string, string>();
    const n = 16;
    for (let i = 0; i < n; i++) files.set(`e${i}`, i + 1 < n ? Array.from({ length: 8 }, () => `include "e${i + 1}"`).join('\n') : 'expect ret 0');
    cases++;
    const p = loadScenario('e0', memReader(files));
    checkDiagnostics(p.diagnostics, files, 'e0');
    assert.ok(p.statements.length <= 1_000_000, `${p.statements.length} statements expanded`);
    assert.ok(p.diagnostics.some((d) => d.severity === 'error'), 'the explosion is reported');
  });
});

describe('fuzz: scenario runner on mutated examples', () => {
  it('running a mutated example never throws out of step(); problems are located; the auditor finds nothing', () => {
    fc.assert(
      fc.property(mutatedExample, (text) => {
        cases++;
        const files = new Map([['r.kvmmmu', text]]);
        const loaded: Program = loadScenario('r.kvmmmu', memReader(files));
        // drop the lines the parser refused; what is left is a scenario the editor would let you run
        const bad = new Set(loaded.diagnostics.filter((d) => d.severity === 'error').map((d) => d.line));
        const prog: Program = { ...loaded, statements: loaded.statements.filter((s) => !bad.has(s.line)), diagnostics: [] };
        ran++;
        const runner = new ScenarioRunner(prog);
        try {
          let n = 0;
          while (!runner.done && n++ < 400) {
            const r = runner.step();
            steps++;
            // whatever the (mutated) statement did, the engine's invariants still hold afterwards
            if (runner.engine) assert.deepEqual(formatViolations(auditEngine(runner.engine)), [], `after ${r.statement.line}: ${r.statement.text}`);
          }
          checkDiagnostics(runner.problems, files, 'r.kvmmmu');
        } finally {
          runner.dispose();
        }
      }),
      { numRuns: 12 },
    );
  });
});
