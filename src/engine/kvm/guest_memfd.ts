/**
 * guest_memfd (virt/kvm/guest_memfd.c): the "[kvm-gmem]" file that backs private memory, its bindings to
 * KVM_MEM_GUEST_MEMFD memslots, folio allocation, prepare-on-first-use (kvm_arch_gmem_prepare, which
 * SEV-SNP uses to make the pages private in the RMP), and PUNCH_HOLE / release, which zap private
 * mappings and free folios (kvm_arch_gmem_invalidate turns them back to shared).
 *
 * Folios live in typed-array columns indexed by page offset in the file (grown on demand). The kernel of
 * this model allocates order-0 folios; `huge_folios` is the model's option for PMD-order (2M) folios.
 * Host pfns come from a per-file contiguous range so that a huge folio is naturally 2M-aligned.
 */
import { defineProbe, probes } from '../probes';
import { TrackedWeakMap } from '../snapshot';
import type { KvmMemorySlot } from '../x86/memslot';
import {
  EBADF, EEXIST, EFAULT, EHWPOISON, EINVAL, EOPNOTSUPP, KVM_FILTER_PRIVATE, KVM_MEMORY_ATTRIBUTE_PRIVATE, kvm_private_ctx,
  kvm_range_has_memory_attributes, kvm_slot_has_gmem, type PrivateMemKvm,
} from './attributes';

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;
/** PMD_ORDER: a 2M folio. */
export const GMEM_HUGE_ORDER = 9;

const F = 'virt/kvm/guest_memfd.c';
const P = (name: string, doc: string, args: string[]) => defineProbe(name, 'private', F, doc, args);
const PR_CREATE = P('kvm_gmem_create', 'KVM_CREATE_GUEST_MEMFD: a new [kvm-gmem] file', ['fd', 'size', 'flags']);
const PR_BIND = P('kvm_gmem_bind', 'bind a KVM_MEM_GUEST_MEMFD memslot to a range of the file', ['slot', 'fd', 'offset', 'npages']);
const PR_GET_PFN = P('kvm_gmem_get_pfn', 'look up (allocating and preparing if needed) the folio behind a private gfn', ['gfn', 'index', 'pfn', 'max_order']);
const PR_PREPARE = P('kvm_gmem_prepare_folio', 'first use of a folio: zero it, then the arch prepare hook, then mark it up to date', ['gfn', 'pfn', 'order']);
const PR_ARCH_PREPARE = defineProbe('kvm_arch_gmem_prepare', 'private', 'arch/x86/kvm/x86.c', 'vendor prepare hook (SEV-SNP: make the folio private in the RMP)', ['gfn', 'pfn', 'order']);
const PR_PUNCH = P('kvm_gmem_punch_hole', 'FALLOC_FL_PUNCH_HOLE: zap private mappings, then free the folios', ['fd', 'start', 'end']);
const PR_INV_BEGIN = P('kvm_gmem_invalidate_begin', 'start an invalidation and unmap the private mappings of bound gfns', ['start', 'end']);
const PR_INV_END = P('kvm_gmem_invalidate_end', 'end the invalidation begun by kvm_gmem_invalidate_begin', ['start', 'end']);
const PR_FREE = P('kvm_gmem_free_folio', 'a folio leaves the page cache: the arch invalidate hook gets its pfns', ['pfn', 'order']);
const PR_ARCH_INV = defineProbe('kvm_arch_gmem_invalidate', 'private', 'arch/x86/kvm/x86.c', 'vendor invalidate hook (SEV-SNP: back to shared in the RMP)', ['start', 'end']);
const PR_ERROR = P('kvm_gmem_error_folio', 'memory failure on a folio: zap its private mappings, keep it (MF_DELAYED), lookups fail with -EHWPOISON', ['fd', 'index', 'order']);
const PR_POPULATE = P('kvm_gmem_populate', 'launch-time fill of private pages: the vendor post-populate callback instead of prepare', ['gfn', 'npages']);
const PR_RELEASE = P('kvm_gmem_release', 'last close of the file: zap every binding and unbind the slots', ['fd']);

/** One binding: slot gfns [base_gfn, base_gfn + npages) are file pages [start, end). */
export interface GmemBinding {
  slot: KvmMemorySlot;
  start: number;
  end: number;
}

const PAGE = 4096;

