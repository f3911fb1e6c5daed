import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '../../../../src/engine/x86/vm';
import { KVM_MEM_GUEST_MEMFD } from '../../../../src/engine/x86/memslot';
import { probes } from '../../../../src/engine/probes';
import { KVM_FILTER_PRIVATE, KVM_X86_DEFAULT_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM, kvm_private_ctx } from '../../../../src/engine/kvm/attributes';
import {
  FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GUEST_MEMFD_FLAG_MMAP, kvm_gmem_bind, kvm_gmem_create, kvm_gmem_fallocate, kvm_gmem_file,
  kvm_gmem_get_pfn, kvm_gmem_release, type GmemPfn,
} from '../../../../src/engine/kvm/guest_memfd';
import { pk, recordingMmu, vmWithGmemSlot } from './private_helpers';

const BASE = 0x100000;
const out = (): GmemPfn => ({ pfn: -1, max_order: -1 });

/** Install vendor hooks that record prepare/invalidate calls. */
function recordingArch(kvm: Kvm) {
  const log: Array<[string, number, number, number]> = [];
  kvm_private_ctx(pk(kvm)).arch = {
    gmem_prepare: (_k, pfn, gfn, order) => {
      log.push(['prepare', gfn, pfn, order]);
      return 0;
    },
    gmem_invalidate: (_k, start, end) => {
      log.push(['invalidate', start, end, 0]);
    },
    gmem_max_mapping_level: () => 0,
  };
  return log;
}

test('KVM_CREATE_GUEST_MEMFD argument checks', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
  assert.equal(kvm_gmem_create(pk(kvm), { size: 0, flags: 0 }), -22);
  assert.equal(kvm_gmem_create(pk(kvm), { size: 4095, flags: 0 }), -22);
  // An SNP VM's guest_memfd cannot be mmap()ed by the host.
  assert.equal(kvm_gmem_create(pk(kvm), { size: 1 << 21, flags: GUEST_MEMFD_FLAG_MMAP }), -22);
  const fd = kvm_gmem_create(pk(kvm), { size: 1 << 21, flags: 0 });
  assert.ok(fd >= 0);
  assert.equal(kvm_gmem_file(pk(kvm), fd)!.npages, 512);
  const plain = new Kvm({ vendor: 'svm', vm_type: KVM_X86_DEFAULT_VM });
  assert.ok(kvm_gmem_create(pk(plain), { size: 1 << 21, flags: GUEST_MEMFD_FLAG_MMAP }) >= 0);
});

test('binding checks at KVM_SET_USER_MEMORY_REGION2: range inside the file, page-aligned offset, no overlap', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
  const fd = kvm_gmem_create(pk(kvm), { size: 12 << 20, flags: 0 });
  const mk = (id: number, gfn: number, npages: number, offset: number) =>
    kvm.kvm_set_memory_region({ slot: id, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gfn * 4096, memory_size: npages * 4096, userspace_addr: 0x7f00_0000_0000 + gfn * 4096, guest_memfd: fd, guest_memfd_offset: offset });
  assert.equal(mk(0, BASE, 512, 0), 0);
  assert.equal(mk(1, BASE + 0x1000, 512, 4096 * 100), -17, 'overlaps slot 0 in the file');
  assert.equal(mk(1, BASE + 0x1000, 512, 4096 * 512 + 1), -22, 'offset not page aligned');
  assert.equal(mk(2, BASE + 0x2000, 1024, 4096 * 2560), -22, 'beyond the end of the file');
  assert.equal(kvm.memslots[0]!.slots.length, 1, 'a failed bind creates no slot');
  assert.equal(mk(1, BASE + 0x1000, 512, 4096 * 512), 0);
  assert.equal(mk(2, BASE + 0x2000, 1024, 4096 * 1024), 0);
  assert.equal(mk(3, BASE + 0x3000, 1, 0), -17, 'the file is fully bound');
  assert.equal(kvm_gmem_bind(pk(kvm), kvm.memslots[0]!.byId(0)!, fd, 0), -17, 'slot 0 is bound already');
});

