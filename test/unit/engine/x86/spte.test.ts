import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { toBigInt, type U64 } from '../../../../src/engine/bits/u64';
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  check_spte_writable_invariants,
  classifySpte,
  eptMasks,
  get_mmio_spte_access,
  get_mmio_spte_generation,
  get_mmio_spte_gfn,
  is_access_allowed,
  is_access_track_spte,
  is_accessed_spte,
  is_dirty_spte,
  is_ept_ve_possible,
  is_executable_pte,
  is_frozen_spte,
  is_large_pte,
  is_last_spte,
  is_mmio_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  isLegacyRemovedSpte,
  kvm_mmu_set_spte_flags,
  leaf_spte_change_needs_tlb_flush,
  make_huge_spte,
  make_mmio_spte,
  make_nonleaf_spte,
  make_small_spte,
  make_spte,
  mark_spte_for_access_track,
  newMakeSpteArgs,
  nptMasks,
  restore_acc_track_spte,
  spte_ad_enabled,
  spte_needs_atomic_update,
  spte_to_pfn,
  vmx_get_mt_mask,
  type SpteMasks,
} from '../../../../src/engine/x86/spte';

const B = (u: U64): bigint => toBigInt(u.lo, u.hi);
const bit = (n: number): bigint => 1n << BigInt(n);
const genmask = (h: number, l: number): bigint => ((1n << BigInt(h - l + 1)) - 1n) << BigInt(l);
const halves = (v: bigint): [number, number] => [Number(v & 0xffff_ffffn), Number(v >> 32n)];
const out = (): U64 => ({ lo: 0, hi: 0 });

// ------------------------------------------------------------------ masks (ref 3.2)

function checkEptCommon(m: SpteMasks): void {
  assert.equal(B(m.shadow_user_mask), bit(0));
  assert.equal(B(m.shadow_accessed_mask), bit(8), 'accessed mask set even without A/D');
  assert.equal(B(m.shadow_dirty_mask), bit(9));
  assert.equal(B(m.shadow_nx_mask), 0n);
  assert.equal(B(m.shadow_x_mask), bit(2));
  assert.equal(B(m.shadow_acc_track_mask), 0x7n);
  assert.equal(B(m.shadow_host_writable_mask), bit(57));
  assert.equal(B(m.shadow_mmu_writable_mask), bit(58));
  assert.equal(B(m.shadow_mmio_value), 0b110n);
  assert.equal(B(m.shadow_mmio_mask), 0x7n | bit(63));
  assert.equal(m.shadow_mmio_access_mask, 0);
  assert.equal(B(m.shadow_me_value), 0n);
  assert.equal(B(m.shadow_me_mask), 0n);
  assert.equal(m.enable_mmio_caching, true);
  assert.equal(B(m.spte_base_addr_mask), genmask(51, 12));
}

test('EPT masks with A/D, no exec-only', () => {
  const m = eptMasks({ maxphyaddr: 46 }, true, false);
  checkEptCommon(m);
  assert.equal(m.kvm_ad_enabled, true);
  assert.equal(B(m.shadow_present_mask), bit(0) | bit(63));
});

test('EPT masks with exec-only: present mask is SVE alone', () => {
  const m = eptMasks({ maxphyaddr: 46 }, true, true);
  checkEptCommon(m);
  assert.equal(B(m.shadow_present_mask), bit(63));
});

test('EPT masks without A/D', () => {
  const m = eptMasks({ maxphyaddr: 52 }, false, false);
  checkEptCommon(m);
  assert.equal(m.kvm_ad_enabled, false);
  assert.equal(B(m.shadow_present_mask), bit(0) | bit(63));
});

function checkNptCommon(m: SpteMasks): void {
  assert.equal(m.kvm_ad_enabled, true);
  assert.equal(B(m.shadow_present_mask), bit(0));
  assert.equal(B(m.shadow_user_mask), bit(2));
  assert.equal(B(m.shadow_accessed_mask), bit(5));
  assert.equal(B(m.shadow_dirty_mask), bit(6));
  assert.equal(B(m.shadow_nx_mask), bit(63));
  assert.equal(B(m.shadow_x_mask), 0n);
  assert.equal(B(m.shadow_acc_track_mask), 0n);
  assert.equal(B(m.shadow_host_writable_mask), bit(9));
  assert.equal(B(m.shadow_mmu_writable_mask), bit(10));
}

