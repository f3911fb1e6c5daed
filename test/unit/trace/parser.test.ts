// Parse counts and fields of hand-written captures (test/fixtures/traces), one per shape in trace-text.md.
// Expected values are read off the fixture text with the format files' field meanings, not from the parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseTraceText, parseStream, TraceParser, AbortError, parseKernelVersion, retPfNumbers, type TraceRecord } from '../../../src/trace/index';

const FIX = join(__dirname, '../../fixtures/traces');
const read = (f: string): string => readFileSync(join(FIX, f), 'utf8');

function byName(records: TraceRecord[], name: string): TraceRecord[] {
  return records.filter((r) => r.name === name);
}

test('raw trace: prefixes with 5- and 4-char flags, spaced and <...> comms, headers, stack, LOST, unknown lines', () => {
  const { records, parser } = parseTraceText(read('raw_trace.txt'));
  assert.equal(parser.lines, 30);
  assert.equal(parser.events, 9);
  assert.deepEqual(parser.byType(), {
    kvm_mmu_zap_all_fast: 1,
    fast_page_fault: 1,
    kvm_mmu_set_spte: 1,
    kvm_mmu_spte_requested: 1,
    kvm_tdp_mmu_spte_changed: 1,
    kvm_page_fault: 1,
    kvm_exit: 1,
    kvm_entry: 1,
    kvm_age_hva: 1,
  });
  const exit = records[0]!;
  assert.equal(exit.name, 'kvm_exit');
  assert.equal(exit.line, 13);
  assert.equal(exit.comm, 'CPU 0/KVM');
  assert.equal(exit.pid, 4711);
  assert.equal(exit.cpu, 2);
  assert.equal(exit.ts, 812.0001);
  assert.deepEqual(exit.fields, {
    exit_reason: 48,
    guest_rip: 'ffffffff8100abcd',
    isa: 1,
    info1: 0x181,
    info2: 0,
    intr_info: 0,
    error_code: 0,
    vcpu_id: 0,
    requests: 0,
  });
  const pf = byName(records, 'kvm_page_fault')[0]!;
  assert.deepEqual(pf.fields, { vcpu_id: 0, guest_rip: 'ffffffff8100abcd', fault_address: 0x1a2000, error_code: 0x181 });
  const set = byName(records, 'kvm_mmu_set_spte')[0]!;
  assert.equal(set.line, 17);
  assert.deepEqual(set.fields, { gfn: 0x1a2, spte: '6000003f00a2b77', sptep: 0x1c4f0d10, level: 1, r: true, x: true, u: 1 });
  // the <stack trace> block after it, innermost frame first
  assert.deepEqual(set.stack, ['kvm_tdp_mmu_map', 'kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault', 'vmx_handle_exit']);
  assert.equal(parser.stackCount, 1);
  assert.equal(byName(records, 'kvm_entry')[0]!.stack, undefined);
  const fast = byName(records, 'fast_page_fault')[0]!;
  assert.equal(fast.comm, '<...>');
  assert.equal(fast.pid, 4712);
  assert.equal(fast.cpu, 3);
  assert.deepEqual(fast.fields, {
    vcpu_id: 1,
    cr2_or_gpa: 0x7f000,
    error_code: 3,
    sptep: 'ffff888104a1c3f8',
    old_spte: '600000003f00ae75',
    new_spte: '600000003f00ae77',
    ret: 5,
    spurious: false,
    fixed: true,
  });
  const zap = byName(records, 'kvm_mmu_zap_all_fast')[0]!;
  assert.equal(zap.comm, 'kworker/u16:3');
  assert.equal(zap.pid, 120);
  assert.deepEqual(zap.fields, { mmu_valid_gen: 0, mmu_used_pages: 0x1f });
  assert.deepEqual(byName(records, 'kvm_age_hva')[0]!.fields, { start: 0x7f1234560000, end: 0x7f1234561000 });
  // nothing dropped silently
  assert.equal(parser.unrecognizedCount, 2);
  assert.deepEqual(
    parser.unrecognized.map((u) => [u.line, u.reason]),
    [
      [29, 'event kvm_pio is not modelled'],
      [30, 'kvm_mmu_set_spte: payload not understood'],
    ],
  );
  assert.deepEqual(Object.fromEntries(parser.otherEvents), { kvm_pio: 1 });
  assert.equal(parser.warningCount, 1);
  assert.equal(parser.warnings[0]!.line, 27);
  assert.equal(parser.styles.raw, 9);
});