test('order-0 folios: pfn by file offset, max_order 0, prepared exactly once with the folio gfn/pfn', () => {
  const { kvm, fd } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 4 << 20, { offset: 8192, fileSize: 8 << 20 });
  const log = recordingArch(kvm);
  const f = kvm_gmem_file(pk(kvm), fd)!;
  const slot = kvm.memslots[0]!.slots[0]!;
  const o = out();
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 0x123, o), 0);
  assert.equal(o.pfn, f.pfn_base + 0x123 + 2);
  assert.equal(o.max_order, 0);
  assert.deepEqual(log, [['prepare', BASE + 0x123, f.pfn_base + 0x125, 0]]);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 0x123, o), 0);
  assert.equal(log.length, 1);
  assert.equal(f.pages_zeroed, 1);
});

test('huge folios: max_order 9 only when the folio is congruent with the slot and inside it', () => {
  const v = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 4 << 20, { huge: true });
  const log = recordingArch(v.kvm);
  const f = kvm_gmem_file(pk(v.kvm), v.fd)!;
  const o = out();
  assert.equal(kvm_gmem_get_pfn(pk(v.kvm), v.slot, BASE + 0x2a7, o), 0);
  assert.equal(o.max_order, 9);
  assert.equal(o.pfn, f.pfn_base + 0x2a7);
  // The prepare hook sees the whole folio: gfn and pfn aligned down to its head.
  assert.deepEqual(log, [['prepare', BASE + 0x200, f.pfn_base + 0x200, 9]]);
  assert.equal(f.pages_zeroed, 512);

  // Bound one page off: the folio's gfns are not 2M-aligned, so KVM may only map 4K.
  const w = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 4 << 20, { huge: true, offset: 4096, fileSize: 8 << 20 });
  recordingArch(w.kvm);
  assert.equal(kvm_gmem_get_pfn(pk(w.kvm), w.slot, BASE + 0x2a7, o), 0);
  assert.equal(o.max_order, 0);
});

test('PUNCH_HOLE: invalidate begin (private zap inside the invalidation), free folios, arch invalidate, end', () => {
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, 4 << 20, { offset: 4096 * 16, fileSize: 8 << 20 });
  const calls = recordingMmu(kvm);
  const log = recordingArch(kvm);
  const f = kvm_gmem_file(pk(kvm), fd)!;
  const o = out();
  for (const g of [0x10, 0x11, 0x40]) kvm_gmem_get_pfn(pk(kvm), slot, BASE + g, o);
  log.length = 0;
  const seen: string[] = [];
  probes.listen((name) => seen.push(name));
  const seq = kvm.mmu_invalidate_seq;
  try {
    // File pages 0x20..0x30 are gfns 0x10..0x20 of the slot.
    assert.equal(kvm_gmem_fallocate(pk(kvm), fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0x20 * 4096, 0x10 * 4096), 0);
  } finally {
    probes.listen(undefined);
  }
  assert.deepEqual(calls.map((c) => [c.kind, c.start, c.end, c.filter, c.in_progress]), [['unmap', BASE + 0x10, BASE + 0x20, KVM_FILTER_PRIVATE, 1]]);
  assert.deepEqual(log, [['invalidate', f.pfn_base + 0x20, f.pfn_base + 0x21, 0], ['invalidate', f.pfn_base + 0x21, f.pfn_base + 0x22, 0]]);
  const order = seen.filter((n) => /gmem|unmap/.test(n));
  assert.deepEqual(order, [
    'kvm_gmem_punch_hole', 'kvm_gmem_invalidate_begin', 'kvm_gmem_free_folio', 'kvm_arch_gmem_invalidate', 'kvm_gmem_free_folio',
    'kvm_arch_gmem_invalidate', 'kvm_gmem_invalidate_end',
  ]);
  assert.equal(kvm.mmu_invalidate_in_progress, 0);
  assert.equal(kvm.mmu_invalidate_seq, seq + 1);
  // The page outside the hole is still there and prepared.
  assert.equal(f.nr_folios(), 1);
  assert.equal(f.uptodate[0x50], 1);
});

