/** "Where is GFN X?" panel protocol: input parsing and validation of both directions. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFromWhere, parseGfnText, parseToWhere } from '../../../webview/shared/where_protocol';

test('a gfn is hex; "gpa X" is an address shifted by the page size', () => {
  assert.equal(parseGfnText('0x1f'), '0x1f');
  assert.equal(parseGfnText('1F'), '0x1f');
  assert.equal(parseGfnText('gpa 0x1000'), '0x1');
  assert.equal(parseGfnText('0x3fe00000 gpa'), '0x3fe00');
  assert.equal(parseGfnText('ipa 0x100000'), '0x100');
  assert.equal(parseGfnText('gpa 0xfff'), '0x0');
  assert.equal(parseGfnText('0x10000000000000'), undefined, 'a gfn has at most 52 bits');
  assert.equal(parseGfnText('hello'), undefined);
  assert.equal(parseGfnText(''), undefined);
});

test('messages: malformed ones are refused, decode rows keep their request', () => {
  assert.equal(parseFromWhere({ type: 'lookup', text: 'x'.repeat(500) }), undefined);
  assert.deepEqual(parseFromWhere({ type: 'ready', gfn: '0x1' }), { type: 'ready', gfn: '0x1' });
  assert.deepEqual(parseFromWhere({ type: 'ready', gfn: '<img>' }), { type: 'ready' });
  assert.equal(parseFromWhere({ type: 'decode', request: { kind: 'rm -rf', value: '0x1', level: 1 } }), undefined);
  const good = { type: 'answer', answer: { gfn: '0x1', gpa: '0x1000', sections: [{ title: 's', rows: [{ key: 'k', value: 'v', decode: { kind: 'ept-spte', value: '0x907', level: 4 } }] }] } };
  const p = parseToWhere(good);
  assert.ok(p && p.type === 'answer');
  assert.deepEqual(p.answer.sections[0].rows[0].decode, { kind: 'ept-spte', value: '0x907', level: 4 });
  assert.equal(parseToWhere({ type: 'answer', answer: { gfn: '0x1', gpa: '0x1000', sections: [{ title: 's', rows: [{ key: 1 }] }] } }), undefined);
});
