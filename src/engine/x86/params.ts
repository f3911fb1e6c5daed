/**
 * KVM x86 module parameters (kvm.ko / kvm_intel.ko / kvm_amd.ko) and the vendor configuration the MMU is
 * set up from. A VM snapshots these at creation, as the kernel resolves most of them at module init.
 */

export type Vendor = 'vmx' | 'svm';

/** `nx_huge_pages`: on/off after resolving "auto"; "never" is the hard disable (reads back "never"). */
export type NxHugePagesMode = 'off' | 'on' | 'never';

export interface KvmX86ModuleParams {
  /** kvm.tdp_mmu (read-only after load, default Y on 64-bit). */
  tdp_mmu: boolean;
  /** kvm.eager_page_split (default Y, 0644). */
  eager_page_split: boolean;
  /** kvm.nx_huge_pages, already resolved from "auto"/"force"/"off"/"never". */
  nx_huge_pages: NxHugePagesMode;
  /** kvm.nx_huge_pages_recovery_ratio (default 60). */
  nx_huge_pages_recovery_ratio: number;
  /** kvm.nx_huge_pages_recovery_period_ms (default 0 = derived from the ratio). */
  nx_huge_pages_recovery_period_ms: number;
  /** kvm.mmio_caching (default Y; forced off if the vendor can't provide a usable MMIO mask). */
  mmio_caching: boolean;
  /** kvm.tdp_root_level: 0 = let KVM pick, else forces 4 or 5 (used for testing). */
  tdp_root_level: number;
}

export interface KvmX86VendorConfig {
  vendor: Vendor;
  /** kvm_intel.ept / kvm_amd.npt (the engine models TDP only). */
  tdp_enabled: true;
  /** Largest TDP level the hardware supports (EPT 5-level / NPT with LA57 host): 4 or 5. */
  max_tdp_level: 4 | 5;
  /** EPT accessed/dirty bits (kvm_intel.enable_ept_ad_bits); NPT always has A/D. */
  ept_ad: boolean;
  /** EPT execute-only support (VMX_EPT_EXECUTE_ONLY_BIT in the EPT/VPID capability MSR). */
  ept_execonly: boolean;
  /** kvm_intel.enable_pml (page-modification logging: dirty logging by clearing D instead of W). */
  pml: boolean;
  /** Host MAXPHYADDR (boot_cpu_data.x86_phys_bits): NPT MMIO caching needs it below 52. */
  host_maxphyaddr: number;
  /** Largest TDP huge page level the vendor offers (1G unless the CPU lacks it). */
  tdp_max_huge_level: 1 | 2 | 3;
}

export function default_module_params(): KvmX86ModuleParams {
  return {
    tdp_mmu: true,
    eager_page_split: true,
    nx_huge_pages: 'off',
    nx_huge_pages_recovery_ratio: 60,
    nx_huge_pages_recovery_period_ms: 0,
    mmio_caching: true,
    tdp_root_level: 0,
  };
}

export function default_vendor_config(vendor: Vendor = 'vmx'): KvmX86VendorConfig {
  return {
    vendor,
    tdp_enabled: true,
    max_tdp_level: 4,
    ept_ad: true,
    ept_execonly: true,
    pml: false,
    host_maxphyaddr: 46,
    tdp_max_huge_level: 3,
  };
}

/** True iff the NX huge page mitigation is active for `kvm` (module param, minus the per-VM opt-out). */
export function is_nx_huge_page_enabled(p: KvmX86ModuleParams, disable_nx_huge_pages: boolean): boolean {
  return p.nx_huge_pages === 'on' && !disable_nx_huge_pages;
}

/**
 * Period of the NX recovery worker: an explicit period wins; otherwise one hour divided by the ratio,
 * with the ratio capped at 3600 so the period never drops below one second. Ratio 0 disables recovery.
 */
export function nx_huge_pages_recovery_period(p: KvmX86ModuleParams): { enabled: boolean; period_ms: number } {
  const ratio = p.nx_huge_pages_recovery_ratio;
  const enabled = ratio !== 0;
  let period = p.nx_huge_pages_recovery_period_ms;
  if (period === 0 && enabled) period = Math.floor(3600000 / Math.min(ratio, 3600));
  return { enabled, period_ms: period };
}

export function validate_params(p: KvmX86ModuleParams, v: KvmX86VendorConfig): string | undefined {
  if (p.tdp_root_level !== 0 && p.tdp_root_level !== 4 && p.tdp_root_level !== 5) return `tdp_root_level must be 0, 4 or 5`;
  if (p.tdp_root_level > v.max_tdp_level) return `tdp_root_level ${p.tdp_root_level} exceeds max_tdp_level ${v.max_tdp_level}`;
  if (!Number.isInteger(p.nx_huge_pages_recovery_ratio) || p.nx_huge_pages_recovery_ratio < 0) return 'nx_huge_pages_recovery_ratio must be a non-negative integer';
  if (v.host_maxphyaddr < 36 || v.host_maxphyaddr > 52) return 'host_maxphyaddr must be 36..52';
  return undefined;
}
