/**
 * Exception breakpoint filters: classes of MMU events a user wants to stop at without naming a probe.
 * Probe-based filters match on the probe's name or group; `expect_failed` and `engine_error` match
 * failures of a whole statement.
 */
import type { DebugProtocol } from '@vscode/debugprotocol';
import type { ProbeArgs } from '../engine/probes';
import { asU64 } from './inspect';

export interface ExceptionFilter extends DebugProtocol.ExceptionBreakpointsFilter {
  /** Probe groups whose hits this filter watches (so steps are armed). */
  probeGroups?: string[];
  matches?: (probe: string, group: string, args: ProbeArgs) => boolean;
}

const is = (...names: string[]) => (p: string) => names.includes(p);

export const EXCEPTION_FILTERS: ExceptionFilter[] = [
  { filter: 'page_fault', label: 'Any page fault', description: 'Stop at kvm_mmu_page_fault (x86) or kvm_handle_guest_abort (arm64)', default: false,
    probeGroups: ['fault'], matches: is('kvm_mmu_page_fault', 'kvm_handle_guest_abort') },
  { filter: 'rmp_conversion', label: 'RMP conversion', description: 'Stop where an RMP entry changes (rmp_make_private, rmp_make_shared, psmash, RMPUPDATE, and the firmware\'s LAUNCH_UPDATE in sev_gmem_post_populate)', default: false,
    // sev_gmem_post_populate: SNP_LAUNCH_UPDATE makes the firmware set Validated, a change no RMPUPDATE shows.
    probeGroups: ['rmp'], matches: is('rmp_make_private', 'rmp_make_shared', 'psmash', 'rmpupdate', 'sev_gmem_post_populate') },
  { filter: 'spte_zapped', label: 'SPTE zapped', description: 'Stop where a present SPTE becomes non-present', default: false,
    probeGroups: ['tdp_mmu', 'shadow_mmu'], matches: (p, _g, a) => /zap|handle_changed_spte|drop_spte|mmu_spte_clear|kvm_tdp_mmu_spte_changed/.test(p) && zapped(a) },
  { filter: 'huge_page_split', label: 'Huge page split', description: 'Stop at tdp_mmu_split_huge_page / shadow_mmu_split_huge_page / stage-2 split', default: false,
    probeGroups: ['tdp_mmu', 'shadow_mmu', 'stage2'], matches: (p) => /split_huge_page|stage2_split/.test(p) },
  { filter: 'memory_fault_exit', label: 'KVM_EXIT_MEMORY_FAULT', description: 'Stop where KVM prepares a memory-fault exit to userspace', default: false,
    probeGroups: ['fault', 'private'], matches: is('kvm_mmu_prepare_memory_fault_exit', 'kvm_prepare_memory_fault_exit') },
  { filter: 'rmp_npf', label: 'RMP #NPF', description: 'Stop at sev_handle_rmp_fault', default: false,
    probeGroups: ['rmp'], matches: is('sev_handle_rmp_fault') },
  { filter: 'audit_violation', label: 'Auditor violation', description: 'Audit the whole MMU after every statement and stop where an invariant breaks', default: false,
    probeGroups: ['audit'], matches: is('audit_violation') },
  { filter: 'expect_failed', label: 'Failed expect', description: 'Stop after a scenario statement whose expectation does not hold', default: true },
  { filter: 'engine_error', label: 'Statement error', description: 'Stop after a statement that the engine refused (an ioctl error, an illegal operation)', default: false },
];

function zapped(a: ProbeArgs): boolean {
  const o = asU64(a.old_spte);
  const n = asU64(a.new_spte);
  if (!o || !n) return false;
  // MMU-present is bit 11 in every SPTE format KVM uses.
  return (o.lo & 0x800) !== 0 && (n.lo & 0x800) === 0;
}

/** Which filter a statement failure belongs to. */
export function exceptionFilterFor(kind: string): string {
  return kind === 'expect' ? 'expect_failed' : kind === 'audit' ? 'audit_violation' : 'engine_error';
}
