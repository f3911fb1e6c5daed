/**
 * TDX: KVM's external page-table hooks (vmx/tdx.c: tdx_sept_*) and a small model of the TDX module's
 * Secure EPT. The module keeps exactly the S-EPT it was told about and refuses what the real one
 * refuses: adding a table or page under a missing parent, installing over an existing entry, mapping a
 * page that is already assigned, removing what is not there, and reclaiming S-EPT pages while the TD
 * still owns its HKID.
 */
import { defineProbe, probes } from '../probes';
import { TrackedWeakMap } from '../snapshot';
import { KVM_PAGES_PER_HPAGE } from './tdp_iter';
import { EINVAL, EIO, type Kvm, type KvmTdxHooks } from './vm';

const PG_LEVEL_4K = 1;

export type SeptEntry = { kind: 'table'; spt: number } | { kind: 'leaf'; pfn: number };

/** SEAMCALL completion status names the model reports. */
export const TDX_SUCCESS = 'TDX_SUCCESS';
export const TDX_EPT_WALK_FAILED = 'TDX_EPT_WALK_FAILED';
export const TDX_EPT_ENTRY_STATE_INCORRECT = 'TDX_EPT_ENTRY_STATE_INCORRECT';
export const TDX_OPERAND_PAGE_METADATA_INCORRECT = 'TDX_OPERAND_PAGE_METADATA_INCORRECT';
export const TDX_EPT_ENTRY_NOT_FREE = 'TDX_EPT_ENTRY_NOT_FREE';

export interface SeamcallRecord {
  leaf: string;
  gfn: number;
  level: number;
  pfn: number;
  status: string;
}

const PR_LINK = defineProbe('tdx_sept_link_private_spt', 'tdx', 'arch/x86/kvm/vmx/tdx.c', 'link_external_spt: TDH.MEM.SEPT.ADD', ['gfn', 'level', 'external_spt']);
const PR_SET = defineProbe('tdx_sept_set_private_spte', 'tdx', 'arch/x86/kvm/vmx/tdx.c', 'set_external_spte: TDH.MEM.PAGE.AUG', ['gfn', 'level', 'pfn']);
const PR_REMOVE = defineProbe('tdx_sept_remove_private_spte', 'tdx', 'arch/x86/kvm/vmx/tdx.c', 'remove_external_spte: BLOCK, TRACK, PAGE.REMOVE', ['gfn', 'level', 'pfn']);
const PR_FREE = defineProbe('tdx_sept_free_private_spt', 'tdx', 'arch/x86/kvm/vmx/tdx.c', 'free_external_spt: reclaim an S-EPT page', ['gfn', 'level', 'external_spt']);

/** The TDX module's view of one TD. */
export class TdxModule {
  /** S-EPT levels: 4 for GPAW 48, 5 for GPAW 52. */
  readonly root_level: number;
  /** entries[level - 1]: entries in level-`level` S-EPT tables, keyed by the gfn the entry maps (aligned). */
  readonly entries: Map<number, SeptEntry>[] = [];
  /** PAMT: host pfns currently assigned to this TD (data pages and S-EPT pages). */
  readonly assigned = new Map<number, string>();
  hkid_assigned = true;
  readonly log: SeamcallRecord[] = [];
  failures = 0;

  constructor(root_level: number) {
    this.root_level = root_level;
    for (let i = 0; i < root_level; i++) this.entries.push(new Map());
  }

  private rec(leaf: string, gfn: number, level: number, pfn: number, status: string): number {
    this.log.push({ leaf, gfn, level, pfn, status });
    if (status !== TDX_SUCCESS) {
      this.failures++;
      return -EIO;
    }
    return 0;
  }

  private aligned(gfn: number, level: number): number {
    const n = KVM_PAGES_PER_HPAGE(level);
    return gfn - (gfn % n);
  }

  /** The entry at `level` that maps gfn, if any. */
  entry(gfn: number, level: number): SeptEntry | undefined {
    return this.entries[level - 1]?.get(this.aligned(gfn, level));
  }

  /** True when the walk from the root down to `level` finds a table at every level above it. */
  private walk_ok(gfn: number, level: number): boolean {
    for (let l = this.root_level; l > level; l--) {
      const e = this.entry(gfn, l);
      if (!e || e.kind !== 'table') return false;
    }
    return true;
  }