test('NPT masks without SME, MAXPHYADDR 48: MMIO uses reserved bit 51 | P', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  checkNptCommon(m);
  assert.equal(B(m.shadow_me_value), 0n);
  assert.equal(B(m.shadow_me_mask), 0n);
  assert.equal(B(m.shadow_mmio_value), bit(51) | 1n);
  assert.equal(B(m.shadow_mmio_mask), bit(51) | 1n);
  assert.equal(m.shadow_mmio_access_mask, ACC_WRITE_MASK | ACC_USER_MASK);
  assert.equal(m.enable_mmio_caching, true);
  assert.equal(B(m.spte_base_addr_mask), genmask(51, 12));
  assert.equal(B(m.shadow_nonpresent_or_rsvd_mask), 0n);
  assert.equal(B(m.shadow_nonpresent_or_rsvd_lower_gfn_mask), genmask(47, 12));
});

test('NPT masks with MAXPHYADDR 52: no reserved PA bit, MMIO caching off', () => {
  const m = nptMasks({ maxphyaddr: 52 });
  checkNptCommon(m);
  assert.equal(B(m.shadow_mmio_value), 0n);
  assert.equal(B(m.shadow_mmio_mask), 0n);
  assert.equal(m.enable_mmio_caching, false);
});

test('NPT masks with SME (C-bit 47, 5 PA bits stolen): me mask, base-address mask, MMIO mask', () => {
  const m = nptMasks({ maxphyaddr: 48, mem_encrypt: { c_bit: 47, phys_bits_reduction: 5, sme_active: true } });
  checkNptCommon(m);
  assert.equal(m.x86_phys_bits, 43);
  assert.equal(B(m.shadow_me_value), bit(47));
  assert.equal(B(m.shadow_me_mask), bit(47));
  assert.equal(B(m.spte_base_addr_mask), genmask(51, 12) & ~bit(47));
  // svm_adjust_mmio_mask: reserved bits from x86_phys_bits (43) to 51, plus P.
  assert.equal(B(m.shadow_mmio_value), genmask(51, 43) | 1n);
  assert.equal(B(m.shadow_mmio_mask), genmask(51, 43) | 1n);
  assert.equal(m.shadow_mmio_access_mask, ACC_WRITE_MASK | ACC_USER_MASK);
});

test('svm_adjust_mmio_mask skips the C-bit when it sits at x86_phys_bits', () => {
  const m = nptMasks({ maxphyaddr: 48, mem_encrypt: { c_bit: 47, phys_bits_reduction: 1, sme_active: false } });
  assert.equal(m.x86_phys_bits, 47);
  assert.equal(B(m.shadow_me_mask), 0n, 'host SME off: no me mask');
  assert.equal(B(m.shadow_mmio_value), genmask(51, 48) | 1n);
});

test('L1TF: nonpresent_or_rsvd mask covers the top 5 cache-address bits', () => {
  const m = eptMasks({ maxphyaddr: 46, l1tf_cache_bits: 46 }, true, false);
  assert.equal(B(m.shadow_nonpresent_or_rsvd_mask), genmask(45, 41));
  assert.equal(B(m.shadow_nonpresent_or_rsvd_lower_gfn_mask), genmask(40, 12));
});

test('EPT masks on an MKTME/TDX host: KeyID bits go in shadow_me_mask, value stays 0', () => {
  const m = eptMasks({ maxphyaddr: 52, keyid_bits: 6 }, true, false);
  assert.equal(m.x86_phys_bits, 46);
  assert.equal(B(m.shadow_me_mask), genmask(51, 46));
  assert.equal(B(m.shadow_me_value), 0n);
  assert.equal(B(m.shadow_nonpresent_or_rsvd_lower_gfn_mask), genmask(45, 12));
});

