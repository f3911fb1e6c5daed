// Reconstruction and detectors over hand-written captures. Expected states follow the TDP MMU rules of
// kvm-x86-mmu.md (a zapped/replaced table takes its subtree with it; bit 11 = present; bit 7 = huge leaf).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { replayStream, spteKind, parseKernelVersion, type ReplayResult } from '../../../src/trace/index';

const FIX = join(__dirname, '../../fixtures/traces');
const read = (f: string): string => readFileSync(join(FIX, f), 'utf8');

function replay(text: string, opts: Parameters<typeof replayStream>[1] = {}): Promise<ReplayResult> {
  return replayStream(Readable.from([Buffer.from(text)]), opts);
}

const compact = (r: ReplayResult): string[] => r.sptes.map((s) => `as${s.asId} r${s.root} l${s.level} ${s.gfn}=${s.spte} ${s.kind}`);

test('spte kinds: leaf / nonleaf / frozen (both generations) / mmio (EPT and NPT) / nonpresent', () => {
  assert.equal(spteKind(0x3f00a2b77, 0, 1), 'leaf'); // bit 11, level 1
  assert.equal(spteKind(0x40000be7, 0, 2), 'leaf'); // bit 11 + PS
  assert.equal(spteKind(0x00a07, 0x10, 2), 'nonleaf'); // bit 11, no PS, level 2
  assert.equal(spteKind(0x5a0, 0x8000_0000, 1), 'frozen'); // FROZEN_SPTE
  assert.equal(spteKind(0x5a0, 0, 3), 'frozen'); // pre-6.11 REMOVED_SPTE
  assert.equal(spteKind(0x96, 0, 1), 'mmio'); // EPT: RWX = 0b110 (misconfig), gen in bits 3-10
  assert.equal(spteKind(0x1, 0x0008_0000, 1), 'mmio'); // NPT/legacy: bit 51 | P
  assert.equal(spteKind(0, 0x8000_0000, 1), 'nonpresent'); // SHADOW_NONPRESENT_VALUE
  assert.equal(spteKind(0, 0, 4), 'nonpresent');
});

test('a zapped 1G-level table takes its level-2 tables and 4K leaves with it; the child freezes are no mismatch', async () => {
  const r = await replay(read('zap_subtree.txt'));
  assert.equal(r.events, 16);
  assert.deepEqual(compact(r), ['as0 r0 l4 0=1000000a07 nonleaf', 'as0 r0 l3 40000=1000004a07 nonleaf', 'as0 r0 l2 40000=1000005a07 nonleaf', 'as0 r0 l1 40001=3f4001b77 leaf']);
  assert.equal(r.warnings.count, 0);
  assert.equal(r.sptesTotal, 4);
  assert.equal(r.detectors.length, 0);
});

test('huge leaf replacing a table with present 4K leaves: subtree removed, detector fires; clean variant does not', async () => {
  const r = await replay(read('huge_over_4k.txt'));
  assert.deepEqual(compact(r), ['as0 r0 l4 0=1000000a07 nonleaf', 'as0 r0 l3 0=1000001a07 nonleaf', 'as0 r0 l2 0=40000be7 leaf']);
  assert.equal(r.warnings.count, 0);
  assert.equal(r.detectors.length, 1);
  const d = r.detectors[0]!;
  assert.equal(d.detector, 'huge_leaf_over_4k_leaves');
  assert.equal(d.line, 6);
  assert.equal(d.level, 2);
  assert.equal(d.gfn, '0');
  assert.equal(d.count, 2);

  const clean = await replay(read('clean_huge.txt'));
  assert.deepEqual(compact(clean), compact(r));
  assert.equal(clean.detectors.length, 0);
  assert.equal(clean.warnings.count, 0);
});

test('fault loop: ten faults on one gfn with no SPTE change fire; faults that change the SPTE do not', async () => {
  const r = await replay(read('fault_loop.txt'));
  assert.equal(r.faults.total, 10);
  assert.deepEqual(r.faults.byVcpu, { '0': 10 });
  assert.deepEqual(r.faults.top[0], { vcpu: 0, gfn: '1a2', count: 10 });
  assert.equal(r.detectors.length, 1);
  const d = r.detectors[0]!;
  assert.equal(d.detector, 'fault_loop');
  assert.equal(d.vcpu, 0);
  assert.equal(d.gfn, '1a2');
  assert.equal(d.count, 10);
  assert.equal(d.line, 2);
  assert.equal(d.lastLine, 38);
  // a higher threshold: not reported
  assert.equal((await replay(read('fault_loop.txt'), { detectors: { faultLoop: 11 } })).detectors.length, 0);

  const clean = await replay(read('clean_faults.txt'));
  assert.equal(clean.faults.total, 5);
  assert.equal(clean.detectors.length, 0);
  assert.equal(clean.warnings.count, 0);
  assert.deepEqual(compact(clean), ['as0 r0 l1 1a2=6000003f00a2b77 leaf', 'as0 r0 l1 1a3=6000003f00a3b75 leaf', 'as0 r0 l1 1a4=6000003f00a4b75 leaf']);
  // with a threshold of 2 the clean capture still has no loop: every repeat changed the SPTE
  assert.equal((await replay(read('clean_faults.txt'), { detectors: { faultLoop: 2 } })).detectors.length, 0);
});

