/**
 * The guest walker over sparse guest memory in every mode. Table layouts and expected addresses, trace
 * lines and A/D results are worked out by hand from the SDM walk rules and the 6.18 print fmt:
 *   kvm_mmu_pagetable_walk "addr %llx pferr %x %s", kvm_mmu_paging_element "pte %llx level %u",
 *   kvm_mmu_walker_error "pferr %x %s", kvm_mmu_set_accessed_bit / _dirty_bit "gpa %llx",
 *   flags P W U PK SS SGX RSVD F joined by "|".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../../src/engine/mem';
import { trace } from '../../../../src/engine/trace_sink';
import {
  createGuestEptMmu,
  createGuestMmu,
  GuestWalker,
  MemoryGuestPageTables,
  walk_addr_generic,
  WalkResult,
  WalkStep,
  type GuestMmu,
  type GuestPagingRegs,
} from '../../../../src/engine/x86/paging_tmpl';

const U = 4;
const W = 2;
const F = 0x10;

function regs(over: Partial<GuestPagingRegs>): GuestPagingRegs {
  return {
    cr0_pg: true,
    cr0_wp: true,
    cr4_pae: true,
    cr4_pse: true,
    cr4_smep: false,
    cr4_smap: false,
    cr4_pke: false,
    cr4_la57: false,
    efer_lma: true,
    efer_nx: true,
    ...over,
  };
}

const long4 = () => createGuestMmu(regs({}), { maxphyaddr: 46, gbpages: true, pse36: false, amd: false });

interface Run {
  ok: boolean;
  walker: GuestWalker;
  lines: string[];
}

function walk(mmu: GuestMmu, src: MemoryGuestPageTables, addr: bigint, access: number, rflags = 0, pkru = 0): Run {
  const walker = new GuestWalker();
  const lines: string[] = [];
  const off = trace.subscribe((e) => lines.push(`${e.name}: ${e.text}`));
  try {
    const r = walk_addr_generic(walker, { vcpu_id: 0, rflags, pkru }, mmu, src, Number(addr & 0xffff_ffffn), Number(addr >> 32n), access);
    return { ok: r === 1, walker, lines };
  } finally {
    off();
  }
}

/** Tables for addr 0x7fff23456123: indices PML4 255, PDPT 508, PD 282, PT 86 (worked out by hand). */
function long4Tables(leaf = 0x5007, pde = 0x4007, pdpte = 0x3007, pml4e = 0x2007): { mem: GuestMemory; src: MemoryGuestPageTables } {
  const mem = new GuestMemory(2 ** 40);
  mem.write64(0x17f8, pml4e, 0);
  mem.write64(0x2fe0, pdpte, 0);
  mem.write64(0x38d0, pde, 0);
  mem.write64(0x42b0, leaf >>> 0, 0);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1000);
  return { mem, src };
}
const ADDR = 0x7fff_2345_6123n;

test('4-level 4K user read: translation, A set top-down on every level, exact trace text', () => {
  const { mem, src } = long4Tables();
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gpa(0x23456123), 0x5123);
  assert.equal(r.walker.level, 1);
  assert.deepEqual(r.lines, [
    'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 4 U',
    'kvm_mmu_paging_element: pte 2007 level 4',
    'kvm_mmu_paging_element: pte 3007 level 3',
    'kvm_mmu_paging_element: pte 4007 level 2',
    'kvm_mmu_paging_element: pte 5007 level 1',
    'kvm_mmu_set_accessed_bit: gpa 17f8',
    'kvm_mmu_set_accessed_bit: gpa 2fe0',
    'kvm_mmu_set_accessed_bit: gpa 38d0',
    'kvm_mmu_set_accessed_bit: gpa 42b0',
  ]);
  assert.deepEqual([mem.read32(0x17f8), mem.read32(0x2fe0), mem.read32(0x38d0), mem.read32(0x42b0)], [0x2027, 0x3027, 0x4027, 0x5027]);
  // Clean leaf on a read: the result is not writable, so a later write comes back to set D.
  assert.equal(r.walker.pte_access & 2, 0);
  assert.equal(r.walker.pte_access, 5);
});

