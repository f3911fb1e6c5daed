import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '../../../../src/engine/x86/vm';
import { probes } from '../../../../src/engine/probes';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';
import { formatTracepoint } from '../../../../src/engine/tracepoints/index';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, kvm_vm_set_mem_attributes } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_file, kvm_gmem_get_pfn } from '../../../../src/engine/kvm/guest_memfd';
import {
  PSMASH_FAIL_INPUT, PSMASH_FAIL_PERMISSION, PVALIDATE_FAIL_INPUT, PVALIDATE_FAIL_SIZEMISMATCH, RMPUPDATE_FAIL_OVERLAP, RMP_PG_SIZE_2M,
  RMP_PG_SIZE_4K, SnpRmpTable, adjust_direct_map, decode_rmpentry_raw, psmash, pvalidate, rmp_make_private, rmp_make_shared,
  rmpupdate_insn, sev_gmem_invalidate, sev_gmem_max_mapping_level, sev_gmem_prepare, sev_handle_rmp_fault, sev_snp_init,
  snp_host_write_faults, snp_lookup_rmpentry, snp_rmp_check_guest_access, vmm_handle_map_gpa_range,
  KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED,
  snp_rmp_view, RMPENTRY_RAW_FIELDS, snp_check_guest_access, snp_guest_pvalidate, type RmpLookup,
} from '../../../../src/engine/x86/sev_snp';
import { decodeFields } from '../../../../src/engine/bits/fields';
import { pk, recordingMmu, vmWithGmemSlot } from '../kvm/private_helpers';

const H = 0x40_0000; // a 2M-aligned host pfn
const ASID = 5;
const lk = (): RmpLookup => ({ assigned: false, level: 0 });
const bits = (lo: number, hi: number) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

test('rmp_make_private 4K writes assigned/gpa/asid; the raw qword follows the rmpentry_raw layout', () => {
  const rmp = new SnpRmpTable();
  assert.equal(rmp_make_private(rmp, H + 3, 0x1_2345_6000, 1, ASID, false), 0);
  const e = rmp.entry(H + 3);
  assert.deepEqual(e, { assigned: true, pagesize: 0, immutable: false, gpa: 0x1_2345_6000, asid: ASID, validated: false, vmsa: false });
  const raw = rmp.raw(H + 3);
  // bit 0 assigned, bits 12-50 gpa >> 12, bits 51-60 asid.
  assert.equal(bits(raw.lo, raw.hi), 1n | (0x123456n << 12n) | (5n << 51n));
  assert.deepEqual(decode_rmpentry_raw(raw.lo, raw.hi), e);
  const l = lk();
  assert.equal(snp_lookup_rmpentry(rmp, H + 3, l), 0);
  assert.deepEqual(l, { assigned: true, level: 1 });
  assert.equal(snp_lookup_rmpentry(rmp, H + 4, l), 0);
  assert.deepEqual(l, { assigned: false, level: 1 });
});

test('2M entries: alignment, every pfn of the region reads assigned at level 2M', () => {
  const rmp = new SnpRmpTable();
  assert.equal(rmp_make_private(rmp, H + 1, 0x20_0000, 2, ASID, false), -14);
  assert.equal(rmp.is_assigned(H + 1), false);
  assert.equal(rmp_make_private(rmp, H, 0x20_0000, 2, ASID, false), 0);
  const l = lk();
  snp_lookup_rmpentry(rmp, H + 0x1ff, l);
  assert.deepEqual(l, { assigned: true, level: 2 });
  assert.equal(rmp.entry(H + 0x1ff).gpa, 0x20_0000 + 0x1ff * 4096);
  assert.equal(rmp.census().assigned_2m, 1);
  assert.equal(rmp.census().assigned_4k, 0);
});

