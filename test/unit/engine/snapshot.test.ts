import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { onRestore, takeSnapshot, TrackedWeakMap } from '../../../src/engine/snapshot';
import { probes } from '../../../src/engine/probes';
import { trace } from '../../../src/engine/trace_sink';

class Node {
  next: Node | null = null;
  tags = new Set<string>();
  table = new Uint32Array(4);
  constructor(public v: number) {}
  /** A closure over `this`, as the engine stores callbacks. */
  read = (): number => this.v;
}

describe('engine snapshot', () => {
  it('restores fields, arrays, Maps, Sets, typed arrays and cycles in place, keeping identity', () => {
    const a = new Node(1);
    const b = new Node(2);
    a.next = b;
    b.next = a;
    const list = [a, b];
    const byName = new Map<string, Node>([['a', a]]);
    const root = { list, byName, big: 5n };
    const snap = takeSnapshot([root]);
    a.v = 10;
    a.tags.add('x');
    b.table[2] = 7;
    list.push(new Node(3));
    byName.set('b', b);
    byName.delete('a');
    (a as unknown as Record<string, unknown>)['extra'] = 1;
    root.big = 6n;
    b.next = null;
    snap.restore();
    assert.equal(a.v, 1);
    assert.equal(a.read(), 1, 'the closure sees the restored object');
    assert.equal(a.tags.size, 0);
    assert.deepEqual([...b.table], [0, 0, 0, 0]);
    assert.equal(list.length, 2);
    assert.deepEqual([...byName.keys()], ['a']);
    assert.equal(byName.get('a'), a);
    assert.equal('extra' in a, false);
    assert.equal(root.big, 5n);
    assert.equal(b.next, a);
    assert.ok(snap.objects >= 6 && snap.bytes > 0);
  });

  it('restores side tables for reached keys only, and the trace and probe counters', () => {
    const side = new TrackedWeakMap<object, { n: number }>();
    const mine = { id: 1 };
    const other = { id: 2 };
    side.set(mine, { n: 1 });
    const snap = takeSnapshot([mine]);
    const pos = trace.position;
    const count = probes.count;
    side.get(mine)!.n = 5;
    const later = { id: 3 };
    side.set(other, { n: 9 });
    side.set(later, { n: 3 });
    trace.seek(pos + 100);
    probes.count = count + 7;
    let hooked = 0;
    onRestore(() => hooked++);
    snap.restore();
    assert.equal(side.get(mine)!.n, 1);
    assert.equal(side.get(other)!.n, 9, 'a key the snapshot did not reach is left alone');
    assert.equal(trace.position, pos);
    assert.equal(probes.count, count);
    assert.equal(hooked, 1);
  });

  it('deletes side-table entries added after the snapshot for reached keys', () => {
    const side = new TrackedWeakMap<object, number>();
    const k = {};
    const prior = {};
    side.set(prior, 0);
    const snap = takeSnapshot([k, prior]);
    side.set(k, 1);
    snap.restore();
    assert.equal(side.has(k), false);
    assert.equal(side.get(prior), 0);
  });

  it('writes back only the fields and elements that differ, and exactly what was recorded', () => {
    let stores = 0;
    let inner = 1;
    const o: Record<string, unknown> = { a: 1, z: 0, gone: undefined };
    Object.defineProperty(o, 'watched', { enumerable: true, configurable: true, get: () => inner, set: (v: number) => { stores++; inner = v; } });
    const arr: unknown[] = [1, -0, undefined];
    const snap = takeSnapshot([o, arr]);
    snap.restore();
    assert.equal(stores, 0, 'an unchanged field is not stored to');
    inner = 2;
    o['z'] = -0;
    delete o['gone'];
    arr[1] = 0;
    delete arr[2];
    snap.restore();
    assert.equal(stores, 1);
    assert.equal(o['watched'], 1);
    assert.ok(Object.is(o['z'], 0), '-0 is not taken for the recorded 0');
    assert.ok(Object.hasOwn(o, 'gone'), 'a deleted field whose value was undefined comes back');
    assert.ok(Object.is(arr[1], -0));
    assert.ok(2 in arr, 'an emptied element comes back');
    assert.deepEqual(Object.keys(o), ['a', 'z', 'watched', 'gone']);
  });

  it('shares unchanged typed-array copies with a base snapshot and still restores each one exactly', () => {
    const tables = [new Uint32Array([1, 2, 3]), new Uint32Array([4, 5, 6]), new Float64Array([0.5])];
    const first = takeSnapshot([tables]);
    tables[1]![2] = 60;
    const second = takeSnapshot([tables], { base: first });
    assert.equal(second.bytes < first.bytes, true, 'only the changed table is copied again');
    tables[0]![0] = 100;
    tables[1]![0] = 40;
    tables[2]![0] = 9;
    second.restore();
    assert.deepEqual(tables.map((t) => [...t]), [[1, 2, 3], [4, 5, 60], [0.5]]);
    first.restore();
    assert.deepEqual(tables.map((t) => [...t]), [[1, 2, 3], [4, 5, 6], [0.5]]);
  });
});
