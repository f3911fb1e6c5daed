/**
 * Design variant `gmem_prepare` (seed 004: "KVM: x86: Add gmem hook for initializing private memory").
 *
 * - `on_alloc` (upstream direction): a folio becomes private in the RMP when guest_memfd prepares it
 *   (kvm_gmem_prepare_folio -> kvm_arch_gmem_prepare -> sev_gmem_prepare, at the folio's size) and goes
 *   back to shared when guest_memfd frees it.
 * - `on_fault` (the RFC): the private faultin path calls a prepare hook that converts at the granularity
 *   KVM is about to map; freeing still converts back.
 *
 * The review's objection is that the mapping granularity of one fault is transient (a mixed 2M range, a
 * fault that loses a race with a conversion and retries), while an RMP conversion at 4K is permanent for
 * the life of the folio: no instruction merges 4K RMP entries back. `compare_gmem_prepare_variants` runs
 * one workload under both variants and reports the RMP, NPT and fault counts so that shows in numbers.
 *
 * The workload driver uses the real attribute, guest_memfd, SEV-SNP and private-faultin code, and by
 * default the engine's fault path and TDP MMU; a small leaf-level NPT model is the alternative backend.
 */
import { sev_vmgexit_psc, vmm_run_psc, type PscBufEntry } from './sev_psc';
import { defineProbe, probes } from '../probes';
import {
  KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, kvm_private_ctx, kvm_private_mem_init, kvm_vm_ioctl_set_mem_attributes, max_level_by_lpage_info,
  type FaultForPrepare, type GmemPrepareVariant, type PrivateMemKvm,
} from '../kvm/attributes';
import { kvm_gmem_create, kvm_gmem_get_file } from '../kvm/guest_memfd';
import { KVM_MEM_GUEST_MEMFD, KVM_PAGES_PER_HPAGE, PG_LEVEL_2M, PG_LEVEL_4K, type KvmMemorySlot } from './memslot';
import {
  kvm_max_level_for_order, kvm_mmu_faultin_pfn_gmem, kvm_mmu_prepare_memory_fault_exit, type PrivateFault,
  type PrivateVcpu,
} from './private_fault';
import {
  PFERR_FETCH_MASK, PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_PRIVATE_ACCESS_HI, PFERR_USER_MASK, PFERR_WRITE_MASK,
} from './pferr';
import { X86Vm } from './index';
import { npf_interception } from './mmu';
import {
  PVALIDATE_FAIL_SIZEMISMATCH, RMP_PG_SIZE_2M, RMP_PG_SIZE_4K, SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_SHARED, pvalidate, sev_gmem_prepare,
  sev_handle_rmp_fault, sev_snp_init, to_kvm_sev_info, snp_rmp_check_guest_access, type SevInfo,
} from './sev_snp';
import { RET_PF_CONTINUE, RET_PF_FIXED, RET_PF_RETRY } from './ret_pf';
import { Kvm } from './vm';

export type { GmemPrepareVariant };

const PR_X86_GMEM_PREPARE = defineProbe(
  'kvm_x86_gmem_prepare', 'private', 'arch/x86/kvm/mmu/mmu.c', 'RFC variant: convert the faulting page in the RMP at the level KVM will map it',
  ['gfn', 'pfn', 'level'],
);

/**
 * The `on_fault` hook: the level KVM will map this fault at (fault and folio caps, lpage_info incl. the
 * MIXED flag, 4K for an exec fault under the NX huge page mitigation) decides the RMP entry size.
 */
export function kvm_x86_gmem_prepare(kvm: PrivateMemKvm, slot: KvmMemorySlot, fault: FaultForPrepare, max_order: number): number {
  let level = Math.min(fault.max_level, kvm_max_level_for_order(max_order));
  level = max_level_by_lpage_info(slot, fault.gfn, level);
  if (fault.exec && fault.nx_huge_page_workaround_enabled) level = PG_LEVEL_4K;
  if (probes.armed) probes.hit(PR_X86_GMEM_PREPARE, { gfn: fault.gfn, pfn: fault.pfn, level });
  return sev_gmem_prepare(kvm, fault.pfn, fault.gfn, level >= PG_LEVEL_2M ? 9 : 0);
}

