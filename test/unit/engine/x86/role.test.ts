import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeFields } from '../../../../src/engine/bits/fields';
import {
  EFER_LMA,
  EFER_NX,
  ROLE_FIELDS,
  X86_CR0_PG,
  X86_CR0_WP,
  X86_CR4_LA57,
  X86_CR4_PAE,
  X86_CR4_PKE,
  X86_CR4_PSE,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
  decodeExtRole,
  decodeRole,
  encodeExtRole,
  encodeRole,
  kvm_calc_cpu_role,
  kvm_calc_shadow_ept_root_page_role,
  kvm_calc_tdp_mmu_root_page_role,
  kvm_mmu_child_role,
  kvm_mmu_get_tdp_level,
  kvm_mmu_role_as_id,
  role_trace_text,
  shadowMmuRootRole,
  shadowNptRoles,
  type KvmMmuPageRole,
} from '../../../../src/engine/x86/role';

// Word masks from the reference table (kvm-x86-mmu.md 1.1).
test('role field positions match the kernel bitfield layout', () => {
  assert.equal(encodeRole({ level: 0xf }), 0xf);
  assert.equal(encodeRole({ has_4_byte_gpte: true }), 0x10);
  assert.equal(encodeRole({ quadrant: 3 }), 0x60);
  assert.equal(encodeRole({ direct: true }), 0x80);
  assert.equal(encodeRole({ access: 7 }), 0x700);
  assert.equal(encodeRole({ access: 1 }), 0x100, 'ACC_EXEC_MASK at bit 8');
  assert.equal(encodeRole({ access: 4 }), 0x400, 'ACC_USER_MASK at bit 10');
  assert.equal(encodeRole({ invalid: true }), 0x800);
  assert.equal(encodeRole({ efer_nx: true }), 0x1000);
  assert.equal(encodeRole({ cr0_wp: true }), 0x2000);
  assert.equal(encodeRole({ smep_andnot_wp: true }), 0x4000);
  assert.equal(encodeRole({ smap_andnot_wp: true }), 0x8000);
  assert.equal(encodeRole({ ad_disabled: true }), 0x10000);
  assert.equal(encodeRole({ guest_mode: true }), 0x20000);
  assert.equal(encodeRole({ passthrough: true }), 0x40000);
  assert.equal(encodeRole({ is_mirror: true }), 0x80000);
  assert.equal(encodeRole({ smm: 0xff }), 0xff00_0000);
  assert.equal(encodeRole({ smm: 1 }), 0x0100_0000);
});

test('extended role bit positions (ref 1.2)', () => {
  const names = ['valid', 'execonly', 'cr4_pse', 'cr4_pke', 'cr4_smap', 'cr4_smep', 'cr4_la57', 'efer_lma'] as const;
  names.forEach((n, i) => assert.equal(encodeExtRole({ [n]: true }), 1 << i, n));
});

test('ROLE_FIELDS table decodes the same positions as decodeRole', () => {
  const w = encodeRole({ level: 3, quadrant: 2, access: 5, smm: 1, passthrough: true });
  const f = Object.fromEntries(decodeFields(w, 0, ROLE_FIELDS).map((d) => [d.name, d.value]));
  assert.equal(f.level, 3);
  assert.equal(f.quadrant, 2);
  assert.equal(f.access, 5);
  assert.equal(f.smm, 1);
  assert.equal(f.passthrough, 1);
  assert.equal(f.direct, 0);
});

const LONG_MODE = { cr0: (X86_CR0_PG | X86_CR0_WP) >>> 0, cr4: X86_CR4_PAE, efer: EFER_LMA | EFER_NX };

test('4-level EPT root with A/D has role word 0x3784', () => {
  const cpu = kvm_calc_cpu_role(LONG_MODE);
  const root = kvm_calc_tdp_mmu_root_page_role(cpu.lo, true, 4);
  assert.equal(root, 0x3784);
  assert.equal(role_trace_text(root), 'l4 8-byte q0 direct wux nxe ad');
});

test('TDP root role: A/D off, SMM and guest mode copied from the CPU role', () => {
  const smm = kvm_calc_cpu_role({ ...LONG_MODE, smm: true });
  assert.equal(kvm_calc_tdp_mmu_root_page_role(smm.lo, false, 4), 0x0101_3784);
  assert.equal(role_trace_text(0x13784), 'l4 8-byte q0 direct wux nxe !ad');
  assert.equal(kvm_mmu_role_as_id(0x0101_3784), 1);
  assert.equal(kvm_mmu_role_as_id(0x3784), 0);
  // A real-mode vCPU still gets a 4-level direct root with WP/NX forced on.
  const real = kvm_calc_cpu_role({ cr0: 0, cr4: 0, efer: 0 });
  assert.equal(kvm_calc_tdp_mmu_root_page_role(real.lo, true, 5), 0x3785);
});

test('kvm_mmu_get_tdp_level', () => {
  assert.equal(kvm_mmu_get_tdp_level(0, 5, 48), 4);
  assert.equal(kvm_mmu_get_tdp_level(0, 5, 52), 5);
  assert.equal(kvm_mmu_get_tdp_level(0, 4, 52), 4);
  assert.equal(kvm_mmu_get_tdp_level(5, 4, 40), 5);
});

