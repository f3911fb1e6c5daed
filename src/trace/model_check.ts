/**
 * Model check (`kvm-mmu replay FILE --model-check`): drive the x86 engine with the faults of a real capture and compare the SPTE changes it
 * makes with the ones the capture recorded, per (address space, gfn, level), in order. The first event
 * where the two differ is reported with both sides.
 *
 * How the traced VM is reconstructed (what the tracepoints can and cannot tell):
 * - Vendor / SPTE format: `kvm_exit` names the ISA (VMX -> EPT, SVM -> NPT); without exits the SPTE values
 *   decide (an EPT leaf carries a memory type in bits 3-5, WB = 6; an NPT non-leaf carries the accessed
 *   bit 5, which EPT leaves clear on non-leaf entries).
 * - TDP levels: the level of a TDP root shadow page (`kvm_mmu_get_page` of a direct page at gfn 0), else
 *   the highest level a `kvm_tdp_mmu_spte_changed` names; 4 when neither appears.
 * - Memslots: the capture never shows them. Every 2 MiB region that a fault, a requested gfn or an
 *   installed SPTE touches gets memory; contiguous regions merge into one slot (slot ids in GPA order,
 *   HVA = the facade's default), backed by 4 KiB host pages, or by THP (2M) / hugetlb (1G) pages when the
 *   capture installed a leaf of that size in the slot (a 1G leaf widens its region to the whole 1 GiB),
 *   so the model can map at the level the host allowed. Host pfns are the model's own, so SPTEs are
 *   compared with bits 51:12 masked: what must agree is where a change happens, its kind, permissions,
 *   memory type, A/D and software bits.
 * - Module parameters and vendor knobs are the engine's defaults (tdp_mmu, eager_page_split on;
 *   nx_huge_pages off; EPT A/D on; PML off): a capture does not show them, except nx_huge_pages, on when
 *   a huge leaf is installed without execute permission.
 * - Operations, read in capture order per task: a fault is `kvm_page_fault` (address = GPA under TDP; VMX
 *   traces the EPT exit qualification, replayed through handle_ept_violation; SVM the #NPF error code,
 *   through npf_interception) up to that task's `kvm_entry` or next fault, except that once it installed
 *   its page (`kvm_mmu_set_spte` / `mark_mmio_spte`), or if it requested nothing, a removal starts a run of
 *   its own (an RMP fault's zap stays in the fault), and a further request is a prefault (KVM_PRE_FAULT_MEMORY
 *   traces no `kvm_page_fault`); without any `kvm_page_fault`,
 *   each `kvm_mmu_spte_requested` is a write fault on its gfn, or KVM_PRE_FAULT_MEMORY of it when the leaf
 *   it installs has no accessed bit (a prefetch). Outside faults, a task's run of changes with
 *   `kvm_mmu_split_huge_page`, or one that only write-protects leaves, is dirty logging (enabling it, or a
 *   get/clear of part of a slot: see replayDirtyLog); a run after `kvm_mmu_zap_all_fast` is that; a run
 *   after `kvm_age_hva` is page aging (clear_young) of its HVA range; a run after `kvm_unmap_hva_range`
 *   is that invalidation (part of a 2M page: the host split its THP); a run of removals only is a zap of
 *   those ranges; any other run is not replayed and its changes are counted, not compared. Such runs end
 *   when a vCPU faults again. An EPT misconfiguration (check_mmio_spte outside a fault) is an MMIO
 *   access; memslot updates show only as MMIO generation steps, and the model makes as many.
 * - HVAs: a memslot's HVA - GPA offset comes from the notifier operations on it (see voteHva); without
 *   any, the model's default HVA is used.
 * - Comparison: per operation, each (address space, gfn, level) sequence of `kvm_tdp_mmu_spte_changed`
 *   of the model against the capture's, and each (gfn, level) sequence of `kvm_mmu_set_spte` (which has
 *   no old value and no address space); the earliest line where they disagree is reported.
 * - SMM: a fault whose changes are in address space 1 runs with the vCPU in SMM (slots mapped in both
 *   address spaces); no event shows SMM entry or exit.
 * - Private memory (./model_check_private.ts). VM type: TDX when a fault's GPA has bit 47 (or 51) set and
 *   its `kvm_mmu_spte_requested` names the gfn without it (KVM strips the shared bit; the TD's GPAW is 48,
 *   or 52), or when VMX exits with TDCALL; SEV-SNP when an #NPF error code has PFERR_GUEST_ENC (bit 34)
 *   or `kvm_rmp_fault` appears; KVM_X86_SW_PROTECTED_VM when a huge leaf zapped outside a fault is
 *   refaulted smaller (NX mitigation off). Such a VM's slots are bound to a guest_memfd (huge folios where
 *   huge leaves were installed; a SW-protected VM only where that evidence lies), all private for TDX and
 *   SEV-SNP (their VMMs convert guest RAM before the guest runs), shared for SW-protected. A fault's kind
 *   is the shared bit (TDX: a private fault goes through the mirror root, a shared one through the direct
 *   root; both trace the gfn without the bit) or the ENC bit (SEV-SNP; npf_interception's own
 *   PFERR_PRIVATE_ACCESS, bit 49, is stripped before replay); the kind of a prefault, and of every fault of
 *   a SW-protected VM, follows the attribute. Attributes (KVM_SET_MEMORY_ATTRIBUTES is not traced) come
 *   from effects: a run of leaf removals outside a fault, including one by a vCPU task after its fault
 *   installed its page or gave up before requesting one (a KVM_EXIT_MEMORY_FAULT served in that thread),
 *   converts each leaf's range away from its side (TDX: mirror = private; else the model's attribute);
 *   before a mapping fault the gfn (its whole huge page when the capture mapped huge) takes the fault's
 *   kind; a fault that mapped smaller than the model would gives one gfn of the next larger page, which
 *   the capture never faults on, the other kind (KVM_LPAGE_MIXED_FLAG); a fault that requested nothing
 *   with no leaf over its gfn is a kind/attribute mismatch, and the gfn's attribute is made to disagree.
 *   What cannot be inferred: which gfns of a SW-protected VM are private (its private and shared SPTEs
 *   look alike; only a level can show the difference), the real extent of a conversion (only what it
 *   zapped and the levels of later faults), a conversion or PUNCH_HOLE that zapped nothing, a punch hole
 *   as opposed to a conversion (both zap; the model converts), which gfn made a huge page mixed, whether a
 *   SW-protected slot without that evidence has a guest_memfd, and guest_memfd folio sizes (6.18 has only
 *   order 0; larger folios are a model option). A TDX private SPTE's S-EPT (TDX module) side is not traced.
 * - A capture with no `kvm_tdp_mmu_spte_changed` but shadow-MMU work (shadow pages, SPTEs set) is a shadow
 *   paging (or tdp_mmu=N) capture: ./model_check_shadow.ts checks it, from the guest tables the walker traced.
 */