export class KvmGmemFile {
  readonly fd: number;
  readonly kvm: PrivateMemKvm;
  readonly size: number;
  readonly npages: number;
  readonly flags: number;
  readonly huge_folios: boolean;
  /** Host pfn of file page 0; page i of a folio is pfn_base + i. */
  readonly pfn_base: number;
  readonly bindings: GmemBinding[] = [];
  /** Per page: order of the folio holding it, or -1 when no folio is there. */
  order = new Int8Array(0);
  /** Per page: the folio is up to date ("prepared"). */
  uptodate = new Uint8Array(0);
  /** Per page: hardware-poisoned. */
  hwpoison = new Uint8Array(0);
  released = false;
  /** Counters for views and the variant comparison. */
  folios_allocated = 0;
  folios_freed = 0;
  pages_zeroed = 0;

  constructor(fd: number, kvm: PrivateMemKvm, size: number, flags: number, huge: boolean, pfn_base: number) {
    this.fd = fd;
    this.kvm = kvm;
    this.size = size;
    this.npages = size / PAGE;
    this.flags = flags;
    this.huge_folios = huge;
    this.pfn_base = pfn_base;
  }

  /** Make the columns cover page `index`. */
  ensure(index: number): void {
    if (index < this.order.length) return;
    let n = Math.max(1024, this.order.length);
    while (n <= index) n *= 2;
    n = Math.min(n, this.npages);
    const o = new Int8Array(n).fill(-1);
    o.set(this.order);
    const u = new Uint8Array(n);
    u.set(this.uptodate);
    const h = new Uint8Array(n);
    h.set(this.hwpoison);
    this.order = o;
    this.uptodate = u;
    this.hwpoison = h;
  }

  folio_order(index: number): number {
    return index < this.order.length ? this.order[index]! : -1;
  }

  /** First page of the folio holding `index` (which must hold one). */
  folio_head(index: number): number {
    const n = 2 ** this.order[index]!;
    return index - (index % n);
  }

  /** Number of folios currently in the file. */
  nr_folios(): number {
    let c = 0;
    for (let i = 0; i < this.order.length; ) {
      const o = this.order[i]!;
      if (o < 0) i++;
      else {
        c++;
        i += 2 ** o;
      }
    }
    return c;
  }
}

/** Create options beyond the uapi (model knobs). */
export interface GmemModelOptions {
  /** Allocate PMD-order folios where a whole aligned 2M range of the file is free (the kernel: order 0). */
  huge_folios?: boolean;
}

/** struct kvm_create_guest_memfd. */
export interface KvmCreateGuestMemfd {
  size: number;
  flags: number;
}

function files(kvm: PrivateMemKvm): Map<number, KvmGmemFile> {
  return kvm_private_ctx(kvm).gmem_files as Map<number, KvmGmemFile>;
}

/** The guest_memfd file with this fd, if any. */
export function kvm_gmem_file(kvm: PrivateMemKvm, fd: number): KvmGmemFile | undefined {
  return files(kvm).get(fd);
}

/** Flags KVM_CREATE_GUEST_MEMFD accepts: mmap()able gmem is for VMs without private memory here. */
export function kvm_gmem_get_supported_flags(kvm: PrivateMemKvm): number {
  return kvm.arch.has_private_mem ? 0 : GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
}

/** kvm_gmem_create() (KVM_CREATE_GUEST_MEMFD): returns the new fd or -errno. */
export function kvm_gmem_create(kvm: PrivateMemKvm, args: KvmCreateGuestMemfd, opts: GmemModelOptions = {}): number {
  if ((args.flags & ~kvm_gmem_get_supported_flags(kvm)) !== 0) return -EINVAL;
  if (!(args.size > 0) || args.size % PAGE !== 0 || !Number.isSafeInteger(args.size)) return -EINVAL;
  const ctx = kvm_private_ctx(kvm);
  const fd = ctx.next_gmem_fd++;
  const npages = args.size / PAGE;
  // 1G-align each file's host range so every huge folio is naturally aligned.
  const base = Math.ceil(ctx.next_gmem_pfn / 0x40000) * 0x40000;
  ctx.next_gmem_pfn = base + npages;
  const f = new KvmGmemFile(fd, kvm, args.size, args.flags, opts.huge_folios ?? false, base);
  files(kvm).set(fd, f);
  if (probes.armed) probes.hit(PR_CREATE, { fd, size: args.size, flags: args.flags });
  return fd;
}

export const KVM_CREATE_GUEST_MEMFD = kvm_gmem_create;

const slot_bindings = new TrackedWeakMap<KvmMemorySlot, { file: KvmGmemFile; pgoff: number }>();

