/**
 * "Why?" for the current fault: the chain of decisions the kernel took, each named by the function that
 * took it, with the inputs it looked at. Read after the fact from what the fault left behind: the vCPU's
 * struct kvm_page_fault, vcpu->run, the RET_PF_* kvm_mmu_page_fault ended with, the tracepoints the
 * fault emitted (fast_page_fault, check_mmio_spte, mark_mmio_spte, ...) and the VM's state now
 * (attributes, mmu_invalidate_seq, write tracking). Each predicate is the one the named function tests
 * in 6.18, in the order the fault path tests them, so the first that holds is the one that decided.
 */
import type { Kvm } from '../../engine/x86/index';
import type { KvmVcpu } from '../../engine/x86/vcpu';
import { KVM_EXIT_MEMORY_FAULT, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_PFN_ERR_HWPOISON, KVM_PFN_ERR_RO_FAULT, is_error_pfn } from '../../engine/x86/vcpu';
import { KVM_MEM_READONLY, KVM_MEMSLOT_INVALID } from '../../engine/x86/memslot';
import { KVM_REQ_MMU_FREE_OBSOLETE_ROOTS } from '../../engine/x86/vm';
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_RETRY, RET_PF_SPURIOUS, ret_pf_name } from '../../engine/x86/ret_pf';
import { is_obsolete_sp, kvm_gfn_is_write_tracked } from '../../engine/x86/mmu';
import { pferr_trace_flags } from '../../engine/x86/pferr';

/** A tracepoint as the views see it (ProgramEvent, TraceEvent). */
export interface WhyEvent {
  name: string;
  vcpu: number;
  text: string;
}

export interface Decision {
  /** The kernel function that decided. */
  key: string;
  /** What it decided, with the inputs it tested. */
  value: string;
}

export interface WhyFault {
  vcpu: number;
  gpa: string;
  gfn: number;
  ret_pf: string;
  outcome: string;
  /** Stopped inside kvm_mmu_page_fault: the chain so far, not its end. */
  inFlight: boolean;
  /** The path: 'mmio', 'fast', 'slow', 'write-protected', 'memory-fault', 'guest-fault' (shadow paging). */
  path: string;
  chain: Decision[];
  summary: string;
}

/** Mapping-level names, index = PG_LEVEL_*. */
export const LEVEL = ['', '4K', '2M', '1G', '512G', '256T'];
const hex = (n: number) => '0x' + n.toString(16);

const ERRNO: Record<number, string> = { [-14]: '-EFAULT', [-4]: '-EINTR', [-5]: '-EIO', [-11]: '-EAGAIN', [-22]: '-EINVAL', [-2]: '-ENOENT' };

function retText(r: number): string {
  return r < 0 ? ERRNO[r] ?? String(r) : ret_pf_name(r) ?? String(r);
}

/**
 * The events of `vcpu`'s last fault: from its last kvm_page_fault, or from check_mmio_spte when the last
 * fault was an RSVD (MMIO) fault, which VMX takes through handle_ept_misconfig without kvm_page_fault.
 */
function faultEvents(events: readonly WhyEvent[], vcpu: number, walk: string | undefined): { events: WhyEvent[]; rsvd: boolean } {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.vcpu !== vcpu) continue;
    // With shadow paging the fault's first own event can be its guest walk (FNAME(walk_addr)) of cr2.
    if (e.name === 'kvm_page_fault' || e.name === 'check_mmio_spte' || (walk !== undefined && e.name === 'kvm_mmu_pagetable_walk' && e.text.startsWith(walk))) {
      return { events: events.slice(i).filter((x) => x.vcpu === vcpu || x.vcpu === -1), rsvd: e.name === 'check_mmio_spte' };
    }
  }
  return { events: [], rsvd: false };
}

/** The vCPU whose fault the views explain: the one of the most recent fault event. */
export function currentFaultVcpu(events: readonly WhyEvent[]): number | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if ((e.name === 'kvm_page_fault' || e.name === 'check_mmio_spte') && e.vcpu >= 0) return e.vcpu;
  }
  return undefined;
}

function num(text: string, re: RegExp): number | undefined {
  const m = re.exec(text);
  return m ? Number.parseInt(m[1]!, m[1]!.startsWith('0x') ? 16 : 10) : undefined;
}

