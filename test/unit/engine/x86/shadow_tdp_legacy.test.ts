/**
 * TDP with tdp_mmu=0 (mmu.c): roots from mmu_alloc_direct_roots are direct shadow pages with the TDP
 * root role, a GPA fault goes kvm_tdp_page_fault → direct_page_fault → direct_map (never
 * kvm_tdp_mmu_map), and the shadow MMU's fast_page_fault and MMIO SPTE lookup walk those roots.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm } from '../../../../src/engine/x86/shadow_vm';
import { decodeRole } from '../../../../src/engine/x86/role';
import { gfn_rmap_count } from '../../../../src/engine/x86/shadow_mmu';
import { RET_PF_EMULATE, RET_PF_FIXED } from '../../../../src/engine/x86/ret_pf';
import { probes } from '../../../../src/engine/probes';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';

const PF_P = 1, PF_W = 2, PF_RSVD = 8;

function vm(opts: { vendor?: 'vmx' | 'svm'; ept_ad?: boolean; backing?: '4k' | '2m-thp'; mem?: number } = {}): ShadowVm {
  return new ShadowVm({
    tdp: true, vendor: opts.vendor ?? 'vmx', mem_bytes: opts.mem ?? 64 << 20, host_backing: opts.backing ?? '4k',
    kvm: { vendor_config: { ept_ad: opts.ept_ad ?? true } },
  });
}

function capture(): { events: TraceEvent[]; stop: () => void } {
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  return { events, stop };
}

function functionsHit(fn: () => void): string[] {
  const names: string[] = [];
  probes.listen((name) => names.push(name));
  try {
    fn();
  } finally {
    probes.listen(undefined);
  }
  return names;
}

test('tdp_mmu=0: the root is a direct shadow page with the TDP root role, and the TDP MMU holds no roots', () => {
  const v = vm();
  assert.equal(v.reload(), 0);
  const r = v.roots();
  assert.equal(r.kind, 'sp');
  const d = r.root!.decoded;
  assert.equal(d.direct, true);
  assert.equal(d.level, 4);
  assert.equal(d.ad_disabled, false, 'EPT A/D on');
  assert.equal(r.root_role, v.vcpu.mmu.root_role);
  assert.equal(v.kvm.arch.tdp_mmu_roots.length, 0);
  const noad = vm({ ept_ad: false });
  noad.reload();
  assert.equal(noad.roots().root!.decoded.ad_disabled, true, 'EPT without A/D bits: role.ad_disabled');
});

test('tdp_mmu=0: a GPA fault goes kvm_tdp_page_fault → direct_page_fault → direct_map and links direct shadow pages', () => {
  const v = vm();
  v.reload();
  let r = 0;
  const hit = functionsHit(() => {
    r = v.fault(0x20_3000, PF_W);
  });
  assert.equal(r, RET_PF_FIXED);
  const order = ['kvm_tdp_page_fault', 'direct_page_fault', 'direct_map', 'link_shadow_page', 'mmu_set_spte'].map((n) => hit.indexOf(n));
  assert.ok(order.every((i) => i >= 0), `probes hit: ${[...new Set(hit)].join(' ')}`);
  assert.deepEqual([...order].sort((a, b) => a - b), order, 'in call order');
  assert.equal(hit.includes('kvm_tdp_mmu_map'), false);
  assert.equal(hit.includes('kvm_tdp_mmu_page_fault'), false);
  // Direct pages below the root: levels 3, 2, 1, each at the base gfn of the range it maps.
  const path = v.sptes(0x20_3000);
  assert.deepEqual(path.map((p) => p.level), [4, 3, 2, 1]);
  const l1 = path[3]!.sp!;
  assert.equal(decodeRole(l1.role).direct, true);
  assert.equal(l1.gfn, 0x200, 'gfn of a direct SP = first gfn it maps');
  assert.equal(v.gvaToGpa(0x20_3000), 0x20_3000);
  // The leaf is an EPT entry: RWX, memory type WB (6 << 3) with IPAT (bit 6).
  const leaf = path[3]!;
  assert.equal(leaf.lo & 7, 7);
  assert.equal(leaf.lo & 0x78, (6 << 3) | 0x40);
  assert.equal(gfn_rmap_count(v.sk, v.slot, 0x203, 1), 1);
});

test('tdp_mmu=0: direct_pte_prefetch maps the other not-present entries of the 8-entry group', () => {
  const v = vm();
  v.reload();
  v.fault(0x5000, 0);
  for (let g = 0; g < 8; g++) assert.notEqual(v.translate(g * 4096), null, `gfn ${g}`);
  assert.equal(v.translate(8 * 4096), null);
  assert.equal(v.stats().pf_taken, 1);
});

test('tdp_mmu=0: a 2M host page is mapped by a level-2 leaf in the direct level-2 shadow page', () => {
  const v = vm({ backing: '2m-thp' });
  v.reload();
  v.fault(0x40_1000, 0);
  const path = v.sptes(0x40_1000);
  assert.equal(path.length, 3);
  assert.equal(path[2]!.level, 2);
  assert.equal(path[2]!.lo & 0x80, 0x80);
});

test('shadow fast_page_fault: a write to a 4K SPTE write-protected for dirty logging is fixed without mmu_lock', () => {
  const v = vm();
  v.reload();
  v.fault(0x3000, PF_W);
  v.setDirtyLogging(true);
  const leaf = () => v.translate(0x3000)!;
  assert.equal(leaf().lo & 2, 0, 'write-protected, still MMU-writable');
  const { events, stop } = capture();
  let r = 0;
  try {
    r = v.fault(0x3000, PF_P | PF_W);
  } finally {
    stop();
  }
  assert.equal(r, RET_PF_FIXED);
  assert.equal(leaf().lo & 2, 2);
  assert.equal(v.stats().pf_fast, 1);
  const ev = events.find((e) => e.name === 'fast_page_fault')!;
  assert.ok(ev, 'fast_page_fault tracepoint');
  assert.match(ev.text, /^vcpu 0 gva 3000 error_code P\|W .* spurious 0 fixed 1$/);
  assert.equal(events.some((e) => e.name === 'kvm_mmu_set_spte'), false, 'the slow path did not run');
  // fast_pf_fix_direct_spte logged the page dirty.
  const bm = v.slot.dirty_bitmap!;
  assert.notEqual(bm[0]! & (1 << 3), 0);
});

test('shadow fast_page_fault: a huge SPTE is not made writable while the slot is dirty-logged (slow path maps 4K)', () => {
  const v = vm({ backing: '2m-thp' });
  v.kvm.params.eager_page_split = false;
  v.reload();
  v.fault(0x40_0000, PF_W);
  assert.equal(v.sptes(0x40_0000).pop()!.level, 2);
  v.setDirtyLogging(true);
  v.fault(0x40_0000, PF_P | PF_W);
  assert.equal(v.stats().pf_fast ?? 0, 0);
  assert.equal(v.sptes(0x40_0000).pop()!.level, 1, 'remapped at 4K by direct_map');
});

test('shadow fast_page_fault: an SPTE aged into access tracking (EPT without A/D) is restored on the next read', () => {
  const v = vm({ ept_ad: false });
  v.reload();
  v.fault(0x2000, PF_W);
  assert.equal(v.translate(0x1000), null, 'no prefetch without A/D bits (direct_pte_prefetch)');
  assert.equal(v.testAgeGfnRange(2, 3), true);
  assert.equal(v.ageGfnRange(2, 3), true);
  const aged = v.translate(0x2000)!;
  assert.equal(aged.lo & 7, 0, 'R/W/X saved away');
  assert.equal(v.testAgeGfnRange(2, 3), false, 'old now');
  assert.equal(v.hwAccess(0x2000, false, false, false), 0, 'the CPU faults: not present');
  assert.equal(v.fault(0x2000, 0), RET_PF_FIXED);
  assert.equal(v.translate(0x2000)!.lo & 7, 5, 'restore_acc_track_spte put R/X back; W is not saved');
  assert.equal(v.stats().pf_fast, 1);
  assert.equal(v.fault(0x2000, PF_P | PF_W), RET_PF_FIXED, 'MMU-writable: the fast path sets W');
  assert.equal(v.translate(0x2000)!.lo & 7, 7);
  assert.equal(v.stats().pf_fast, 2);
  // With A/D bits, aging just clears Accessed, which the CPU sets again: no fault at all.
  const ad = vm();
  ad.reload();
  ad.fault(0x2000, PF_W);
  assert.equal(ad.ageGfnRange(2, 3), true);
  assert.equal(ad.translate(0x2000)!.lo & 0x100, 0, 'EPT A bit (8) clear');
  assert.equal(ad.hwAccess(0x2000, false, false, false), -1);
});

test('MMIO SPTE lookup on a direct shadow root: the RSVD fault is emulated from the SPTE, then from the gpa cache', () => {
  const v = vm({ mem: 16 << 20 });
  v.reload();
  const gpa = 0xfee0_0000;
  assert.equal(v.fault(gpa, 0), RET_PF_EMULATE, 'no memslot: mark_mmio_spte');
  // A second MMIO gpa takes over vcpu->arch.mmio_gfn, so the next RSVD fault at `gpa` must walk.
  assert.equal(v.fault(gpa + 0x1000, 0), RET_PF_EMULATE);
  const { events, stop } = capture();
  try {
    v.fault(gpa, PF_RSVD | PF_P);
    v.fault(gpa, PF_RSVD | PF_P);
  } finally {
    stop();
  }
  assert.equal(events.filter((e) => e.name === 'handle_mmio_page_fault').length, 1, 'second time from vcpu->arch.mmio_gfn');
  assert.equal(v.vcpu.last_outcome.startsWith('emulate'), true);
  assert.equal(v.vcpu.mmio_gfn, gpa / 4096);
  assert.equal(v.stats().pf_taken, 2, 'RSVD faults never reach kvm_mmu_do_page_fault');
});

test('MMIO SPTE lookup under shadow paging: found by the shadow walk, then cached by page-aligned GVA', async () => {
  const { GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } = await import('../../../../src/engine/x86/shadow_vm');
  const s = new ShadowVm({ mem_bytes: 64 << 20, cr0: 0x8001_0011, cr4: 0x20, efer: 0x500 });
  const b = new GuestPageTableBuilder(s.mem, 4, 0x10_0000);
  b.map(0x3000, 0xfee0_0000, GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D);
  b.map(0x80_0000, 0xfee0_1000, GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D);
  s.setRegs(s.cr0, s.cr4, s.efer, b.cr3);
  assert.equal(s.fault(0x3000, 0), RET_PF_EMULATE);
  assert.equal(s.fault(0x80_0000, 0), RET_PF_EMULATE, 'takes over vcpu->arch.mmio_gva');
  const { events, stop } = capture();
  try {
    s.fault(0x3010, PF_RSVD | PF_P);
    s.fault(0x3020, PF_RSVD | PF_P);
  } finally {
    stop();
  }
  const ev = events.filter((e) => e.name === 'handle_mmio_page_fault');
  assert.equal(ev.length, 1);
  assert.match(ev[0]!.text, /^addr:3010 gfn fee00 access 6$/, "ACC_WRITE | ACC_USER: the legacy MMIO access mask");
  assert.equal(s.vcpu.mmio_gva, 0x3000);
  assert.equal(s.stats().pf_taken, 2);
});
