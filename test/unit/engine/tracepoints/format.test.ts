// Expected strings are written by hand from the 6.18 `print fmt` lines in
// /work/shared/reference/tracefs-6.18/*.format and the kernel's vsprintf rules (%#llx of 0 is "0x0";
// %#016lx counts the 0x in the width; %p prints 16 zero-padded hex digits: the model's pointer, as tracefs
// does with its hash-ptr option off).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTracepoint, emitTracepoint, EVENTS, tracepointSystem } from '../../../../src/engine/tracepoints/index';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';

test('walker events', () => {
  assert.equal(formatTracepoint('kvm_mmu_pagetable_walk', { addr: 0x7fff1000, pferr: 0x13 }), 'addr 7fff1000 pferr 13 P|W|F');
  // flags print in table order (P W U PK SS SGX RSVD F), not bit order: RSVD (bit 3) after SGX (bit 15)
  assert.equal(formatTracepoint('kvm_mmu_pagetable_walk', { addr: 0, pferr: 0x8009 }), 'addr 0 pferr 8009 P|SGX|RSVD');
  // no flag set: __print_flags prints nothing, the separating space stays
  assert.equal(formatTracepoint('kvm_mmu_pagetable_walk', { addr: 0x1000, pferr: 0 }), 'addr 1000 pferr 0 ');
  // leftover bits print as 0x.. after the names
  assert.equal(formatTracepoint('kvm_mmu_walker_error', { pferr: 0x80000001 }), 'pferr 80000001 P|0x80000000');
  assert.equal(formatTracepoint('kvm_mmu_walker_error', { pferr: 0x100 }), 'pferr 100 0x100');
  assert.equal(formatTracepoint('kvm_mmu_paging_element', { pte: '800000003f00a067', level: 4 }), 'pte 800000003f00a067 level 4');
  assert.equal(formatTracepoint('kvm_mmu_set_accessed_bit', { gpa: 0x3f00a000 }), 'gpa 3f00a000');
  assert.equal(formatTracepoint('kvm_mmu_set_dirty_bit', { gpa: '0x3f00a008' }), 'gpa 3f00a008');
});

test('shadow-page text decodes the role word bit by bit', () => {
  // role: level 1, has_4_byte_gpte, quadrant 2, access 6 (w u), efer_nx 0, ad_disabled 0
  const role = 1 | 0x10 | (2 << 5) | (6 << 8);
  assert.equal(
    formatTracepoint('kvm_mmu_get_page', { mmu_valid_gen: 3, gfn: 0x1a2, role, root_count: 0, unsync: false, created: true }),
    'sp gen 3 gfn 1a2 l1 4-byte q2 wu- !nxe ad root 0 sync new',
  );
  // TDP root: level 4, direct, access wux (7), efer_nx, cr0_wp (not printed), ad_disabled, smm=1 (not printed)
  const tdp = 4 | 0x80 | (7 << 8) | 0x1000 | 0x2000 | 0x10000 | (1 << 24);
  assert.equal(
    formatTracepoint('kvm_mmu_get_page', { mmu_valid_gen: 255, gfn: 0, role: tdp, root_count: 2, unsync: false, created: false }),
    'sp gen 255 gfn 0 l4 8-byte q0 direct wux nxe !ad root 2 sync existing',
  );
  const invalid = 2 | (1 << 8) | 0x800 | 0x1000;
  assert.equal(
    formatTracepoint('kvm_mmu_prepare_zap_page', { mmu_valid_gen: 0, gfn: 0xfee00, role: invalid, root_count: 1, unsync: true }),
    'sp gen 0 gfn fee00 l2 8-byte q0 --x invalid nxe ad root 1 unsync',
  );
  assert.equal(
    formatTracepoint('kvm_mmu_sync_page', { mmu_valid_gen: 1, gfn: 0x10, role: 1 | (2 << 8), root_count: 0, unsync: true }),
    'sp gen 1 gfn 10 l1 8-byte q0 w-- !nxe ad root 0 unsync',
  );
  assert.equal(
    formatTracepoint('kvm_mmu_unsync_page', { mmu_valid_gen: 1, gfn: 0x10, role: 1 | (4 << 8), root_count: 0, unsync: false }),
    'sp gen 1 gfn 10 l1 8-byte q0 -u- !nxe ad root 0 sync',
  );
});