/** kvm_gmem_bind(): 0 or -errno. */
export function kvm_gmem_bind(kvm: PrivateMemKvm, slot: KvmMemorySlot, fd: number, offset: number): number {
  const file = files(kvm).get(fd);
  if (file === undefined || file.released) return -EBADF;
  if (file.kvm !== kvm) return -EINVAL;
  if (offset < 0 || offset % PAGE !== 0 || offset + slot.npages * PAGE > file.size) return -EINVAL;
  const start = offset / PAGE;
  const end = start + slot.npages;
  for (const b of file.bindings) if (start < b.end && b.start < end) return -EEXIST;
  file.bindings.push({ slot, start, end });
  slot_bindings.set(slot, { file, pgoff: start });
  if (probes.armed) probes.hit(PR_BIND, { slot: slot.id, fd, offset, npages: slot.npages });
  return 0;
}

/** kvm_gmem_unbind(): the slot is going away. */
export function kvm_gmem_unbind(slot: KvmMemorySlot): void {
  const b = slot_bindings.get(slot);
  if (b === undefined) return;
  const i = b.file.bindings.findIndex((x) => x.slot === slot);
  if (i >= 0) b.file.bindings.splice(i, 1);
  slot_bindings.delete(slot);
}

/** The file a slot is bound to (kvm_gmem_bind at KVM_SET_USER_MEMORY_REGION2), if it still is. */
export function kvm_gmem_get_file(_kvm: PrivateMemKvm, slot: KvmMemorySlot): { file: KvmGmemFile; pgoff: number } | undefined {
  const b = slot_bindings.get(slot);
  if (b === undefined || b.file.released) return undefined;
  return b;
}

/** kvm_gmem_get_index(). */
export function kvm_gmem_get_index(slot: KvmMemorySlot, pgoff: number, gfn: number): number {
  return gfn - slot.base_gfn + pgoff;
}

/**
 * filemap_grab_folio() for guest_memfd: the folio holding `index`, allocated (not up to date) if absent.
 * With huge folios a PMD-order folio is used when the aligned 2M range lies in the file and is empty.
 */
export function kvm_gmem_get_folio(file: KvmGmemFile, index: number): number {
  file.ensure(index);
  if (file.order[index]! >= 0) return file.folio_head(index);
  let order = 0;
  if (file.huge_folios) {
    const n = 2 ** GMEM_HUGE_ORDER;
    const head = index - (index % n);
    if (head + n <= file.npages) {
      file.ensure(head + n - 1);
      let free = true;
      for (let i = head; i < head + n && free; i++) free = file.order[i]! < 0;
      if (free) order = GMEM_HUGE_ORDER;
    }
  }
  const n = 2 ** order;
  const head = index - (index % n);
  for (let i = head; i < head + n; i++) {
    file.order[i] = order;
    file.uptodate[i] = 0;
  }
  file.folios_allocated++;
  return head;
}

/** Result of kvm_gmem_get_pfn (the kernel's out parameters). */
export interface GmemPfn {
  pfn: number;
  max_order: number;
}

/** kvm_arch_gmem_prepare(): the vendor's gmem_prepare, if any (x86: kvm_x86_ops.gmem_prepare). */
export function kvm_arch_gmem_prepare(kvm: PrivateMemKvm, gfn: number, pfn: number, order: number): number {
  if (probes.armed) probes.hit(PR_ARCH_PREPARE, { gfn, pfn, order });
  const arch = kvm_private_ctx(kvm).arch;
  if (arch === null) return 0;
  // Through a local: a method call would put the property name, not sev_gmem_prepare, on the KVM stack.
  const prepare = arch.gmem_prepare;
  return prepare(kvm, pfn, gfn, order);
}

/** kvm_arch_gmem_invalidate(): the vendor's gmem_invalidate over host pfns [start, end). */
export function kvm_arch_gmem_invalidate(kvm: PrivateMemKvm, start: number, end: number): void {
  if (probes.armed) probes.hit(PR_ARCH_INV, { start, end });
  const arch = kvm_private_ctx(kvm).arch;
  if (arch === null) return;
  const invalidate = arch.gmem_invalidate;
  invalidate(kvm, start, end);
}

/**
 * kvm_gmem_prepare_folio(): zero the folio, hand its first gfn and pfn to the arch hook (the hook sees the
 * whole folio, so gfn is aligned down by the folio offset), then mark it up to date. In the `on_fault`
 * design variant the RMP conversion moves to the fault path, so the arch hook is not called here.
 */
