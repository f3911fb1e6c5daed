import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eptMasks, nptMasks } from '../../../src/engine/x86/spte';
import { roleExpectFields, spteExpectFields } from '../../../src/scenario/bind/x86_fields';

describe('x86 SPTE and role as expect fields', () => {
  it('an EPT 4K leaf: bits by the EPT and KVM software-bit tables', () => {
    const m = eptMasks({ maxphyaddr: 46 });
    // R W X (0-2), memtype WB=6 (5:3), IPAT (6), A (8), D (9), MMU-present (11), pfn 0x12345,
    // host-writable (57), MMU-writable (58), SVE (63).
    const lo = (0x12345 << 12) | 0x7 | (6 << 3) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 11);
    const hi = (1 << (57 - 32)) | (1 << (58 - 32)) | (1 << 31);
    const f = spteExpectFields(m, lo >>> 0, hi >>> 0, 1);
    assert.deepEqual(
      { kind: f['kind'], pfn: f['pfn'], r: f['r'], w: f['w'], x: f['x'], a: f['a'], d: f['d'], ps: f['ps'], mmu_writable: f['mmu_writable'], host_writable: f['host_writable'], memtype: f['memtype'], ipat: f['ipat'], sve: f['sve'], ad: f['ad'] },
      { kind: 'leaf', pfn: 0x12345, r: 1, w: 1, x: 1, a: 1, d: 1, ps: 0, mmu_writable: 1, host_writable: 1, memtype: 6, ipat: 1, sve: 1, ad: 'enabled' },
    );
    assert.equal(f['value'], (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
  });

  it('an NPT 2M leaf, read-only and NX', () => {
    const m = nptMasks({ maxphyaddr: 48 });
    // P (0), US (2), A (5), PS (7), MMU-present (11), host-writable (9), NX (63); no RW, no MMU-writable.
    const lo = (0x200 << 12) | 1 | 4 | (1 << 5) | (1 << 7) | (1 << 9) | (1 << 11);
    const f = spteExpectFields(m, lo >>> 0, 1 << 31, 2);
    assert.deepEqual(
      [f['kind'], f['ps'], f['w'], f['x'], f['u'], f['nx'], f['host_writable'], f['mmu_writable'], f['pfn']],
      ['leaf', 1, 0, 0, 1, 1, 1, 0, 0x200],
    );
  });

  it('a non-present SPTE has only kind, level and value', () => {
    const f = spteExpectFields(eptMasks({ maxphyaddr: 46 }), 0, 1 << 31, 1);
    assert.equal(f['kind'], 'nonpresent');
    assert.equal(f['present'], 0);
    assert.equal(f['w'], undefined);
  });

  it('role members at their union kvm_mmu_page_role bit positions', () => {
    // level 4, direct (7), access 7 (8-10), efer_nx (12), cr0_wp (13), ad_disabled (16), smm 1 (24)
    const word = 4 | (1 << 7) | (7 << 8) | (1 << 12) | (1 << 13) | (1 << 16) | (1 << 24);
    const f = roleExpectFields(word);
    assert.deepEqual(
      [f['role.level'], f['role.direct'], f['role.access'], f['role.efer_nx'], f['role.cr0_wp'], f['role.ad_disabled'], f['role.smm'], f['role.invalid'], f['role.is_mirror']],
      [4, 1, 7, 1, 1, 1, 1, 0, 0],
    );
  });
});
