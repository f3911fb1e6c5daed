import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GiB, slot, vm } from './fault_helpers';
import { KVM_MEM_GUEST_MEMFD, KVM_X86_TDX_VM, PRIVATE } from '../../../../src/engine/x86/index';

// TDX alias invariants (kvm-x86-mmu.md §5.5, §7.2): whatever the sequence of private/shared accesses,
// conversions and zaps, (1) the mirror root's leaves are exactly what the TDX module has mapped, with the
// same pfns; (2) a gfn is never mapped through both aliases; (3) private leaves exist only for gfns whose
// attribute is private and shared leaves only for shared ones; (4) teardown leaves nothing behind.

const SHARED = 2 ** 35;
const PAGES = 64;

type Op = { k: 'access'; gfn: number; shared: boolean; w: boolean } | { k: 'convert'; gfn: number; n: number; priv: boolean } | { k: 'zap'; gfn: number; n: number } | { k: 'zap_all' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('access' as const), gfn: fc.integer({ min: 0, max: PAGES - 1 }), shared: fc.boolean(), w: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('convert' as const), gfn: fc.integer({ min: 0, max: PAGES - 1 }), n: fc.integer({ min: 1, max: 8 }), priv: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('zap' as const), gfn: fc.integer({ min: 0, max: PAGES - 1 }), n: fc.integer({ min: 1, max: 16 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'zap_all' as const }) },
);

test('TDX: mirror root == S-EPT, no gfn mapped through both aliases, mappings follow the attributes', () => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
      const v = vm({ vm_type: KVM_X86_TDX_VM });
      slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD });
      v.set_memory_attributes(0, PAGES * 4096, PRIVATE);
      for (const o of ops) {
        if (o.k === 'access') v.touch(0, (o.shared ? 2 ** 47 : 0) + o.gfn * 4096, o.w ? 'write' : 'read');
        else if (o.k === 'convert') assert.equal(v.set_memory_attributes(o.gfn * 4096, o.n * 4096, o.priv ? PRIVATE : 0), 0);
        else if (o.k === 'zap') v.zap_gfn_range(o.gfn, o.gfn + o.n);
        else v.zap_all_fast();
        const mirror = v.current_root(0, true);
        const priv = new Map<number, number>();
        if (mirror) for (const e of v.iterate(mirror)) if ((e.lo & 0x800) !== 0 && e.level === 1) priv.set(e.gfn, e.pfn);
        assert.deepEqual([...priv].sort((a, b) => a[0] - b[0]), [...v.tdx!.mapped()].sort((a, b) => a[0] - b[0]));
        const direct = v.current_root(0);
        const shared = new Set<number>();
        if (direct && (direct.role & 0x800) === 0) {
          for (const e of v.iterate(direct)) if ((e.lo & 0x800) !== 0 && e.level === 1) shared.add(e.gfn - SHARED);
        }
        for (const g of priv.keys()) {
          assert.equal(shared.has(g), false, `gfn ${g} mapped private and shared`);
          assert.equal(v.kvm.kvm_mem_is_private(g), true);
        }
        for (const g of shared) assert.equal(v.kvm.kvm_mem_is_private(g), false);
        assert.deepEqual(v.kvm.warnings, []);
      }
      v.destroy();
      assert.equal(v.tdx!.mapped().size, 0);
      assert.equal(v.tdx!.table_count(), 0);
      assert.equal(v.kvm.pool.live, 0);
      assert.equal(v.tdx!.failures, 0);
    }),
    { numRuns: 50 },
  );
});