  /** TDH.MEM.SEPT.ADD: the entry at `level` will point to a new S-EPT page (level - 1). */
  sept_add(gfn: number, level: number, spt: number): number {
    if (level > this.root_level || level <= PG_LEVEL_4K) return this.rec('TDH.MEM.SEPT.ADD', gfn, level, spt, TDX_EPT_WALK_FAILED);
    if (!this.walk_ok(gfn, level)) return this.rec('TDH.MEM.SEPT.ADD', gfn, level, spt, TDX_EPT_WALK_FAILED);
    if (this.entry(gfn, level)) return this.rec('TDH.MEM.SEPT.ADD', gfn, level, spt, TDX_EPT_ENTRY_STATE_INCORRECT);
    if (this.assigned.has(spt)) return this.rec('TDH.MEM.SEPT.ADD', gfn, level, spt, TDX_OPERAND_PAGE_METADATA_INCORRECT);
    this.entries[level - 1]!.set(this.aligned(gfn, level), { kind: 'table', spt });
    this.assigned.set(spt, `sept l${level - 1} gfn ${this.aligned(gfn, level).toString(16)}`);
    return this.rec('TDH.MEM.SEPT.ADD', gfn, level, spt, TDX_SUCCESS);
  }

  /** TDH.MEM.PAGE.AUG: map a 4K private page. */
  page_aug(gfn: number, level: number, pfn: number): number {
    if (level !== PG_LEVEL_4K || !this.walk_ok(gfn, level)) return this.rec('TDH.MEM.PAGE.AUG', gfn, level, pfn, TDX_EPT_WALK_FAILED);
    if (this.entry(gfn, level)) return this.rec('TDH.MEM.PAGE.AUG', gfn, level, pfn, TDX_EPT_ENTRY_STATE_INCORRECT);
    if (this.assigned.has(pfn)) return this.rec('TDH.MEM.PAGE.AUG', gfn, level, pfn, TDX_OPERAND_PAGE_METADATA_INCORRECT);
    this.entries[0]!.set(gfn, { kind: 'leaf', pfn });
    this.assigned.set(pfn, `page gfn ${gfn.toString(16)}`);
    return this.rec('TDH.MEM.PAGE.AUG', gfn, level, pfn, TDX_SUCCESS);
  }

  /** TDH.MEM.RANGE.BLOCK + TDH.MEM.TRACK + TDH.MEM.PAGE.REMOVE of a 4K private page. */
  page_remove(gfn: number, level: number, pfn: number): number {
    const e = this.entry(gfn, level);
    if (level !== PG_LEVEL_4K || !e || e.kind !== 'leaf') return this.rec('TDH.MEM.RANGE.BLOCK', gfn, level, pfn, TDX_EPT_ENTRY_STATE_INCORRECT);
    if (e.pfn !== pfn) return this.rec('TDH.MEM.PAGE.REMOVE', gfn, level, pfn, TDX_OPERAND_PAGE_METADATA_INCORRECT);
    if (this.hkid_assigned) {
      this.rec('TDH.MEM.RANGE.BLOCK', gfn, level, pfn, TDX_SUCCESS);
      this.rec('TDH.MEM.TRACK', gfn, level, pfn, TDX_SUCCESS);
    }
    this.entries[0]!.delete(gfn);
    this.assigned.delete(pfn);
    return this.rec(this.hkid_assigned ? 'TDH.MEM.PAGE.REMOVE' : 'TDH.PHYMEM.PAGE.RECLAIM', gfn, level, pfn, TDX_SUCCESS);
  }

