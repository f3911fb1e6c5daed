// The auditor after every operation of random sequences on the x86 TDP MMU and on arm64 stage-2 (with
// and without pKVM): whatever the engine does — faults, zaps, migrations, dirty logging, NX recovery,
// unmaps, aging — it must leave a state in which every kernel invariant the auditor checks holds.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { X86Vm } from '../../../src/engine/x86/index';
import { Arm64Vm } from '../../../src/engine/arm64/mmu';
import { auditEngine, formatViolations } from '../../../src/engine/audit/audit';

let audits = 0;
let checks = 0;
let ops = 0;
after(() => console.log(`audit props: ${ops} random operations, ${audits} audits, ${checks} invariant checks`));

function clean(target: unknown, what: string): void {
  const r = auditEngine(target);
  audits++;
  checks += r.checks;
  assert.deepEqual(formatViolations(r), [], what);
}

const GiB = 0x4000_0000;
const X86_PAGES = 0x2000; // 32 MiB

type X86Op =
  | { k: 'access'; page: number; a: 'read' | 'write' | 'exec' }
  | { k: 'zap'; page: number; n: number }
  | { k: 'zap_all' }
  | { k: 'migrate'; page: number }
  | { k: 'log'; on: boolean }
  | { k: 'get_log' }
  | { k: 'nx_recover' }
  | { k: 'invalidate'; page: number; n: number };

const x86Op: fc.Arbitrary<X86Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('access' as const), page: fc.nat({ max: X86_PAGES - 1 }), a: fc.constantFrom('read' as const, 'write' as const, 'exec' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('zap' as const), page: fc.nat({ max: X86_PAGES - 1 }), n: fc.integer({ min: 1, max: 2048 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'zap_all' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('migrate' as const), page: fc.nat({ max: X86_PAGES - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('log' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ k: 'get_log' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'nx_recover' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('invalidate' as const), page: fc.nat({ max: X86_PAGES - 1 }), n: fc.integer({ min: 1, max: 1024 }) }) },
);

describe('auditor after every operation of random sequences', () => {
  it('x86 TDP MMU (EPT or NPT, NX huge pages on or off, 2M-backed slot)', () => {
    fc.assert(
      fc.property(fc.array(x86Op, { minLength: 1, maxLength: 40, size: 'max' }), fc.boolean(), fc.boolean(), (seq, nx, amd) => {
        const v = new X86Vm({ params: { nx_huge_pages: nx ? 'on' : 'off', nx_huge_pages_recovery_ratio: 1 }, ...(amd ? { vendor: 'svm' } : {}) } as ConstructorParameters<typeof X86Vm>[0]);
        v.set_user_memory_region({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: GiB, userspace_addr: 0x7f00_0000_0000, host_backing: '2m-thp', host_pfn_base: 0x40_0000 } as Parameters<X86Vm['set_user_memory_region']>[0]);
        let next = 0x90_0000;
        for (const o of seq) {
          ops++;
          switch (o.k) {
            case 'access': v.touch(0, o.page * 4096, o.a); break;
            case 'zap': v.zap_gfn_range(o.page, o.page + o.n); break;
            case 'zap_all': v.zap_all_fast(); break;
            case 'migrate': v.host_migrate_page(0x7f00_0000_0000 + o.page * 4096, next++); break;
            case 'log': v.set_dirty_logging(0, o.on); break;
            case 'get_log': v.get_dirty_log(0); break;
            case 'nx_recover': v.recover_nx_huge_pages(); break;
            case 'invalidate': v.notifier_invalidate(0x7f00_0000_0000 + o.page * 4096, 0x7f00_0000_0000 + (o.page + o.n) * 4096); break;
          }
          clean(v, `after ${JSON.stringify(o)}`);
        }
      }),
      { numRuns: 40 },
    );
  });

  type ArmOp =
    | { k: 'access'; page: number; a: 'read' | 'write' | 'exec' }
    | { k: 'unmap'; page: number; n: number }
    | { k: 'log'; on: boolean }
    | { k: 'age'; page: number; n: number };

  const ARM_PAGES = 0x4000; // 64 MiB
  const armOp: fc.Arbitrary<ArmOp> = fc.oneof(
    { weight: 8, arbitrary: fc.record({ k: fc.constant('access' as const), page: fc.nat({ max: ARM_PAGES - 1 }), a: fc.constantFrom('read' as const, 'write' as const, 'exec' as const) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('unmap' as const), page: fc.nat({ max: ARM_PAGES - 1 }), n: fc.integer({ min: 1, max: 2048 }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('log' as const), on: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('age' as const), page: fc.nat({ max: ARM_PAGES - 1 }), n: fc.integer({ min: 1, max: 1024 }) }) },
  );

  it('arm64 stage-2 (nVHE and protected mode, 2M THP backing)', () => {
    fc.assert(
      fc.property(fc.array(armOp, { minLength: 1, maxLength: 40, size: 'max' }), fc.boolean(), (seq, pkvm) => {
        const v = new Arm64Vm({ ipaBits: 40, ...(pkvm ? { pkvm: true } : {}) } as ConstructorParameters<typeof Arm64Vm>[0]);
        const base = 0x4000_0000;
        const slot = v.addMemslot({ gpa: base, size: ARM_PAGES * 4096, backingPageSize: 2 << 20, ...(pkvm ? { pa: 0x1_0000_0000 } : {}) });
        for (const o of seq) {
          ops++;
          switch (o.k) {
            case 'access': v.access(base + o.page * 4096, o.a); break;
            case 'unmap': v.unmapRange(base + o.page * 4096, Math.min(o.n, ARM_PAGES - o.page) * 4096); break;
            case 'log': v.setDirtyLogging(slot, o.on); break;
            case 'age': v.ageRange(base + o.page * 4096, Math.min(o.n, ARM_PAGES - o.page) * 4096); break;
          }
          clean(v, `after ${JSON.stringify(o)} (pkvm ${pkvm})`);
        }
      }),
      { numRuns: 40 },
    );
  });
});