test('write: D only on the leaf, after its A; leaf already accessed gets only D', () => {
  const { mem, src } = long4Tables(0x5027);
  const r = walk(long4(), src, ADDR, W | U);
  assert.equal(r.ok, true);
  assert.deepEqual(r.lines.slice(5), [
    'kvm_mmu_set_accessed_bit: gpa 17f8',
    'kvm_mmu_set_accessed_bit: gpa 2fe0',
    'kvm_mmu_set_accessed_bit: gpa 38d0',
    'kvm_mmu_set_dirty_bit: gpa 42b0',
  ]);
  assert.equal(r.lines[0], 'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 6 W|U');
  assert.deepEqual([mem.read32(0x17f8), mem.read32(0x2fe0), mem.read32(0x38d0), mem.read32(0x42b0)], [0x2027, 0x3027, 0x4027, 0x5067]);
  assert.equal(r.walker.pte_access, 7);
});

test('everything already accessed and dirty: no A/D work at all', () => {
  const { src } = long4Tables(0x5067, 0x4027, 0x3027, 0x2027);
  const r = walk(long4(), src, ADDR, W | U);
  assert.equal(r.ok, true);
  assert.equal(r.lines.length, 5);
});

test('supervisor write to a read-only page with CR0.WP=1: fault P|W, nothing written', () => {
  const { mem, src } = long4Tables(0x5005);
  const r = walk(long4(), src, ADDR, W);
  assert.equal(r.ok, false);
  assert.equal(r.walker.error_code, 0x3);
  assert.equal(r.walker.result, WalkResult.PERMISSION);
  assert.deepEqual(r.lines, [
    'kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 2 W',
    'kvm_mmu_paging_element: pte 2007 level 4',
    'kvm_mmu_paging_element: pte 3007 level 3',
    'kvm_mmu_paging_element: pte 4007 level 2',
    'kvm_mmu_paging_element: pte 5005 level 1',
    'kvm_mmu_walker_error: pferr 3 P|W',
  ]);
  assert.equal(mem.read32(0x17f8), 0x2007);
  assert.equal(mem.read32(0x42b0), 0x5005);
});

test('fetch from an NX page: pferr 11 P|F; NX in an upper level counts too', () => {
  const mem = long4Tables(0x5007).mem;
  mem.write64(0x42b0, 0x5007, 0x8000_0000);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1000);
  const r = walk(long4(), src, ADDR, F);
  assert.equal(r.ok, false);
  assert.equal(r.lines.at(-1), 'kvm_mmu_walker_error: pferr 11 P|F');
  assert.equal(r.lines[4], 'kvm_mmu_paging_element: pte 8000000000005007 level 1');
  const up = long4Tables().mem;
  up.write64(0x2fe0, 0x3007, 0x8000_0000);
  const src2 = new MemoryGuestPageTables(up);
  src2.setCr3(0x1000);
  assert.equal(walk(long4(), src2, ADDR, F).walker.error_code, 0x11);
});

test('not-present PDE stops the walk at level 2 with no P in the error code', () => {
  const { src } = long4Tables(0x5007, 0x4006);
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, false);
  assert.equal(r.walker.error_code, 0x4);
  assert.deepEqual(r.lines.slice(3), ['kvm_mmu_paging_element: pte 4006 level 2', 'kvm_mmu_walker_error: pferr 4 U']);
  assert.equal(r.walker.step_reason[2], WalkStep.NOT_PRESENT);
  assert.equal(r.walker.step_level[2], 2);
});

test('2M leaf: frame bits 51:21 plus addr bits 20:0; A goes on the PDE', () => {
  const { mem, src } = long4Tables(0, 0x0060_0087);
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.level, 2);
  assert.equal(r.walker.gpa(0x23456123), 0x65_6123);
  assert.equal(mem.read32(0x38d0), 0x6000a7);
  assert.equal(r.lines.length, 1 + 3 + 3);
});

test('2M leaf with bit 13 set: reserved, pferr d P|U|RSVD', () => {
  const { src } = long4Tables(0, 0x0060_2087);
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, false);
  assert.equal(r.walker.error_code, 0xd);
  assert.equal(r.lines.at(-1), 'kvm_mmu_walker_error: pferr d P|U|RSVD');
  assert.equal(r.walker.result, WalkResult.RSVD);
});

