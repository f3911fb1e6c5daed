/**
 * "Why?" for a replayed trace: a capture has no struct kvm_page_fault and no RET_PF_* value, only the
 * tracepoints the fault emitted, so the chain is what those events prove, and where they cannot tell
 * two causes apart (no SPTE change: a stale fault or a lost cmpxchg), it names both candidates.
 */
import { LEVEL, type Decision, type WhyEvent, type WhyFault } from './why';

/** The same answer as a live fault's, built from captured events. */
export type WhyTraceFault = WhyFault;

const SPAN = [0, 1, 512, 512 * 512, 512 * 512 * 512, 512 ** 4];

/** The last fault of the capture up to the current event (or vCPU `vcpu`'s), explained from its events. */
/** Events a fault emits after kvm_page_fault: one of these next means the fault is still being replayed. */
const IN_FAULT = new Set(['fast_page_fault', 'kvm_mmu_spte_requested', 'kvm_mmu_get_page', 'kvm_tdp_mmu_spte_changed', 'kvm_mmu_set_spte', 'mark_mmio_spte', 'handle_mmio_page_fault', 'kvm_mmu_pagetable_walk', 'kvm_mmu_paging_element', 'kvm_mmu_walker_error', 'kvm_mmu_set_accessed_bit', 'kvm_mmu_set_dirty_bit']);

export function explainTraceFault(all: readonly WhyEvent[], vcpu?: number, next?: WhyEvent): WhyTraceFault | undefined {
  let start = -1;
  for (let i = all.length - 1; i >= 0; i--) {
    const e = all[i]!;
    if ((e.name === 'kvm_page_fault' || e.name === 'check_mmio_spte') && (vcpu === undefined || e.vcpu === vcpu)) {
      start = i;
      break;
    }
  }
  if (start < 0) return undefined;
  const first = all[start]!;
  const V = first.vcpu;
  const evs = all.slice(start).filter((e) => e.vcpu === V || e.vcpu === -1);
  const chain: Decision[] = [];
  const say = (key: string, value: string) => chain.push({ key, value });
  const ev = (name: string) => evs.find((e) => e.name === name);
  const addr = /address (0x[0-9a-f]+)/.exec(first.text)?.[1];
  const gpa = addr ? Number(BigInt(addr)) : NaN;
  let gfn = Number.isFinite(gpa) ? Math.floor(gpa / 4096) : -1;
  let path = 'slow';

  if (first.name === 'check_mmio_spte') {
    path = 'mmio';
    const valid = /valid 1/.test(first.text);
    say('check_mmio_spte', valid ? `the MMIO SPTE's generation matches (${first.text})` : `the MMIO SPTE's generation is stale (${first.text}): the fault goes on to the slow path`);
    const h = ev('handle_mmio_page_fault');
    const g = h ? /gfn ([0-9a-f]+)/.exec(h.text)?.[1] : undefined;
    if (g) gfn = Number.parseInt(g, 16);
    if (valid) {
      say('handle_mmio_page_fault', `RET_PF_EMULATE via the MMIO SPTE${h ? ` (${h.text})` : ''}: emulated without the slow path`);
      return done('RET_PF_EMULATE');
    }
  } else {
    say('kvm_page_fault', `vCPU ${V}: ${first.text} (the error code as the vendor's exit handler printed it)`);
  }

  const walkErr = ev('kvm_mmu_walker_error');
  if (walkErr) {
    path = 'guest-fault';
    say('FNAME(walk_addr)', `the guest's page tables do not map the address (${walkErr.text}): the #PF is injected into the guest`);
    return done('RET_PF_RETRY');
  }

  const fast = ev('fast_page_fault');
  if (fast) {
    if (/fixed 1/.test(fast.text)) {
      path = 'fast';
      say('fast_page_fault', `RET_PF_FIXED: fixed locklessly (${fast.text})`);
      return done('RET_PF_FIXED');
    }
    if (/spurious 1/.test(fast.text)) {
      path = 'fast';
      say('fast_page_fault', `RET_PF_SPURIOUS: the SPTE already allowed the access (${fast.text})`);
      return done('RET_PF_SPURIOUS');
    }
    say('fast_page_fault', `RET_PF_INVALID: nothing to fix locklessly (${fast.text}); the slow path takes over`);
  } else {
    say('page_fault_can_be_fast', 'no fast_page_fault event: the fault did not qualify (not present with A/D bits, not a write, a private/shared mismatch, or RSVD)');
  }

  const req = ev('kvm_mmu_spte_requested');
  const mmio = ev('mark_mmio_spte');
  if (mmio) {
    path = 'mmio';
    say('kvm_handle_noslot_fault', 'no memslot covers the gfn: MMIO, with KVM_PFN_NOSLOT');
    say('mark_mmio_spte', `${mmio.text}: the next access takes handle_mmio_page_fault`);
    return done('RET_PF_EMULATE');
  }
  if (!req) {
    say('kvm_mmu_faultin_pfn', 'no kvm_mmu_spte_requested: the fault stopped before the map. The capture cannot tell which of RET_PF_RETRY (an invalidation in progress, a slot being deleted, hwpoison), RET_PF_EMULATE (a write to a read-only slot or a write-tracked gfn) or a KVM_EXIT_MEMORY_FAULT (private/shared mismatch)');
    return done('unknown');
  }
  const level = Number(/level (\d)/.exec(req.text)?.[1] ?? 0);
  const rg = /gfn ([0-9a-f]+)/.exec(req.text)?.[1];
  if (rg) gfn = Number.parseInt(rg, 16);
  say('kvm_mmu_hugepage_adjust', `goal_level ${LEVEL[level] ?? level} (${req.name}: ${req.text})`);
  const base = level > 0 ? gfn - (gfn % (SPAN[level] ?? 1)) : gfn;
  const set = evs.find((e) => {
    if (e.name !== 'kvm_tdp_mmu_spte_changed' && e.name !== 'kvm_mmu_set_spte') return false;
    const g = /gfn ([0-9a-f]+)/.exec(e.text)?.[1];
    const l = Number(/level (\d)/.exec(e.text)?.[1] ?? -1);
    return g !== undefined && Number.parseInt(g, 16) === base && l === level;
  });
  if (set) {
    say(set.name === 'kvm_mmu_set_spte' ? 'mmu_set_spte' : 'kvm_tdp_mmu_map', `RET_PF_FIXED: the ${LEVEL[level] ?? level} leaf was installed (${set.name}: ${set.text})`);
    return done('RET_PF_FIXED');
  }
  say('is_page_fault_stale', 'no SPTE change after the request: RET_PF_RETRY when an mmu_notifier invalidation raced with the fault (mmu_invalidate_retry_gfn) or a lockless update lost its cmpxchg, or RET_PF_SPURIOUS when the SPTE already held that value; the capture cannot tell these apart');
  return done('RET_PF_RETRY or RET_PF_SPURIOUS');

  function done(r: string): WhyTraceFault {
    const inFlight = next !== undefined && IN_FAULT.has(next.name) && (next.vcpu === V || next.vcpu === -1);
    const ret = inFlight ? 'in progress' : r;
    const summary = inFlight
      ? `the fault is still being replayed (next: ${next!.name}): the decisions so far`
      : `${ret} (from the captured events of vCPU ${V}'s last fault)`;
    return { vcpu: V, gpa: Number.isFinite(gpa) ? '0x' + gpa.toString(16) : '0x' + (gfn * 4096).toString(16), gfn, ret_pf: ret, outcome: '', inFlight, path, chain, summary };
  }
}
