import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Kvm } from '../../../../src/engine/x86/vm';
import { KVM_LPAGE_MIXED_FLAG, KvmMemorySlot, lpage_info_slot, KVM_MEM_GUEST_MEMFD } from '../../../../src/engine/x86/memslot';
import {
  KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_DEFAULT_VM, KVM_X86_SNP_VM, KVM_X86_SW_PROTECTED_VM,
  kvm_vm_ioctl_set_mem_attributes, kvm_vm_set_mem_attributes, max_level_by_lpage_info,
  kvm_range_has_memory_attributes,
} from '../../../../src/engine/kvm/attributes';
import { __kvm_mmu_max_mapping_level } from '../../../../src/engine/x86/mmu';
import { kvm_gmem_create } from '../../../../src/engine/kvm/guest_memfd';
import { pk, recordingMmu, recordInvalidations, vmWithGmemSlot } from './private_helpers';

const P = KVM_MEMORY_ATTRIBUTE_PRIVATE;
const BASE = 0x100000; // gfn of 4 GiB: 1G-aligned
const mixed = (slot: KvmMemorySlot, gfn: number, level: number) => (lpage_info_slot(gfn, slot, level) & KVM_LPAGE_MIXED_FLAG) !== 0;

function setup() {
  // One 1 GiB guest_memfd slot at 4 GiB: every 2M and the 1G page lie wholly inside it.
  const v = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, 1 << 30);
  const calls = recordingMmu(v.kvm);
  return { ...v, calls };
}

test('converting one gfn to private zaps only that gfn on the shared side and marks its 2M and 1G pages mixed', () => {
  const { kvm, slot, calls } = setup();
  const inv = recordInvalidations(kvm);
  const seq = kvm.mmu_invalidate_seq;
  assert.equal(kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x205, BASE + 0x206, P), 0);
  assert.deepEqual(calls.map((c) => [c.kind, c.start, c.end, c.filter]), [['unmap', BASE + 0x205, BASE + 0x206, KVM_FILTER_SHARED]]);
  // The zap ran inside the invalidation.
  assert.equal(calls[0]!.in_progress, 1);
  assert.equal(kvm.mmu_invalidate_in_progress, 0);
  assert.equal(kvm.mmu_invalidate_seq, seq + 1);
  // The range itself, then the straddling 2M head and the 1G head join the invalidation.
  assert.deepEqual(inv, [[BASE + 0x205, BASE + 0x206], [BASE + 0x200, BASE + 0x400], [BASE, BASE + 0x40000]]);
  assert.equal(mixed(slot, BASE + 0x200, 2), true);
  assert.equal(mixed(slot, BASE + 0x000, 2), false);
  assert.equal(mixed(slot, BASE + 0x400, 2), false);
  assert.equal(mixed(slot, BASE, 3), true);
  assert.equal(kvm.kvm_mem_is_private(BASE + 0x205), true);
  assert.equal(kvm.kvm_mem_is_private(BASE + 0x204), false);
});

test('converting back to shared zaps the private side and clears the mixed flags', () => {
  const { kvm, slot, calls } = setup();
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x205, BASE + 0x206, P);
  calls.length = 0;
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x205, BASE + 0x206, 0);
  assert.deepEqual(calls.map((c) => [c.start, c.end, c.filter]), [[BASE + 0x205, BASE + 0x206, KVM_FILTER_PRIVATE]]);
  assert.equal(mixed(slot, BASE + 0x200, 2), false);
  assert.equal(mixed(slot, BASE, 3), false);
});

test('a fully covered aligned 2M range is not mixed at 2M; its 1G page is', () => {
  const { kvm, slot } = setup();
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x400, BASE + 0x600, P);
  assert.equal(mixed(slot, BASE + 0x400, 2), false);
  assert.equal(mixed(slot, BASE + 0x5ff, 2), false);
  assert.equal(mixed(slot, BASE, 3), true);
  // The whole 1G private: nothing mixed anywhere.
  kvm_vm_set_mem_attributes(pk(kvm), BASE, BASE + 0x40000, P);
  assert.equal(mixed(slot, BASE, 3), false);
  assert.equal(mixed(slot, BASE + 0x400, 2), false);
});

test('a mixed 2M range forces 4K mappings; a uniform 2M inside a mixed 1G allows 2M', () => {
  const { kvm, slot } = setup();
  kvm_vm_set_mem_attributes(pk(kvm), BASE, BASE + 0x40000, P);
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x3ff, BASE + 0x400, 0);
  assert.equal(max_level_by_lpage_info(slot, BASE + 0x210, 3), 1);
  assert.equal(max_level_by_lpage_info(slot, BASE + 0x010, 3), 2);
  // The MMU's own level computation reads the same lpage_info.
  assert.equal(__kvm_mmu_max_mapping_level(kvm, slot, BASE + 0x210, 3, true), 1);
  assert.equal(__kvm_mmu_max_mapping_level(kvm, slot, BASE + 0x010, 3, true), 2);
});

test('setting attributes a range already has changes nothing', () => {
  const { kvm, calls } = setup();
  kvm_vm_set_mem_attributes(pk(kvm), BASE, BASE + 0x10, P);
  calls.length = 0;
  const seq = kvm.mmu_invalidate_seq;
  assert.equal(kvm_vm_set_mem_attributes(pk(kvm), BASE + 2, BASE + 8, P), 0);
  assert.equal(calls.length, 0);
  assert.equal(kvm.mmu_invalidate_seq, seq);
});

