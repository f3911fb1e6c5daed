/**
 * SEV-SNP: every private mapping in the NPT is backed by the RMP as the hardware will check it on each
 * guest access (kvm-x86-mmu.md, SEV-SNP RMP section): the page is assigned to this guest's ASID at the
 * gpa the NPT maps it to, and an NPT leaf is never larger than the RMP entry (a 2M leaf needs the RMP to
 * hold the 2M region as one 2M entry; a 4K leaf may sit in either).
 *
 * Walks the leaves of every TDP root (the TDP checker has already vetted the links it follows).
 */
import type { Kvm } from '../x86/vm';
import type { KvmMmuPage } from '../x86/mmu_page';
import { is_last_spte, is_shadow_present_pte, spte_to_pfn } from '../x86/spte';
import { RMP_PG_SIZE_2M, to_kvm_sev_info } from '../x86/sev_snp';
import { kvm_mem_is_private, type PrivateMemKvm } from '../kvm/attributes';
import type { AuditSink } from './audit';

const hex = (n: number) => '0x' + n.toString(16);

/** Audits the RMP of an SNP VM; does nothing for other VMs. Returns the private leaves seen. */
export function auditRmp(kvm: Kvm, s: AuditSink): number {
  const pk = kvm as unknown as PrivateMemKvm;
  const sev = to_kvm_sev_info(pk);
  if (!sev) return 0;
  const rmp = sev.rmp;
  let privateLeaves = 0;
  const seen = new Set<KvmMmuPage>();
  const walk = (sp: KvmMmuPage): void => {
    if (seen.has(sp) || sp.freed) return;
    seen.add(sp);
    const level = sp.role & 0xf;
    const span = Math.pow(512, level - 1);
    for (let i = 0; i < 512; i++) {
      const lo = sp.spt[2 * i]!;
      const hi = sp.spt[2 * i + 1]!;
      if (!is_shadow_present_pte(lo, hi)) continue;
      const pfn = spte_to_pfn(kvm.masks, lo, hi);
      if (!is_last_spte(lo, hi, level)) {
        const child = kvm.pool.sp_of_pfn(pfn);
        if (child) walk(child);
        continue;
      }
      const gfn = sp.gfn + i * span;
      s.checks++;
      if (!kvm_mem_is_private(pk, gfn)) continue;
      privateLeaves++;
      const where = () => `NPT L${level} leaf gfn ${hex(gfn)} -> pfn ${hex(pfn)}`;
      const e = rmp.entry(pfn);
      if (!s.expect(e.assigned, 'rmp', where, () => 'a private mapping of a page the RMP has not assigned')) continue;
      s.expect(e.asid === sev.asid, 'rmp', where, () => `RMP entry assigned to ASID ${e.asid}, the guest is ASID ${sev.asid}`);
      s.expect(e.gpa === gfn * 4096, 'rmp', where, () => `RMP entry gpa ${hex(e.gpa)}, the NPT maps gpa ${hex(gfn * 4096)}`);
      if (level >= 2) {
        s.expect(level === 2 && e.pagesize === RMP_PG_SIZE_2M, 'rmp-level', where,
          () => `an NPT leaf at level ${level} over a ${e.pagesize === RMP_PG_SIZE_2M ? '2M' : '4K'} RMP entry (the NPT level must not exceed the RMP page size)`);
      }
    }
  };
  for (const root of kvm.arch.tdp_mmu_roots) walk(root);
  return privateLeaves;
}
