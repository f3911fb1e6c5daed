/**
 * Model check of shadow-MMU captures (TDP off, or TDP with kvm.tdp_mmu=N): drive the x86 engine's shadow
 * MMU (ShadowVm) with the capture's guest page-table walks and faults, and compare, fault by fault, the
 * events the MMU's decisions show: the walk (`kvm_mmu_paging_element`, A/D updates, `kvm_mmu_walker_error`),
 * the shadow pages got (`kvm_mmu_get_page`: gfn, role bits the text shows, sync/unsync, new/existing),
 * `kvm_mmu_unsync_page` / `kvm_mmu_sync_page`, `kvm_mmu_spte_requested` (gfn, level) and
 * `kvm_mmu_set_spte` (gfn, level, SPTE with pfn bits 51:12 masked). The first capture line where the
 * model differs is reported with both sides. ./model_check_shadow_read.ts cuts the capture into operations.
 *
 * What the tracepoints tell, and how the guest is rebuilt from them:
 * - Guest page tables: a walk traces each entry it read (`pte V level L`, before its A/D update) and the
 *   walk address gives the index at each level; each entry's address bits name the next table. These
 *   entries are written into the model's guest memory before the walk is replayed, so the model walks
 *   the same values. The top table (CR3) is the root shadow page's gfn (`kvm_mmu_get_page` of a root); a
 *   walk that set the top entry's accessed bit names it exactly; otherwise the vCPU's last root is taken,
 *   or another root table whose known entry matches. PAE: PDPTEs come from the level-3 elements (and the
 *   gfns of the four root pages); the CR3 that held them is never traced, so the model's CR3 points at a
 *   PDPT page the check writes itself.
 * - Paging mode: the level of a walk's first element (5: LA57, 4: 4-level, 3: PAE, 2: 32-bit).
 * - CR0.WP, EFER.NX, CR4.SMEP/SMAP/PKE: NOT shown. The role text shows level, gpte size, quadrant,
 *   direct, access, invalid and ad_disabled; its `nxe` is always set under shadow paging (KVM sets efer_nx
 *   in every shadow root role), and cr0_wp / smep_andnot_wp / smap_andnot_wp / smm are not printed. The
 *   model runs with WP=1, NX=1 (no NX without PAE), SMEP/SMAP/PKE off; a capture from a guest without
 *   them can differ on supervisor writes to read-only pages or on user pages under SMEP.
 * - Guest memory outside the traced entries is unknown (zero in the model): pte prefetch reads the
 *   neighbouring gPTEs, so SPTEs set after the faulting leaf's are counted, not compared; MMU sync reads
 *   whole unsync tables, so a sync may leave SPTEs the real one dropped (see the repairs below).
 * - Untraced operations: guest stores to its tables, INVLPG, CR3 loads without a root allocation,
 *   dirty-log write protection and mmu-notifier zaps leave no event. Three repairs keep the model's
 *   state in line with what the capture implies, outside the comparison (counted under `operations`):
 *   a traced entry that differs from what the model's memory holds in a table the model write-protects
 *   is the guest's emulated store (kvm_mmu_track_write runs, `inferred_guest_write`); a fault on an
 *   access the model's SPTEs already allow means the real SPTE was write-protected (P|W:
 *   `inferred_write_protect`) or zapped (`inferred_zap`); a walk whose top table is not the model's
 *   current one is a CR3 load to a cached root (`cr3_switch`), compared when that table was a traced root.
 * - Roots: a traced root `kvm_mmu_get_page` is a root allocation on entry: the model loads a CR3 it has
 *   no cached root for (CR3 bits 11:0 are free with CR4.PCIDE=0, so each load gets its own value) and
 *   reloads; `kvm_mmu_sync_page` outside a fault is the sync a CR3 load asks for (a reload of the same
 *   CR3). PCIDs and the real CR3 values are not traced: root_count and the generation are not compared.
 * - Memslots: as in the TDP check (inferSlots): 2 MiB regions around every gfn named, host page size from
 *   the largest SPTE set there. vCPUs: `CPU N/KVM` task names, else one per task.
 * - A `kvm_page_fault` before a walk is the #PF intercept of that walk's fault (the walk's pferr is
 *   replayed).
 * - TDP with tdp_mmu=N: no walk. A fault is a `kvm_page_fault` (VMX: the EPT violation's exit
 *   qualification, turned into PFERR bits; SVM: the #NPF error code), else a `fast_page_fault` (its
 *   error code), else a `kvm_mmu_spte_requested` (a write to its gfn). `fast_page_fault` is compared
 *   (address, error code, old and new SPTE masked, spurious, fixed). Root pages are direct at gfn 0; the
 *   TDP level is theirs.
 * - nx_huge_pages: on when a huge SPTE lacks execute permission the guest entry did not deny.
 * - Not told apart: nested shadow NPT/EPT (guest_mode is not printed, so L2 walks look like L1's), and
 *   the model's own non-upstream variants (pae_root=shadow_page, shadow_eager_split_l1): captures are
 *   replayed against upstream behaviour. Eager page splitting outside faults is not replayed.
 */
