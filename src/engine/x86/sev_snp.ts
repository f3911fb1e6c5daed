/**
 * AMD SEV-SNP: the Reverse Map Table and KVM's use of it (arch/x86/virt/svm/sev.c for the RMP
 * instructions and lookups, arch/x86/kvm/svm/sev.c for the guest_memfd hooks and RMP #NPF handling).
 *
 * The RMP has one entry per 4K host page. Entries are stored as typed-array columns in 512-entry chunks
 * (one chunk per 2M host region, allocated on first write), never as per-page objects. A 2M RMPUPDATE
 * writes all 512 entries of its region with the page-size bit set, which is how a lookup of any pfn
 * inside a 2M page sees it assigned; the page size KVM reads is the 2M-aligned entry's.
 *
 * Besides what KVM does, the module models the parts of the hardware KVM reacts to: RMPUPDATE and
 * PSMASH failure codes, the RMP check of guest accesses (which raises #NPF with PFERR_GUEST_RMP_MASK),
 * the guest's PVALIDATE, host writes to assigned pages, and guest page-state-change requests.
 */
import { getField, setField, type U64 } from '../bits/u64';
import type { BitField } from '../bits/fields';
import { defineProbe, probes } from '../probes';
import { TrackedWeakMap } from '../snapshot';
import { trace } from '../trace_sink';
import { emitTracepoint, halvesToValue } from '../tracepoints/index';
import {
  EINVAL, ENOENT, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, kvm_mem_is_private, kvm_private_ctx, kvm_slot_has_gmem,
  kvm_vm_ioctl_set_mem_attributes, type PrivateMemKvm,
} from '../kvm/attributes';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, kvm_gmem_fallocate, kvm_gmem_get_file, kvm_gmem_get_pfn, type GmemPfn } from '../kvm/guest_memfd';
import {
  PFERR_GUEST_ENC_MASK_HI, PFERR_GUEST_FINAL_MASK_HI, PFERR_GUEST_RMP_MASK, PFERR_GUEST_SIZEM_MASK_HI, PFERR_PRESENT_MASK,
  PFERR_USER_MASK, PFERR_WRITE_MASK,
} from './pferr';
import { PG_LEVEL_2M, PG_LEVEL_4K } from './memslot';

// ---------------------------------------------------------------------------------------------------
// Constants (asm/sev.h, APM vol. 2 15.36).

export const RMP_PG_SIZE_4K = 0;
export const RMP_PG_SIZE_2M = 1;
/** RMP_TO_PG_LEVEL(). */
export function RMP_TO_PG_LEVEL(level: number): number {
  return level === RMP_PG_SIZE_4K ? PG_LEVEL_4K : PG_LEVEL_2M;
}
/** PG_LEVEL_TO_RMP(). */
export function PG_LEVEL_TO_RMP(level: number): number {
  return level === PG_LEVEL_4K ? RMP_PG_SIZE_4K : RMP_PG_SIZE_2M;
}

/** RMPUPDATE return codes (EAX). */
export const RMPUPDATE_SUCCESS = 0;
export const RMPUPDATE_FAIL_INPUT = 1;
export const RMPUPDATE_FAIL_PERMISSION = 2;
export const RMPUPDATE_FAIL_INUSE = 3;
export const RMPUPDATE_FAIL_OVERLAP = 4;
/** PSMASH return codes (EAX). */
export const PSMASH_SUCCESS = 0;
export const PSMASH_FAIL_INPUT = 1;
export const PSMASH_FAIL_PERMISSION = 2;
export const PSMASH_FAIL_INUSE = 3;
/** PVALIDATE return codes (EAX); NOUPDATE is the kernel's software code for "rFLAGS.CF set". */
export const PVALIDATE_SUCCESS = 0;
export const PVALIDATE_FAIL_INPUT = 1;
export const PVALIDATE_FAIL_SIZEMISMATCH = 6;
export const PVALIDATE_FAIL_NOUPDATE = 255;

/** GHCB page-state-change operations (GHCB spec, SNP_PAGE_STATE_*). */
export const SNP_PAGE_STATE_PRIVATE = 1;
export const SNP_PAGE_STATE_SHARED = 2;
/** KVM_HC_MAP_GPA_RANGE, the hypercall KVM forwards PSC requests as (KVM_EXIT_HYPERCALL). */
export { KVM_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE } from './hypercall_exit';
export const KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4;
export const KVM_MAP_GPA_RANGE_DECRYPTED = 0;

const PTRS_PER_PMD = 512;

/**
 * struct rmpentry_raw's first qword (Zen3/Zen4 in-memory format, PPR Fam19h M01h; not architectural):
 * what the debugger shows as an entry's raw value.
 */
export const RMPENTRY_RAW_FIELDS: readonly BitField[] = [
  { name: 'assigned', msb: 0, lsb: 0, desc: 'page is assigned to a guest (or firmware)' },
  { name: 'pagesize', msb: 1, lsb: 1, desc: 'page size', values: { 0: 'RMP_PG_SIZE_4K', 1: 'RMP_PG_SIZE_2M' } },
  { name: 'immutable', msb: 2, lsb: 2, desc: 'only firmware may change the entry' },
  { name: 'gpa', msb: 50, lsb: 12, desc: 'guest physical address >> 12 the page is assigned at' },
  { name: 'asid', msb: 60, lsb: 51, desc: 'ASID of the owning guest' },
  { name: 'vmsa', msb: 61, lsb: 61, desc: 'page is a VMSA' },
  { name: 'validated', msb: 62, lsb: 62, desc: 'guest has PVALIDATEd the page' },
];

/** The model's per-entry flag bits (the flags column of SnpRmpTable), not the hardware layout above. */
export const FL_ASSIGNED = 1;
export const FL_PAGESIZE = 2;
export const FL_IMMUTABLE = 4;
export const FL_VALIDATED = 8;
export const FL_VMSA = 16;

