import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CheckpointStore, type Checkpoint } from '../../../src/debug/worker/checkpoints';

function cp(step: number, sub: number, clock: number, bytes = 100): Checkpoint {
  return { step, sub, hit: 0, event: step * 1000 + sub, clock, snap: { bytes, objects: 1, restore: () => undefined } };
}

describe('checkpoint store', () => {
  it('keeps positions ordered and answers the latest one a target accepts', () => {
    const s = new CheckpointStore();
    s.add(cp(3, 0, 30));
    s.add(cp(1, 0, 10));
    s.add(cp(3, 512, 35));
    s.add(cp(3, 256, 32));
    s.add(cp(3, 256, 99)); // same position again: ignored
    assert.deepEqual(s.all().map((c) => [c.step, c.sub]), [[1, 0], [3, 0], [3, 256], [3, 512]]);
    assert.equal(s.latest((c) => c.event <= 3300)?.sub, 256);
    assert.equal(s.after({ step: 3, sub: 0 })?.sub, 256);
    assert.equal(s.latest((c) => c.step < 1), undefined);
  });

  it('stays within its count cap, keeps the start and the newest, and thins the past more than the present', () => {
    const s = new CheckpointStore(16);
    for (let i = 0; i < 400; i++) s.add(cp(i, 0, i * 10));
    const l = s.all();
    assert.equal(l.length, 16);
    assert.equal(l[0]!.step, 0, 'the start is never dropped');
    assert.equal(l[l.length - 1]!.step, 399, 'the newest is kept');
    const gaps = l.slice(1).map((c, i) => c.clock - l[i]!.clock);
    const oldHalf = gaps.slice(0, gaps.length >> 1).reduce((a, b) => a + b, 0);
    const newHalf = gaps.slice(gaps.length >> 1).reduce((a, b) => a + b, 0);
    assert.ok(oldHalf > 2 * newHalf, `older history is sparser (${gaps.join(' ')})`);
  });

  it('stays within its byte cap', () => {
    const s = new CheckpointStore(1000, 5000);
    for (let i = 0; i < 100; i++) s.add(cp(i, 0, i, 1000));
    assert.ok(s.all().reduce((a, c) => a + c.snap.bytes, 0) <= 5000);
    assert.equal(s.all()[0]!.step, 0);
  });
});
