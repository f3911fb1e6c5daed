/**
 * Memory attributes (virt/kvm/kvm_main.c KVM_SET_MEMORY_ATTRIBUTES, with the x86 hooks from
 * arch/x86/kvm/mmu/mmu.c): the per-gfn PRIVATE attribute, the zap of the side a range converts away
 * from, and the KVM_LPAGE_MIXED_FLAG bookkeeping that keeps huge mappings off 2M/1G ranges whose gfns
 * disagree.
 *
 * The attribute store itself is the VM's (`set_private_range` / `kvm_mem_is_private` on the Kvm object);
 * this module drives it the way the ioctl does. It reaches the MMU only through the hooks a VM registers
 * with `kvm_private_mem_init` (so the engine's MMU and the private-memory model import each other
 * one way only), and it also holds the per-VM private-memory context that guest_memfd and SEV-SNP use.
 */
import { defineProbe, probes } from '../probes';
import { TrackedWeakMap } from '../snapshot';
import { EBADF, EEXIST, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOMEM, EOPNOTSUPP } from '../errno';
import {
  KVM_LPAGE_MIXED_FLAG, KVM_MAX_HUGEPAGE_LEVEL, KVM_MEM_GUEST_MEMFD, KVM_PAGES_PER_HPAGE, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K,
  hugepage_set_mixed, lpage_info_slot, type KvmMemorySlot,
} from '../x86/memslot';

// VM types (KVM_CREATE_VM's type argument on x86).
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;
export const KVM_X86_TDX_VM = 5;

/** The only attribute x86 supports. */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

/** attr_filter of struct kvm_gfn_range (which side of a private/shared VM a zap applies to). */
export const KVM_FILTER_SHARED = 1 << 0;
export const KVM_FILTER_PRIVATE = 1 << 1;

export { EBADF, EEXIST, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOMEM, EOPNOTSUPP };

/** kvm_arch_has_private_mem(): VM types whose memory can be private (guest_memfd-backed). */
export function kvm_arch_has_private_mem_type(vm_type: number): boolean {
  return vm_type === KVM_X86_SW_PROTECTED_VM || vm_type === KVM_X86_SNP_VM || vm_type === KVM_X86_TDX_VM;
}

/** The memslot list of one address space, as the Kvm object exposes it. */
export interface MemslotsLike {
  slots: KvmMemorySlot[];
  lookup(gfn: number): KvmMemorySlot | undefined;
}

/**
 * What the private-memory model needs of `struct kvm` (the engine's `Kvm` class satisfies it). Kept
 * structural so these modules do not depend on the MMU's files.
 */
export interface PrivateMemKvm {
  readonly vm_type: number;
  readonly arch: { has_private_mem: boolean };
  readonly memslots: readonly MemslotsLike[];
  readonly warnings: string[];
  kvm_mem_is_private(gfn: number): boolean;
  range_has_other_attrs(start: number, end: number, priv: boolean): boolean;
  set_private_range(start: number, end: number, priv: boolean): void;
  kvm_mmu_invalidate_begin(): void;
  kvm_mmu_invalidate_range_add(start: number, end: number): void;
  kvm_mmu_invalidate_end(): void;
  kvm_flush_remote_tlbs(): void;
}

/** MMU entry points the attribute, guest_memfd and SNP code call (arch/x86/kvm/mmu/mmu.c). */
export interface PrivateMemMmuHooks {
  /** kvm_unmap_gfn_range() for one slot's part of a range; returns whether a TLB flush is needed. */
  kvm_unmap_gfn_range(kvm: PrivateMemKvm, slot: KvmMemorySlot, start: number, end: number, attr_filter: number): boolean;
  /** kvm_zap_gfn_range(): zap every mapping of [start, end), with its own invalidation and flush. */
  kvm_zap_gfn_range(kvm: PrivateMemKvm, start: number, end: number): void;
}

/** Vendor hooks (kvm_x86_ops.gmem_prepare / gmem_invalidate / gmem_max_mapping_level). */
export interface GmemArchOps {
  gmem_prepare(kvm: PrivateMemKvm, pfn: number, gfn: number, max_order: number): number;
  gmem_invalidate(kvm: PrivateMemKvm, start: number, end: number): void;
  /** 0 means "no vendor limit". */
  gmem_max_mapping_level(kvm: PrivateMemKvm, pfn: number, is_private: boolean): number;
}

/** Design variant of seed 004: when guest_memfd pages become private in the RMP. */
export type GmemPrepareVariant = 'on_alloc' | 'on_fault';