test('mmio events', () => {
  assert.equal(
    formatTracepoint('mark_mmio_spte', { sptep: '0xffff88810a3c0ff8', gfn: 0xfebf0, access: 6, gen: 0x12 }),
    'sptep:ffff88810a3c0ff8 gfn febf0 access 6 gen 12',
  );
  assert.equal(formatTracepoint('mark_mmio_spte', { sptep: 0x1000, gfn: 1, access: 0, gen: 0 }), 'sptep:0000000000001000 gfn 1 access 0 gen 0');
  assert.equal(formatTracepoint('handle_mmio_page_fault', { addr: 0, gfn: 0xfebf0, access: 2 }), 'addr:0 gfn febf0 access 2');
  assert.equal(
    formatTracepoint('check_mmio_spte', { spte: '8000000febf00e06', kvm_gen: 0x4, spte_gen: 0x4 }),
    'spte 8000000febf00e06 kvm_gen 4 spte-gen 4 valid 1',
  );
  assert.equal(formatTracepoint('check_mmio_spte', { spte: 0x6, kvm_gen: 0x6, spte_gen: 0x4 }), 'spte 6 kvm_gen 6 spte-gen 4 valid 0');
  assert.equal(formatTracepoint('kvm_mmu_zap_all_fast', { mmu_valid_gen: 1, mmu_used_pages: 0x1f }), 'kvm-mmu-valid-gen 1 used_pages 1f');
});

test('fast_page_fault: pointer, %#llx and the 6.18 RET_PF numbering (spurious 6, fixed 5)', () => {
  const base = { vcpu_id: 2, cr2_or_gpa: 0x7f000, error_code: 0x3, sptep: '0xffff888104a1c3f8', old_spte: '0x600000003f00ae75', new_spte: '0x600000003f00ae77' };
  assert.equal(
    formatTracepoint('fast_page_fault', { ...base, ret: 5 }),
    'vcpu 2 gva 7f000 error_code P|W sptep ffff888104a1c3f8 old 0x600000003f00ae75 new 600000003f00ae77 spurious 0 fixed 1',
  );
  assert.equal(formatTracepoint('fast_page_fault', { ...base, ret: 6 }).endsWith('spurious 1 fixed 0'), true);
  assert.equal(formatTracepoint('fast_page_fault', { ...base, ret: 4 }).endsWith('spurious 0 fixed 0'), true);
  // AMD #NPF error code: bits 32+ are not in the flag table, they print as a leftover hex
  assert.equal(
    formatTracepoint('fast_page_fault', { ...base, error_code: 0x100000010, old_spte: 0, new_spte: 0, ret: 1 }),
    'vcpu 2 gva 7f000 error_code F|0x100000000 sptep ffff888104a1c3f8 old 0x0 new 0 spurious 0 fixed 0',
  );
  // empty flags: two spaces
  assert.match(formatTracepoint('fast_page_fault', { ...base, error_code: 0, ret: 0 }), /error_code {2}sptep/);
});

test('kvm_mmu_set_spte (rwxu)', () => {
  assert.equal(
    formatTracepoint('kvm_mmu_set_spte', { gfn: 0x1a2, spte: 0x3f00a2b77, sptep: 0x1c4f0d10, level: 1, r: true, x: true, u: 1 }),
    'gfn 1a2 spte 3f00a2b77 (rwxu) level 1 at 1c4f0d10',
  );
  // w comes from spte bit 1, not from a field; u == -1 prints nothing
  assert.equal(
    formatTracepoint('kvm_mmu_set_spte', { gfn: 0x200, spte: '8000000040000ae5', sptep: 0x1000, level: 2, r: true, x: false, u: -1 }),
    'gfn 200 spte 8000000040000ae5 (r--) level 2 at 1000',
  );
  assert.equal(
    formatTracepoint('kvm_mmu_set_spte', { gfn: 0, spte: 2, sptep: 0, level: 3, r: false, x: false, u: 0 }),
    'gfn 0 spte 2 (-w--) level 3 at 0',
  );
});

test('spte_requested / tdp_mmu_spte_changed / split_huge_page', () => {
  assert.equal(formatTracepoint('kvm_mmu_spte_requested', { gfn: 0x1a2, pfn: 0x3f00a2, level: 1 }), 'gfn 1a2 pfn 3f00a2 level 1');
  assert.equal(
    formatTracepoint('kvm_tdp_mmu_spte_changed', { as_id: 0, gfn: 0x1a2, level: 1, old_spte: '80000000000005a0', new_spte: 0x3f00a2b77 }),
    'as id 0 gfn 1a2 level 1 old_spte 80000000000005a0 new_spte 3f00a2b77',
  );
  assert.equal(formatTracepoint('kvm_mmu_split_huge_page', { gfn: 0x200, spte: 0x40000be7, level: 2, errno: -12 }), 'gfn 200 spte 40000be7 level 2 errno -12');
  // %d of a u8 field: C promotes the unsigned char to a non-negative int
  assert.equal(formatTracepoint('kvm_mmu_spte_requested', { gfn: 1, pfn: 2, level: 200 }), 'gfn 1 pfn 2 level 200');
  // SVM names with a space
  assert.match(
    formatTracepoint('kvm_exit', { exit_reason: 0x48, isa: 2, guest_rip: 0, info1: 0, info2: 0, intr_info: 0, error_code: 0, vcpu_id: 0, requests: 0 }),
    /^vcpu 0 reason DF excp rip 0x0 /,
  );
});