import { createReadStream, statSync } from 'node:fs';
import { EVENT_BY_NAME, hexHalves } from '../engine/tracepoints/index';
import { trace, type TraceEvent } from '../engine/trace_sink';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, X86Vm, type HostBacking } from '../engine/x86/index';
import { handle_ept_misconfig, handle_ept_violation, npf_interception } from '../engine/x86/mmu';
import { kvm_tdp_mmu_zap_possible_nx_huge_page } from '../engine/x86/tdp_mmu';
import type { ParsedEvent } from './event';
import { TraceParser } from './parser';
import { AbortError, parseStream, type StreamOptions } from './stream';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel_version';
import { inferSlots, slotHvaOffset, VmEvidence } from './model_vm';
import { modelCheckShadowFile, modelCheckShadowStream } from './model_check_shadow';
import { PFERR_GUEST_RMP_LO, PFERR_SYNTHETIC_HI, PrivateEvidence, PrivateMemoryModel, type PrivateKind } from './model_check_private';

export { inferSlots, VmEvidence };

const S_CHANGED = EVENT_BY_NAME.get('kvm_tdp_mmu_spte_changed')!;
const S_SET = EVENT_BY_NAME.get('kvm_mmu_set_spte')!;
const S_PF = EVENT_BY_NAME.get('kvm_page_fault')!;
const S_REQ = EVENT_BY_NAME.get('kvm_mmu_spte_requested')!;

const TWO32 = 0x1_0000_0000;
/** Slot ids and GPAs of the model's stand-ins for memslot updates a capture does not show. */
const DUMMY_SLOT = 32000;
const DUMMY_GPA = 2 ** 45;
const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4];

// ---------------------------------------------------------------------------------------------------
// The comparison

/** One SPTE change, real or modelled. */
export interface SpteChange {
  asId: number;
  gfn: number;
  level: number;
  oldLo: number;
  oldHi: number;
  newLo: number;
  newHi: number;
  /** Capture line (real changes). */
  line?: number;
  /** A `kvm_mmu_set_spte` (no old value, no address space: compared as its own sequence). */
  set?: boolean;
}

export interface ModelCheckOptions extends StreamOptions {
  kernel?: KernelVersion;
  /** Stop after this many mismatches (default 1: the first is what the report is about). */
  maxMismatches?: number;
}

export interface Mismatch {
  /** Capture line of the real event that disagrees (or of the fault whose model changes were not seen). */
  line: number;
  asId: number;
  gfn: string;
  level: number;
  reason: string;
  real?: { old: string; new: string; text: string };
  model?: { old: string; new: string; text: string };
}

export interface ModelCheckResult {
  ok: boolean;
  /** Slots carry `hva` when mmu-notifier operations told it (else the model's default HVA is used). */
  vm: { format: 'ept' | 'npt'; levels: number; description: string; private?: PrivateKind; slots: Array<{ slot: number; gpa: string; size: string; backing: string; hva?: string }> };
  faultsReplayed: number;
  /** How faults were taken from the capture. */
  faultSource: 'kvm_page_fault' | 'kvm_mmu_spte_requested' | 'kvm_mmu_pagetable_walk' | 'none';
  realChanges: number;
  modelChanges: number;
  /** Events compared: SPTE changes (TDP), or every walk, shadow-page and SPTE event of a shadow capture. */
  compared: number;
  /** Real changes of operations the model is not driven with (not compared). */
  notReplayed: number;
  /** Operations replayed, by kind (fault, dirty_log, zap_all, zap, other). */
  operations: Record<string, number>;
  mismatches: Mismatch[];
  /** Why the check could not run, if it could not. */
  skipped?: string;
}

/** Bits of an SPTE that depend on the host, not on the MMU's decisions: the pfn (51:12). */
function maskPfn(lo: number, hi: number): { lo: number; hi: number } {
  return { lo: (lo & 0xfff) >>> 0, hi: (hi & 0xfff0_0000) >>> 0 };
}

function sameShape(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const a = maskPfn(aLo, aHi);
  const b = maskPfn(bLo, bHi);
  return a.lo === b.lo && a.hi === b.hi;
}

function changeText(c: SpteChange): string {
  if (c.set) return `kvm_mmu_set_spte: gfn ${c.gfn.toString(16)} spte ${hexHalves(c.newLo, c.newHi)} level ${c.level}`;
  return `kvm_tdp_mmu_spte_changed: as id ${c.asId} gfn ${c.gfn.toString(16)} level ${c.level} old_spte ${hexHalves(c.oldLo, c.oldHi)} new_spte ${hexHalves(c.newLo, c.newHi)}`;
}

function key(asId: number, gfn: number, level: number, set = false): string {
  return `${set ? 's' : 'c'}${asId}:${gfn}:${level}`;
}

/**
 * A stretch of the capture the model can replay as one operation: a vCPU's fault (from `kvm_page_fault`
 * until that task's `kvm_entry` or next fault), enabling dirty logging (a task's run of
 * `kvm_mmu_split_huge_page`), `kvm_mmu_zap_all_fast`, a zap (a task's run of removals outside a fault),
 * or something the model is not driven with (`other`: its changes are listed as not replayed).
 */
interface Episode {
  kind: 'fault' | 'prefault' | 'mmio' | 'dirty_log' | 'zap_all' | 'zap' | 'age' | 'unmap' | 'other';
  line: number;
  pid: number;
  vcpu: number;
  gpa: number;
  errLo: number;
  errHi: number;
  changes: SpteChange[];
  /** Split gfns (dirty_log). */
  splits: number[];
  /** Memslot generations the MMIO events show passing before it (memslot updates the trace does not show). */
  genBump: number;
  /** A check_mmio_spte was seen in it. */
  checked: boolean;
  /** Gfns of the `kvm_mmu_spte_requested` events in it. */
  requests: number[];
  /** HVA range of an mmu-notifier operation (age, unmap). */
  hvaStart: number;
  hvaEnd: number;
  /** No more events will be attributed to it. */
  closed: boolean;
  /** Goal level of the first `kvm_mmu_spte_requested` (0: none). */
  reqLevel: number;
  /** The fault installed what it requested (`kvm_mmu_set_spte` / `mark_mmio_spte` seen after a request). */
  ended: boolean;
  /** The error code is the one kvm_page_fault traced. */
  fromPageFault: boolean;
}