/** An RMP entry as a plain object (probe arguments, views, tests). */
export interface RmpEntry {
  assigned: boolean;
  pagesize: number;
  immutable: boolean;
  /** Guest physical address (bytes). */
  gpa: number;
  asid: number;
  validated: boolean;
  vmsa: boolean;
}

/** struct rmp_state: the RMPUPDATE input. */
export interface RmpState {
  gpa: number;
  assigned: boolean;
  pagesize: number;
  immutable: boolean;
  asid: number;
}

// ---------------------------------------------------------------------------------------------------
// The table.

const CHUNK = 512;

export class SnpRmpTable {
  /** 2M host region (pfn / 512) -> chunk number. */
  private readonly region = new Map<number, number>();
  private nchunks = 0;
  flags = new Uint8Array(0);
  gpa_pfn = new Float64Array(0);
  asid = new Uint32Array(0);
  /** Highest pfn the RMP covers (RMP_END): lookups past it fail. */
  readonly max_pfn: number;
  /** Host direct map: 2M regions split to 4K by adjust_direct_map (otherwise mapped 2M). */
  readonly direct_map_split = new Set<number>();
  /** Counters: instruction executions that changed the table, by kind. */
  readonly stats = { rmpupdate: 0, rmpupdate_2m: 0, psmash: 0, pvalidate: 0, failed: 0 };

  constructor(max_pfn = 2 ** 40 - 1) {
    this.max_pfn = max_pfn;
  }

  /** Entry index of pfn, or -1 when its chunk was never written (all fields zero). */
  index(pfn: number): number {
    const c = this.region.get(Math.floor(pfn / CHUNK));
    return c === undefined ? -1 : c * CHUNK + (pfn % CHUNK);
  }

  /** Entry index of pfn, allocating its chunk. */
  index_alloc(pfn: number): number {
    const r = Math.floor(pfn / CHUNK);
    let c = this.region.get(r);
    if (c === undefined) {
      c = this.nchunks++;
      this.region.set(r, c);
      if (this.nchunks * CHUNK > this.flags.length) {
        const n = Math.max(8, this.nchunks * 2) * CHUNK;
        const f = new Uint8Array(n);
        f.set(this.flags);
        const g = new Float64Array(n);
        g.set(this.gpa_pfn);
        const a = new Uint32Array(n);
        a.set(this.asid);
        this.flags = f;
        this.gpa_pfn = g;
        this.asid = a;
      }
    }
    return c * CHUNK + (pfn % CHUNK);
  }

  flags_of(pfn: number): number {
    const i = this.index(pfn);
    return i < 0 ? 0 : this.flags[i]!;
  }

  is_assigned(pfn: number): boolean {
    return (this.flags_of(pfn) & FL_ASSIGNED) !== 0;
  }

  /** The entry of pfn as a plain object (views, probes, tests; not for hot paths). */
  entry(pfn: number): RmpEntry {
    const i = this.index(pfn);
    if (i < 0) return { assigned: false, pagesize: 0, immutable: false, gpa: 0, asid: 0, validated: false, vmsa: false };
    const f = this.flags[i]!;
    return {
      assigned: (f & FL_ASSIGNED) !== 0, pagesize: (f & FL_PAGESIZE) !== 0 ? 1 : 0, immutable: (f & FL_IMMUTABLE) !== 0,
      gpa: this.gpa_pfn[i]! * 4096, asid: this.asid[i]!, validated: (f & FL_VALIDATED) !== 0, vmsa: (f & FL_VMSA) !== 0,
    };
  }

  /** The first qword of the raw in-memory entry (layout RMPENTRY_RAW_FIELDS). */
  raw(pfn: number): U64 {
    const i = this.index(pfn);
    if (i < 0) return { lo: 0, hi: 0 };
    const f = this.flags[i]!;
    let v: U64 = { lo: (f & (FL_ASSIGNED | FL_PAGESIZE | FL_IMMUTABLE)) >>> 0, hi: 0 };
    v = setField(v.lo, v.hi, 50, 12, this.gpa_pfn[i]!);
    v = setField(v.lo, v.hi, 60, 51, this.asid[i]! & 0x3ff);
    if (f & FL_VMSA) v.hi = (v.hi | (1 << 29)) >>> 0;
    if (f & FL_VALIDATED) v.hi = (v.hi | (1 << 30)) >>> 0;
    return v;
  }

  write(pfn: number, flags: number, gpa_pfn: number, asid: number): void {
    const i = this.index_alloc(pfn);
    this.flags[i] = flags;
    this.gpa_pfn[i] = gpa_pfn;
    this.asid[i] = asid;
  }

  set_flag(pfn: number, flag: number, on: boolean): void {
    const i = this.index_alloc(pfn);
    this.flags[i] = on ? this.flags[i]! | flag : this.flags[i]! & ~flag;
  }

  /** Count entries: 2M pages (assigned 2M-aligned entries with the size bit), assigned 4K pages, validated. */
  census(): { assigned_2m: number; assigned_4k: number; validated_pages: number } {
    let a2 = 0;
    let a4 = 0;
    let v = 0;
    for (const [r, c] of this.region) {
      const base = c * CHUNK;
      void r;
      for (let k = 0; k < CHUNK; k++) {
        const f = this.flags[base + k]!;
        if ((f & FL_ASSIGNED) === 0) continue;
        if (f & FL_VALIDATED) v++;
        if ((f & FL_PAGESIZE) !== 0) {
          if (k === 0) a2++;
        } else a4++;
      }
    }
    return { assigned_2m: a2, assigned_4k: a4, validated_pages: v };
  }
}