test('trace-cmd report: cpus= and empty-CPU lines, padded names, every remaining kvmmmu/kvm event', () => {
  const { records, parser } = parseTraceText(read('trace_cmd_report.txt'));
  assert.equal(parser.events, 12);
  assert.equal(parser.unrecognizedCount, 0);
  assert.equal(parser.styles.traceCmd, 12);
  const get = byName(records, 'kvm_mmu_get_page')[0]!;
  // l4, direct (bit 7), access wux (7 << 8), efer_nx (bit 12)
  assert.deepEqual(get.fields, { mmu_valid_gen: 0, gfn: 0, role: 4 | 0x80 | 0x700 | 0x1000, root_count: 0, unsync: false, created: true });
  assert.equal(get.cpu, 2);
  assert.equal(get.comm, 'CPU 0/KVM');
  const zap = byName(records, 'kvm_mmu_prepare_zap_page')[0]!;
  assert.equal(zap.fields['role'], 4 | 0x80 | 0x700 | 0x800 | 0x1000);
  const exit = byName(records, 'kvm_exit')[0]!;
  assert.equal(exit.fields['exit_reason'], 0x400);
  assert.equal(exit.fields['isa'], 2);
  assert.equal(exit.fields['info1'], 0x100000006);
  assert.deepEqual(byName(records, 'mark_mmio_spte')[0]!.fields, { sptep: 'ffff888104a1c000', gfn: 0xfebf0, access: 6, gen: 0x12 });
  assert.deepEqual(byName(records, 'handle_mmio_page_fault')[0]!.fields, { addr: 0, gfn: 0xfebf0, access: 6 });
  assert.deepEqual(byName(records, 'check_mmio_spte')[0]!.fields, { kvm_gen: 0x12, spte_gen: 0x12, spte: 0x96, valid: true });
  assert.deepEqual(byName(records, 'kvm_mmu_split_huge_page')[0]!.fields, { gfn: 0x200, spte: 0x40000be7, level: 2, errno: -12 });
  assert.deepEqual(byName(records, 'kvm_mmu_sync_page')[0]!.fields, { mmu_valid_gen: 1, gfn: 0x10, role: 1 | 0x200, root_count: 0, unsync: true });
  // l1 4-byte q3 -u- !nxe !ad: level 1, has_4_byte_gpte, quadrant 3, ACC_USER (4 << 8), ad_disabled (bit 16)
  assert.deepEqual(byName(records, 'kvm_mmu_unsync_page')[0]!.fields, { mmu_valid_gen: 1, gfn: 0x10, role: 1 | 0x10 | (3 << 5) | (4 << 8) | 0x10000, root_count: 2, unsync: false });
  assert.deepEqual(byName(records, 'kvm_rmp_fault')[0]!.fields, { vcpu_id: 0, gpa: 0x100000, pfn: 0x23456, error_code: 0x80000007, rmp_level: 1, psmash_ret: -1 });
  assert.deepEqual(byName(records, 'kvm_unmap_hva_range')[0]!.fields, { start: 0x7f1234560000, end: 0x7f1234561000 });
});

