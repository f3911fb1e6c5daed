/**
 * The per-VM stage-2 debugfs files (arch/arm64/kvm/ptdump.c, v6.11+): `stage2_page_tables`, `ipa_range`
 * and `stage2_levels`, in the exact text the kernel prints.
 *
 * The dump is a LEAF-only walk of [0, 2^ia_bits) feeding the arm64 `note_page()` state machine: entries with
 * the same level and the same masked attributes merge into one line, printed when the next different entry
 * arrives. The walk never reports the end of the range, so the last run is never printed: a faithful quirk.
 * Only valid, S2AP R/W, XN, AF and bits 1:0 are in the mask: MemAttr, SW bits (pKVM states) and most
 * annotations are invisible.
 */
import { defineProbe, probes } from '../probes';
import { KVM_PGTABLE_WALK_LEAF, type KvmPgtable, type KvmPgtableVisitCtx, kvm_pgtable_walk } from './pgtable';

export const PTDUMP_PROBE = defineProbe('kvm_ptdump_guest_show', 'stage2', 'arch/arm64/kvm/ptdump.c', 'render the stage2_page_tables debugfs file', ['pgt']);

// Masked attributes, as halves: VALID|TYPE (bits 1:0), S2AP_R (6), S2AP_W (7), AF (10); XN 54:53 in the high half.
const MASK_LO = 0x3 | 0x40 | 0x80 | 0x400;
const MASK_HI = 0x3 << 21;

interface ProtBits {
  maskLo: number;
  maskHi: number;
  valLo: number;
  valHi: number;
  set: string | null;
  clear: string | null;
}

const XN = (v: number): ProtBits => ({ maskLo: 0, maskHi: MASK_HI, valLo: 0, valHi: v << 21, set: ['px ux ', 'PXNux ', 'PXNUXN', 'px UXN'][v]!, clear: null });

const STAGE2_PTE_BITS: readonly ProtBits[] = [
  { maskLo: 1, maskHi: 0, valLo: 1, valHi: 0, set: ' ', clear: 'F' },
  { maskLo: 0x40, maskHi: 0, valLo: 0x40, valHi: 0, set: 'R', clear: ' ' },
  { maskLo: 0x80, maskHi: 0, valLo: 0x80, valHi: 0, set: 'W', clear: ' ' },
  XN(0),
  XN(1),
  XN(2),
  XN(3),
  { maskLo: 0x400, maskHi: 0, valLo: 0x400, valHi: 0, set: 'AF', clear: '  ' },
  // PMD_TYPE_MASK / PMD_TYPE_SECT: bits 1:0 == 01 is a block
  { maskLo: 0x3, maskHi: 0, valLo: 0x1, valHi: 0, set: 'BLK', clear: '   ' },
];

const UNITS = 'KMGTPE';

class PgState {
  out: string[] = [];
  level = -1;
  protLo = 0;
  protHi = 0;
  start = 0;
  started = false;
}

function hex16(n: number): string {
  return '0x' + n.toString(16).padStart(16, '0');
}

function dump_prot(st: PgState): string {
  let s = '';
  for (const b of STAGE2_PTE_BITS) {
    const hit = (st.protLo & b.maskLo) === b.valLo && (st.protHi & b.maskHi) >>> 0 === b.valHi >>> 0;
    const t = hit ? b.set : b.clear;
    if (t !== null) s += ' ' + t;
  }
  return s;
}

/** arm64 note_page() for the KVM guest-IPA marker pair. */
function note_page(st: PgState, addr: number, level: number, lo: number, hi: number): void {
  const pLo = (lo & MASK_LO) >>> 0;
  const pHi = (hi & MASK_HI) >>> 0;
  if (!st.started) {
    st.started = true;
    st.level = level;
    st.protLo = pLo;
    st.protHi = pHi;
    st.start = addr;
    st.out.push('---[ Guest IPA ]---\n');
    return;
  }
  if (pLo === st.protLo && pHi === st.protHi && level === st.level) return;
  let delta = Math.floor((addr - st.start) / 1024);
  let u = 0;
  while (delta % 1024 === 0 && u < UNITS.length - 1) {
    delta = delta / 1024;
    u++;
  }
  let line = `${hex16(st.start)}-${hex16(addr)}   ${String(delta).padStart(9, ' ')}${UNITS[u]} ${st.level}`;
  if (st.protLo !== 0 || st.protHi !== 0) line += dump_prot(st);
  st.out.push(line + '\n');
  st.start = addr;
  st.protLo = pLo;
  st.protHi = pHi;
  st.level = level;
}

function kvm_ptdump_visitor(ctx: KvmPgtableVisitCtx, _visit: number): number {
  note_page(ctx.arg as PgState, ctx.addr, ctx.level, ctx.oldLo, ctx.oldHi);
  return 0;
}

/** The text of `stage2_page_tables`. */
export function kvm_ptdump_guest_show(pgt: KvmPgtable): string {
  if (probes.armed) probes.hit(PTDUMP_PROBE, { pgt });
  const st = new PgState();
  kvm_pgtable_walk(pgt, 0, Math.pow(2, pgt.ia_bits), { cb: kvm_ptdump_visitor, arg: st, flags: KVM_PGTABLE_WALK_LEAF });
  return st.out.join('');
}

/** The text of `ipa_range`. */
export function kvm_pgtable_range_show(pgt: KvmPgtable): string {
  return String(pgt.ia_bits).padStart(2, ' ') + '\n';
}

/** The text of `stage2_levels`: KVM_PGTABLE_MAX_LEVELS - start_level. */
export function kvm_pgtable_levels_show(pgt: KvmPgtable): string {
  return String(4 - pgt.start_level) + '\n';
}
