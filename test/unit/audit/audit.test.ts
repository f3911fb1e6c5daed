// The MMU invariant auditor: silent on every state real scenarios build (each example, audited after
// every statement), and each check fires on a deliberately corrupted state. Corruptions are made the
// way a bug would make them (a wrong refcount, a dangling table pointer, a lost writable bit) from the
// kernel's rules in kvm-x86-mmu.md and arm64-stage2-and-x86-guest-walk.md, not from the auditor's code.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadScenario } from '../../../src/scenario/load';
import { nodeReader } from '../../../src/scenario/node_reader';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { auditEngine, canAudit, AUDIT_VIOLATION, type AuditReport } from '../../../src/engine/audit/audit';
import { kvmStack, probes } from '../../../src/engine/probes';
import { EXCEPTION_FILTERS } from '../../../src/debug/exception_filters';
import type { X86Vm } from '../../../src/engine/x86/index';
import type { Kvm } from '../../../src/engine/x86/vm';
import type { KvmMmuPage } from '../../../src/engine/x86/mmu_page';
import type { Arm64Vm } from '../../../src/engine/arm64/mmu';
import type { KvmPgtable } from '../../../src/engine/arm64/pgtable';
import type { PtPage } from '../../../src/engine/arm64/page_alloc';
import { to_kvm_sev_info } from '../../../src/engine/x86/sev_snp';
import type { PrivateMemKvm } from '../../../src/engine/kvm/attributes';

const sevInfo = (kvm: Kvm) => to_kvm_sev_info(kvm as unknown as PrivateMemKvm);

const EXAMPLES = join(__dirname, '..', '..', '..', 'examples');
let checks = 0;
let audits = 0;
after(() => console.log(`audit: ${audits} audits, ${checks} invariant checks performed`));

function audit(target: unknown): AuditReport {
  const r = auditEngine(target);
  audits++;
  checks += r.checks;
  return r;
}

/** Run a scenario text to its end; returns the runner (its engine holds the VM). */
function runText(text: string): ScenarioRunner {
  const files = new Map([['s.kvmmmu', text]]);
  const p = loadScenario('s.kvmmmu', { read: (f) => files.get(f), resolve: (_a, b) => b });
  assert.deepEqual(p.diagnostics.filter((d) => d.severity === 'error'), []);
  const r = new ScenarioRunner(p);
  r.run();
  assert.deepEqual(r.problems.map((x) => `${x.line}: ${x.message}`), [], 'the set-up scenario runs clean');
  return r;
}

function checksOf(r: AuditReport): string[] {
  return [...new Set(r.violations.map((v) => v.check))].sort();
}

describe('auditor on real scenarios', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.kvmmmu')).sort();
  for (const f of files) {
    it(`${f}: no violation after any statement`, () => {
      const p = loadScenario(join(EXAMPLES, f), nodeReader);
      const r = new ScenarioRunner(p);
      let audited = 0;
      try {
        while (!r.done) {
          const s = r.step();
          if (!r.engine || !canAudit(r.engine)) continue;
          const a = audit(r.engine);
          audited++;
          assert.deepEqual(a.violations, [], `after ${f}:${s.statement.line} ${s.statement.text}`);
        }
      } finally {
        r.dispose();
      }
      // every example builds a VM the auditor can read (x86 or arm64)
      assert.ok(audited > 0, 'the example was audited');
    });
  }
});

// ----------------------------------------------------------------------------------------- x86 TDP MMU

const X86 = `vm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=1
param tdp_mmu=Y nx_huge_pages=off
KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G hva=0x7f0000000000 backing=2M
expect ret 0
KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x40000000 size=4M hva=0x7f0040000000 backing=4K
expect ret 0
guest read gpa=0x1000
guest write gpa=0x40001000
guest write gpa=0x40201000
`;

interface X86State {
  r: ScenarioRunner;
  kvm: Kvm;
  root: KvmMmuPage;
  /** The L1 table mapping gfn 0x40001 and the index of that leaf. */
  pt: KvmMmuPage;
  leaf: number;
}