/** What a pass over the capture learns about the VM (the episodes go to a callback as they close). */
interface Scan {
  evidence: VmEvidence;
  faults: number;
  realChanges: number;
  /** Huge leaves the capture installed: 2M region index -> largest level. */
  hugeAt: Map<number, number>;
  regions: Set<number>;
  vcpus: number;
  sawPageFault: boolean;
  /** Some change was in address space 1 (SMM). */
  sawSmm: boolean;
  /** HVA - GPA offsets that mmu-notifier operations imply: 2M region index -> offset -> votes. */
  hvaVotes: Map<number, Map<number, number>>;
  /** What the capture shows of private memory (TDX shared bit, SNP encrypted faults, attribute changes). */
  priv: PrivateEvidence;
}

/**
 * An mmu-notifier operation names HVAs, its changes name gfns: the lowest SPTE it changed lies in its HVA
 * range, which gives the slot's HVA - GPA offset, taken 2 MiB aligned (VMMs align guest RAM for THP).
 * Operations vote; each inferred slot takes the offset most of its votes name.
 */
function voteHva(cap: Scan, e: Episode): void {
  let low = -1;
  for (const c of e.changes) if (!c.set && (low < 0 || c.gfn < low)) low = c.gfn;
  if (low < 0) return;
  const off = e.hvaStart - low * 4096;
  const aligned = off - (off % 0x20_0000);
  const region = Math.floor(low / 512);
  let votes = cap.hvaVotes.get(region);
  if (!votes) cap.hvaVotes.set(region, (votes = new Map()));
  votes.set(aligned, (votes.get(aligned) ?? 0) + 1);
}

const S_SPLIT = EVENT_BY_NAME.get('kvm_mmu_split_huge_page')!;
const S_ENTRY = EVENT_BY_NAME.get('kvm_entry')!;
const S_ZAP_ALL = EVENT_BY_NAME.get('kvm_mmu_zap_all_fast')!;
const S_AGE = EVENT_BY_NAME.get('kvm_age_hva')!;
const S_CHECK_MMIO = EVENT_BY_NAME.get('check_mmio_spte')!;
const S_MARK_MMIO = EVENT_BY_NAME.get('mark_mmio_spte')!;
const S_HANDLE_MMIO = EVENT_BY_NAME.get('handle_mmio_page_fault')!;
const S_UNMAP = EVENT_BY_NAME.get('kvm_unmap_hva_range')!;

/**
 * One pass over the capture. Operations are handed to `emit` in the order they started, each once it is
 * closed (so only the operations still open are held in memory).
 */