export function kvm_gmem_prepare_folio(kvm: PrivateMemKvm, slot: KvmMemorySlot, gfn: number, file: KvmGmemFile, index: number): number {
  const head = file.folio_head(index);
  const order = file.order[head]!;
  const n = 2 ** order;
  const head_gfn = gfn - (index - head);
  const pfn = file.pfn_base + head;
  if (probes.armed) probes.hit(PR_PREPARE, { gfn: head_gfn, pfn, order });
  file.pages_zeroed += n;
  void slot;
  if (kvm_private_ctx(kvm).gmem_prepare_variant === 'on_alloc') {
    const r = kvm_arch_gmem_prepare(kvm, head_gfn, pfn, order);
    if (r !== 0) return r;
  }
  for (let i = head; i < head + n; i++) file.uptodate[i] = 1;
  return 0;
}

/**
 * kvm_gmem_get_pfn(): the host pfn behind a private gfn and the largest order KVM may map it at. The
 * kernel reports max_order 0 (order-0 folios); with huge folios the order counts only when the whole
 * folio is mapped by this slot at a congruent gfn. A folio seen for the first time is prepared.
 */
export function kvm_gmem_get_pfn(kvm: PrivateMemKvm, slot: KvmMemorySlot, gfn: number, out: GmemPfn): number {
  const b = kvm_gmem_get_file(kvm, slot);
  if (b === undefined) return -EFAULT;
  const file = b.file;
  const index = kvm_gmem_get_index(slot, b.pgoff, gfn);
  if (index < 0 || index >= file.npages) return -EFAULT;
  const head = kvm_gmem_get_folio(file, index);
  if (file.hwpoison[index] !== 0) return -EHWPOISON;
  const order = file.order[head]!;
  out.pfn = file.pfn_base + index;
  out.max_order = 0;
  if (order > 0) {
    const n = 2 ** order;
    const head_gfn = gfn - (index - head);
    if (head_gfn % n === 0 && head_gfn >= slot.base_gfn && head_gfn + n <= slot.base_gfn + slot.npages) out.max_order = order;
  }
  if (probes.armed) probes.hit(PR_GET_PFN, { gfn, index, pfn: out.pfn, max_order: out.max_order });
  if (file.uptodate[index] === 0) {
    const r = kvm_gmem_prepare_folio(kvm, slot, gfn, file, index);
    if (r !== 0) return r;
  }
  return 0;
}

/** The vendor callback kvm_gmem_populate hands each folio to (SEV-SNP: sev_gmem_post_populate). */
export type GmemPostPopulate = (kvm: PrivateMemKvm, gfn: number, pfn: number, order: number) => number;

/**
 * kvm_gmem_populate(): fill the private pages of [start_gfn, start_gfn + npages) before the guest runs
 * (SEV-SNP / TDX launch). The slot must be private-capable; each folio must be new (an up-to-date one
 * is -EEXIST: it was populated or faulted in already) and the gfns it covers private, else the order
 * shrinks down to 4K and then -EINVAL. The vendor callback replaces the prepare hook, and the folio is
 * marked up to date only when it succeeds. Returns the pages done, or -errno if none were.
 */
export function kvm_gmem_populate(kvm: PrivateMemKvm, slot: KvmMemorySlot | null, start_gfn: number, npages: number, post_populate: GmemPostPopulate): number {
  if (probes.armed) probes.hit(PR_POPULATE, { gfn: start_gfn, npages });
  if (!kvm_slot_has_gmem(slot)) return -EINVAL;
  const b = kvm_gmem_get_file(kvm, slot!);
  if (b === undefined) return -EFAULT;
  const file = b.file;
  npages = Math.min(npages, slot!.npages - (start_gfn - slot!.base_gfn));
  let ret = 0;
  let i = 0;
  while (i < npages) {
    const gfn = start_gfn + i;
    const index = kvm_gmem_get_index(slot!, b.pgoff, gfn);
    if (index < 0 || index >= file.npages) {
      ret = -EFAULT;
      break;
    }
    const head = kvm_gmem_get_folio(file, index);
    if (file.uptodate[index] !== 0) {
      ret = -EEXIST;
      break;
    }
    const pfn = file.pfn_base + index;
    // Populate whole folios only where the folio starts at this gfn and fits in what is left.
    let max_order = head === index && npages - i >= 2 ** file.order[head]! ? file.order[head]! : 0;
    ret = -EINVAL;
    let ok = true;
    while (!kvm_range_has_memory_attributes(kvm, gfn, gfn + 2 ** max_order, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_ATTRIBUTE_PRIVATE)) {
      if (max_order === 0) {
        ok = false;
        break;
      }
      max_order--;
    }
    if (!ok) break;
    ret = post_populate(kvm, gfn, pfn, max_order);
    if (ret !== 0) break;
    for (let k = index; k < index + 2 ** max_order; k++) file.uptodate[k] = 1;
    i += 2 ** max_order;
  }
  return ret !== 0 && i === 0 ? ret : i;
}