test('perf script: SYSTEM:EVENT names, PID/TID, comm with a space, walker events', () => {
  const { records, parser } = parseTraceText(read('perf_script.txt'));
  assert.equal(parser.events, 8);
  assert.equal(parser.unrecognizedCount, 0);
  assert.equal(parser.styles.perf, 8);
  const pf = records[0]!;
  assert.equal(pf.system, 'kvm');
  assert.equal(pf.comm, 'qemu-system-x86');
  assert.equal(pf.pid, 4712);
  assert.equal(pf.cpu, 2);
  // AMD #NPF error code with PFERR_GUEST_FINAL (bit 32)
  assert.deepEqual(pf.fields, { vcpu_id: 1, guest_rip: 'ffffffff81001234', fault_address: 0xfee00000, error_code: 0x100000006 });
  const set = records[1]!;
  assert.equal(set.system, 'kvmmmu');
  assert.deepEqual(set.fields, { gfn: 0xfee00, spte: '80000000fee00b75', sptep: 0x1c4f0d10, level: 1, r: true, x: false, u: 1 });
  const walk = byName(records, 'kvm_mmu_pagetable_walk')[0]!;
  assert.equal(walk.comm, 'CPU 1/KVM');
  assert.equal(walk.pid, 4713);
  assert.deepEqual(walk.fields, { addr: 0x7fff1000, pferr: 0x13 });
  assert.deepEqual(byName(records, 'kvm_mmu_paging_element')[0]!.fields, { pte: '800000003f00a067', level: 4 });
  assert.deepEqual(byName(records, 'kvm_mmu_set_accessed_bit')[0]!.fields, { gpa: 0x3f00a000 });
  assert.deepEqual(byName(records, 'kvm_mmu_set_dirty_bit')[0]!.fields, { gpa: 0x3f00a008 });
  assert.deepEqual(byName(records, 'kvm_mmu_walker_error')[0]!.fields, { pferr: 9 });
  assert.deepEqual(byName(records, 'kvm_entry')[0]!.fields, { vcpu_id: 1, rip: 'ffffffff81001234', immediate_exit: true, intr_info: 0, error_code: 0 });
});

test('mail-wrapped and trimmed lines are joined; prose lines are counted with their line numbers', () => {
  const { records, parser } = parseTraceText(read('mail_wrapped.txt'));
  assert.deepEqual(
    records.map((r) => [r.line, r.name]),
    [
      [5, 'kvm_page_fault'],
      [7, 'kvm_mmu_spte_requested'],
      [8, 'kvm_tdp_mmu_spte_changed'],
      [10, 'kvm_mmu_set_spte'],
      [12, 'kvm_exit'],
    ],
  );
  assert.equal(parser.joinedLines, 5);
  // the whole event, not its first line: every line it took, and its text joined as parsed
  assert.deepEqual(
    records.map((r) => [r.line, r.endLine]),
    [
      [5, 6],
      [7, 7],
      [8, 9],
      [10, 11],
      [12, 14],
    ],
  );
  const texts: string[] = [];
  const p = new TraceParser({ onEvent: (ev) => texts.push(ev.text.trim()) });
  p.push(read('mail_wrapped.txt'));
  p.end();
  assert.deepEqual(texts.slice(3), [
    'qemu-system-x86-1234  [007] .....  812.000106: kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b77 (rwxu) level 1 at 1c4f0d10',
    'kvm_exit: vcpu 0 reason EPT_VIOLATION rip 0xffffffff8100abcd info1 0x0000000000000181 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000',
  ]);
  assert.deepEqual(records[0]!.fields, { vcpu_id: 0, guest_rip: 'ffffffff8100abcd', fault_address: 0x1a2000, error_code: 0x181 });
  assert.equal(records[0]!.pid, -1);
  assert.deepEqual(records[2]!.fields, { gfn: 0x1a2, old_spte: '8000000000000000', new_spte: '6000003f00a2b77', level: 1, as_id: 0 });
  assert.equal(records[3]!.pid, 1234);
  assert.equal(records[3]!.fields['sptep'], 0x1c4f0d10);
  assert.equal(records[4]!.fields['requests'], 0);
  assert.equal(records[4]!.fields['info1'], 0x181);
  assert.deepEqual(
    parser.unrecognized.map((u) => u.line),
    [1, 3, 16, 17],
  );
  assert.equal(parser.unrecognizedCount, 4);
});

test('a wrapped line whose continuation never comes is reported, not dropped', () => {
  const { records, parser } = parseTraceText('kvm_mmu_spte_requested: gfn 1a2 pfn\nkvm_mmu_set_accessed_bit: gpa 1000\n');
  assert.equal(records.length, 1);
  assert.equal(parser.unrecognizedCount, 1);
  assert.equal(parser.unrecognized[0]!.line, 1);
  assert.match(parser.unrecognized[0]!.reason, /truncated|wrapped/);
});

