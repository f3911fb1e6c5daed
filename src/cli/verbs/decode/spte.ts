/**
 * `kvm-mmu decode spte VALUE [--format ept|npt] [--level N] [--maxphyaddr N] [--no-ad] [--exec-only]
 * [--cbit N] [--json]`: what KVM would make of a 64-bit SPTE under a stated mask configuration.
 */
import { decodeFields, type BitField } from '../../../engine/bits/fields';
import type { U64 } from '../../../engine/bits/u64';
import {
  PT_PAGE_SIZE_MASK,
  classifySpte,
  eptMasks,
  get_mmio_spte_access,
  get_mmio_spte_generation,
  get_mmio_spte_gfn,
  is_access_track_spte,
  is_accessed_spte,
  is_executable_pte,
  is_host_writable_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  isLegacyRemovedSpte,
  kvm_mmu_set_spte_flags,
  nptMasks,
  spte_ad_type,
  spte_to_pfn,
  type SpteKind,
  type SpteMasks,
} from '../../../engine/x86/spte';
import { EPT_MMIO_SPTE_FIELDS, EPT_SPTE_FIELDS, NPT_MMIO_SPTE_FIELDS, NPT_SPTE_FIELDS } from '../../../engine/x86/spte_fields';
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

interface LevelChoice {
  level: number;
  source: 'option' | 'inferred';
  reason: string;
}

/** Guess the table level from bits only leaves carry (make_nonleaf_spte never sets them). */
function inferLevel(m: SpteMasks, v: U64, ept: boolean): LevelChoice {
  const { lo, hi } = v;
  if (!is_shadow_present_pte(lo, hi)) return { level: 1, source: 'inferred', reason: 'not shadow-present (bit 11 clear): the level does not change the reading' };
  if ((lo & PT_PAGE_SIZE_MASK) !== 0) return { level: 2, source: 'inferred', reason: 'PS set: huge leaf, assumed 2M (pass --level 3 for 1G)' };
  const hints: string[] = [];
  if ((lo & m.shadow_dirty_mask.lo) !== 0) hints.push('D set');
  if (is_host_writable_spte(m, lo, hi) || is_mmu_writable_spte(m, lo, hi)) hints.push('host/MMU-writable bits');
  if (ept && (lo & 0x78) !== 0) hints.push('memtype/IPAT bits');
  if (ept && (hi & ((1 << 22) | (1 << 24))) !== 0) hints.push('access-track saved bits');
  if (hints.length > 0) return { level: 1, source: 'inferred', reason: `4K leaf (${hints.join(', ')}; non-leaf SPTEs never carry them)` };
  return { level: 2, source: 'inferred', reason: 'no leaf-only bits: non-leaf, table level unknown (assumed 2)' };
}

const AD_TYPE_NAMES = ['SPTE_TDP_AD_ENABLED', 'SPTE_TDP_AD_DISABLED', 'SPTE_TDP_AD_WRPROT_ONLY', 'invalid'] as const;

export interface SpteDecodeResult {
  value: string;
  format: 'ept' | 'npt';
  level: number;
  levelSource: 'option' | 'inferred';
  levelReason: string;
  assumptions: Record<string, string | number | boolean | null>;
  kind: SpteKind;
  large: boolean;
  writable: boolean;
  executable: boolean;
  pfn: string;
  traceFlags: string;
  [extra: string]: unknown;
  fields: Array<{ name: string; bits: string; msb: number; lsb: number; value: number; hex: string; meaning: string }>;
}

