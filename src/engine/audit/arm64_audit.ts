/**
 * Invariants of an arm64 stage-2 table (arm64-stage2-and-x86-guest-walk.md), guest or pKVM host:
 *
 * - table-page refcount: 1 for the page itself plus one per counted entry (anything non-zero: valid
 *   descriptors, owner annotations, the LOCKED marker), for every page including each PGD page;
 * - a table descriptor points at a live table page of the same allocator, reached from that entry only;
 *   no valid descriptor points at a freed table;
 * - no LOCKED (break-before-make) marker left behind once an operation is over;
 * - a non-zero invalid entry is an annotation the table's encoding can decode: an owner (host stage-2;
 *   any stage-2 with set_owner_2021) whose id fits, naming a VM the hypervisor knows when guest-owned,
 *   or (annotate_2026) a POISONED guest page, which only a guest's stage-2 holds.
 */
import { kvm_pte_table, kvm_pte_valid, stage2_pte_is_counted, stage2_pte_is_locked, type KvmPgtable } from '../arm64/pgtable';
import type { PtPage } from '../arm64/page_alloc';
import { kvm_pte_to_phys } from '../arm64/pgtable_desc';
import { decodeOwner, invalidPteType, KVM_GUEST_INVALID_PTE_TYPE_POISONED, ownerIdFits } from '../arm64/variants';
import type { PkvmHyp } from '../arm64/pkvm_mem_protect';
import type { AuditSink } from './audit';

const hex = (n: number) => '0x' + n.toString(16);

function hex64(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}

export function auditStage2(pgt: KvmPgtable, label: string, s: AuditSink, pkvm?: PkvmHyp): void {
  if (!pgt.pgd) return; // destroyed
  const alloc = pgt.mm_ops.alloc;
  const reached = new Set<PtPage>();
  const isHost = pkvm !== undefined && pgt === pkvm.host_pgt;

  const visit = (page: PtPage, level: number, base: number): void => {
    const where = (i?: number) => () => `${label} table pa ${hex(page.pa)} L${level}${i === undefined ? '' : ` [${i}]`}`;
    s.expect(alloc.page(page.pa) === page, 'freed-table', where(), () => 'the table page is not live in its allocator');
    const d = page.data;
    const span = pgt.granules[level + 1]!;
    let counted = 0;
    for (let i = 0; i < pgt.ptrs; i++) {
      const lo = d[2 * i]!;
      const hi = d[2 * i + 1]!;
      s.checks++;
      if (!stage2_pte_is_counted(lo, hi)) continue;
      counted++;
      if (kvm_pte_valid(lo)) {
        if (!kvm_pte_table(lo, level)) continue;
        const pa = kvm_pte_to_phys(lo, hi, pgt.pageShift, pgt.lpa2);
        const child = alloc.page(pa);
        if (!s.expect(child !== undefined, 'freed-table', where(i), () => `table descriptor ${hex64(lo, hi)} points at pa ${hex(pa)}, which is no live table page`)) continue;
        if (!s.expect(!reached.has(child!), 'parent-link', where(i), () => `table page ${hex(pa)} is also reached from another entry`)) continue;
        reached.add(child!);
        // (kvm_pte_table is false at the last level: there a valid descriptor is always a page)
        visit(child!, level + 1, base + i * span);
        continue;
      }
      // invalid but counted: an annotation (or a marker that should be gone)
      if (!s.expect(!stage2_pte_is_locked(pgt, lo, hi), 'locked', where(i), () => `LOCKED marker ${hex64(lo, hi)} left behind (break-before-make not finished)`)) continue;
      if (pgt.encoding === 'annotate_2026' && invalidPteType(lo, hi) === KVM_GUEST_INVALID_PTE_TYPE_POISONED) {
        // a poisoned guest page (force reclaim): only in a guest's stage-2
        s.expect(!isHost, 's2-annotation', where(i), () => `guest POISONED annotation ${hex64(lo, hi)} in the host stage-2`);
        continue;
      }
      const o = decodeOwner(pgt.encoding, lo, hi);
      if (!s.expect(o !== undefined, 's2-annotation', where(i), () => `invalid entry ${hex64(lo, hi)} is neither zero nor an annotation of the ${pgt.encoding} encoding`)) continue;
      if (pgt.encoding === 'annotate_2026') s.expect(isHost || pkvm === undefined, 's2-annotation', where(i), () => `host DONATION annotation ${hex64(lo, hi)} in a guest stage-2`);
      s.expect(ownerIdFits(pgt.encoding, o!.owner) && o!.owner <= pgt.maxOwnerId, 's2-annotation', where(i), () => `owner id ${o!.owner} does not fit (max ${pgt.maxOwnerId})`);
      if (isHost && o!.handle !== undefined) {
        s.expect(pkvm!.vms.has(o!.handle), 's2-annotation', where(i), () => `annotation names guest handle ${o!.handle}, which the hypervisor does not know`);
      }
    }
    s.expect(page.refcount === counted + 1, 's2-refcount', where(),
      () => `refcount ${page.refcount}, expected ${counted + 1} (${counted} counted entr${counted === 1 ? 'y' : 'ies'} + 1)`);
  };

  const top = pgt.granules[pgt.start_level + 1]! * pgt.ptrs;
  pgt.pgd.forEach((p, k) => {
    reached.add(p);
    visit(p, pgt.start_level, k * top);
  });
}