import { createReadStream } from 'node:fs';
import { hexHalves, RET_PF_FIXED_6_18, RET_PF_SPURIOUS_6_18, SP_TEXT_ROLE_MASK } from '../engine/tracepoints/index';
import { trace, type TraceEvent } from '../engine/trace_sink';
import { ShadowVm } from '../engine/x86/shadow_vm';
import { kvm_mmu_write_protect_pt_masked, kvm_unmap_gfn_range, kvm_page_table_hashfn, ROOT_INVALID } from '../engine/x86/shadow_mmu';
import { kvm_mmu_free_roots, KVM_MMU_ROOT_CURRENT } from '../engine/x86/shadow_roots';
import { kvm_mmu_track_write } from '../engine/x86/shadow_paging';
import { ROLE_DIRECT, ROLE_INVALID } from '../engine/x86/role';
import type { HostBacking } from '../engine/x86/index';
import type { Mismatch, ModelCheckOptions, ModelCheckResult } from './model_check';
import { inferSlots } from './model_vm';
import { isRootSp, K, readShadowCapture, type Op, type Rec, type ShadowCapture } from './model_check_shadow_read';

const TWO32 = 0x1_0000_0000;
const PTE_A = 0x20;
const PTE_D = 0x40;
const PTE_PS = 0x80;
const PFERR_P = 1;
const PFERR_W = 2;
const PFERR_U = 4;
const PFERR_F = 0x10;

/** Model-check a shadow-MMU capture from a stream (held in memory: shadow captures are walk-sized). */
export async function modelCheckShadowStream(source: AsyncIterable<Uint8Array | string>, opts: ModelCheckOptions = {}): Promise<ModelCheckResult> {
  const cap = await readShadowCapture(source, opts);
  return checkShadowCapture(cap, opts.maxMismatches ?? 1);
}

export async function modelCheckShadowFile(path: string, opts: ModelCheckOptions = {}): Promise<ModelCheckResult> {
  return modelCheckShadowStream(createReadStream(path, { highWaterMark: 1 << 20 }), opts);
}

// ---------------------------------------------------------------------------------------------------
// Guest paging geometry

/** Index of `addr` (halves) in the table of `level`, in paging mode `mode` (5, 4, 3 = PAE, 2 = 32-bit). */
function tableIndex(lo: number, hi: number, level: number, mode: number): number {
  if (mode === 2) return Number(((BigInt(hi) << 32n) | BigInt(lo)) >> BigInt(12 + 10 * (level - 1))) & 1023;
  if (mode === 3 && level === 3) return (lo >>> 30) & 3;
  return Number(((BigInt(hi) << 32n) | BigInt(lo)) >> BigInt(12 + 9 * (level - 1))) & 511;
}

/** The gfn an entry points to (next table or page frame). */
function entryGfn(r: Rec, mode: number): number {
  if (mode === 2) return r.lo >>> 12;
  return (r.hi & 0xf_ffff) * 0x10_0000 + (r.lo >>> 12);
}

function isLeaf(r: Rec, mode: number): boolean {
  if (r.b === 1) return true;
  if (mode === 3 && r.b === 3) return false;
  return r.b <= 3 && (r.lo & PTE_PS) !== 0;
}

/** A GVA as the engine takes it: exact below 2^53; above, bits 63:12 (still exact) without the offset. */
function gvaNumber(lo: number, hi: number): number {
  return hi < 0x20_0000 ? hi * TWO32 + lo : hi * TWO32 + ((lo & 0xffff_f000) >>> 0);
}