/** Decode a raw first qword (for the CLI and views). */
export function decode_rmpentry_raw(lo: number, hi: number): RmpEntry {
  return {
    assigned: (lo & 1) !== 0, pagesize: (lo >>> 1) & 1, immutable: (lo & 4) !== 0, gpa: getField(lo, hi, 50, 12) * 4096,
    asid: getField(lo, hi, 60, 51), vmsa: ((hi >>> 29) & 1) !== 0, validated: ((hi >>> 30) & 1) !== 0,
  };
}

// ---------------------------------------------------------------------------------------------------
// Per-VM SEV state.

export interface SevInfo {
  asid: number;
  rmp: SnpRmpTable;
  /** KVM_EXIT_HYPERCALL exits KVM raised for page-state changes, oldest first. */
  readonly psc_exits: PscExit[];
  /** RMP #NPFs sev_handle_rmp_fault handled. */
  rmp_faults: number;
}

const sev_infos = new TrackedWeakMap<object, SevInfo>();

/** to_kvm_sev_info(kvm), for an SNP VM set up with sev_snp_init. */
export function to_kvm_sev_info(kvm: PrivateMemKvm): SevInfo | undefined {
  return sev_infos.get(kvm);
}

/** sev_snp_guest(). */
export function sev_snp_guest(kvm: PrivateMemKvm): boolean {
  return kvm.vm_type === KVM_X86_SNP_VM && sev_infos.has(kvm);
}

/**
 * KVM_SEV_INIT2 for an SNP VM (the part the MMU model needs): bind an ASID, attach the host's RMP (a new
 * table unless one is shared between VMs of the same host) and install the vendor gmem hooks.
 */
export function sev_snp_init(kvm: PrivateMemKvm, opts: { asid?: number; rmp?: SnpRmpTable } = {}): SevInfo {
  if (kvm.vm_type !== KVM_X86_SNP_VM) throw new Error('sev_snp_init needs a KVM_X86_SNP_VM');
  const info: SevInfo = { asid: opts.asid ?? 1, rmp: opts.rmp ?? new SnpRmpTable(), psc_exits: [], rmp_faults: 0 };
  sev_infos.set(kvm, info);
  kvm_private_ctx(kvm).arch = {
    gmem_prepare: sev_gmem_prepare,
    gmem_invalidate: (k, start, end) => sev_gmem_invalidate(to_kvm_sev_info(k)!.rmp, start, end),
    gmem_max_mapping_level: sev_gmem_max_mapping_level,
  };
  return info;
}

// ---------------------------------------------------------------------------------------------------
// Probes.

const FV = 'arch/x86/virt/svm/sev.c';
const FK = 'arch/x86/kvm/svm/sev.c';
const ENTRY_ARGS = ['pfn', 'old_entry', 'new_entry', 'old', 'new', 'nr_pages'];
const PR_RMPUPDATE = defineProbe('rmpupdate', 'rmp', FV, 'RMPUPDATE: write an RMP entry (4K) or the 512 entries of a 2M page', ENTRY_ARGS);
const PR_MAKE_PRIVATE = defineProbe('rmp_make_private', 'rmp', FV, 'assign a page to a guest ASID at a GPA (RMPUPDATE); stops after the update', [...ENTRY_ARGS, 'gpa', 'level', 'asid', 'immutable', 'ret']);
const PR_MAKE_SHARED = defineProbe('rmp_make_shared', 'rmp', FV, 'return a page to the hypervisor (RMPUPDATE to a zeroed state); stops after the update', [...ENTRY_ARGS, 'level', 'ret']);
const PR_PSMASH = defineProbe('psmash', 'rmp', FV, 'PSMASH: split a 2M RMP entry into 512 4K entries, keeping Validated', ENTRY_ARGS);
const PR_RMP_FAULT = defineProbe('sev_handle_rmp_fault', 'rmp', FK, '#NPF with PFERR_GUEST_RMP_MASK: PSMASH when a 4K access meets a 2M RMP entry', ['gpa', 'error_code', 'pfn', 'rmp_level']);
const PR_GMEM_PREPARE = defineProbe('sev_gmem_prepare', 'rmp', FK, 'gmem prepare hook: make the folio private in the RMP (2M when possible)', ['pfn', 'gfn', 'max_order']);
const PR_GMEM_INVALIDATE = defineProbe('sev_gmem_invalidate', 'rmp', FK, 'gmem invalidate hook: back to shared, PSMASHing 2M entries the range cuts', ['start', 'end']);
const PR_PVALIDATE = defineProbe('pvalidate', 'rmp', 'arch/x86/include/asm/sev.h', 'guest PVALIDATE: set or clear the Validated bit of its own page', ENTRY_ARGS);

/** Probe arguments of an entry change; nr_pages is 512 when the whole 2M region [pfn, pfn + 512) changed. */
function entryArgs(rmp: SnpRmpTable, pfn: number, old_entry: RmpEntry, old: U64, nr_pages = 1): Record<string, unknown> {
  return { pfn, old_entry, new_entry: rmp.entry(pfn), old, new: rmp.raw(pfn), nr_pages };
}

// ---------------------------------------------------------------------------------------------------
// Lookups.

/** Output of snp_lookup_rmpentry. */
export interface RmpLookup {
  assigned: boolean;
  /** PG_LEVEL_4K or PG_LEVEL_2M. */
  level: number;
}

/**
 * snp_lookup_rmpentry(): `assigned` from the pfn's own entry, the level from the 2M-aligned entry's
 * page-size bit. 0, or -ENOENT for a pfn outside the RMP.
 */
export function snp_lookup_rmpentry(rmp: SnpRmpTable, pfn: number, out: RmpLookup): number {
  if (pfn < 0 || pfn > rmp.max_pfn) return -ENOENT;
  out.assigned = rmp.is_assigned(pfn);
  const head = pfn - (pfn % PTRS_PER_PMD);
  out.level = RMP_TO_PG_LEVEL((rmp.flags_of(head) & FL_PAGESIZE) !== 0 ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K);
  return 0;
}

