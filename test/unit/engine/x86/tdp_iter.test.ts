import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MmuPagePool } from '../../../../src/engine/x86/mmu_page';
import { tdp_iter, tdp_iter_start, tdp_iter_next, gfn_round_for_level, spte_index_of_gfn } from '../../../../src/engine/x86/tdp_iter';

// A non-leaf SPTE by hand: bit 11 (MMU-present) | RWX | child table pfn << 12.
function link(pool: MmuPagePool, parentSp: ReturnType<MmuPagePool['alloc']>, idx: number, level: number) {
  const child = pool.alloc(level, 0, true);
  const pfn = child.spt_pfn;
  parentSp.spt[idx * 2] = ((pfn & 0xfffff) * 4096 + 0x807) >>> 0;
  parentSp.spt[idx * 2 + 1] = Math.floor(pfn / 0x100000);
  return child;
}

test('gfn rounding and index follow 9 bits per level', () => {
  assert.equal(gfn_round_for_level(0x12345, 2), 0x12200);
  assert.equal(gfn_round_for_level(0x12345, 3), 0x0);
  assert.equal(gfn_round_for_level(0x8_0004_0123, 3), 0x8_0004_0000);
  assert.equal(spte_index_of_gfn(0x12345, 1), 0x145);
  assert.equal(spte_index_of_gfn(0x12345, 2), 0x91);
  // GPA bit 47 (gfn bit 35) selects PML4 entry 256.
  assert.equal(spte_index_of_gfn(2 ** 35, 4), 256);
});

test('pre-order walk: every entry visited once, parents before children, step down only into present non-leaf', () => {
  const pool = new MmuPagePool();
  const root = pool.alloc(4, 0, true);
  const l3 = link(pool, root, 0, 3);
  const l2 = link(pool, l3, 1, 2);
  const it = new tdp_iter();
  const seen: string[] = [];
  for (tdp_iter_start(it, pool, root, 1, 0, 0); it.valid && it.gfn < 0x80000; tdp_iter_next(it)) seen.push(`${it.level}:${it.gfn.toString(16)}`);
  // Root entry 0 (gfn 0) -> l3 entry 0 (gfn 0), l3 entry 1 (gfn 0x40000) -> all 512 entries of l2 at level 2,
  // then l3 entry 2 (gfn 0x80000) stops the loop.
  assert.equal(seen[0], '4:0');
  assert.equal(seen[1], '3:0');
  assert.equal(seen[2], '3:40000');
  assert.equal(seen[3], '2:40000');
  assert.equal(seen[4], '2:40200');
  assert.equal(seen.length, 3 + 512);
  assert.equal(seen.at(-1), `2:${(0x40000 + 511 * 512).toString(16)}`);
  void l2;
});

test('min_level stops the descent', () => {
  const pool = new MmuPagePool();
  const root = pool.alloc(4, 0, true);
  const l3 = link(pool, root, 0, 3);
  link(pool, l3, 0, 2);
  const it = new tdp_iter();
  const levels = new Set<number>();
  for (tdp_iter_start(it, pool, root, 3, 0, 0); it.valid && it.gfn < 0x40000 * 4; tdp_iter_next(it)) levels.add(it.level);
  assert.deepEqual([...levels].sort(), [3, 4]);
});

test('yield restarts from the root at the last gfn reached', () => {
  const pool = new MmuPagePool();
  const root = pool.alloc(4, 0, true);
  const l3 = link(pool, root, 0, 3);
  link(pool, l3, 0, 2);
  const it = new tdp_iter();
  tdp_iter_start(it, pool, root, 1, 0, 0);
  tdp_iter_next(it); // 3:0
  tdp_iter_next(it); // 2:0
  tdp_iter_next(it); // 2:200
  assert.equal(it.level, 2);
  assert.equal(it.gfn, 0x200);
  it.yielded = true;
  tdp_iter_next(it);
  assert.equal(it.level, 4);
  assert.equal(it.gfn, 0);
  assert.equal(it.yielded_gfn, 0x200);
  tdp_iter_next(it);
  tdp_iter_next(it);
  assert.equal(`${String(it.level)}:${Number(it.gfn).toString(16)}`, "2:200");
});

test('gfn_bits index the shared half of the table but are not part of iter.gfn', () => {
  const pool = new MmuPagePool();
  const root = pool.alloc(4, 0, true);
  const shared = link(pool, root, 256, 3);
  const it = new tdp_iter();
  tdp_iter_start(it, pool, root, 1, 5, 2 ** 35);
  assert.equal(it.index, 256);
  tdp_iter_next(it);
  assert.equal(it.sp, shared);
  assert.equal(it.level, 3);
  assert.equal(it.gfn, 0);
  assert.equal(it.index, 0);
});