/** Why the fast path could not fix a fault it looked at (fast_page_fault's loop breaks). */
function fastFailure(kvm: Kvm, vcpu: KvmVcpu, old: bigint): string {
  const f = vcpu.fault;
  if ((old & 0x800n) === 0n) return 'the SPTE is not MMU-present (is_shadow_present_pte): a new mapping needs the slow path';
  const leafLevel = (old & 0x80n) !== 0n;
  const w = kvm.masks.shadow_mmu_writable_mask;
  const mmuWritable = (old & ((BigInt(w.hi >>> 0) << 32n) | BigInt(w.lo >>> 0))) !== 0n;
  if (f.write && !mmuWritable) return 'a write and the SPTE is not MMU-writable (write-protected for the shadow MMU or a read-only mapping): only the slow path may make it writable';
  if (f.write && f.slot && f.slot.dirty_bitmap !== undefined && leafLevel) return 'a write to a huge page in a dirty-logged slot: the slow path maps 4K instead';
  return 'the SPTE cannot be fixed in place (not a last-level SPTE, or the access needs permissions it does not grant)';
}

export function explainFault(kvm: Kvm, vcpu: KvmVcpu, all: readonly WhyEvent[]): WhyFault | undefined {
  const V = vcpu.vcpu_id;
  const f = vcpu.fault;
  const { events, rsvd } = faultEvents(all, V, (vcpu.mmu.root_role & 0x80) === 0 ? `addr ${f.addr.toString(16)} ` : undefined);
  if (!events.length && !vcpu.last_outcome) return undefined;
  const inFlight = kvm.cur_vcpu === V;
  const ret = vcpu.last_ret_pf;
  const outcome = vcpu.last_outcome;
  const chain: Decision[] = [];
  const say = (key: string, value: string) => chain.push({ key, value });
  const ev = (name: string) => events.find((e) => e.name === name);
  let path = 'slow';
  let gfn = f.gfn;
  let gpa = f.addr;

  // ---- RSVD faults: handle_mmio_page_fault before anything else (an MMIO SPTE is a reserved-bit SPTE).
  const check = ev('check_mmio_spte');
  const mmio = ev('handle_mmio_page_fault');
  if (rsvd || (!events.length && outcome.startsWith('emulate') && vcpu.mmio_gfn >= 0)) {
    path = 'mmio';
    const traced = mmio ? /gfn ([0-9a-f]+)/.exec(mmio.text)?.[1] : undefined;
    if (traced) gfn = Number.parseInt(traced, 16);
    else if (!check) gfn = vcpu.mmio_gfn;
    gpa = gfn * 4096;
    say('kvm_mmu_page_fault', `vCPU ${V}: an access to gpa ${hex(gpa)} hit a reserved-bit SPTE (PFERR_RSVD_MASK: EPT misconfiguration / NPF with RSVD): handle_mmio_page_fault runs first`);
    if (!check && !mmio) {
      say('handle_mmio_page_fault', `RET_PF_EMULATE: the vCPU's MMIO cache already holds gfn ${hex(vcpu.mmio_gfn)} with the current memslot generation (vcpu->arch.mmio_gfn, mmio_gen), no SPTE walk needed`);
    } else if (check) {
      const kvmGen = num(check.text, /kvm_gen (\d+)/);
      const spteGen = num(check.text, /spte-gen (\d+)/);
      const valid = /valid 1/.test(check.text);
      if (valid) {
        say('check_mmio_spte', `the MMIO SPTE's generation ${spteGen} equals the memslots' ${kvmGen}: it still describes MMIO`);
        say('handle_mmio_page_fault', `RET_PF_EMULATE via the MMIO SPTE: gfn ${hex(gfn)} has no memslot, so the access is emulated without the slow path (${mmio ? mmio.text : 'handle_mmio_page_fault'})`);
      } else {
        say('check_mmio_spte', `the MMIO SPTE's generation ${spteGen} differs from the memslots' ${kvmGen}: memslots changed since it was made, so it may no longer be MMIO`);
        say('handle_mmio_page_fault', 'RET_PF_INVALID: the fault goes on through kvm_mmu_do_page_fault, which rebuilds the SPTE (RAM now, or a fresh MMIO SPTE)');
        path = 'slow';
      }
    } else if (ret === RET_PF_RETRY) {
      say('handle_mmio_page_fault', 'RET_PF_RETRY: the walk no longer ends in an MMIO SPTE (zapped meanwhile): the guest re-executes and faults again');
    }
    if (path === 'mmio') return finish();
  }

  // ---- The common fault path.
  gfn = f.gfn;
  gpa = f.addr;
  const slot = f.slot;
  const err = pferr_trace_flags(f.error_code_lo, f.error_code_hi) || '0';
  const direct = (vcpu.mmu.root_role & 0x80) !== 0;
  if (!direct) {
    // Shadow paging: cr2 is a GVA; the gfn comes from the guest walk FNAME(page_fault) does first.
    const walkErr = ev('kvm_mmu_walker_error');
    say('kvm_mmu_do_page_fault', `vCPU ${V}: gva ${hex(gpa)}, error_code ${err}; mmu->page_fault = FNAME(page_fault) of the shadow MMU`);
    if (walkErr) {
      path = 'guest-fault';
      say('FNAME(walk_addr)', `the guest's own page tables do not map the gva (${walkErr.name}: ${walkErr.text}): kvm_inject_emulated_page_fault gives the #PF to the guest, RET_PF_RETRY`);
      return finish();
    }
    say('FNAME(walk_addr)', `the guest tables map it to gfn ${hex(gfn)} (${slot ? `memslot ${slot.id}` : 'no memslot'})`);
  } else {
    say('kvm_mmu_do_page_fault', `vCPU ${V}: gpa ${hex(gpa)} gfn ${hex(gfn)}, error_code ${err}, ${f.is_private ? 'private' : 'shared'} access, ${slot ? `memslot ${slot.id}` : 'no memslot'}; mmu->page_fault = ${f.is_tdp ? 'kvm_tdp_page_fault' : 'direct_page_fault'}`);
  }

  // Write-protected gfn: page_fault_handle_page_track precedes the fast path.
  if (!f.rsvd && f.present && f.write && kvm_gfn_is_write_tracked(kvm, gfn) && (ret === RET_PF_EMULATE || ret === RET_PF_RETRY)) {
    path = 'write-protected';
    say('page_fault_handle_page_track', `RET_PF_WRITE_PROTECTED: a present write to gfn ${hex(gfn)}, which is write-tracked (kvm_gfn_is_write_tracked: a guest page table the shadow MMU shadows, or an external tracker)`);
    say('kvm_mmu_write_protect_fault', ret === RET_PF_EMULATE
      ? 'RET_PF_EMULATE: the write is emulated, so the shadow pages of that guest table see it (kvm_mmu_track_write)'
      : 'RET_PF_RETRY: the gfn was unprotected (kvm_mmu_unprotect_gfn_and_retry) and the guest retries the write');
    return finish();
  }

  // Fast path.
  const fast = ev('fast_page_fault');
  if (fast) {
    const spurious = /spurious 1/.test(fast.text);
    const fixed = /fixed 1/.test(fast.text);
    const old = /old (0x[0-9a-f]+|[0-9a-f]+)/.exec(fast.text)?.[1];
    const neu = /new (0x[0-9a-f]+|[0-9a-f]+)/.exec(fast.text)?.[1];
    if (fixed) {
      path = 'fast';
      say('page_fault_can_be_fast', f.write ? 'yes: a present write (write protection for dirty logging or access tracking can be lifted without mmu_lock)' : 'yes: a fault on an access-tracked SPTE');
      say('fast_page_fault', `RET_PF_FIXED: fixed locklessly with one cmpxchg (fast_pf_fix_direct_spte), old ${old} -> new ${neu}; no faultin, no mmu_lock`);
      return finish();
    }
    if (spurious) {
      path = 'fast';
      say('fast_page_fault', `RET_PF_SPURIOUS: the SPTE ${old} already allows this access (another vCPU fixed it first, or a stale TLB entry): nothing to change`);
      return finish();
    }
    say('fast_page_fault', `RET_PF_INVALID: ${old ? fastFailure(kvm, vcpu, BigInt(old.startsWith('0x') ? old : '0x' + old)) : 'no SPTE to fix'}; the slow path takes over`);
  } else if (f.is_tdp) {
    const attrPrivate = kvm.kvm_mem_is_private(gfn);
    let why: string;
    if (f.rsvd) why = 'a reserved-bit fault';
    else if (kvm.arch.has_private_mem && f.is_private !== attrPrivate) why = `the access is ${f.is_private ? 'private' : 'shared'} but the gfn is ${attrPrivate ? 'private' : 'shared'} (a memory-fault exit is due)`;
    else if (!f.present) why = kvm.masks.kvm_ad_enabled ? 'a not-present fault with A/D bits enabled: only the slow path can install an SPTE' : 'a not-present fault';
    else if (!f.write) why = 'a present fault that is not a write: the fast path only lifts write protection and access tracking';
    else why = 'the fast path was not tried';
    say('page_fault_can_be_fast', `no: ${why}`);
  }

  // kvm_mmu_faultin_pfn and what it hands back.
  const exit = vcpu.run_exit;
  if (exit && exit.exit_reason === KVM_EXIT_MEMORY_FAULT) {
    path = 'memory-fault';
    const flags = (exit.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) !== 0 ? 'KVM_MEMORY_EXIT_FLAG_PRIVATE' : '0';
    const attr = kvm.kvm_mem_is_private(gfn);
    const at = `gpa ${hex(exit.gpa)} size ${hex(exit.size)} flags ${flags}`;
    if (f.is_private !== attr) {
      say('kvm_mmu_faultin_pfn', `KVM_EXIT_MEMORY_FAULT (${at}): the access is ${f.is_private ? 'private' : 'shared'} but the gfn's attributes say ${attr ? 'private' : 'shared'} (fault->is_private != kvm_mem_is_private): userspace converts it with KVM_SET_MEMORY_ATTRIBUTES and re-enters`);
    } else if (!slot && f.is_private) {
      say('kvm_handle_noslot_fault', `KVM_EXIT_MEMORY_FAULT (${at}): a private access to a gfn without a memslot cannot be MMIO`);
    } else if (f.is_private && slot && (slot.flags & 4) === 0) {
      say('kvm_mmu_faultin_pfn_gmem', `KVM_EXIT_MEMORY_FAULT (${at}): a private access to a memslot without guest_memfd`);
    } else if (is_error_pfn(f.pfn)) {
      say('kvm_handle_error_pfn', `KVM_EXIT_MEMORY_FAULT (${at}): no pfn for the hva (faultin failed, pfn error ${f.pfn})`);
    } else if (f.is_private) {
      say('kvm_mmu_do_page_fault', `KVM_EXIT_MEMORY_FAULT (${at}): the handler asked for emulation (RET_PF_EMULATE), which a private access cannot have`);
    } else {
      say('kvm_mmu_faultin_pfn_gmem', `KVM_EXIT_MEMORY_FAULT (${at}): guest_memfd could not provide the page`);
    }
    return finish();
  }
  if (!slot && !f.is_private) {
    path = 'mmio';
    const marked = ev('mark_mmio_spte');
    say('kvm_handle_noslot_fault', `no memslot covers gfn ${hex(gfn)}: MMIO. ${kvm.masks.enable_mmio_caching ? 'RET_PF_CONTINUE with KVM_PFN_NOSLOT: the map installs an MMIO SPTE' : 'MMIO caching is off: RET_PF_EMULATE'}`);
    if (marked) say('mark_mmio_spte', `${marked.text}: the next access faults with RSVD and takes handle_mmio_page_fault`);
    return finish();
  }
  if (slot && (slot.flags & KVM_MEMSLOT_INVALID) !== 0 && ret === RET_PF_RETRY) {
    say('kvm_mmu_faultin_pfn', 'RET_PF_RETRY: the memslot is being deleted or moved (KVM_MEMSLOT_INVALID): retry until its SPTEs are gone');
    return finish();
  }
  if (f.pfn === KVM_PFN_ERR_RO_FAULT || (slot && (slot.flags & KVM_MEM_READONLY) !== 0 && f.write && ret === RET_PF_EMULATE)) {
    say('__kvm_mmu_faultin_pfn', `a write to read-only memslot ${slot?.id}: KVM_PFN_ERR_RO_FAULT`);
    say('kvm_handle_error_pfn', 'RET_PF_EMULATE: the write is emulated (completes in userspace as KVM_EXIT_MMIO)');
    return finish();
  }
  if (f.pfn === KVM_PFN_ERR_HWPOISON) {
    say('kvm_handle_error_pfn', 'RET_PF_RETRY: the host page is hardware-poisoned: SIGBUS (BUS_MCEERR_AR) to the VMM, which injects a machine check');
    return finish();
  }
  if (ret === RET_PF_RETRY && kvm.mmu_invalidate_in_progress !== 0 && gfn >= kvm.mmu_invalidate_range_start && gfn < kvm.mmu_invalidate_range_end) {
    say('kvm_mmu_faultin_pfn', `RET_PF_RETRY: an mmu_notifier invalidation of gfns ${hex(kvm.mmu_invalidate_range_start)}-${hex(kvm.mmu_invalidate_range_end - 1)} is in progress (mmu_invalidate_in_progress ${kvm.mmu_invalidate_in_progress})`);
    return finish();
  }
  if (!is_error_pfn(f.pfn) && f.pfn >= 0) {
    say('kvm_mmu_faultin_pfn', `pfn ${hex(f.pfn)} from ${f.is_private ? 'guest_memfd (kvm_mmu_faultin_pfn_gmem)' : 'the host mapping of the hva (GUP)'}, ${f.map_writable ? 'writable' : 'read-only'}; mmu_seq ${f.mmu_seq}`);
  }

  // Under mmu_lock: is_page_fault_stale, then the map.
  if (ret === RET_PF_RETRY) {
    const sp = vcpu.mmu.root_to_sp();
    if (sp !== null && is_obsolete_sp(kvm, sp)) {
      say('is_page_fault_stale', 'RET_PF_RETRY: the root became obsolete (is_obsolete_sp: role.invalid or an older mmu_valid_gen) while the fault ran; a new root is loaded');
    } else if (sp === null && (vcpu.requests & KVM_REQ_MMU_FREE_OBSOLETE_ROOTS) !== 0) {
      say('is_page_fault_stale', 'RET_PF_RETRY: obsolete special roots are waiting to be freed (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS)');
    } else if (kvm.mmu_invalidate_seq !== f.mmu_seq) {
      say('is_page_fault_stale', `RET_PF_RETRY: mmu_invalidate_retry_gfn: an mmu_notifier invalidation completed between kvm_mmu_faultin_pfn and mmu_lock (mmu_invalidate_seq ${kvm.mmu_invalidate_seq} != fault->mmu_seq ${f.mmu_seq}); the pfn may be stale, so nothing is mapped and the guest faults again`);
    } else {
      say(mapFn(vcpu), 'RET_PF_RETRY: an SPTE on the path was frozen or changed under the lockless update (tdp_mmu_set_spte_atomic lost a race): the guest faults again');
    }
    return finish();
  }
  const req = ev('kvm_mmu_spte_requested');
  say('kvm_mmu_hugepage_adjust', `req_level ${LEVEL[f.req_level] ?? f.req_level}, goal_level ${LEVEL[f.goal_level] ?? f.goal_level} (max_level ${LEVEL[f.max_level] ?? f.max_level}${f.huge_page_disallowed ? ', huge_page_disallowed: the NX huge page mitigation maps executable memory 4K' : ''})`);
  if (ret === RET_PF_FIXED) say(mapFn(vcpu), `RET_PF_FIXED: installed a ${LEVEL[f.goal_level] ?? f.goal_level} leaf${req ? ` (${req.name}: ${req.text})` : ''}`);
  else if (ret === RET_PF_SPURIOUS) say(mapFn(vcpu), 'RET_PF_SPURIOUS: the SPTE already held what this fault would install (make_spte produced the same value)');
  else if (ret === RET_PF_EMULATE && f.write) {
    path = 'write-protected';
    say(mapFn(vcpu), `RET_PF_WRITE_PROTECTED: make_spte left the SPTE read-only: gfn ${hex(gfn)} holds a guest page table the shadow MMU shadows and mmu_try_to_unsync_pages would not unsync it`);
    say('kvm_mmu_write_protect_fault', 'RET_PF_EMULATE: the write is emulated so the shadow pages of that table see it (kvm_mmu_track_write)');
  } else if (ret === RET_PF_EMULATE) say(mapFn(vcpu), 'RET_PF_EMULATE: the mapping cannot serve the access');
  return finish();

  function finish(): WhyFault {
    if (outcome === 'emulate_mmio_exit') say('x86_emulate_instruction', `the emulated access is to no memslot or a read-only one: completes in userspace as KVM_EXIT_MMIO (gpa ${hex(vcpu.run_exit?.gpa ?? gpa)})`);
    else if (outcome === 'emulate') say('x86_emulate_instruction', 'the instruction is emulated in the kernel');
    else if (outcome === 'retry_instruction') say('x86_emulate_instruction', 'a TD cannot be emulated: the guest re-executes and the MMIO SPTE raises #VE');
    const summary = inFlight
      ? 'the fault is still being handled: the decisions so far'
      : `${retText(ret)}${outcome ? ` (${outcome.replace(/_/g, ' ')})` : ''} via the ${path === 'fast' ? 'fast path (fast_page_fault, no mmu_lock)' : path === 'mmio' ? 'MMIO path' : path === 'write-protected' ? 'write-protection path' : path === 'memory-fault' ? 'memory-fault exit to userspace' : path === 'guest-fault' ? 'guest page-table walk (the fault is the guest\'s)' : 'slow path (faultin, then the map under mmu_lock)'}`;
    return { vcpu: V, gpa: hex(gpa), gfn, ret_pf: retText(ret), outcome, inFlight, path, chain, summary };
  }
}

function mapFn(vcpu: KvmVcpu): string {
  if (vcpu.fault.is_tdp) return 'kvm_tdp_mmu_map';
  return (vcpu.mmu.root_role & 0x80) !== 0 ? 'direct_map' : 'FNAME(fetch)';
}