const lk: RmpLookup = { assigned: false, level: PG_LEVEL_4K };

// ---------------------------------------------------------------------------------------------------
// Instructions.

/**
 * The RMPUPDATE instruction. A 2M update needs a 2M-aligned pfn and fails with OVERLAP while any 4K
 * entry of the region is assigned; a 4K update fails with OVERLAP inside an assigned 2M page. An
 * immutable entry refuses (PERMISSION). The new entry's Validated and VMSA bits are always clear.
 */
export function rmpupdate_insn(rmp: SnpRmpTable, pfn: number, st: RmpState): number {
  if (pfn < 0 || pfn > rmp.max_pfn) return RMPUPDATE_FAIL_INPUT;
  const two_m = st.pagesize === RMP_PG_SIZE_2M;
  if (two_m && pfn % PTRS_PER_PMD !== 0) return RMPUPDATE_FAIL_INPUT;
  if ((rmp.flags_of(pfn) & FL_IMMUTABLE) !== 0) return RMPUPDATE_FAIL_PERMISSION;
  const head = pfn - (pfn % PTRS_PER_PMD);
  const hf = rmp.flags_of(head);
  const head_is_2m_page = (hf & (FL_ASSIGNED | FL_PAGESIZE)) === (FL_ASSIGNED | FL_PAGESIZE);
  if (!two_m) {
    if (head_is_2m_page) return RMPUPDATE_FAIL_OVERLAP;
    // A 4K update inside an unassigned region left with the 2M size bit (rmp_make_shared at 2M) turns
    // the region into 4K entries, so lookups of its pages no longer report 2M.
    if ((hf & FL_PAGESIZE) !== 0) for (let k = 0; k < PTRS_PER_PMD; k++) rmp.set_flag(head + k, FL_PAGESIZE, false);
    const f = (st.assigned ? FL_ASSIGNED : 0) | (st.immutable ? FL_IMMUTABLE : 0);
    rmp.write(pfn, f, st.assigned ? Math.floor(st.gpa / 4096) : 0, st.assigned ? st.asid : 0);
    return RMPUPDATE_SUCCESS;
  }
  if (!head_is_2m_page) {
    for (let k = 0; k < PTRS_PER_PMD; k++) {
      if ((rmp.flags_of(head + k) & FL_ASSIGNED) !== 0) return RMPUPDATE_FAIL_OVERLAP;
    }
  }
  const f = FL_PAGESIZE | (st.assigned ? FL_ASSIGNED : 0) | (st.immutable ? FL_IMMUTABLE : 0);
  const g = Math.floor(st.gpa / 4096);
  for (let k = 0; k < PTRS_PER_PMD; k++) rmp.write(head + k, f, st.assigned ? g + k : 0, st.assigned ? st.asid : 0);
  return RMPUPDATE_SUCCESS;
}

/** Where the model records what a real kernel would log (pr_warn / WARN); set by callers that have a VM. */
let warnings_sink: string[] | null = null;

function warn(msg: string): void {
  if (warnings_sink !== null) warnings_sink.push(msg);
}

/**
 * rmpupdate() (the kernel wrapper): split the host direct map around a 4K update, then RMPUPDATE,
 * retrying while it reports OVERLAP. In this single-threaded model an overlap cannot clear by itself, so
 * a second OVERLAP ends the loop with -EFAULT and a warning instead of spinning forever.
 */
export function rmpupdate(rmp: SnpRmpTable, pfn: number, st: RmpState): number {
  if (st.pagesize === RMP_PG_SIZE_4K) adjust_direct_map(rmp, pfn);
  const old_entry = probes.armed ? rmp.entry(pfn) : null;
  const old = probes.armed ? rmp.raw(pfn) : null;
  let ret = rmpupdate_insn(rmp, pfn, st);
  if (ret === RMPUPDATE_FAIL_OVERLAP) ret = rmpupdate_insn(rmp, pfn, st);
  if (ret !== RMPUPDATE_SUCCESS) {
    rmp.stats.failed++;
    warn(`SEV: RMPUPDATE failed for PFN 0x${pfn.toString(16)}, pg_level: ${RMP_TO_PG_LEVEL(st.pagesize)}, ret: ${ret}` +
      (ret === RMPUPDATE_FAIL_OVERLAP ? ' (persistent overlap: the kernel would retry forever)' : ''));
    return -14;
  }
  rmp.stats.rmpupdate++;
  if (st.pagesize === RMP_PG_SIZE_2M) rmp.stats.rmpupdate_2m++;
  if (probes.armed) probes.hit(PR_RMPUPDATE, entryArgs(rmp, pfn, old_entry!, old!, st.pagesize === RMP_PG_SIZE_2M ? PTRS_PER_PMD : 1));
  return 0;
}

/** adjust_direct_map(): a 4K RMP change inside a 2M direct-map page splits that page to 4K. */
export function adjust_direct_map(rmp: SnpRmpTable, pfn: number): void {
  rmp.direct_map_split.add(Math.floor(pfn / PTRS_PER_PMD));
}

/** rmp_make_private(): assign pfn (2M-aligned for a 2M level) to `asid` at `gpa`. */
export function rmp_make_private(rmp: SnpRmpTable, pfn: number, gpa: number, level: number, asid: number, immutable: boolean): number {
  const old_entry = probes.armed ? rmp.entry(pfn) : null;
  const old = probes.armed ? rmp.raw(pfn) : null;
  const ret = rmpupdate(rmp, pfn, { gpa, assigned: true, pagesize: PG_LEVEL_TO_RMP(level), immutable, asid });
  if (probes.armed) probes.hit(PR_MAKE_PRIVATE, { ...entryArgs(rmp, pfn, old_entry!, old!, level === PG_LEVEL_2M ? PTRS_PER_PMD : 1), gpa, level, asid, immutable, ret });
  return ret;
}