/** The kvm_page_fault fields a fault-path prepare hook reads. */
export interface FaultForPrepare {
  gfn: number;
  pfn: number;
  exec: boolean;
  max_level: number;
  nx_huge_page_workaround_enabled?: boolean;
}

/** Per-VM private-memory state kept beside `struct kvm`. */
export class PrivateMemCtx {
  mmu: PrivateMemMmuHooks | null = null;
  arch: GmemArchOps | null = null;
  gmem_prepare_variant: GmemPrepareVariant = 'on_alloc';
  /** The `on_fault` variant's conversion hook in the private faultin path (gmem_prepare_variant.ts). */
  fault_prepare: ((kvm: PrivateMemKvm, slot: KvmMemorySlot, fault: FaultForPrepare, max_order: number) => number) | null = null;
  /** guest_memfd files by fd (guest_memfd.ts fills it). */
  readonly gmem_files = new Map<number, unknown>();
  next_gmem_fd = 3;
  /** Host pfn allocator for guest_memfd folios: a private high range per VM. */
  next_gmem_pfn = 0x800_0000;
}

const ctxs = new TrackedWeakMap<object, PrivateMemCtx>();

/** The VM's private-memory context (created on first use). */
export function kvm_private_ctx(kvm: PrivateMemKvm): PrivateMemCtx {
  let c = ctxs.get(kvm);
  if (c === undefined) {
    c = new PrivateMemCtx();
    ctxs.set(kvm, c);
  }
  return c;
}

/** Register the MMU's zap entry points for this VM (call once at VM creation, e.g. from kvm_mmu_init_vm). */
export function kvm_private_mem_init(kvm: PrivateMemKvm, mmu: PrivateMemMmuHooks): PrivateMemCtx {
  const c = kvm_private_ctx(kvm);
  c.mmu = mmu;
  return c;
}

const F_MAIN = 'virt/kvm/kvm_main.c';
const F_MMU = 'arch/x86/kvm/mmu/mmu.c';
const PR_SET_ATTRS = defineProbe(
  'kvm_vm_set_mem_attributes', 'private', F_MAIN, 'KVM_SET_MEMORY_ATTRIBUTES: zap the old side, store the attribute, recompute huge-page mixing',
  ['start', 'end', 'attributes'],
);
const PR_PRE = defineProbe(
  'kvm_arch_pre_set_memory_attributes', 'private', F_MMU, 'invalidate straddling huge pages and unmap the side being converted away from',
  ['slot', 'start', 'end', 'attr_filter'],
);
const PR_POST = defineProbe(
  'kvm_arch_post_set_memory_attributes', 'private', F_MMU, 'update KVM_LPAGE_MIXED_FLAG of the 2M/1G pages touching the range',
  ['slot', 'start', 'end', 'attributes'],
);