function x86State(): X86State {
  const r = runText(X86);
  const v = (r.engine as unknown as { vm: X86Vm }).vm;
  const kvm = v.kvm;
  const root = kvm.arch.tdp_mmu_roots[0]!;
  // descend along gfn 0x40001: indexes at L4, L3, L2, L1
  let sp = root;
  const gfn = 0x40001;
  for (let level = 4; level > 1; level--) {
    const i = Math.floor(gfn / 512 ** (level - 1)) % 512;
    const lo = sp.spt[2 * i]!;
    const hi = sp.spt[2 * i + 1]!;
    const pfn = (lo >>> 12) + (hi & 0xfffff) * 0x100000;
    sp = kvm.pool.sp_of_pfn(pfn)!;
    assert.ok(sp, `table at level ${level - 1}`);
  }
  assert.equal(audit(v).violations.length, 0, 'the state is clean before the corruption');
  return { r, kvm, root, pt: sp, leaf: gfn % 512 };
}

/**
 * Audit after `corrupt`, expect exactly the named checks to fire (or, with `atLeast`, those among
 * others: a table walked at the wrong level makes its entries read as something else, too).
 */
function x86Case(name: string, corrupt: (s: X86State) => void, expected: string[], atLeast = false): void {
  it(`${name} -> ${expected.join(', ')}`, () => {
    const s = x86State();
    try {
      corrupt(s);
      const rep = audit(s.r.engine);
      if (atLeast) for (const c of expected) assert.ok(checksOf(rep).includes(c), `${c} in ${JSON.stringify(rep.violations, null, 1)}`);
      else assert.deepEqual(checksOf(rep), expected, JSON.stringify(rep.violations, null, 1));
      for (const v of rep.violations) assert.ok(v.where.length > 0 && v.what.length > 0);
    } finally {
      s.r.dispose();
    }
  });
}

// bit positions (kvm-x86-mmu.md §3): EPT W = bit 1; host-writable = bit 57, MMU-writable = bit 58 (hi bits 25, 26)
const W = 1 << 1;
const HOST_W_HI = 1 << 25;
const MMU_W_HI = 1 << 26;

