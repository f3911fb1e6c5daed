/**
 * The precomputed tables themselves, bytes worked out by hand from the rules in B6:
 * permissions[pfec>>1] bit n = "ACC value n faults" (n = X|W<<1|U<<2), pkru_mask has 2 bits at each even
 * pfec (AD at pfec, WD at pfec+1) with the RSVD slot standing for the PTE's U bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { permission_fault, update_permission_bitmask, update_pkru_bitmask, type PermissionMmu } from '../../../../src/engine/x86/permission';

function mmu(o: Partial<PermissionMmu>): PermissionMmu {
  return { permissions: new Uint8Array(16), pkru_mask: 0, cr0_wp: true, cr4_smep: false, cr4_smap: false, cr4_pke: false, efer_nx: true, ...o };
}

// ACC values lacking W: 0,1,4,5 -> 0x33. Lacking U: 0..3 -> 0x0f. Lacking X: 0,2,4,6 -> 0x55. Having U: 4..7 -> 0xf0.
test('permissions[]: WP=1, NX, no SMEP/SMAP', () => {
  const m = mmu({});
  update_permission_bitmask(m, false);
  assert.equal(m.permissions[0], 0x00, 'supervisor read');
  assert.equal(m.permissions[1], 0x33, 'supervisor write');
  assert.equal(m.permissions[2], 0x0f, 'user read');
  assert.equal(m.permissions[3], 0x3f, 'user write');
  assert.equal(m.permissions[8], 0x55, 'supervisor fetch');
  assert.equal(m.permissions[10], 0x5f, 'user fetch');
});

test('permissions[]: CR0.WP=0 frees supervisor writes; EFER.NX=0 frees fetches', () => {
  const m = mmu({ cr0_wp: false, efer_nx: false });
  update_permission_bitmask(m, false);
  assert.equal(m.permissions[1], 0x00);
  assert.equal(m.permissions[3], 0x3f);
  assert.equal(m.permissions[8], 0x00);
});

test('permissions[]: SMEP on supervisor fetches, SMAP on supervisor data unless the RSVD (override) slot', () => {
  const m = mmu({ cr4_smep: true, cr4_smap: true });
  update_permission_bitmask(m, false);
  assert.equal(m.permissions[8], 0x55 | 0xf0, 'supervisor fetch: NX or user page');
  assert.equal(m.permissions[0], 0xf0, 'supervisor read of user pages');
  assert.equal(m.permissions[1], 0x33 | 0xf0);
  assert.equal(m.permissions[4], 0x00, 'supervisor read with the SMAP override');
  assert.equal(m.permissions[5], 0x33, 'supervisor write with the SMAP override');
  assert.equal(m.permissions[2], 0x0f, 'user accesses never SMAP');
});

test('permissions[] for EPT: U means readable; no SMEP/SMAP/WP/NX adjustments', () => {
  const m = mmu({ cr0_wp: false, efer_nx: false, cr4_smep: true, cr4_smap: true });
  update_permission_bitmask(m, true);
  assert.equal(m.permissions[0], 0x00);
  assert.equal(m.permissions[1], 0x33);
  assert.equal(m.permissions[2], 0x0f);
  assert.equal(m.permissions[8], 0x55);
});

test('pkru_mask: AD for data accesses to user pages, WD for writes by users or with CR0.WP=1', () => {
  const m = mmu({ cr4_pke: true });
  update_pkru_bitmask(m);
  assert.equal(m.pkru_mask, 0xdd00);
  const n = mmu({ cr4_pke: true, cr0_wp: false });
  update_pkru_bitmask(n);
  assert.equal(n.pkru_mask, 0xd500);
  const off = mmu({ cr4_pke: false });
  update_pkru_bitmask(off);
  assert.equal(off.pkru_mask, 0);
});

test('permission_fault: P, P|PK, or 0; the override needs EFLAGS.AC and an explicit access', () => {
  const m = mmu({ cr4_smap: true, cr4_pke: true });
  update_permission_bitmask(m, false);
  update_pkru_bitmask(m);
  const v = (rflags: number, pkru: number) => ({ rflags, pkru });
  assert.equal(permission_fault(v(0, 0), m, 7, 0, 0), 1, 'SMAP');
  assert.equal(permission_fault(v(1 << 18, 0), m, 7, 0, 0), 0, 'AC override');
  assert.equal(permission_fault(v(1 << 18, 0), m, 7, 0, 0, 1 << 16), 1, 'implicit: no override');
  assert.equal(permission_fault(v(0, 0b0100), m, 7, 1, 4), 0x21, 'user read, AD1');
  assert.equal(permission_fault(v(0, 0b1000), m, 7, 1, 4), 0, 'user read, WD1 only');
  assert.equal(permission_fault(v(0, 0b1000), m, 7, 1, 6), 0x21, 'user write, WD1');
  assert.equal(permission_fault(v(0, 0b0100), m, 3, 1, 4), 1, 'supervisor page: user access fails, but not by PK');
});