/** rmp_make_shared(): a zeroed state with only the page size set. */
export function rmp_make_shared(rmp: SnpRmpTable, pfn: number, level: number): number {
  const old_entry = probes.armed ? rmp.entry(pfn) : null;
  const old = probes.armed ? rmp.raw(pfn) : null;
  const ret = rmpupdate(rmp, pfn, { gpa: 0, assigned: false, pagesize: PG_LEVEL_TO_RMP(level), immutable: false, asid: 0 });
  if (probes.armed) probes.hit(PR_MAKE_SHARED, { ...entryArgs(rmp, pfn, old_entry!, old!, level === PG_LEVEL_2M ? PTRS_PER_PMD : 1), level, ret });
  return ret;
}

/**
 * The PSMASH instruction: the pfn must be 2M-aligned and its entry an assigned 2M page (an unassigned
 * region keeping the 2M size bit after rmp_make_shared is not a page to smash). Clears the size bit of
 * all 512 entries.
 */
export function psmash_insn(rmp: SnpRmpTable, pfn: number): number {
  if (pfn < 0 || pfn > rmp.max_pfn || pfn % PTRS_PER_PMD !== 0) return PSMASH_FAIL_INPUT;
  const f = rmp.flags_of(pfn);
  if ((f & (FL_ASSIGNED | FL_PAGESIZE)) !== (FL_ASSIGNED | FL_PAGESIZE)) return PSMASH_FAIL_INPUT;
  if ((f & FL_IMMUTABLE) !== 0) return PSMASH_FAIL_PERMISSION;
  for (let k = 0; k < PTRS_PER_PMD; k++) rmp.set_flag(pfn + k, FL_PAGESIZE, false);
  return PSMASH_SUCCESS;
}

/** psmash(): the kernel wrapper, retrying while another CPU holds the entry (never, in this model). */
export function psmash(rmp: SnpRmpTable, pfn: number): number {
  const old_entry = probes.armed ? rmp.entry(pfn) : null;
  const old = probes.armed ? rmp.raw(pfn) : null;
  let ret: number;
  do ret = psmash_insn(rmp, pfn);
  while (ret === PSMASH_FAIL_INUSE);
  if (ret === PSMASH_SUCCESS) {
    rmp.stats.psmash++;
    if (probes.armed) probes.hit(PR_PSMASH, entryArgs(rmp, pfn, old_entry!, old!, PTRS_PER_PMD));
  }
  return ret;
}

/** snp_rmptable_psmash(): PSMASH the 2M region holding pfn. */
export function snp_rmptable_psmash(rmp: SnpRmpTable, pfn: number): number {
  return psmash(rmp, pfn - (pfn % PTRS_PER_PMD));
}

// ---------------------------------------------------------------------------------------------------
// KVM's gmem hooks.

/** is_large_rmp_possible(): a 2M entry needs a PMD-order folio and all 512 pfns currently unassigned. */
function is_large_rmp_possible(rmp: SnpRmpTable, pfn: number, order: number): boolean {
  if (order < 9) return false;
  const head = pfn - (pfn % PTRS_PER_PMD);
  for (let k = 0; k < PTRS_PER_PMD; k++) {
    if (snp_lookup_rmpentry(rmp, head + k, lk) !== 0 || lk.assigned) return false;
  }
  return true;
}

/**
 * sev_gmem_prepare(): make a newly prepared folio private to the guest. Nothing for non-SNP VMs or an
 * already assigned pfn; a 2M entry when the folio is PMD-order and its 2M range is wholly unassigned,
 * else a 4K entry for pfn.
 */
export function sev_gmem_prepare(kvm: PrivateMemKvm, pfn: number, gfn: number, max_order: number): number {
  if (probes.armed) probes.hit(PR_GMEM_PREPARE, { pfn, gfn, max_order });
  const sev = to_kvm_sev_info(kvm);
  if (sev === undefined || !sev_snp_guest(kvm)) return 0;
  const rmp = sev.rmp;
  if (snp_lookup_rmpentry(rmp, pfn, lk) !== 0) {
    kvm.warnings.push(`SEV: Failed to look up RMP entry: GFN 0x${gfn.toString(16)} PFN 0x${pfn.toString(16)}`);
    return -ENOENT;
  }
  if (lk.assigned) return 0;
  let level = PG_LEVEL_4K;
  let p = pfn;
  let g = gfn;
  if (is_large_rmp_possible(rmp, pfn, max_order)) {
    level = PG_LEVEL_2M;
    p = pfn - (pfn % PTRS_PER_PMD);
    g = gfn - (gfn % PTRS_PER_PMD);
  }
  warnings_sink = kvm.warnings;
  const rc = rmp_make_private(rmp, p, g * 4096, level, sev.asid, false);
  warnings_sink = null;
  if (rc !== 0) {
    kvm.warnings.push(`SEV: Failed to update RMP entry: GFN 0x${g.toString(16)} PFN 0x${p.toString(16)} level ${level} error ${rc}`);
    return -EINVAL;
  }
  return 0;
}

/**
 * sev_gmem_invalidate(): host pfns [start, end) are being freed. Every assigned pfn goes back to shared:
 * a whole 2M entry at once when the range covers it, otherwise PSMASH first and then 4K.
 */
