import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, capture, slot, vm } from './fault_helpers';
import { X86Vm } from '../../../../src/engine/x86/index';

const W = 2;
const MMU_WRITABLE_HI = 1 << (58 - 32);
const D = 1 << 9;

test('enabling dirty logging eagerly splits a 2M mapping into 512 write-protected 4K SPTEs and flushes', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  assert.equal(v.stats().vm.pages_2m, 1);
  v.kvm.flush_log.length = 0;
  const c = capture();
  assert.equal(v.set_dirty_logging(0, true), 0);
  c.stop();
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.stats().vm.pages_4k, 512);
  const split = c.events.find((e) => e.name === 'kvm_mmu_split_huge_page')!;
  assert.match(split.text, /^gfn 200 spte [0-9a-f]+ level 2 errno 0$/);
  for (const g of [0x200, 0x2ff, 0x3ff]) {
    const s = v.read_spte(g, 1)!;
    assert.equal(s.lo & W, 0);
    assert.notEqual(s.hi & MMU_WRITABLE_HI, 0);
    assert.equal(s.pfn, 0x40_0000 + g);
  }
  assert.deepEqual(v.kvm.flush_log, [{ kind: 'memslot', gfn: 0, pages: 0x40000 }]);
});

test('dirty bitmap: writes are logged, KVM_GET_DIRTY_LOG returns and clears them and re-protects', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  for (const g of [1, 2, 70]) v.access(0, g * 0x1000, 'write');
  v.set_dirty_logging(0, true);
  v.access(0, 0x2000, 'write'); // fast path: W set again, bit 2 logged
  v.access(0, 0x5000, 'write'); // new mapping: make_spte logs bit 5
  v.access(0, 70 * 0x1000, 'read'); // reads log nothing
  const bm = v.get_dirty_log(0) as Uint32Array;
  assert.deepEqual(X86Vm.dirty_pages(bm, 0x40000), [2, 5]);
  assert.equal(v.read_spte(2, 1)!.lo & W, 0, 're-protected');
  assert.equal(v.read_spte(5, 1)!.lo & W, 0);
  const again = v.get_dirty_log(0) as Uint32Array;
  assert.deepEqual(X86Vm.dirty_pages(again, 0x40000), []);
});

test('KVM_GET_DIRTY_LOG errors: unknown slot, slot without logging', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  assert.equal(v.get_dirty_log(3), -2);
  assert.equal(v.get_dirty_log(0), -2);
  assert.equal(v.get_dirty_log(5 << 16), -22);
});

test('manual protect: GET leaves bits and protection alone; CLEAR clears the given bits and re-protects', () => {
  const v = vm();
  assert.equal(v.enable_manual_dirty_log_protect(1), 0);
  slot(v, 0, 0, GiB);
  v.access(0, 0x3000, 'write');
  v.access(0, 0x4000, 'write');
  v.set_dirty_logging(0, true);
  v.access(0, 0x3000, 'write');
  v.access(0, 0x4000, 'write');
  const bm = v.get_dirty_log(0) as Uint32Array;
  assert.deepEqual(X86Vm.dirty_pages(bm, 64), [3, 4]);
  assert.notEqual(v.read_spte(3, 1)!.lo & W, 0, 'still writable after GET');
  assert.equal(v.clear_dirty_log(0, 0, 64, new Uint32Array([1 << 3, 0])), 0);
  assert.equal(v.read_spte(3, 1)!.lo & W, 0);
  assert.notEqual(v.read_spte(4, 1)!.lo & W, 0);
  assert.deepEqual(X86Vm.dirty_pages(v.get_dirty_log(0) as Uint32Array, 64), [4]);
  assert.equal(v.clear_dirty_log(0, 1, 64, new Uint32Array(2)), -22, 'first_page must be 64-aligned');
});

test('manual protect + initially set: enabling logging leaves mappings; CLEAR write-protects the 2M page and splits it', () => {
  const v = vm();
  v.enable_manual_dirty_log_protect(3);
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  v.set_dirty_logging(0, true);
  assert.equal(v.stats().vm.pages_2m, 1, 'nothing done at enable time');
  assert.deepEqual(X86Vm.dirty_pages(v.get_dirty_log(0) as Uint32Array, 2), [0, 1], 'bitmap starts all set');
  assert.equal(v.clear_dirty_log(0, 0x200, 64, new Uint32Array([1, 0])), 0);
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.read_spte(0x200, 1)!.lo & W, 0);
  assert.notEqual(v.read_spte(0x201, 1)!.lo & W, 0, 'only the cleared page is re-protected');
});