test('RMPUPDATE overlap: 2M over an assigned 4K entry, 4K inside an assigned 2M page', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H + 7, 0x7000, 1, ASID, false);
  assert.equal(rmpupdate_insn(rmp, H, { gpa: 0, assigned: true, pagesize: RMP_PG_SIZE_2M, immutable: false, asid: ASID }), RMPUPDATE_FAIL_OVERLAP);
  assert.equal(rmp_make_private(rmp, H, 0, 2, ASID, false), -14);
  assert.equal(rmp.entry(H + 7).pagesize, 0);
  const r2 = new SnpRmpTable();
  rmp_make_private(r2, H, 0, 2, ASID, false);
  assert.equal(rmpupdate_insn(r2, H + 9, { gpa: 0x9000, assigned: true, pagesize: RMP_PG_SIZE_4K, immutable: false, asid: ASID }), RMPUPDATE_FAIL_OVERLAP);
  // Making one 4K page of a 2M page shared overlaps too: that is why invalidation PSMASHes first.
  assert.equal(rmp_make_shared(r2, H + 9, 1), -14);
  assert.equal(r2.is_assigned(H + 9), true);
});

test('PSMASH splits a 2M entry into 512 4K entries and keeps Validated; failure codes', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H, 0x4000_0000, 2, ASID, false);
  const pv = pvalidate(rmp, ASID, 0x4000_0000, H, 2, RMP_PG_SIZE_2M, true);
  assert.equal(pv.rc, 0);
  assert.equal(psmash(rmp, H + 1), PSMASH_FAIL_INPUT);
  assert.equal(psmash(rmp, H), 0);
  for (const k of [0, 1, 300, 511]) {
    assert.deepEqual(rmp.entry(H + k), { assigned: true, pagesize: 0, immutable: false, gpa: 0x4000_0000 + k * 4096, asid: ASID, validated: true, vmsa: false });
  }
  assert.equal(rmp.census().assigned_4k, 512);
  // Already 4K: nothing to smash.
  assert.equal(psmash(rmp, H), PSMASH_FAIL_INPUT);
  // A 2M region returned to the hypervisor keeps its size bit but is not an assigned 2M page.
  const freed = new SnpRmpTable();
  rmp_make_private(freed, H, 0x4000_0000, 2, ASID, false);
  assert.equal(rmp_make_shared(freed, H, 2), 0);
  assert.equal(freed.entry(H).pagesize, 1);
  assert.equal(psmash(freed, H), PSMASH_FAIL_INPUT);
  assert.equal(freed.stats.psmash, 0);
  const imm = new SnpRmpTable();
  rmp_make_private(imm, H, 0, 2, ASID, true);
  assert.equal(psmash(imm, H), PSMASH_FAIL_PERMISSION);
  // An immutable entry refuses RMPUPDATE too.
  assert.equal(rmp_make_shared(imm, H, 2), -14);
});

test('rmp_make_shared returns the page to the hypervisor with Validated cleared', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H + 2, 0x2000, 1, ASID, false);
  pvalidate(rmp, ASID, 0x2000, H + 2, 1, RMP_PG_SIZE_4K, true);
  assert.equal(rmp.entry(H + 2).validated, true);
  assert.equal(rmp_make_shared(rmp, H + 2, 1), 0);
  assert.deepEqual(rmp.entry(H + 2), { assigned: false, pagesize: 0, immutable: false, gpa: 0, asid: 0, validated: false, vmsa: false });
  // Re-assigning starts unvalidated: the guest must PVALIDATE again.
  rmp_make_private(rmp, H + 2, 0x2000, 1, ASID, false);
  assert.equal(rmp.entry(H + 2).validated, false);
});

