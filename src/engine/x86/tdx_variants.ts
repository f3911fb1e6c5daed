/**
 * Design variant `tdx_stolen_bits` (seed 000): where a TD's stolen GPA bit (the shared bit) lives.
 *
 * - `mirror_role` (upstream): private mappings live under a separate mirror root whose role has
 *   is_mirror set; shared mappings under the normal direct root, indexed with the shared bit.
 * - `sp_field` (the 2021 RFC): one root for everything; each kvm_mmu_page records the stolen bits of the
 *   half it maps in `gfn_stolen_bits`, and shadow pages are looked up by gfn | stolen bits. The root's
 *   low half (no shared bit) is the private half mirrored to the TDX module.
 *
 * The report runs the same workload on both and lists what differs.
 */
import { KVM_X86_TDX_VM, X86Vm, type X86VmOptions } from './index';

export interface TdxVariantStats {
  variant: 'mirror_role' | 'sp_field';
  /** Roots on tdp_mmu_roots after the workload. */
  roots: number;
  /** Live kvm_mmu_page structs (roots included). */
  sps: number;
  /** Bytes added to every kvm_mmu_page header by the variant (gfn_t gfn_stolen_bits = 8 for sp_field). */
  extra_header_bytes_per_sp: number;
  extra_header_bytes: number;
  /** Entries in the gfn|stolen-bits hash (sp_field only). */
  hash_entries: number;
  /** S-EPT tables the TDX module holds and private pages it maps. */
  sept_tables: number;
  private_pages: number;
  /** Leaf SPTEs KVM holds for private / shared mappings. */
  private_leaves: number;
  shared_leaves: number;
}

export interface TdxVariantReport {
  mirror_role: TdxVariantStats;
  sp_field: TdxVariantStats;
  /** One line per difference, e.g. "roots: 2 (mirror_role) vs 1 (sp_field)". */
  differences: string[];
}

function stats(vm: X86Vm): TdxVariantStats {
  const kvm = vm.kvm;
  const variant = kvm.tdx_variant;
  const sps = kvm.pool.live;
  let private_leaves = 0;
  let shared_leaves = 0;
  for (const root of kvm.arch.tdp_mmu_roots) {
    for (const [gfn] of vm.leaves(root)) {
      const mirror = (root.role & 0x8_0000) !== 0;
      if (mirror || !kvm.kvm_is_gfn_alias(gfn)) private_leaves++;
      else shared_leaves++;
    }
  }
  const per = variant === 'sp_field' ? 8 : 0;
  return {
    variant, roots: kvm.arch.tdp_mmu_roots.length, sps, extra_header_bytes_per_sp: per, extra_header_bytes: per * sps,
    hash_entries: kvm.sp_hash.size, sept_tables: vm.tdx ? vm.tdx.table_count() : 0, private_pages: vm.tdx ? vm.tdx.mapped().size : 0,
    private_leaves, shared_leaves,
  };
}

/** Run `workload` on a TD built with each variant (same options otherwise) and compare. */
export function compare_tdx_stolen_bits(workload: (vm: X86Vm) => void, opts: X86VmOptions = {}): TdxVariantReport {
  const run = (variant: 'mirror_role' | 'sp_field'): TdxVariantStats => {
    const vm = new X86Vm({ ...opts, vm_type: KVM_X86_TDX_VM, tdx_variant: variant });
    workload(vm);
    return stats(vm);
  };
  const a = run('mirror_role');
  const b = run('sp_field');
  const differences: string[] = [];
  for (const k of Object.keys(a) as Array<keyof TdxVariantStats>) {
    if (k === 'variant') continue;
    if (a[k] !== b[k]) differences.push(`${k}: ${a[k]} (mirror_role) vs ${b[k]} (sp_field)`);
  }
  return { mirror_role: a, sp_field: b, differences };
}
