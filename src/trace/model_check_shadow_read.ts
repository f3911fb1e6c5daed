/**
 * Reading a shadow-MMU capture for the model check (./model_check_shadow.ts): the events that matter, as
 * compact records, grouped per task into operations the model can be driven with.
 *
 * Operations:
 * - `fault`: a guest page-table walk (`kvm_mmu_pagetable_walk` and its `kvm_mmu_paging_element` /
 *   A/D / `kvm_mmu_walker_error` lines) with what the same task traced after it: the non-root shadow
 *   pages it got, unsync marks, the SPTE request and the SPTEs set. A walk with nothing after it is a
 *   translation (the emulator's gva_to_gpa), not a fault.
 * - `direct`: under TDP with the legacy MMU (tdp_mmu=N) there is no walk; a `kvm_mmu_spte_requested`
 *   (and the direct shadow pages got just before it) is the fault.
 * - `entry`: the root shadow pages (`kvm_mmu_get_page` of a root) and `kvm_mmu_sync_page`s a task traces
 *   outside a fault: vcpu_enter_guest's kvm_mmu_reload and MMU sync after a CR3 load. A run ends at any
 *   other task's event, so that syncs keep their place relative to other vCPUs' unsync marks.
 */
import { EVENT_BY_NAME, SP_TEXT_ROLE_MASK } from '../engine/tracepoints/index';
import type { ParsedEvent } from './event';
import { TraceParser } from './parser';
import { parseStream, type StreamOptions } from './stream';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel_version';

export const enum K {
  WALK,
  PE,
  ACC,
  DIRTY,
  WERR,
  GET,
  SYNC,
  UNSYNC,
  REQ,
  SET,
  /** A TDP MMU change: the capture is not a shadow-MMU one. */
  TDP,
  /** kvm_page_fault: a = GPA, lo/hi = error code (VMX: exit qualification; SVM: #NPF error code). */
  PF,
  /** fast_page_fault: a = address, b = error code low half, c = spurious | fixed << 1; old SPTE in olo/ohi, new in lo/hi. */
  FAST,
}

/** One event of the capture, kept for replay and comparison. */
export interface Rec {
  k: K;
  line: number;
  task: number;
  /** Main value: addr (WALK), pte low half (PE), gpa (ACC/DIRTY), gfn (GET/SYNC/UNSYNC/REQ/SET). */
  a: number;
  /** pferr (WALK/WERR), level (PE/REQ/SET), role word (GET/SYNC/UNSYNC). */
  b: number;
  /** Role bits the text showed (GET/SYNC/UNSYNC); bit 0 unsync, bit 1 created (GET); 1 = error pfn (REQ). */
  c: number;
  /** SPTE (SET) or pte (PE) halves; addr halves (WALK). */
  lo: number;
  hi: number;
  olo: number;
  ohi: number;
  text: string;
}

export interface Op {
  kind: 'fault' | 'direct' | 'entry';
  vcpu: number;
  /** First line of the operation. */
  line: number;
  walk?: Rec;
  /** The kvm_page_fault that started a direct operation. */
  pf?: Rec;
  /** The walk's paging elements, top level first. */
  pes: Rec[];
  /** Its A/D updates (gpa records). */
  ad: Rec[];
  /** Every record to compare with the model, in capture order (the walk itself excluded). */
  recs: Rec[];
  /** SPTEs set after the leaf's (pte prefetch): not compared, counted. */
  prefetched: number;
  sawReq: boolean;
  leafSet: boolean;
  ended: boolean;
}

export interface ShadowCapture {
  ops: Op[];
  vcpus: number;
  /** SPTEs set outside any operation the model can run (counted as not replayed). */
  stray: number;
  setSptes: number;
  tdpChanges: number;
  sawWalk: boolean;
  /** `kvm_exit` ISA votes: VMX vs SVM. */
  svm: boolean;
}

const S = (n: string) => EVENT_BY_NAME.get(n)!;
const SCH = new Map([
  [S('kvm_mmu_pagetable_walk'), K.WALK],
  [S('kvm_mmu_paging_element'), K.PE],
  [S('kvm_mmu_set_accessed_bit'), K.ACC],
  [S('kvm_mmu_set_dirty_bit'), K.DIRTY],
  [S('kvm_mmu_walker_error'), K.WERR],
  [S('kvm_mmu_get_page'), K.GET],
  [S('kvm_mmu_sync_page'), K.SYNC],
  [S('kvm_mmu_unsync_page'), K.UNSYNC],
  [S('kvm_mmu_spte_requested'), K.REQ],
  [S('kvm_mmu_set_spte'), K.SET],
  [S('kvm_tdp_mmu_spte_changed'), K.TDP],
  [S('kvm_page_fault'), K.PF],
  [S('fast_page_fault'), K.FAST],
]);
const S_EXIT = S('kvm_exit');
const TWO32 = 0x1_0000_0000;