test('PVALIDATE: size mismatch codes and #NPF bits as the APM gives them', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H + 5, 0x5000, 1, ASID, false);
  // 2M PVALIDATE of a 4K RMP page: FAIL_SIZEMISMATCH (6), nothing changes.
  const a = pvalidate(rmp, ASID, 0, H, 2, RMP_PG_SIZE_2M, true);
  assert.equal(a.result, 'npf'); // H itself is not assigned to the guest
  rmp_make_private(rmp, H, 0, 1, ASID, false);
  assert.equal(pvalidate(rmp, ASID, 0, H, 2, RMP_PG_SIZE_2M, true).rc, PVALIDATE_FAIL_SIZEMISMATCH);
  assert.equal(pvalidate(rmp, ASID, 0x1000, H + 1, 1, 2, true).rc, PVALIDATE_FAIL_INPUT);
  assert.equal(pvalidate(rmp, ASID, 0x1000, H + 1, 2, RMP_PG_SIZE_2M, true).rc, PVALIDATE_FAIL_INPUT);
  // 4K PVALIDATE inside a 2M RMP page: #NPF with RMP (bit 31), ENC (34) and SIZEM (35).
  const r2 = new SnpRmpTable();
  rmp_make_private(r2, H, 0x20_0000, 2, ASID, false);
  const b = pvalidate(r2, ASID, 0x20_3000, H + 3, 1, RMP_PG_SIZE_4K, true);
  assert.equal(b.result, 'npf');
  const ec = bits(b.err_lo, b.err_hi);
  assert.equal((ec >> 31n) & 1n, 1n);
  assert.equal((ec >> 34n) & 1n, 1n);
  assert.equal((ec >> 35n) & 1n, 1n);
  // A page of another ASID: #NPF without SIZEM.
  const c = pvalidate(rmp, ASID + 1, 0x5000, H + 5, 1, RMP_PG_SIZE_4K, true);
  assert.equal(c.result, 'npf');
  assert.equal((bits(c.err_lo, c.err_hi) >> 35n) & 1n, 0n);
  // Validating twice: success with CF set (the kernel's PVALIDATE_FAIL_NOUPDATE).
  assert.equal(pvalidate(rmp, ASID, 0x5000, H + 5, 1, RMP_PG_SIZE_4K, true).cf, false);
  const again = pvalidate(rmp, ASID, 0x5000, H + 5, 1, RMP_PG_SIZE_4K, true);
  assert.equal(again.rc, 0);
  assert.equal(again.cf, true);
});

test('guest access RMP check: NPT leaf size must match the RMP entry; unvalidated is #VC; shared access to private faults', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H, 0x20_0000, 2, ASID, false);
  const a = snp_rmp_check_guest_access(rmp, ASID, 0x20_1000, H + 1, 1, true, false);
  assert.equal(a.result, 'npf');
  assert.equal((bits(a.err_lo, a.err_hi) >> 31n) & 1n, 1n);
  assert.equal((bits(a.err_lo, a.err_hi) >> 34n) & 1n, 1n);
  assert.equal(snp_rmp_check_guest_access(rmp, ASID, 0x20_1000, H + 1, 2, true, false).result, 'vc');
  pvalidate(rmp, ASID, 0x20_0000, H, 2, RMP_PG_SIZE_2M, true);
  assert.equal(snp_rmp_check_guest_access(rmp, ASID, 0x20_1000, H + 1, 2, true, true).result, 'ok');
  const s = snp_rmp_check_guest_access(rmp, ASID, 0x20_1000, H + 1, 2, false, true);
  assert.equal(s.result, 'npf');
  assert.equal((bits(s.err_lo, s.err_hi) >> 34n) & 1n, 0n);
  assert.equal(snp_rmp_check_guest_access(rmp, ASID, 0x1000, H + 0x201, 1, false, true).result, 'ok');
});

test('host writes: an assigned page faults; a neighbour faults until the direct map is split', () => {
  const rmp = new SnpRmpTable();
  rmpupdate_insn(rmp, H + 9, { gpa: 0x9000, assigned: true, pagesize: RMP_PG_SIZE_4K, immutable: false, asid: ASID });
  assert.equal(snp_host_write_faults(rmp, H + 9), true);
  assert.equal(snp_host_write_faults(rmp, H + 10), true);
  assert.equal(snp_host_write_faults(rmp, H + 0x200), false);
  adjust_direct_map(rmp, H + 9);
  assert.equal(snp_host_write_faults(rmp, H + 10), false);
  assert.equal(snp_host_write_faults(rmp, H + 9), true);
  // The kernel wrapper splits on its own before a 4K update.
  const r2 = new SnpRmpTable();
  rmp_make_private(r2, H + 3, 0x3000, 1, ASID, false);
  assert.equal(snp_host_write_faults(r2, H + 4), false);
});

