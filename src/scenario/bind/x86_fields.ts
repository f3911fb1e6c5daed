/**
 * x86 state as `expect` fields: an SPTE by the names a KVM developer uses (kind, level, pfn, r/w/x/u,
 * a/d, ps, mmu_writable, host_writable, ...) and a kvm_mmu_page_role by its member names. Shared by the
 * x86 binding and its tests; no engine state, only decoders.
 */
import { describeSpte } from '../../engine/x86/spte_decode';
import type { SpteMasks } from '../../engine/x86/spte';
import type { Fields } from '../engine_api';

const AD_SHORT: Record<string, string> = {
  SPTE_TDP_AD_ENABLED: 'enabled',
  SPTE_TDP_AD_DISABLED: 'disabled',
  SPTE_TDP_AD_WRPROT_ONLY: 'wrprot_only',
};

export function spteExpectFields(m: SpteMasks, lo: number, hi: number, level: number, sptep?: number): Fields {
  lo >>>= 0;
  hi >>>= 0;
  const d = describeSpte(m, lo, hi, level);
  const present = d.kind === 'leaf' || d.kind === 'nonleaf';
  const value = (BigInt(hi) << 32n) | BigInt(lo);
  const f: Fields = {
    kind: d.kind,
    level,
    value,
    present: present ? 1 : 0,
    pfn: Number(BigInt(d.pfn)),
    ps: present && (lo & 0x80) !== 0 ? 1 : 0,
  };
  if (sptep !== undefined) f['sptep'] = sptep;
  if (present) {
    // The rwxu letters are those kvm_mmu_set_spte prints; '-' means clear, an absent u means no user mask.
    const t = d.traceFlags;
    f['r'] = t[0] === 'r' ? 1 : 0;
    f['w'] = d.writable ? 1 : 0;
    f['x'] = d.executable ? 1 : 0;
    if (t.length > 3) f['u'] = t[3] === 'u' ? 1 : 0;
    f['a'] = d.accessed ? 1 : 0;
    f['d'] = d.dirty ? 1 : 0;
    f['mmu_writable'] = d.mmuWritable ? 1 : 0;
    f['host_writable'] = d.hostWritable ? 1 : 0;
    f['ad'] = AD_SHORT[d.adType ?? ''] ?? d.adType ?? '';
    f['access_tracked'] = d.accessTracked ? 1 : 0;
    if (m.is_ept) {
      f['memtype'] = (lo >>> 3) & 7;
      f['ipat'] = (lo >>> 6) & 1;
      f['sve'] = (hi >>> 31) & 1;
    } else {
      f['nx'] = (hi >>> 31) & 1;
    }
  }
  if (d.mmio) f['mmio_gen'] = Number(BigInt(d.mmio.generation));
  return f;
}

const ROLE_BITS: ReadonlyArray<[string, number, number]> = [
  ['level', 0, 4], ['has_4_byte_gpte', 4, 1], ['quadrant', 5, 2], ['direct', 7, 1], ['access', 8, 3], ['invalid', 11, 1],
  ['efer_nx', 12, 1], ['cr0_wp', 13, 1], ['smep_andnot_wp', 14, 1], ['smap_andnot_wp', 15, 1], ['ad_disabled', 16, 1],
  ['guest_mode', 17, 1], ['passthrough', 18, 1], ['is_mirror', 19, 1], ['smm', 24, 8],
];

/** `role` (the word) and `role.<member>` for each union kvm_mmu_page_role member. */
export function roleExpectFields(word: number, into: Fields = {}): Fields {
  word >>>= 0;
  into['role'] = word;
  for (const [name, shift, width] of ROLE_BITS) into[`role.${name}`] = (word >>> shift) & ((1 << width) - 1);
  return into;
}
