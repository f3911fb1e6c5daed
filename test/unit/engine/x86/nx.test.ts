import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, capture, slot, vm } from './fault_helpers';

const nxvm = (extra: Record<string, unknown> = {}) => vm({ params: { nx_huge_pages: 'on' }, ...extra });

test('NX on: an exec fault maps 4K (executable) and tracks the table that replaced the 2M page', () => {
  const v = nxvm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  const leaf = v.read_spte(0x201, 1)!;
  assert.equal(leaf.lo & 4, 4, 'X');
  assert.equal(v.stats().vm.pages_4k, 1);
  // Only the PT created at the 2M level (req_level 2 >= 2) is a possible NX huge page.
  assert.equal(v.stats().vm.nx_lpage_splits, 1);
  const pt = [...v.kvm.arch.possible_nx_huge_pages][0]!;
  assert.equal(pt.level, 1);
  assert.equal(pt.gfn, 0x200);
  assert.equal(pt.nx_huge_page_disallowed, true);
});

test('NX on with 1G hugetlb: an exec fault tracks both the PD and the PT', () => {
  const v = nxvm();
  slot(v, 0, 0, 2 * GiB, { backing: '1g-hugetlb', pfn_base: 0x100_0000 });
  v.access(0, 0x4000_3000, 'exec');
  assert.equal(v.stats().vm.nx_lpage_splits, 2);
});

test('NX on: a later read in the same 2M range steps down under the NX-split table (disallowed_hugepage_adjust)', () => {
  const v = nxvm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  const c = capture();
  v.access(0, 0x20_5000, 'read');
  c.stop();
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.stats().vm.pages_4k, 2);
  // The request was for 2M; the adjustment happens during the walk, after the trace.
  const req = c.events.find((e) => e.name === 'kvm_mmu_spte_requested')!;
  assert.match(req.text, / level 2$/);
});

test('NX on: a non-exec fault maps 2M but the huge leaf is not executable', () => {
  const v = nxvm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x40_0000, 'read');
  const s = v.read_spte(0x400, 2)!;
  assert.equal(s.lo & 0x80, 0x80, 'PS');
  assert.equal(s.lo & 4, 0, 'no X on a huge leaf under the mitigation');
  // An exec fault on it: no fast path (not a write), slow path splits the 2M page and maps a 4K X leaf.
  v.access(0, 0x40_0000, 'exec');
  assert.equal(v.read_spte(0x400, 1)!.lo & 4, 4);
  assert.equal(v.stats().vm.pages_2m, 0);
  // The split table inherits the huge page's other 511 mappings.
  assert.equal(v.stats().vm.pages_4k, 512);
});

test('NX recovery zaps ceil(splits / ratio) tables; the next non-exec fault gets the huge page back', () => {
  const v = nxvm({ params: { nx_huge_pages: 'on', nx_huge_pages_recovery_ratio: 2 } });
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  for (let i = 0; i < 3; i++) v.access(0, (i + 1) * 0x20_0000, 'exec');
  assert.equal(v.stats().vm.nx_lpage_splits, 3);
  assert.equal(v.recover_nx_huge_pages(), 2); // ceil(3 / 2)
  assert.equal(v.stats().vm.nx_lpage_splits, 1);
  // The oldest two went first: the first two 2M ranges are unmapped now.
  assert.equal(v.read_spte(0x201, 1), undefined);
  assert.notEqual(v.read_spte(0x601, 1), undefined);
  v.access(0, 0x20_0000, 'read');
  assert.equal(v.stats().vm.pages_2m, 1);
});

test('NX recovery worker period: 3600000 / ratio ms by default', () => {
  const v = nxvm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  assert.equal(v.nx_recovery_tick(59_999), 0);
  assert.equal(v.nx_recovery_tick(60_000), 1);
  assert.equal(v.stats().vm.nx_lpage_splits, 0);
});

test('NX off: exec faults map huge executable pages and nothing is tracked', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  assert.equal(v.read_spte(0x200, 2)!.lo & 4, 4);
  assert.equal(v.stats().vm.nx_lpage_splits, 0);
});

test('turning the mitigation on zaps all roots fast', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  assert.equal(v.set_nx_huge_pages('on'), 0);
  assert.equal(v.kvm.arch.mmu_valid_gen, 1);
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.set_nx_huge_pages('never'), -16);
});

test('NX recovery only unaccounts tables in dirty-logged slots (they would come back as 4K anyway)', () => {
  const v = nxvm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_1000, 'exec');
  v.set_dirty_logging(0, true);
  assert.equal(v.recover_nx_huge_pages(), 1);
  assert.equal(v.stats().vm.nx_lpage_splits, 0);
  assert.notEqual(v.read_spte(0x201, 1)!.lo & 0x800, 0, 'the 4K mapping is still there');
  assert.equal(v.kvm.arch.possible_nx_huge_pages.size, 0);
});