/** Select the variant for a VM. */
export function set_gmem_prepare_variant(kvm: PrivateMemKvm, variant: GmemPrepareVariant): void {
  const ctx = kvm_private_ctx(kvm);
  ctx.gmem_prepare_variant = variant;
  ctx.fault_prepare = variant === 'on_fault' ? kvm_x86_gmem_prepare : null;
}

// ---------------------------------------------------------------------------------------------------
// Workload driver.

/** One step of a workload; gfns are relative to the private slot's first gfn. */
export type GmemWorkloadStep =
  /** The guest writes (or reads / fetches) every private gfn of [start, end); shared gfns are skipped. */
  | { op: 'touch'; start: number; end: number; access?: 'read' | 'write' | 'exec' }
  /** A GHCB page-state change handled by the VMM (KVM_SET_MEMORY_ATTRIBUTES, optional PUNCH_HOLE). */
  | { op: 'convert'; start: number; end: number; to: 'private' | 'shared'; punch_hole?: boolean }
  /**
   * A fault on `gfn` that races with another vCPU's conversion: the conversion lands after faultin and
   * before mmu_lock, so the fault is stale and retries (the guest's access is not done yet).
   */
  | { op: 'raced_fault'; gfn: number; convert: { start: number; end: number; to: 'private' | 'shared' } };

export interface GmemWorkload {
  /** Size of the private slot in 2M chunks. */
  chunks: number;
  /** guest_memfd with PMD-order folios (the kernel: order 0). */
  huge_folios: boolean;
  steps: GmemWorkloadStep[];
}

/**
 * Which MMU maps the faults: `tdp_mmu` is the engine's real fault path and TDP MMU (x86/mmu.ts) with the
 * private-memory model plugged in; `model` is the driver's own leaf-level NPT (same rules, no tables).
 */
export type GmemSimBackend = 'tdp_mmu' | 'model';

export interface GmemVariantReport {
  variant: GmemPrepareVariant;
  /** Assigned RMP entries by size (a 2M entry counts once). */
  rmp_2m: number;
  rmp_4k: number;
  psmash: number;
  /** Successful RMPUPDATEs (conversions either way). */
  rmpupdate: number;
  /** NPT faults KVM handled (each kvm_mmu_page_fault). */
  faults: number;
  /** Faults that ended stale (RETRY). */
  retries: number;
  /** #NPFs with PFERR_GUEST_RMP_MASK (sev_handle_rmp_fault). */
  rmp_npf: number;
  memory_fault_exits: number;
  pvalidate: number;
  /** NPT leaves present at the end, by level. */
  npt_2m: number;
  npt_4k: number;
  /** Per 2M chunk at the end: RMP size of its first page (0 = unassigned) and its NPT leaf level (0 = none). */
  chunks: Array<{ rmp_level: number; npt_level: number }>;
}

const SLOT_GFN = 0x100000;
const CHUNK = 512;

/** A self-contained SNP VM with one guest_memfd slot and a leaf-level NPT model. */
class GmemSim {
  readonly kvm: Kvm;
  readonly sev: SevInfo;
  readonly slot: KvmMemorySlot;
  readonly vcpu: PrivateVcpu;
  /** NPT leaves: first gfn of the leaf -> level. */
  readonly npt = new Map<number, number>();
  readonly fault: PrivateFault = {
    addr: 0, gfn: 0, slot: null, is_private: true, write: false, exec: false, max_level: 3, pfn: -1, refcounted_page: false, map_writable: false,
    nx_huge_page_workaround_enabled: false,
  };
  faults = 0;
  retries = 0;
  memory_fault_exits = 0;
  rmp_npf = 0;
  private pgoff = 0;
  private pfn_base = 0;

  /** With the `tdp_mmu` backend: the engine VM whose fault path and TDP MMU do the mapping. */
  readonly x86: X86Vm | null;