function rec(ev: ParsedEvent, k: K, task: number): Rec {
  const s = ev.schema;
  const f = (name: string) => s.index[name]!;
  const num = (name: string) => ev.hi[f(name)]! * TWO32 + ev.lo[f(name)]!;
  const r: Rec = { k, line: ev.line, task, a: 0, b: 0, c: 0, lo: 0, hi: 0, olo: 0, ohi: 0, text: ev.text };
  switch (k) {
    case K.WALK:
      r.lo = ev.lo[f('addr')]!;
      r.hi = ev.hi[f('addr')]!;
      r.a = num('addr');
      r.b = ev.lo[f('pferr')]!;
      break;
    case K.PE:
      r.lo = ev.lo[f('pte')]!;
      r.hi = ev.hi[f('pte')]!;
      r.a = r.lo;
      r.b = ev.lo[f('level')]!;
      break;
    case K.ACC:
    case K.DIRTY:
      r.a = num('gpa');
      break;
    case K.WERR:
      r.b = ev.lo[f('pferr')]!;
      break;
    case K.GET:
    case K.SYNC:
    case K.UNSYNC:
      r.a = num('gfn');
      r.b = ev.lo[f('role')]!;
      r.c = ((ev.roleMask || SP_TEXT_ROLE_MASK) >>> 0) * 4 + (ev.lo[f('unsync')]! ? 1 : 0) + (k === K.GET && ev.lo[f('created')]! ? 2 : 0);
      break;
    case K.REQ:
      r.a = num('gfn');
      r.b = ev.lo[f('level')]!;
      // an error pfn (bits 63:52) says there is no memory behind the gfn
      r.c = (ev.hi[f('pfn')]! & 0xfff0_0000) !== 0 ? 1 : 0;
      break;
    case K.SET:
      r.a = num('gfn');
      r.b = ev.lo[f('level')]!;
      r.lo = ev.lo[f('spte')]!;
      r.hi = ev.hi[f('spte')]!;
      break;
    case K.PF:
      r.a = num('fault_address');
      r.lo = ev.lo[f('error_code')]!;
      r.hi = ev.hi[f('error_code')]!;
      break;
    case K.FAST:
      r.a = num('cr2_or_gpa');
      r.b = ev.lo[f('error_code')]!;
      r.c = (ev.derived.spurious === 1 ? 1 : 0) | (ev.derived.fixed === 1 ? 2 : 0);
      r.olo = ev.lo[f('old_spte')]!;
      r.ohi = ev.hi[f('old_spte')]!;
      r.lo = ev.lo[f('new_spte')]!;
      r.hi = ev.hi[f('new_spte')]!;
      break;
  }
  return r;
}

/** A root shadow page: the top of a 4/5-level guest's tables, or one of the four PAE-root pages (level 2). */
export function isRootSp(role: number, gfn: number, top: number): boolean {
  const level = role & 0xf;
  if ((role & 0x80) !== 0) return gfn === 0 && level >= 4 && (top === 0 || level === top);
  if (level >= 4) return top === 0 || level === top;
  return level === 2 && top <= 3;
}