test('1G leaf needs GBPAGES; PS in a PML4E is always reserved', () => {
  const { src } = long4Tables(0, 0, 0x4000_0087);
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.level, 3);
  assert.equal(r.walker.gpa(0x23456123), 0x6345_6123);
  const noGb = createGuestMmu(regs({}), { maxphyaddr: 46, gbpages: false, pse36: false, amd: false });
  const { src: s2 } = long4Tables(0, 0, 0x4000_0087);
  const r2 = walk(noGb, s2, ADDR, U);
  assert.equal(r2.ok, false);
  assert.equal(r2.walker.error_code, 0xd);
  assert.equal(r2.walker.step_level[1], 3);
  const { src: s3 } = long4Tables(0x5007, 0x4007, 0x3007, 0x2087);
  const r3 = walk(long4(), s3, ADDR, U);
  assert.equal(r3.walker.error_code, 0xd);
  assert.equal(r3.lines.length, 3);
});

test('address bit at MAXPHYADDR is reserved; below it is not', () => {
  const { mem, src } = long4Tables();
  mem.write64(0x42b0, 0x5007, 1 << 14); // bit 46
  assert.equal(walk(long4(), src, ADDR, U).walker.error_code, 0xd);
  mem.write64(0x42b0, 0x5007, 1 << 13); // bit 45
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gfn, 2 ** 33 + 5);
});

test('5-level walk: PML5 index from bits 56:48', () => {
  const { mem, src } = long4Tables();
  mem.write64(0x10000 + 511 * 8, 0x1007, 0);
  src.setCr3(0x10000);
  const mmu = createGuestMmu(regs({ cr4_la57: true }), { maxphyaddr: 52, gbpages: true, pse36: false, amd: false });
  assert.equal(mmu.level, 5);
  const r = walk(mmu, src, 0x01ff_7fff_2345_6123n, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gpa(0x23456123), 0x5123);
  assert.deepEqual(r.lines.slice(0, 3), [
    'kvm_mmu_pagetable_walk: addr 1ff7fff23456123 pferr 4 U',
    'kvm_mmu_paging_element: pte 1007 level 5',
    'kvm_mmu_paging_element: pte 2007 level 4',
  ]);
  assert.equal(r.lines.filter((l) => l.includes('set_accessed_bit')).length, 5);
});

// PAE: addr 0xa3456123 -> PDPTR 2, PD index 282, PT index 86.
function paeSetup(pdptr: number, pde = 0x4007, pte = 0x5007, pteHi = 0): MemoryGuestPageTables {
  const mem = new GuestMemory(2 ** 36);
  mem.write64(0x38d0, pde, 0);
  mem.write64(0x42b0, pte, pteHi);
  const src = new MemoryGuestPageTables(mem);
  src.pdptrs[4] = pdptr;
  return src;
}
const pae = (nx = true) => createGuestMmu(regs({ efer_lma: false }), { maxphyaddr: 36, gbpages: false, pse36: false, amd: false });

test('PAE: PDPTE from the cached PDPTRs, never given A; entries below walked from memory', () => {
  const src = paeSetup(0x3001);
  const r = walk(pae(), src, 0xa345_6123n, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gpa(0xa3456123), 0x5123);
  assert.deepEqual(r.lines, [
    'kvm_mmu_pagetable_walk: addr a3456123 pferr 4 U',
    'kvm_mmu_paging_element: pte 3001 level 3',
    'kvm_mmu_paging_element: pte 4007 level 2',
    'kvm_mmu_paging_element: pte 5007 level 1',
    'kvm_mmu_set_accessed_bit: gpa 38d0',
    'kvm_mmu_set_accessed_bit: gpa 42b0',
  ]);
  assert.equal(src.pdptrs[4], 0x3001);
});

test('PAE: a not-present PDPTE faults with no P; its reserved bits are not re-checked in the walk', () => {
  const r = walk(pae(), paeSetup(0x3000), 0xa345_6123n, U);
  assert.equal(r.ok, false);
  assert.deepEqual(r.lines, ['kvm_mmu_pagetable_walk: addr a3456123 pferr 4 U', 'kvm_mmu_paging_element: pte 3000 level 3', 'kvm_mmu_walker_error: pferr 4 U']);
  // Bits 2:1 and 8:5 are reserved in a PDPTE, but only MOV CR3 checks them.
  assert.equal(walk(pae(), paeSetup(0x31e7), 0xa345_6123n, U).ok, true);
});