export function sev_gmem_invalidate(rmp: SnpRmpTable, start: number, end: number): void {
  if (probes.armed) probes.hit(PR_GMEM_INVALIDATE, { start, end });
  for (let pfn = start; pfn < end; ) {
    let use_2m_update = false;
    const rc = snp_lookup_rmpentry(rmp, pfn, lk);
    if (rc === 0 && lk.assigned) {
      use_2m_update = pfn % PTRS_PER_PMD === 0 && end >= pfn + PTRS_PER_PMD && lk.level > PG_LEVEL_4K;
      if (!use_2m_update && lk.level > PG_LEVEL_4K) {
        const r = snp_rmptable_psmash(rmp, pfn);
        if (r !== 0) warn(`SEV: Failed to PSMASH RMP entry for PFN 0x${pfn.toString(16)} error ${r}`);
      }
      const r2 = rmp_make_shared(rmp, pfn, use_2m_update ? PG_LEVEL_2M : PG_LEVEL_4K);
      if (r2 !== 0) warn(`SEV: Failed to update RMP entry for PFN 0x${pfn.toString(16)} error ${r2}`);
    }
    pfn += use_2m_update ? PTRS_PER_PMD : 1;
  }
}

/**
 * sev_gmem_max_mapping_level() (private_max_mapping_level before the rename): the NPT leaf for a
 * private page is never larger than its RMP entry. 0 = no limit (not SNP, or a shared access); an
 * unassigned or unreadable entry allows 4K only.
 */
export function sev_gmem_max_mapping_level(kvm: PrivateMemKvm, pfn: number, is_private: boolean): number {
  const sev = to_kvm_sev_info(kvm);
  if (sev === undefined || !sev_snp_guest(kvm) || !is_private) return 0;
  if (snp_lookup_rmpentry(sev.rmp, pfn, lk) !== 0 || !lk.assigned) return PG_LEVEL_4K;
  return lk.level;
}

// ---------------------------------------------------------------------------------------------------
// RMP #NPF.

/** The vCPU fields sev_handle_rmp_fault uses. */
export interface SnpVcpu {
  readonly kvm: PrivateMemKvm;
  readonly vcpu_id: number;
}

/** What the last sev_handle_rmp_fault did (for tests and views). */
export interface RmpFaultResult {
  action: 'not_private' | 'no_gmem_slot' | 'no_pfn' | 'unassigned' | 'spurious_4k' | 'psmash';
  pfn: number;
  rmp_level: number;
  psmash_ret: number;
  /** [start, end) passed to kvm_zap_gfn_range, or null. */
  zapped: [number, number] | null;
}

const gp: GmemPfn = { pfn: 0, max_order: 0 };

function trace_kvm_rmp_fault(vcpu: SnpVcpu, gpa: number, pfn: number, err_lo: number, err_hi: number, rmp_level: number, psmash_ret: number): void {
  emitTracepoint('kvm_rmp_fault', vcpu.vcpu_id, {
    vcpu_id: vcpu.vcpu_id, gpa, pfn, error_code: halvesToValue(err_lo, err_hi), rmp_level, psmash_ret,
  });
}

/**
 * sev_handle_rmp_fault(): called by npf_interception after kvm_mmu_page_fault when the #NPF had
 * PFERR_GUEST_RMP_MASK. A private page whose RMP entry is 2M while the access needed 4K (a 4K PVALIDATE,
 * SIZEM; or a 4K NPT leaf) gets its 2M entry PSMASHed and the 2M gfn range zapped so KVM remaps it.
 */
export function sev_handle_rmp_fault(vcpu: SnpVcpu, gpa: number, err_lo: number, err_hi: number): RmpFaultResult {
  const kvm = vcpu.kvm;
  const gfn = Math.floor(gpa / 4096);
  const res: RmpFaultResult = { action: 'not_private', pfn: 0, rmp_level: 0, psmash_ret: 0, zapped: null };
  if (probes.armed) probes.hit(PR_RMP_FAULT, { gpa, error_code: halvesToValue(err_lo, err_hi), pfn: 0, rmp_level: 0 });
  const sev = to_kvm_sev_info(kvm);
  if (sev !== undefined) sev.rmp_faults++;
  // Shared->private conversions reach userspace as memory-fault exits, so a shared gfn here is unexpected.
  if (!kvm_mem_is_private(kvm, gfn)) {
    kvm.warnings.push(`SEV: Unexpected RMP fault for non-private GPA 0x${gpa.toString(16)}`);
    return res;
  }
  const slot = lookup_slot(kvm, gfn);
  if (!kvm_slot_has_gmem(slot)) {
    res.action = 'no_gmem_slot';
    kvm.warnings.push(`SEV: Unexpected RMP fault, non-private slot for GPA 0x${gpa.toString(16)}`);
    return res;
  }
  if (kvm_gmem_get_pfn(kvm, slot!, gfn, gp) !== 0) {
    res.action = 'no_pfn';
    kvm.warnings.push(`SEV: Unexpected RMP fault, no backing page for private GPA 0x${gpa.toString(16)}`);
    return res;
  }
  const pfn = gp.pfn;
  res.pfn = pfn;
  const rmp = sev!.rmp;
  const rc = snp_lookup_rmpentry(rmp, pfn, lk);
  if (rc !== 0 || !lk.assigned) {
    res.action = 'unassigned';
    kvm.warnings.push(`SEV: Unexpected RMP fault, no assigned RMP entry found for GPA 0x${gpa.toString(16)} PFN 0x${pfn.toString(16)} error ${rc}`);
    return res;
  }
  const rmp_level = lk.level;
  res.rmp_level = rmp_level;
  let psmash_ret = 0;
  if (rmp_level === PG_LEVEL_4K) {
    // Another vCPU already split it: nothing left to do.
    res.action = 'spurious_4k';
  } else {
    psmash_ret = snp_rmptable_psmash(rmp, pfn);
    res.psmash_ret = psmash_ret;
    if (psmash_ret !== 0) {
      snp_lookup_rmpentry(rmp, pfn, lk);
      if (lk.level !== PG_LEVEL_4K) kvm.warnings.push(`SEV: Unable to split RMP entry for GPA 0x${gpa.toString(16)} PFN 0x${pfn.toString(16)} ret ${psmash_ret}`);
    }
    res.action = 'psmash';
    const mmu = kvm_private_ctx(kvm).mmu;
    // The gfn is not aligned down: the zap covers [gfn, gfn + 512), which still hits the huge leaf.
    res.zapped = [gfn, gfn + PTRS_PER_PMD];
    if (mmu !== null) {
      const zap = mmu.kvm_zap_gfn_range;
      zap(kvm, gfn, gfn + PTRS_PER_PMD);
    }
  }
  if (trace.enabled) trace_kvm_rmp_fault(vcpu, gpa, pfn, err_lo, err_hi, rmp_level, psmash_ret);
  return res;
}