async function readCapture(source: AsyncIterable<Uint8Array | string>, opts: ModelCheckOptions, emit: (ep: Episode) => void, signal?: AbortSignal): Promise<Scan> {
  const cap: Scan = { evidence: new VmEvidence(), faults: 0, realChanges: 0, hugeAt: new Map(), regions: new Set(), vcpus: 1, sawPageFault: false, sawSmm: false, hvaVotes: new Map(), priv: new PrivateEvidence() };
  const PF = S_PF.index;
  const C = S_CHANGED.index;
  const R = S_REQ.index;
  const SP = S_SPLIT.index;
  const open = new Map<number, Episode>();
  // a faulting address is memory unless the capture's requests there found no memslot (MMIO)
  const faultGpas = new Set<number>();
  const mmioRegions = new Set<number>();
  /** Last memslot generation an MMIO event showed (-1: none yet). */
  let lastGen = -1;
  const sawGen = (gen: number, ep: Episode | undefined) => {
    if (lastGen >= 0 && gen > lastGen && ep) ep.genBump += gen - lastGen;
    lastGen = gen;
  };
  let queue: Episode[] = [];
  let head = 0;
  const close = (pid: number) => {
    const e = open.get(pid);
    if (e) {
      e.closed = true;
      if (e.kind === 'age' || e.kind === 'unmap') voteHva(cap, e);
    }
    open.delete(pid);
  };
  const drain = () => {
    while (head < queue.length && queue[head]!.closed) emit(queue[head++]!);
    if (head > 4096) {
      queue = queue.slice(head);
      head = 0;
    }
  };
  const start = (kind: Episode['kind'], ev: ParsedEvent, f?: Partial<Episode>): Episode => {
    close(ev.pid);
    const e: Episode = { kind, line: ev.line, pid: ev.pid, vcpu: 0, gpa: 0, errLo: 0, errHi: 0, changes: [], splits: [], requests: [], genBump: 0, checked: false, hvaStart: 0, hvaEnd: 0, closed: false, reqLevel: 0, ended: false, fromPageFault: false, ...f };
    if (kind === 'fault') cap.faults++;
    queue.push(e);
    open.set(ev.pid, e);
    return e;
  };
  const parser = new TraceParser({
    kernel: opts.kernel ?? DEFAULT_KERNEL,
    onEvent: (ev) => {
      onEvent(ev);
      if (head < queue.length && queue[head]!.closed) drain();
    },
  });
  function onEvent(ev: ParsedEvent): void {
    cap.evidence.onEvent(ev);
    cap.priv.onEvent(ev);
    const s = ev.schema;
    if (s === S_PF) {
      const gpa = ev.hi[PF['fault_address']!]! * TWO32 + ev.lo[PF['fault_address']!]!;
      const vcpu = ev.has & (1 << PF['vcpu_id']!) ? ev.lo[PF['vcpu_id']!]! : 0;
      cap.vcpus = Math.max(cap.vcpus, Math.min(vcpu, 63) + 1);
      cap.sawPageFault = true;
      // an ioctl's run of changes ends when a vCPU faults again (a sequential reading of the capture)
      for (const [pid, e] of open) if (e.kind !== 'fault') close(pid);
      start('fault', ev, { vcpu, gpa, errLo: ev.lo[PF['error_code']!]!, errHi: ev.hi[PF['error_code']!]!, fromPageFault: true });
      cap.priv.onFault(ev.hi[PF['error_code']!]!);
      faultGpas.add(gpa - (gpa % 0x20_0000));
    } else if (s === S_REQ) {
      const gfn = ev.hi[R['gfn']!]! * TWO32 + ev.lo[R['gfn']!]!;
      // an error pfn (bits 63:52: no memslot, a hardware-poisoned page, ...) says there is no memory there
      if ((ev.hi[R['pfn']!]! & 0xfff0_0000) === 0) cap.regions.add(Math.floor(gfn / 512));
      else mmioRegions.add(Math.floor(gfn / 512));
      // Without kvm_page_fault events, the request is the fault (its access is unknown: a write). A request
      // after a fault installed its page is another operation of the task (KVM_PRE_FAULT_MEMORY).
      const cur = open.get(ev.pid);
      if (cur?.kind === 'fault' ? cur.ended && cap.sawPageFault : !cap.sawPageFault) start('fault', ev, { gpa: gfn * 4096, errLo: -1 });
      const ep = open.get(ev.pid);
      if (ep?.kind === 'fault' || ep?.kind === 'mmio') {
        if (ep.requests.length === 0) ep.reqLevel = ev.lo[R['level']!]!;
        ep.requests.push(gfn);
        cap.priv.onRequest(ep.kind === 'fault' && ep.fromPageFault && ep.requests.length === 1 ? ep.gpa : -1, gfn, ev.lo[R['level']!]!);
      }
    } else if (s === S_CHECK_MMIO) {
      // An access to an MMIO SPTE: under NPT the #NPF traced kvm_page_fault just before (same fault); an
      // EPT misconfiguration traces no kvm_page_fault, so a check outside a fresh fault starts its own access.
      let ep = open.get(ev.pid);
      if (!ep || ep.kind !== 'fault' || ep.changes.length !== 0 || ep.requests.length !== 0 || ep.checked) ep = start('mmio', ev, { gpa: -1 });
      ep.checked = true;
      sawGen(ev.lo[s.index['kvm_gen']!]!, ep);
    } else if (s === S_HANDLE_MMIO) {
      const ep = open.get(ev.pid);
      const gi = s.index['gfn']!;
      if (ep?.kind === 'mmio' && ep.gpa < 0) ep.gpa = (ev.hi[gi]! * TWO32 + ev.lo[gi]!) * 4096;
    } else if (s === S_MARK_MMIO) {
      const ep = open.get(ev.pid);
      if (ep?.kind === 'fault' && ep.requests.length !== 0) ep.ended = true;
      sawGen(ev.lo[s.index['gen']!]!, ep);
    } else if (s === S_ENTRY) {
      if (open.get(ev.pid)?.kind === 'fault') close(ev.pid);
    } else if (s === S_SPLIT) {
      const cur = open.get(ev.pid);
      const gfn = ev.hi[SP['gfn']!]! * TWO32 + ev.lo[SP['gfn']!]!;
      if (cur?.kind === 'fault') return;
      // the split is traced after the change that links the new table: the run it ends is the split
      const ep = cur ?? start('dirty_log', ev);
      ep.kind = 'dirty_log';
      ep.splits.push(gfn);
    } else if (s === S_ZAP_ALL) {
      start('zap_all', ev);
    } else if (s === S_AGE || s === S_UNMAP) {
      // clear_young / clear_flush_young, and invalidate_range_start: the changes that follow in this task
      const i0 = s.index['start']!;
      const i1 = s.index['end']!;
      const hvaStart = ev.hi[i0]! * TWO32 + ev.lo[i0]!;
      const hvaEnd = ev.hi[i1]! * TWO32 + ev.lo[i1]!;
      start(s === S_AGE ? 'age' : 'unmap', ev, { hvaStart, hvaEnd });
    } else if (s === S_SET) {
      const ep = open.get(ev.pid);
      const level = ev.lo[S_SET.index['level']!]!;
      if (!ep || level < 1 || level > 5) return;
      if (ep.kind === 'fault' && ep.requests.length !== 0) ep.ended = true;
      const gfnRaw = ev.hi[S_SET.index['gfn']!]! * TWO32 + ev.lo[S_SET.index['gfn']!]!;
      ep.changes.push({
        asId: 0, gfn: gfnRaw - (gfnRaw % (SPAN[level] ?? 1)), level, oldLo: 0, oldHi: 0,
        newLo: ev.lo[S_SET.index['spte']!]!, newHi: ev.hi[S_SET.index['spte']!]!, line: ev.line, set: true,
      });
    } else if (s === S_CHANGED) {
      const level = ev.lo[C['level']!]!;
      if (level < 1 || level > 5) return;
      const gfnRaw = ev.hi[C['gfn']!]! * TWO32 + ev.lo[C['gfn']!]!;
      const gfn = gfnRaw - (gfnRaw % (SPAN[level] ?? 1));
      const c: SpteChange = {
        asId: ev.lo[C['as_id']!]!, gfn, level,
        oldLo: ev.lo[C['old_spte']!]!, oldHi: ev.hi[C['old_spte']!]!, newLo: ev.lo[C['new_spte']!]!, newHi: ev.hi[C['new_spte']!]!, line: ev.line,
      };
      cap.realChanges++;
      if (c.asId === 1) cap.sawSmm = true;
      const removal = (c.newLo & 0x800) === 0;
      let ep = open.get(ev.pid);
      // Removals in a vCPU's task once its fault is over (installed, or gave up before requesting anything)
      // are its own ioctl: KVM_SET_MEMORY_ATTRIBUTES after a KVM_EXIT_MEMORY_FAULT, say. An RMP fault's
      // zap (sev_handle_rmp_fault) belongs to the fault.
      if (ep?.kind === 'fault' && removal && (ep.errLo & PFERR_GUEST_RMP_LO) === 0 && (ep.ended || (ep.requests.length === 0 && cap.evidence.requested > 0))) ep = undefined;
      if (!ep) ep = start(removal ? 'zap' : 'other', ev);
      else if (ep.kind === 'zap' && !removal) ep.kind = 'other';
      else if (ep.kind === 'zap_all' && !removal) ep.kind = 'other';
      ep.changes.push(c);
      if (ep.kind === 'zap' && (level === 1 || (c.oldLo & 0x880) === 0x880)) cap.priv.onZappedLeaf(gfn, level);
      if (level === 1 && !removal) cap.regions.add(Math.floor(gfn / 512));
      if (level >= 2 && !removal && (c.newLo & 0x80) !== 0) {
        const r = Math.floor(gfn / 512);
        cap.hugeAt.set(r, Math.max(cap.hugeAt.get(r) ?? 0, level));
        cap.regions.add(r);
      }
    }
  }
  const streamOpts: StreamOptions = {};
  if (opts.onProgress) streamOpts.onProgress = opts.onProgress;
  const sig = signal ?? opts.signal;
  if (sig) streamOpts.signal = sig;
  await parseStream(source, parser, streamOpts);
  for (const pid of [...open.keys()]) close(pid);
  drain();
  // a shared TDX GPA is the same memory as its private alias (the memslot lookup strips the shared bit)
  for (const g of faultGpas) {
    const r = Math.floor(cap.priv.strip(g) / 0x20_0000);
    if (!mmioRegions.has(r)) cap.regions.add(r);
  }
  return cap;
}

