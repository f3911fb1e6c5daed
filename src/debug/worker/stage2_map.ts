/**
 * `kvmMmu/stage2Map`: the page-table map of an arm64 stage-2 (the guest's, and under pKVM the host's),
 * in the same shape as the x86 `kvmMmu/tableMap` so one panel draws both: every table breadth first, one
 * kind letter per entry, plus under pKVM one ownership letter per entry.
 *
 * Kind letters: '.' zero (never used), 'n' invalid non-zero (an owner annotation), 'F' KVM_INVALID_PTE_LOCKED
 * (break-before-make), 'L' page (last level), 'H' block, 'T' table.
 * Ownership letters: '-' none, 'o' PKVM_PAGE_OWNED, 's' PKVM_PAGE_SHARED_OWNED, 'b' PKVM_PAGE_SHARED_BORROWED,
 * 'y' donated to the hypervisor, 'g' donated to a guest, 'p' PKVM_POISON, 'm' a block whose pages differ.
 */
import type { DebugProgram } from '../program';
import type { Arm64Vm } from '../../engine/arm64/mmu';
import type { KvmPgtable } from '../../engine/arm64/pgtable';
import { kvm_pte_table, kvm_pte_valid, stage2_pte_is_locked } from '../../engine/arm64/pgtable';
import { KVM_PGTABLE_LAST_LEVEL, kvm_pte_to_phys } from '../../engine/arm64/pgtable_desc';
import type { PtPage } from '../../engine/arm64/page_alloc';
import { PKVM_PAGE_OWNED, PKVM_PAGE_SHARED_BORROWED, PKVM_PAGE_SHARED_OWNED, PKVM_POISON, type PkvmHyp } from '../../engine/arm64/pkvm_mem_protect';
import { PKVM_ID_GUEST, PKVM_ID_HYP } from '../../engine/arm64/variants';

function arm64Vm(program: DebugProgram): Arm64Vm | undefined {
  const vm = (program.state() as { VM?: { vm?: Arm64Vm } }).VM?.vm;
  return vm && Array.isArray(vm.memslots) && vm.pgt && typeof vm.descriptorAt === 'function' ? vm : undefined;
}

function stateLetter(s: number): string {
  if (s === PKVM_PAGE_OWNED) return 'o';
  if (s === PKVM_PAGE_SHARED_OWNED) return 's';
  if (s === PKVM_PAGE_SHARED_BORROWED) return 'b';
  if (s === PKVM_POISON) return 'p';
  return '-';
}

/** Pages of a host block checked for a uniform state: all of them up to this many, else evenly spaced. */
const BLOCK_SAMPLES = 4096;

function hostBlockLetter(h: PkvmHyp, addr: number, size: number): string {
  const pages = size / h.pageSize;
  const stride = Math.max(1, Math.floor(pages / BLOCK_SAMPLES));
  let letter: string | undefined;
  for (let p = 0; p < pages; p += stride) {
    const l = stateLetter(h.get_host_state(addr + p * h.pageSize));
    if (letter === undefined) letter = l;
    else if (l !== letter) return 'm';
  }
  return letter ?? '-';
}

interface Space {
  pgt: KvmPgtable;
  label: string;
  space: 'ipa' | 'pa';
  owners: 'guest' | 'host' | undefined;
}

function spaces(vm: Arm64Vm): Space[] {
  const out: Space[] = [];
  const g = vm.pgt.gi.name.toUpperCase();
  out.push({
    pgt: vm.pgt,
    label: vm.hypVm ? `guest stage-2 at EL2 (pKVM handle 0x${vm.hypVm.handle.toString(16)}${vm.hypVm.isProtected ? ', protected' : ''}), ${g}` : `guest stage-2 (VTTBR_EL2), ${g}${vm.pgt.lpa2 ? ' LPA2' : ''}`,
    space: 'ipa',
    owners: vm.pkvm ? 'guest' : undefined,
  });
  if (vm.pkvm) out.push({ pgt: vm.pkvm.host_pgt, label: `host stage-2 (pKVM), ${vm.pkvm.host_pgt.gi.name.toUpperCase()}`, space: 'pa', owners: 'host' });
  return out;
}