/** Why a walk cannot be rebuilt, or undefined when it can. */
function incompleteWalk(op: Op): string | undefined {
  const pes = op.pes;
  if (pes.length === 0) return `the walk at line ${op.line} has no kvm_mmu_paging_element events (the guest page tables cannot be rebuilt)`;
  const top = pes[0]!.b;
  if (top < 2 || top > 5) return `the walk at line ${op.line} starts at level ${top}`;
  for (let i = 1; i < pes.length; i++) {
    if (pes[i]!.b !== top - i) return `the walk at line ${op.line} goes from level ${pes[i - 1]!.b} to ${pes[i]!.b} (events lost?)`;
  }
  const last = pes[pes.length - 1]!;
  const ended = op.recs.some((r) => r.k === K.WERR);
  if (!ended && (last.lo & 1) !== 0 && !isLeaf(last, top)) return `the walk at line ${op.line} stops at level ${last.b} on a present non-leaf entry (events lost?)`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Comparison keys: one text per compared event, the same for a capture record and a model event

function halves(v: unknown): { lo: number; hi: number } {
  if (typeof v === 'number') return { lo: v % TWO32 >>> 0, hi: Math.floor(v / TWO32) >>> 0 };
  if (typeof v === 'string') {
    const b = BigInt(v.startsWith('0x') ? v : '0x' + v);
    return { lo: Number(b & 0xffff_ffffn), hi: Number((b >> 32n) & 0xffff_ffffn) };
  }
  if (typeof v === 'boolean') return { lo: v ? 1 : 0, hi: 0 };
  return { lo: 0, hi: 0 };
}

function maskedSpte(lo: number, hi: number): string {
  return hexHalves((lo & 0xfff) >>> 0, (hi & 0xfff0_0000) >>> 0);
}

const h = (n: number) => n.toString(16);

function capKey(r: Rec): string {
  const mask = Math.floor(r.c / 4);
  switch (r.k) {
    case K.PE:
      return `pte ${hexHalves(r.lo, r.hi)} level ${r.b}`;
    case K.ACC:
      return `set_accessed_bit gpa ${h(r.a)}`;
    case K.DIRTY:
      return `set_dirty_bit gpa ${h(r.a)}`;
    case K.WERR:
      return `walker_error pferr ${h(r.b)}`;
    case K.GET:
      return `get_page gfn ${h(r.a)} role ${h((r.b & mask) >>> 0)} ${r.c & 1 ? 'unsync' : 'sync'} ${r.c & 2 ? 'new' : 'existing'}`;
    case K.SYNC:
      return `sync_page gfn ${h(r.a)} role ${h((r.b & mask) >>> 0)}`;
    case K.UNSYNC:
      return `unsync_page gfn ${h(r.a)} role ${h((r.b & mask) >>> 0)}`;
    case K.REQ:
      return `spte_requested gfn ${h(r.a)} level ${r.b}`;
    case K.SET:
      return `set_spte gfn ${h(r.a)} level ${r.b} spte ${maskedSpte(r.lo, r.hi)} (pfn masked)`;
    case K.FAST:
      return fastKey(r.a, r.b, r.olo, r.ohi, r.lo, r.hi, (r.c & 1) !== 0, (r.c & 2) !== 0);
    default:
      return '';
  }
}

function fastKey(gpa: number, ec: number, olo: number, ohi: number, nlo: number, nhi: number, spurious: boolean, fixed: boolean): string {
  return `fast_page_fault gva ${h(gpa)} error_code ${h(ec >>> 0)} old ${maskedSpte(olo, ohi)} new ${maskedSpte(nlo, nhi)} spurious ${spurious ? 1 : 0} fixed ${fixed ? 1 : 0} (pfn masked)`;
}

/** Key of a model event, '' for events not compared; `mask`: the role bits the paired capture text showed. */
function modelKey(e: TraceEvent, mask: number): string {
  const f = e.fields;
  const gfn = () => h(Number(f['gfn']));
  switch (e.name) {
    case 'kvm_mmu_paging_element': {
      const p = halves(f['pte']);
      return `pte ${hexHalves(p.lo, p.hi)} level ${Number(f['level'])}`;
    }
    case 'kvm_mmu_set_accessed_bit':
      return `set_accessed_bit gpa ${h(Number(f['gpa']))}`;
    case 'kvm_mmu_set_dirty_bit':
      return `set_dirty_bit gpa ${h(Number(f['gpa']))}`;
    case 'kvm_mmu_walker_error':
      return `walker_error pferr ${h(Number(f['pferr']))}`;
    case 'kvm_mmu_get_page':
      return `get_page gfn ${gfn()} role ${h((Number(f['role']) & mask) >>> 0)} ${f['unsync'] ? 'unsync' : 'sync'} ${f['created'] ? 'new' : 'existing'}`;
    case 'kvm_mmu_sync_page':
      return `sync_page gfn ${gfn()} role ${h((Number(f['role']) & mask) >>> 0)}`;
    case 'kvm_mmu_unsync_page':
      return `unsync_page gfn ${gfn()} role ${h((Number(f['role']) & mask) >>> 0)}`;
    case 'kvm_mmu_spte_requested':
      return `spte_requested gfn ${gfn()} level ${Number(f['level'])}`;
    case 'kvm_mmu_set_spte': {
      const s = halves(f['spte']);
      return `set_spte gfn ${gfn()} level ${Number(f['level'])} spte ${maskedSpte(s.lo, s.hi)} (pfn masked)`;
    }
    case 'fast_page_fault': {
      const o = halves(f['old_spte']);
      const n = halves(f['new_spte']);
      const ret = Number(f['ret']);
      return fastKey(Number(f['cr2_or_gpa']), halves(f['error_code']).lo, o.lo, o.hi, n.lo, n.hi, ret === RET_PF_SPURIOUS_6_18, ret === RET_PF_FIXED_6_18);
    }
    default:
      return '';
  }
}

const COMPARED = new Set(['fast_page_fault', 'kvm_mmu_paging_element', 'kvm_mmu_set_accessed_bit', 'kvm_mmu_set_dirty_bit', 'kvm_mmu_walker_error', 'kvm_mmu_get_page', 'kvm_mmu_sync_page', 'kvm_mmu_unsync_page', 'kvm_mmu_spte_requested', 'kvm_mmu_set_spte']);

// ---------------------------------------------------------------------------------------------------
// The replay

interface VState {
  /** Paging mode the model vCPU runs (0: not set up yet). */
  mode: number;
  /** Top guest table (non-PAE), -1 unknown. */
  table: number;
  pgd: number;
  /** Last CR3 the model loaded for each top table (its cached root, if still cached). */
  pgdOf: Map<number, number>;
  variant: number;
  /** PAE: the PDPTEs the model's CR3 holds, [2i] lo, [2i+1] hi. */
  pdpt: Uint32Array;
}

function regsFor(mode: number): { cr0: number; cr4: number; efer: number } {
  const cr0 = 0x8001_0011; // PG | WP | ET | PE
  if (mode === 5) return { cr0, cr4: 0x20 | 0x1000, efer: 0xd01 };
  if (mode === 4) return { cr0, cr4: 0x20, efer: 0xd01 };
  if (mode === 3) return { cr0, cr4: 0x20, efer: 0x800 };
  return { cr0, cr4: 0x10, efer: 0 };
}

/** The paging mode a root shadow page's role implies. */
function modeOfRootRole(role: number): number {
  const level = role & 0xf;
  if (level >= 4) return level;
  return (role & 0x10) !== 0 ? 2 : 3;
}

class ShadowReplay {
  readonly result: ModelCheckResult;
  private vm!: ShadowVm;
  private readonly vs: VState[] = [];
  private buf: TraceEvent[] = [];
  private unsubscribe: (() => void) | undefined;
  /** Top tables named by traced root shadow pages. */
  private readonly rootTables = new Set<number>();
  /** A free page for the PDPTs the model's PAE CR3s point at. */
  private pdptGfn = -1;
  private readonly direct: boolean;
  private readonly scratch = new Uint32Array(2);
  /** GPAs of guest entries a traced walk has shown (the rest of guest memory is unknown). */
  private readonly known = new Set<number>();

  constructor(
    private readonly cap: ShadowCapture,
    private readonly maxMismatches: number,
  ) {
    this.direct = !cap.sawWalk;
    this.result = {
      ok: true,
      vm: { format: cap.svm ? 'npt' : 'ept', levels: 0, description: `shadow MMU capture (no TDP MMU changes), ${cap.svm ? 'SVM' : 'VMX'}`, slots: [] },
      faultsReplayed: 0,
      faultSource: !this.direct ? 'kvm_mmu_pagetable_walk' : cap.ops.some((o) => o.pf !== undefined) ? 'kvm_page_fault' : 'kvm_mmu_spte_requested',
      realChanges: cap.setSptes, modelChanges: 0, compared: 0, notReplayed: 0, operations: {}, mismatches: [],
    };
  }

  private count(kind: string, n = 1): void {
    this.result.operations[kind] = (this.result.operations[kind] ?? 0) + n;
  }

  /** Set up the VM; a reason when the capture cannot be checked. */
  setup(): string | undefined {
    const cap = this.cap;
    if (cap.tdpChanges > 0) return 'kvm_tdp_mmu_spte_changed events: a TDP MMU capture (use the TDP model check)';
    const faults = cap.ops.filter((o) => o.kind !== 'entry');
    if (faults.length === 0) return 'no kvm_mmu_pagetable_walk or kvm_mmu_spte_requested events to drive the shadow MMU with';
    const regions = new Set<number>();
    const hugeAt = new Map<number, number>();
    const named = new Set<number>();
    const name = (gfn: number) => {
      named.add(gfn);
      regions.add(Math.floor(gfn / 512));
    };
    let levels = 0;
    let maxGfn = 0;
    for (const op of cap.ops) {
      if (op.kind === 'fault') {
        const why = incompleteWalk(op);
        if (why) return why;
        const mode = op.pes[0]!.b;
        levels = Math.max(levels, mode);
        for (const pe of op.pes) if ((pe.lo & 1) !== 0) name(entryGfn(pe, mode));
      }
      for (const r of op.recs) {
        if (r.k === K.ACC || r.k === K.DIRTY) name(Math.floor(r.a / 4096));
        else if (r.k === K.GET || r.k === K.SYNC || r.k === K.UNSYNC || r.k === K.SET) name(r.a);
        else if (r.k === K.REQ && r.c === 0) name(r.a);
        if (r.k === K.SET && r.b >= 2) {
          const reg = Math.floor(r.a / 512);
          hugeAt.set(reg, Math.max(hugeAt.get(reg) ?? 0, r.b));
        }
        if (r.k === K.GET && isRootSp(r.b, r.a, 0) && (r.b & ROLE_DIRECT) === 0) levels = Math.max(levels, modeOfRootRole(r.b));
      }
    }
    for (const g of named) maxGfn = Math.max(maxGfn, g);
    // nx_huge_pages: a huge SPTE without execute where the guest allowed it (the iTLB multihit mitigation)
    let nxHuge = false;
    let tdpLevel = 4;
    for (const op of cap.ops) {
      for (const r of op.recs) {
        if (r.k === K.GET && (r.b & ROLE_DIRECT) !== 0 && isRootSp(r.b, r.a, 0)) tdpLevel = r.b & 0xf;
        if (r.k !== K.SET || r.b < 2) continue;
        const last = op.pes[op.pes.length - 1];
        const guestNx = last !== undefined && op.pes[0]!.b !== 2 && (last.hi & 0x8000_0000) !== 0;
        const spteNx = this.direct ? !cap.svm && (r.lo & 4) === 0 || cap.svm && (r.hi & 0x8000_0000) !== 0 : (r.hi & 0x8000_0000) !== 0;
        if (spteNx && !guestNx) nxHuge = true;
      }
    }
    if (!this.direct && levels === 3 && ![...regions].some((r) => r < 2048)) regions.add(0);
    const slots = inferSlots(regions, hugeAt);
    if (slots.length === 0) return 'no guest memory named by the capture';
    // the PDPT page of the model's PAE CR3s: a page no event names, below 4 GiB
    for (const s of slots) {
      for (let g = s.gpa / 4096; g < (s.gpa + s.size) / 4096 && g < 0x10_0000; g++) {
        if (!named.has(g)) {
          this.pdptGfn = g;
          break;
        }
      }
      if (this.pdptGfn >= 0) break;
    }
    const s0 = slots[0]!;
    const vm = new ShadowVm({
      vendor: cap.svm ? 'svm' : 'vmx',
      tdp: this.direct,
      mem_bytes: s0.size,
      first_slot: { id: s0.slot, gpa: s0.gpa },
      host_backing: s0.backing as HostBacking,
      vcpus: cap.vcpus,
      cpu: { maxphyaddr: maxGfn >= 2 ** 34 ? 52 : 46 },
      kvm: {
        params: nxHuge ? { nx_huge_pages: 'on' } : {},
        ...(this.direct ? { vendor_config: { max_tdp_level: (tdpLevel === 5 ? 5 : 4) as 4 | 5 }, guest_maxphyaddr: tdpLevel === 5 ? 52 : 46 } : {}),
      },
    });
    for (const s of slots.slice(1)) {
      const r = vm.setMemoryRegion(s.slot, s.gpa, s.size, 0, s.backing);
      if (r !== 0) return `memslot ${s.slot} at 0x${h(s.gpa)} rejected by the model (${r})`;
    }
    this.vm = vm;
    for (let i = 0; i < cap.vcpus; i++) this.vs.push({ mode: 0, table: -1, pgd: 0, pgdOf: new Map(), variant: 0, pdpt: new Uint32Array(8) });
    if (this.direct) levels = tdpLevel;
    const modeName = this.direct ? 'TDP with the legacy MMU (tdp_mmu=N), direct shadow pages' : levels === 2 ? '32-bit guest paging' : levels === 3 ? 'PAE guest paging' : `${levels}-level guest paging`;
    this.result.vm = {
      format: cap.svm ? 'npt' : 'ept',
      levels,
      description: `${this.direct ? '' : 'shadow paging (TDP off), '}${modeName}, ${cap.svm ? 'SVM' : 'VMX'}, ${cap.vcpus} vCPU${cap.vcpus > 1 ? 's' : ''}${nxHuge ? '; nx_huge_pages on (a huge SPTE without execute)' : ''}${this.direct ? '' : '; guest CR0.WP=1 EFER.NX=1, SMEP/SMAP off (not traced)'}`,
      slots: slots.map((s) => ({ slot: s.slot, gpa: '0x' + h(s.gpa), size: '0x' + h(s.size), backing: s.backing })),
    };
    this.unsubscribe = trace.subscribe((e) => {
      if (COMPARED.has(e.name)) this.buf.push(e);
    });
    return undefined;
  }

  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  run(): void {
    const ops = this.cap.ops;
    for (let i = 0; i < ops.length; i++) {
      if (this.result.mismatches.length >= this.maxMismatches) break;
      const op = ops[i]!;
      if (op.kind === 'entry') this.entry(op, i);
      else if (op.kind === 'fault') this.fault(op);
      else this.directFault(op);
      this.result.notReplayed += op.prefetched;
    }
    this.result.notReplayed += this.cap.stray;
    this.result.ok = this.result.mismatches.length === 0;
  }

  // --- vCPU setup and CR3 ---------------------------------------------------------------------------

  private use(v: number): VState {
    this.vm.useVcpu(v);
    return this.vs[v]!;
  }

  /** A CR3 value for top table `t` that no cached root of the vCPU carries (a load that allocates). */
  private freshPgd(st: VState, t: number): number {
    const sv = this.vm.sv;
    for (let i = 0; i < 4096; i++) {
      const pgd = t * 4096 + (st.variant++ % 4096);
      if (pgd !== this.vm.cr3 && !sv.prev_roots.some((r) => r.sp !== null && r.pgd === pgd)) return pgd;
    }
    return t * 4096;
  }

  /** PAE: write PDPTEs at a fresh place of the PDPT page and return that CR3. */
  private pdptPgd(st: VState, pdpt: Uint32Array): number {
    const pgd = this.pdptGfn * 4096 + 32 * (st.variant++ % 128);
    for (let i = 0; i < 4; i++) this.vm.mem.write64(pgd + 8 * i, pdpt[2 * i]!, pdpt[2 * i + 1]!);
    st.pdpt.set(pdpt);
    return pgd;
  }

  /** Load `pgd` into the vCPU, switching paging mode first if needed (a mode change drops all roots). */
  private load(st: VState, mode: number, pgd: number): void {
    if (st.mode !== mode) {
      const r = regsFor(mode);
      this.vm.setRegs(r.cr0, r.cr4, r.efer, pgd);
      st.mode = mode;
      if (this.vm.cr3 !== pgd) this.vm.loadCr3(pgd);
    } else this.vm.loadCr3(pgd);
    st.pgd = pgd;
  }

  private setTable(st: VState, t: number, pgd: number): void {
    st.table = t;
    st.pgdOf.set(t, pgd);
  }

  // --- operations -------------------------------------------------------------------------------------

  /** Root allocation and MMU sync on entry (kvm_mmu_reload after a CR3 load). */
  private entry(op: Op, at: number): void {
    const st = this.use(op.vcpu);
    const roots = op.recs.filter((r) => r.k === K.GET);
    this.count('entry');
    this.buf = [];
    if (this.direct) {
      if (roots.length > 0 && this.vm.sv.root_kind !== ROOT_INVALID) {
        kvm_mmu_free_roots(this.vm.sv, KVM_MMU_ROOT_CURRENT);
        this.count('inferred_root_free');
        this.buf = [];
      }
      this.vm.reload();
      this.compare(op, op.recs);
      return;
    }
    const mode = roots.length > 0 ? modeOfRootRole(roots[0]!.b) : st.mode;
    if (mode === 0) {
      // a sync before the vCPU ever ran in the capture: nothing to replay it against
      this.count('not_replayed');
      return;
    }
    if (mode === 3) {
      if (roots.length > 0) {
        const pdpt = this.paeRootsPdpt(op, at, roots);
        this.load(st, mode, this.pdptPgd(st, pdpt));
      } else this.load(st, mode, st.pgd);
    } else if (roots.length > 0) {
      const t = roots[0]!.a;
      this.rootTables.add(t);
      if (t !== st.table || st.mode !== mode) {
        const pgd = this.freshPgd(st, t);
        this.load(st, mode, pgd);
        this.setTable(st, t, pgd);
      } else if (this.vm.sv.root_kind !== ROOT_INVALID) {
        // the capture allocates a root for the table the model still has one for: the real one was freed
        kvm_mmu_free_roots(this.vm.sv, KVM_MMU_ROOT_CURRENT);
        this.count('inferred_root_free');
        this.buf = [];
      }
    } else this.load(st, mode, st.pgd);
    this.vm.reload();
    this.compare(op, op.recs);
  }

  /**
   * PAE: the PDPTEs behind a traced set of root pages. A root page's gfn is its PDPTE's target; the
   * index comes from the walks of this vCPU that follow (their level-3 elements), or the PDPTEs the model
   * holds; what is left takes the next free index in order (roots are allocated in PDPTE order).
   */
  private paeRootsPdpt(op: Op, at: number, roots: Rec[]): Uint32Array {
    const known = new Map<number, { i: number; lo: number; hi: number }>();
    const st = this.vs[op.vcpu]!;
    for (let i = 0; i < 4; i++) {
      if (st.pdpt[2 * i]! & 1) known.set(entryGfn({ lo: st.pdpt[2 * i]!, hi: st.pdpt[2 * i + 1]! } as Rec, 3), { i, lo: st.pdpt[2 * i]!, hi: st.pdpt[2 * i + 1]! });
    }
    const ops = this.cap.ops;
    for (let j = at + 1, seen = 0; j < ops.length && seen < 64; j++) {
      const o = ops[j]!;
      if (o.vcpu !== op.vcpu) continue;
      seen++;
      if (o.kind === 'entry' && o.recs.some((r) => r.k === K.GET)) break;
      const pe = o.kind === 'fault' && o.pes[0]!.b === 3 ? o.pes[0]! : undefined;
      if (pe && (pe.lo & 1) !== 0) known.set(entryGfn(pe, 3), { i: tableIndex(o.walk!.lo, o.walk!.hi, 3, 3), lo: pe.lo, hi: pe.hi });
    }
    const pdpt = new Uint32Array(8);
    const used = new Set<number>();
    let next = 0;
    for (const r of roots) {
      const k = known.get(r.a);
      let i = k && !used.has(k.i) ? k.i : -1;
      if (i < 0) {
        while (used.has(next) && next < 4) next++;
        i = next;
      }
      if (i > 3) break;
      used.add(i);
      next = i + 1;
      pdpt[2 * i] = k ? k.lo : (r.a % 0x10_0000) * 4096 + 1;
      pdpt[2 * i + 1] = k ? k.hi : Math.floor(r.a / 0x10_0000);
    }
    return pdpt;
  }

  /** The top table of a walk (non-PAE), -1 when nothing tells. */
  private topTable(op: Op, st: VState, mode: number): number {
    const top = op.pes[0]!;
    const esize = mode === 2 ? 4 : 8;
    const idx = tableIndex(op.walk!.lo, op.walk!.hi, top.b, mode);
    // the walk set the top entry's accessed bit: its gpa names the table
    const a0 = op.ad[0];
    if ((top.lo & PTE_A) === 0 && a0 !== undefined && a0.k === K.ACC && (a0.a % 4096) === idx * esize) return Math.floor(a0.a / 4096);
    const matches = (t: number) => {
      if (!this.vm.mem.readEntry(t * 4096 + idx * esize, esize as 4 | 8, this.scratch)) return false;
      return ((this.scratch[0]! ^ top.lo) & ~(PTE_A | PTE_D)) === 0 && (esize === 4 || this.scratch[1] === top.hi);
    };
    if (st.table >= 0 && matches(st.table)) return st.table;
    for (const t of this.rootTables) if (t !== st.table && matches(t)) return t;
    if (st.table >= 0) return st.table;
    // never saw this vCPU's root: any traced root table, else a page no event names
    for (const t of this.rootTables) return t;
    return this.pdptGfn;
  }

  /** A guest page-table walk and what the fault did after it. */
  private fault(op: Op): void {
    const st = this.use(op.vcpu);
    const walk = op.walk!;
    const mode = op.pes[0]!.b;
    const esize = mode === 2 ? 4 : 8;
    const pre: TraceEvent[] = [];
    let comparePre = false;
    // 1. the top of the walk: CR3 (a cached root's, or the mode's first) or the PDPTEs
    if (mode === 3) {
      const pe = op.pes[0]!;
      const i = tableIndex(walk.lo, walk.hi, 3, 3);
      if (st.mode !== 3 || st.pdpt[2 * i] !== pe.lo || st.pdpt[2 * i + 1] !== pe.hi) {
        const pdpt = st.mode === 3 ? st.pdpt.slice() : new Uint32Array(8);
        pdpt[2 * i] = pe.lo;
        pdpt[2 * i + 1] = pe.hi;
        this.buf = [];
        this.load(st, 3, this.pdptPgd(st, pdpt));
        this.vm.reload();
        this.count('inferred_pdpte_load');
      }
    } else {
      const t = this.topTable(op, st, mode);
      if (t !== st.table || st.mode !== mode) {
        this.buf = [];
        const cached = st.pgdOf.get(t);
        const pgd = cached !== undefined && st.mode === mode ? cached : this.freshPgd(st, t);
        this.load(st, mode, pgd);
        this.vm.reload();
        this.setTable(st, t, pgd);
        this.count('cr3_switch');
        // switching to a root the capture traced: the model must find it cached, as the real one did
        comparePre = cached !== undefined && this.rootTables.has(t);
        pre.push(...this.buf);
      }
    }
    // 2. the traced entries into guest memory (a changed entry in a write-protected table: an emulated store)
    let table = mode === 3 ? -1 : st.table;
    for (const pe of op.pes) {
      if (!(mode === 3 && pe.b === 3) && table >= 0) {
        const gpa = table * 4096 + tableIndex(walk.lo, walk.hi, pe.b, mode) * esize;
        // an entry seen before (the model's walks keep its A/D bits current) that changed was stored by the guest
        const had = this.known.has(gpa) && this.vm.mem.readEntry(gpa, esize as 4 | 8, this.scratch);
        this.known.add(gpa);
        if (!had || this.scratch[0] !== pe.lo || (esize === 8 && this.scratch[1] !== pe.hi)) {
          if (esize === 8) this.vm.mem.write64(gpa, pe.lo, pe.hi);
          else this.vm.mem.write32(gpa, pe.lo);
          if (had && this.writeTracked(table)) {
            this.buf = [];
            kvm_mmu_track_write(this.vm.sv, gpa, esize);
            this.count('inferred_guest_write');
          }
        }
      }
      if ((pe.lo & 1) === 0 || isLeaf(pe, mode)) break;
      table = entryGfn(pe, mode);
    }
    const isFault = op.recs.some((r) => r.k !== K.PE && r.k !== K.ACC && r.k !== K.DIRTY);
    if (!isFault) {
      // nothing after the walk: a translation (the emulator's gva_to_gpa), not a fault
      this.count('translate');
      return;
    }
    // 3. a fault on an access the model already allows: the real SPTE was write-protected or zapped
    const gva = gvaNumber(walk.lo, walk.hi);
    const ec = this.vm.hwAccess(gva, (walk.b & PFERR_W) !== 0, (walk.b & PFERR_U) !== 0, (walk.b & PFERR_F) !== 0);
    if (ec < 0 || ((walk.b & PFERR_P) === 0 && (ec & PFERR_P) !== 0)) this.repair(gva, ec < 0 && (walk.b & (PFERR_P | PFERR_W)) === (PFERR_P | PFERR_W));
    // 4. the fault
    this.buf = [];
    this.vm.fault(gva, walk.b);
    this.result.faultsReplayed++;
    this.count('fault');
    this.compare(op, op.recs, comparePre ? pre : []);
  }

  /** A table the model write-protects: an indirect, synced shadow page shadows it. */
  private writeTracked(gfn: number): boolean {
    for (let sp = this.vm.sk.mmu_page_hash[kvm_page_table_hashfn(gfn)] ?? null; sp !== null; sp = sp.hash_next) {
      if (sp.gfn === gfn && (sp.role & (ROLE_DIRECT | ROLE_INVALID)) === 0 && !sp.unsync) return true;
    }
    return false;
  }

  private repair(gva: number, wrprot: boolean): void {
    const gpa = this.vm.gvaToGpa(gva);
    if (gpa < 0) return;
    const gfn = Math.floor(gpa / 4096);
    const slot = this.vm.kvm.kvm_memslots(0).lookup(gfn);
    if (!slot) return;
    if (wrprot) kvm_mmu_write_protect_pt_masked(this.vm.sk, slot, gfn - slot.base_gfn, 1, 0);
    else kvm_unmap_gfn_range(this.vm.sk, slot, gfn, gfn + 1);
    this.count(wrprot ? 'inferred_write_protect' : 'inferred_zap');
  }

  /**
   * TDP with the legacy MMU: a fault on a GPA. Its access comes from kvm_page_fault (VMX: the EPT
   * violation's exit qualification; SVM: the #NPF error code), else from fast_page_fault, else it is a
   * write to the requested gfn.
   */
  private directFault(op: Op): void {
    this.use(op.vcpu);
    const req = op.recs.find((r) => r.k === K.REQ);
    const fast = op.recs.find((r) => r.k === K.FAST);
    let gpa: number;
    let ec: number;
    if (op.pf) {
      gpa = op.pf.a;
      const q = op.pf.lo;
      // EPT qualification: bit 1 write, bit 2 fetch, bits 5:3 the entry's RWX (any: present)
      ec = this.cap.svm ? q & 0x1f : ((q & 2) !== 0 ? PFERR_W : 0) | ((q & 4) !== 0 ? PFERR_F : 0) | ((q & 0x38) !== 0 ? PFERR_P : 0);
    } else if (fast) {
      gpa = fast.a;
      ec = fast.b & 0x1f;
    } else if (req) {
      gpa = req.a * 4096;
      ec = PFERR_W;
    } else {
      this.count('not_replayed');
      return;
    }
    gpa -= gpa % 4096;
    const allowed = this.vm.hwAccess(gpa, (ec & PFERR_W) !== 0, false, (ec & PFERR_F) !== 0) < 0;
    if (allowed && (ec & PFERR_P) !== 0) this.repair(gpa, (ec & PFERR_W) !== 0);
    this.buf = [];
    this.vm.fault(gpa, ec);
    this.result.faultsReplayed++;
    this.count('fault');
    this.compare(op, op.recs);
  }

  // --- comparison -------------------------------------------------------------------------------------

  /** Compare the model's events since the operation began (after `pre`) with the capture's records. */
  private compare(op: Op, recs: Rec[], pre: TraceEvent[] = []): void {
    const model: TraceEvent[] = [];
    let sawReq = false;
    let leaf = false;
    for (const e of [...pre, ...this.buf]) {
      if (e.name === 'kvm_mmu_spte_requested') sawReq = true;
      if (e.name === 'kvm_mmu_set_spte') {
        this.result.modelChanges++;
        // SPTEs set after the leaf's are pte prefetch from untraced guest memory: not compared
        if (sawReq && leaf) continue;
        if (sawReq) leaf = true;
      }
      model.push(e);
    }
    this.buf = [];
    const n = Math.max(recs.length, model.length);
    for (let i = 0; i < n; i++) {
      const r = recs[i];
      const e = model[i];
      const mask = r && (r.k === K.GET || r.k === K.SYNC || r.k === K.UNSYNC) ? Math.floor(r.c / 4) : SP_TEXT_ROLE_MASK;
      const rk = r ? capKey(r) : '';
      const mk = e ? modelKey(e, mask) : '';
      if (r && e && rk === mk) {
        this.result.compared++;
        continue;
      }
      const reason = !e ? `the model does not do this (${rk})` : !r ? `the model does more: ${mk}` : `capture: ${rk}; model: ${mk}`;
      this.report(op, r, e, reason);
      return;
    }
  }

  private report(op: Op, r: Rec | undefined, e: TraceEvent | undefined, reason: string): void {
    let gfn = '';
    let level = 0;
    if (r && (r.k === K.GET || r.k === K.SYNC || r.k === K.UNSYNC || r.k === K.REQ || r.k === K.SET)) gfn = h(r.a);
    else if (e && e.fields['gfn'] !== undefined) gfn = h(Number(e.fields['gfn']));
    if (r && (r.k === K.SET || r.k === K.REQ || r.k === K.PE)) level = r.b;
    else if (r && (r.k === K.GET || r.k === K.SYNC || r.k === K.UNSYNC)) level = r.b & 0xf;
    else if (e && e.fields['level'] !== undefined) level = Number(e.fields['level']);
    else if (e && e.fields['role'] !== undefined) level = Number(e.fields['role']) & 0xf;
    const m: Mismatch = { line: r?.line ?? op.line, asId: 0, gfn, level, reason: `${op.kind === 'entry' ? 'on entry' : `in the ${op.kind === 'fault' ? 'fault' : 'TDP fault'}`} at line ${op.line}: ${reason}` };
    if (r) m.real = { old: '', new: r.k === K.SET ? hexHalves(r.lo, r.hi) : '', text: r.text.trim() };
    if (e) {
      const s = e.name === 'kvm_mmu_set_spte' ? halves(e.fields['spte']) : undefined;
      m.model = { old: '', new: s ? hexHalves(s.lo, s.hi) : '', text: `${e.name}: ${e.text}` };
    }
    this.result.mismatches.push(m);
    this.result.ok = false;
  }
}

/** Check a capture already read (see readShadowCapture). */
export function checkShadowCapture(cap: ShadowCapture, maxMismatches = 1): ModelCheckResult {
  const m = new ShadowReplay(cap, maxMismatches);
  const why = m.setup();
  if (why) {
    m.result.skipped = why;
    m.result.ok = false;
    return m.result;
  }
  try {
    m.run();
  } finally {
    m.dispose();
  }
  return m.result;
}