const TDP_CHANGE_NAME = 'kvm_tdp_mmu_spte_changed';
const TDP_CHANGE_BYTES = Buffer.from(TDP_CHANGE_NAME, 'latin1');

/** Model-check a capture from a stream (one pass: the operations are held until the VM is known). */
export async function modelCheckStream(source: AsyncIterable<Uint8Array | string>, opts: ModelCheckOptions = {}): Promise<ModelCheckResult> {
  const episodes: Episode[] = [];
  // the chunks are kept for a second reading should the capture turn out to be a shadow-MMU one, until a
  // TDP MMU change shows it is not (then memory stays bounded by the operations, as before)
  let chunks: Array<Uint8Array | string> | null = [];
  async function* keep(): AsyncGenerator<Uint8Array | string> {
    for await (const c of source) {
      if (chunks !== null) {
        const seen = typeof c === 'string' ? c.includes(TDP_CHANGE_NAME) : Buffer.from(c.buffer, c.byteOffset, c.byteLength).includes(TDP_CHANGE_BYTES);
        if (seen) chunks = null;
        else chunks.push(c);
      }
      yield c;
    }
  }
  const scan = await readCapture(keep(), opts, (ep) => episodes.push(ep));
  if (isShadowCapture(scan)) {
    const kept = chunks ?? [];
    async function* again(): AsyncGenerator<Uint8Array | string> {
      yield* kept;
    }
    return modelCheckShadowStream(again(), opts);
  }
  const m = new ModelRun(scan, opts.maxMismatches ?? 1);
  if (!m.result.skipped) {
    try {
      for (const ep of episodes) if (!m.run(ep)) break;
    } finally {
      m.dispose();
    }
  }
  return m.finish();
}

/**
 * Model-check a capture file of any size in two passes: the first learns the VM (format, levels,
 * memslots), the second replays each operation as soon as it is complete, in bounded memory.
 */
export async function modelCheckFile(path: string, opts: ModelCheckOptions = {}): Promise<ModelCheckResult> {
  const size = statSync(path).size;
  const progress = opts.onProgress;
  const first: ModelCheckOptions = { ...opts };
  if (progress) first.onProgress = (b) => progress(Math.floor(b / 2));
  const scan = await readCapture(createReadStream(path, { highWaterMark: 1 << 20 }), first, () => {});
  if (isShadowCapture(scan)) {
    const shadow: ModelCheckOptions = { ...opts };
    if (progress) shadow.onProgress = (b) => progress(Math.floor(size / 2 + b / 2));
    return modelCheckShadowFile(path, shadow);
  }
  const m = new ModelRun(scan, opts.maxMismatches ?? 1);
  if (m.result.skipped) return m.finish();
  const second: ModelCheckOptions = { ...opts };
  if (progress) second.onProgress = (b) => progress(Math.floor(size / 2 + b / 2));
  // enough mismatches: stop reading (the user's own signal still cancels)
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort);
  try {
    await readCapture(createReadStream(path, { highWaterMark: 1 << 20 }), second, (ep) => {
      if (!m.run(ep)) stop.abort();
    }, stop.signal);
  } catch (e) {
    if (!(e instanceof AbortError) || opts.signal?.aborted) throw e;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    m.dispose();
  }
  return m.finish();
}

/**
 * No TDP MMU change but shadow-MMU work (shadow pages or SPTEs set): checked by ./model_check_shadow.ts,
 * which rebuilds the guest's page tables from the walker events.
 */
function isShadowCapture(scan: Scan): boolean {
  return scan.evidence.tdpChanges === 0 && scan.evidence.shadowWork > 0;
}

/** The model VM configured from a scan, replaying operations one by one and comparing their changes. */
class ModelRun {
  readonly result: ModelCheckResult;
  private readonly vm: X86Vm | undefined;
  private readonly slots: Array<{ slot: number; gpa: number; size: number; backing: HostBacking; hva?: number }>;
  private readonly modelChanges: SpteChange[] = [];
  private readonly touchedOutside = new Map<string, number>();
  private unsubscribe: (() => void) | undefined;
  /** The private-memory side of the model (TDX, SEV-SNP, SW-protected VMs). */
  private readonly priv: PrivateMemoryModel | undefined;