test('older text generations: pre-6.1 kvm_page_fault, pre-5.10 shadow pages, RET_PF numbering by --kernel', () => {
  const text = read('old_kernel.txt');
  const { records, parser } = parseTraceText(text, { kernel: parseKernelVersion('5.10')! });
  assert.equal(parser.events, 9);
  assert.equal(parser.unrecognizedCount, 0);
  assert.deepEqual(records[0]!.fields, { fault_address: 0x7fff1000, error_code: 6 });
  assert.equal(records[0]!.variant, 1);
  // new sp gfn 7fff0 1 q0 wux !pae nxe wp: level 1, 4-byte gPTEs (!pae), access 7, efer_nx, cr0_wp
  assert.deepEqual(records[1]!.fields, { gfn: 0x7fff0, role: 1 | 0x10 | 0x700 | 0x1000 | 0x2000, root_count: 0, unsync: false, created: true });
  assert.equal(records[1]!.variant, 1);
  assert.deepEqual(records[2]!.fields, { gfn: 0x7fff0, role: 1 | 0x10 | 0x700 | 0x1000 | 0x2000, root_count: 1, unsync: true, created: false });
  assert.deepEqual(records[3]!.fields, { gfn: 0x7fff0, role: 1 | 0x80 | 0x100 | 0x800, root_count: 0, unsync: false });
  // 5.10 numbers RET_PF_SPURIOUS 5; 6.18 numbers it 6
  assert.equal(records[8]!.fields['ret'], 5);
  assert.equal(records[8]!.fields['spurious'], true);
  const now = parseTraceText(text).records;
  assert.equal(now[8]!.fields['ret'], 6);
});

test('headers, blank lines and CRLF endings', () => {
  const { records, parser } = parseTraceText('# tracer: nop\r\n\r\nkvm_mmu_set_dirty_bit: gpa 3f00a008\r\n');
  assert.equal(records.length, 1);
  assert.deepEqual(records[0]!.fields, { gpa: 0x3f00a008 });
  assert.equal(parser.unrecognizedCount, 0);
});

test('walker events with an empty flag list survive trimming of the trailing space', () => {
  const { records, parser } = parseTraceText('kvm_mmu_walker_error: pferr 0\nkvm_mmu_pagetable_walk: addr 1000 pferr 0 \n');
  assert.equal(parser.unrecognizedCount, 0);
  assert.deepEqual(records.map((r) => r.fields), [{ pferr: 0 }, { addr: 0x1000, pferr: 0 }]);
});

test('chunk boundaries anywhere give the same records', () => {
  const text = read('raw_trace.txt') + read('mail_wrapped.txt');
  const whole = parseTraceText(text).records;
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: text.length }), { maxLength: 12 }), (cuts) => {
      const points = [...new Set(cuts)].sort((a, b) => a - b);
      const records: TraceRecord[] = [];
      const p = new TraceParser({ onEvent: (ev) => records.push(ev.toRecord()), onStack: (s) => s.eventSeq >= 0 && (records[s.eventSeq]!.stack = s.frames) });
      let last = 0;
      for (const c of points) {
        p.push(text.slice(last, c));
        last = c;
      }
      p.push(text.slice(last));
      p.end();
      assert.deepEqual(records, whole);
    }),
    { numRuns: 60 },
  );
});

test('parseStream: Buffer chunks split inside a UTF-8 character, progress in bytes, cancellation', async () => {
  const text = ' qemu-é-77 [001] ..... 5.000001: kvm_mmu_set_accessed_bit: gpa 3f00a000\n';
  const buf = Buffer.from(text, 'utf8');
  const at = buf.indexOf(0xc3) + 1; // between the two bytes of "é"
  async function* chunks(): AsyncGenerator<Buffer> {
    yield buf.subarray(0, at);
    yield buf.subarray(at);
  }
  const seen: TraceRecord[] = [];
  const progress: number[] = [];
  const p = new TraceParser({ onEvent: (ev) => seen.push(ev.toRecord()) });
  const bytes = await parseStream(chunks(), p, { onProgress: (b) => progress.push(b) });
  assert.equal(bytes, buf.length);
  assert.deepEqual(progress, [at, buf.length]);
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.comm, 'qemu-é');
  assert.equal(seen[0]!.pid, 77);

  const ac = new AbortController();
  async function* endless(): AsyncGenerator<string> {
    for (let i = 0; ; i++) {
      if (i === 3) ac.abort();
      yield 'kvm_mmu_set_accessed_bit: gpa 1000\n';
    }
  }
  const q = new TraceParser();
  await assert.rejects(parseStream(endless(), q, { signal: ac.signal }), (e: unknown) => e instanceof AbortError);
  assert.equal(q.events, 3);
});