// ------------------------------------------------------------------ make_spte

test('make_spte EPT 4K leaf, ACC_ALL, WB+IPAT: every bit per spte.c', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const a = newMakeSpteArgs();
  a.pfn = 0x3f00a2;
  a.gfn = 0x1a2;
  a.get_mt_mask = (_gfn, is_mmio) => vmx_get_mt_mask(is_mmio, true);
  const o = out();
  assert.equal(make_spte(m, a, o), false);
  // MMU-present 11, R 0, X 2, W 1, memtype WB (6<<3), IPAT 6, A 8, D 9, host-/MMU-writable 57/58, SVE 63.
  const expect =
    bit(11) | bit(0) | bit(2) | bit(1) | (6n << 3n) | bit(6) | bit(8) | bit(9) | bit(57) | bit(58) | bit(63) | (0x3f00a2n << 12n);
  assert.equal(B(o), expect);
  assert.equal(B(o) & 0xfffn, 0xb77n);
  assert.equal(kvm_mmu_set_spte_flags(m, o.lo, o.hi), 'rwxu');
  assert.equal(spte_to_pfn(m, o.lo, o.hi), 0x3f00a2);
});

test('make_spte NPT 2M leaf with the NX huge page mitigation drops exec', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const a = newMakeSpteArgs();
  a.level = 2;
  a.pfn = 0x200;
  a.nx_huge_page_enabled = true;
  const o = out();
  make_spte(m, a, o);
  const expect = bit(11) | bit(0) | bit(5) | bit(63) | bit(2) | bit(7) | bit(9) | bit(1) | bit(10) | bit(6) | (0x200n << 12n);
  assert.equal(B(o), expect);
  assert.equal(is_executable_pte(m, o.lo, o.hi), false);
  assert.equal(is_large_pte(o.lo, o.hi), true);
  assert.equal(kvm_mmu_set_spte_flags(m, o.lo, o.hi), 'rw-u');
});

test('make_spte: read-only host mapping strips write, host-writable and MMU-writable', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const a = newMakeSpteArgs();
  a.pfn = 5;
  a.host_writable = false;
  a.pte_access = ACC_WRITE_MASK | ACC_EXEC_MASK;
  const o = out();
  make_spte(m, a, o);
  assert.equal(B(o), bit(11) | bit(0) | bit(5) | (5n << 12n));
  assert.equal(kvm_mmu_set_spte_flags(m, o.lo, o.hi), 'r-x-');
});

test('make_spte: failed unsync returns wrprot and leaves the SPTE read-only (not MMU-writable)', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const a = newMakeSpteArgs();
  a.pfn = 9;
  let calls = 0;
  a.mmu_try_to_unsync_pages = () => {
    calls++;
    return -1;
  };
  const o = out();
  assert.equal(make_spte(m, a, o), true);
  assert.equal(calls, 1);
  assert.equal(is_writable_pte(o.lo, o.hi), false);
  assert.equal(is_mmu_writable_spte(m, o.lo, o.hi), false);
  assert.equal(B(o) & bit(57), bit(57), 'host-writable stays');
  // An old writable leaf skips the unsync attempt.
  const w = out();
  a.old_lo = 0xb77;
  a.old_hi = 0;
  assert.equal(make_spte(m, a, w), false);
  assert.equal(calls, 1);
  assert.equal(is_writable_pte(w.lo, w.hi), true);
});

test('make_spte: prefetch without sync is marked for access tracking', () => {
  const m = eptMasks({ maxphyaddr: 46 }, false, false);
  const a = newMakeSpteArgs();
  a.pfn = 0x10;
  a.prefetch = true;
  a.ad_disabled = true;
  const o = out();
  make_spte(m, a, o);
  // AD_DISABLED at 52; RWX cleared, R and X saved at 54 and 56; A never set (prefetch).
  const expect = bit(11) | bit(52) | bit(63) | bit(57) | bit(58) | bit(9) | bit(54) | bit(56) | (0x10n << 12n);
  assert.equal(B(o), expect);
  assert.equal(is_access_track_spte(m, o.lo, o.hi), true);
  assert.equal(spte_ad_enabled(o.lo, o.hi), false);
  const r = out();
  restore_acc_track_spte(m, o.lo, o.hi, r);
  assert.equal(B(r), (expect & ~(bit(54) | bit(56))) | bit(0) | bit(2));
});