test('sev_gmem_prepare: 2M when the folio is PMD-order and its 2M range unassigned, else 4K; no-op if assigned', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
  const sev = sev_snp_init(pk(kvm), { asid: ASID });
  assert.equal(sev_gmem_prepare(pk(kvm), H + 0x10, 0x100010, 9), 0);
  assert.equal(sev.rmp.entry(H).pagesize, 1);
  assert.equal(sev.rmp.entry(H).gpa, 0x100000 * 4096);
  assert.equal(sev_gmem_prepare(pk(kvm), H + 0x10, 0x100010, 9), 0);
  assert.equal(sev.rmp.stats.rmpupdate, 1);
  // One page of the next 2M range already assigned: the folio gets a 4K entry for pfn only.
  rmp_make_private(sev.rmp, H + 0x200 + 3, 0, 1, ASID, false);
  assert.equal(sev_gmem_prepare(pk(kvm), H + 0x200 + 0x10, 0x100210, 9), 0);
  assert.equal(sev.rmp.entry(H + 0x210).pagesize, 0);
  assert.equal(sev.rmp.entry(H + 0x210).gpa, 0x100210 * 4096);
  assert.equal(sev.rmp.is_assigned(H + 0x211), false);
  // Order 0: always 4K.
  sev_gmem_prepare(pk(kvm), H + 0x400, 0x100400, 0);
  assert.equal(sev.rmp.census().assigned_2m, 1);
  // A non-SNP VM has nothing to prepare.
  const sw = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  assert.equal(sev_gmem_prepare(pk(sw), H, 0, 9), 0);
});

test('sev_gmem_invalidate: a covered 2M entry in one update, a partial one PSMASHed first', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H, 0, 2, ASID, false);
  rmp_make_private(rmp, H + 0x200, 0x20_0000, 2, ASID, false);
  const before = { ...rmp.stats };
  sev_gmem_invalidate(rmp, H, H + 0x200);
  assert.equal(rmp.is_assigned(H + 0x1ff), false);
  assert.equal(rmp.stats.rmpupdate - before.rmpupdate, 1);
  assert.equal(rmp.stats.psmash, 0);
  sev_gmem_invalidate(rmp, H + 0x210, H + 0x212);
  assert.equal(rmp.stats.psmash, 1);
  assert.equal(rmp.is_assigned(H + 0x210), false);
  assert.equal(rmp.is_assigned(H + 0x211), false);
  assert.equal(rmp.is_assigned(H + 0x212), true);
  assert.equal(rmp.entry(H + 0x212).pagesize, 0);
});

test('sev_gmem_max_mapping_level: the RMP entry size for assigned private pages, 4K if unassigned, no cap otherwise', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
  const sev = sev_snp_init(pk(kvm), { asid: ASID });
  assert.equal(sev_gmem_max_mapping_level(pk(kvm), H, true), 1);
  rmp_make_private(sev.rmp, H, 0, 2, ASID, false);
  assert.equal(sev_gmem_max_mapping_level(pk(kvm), H + 5, true), 2);
  assert.equal(sev_gmem_max_mapping_level(pk(kvm), H + 5, false), 0);
  psmash(sev.rmp, H);
  assert.equal(sev_gmem_max_mapping_level(pk(kvm), H + 5, true), 1);
  const sw = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  assert.equal(sev_gmem_max_mapping_level(pk(sw), H, true), 0);
});

test('kvm_rmp_fault text follows the 6.18 print fmt', () => {
  const text = formatTracepoint('kvm_rmp_fault', { vcpu_id: 2, gpa: 0x1_0000_5000, pfn: 0x8000005, error_code: '0000000d80000007', rmp_level: 2, psmash_ret: 0 });
  assert.equal(text, 'vcpu 2 gpa 0000000100005000 pfn 0x8000005 error_code 0xd80000007 rmp_level 2 psmash_ret 0');
});