test('punching 4K out of a huge folio splits it and frees only that page', () => {
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 2 << 20, { huge: true });
  recordingMmu(kvm);
  const log = recordingArch(kvm);
  const f = kvm_gmem_file(pk(kvm), fd)!;
  kvm_gmem_get_pfn(pk(kvm), slot, BASE, out());
  log.length = 0;
  kvm_gmem_fallocate(pk(kvm), fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 7 * 4096, 4096);
  assert.deepEqual(log, [['invalidate', f.pfn_base + 7, f.pfn_base + 8, 0]]);
  assert.equal(f.nr_folios(), 511);
  assert.equal(f.folio_order(8), 0);
});

test('fallocate: KEEP_SIZE is required; plain fallocate allocates without preparing', () => {
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 2 << 20);
  const log = recordingArch(kvm);
  assert.equal(kvm_gmem_fallocate(pk(kvm), fd, 0, 0, 4096), -95);
  assert.equal(kvm_gmem_fallocate(pk(kvm), fd, FALLOC_FL_KEEP_SIZE, 0, 3 << 20), -22);
  assert.equal(kvm_gmem_fallocate(pk(kvm), fd, FALLOC_FL_KEEP_SIZE, 0, 8 * 4096), 0);
  const f = kvm_gmem_file(pk(kvm), fd)!;
  assert.equal(f.nr_folios(), 8);
  assert.equal(log.length, 0);
  kvm_gmem_get_pfn(pk(kvm), slot, BASE + 3, out());
  assert.deepEqual(log.map((l) => l[0]), ['prepare']);
});

test('release zaps every binding, unbinds the slots and frees the folios', () => {
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SNP_VM, BASE * 4096, 2 << 20);
  const calls = recordingMmu(kvm);
  const log = recordingArch(kvm);
  kvm_gmem_get_pfn(pk(kvm), slot, BASE + 1, out());
  log.length = 0;
  assert.equal(kvm_gmem_release(pk(kvm), fd), 0);
  assert.deepEqual(calls.map((c) => [c.start, c.end, c.filter]), [[BASE, BASE + 512, KVM_FILTER_PRIVATE]]);
  assert.deepEqual(log.map((l) => l[0]), ['invalidate']);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 1, out()), -14);
  assert.equal(kvm_gmem_release(pk(kvm), fd), -9);
});

test('a poisoned folio: private mappings zapped, not freed, lookups fail with -EHWPOISON', async () => {
  const { kvm_gmem_error_folio, MF_DELAYED } = await import('../../../../src/engine/kvm/guest_memfd');
  const { kvm, fd, slot } = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, 2 << 20);
  const calls = recordingMmu(kvm);
  const log = recordingArch(kvm);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 9, out()), 0);
  log.length = 0;
  assert.equal(kvm_gmem_error_folio(pk(kvm), fd, 9), MF_DELAYED);
  assert.deepEqual(calls.map((c) => [c.start, c.end, c.filter]), [[BASE + 9, BASE + 10, KVM_FILTER_PRIVATE]]);
  assert.equal(log.length, 0);
  assert.equal(kvm_gmem_file(pk(kvm), fd)!.nr_folios(), 1);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 9, out()), -133);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 10, out()), 0);
  // Punching the poisoned page out frees it; the next lookup gets a fresh folio.
  kvm_gmem_fallocate(pk(kvm), fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 9 * 4096, 4096);
  assert.equal(kvm_gmem_get_pfn(pk(kvm), slot, BASE + 9, out()), 0);
});
