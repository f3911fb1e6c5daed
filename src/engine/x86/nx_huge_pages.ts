/**
 * NX huge page mitigation (iTLB multihit): the possible_nx_huge_pages list, the recovery worker that
 * zaps NX-split tables so they can be faulted back as huge pages, and the nx_huge_pages parameter.
 */
import { defineProbe, probes } from '../probes';
import { kvm_slot_dirty_track_enabled } from './memslot';
import { kvm_mmu_page_as_id, type KvmMmuPage } from './mmu_page';
import { kvm_mmu_zap_all_fast } from './mmu';
import { nx_huge_pages_recovery_period, type NxHugePagesMode } from './params';
import { kvm_tdp_mmu_zap_possible_nx_huge_page } from './tdp_mmu';
import { EBUSY, type Kvm } from './vm';

const PR_RECOVER = defineProbe('kvm_recover_nx_huge_pages', 'nx', 'arch/x86/kvm/mmu/mmu.c', 'zap a share of NX-split tables so huge pages can return', ['to_zap', 'nx_lpage_splits']);
const PR_TRACK = defineProbe('track_possible_nx_huge_page', 'nx', 'arch/x86/kvm/mmu/mmu.c', 'remember a table that replaced a huge page only because of NX', ['sp']);

/** track_possible_nx_huge_page(): add to the tail of the list and count nx_lpage_splits. */
export function track_possible_nx_huge_page(kvm: Kvm, sp: KvmMmuPage): void {
  if (sp.on_possible_nx_list) return;
  if (probes.armed) probes.hit(PR_TRACK, { sp });
  kvm.stat.nx_lpage_splits++;
  sp.on_possible_nx_list = true;
  kvm.arch.possible_nx_huge_pages.add(sp);
}

/** untrack_possible_nx_huge_page(). */
export function untrack_possible_nx_huge_page(kvm: Kvm, sp: KvmMmuPage): void {
  if (!sp.on_possible_nx_list) return;
  kvm.stat.nx_lpage_splits--;
  sp.on_possible_nx_list = false;
  kvm.arch.possible_nx_huge_pages.delete(sp);
}

/** unaccount_nx_huge_page(). */
export function unaccount_nx_huge_page(kvm: Kvm, sp: KvmMmuPage): void {
  sp.nx_huge_page_disallowed = false;
  untrack_possible_nx_huge_page(kvm, sp);
}

/** kvm_mmu_sp_dirty_logging_enabled(): only consulted when some slot logs (the lookup is not free). */
function kvm_mmu_sp_dirty_logging_enabled(kvm: Kvm, sp: KvmMmuPage): boolean {
  if (kvm.nr_memslots_dirty_logging === 0) return false;
  const slot = kvm.kvm_memslots(kvm_mmu_page_as_id(sp)).lookup(sp.gfn);
  kvm.WARN_ON_ONCE(slot === undefined, 'NX-split table without a memslot');
  return slot !== undefined && kvm_slot_dirty_track_enabled(slot);
}

/**
 * kvm_recover_nx_huge_pages() for the TDP MMU list (6.17+: separate lists per MMU type, recovered with
 * mmu_lock held for read): take ceil(nr_pages / ratio) tables from the head, unaccount each, and zap it
 * unless its slot is dirty-logged (it would only come back as 4K). Returns the number handled.
 */
export function kvm_recover_nx_huge_pages(kvm: Kvm): number {
  const ratio = kvm.params.nx_huge_pages_recovery_ratio;
  let to_zap = ratio ? Math.ceil(kvm.arch.possible_nx_huge_pages.size / ratio) : 0;
  if (probes.armed) probes.hit(PR_RECOVER, { to_zap, nx_lpage_splits: kvm.stat.nx_lpage_splits });
  let flush = false;
  let done = 0;
  for (; to_zap > 0; to_zap--) {
    const first = kvm.arch.possible_nx_huge_pages.values().next();
    if (first.done) break;
    const sp = first.value;
    kvm.WARN_ON_ONCE(!sp.nx_huge_page_disallowed, 'NX list entry without nx_huge_page_disallowed');
    unaccount_nx_huge_page(kvm, sp);
    if (!kvm_mmu_sp_dirty_logging_enabled(kvm, sp)) {
      if (sp.tdp_mmu_page) flush = kvm_tdp_mmu_zap_possible_nx_huge_page(kvm, sp) || flush;
      else throw new Error('shadow-MMU NX pages are zapped by the shadow MMU');
    }
    kvm.WARN_ON_ONCE(sp.nx_huge_page_disallowed, 'NX page still disallowed after recovery');
    done++;
  }
  if (flush) kvm.kvm_flush_remote_tlbs();
  return done;
}

/**
 * The "kvm-nx-lpage-recovery" worker, driven by model time: runs a recovery pass whenever a period has
 * elapsed since the last one. Returns the number of passes run.
 */
export class NxRecoveryWorker {
  private last_ms = 0;
  passes = 0;

  constructor(private readonly kvm: Kvm) {}

  /** Advance model time to `now_ms`. */
  tick(now_ms: number): number {
    const { enabled, period_ms } = nx_huge_pages_recovery_period(this.kvm.params);
    if (!enabled || !this.kvm.is_nx_huge_page_enabled() || period_ms === 0) {
      this.last_ms = now_ms;
      return 0;
    }
    let n = 0;
    while (now_ms - this.last_ms >= period_ms) {
      this.last_ms += period_ms;
      kvm_recover_nx_huge_pages(this.kvm);
      n++;
    }
    this.passes += n;
    return n;
  }

  /** Wake the worker now (after a parameter change). */
  wake(): void {
    kvm_recover_nx_huge_pages(this.kvm);
    this.passes++;
  }
}

/**
 * set_nx_huge_pages(): changing the mitigation zaps every VM fast so executable huge pages go away (or
 * can come back). "never" is only accepted while no VM exists; here: while the VM has no vCPUs.
 */
export function set_nx_huge_pages(kvm: Kvm, mode: NxHugePagesMode): number {
  const old = kvm.params.nx_huge_pages;
  if (old === 'never' && mode !== 'never') return -EBUSY;
  if (mode === 'never' && kvm.vcpus.length !== 0) return -EBUSY;
  kvm.params.nx_huge_pages = mode;
  if ((old === 'on') !== (mode === 'on')) kvm_mmu_zap_all_fast(kvm);
  return 0;
}