/** kvm_supported_mem_attributes(). */
export function kvm_supported_mem_attributes(kvm: PrivateMemKvm): number {
  return kvm.arch.has_private_mem ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

/** kvm_get_memory_attributes(). */
export function kvm_get_memory_attributes(kvm: PrivateMemKvm, gfn: number): number {
  return kvm.kvm_mem_is_private(gfn) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

/** kvm_mem_is_private(). */
export function kvm_mem_is_private(kvm: PrivateMemKvm, gfn: number): boolean {
  return kvm.arch.has_private_mem && kvm.kvm_mem_is_private(gfn);
}

/** kvm_range_has_memory_attributes(): every gfn of [start, end) has (attributes & mask) == attrs. */
export function kvm_range_has_memory_attributes(kvm: PrivateMemKvm, start: number, end: number, mask: number, attrs: number): boolean {
  if (start >= end) return true;
  if ((mask & KVM_MEMORY_ATTRIBUTE_PRIVATE) === 0) return (attrs & mask) === 0;
  const want = (attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0;
  if ((attrs & ~KVM_MEMORY_ATTRIBUTE_PRIVATE & mask) !== 0) return false;
  return !kvm.range_has_other_attrs(start, end, want);
}

/** kvm_slot_has_gmem() (kvm_slot_can_be_private in older trees). */
export function kvm_slot_has_gmem(slot: KvmMemorySlot | null | undefined): boolean {
  return slot !== null && slot !== undefined && (slot.flags & KVM_MEM_GUEST_MEMFD) !== 0;
}

function hugepage_test_mixed(slot: KvmMemorySlot, gfn: number, level: number): boolean {
  return (lpage_info_slot(gfn, slot, level) & KVM_LPAGE_MIXED_FLAG) !== 0;
}

/**
 * hugepage_has_attrs(): a 2M page is uniform when all 512 gfns carry `attrs`; a 1G page when none of its
 * 2M children is mixed and each child's first gfn carries `attrs`.
 */
export function hugepage_has_attrs(kvm: PrivateMemKvm, slot: KvmMemorySlot, gfn: number, level: number, attrs: number): boolean {
  const n = KVM_PAGES_PER_HPAGE[level]!;
  if (level === PG_LEVEL_2M) return kvm_range_has_memory_attributes(kvm, gfn, gfn + n, ~0, attrs);
  const step = KVM_PAGES_PER_HPAGE[level - 1]!;
  for (let g = gfn; g < gfn + n; g += step) {
    if (hugepage_test_mixed(slot, g, level - 1) || kvm_get_memory_attributes(kvm, g) !== attrs) return false;
  }
  return true;
}

function round_for_level(gfn: number, level: number): number {
  const n = KVM_PAGES_PER_HPAGE[level]!;
  return gfn - (gfn % n);
}

/**
 * kvm_arch_pre_set_memory_attributes() for one slot's part [start, end) of the ioctl's range. Straddling
 * head/tail huge pages that are wholly inside the slot and not yet mixed join the invalidation range (a
 * fault racing with the update must not install a huge mapping across the boundary); then the old side
 * of [start, end) is unmapped. Returns whether a flush is needed.
 */
export function kvm_arch_pre_set_memory_attributes(kvm: PrivateMemKvm, slot: KvmMemorySlot, start: number, end: number, attributes: number): boolean {
  const attr_filter = (attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0 ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE;
  if (probes.armed) probes.hit(PR_PRE, { slot: slot.id, start, end, attr_filter });
  if (!kvm.arch.has_private_mem) {
    kvm.warnings.push('WARN: kvm_arch_pre_set_memory_attributes on a VM without private memory');
    return false;
  }
  const slot_end = slot.base_gfn + slot.npages;
  for (let level = PG_LEVEL_2M; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const n = KVM_PAGES_PER_HPAGE[level]!;
    const head = round_for_level(start, level);
    if ((head !== start || head + n > end) && head >= slot.base_gfn && head + n <= slot_end && !hugepage_test_mixed(slot, head, level)) {
      kvm.kvm_mmu_invalidate_range_add(head, head + n);
    }
    const tail = round_for_level(end - 1, level);
    if (tail !== head && tail + n > end && tail + n <= slot_end && !hugepage_test_mixed(slot, tail, level)) {
      kvm.kvm_mmu_invalidate_range_add(tail, tail + n);
    }
  }
  const mmu = kvm_private_ctx(kvm).mmu;
  if (mmu === null) return false;
  // Called through a local so the JS frame carries the function's own name (kvmStack reads it).
  const unmap = mmu.kvm_unmap_gfn_range;
  return unmap(kvm, slot, start, end, attr_filter);
}

/**
 * kvm_arch_post_set_memory_attributes() for one slot's part [start, end): at 2M then 1G, a straddling head
 * or tail page inside the slot gets MIXED recomputed, pages the range covers entirely become unmixed.
 */
export function kvm_arch_post_set_memory_attributes(kvm: PrivateMemKvm, slot: KvmMemorySlot, start: number, end: number, attributes: number): boolean {
  if (probes.armed) probes.hit(PR_POST, { slot: slot.id, start, end, attributes });
  if (!kvm.arch.has_private_mem) return false;
  const slot_end = slot.base_gfn + slot.npages;
  for (let level = PG_LEVEL_2M; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const n = KVM_PAGES_PER_HPAGE[level]!;
    let gfn = round_for_level(start, level);
    if (gfn !== start || gfn + n > end) {
      // A huge page not fully inside the slot can never be mapped huge: no need to track it.
      if (gfn >= slot.base_gfn && gfn + n <= slot_end) hugepage_set_mixed(slot, gfn, level, !hugepage_has_attrs(kvm, slot, gfn, level, attributes));
      gfn += n;
    }
    for (; gfn + n <= end; gfn += n) hugepage_set_mixed(slot, gfn, level, false);
    if (gfn < end && gfn + n <= slot_end) hugepage_set_mixed(slot, gfn, level, !hugepage_has_attrs(kvm, slot, gfn, level, attributes));
  }
  return false;
}

/**
 * kvm_mmu_init_memslot_memory_attributes(): at slot creation every huge page wholly inside the slot gets
 * MIXED computed from the current attributes (they may already disagree).
 */
export function kvm_mmu_init_memslot_memory_attributes(kvm: PrivateMemKvm, slot: KvmMemorySlot): void {
  if (!kvm.arch.has_private_mem) return;
  for (let level = PG_LEVEL_2M; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const n = KVM_PAGES_PER_HPAGE[level]!;
    let start = round_for_level(slot.base_gfn, level);
    const end = round_for_level(slot.base_gfn + slot.npages, level);
    if (start < slot.base_gfn) start += n;
    for (let gfn = start; gfn < end; gfn += n) {
      hugepage_set_mixed(slot, gfn, level, !hugepage_has_attrs(kvm, slot, gfn, level, kvm_get_memory_attributes(kvm, gfn)));
    }
  }
}

interface SlotPart {
  slot: KvmMemorySlot;
  start: number;
  end: number;
}

/** The parts of [start, end) that overlap memslots, in every address space (kvm_handle_gfn_range's walk). */
function overlapping_slots(kvm: PrivateMemKvm, start: number, end: number): SlotPart[] {
  const out: SlotPart[] = [];
  for (const slots of kvm.memslots) {
    for (const slot of slots.slots) {
      const a = Math.max(start, slot.base_gfn);
      const b = Math.min(end, slot.base_gfn + slot.npages);
      if (a < b) out.push({ slot, start: a, end: b });
    }
  }
  return out;
}

/**
 * kvm_vm_set_mem_attributes(): nothing to do if the range already has the attributes; otherwise, under one
 * invalidation (begun when the pre pass finds its first slot, ended when the post pass finds its first),
 * add each slot part to the invalidation range and run the pre hook (flush if any zapped), store the
 * attribute, run the post hook.
 */
export function kvm_vm_set_mem_attributes(kvm: PrivateMemKvm, start: number, end: number, attributes: number): number {
  if (probes.armed) probes.hit(PR_SET_ATTRS, { start, end, attributes });
  if (kvm_range_has_memory_attributes(kvm, start, end, ~0, attributes)) return 0;
  const parts = overlapping_slots(kvm, start, end);
  let flush = false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (i === 0) kvm.kvm_mmu_invalidate_begin();
    // The generic code records the range whether or not the arch hook zaps anything.
    kvm.kvm_mmu_invalidate_range_add(p.start, p.end);
    flush = kvm_arch_pre_set_memory_attributes(kvm, p.slot, p.start, p.end, attributes) || flush;
  }
  if (flush) kvm.kvm_flush_remote_tlbs();
  kvm.set_private_range(start, end, (attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0);
  // The post pass runs kvm_mmu_invalidate_end as its on_lock callback, i.e. under mmu_lock before the
  // MIXED updates (no fault can slip in between: both happen with mmu_lock held for write).
  for (let i = 0; i < parts.length; i++) {
    if (i === 0) kvm.kvm_mmu_invalidate_end();
    kvm_arch_post_set_memory_attributes(kvm, parts[i]!.slot, parts[i]!.start, parts[i]!.end, attributes);
  }
  return 0;
}

/** struct kvm_memory_attributes. */
export interface KvmMemoryAttributes {
  address: number;
  size: number;
  attributes: number;
  flags: number;
}

/** kvm_vm_ioctl_set_mem_attributes(): KVM_SET_MEMORY_ATTRIBUTES argument checks, then the update. */
export function kvm_vm_ioctl_set_mem_attributes(kvm: PrivateMemKvm, attrs: KvmMemoryAttributes): number {
  if (attrs.flags !== 0) return -EINVAL;
  if ((attrs.attributes & ~kvm_supported_mem_attributes(kvm)) !== 0) return -EINVAL;
  if (attrs.size === 0 || attrs.address + attrs.size < attrs.address) return -EINVAL;
  if (attrs.address % 4096 !== 0 || attrs.size % 4096 !== 0) return -EINVAL;
  const start = attrs.address / 4096;
  const end = (attrs.address + attrs.size) / 4096;
  return kvm_vm_set_mem_attributes(kvm, start, end, attrs.attributes);
}

/** The ioctl's name, for callers that dispatch by uapi name. */
export const KVM_SET_MEMORY_ATTRIBUTES = kvm_vm_ioctl_set_mem_attributes;

/**
 * The largest level at which gfn's huge page is uniform in attributes, as __kvm_mmu_max_mapping_level
 * sees it through lpage_info (any disallow count or the MIXED flag stops a level).
 */
export function max_level_by_lpage_info(slot: KvmMemorySlot, gfn: number, max_level: number): number {
  let level = Math.min(max_level, KVM_MAX_HUGEPAGE_LEVEL);
  for (; level > PG_LEVEL_4K; level--) {
    const n = KVM_PAGES_PER_HPAGE[level]!;
    const head = gfn - (gfn % n);
    if (head < slot.base_gfn || head + n > slot.base_gfn + slot.npages) continue;
    if (lpage_info_slot(gfn, slot, level) === 0) break;
  }
  return level;
}

export { PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G };