  constructor(
    private readonly scan: Scan,
    private readonly maxMismatches: number,
  ) {
    const ev = scan.evidence;
    const privKind: PrivateKind | undefined = scan.priv.kind(ev.format, ev.nxHugeLeaves > 0);
    this.slots = inferSlots(scan.regions, scan.hugeAt).map((sl) => {
      const off = slotHvaOffset(scan.hvaVotes, sl.gpa, sl.size);
      return off === undefined ? sl : { ...sl, hva: sl.gpa + off };
    });
    this.result = {
      ok: true,
      vm: {
        format: ev.format, levels: ev.levels, description: ev.describe() + (privKind ? `, ${scan.priv.describe(privKind, ev.levels)}` : ''),
        ...(privKind ? { private: privKind } : {}),
        slots: this.slots.map((s) => ({
          slot: s.slot, gpa: '0x' + s.gpa.toString(16), size: '0x' + s.size.toString(16), backing: s.backing,
          ...(s.hva !== undefined ? { hva: '0x' + s.hva.toString(16) } : {}),
        })),
      },
      faultsReplayed: 0,
      faultSource: scan.sawPageFault ? 'kvm_page_fault' : scan.faults ? 'kvm_mmu_spte_requested' : 'none',
      realChanges: scan.realChanges, modelChanges: 0, compared: 0, notReplayed: 0, operations: {}, mismatches: [],
    };
    if (ev.tdpChanges === 0) {
      this.result.skipped = 'no kvm_tdp_mmu_spte_changed and no shadow-MMU events (kvm_mmu_get_page, kvm_mmu_set_spte): nothing the model makes to compare';
      return;
    }
    if (scan.faults === 0) {
      this.result.skipped = 'no kvm_page_fault or kvm_mmu_spte_requested events to drive the model with';
      return;
    }
    const tdx = privKind === 'tdx';
    const shared = scan.priv.sharedBit || (ev.levels === 5 ? 51 : 47);
    const vm = new X86Vm({
      vendor: ev.format === 'ept' ? 'vmx' : 'svm',
      vendor_config: { max_tdp_level: ev.levels },
      // a TD's GPA width follows its shared bit (GPAW 48: bit 47, GPAW 52: bit 51)
      guest_maxphyaddr: tdx ? shared + 1 : ev.levels === 5 ? 52 : 46,
      nr_vcpus: scan.vcpus,
      ...(privKind ? { vm_type: PrivateMemoryModel.vmType(privKind) } : {}),
      ...(tdx ? { tdx_gpaw: shared === 51 ? 52 as const : 48 as const } : {}),
    });
    if (ev.nxHugeLeaves > 0) vm.set_nx_huge_pages('on');
    // An SEV-SNP capture's KVM_PRE_FAULT_MEMORY ran after LAUNCH_FINISH (before it, the ioctl fails untraced).
    if (privKind === 'snp') vm.kvm.pre_fault_allowed = true;
    if (privKind) {
      this.priv = new PrivateMemoryModel(vm, privKind, scan.priv, ev.nxHugeLeaves > 0);
      for (const s of this.slots) {
        const r = this.priv.addSlot(s.slot, s.gpa, s.size, s.backing, s.hva);
        if (r < 0) throw new Error(`the model could not create slot ${s.slot} with its guest_memfd (${r})`);
      }
    }
    for (const s of privKind ? [] : this.slots) {
      const o = s.hva !== undefined ? { host_backing: s.backing, userspace_addr: s.hva } : { host_backing: s.backing };
      vm.add_slot(s.slot, s.gpa, s.size, o);
      // SMM's address space sees the same memory (as VMMs map guest RAM into both)
      if (scan.sawSmm) vm.add_slot((1 << 16) | s.slot, s.gpa, s.size, o);
    }
    this.vm = vm;
    // The model's changes, collected from its own tracepoints while an operation runs.
    const changes = this.modelChanges;
    this.unsubscribe = trace.subscribe((e: TraceEvent) => {
      const f = e.fields;
      if (e.name === 'kvm_mmu_set_spte') {
        const n = halves(f['spte']);
        const level = Number(f['level']);
        const gfnRaw = Number(f['gfn']);
        changes.push({ asId: 0, gfn: gfnRaw - (gfnRaw % (SPAN[level] ?? 1)), level, oldLo: 0, oldHi: 0, newLo: n.lo, newHi: n.hi, set: true });
        return;
      }
      if (e.name !== 'kvm_tdp_mmu_spte_changed') return;
      const o = halves(f['old_spte']);
      const n = halves(f['new_spte']);
      const level = Number(f['level']);
      const gfnRaw = Number(f['gfn']);
      changes.push({ asId: Number(f['as_id']), gfn: gfnRaw - (gfnRaw % (SPAN[level] ?? 1)), level, oldLo: o.lo, oldHi: o.hi, newLo: n.lo, newHi: n.hi });
    });
  }

  /** Replay one operation and compare; false once enough mismatches were found. */
  run(ep: Episode): boolean {
    const vm = this.vm;
    const result = this.result;
    if (!vm || result.mismatches.length >= this.maxMismatches) return false;
    const format = this.scan.evidence.format;
    this.modelChanges.length = 0;
    if (ep.genBump > 0) this.bumpGeneration(ep.genBump);
    if (ep.kind === 'fault' && ep.errLo === -1 && installsUnaccessedLeaf(ep, format)) ep.kind = 'prefault';
    if (ep.kind === 'other' && ep.changes.length > 0 && ep.changes.every((c) => c.set || isWriteProtect(c))) ep.kind = 'dirty_log';
    result.operations[ep.kind] = (result.operations[ep.kind] ?? 0) + 1;
    try {
      switch (ep.kind) {
        case 'fault': {
          const id = Math.min(ep.vcpu, 63);
          const vcpu = vm.vcpu(id);
          this.followSmm(id, ep);
          vm.enter(vcpu);
          if (this.priv && ep.requests.length !== 0) this.beforePrivateFault(ep);
          else if (this.priv && ep.fromPageFault && ep.changes.length === 0) this.beforeUnmappedFault(ep);
          if (ep.errLo === -1) {
            // a fault known only from kvm_mmu_spte_requested: a guest data write to a not-present GPA
            // (EPT qualification: write, GVA valid and translated; #NPF: W with GUEST_FINAL)
            ep.errLo = format === 'ept' ? 0x182 : 0x2;
            ep.errHi = format === 'ept' ? 0 : 0x1;
          }
          // VMX traces the exit qualification, SVM the #NPF error code: each goes to its own handler.
          if (format === 'ept') handle_ept_violation(vcpu, ep.gpa, ep.errLo >>> 0);
          else npf_interception(vcpu, ep.gpa, ep.errLo >>> 0, (ep.errHi & ~PFERR_SYNTHETIC_HI) >>> 0);
          result.faultsReplayed++;
          break;
        }
        case 'mmio': {
          const gpa = ep.gpa >= 0 ? ep.gpa : ep.requests.length ? ep.requests[0]! * 4096 : -1;
          if (gpa < 0 || format !== 'ept') {
            result.notReplayed += ep.changes.filter((c) => !c.set).length;
            return true;
          }
          const vcpu = vm.vcpu(Math.min(ep.vcpu, 63));
          vm.enter(vcpu);
          handle_ept_misconfig(vcpu, gpa);
          result.faultsReplayed++;
          break;
        }
        case 'prefault': {
          // KVM_PRE_FAULT_MEMORY (a prefetch: no accessed bit): each page it requested, in order
          if (this.priv && ep.requests.length !== 0) this.beforePrivateFault(ep);
          for (const gfn of ep.requests) {
            vm.pre_fault_memory(Math.min(ep.vcpu, 63), gfn * 4096, 4096);
            result.faultsReplayed++;
          }
          break;
        }
        case 'dirty_log':
          this.replayDirtyLog(ep);
          break;
        case 'zap_all':
          vm.zap_all_fast();
          break;
        case 'age':
          // clear_young and clear_flush_young change the same SPTEs (they differ in the TLB flush only)
          vm.notifier_age(ep.hvaStart, ep.hvaEnd, 'clear_young');
          break;
        case 'unmap': {
          // An invalidation of part of a 2M page in a THP-backed slot is the host splitting or migrating
          // out of that THP: afterwards the host maps the range with 4K pages (the faults that follow show it).
          const partial = ep.hvaStart % 0x20_0000 !== 0 || ep.hvaEnd % 0x20_0000 !== 0;
          vm.notifier_invalidate(ep.hvaStart, ep.hvaEnd, partial ? (slot, first, last) => {
            for (let i = first; i <= last; i++) slot.host_split_2m.add(Math.floor(i / 512));
          } : undefined);
          break;
        }
        case 'zap': {
          // In a VM with private memory a zap outside faults is taken for the conversion that caused it.
          const converted: Array<{ gfn: number; level: number }> = [];
          for (const c of ep.changes) {
            if (c.set || (c.oldLo & 0x800) === 0) continue;
            if (c.level === 1 || (c.oldLo & 0x80) !== 0) {
              if (this.priv) converted.push({ gfn: c.gfn, level: c.level });
              else vm.zap_gfn_range(c.gfn, c.gfn + (SPAN[c.level] ?? 1));
              continue;
            }
            // A table's parent SPTE removed outside a fault: NX huge page recovery of that table (the
            // only path that zaps one table); the model recovers the same page if it tracked it.
            for (const sp of vm.kvm.arch.possible_nx_huge_pages) {
              if (sp.gfn === c.gfn && (sp.role & 0xf) === c.level - 1) {
                kvm_tdp_mmu_zap_possible_nx_huge_page(vm.kvm, sp);
                break;
              }
            }
          }
          if (converted.length !== 0) this.convertZapped(converted);
          break;
        }
        case 'other':
          result.notReplayed += ep.changes.filter((c) => !c.set).length;
          for (const c of ep.changes) this.touchedOutside.set(key(c.asId, c.gfn, c.level), c.line!);
          return true;
      }
    } catch (e) {
      report(result, { line: ep.line, asId: 0, gfn: Math.floor(ep.gpa / 4096).toString(16), level: 0, reason: `the model failed replaying this ${ep.kind}: ${(e as Error).message}` });
      return result.mismatches.length < this.maxMismatches;
    }
    result.modelChanges += this.modelChanges.length;
    compareEpisode(ep, this.modelChanges, result, this.touchedOutside);
    return result.mismatches.length < this.maxMismatches;
  }

