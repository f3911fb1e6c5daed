/** The panels' readings of a session: the per-vCPU timeline and the arm64 stage-2 map, on real scenarios. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ScenarioProgram } from '../../../src/debug/scenario_program';
import { TraceProgram } from '../../../src/debug/trace_program';
import type { DebugProgram } from '../../../src/debug/program';
import { Arm64Vm } from '../../../src/engine/arm64/mmu';
import { eventKind, vcpuTimeline } from '../../../src/debug/worker/vcpu_timeline';
import { stage2Map } from '../../../src/debug/worker/stage2_map';
import { parseToMap } from '../../../webview/shared/ptmap_protocol';
import { parseToTimeline } from '../../../webview/shared/timeline_protocol';

const EXAMPLES = resolve(__dirname, '..', '..', '..', 'examples');

function run(text: string): ScenarioProgram {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-panels-'));
  const file = join(dir, 's.kvmmmu');
  writeFileSync(file, text);
  return runFile(file);
}

function runFile(file: string): ScenarioProgram {
  const p = new ScenarioProgram(file, {});
  for (let s = 0; s < p.length(); s++) p.execute(s);
  return p;
}

test('tracepoints fall into the kinds the timeline colours', () => {
  assert.equal(eventKind('kvm_mmu_prepare_zap_page'), 'zap');
  assert.equal(eventKind('kvm_mmu_split_huge_page'), 'split');
  assert.equal(eventKind('kvm_unmap_hva_range'), 'notifier');
  assert.equal(eventKind('kvm_age_hva'), 'notifier');
  assert.equal(eventKind('kvm_page_fault'), 'fault');
  assert.equal(eventKind('kvm_mmu_spte_requested'), 'fault');
  assert.equal(eventKind('kvm_mmu_get_page'), 'map');
  assert.equal(eventKind('kvm_tdp_mmu_spte_changed'), 'map');
  assert.equal(eventKind('kvm_mmu_zap_all_fast'), 'zap');
  assert.equal(eventKind('kvm_tlb_flush_vmid_range'), 'flush');
  assert.equal(eventKind('kvm_nested_vmexit'), 'other');
});

test('timeline: one row per vCPU, counts per kind add up to the events in range', () => {
  const p = run([
    'vm arch=x86 vendor=intel tdp=on vcpus=3',
    'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G backing=2M',
    'guest read gpa=0x1000 vcpu=0',
    'guest write gpa=0x200000 vcpu=2',
    'guest read gpa=0x400000 vcpu=2',
    '',
  ].join('\n'));
  const all = p.events(0, 1e9).events;
  const t = vcpuTimeline(p, { buckets: 50 });
  assert.ok(parseToTimeline({ type: 'timeline', data: t }), 'the panel accepts it');
  assert.deepEqual(t.rows.map((r) => r.vcpu), [...new Set(all.map((e) => e.vcpu))].sort((a, b) => a - b));
  assert.ok(t.rows.some((r) => r.vcpu === 2) && t.rows.some((r) => r.vcpu === 0));
  const sum = t.counts.flat(2).reduce((a, b) => a + b, 0);
  assert.equal(sum, all.length);
  for (const [r, row] of t.rows.entries()) {
    assert.equal(t.counts[r]!.flat().reduce((a, b) => a + b, 0), row.total);
    assert.equal(row.total, all.filter((e) => e.vcpu === row.vcpu).length);
  }
  const fault = t.kinds.findIndex((k) => k.kind === 'fault');
  assert.ok(t.counts.some((row) => row[fault]!.some((c) => c > 0)), 'faults are there');
  // A zoomed range holds only its events, and a row's first event in a bucket is that vCPU's.
  const vcpu2 = all.filter((e) => e.vcpu === 2);
  const z = vcpuTimeline(p, { from: vcpu2[0]!.index, to: vcpu2[0]!.index + 1, buckets: 1 });
  const r2 = z.rows.findIndex((r) => r.vcpu === 2);
  assert.equal(z.firstAt[r2]![0], vcpu2[0]!.index);
  assert.equal(z.counts.flat(2).reduce((a, b) => a + b, 0), 1);
  // Stopped at the statement of vCPU 2's write: the mark is before its first event.
  assert.equal(vcpuTimeline(p, { stopStep: vcpu2[0]!.step }).stop, vcpu2[0]!.index);
  p.dispose();
});

test('timeline of a replayed trace: events without vcpu_id go to the vCPU whose thread emitted them', () => {
  const p = new TraceProgram(join(EXAMPLES, '..', 'test', 'fixtures', 'traces', 'clean_faults.txt'), {});
  for (let s = 0; s < p.length(); s++) p.execute(s);
  const t = vcpuTimeline(p, { buckets: 20 });
  assert.ok(parseToTimeline({ type: 'timeline', data: t }));
  // CPU 0/KVM-4711's kvm_tdp_mmu_spte_changed lines are vCPU 0's; qemu's notifier and its zap are not.
  const all = p.events(0, 1e9).events;
  const qemu = all.filter((e) => e.pid === 4700).length;
  assert.ok(qemu >= 2);
  assert.deepEqual(t.rows, [{ vcpu: -1, total: qemu }, { vcpu: 0, total: all.length - qemu }]);
  const map = t.kinds.findIndex((k) => k.kind === 'map');
  assert.ok(t.counts[1]![map]!.some((c) => c > 0), 'the fault thread\'s SPTE changes are in the vCPU 0 row');
  // A replay stopped at line 5 of the capture has not replayed event 4 yet: the stop mark sits before it.
  assert.equal(vcpuTimeline(p, { buckets: 20, stopStep: 4 }).stop, 4);
  assert.equal(vcpuTimeline(p, { buckets: 20, stopStep: all.length }).stop, all.length, 'past the last event: the end');
  assert.equal(vcpuTimeline(p, { buckets: 20 }).stop, undefined);
});

test('stage-2 map: the guest stage-2 of a 4K VM, a page and a block, in the panel format', () => {
  const p = runFile(join(EXAMPLES, 'arm64-stage2-faults.kvmmmu'));
  const m = stage2Map(p, { root: 0 });
  const parsed = parseToMap({ type: 'map', map: m });
  assert.ok(parsed && parsed.type === 'map', 'the panel accepts it');
  const map = parsed.map;
  assert.equal(map.arch, 'arm64');
  assert.equal(map.entries, 512);
  assert.equal(map.leafLevel, 3);
  assert.equal(map.tables[0]!.level, map.rootLevel);
  const kinds = map.tables.map((t) => t.kinds).join('');
  assert.ok(/[LH]/.test(kinds), 'a leaf is mapped');
  assert.ok(kinds.includes('T'), 'tables link levels');
  assert.equal(map.ownership, 'none', 'no pKVM, no ownership');
  p.dispose();
});

test('stage-2 map under pKVM: ownership letters for the guest and host stage-2', () => {
  const p = runFile(join(EXAMPLES, 'pkvm-stage2-ownership.kvmmmu'));
  const host = stage2Map(p, { root: 1 });
  const parsed = parseToMap({ type: 'map', map: host });
  assert.ok(parsed && parsed.type === 'map');
  assert.equal(parsed.map.ownership, 'host');
  assert.equal(parsed.map.roots.length, 2);
  const owners = parsed.map.tables.map((t) => t.owners ?? '').join('');
  assert.ok(/[gy]/.test(owners), `pages donated away are marked: ${[...new Set(owners)].join('')}`);
  assert.ok(/[osb]/.test(owners), 'host-mapped pages carry their host state');
  const guest = stage2Map(p, { root: 0 });
  assert.equal(guest.ownership, 'guest');
  p.dispose();
});

test('stage-2 map: 16K and 64K granules give 2048 and 8192 entries per table; a 52-bit LPA2 IPA concatenates 16 level-0 tables', () => {
  // Scenarios run 4K VMs; other granules come straight from the engine behind a minimal program.
  for (const [granule, n, lpa2, ipaBits] of [['16k', 2048, false, 40], ['64k', 8192, false, 40], ['4k', 512, true, 52]] as const) {
    const vm = new Arm64Vm({ granule, ipaBits, lpa2 });
    vm.addMemslot({ gpa: 0x4000_0000, size: 0x4000_0000 });
    vm.access(0x4000_1000, 'read');
    const program = { state: () => ({ VM: { vm } }) } as unknown as DebugProgram;
    const m = parseToMap({ type: 'map', map: stage2Map(program, {}) });
    assert.ok(m && m.type === 'map', granule);
    assert.equal(m.map.entries, n);
    assert.equal(m.map.lpa2, lpa2);
    assert.ok(m.map.tables.every((t) => t.kinds.length === n));
    assert.ok(m.map.tables.map((t) => t.kinds).join('').includes('L'), `${granule}: the page is mapped`);
    // stage2_pgtable_levels(52) = ARM64_HW_PGTABLE_LEVELS(48) = 4: start at level 0, 16 concatenated pages.
    if (lpa2) assert.deepEqual([m.map.rootLevel, m.map.tables.filter((t) => t.parent === -1).length], [0, 16]);
    assert.equal(Math.max(...m.map.tables.map((t) => t.level)), 3);
  }
});