test('make_spte: dirty logging marks the page dirty when W ends up set', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const a = newMakeSpteArgs();
  const dirty: number[] = [];
  a.gfn = 77;
  a.slot_dirty_track_enabled = true;
  a.mark_page_dirty_in_slot = (_s, g) => dirty.push(g);
  make_spte(m, a, out());
  a.pte_access = ACC_EXEC_MASK | ACC_USER_MASK;
  make_spte(m, a, out());
  assert.deepEqual(dirty, [77]);
});

test('make_spte: SME C-bit is added for RAM but not for host MMIO', () => {
  const m = nptMasks({ maxphyaddr: 48, mem_encrypt: { c_bit: 47, phys_bits_reduction: 5, sme_active: true } });
  const a = newMakeSpteArgs();
  a.pfn = 0x1234;
  const o = out();
  make_spte(m, a, o);
  assert.equal(B(o) & bit(47), bit(47));
  assert.equal(spte_to_pfn(m, o.lo, o.hi), 0x1234, 'C-bit is not part of the pfn');
  a.is_host_mmio = true;
  make_spte(m, a, o);
  assert.equal(B(o) & bit(47), 0n);
});

// ------------------------------------------------------------------ other constructors

test('make_nonleaf_spte EPT with A/D and without', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const o = out();
  make_nonleaf_spte(m, 0x1234_5000, 0x1, false, o);
  assert.equal(B(o), 0x1_1234_5000n | bit(11) | bit(0) | bit(1) | bit(2) | bit(8) | bit(63));
  make_nonleaf_spte(m, 0x1234_5000, 0, true, o);
  assert.equal(B(o), 0x1234_5000n | bit(11) | bit(0) | bit(1) | bit(2) | bit(52) | bit(63));
  assert.equal(classifySpte(m, o.lo, o.hi, 3), 'nonleaf');
  assert.equal(kvm_mmu_set_spte_flags(m, o.lo, o.hi), 'rwxu');
});

test('make_nonleaf_spte NPT: P|RW|US|A, no NX', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const o = out();
  make_nonleaf_spte(m, 0x7000, 0, false, o);
  assert.equal(B(o), 0x7000n | bit(11) | 0x27n);
});

test('make_mmio_spte EPT: generation split 10:3 / 62:52, misconfig value, gfn', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const o = out();
  make_mmio_spte(m, 0xfee00, ACC_ALL, 0x7ffff, o);
  assert.equal(B(o), genmask(10, 3) | genmask(62, 52) | 0b110n | (0xfee00n << 12n));
  assert.equal(is_mmio_spte(m, o.lo, o.hi), true);
  assert.equal(is_shadow_present_pte(o.lo, o.hi), false);
  assert.equal(get_mmio_spte_generation(o.lo, o.hi), 0x7ffff);
  assert.equal(get_mmio_spte_gfn(m, o.lo, o.hi), 0xfee00);
  assert.equal(classifySpte(m, o.lo, o.hi, 1), 'mmio');
  make_mmio_spte(m, 1, 0, 0x12345, o);
  assert.equal(B(o), ((0x12345n & 0xffn) << 3n) | ((0x12345n >> 8n) << 52n) | 0b110n | (1n << 12n));
});

test('make_mmio_spte NPT keeps W|U access and the reserved bit', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const o = out();
  make_mmio_spte(m, 0xabc, ACC_ALL, 3, o);
  assert.equal(B(o), bit(51) | 1n | 0b110n | (3n << 3n) | (0xabcn << 12n));
  assert.equal(get_mmio_spte_access(m, o.lo, o.hi), ACC_WRITE_MASK | ACC_USER_MASK);
  assert.equal(is_mmio_spte(m, o.lo, o.hi), true);
});

