/**
 * `kvm-mmu decode spte VALUE [--format ept|npt] [--level N] [--maxphyaddr N] [--no-ad] [--exec-only]
 * [--cbit N] [--json]`: what KVM would make of a 64-bit SPTE under a stated mask configuration.
 */
import type { U64 } from '../../../engine/bits/u64';
import { eptMasks, nptMasks } from '../../../engine/x86/spte';
import { describeMasks, describeSpte, guessSpteLevel, type SpteDescription } from '../../../engine/x86/spte_decode';
import { formatTable, hexOf, intOption, parseDecodeArgs, parseValue, runDecode, UsageError, write } from './common';

const USAGE = `usage: kvm-mmu decode spte VALUE [--format ept|npt] [--level N] [--maxphyaddr N] [--no-ad] [--exec-only] [--cbit N] [--json]

Decode a KVM x86 SPTE (hex, 0x optional) as the 6.18 MMU reads it.
  --format ept|npt   EPT (VMX) or NPT/legacy 64-bit (SVM, shadow paging); default ept
  --level N          level of the table holding the SPTE (1-5); default: inferred from leaf-only bits
  --maxphyaddr N     host MAXPHYADDR (default 52 for ept, 48 for npt so the bit-51 MMIO mask exists)
  --no-ad            EPT without accessed/dirty bits (kvm_ad_enabled = false)
  --exec-only        EPT with execute-only support (shadow_present_mask = SVE only)
  --cbit N           npt: host SME active with the C-bit at N (5 PA bits stolen)
  --json             machine-readable output`;

const OPTIONS = {
  format: { type: 'string' },
  level: { type: 'string' },
  maxphyaddr: { type: 'string' },
  'no-ad': { type: 'boolean' },
  'exec-only': { type: 'boolean' },
  cbit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export interface SpteDecodeResult extends SpteDescription {
  value: string;
  format: 'ept' | 'npt';
  level: number;
  levelSource: 'option' | 'inferred';
  levelReason: string;
  assumptions: Record<string, string | number | boolean | null>;
}

export function decodeSpte(
  v: U64,
  opts: { format: 'ept' | 'npt'; level?: number; maxphyaddr?: number; ad?: boolean; execOnly?: boolean; cbit?: number },
): SpteDecodeResult {
  const ept = opts.format === 'ept';
  const maxphyaddr = opts.maxphyaddr ?? (ept ? 52 : 48);
  const execOnly = opts.execOnly ?? false;
  const m = ept
    ? eptMasks({ maxphyaddr }, opts.ad ?? true, execOnly)
    : nptMasks(
        opts.cbit === undefined ? { maxphyaddr } : { maxphyaddr, mem_encrypt: { c_bit: opts.cbit, phys_bits_reduction: 5, sme_active: true } },
      );
  const guess = opts.level === undefined ? guessSpteLevel(m, v.lo, v.hi) : undefined;
  const level = opts.level ?? guess!.level;
  const d = describeSpte(m, v.lo, v.hi, level);
  return {
    value: hexOf(v),
    format: opts.format,
    level,
    levelSource: guess ? 'inferred' : 'option',
    levelReason: guess ? guess.reason : 'given with --level',
    assumptions: {
      format: ept ? 'EPT (kvm_mmu_set_ept_masks)' : 'NPT/legacy (kvm_mmu_reset_all_pte_masks + SVM setup)',
      execOnly: ept ? execOnly : null,
      smeCbit: ept ? null : (opts.cbit ?? null),
      ...describeMasks(m),
      frozen: 'FROZEN_SPTE 0x80000000000005a0, and pre-6.11 REMOVED_SPTE 0x5a0',
    },
    ...d,
  };
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function text(r: SpteDecodeResult): string {
  const a = r.assumptions;
  const head = formatTable([
    ['SPTE', `${r.value}  (${r.format.toUpperCase()}, level ${r.level} ${r.levelSource === 'option' ? 'given' : 'inferred: ' + r.levelReason})`],
    ['kind', r.kind + (r.frozenAs ? ` (${r.frozenAs})` : '')],
    ['large', yesNo(r.large)],
    ['writable', yesNo(r.writable)],
    ['executable', yesNo(r.executable)],
    ['pfn', r.pfn],
    ['trace flags', `(${r.traceFlags})`],
    ...(r.kind === 'leaf' || r.kind === 'nonleaf'
      ? [
          ['A/D type', String(r.adType)],
          ['host/MMU-writable', `${yesNo(r.hostWritable === true)}/${yesNo(r.mmuWritable === true)}`],
          ['access-tracked', yesNo(r.accessTracked === true)],
        ]
      : []),
    ...(r.mmio ? [['mmio', `gfn ${r.mmio.gfn} gen ${r.mmio.generation} access ${r.mmio.access}`]] : []),
    [
      'assumptions',
      `${r.format === 'ept' ? `EPT ${a.adBits ? 'with' : 'without'} A/D, ${a.execOnly ? '' : 'no '}exec-only` : `NPT${a.smeCbit !== null ? `, SME C-bit ${String(a.smeCbit)}` : ', no SME'}`}, ` +
        `MAXPHYADDR ${String(a.maxphyaddr)}, MMIO ${a.mmioCaching ? `value ${String(a.mmioValue)} mask ${String(a.mmioMask)}` : 'caching off'}`,
    ],
  ]);
  const rows: string[][] = [['bits', 'field', 'value', 'meaning']];
  for (const f of r.fields) rows.push([f.bits, f.name, f.msb - f.lsb >= 4 ? f.hex : String(f.value), f.meaning]);
  return head + '\n\n' + formatTable(rows);
}

export async function run(argv: string[]): Promise<number> {
  return runDecode('spte', USAGE, argv, (args) => {
    const { values, positionals } = parseDecodeArgs(args, OPTIONS);
    const v = parseValue(positionals, 'SPTE');
    const format = values.format ?? 'ept';
    if (format !== 'ept' && format !== 'npt') throw new UsageError(`--format must be ept or npt, got '${format}'`);
    const level = intOption(values.level, 'level', 1, 5);
    const maxphyaddr = intOption(values.maxphyaddr, 'maxphyaddr', 32, 52);
    const cbit = intOption(values.cbit, 'cbit', 32, 51);
    if (format === 'ept' && cbit !== undefined) throw new UsageError('--cbit applies to --format npt only');
    if (format === 'npt' && (values['no-ad'] || values['exec-only'])) throw new UsageError('--no-ad and --exec-only apply to --format ept only');
    const r = decodeSpte(v, { format, level, maxphyaddr, ad: !values['no-ad'], execOnly: values['exec-only'] ?? false, cbit });
    write(values.json ? JSON.stringify(r, null, 2) : text(r));
    return 0;
  });
}
