/**
 * The shadow bench workloads do what their metrics claim (counts only; timing belongs to kvm-mmu bench):
 * touching every 4K page in order takes one fault per group of PTE_PREFETCH_NUM gPTEs, FNAME(pte_prefetch)
 * maps the other seven, and the eager split turns every 2M SPTE into 4K ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shadowFaultIn, shadowEagerSplit } from '../../../../src/engine/x86/shadow_bench';
import { PTE_PREFETCH_NUM } from '../../../../src/engine/x86/shadow_mmu';

test('fault-in workload: faults taken are one per prefetch group, the rest is prefetched', () => {
  let settled = 0;
  const r = shadowFaultIn(() => 0, 8 << 20, () => settled++);
  assert.equal(settled, 1);
  assert.equal(r.pages, 2048);
  assert.equal(r.faults, 2048 / PTE_PREFETCH_NUM);
  assert.equal(r.prefetched, 2048 - 2048 / PTE_PREFETCH_NUM);
});

test('eager split workload: every 2M SPTE is split', () => {
  const r = shadowEagerSplit(() => 0, 64 << 20);
  assert.equal(r.huge_pages, 32);
  assert.equal(r.split_huge_pages, 32);
});
