/**
 * The arm64 binding: scenario statements onto the arm64 VM model (src/engine/arm64/mmu.ts): memslots,
 * guest accesses that take stage-2 faults (kvm_handle_guest_abort -> user_mem_abort), notifier unmaps
 * and aging, dirty logging; with kvm-arm.mode=protected also the pKVM hypervisor (host stage-2
 * ownership, share/donate hypercalls, host aborts).
 */
import { stage2DescriptorAt, kvm_pgtable_stage2_test_clear_young, kvm_pgtable_stage2_wrprotect, type KvmPgtable } from '../../engine/arm64/pgtable';
import { decodeS2Descriptor } from '../../engine/arm64/decode';
import { Arm64Vm, type Memslot } from '../../engine/arm64/mmu';
import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X } from '../../engine/arm64/pgtable_desc';
import { type PkvmHyp, pageStateName } from '../../engine/arm64/pkvm_mem_protect';
import { type OwnerEncoding, ownerName } from '../../engine/arm64/variants';
import {
  type AccessOp,
  type Fields,
  type MemoryRegionOp,
  NotSupportedYet,
  type Outcome,
  type RangeOp,
  type ScenarioEngine,
  type VmConfig,
} from '../engine_api';

const EINVAL = -22;
const EEXIST = -17;
const ENOMEM = -12;
const KVM_MEM_LOG_DIRTY_PAGES = 1;
const KVM_MEM_READONLY = 2;
const GIB = 2 ** 30;

/** owner_encoding variant names: `upstream` is today's typed annotations. */
function encodingOf(cfg: VmConfig): OwnerEncoding {
  const v = cfg.variants['owner_encoding'] ?? 'upstream';
  return v === 'proposed' || v === 'set_owner_2021' ? 'set_owner_2021' : 'annotate_2026';
}

/** `PKVM_PAGE_SHARED_OWNED` -> `SHARED_OWNED`, `PKVM_NOPAGE` -> `NOPAGE`. */
function shortState(s: number): string {
  return pageStateName(s).replace(/^PKVM_(PAGE_)?/, '');
}

function protOf(words: string[] | undefined): number {
  if (!words) return KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X;
  let p = 0;
  for (const w of words) p |= w === 'R' ? KVM_PGTABLE_PROT_R : w === 'W' ? KVM_PGTABLE_PROT_W : KVM_PGTABLE_PROT_X;
  return p;
}

class Arm64Engine implements ScenarioEngine {
  readonly name: string;
  readonly vm: Arm64Vm;
  /** Scenario slot id -> engine memslot. */
  private readonly slots = new Map<number, Memslot>();
  /** Host PA handed out to memslots so far (pKVM: inside host_memory). */
  private paNext: number;

  constructor(readonly cfg: VmConfig) {
    const encoding = encodingOf(cfg);
    const pkvm = cfg.mode === 'protected';
    this.name = pkvm ? `arm64 pKVM (owner_encoding ${encoding})` : `arm64 ${cfg.mode}`;
    this.vm = new Arm64Vm({
      ipaBits: cfg.ipaBits,
      pkvm,
      protectedVm: cfg.type === 'protected',
      variant: encoding,
      paBits: cfg.paBits,
      hostMemory: [{ base: cfg.hostMemory.start, size: cfg.hostMemory.end - cfg.hostMemory.start }],
    });
    this.paNext = cfg.hostMemory.start;
  }

  private get hyp(): PkvmHyp {
    if (!this.vm.pkvm) throw new NotSupportedYet('the host is not running protected KVM; add mode=protected to the vm line');
    return this.vm.pkvm;
  }