describe('auditor: each x86 TDP MMU check fires on a corrupted state', () => {
  x86Case('a child SP whose parent_index is wrong', (s) => (s.pt.parent_index ^= 1), ['parent-link']);
  x86Case('a child SP whose parent pointer is another table', (s) => (s.pt.parent = s.root), ['parent-link']);
  x86Case('a non-leaf SPTE pointing at a table that was freed', (s) => {
    // the bug: the table is freed while its parent entry still points at it
    let leaves = 0;
    for (let i = 0; i < 512; i++) if (s.pt.spt[2 * i]! & 0x800) leaves++;
    assert.ok(leaves > 0);
    s.kvm.pool.free(s.pt);
    s.kvm.arch.tdp_mmu_pages--; // the accounting was done; only the link is stale
    s.kvm.stat.pages[0]! -= leaves; // its leaves are gone from the stat as they would be
  }, ['freed-table']);
  x86Case('one table reached from two parent entries', (s) => {
    const p = s.pt.parent!;
    const i = s.pt.parent_index;
    const j = (i + 7) % 512;
    p.spt[2 * j] = p.spt[2 * i]!;
    p.spt[2 * j + 1] = p.spt[2 * i + 1]!;
  }, ['parent-link']);
  x86Case('a child one level too low', (s) => (s.pt.role = (s.pt.role & ~0xf) | 0), ['child-role'], true);
  x86Case('a child at its parent\'s level', (s) => (s.pt.role = (s.pt.role & ~0xf) | 2), ['child-role'], true);
  x86Case('a child whose role access bits differ from its parent', (s) => (s.pt.role ^= 0x100), ['child-role']);
  x86Case('a child with the wrong gfn', (s) => (s.pt.gfn += 512), ['child-gfn']);
  x86Case('a root with one reference too many', (s) => s.root.root_count++, ['root-count']);
  x86Case('a root with one reference too few', (s) => s.root.root_count--, ['root-count']);
  x86Case('an invalid root that still holds the TDP MMU reference without being scheduled to zap', (s) => {
    s.root.role |= 0x800;
    s.root.tdp_mmu_scheduled_root_to_zap = false;
  }, ['root-count']);
  x86Case('a writable leaf that is not MMU-writable', (s) => (s.pt.spt[2 * s.leaf + 1] &= ~MMU_W_HI), ['writable']);
  x86Case('an MMU-writable leaf that is not host-writable', (s) => {
    assert.ok(s.pt.spt[2 * s.leaf]! & W, 'the write made the leaf writable');
    s.pt.spt[2 * s.leaf + 1] &= ~HOST_W_HI;
  }, ['writable']);
  x86Case('a FROZEN_SPTE left in a table after the operation', (s) => {
    // FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5a0
    s.pt.spt[2 * (s.leaf + 100)] = 0x5a0;
    s.pt.spt[2 * (s.leaf + 100) + 1] = 0x8000_0000;
  }, ['frozen']);
  x86Case('pages_4k one off the recount', (s) => s.kvm.stat.pages[0]!++, ['stats']);
  x86Case('pages_2m one off the recount', (s) => s.kvm.stat.pages[1]!--, ['stats']);
  x86Case('tdp_mmu_pages one off the linked tables', (s) => s.kvm.arch.tdp_mmu_pages++, ['stats']);
  x86Case('a table allocated and never linked (leak)', (s) => void s.kvm.pool.alloc(0, 0, true), ['leak']);
  x86Case('a vCPU whose loaded root was freed', (s) => {
    const vcpu = s.kvm.vcpus[0] as unknown as { mmu: { root: KvmMmuPage | null } };
    const stale = s.kvm.pool.alloc(s.root.role, 0, true);
    s.kvm.pool.free(stale);
    vcpu.mmu.root = stale;
    s.root.root_count--; // the vCPU's reference moved to the stale root
  }, ['vcpu-root']);
  x86Case('a root listed twice on tdp_mmu_roots', (s) => s.kvm.arch.tdp_mmu_roots.push(s.root), ['root-list'], true);
  x86Case('a root with a parent', (s) => (s.root.parent = s.pt), ['root-shape']);
  x86Case('a freed SP left on possible_nx_huge_pages', (s) => {
    const sp = s.kvm.pool.alloc(s.pt.role, 0, true);
    s.kvm.pool.free(sp);
    sp.nx_huge_page_disallowed = true;
    sp.on_possible_nx_list = true;
    s.kvm.arch.possible_nx_huge_pages.add(sp);
  }, ['nx-list']);
  it('a table that cannot be walked (a root whose table storage is gone) -> walk, not a throw', () => {
    const s = x86State();
    const spt = s.root.spt;
    try {
      (s.root as unknown as { spt: Uint32Array | null }).spt = null;
      const rep = audit(s.r.engine);
      assert.deepEqual(checksOf(rep), ['walk']);
      assert.match(rep.violations[0]!.what, /cannot be walked/);
    } finally {
      s.root.spt = spt;
      s.r.dispose();
    }
  });
  x86Case('a leaf at level 4', (s) => {
    const i = 300; // an empty entry of the root: a "huge" PML4 leaf
    s.root.spt[2 * i] = 0x1000_0000 | 0x800 | 0x80 | 0x7;
    s.root.spt[2 * i + 1] = 0;
  }, ['leaf-level']);
});

// ------------------------------------------------------------------------------------- arm64 stage-2

const ARM = `vm arch=arm64 mode=nvhe ipa_bits=40 vcpus=1
KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0x40000000 size=1G hva=0x7f0040000000 backing=4K
expect ret 0
guest read ipa=0x40001000
guest write ipa=0x40002000
`;

interface ArmState {
  r: ScenarioRunner;
  pgt: KvmPgtable;
  /** The last-level table holding ipa 0x40001000, the index of that page, and its parent table. */
  pt: PtPage;
  leaf: number;
  parent: PtPage;
  parentIndex: number;
}

