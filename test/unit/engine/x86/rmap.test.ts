/**
 * pte_list_desc rmaps (kvm-x86-mmu.md 4.9): head encoding (empty / single sptep / many), the head
 * descriptor being the only partly filled one, tail_count bookkeeping and removal that fills the hole
 * with the head's last entry. The model is a plain multiset.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  PTE_LIST_EXT,
  PteListDescPool,
  pte_list_add,
  pte_list_count,
  pte_list_entries,
  pte_list_free_all,
  pte_list_remove,
  sptep_index,
  sptep_of,
  sptep_pfn,
} from '../../../../src/engine/x86/rmap';

test('PTE_LIST_EXT is 14 and sptep numbers round-trip pfn and index', () => {
  assert.equal(PTE_LIST_EXT, 14);
  const s = sptep_of(0x40123, 511);
  assert.equal(sptep_pfn(s), 0x40123);
  assert.equal(sptep_index(s), 511);
});

test('head encoding: empty, single sptep, then a descriptor; add returns the previous count', () => {
  const pool = new PteListDescPool(2);
  const res = { head: 0 };
  assert.equal(pte_list_add(pool, 0, 100, res), 0);
  assert.equal(res.head, 100, 'a single entry is stored in the head itself');
  assert.equal(pool.live, 0);
  assert.equal(pte_list_add(pool, res.head, 101, res), 1);
  assert.ok(res.head < 0, 'two entries need a descriptor (the many flag)');
  assert.equal(pool.live, 1);
  for (let i = 2; i < PTE_LIST_EXT; i++) assert.equal(pte_list_add(pool, res.head, 100 + i, res), i);
  assert.equal(pool.live, 1, 'fourteen entries fit one descriptor');
  assert.equal(pte_list_add(pool, res.head, 200, res), PTE_LIST_EXT);
  assert.equal(pool.live, 2, 'the 15th entry opens a new head descriptor');
  const d = -res.head - 1;
  assert.equal(pool.spte_count[d], 1);
  assert.equal(pool.tail_count[d], PTE_LIST_EXT);
  assert.equal(pte_list_count(pool, res.head), PTE_LIST_EXT + 1);
});

test('removing from a full tail moves the head descriptor\'s last entry into the hole; an emptied head is freed', () => {
  const pool = new PteListDescPool();
  const res = { head: 0 };
  let head = 0;
  for (let i = 1; i <= PTE_LIST_EXT + 2; i++) {
    pte_list_add(pool, head, i, res);
    head = res.head;
  }
  // Head descriptor holds 15, 16; the tail holds 1..14.
  head = pte_list_remove(pool, head, 3);
  assert.deepEqual(pte_list_entries(pool, head).sort((a, b) => a - b), [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const tail = pool.more[-head - 1]! - 1;
  assert.equal(pool.sptes[tail * PTE_LIST_EXT + 2], 16, 'the hole at index 2 of the tail got the head\'s last entry');
  head = pte_list_remove(pool, head, 15);
  assert.equal(pool.live, 1, 'the emptied head descriptor was freed; the full tail is the head now');
  assert.equal(pte_list_count(pool, head), PTE_LIST_EXT);
  assert.throws(() => pte_list_remove(pool, head, 999));
});

test('property: add/remove sequences match a multiset; only the head descriptor is partial', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 60 })), { maxLength: 300 }), (ops) => {
      const pool = new PteListDescPool(1);
      const res = { head: 0 };
      let head = 0;
      const model: number[] = [];
      for (const [add, v] of ops) {
        if (add || model.length === 0) {
          if (model.includes(v)) continue;
          const before = pte_list_count(pool, head);
          const r = pte_list_add(pool, head, v, res);
          head = res.head;
          assert.equal(r, before, 'returns the entries already present');
          model.push(v);
        } else {
          const x = model[v % model.length]!;
          head = pte_list_remove(pool, head, x);
          model.splice(model.indexOf(x), 1);
        }
        assert.equal(pte_list_count(pool, head), model.length);
        assert.deepEqual(pte_list_entries(pool, head).sort((a, b) => a - b), [...model].sort((a, b) => a - b));
        if (head < 0) {
          let d = -head - 1;
          assert.ok(pool.spte_count[d]! >= 1);
          let tail = pool.more[d]!;
          let expectTail = pool.tail_count[d]!;
          while (tail !== 0) {
            d = tail - 1;
            assert.equal(pool.spte_count[d], PTE_LIST_EXT, 'tails are always full');
            assert.equal(pool.tail_count[d], expectTail - PTE_LIST_EXT);
            expectTail -= PTE_LIST_EXT;
            tail = pool.more[d]!;
          }
          assert.equal(expectTail, 0);
        }
      }
      pte_list_free_all(pool, head);
      assert.equal(pool.live, 0, 'no descriptor leaks');
    }),
    { numRuns: 200 },
  );
});