test('PAE: 2M PDE reserved bits 20:13, bits 62:36 reserved (MAXPHYADDR 36), NX reserved without EFER.NX', () => {
  assert.equal(walk(pae(), paeSetup(0x3001, 0x0060_2087), 0xa345_6123n, U).walker.error_code, 0xd);
  const ok2m = walk(pae(), paeSetup(0x3001, 0x0060_1087), 0xa345_6123n, U); // bit 12 = PAT, legal
  assert.equal(ok2m.ok, true);
  assert.equal(ok2m.walker.gpa(0xa3456123), 0x65_6123);
  assert.equal(walk(pae(), paeSetup(0x3001, 0x4007, 0x5007, 0x4000_0000), 0xa345_6123n, U).walker.error_code, 0xd); // bit 62
  const noNx = createGuestMmu(regs({ efer_lma: false, efer_nx: false }), { maxphyaddr: 36, gbpages: false, pse36: false, amd: false });
  assert.equal(walk(noNx, paeSetup(0x3001, 0x4007, 0x5007, 0x8000_0000), 0xa345_6123n, U).walker.error_code, 0xd);
  assert.equal(walk(pae(), paeSetup(0x3001, 0x4007, 0x5007, 0x8000_0000), 0xa345_6123n, U).ok, true);
});

// 2-level: addr 0x87654321 -> PD index 541 (entry at +0x874), PT index 596 (entry at +0x950); 4-byte entries.
function twoLevel(pde: number, pte = 0x5007): { mem: GuestMemory; src: MemoryGuestPageTables } {
  const mem = new GuestMemory(2 ** 36);
  mem.write32(0x1874, pde);
  mem.write32(0x2950, pte);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1000);
  return { mem, src };
}
const m32 = (pse: boolean, pse36: boolean) =>
  createGuestMmu(regs({ efer_lma: false, cr4_pae: false, cr4_pse: pse }), { maxphyaddr: 36, gbpages: false, pse36, amd: false });

test('2-level 4K: 4-byte entries, 10-bit indices', () => {
  const { mem, src } = twoLevel(0x2007);
  const r = walk(m32(true, true), src, 0x8765_4321n, W | U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gpa(0x87654321), 0x5321);
  assert.deepEqual(r.lines, [
    'kvm_mmu_pagetable_walk: addr 87654321 pferr 6 W|U',
    'kvm_mmu_paging_element: pte 2007 level 2',
    'kvm_mmu_paging_element: pte 5007 level 1',
    'kvm_mmu_set_accessed_bit: gpa 1874',
    'kvm_mmu_set_accessed_bit: gpa 2950',
    'kvm_mmu_set_dirty_bit: gpa 2950',
  ]);
  assert.equal(mem.read32(0x1874), 0x2027);
  assert.equal(mem.read32(0x2950), 0x5067);
  assert.equal(mem.read32(0x2954), 0, 'a 4-byte update must not touch the next entry');
});

test('2-level PSE: 4M page, PSE-36 supplies PA bits 35:32 from PDE bits 16:13', () => {
  const r = walk(m32(true, false), twoLevel(0x0c00_0087).src, 0x8765_4321n, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gpa(0x87654321), 0x0c25_4321);
  const r36 = walk(m32(true, true), twoLevel(0x0c01_e087).src, 0x8765_4321n, U);
  assert.equal(r36.ok, true);
  assert.equal(r36.walker.gpa(0x87654321), 0xf_0c25_4321);
  // Without PSE-36 bits 21:13 are reserved in a 4M PDE.
  const r2 = walk(m32(true, false), twoLevel(0x0c01_e087).src, 0x8765_4321n, U);
  assert.equal(r2.walker.error_code, 0xd);
  // With PSE-36, bit 17 is still reserved.
  assert.equal(walk(m32(true, true), twoLevel(0x0c02_0087).src, 0x8765_4321n, U).walker.error_code, 0xd);
});

test('2-level without CR4.PSE: PDE bit 7 is ignored and the walk goes on to the PT', () => {
  const r = walk(m32(false, false), twoLevel(0x2087).src, 0x8765_4321n, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.level, 1);
  assert.equal(r.walker.gpa(0x87654321), 0x5321);
});

