/**
 * Invariants of the x86 TDP MMU (kvm-x86-mmu.md §3-§6), checked over every root:
 *
 * - roots: each on `tdp_mmu_roots` once, live, a TDP MMU page with no parent, found in the pool at its pfn;
 * - `tdp_mmu_root_count`: one reference per vCPU that has the root loaded (root or mirror root) plus the
 *   one the TDP MMU keeps while the root is valid or scheduled to be zapped; a listed root never has 0;
 * - parent SPTE <-> child SP: a present non-leaf SPTE points at a live TDP MMU SP whose `parent` and
 *   `parent_index` name that entry, one level down, with the parent's role (but level and invalid) and
 *   the gfn the entry covers; no SP is reached from two entries; no present SPTE points at a freed table;
 * - no FROZEN_SPTE left behind once an operation is over;
 * - leaves only at 4K/2M/1G, and the writable invariant: W => MMU-writable => host-writable;
 * - stats: `pages_4k/2m/1g` equal a recount of present leaves in all roots (while no shadow page exists,
 *   unless the shadow MMU was audited too and its recount is added); `tdp_mmu_pages` equals the linked
 *   non-root tables;
 *   every live table in the pool is reachable (no leaked table);
 * - vCPU roots are live roots on the list; SPs on `possible_nx_huge_pages` are live and marked.
 */
import type { Kvm } from '../x86/vm';
import type { KvmMmuPage } from '../x86/mmu_page';
import {
  is_frozen_spte,
  is_host_writable_spte,
  is_last_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  spte_to_pfn,
} from '../x86/spte';
import type { AuditSink } from './audit';

const ROLE_LEVEL_MASK = 0xf;
const ROLE_INVALID = 0x800;

const hex = (n: number) => '0x' + n.toString(16);

function spName(sp: KvmMmuPage): string {
  return `${sp.parent ? 'SP' : 'root'} pfn ${hex(sp.spt_pfn)} L${sp.role & ROLE_LEVEL_MASK} gfn ${hex(sp.gfn)}`;
}

function hex64(lo: number, hi: number): string {
  return '0x' + (hi >>> 0).toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}

/**
 * `shadow`: what the shadow MMU audit found, when it ran: its leaf recount (the page stats count both
 * MMUs' leaves) and how many shadow pages live in the pool.
 */
