/** Page-Table Map protocol: validation and the level-column layout. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_H, BLOCK_GAP, BLOCK_W, COLUMN_GAP, layout, pagesPerEntry, parseFromMap, parseToMap, type MapData } from '../../../webview/shared/ptmap_protocol';

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