function tableAt(pgt: KvmPgtable, ipa: number): { pt: PtPage; leaf: number; parent: PtPage; parentIndex: number } {
  // 4K granule, 40-bit IPA: start level 1 with two concatenated PGD pages (arm64 reference: stage-2 geometry)
  const shift = (level: number) => 12 + 9 * (3 - level);
  let level = pgt.start_level;
  const top = Math.floor(ipa / 2 ** (shift(level) + 9));
  let page = pgt.pgd![top]!;
  let parent = page;
  let parentIndex = 0;
  for (; level < 3; level++) {
    const i = Math.floor(ipa / 2 ** shift(level)) % 512;
    const lo = page.data[2 * i]!;
    const hi = page.data[2 * i + 1]!;
    assert.equal(lo & 3, 3, `a table descriptor at level ${level}`);
    parent = page;
    parentIndex = i;
    page = pgt.mm_ops.alloc.page((lo - (lo % 4096)) + (hi & 0xffff) * 2 ** 32)!;
    assert.ok(page);
  }
  return { pt: page, leaf: Math.floor(ipa / 4096) % 512, parent, parentIndex };
}

function armState(text = ARM, ipa = 0x40001000): ArmState {
  const r = runText(text);
  const v = (r.engine as unknown as { vm: Arm64Vm }).vm;
  assert.equal(audit(v).violations.length, 0, 'the state is clean before the corruption');
  return { r, pgt: v.pgt, ...tableAt(v.pgt, ipa) };
}

function armCase(name: string, corrupt: (s: ArmState) => void, expected: string[], text?: string, ipa?: number): void {
  it(`${name} -> ${expected.join(', ')}`, () => {
    const s = armState(text, ipa);
    try {
      corrupt(s);
      const rep = audit(s.r.engine);
      assert.deepEqual(checksOf(rep), expected, JSON.stringify(rep.violations, null, 1));
    } finally {
      s.r.dispose();
    }
  });
}

describe('auditor: each arm64 stage-2 check fires on a corrupted state', () => {
  armCase('a table page with one reference too many', (s) => s.pt.refcount++, ['s2-refcount']);
  armCase('a table page that lost the reference of a valid entry', (s) => s.pt.refcount--, ['s2-refcount']);
  armCase('a PGD page whose refcount ignores its table descriptor', (s) => s.pgt.pgd![0]!.refcount--, ['s2-refcount']);
  armCase('a table descriptor pointing at a freed page', (s) => {
    s.pgt.mm_ops.alloc.free(s.pt.pa);
  }, ['freed-table']);
  armCase('one table page reached from two descriptors', (s) => {
    const j = (s.parentIndex + 3) % 512;
    s.parent.data[2 * j] = s.parent.data[2 * s.parentIndex]!;
    s.parent.data[2 * j + 1] = s.parent.data[2 * s.parentIndex + 1]!;
    s.parent.refcount++;
  }, ['parent-link']);
  armCase('a LOCKED (break-before-make) marker left behind', (s) => {
    // annotate_2026: invalid-PTE type in bits 63:60, LOCKED = 1
    s.pt.data[2 * (s.leaf + 50)] = 0;
    s.pt.data[2 * (s.leaf + 50) + 1] = 0x1000_0000;
    s.pt.refcount++;
  }, ['locked']);
  armCase('an invalid non-zero entry that is no annotation', (s) => {
    s.pt.data[2 * (s.leaf + 60)] = 0x2;
    s.pt.data[2 * (s.leaf + 60) + 1] = 0;
    s.pt.refcount++;
  }, ['s2-annotation']);
});

