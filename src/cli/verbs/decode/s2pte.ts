/**
 * `kvm-mmu decode s2pte VALUE --level N [--granule 4k|16k|64k] [--variant set_owner_2021|annotate_2026]
 * [--lpa2] [--fwb] [--json]`: an arm64 stage-2 descriptor, field by field.
 */
import { decodeS2Descriptor } from '../../../engine/arm64/decode';
import { type Granule, parseGranule } from '../../../engine/arm64/pgtable_desc';
import { OWNER_ENCODINGS, parseOwnerEncoding } from '../../../engine/arm64/variants';
import { UsageError, formatTable, hexOf, parseDecodeArgs, parseValue, runDecode, write } from './common';

const USAGE = `usage: kvm-mmu decode s2pte VALUE --level N [--granule 4k|16k|64k] [--variant V] [--lpa2] [--fwb] [--json]

Decode an arm64 stage-2 descriptor (hex, 0x optional) found at lookup level N (0..3; --level=-1 with 4k LPA2).
  --granule 4k|16k|64k   translation granule (default 4k)
  --variant V            how invalid entries carry pKVM ownership: ${OWNER_ENCODINGS.join(' | ')}
                         (default annotate_2026)
  --lpa2                 52-bit descriptors (VTCR_EL2.DS): OA[51:50] in bits 9:8, no SH field
  --fwb                  FEAT_S2FWB MemAttr encoding
  --json                 machine-readable output`;

const OPTIONS = {
  level: { type: 'string' },
  granule: { type: 'string' },
  variant: { type: 'string' },
  lpa2: { type: 'boolean' },
  fwb: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

function sizeText(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P'];
  let u = 0;
  while (n >= 1024 && n % 1024 === 0 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n}${units[u]}${u === 0 ? ' bytes' : ''}`;
}

export async function run(argv: string[]): Promise<number> {
  return runDecode('s2pte', USAGE, argv, (args) => {
    const { values, positionals } = parseDecodeArgs(args, OPTIONS);
    const v = parseValue(positionals, 'descriptor');
    if (values.level === undefined) throw new UsageError('missing --level N');
    if (!/^-?[0-9]+$/.test(values.level)) throw new UsageError(`--level expects an integer, got '${values.level}'`);
    const level = Number(values.level);
    const granule: Granule | undefined = values.granule === undefined ? '4k' : parseGranule(values.granule);
    if (!granule) throw new UsageError(`--granule must be 4k, 16k or 64k, got '${values.granule}'`);
    const lpa2 = values.lpa2 ?? false;
    if (lpa2 && granule === '64k') throw new UsageError('--lpa2 applies to the 4k and 16k granules only');
    const minLevel = granule === '4k' && lpa2 ? -1 : 0;
    if (level < minLevel || level > 3) throw new UsageError(`--level must be between ${minLevel} and 3 for ${granule}${lpa2 ? ' with LPA2' : ''}, got ${level}`);
    const encoding = values.variant === undefined ? 'annotate_2026' : parseOwnerEncoding(values.variant);
    if (!encoding) throw new UsageError(`--variant must be one of ${OWNER_ENCODINGS.join(', ')}, got '${values.variant}'`);
    const d = decodeS2Descriptor(v.lo, v.hi, { level, granule, lpa2, fwb: values.fwb ?? false, encoding });
    const out: Record<string, unknown> = {
      value: hexOf(v),
      level,
      granule,
      variant: encoding,
      kind: d.kind,
      fields: d.fields.map((f) => ({ name: f.name, bits: f.bits, value: f.value, hex: f.hex, meaning: f.meaning })),
    };
    if (d.outputAddress !== undefined) out['outputAddress'] = d.outputAddress;
    if (d.mapSize !== undefined) out['mapSize'] = d.mapSize;
    if (d.owner) out['owner'] = d.owner;
    if (d.annotationType) out['type'] = d.annotationType;
    if (d.note) out['note'] = d.note;
    if (values.json) {
      write(JSON.stringify(out, null, 2));
      return 0;
    }
    let head = `stage-2 descriptor ${out['value']}  level ${level}  ${granule}  ${encoding}\nkind: ${d.kind}`;
    if (d.outputAddress) head += `  output address ${d.outputAddress}`;
    if (d.mapSize) head += `  maps ${sizeText(d.mapSize)}`;
    if (d.owner) {
      head += `\nowner: ${d.owner.name} (id ${d.owner.id})`;
      if (d.owner.handle !== undefined) head += `  handle 0x${d.owner.handle.toString(16)}`;
      if (d.owner.gfn !== undefined) head += `  gfn ${d.owner.gfn}`;
    }
    if (d.annotationType) head += `\ntype: ${d.annotationType}`;
    if (d.note) head += `\nnote: ${d.note}`;
    const rows: string[][] = [['field', 'bits', 'value', 'meaning']];
    for (const f of d.fields) rows.push([f.name, f.bits, f.hex, f.meaning]);
    write(`${head}\n\n${formatTable(rows)}`);
    return 0;
  });
}