export function stage2Map(program: DebugProgram, args: Record<string, unknown>): Record<string, unknown> {
  const vm = arm64Vm(program);
  if (!vm) throw new Error('not available for this VM (no arm64 stage-2)');
  const all = spaces(vm);
  const pick = typeof args.root === 'number' && Number.isInteger(args.root) && args.root >= 0 && args.root < all.length ? args.root : 0;
  const maxTables = typeof args.maxTables === 'number' && Number.isInteger(args.maxTables) ? Math.min(65536, Math.max(1, args.maxTables)) : 4096;
  const s = all[pick]!;
  const pgt = s.pgt;
  const h = vm.pkvm;
  const pageShift = pgt.pageShift;
  const tables: Array<{ pfn: number; level: number; gfn: number; parent: number; parentIndex: number; kinds: string; owners?: string }> = [];
  const queue: Array<{ page: PtPage; level: number; base: number; parent: number; parentIndex: number }> = [];
  // The concatenated PGD pages (kvm_pgd_pages) are tables of the start level side by side.
  const pgdSpan = pgt.ptrs * pgt.granuleSize(pgt.start_level);
  (pgt.pgd ?? []).forEach((page, i) => queue.push({ page, level: pgt.start_level, base: i * pgdSpan, parent: -1, parentIndex: -1 }));
  let truncated = false;
  for (let q = 0; q < queue.length; q++) {
    if (tables.length >= maxTables) {
      truncated = true;
      break;
    }
    const { page, level, base, parent, parentIndex } = queue[q]!;
    const gran = pgt.granuleSize(level);
    const kinds: string[] = new Array<string>(pgt.ptrs);
    const owners: string[] | undefined = s.owners ? new Array<string>(pgt.ptrs) : undefined;
    for (let i = 0; i < pgt.ptrs; i++) {
      const lo = page.data[2 * i]!;
      const hi = page.data[2 * i + 1]!;
      const addr = base + i * gran;
      let k: string;
      let o = '-';
      if (lo === 0 && hi === 0) k = '.';
      else if (!kvm_pte_valid(lo)) {
        k = stage2_pte_is_locked(pgt, lo, hi) ? 'F' : 'n';
        if (h && s.owners === 'host' && k === 'n') {
          const own = h.ownerOf(addr).owner;
          o = own === PKVM_ID_HYP ? 'y' : own === PKVM_ID_GUEST ? 'g' : '-';
        } else if (h && s.owners === 'guest' && k === 'n') o = stateLetter(h.guest_get_page_state(lo, hi));
      } else if (kvm_pte_table(lo, level)) {
        k = 'T';
        queue.push({ page: pgt.mm_ops.phys_to_virt(kvm_pte_to_phys(lo, hi, pageShift, pgt.lpa2)), level: level + 1, base: addr, parent: tables.length, parentIndex: i });
      } else {
        k = level === KVM_PGTABLE_LAST_LEVEL ? 'L' : 'H';
        if (h && s.owners === 'guest') o = stateLetter(h.guest_get_page_state(lo, hi));
        else if (h && s.owners === 'host') o = k === 'L' ? stateLetter(h.get_host_state(addr)) : hostBlockLetter(h, addr, gran);
      }
      kinds[i] = k;
      if (owners) owners[i] = o;
    }
    const t: (typeof tables)[number] = { pfn: Math.floor(page.pa / pgt.pageSize), level, gfn: Math.floor(base / pgt.pageSize), parent, parentIndex, kinds: kinds.join('') };
    if (owners) t.owners = owners.join('');
    tables.push(t);
  }
  // The guest stage-2's most recent abort is the walk the map highlights.
  const last = s.space === 'ipa' ? vm.faultLog[vm.faultLog.length - 1] : undefined;
  const walk = last ? { gfn: Math.floor(last.ipa / pgt.pageSize), label: `last stage-2 abort: ipa 0x${last.ipa.toString(16)} ${last.access} ${last.fsc} fault at level ${last.level} -> ${last.outcome}` } : undefined;
  return {
    walk,
    format: `stage2-${pgt.gi.name}${pgt.lpa2 ? '-lpa2' : ''}`,
    arch: 'arm64',
    granule: pgt.gi.name,
    lpa2: pgt.lpa2,
    space: s.space,
    entries: pgt.ptrs,
    leafLevel: KVM_PGTABLE_LAST_LEVEL,
    bitsPerLevel: pageShift - 3,
    pageShift,
    ownership: s.owners ?? 'none',
    roots: all.map((x, i) => ({ table: i, label: x.label })),
    root: pick,
    rootLevel: pgt.start_level,
    tables,
    truncated,
  };
}