test('kvm_calc_cpu_role: paging off is direct only', () => {
  const r = kvm_calc_cpu_role({ cr0: 0, cr4: X86_CR4_PAE | X86_CR4_SMEP, efer: EFER_NX });
  assert.equal(r.lo, 0x780);
  assert.equal(r.hi, 0x1);
});

test('kvm_calc_cpu_role: 64-bit guest with every CR4 feature', () => {
  const r = kvm_calc_cpu_role({
    cr0: (X86_CR0_PG | X86_CR0_WP) >>> 0,
    cr4: X86_CR4_PAE | X86_CR4_PSE | X86_CR4_SMEP | X86_CR4_SMAP | X86_CR4_PKE,
    efer: EFER_LMA | EFER_NX,
    guest_mode: true,
  });
  assert.equal(r.lo, 0x4 | 0x700 | 0x1000 | 0x2000 | 0x20000);
  assert.equal(r.hi, 0x1 | 0x4 | 0x8 | 0x10 | 0x20 | 0x80);
  const la57 = kvm_calc_cpu_role({ ...LONG_MODE, cr4: X86_CR4_PAE | X86_CR4_LA57 });
  assert.equal(la57.lo & 0xf, 5);
  assert.equal(la57.hi, 0x1 | 0x40 | 0x80);
});

test('kvm_calc_cpu_role: 32-bit non-PAE, WP clear, SMEP: 4-byte gPTEs and smep_andnot_wp; PKE ignored', () => {
  const r = kvm_calc_cpu_role({ cr0: X86_CR0_PG >>> 0, cr4: X86_CR4_SMEP | X86_CR4_PKE | X86_CR4_LA57, efer: 0 });
  assert.equal(r.lo, 0x2 | 0x10 | 0x700 | 0x4000);
  assert.equal(r.hi, 0x1 | 0x20);
  assert.equal(role_trace_text(r.lo), 'l2 4-byte q0 wux !nxe ad');
  const pae = kvm_calc_cpu_role({ cr0: X86_CR0_PG >>> 0, cr4: X86_CR4_PAE | X86_CR4_SMAP, efer: EFER_NX });
  assert.equal(pae.lo, 0x3 | 0x700 | 0x1000 | 0x8000);
});

test('shadow paging root role: at least PAE, EFER.NX forced', () => {
  const cpu = kvm_calc_cpu_role({ cr0: X86_CR0_PG >>> 0, cr4: X86_CR4_SMEP, efer: 0 });
  assert.equal(shadowMmuRootRole(cpu.lo), 0x3 | 0x10 | 0x700 | 0x4000 | 0x1000);
  const real = kvm_calc_cpu_role({ cr0: 0, cr4: 0, efer: 0 });
  assert.equal(shadowMmuRootRole(real.lo), 0x3 | 0x80 | 0x700 | 0x1000);
});

test('shadow NPT roles: passthrough for a 4-level L1 NPT under a 5-level host', () => {
  const { cpu_role, root_role } = shadowNptRoles((X86_CR0_PG | X86_CR0_WP) >>> 0, X86_CR4_PAE | X86_CR4_PKE, EFER_LMA | EFER_NX, false, 5);
  assert.equal(cpu_role.hi & 0x8, 0, 'CR4.PKE ignored for NPT');
  assert.equal(root_role, 0x5 | 0x700 | 0x1000 | 0x2000 | 0x20000 | 0x40000);
  const same = shadowNptRoles((X86_CR0_PG | X86_CR0_WP) >>> 0, X86_CR4_PAE, EFER_LMA | EFER_NX, false, 4);
  assert.equal(same.root_role & 0x40000, 0);
});

test('shadow EPT cpu role: indirect, guest mode, ACC_ALL, no WP/NX', () => {
  const r = kvm_calc_shadow_ept_root_page_role(true, true, 4);
  assert.equal(r.lo, 0x4 | 0x700 | 0x20000);
  assert.equal(r.hi, 0x3);
  assert.equal(role_trace_text(r.lo), 'l4 8-byte q0 wux !nxe ad');
  const noad = kvm_calc_shadow_ept_root_page_role(false, false, 5);
  assert.equal(noad.lo, 0x5 | 0x700 | 0x20000 | 0x10000);
  assert.equal(noad.hi, 0x1);
});

test('kvm_mmu_child_role: level-1, access/direct from caller, passthrough cleared, quadrant for 4-byte gPTEs', () => {
  const parent = encodeRole({ level: 4, direct: false, access: 7, efer_nx: true, cr0_wp: true, passthrough: true, guest_mode: true });
  const child = kvm_mmu_child_role(parent, 17, true, 3);
  assert.deepEqual(decodeRole(child), {
    ...decodeRole(parent),
    level: 3,
    direct: true,
    access: 3,
    passthrough: false,
  });
  // 32-bit guest: a level-2 shadow page for quadrant 3 of the PAE roots; PDE index 5 -> child quadrant 1.
  const pd = encodeRole({ level: 2, has_4_byte_gpte: true, quadrant: 3, access: 7 });
  const pt = kvm_mmu_child_role(pd, 5, false, 6);
  assert.equal(pt, encodeRole({ level: 1, has_4_byte_gpte: true, quadrant: 1, access: 6 }));
  assert.equal(decodeRole(kvm_mmu_child_role(pd, 4, false, 6)).quadrant, 0);
});