export function decodeSpte(
  v: U64,
  opts: { format: 'ept' | 'npt'; level?: number; maxphyaddr?: number; ad?: boolean; execOnly?: boolean; cbit?: number },
): SpteDecodeResult {
  const ept = opts.format === 'ept';
  const maxphyaddr = opts.maxphyaddr ?? (ept ? 52 : 48);
  const ad = opts.ad ?? true;
  const execOnly = opts.execOnly ?? false;
  const m = ept
    ? eptMasks({ maxphyaddr }, ad, execOnly)
    : nptMasks(
        opts.cbit === undefined ? { maxphyaddr } : { maxphyaddr, mem_encrypt: { c_bit: opts.cbit, phys_bits_reduction: 5, sme_active: true } },
      );
  const lv: LevelChoice = opts.level !== undefined ? { level: opts.level, source: 'option', reason: 'given with --level' } : inferLevel(m, v, ept);
  const { lo, hi } = v;
  const kind = classifySpte(m, lo, hi, lv.level);
  const present = kind === 'leaf' || kind === 'nonleaf';
  let table: readonly BitField[] = ept ? EPT_SPTE_FIELDS : NPT_SPTE_FIELDS;
  if (kind === 'mmio') table = ept ? EPT_MMIO_SPTE_FIELDS : NPT_MMIO_SPTE_FIELDS;

  const r: SpteDecodeResult = {
    value: hexOf(v),
    format: opts.format,
    level: lv.level,
    levelSource: lv.source,
    levelReason: lv.reason,
    assumptions: {
      format: ept ? 'EPT (kvm_mmu_set_ept_masks)' : 'NPT/legacy (kvm_mmu_reset_all_pte_masks + SVM setup)',
      adBits: m.kvm_ad_enabled,
      execOnly: ept ? execOnly : null,
      maxphyaddr,
      smeCbit: ept ? null : (opts.cbit ?? null),
      presentMask: hexOf(m.shadow_present_mask),
      mmioCaching: m.enable_mmio_caching,
      mmioValue: hexOf(m.shadow_mmio_value),
      mmioMask: hexOf(m.shadow_mmio_mask),
      baseAddrMask: hexOf(m.spte_base_addr_mask),
      frozen: 'FROZEN_SPTE 0x80000000000005a0, and pre-6.11 REMOVED_SPTE 0x5a0',
    },
    kind,
    large: present && lv.level > 1 && (lo & PT_PAGE_SIZE_MASK) !== 0,
    writable: present && is_writable_pte(lo, hi),
    executable: present && is_executable_pte(m, lo, hi),
    pfn: '0x' + spte_to_pfn(m, lo, hi).toString(16),
    traceFlags: kvm_mmu_set_spte_flags(m, lo, hi),
    fields: decodeFields(lo, hi, table),
  };
  if (present) {
    r.hostWritable = is_host_writable_spte(m, lo, hi);
    r.mmuWritable = is_mmu_writable_spte(m, lo, hi);
    r.accessed = is_accessed_spte(m, lo, hi);
    r.dirty = (lo & m.shadow_dirty_mask.lo) !== 0;
    r.adType = AD_TYPE_NAMES[spte_ad_type(lo, hi)];
    r.accessTracked = is_access_track_spte(m, lo, hi);
  }
  if (kind === 'mmio') {
    r.mmio = {
      gfn: '0x' + get_mmio_spte_gfn(m, lo, hi).toString(16),
      generation: '0x' + get_mmio_spte_generation(lo, hi).toString(16),
      access: get_mmio_spte_access(m, lo, hi),
    };
  }
  if (kind === 'frozen') r.frozenAs = isLegacyRemovedSpte(lo, hi) ? 'REMOVED_SPTE (pre-6.11)' : 'FROZEN_SPTE';
  return r;
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function text(r: SpteDecodeResult): string {
  const a = r.assumptions;
  const head = formatTable([
    ['SPTE', `${r.value}  (${r.format.toUpperCase()}, level ${r.level} ${r.levelSource === 'option' ? 'given' : 'inferred: ' + r.levelReason})`],
    ['kind', r.kind + (r.frozenAs ? ` (${String(r.frozenAs)})` : '')],
    ['large', yesNo(r.large)],
    ['writable', yesNo(r.writable)],
    ['executable', yesNo(r.executable)],
    ['pfn', r.pfn],
    ['trace flags', `(${r.traceFlags})`],
    ...(r.kind === 'leaf' || r.kind === 'nonleaf'
      ? [
          ['A/D type', String(r.adType)],
          ['host/MMU-writable', `${yesNo(r.hostWritable as boolean)}/${yesNo(r.mmuWritable as boolean)}`],
          ['access-tracked', yesNo(r.accessTracked as boolean)],
        ]
      : []),
    ...(r.mmio ? [['mmio', `gfn ${(r.mmio as { gfn: string }).gfn} gen ${(r.mmio as { generation: string }).generation} access ${(r.mmio as { access: number }).access}`]] : []),
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