/**
 * kvm_gmem_mapping_order(): the order KVM may map gfn at given the folio there now (no allocation, no
 * prepare): 0 without a folio or when the folio is not congruent with / inside the slot. `pfn_out[0]`
 * receives the pfn (or -1 without a folio).
 */
export function kvm_gmem_mapping_order(kvm: PrivateMemKvm, slot: KvmMemorySlot, gfn: number, pfn_out?: number[]): number {
  if (pfn_out) pfn_out[0] = -1;
  const b = kvm_gmem_get_file(kvm, slot);
  if (b === undefined) return 0;
  const file = b.file;
  const index = kvm_gmem_get_index(slot, b.pgoff, gfn);
  const order = file.folio_order(index);
  if (order < 0) return 0;
  if (pfn_out) pfn_out[0] = file.pfn_base + index;
  if (order === 0) return 0;
  const n = 2 ** order;
  const head_gfn = gfn - (index % n);
  return head_gfn % n === 0 && head_gfn >= slot.base_gfn && head_gfn + n <= slot.base_gfn + slot.npages ? order : 0;
}

/** The gfn ranges of the file's bindings overlapping file pages [start, end). */
function bound_gfn_ranges(file: KvmGmemFile, start: number, end: number): Array<{ slot: KvmMemorySlot; start: number; end: number }> {
  const out: Array<{ slot: KvmMemorySlot; start: number; end: number }> = [];
  for (const b of file.bindings) {
    const a = Math.max(start, b.start);
    const e = Math.min(end, b.end);
    if (a >= e) continue;
    out.push({ slot: b.slot, start: b.slot.base_gfn + (a - b.start), end: b.slot.base_gfn + (e - b.start) });
  }
  return out;
}

/**
 * kvm_gmem_invalidate_begin(): for the bound gfns of file pages [start, end), begin an mmu invalidation
 * (once), add each range and unmap its private mappings; flush if anything was zapped. Returns whether
 * an invalidation was begun (so kvm_gmem_invalidate_end knows to end it).
 */
export function kvm_gmem_invalidate_begin(file: KvmGmemFile, start: number, end: number): boolean {
  if (probes.armed) probes.hit(PR_INV_BEGIN, { start, end });
  const kvm = file.kvm;
  const mmu = kvm_private_ctx(kvm).mmu;
  let found = false;
  let flush = false;
  for (const r of bound_gfn_ranges(file, start, end)) {
    if (!found) {
      kvm.kvm_mmu_invalidate_begin();
      found = true;
    }
    kvm.kvm_mmu_invalidate_range_add(r.start, r.end);
    if (mmu !== null) {
      const unmap = mmu.kvm_unmap_gfn_range;
      flush = unmap(kvm, r.slot, r.start, r.end, KVM_FILTER_PRIVATE) || flush;
    }
  }
  if (flush) kvm.kvm_flush_remote_tlbs();
  return found;
}

/** kvm_gmem_invalidate_end(). */
export function kvm_gmem_invalidate_end(file: KvmGmemFile, start: number, end: number, begun: boolean): void {
  if (probes.armed) probes.hit(PR_INV_END, { start, end });
  if (begun) file.kvm.kvm_mmu_invalidate_end();
}

/** kvm_gmem_free_folio() (a_ops.free_folio): the folio's pfns go back through the arch invalidate hook. */
export function kvm_gmem_free_folio(file: KvmGmemFile, head: number): void {
  const order = file.order[head]!;
  const n = 2 ** order;
  const pfn = file.pfn_base + head;
  if (probes.armed) probes.hit(PR_FREE, { pfn, order });
  kvm_arch_gmem_invalidate(file.kvm, pfn, pfn + n);
  // A later folio at these offsets is a different page: the poison goes with the freed one.
  for (let i = head; i < head + n; i++) {
    file.order[i] = -1;
    file.uptodate[i] = 0;
    file.hwpoison[i] = 0;
  }
  file.folios_freed++;
}

