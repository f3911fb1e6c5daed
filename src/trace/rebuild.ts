/**
 * Rebuilding MMU state from a capture, event by event (fed from `TraceParser`'s `onEvent`):
 *
 * - SPTEs per address space and root, per (gfn, level), from `kvm_tdp_mmu_spte_changed` (which carries the
 *   old value, so every change is also checked against what was rebuilt) and `kvm_mmu_set_spte`. When a
 *   page-table SPTE is replaced or zapped its subtree disappears.
 * - Shadow pages from `kvm_mmu_get_page` / `kvm_mmu_prepare_zap_page` (and sync/unsync).
 * - Faults per gfn and vCPU (`kvm_page_fault`), guest walks (`kvm_mmu_pagetable_walk` and friends).
 * - Detectors: fault loops, spurious `fast_page_fault` storms, a huge leaf replacing present 4K leaves.
 *
 * What the tracepoints cannot tell, and how the rebuild decides (documented so a reader can judge a result):
 * - No event names the root an SPTE belongs to. Installs go to the newest valid root of the address space;
 *   a removal goes to the root whose rebuilt value equals the event's `old_spte` (detached subtrees first,
 *   then invalid roots, then valid roots newest first). Roots become invalid at `kvm_mmu_zap_all_fast` and
 *   at `kvm_mmu_prepare_zap_page` of the page a root was bound to. A root state is created on the first
 *   install after that and bound to the latest root-looking shadow page (direct, gfn 0, level >= 4, or
 *   root_count > 0) that `kvm_mmu_get_page` reported.
 * - `kvm_mmu_set_spte` has no address space and no old value: it is skipped when an address space's newest
 *   root already holds that exact value (the TDP MMU traces `kvm_tdp_mmu_spte_changed` first), else it is
 *   applied to address space 0. The shadow MMU traces no SPTE removals, so its rebuilt state only grows.
 * - A capture that starts mid-run references SPTEs it never saw installed: an unknown old value is not a
 *   warning; only a known rebuilt value that differs from `old_spte` is.
 */
import { EVENT_BY_NAME, hexHalves, spText, type EventSchema } from '../engine/tracepoints/index';
import type { ParsedEvent } from './event';
import { FaultLoops } from './fault_loops';
import { hexOfHalves } from './hex_text';
import { NumTable } from './num_table';
import { isPresentKind, KIND_FROZEN, KIND_LEAF, KIND_MMIO, KIND_NAMES, KIND_NONLEAF, KIND_NONPRESENT, spteKindCode, type SpteKind } from './spte_kind';

function schema(name: string): EventSchema {
  const s = EVENT_BY_NAME.get(name);
  if (!s) throw new Error(`no schema for ${name}`);
  return s;
}

const S_CHANGED = schema('kvm_tdp_mmu_spte_changed');
const S_SET = schema('kvm_mmu_set_spte');
const S_GET = schema('kvm_mmu_get_page');
const S_ZAP = schema('kvm_mmu_prepare_zap_page');
const S_SYNC = schema('kvm_mmu_sync_page');
const S_UNSYNC = schema('kvm_mmu_unsync_page');
const S_ZAP_ALL = schema('kvm_mmu_zap_all_fast');
const S_PF = schema('kvm_page_fault');
const S_FAST = schema('fast_page_fault');
const S_WALK = schema('kvm_mmu_pagetable_walk');
const S_ELEM = schema('kvm_mmu_paging_element');
const S_WERR = schema('kvm_mmu_walker_error');
const S_ACC = schema('kvm_mmu_set_accessed_bit');
const S_DIRTY = schema('kvm_mmu_set_dirty_bit');

const C = S_CHANGED.index;
const SS = S_SET.index;
const G = S_GET.index;
const PF = S_PF.index;
const FP = S_FAST.index;
const PF_VCPU = PF['vcpu_id']!;
const PF_ADDR = PF['fault_address']!;

const TWO32 = 0x1_0000_0000;

/** Distinct faulting pages tracked before single-fault pages are forgotten. */
const MAX_FAULT_PAGES = 1 << 20;
/**
 * Distinct (page, vCPU) fault entries kept before pages that faulted once are forgotten. Smaller than
 * MAX_FAULT_PAGES on purpose: past a few hundred thousand pages the entry arrays outgrow the caches and
 * every new entry touches fresh memory, which made a replay's fault bookkeeping grow faster than the
 * capture (a loop repeats within a few events; a page that faulted once 256K faults ago is not one).
 */
const MAX_FAULT_ENTRIES = 1 << 18;

/** Entries per level span: a level-L entry covers 512^(L-1) gfns. */
const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 * 512 * 512 * 512, 512 ** 5];

function alignDown(gfn: number, level: number): number {
  // level 1 (most events) needs no floating-point remainder
  if (level <= 1) return gfn;
  const span = SPAN[level] ?? 1;
  return gfn - (gfn % span);
}

export interface DetectorOptions {
  /** Faults on the same (vCPU, page) with no SPTE change in between before a fault loop is reported. */
  faultLoop?: number;
  /** Consecutive spurious fast_page_faults on the same (vCPU, page) before a storm is reported. */
  spuriousStorm?: number;
}