test('spurious fast_page_fault storm fires on 20 in a row; scattered spurious ones do not', async () => {
  const r = await replay(read('spurious_storm.txt'));
  assert.deepEqual(r.fastPageFaults, { total: 20, spurious: 20, fixed: 0 });
  assert.equal(r.detectors.length, 1);
  const d = r.detectors[0]!;
  assert.equal(d.detector, 'spurious_fast_page_fault_storm');
  assert.equal(d.vcpu, 1);
  assert.equal(d.gfn, '7f');
  assert.equal(d.count, 20);
  assert.equal(d.line, 1);
  assert.equal(d.lastLine, 20);
  const clean = await replay(read('clean_fast_pf.txt'));
  assert.deepEqual(clean.fastPageFaults, { total: 5, spurious: 2, fixed: 3 });
  assert.equal(clean.detectors.length, 0);
  assert.equal((await replay(read('clean_fast_pf.txt'), { detectors: { spuriousStorm: 2 } })).detectors.length, 0);
});

test('old_spte that contradicts the rebuilt value is a warning with its line number', async () => {
  const text = [
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 10 level 1 old_spte 8000000000000000 new_spte 3f0010b77',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 10 level 1 old_spte 3f0010b75 new_spte 3f0010b77',
    // unknown before the capture started: no warning
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 11 level 1 old_spte 3f0011b75 new_spte 3f0011b77',
  ].join('\n');
  const r = await replay(text);
  assert.equal(r.warnings.count, 1);
  assert.equal(r.warnings.first[0]!.line, 2);
  assert.match(r.warnings.first[0]!.message, /old_spte 3f0010b75 .* rebuilt 3f0010b77/);
});

test('roots: zap_all_fast invalidates, installs go to a new root, the old root is torn down by old_spte', async () => {
  const text = [
    'kvm_mmu_get_page: sp gen 0 gfn 0 l4 8-byte q0 direct wux nxe ad root 0 sync new',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 4 old_spte 8000000000000000 new_spte 1000000a07',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 3 old_spte 8000000000000000 new_spte 1000001a07',
    'kvm_mmu_zap_all_fast: kvm-mmu-valid-gen 0 used_pages 3',
    'kvm_mmu_get_page: sp gen 1 gfn 0 l4 8-byte q0 direct wux nxe ad root 0 sync new',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 4 old_spte 8000000000000000 new_spte 2000000a07',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 3 old_spte 8000000000000000 new_spte 2000001a07',
    // teardown of the invalid root: its old values, not the new root's
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 3 old_spte 1000001a07 new_spte 8000000000000000',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 4 old_spte 1000000a07 new_spte 8000000000000000',
    'kvm_mmu_prepare_zap_page: sp gen 0 gfn 0 l4 8-byte q0 direct wux invalid nxe ad root 0 sync',
  ].join('\n');
  const r = await replay(text);
  assert.equal(r.warnings.count, 0);
  assert.deepEqual(compact(r), ['as0 r1 l4 0=2000000a07 nonleaf', 'as0 r1 l3 0=2000001a07 nonleaf']);
  assert.equal(r.roots.length, 2);
  assert.equal(r.roots[0]!.invalid, true);
  assert.equal(r.roots[0]!.sptes, 0);
  assert.equal(r.roots[1]!.invalid, false);
  assert.equal(r.roots[1]!.sp?.text, 'sp gen 1 gfn 0 l4 8-byte q0 direct wux nxe ad root 0 sync');
  // the first root page was zapped; the second is live
  assert.equal(r.shadowPagesTotal, 1);
  assert.equal(r.shadowPages[0]!.gen, 1);
});

test('kvm_mmu_set_spte: duplicate of a TDP change is not applied twice; shadow-MMU installs land in as 0', async () => {
  const r = await replay(read('raw_trace.txt'));
  assert.deepEqual(compact(r), ['as0 r0 l1 1a2=6000003f00a2b77 leaf']);
  assert.equal(r.stacks.count, 1);
  assert.deepEqual(r.stacks.first[0], {
    line: 17,
    event: 'kvm_mmu_set_spte',
    stackLine: 18,
    frames: ['kvm_tdp_mmu_map', 'kvm_tdp_page_fault', 'kvm_mmu_do_page_fault', 'kvm_mmu_page_fault', 'vmx_handle_exit'],
  });
  const shadow = await replay('kvm_mmu_set_spte: gfn 7fff0 spte 8000000012345fe7 (r--u) level 1 at 1c4f0d10\n');
  assert.deepEqual(compact(shadow), ['as0 r0 l1 7fff0=8000000012345fe7 leaf']);
});