test('make_mmio_spte with L1TF relocates high gfn bits 5 up and sets the rsvd mask', () => {
  const m = eptMasks({ maxphyaddr: 46, l1tf_cache_bits: 46 }, true, false);
  const gfn = 0x3_0000_0001; // gpa bits 45 and 44 set (inside bits 45:41)
  const o = out();
  make_mmio_spte(m, gfn, 0, 0, o);
  const gpa = BigInt(gfn) << 12n;
  const rsvd = genmask(45, 41);
  assert.equal(B(o), 0b110n | gpa | rsvd | ((gpa & rsvd) << 5n));
  assert.equal(get_mmio_spte_gfn(m, o.lo, o.hi), gfn);
});

test('frozen SPTEs: current FROZEN_SPTE and the pre-6.11 REMOVED_SPTE', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const [flo, fhi] = halves(bit(63) | 0x5a0n);
  assert.equal(is_frozen_spte(flo, fhi), true);
  assert.equal(is_shadow_present_pte(flo, fhi), false);
  assert.equal(is_mmio_spte(m, flo, fhi), false);
  assert.equal(classifySpte(m, flo, fhi, 1), 'frozen');
  assert.equal(is_frozen_spte(0x5a0, 0), false);
  assert.equal(isLegacyRemovedSpte(0x5a0, 0), true);
  assert.equal(classifySpte(m, 0x5a0, 0, 1), 'frozen');
  assert.equal(classifySpte(m, 0, 0x8000_0000, 1), 'nonpresent');
});

test('make_small_spte / make_huge_spte: split a 2M leaf and collapse it back', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const a = newMakeSpteArgs();
  a.level = 2;
  a.pfn = 0x40000; // 2M aligned
  const huge = out();
  make_spte(m, a, huge);
  const childRole = 0x3781; // level 1, direct, ACC_ALL, nx, wp
  const child = out();
  for (const i of [0, 1, 37, 511]) {
    make_small_spte(m, false, huge.lo, huge.hi, childRole, i, child);
    assert.equal(spte_to_pfn(m, child.lo, child.hi), 0x40000 + i);
    assert.equal(is_large_pte(child.lo, child.hi), false);
    assert.equal(B(child), (B(huge) & ~bit(7)) | (BigInt(i) << 12n));
    const back = out();
    make_huge_spte(m, false, child.lo, child.hi, 2, back);
    assert.equal(B(back), B(huge));
  }
});

test('make_small_spte under NX mitigation re-enables exec at 4K; make_huge_spte removes it', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const a = newMakeSpteArgs();
  a.level = 2;
  a.pfn = 0x200;
  a.nx_huge_page_enabled = true;
  const huge = out();
  make_spte(m, a, huge);
  assert.equal(is_executable_pte(m, huge.lo, huge.hi), false);
  const child = out();
  make_small_spte(m, true, huge.lo, huge.hi, 0x3781, 3, child);
  assert.equal(is_executable_pte(m, child.lo, child.hi), true);
  assert.equal(B(child), (B(huge) & ~bit(7) & ~bit(63)) | (3n << 12n));
  const back = out();
  make_huge_spte(m, true, child.lo, child.hi, 2, back);
  assert.equal(B(back), B(huge));
  // 1G split into 2M children: offset i * 2M, PS kept.
  make_small_spte(m, true, 0, 0, 0x3782, 5, child);
  assert.equal(B(child), 5n << 21n);
});

// ------------------------------------------------------------------ predicates

test('is_access_allowed: exec, write, read', () => {
  const m = nptMasks({ maxphyaddr: 48 });
  const [lo, hi] = halves(bit(11) | 1n | bit(63)); // present, read-only, NX
  assert.equal(is_access_allowed(m, { exec: false, write: false }, lo, hi), true);
  assert.equal(is_access_allowed(m, { exec: false, write: true }, lo, hi), false);
  assert.equal(is_access_allowed(m, { exec: true, write: false }, lo, hi), false);
});