describe('auditor: pKVM annotations', () => {
  const PKVM = join(EXAMPLES, 'pkvm-stage2-ownership.kvmmmu');

  function pkvmState(): { r: ScenarioRunner; vm: Arm64Vm } {
    const p = loadScenario(PKVM, nodeReader);
    const r = new ScenarioRunner(p);
    r.run();
    const vm = (r.engine as unknown as { vm: Arm64Vm }).vm;
    assert.ok(vm.pkvm, 'a protected-mode VM');
    assert.equal(audit(vm).violations.length, 0);
    return { r, vm };
  }

  /** A last-level table page of `pgt` (found by walking it: host and guests share an allocator) with a zero entry. */
  function emptyEntry(pgt: KvmPgtable): { page: PtPage; i: number } {
    const last: PtPage[] = [];
    const walk = (page: PtPage, level: number) => {
      if (level === 3) return void last.push(page);
      for (let i = 0; i < 512; i++) {
        const lo = page.data[2 * i]!;
        if ((lo & 3) !== 3) continue;
        const child = pgt.mm_ops.alloc.page((lo - (lo % 4096)) + (page.data[2 * i + 1]! & 0xffff) * 2 ** 32);
        if (child) walk(child, level + 1);
      }
    };
    for (const p of pgt.pgd!) walk(p, pgt.start_level);
    for (const page of last) for (let i = 0; i < 512; i++) if (page.data[2 * i] === 0 && page.data[2 * i + 1] === 0) return { page, i };
    throw new Error('no last-level table page with a free entry');
  }

  it('a host DONATION annotation in a guest stage-2 -> s2-annotation', () => {
    const { r, vm } = pkvmState();
    try {
      const g = vm.hypVm!.pgt;
      const { page, i } = emptyEntry(g);
      // type 2 (DONATION) in bits 63:60, owner id 1 (hyp) in the owner field
      page.data[2 * i] = 1 << 2;
      page.data[2 * i + 1] = 0x2000_0000;
      page.refcount++;
      const rep = audit(vm);
      assert.ok(rep.violations.some((v) => v.check === 's2-annotation' && /guest/.test(v.where)), JSON.stringify(rep.violations));
    } finally {
      r.dispose();
    }
  });

  it('a guest POISONED annotation in the host stage-2 -> s2-annotation', () => {
    const { r, vm } = pkvmState();
    try {
      const h = vm.pkvm!.host_pgt;
      const { page, i } = emptyEntry(h);
      page.data[2 * i] = 0;
      page.data[2 * i + 1] = 0x3000_0000;
      page.refcount++;
      const rep = audit(vm);
      assert.ok(rep.violations.some((v) => v.check === 's2-annotation' && /host/.test(v.where)), JSON.stringify(rep.violations));
    } finally {
      r.dispose();
    }
  });
});

