import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventWindow, trace, type TraceEvent } from '../../../../src/engine/trace_sink';
import { formatTracepoint, halvesToValue, tracepointShape } from '../../../../src/engine/tracepoints/index';

const SPTE_CHANGED = tracepointShape('kvm_tdp_mmu_spte_changed', ['as_id', 'gfn', 'level', 'old_spte:u64', 'new_spte:u64']);
const SET_SPTE = tracepointShape('kvm_mmu_set_spte', ['gfn', 'spte:u64', 'sptep', 'level', 'r:bool', 'x:bool', 'u']);

function capture(fn: () => void): TraceEvent[] {
  const out: TraceEvent[] = [];
  const off = trace.subscribe((e) => out.push(e));
  try {
    fn();
  } finally {
    off();
  }
  return out;
}

test('a raw record has the fields and text of the object form (hex strings above 2^53, booleans, negatives)', () => {
  const halves: Array<[number, number]> = [[0, 0], [0x3ec7cb77, 0x0010_0000], [0xffff_ffff, 0x001f_ffff], [0, 0x8000_0000], [0x3ec7cb77 | 0, 0x8600_0010 | 0], [0xdead_beef, 0xffff_ffff]];
  for (const [lo, hi] of halves) {
    const [a, b] = capture(() => {
      trace.emitRaw(SPTE_CHANGED, 1, [0, 0x3ec7c, 1, lo, hi, hi, lo]);
      trace.emitRaw(SET_SPTE, 0, [0x3ec7c, lo, hi, 0x401f93e0, 1, 1, 0, -1]);
    });
    const want = { as_id: 0, gfn: 0x3ec7c, level: 1, old_spte: halvesToValue(lo, hi), new_spte: halvesToValue(hi, lo) };
    assert.deepEqual(a!.fields, want);
    assert.deepEqual(Object.keys(a!.fields), Object.keys(want));
    assert.equal(a!.text, formatTracepoint('kvm_tdp_mmu_spte_changed', want));
    const want2 = { gfn: 0x3ec7c, spte: halvesToValue(lo, hi), sptep: 0x401f93e0, level: 1, r: true, x: false, u: -1 };
    assert.deepEqual(b!.fields, want2);
    assert.equal(b!.text, formatTracepoint('kvm_mmu_set_spte', want2));
    assert.equal(b!.system, 'kvmmmu');
  }
});

test('the event window rebuilds equal events from its columns and keeps other events as they are', () => {
  const w = new EventWindow(4);
  const events = capture(() => {
    trace.emitRaw(SPTE_CHANGED, 2, [1, 0x123, 2, 0, 0x8000_0000, 0x1234_5000, 0x8600_0000]);
    trace.emitLazy('kvmmmu', 'kvm_mmu_spte_requested', 0, { gfn: 5, pfn: 6, level: 1 }, formatTracepoint);
    trace.emitRaw(SET_SPTE, 0, [7, 0x7000, 0, 0x1000, 1, 0, 1, 1]);
  });
  events.forEach((e, i) => w.set(i, e));
  events.forEach((e, i) => {
    const g = w.get(i)!;
    assert.equal(g.index, e.index);
    assert.equal(g.name, e.name);
    assert.equal(g.system, e.system);
    assert.equal(g.vcpu, e.vcpu);
    assert.deepEqual(g.fields, e.fields);
    assert.equal(g.text, e.text);
  });
  assert.equal(w.get(1), events[1]);
  // A slot reused by a raw record no longer holds the object it held.
  w.set(1, events[0]!);
  assert.notEqual(w.get(1), events[1]);
  assert.equal(w.get(1)!.text, events[0]!.text);
  w.clear();
  assert.equal(w.get(0), undefined);
});

test('a shape naming a field the format file lacks is refused at load', () => {
  assert.throws(() => tracepointShape('kvm_mmu_set_spte', ['gfn', 'nope']), /no field nope/);
});