  constructor(variant: GmemPrepareVariant, w: GmemWorkload, backend: GmemSimBackend) {
    if (backend === 'tdp_mmu') {
      // X86Vm wires the private-memory model and SEV-SNP (ASID 1) into its MMU itself.
      this.x86 = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 1 });
      this.kvm = this.x86.kvm;
    } else {
      this.x86 = null;
      this.kvm = new Kvm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM });
    }
    const kvm = this.kvm as unknown as PrivateMemKvm;
    this.sev = this.x86 !== null ? to_kvm_sev_info(kvm)! : sev_snp_init(kvm, { asid: 1 });
    set_gmem_prepare_variant(kvm, variant);
    if (backend === 'model') {
      kvm_private_mem_init(kvm, {
        kvm_unmap_gfn_range: (_k, _slot, start, end) => this.zap(start, end),
        kvm_zap_gfn_range: (k, start, end) => {
          k.kvm_mmu_invalidate_begin();
          k.kvm_mmu_invalidate_range_add(start, end);
          this.zap(start, end);
          k.kvm_mmu_invalidate_end();
        },
      });
    }
    const npages = w.chunks * CHUNK;
    const fd = kvm_gmem_create(kvm, { size: npages * 4096, flags: 0 }, { huge_folios: w.huge_folios });
    const r = this.kvm.kvm_set_memory_region({
      slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: SLOT_GFN * 4096, memory_size: npages * 4096, userspace_addr: 0x7f00_0000_0000,
      guest_memfd: fd, guest_memfd_offset: 0,
    });
    if (r !== 0) throw new Error(`memslot: ${r}`);
    this.slot = this.kvm.memslots[0]!.slots[0]!;
    const b = kvm_gmem_get_file(kvm, this.slot)!;
    this.pgoff = b.pgoff;
    this.pfn_base = b.file.pfn_base;
    this.vcpu = { kvm, vcpu_id: 0, run_exit: null };
    // Launch: all guest memory private.
    kvm_vm_ioctl_set_mem_attributes(kvm, { address: SLOT_GFN * 4096, size: npages * 4096, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 0 });
  }

  /** Remove every leaf overlapping [start, end). */
  zap(start: number, end: number): boolean {
    let any = false;
    for (let h = start - (start % CHUNK); h < end; h += CHUNK) {
      if (this.npt.get(h) === PG_LEVEL_2M) {
        this.npt.delete(h);
        any = true;
      }
    }
    for (let g = start; g < end; g++) {
      if (this.npt.get(g) === PG_LEVEL_4K) {
        this.npt.delete(g);
        any = true;
      }
    }
    return any;
  }

  leaf(gfn: number): number {
    if (this.x86 !== null) {
      const s2 = this.x86.read_spte(gfn, PG_LEVEL_2M);
      if (s2 !== undefined && (s2.lo & 0x800) !== 0 && (s2.lo & 0x80) !== 0) return PG_LEVEL_2M;
      const s1 = this.x86.read_spte(gfn, PG_LEVEL_4K);
      return s1 !== undefined && (s1.lo & 0x800) !== 0 ? PG_LEVEL_4K : 0;
    }
    const h = gfn - (gfn % CHUNK);
    if (this.npt.get(h) === PG_LEVEL_2M) return PG_LEVEL_2M;
    return this.npt.get(gfn) === PG_LEVEL_4K ? PG_LEVEL_4K : 0;
  }

  pfn_of(gfn: number): number {
    return this.pfn_base + this.pgoff + (gfn - this.slot.base_gfn);
  }

  /**
   * The private #NPF path for a non-present leaf: kvm_mmu_faultin_pfn's checks, the private faultin,
   * kvm_mmu_hugepage_adjust (lpage_info only: private memory ignores the host mapping), the staleness
   * check and the map. `race` runs between faultin and mmu_lock.
   */
  page_fault(gfn: number, access: 'read' | 'write' | 'exec', race?: () => void): number {
    if (this.x86 !== null) return this.tdp_page_fault(gfn, access, race);
    this.faults++;
    const kvm = this.kvm;
    const f = this.fault;
    f.addr = gfn * 4096;
    f.gfn = gfn;
    f.slot = this.slot;
    f.is_private = true;
    f.write = access === 'write';
    f.exec = access === 'exec';
    f.max_level = 3;
    f.pfn = -1;
    f.nx_huge_page_workaround_enabled = kvm.is_nx_huge_page_enabled();
    const mmu_seq = kvm.mmu_invalidate_seq;
    if (!kvm.kvm_mem_is_private(gfn)) {
      kvm_mmu_prepare_memory_fault_exit(this.vcpu, f);
      this.memory_fault_exits++;
      return -14;
    }
    const r = kvm_mmu_faultin_pfn_gmem(this.vcpu, f);
    if (r !== RET_PF_CONTINUE) {
      this.memory_fault_exits++;
      return r;
    }
    let goal = PG_LEVEL_4K;
    if (f.max_level > PG_LEVEL_4K) {
      const req = max_level_by_lpage_info(this.slot, gfn, f.max_level);
      if (!(f.exec && f.nx_huge_page_workaround_enabled)) goal = req;
    }
    if (race) race();
    if (kvm.mmu_invalidate_retry_gfn(mmu_seq, gfn)) {
      this.retries++;
      return RET_PF_RETRY;
    }
    const n = KVM_PAGES_PER_HPAGE[goal]!;
    const base = gfn - (gfn % n);
    this.zap(base, base + n);
    this.npt.set(base, goal);
    return RET_PF_FIXED;
  }

  /**
   * The #NPF through the engine's npf_interception-equivalent entry (kvm_mmu_page_fault with the SNP
   * private bits); a race runs in the window between faultin and mmu_lock (vcpu.on_faultin_done).
   */
  private tdp_page_fault(gfn: number, access: 'read' | 'write' | 'exec', race?: () => void): number {
    const v = this.x86!;
    const vcpu = v.vcpus[0]!;
    this.faults++;
    const err_lo = PFERR_USER_MASK | (access === 'write' ? PFERR_WRITE_MASK : 0) | (access === 'exec' ? PFERR_FETCH_MASK : 0);
    const err_hi = PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_ENC_MASK_HI | PFERR_PRIVATE_ACCESS_HI;
    vcpu.on_faultin_done = race ? () => race() : null;
    let r: number;
    try {
      r = v.fault(0, gfn * 4096, err_lo, err_hi);
    } finally {
      vcpu.on_faultin_done = null;
    }
    if (r < 0 || vcpu.run_exit !== null) {
      this.memory_fault_exits++;
      return r < 0 ? r : -14;
    }
    if (vcpu.last_ret_pf === RET_PF_RETRY) {
      this.retries++;
      return RET_PF_RETRY;
    }
    return RET_PF_FIXED;
  }

  /** The guest's access to a private gfn, with KVM handling each exit it causes, until it completes. */
  touch(gfn: number, access: 'read' | 'write' | 'exec'): void {
    const gpa = gfn * 4096;
    for (let i = 0; i < 8; i++) {
      const level = this.leaf(gfn);
      if (level === 0) {
        if (this.page_fault(gfn, access) < 0) return;
        continue;
      }
      const pfn = this.pfn_of(gfn);
      const chk = snp_rmp_check_guest_access(this.sev.rmp, this.sev.asid, gpa, pfn, level, true, access === 'write');
      if (chk.result === 'ok') return;
      if (chk.result === 'vc') {
        // The guest accepts the page: PVALIDATE at the leaf size, falling back to 4K.
        if (!this.validate(gfn, level)) return;
        continue;
      }
      // #NPF with the RMP bit: the MMU finds the leaf present (spurious), then the RMP handler runs.
      this.rmp_npf++;
      this.faults++;
      this.rmp_fault(gpa, chk.err_lo | PFERR_USER_MASK | (access === 'write' ? PFERR_WRITE_MASK : 0), chk.err_hi);
    }
    throw new Error(`gfn ${gfn.toString(16)}: the access did not complete`);
  }

  /**
   * KVM's handling of an RMP #NPF: with the tdp_mmu backend the real npf_interception (the MMU finds the
   * leaf present, then sev_handle_rmp_fault runs from there); the model backend calls the RMP handler.
   */
  private rmp_fault(gpa: number, err_lo: number, err_hi: number): void {
    if (this.x86 !== null) {
      const vcpu = this.x86.vcpus[0]!;
      this.x86.enter(vcpu);
      npf_interception(vcpu, gpa, err_lo, err_hi);
    } else {
      sev_handle_rmp_fault(this.vcpu, gpa, err_lo, err_hi);
    }
  }

  private validate(gfn: number, level: number): boolean {
    const rmp = this.sev.rmp;
    if (level >= PG_LEVEL_2M) {
      const h = gfn - (gfn % CHUNK);
      const r = pvalidate(rmp, this.sev.asid, h * 4096, this.pfn_of(h), level, RMP_PG_SIZE_2M, true);
      if (r.result === 'ok' && r.rc === 0) return true;
      if (r.result === 'ok' && r.rc !== PVALIDATE_FAIL_SIZEMISMATCH) return false;
      if (r.result === 'npf') {
        this.rmp_npf++;
        this.rmp_fault(h * 4096, r.err_lo, r.err_hi);
        return true;
      }
    }
    const r = pvalidate(rmp, this.sev.asid, gfn * 4096, this.pfn_of(gfn), level, RMP_PG_SIZE_4K, true);
    if (r.result === 'npf') {
      this.rmp_npf++;
      this.faults++;
      this.rmp_fault(gfn * 4096, r.err_lo, r.err_hi);
    }
    return true;
  }

  convert(start: number, end: number, to: 'private' | 'shared', punch_hole: boolean): void {
    const entries: PscBufEntry[] = [];
    for (let g = start; g < end; g++) {
      entries.push({ cur_page: 0, gfn: SLOT_GFN + g, operation: to === 'private' ? SNP_PAGE_STATE_PRIVATE : SNP_PAGE_STATE_SHARED, pagesize: RMP_PG_SIZE_4K });
    }
    // The guest's PSC buffers hold at most 64 entries; KVM forwards each run, the VMM converts and re-enters.
    for (let i = 0; i < entries.length; i += 64) {
      const chunk = entries.slice(i, i + 64);
      const run = vmm_run_psc(this.vcpu, sev_vmgexit_psc(this.vcpu, { cur_entry: 0, end_entry: chunk.length - 1, entries: chunk }), false, { punch_hole });
      if (run.result[0] !== 0 || run.result[1] !== 0) throw new Error(`conversion failed: sw_exit_info_2 ${run.result[1]}:${run.result[0]}`);
    }
    // A guest converting to private accepts the pages again when it next touches them (#VC -> PVALIDATE).
  }

  run(w: GmemWorkload): void {
    for (const s of w.steps) {
      if (s.op === 'touch') {
        for (let g = s.start; g < s.end; g++) {
          if (this.kvm.kvm_mem_is_private(SLOT_GFN + g)) this.touch(SLOT_GFN + g, s.access ?? 'write');
        }
      } else if (s.op === 'convert') {
        this.convert(s.start, s.end, s.to, s.punch_hole ?? false);
      } else {
        const c = s.convert;
        this.page_fault(SLOT_GFN + s.gfn, 'write', () => this.convert(c.start, c.end, c.to, false));
      }
    }
  }

  report(variant: GmemPrepareVariant, chunks: number): GmemVariantReport {
    const census = this.sev.rmp.census();
    let n2 = 0;
    let n4 = 0;
    if (this.x86 !== null) {
      for (let g = this.slot.base_gfn; g < this.slot.base_gfn + this.slot.npages; ) {
        const l = this.leaf(g);
        if (l === PG_LEVEL_2M) {
          n2++;
          g += CHUNK - (g % CHUNK);
        } else {
          if (l === PG_LEVEL_4K) n4++;
          g++;
        }
      }
    }
    for (const l of this.npt.values()) {
      if (l === PG_LEVEL_2M) n2++;
      else n4++;
    }
    const per: GmemVariantReport['chunks'] = [];
    for (let c = 0; c < chunks; c++) {
      const g = SLOT_GFN + c * CHUNK;
      const e = this.sev.rmp.entry(this.pfn_of(g));
      per.push({ rmp_level: e.assigned ? (e.pagesize ? 2 : 1) : 0, npt_level: this.leaf(g) });
    }
    const st = this.sev.rmp.stats;
    return {
      variant, rmp_2m: census.assigned_2m, rmp_4k: census.assigned_4k, psmash: st.psmash, rmpupdate: st.rmpupdate, faults: this.faults,
      retries: this.retries, rmp_npf: this.rmp_npf, memory_fault_exits: this.memory_fault_exits, pvalidate: st.pvalidate, npt_2m: n2,
      npt_4k: n4, chunks: per,
    };
  }
}

