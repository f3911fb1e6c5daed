/** Page-Table Map protocol: validation and the level-column layout. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_H, BLOCK_GAP, BLOCK_W, COLUMN_GAP, blockSize, layout, pagesPerEntry, parseFromMap, parseToMap, walkPath, type MapData } from '../../../webview/shared/ptmap_protocol';

const empty = '.'.repeat(512);

function table(level: number, gfn: number, parent: number, kinds = empty): MapData['tables'][number] {
  return { pfn: 0x40000 + gfn, level, gfn, parent, parentIndex: parent < 0 ? -1 : 0, kinds };
}

test('one column per level, tables stacked in order', () => {
  const map: MapData = {
    format: 'ept', roots: [{ table: 0x40000, label: 'root' }], root: 0x40000, rootLevel: 4, truncated: false,
    tables: [table(4, 0, -1), table(3, 0, 0), table(2, 0, 1), table(1, 0, 2), table(1, 512, 2)],
  };
  const p = layout(map);
  assert.deepEqual(p.map((x) => x.x), [0, 1, 2, 3, 3].map((c) => c * (BLOCK_W + COLUMN_GAP)));
  assert.deepEqual(p.map((x) => x.y), [0, 0, 0, 0, BLOCK_H + BLOCK_GAP]);
});

test('an entry of a level-L table maps 512^(L-1) pages', () => {
  assert.equal(pagesPerEntry(1), 1);
  assert.equal(pagesPerEntry(2), 512);
  assert.equal(pagesPerEntry(4), 512 ** 3);
});

test('malformed maps and messages are refused', () => {
  const ok = { type: 'map', map: { format: 'ept', roots: [], root: 1, rootLevel: 4, truncated: false, tables: [table(4, 0, -1, 'T' + '.'.repeat(511))] } };
  assert.ok(parseToMap(ok));
  assert.equal(parseToMap({ ...ok, map: { ...ok.map, tables: [table(4, 0, -1, 'X'.repeat(512))] } }), undefined, 'unknown kind letter');
  assert.equal(parseToMap({ ...ok, map: { ...ok.map, tables: [table(4, 0, -1, 'T')] } }), undefined, 'not 512 entries');
  assert.deepEqual(parseFromMap({ type: 'where', gfn: 1 }), { type: 'where', gfn: 1 });
  assert.equal(parseFromMap({ type: 'where', gfn: -1 }), undefined);
  assert.equal(parseFromMap({ type: 'where', gfn: 2 ** 60 }), undefined);
});

test('a walk goes through the entry covering the gfn at each level, down table entries', () => {
  const kinds = (t: number[]) => [...'.'.repeat(512)].map((c, i) => (t.includes(i) ? 'T' : c)).join('');
  const leafAt = (i: number) => '.'.repeat(i) + 'L' + '.'.repeat(511 - i);
  const map: MapData = {
    format: 'ept', roots: [], root: 1, rootLevel: 4, truncated: false,
    tables: [
      { pfn: 1, level: 4, gfn: 0, parent: -1, parentIndex: -1, kinds: kinds([0]) },
      { pfn: 2, level: 3, gfn: 0, parent: 0, parentIndex: 0, kinds: kinds([1]) },
      { pfn: 3, level: 2, gfn: 0x40000, parent: 1, parentIndex: 1, kinds: kinds([3]) },
      { pfn: 4, level: 1, gfn: 0x40600, parent: 2, parentIndex: 3, kinds: leafAt(5) },
    ],
  };
  // gfn 0x40605: PML4[0] -> PDPT[1] -> PD[3] -> PT[5].
  assert.deepEqual(walkPath(map, 0x40605), [{ table: 0, entry: 0 }, { table: 1, entry: 1 }, { table: 2, entry: 3 }, { table: 3, entry: 5 }]);
  // A gfn under a non-table entry stops there.
  assert.deepEqual(walkPath(map, 0x80000), [{ table: 0, entry: 0 }, { table: 1, entry: 2 }]);
  // arm64 4K: levels count down to 3, a level-1 entry maps 2^18 pages.
  const s2: MapData = { ...map, rootLevel: 1, leafLevel: 3, tables: [{ pfn: 1, level: 1, gfn: 0, parent: -1, parentIndex: -1, kinds: kinds([1]) }, { pfn: 2, level: 2, gfn: 0x40000, parent: 0, parentIndex: 1, kinds: leafAt(0) }] };
  assert.deepEqual(walkPath(s2, 0x40001), [{ table: 0, entry: 1 }, { table: 1, entry: 0 }]);
});

test('granules lay tables out as wide blocks', () => {
  assert.deepEqual(blockSize(512), { w: 32, h: 16 });
  assert.deepEqual(blockSize(2048), { w: 64, h: 32 });
  assert.deepEqual(blockSize(8192), { w: 128, h: 64 });
});