  private beforePrivateFault(ep: Episode): void {
    const before = this.priv!.conversions;
    this.priv!.beforeFault({ gpa: ep.gpa, errHi: ep.errHi, fromPageFault: ep.fromPageFault, gfn: ep.requests[0]!, level: ep.reqLevel || 1 });
    this.countConversions(before);
  }

  private beforeUnmappedFault(ep: Episode): void {
    const before = this.priv!.conversions;
    this.priv!.beforeUnmappedFault(ep);
    this.countConversions(before);
  }

  private convertZapped(leaves: Array<{ gfn: number; level: number }>): void {
    const before = this.priv!.conversions;
    this.priv!.convertZapped(leaves);
    this.countConversions(before);
  }

  private countConversions(before: number): void {
    const n = this.priv!.conversions - before;
    if (n > 0) this.result.operations['attributes'] = (this.result.operations['attributes'] ?? 0) + n;
  }

  private dummySlots = 0;
  /** vCPUs the replay put in SMM. */
  private readonly inSmm = new Set<number>();

  /**
   * No event says a vCPU entered or left SMM; the address space of a fault's changes does (SMM faults map
   * into address space 1). A fault that changes nothing leaves the vCPU where it was.
   */
  private followSmm(id: number, ep: Episode): void {
    let smm = false;
    let normal = false;
    for (const c of ep.changes) {
      if (c.set) continue;
      if (c.asId === 1) smm = true;
      else normal = true;
    }
    if (smm === normal) return;
    if (smm !== this.inSmm.has(id)) {
      this.vm!.smm(id, smm);
      if (smm) this.inSmm.add(id);
      else this.inSmm.delete(id);
    }
  }
  /** Slots whose dirty logging the replay turned on; whether manual protection (CLEAR_DIRTY_LOG) is on. */
  private readonly logging = new Set<number>();
  private manualProtect = false;

  /**
   * A run outside faults that write-protects leaves (after eager splits, if any). When it covers every
   * writable page the model maps in a slot whose logging is off, it is enabling dirty logging. Otherwise
   * it write-protects part of a slot: KVM_GET_DIRTY_LOG (the pages written since) or KVM_CLEAR_DIRTY_LOG
   * (the pages cleared). Both are replayed as a clear with a bitmap of the pages the capture
   * write-protected, under manual protection with INITIALLY_SET (which makes enabling change nothing, as
   * such captures show).
   */
  private replayDirtyLog(ep: Episode): void {
    const vm = this.vm!;
    const pages = new Map<number, number[]>(); // slot -> slot-relative pages write-protected
    const slotOf = (gfn: number) => this.slots.find((x) => gfn * 4096 >= x.gpa && gfn * 4096 < x.gpa + x.size);
    for (const c of ep.changes) {
      if (c.set || !isWriteProtect(c)) continue;
      const sl = slotOf(c.gfn);
      if (!sl) continue;
      let l = pages.get(sl.slot);
      if (!l) pages.set(sl.slot, (l = []));
      const span = SPAN[c.level] ?? 1;
      for (let g = c.gfn; g < c.gfn + span && g * 4096 < sl.gpa + sl.size; g++) l.push(g - sl.gpa / 4096);
    }
    // an eager split with no write-protection after it still names its slot
    for (const g of ep.splits) {
      const sl = slotOf(g);
      if (sl && !pages.has(sl.slot)) pages.set(sl.slot, []);
    }
    const root = vm.current_root(0);
    for (const [id, list] of pages) {
      const sl = this.slots.find((x) => x.slot === id)!;
      // only a slot whose logging is off needs the count (a walk of the model's SPTEs)
      let writable = 0;
      if (root && !this.logging.has(id) && list.length !== 0) {
        for (const [gfn, level] of vm.leaves(root)) {
          if (gfn * 4096 < sl.gpa || gfn * 4096 >= sl.gpa + sl.size) continue;
          const v = vm.read_spte(gfn, level, root);
          if (v && (v.lo & 2) !== 0) writable += SPAN[level] ?? 1;
        }
      }
      if (!this.logging.has(id) && (list.length === 0 || list.length >= writable)) {
        vm.set_dirty_logging(id, true);
        this.logging.add(id);
        continue;
      }
      if (!this.manualProtect) {
        vm.enable_manual_dirty_log_protect(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
        this.manualProtect = true;
      }
      if (!this.logging.has(id)) {
        vm.set_dirty_logging(id, true);
        this.logging.add(id);
      }
      if (list.length === 0) continue;
      const npages = sl.size / 4096;
      let lo = Infinity;
      let hi = -1;
      for (const p of list) {
        lo = Math.min(lo, p);
        hi = Math.max(hi, p);
      }
      const first = lo - (lo % 64);
      const num = Math.min(npages - first, Math.ceil((hi + 1 - first) / 64) * 64);
      const bitmap = new Uint32Array(Math.ceil(num / 64) * 2);
      for (const p of list) bitmap[(p - first) >>> 5]! |= 1 << ((p - first) & 31);
      vm.clear_dirty_log(id, first, num, bitmap);
    }
  }

  /**
   * Memslot updates the capture does not show, seen through the MMIO generation: the model makes as many
   * (4 KiB slots far above guest RAM, which no capture event touches) until its generation moved as much.
   */
  private bumpGeneration(by: number): void {
    const vm = this.vm!;
    const gen0 = vm.kvm.mmio_gen(0);
    const capture = this.modelChanges.length;
    while (((vm.kvm.mmio_gen(0) - gen0) >>> 0) < by && this.dummySlots < 256) {
      const r = vm.add_slot(DUMMY_SLOT + this.dummySlots, DUMMY_GPA + this.dummySlots * 4096, 4096);
      this.dummySlots++;
      if (r < 0) break;
    }
    // a slot creation changes no SPTE; drop anything it traced so that only the operation is compared
    this.modelChanges.length = capture;
  }

  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.vm?.destroy();
  }