test('2-level with EFER.NX=1: fetch faults report F (KVM keys on EFER.NX), no NX bit exists', () => {
  const mmu = createGuestMmu(regs({ efer_lma: false, cr4_pae: false, efer_nx: true }), { maxphyaddr: 36, gbpages: false, pse36: false, amd: false });
  const r = walk(mmu, twoLevel(0x2006).src, 0x8765_4321n, F | U);
  assert.equal(r.walker.error_code, 0x14);
});

// EPT: L2 GPA 0x123456000 -> PML4 0, PDPT 4 (at 0x2020), PD 282 (0x38d0), PT 86 (0x42b0).
function eptSetup(leaf: number): { mem: GuestMemory; src: MemoryGuestPageTables } {
  const mem = new GuestMemory(2 ** 40);
  mem.write64(0x1000, 0x2007, 0);
  mem.write64(0x2020, 0x3007, 0);
  mem.write64(0x38d0, 0x4007, 0);
  mem.write64(0x42b0, leaf, 0);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x105e); // EPTP: table 0x1000, WB, 4-level, A/D enabled
  return { mem, src };
}
const ept = (execonly = false, ad = true) => createGuestEptMmu({ level: 4, execonly, huge_page_level: 3, accessed_dirty: ad, maxphyaddr: 46 });
const L2GPA = 0x1_2345_6000n;

test('EPT: read (PFERR_USER) succeeds, A is bit 8 on every level, D bit 9 on a write', () => {
  const { mem, src } = eptSetup(0x5037);
  const r = walk(ept(), src, L2GPA, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.gfn, 5);
  assert.deepEqual([mem.read32(0x1000), mem.read32(0x2020), mem.read32(0x38d0), mem.read32(0x42b0)], [0x2107, 0x3107, 0x4107, 0x5137]);
  const w = walk(ept(), src, L2GPA, W);
  assert.equal(w.ok, true);
  assert.equal(mem.read32(0x42b0), 0x5337);
  assert.deepEqual(w.lines.slice(5), ['kvm_mmu_set_dirty_bit: gpa 42b0']);
});

test('EPT without A/D (EPTP bit 6 clear): nothing is written', () => {
  const { mem, src } = eptSetup(0x5037);
  const r = walk(ept(false, false), src, L2GPA, W);
  assert.equal(r.ok, true);
  assert.equal(mem.read32(0x1000), 0x2007);
  assert.equal(mem.read32(0x42b0), 0x5037);
});

test('EPT misconfigurations: write-only, write+exec, exec-only without the capability, bad memtype', () => {
  for (const leaf of [0x5032, 0x5036, 0x5034, 0x5017, 0x501f, 0x503f]) {
    const r = walk(ept(), eptSetup(leaf).src, L2GPA, U);
    assert.equal(r.ok, false, `leaf ${leaf.toString(16)}`);
    assert.equal(r.walker.error_code, 0xd, `leaf ${leaf.toString(16)}`);
    assert.equal(r.walker.exit_qualification, 0, 'a misconfig carries no violation qualification');
  }
  assert.equal(walk(ept(), eptSetup(0x5031).src, L2GPA, U).ok, true); // read-only, WB
});

test('EPT exec-only with the capability: fetch passes; a read is a violation with the right qualification', () => {
  const src = eptSetup(0x5034).src;
  assert.equal(walk(ept(true), src, L2GPA, F).ok, true);
  const r = walk(ept(true), eptSetup(0x5034).src, L2GPA, U);
  assert.equal(r.ok, false);
  assert.equal(r.walker.error_code, 0x5);
  assert.equal(r.walker.exit_qualification, 0x21); // ACC_READ | PROT_EXEC
  assert.equal(r.walker.nested_page_fault, true);
});

test('EPT fetch of a non-executable page: no F in the error code (no EFER.NX/SMEP in the EPT role)', () => {
  const r = walk(ept(), eptSetup(0x5033).src, L2GPA, F);
  assert.equal(r.walker.error_code, 0x1);
  assert.equal(r.walker.exit_qualification, 0x1c); // ACC_INSTR | PROT_READ | PROT_WRITE
});

test('EPT not-present PDE: qualification has no permission bits', () => {
  const { mem, src } = eptSetup(0x5037);
  mem.write64(0x38d0, 0x4000, 0);
  const r = walk(ept(), src, L2GPA, U);
  assert.equal(r.walker.error_code, 0x4);
  assert.equal(r.walker.exit_qualification, 0x1);
});