test('a line longer than 1 MiB is one unrecognized line, counted once, and parsing goes on', () => {
  const good = 'kvm_mmu_set_accessed_bit: gpa 1000';
  const text = `${good}\n${'x'.repeat(3 << 20)}\n${good}\n`;
  const p = new TraceParser();
  for (let i = 0; i < text.length; i += 1 << 16) p.push(text.slice(i, i + (1 << 16)));
  p.end();
  assert.equal(p.events, 2);
  assert.equal(p.lines, 3);
  assert.equal(p.unrecognizedCount, 1);
  assert.equal(p.unrecognized[0]!.line, 2);
  assert.ok(p.unrecognized[0]!.text.length <= 200);
});

test('perf script -g: callchain lines after an event are its stack frames', () => {
  const { records, parser } = parseTraceText(read('perf_callchain.txt'));
  assert.equal(parser.events, 2);
  assert.deepEqual(records[0]!.stack, ['kvm_mmu_page_fault+0x123 ([kvm])', 'npf_interception+0x45 ([kvm_amd])', 'svm_handle_exit+0x9a ([kvm_amd])']);
  assert.deepEqual(records[1]!.stack, ['kvm_tdp_mmu_map+0x200 ([kvm])']);
  assert.equal(parser.stackCount, 0);
  assert.equal(parser.callchainCount, 3);
  // the unmodelled kvm_pio line is reported; its callchain is kept with it, not reported as garbage
  assert.equal(parser.unrecognizedCount, 1);
  assert.equal(parser.unrecognized[0]!.line, 9);
});

test('an indented hex token after a raw-trace event is not a callchain frame', () => {
  const { records, parser } = parseTraceText(' qemu-1-2 [000] ..... 1.000001: kvm_mmu_set_accessed_bit: gpa 1000\n\tffffffffc0a1b2c3 kvm_mmu_page_fault+0x123 ([kvm])\n');
  assert.equal(records.length, 1);
  assert.equal(records[0]!.stack, undefined);
  assert.equal(parser.unrecognizedCount, 1);
});

test('kernel versions: parsing and the RET_PF_WRITE_PROTECTED shift at 6.12', () => {
  assert.deepEqual(parseKernelVersion('6.18'), { major: 6, minor: 18 });
  assert.deepEqual(parseKernelVersion('v6.8'), { major: 6, minor: 8 });
  assert.deepEqual(parseKernelVersion('5.10.0-rc3'), { major: 5, minor: 10 });
  assert.deepEqual(parseKernelVersion('6.1.55-generic'), { major: 6, minor: 1 });
  assert.equal(parseKernelVersion('banana'), undefined);
  assert.equal(parseKernelVersion('6'), undefined);
  // kvm-x86-mmu.md 4.2: FIXED 5 / SPURIOUS 6 with WRITE_PROTECTED (3), FIXED 4 / SPURIOUS 5 before
  assert.deepEqual({ ...retPfNumbers({ major: 6, minor: 12 }) }, { fixed: 5, spurious: 6 });
  assert.deepEqual({ ...retPfNumbers({ major: 6, minor: 8 }) }, { fixed: 4, spurious: 5 });
});

test('hashed %p values (tracefs default hash-ptr) parse like raw pointers', () => {
  const { records, parser } = parseTraceText(
    'fast_page_fault: vcpu 0 gva 1000 error_code P|W sptep 000000003a1b2c3d old 0x600000003f001b75 new 600000003f001b77 spurious 0 fixed 1\n' +
      'mark_mmio_spte: sptep:00000000a1b2c3d4 gfn febf0 access 6 gen 12\n',
  );
  assert.equal(parser.unrecognizedCount, 0);
  assert.equal(records[0]!.fields['sptep'], 0x3a1b2c3d);
  assert.equal(records[1]!.fields['sptep'], 0xa1b2c3d4);
});