  finish(): ModelCheckResult {
    const r = this.result;
    r.mismatches.sort((a, b) => a.line - b.line);
    if (r.mismatches.length > this.maxMismatches) r.mismatches.length = this.maxMismatches;
    r.ok = r.mismatches.length === 0;
    return r;
  }
}

/** A present leaf losing its writable bit (bit 1 in EPT and in NPT) and nothing else but A/D. */
function isWriteProtect(c: SpteChange): boolean {
  if ((c.oldLo & 0x800) === 0 || (c.newLo & 0x800) === 0 || (c.oldLo & 2) === 0 || (c.newLo & 2) !== 0) return false;
  if (c.level !== 1 && (c.newLo & 0x80) === 0) return false;
  return ((c.oldLo ^ c.newLo) & ~0x362) === 0 && c.oldHi === c.newHi;
}

function installsUnaccessedLeaf(ep: Episode, format: 'ept' | 'npt'): boolean {
  const accessed = format === 'ept' ? 0x100 : 0x20;
  for (const c of ep.changes) {
    if (c.set || (c.newLo & 0x800) === 0) continue;
    if (c.level === 1 || (c.newLo & 0x80) !== 0) return (c.newLo & accessed) === 0;
  }
  return false;
}

function report(result: ModelCheckResult, m: Mismatch): void {
  result.ok = false;
  result.mismatches.push(m);
}

/** Both sides' changes of one operation, per (as, gfn, level) in order; the earliest disagreement wins. */
function compareEpisode(ep: Episode, model: SpteChange[], result: ModelCheckResult, touchedOutside: Map<string, number>): void {
  const realBy = new Map<string, SpteChange[]>();
  for (const c of ep.changes) {
    const k = key(c.asId, c.gfn, c.level, c.set);
    let l = realBy.get(k);
    if (!l) realBy.set(k, (l = []));
    l.push(c);
  }
  const modelBy = new Map<string, SpteChange[]>();
  for (const c of model) {
    const k = key(c.asId, c.gfn, c.level, c.set);
    let l = modelBy.get(k);
    if (!l) modelBy.set(k, (l = []));
    l.push(c);
  }
  let best: Mismatch | undefined;
  const consider = (m: Mismatch) => {
    if (!best || m.line < best.line) best = m;
  };
  const side = (c: SpteChange) => ({ old: hexHalves(c.oldLo, c.oldHi), new: hexHalves(c.newLo, c.newHi), text: changeText(c) });
  const note = (k: string) => (touchedOutside.has(k) ? ` (the capture also changed it at line ${touchedOutside.get(k)} outside anything the model replays)` : '');
  for (const [k, reals] of realBy) {
    const models = modelBy.get(k) ?? [];
    for (let i = 0; i < reals.length; i++) {
      const r = reals[i]!;
      const m = models[i];
      if (!m) {
        consider({ line: r.line!, asId: r.asId, gfn: r.gfn.toString(16), level: r.level, reason: `the capture changes this SPTE in this ${ep.kind} (line ${ep.line}), the model does not${note(k)}`, real: side(r) });
        break;
      }
      result.compared++;
      const oldOk = sameShape(r.oldLo, r.oldHi, m.oldLo, m.oldHi);
      const newOk = sameShape(r.newLo, r.newHi, m.newLo, m.newHi);
      if (!oldOk || !newOk) {
        consider({ line: r.line!, asId: r.asId, gfn: r.gfn.toString(16), level: r.level, reason: `${r.set ? 'kvm_mmu_set_spte spte' : newOk ? 'old_spte' : 'new_spte'} differs (pfn bits 51:12 not compared)${note(k)}`, real: side(r), model: side(m) });
        break;
      }
    }
    if (models.length > reals.length) {
      const m = models[reals.length]!;
      const last = reals[reals.length - 1]!;
      consider({ line: last.line!, asId: m.asId, gfn: m.gfn.toString(16), level: m.level, reason: `the model changes this SPTE once more in this ${ep.kind} (line ${ep.line})`, model: side(m) });
    }
  }
  for (const [k, models] of modelBy) {
    if (realBy.has(k)) continue;
    const m = models[0]!;
    consider({ line: ep.line, asId: m.asId, gfn: m.gfn.toString(16), level: m.level, reason: `the model changes this SPTE in this ${ep.kind}, the capture does not${note(k)}`, model: side(m) });
  }
  if (best) report(result, best);
}

function halves(v: unknown): { lo: number; hi: number } {
  if (typeof v === 'number') return { lo: v >>> 0, hi: Math.floor(v / TWO32) >>> 0 };
  const h = String(v).replace(/^0x/, '').padStart(16, '0');
  return { lo: parseInt(h.slice(8), 16) >>> 0, hi: parseInt(h.slice(0, 8), 16) >>> 0 };
}