function snpVm() {
  const v = vmWithGmemSlot(KVM_X86_SNP_VM, 0x1_0000_0000, 4 << 20, { huge: true });
  const sev = sev_snp_init(pk(v.kvm), { asid: ASID });
  const calls = recordingMmu(v.kvm);
  kvm_vm_set_mem_attributes(pk(v.kvm), 0x100000, 0x100400, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  calls.length = 0;
  return { ...v, sev, calls, vcpu: { kvm: pk(v.kvm), vcpu_id: 0 } };
}

test('sev_handle_rmp_fault: a 2M RMP entry is PSMASHed, [gfn, gfn + 512) zapped (gfn not aligned down), traced', () => {
  const { kvm, sev, slot, calls, vcpu, fd } = snpVm();
  const f = kvm_gmem_file(pk(kvm), fd)!;
  kvm_gmem_get_pfn(pk(kvm), slot, 0x100000, { pfn: 0, max_order: 0 });
  assert.equal(sev.rmp.census().assigned_2m, 1);
  const events: TraceEvent[] = [];
  const unsub = trace.subscribe((e) => events.push(e));
  const seen: string[] = [];
  probes.listen((n) => seen.push(n));
  let res;
  try {
    // #NPF error code: P | W | U | RMP, FINAL | ENC.
    res = sev_handle_rmp_fault(vcpu, 0x1_0000_5000, 0x8000_0007, 0x5);
  } finally {
    probes.listen(undefined);
    unsub();
  }
  assert.equal(res.action, 'psmash');
  assert.deepEqual(res.zapped, [0x100005, 0x100205]);
  assert.deepEqual(calls.map((c) => [c.kind, c.start, c.end]), [['zap', 0x100005, 0x100205]]);
  assert.equal(sev.rmp.census().assigned_4k, 512);
  assert.deepEqual(seen.filter((n) => /rmp|psmash/.test(n)), ['sev_handle_rmp_fault', 'psmash']);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.name, 'kvm_rmp_fault');
  assert.equal(events[0]!.text, `vcpu 0 gpa 0000000100005000 pfn 0x${(f.pfn_base + 5).toString(16)} error_code 0x580000007 rmp_level 2 psmash_ret 0`);
  // Again: the entry is 4K now, a spurious fault: traced, no PSMASH, no zap.
  const ev2: TraceEvent[] = [];
  const un2 = trace.subscribe((e) => ev2.push(e));
  const again = sev_handle_rmp_fault(vcpu, 0x1_0000_5000, 0x8000_0007, 0x5);
  un2();
  assert.equal(again.action, 'spurious_4k');
  assert.equal(calls.length, 1);
  assert.match(ev2[0]!.text, /rmp_level 1 psmash_ret 0$/);
});

test('sev_handle_rmp_fault on a shared gfn only warns (no trace)', () => {
  const { kvm, vcpu, calls } = snpVm();
  const events: TraceEvent[] = [];
  const unsub = trace.subscribe((e) => events.push(e));
  const r = sev_handle_rmp_fault(vcpu, 0x1_0000_0000 + 0x500 * 4096, 0x8000_0007, 0x5);
  unsub();
  assert.equal(r.action, 'not_private');
  assert.equal(events.length, 0);
  assert.equal(calls.length, 0);
  assert.ok(kvm.warnings.some((w) => w.includes('RMP fault')));
});

test('KVM_HC_MAP_GPA_RANGE served by the VMM: attributes flip and the punched hole smashes the 2M entry and frees the pages', () => {
  const { kvm, sev, slot, fd } = snpVm();
  const f = kvm_gmem_file(pk(kvm), fd)!;
  kvm_gmem_get_pfn(pk(kvm), slot, 0x100000, { pfn: 0, max_order: 0 });
  const exit = { exit_reason: 3, nr: KVM_HC_MAP_GPA_RANGE, gpa: 0x1_0001_0000, npages: 2, attrs: 0 };
  assert.equal(vmm_handle_map_gpa_range(pk(kvm), exit, { punch_hole: true }), 0);
  assert.equal(kvm.kvm_mem_is_private(0x100010), false);
  assert.equal(kvm.kvm_mem_is_private(0x100012), true);
  // The hole went through sev_gmem_invalidate: the 2M entry was smashed, the two pages are shared again.
  assert.equal(sev.rmp.is_assigned(f.pfn_base + 0x10), false);
  assert.equal(sev.rmp.is_assigned(f.pfn_base + 0x12), true);
  assert.equal(sev.rmp.stats.psmash, 1);
  // Back to private: only the attribute changes; the RMP entry waits for the next private fault.
  const priv = { ...exit, attrs: KVM_MAP_GPA_RANGE_ENCRYPTED };
  assert.equal(vmm_handle_map_gpa_range(pk(kvm), priv), 0);
  assert.equal(kvm.kvm_mem_is_private(0x100010), true);
  assert.equal(sev.rmp.is_assigned(f.pfn_base + 0x10), false);
});

