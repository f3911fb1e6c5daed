/**
 * MMU invariant auditor: walks the whole engine state and lists what breaks the kernel's invariants,
 * in the spirit of CONFIG_KVM_PROVE_MMU's WARNs and the old mmu_audit.c, but over everything at once.
 *
 * Per-part checkers live beside this file: `tdp_mmu_audit.ts`, `shadow_audit.ts`, `rmp_audit.ts`
 * (SEV-SNP), `arm64_audit.ts`. Each returns violations as data; `auditEngine` also hits the
 * probe `audit_violation` (group `audit`) once per violation, so the debugger's "Auditor violation"
 * exception filter stops there with the violation as the probe's arguments.
 *
 * The auditor reads, never writes, and is never on a hot path: it runs on demand (tests after every
 * statement, the `kvmMmu/audit` request in a session). Run it between operations: in the middle of an
 * engine function (a stop at a probe) a root walk holds an extra root reference and a zap may have left
 * a frozen entry for a moment, which the checks report as they would be reported at rest.
 */
import { defineProbe, probes } from '../probes';
import type { Kvm } from '../x86/vm';
import type { KvmPgtable } from '../arm64/pgtable';
import type { Arm64Vm } from '../arm64/mmu';
import { auditTdpMmu } from './tdp_mmu_audit';
import { auditStage2 } from './arm64_audit';
import { auditShadowMmu } from './shadow_audit';
import { auditRmp } from './rmp_audit';
import type { ShadowMmu } from '../x86/shadow_mmu';

export interface AuditViolation {
  /** Stable id of the invariant (`parent-link`, `root-count`, `writable`, `stats`, `s2-refcount`, ...). */
  check: string;
  /** Where: the table and entry, e.g. `root pfn 0x40000 > L3 pfn 0x40001 [5]` or `host stage-2 pa 0x10000 [3]`. */
  where: string;
  /** What is wrong, with the values seen and expected. */
  what: string;
}

export interface AuditReport {
  violations: AuditViolation[];
  /** Individual invariant evaluations performed (entries, tables, counters), for the record. */
  checks: number;
}

/** Collects violations and counts checks; shared by the per-part checkers. */
export class AuditSink {
  readonly violations: AuditViolation[] = [];
  checks = 0;
  constructor(private readonly max = 1000) {}

  /** Count one check; record a violation when `ok` is false. Returns `ok`. */
  expect(ok: boolean, check: string, where: () => string, what: () => string): boolean {
    this.checks++;
    if (!ok && this.violations.length < this.max) this.violations.push({ check, where: where(), what: what() });
    return ok;
  }
}

export const AUDIT_VIOLATION = defineProbe(
  'audit_violation',
  'audit',
  'arch/x86/kvm/mmu/mmu.c',
  'the MMU invariant auditor found a broken invariant (what KVM_MMU_WARN_ON / CONFIG_KVM_PROVE_MMU would flag)',
  ['check', 'where', 'what'],
);

/** The probe site: a named function so the debugger's KVM call stack shows `audit_violation`. */
function audit_violation(v: AuditViolation): void {
  if (probes.armed) probes.hit(AUDIT_VIOLATION, { check: v.check, where: v.where, what: v.what });
}

/** Anything the auditor can read: an x86 `Kvm`, an `X86Vm`, an `Arm64Vm`, a stage-2 `KvmPgtable`, or a scenario engine holding one in `.vm`. */
export type Auditable = unknown;

function isKvm(o: unknown): o is Kvm {
  const k = o as Kvm;
  return !!k && typeof k === 'object' && Array.isArray(k.arch?.tdp_mmu_roots) && !!k.pool && typeof k.pool.sp_of_pfn === 'function' && !!k.stat;
}

function isPgtable(o: unknown): o is KvmPgtable {
  const p = o as KvmPgtable;
  return !!p && typeof p === 'object' && 'pgd' in p && !!p.mm_ops && typeof p.mm_ops.get_page === 'function' && typeof p.start_level === 'number';
}

function isArm64Vm(o: unknown): o is Arm64Vm {
  const v = o as Arm64Vm;
  return !!v && typeof v === 'object' && isPgtable(v.pgt) && 'memcache' in v;
}

/** The MMU objects inside `target`, with a label for `where`. */
function isShadowMmu(o: unknown): o is ShadowMmu {
  const k = o as ShadowMmu;
  return !!k && typeof k === 'object' && 'active_head' in k && !!k.desc_pool && k.rmaps instanceof Map && typeof k.sp_of_pfn === 'function';
}

function partsOf(target: Auditable): Array<{ label: string; kvm?: Kvm; sk?: ShadowMmu; pgt?: KvmPgtable; arm?: Arm64Vm }> {
  let t = target as Record<string, unknown> | null | undefined;
  if (t && typeof t === 'object' && !isKvm(t) && !isPgtable(t) && !isArm64Vm(t) && t['vm']) t = t['vm'] as Record<string, unknown>;
  if (t && typeof t === 'object' && !isKvm(t) && t['kvm'] && isKvm(t['kvm'])) {
    return [{ label: 'x86', kvm: t['kvm'] as Kvm, sk: isShadowMmu(t['sk']) ? t['sk'] : undefined }];
  }
  if (isKvm(t)) return [{ label: 'x86', kvm: t }];
  if (isArm64Vm(t)) {
    const out: Array<{ label: string; pgt?: KvmPgtable; arm?: Arm64Vm }> = [];
    if (t.pkvm) {
      out.push({ label: 'host stage-2', pgt: t.pkvm.host_pgt, arm: t });
      for (const [handle, vm] of t.pkvm.vms) out.push({ label: `guest ${handle} stage-2`, pgt: vm.pgt, arm: t });
    } else {
      out.push({ label: 'stage-2', pgt: t.pgt, arm: t });
    }
    return out;
  }
  if (isPgtable(t)) return [{ label: 'stage-2', pgt: t }];
  return [];
}

/**
 * Audit everything reachable from `target`. Never throws: a checker that trips over a state too broken
 * to walk reports that as a violation. Each violation also hits the `audit_violation` probe.
 */
export function auditEngine(target: Auditable, opts: { maxViolations?: number } = {}): AuditReport {
  const sink = new AuditSink(opts.maxViolations);
  for (const part of partsOf(target)) {
    try {
      if (part.kvm) {
        const shadow = part.sk ? auditShadowMmu(part.kvm, part.sk, sink) : undefined;
        auditTdpMmu(part.kvm, sink, shadow);
        auditRmp(part.kvm, sink);
      }
      if (part.pgt) auditStage2(part.pgt, part.label, sink, part.arm?.pkvm);
    } catch (e) {
      sink.expect(false, 'walk', () => part.label, () => `the state cannot be walked: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const v of sink.violations) audit_violation(v);
  return { violations: sink.violations, checks: sink.checks };
}

/** True when `target` holds something the auditor knows how to check. */
export function canAudit(target: Auditable): boolean {
  return partsOf(target).length > 0;
}

/** One line per violation: `check at where: what`. */
export function formatViolations(r: AuditReport): string[] {
  return r.violations.map((v) => `${v.check} at ${v.where}: ${v.what}`);
}