/**
 * The review's workload over four 2M chunks of PMD-order guest_memfd, all private at launch:
 * 0: touched while uniform; 1: the guest shares one 4K page (no PUNCH_HOLE), touches the rest, converts
 * it back; 2: the first fault races with the conversion of a shared page back to private; 3: untouched.
 */
export function default_gmem_workload(huge_folios = true): GmemWorkload {
  return {
    chunks: 4,
    huge_folios,
    steps: [
      { op: 'touch', start: 0, end: CHUNK },
      { op: 'convert', start: CHUNK + 7, end: CHUNK + 8, to: 'shared' },
      { op: 'touch', start: CHUNK, end: 2 * CHUNK },
      { op: 'convert', start: CHUNK + 7, end: CHUNK + 8, to: 'private' },
      { op: 'touch', start: CHUNK, end: 2 * CHUNK },
      { op: 'convert', start: 2 * CHUNK + 9, end: 2 * CHUNK + 10, to: 'shared' },
      { op: 'raced_fault', gfn: 2 * CHUNK, convert: { start: 2 * CHUNK + 9, end: 2 * CHUNK + 10, to: 'private' } },
      { op: 'touch', start: 2 * CHUNK, end: 3 * CHUNK },
    ],
  };
}

/** Run one workload under one variant. */
export function run_gmem_prepare_workload(variant: GmemPrepareVariant, w: GmemWorkload = default_gmem_workload(), backend: GmemSimBackend = 'tdp_mmu'): GmemVariantReport {
  const sim = new GmemSim(variant, w, backend);
  sim.run(w);
  return sim.report(variant, w.chunks);
}