test('probes where an RMP entry changes carry pfn, old/new entries and raw first qwords', () => {
  const rmp = new SnpRmpTable();
  const hits: Array<[string, Record<string, unknown>]> = [];
  probes.listen((n, a) => hits.push([n, a]));
  try {
    rmp_make_private(rmp, H + 1, 0x1000, 1, ASID, false);
    rmp_make_private(rmp, H + 0x200, 0x20_0000, 2, ASID, false);
    psmash(rmp, H + 0x200);
  } finally {
    probes.listen(undefined);
  }
  assert.deepEqual(hits.map((h) => h[0]), ['rmpupdate', 'rmp_make_private', 'rmpupdate', 'rmp_make_private', 'psmash']);
  const mk = hits[1]![1];
  assert.equal(mk.pfn, H + 1);
  assert.equal((mk.old_entry as { assigned: boolean }).assigned, false);
  assert.equal((mk.new_entry as { assigned: boolean }).assigned, true);
  assert.deepEqual(mk.old, { lo: 0, hi: 0 });
  // assigned | gpa 0x1000 (bit 12) | asid 5 << 51 (hi bit 19).
  assert.deepEqual(mk.new, { lo: 0x1001, hi: 5 << 19 });
  const ps = hits[4]![1];
  assert.equal((ps.old_entry as { pagesize: number }).pagesize, 1);
  assert.equal((ps.new_entry as { pagesize: number }).pagesize, 0);
  assert.equal(((ps.old as { lo: number }).lo & 2) !== 0, true);
  assert.equal(((ps.new as { lo: number }).lo & 2) !== 0, false);
});

test('2M changes report nr_pages 512; snp_rmp_view maps a gfn to its backing RMP entry', () => {
  const { kvm, slot, sev, fd } = snpVm();
  const hits: Array<[string, Record<string, unknown>]> = [];
  probes.listen((n, a) => hits.push([n, a]));
  try {
    kvm_gmem_get_pfn(pk(kvm), slot, 0x100003, { pfn: 0, max_order: 0 });
  } finally {
    probes.listen(undefined);
  }
  const up = hits.find((h) => h[0] === 'rmpupdate')![1];
  assert.equal(up.nr_pages, 512);
  const f = kvm_gmem_file(pk(kvm), fd)!;
  assert.equal(up.pfn, f.pfn_base);
  const view = snp_rmp_view(pk(kvm), 0x100003)!;
  assert.equal(view.pfn, f.pfn_base + 3);
  assert.equal(view.level, 2);
  assert.equal(view.assigned, true);
  assert.equal(view.asid, ASID);
  assert.equal(view.gpa, 0x1_0000_3000);
  assert.equal(sev.rmp.entry(f.pfn_base + 3).gpa, 0x1_0000_3000);
});

test('after a 2M region is returned shared, a 4K assignment inside it reads back as a 4K entry', () => {
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H, 0, 2, ASID, false);
  assert.equal(rmp_make_shared(rmp, H, 2), 0);
  assert.equal(rmp.is_assigned(H + 0x40), false);
  assert.equal(rmp_make_private(rmp, H + 0x40, 0x40000, 1, ASID, false), 0);
  const l = lk();
  snp_lookup_rmpentry(rmp, H + 0x40, l);
  assert.deepEqual(l, { assigned: true, level: 1 });
  // ... and a 2M assignment over the region now overlaps that 4K page.
  assert.equal(rmpupdate_insn(rmp, H, { gpa: 0, assigned: true, pagesize: RMP_PG_SIZE_2M, immutable: false, asid: ASID }), RMPUPDATE_FAIL_OVERLAP);
});

