/**
 * Text of the guest-walker tracepoints (mmutrace.h, TRACE_SYSTEM kvmmmu), exactly as the 6.18 `print fmt`
 * in tracefs prints them:
 *
 *   kvm_mmu_pagetable_walk    "addr %llx pferr %x %s"  (%s = __print_flags(pferr, "|", ...))
 *   kvm_mmu_paging_element    "pte %llx level %u"
 *   kvm_mmu_walker_error      "pferr %x %s"
 *   kvm_mmu_set_accessed_bit  "gpa %llx"
 *   kvm_mmu_set_dirty_bit     "gpa %llx"
 *
 * The flag table order is P, W, U, PK, SS, SGX, RSVD, F. `__print_flags` walks it in that order, prints
 * each flag whose bits are all set joined by "|", then any remaining bits as `0x%lx`; a zero value
 * prints nothing (hence the trailing space after `pferr 0`).
 */
import { hex } from '../bits/u64';
import { trace } from '../trace_sink';

const PFERR_FLAG_TABLE: ReadonlyArray<readonly [number, string]> = [
  [1 << 0, 'P'],
  [1 << 1, 'W'],
  [1 << 2, 'U'],
  [1 << 5, 'PK'],
  [1 << 6, 'SS'],
  [1 << 15, 'SGX'],
  [1 << 3, 'RSVD'],
  [1 << 4, 'F'],
];

/** `__print_flags(pferr, "|", ...)` of a 32-bit pferr field. */
export function walkerPferrFlags(pferr: number): string {
  let v = pferr >>> 0;
  let s = '';
  for (let i = 0; i < PFERR_FLAG_TABLE.length && v !== 0; i++) {
    const [mask, name] = PFERR_FLAG_TABLE[i]!;
    if ((v & mask) !== mask) continue;
    v = (v & ~mask) >>> 0;
    s = s.length === 0 ? name : s + '|' + name;
  }
  if (v !== 0) s = (s.length === 0 ? '' : s + '|') + '0x' + v.toString(16);
  return s;
}

export function kvm_mmu_pagetable_walk_text(addrLo: number, addrHi: number, pferr: number): string {
  const p = pferr >>> 0;
  return `addr ${hex(addrLo, addrHi)} pferr ${p.toString(16)} ${walkerPferrFlags(p)}`;
}

export function kvm_mmu_paging_element_text(pteLo: number, pteHi: number, level: number): string {
  return `pte ${hex(pteLo, pteHi)} level ${level >>> 0}`;
}

export function kvm_mmu_walker_error_text(pferr: number): string {
  const p = pferr >>> 0;
  return `pferr ${p.toString(16)} ${walkerPferrFlags(p)}`;
}

export function kvm_mmu_set_ad_bit_text(gpa: number): string {
  return `gpa ${gpa.toString(16)}`;
}

/** A 64-bit record field: a number below 2^53, else lower-case hex without 0x (tracepoints/values.ts). */
function u64Field(lo: number, hi: number): number | string {
  return hi >>> 0 < 0x20_0000 ? (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0) : hex(lo, hi);
}

// Emitters: call only behind `if (trace.enabled)`.

export function emit_kvm_mmu_pagetable_walk(vcpu: number, addrLo: number, addrHi: number, pferr: number): void {
  trace.emit('kvmmmu', 'kvm_mmu_pagetable_walk', vcpu, kvm_mmu_pagetable_walk_text(addrLo, addrHi, pferr), {
    addr: u64Field(addrLo, addrHi),
    pferr: pferr >>> 0,
  });
}

export function emit_kvm_mmu_paging_element(vcpu: number, pteLo: number, pteHi: number, level: number): void {
  trace.emit('kvmmmu', 'kvm_mmu_paging_element', vcpu, kvm_mmu_paging_element_text(pteLo, pteHi, level), {
    pte: u64Field(pteLo, pteHi),
    level,
  });
}

export function emit_kvm_mmu_walker_error(vcpu: number, pferr: number): void {
  trace.emit('kvmmmu', 'kvm_mmu_walker_error', vcpu, kvm_mmu_walker_error_text(pferr), { pferr: pferr >>> 0 });
}

/** gpa = table_gfn << 12 + index * entry size. */
export function emit_kvm_mmu_set_accessed_bit(vcpu: number, gpa: number): void {
  trace.emit('kvmmmu', 'kvm_mmu_set_accessed_bit', vcpu, kvm_mmu_set_ad_bit_text(gpa), { gpa });
}

export function emit_kvm_mmu_set_dirty_bit(vcpu: number, gpa: number): void {
  trace.emit('kvmmmu', 'kvm_mmu_set_dirty_bit', vcpu, kvm_mmu_set_ad_bit_text(gpa), { gpa });
}
