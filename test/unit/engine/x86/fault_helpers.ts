// Shared helpers for the x86 TDP MMU tests. Expected SPTE values are assembled here from the bit
// positions in kvm-x86-mmu.md §3 (EPT/x86 entry formats, KVM software bits), not from engine code.
import { X86Vm, type X86VmOptions } from '../../../../src/engine/x86/index';
import { trace, type TraceEvent } from '../../../../src/engine/trace_sink';
import { kvm_gmem_create } from '../../../../src/engine/kvm/guest_memfd';

export const GiB = 0x4000_0000;
export const MiB = 0x10_0000;

export function vm(opts: X86VmOptions = {}): X86Vm {
  return new X86Vm(opts);
}

/**
 * A slot whose HVA and host pfns are 1 GiB-aligned, so gfn g is backed by host pfn `pfn_base + (g - base)`.
 * A KVM_MEM_GUEST_MEMFD slot gets its own guest_memfd file of the slot's size first, as a VMM creates it.
 */
export function slot(v: X86Vm, id: number, gpa: number, size: number, o: { backing?: '4k' | '2m-thp' | '1g-hugetlb'; pfn_base?: number; flags?: number; uaddr?: number } = {}): number {
  const gmem = (o.flags ?? 0) & 4 ? kvm_gmem_create(v.kvm.private_mem, { size, flags: 0 }) : undefined;
  return v.set_user_memory_region({
    slot: id, flags: o.flags ?? 0, guest_phys_addr: gpa, memory_size: size, userspace_addr: o.uaddr ?? 0x7f00_0000_0000 + gpa,
    host_backing: o.backing ?? '4k', host_pfn_base: o.pfn_base ?? 0x40_0000 + gpa / 4096, guest_memfd: gmem,
  });
}

/** Join halves into a lower-case hex string (for readable assertion messages). */
export function hx(lo: number, hi: number): string {
  return (BigInt(hi >>> 0) << 32n | BigInt(lo >>> 0)).toString(16);
}

/** 64-bit value from a bit list and a pfn. */
export function bits(list: number[], pfn = 0): string {
  let v = BigInt(pfn) << 12n;
  for (const b of list) v |= 1n << BigInt(b);
  return v.toString(16);
}

// EPT leaf written by KVM for a writable RAM page: R W X (0-2), memtype WB = 6 at 3-5, IPAT (6),
// A (8), D (9), MMU-present (11), host-writable (57), MMU-writable (58), suppress-#VE (63).
export const EPT_RAM_RW = [0, 1, 2, 4, 5, 6, 8, 9, 11, 57, 58, 63];
// Same without write permission: R X, WB, IPAT, A, present, SVE (no W, no D, no H/M bits).
export const EPT_RAM_RO = [0, 2, 4, 5, 6, 8, 11, 63];
// NPT leaf: P RW US (0-2), A (5), D (6), host-writable (9), MMU-writable (10), MMU-present (11).
export const NPT_RAM_RW = [0, 1, 2, 5, 6, 9, 10, 11];

export function capture(): { events: TraceEvent[]; stop: () => void } {
  const events: TraceEvent[] = [];
  const stop = trace.subscribe((e) => events.push(e));
  return { events, stop };
}
