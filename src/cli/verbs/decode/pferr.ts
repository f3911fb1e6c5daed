/** `kvm-mmu decode pferr VALUE [--json]`: the PFERR_* bits of a (up to 64-bit) page-fault error code. */
import { PFERR_SYNTHETIC_MASK_HI, pferrSetBits, pferrUnknownBits, pferr_trace_flags } from '../../../engine/x86/pferr';
import { formatTable, hexOf, parseDecodeArgs, parseValue, runDecode, write } from './common';

const USAGE = `usage: kvm-mmu decode pferr VALUE [--json]

Decode a page-fault error code (hex, 0x optional; up to 64 bits: AMD #NPF bits 31-36, KVM's synthetic
bits 48-49).
  --json   machine-readable output`;

const OPTIONS = { json: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  return runDecode('pferr', USAGE, argv, (args) => {
    const { values, positionals } = parseDecodeArgs(args, OPTIONS);
    const v = parseValue(positionals, 'error code');
    const set = pferrSetBits(v.lo, v.hi);
    const unknown = pferrUnknownBits(v.lo, v.hi);
    const r = {
      value: hexOf(v),
      bits: set.map((b) => ({ name: b.name, bit: b.bit, source: b.source, meaning: b.desc })),
      names: set.map((b) => b.name),
      unknownBits: unknown,
      synthetic: (v.hi & PFERR_SYNTHETIC_MASK_HI) !== 0,
      traceFlags: pferr_trace_flags(v.lo, v.hi),
    };
    if (values.json) {
      write(JSON.stringify(r, null, 2));
      return 0;
    }
    const rows: string[][] = [['bit', 'name', 'source', 'meaning']];
    for (const b of set) rows.push([String(b.bit), b.name, b.source, b.desc]);
    for (const u of unknown) rows.push([String(u), '?', '-', 'no PFERR_* name']);
    let out = `error code ${r.value}  trace flags: ${r.traceFlags || '(none)'}`;
    out += rows.length > 1 ? `\n\n${formatTable(rows)}` : '\n\nno bits set';
    write(out);
    return 0;
  });
}