describe('auditor: the audit_violation probe', () => {
  it('each violation hits audit_violation (group audit) with check/where/what, inside a frame named audit_violation, and the exception filter matches it', () => {
    const s = x86State();
    const hits: Array<{ name: string; args: Record<string, unknown>; stack: string[] }> = [];
    try {
      s.root.root_count++;
      s.kvm.stat.pages[0]!++;
      probes.listen((name, args) => hits.push({ name, args, stack: kvmStack().map((f) => f.name) }));
      const rep = audit(s.r.engine);
      probes.listen(undefined);
      assert.equal(rep.violations.length, 2);
      assert.deepEqual(hits.map((h) => h.name), [AUDIT_VIOLATION, AUDIT_VIOLATION]);
      assert.equal(probes.info(AUDIT_VIOLATION)?.group, 'audit');
      assert.deepEqual(hits.map((h) => h.args['check']).sort(), ['root-count', 'stats']);
      for (const h of hits) {
        assert.equal(h.stack[0], 'audit_violation', 'the KVM call stack starts at audit_violation');
        assert.equal(typeof h.args['where'], 'string');
        assert.equal(typeof h.args['what'], 'string');
      }
      const filter = EXCEPTION_FILTERS.find((f) => f.filter === 'audit_violation')!;
      assert.ok(filter.probeGroups?.includes('audit'));
      assert.ok(filter.matches!(hits[0]!.name, 'audit', hits[0]!.args));
    } finally {
      probes.listen(undefined);
      s.r.dispose();
    }
  });

  it('a clean state hits nothing; anything else is not auditable and reports nothing', () => {
    const s = x86State();
    const hits: string[] = [];
    try {
      probes.listen((name) => hits.push(name));
      assert.deepEqual(audit(s.r.engine).violations, []);
      assert.deepEqual(hits.filter((h) => h === AUDIT_VIOLATION), []);
      for (const junk of [undefined, null, 42, 'x', {}, { vm: {} }, { kvm: { arch: {} } }]) {
        assert.equal(canAudit(junk), false);
        assert.deepEqual(audit(junk), { violations: [], checks: 0 });
      }
    } finally {
      probes.listen(undefined);
      s.r.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------- shadow MMU

describe('auditor: each shadow MMU check fires on a corrupted state', () => {
  interface ShadowState {
    r: ScenarioRunner;
    kvm: Kvm;
    sk: import('../../../src/engine/x86/shadow_mmu').ShadowMmu;
    pages: KvmMmuPage[];
  }

  function shadowState(example: string): ShadowState {
    const p = loadScenario(join(EXAMPLES, example), nodeReader);
    const r = new ScenarioRunner(p);
    r.run();
    const v = (r.engine as unknown as { vm: { kvm: Kvm; sk: ShadowState['sk'] } }).vm;
    assert.ok(v.sk, 'a shadow-paging VM');
    const pages = v.sk.active_list();
    assert.ok(pages.length > 1, 'shadow pages exist');
    assert.equal(audit(r.engine).violations.length, 0, 'clean before the corruption');
    return { r, kvm: v.kvm, sk: v.sk, pages };
  }

  function shadowCase(name: string, example: string, corrupt: (s: ShadowState) => void, expected: string[], atLeast = false): void {
    it(`${name} -> ${expected.join(', ')}`, () => {
      const s = shadowState(example);
      try {
        corrupt(s);
        const rep = audit(s.r.engine);
        if (atLeast) for (const c of expected) assert.ok(checksOf(rep).includes(c), `${c} in ${JSON.stringify(rep.violations, null, 1)}`);
        else assert.deepEqual(checksOf(rep), expected, JSON.stringify(rep.violations, null, 1));
      } finally {
        s.r.dispose();
      }
    });
  }

  const child = (s: ShadowState) => s.pages.find((sp) => sp.parent_ptes !== 0)!;

  shadowCase('a child whose parent_ptes lost its parent SPTE', 'shadow-paging.kvmmmu', (s) => (child(s).parent_ptes = 0), ['parent-ptes']);
  shadowCase('a leaf SPTE missing from its gfn rmap', 'shadow-paging.kvmmmu', (s) => {
    const [, arrs] = [...s.sk.rmaps].find(([, a]) => a[0]!.some((h) => h !== 0))!;
    const i = arrs[0]!.findIndex((h) => h !== 0);
    arrs[0]![i] = 0;
  }, ['rmap']);
  shadowCase('unsync_children that disagrees with the bitmap', 'shadow-paging.kvmmmu', (s) => {
    const sp = s.pages.find((x) => x.unsync_child_bitmap)!;
    sp.unsync_children++;
  }, ['unsync']);
  shadowCase('an unsync page above 4K', 'shadow-paging.kvmmmu', (s) => {
    const sp = s.pages.find((x) => (x.role & 0xf) > 1)!;
    sp.unsync = true;
  }, ['unsync'], true);
  shadowCase('an unsync child whose parent bit is clear', 'unsync-shadow-pages.kvmmmu', (s) => {
    // a 4K shadow page with a parent: mark it unsync without telling the parent (mark_unsync skipped)
    const sp = s.pages.find((x) => (x.role & 0xf) === 1 && x.parent_ptes !== 0 && !x.unsync)!;
    assert.ok(sp, 'a synced 4K shadow page with a parent');
    sp.unsync = true;
  }, ['unsync']);
  shadowCase('n_used_mmu_pages off the active list', 'shadow-paging.kvmmmu', (s) => s.kvm.arch.n_used_mmu_pages++, ['active-list']);
  shadowCase('a broken link_prev on the active list', 'shadow-paging.kvmmmu', (s) => (s.pages[1]!.link_prev = null), ['active-list']);
  shadowCase('pages_4k off the recount of both MMUs', 'shadow-paging.kvmmmu', (s) => s.kvm.stat.pages[0]!++, ['stats']);
  shadowCase('a writable shadow leaf that is not MMU-writable', 'shadow-paging.kvmmmu', (s) => {
    // find a writable leaf (W = bit 1) and clear MMU-writable (legacy/shadow format: bit 10)
    for (const sp of s.pages) {
      if ((sp.role & 0xf) !== 1) continue;
      for (let i = 0; i < 512; i++) {
        if ((sp.spt[2 * i]! & 0x800) && (sp.spt[2 * i]! & 0x2)) {
          sp.spt[2 * i] &= ~(1 << 10);
          return;
        }
      }
    }
    assert.fail('no writable shadow leaf');
  }, ['writable']);
});

// ------------------------------------------------------------------------------------------- SEV-SNP

describe('auditor: SEV-SNP private mappings against the RMP', () => {
  interface SnpState {
    r: ScenarioRunner;
    rmp: import('../../../src/engine/x86/sev_snp').SnpRmpTable;
    /** A private 4K NPT leaf: its gfn and host pfn. */
    gfn: number;
    pfn: number;
  }

  function snpState(): SnpState {
    const p = loadScenario(join(EXAMPLES, 'snp-gmem-rmp.kvmmmu'), nodeReader);
    const r = new ScenarioRunner(p);
    r.run();
    const kvm = (r.engine as unknown as { vm: { kvm: Kvm } }).vm.kvm;
    const sev = sevInfo(kvm);
    assert.ok(sev, 'an SNP VM');
    // a 4K leaf the RMP assigns to this guest: the example faults private pages in through guest_memfd
    let found: { gfn: number; pfn: number } | undefined;
    const walk = (sp: KvmMmuPage) => {
      const level = sp.role & 0xf;
      for (let i = 0; i < 512 && !found; i++) {
        const lo = sp.spt[2 * i]!;
        const hi = sp.spt[2 * i + 1]!;
        if (!(lo & 0x800)) continue;
        const pfn = (lo >>> 12) + (hi & 0xfffff) * 2 ** 20;
        if (level > 1 && !(lo & 0x80)) walk(kvm.pool.sp_of_pfn(pfn)!);
        else if (level === 1 && sev.rmp.entry(pfn).assigned) found = { gfn: sp.gfn + i, pfn };
      }
    };
    for (const root of kvm.arch.tdp_mmu_roots) walk(root);
    assert.ok(found, 'a private leaf');
    assert.equal(audit(r.engine).violations.length, 0, 'clean before the corruption');
    return { r, rmp: sev.rmp, ...found };
  }

  function snpCase(name: string, corrupt: (s: SnpState) => void, expected: string[]): void {
    it(`${name} -> ${expected.join(', ')}`, () => {
      const s = snpState();
      try {
        corrupt(s);
        const rep = audit(s.r.engine);
        assert.deepEqual(checksOf(rep), expected, JSON.stringify(rep.violations, null, 1));
        assert.match(rep.violations[0]!.where, new RegExp(`gfn 0x${s.gfn.toString(16)}\\b`));
      } finally {
        s.r.dispose();
      }
    });
  }

  snpCase('a private mapping of a page the RMP no longer assigns (rmp_make_shared behind KVM\'s back)', (s) => s.rmp.write(s.pfn, 0, 0, 0), ['rmp']);
  snpCase('a private mapping of a page assigned to another ASID', (s) => {
    const e = s.rmp.entry(s.pfn);
    s.rmp.write(s.pfn, s.rmp.flags_of(s.pfn), e.gpa / 4096, e.asid + 1);
  }, ['rmp']);
  snpCase('a private mapping at a gpa the RMP entry does not record', (s) => {
    const e = s.rmp.entry(s.pfn);
    s.rmp.write(s.pfn, s.rmp.flags_of(s.pfn), e.gpa / 4096 + 1, e.asid);
  }, ['rmp']);
});
