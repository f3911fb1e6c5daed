/**
 * Fixtures for the private-memory tests: a real Kvm with guest_memfd slots, and MMU hooks that record
 * what the attribute / guest_memfd / SNP code asks the MMU to zap (the MMU itself is tested elsewhere).
 */
import { Kvm } from '../../../../src/engine/x86/vm';
import { KVM_MEM_GUEST_MEMFD } from '../../../../src/engine/x86/memslot';
import { kvm_private_mem_init, type PrivateMemKvm } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create } from '../../../../src/engine/kvm/guest_memfd';

export interface UnmapCall {
  kind: 'unmap' | 'zap';
  slot: number;
  start: number;
  end: number;
  filter: number;
  /** mmu_invalidate_in_progress when the MMU was called. */
  in_progress: number;
}

export function recordingMmu(kvm: Kvm): UnmapCall[] {
  const calls: UnmapCall[] = [];
  kvm_private_mem_init(kvm as unknown as PrivateMemKvm, {
    kvm_unmap_gfn_range: (_k, slot, start, end, attr_filter) => {
      calls.push({ kind: 'unmap', slot: slot.id, start, end, filter: attr_filter, in_progress: kvm.mmu_invalidate_in_progress });
      return true;
    },
    kvm_zap_gfn_range: (_k, start, end) => {
      calls.push({ kind: 'zap', slot: -1, start, end, filter: 0, in_progress: kvm.mmu_invalidate_in_progress });
    },
  });
  return calls;
}

/** Record every kvm_mmu_invalidate_range_add of the VM. */
export function recordInvalidations(kvm: Kvm): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const orig = kvm.kvm_mmu_invalidate_range_add.bind(kvm);
  kvm.kvm_mmu_invalidate_range_add = (s: number, e: number) => {
    out.push([s, e]);
    orig(s, e);
  };
  return out;
}

export function pk(kvm: Kvm): PrivateMemKvm {
  return kvm as unknown as PrivateMemKvm;
}

/** A VM of `vm_type` with one guest_memfd slot at gpa of `size` bytes bound at file offset `offset`. */
export function vmWithGmemSlot(vm_type: number, gpa: number, size: number, opts: { huge?: boolean; offset?: number; fileSize?: number } = {}) {
  const kvm = new Kvm({ vendor: 'svm', vm_type });
  const fd = kvm_gmem_create(pk(kvm), { size: opts.fileSize ?? size + (opts.offset ?? 0), flags: 0 }, { huge_folios: opts.huge ?? false });
  if (fd < 0) throw new Error(`gmem create ${fd}`);
  const r = kvm.kvm_set_memory_region({
    slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: gpa, memory_size: size, userspace_addr: 0x7f00_0000_0000 + gpa,
    guest_memfd: fd, guest_memfd_offset: opts.offset ?? 0,
  });
  if (r !== 0) throw new Error(`memslot ${r}`);
  return { kvm, fd, slot: kvm.memslots[0]!.slots[0]! };
}