  /** Reclaim the S-EPT page of a level-`level` table: only once the HKID is gone, and only if empty. */
  sept_reclaim(gfn: number, level: number, spt: number): number {
    if (this.hkid_assigned) return this.rec('TDH.PHYMEM.PAGE.RECLAIM', gfn, level, spt, TDX_EPT_ENTRY_STATE_INCORRECT);
    const parent = this.entry(gfn, level + 1);
    if (!parent || parent.kind !== 'table' || parent.spt !== spt) return this.rec('TDH.PHYMEM.PAGE.RECLAIM', gfn, level, spt, TDX_OPERAND_PAGE_METADATA_INCORRECT);
    const base = this.aligned(gfn, level + 1);
    const span = KVM_PAGES_PER_HPAGE(level + 1);
    for (const k of this.entries[level - 1]!.keys()) {
      if (k >= base && k < base + span) return this.rec('TDH.PHYMEM.PAGE.RECLAIM', gfn, level, spt, TDX_EPT_ENTRY_NOT_FREE);
    }
    this.entries[level]!.delete(base);
    this.assigned.delete(spt);
    return this.rec('TDH.PHYMEM.PAGE.RECLAIM', gfn, level, spt, TDX_SUCCESS);
  }

  /** Mapped private pages as gfn -> pfn. */
  mapped(): Map<number, number> {
    const m = new Map<number, number>();
    for (const [g, e] of this.entries[0]!) if (e.kind === 'leaf') m.set(g, e.pfn);
    return m;
  }

  /** Number of S-EPT tables (pages) the module holds, root excluded. */
  table_count(): number {
    let n = 0;
    for (const lvl of this.entries) for (const e of lvl.values()) if (e.kind === 'table') n++;
    return n;
  }
}

/** tdx_sept_link_private_spt(). */
function tdx_sept_link_private_spt(kvm: Kvm, gfn: number, level: number, external_spt: number): number {
  if (probes.armed) probes.hit(PR_LINK, { gfn, level, external_spt });
  return tdx_of(kvm).sept_add(gfn, level, external_spt);
}

/** tdx_sept_set_private_spte(): TDX maps private memory at 4K only. */
function tdx_sept_set_private_spte(kvm: Kvm, gfn: number, level: number, pfn: number): number {
  if (probes.armed) probes.hit(PR_SET, { gfn, level, pfn });
  if (kvm.KVM_BUG_ON(level !== PG_LEVEL_4K, 'TDX private mapping above 4K')) return -EINVAL;
  return tdx_of(kvm).page_aug(gfn, level, pfn);
}

/** tdx_sept_remove_private_spte(). */
function tdx_sept_remove_private_spte(kvm: Kvm, gfn: number, level: number, pfn: number): number {
  if (probes.armed) probes.hit(PR_REMOVE, { gfn, level, pfn });
  if (kvm.KVM_BUG_ON(level !== PG_LEVEL_4K, 'TDX private unmap above 4K')) return -EINVAL;
  return tdx_of(kvm).page_remove(gfn, level, pfn);
}

/** tdx_sept_free_private_spt(): S-EPT pages can only be reclaimed after the HKID was released. */
function tdx_sept_free_private_spt(kvm: Kvm, gfn: number, level: number, external_spt: number): number {
  if (probes.armed) probes.hit(PR_FREE, { gfn, level, external_spt });
  const tdx = tdx_of(kvm);
  if (kvm.KVM_BUG_ON(tdx.hkid_assigned, 'freeing an S-EPT page while the TD owns its HKID')) return -EINVAL;
  return tdx.sept_reclaim(gfn, level, external_spt);
}

const modules = new TrackedWeakMap<Kvm, TdxModule>();

function tdx_of(kvm: Kvm): TdxModule {
  const m = modules.get(kvm);
  if (!m) throw new Error('not a TD');
  return m;
}

/** tdx_td_init() for the MMU: create the module state and install the kvm_x86_ops hooks. */
export function tdx_td_init(kvm: Kvm): TdxModule {
  const root_level = kvm.guest_maxphyaddr > 48 ? 5 : 4;
  const m = new TdxModule(root_level);
  modules.set(kvm, m);
  const hooks: KvmTdxHooks = {
    link_external_spt: tdx_sept_link_private_spt,
    set_external_spte: tdx_sept_set_private_spte,
    remove_external_spte: tdx_sept_remove_private_spte,
    free_external_spt: tdx_sept_free_private_spt,
  };
  kvm.tdx_hooks = hooks;
  return m;
}

/** tdx_mmu_release_hkid(): at VM teardown, before the mirror root is zapped. */
export function tdx_mmu_release_hkid(kvm: Kvm): void {
  tdx_of(kvm).hkid_assigned = false;
}

export function tdx_module_of(kvm: Kvm): TdxModule | undefined {
  return modules.get(kvm);
}