test('spte_needs_atomic_update per ref 3.3', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const t = (v: bigint) => spte_needs_atomic_update(m, ...halves(v));
  assert.equal(t(bit(11) | bit(58)), true, '!W && MMU-writable');
  assert.equal(t(bit(11) | bit(52) | 7n), true, 'A/D disabled');
  assert.equal(t(bit(11) | 2n | bit(58) | bit(57)), true, 'W && !D');
  assert.equal(t(bit(11) | 2n | bit(58) | bit(57) | bit(9)), false, 'W && D');
  assert.equal(t(bit(11) | 1n | bit(8)), false, 'A alone does not count');
});

test('is_last_spte: level 1 always, else PS', () => {
  assert.equal(is_last_spte(0, 0, 1), true);
  assert.equal(is_last_spte(0x80, 0, 2), true);
  assert.equal(is_last_spte(0, 0, 3), false);
});

// ------------------------------------------------------------------ properties

const masksArb = fc.oneof(
  fc.record({ ad: fc.boolean(), xo: fc.boolean() }).map(({ ad, xo }) => ({ m: eptMasks({ maxphyaddr: 46 }, ad, xo), ept: true })),
  fc.boolean().map((sme) =>
    ({ m: nptMasks(sme ? { maxphyaddr: 48, mem_encrypt: { c_bit: 47, phys_bits_reduction: 5, sme_active: true } } : { maxphyaddr: 48 }), ept: false }),
  ),
);

test('property: make_spte agrees with spte_to_pfn / is_last_spte / is_writable_pte / is_executable_pte', () => {
  fc.assert(
    fc.property(
      masksArb,
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 0, max: 2 ** 35 - 1 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      ({ m, ept }, level, access, pfnRaw, prefetch, hostWritable, nx, adDisabledWish) => {
        const ad_disabled = ept && !m.kvm_ad_enabled ? true : ept && adDisabledWish;
        const a = newMakeSpteArgs();
        a.level = level;
        a.pte_access = access;
        a.pfn = level === 1 ? pfnRaw : pfnRaw - (pfnRaw % 2 ** (9 * (level - 1)));
        a.prefetch = prefetch;
        a.host_writable = hostWritable;
        a.nx_huge_page_enabled = nx;
        a.ad_disabled = ad_disabled;
        const o = out();
        const wrprot = make_spte(m, a, o);
        assert.equal(wrprot, false);
        assert.equal(is_shadow_present_pte(o.lo, o.hi), true);
        assert.equal(spte_to_pfn(m, o.lo, o.hi), a.pfn);
        assert.equal(is_last_spte(o.lo, o.hi, level), true);
        assert.equal(is_large_pte(o.lo, o.hi), level > 1);
        // Access tracking (prefetch, no A/D) strips every permission bit.
        const tracked = prefetch && ad_disabled;
        const wantW = (access & ACC_WRITE_MASK) !== 0 && hostWritable && !tracked;
        assert.equal(is_writable_pte(o.lo, o.hi), wantW);
        assert.equal(is_mmu_writable_spte(m, o.lo, o.hi), (access & ACC_WRITE_MASK) !== 0 && hostWritable);
        const wantX = (access & ACC_EXEC_MASK) !== 0 && !(nx && level > 1) && !tracked;
        assert.equal(is_executable_pte(m, o.lo, o.hi), wantX);
        assert.equal(is_accessed_spte(m, o.lo, o.hi), !prefetch);
        assert.equal(classifySpte(m, o.lo, o.hi, level), 'leaf');
      },
    ),
  );
});

test('property: mark_spte_for_access_track then restore_acc_track_spte gives back R/X (not W, not A)', () => {
  const m = eptMasks({ maxphyaddr: 46 }, false, false);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2 ** 30 }), fc.boolean(), (access, pfn, hw) => {
      const a = newMakeSpteArgs();
      a.pte_access = access;
      a.pfn = pfn;
      a.ad_disabled = true;
      a.host_writable = hw;
      const s = out();
      make_spte(m, a, s);
      if (is_access_track_spte(m, s.lo, s.hi)) return; // no R/W/X at all: nothing to track
      const t = out();
      mark_spte_for_access_track(m, s.lo, s.hi, t);
      assert.equal(is_access_track_spte(m, t.lo, t.hi), true);
      assert.equal(is_accessed_spte(m, t.lo, t.hi), false);
      assert.equal(spte_to_pfn(m, t.lo, t.hi), pfn);
      const r = out();
      restore_acc_track_spte(m, t.lo, t.hi, r);
      assert.equal(B(r), B(s) & ~(bit(1) | bit(8)));
    }),
  );
});

