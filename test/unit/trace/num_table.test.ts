import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NumTable } from '../../../src/trace/num_table';
import { FaultLoops } from '../../../src/trace/fault_loops';

/** xorshift32: the same sequence on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

test('NumTable behaves like a Map under random set/delete on clustered, aligned and 2^32+ keys', () => {
  const next = rng(7);
  // keys that collide in the fold: dense runs, multiples of 512 and 512^2, and values above 2^32 and 2^45
  const pool: number[] = [];
  for (let i = 0; i < 300; i++) pool.push(0x1000 + i, i * 512, i * 512 * 512, 0x1_0000_0000 * (i + 1) + 5, 2 ** 45 + i * 4096);
  const t = new NumTable(4);
  const m = new Map<number, number>();
  for (let step = 0; step < 40_000; step++) {
    const k = pool[next() % pool.length]!;
    const op = next() % 3;
    if (op < 2) {
      t.set(k, step);
      m.set(k, step);
    } else {
      assert.equal(t.delete(k), m.has(k) ? m.get(k)! : -1);
      m.delete(k);
    }
    if (step % 997 === 0) {
      assert.equal(t.size, m.size);
      for (const key of pool) assert.equal(t.get(key), m.has(key) ? m.get(key)! : -1, `key ${key} at step ${step}`);
    }
  }
  const keys = Array.from(t.keyArray()).sort((a, b) => a - b);
  assert.deepEqual(keys, [...m.keys()].sort((a, b) => a - b));
  const inRange: number[] = [];
  t.keysInRange(0x1000, 0x1100, inRange);
  assert.deepEqual(inRange.sort((a, b) => a - b), keys.filter((k) => k >= 0x1000 && k < 0x1100));
  t.clear();
  assert.equal(t.size, 0);
  assert.equal(t.get(pool[0]!), -1);
});

test('FaultLoops: entries per (page, vCPU), eviction keeps repeat faulters and findings, top list order', () => {
  const L = new FaultLoops(4);
  const a = L.add(10, 0, 1);
  const b = L.add(10, 1, 2);
  L.total[a] = 5;
  L.total[b] = 1;
  const c = L.add(11, 0, 3);
  L.total[c] = 1;
  const d = L.add(12, 0, 4);
  L.total[d] = 1;
  L.finding[d] = 0;
  const e = L.add(13, 0, 5);
  L.total[e] = 1;
  assert.equal(L.find(10, 1), b);
  assert.equal(L.find(10, 2), -1);
  assert.equal(L.full(14), true);
  assert.equal(L.full(10), false);
  L.evict();
  // page 10 stays whole (one of its vCPUs repeated), 12 has a finding; 11 and 13 faulted once
  assert.equal(L.pages, 2);
  assert.equal(L.find(11, 0), -1);
  assert.equal(L.find(13, 0), -1);
  assert.equal(L.total[L.find(10, 0)], 5);
  assert.equal(L.total[L.find(10, 1)], 1);
  assert.equal(L.finding[L.find(12, 0)], 0);
  assert.deepEqual(L.top(2), [
    { vcpu: 0, page: 10, total: 5 },
    { vcpu: 1, page: 10, total: 1 },
  ]);
});
