import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { completionsAt, hoverAt } from '../../../src/scenario/editor';

const labels = (text: string, line: number, col: number) => completionsAt(text, line, col).map((c) => c.label);

describe('editor completions', () => {
  it('at the start of a line: statement keywords, filtered by what is typed', () => {
    const all = labels('', 1, 1);
    for (const k of ['vm', 'param', 'KVM_SET_USER_MEMORY_REGION2', 'guest', 'expect', '__pkvm_host_share_hyp', 'include']) assert.ok(all.includes(k), k);
    assert.deepEqual(labels('KVM_SET_U', 1, 10), ['KVM_SET_USER_MEMORY_REGION2']);
  });

  it('after a group word: the second words', () => {
    assert.deepEqual(labels('expect sp', 1, 10).sort(), ['sp', 'spte']);
    assert.ok(labels('guest ', 1, 7).includes('write_pte'));
  });

  it('arguments not given yet, bare words, and values after name=', () => {
    const l = labels('KVM_SET_USER_MEMORY_REGION2 slot=0 ', 1, 36);
    assert.ok(l.includes('size') && l.includes('backing') && !l.includes('slot'));
    assert.ok(labels('guest read gpa=0 ', 1, 18).includes('user'));
    assert.deepEqual(labels('KVM_SET_USER_MEMORY_REGION2 slot=0 backing=2', 1, 45), ['2M']);
    assert.deepEqual(labels('vm vendor=', 1, 11), ['intel', 'amd']);
    assert.deepEqual(labels('param nx_huge_pages=', 1, 21), ['auto', 'off', 'force', 'never', 'Y', 'N']);
    assert.deepEqual(labels('KVM_SET_USER_MEMORY_REGION2 flags=KVM_MEM_LOG_DIRTY_PAGES|KVM_MEM_R', 1, 68), ['KVM_MEM_READONLY']);
  });

  it('expect fields', () => {
    const l = labels('expect spte gpa=0x1000 ', 1, 24);
    assert.ok(l.includes('kind') && l.includes('mmu_writable') && !l.includes('gpa'));
  });

  it('nothing inside a comment', () => {
    assert.deepEqual(labels('vm # ', 1, 6), []);
  });
});

describe('editor hovers', () => {
  it('keyword, argument, alias and bare word', () => {
    const t = 'KVM_SET_USER_MEMORY_REGION2 slot=0 guest_phys_addr=0 size=4K\nguest read gpa=0 user';
    const k = hoverAt(t, 1, 5)!;
    assert.deepEqual([k.col, k.endCol], [1, 28]);
    assert.match(k.text, /KVM_SET_USER_MEMORY_REGION2/);
    assert.match(hoverAt(t, 1, 40)!.text, /\*\*gpa\*\*/);
    const g = hoverAt(t, 2, 3)!;
    assert.deepEqual([g.col, g.endCol], [1, 11]);
    assert.match(hoverAt(t, 2, 19)!.text, /\*\*cpl\*\*/);
    assert.equal(hoverAt(t, 2, 40), undefined);
  });
});