test('kvm events', () => {
  assert.equal(
    formatTracepoint('kvm_page_fault', { vcpu_id: 0, guest_rip: 'ffffffff81000000', fault_address: 0xfee00000, error_code: 0x100000006 }),
    'vcpu 0 rip 0xffffffff81000000 address 0x00000000fee00000 error_code 0x100000006',
  );
  assert.equal(
    formatTracepoint('kvm_entry', { vcpu_id: 3, rip: 0xfff0, immediate_exit: false, intr_info: 0x80000b0e, error_code: 0 }),
    'vcpu 3, rip 0xfff0 intr_info 0x80000b0e error_code 0x00000000',
  );
  assert.equal(
    formatTracepoint('kvm_entry', { vcpu_id: 3, rip: 0xfff0, immediate_exit: true, intr_info: 0, error_code: 0x1 }),
    'vcpu 3, rip 0xfff0 intr_info 0x00000000 error_code 0x00000001[immediate exit]',
  );
  assert.equal(
    formatTracepoint('kvm_rmp_fault', { vcpu_id: 1, gpa: 0x100000, pfn: 0x23456, error_code: 0x80000007, rmp_level: 1, psmash_ret: -1 }),
    'vcpu 1 gpa 0000000000100000 pfn 0x23456 error_code 0x80000007 rmp_level 1 psmash_ret -1',
  );
  assert.equal(
    formatTracepoint('kvm_age_hva', { start: 0x7f1234560000, end: 0x7f1234561000 }),
    'mmu notifier age hva: 0x007f1234560000 -- 0x007f1234561000',
  );
  // %#llx: 0x prefix, also for 0
  assert.equal(formatTracepoint('kvm_try_async_get_page', { gva: 0x7f1234567000, gfn: 0x1a2 }), 'gva = 0x7f1234567000, gfn = 0x1a2');
  assert.equal(formatTracepoint('kvm_async_pf_repeated_fault', { gva: 0, gfn: 0x1a2 }), 'gva = 0x0, gfn = 0x1a2');
  assert.equal(
    formatTracepoint('kvm_unmap_hva_range', { start: '0xffff800000000000', end: 0 }),
    'mmu notifier unmap range: 0xffff800000000000 -- 0x00000000000000',
  );
});

test('kvm_exit reasons: VMX symbolic, FAILED_VMENTRY, SVM lower-case, unknown as 0x..', () => {
  const rest = { guest_rip: 'ffffffff8100abcd', info1: 0x181, info2: 0, intr_info: 0, error_code: 0, vcpu_id: 0, requests: 0 };
  assert.equal(
    formatTracepoint('kvm_exit', { ...rest, exit_reason: 48, isa: 1 }),
    'vcpu 0 reason EPT_VIOLATION rip 0xffffffff8100abcd info1 0x0000000000000181 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000',
  );
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 0x80000021, isa: 1 }), /^vcpu 0 reason INVALID_STATE FAILED_VMENTRY rip /);
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 0x400, isa: 2 }), /^vcpu 0 reason npf rip /);
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 0x8000fffd, isa: 2 }), /^vcpu 0 reason vmgexit_hypervisor_feature rip /);
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 85, isa: 1 }), /^vcpu 0 reason MSR_WRITE_IMM rip /);
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 5, isa: 1 }), /^vcpu 0 reason 0x5 rip /);
  // SVM_EXIT_ERR (-1): the unsigned int field zero-extends, the table key does not, so no name matches
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: -1, isa: 2 }), /^vcpu 0 reason 0xffffffff rip /);
  // SVM exit codes are not masked: 0x10030 is not write_dr0
  assert.match(formatTracepoint('kvm_exit', { ...rest, exit_reason: 0x10030, isa: 2 }), /^vcpu 0 reason 0x10030 rip /);
});

test('every event formats and carries its system; unknown events throw', () => {
  assert.ok(EVENTS.length >= 24);
  for (const e of EVENTS) {
    assert.equal(typeof formatTracepoint(e.name, {}), 'string');
    assert.equal(tracepointSystem(e.name), e.system);
  }
  assert.throws(() => formatTracepoint('kvm_no_such_event', {}));
});

test('emitTracepoint hands the formatted text and fields to the sink', () => {
  const seen: TraceEvent[] = [];
  const off = trace.subscribe((e) => seen.push(e));
  try {
    const fields = { gfn: 0x1a2, pfn: 0x3f00a2, level: 1 };
    if (trace.enabled) emitTracepoint('kvm_mmu_spte_requested', 4, fields);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.system, 'kvmmmu');
    assert.equal(seen[0]!.name, 'kvm_mmu_spte_requested');
    assert.equal(seen[0]!.vcpu, 4);
    assert.equal(seen[0]!.text, 'gfn 1a2 pfn 3f00a2 level 1');
    assert.deepEqual(seen[0]!.fields, fields);
  } finally {
    off();
  }
});
