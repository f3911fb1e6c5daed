/**
 * Checkpoints for reverse execution: engine snapshots taken while the program runs forward, so going back
 * restores the nearest one before the target and re-executes only from there.
 *
 * A checkpoint sits either at a step boundary (before the step's line stop, `sub` 0) or inside a long step
 * between two of its accesses (`sub` counts the program's between-access calls in that step, which is
 * deterministic under re-execution). The store is bounded in count and bytes: when over, it drops the
 * checkpoint whose neighbours are closest in execution time relative to its age, so recent history stays
 * dense and older history thins out roughly logarithmically. The first checkpoint (the program's start)
 * is never dropped.
 */
import type { Snapshot } from '../../engine/snapshot';

export interface Checkpoint {
  step: number;
  /** 0 at the step boundary; k > 0 before the k-th between-access call of the step. */
  sub: number;
  /** Probe hits counted in the step so far when probes were armed from its start; undefined if not. */
  hit: number | undefined;
  /** Index the next trace event gets. */
  event: number;
  /** Execution time (ms, pauses excluded) when it was taken: spacing and thinning. */
  clock: number;
  snap: Snapshot;
}

export function cmpKey(a: { step: number; sub: number }, b: { step: number; sub: number }): number {
  return a.step - b.step || a.sub - b.sub;
}

export class CheckpointStore {
  private readonly list: Checkpoint[] = [];
  private bytes = 0;

  constructor(
    private readonly maxCount = 64,
    private readonly maxBytes = 768 * 2 ** 20,
  ) {}

  get size(): number {
    return this.list.length;
  }

  all(): readonly Checkpoint[] {
    return this.list;
  }

  has(key: { step: number; sub: number }): boolean {
    return this.list.some((c) => cmpKey(c, key) === 0);
  }

  add(cp: Checkpoint): void {
    let i = this.list.length;
    while (i > 0 && cmpKey(this.list[i - 1]!, cp) > 0) i--;
    if (i > 0 && cmpKey(this.list[i - 1]!, cp) === 0) return;
    this.list.splice(i, 0, cp);
    this.bytes += cp.snap.bytes;
    while (this.list.length > 2 && (this.list.length > this.maxCount || this.bytes > this.maxBytes)) this.thin();
  }

  /** The latest checkpoint (by position) satisfying `ok`. */
  latest(ok: (c: Checkpoint) => boolean): Checkpoint | undefined {
    for (let i = this.list.length - 1; i >= 0; i--) if (ok(this.list[i]!)) return this.list[i];
    return undefined;
  }

  /** The first checkpoint after `key`. */
  after(key: { step: number; sub: number }): Checkpoint | undefined {
    return this.list.find((c) => cmpKey(c, key) > 0);
  }

  clear(): void {
    this.list.length = 0;
    this.bytes = 0;
  }

  private thin(): void {
    const l = this.list;
    const now = Math.max(...l.map((c) => c.clock));
    let best = -1;
    let bestScore = Infinity;
    for (let i = 1; i < l.length - 1; i++) {
      const score = (l[i + 1]!.clock - l[i - 1]!.clock + 1) / (now - l[i]!.clock + 1);
      if (score < bestScore) {
        bestScore = score;
        best = i;
      }
    }
    const [gone] = l.splice(best, 1);
    this.bytes -= gone!.snap.bytes;
  }
}