test('role_trace_text tokens: invalid, quadrant, each ACC string', () => {
  assert.equal(role_trace_text(encodeRole({ level: 1, has_4_byte_gpte: true, quadrant: 2, access: 4, invalid: true, efer_nx: true })),
    'l1 4-byte q2 -u- invalid nxe ad');
  const acc = ['---', '--x', 'w--', 'w-x', '-u-', '-ux', 'wu-', 'wux'];
  for (let a = 0; a < 8; a++) assert.equal(role_trace_text(a << 8), `l0 8-byte q0 ${acc[a]} !nxe ad`);
});

const roleArb: fc.Arbitrary<KvmMmuPageRole> = fc.record({
  level: fc.integer({ min: 0, max: 15 }),
  has_4_byte_gpte: fc.boolean(),
  quadrant: fc.integer({ min: 0, max: 3 }),
  direct: fc.boolean(),
  access: fc.integer({ min: 0, max: 7 }),
  invalid: fc.boolean(),
  efer_nx: fc.boolean(),
  cr0_wp: fc.boolean(),
  smep_andnot_wp: fc.boolean(),
  smap_andnot_wp: fc.boolean(),
  ad_disabled: fc.boolean(),
  guest_mode: fc.boolean(),
  passthrough: fc.boolean(),
  is_mirror: fc.boolean(),
  smm: fc.integer({ min: 0, max: 255 }),
});

test('property: decodeRole(encodeRole(r)) == r', () => {
  fc.assert(fc.property(roleArb, (r) => assert.deepEqual(decodeRole(encodeRole(r)), { ...r })));
});

test('property: encodeRole(decodeRole(w)) == w for words with the unused bits 23:20 clear', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (w0) => {
      const w = (w0 & ~0x00f0_0000) >>> 0;
      assert.equal(encodeRole(decodeRole(w)), w);
    }),
  );
});

test('property: extended role round trip', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 255 }), (w) => assert.equal(encodeExtRole(decodeExtRole(w)), w)));
});

test('property: kvm_calc_cpu_role follows the ref 1.3 rules for any CR0/CR4/EFER', () => {
  fc.assert(
    fc.property(
      fc.record({ pg: fc.boolean(), wp: fc.boolean(), pae: fc.boolean(), pse: fc.boolean(), smep: fc.boolean(), smap: fc.boolean(), pke: fc.boolean(), la57: fc.boolean(), lma: fc.boolean(), nx: fc.boolean(), smm: fc.boolean(), gm: fc.boolean() }),
      (s) => {
        const cr0 = ((s.pg ? X86_CR0_PG : 0) | (s.wp ? X86_CR0_WP : 0)) >>> 0;
        const cr4 = (s.pae ? X86_CR4_PAE : 0) | (s.pse ? X86_CR4_PSE : 0) | (s.smep ? X86_CR4_SMEP : 0) | (s.smap ? X86_CR4_SMAP : 0) | (s.pke ? X86_CR4_PKE : 0) | (s.la57 ? X86_CR4_LA57 : 0);
        const efer = (s.lma ? EFER_LMA : 0) | (s.nx ? EFER_NX : 0);
        const r = kvm_calc_cpu_role({ cr0, cr4, efer, smm: s.smm, guest_mode: s.gm });
        const b = decodeRole(r.lo);
        const e = decodeExtRole(r.hi);
        assert.equal(b.access, 7);
        assert.equal(b.smm, s.smm ? 1 : 0);
        assert.equal(b.guest_mode, s.gm);
        assert.equal(e.valid, true);
        assert.equal(b.invalid || b.ad_disabled || b.passthrough || b.is_mirror || b.quadrant !== 0, false);
        if (!s.pg) {
          assert.deepEqual({ ...b, smm: 0, guest_mode: false }, decodeRole(0x780));
          assert.equal(r.hi, 1);
          return;
        }
        assert.equal(b.direct, false);
        assert.equal(b.efer_nx, s.nx);
        assert.equal(b.cr0_wp, s.wp);
        assert.equal(b.smep_andnot_wp, s.smep && !s.wp);
        assert.equal(b.smap_andnot_wp, s.smap && !s.wp);
        assert.equal(b.has_4_byte_gpte, !s.pae);
        assert.equal(b.level, s.lma ? (s.la57 ? 5 : 4) : s.pae ? 3 : 2);
        assert.deepEqual({ ...e }, { valid: true, execonly: false, cr4_pse: s.pse, cr4_pke: s.lma && s.pke, cr4_smap: s.smap, cr4_smep: s.smep, cr4_la57: s.lma && s.la57, efer_lma: s.lma });
      },
    ),
  );
});