test('property: with A/D enabled, access tracking only clears Accessed', () => {
  fc.assert(
    fc.property(masksArb, fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2 ** 30 }), ({ m }, access, pfn) => {
      if (!m.kvm_ad_enabled) return;
      const a = newMakeSpteArgs();
      a.pte_access = access;
      a.pfn = pfn;
      const s = out();
      make_spte(m, a, s);
      const t = out();
      mark_spte_for_access_track(m, s.lo, s.hi, t);
      assert.equal(B(t), B(s) & ~B(m.shadow_accessed_mask));
    }),
  );
});

test('property: MMIO SPTE round trip (gfn, generation, access)', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.integer({ min: 0, max: 2 ** 30 - 1 }),
      fc.integer({ min: 0, max: 0x7ffff }),
      fc.integer({ min: 0, max: 7 }),
      (ept, gfn, gen, access) => {
        const m = ept ? eptMasks({ maxphyaddr: 46, l1tf_cache_bits: 46 }) : nptMasks({ maxphyaddr: 46 });
        const o = out();
        make_mmio_spte(m, gfn, access, gen, o);
        assert.equal(is_mmio_spte(m, o.lo, o.hi), true);
        assert.equal(is_shadow_present_pte(o.lo, o.hi), false);
        assert.equal(is_frozen_spte(o.lo, o.hi), false);
        assert.equal(get_mmio_spte_gfn(m, o.lo, o.hi), gfn);
        assert.equal(get_mmio_spte_generation(o.lo, o.hi), gen);
        assert.equal(get_mmio_spte_access(m, o.lo, o.hi), ept ? 0 : access & (ACC_WRITE_MASK | ACC_USER_MASK));
      },
    ),
  );
});

test('writable invariants (ref 3.3 H/M/W table) and TLB-flush rule', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  const ok = (v: bigint) => check_spte_writable_invariants(m, ...halves(v));
  const P = bit(11) | 1n;
  assert.equal(ok(P | bit(57) | bit(58) | 2n), true, 'H M W');
  assert.equal(ok(P | bit(57) | bit(58)), true, 'H M -');
  assert.equal(ok(P | bit(57)), true, 'H - -');
  assert.equal(ok(P), true, '- - -');
  assert.equal(ok(P | bit(58)), false, 'M without H');
  assert.equal(ok(P | bit(57) | 2n), false, 'W without M');
  const flush = (o: bigint, n: bigint) => leaf_spte_change_needs_tlb_flush(m, ...halves(o), ...halves(n));
  assert.equal(flush(P | bit(57) | bit(58), P | bit(57)), true, 'clearing MMU-writable flushes');
  assert.equal(flush(P | bit(57) | bit(58) | 2n, P | bit(57) | bit(58)), false, 'clearing W alone (dirty logging) does not');
});

test('is_dirty_spte: D with A/D, W without; is_ept_ve_possible', () => {
  const m = eptMasks({ maxphyaddr: 46 });
  assert.equal(is_dirty_spte(m, ...halves(bit(11) | bit(9))), true);
  assert.equal(is_dirty_spte(m, ...halves(bit(11) | 2n)), false);
  assert.equal(is_dirty_spte(m, ...halves(bit(11) | bit(52) | 2n)), true, 'A/D disabled: W stands for dirty');
  // SVE is in the present mask; #VE needs SVE clear and RWX other than the misconfig value.
  assert.equal(is_ept_ve_possible(m, 0, 0), true);
  assert.equal(is_ept_ve_possible(m, 0, 0x8000_0000), false);
  assert.equal(is_ept_ve_possible(m, 6, 0), false);
  assert.equal(is_ept_ve_possible(nptMasks({ maxphyaddr: 48 }), 0, 0), false);
});