/** Read a capture and cut it into operations (see the header). */
export async function readShadowCapture(source: AsyncIterable<Uint8Array | string>, opts: StreamOptions & { kernel?: KernelVersion }): Promise<ShadowCapture> {
  const cap: ShadowCapture = { ops: [], vcpus: 1, stray: 0, setSptes: 0, tdpChanges: 0, sawWalk: false, svm: false };
  let vmx = 0;
  let svm = 0;
  const vcpuOfPid = new Map<number, number>();
  const named = new Set<number>();
  interface TaskState {
    cur: Op | null;
    entry: Op | null;
    /** Top level of this task's last walk (0: none yet). */
    top: number;
  }
  const tasks = new Map<number, TaskState>();
  let lastTask = -1;
  const vcpuOf = (ev: ParsedEvent): number => {
    let v = vcpuOfPid.get(ev.pid);
    if (v !== undefined) return v;
    const m = /^CPU (\d+)\/KVM$/.exec(ev.comm);
    if (m) v = Number(m[1]);
    else {
      v = 0;
      while (named.has(v)) v++;
    }
    named.add(v);
    vcpuOfPid.set(ev.pid, v);
    cap.vcpus = Math.max(cap.vcpus, v + 1);
    return v;
  };
  const newOp = (kind: Op['kind'], r: Rec, vcpu: number): Op => {
    const op: Op = { kind, vcpu, line: r.line, pes: [], ad: [], recs: [], prefetched: 0, sawReq: false, leafSet: false, ended: false };
    cap.ops.push(op);
    return op;
  };
  const onEvent = (ev: ParsedEvent): void => {
    if (ev.schema === S_EXIT) {
      const isa = ev.lo[S_EXIT.index['isa']!]!;
      if (isa === 1) vmx++;
      else if (isa === 2) svm++;
      return;
    }
    const k = SCH.get(ev.schema);
    if (k === undefined) return;
    if (k === K.TDP) {
      cap.tdpChanges++;
      return;
    }
    const task = ev.pid;
    let st = tasks.get(task);
    if (!st) tasks.set(task, (st = { cur: null, entry: null, top: 0 }));
    // an entry run ends when another task traces something in between
    if (task !== lastTask) for (const t of tasks.values()) t.entry = null;
    lastTask = task;
    const r = rec(ev, k, task);
    const vcpu = vcpuOf(ev);
    const cur = st.cur;
    const inWalk = cur !== null && cur.kind === 'fault' && !cur.ended && !cur.sawReq && cur.recs.every((x) => x.k !== K.GET && x.k !== K.SYNC && x.k !== K.UNSYNC);
    switch (k) {
      case K.WALK:
        cap.sawWalk = true;
        st.entry = null;
        if (cur !== null && cur.kind === 'direct' && cur.pf !== undefined && cur.recs.length === 0) {
          // the #PF intercept's kvm_page_fault, then its walk: one fault (with the full error code)
          cur.kind = 'fault';
          cur.walk = r;
          return;
        }
        st.cur = newOp('fault', r, vcpu);
        st.cur.walk = r;
        return;
      case K.PE:
        if (!inWalk) break;
        if (cur.pes.length > 0 && r.b === cur.pes[0]!.b) {
          // the walk restarted (its A/D update lost a race with a guest store): the last attempt counts
          cur.recs = cur.recs.filter((x) => x.k !== K.PE && x.k !== K.ACC && x.k !== K.DIRTY);
          cur.pes = [];
          cur.ad = [];
        }
        if (cur.pes.length === 0) st.top = r.b;
        cur.pes.push(r);
        cur.recs.push(r);
        return;
      case K.ACC:
      case K.DIRTY:
        if (!inWalk) break;
        cur.ad.push(r);
        cur.recs.push(r);
        return;
      case K.WERR:
        if (!inWalk) break;
        cur.recs.push(r);
        cur.ended = true;
        return;
      case K.GET: {
        // indirect pages come before the request, direct ones (a huge guest page in small host pages) after
        const open = cur !== null && !cur.ended;
        if (open && !isRootSp(r.b, r.a, cur.kind === 'fault' ? st.top : 0)) {
          cur.recs.push(r);
          return;
        }
        if (isRootSp(r.b, r.a, st.top)) {
          if (cur && !cur.ended) cur.ended = true;
          st.cur = null;
          if (!st.entry) st.entry = newOp('entry', r, vcpu);
          st.entry.recs.push(r);
          return;
        }
        if (cur === null || cur.ended) {
          // a direct shadow page outside a walk: the start of a TDP fault (tdp_mmu=N), whose request follows
          if ((r.b & 0x80) !== 0 && !cap.sawWalk) {
            st.entry = null;
            st.cur = newOp('direct', r, vcpu);
            st.cur.recs.push(r);
            return;
          }
        }
        break;
      }
      case K.SYNC:
        if (cur !== null && !cur.ended && cur.kind === 'fault') {
          cur.recs.push(r);
          return;
        }
        st.cur = null;
        if (!st.entry) st.entry = newOp('entry', r, vcpu);
        st.entry.recs.push(r);
        return;
      case K.UNSYNC:
        if (cur !== null && !cur.ended) {
          cur.recs.push(r);
          return;
        }
        break;
      case K.REQ:
        if (cur !== null && !cur.ended && !cur.sawReq) {
          cur.sawReq = true;
          cur.recs.push(r);
          return;
        }
        if (!cap.sawWalk && (cur === null || cur.kind !== 'direct' || cur.ended || cur.sawReq)) {
          // TDP with the legacy MMU and no kvm_page_fault: the request is the fault
          st.entry = null;
          st.cur = newOp('direct', r, vcpu);
          st.cur.sawReq = true;
          st.cur.recs.push(r);
          return;
        }
        break;
      case K.PF:
        // a TDP fault (tdp_mmu=N), or a shadow #PF whose walk follows (see K.WALK)
        st.entry = null;
        st.cur = newOp('direct', r, vcpu);
        st.cur.pf = r;
        return;
      case K.FAST:
        if (cap.sawWalk) break;
        if (cur === null || cur.kind !== 'direct' || cur.ended || cur.sawReq || cur.recs.length > 0) {
          // the fast path fixed it without a traced kvm_page_fault before: the event is the fault
          st.entry = null;
          st.cur = newOp('direct', r, vcpu);
        }
        st.cur!.recs.push(r);
        // a fixed or spurious fault ends here; otherwise the slow path (a request) follows
        if (r.c !== 0) st.cur!.ended = true;
        return;
      case K.SET:
        cap.setSptes++;
        if (cur !== null && cur.sawReq) {
          if (cur.leafSet) cur.prefetched++;
          else {
            cur.leafSet = true;
            cur.ended = true;
            cur.recs.push(r);
          }
          return;
        }
        break;
    }
    // an SPTE set outside any operation the model runs (e.g. eager page splitting) is not compared
    if (k === K.SET) cap.stray++;
  };
  const parser = new TraceParser({ kernel: opts.kernel ?? DEFAULT_KERNEL, onEvent });
  const so: StreamOptions = {};
  if (opts.onProgress) so.onProgress = opts.onProgress;
  if (opts.signal) so.signal = opts.signal;
  await parseStream(source, parser, so);
  cap.svm = svm > vmx;
  return cap;
}
