import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GiB, slot, vm } from './fault_helpers';
import type { X86Vm } from '../../../../src/engine/x86/index';

// Invariants of the TDP MMU that must hold after any sequence of guest accesses and host/ioctl events
// (kvm-x86-mmu.md §3.3-§6): page stats equal the leaves present in valid roots; every leaf maps the host
// page backing its gfn (aligned to the leaf size) and obeys the H/M/W writable invariant; every live
// table is reachable from a root; dirty-logged slots have no huge leaves and only write-protected or
// logged-dirty writable 4K leaves.

type Op =
  | { k: 'access'; page: number; a: 'read' | 'write' | 'exec' }
  | { k: 'zap'; page: number; n: number }
  | { k: 'zap_all' }
  | { k: 'migrate'; page: number }
  | { k: 'log'; on: boolean }
  | { k: 'get_log' }
  | { k: 'nx_recover' };

const PAGES = 0x2000; // 32 MiB of guest memory, 16 huge pages
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('access' as const), page: fc.integer({ min: 0, max: PAGES - 1 }), a: fc.constantFrom('read' as const, 'write' as const, 'exec' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('zap' as const), page: fc.integer({ min: 0, max: PAGES - 1 }), n: fc.integer({ min: 1, max: 1024 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'zap_all' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('migrate' as const), page: fc.integer({ min: 0, max: PAGES - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('log' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ k: 'get_log' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'nx_recover' as const }) },
);

const U = 0x7f00_0000_0000;
const PFN0 = 0x40_0000;

function check(v: X86Vm, migrated: Map<number, number>): void {
  const kvm = v.kvm;
  const counts = [0, 0, 0];
  const reachable = new Set<unknown>();
  const slotObj = kvm.kvm_memslots(0).byId(0)!;
  const logging = (slotObj.flags & 1) !== 0;
  for (const root of kvm.arch.tdp_mmu_roots) {
    reachable.add(root);
    const valid = (root.role & 0x800) === 0;
    for (const e of v.iterate(root)) {
      if ((e.lo & 0x800) === 0) continue;
      const leaf = e.level === 1 || (e.lo & 0x80) !== 0;
      if (!leaf) {
        reachable.add(kvm.pool.sp_of_pfn(e.pfn));
        continue;
      }
      if (valid) counts[e.level - 1]!++;
      const per = 512 ** (e.level - 1);
      const expect = e.level === 1 && migrated.has(e.gfn) ? migrated.get(e.gfn)! : PFN0 + e.gfn;
      assert.equal(e.pfn, e.level === 1 ? expect : expect - (expect % per), `pfn of gfn ${e.gfn.toString(16)} level ${e.level}`);
      const H = (e.hi & (1 << 25)) !== 0;
      const M = (e.hi & (1 << 26)) !== 0;
      const W = (e.lo & 2) !== 0;
      assert.ok(M ? H : !W, 'writable invariant');
      if (logging && valid) {
        assert.equal(e.level, 1, 'no huge leaves while dirty logging');
        if (W) assert.ok(((slotObj.dirty_bitmap![e.gfn >>> 5]! >>> (e.gfn & 31)) & 1) === 1, `writable gfn ${e.gfn.toString(16)} must be logged`);
      }
    }
  }
  assert.deepEqual([v.stats().vm.pages_4k, v.stats().vm.pages_2m, v.stats().vm.pages_1g], counts);
  assert.equal(kvm.pool.live, reachable.size, 'every live table is reachable');
  assert.deepEqual(kvm.warnings, []);
}

test('TDP MMU invariants hold across random accesses, zaps, migrations, dirty logging and NX recovery', () => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), fc.boolean(), fc.boolean(), (ops, nx, ad) => {
      const v = vm({ params: { nx_huge_pages: nx ? 'on' : 'off', nx_huge_pages_recovery_ratio: 1 }, vendor_config: { ept_ad: ad } });
      slot(v, 0, 0, GiB, { backing: '2m-thp' });
      const migrated = new Map<number, number>();
      let next = 0x90_0000;
      for (const o of ops) {
        switch (o.k) {
          case 'access':
            v.touch(0, o.page * 4096, o.a);
            break;
          case 'zap':
            v.zap_gfn_range(o.page, o.page + o.n);
            break;
          case 'zap_all':
            v.zap_all_fast();
            break;
          case 'migrate':
            v.host_migrate_page(U + o.page * 4096, next);
            migrated.set(o.page, next++);
            break;
          case 'log':
            assert.equal(v.set_dirty_logging(0, o.on), 0);
            break;
          case 'get_log': {
            const r = v.get_dirty_log(0);
            if (typeof r === 'number') assert.equal(r, -2);
            break;
          }
          case 'nx_recover':
            v.recover_nx_huge_pages();
            break;
        }
        check(v, migrated);
      }
    }),
    { numRuns: 60 },
  );
});