/** Run the same workload under both variants. */
export function compare_gmem_prepare_variants(
  w: GmemWorkload = default_gmem_workload(), backend: GmemSimBackend = 'tdp_mmu',
): { on_alloc: GmemVariantReport; on_fault: GmemVariantReport } {
  return { on_alloc: run_gmem_prepare_workload('on_alloc', w, backend), on_fault: run_gmem_prepare_workload('on_fault', w, backend) };
}

/** The comparison as text lines (a table a CLI or view can print as is). */
export function format_gmem_variant_comparison(c: { on_alloc: GmemVariantReport; on_fault: GmemVariantReport }): string[] {
  const rows: Array<[string, (r: GmemVariantReport) => string]> = [
    ['RMP entries 2M', (r) => String(r.rmp_2m)],
    ['RMP entries 4K', (r) => String(r.rmp_4k)],
    ['PSMASH', (r) => String(r.psmash)],
    ['RMPUPDATE', (r) => String(r.rmpupdate)],
    ['RMP #NPF', (r) => String(r.rmp_npf)],
    ['NPT faults', (r) => String(r.faults)],
    ['  of which stale (RETRY)', (r) => String(r.retries)],
    ['PVALIDATE', (r) => String(r.pvalidate)],
    ['NPT leaves 2M', (r) => String(r.npt_2m)],
    ['NPT leaves 4K', (r) => String(r.npt_4k)],
    ['per 2M chunk (RMP/NPT level)', (r) => r.chunks.map((x) => `${x.rmp_level}/${x.npt_level}`).join(' ')],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const a = rows.map((r) => r[1](c.on_alloc));
  const w1 = Math.max('on_alloc'.length, ...a.map((x) => x.length));
  const out = [`${''.padEnd(w0)}  ${'on_alloc'.padStart(w1)}  on_fault`];
  rows.forEach((r, i) => out.push(`${r[0].padEnd(w0)}  ${a[i]!.padStart(w1)}  ${r[1](c.on_fault)}`));
  return out;
}