export type DetectorName = 'fault_loop' | 'spurious_fast_page_fault_storm' | 'huge_leaf_over_4k_leaves';

export interface Finding {
  detector: DetectorName;
  /** First line of the pattern. */
  line: number;
  /** Last line that extended it. */
  lastLine: number;
  message: string;
  vcpu?: number;
  asId?: number;
  gfn?: string;
  level?: number;
  count: number;
}

export interface RebuiltSpte {
  asId: number;
  root: number;
  gfn: string;
  level: number;
  spte: string;
  kind: SpteKind;
  /** Line of the event that set it. */
  line: number;
}

export interface RootInfo {
  id: number;
  asId: number;
  invalid: boolean;
  /** Line of the first SPTE installed in it. */
  line: number;
  /** The root shadow page it was bound to, when `kvm_mmu_get_page` showed one. */
  sp?: { gfn: string; role: string; text: string };
  sptes: number;
}

export interface ShadowPageInfo {
  gfn: string;
  /** Role word as far as the text shows it (see roleMask). */
  role: string;
  roleMask: string;
  level: number;
  direct: boolean;
  unsync: boolean;
  rootCount: number;
  gen: number;
  /** Line of the first `kvm_mmu_get_page` that created it. */
  line: number;
  text: string;
}

export interface WalkInfo {
  line: number;
  addr: string;
  pferr: number;
  elements: Array<{ level: number; pte: string }>;
  accessed: string[];
  dirty: string[];
  error?: number;
}

export interface RebuildSummary {
  sptes: RebuiltSpte[];
  sptesTotal: number;
  roots: RootInfo[];
  shadowPages: ShadowPageInfo[];
  shadowPagesTotal: number;
  shadowPageCounts: { created: number; reused: number; zapped: number; live: number };
  faults: { total: number; byVcpu: Record<string, number>; top: Array<{ vcpu: number; gfn: string; count: number }> };
  fastPageFaults: { total: number; spurious: number; fixed: number };
  walks: { total: number; errors: number; last: WalkInfo[] };
  detectors: Finding[];
}

interface Root {
  id: number;
  asId: number;
  invalid: boolean;
  line: number;
  sp: SpState | null;
  /** levels[l]: gfn -> slot */
  levels: NumTable[];
}

interface SpState {
  gfn: number;
  gfnHi: number;
  gfnLo: number;
  role: number;
  roleMask: number;
  rootCount: number;
  unsync: boolean;
  gen: number;
  line: number;
  rootLike: boolean;
  bound: boolean;
}

interface LoopState {
  vcpu: number;
  gfn: number;
  /** Faults in the current run without an SPTE change. */
  count: number;
  /** All faults on this (vCPU, page). */
  total: number;
  firstLine: number;
  lastLine: number;
  /** Line of the last fault (or spurious fast_page_fault) counted. */
  epoch: number;
  changed: boolean;
  finding: Finding | null;
}

export class Rebuilder {
  // SPTE value pool
  private lo = new Uint32Array(1024);
  private hi = new Uint32Array(1024);
  private lineOf = new Float64Array(1024);
  private free: number[] = [];
  private used = 0;

  private readonly roots: Root[] = [];
  /** Roots per address space id (as_id is a u8). */
  private readonly rootsByAs: Array<Root[] | undefined> = [];
  /** Entries removed with a replaced table, waiting for their own (child) zap events: as -> level*2^? key */
  private readonly detached = new Map<number, NumTable>();
  private detachedSize = 0;

  private readonly sps = new Map<number, Map<number, SpState[]>>(); // role -> gfn -> pages
  private spCount = { created: 0, reused: 0, zapped: 0 };
  private pendingRootSps: SpState[] = [];

  /**
   * When an SPTE last changed is the line of the event that changed it: `lineOf` of its slot, or for an
   * entry that was removed, `removedAt[level]` (line numbers grow with the capture, so they order events).
   */
  private readonly removedAt: NumTable[] = [];
  private readonly loops = new FaultLoops(MAX_FAULT_ENTRIES);
  /** pid -> the fault-loop entry of the task's last fault (shadow paging; see onPageFault). */
  private readonly ctxByTask = new Map<number, number>();
  private readonly storms = new Map<number, LoopState>();
  private readonly findings: Finding[] = [];
  private readonly faultLoopThreshold: number;
  private readonly stormThreshold: number;

  private faultsTotal = 0;
  private readonly faultsByVcpu = new Map<number, number>();
  private fast = { total: 0, spurious: 0, fixed: 0 };

  private walksTotal = 0;
  private walkErrors = 0;
  private readonly walks: WalkInfo[] = [];
  private curWalk: WalkInfo | null = null;

  /** Warning sink (line, message); the replay passes the parser's. */
  constructor(
    private readonly warn: (line: number, message: string | (() => string)) => void = () => {},
    opts: DetectorOptions = {},
  ) {
    this.faultLoopThreshold = opts.faultLoop ?? 8;
    this.stormThreshold = opts.spuriousStorm ?? 16;
    for (let l = 0; l <= 6; l++) this.removedAt.push(new NumTable());
  }