test('a lost A/D cmpxchg restarts the walk (one pagetable_walk event, entries read again)', () => {
  const { mem, src } = long4Tables();
  let fail = 1;
  const orig = src.cmpxchg_gpte.bind(src);
  src.cmpxchg_gpte = (gpa, size, level, oLo, oHi, nLo, nHi) => {
    if (fail > 0) {
      fail--;
      return 1;
    }
    return orig(gpa, size, level, oLo, oHi, nLo, nHi);
  };
  const r = walk(long4(), src, ADDR, U);
  assert.equal(r.ok, true);
  assert.equal(r.walker.retries, 1);
  assert.equal(r.lines.filter((l) => l.startsWith('kvm_mmu_pagetable_walk')).length, 1);
  assert.equal(r.lines.filter((l) => l.startsWith('kvm_mmu_paging_element')).length, 8);
  assert.equal(mem.read32(0x42b0), 0x5027);
});

test('page tables in a read-only slot: the walk succeeds and A/D stay as they were', () => {
  const { mem, src } = long4Tables();
  src.readOnly = () => true;
  const r = walk(long4(), src, ADDR, W | U);
  assert.equal(r.ok, true);
  assert.equal(mem.read32(0x17f8), 0x2007);
  assert.equal(mem.read32(0x42b0), 0x5007);
});

test('a table outside guest memory is a fault without P', () => {
  const mem = new GuestMemory(1 << 20);
  mem.write64(0x17f8, 0x0020_0007, 0); // PDPT at 2 MiB: outside a 1 MiB guest
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1000);
  const r = walk(long4(), src, ADDR, W | U);
  assert.equal(r.ok, false);
  assert.equal(r.walker.error_code, 0x6);
  assert.equal(r.walker.result, WalkResult.BAD_GPA);
  assert.deepEqual(r.lines, ['kvm_mmu_pagetable_walk: addr 7fff23456123 pferr 6 W|U', 'kvm_mmu_paging_element: pte 200007 level 4', 'kvm_mmu_walker_error: pferr 6 W|U']);
});

test('protection keys on a long-mode leaf: AD denies reads (pferr 25 P|U|PK), keys on non-leaf entries are ignored', () => {
  const mmu = createGuestMmu(regs({ cr4_pke: true }), { maxphyaddr: 46, gbpages: true, pse36: false, amd: false });
  const { mem, src } = long4Tables();
  mem.write64(0x42b0, 0x5007, 1 << 27); // key 1
  mem.write64(0x38d0, 0x4007, 2 << 27); // key 2 on the PDE
  const r = walk(mmu, src, ADDR, U, 0, 0b0100); // AD1
  assert.equal(r.ok, false);
  assert.equal(r.lines.at(-1), 'kvm_mmu_walker_error: pferr 25 P|U|PK');
  assert.equal(walk(mmu, src, ADDR, U, 0, 0b110000).ok, true); // AD2|WD2 only
});

test('load_pdptrs: MOV CR3 checks present PDPTEs for reserved bits (8:5, 2:1, above MAXPHYADDR) and caches them', () => {
  const mem = new GuestMemory(2 ** 36);
  const src = new MemoryGuestPageTables(mem);
  src.setCr3(0x1fe0); // PDPT at bits 31:5
  mem.write64(0x1fe0, 0x3001, 0);
  mem.write64(0x1fe8, 0x0006, 0); // not present: its other bits do not matter
  mem.write64(0x1ff0, 0x4001, 0);
  assert.equal(src.load_pdptrs(36), true);
  assert.deepEqual([...src.pdptrs], [0x3001, 0, 0x6, 0, 0x4001, 0, 0, 0]);
  mem.write64(0x1ff8, 0x5003, 0); // W in a present PDPTE: reserved
  assert.equal(src.load_pdptrs(36), false);
  assert.equal(src.pdptrs[6], 0, 'a failed load leaves the cache alone');
  mem.write64(0x1ff8, 0x5001, 0x10); // bit 36 with MAXPHYADDR 36
  assert.equal(src.load_pdptrs(36), false);
  assert.equal(src.load_pdptrs(40), true);
  assert.equal(src.pdptrs[7], 0x10);
});