export function auditTdpMmu(kvm: Kvm, s: AuditSink, shadow?: { leaves: number[]; inPool: number }): void {
  const shadowLeaves = shadow?.leaves;
  const m = kvm.masks;
  const roots = kvm.arch.tdp_mmu_roots;
  const reached = new Set<KvmMmuPage>();
  const recount = [0, 0, 0];
  let nonRoot = 0;
  const directBits = kvm.arch.gfn_direct_bits;

  // vCPU references on each root
  const vcpuRefs = new Map<KvmMmuPage, number>();
  for (const v of kvm.vcpus as Array<{ vcpu_id?: number; mmu?: { root: KvmMmuPage | null; mirror_root: KvmMmuPage | null } }>) {
    for (const r of [v.mmu?.root, v.mmu?.mirror_root]) {
      if (!r || !r.tdp_mmu_page) continue;
      vcpuRefs.set(r, (vcpuRefs.get(r) ?? 0) + 1);
      s.expect(!r.freed && roots.includes(r), 'vcpu-root', () => `vCPU ${v.vcpu_id ?? '?'}`, () => `loaded root ${spName(r)} is ${r.freed ? 'freed' : 'not on tdp_mmu_roots'}`);
    }
  }

  const seenRoots = new Set<KvmMmuPage>();
  for (const root of roots) {
    const where = () => spName(root);
    s.expect(!seenRoots.has(root), 'root-list', where, () => 'listed twice on tdp_mmu_roots');
    seenRoots.add(root);
    if (!s.expect(!root.freed, 'freed-table', where, () => 'a freed root is still on tdp_mmu_roots')) continue;
    s.expect(root.tdp_mmu_page && root.parent === null, 'root-shape', where, () => `tdp_mmu_page=${root.tdp_mmu_page} parent=${root.parent ? spName(root.parent) : 'none'}`);
    s.expect(kvm.pool.sp_of_pfn(root.spt_pfn) === root, 'pool', where, () => 'the pool has another SP (or none) at this pfn');
    const valid = (root.role & ROLE_INVALID) === 0;
    const expected = (vcpuRefs.get(root) ?? 0) + (valid || root.tdp_mmu_scheduled_root_to_zap ? 1 : 0);
    s.expect(root.root_count === expected, 'root-count', where,
      () => `tdp_mmu_root_count ${root.root_count}, expected ${expected} (${vcpuRefs.get(root) ?? 0} vCPU reference(s)${valid ? ' + the TDP MMU\'s own (valid root)' : root.tdp_mmu_scheduled_root_to_zap ? ' + the TDP MMU\'s own (scheduled to zap)' : ''})`);
    s.expect(root.root_count > 0, 'root-count', where, () => 'a root with no reference left is still listed');
    reached.add(root);
    walk(root);
  }

  function walk(sp: KvmMmuPage): void {
    const level = sp.role & ROLE_LEVEL_MASK;
    const t = sp.spt;
    const span = Math.pow(512, level - 1);
    for (let i = 0; i < 512; i++) {
      const lo = t[2 * i]!;
      const hi = t[2 * i + 1]!;
      const where = () => `${spName(sp)} [${i}]`;
      s.checks++;
      if (is_frozen_spte(lo, hi)) {
        s.expect(false, 'frozen', where, () => `FROZEN_SPTE ${hex64(lo, hi)} left behind`);
        continue;
      }
      if (!is_shadow_present_pte(lo, hi)) continue;
      if (is_last_spte(lo, hi, level)) {
        if (!s.expect(level <= 3, 'leaf-level', where, () => `a leaf at level ${level} (leaves are 4K, 2M or 1G)`)) continue;
        recount[level - 1]!++;
        const w = is_writable_pte(lo, hi);
        const mw = is_mmu_writable_spte(m, lo, hi);
        const hw = is_host_writable_spte(m, lo, hi);
        s.expect(!w || mw, 'writable', where, () => `SPTE ${hex64(lo, hi)} is writable but not MMU-writable`);
        s.expect(!mw || hw, 'writable', where, () => `SPTE ${hex64(lo, hi)} is MMU-writable but not host-writable`);
        continue;
      }
      // a present non-leaf entry: the child table it points at
      const pfn = spte_to_pfn(m, lo, hi);
      const child = kvm.pool.sp_of_pfn(pfn);
      if (!s.expect(child !== undefined && !child.freed, 'freed-table', where, () => `non-leaf SPTE ${hex64(lo, hi)} points at pfn ${hex(pfn)}, which is ${child ? 'a freed table' : 'no table'}`)) continue;
      const c = child!;
      if (!s.expect(!reached.has(c), 'parent-link', where, () => `${spName(c)} is also reached from another entry`)) continue;
      reached.add(c);
      nonRoot++;
      s.expect(c.tdp_mmu_page, 'parent-link', where, () => `${spName(c)} is not a TDP MMU page`);
      s.expect(c.parent === sp && c.parent_index === i, 'parent-link', where,
        () => `${spName(c)} says its parent is ${c.parent ? `${spName(c.parent)} [${c.parent_index}]` : 'none'}`);
      s.expect((c.role & ROLE_LEVEL_MASK) === level - 1, 'child-role', where, () => `child ${spName(c)} is not one level below L${level}`);
      s.expect(((c.role ^ sp.role) & ~(ROLE_LEVEL_MASK | ROLE_INVALID)) === 0, 'child-role', where,
        () => `child role ${hex(c.role >>> 0)} differs from the parent's ${hex(sp.role >>> 0)} beyond level/invalid`);
      const gfn = sp.gfn + i * span;
      s.expect(c.gfn === gfn || (directBits !== 0 && (c.gfn === gfn + directBits || c.gfn + directBits === gfn)), 'child-gfn', where,
        () => `child gfn ${hex(c.gfn)}, the entry covers gfn ${hex(gfn)}`);
      walk(c);
    }
  }

  const shadowPages = kvm.arch.n_used_mmu_pages;
  if (shadowPages === 0 || shadowLeaves) {
    const st = kvm.stat.pages;
    for (let l = 1; l <= 3; l++) {
      const n = recount[l - 1]! + (shadowLeaves?.[l - 1] ?? 0);
      s.expect(st[l - 1] === n, 'stats', () => `kvm->stat.pages[${l - 1}]`,
        () => `pages_${['4k', '2m', '1g'][l - 1]} is ${st[l - 1]} but ${n} leaves are present`);
    }
  }
  s.expect(kvm.arch.tdp_mmu_pages === nonRoot, 'stats', () => 'kvm->arch.tdp_mmu_pages', () => `${kvm.arch.tdp_mmu_pages} accounted, ${nonRoot} non-root tables linked`);
  const shadowInPool = shadow?.inPool ?? shadowPages;
  s.expect(kvm.pool.live === reached.size + shadowInPool, 'leak', () => 'MMU page pool',
    () => `${kvm.pool.live} live tables, ${reached.size} reachable from TDP roots + ${shadowInPool} shadow pages`);
  for (const sp of kvm.arch.possible_nx_huge_pages) {
    s.expect(!sp.freed && (!sp.tdp_mmu_page || reached.has(sp)) && sp.nx_huge_page_disallowed && sp.on_possible_nx_list, 'nx-list', () => spName(sp),
      () => `on possible_nx_huge_pages but ${sp.freed ? 'freed' : sp.tdp_mmu_page && !reached.has(sp) ? 'unreachable' : 'not marked nx_huge_page_disallowed/on the list'}`);
  }
}
