/**
 * What a capture tells about the traced VM, for the model check (./model_check.ts): the SPTE format and
 * TDP depth, whether the NX huge page mitigation is on, and the memslots (GPA ranges, host page size,
 * HVA offset) inferred from what the capture touched.
 */
import { EVENT_BY_NAME, KVM_ISA_SVM, KVM_ISA_VMX } from '../engine/tracepoints/index';
import type { HostBacking } from '../engine/x86/index';
import type { ParsedEvent } from './event';

const S_CHANGED = EVENT_BY_NAME.get('kvm_tdp_mmu_spte_changed')!;
const S_SET = EVENT_BY_NAME.get('kvm_mmu_set_spte')!;
const S_PF = EVENT_BY_NAME.get('kvm_page_fault')!;
const S_REQ = EVENT_BY_NAME.get('kvm_mmu_spte_requested')!;
const S_EXIT = EVENT_BY_NAME.get('kvm_exit')!;
const S_GET = EVENT_BY_NAME.get('kvm_mmu_get_page')!;

const TWO32 = 0x1_0000_0000;

/** Evidence for the SPTE format and the TDP depth, gathered event by event. */
export class VmEvidence {
  vmxExits = 0;
  svmExits = 0;
  eptLooking = 0;
  nptLooking = 0;
  tdpChanges = 0;
  maxLevel = 0;
  rootLevel = 0;
  faults = 0;
  requested = 0;
  /** Shadow-MMU work: `kvm_mmu_get_page` and `kvm_mmu_set_spte` events. */
  shadowWork = 0;
  /** Huge leaves installed without execute permission (EPT X clear, or NPT NX set): nx_huge_pages is on. */
  nxHugeLeaves = 0;

  onEvent(ev: ParsedEvent): void {
    const s = ev.schema;
    if (s === S_EXIT) {
      const isa = ev.lo[S_EXIT.index['isa']!]!;
      if (isa === KVM_ISA_VMX) this.vmxExits++;
      else if (isa === KVM_ISA_SVM) this.svmExits++;
    } else if (s === S_CHANGED) {
      this.tdpChanges++;
      const level = ev.lo[S_CHANGED.index['level']!]!;
      if (level > this.maxLevel && level <= 5) this.maxLevel = level;
      const nLo = ev.lo[S_CHANGED.index['new_spte']!]!;
      const nHi = ev.hi[S_CHANGED.index['new_spte']!]!;
      this.vote(nLo, level);
      // TDP maps guest memory executable unless the NX huge page mitigation keeps huge pages non-executable
      if (level >= 2 && (nLo & 0x880) === 0x880 && (this.eptLooking >= this.nptLooking ? (nLo & 4) === 0 : (nHi & 0x8000_0000) !== 0)) this.nxHugeLeaves++;
    } else if (s === S_SET) {
      this.shadowWork++;
      this.vote(ev.lo[S_SET.index['spte']!]!, ev.lo[S_SET.index['level']!]!);
    } else if (s === S_GET) {
      this.shadowWork++;
      const role = ev.lo[S_GET.index['role']!]!;
      const gfn = ev.lo[S_GET.index['gfn']!]! + ev.hi[S_GET.index['gfn']!]! * TWO32;
      if ((role & 0x80) !== 0 && gfn === 0 && (role & 0xf) >= 4) this.rootLevel = Math.max(this.rootLevel, role & 0xf);
    } else if (s === S_PF) this.faults++;
    else if (s === S_REQ) this.requested++;
  }

  private vote(lo: number, level: number): void {
    // MMU-present (bit 11) values only; leaves have PS (bit 7) or sit at level 1
    if ((lo & 0x800) === 0) return;
    const leaf = level === 1 || (lo & 0x80) !== 0;
    if (leaf && (lo & 0x38) === 0x30) this.eptLooking++;
    else if (!leaf && (lo & 0x20) !== 0) this.nptLooking++;
    else if (!leaf && (lo & 0x7) === 0x7 && (lo & 0x20) === 0) this.eptLooking++;
  }

  get format(): 'ept' | 'npt' {
    if (this.vmxExits !== this.svmExits) return this.vmxExits > this.svmExits ? 'ept' : 'npt';
    return this.nptLooking > this.eptLooking ? 'npt' : 'ept';
  }

  get levels(): 4 | 5 {
    const l = this.rootLevel || this.maxLevel;
    return l === 5 ? 5 : 4;
  }

  describe(): string {
    const why = this.vmxExits !== this.svmExits ? `${this.vmxExits > this.svmExits ? 'VMX' : 'SVM'} kvm_exit events` : this.eptLooking + this.nptLooking > 0 ? 'SPTE bit patterns' : 'default';
    return `${this.format.toUpperCase()} (${why}), ${this.levels}-level TDP`;
  }
}

/**
 * Memslots from the regions the capture touched (2 MiB units): a 1G leaf widens its region to the whole
 * 1 GiB, contiguous regions merge, and a slot is backed by the largest page any huge leaf in it needs.
 */
export function inferSlots(regions: Set<number>, hugeAt: Map<number, number>): Array<{ slot: number; gpa: number; size: number; backing: HostBacking }> {
  const all = new Set(regions);
  for (const [r, level] of hugeAt) {
    if (level >= 3) {
      const base = r - (r % 512);
      for (let i = 0; i < 512; i++) all.add(base + i);
    } else all.add(r);
  }
  const sorted = [...all].sort((a, b) => a - b);
  const out: Array<{ slot: number; gpa: number; size: number; backing: HostBacking }> = [];
  let first = -1;
  let prev = -2;
  let maxHuge = 0;
  const flush = () => {
    if (first < 0) return;
    const backing: HostBacking = maxHuge >= 3 ? '1g-hugetlb' : maxHuge === 2 ? '2m-thp' : '4k';
    out.push({ slot: out.length, gpa: first * 0x20_0000, size: (prev + 1 - first) * 0x20_0000, backing });
  };
  for (const r of sorted) {
    if (r !== prev + 1) {
      flush();
      first = r;
      maxHuge = 0;
    }
    maxHuge = Math.max(maxHuge, hugeAt.get(r) ?? 0);
    prev = r;
  }
  flush();
  return out;
}

/** The HVA - GPA offset most notifier operations on a slot's regions voted for, if any. */
export function slotHvaOffset(votes: Map<number, Map<number, number>>, gpa: number, size: number): number | undefined {
  const tally = new Map<number, number>();
  for (let r = gpa / 0x20_0000; r < (gpa + size) / 0x20_0000; r++) {
    const v = votes.get(r);
    if (v) for (const [off, n] of v) tally.set(off, (tally.get(off) ?? 0) + n);
  }
  let best: number | undefined;
  let most = 0;
  for (const [off, n] of tally) {
    if (n > most || (n === most && best !== undefined && off < best)) {
      best = off;
      most = n;
    }
  }
  return best;
}

/**
 * A request with no kvm_page_fault that installs a present leaf without its accessed bit (EPT bit 8, NPT
 * bit 5) is a prefetch: KVM_PRE_FAULT_MEMORY, which maps without a guest access. A guest fault sets it.
 */