  // ---- pool ------------------------------------------------------------------------------------
  private alloc(lo: number, hi: number, line: number): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.used++;
      if (slot >= this.lo.length) {
        const n = this.lo.length * 2;
        const nlo = new Uint32Array(n);
        nlo.set(this.lo);
        const nhi = new Uint32Array(n);
        nhi.set(this.hi);
        const nl = new Float64Array(n);
        nl.set(this.lineOf);
        this.lo = nlo;
        this.hi = nhi;
        this.lineOf = nl;
      }
    }
    this.lo[slot] = lo;
    this.hi[slot] = hi;
    this.lineOf[slot] = line;
    return slot;
  }

  // ---- roots -----------------------------------------------------------------------------------
  private newRoot(asId: number, line: number): Root {
    const r: Root = { id: this.roots.length, asId, invalid: false, line, sp: null, levels: [] };
    for (let l = 0; l <= 6; l++) r.levels.push(new NumTable());
    const sp = this.pendingRootSps.pop();
    if (sp) {
      sp.bound = true;
      r.sp = sp;
    }
    this.pendingRootSps.length = 0;
    this.roots.push(r);
    let list = this.rootsByAs[asId];
    if (!list) this.rootsByAs[asId] = list = [];
    list.push(r);
    return r;
  }

  /** Newest valid root of asId, created on demand. */
  private installRoot(asId: number, line: number): Root {
    const list = this.rootsByAs[asId & 0xff];
    if (list) {
      for (let i = list.length - 1; i >= 0; i--) if (!list[i]!.invalid) return list[i]!;
    }
    return this.newRoot(asId, line);
  }

  private getSlot(r: Root, level: number, gfn: number): number {
    return r.levels[level]!.get(gfn);
  }

  private setEntry(r: Root, level: number, gfn: number, slot: number, lo: number, hi: number, line: number): void {
    if (slot >= 0) {
      this.lo[slot] = lo;
      this.hi[slot] = hi;
      this.lineOf[slot] = line;
      return;
    }
    r.levels[level]!.set(gfn, this.alloc(lo, hi, line));
  }

  private deleteEntry(r: Root, level: number, gfn: number): void {
    const s = r.levels[level]!.delete(gfn);
    if (s >= 0) this.free.push(s);
  }

  /**
   * Child gfns present under the level-`level` entry at gfn. Probing the 512 slots of the child table (only
   * when a table is replaced or a huge leaf lands) is cheaper overall than indexing every install.
   */
  private childGfns(r: Root, level: number, gfn: number): number[] {
    const m = r.levels[level - 1]!;
    const out: number[] = [];
    if (m.size === 0) return out;
    const step = SPAN[level - 1]!;
    if (m.size < 512) {
      m.keysInRange(gfn, gfn + SPAN[level]!, out);
      return out;
    }
    for (let i = 0; i < 512; i++) if (m.has(gfn + i * step)) out.push(gfn + i * step);
    return out;
  }

  /** Present 4K leaves under the level-`level` entry at gfn. */
  private countLeaves(r: Root, level: number, gfn: number): number {
    if (level <= 1) return 0;
    let n = 0;
    for (const g of this.childGfns(r, level, gfn)) {
      const s = r.levels[level - 1]!.get(g);
      const k = spteKindCode(this.lo[s]!, this.hi[s]!, level - 1);
      if (level - 1 === 1) {
        if (k === KIND_LEAF) n++;
      } else if (k === KIND_NONLEAF) n += this.countLeaves(r, level - 1, g);
    }
    return n;
  }

  /** Remove everything under the level-`level` entry at gfn, remembering it as detached. */
  private removeSubtree(r: Root, level: number, gfn: number): void {
    if (level <= 1) return;
    const kids = this.childGfns(r, level, gfn);
    if (kids.length === 0) return;
    let det = this.detached.get(r.asId);
    if (!det) this.detached.set(r.asId, (det = new NumTable()));
    for (const g of kids) {
      const s = r.levels[level - 1]!.get(g);
      const lo = this.lo[s]!;
      const hi = this.hi[s]!;
      if (spteKindCode(lo, hi, level - 1) === KIND_NONLEAF) this.removeSubtree(r, level - 1, g);
      if (this.detachedSize > 1 << 20) {
        this.detached.clear();
        this.detachedSize = 0;
        det = new NumTable();
        this.detached.set(r.asId, det);
      }
      det.set(this.detKey(level - 1, g), this.alloc(lo, hi, 0));
      this.detachedSize++;
      this.deleteEntry(r, level - 1, g);
    }
  }

  private detKey(level: number, gfn: number): number {
    // gfn < 2^45 for any 57-bit GPA, so level fits above it within 2^53
    return gfn * 8 + level;
  }

  private levelsUsed = 0;
  /** Removals before this line were forgotten (see apply). */
  private historyCut = 0;
  private lastChangedSeq = -2;
  private lastChangedGfn = -1;
  private lastChangedLevel = 0;
  private lastChangedLo = 0;
  private lastChangedHi = 0;

  /** Latest change epoch of any SPTE level covering gfn (4K). */
  private latestChange(gfn: number): number {
    let e = this.historyCut;
    const used = this.levelsUsed;
    for (let l = 1; l <= 5; l++) {
      if (!(used & (1 << l))) continue;
      const g = alignDown(gfn, l);
      const v = this.removedAt[l]!.get(g);
      if (v > e) e = v;
      for (let a = 0; a < this.rootsByAs.length; a++) {
        const list = this.rootsByAs[a];
        if (!list) continue;
        for (let i = 0; i < list.length; i++) {
          const slot = list[i]!.levels[l]!.get(g);
          if (slot >= 0 && this.lineOf[slot]! > e) e = this.lineOf[slot]!;
        }
      }
    }
    return e;
  }

  private lastCtxPid = -2;
  /** Fault-loop entry of the task lastCtxPid, -1 for none. */
  private lastCtx = -1;
  private lastFaultVcpu = -1;
  private lastFaultVcpuCount = 0;

  private flushVcpuCount(): void {
    if (this.lastFaultVcpu >= 0 && this.lastFaultVcpuCount > 0) {
      this.faultsByVcpu.set(this.lastFaultVcpu, (this.faultsByVcpu.get(this.lastFaultVcpu) ?? 0) + this.lastFaultVcpuCount);
    }
    this.lastFaultVcpuCount = 0;
  }

  /** An SPTE changed in the task's context: its pending fault is not a loop. */
  private taskChanged(ev: ParsedEvent): void {
    if (this.ctxByTask.size === 0) return;
    const pid = ev.pid;
    const ctx = pid === this.lastCtxPid ? this.lastCtx : (this.ctxByTask.get(pid) ?? -1);
    if (ctx >= 0) this.loops.changed[ctx] = 1;
  }

  /**
   * Apply old -> new at (asId, gfn, level) in root r (old as the capture states it; known is the rebuilt
   * value or -1).
   */
  private apply(r: Root, level: number, gfn: number, knownSlot: number, oldLo: number, oldHi: number, newLo: number, newHi: number, line: number): void {
    const newKind = spteKindCode(newLo, newHi, level);
    let prevLo = oldLo;
    let prevHi = oldHi;
    if (knownSlot >= 0) {
      prevLo = this.lo[knownSlot]!;
      prevHi = this.hi[knownSlot]!;
    }
    const prevKind = spteKindCode(prevLo, prevHi, level);
    if (newKind === KIND_LEAF && level >= 2) {
      const n = this.countLeaves(r, level, gfn);
      if (n > 0) {
        this.findings.push({
          detector: 'huge_leaf_over_4k_leaves',
          line,
          lastLine: line,
          message: `level-${level} leaf at gfn ${gfn.toString(16)} (as ${r.asId}, root ${r.id}) replaced ${n} present 4K leaves`,
          asId: r.asId,
          gfn: gfn.toString(16),
          level,
          count: n,
        });
      }
    }
    if (prevKind === KIND_NONLEAF) {
      const samePt = newKind === KIND_NONLEAF && (prevLo & 0xffff_f000) === (newLo & 0xffff_f000) && (prevHi & 0xfffff) === (newHi & 0xfffff);
      if (!samePt) this.removeSubtree(r, level, gfn);
    }
    this.levelsUsed |= 1 << level;
    if (newKind === KIND_NONPRESENT) {
      this.deleteEntry(r, level, gfn);
      const removed = this.removedAt[level]!;
      if (removed.size >= MAX_FAULT_PAGES * 2) {
        // forget old removals; faults from before this line then count as having seen a change
        for (const m of this.removedAt) m.clear();
        this.historyCut = line;
      }
      removed.set(gfn, line);
    } else this.setEntry(r, level, gfn, knownSlot, newLo, newHi, line);
  }

  private onChanged(ev: ParsedEvent): void {
    if (!this.sawTdp) {
      this.sawTdp = true;
      this.ctxByTask.clear();
      this.lastCtx = -1;
      this.lastCtxPid = -2;
    }
    const asId = ev.lo[C['as_id']!]!;
    const level = ev.lo[C['level']!]!;
    if (level < 1 || level > 5) {
      this.warn(ev.line, `kvm_tdp_mmu_spte_changed: level ${level} out of range`);
      return;
    }
    const gfn = alignDown(ev.hi[C['gfn']!]! * TWO32 + ev.lo[C['gfn']!]!, level);
    const oLo = ev.lo[C['old_spte']!]!;
    const oHi = ev.hi[C['old_spte']!]!;
    const nLo = ev.lo[C['new_spte']!]!;
    const nHi = ev.hi[C['new_spte']!]!;
    const newKind = spteKindCode(nLo, nHi, level);
    const oldKind = spteKindCode(oLo, oHi, level);
    this.taskChanged(ev);
    this.lastChangedSeq = ev.seq;
    this.lastChangedGfn = gfn;
    this.lastChangedLevel = level;
    this.lastChangedLo = nLo;
    this.lastChangedHi = nHi;
    const list = this.rootsByAs[asId & 0xff];
    if (newKind === KIND_NONPRESENT || newKind === KIND_FROZEN) {
      // a removal: detached entries first, then invalid roots, then valid roots newest first
      const det = this.detached.get(asId);
      if (det) {
        const k = this.detKey(level, gfn);
        const s = det.get(k);
        if (s >= 0 && this.lo[s] === oLo && this.hi[s] === oHi) {
          det.delete(k);
          this.free.push(s);
          this.detachedSize--;
          return;
        }
      }
      if (list) {
        for (let pass = 0; pass < 2; pass++) {
          for (let i = pass === 0 ? 0 : list.length - 1; pass === 0 ? i < list.length : i >= 0; pass === 0 ? i++ : i--) {
            const r = list[i]!;
            if (r.invalid !== (pass === 0)) continue;
            const s = this.getSlot(r, level, gfn);
            if (s >= 0 && this.lo[s] === oLo && this.hi[s] === oHi) {
              this.apply(r, level, gfn, s, oLo, oHi, nLo, nHi, ev.line);
              return;
            }
          }
        }
      }
      if (!isPresentKind(oldKind) && oldKind !== KIND_MMIO) return;
      const r = this.installRoot(asId, ev.line);
      const s = this.getSlot(r, level, gfn);
      if (s >= 0) this.mismatch(ev, r, level, gfn, s, oLo, oHi);
      this.apply(r, level, gfn, s, oLo, oHi, nLo, nHi, ev.line);
      return;
    }
    const r = this.installRoot(asId, ev.line);
    const s = this.getSlot(r, level, gfn);
    if (s >= 0 && (this.lo[s] !== oLo || this.hi[s] !== oHi)) this.mismatch(ev, r, level, gfn, s, oLo, oHi);
    this.apply(r, level, gfn, s, oLo, oHi, nLo, nHi, ev.line);
  }

  private mismatch(ev: ParsedEvent, r: Root, level: number, gfn: number, s: number, oLo: number, oHi: number): void {
    this.warn(
      ev.line,
      () =>
        `${ev.schema.name}: old_spte ${hexHalves(oLo, oHi)} at as ${r.asId} gfn ${gfn.toString(16)} level ${level} differs from the rebuilt ${hexHalves(this.lo[s]!, this.hi[s]!)} (set at line ${this.lineOf[s]})`,
    );
  }

  private onSetSpte(ev: ParsedEvent): void {
    const level = ev.lo[SS['level']!]!;
    if (level < 1 || level > 5) {
      this.warn(ev.line, `kvm_mmu_set_spte: level ${level} out of range`);
      return;
    }
    const gfn = alignDown(ev.hi[SS['gfn']!]! * TWO32 + ev.lo[SS['gfn']!]!, level);
    const nLo = ev.lo[SS['spte']!]!;
    const nHi = ev.hi[SS['spte']!]!;
    // the TDP MMU traces kvm_tdp_mmu_spte_changed for the same install just before
    if (this.lastChangedSeq === ev.seq - 1 && this.lastChangedGfn === gfn && this.lastChangedLevel === level && this.lastChangedLo === nLo && this.lastChangedHi === nHi) return;
    this.taskChanged(ev);
    for (let a = 0; a < this.rootsByAs.length; a++) {
      const list = this.rootsByAs[a];
      if (!list) continue;
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i]!;
        if (r.invalid) continue;
        const s = this.getSlot(r, level, gfn);
        if (s >= 0 && this.lo[s] === nLo && this.hi[s] === nHi) return;
        break;
      }
    }
    const r = this.installRoot(0, ev.line);
    const s = this.getSlot(r, level, gfn);
    this.apply(r, level, gfn, s, s >= 0 ? this.lo[s]! : 0, s >= 0 ? this.hi[s]! : 0, nLo, nHi, ev.line);
  }

  // ---- shadow pages ------------------------------------------------------------------------------
  // Keyed like the kernel's hash (gfn + role word), but a key can hold several pages: TDP roots and their
  // children repeat (gfn, role) across roots, and an invalidated page keeps its identity until zapped.
  private spList(role: number, gfn: number, create: boolean): SpState[] | undefined {
    let map = this.sps.get(role);
    if (!map) {
      if (!create) return undefined;
      this.sps.set(role, (map = new Map()));
    }
    let list = map.get(gfn);
    if (!list && create) map.set(gfn, (list = []));
    return list;
  }

  private onGetPage(ev: ParsedEvent): void {
    const role = ev.lo[G['role']!]!;
    const gfn = ev.hi[G['gfn']!]! * TWO32 + ev.lo[G['gfn']!]!;
    const gen = ev.lo[G['mmu_valid_gen']!]!;
    const created = ev.has & (1 << G['created']!) ? ev.lo[G['created']!] === 1 : true;
    const list = this.spList(role, gfn, true)!;
    let sp: SpState | undefined;
    if (!created) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.gen === gen) sp = list[i];
      sp ??= list[list.length - 1];
    }
    if (!sp) {
      if (created) this.spCount.created++;
      else this.spCount.reused++;
      sp = {
        gfn,
        gfnLo: ev.lo[G['gfn']!]!,
        gfnHi: ev.hi[G['gfn']!]!,
        role,
        roleMask: ev.roleMask,
        rootCount: ev.lo[G['root_count']!]!,
        unsync: ev.lo[G['unsync']!] === 1,
        gen,
        line: ev.line,
        rootLike: false,
        bound: false,
      };
      list.push(sp);
    } else {
      this.spCount.reused++;
      sp.rootCount = ev.lo[G['root_count']!]!;
      sp.unsync = ev.lo[G['unsync']!] === 1;
    }
    const level = role & 0xf;
    const direct = (role & 0x80) !== 0;
    if ((direct && gfn === 0 && level >= 4 && created) || sp.rootCount > 0) {
      sp.rootLike = true;
      if (!sp.bound) this.pendingRootSps.push(sp);
    }
  }

  /** Remove and return the page an event names: same gen first, then the oldest; the role as printed or without `invalid`. */
  private takeSp(ev: ParsedEvent): SpState | undefined {
    const role = ev.lo[G['role']!]!;
    const gfn = ev.hi[G['gfn']!]! * TWO32 + ev.lo[G['gfn']!]!;
    const gen = ev.has & (1 << G['mmu_valid_gen']!) ? ev.lo[G['mmu_valid_gen']!]! : -1;
    for (const r of role & 0x800 ? [role, role & ~0x800] : [role]) {
      const list = this.spList(r >>> 0, gfn, false);
      if (!list || list.length === 0) continue;
      let i = list.findIndex((sp) => sp.gen === gen);
      if (i < 0) i = 0;
      const [sp] = list.splice(i, 1);
      if (list.length === 0) this.sps.get(r >>> 0)!.delete(gfn);
      return sp;
    }
    return undefined;
  }

  private onZapPage(ev: ParsedEvent): void {
    const sp = this.takeSp(ev);
    this.spCount.zapped++;
    if (sp?.bound) {
      for (const r of this.roots) if (r.sp === sp) r.invalid = true;
    }
  }

  private onSyncPage(ev: ParsedEvent, unsync: boolean): void {
    const role = ev.lo[G['role']!]!;
    const gfn = ev.hi[G['gfn']!]! * TWO32 + ev.lo[G['gfn']!]!;
    const list = this.spList(role, gfn, false);
    if (list && list.length) list[list.length - 1]!.unsync = unsync;
  }

  // ---- faults and detectors -----------------------------------------------------------------------
  private onPageFault(ev: ParsedEvent): void {
    const vcpu = ev.has & (1 << PF_VCPU) ? ev.lo[PF_VCPU]! : ev.pid >= 0 ? ev.pid : 0;
    const page = Math.floor((ev.hi[PF_ADDR]! * TWO32 + ev.lo[PF_ADDR]!) / 4096);
    this.faultsTotal++;
    if (vcpu !== this.lastFaultVcpu) {
      this.flushVcpuCount();
      this.lastFaultVcpu = vcpu;
    }
    this.lastFaultVcpuCount++;
    const L = this.loops;
    let st = L.find(page, vcpu);
    // the change history is only needed for a repeat fault
    if (st >= 0 && L.changed[st] === 0 && this.latestChange(page) <= L.epoch[st]!) {
      L.count[st]++;
      L.lastLine[st] = ev.line;
    } else if (st < 0) {
      if (L.full(page)) {
        // keep memory bounded on long captures (see FaultLoops.evict); entry indices change
        L.evict();
        this.ctxByTask.clear();
        this.lastCtx = -1;
        this.lastCtxPid = -2;
      }
      st = L.add(page, vcpu, ev.line);
    } else {
      L.count[st] = 1;
      L.firstLine[st] = ev.line;
      L.lastLine[st] = ev.line;
      L.finding[st] = -1;
    }
    L.total[st]++;
    L.epoch[st] = ev.line;
    L.changed[st] = 0;
    // Shadow paging faults on a GVA while SPTE events name gfns: there, the SPTE events that follow a fault
    // in the same task tell whether it changed anything. TDP captures need no such link (gfn == GPA page).
    if (!this.sawTdp) {
      const pid = ev.pid;
      if (pid !== this.lastCtxPid || this.lastCtx !== st) {
        this.ctxByTask.set(pid, st);
        this.lastCtxPid = pid;
        this.lastCtx = st;
      }
    }
    const count = L.count[st]!;
    if (count >= this.faultLoopThreshold) {
      let fi = L.finding[st]!;
      if (fi < 0) {
        fi = L.finding[st] = this.findings.length;
        this.findings.push({ detector: 'fault_loop', line: L.firstLine[st]!, lastLine: L.lastLine[st]!, message: '', vcpu, gfn: page.toString(16), count });
      }
      const f = this.findings[fi]!;
      f.count = count;
      f.lastLine = L.lastLine[st]!;
    }
  }

  /** A kvm_tdp_mmu_spte_changed was seen: fault addresses are GPAs, so gfn history alone shows progress. */
  private sawTdp = false;

  /**
   * fast_page_fault fixes an SPTE with a cmpxchg and no `kvm_tdp_mmu_spte_changed`, so its old -> new is
   * applied here. The event has no level or address space: the entry is the one covering the faulting page
   * whose rebuilt value is `old_spte` (with shadow paging the address is a GVA and nothing matches).
   */
  private applyFastFix(ev: ParsedEvent, page: number): void {
    const oLo = ev.lo[FP['old_spte']!]!;
    const oHi = ev.hi[FP['old_spte']!]!;
    for (let a = 0; a < this.rootsByAs.length; a++) {
      const list = this.rootsByAs[a];
      if (!list) continue;
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i]!;
        for (let level = 1; level <= 5; level++) {
          const gfn = alignDown(page, level);
          const s = this.getSlot(r, level, gfn);
          if (s >= 0 && this.lo[s] === oLo && this.hi[s] === oHi) {
            this.apply(r, level, gfn, s, oLo, oHi, ev.lo[FP['new_spte']!]!, ev.hi[FP['new_spte']!]!, ev.line);
            return;
          }
        }
      }
    }
  }

  private onFastPageFault(ev: ParsedEvent): void {
    this.fast.total++;
    const vcpu = ev.lo[FP['vcpu_id']!]! | 0;
    const page = Math.floor((ev.hi[FP['cr2_or_gpa']!]! * TWO32 + ev.lo[FP['cr2_or_gpa']!]!) / 4096);
    const key = page * 1024 + (vcpu & 1023);
    const spurious = ev.derived.spurious === 1;
    const changedSpte = ev.lo[FP['old_spte']!] !== ev.lo[FP['new_spte']!] || ev.hi[FP['old_spte']!] !== ev.hi[FP['new_spte']!];
    if (ev.derived.fixed === 1) {
      this.fast.fixed++;
      if (changedSpte) {
        this.taskChanged(ev);
        this.applyFastFix(ev, page);
      }
    }
    let st = this.storms.get(key);
    if (!spurious) {
      if (st) st.count = 0;
      return;
    }
    this.fast.spurious++;
    const last = this.latestChange(page);
    if (st && st.count > 0 && last <= st.epoch) {
      st.count++;
      st.lastLine = ev.line;
    } else {
      if (!st && this.storms.size >= MAX_FAULT_PAGES) {
        for (const [k, v] of this.storms) if (v.count <= 1 && !v.finding) this.storms.delete(k);
      }
      if (!st) this.storms.set(key, (st = { vcpu, gfn: page, count: 1, total: 0, firstLine: ev.line, lastLine: ev.line, epoch: 0, changed: false, finding: null }));
      st.count = 1;
      st.firstLine = ev.line;
      st.lastLine = ev.line;
      st.finding = null;
    }
    st.epoch = ev.line;
    if (st.count >= this.stormThreshold) {
      if (!st.finding) {
        st.finding = { detector: 'spurious_fast_page_fault_storm', line: st.firstLine, lastLine: st.lastLine, message: '', vcpu, gfn: page.toString(16), count: st.count };
        this.findings.push(st.finding);
      }
      st.finding.count = st.count;
      st.finding.lastLine = st.lastLine;
    }
  }

  // ---- guest walks ----------------------------------------------------------------------------------
  private onWalkEvent(ev: ParsedEvent): void {
    const s = ev.schema;
    if (s === S_WALK) {
      this.walksTotal++;
      const w: WalkInfo = { line: ev.line, addr: hexHalves(ev.lo[0]!, ev.hi[0]!), pferr: ev.lo[1]!, elements: [], accessed: [], dirty: [] };
      this.curWalk = w;
      this.walks.push(w);
      if (this.walks.length > 20) this.walks.shift();
      return;
    }
    const w = this.curWalk;
    if (!w) return;
    if (s === S_ELEM) w.elements.push({ level: ev.lo[1]!, pte: hexHalves(ev.lo[0]!, ev.hi[0]!) });
    else if (s === S_ACC) w.accessed.push(hexHalves(ev.lo[0]!, ev.hi[0]!));
    else if (s === S_DIRTY) w.dirty.push(hexHalves(ev.lo[0]!, ev.hi[0]!));
    else if (s === S_WERR) {
      w.error = ev.lo[0]!;
      this.walkErrors++;
      this.curWalk = null;
    }
  }

  /** Feed one parsed event (use as the parser's `onEvent`). */
  onEvent(ev: ParsedEvent): void {
    const s = ev.schema;
    if (s === S_CHANGED) this.onChanged(ev);
    else if (s === S_SET) this.onSetSpte(ev);
    else if (s === S_PF) this.onPageFault(ev);
    else if (s === S_FAST) this.onFastPageFault(ev);
    else if (s === S_GET) this.onGetPage(ev);
    else if (s === S_ZAP) this.onZapPage(ev);
    else if (s === S_SYNC) this.onSyncPage(ev, false);
    else if (s === S_UNSYNC) this.onSyncPage(ev, true);
    else if (s === S_ZAP_ALL) {
      for (const r of this.roots) r.invalid = true;
    } else if (s === S_WALK || s === S_ELEM || s === S_WERR || s === S_ACC || s === S_DIRTY) this.onWalkEvent(ev);
  }

  /** Rebuilt SPTE value at (asId, gfn, level) in the newest root of asId (tests, DAP). */
  spteAt(asId: number, gfn: number, level: number): { lo: number; hi: number; kind: SpteKind } | undefined {
    const list = this.rootsByAs[asId & 0xff];
    if (!list || list.length === 0) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const r = list[i]!;
      const s = this.getSlot(r, level, alignDown(gfn, level));
      if (s >= 0) return { lo: this.lo[s]!, hi: this.hi[s]!, kind: KIND_NAMES[spteKindCode(this.lo[s]!, this.hi[s]!, level)]! };
      if (!r.invalid) return undefined;
    }
    return undefined;
  }

  /**
   * The rebuilt SPTEs (at most maxSptes), roots in creation order, levels top down, gfns ascending: the list
   * `summary()` returns. A replay asks for it only when its result's `sptes` is read.
   */
  spteList(maxSptes = 100_000): RebuiltSpte[] {
    const sptes: RebuiltSpte[] = [];
    for (const r of this.roots) {
      if (sptes.length >= maxSptes) break;
      for (let level = 5; level >= 1; level--) {
        const m = r.levels[level]!;
        if (sptes.length >= maxSptes || m.size === 0) continue;
        const gfns = m.keyArray().sort();
        for (let k = 0; k < gfns.length && sptes.length < maxSptes; k++) {
          const gfn = gfns[k]!;
          const s = m.get(gfn);
          const lo = this.lo[s]!;
          const hi = this.hi[s]!;
          // small integers (`| 0`) keep the objects free of boxed doubles
          const line = this.lineOf[s]!;
          sptes.push({
            asId: r.asId,
            root: r.id,
            gfn: hexHalves(gfn >>> 0, (gfn / TWO32) >>> 0),
            level,
            spte: hexOfHalves(lo, hi),
            kind: KIND_NAMES[spteKindCode(lo, hi, level)]!,
            line: line <= 0x3fff_ffff ? line | 0 : line,
          });
        }
      }
    }
    return sptes;
  }

  summary(maxSptes = 100_000, maxShadowPages = 10_000): RebuildSummary {
    for (const f of this.findings) {
      if (f.detector === 'fault_loop') f.message = `vCPU ${f.vcpu} faulted ${f.count} times on gfn ${f.gfn} with no SPTE change in between`;
      else if (f.detector === 'spurious_fast_page_fault_storm')
        f.message = `vCPU ${f.vcpu}: ${f.count} spurious fast_page_fault in a row on gfn ${f.gfn} (nothing to fix: the SPTE already allowed the access)`;
    }
    const sptes = this.spteList(maxSptes);
    let total = 0;
    const rootInfo: RootInfo[] = [];
    for (const r of this.roots) {
      let n = 0;
      for (let level = 5; level >= 1; level--) n += r.levels[level]!.size;
      total += n;
      const info: RootInfo = { id: r.id, asId: r.asId, invalid: r.invalid, line: r.line, sptes: n };
      if (r.sp) info.sp = { gfn: r.sp.gfn.toString(16), role: '0x' + r.sp.role.toString(16), text: spText(r.sp.gen, r.sp.gfnLo, r.sp.gfnHi, r.sp.role, r.sp.rootCount, r.sp.unsync) };
      rootInfo.push(info);
    }
    const shadowPages: ShadowPageInfo[] = [];
    let live = 0;
    for (const map of this.sps.values()) {
      for (const sp of [...map.values()].flat()) {
        live++;
        if (shadowPages.length >= maxShadowPages) continue;
        shadowPages.push({
          gfn: sp.gfn.toString(16),
          role: '0x' + (sp.role >>> 0).toString(16),
          roleMask: '0x' + (sp.roleMask >>> 0).toString(16),
          level: sp.role & 0xf,
          direct: (sp.role & 0x80) !== 0,
          unsync: sp.unsync,
          rootCount: sp.rootCount,
          gen: sp.gen,
          line: sp.line,
          text: spText(sp.gen, sp.gfnLo, sp.gfnHi, sp.role, sp.rootCount, sp.unsync),
        });
      }
    }
    shadowPages.sort((a, b) => a.line - b.line);
    this.flushVcpuCount();
    this.lastFaultVcpu = -1;
    const byVcpu: Record<string, number> = {};
    for (const [v, n] of [...this.faultsByVcpu].sort((a, b) => a[0] - b[0])) byVcpu[String(v)] = n;
    const top = this.loops.top(20).map((t) => ({ vcpu: t.vcpu, gfn: t.page.toString(16), count: t.total }));
    return {
      sptes,
      sptesTotal: total,
      roots: rootInfo,
      shadowPages,
      shadowPagesTotal: live,
      shadowPageCounts: { ...this.spCount, live },
      faults: { total: this.faultsTotal, byVcpu, top },
      fastPageFaults: { ...this.fast },
      walks: { total: this.walksTotal, errors: this.walkErrors, last: this.walks.slice() },
      detectors: this.findings.slice().sort((a, b) => a.line - b.line),
    };
  }
}