function lookup_slot(kvm: PrivateMemKvm, gfn: number) {
  return kvm.memslots[0]!.lookup(gfn) ?? null;
}

// ---------------------------------------------------------------------------------------------------
// Hardware checks KVM reacts to.

/** Outcome of a checked access or PVALIDATE. */
export interface SnpCheck {
  /** 'ok'; 'npf' = #NPF with the error code below; 'vc' = #VC in the guest (page not validated). */
  result: 'ok' | 'npf' | 'vc';
  err_lo: number;
  err_hi: number;
}

/**
 * The RMP check of a guest access through a present NPT leaf of `npt_level` mapping gpa to pfn. A private
 * (C-bit) access needs the page assigned to the guest's ASID at that GPA and an RMP page size equal to
 * the NPT leaf size (KVM keeps the leaf from being larger; a smaller leaf faults too, which is what
 * sev_handle_rmp_fault's PSMASH fixes); an unvalidated page raises #VC. A shared access, or any host
 * access, to an assigned page faults.
 */
export function snp_rmp_check_guest_access(rmp: SnpRmpTable, asid: number, gpa: number, pfn: number, npt_level: number, is_private: boolean, write: boolean): SnpCheck {
  const err_lo = (PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK | PFERR_USER_MASK | (write ? PFERR_WRITE_MASK : 0)) >>> 0;
  const err_hi = PFERR_GUEST_FINAL_MASK_HI | (is_private ? PFERR_GUEST_ENC_MASK_HI : 0);
  const i = rmp.index(pfn);
  const f = i < 0 ? 0 : rmp.flags[i]!;
  const assigned = (f & FL_ASSIGNED) !== 0;
  if (!is_private) return assigned ? { result: 'npf', err_lo, err_hi } : { result: 'ok', err_lo: 0, err_hi: 0 };
  const head = pfn - (pfn % PTRS_PER_PMD);
  const rmp_level = (rmp.flags_of(head) & FL_PAGESIZE) !== 0 ? PG_LEVEL_2M : PG_LEVEL_4K;
  if (!assigned || rmp.asid[i]! !== asid || rmp.gpa_pfn[i]! !== Math.floor(gpa / 4096) || rmp_level !== Math.min(npt_level, PG_LEVEL_2M) ||
    npt_level > PG_LEVEL_2M) {
    return { result: 'npf', err_lo, err_hi };
  }
  if ((f & FL_VALIDATED) === 0) return { result: 'vc', err_lo: 0, err_hi: 0 };
  return { result: 'ok', err_lo: 0, err_hi: 0 };
}

/**
 * A host (hypervisor) write to pfn through the direct map. It faults when the page is assigned, or when
 * the direct map still maps its 2M region as one page and any page of that region is assigned (which is
 * why rmpupdate() splits the direct map around 4K updates). Host reads never fault.
 */
export function snp_host_write_faults(rmp: SnpRmpTable, pfn: number): boolean {
  if (rmp.is_assigned(pfn)) return true;
  const r = Math.floor(pfn / PTRS_PER_PMD);
  if (rmp.direct_map_split.has(r)) return false;
  const head = r * PTRS_PER_PMD;
  for (let k = 0; k < PTRS_PER_PMD; k++) if (rmp.is_assigned(head + k)) return true;
  return false;
}

/** Result of a guest PVALIDATE: EAX, rFLAGS.CF, or a #NPF error code. */
export interface PvalidateResult extends SnpCheck {
  rc: number;
  cf: boolean;
}

/**
 * The guest's PVALIDATE of the page at gpa (backed by pfn through an NPT leaf of `npt_level`), size 0 = 4K,
 * 1 = 2M. Bad size or alignment: FAIL_INPUT. The RMP entry must be assigned to the guest at that GPA
 * (else #NPF). A 2M PVALIDATE on a 4K RMP entry or 4K NPT leaf returns FAIL_SIZEMISMATCH; a 4K PVALIDATE
 * inside a 2M RMP entry raises #NPF with PFERR_GUEST_SIZEM. Asking for the state the page already has
 * sets CF and changes nothing.
 */