test('a range over two slots: one invalidation, one clipped unmap per slot', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
  const fd = kvm_gmem_create(pk(kvm), { size: 0x400 * 4096, flags: 0 });
  for (const [id, gfn] of [[0, BASE], [1, BASE + 0x200]] as const) {
    assert.equal(kvm.kvm_set_memory_region({ slot: id, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gfn * 4096, memory_size: 0x200 * 4096, userspace_addr: 0x7f00_0000_0000 + gfn * 4096, guest_memfd: fd, guest_memfd_offset: (gfn - BASE) * 4096 }), 0);
  }
  const calls = recordingMmu(kvm);
  const seq = kvm.mmu_invalidate_seq;
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x100, BASE + 0x300, P);
  assert.deepEqual(calls.map((c) => [c.slot, c.start, c.end]), [[0, BASE + 0x100, BASE + 0x200], [1, BASE + 0x200, BASE + 0x300]]);
  assert.equal(kvm.mmu_invalidate_seq, seq + 1);
});

test('KVM_SET_MEMORY_ATTRIBUTES argument checks', () => {
  const { kvm } = setup();
  const a = (address: number, size: number, attributes: number, flags = 0) => kvm_vm_ioctl_set_mem_attributes(pk(kvm), { address, size, attributes, flags });
  assert.equal(a(BASE * 4096, 4096, P, 1), -22);
  assert.equal(a(BASE * 4096, 4096, 1 << 2), -22);
  assert.equal(a(BASE * 4096 + 1, 4096, P), -22);
  assert.equal(a(BASE * 4096, 4095, P), -22);
  assert.equal(a(BASE * 4096, 0, P), -22);
  assert.equal(a(BASE * 4096, 4096, P), 0);
  const plain = new Kvm({ vendor: 'svm', vm_type: KVM_X86_DEFAULT_VM });
  assert.equal(kvm_vm_ioctl_set_mem_attributes(pk(plain), { address: 0, size: 4096, attributes: P, flags: 0 }), -22);
});

test('a slot created over existing attributes gets its mixed flags at creation (KVM_SET_USER_MEMORY_REGION2)', () => {
  const kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SW_PROTECTED_VM });
  kvm_vm_set_mem_attributes(pk(kvm), BASE + 0x600, BASE + 0x601, P);
  const fd = kvm_gmem_create(pk(kvm), { size: 1 << 30, flags: 0 });
  assert.equal(kvm.kvm_set_memory_region({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: BASE * 4096, memory_size: 1 << 30, userspace_addr: 0x7f00_0000_0000, guest_memfd: fd, guest_memfd_offset: 0 }), 0);
  const slot = kvm.memslots[0]!.slots[0]!;
  assert.equal(mixed(slot, BASE + 0x600, 2), true);
  assert.equal(mixed(slot, BASE + 0x400, 2), false);
  assert.equal(mixed(slot, BASE, 3), true);
});

test('property: after any conversions, MIXED matches the attributes of each 2M and 1G page', () => {
  const N = 0x40000;
  fc.assert(
    fc.property(
      fc.array(fc.record({ start: fc.integer({ min: 0, max: N - 1 }), len: fc.integer({ min: 1, max: 1500 }), priv: fc.boolean() }), { minLength: 1, maxLength: 12 }),
      (ops) => {
        const { kvm, slot } = vmWithGmemSlot(KVM_X86_SW_PROTECTED_VM, BASE * 4096, N * 4096);
        recordingMmu(kvm);
        const model = new Uint8Array(N);
        for (const o of ops) {
          const end = Math.min(N, o.start + o.len);
          kvm_vm_set_mem_attributes(pk(kvm), BASE + o.start, BASE + end, o.priv ? P : 0);
          model.fill(o.priv ? 1 : 0, o.start, end);
        }
        let any1g = false;
        for (let h = 0; h < N; h += 512) {
          let uniform = true;
          for (let i = h + 1; i < h + 512 && uniform; i++) uniform = model[i] === model[h];
          if (mixed(slot, BASE + h, 2) !== !uniform) return false;
          if (!uniform || model[h] !== model[0]) any1g = true;
        }
        if (mixed(slot, BASE, 3) !== any1g) return false;
        for (let g = 0; g < N; g += 997) if (kvm.kvm_mem_is_private(BASE + g) !== (model[g] === 1)) return false;
        return kvm_range_has_memory_attributes(pk(kvm), BASE, BASE + N, ~0, model[0] ? P : 0) === !model.some((x) => x !== model[0]);
      },
    ),
    { numRuns: 40 },
  );
});

test('order of one conversion: pre hook, flush, invalidation end, then the post hook', async () => {
  const { probes } = await import('../../../../src/engine/probes');
  const { kvm } = setup();
  const seen: string[] = [];
  const end = kvm.kvm_mmu_invalidate_end.bind(kvm);
  kvm.kvm_mmu_invalidate_end = () => {
    seen.push('kvm_mmu_invalidate_end');
    end();
  };
  probes.listen((n) => seen.push(n));
  try {
    kvm_vm_set_mem_attributes(pk(kvm), BASE + 1, BASE + 2, P);
  } finally {
    probes.listen(undefined);
  }
  // The recording MMU reports a zap, so the pre pass flushes before the attribute is stored.
  assert.deepEqual(seen, [
    'kvm_vm_set_mem_attributes', 'kvm_arch_pre_set_memory_attributes', 'kvm_flush_remote_tlbs', 'kvm_mmu_invalidate_end',
    'kvm_arch_post_set_memory_attributes',
  ]);
});