test('frozen values of both generations stay visible as frozen; shadow pages and walks are summarised', async () => {
  const r = await replay(read('old_kernel.txt'), { kernel: parseKernelVersion('5.10')! });
  assert.deepEqual(compact(r), ['as0 r0 l1 100=5a0 frozen', 'as1 r1 l1 101=80000000000005a0 frozen']);
  assert.equal(r.shadowPageCounts.created, 1);
  assert.equal(r.shadowPageCounts.reused, 1);
  const p = await replay(read('perf_script.txt'));
  assert.equal(p.walks.total, 1);
  assert.equal(p.walks.errors, 1);
  assert.deepEqual(p.walks.last[0], {
    line: 3,
    addr: '7fff1000',
    pferr: 0x13,
    elements: [{ level: 4, pte: '800000003f00a067' }],
    accessed: ['3f00a000'],
    dirty: ['3f00a008'],
    error: 9,
  });
});

test('a fixed fast_page_fault updates the rebuilt SPTE (the kernel traces no spte_changed for it)', async () => {
  const text = [
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 1 level 1 old_spte 8000000000000000 new_spte 600000003f001b75',
    'fast_page_fault: vcpu 0 gva 1000 error_code P|W sptep ffff888104a1c008 old 0x600000003f001b75 new 600000003f001b77 spurious 0 fixed 1',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 1 level 1 old_spte 600000003f001b77 new_spte 8000000000000000',
    'kvm_tdp_mmu_spte_changed: as id 0 gfn 2 level 1 old_spte 8000000000000000 new_spte 600000003f002b75',
    'fast_page_fault: vcpu 0 gva 2000 error_code P|W sptep ffff888104a1c010 old 0x600000003f002b75 new 600000003f002b77 spurious 0 fixed 1',
  ].join('\n');
  const r = await replay(text);
  assert.equal(r.warnings.count, 0);
  assert.deepEqual(compact(r), ['as0 r0 l1 2=600000003f002b77 leaf']);
});

test('fault loop with shadow paging: a GVA fault followed by an SPTE install in the same task is progress', async () => {
  // legacy shadow paging: kvm_page_fault reports the GVA, kvm_mmu_set_spte the guest frame it maps
  const fault = (i: number): string => ` CPU 0/KVM-4711 [001] ..... 10.${String(i).padStart(6, '0')}: kvm_page_fault: vcpu 0 rip 0xffffffff81000000 address 0x00007f0000001000 error_code 0x6`;
  const install = (i: number): string => ` CPU 0/KVM-4711 [001] ..... 10.${String(i).padStart(6, '0')}: kvm_mmu_set_spte: gfn 1a2 spte 800000003f0${(i % 10).toString(16)}2fe7 (r--u) level 1 at 1c4f0d10`;
  const other = (i: number): string => ` CPU 1/KVM-4712 [002] ..... 10.${String(i).padStart(6, '0')}: kvm_mmu_set_spte: gfn 99 spte 800000003f0${(i % 10).toString(16)}9fe7 (r--u) level 1 at 1c4f0e10`;
  const progress: string[] = [];
  const loop: string[] = [];
  for (let i = 0; i < 12; i++) {
    progress.push(fault(2 * i), install(2 * i + 1));
    // another vCPU's installs must not count as progress for vCPU 0
    loop.push(fault(2 * i), other(2 * i + 1));
  }
  assert.equal((await replay(progress.join('\n'))).detectors.length, 0);
  const r = await replay(loop.join('\n'));
  assert.equal(r.detectors.length, 1);
  assert.equal(r.detectors[0]!.detector, 'fault_loop');
  assert.equal(r.detectors[0]!.gfn, '7f0000001');
  assert.equal(r.detectors[0]!.count, 12);
});

test('long captures: single-fault pages are forgotten past the table limit, loops are kept', async () => {
  // 2^20 + 10 distinct pages fault once; one page loops among them
  const lines: string[] = [];
  for (let i = 0; i < 8; i++) lines.push('kvm_page_fault: vcpu 0 rip 0x0 address 0x0000000000001000 error_code 0x6');
  for (let p = 2; p < (1 << 20) + 12; p++) lines.push(`kvm_page_fault: vcpu 0 rip 0x0 address 0x${(p * 4096).toString(16).padStart(16, '0')} error_code 0x6`);
  for (let i = 0; i < 2; i++) lines.push('kvm_page_fault: vcpu 0 rip 0x0 address 0x0000000000001000 error_code 0x6');
  const r = await replay(lines.join('\n') + '\n');
  assert.equal(r.faults.total, 10 + (1 << 20) + 10);
  assert.equal(r.detectors.length, 1);
  assert.equal(r.detectors[0]!.gfn, '1');
  assert.equal(r.detectors[0]!.count, 10);
  assert.deepEqual(r.faults.top[0], { vcpu: 0, gfn: '1', count: 10 });
});