test('without eager splitting the huge page is write-protected; a write is refused by the fast path and split by the fault', () => {
  const v = vm({ params: { eager_page_split: false } });
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  v.set_dirty_logging(0, true);
  assert.equal(v.stats().vm.pages_2m, 1);
  assert.equal(v.read_spte(0x200, 2)!.lo & W, 0);
  const c = capture();
  const r = v.access(0, 0x20_3000, 'write');
  c.stop();
  assert.equal(r.outcome, 'fixed');
  assert.equal(v.stats().vcpus[0]!.pf_fast, 0);
  assert.match(c.events.find((e) => e.name === 'fast_page_fault')!.text, /spurious 0 fixed 0$/);
  assert.equal(c.events.some((e) => e.name === 'kvm_mmu_split_huge_page'), true);
  assert.notEqual(v.read_spte(0x203, 1)!.lo & W, 0);
  assert.equal(v.read_spte(0x204, 1)!.lo & W, 0, 'siblings keep the huge SPTE\'s (protected) bits');
  assert.deepEqual(X86Vm.dirty_pages(v.get_dirty_log(0) as Uint32Array, 0x400), [0x203]);
});

test('PML: logging clears D instead of W; a hardware write sets D and logs the page', () => {
  const v = vm({ vendor_config: { pml: true } });
  slot(v, 0, 0, GiB);
  v.access(0, 0x6000, 'write');
  v.set_dirty_logging(0, true);
  const s = v.read_spte(6, 1)!;
  assert.notEqual(s.lo & W, 0, 'still writable');
  assert.equal(s.lo & D, 0, 'D cleared');
  assert.equal(v.access(0, 0x6000, 'write').exit, 'none');
  assert.notEqual(v.read_spte(6, 1)!.lo & D, 0);
  assert.deepEqual(X86Vm.dirty_pages(v.get_dirty_log(0) as Uint32Array, 64), [6]);
  assert.equal(v.read_spte(6, 1)!.lo & D, 0, 'GET re-arms by clearing D');
});

test('disabling dirty logging recovers the huge page', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  v.set_dirty_logging(0, true);
  assert.equal(v.stats().vm.pages_4k, 512);
  v.kvm.flush_log.length = 0;
  v.set_dirty_logging(0, false);
  assert.equal(v.stats().vm.pages_2m, 1);
  assert.equal(v.stats().vm.pages_4k, 0);
  const s = v.read_spte(0x200, 2)!;
  assert.equal(s.lo & 0x80, 0x80);
  assert.equal(s.pfn, 0x40_0200);
  assert.deepEqual(v.kvm.flush_log, [{ kind: 'memslot', gfn: 0, pages: 0x40000 }]);
});

test('aging with A/D: clear_young clears A and reports young; test_young sees the next access', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x9000, 'read');
  const hva = 0x7f00_0000_0000 + 0x9000;
  assert.equal(v.notifier_age(hva, hva + 4096, 'test_young'), true);
  const c = capture();
  assert.equal(v.notifier_age(hva, hva + 4096, 'clear_flush_young'), true);
  c.stop();
  assert.equal(c.events[0]!.text, 'mmu notifier age hva: 0x007f0000009000 -- 0x007f000000a000');
  assert.equal(v.read_spte(9, 1)!.lo & 0x100, 0);
  assert.equal(v.notifier_age(hva, hva + 4096, 'test_young'), false);
  v.access(0, 0x9000, 'read'); // the CPU sets A again
  assert.equal(v.notifier_age(hva, hva + 4096, 'test_young'), true);
});

test('eager split: an allocation failure traces errno -ENOMEM and leaves the remaining huge pages for the fault path', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  v.access(0, 0x20_0000, 'write');
  v.access(0, 0x40_0000, 'write');
  v.kvm.split_alloc_fails = 1;
  const c = capture();
  v.set_dirty_logging(0, true);
  c.stop();
  const ev = c.events.filter((e) => e.name === 'kvm_mmu_split_huge_page');
  assert.equal(ev.length, 1);
  assert.match(ev[0]!.text, /^gfn 200 spte [0-9a-f]+ level 2 errno -12$/);
  // Both huge pages stay, write-protected: the 4K pass of remove_write_access covers huge leaves too.
  assert.equal(v.stats().vm.pages_2m, 2);
  assert.equal(v.read_spte(0x200, 2)!.lo & W, 0);
  assert.equal(v.read_spte(0x400, 2)!.lo & W, 0);
});