/**
 * truncate_inode_pages_range() over file pages [start, end): whole folios are freed; a huge folio only
 * partly inside is split to order 0 first (its up-to-date state carries over) and the covered pages freed.
 */
export function truncate_inode_pages_range(file: KvmGmemFile, start: number, end: number): void {
  const lim = Math.min(end, file.order.length);
  for (let i = start; i < lim; ) {
    const o = file.order[i]!;
    if (o < 0) {
      i++;
      continue;
    }
    const head = file.folio_head(i);
    const n = 2 ** o;
    if (head >= start && head + n <= end) {
      kvm_gmem_free_folio(file, head);
      i = head + n;
      continue;
    }
    for (let j = head; j < head + n; j++) file.order[j] = 0;
    file.folios_allocated += n - 1;
    kvm_gmem_free_folio(file, i);
    i++;
  }
}

/** kvm_gmem_punch_hole(): invalidate (zap private mappings), free the folios, end the invalidation. */
export function kvm_gmem_punch_hole(file: KvmGmemFile, offset: number, len: number): number {
  const start = offset / PAGE;
  const end = start + len / PAGE;
  if (probes.armed) probes.hit(PR_PUNCH, { fd: file.fd, start, end });
  const begun = kvm_gmem_invalidate_begin(file, start, end);
  truncate_inode_pages_range(file, start, end);
  kvm_gmem_invalidate_end(file, start, end, begun);
  return 0;
}

/** kvm_gmem_allocate(): fallocate without PUNCH_HOLE allocates folios but does not prepare them. */
export function kvm_gmem_allocate(file: KvmGmemFile, offset: number, len: number): number {
  const start = offset / PAGE;
  const end = start + len / PAGE;
  for (let i = start; i < end; ) {
    const head = kvm_gmem_get_folio(file, i);
    i = head + 2 ** file.order[head]!;
  }
  return 0;
}

/** kvm_gmem_fallocate(): 0 or -errno. */
export function kvm_gmem_fallocate(kvm: PrivateMemKvm, fd: number, mode: number, offset: number, len: number): number {
  const file = files(kvm).get(fd);
  if (file === undefined || file.released) return -EBADF;
  if ((mode & FALLOC_FL_KEEP_SIZE) === 0) return -EOPNOTSUPP;
  if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) !== 0) return -EOPNOTSUPP;
  if (offset % PAGE !== 0 || len % PAGE !== 0 || offset < 0 || len <= 0) return -EINVAL;
  if (offset + len > file.size) return -EINVAL;
  if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) return kvm_gmem_punch_hole(file, offset, len);
  return kvm_gmem_allocate(file, offset, len);
}

/**
 * kvm_gmem_release(): zap every binding's private mappings and unbind the slots; with the last
 * reference gone the inode is evicted and its folios are freed (through the arch invalidate hook).
 */
export function kvm_gmem_release(kvm: PrivateMemKvm, fd: number): number {
  const file = files(kvm).get(fd);
  if (file === undefined || file.released) return -EBADF;
  if (probes.armed) probes.hit(PR_RELEASE, { fd });
  const begun = kvm_gmem_invalidate_begin(file, 0, file.npages);
  kvm_gmem_invalidate_end(file, 0, file.npages, begun);
  for (const b of [...file.bindings]) kvm_gmem_unbind(b.slot);
  file.released = true;
  truncate_inode_pages_range(file, 0, file.npages);
  files(kvm).delete(fd);
  return 0;
}

/** MF_DELAYED: the folio stays in the file until it is truncated. */
export const MF_DELAYED = 2;

/**
 * kvm_gmem_error_folio() (a_ops.error_remove_folio): the folio holding file page `index` is poisoned. Its
 * private mappings are zapped but it is not truncated; later lookups return -EHWPOISON.
 */
export function kvm_gmem_error_folio(kvm: PrivateMemKvm, fd: number, index: number): number {
  const file = files(kvm).get(fd);
  if (file === undefined || file.released) return -EBADF;
  const o = file.folio_order(index);
  if (o < 0) return -EINVAL;
  const head = file.folio_head(index);
  const n = 2 ** o;
  if (probes.armed) probes.hit(PR_ERROR, { fd, index, order: o });
  const begun = kvm_gmem_invalidate_begin(file, head, head + n);
  for (let i = head; i < head + n; i++) file.hwpoison[i] = 1;
  kvm_gmem_invalidate_end(file, head, head + n, begun);
  return MF_DELAYED;
}