export function pvalidate(rmp: SnpRmpTable, asid: number, gpa: number, pfn: number, npt_level: number, size: number, validate: boolean): PvalidateResult {
  const fail = (rc: number): PvalidateResult => ({ result: 'ok', err_lo: 0, err_hi: 0, rc, cf: false });
  if (size !== RMP_PG_SIZE_4K && size !== RMP_PG_SIZE_2M) return fail(PVALIDATE_FAIL_INPUT);
  const n = size === RMP_PG_SIZE_2M ? PTRS_PER_PMD : 1;
  if (Math.floor(gpa / 4096) % n !== 0 || pfn % n !== 0) return fail(PVALIDATE_FAIL_INPUT);
  const npf = (sizem: boolean): PvalidateResult => ({
    result: 'npf', err_lo: (PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK | PFERR_WRITE_MASK) >>> 0,
    err_hi: PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_ENC_MASK_HI | (sizem ? PFERR_GUEST_SIZEM_MASK_HI : 0), rc: 0, cf: false,
  });
  const i = rmp.index(pfn);
  const f = i < 0 ? 0 : rmp.flags[i]!;
  if ((f & FL_ASSIGNED) === 0 || rmp.asid[i]! !== asid || rmp.gpa_pfn[i]! !== Math.floor(gpa / 4096)) return npf(false);
  const head = pfn - (pfn % PTRS_PER_PMD);
  const rmp_2m = (rmp.flags_of(head) & FL_PAGESIZE) !== 0;
  if (size === RMP_PG_SIZE_2M && (!rmp_2m || npt_level < PG_LEVEL_2M)) return fail(PVALIDATE_FAIL_SIZEMISMATCH);
  if (size === RMP_PG_SIZE_4K && rmp_2m) return npf(true);
  if (((f & FL_VALIDATED) !== 0) === validate) return { result: 'ok', err_lo: 0, err_hi: 0, rc: PVALIDATE_SUCCESS, cf: true };
  const old_entry = probes.armed ? rmp.entry(pfn) : null;
  const old = probes.armed ? rmp.raw(pfn) : null;
  for (let k = 0; k < n; k++) rmp.set_flag(pfn + k, FL_VALIDATED, validate);
  rmp.stats.pvalidate++;
  if (probes.armed) probes.hit(PR_PVALIDATE, entryArgs(rmp, pfn, old_entry!, old!, n));
  return { result: 'ok', err_lo: 0, err_hi: 0, rc: PVALIDATE_SUCCESS, cf: false };
}

// ---------------------------------------------------------------------------------------------------
// The conversion userspace does for a KVM_HC_MAP_GPA_RANGE exit (the exits themselves: sev_psc.ts).

/** A KVM_EXIT_HYPERCALL (KVM_HC_MAP_GPA_RANGE) as the VMM sees it (sev_psc.ts and tdx_map_gpa.ts raise them). */
export interface PscExit {
  exit_reason: number;
  nr: number;
  /** args[0..2]: gpa, npages, attributes. */
  gpa: number;
  npages: number;
  attrs: number;
}

/**
 * What a VMM does for one KVM_HC_MAP_GPA_RANGE exit: KVM_SET_MEMORY_ATTRIBUTES to the requested state,
 * and when converting to shared optionally FALLOC_FL_PUNCH_HOLE on the guest_memfd range (discarding the
 * private pages, which returns them to shared in the RMP). Returns 0 or the first -errno.
 */
export function vmm_handle_map_gpa_range(kvm: PrivateMemKvm, exit: PscExit, opts: { punch_hole?: boolean } = {}): number {
  const to_private = (exit.attrs & KVM_MAP_GPA_RANGE_ENCRYPTED) !== 0;
  const start = exit.gpa / 4096;
  const end = start + exit.npages;
  const r = kvm_vm_ioctl_set_mem_attributes(kvm, { address: exit.gpa, size: exit.npages * 4096, attributes: to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, flags: 0 });
  if (r !== 0 || to_private || !opts.punch_hole) return r;
  for (const slots of kvm.memslots) {
    for (const slot of slots.slots) {
      const a = Math.max(start, slot.base_gfn);
      const b = Math.min(end, slot.base_gfn + slot.npages);
      if (a >= b || !kvm_slot_has_gmem(slot)) continue;
      const bind = kvm_gmem_get_file(kvm, slot);
      if (bind === undefined) continue;
      const off = (bind.pgoff + (a - slot.base_gfn)) * 4096;
      const rc = kvm_gmem_fallocate(kvm, bind.file.fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, off, (b - a) * 4096);
      if (rc !== 0) return rc;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Views.

/** The RMP state behind a guest gfn of an SNP VM, for `expect rmp` and the debugger's views. */
export interface RmpGfnView extends RmpEntry {
  gfn: number;
  pfn: number;
  /** The level KVM reads (from the 2M-aligned entry): 1 = 4K, 2 = 2M. */
  level: number;
}

/** The RMP entry backing `gfn` through its guest_memfd slot, or undefined (no SNP, no gmem slot, unbound). */
export function snp_rmp_view(kvm: PrivateMemKvm, gfn: number): RmpGfnView | undefined {
  const sev = to_kvm_sev_info(kvm);
  if (sev === undefined) return undefined;
  const slot = lookup_slot(kvm, gfn);
  if (!kvm_slot_has_gmem(slot)) return undefined;
  const b = kvm_gmem_get_file(kvm, slot!);
  if (b === undefined) return undefined;
  const pfn = b.file.pfn_base + b.pgoff + (gfn - slot!.base_gfn);
  const l: RmpLookup = { assigned: false, level: PG_LEVEL_4K };
  snp_lookup_rmpentry(sev.rmp, pfn, l);
  return { gfn, pfn, level: l.level, ...sev.rmp.entry(pfn) };
}

// ---------------------------------------------------------------------------------------------------
// VM-level conveniences for the facade (the VM's ASID and RMP).

/**
 * The RMP check of an SNP guest access that the NPT translated: `pfn` is the 4K host page reached,
 * `npt_level` the leaf's level. null for VMs that are not SNP (no RMP check).
 */
export function snp_check_guest_access(kvm: PrivateMemKvm, gpa: number, pfn: number, npt_level: number, is_private: boolean, write: boolean): SnpCheck | null {
  const sev = to_kvm_sev_info(kvm);
  if (sev === undefined) return null;
  return snp_rmp_check_guest_access(sev.rmp, sev.asid, gpa, pfn, npt_level, is_private, write);
}

/** The guest's PVALIDATE with the VM's ASID and RMP; null for VMs that are not SNP. */
export function snp_guest_pvalidate(kvm: PrivateMemKvm, gpa: number, pfn: number, npt_level: number, size: number, validate: boolean): PvalidateResult | null {
  const sev = to_kvm_sev_info(kvm);
  if (sev === undefined) return null;
  return pvalidate(sev.rmp, sev.asid, gpa, pfn, npt_level, size, validate);
}