  setUserMemoryRegion2(op: MemoryRegionOp): Outcome {
    const cur = this.slots.get(op.slot);
    if (op.size === 0) {
      if (!cur) return { ret: EINVAL };
      throw new NotSupportedYet('the arm64 model cannot delete memslots');
    }
    if (cur) {
      if (cur.gpa !== op.gpa || cur.size !== op.size) throw new NotSupportedYet('the arm64 model cannot move or resize memslots');
      if (((op.flags ^ ((cur.logDirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (cur.readonly ? KVM_MEM_READONLY : 0))) & KVM_MEM_READONLY) !== 0) return { ret: EINVAL };
      this.vm.setDirtyLogging(cur.id, (op.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0);
      return { ret: 0 };
    }
    // Host pages for the slot: 1 GiB aligned, with the GPA's offset inside 1 GiB, so that a block
    // mapping is possible wherever the IPA and HVA allow one.
    const pa = Math.ceil(this.paNext / GIB) * GIB + (op.gpa % GIB);
    if (this.vm.pkvm && pa + op.size > this.cfg.hostMemory.end) return { ret: ENOMEM };
    try {
      const id = this.vm.addMemslot({
        gpa: op.gpa,
        size: op.size,
        ...(op.hva !== undefined ? { hva: op.hva } : {}),
        pa,
        backingPageSize: op.backing,
        hugetlb: op.backing >= GIB,
        readonly: (op.flags & KVM_MEM_READONLY) !== 0,
        logDirty: (op.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0,
      });
      this.slots.set(op.slot, this.vm.memslots.find((m) => m.id === id)!);
      this.paNext = pa + op.size;
      return { ret: 0 };
    } catch (e) {
      // Overlap with another slot is -EEXIST in KVM; misalignment was refused before we got here.
      return { ret: e instanceof RangeError && /overlap/.test(e.message) ? EEXIST : EINVAL };
    }
  }

  getDirtyLog(op: { slot: number }): Outcome & { bitmap?: Uint8Array } {
    const s = this.slots.get(op.slot);
    if (!s) return { ret: -2 };
    const pages = Math.ceil(s.size / this.vm.pageSize);
    const bitmap = new Uint8Array(Math.ceil(pages / 8));
    // Without manual protect, KVM hands out the bitmap, clears it and write-protects what was dirty.
    for (const i of s.dirty) {
      bitmap[i >> 3]! |= 1 << (i & 7);
      kvm_pgtable_stage2_wrprotect(this.vm.pgt, s.gpa + i * this.vm.pageSize, this.vm.pageSize);
    }
    s.dirty.clear();
    return { ret: 0, bitmap };
  }

  access(op: AccessOp): Outcome {
    if (op.space === 'gva') throw new NotSupportedYet('guest virtual accesses on arm64 (stage-1 is not modelled); use ipa=');
    if (op.private !== undefined) throw new NotSupportedYet('private/shared accesses on arm64');
    const r = this.vm.access(op.addr, op.kind === 'fetch' ? 'exec' : op.kind, { el0: op.user });
    if (r.outcome === 'mmio') {
      return { exit: { reason: 'KVM_EXIT_MMIO', vcpu: op.vcpu, fields: { gpa: op.addr, is_write: op.kind === 'write' ? 1 : 0 } } };
    }
    if (r.outcome === 'error') return { ret: r.ret };
    return {};
  }

  private ipaRange(op: RangeOp): { start: number; size: number } | undefined {
    if (op.space === 'gpa') return { start: op.start, size: op.end - op.start };
    for (const s of this.vm.memslots) {
      if (op.start >= s.hva && op.start < s.hva + s.size) {
        const start = s.gpa + (op.start - s.hva);
        return { start, size: Math.min(op.end, s.hva + s.size) - op.start };
      }
    }
    return undefined;
  }

  invalidateRange(op: RangeOp & { event: string }): Outcome {
    const r = this.ipaRange(op);
    if (r) this.vm.unmapRange(r.start, r.size);
    return {};
  }

  ageRange(op: RangeOp & { op: string }): Outcome {
    const r = this.ipaRange(op);
    if (!r) return { ret: 0 };
    const young = kvm_pgtable_stage2_test_clear_young(this.vm.pgt, r.start, r.size, op.op !== 'test_young');
    return { ret: young ? 1 : 0 };
  }

  hostStage2Fault(op: { addr: number }): Outcome {
    return { ret: this.hyp.handle_host_mem_abort(op.addr).ret };
  }

  pkvm(call: string, a: { pfn?: number; gfn?: number; nrPages: number; prot?: string[]; vcpu: number; phys?: number }): Outcome {
    const h = this.hyp;
    const handle = this.vm.hypVm!.handle;
    const pfn = a.pfn ?? 0;
    const gfn = a.gfn ?? 0;
    // The host tops up the guest's memcache before any call that may allocate guest tables.
    const topup = () => h.topupGuestMemcache(this.vm.hypVm!, this.vm.hypVm!.memcache.capacity);
    switch (call) {
      case '__pkvm_host_share_hyp':
        return { ret: h.__pkvm_host_share_hyp(pfn) };
      case '__pkvm_host_unshare_hyp':
        return { ret: h.__pkvm_host_unshare_hyp(pfn) };
      case '__pkvm_host_donate_hyp':
        return { ret: h.__pkvm_host_donate_hyp(pfn, a.nrPages) };
      case '__pkvm_hyp_donate_host':
        return { ret: h.__pkvm_hyp_donate_host(pfn, a.nrPages) };
      case 'hyp_pin_shared_mem':
        return { ret: h.hyp_pin_shared_mem(pfn * h.pageSize, h.pageSize) };
      case 'hyp_unpin_shared_mem':
        h.hyp_unpin_shared_mem(pfn * h.pageSize, h.pageSize);
        return { ret: 0 };
      case '__pkvm_host_share_guest':
        topup();
        return { ret: h.__pkvm_host_share_guest(pfn, gfn, a.nrPages, handle, protOf(a.prot)) };
      case '__pkvm_host_unshare_guest':
        return { ret: h.__pkvm_host_unshare_guest(gfn, a.nrPages, handle) };
      case '__pkvm_host_donate_guest':
        topup();
        return { ret: h.__pkvm_host_donate_guest(pfn, gfn, handle) };
      case '__pkvm_guest_share_host':
        return { ret: h.__pkvm_guest_share_host(handle, gfn) };
      case '__pkvm_guest_unshare_host':
        return { ret: h.__pkvm_guest_unshare_host(handle, gfn) };
      case '__pkvm_host_reclaim_page_guest':
        return { ret: h.__pkvm_host_reclaim_page_guest(handle, gfn) };
      case '__pkvm_host_force_reclaim_page_guest':
        return { ret: h.__pkvm_host_force_reclaim_page_guest(a.phys ?? 0) };
      default:
        throw new NotSupportedYet(`the pKVM model has no ${call}`);
    }
  }

  private descriptor(pgt: KvmPgtable, addr: number, level: number, host: boolean): Fields[] {
    const d = stage2DescriptorAt(pgt, addr, level);
    if (!d) return [];
    const dec = decodeS2Descriptor(d.lo, d.hi, { level: d.level, granule: this.vm.granule, lpa2: pgt.lpa2, fwb: pgt.fwbCap, encoding: pgt.encoding });
    const field = (n: string) => dec.fields.find((x) => x.name === n)?.value;
    const valid = (d.lo & 1) === 1;
    const f: Fields = { valid: valid ? 1 : 0, type: dec.kind, level: d.level, value: (BigInt(d.hi >>> 0) << 32n) | BigInt(d.lo >>> 0) };
    if (dec.outputAddress) {
      const oa = Number(BigInt(dec.outputAddress));
      f['oa'] = oa;
      f['pfn'] = Math.floor(oa / this.vm.pageSize);
    }
    if (valid && dec.kind !== 'table') {
      const xn = field('KVM_PTE_LEAF_ATTR_HI_S2_XN') ?? 0;
      f['r'] = field('KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R') ?? 0;
      f['w'] = field('KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W') ?? 0;
      f['xn'] = xn;
      f['x'] = xn === 0 ? 1 : 0;
      f['af'] = field('KVM_PTE_LEAF_ATTR_LO_S2_AF') ?? 0;
      f['sh'] = field('KVM_PTE_LEAF_ATTR_LO_S2_SH') ?? 0;
      f['memattr'] = field('KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR') ?? 0;
      f['sw'] = field('KVM_PTE_LEAF_ATTR_HI_SW') ?? 0;
    }
    if (dec.owner) f['owner'] = dec.owner.name;
    else if (host && valid) f['owner'] = 'host';
    if (dec.annotationType) f['annotation'] = dec.annotationType;
    const h = this.vm.pkvm;
    if (h) f['state'] = host ? shortState(h.get_host_state(addr)) : shortState(h.guest_get_page_state(d.lo, d.hi));
    return [f];
  }

  query(subject: string, sel: Fields): Fields[] | undefined {
    const level = sel['at_level'] !== undefined ? Number(sel['at_level']) : 3;
    if (subject === 'stage2') {
      if (sel['pa'] !== undefined) return this.descriptor(this.hyp.host_pgt, Number(sel['pa']), level, true);
      return this.descriptor(this.vm.pgt, Number(sel['ipa']), level, false);
    }
    if (subject === 'page_state') {
      const h = this.hyp;
      if (sel['gfn'] !== undefined) return [{ guest: shortState(h.guestPageState(this.vm.hypVm!.handle, Number(sel['gfn']))) }];
      const phys = sel['phys'] !== undefined ? Number(sel['phys']) : Number(sel['pfn']) * h.pageSize;
      const own = h.ownerOf(phys);
      const page = h.hyp_page(phys);
      const f: Fields = { host: shortState(own.hostState), hyp: shortState(own.hypState), owner: ownerName(own.owner) };
      if (page) {
        f['refcount'] = page.refcount;
        f['host_share_guest_count'] = page.host_share_guest_count;
      }
      return [f];
    }
    if (subject === 'memslot') {
      const s = this.slots.get(Number(sel['slot']));
      if (!s) return [];
      return [{
        base_gfn: Math.floor(s.gpa / this.vm.pageSize), npages: s.size / this.vm.pageSize, userspace_addr: s.hva,
        flags: (s.logDirty ? KVM_MEM_LOG_DIRTY_PAGES : 0) | (s.readonly ? KVM_MEM_READONLY : 0), dirty_logging: s.logDirty ? 1 : 0,
      }];
    }
    return undefined;
  }

  stats(): Record<string, number> {
    const s = this.vm.stats();
    return { exits: s.faults + s.mmioExits, mmio_exit_user: s.mmioExits };
  }
}

export function createArm64Engine(cfg: VmConfig): ScenarioEngine | string {
  const { start, end } = cfg.hostMemory;
  if (end <= start || start % 4096 || end % 4096) return 'host_memory must be a non-empty page-aligned range';
  return new Arm64Engine(cfg);
}
