// The parser reads an ASCII chunk's payloads from its bytes; every other line (carried over a chunk
// boundary, joined from wrapped lines, non-ASCII chunks) is read from the string. Both paths must give the
// same events, the same unrecognized lines and the same warnings, on clean and on mutated text.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TraceParser, parseStream } from '../../../src/trace/index';

const FIX = join(__dirname, '..', '..', 'fixtures', 'traces');
const LINES = readdirSync(FIX)
  .sort()
  .flatMap((f) => readFileSync(join(FIX, f), 'utf8').split('\n'))
  .filter((l) => /^[\x00-\x7f]*$/.test(l));

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EDITS = '0123456789abcdefABCDEFxg-() :.\t';

function mutate(line: string, r: () => number): string {
  if (line.length === 0 || r() < 0.5) return line;
  const i = Math.floor(r() * line.length);
  const ch = EDITS[Math.floor(r() * EDITS.length)]!;
  const k = r();
  if (k < 0.4) return line.slice(0, i) + ch + line.slice(i + 1);
  if (k < 0.7) return line.slice(0, i) + line.slice(i + 1);
  if (k < 0.9) return line.slice(0, i) + ch + line.slice(i);
  return line.slice(0, i);
}

function run(text: string, push: (p: TraceParser) => void): unknown {
  const records: unknown[] = [];
  const p = new TraceParser({ onEvent: (ev) => records.push(ev.toRecord()), maxDetails: 100_000 });
  push(p);
  return result(p, records);
}

function result(p: TraceParser, records: unknown[]): unknown {
  p.end();
  return { records, unrecognized: p.unrecognized, warnings: p.warnings, lines: p.lines, events: p.events, joined: p.joinedLines, styles: p.styles };
}

describe('trace parser byte path', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`reads ASCII chunks as bytes with the same results as the string path (seed ${seed})`, () => {
      const r = rng(seed);
      const out: string[] = [];
      while (out.join('\n').length < 64 * 1024) for (const l of LINES) out.push(seed === 1 ? l : mutate(l, r));
      const text = out.join('\n') + '\n';
      const bytes = run(text, (p) => p.push(text));
      const str = run(text, (p) => p.push(text, false));
      assert.deepEqual(bytes, str);
      // chunked: carried lines take the string path, the rest of each chunk the byte path
      const chunked = run(text, (p) => {
        for (let i = 0; i < text.length; i += 5000) p.push(text.slice(i, i + 5000));
      });
      assert.deepEqual(chunked, str);
    });
  }

  it('parseStream: ASCII Buffers are read in place, strings are counted and copied once; same results', async () => {
    const r = rng(9);
    const out: string[] = [];
    while (out.join('\n').length < 64 * 1024) for (const l of LINES) out.push(mutate(l, r));
    // one non-ASCII line: that chunk takes the string path, and its byte count is its UTF-8 size
    out.splice(500, 0, 'qemu-system-x86-4711  [003] .....  812.000001: kvm_mmu_set_spte: gfn 1a2 spte \u0141 (rwxu) level 1 at 1c4f0d10');
    const text = out.join('\n') + '\n';
    const str = run(text, (p) => p.push(text, false));
    const size = Buffer.byteLength(text);
    for (const step of [5000, 20000, 1 << 20]) {
      for (const kind of ['buffer', 'string'] as const) {
        const records: unknown[] = [];
        const p = new TraceParser({ onEvent: (ev) => records.push(ev.toRecord()), maxDetails: 100_000 });
        const bytes = Buffer.from(text, 'utf8');
        const src = async function* (): AsyncGenerator<Uint8Array | string> {
          if (kind === 'buffer') for (let i = 0; i < bytes.length; i += step) yield bytes.subarray(i, i + step);
          else for (let i = 0; i < text.length; i += step) yield text.slice(i, i + step);
        };
        const n = await parseStream(src(), p);
        assert.equal(n, size, `${kind} chunks of ${step}`);
        // parseStream calls end() itself; result() calling it again is harmless
        assert.deepEqual(result(p, records), str, `${kind} chunks of ${step}`);
      }
    }
  });
});