test('property: RMP invariants hold under any sequence of RMPUPDATE / PSMASH / PVALIDATE', async () => {
  const fc = (await import('fast-check')).default;
  const op = fc.record({
    k: fc.constantFrom('private', 'shared', 'psmash', 'pvalidate'),
    pfn: fc.integer({ min: 0, max: 1023 }),
    two_m: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
      const rmp = new SnpRmpTable();
      for (const o of ops) {
        const pfn = H + (o.two_m ? o.pfn - (o.pfn % 512) : o.pfn);
        const gpa = (pfn - H) * 4096;
        if (o.k === 'private') rmp_make_private(rmp, pfn, gpa, o.two_m ? 2 : 1, ASID, false);
        else if (o.k === 'shared') rmp_make_shared(rmp, pfn, o.two_m ? 2 : 1);
        else if (o.k === 'psmash') psmash(rmp, pfn);
        else pvalidate(rmp, ASID, gpa, pfn, o.two_m ? 2 : 1, o.two_m ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K, true);
        for (let r = 0; r < 2; r++) {
          const head = H + r * 512;
          const he = rmp.entry(head);
          const huge = he.assigned && he.pagesize === 1;
          for (let k = 0; k < 512; k++) {
            const e = rmp.entry(head + k);
            if (huge && !(e.assigned && e.pagesize === 1 && e.asid === he.asid && e.gpa === he.gpa + k * 4096)) return false;
            if (!huge && e.assigned && e.pagesize === 1) return false;
            const l = lk();
            snp_lookup_rmpentry(rmp, head + k, l);
            if (l.assigned && l.level === 2 && !huge) return false;
            if (e.assigned && e.gpa !== (head + k - H) * 4096) return false;
          }
        }
      }
      return true;
    }),
    { numRuns: 200 },
  );
});

test('RMPENTRY_RAW_FIELDS names the rmpentry_raw bits: assigned 0, pagesize 1, immutable 2, gpa 12-50, asid 51-60, vmsa 61, validated 62', () => {
  assert.deepEqual(RMPENTRY_RAW_FIELDS.map((f) => [f.name, f.msb, f.lsb]), [
    ['assigned', 0, 0], ['pagesize', 1, 1], ['immutable', 2, 2], ['gpa', 50, 12], ['asid', 60, 51], ['vmsa', 61, 61], ['validated', 62, 62],
  ]);
  const rmp = new SnpRmpTable();
  rmp_make_private(rmp, H, 0x7f_ffe0_0000, 2, 0x3ff, false);
  pvalidate(rmp, 0x3ff, 0x7f_ffe0_0000, H, 2, RMP_PG_SIZE_2M, true);
  const raw = rmp.raw(H);
  const d = Object.fromEntries(decodeFields(raw.lo, raw.hi, RMPENTRY_RAW_FIELDS).map((f) => [f.name, f.value]));
  assert.deepEqual(d, { assigned: 1, pagesize: 1, immutable: 0, gpa: 0x7f_ffe0_0000 / 4096, asid: 0x3ff, vmsa: 0, validated: 1 });
  assert.equal(bits(raw.lo, raw.hi), 3n | (0x7fffe00n << 12n) | (0x3ffn << 51n) | (1n << 62n));
});

test('VM-level helpers use the VM ASID and RMP, and are null for non-SNP VMs', () => {
  const { kvm } = snpVm();
  const sev = sev_snp_init(pk(kvm), { asid: 9 });
  rmp_make_private(sev.rmp, H, 0x1_0000_0000, 1, 9, false);
  assert.equal(snp_guest_pvalidate(pk(kvm), 0x1_0000_0000, H, 1, RMP_PG_SIZE_4K, true)!.rc, 0);
  assert.equal(snp_check_guest_access(pk(kvm), 0x1_0000_0000, H, 1, true, true)!.result, 'ok');
  assert.equal(snp_check_guest_access(pk(kvm), 0x1_0000_0000, H, 2, true, true)!.result, 'npf');
  const sw = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  assert.equal(snp_check_guest_access(pk(sw), 0, H, 1, true, false), null);
  assert.equal(snp_guest_pvalidate(pk(sw), 0, H, 1, 0, true), null);
});
