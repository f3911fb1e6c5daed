/**
 * PAE roots (kvm-x86-mmu.md 5.1, 5.2) and design variant `pae_root` (seed 002).
 * Upstream: pae_root is a page below 4 GiB, not a shadow page; entries are root | P | me_value, or
 * INVALID_PAE_ROOT (0) for a not-present PDPTE. Variant: a PAE-root shadow page from a DMA32 cache,
 * default PDPTE = P without SPTE_MMU_PRESENT_MASK, make_pae_pdpte = child | P | bit 11,
 * drop_parent_pte restores the default.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { paeRootReport, ROLE_PAE_ROOT } from '../../../../src/engine/x86/pae_root_variant';
import { DMA32_END_PFN } from '../../../../src/engine/mem/host_memory';
import { RET_PF_FIXED } from '../../../../src/engine/x86/ret_pf';
import type { PaeRootVariant } from '../../../../src/engine/x86/shadow_mmu';

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const CR0 = 0x8001_0011;
const CR4_PAE = 0x20, CR4_PSE = 0x10;

function paeVm(variant: PaeRootVariant) {
  const vm = new ShadowVm({ mem_bytes: 128 << 20, pae_root: variant, cr0: CR0, cr4: CR4_PAE, efer: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 3, 0x10_0000);
  return { vm, b };
}

function role(level: number, access: number, extra = 0): number {
  return (level | (access << 8) | (1 << 12) | (1 << 13) | extra) >>> 0;
}

test('special PAE root: entries are child | P, INVALID_PAE_ROOT elsewhere, page below 4 GiB, not cached on CR3 switch', () => {
  const { vm, b } = paeVm('special');
  b.map(0x1000, 0x80_0000, ALL);
  vm.setRegs(CR0, CR4_PAE, 0, b.cr3);
  assert.equal(vm.access(0x1000), 1);
  const r = vm.roots();
  assert.equal(r.kind, 'pae');
  assert.ok(r.pae_root_pfn < DMA32_END_PFN);
  const root0 = vm.shadowPages().find((s) => (s.role & 0xf) === 2)!;
  assert.equal(r.pae![0]!.lo, (root0.spt_pfn * 4096) % 2 ** 32 | 1, 'P only (shadow_me_value 0), no bit 11');
  assert.deepEqual([r.pae![1]!.lo, r.pae![2]!.lo, r.pae![3]!.lo], [0, 0, 0]);
  const b2 = new GuestPageTableBuilder(vm.mem, 3, 0x30_0000);
  b2.map(0x1000, 0x90_0000, ALL);
  vm.loadCr3(b2.cr3);
  assert.equal(vm.roots().kind, 'invalid', 'special roots are freed, never kept in prev_roots');
  assert.ok(vm.roots().prev.every((p) => p.root === null));
  assert.equal(root0.root_count, 1);
  assert.equal(vm.shadowPages().find((s) => s.spt_pfn === root0.spt_pfn)!.root_count, 0, 'the level-2 root lost its reference');
});

test('variant shadow_page: PAE root SP below 4 GiB with default PDPTEs; children linked lazily with make_pae_pdpte', () => {
  const { vm, b } = paeVm('shadow_page');
  b.map(0x4000_1000, 0x80_0000, ALL); // PDPTE 1
  vm.setRegs(CR0, CR4_PAE, 0, b.cr3);
  vm.reload();
  const root = vm.roots().root!;
  assert.equal(root.decoded.pae_root, true);
  assert.equal(root.role, role(3, 7, ROLE_PAE_ROOT));
  assert.ok(root.spt_pfn < DMA32_END_PFN);
  const def = vm.roots().pae!;
  for (const e of def) {
    assert.equal(e.lo & 1, 1, 'present for the CPU');
    assert.equal(e.lo & 0x800, 0, 'not shadow-present');
    assert.equal(e.lo, def[0]!.lo, 'one default value');
  }
  assert.equal(vm.access(0x4000_1000), 1);
  const pd = vm.shadowPages().find((s) => (s.role & 0xf) === 2)!;
  assert.equal(pd.role, role(2, 7), 'same role as an upstream level-2 PAE root');
  assert.equal(pd.gfn, b.entryGpa(0x4000_1000, 2) >>> 12);
  assert.equal(pd.parent_count, 1);
  assert.equal(pd.root_count, 0);
  const e1 = vm.roots().pae![1]!;
  assert.equal(e1.lo, ((pd.spt_pfn * 4096) % 2 ** 32 | 1 | 0x800) >>> 0, 'child | P | SPTE_MMU_PRESENT (bit 11)');
  assert.equal(vm.roots().pae![0]!.lo, def[0]!.lo);
});

test('variant shadow_page: zapping a child restores the default PDPTE (drop_parent_pte)', () => {
  const { vm, b } = paeVm('shadow_page');
  b.map(0x1000, 0x80_0000, ALL);
  vm.setRegs(CR0, CR4_PAE, 0, b.cr3);
  vm.access(0x1000);
  const def = vm.roots().pae![1]!.lo;
  assert.notEqual(vm.roots().pae![0]!.lo, def);
  // Flood the PD shadow page with emulated writes through an alias mapping.
  const pdGpa = b.entryGpa(0x1000, 2) & ~0xfff;
  b.map(0x2000_0000, pdGpa, ALL);
  for (let i = 0; i < 3; i++) vm.guestWrite(0x2000_0000 + 400 * 8, 0, 0, 8);
  assert.equal(vm.stats().mmu_flooded, 1);
  assert.equal(vm.roots().pae![0]!.lo, def, 'default PDPTE written back');
  // The PT shadow page survived unlinked with its leaf: the refault relinks it and finds the SPTE.
  assert.equal(vm.access(0x1000), 1);
  assert.notEqual(vm.roots().pae![0]!.lo, def);
  assert.equal(vm.gvaToGpa(0x1000), 0x80_0000);
  void RET_PF_FIXED;
});

test('variant shadow_page, 2-level guest: level-2 children of the PAE root take quadrant = PDPTE index', () => {
  const vm = new ShadowVm({ mem_bytes: 128 << 20, pae_root: 'shadow_page', cr0: CR0, cr4: CR4_PSE, efer: 0 });
  const b = new GuestPageTableBuilder(vm.mem, 2, 0x10_0000);
  b.map(0xc000_3000, 0x80_0000, ALL);
  vm.setRegs(CR0, CR4_PSE, 0, b.cr3);
  vm.access(0xc000_3000);
  const l2 = vm.shadowPages().filter((s) => (s.role & 0xf) === 2);
  assert.equal(l2.length, 1);
  assert.equal(l2[0]!.gfn, b.cr3 / 4096);
  assert.equal(l2[0]!.role, role(2, 7, (1 << 4) | (3 << 5)), 'has_4_byte_gpte, quadrant 3');
});

test('variant shadow_page, CR0.PG=0: a direct PAE-root SP with lazily created direct level-2 children', () => {
  const vm = new ShadowVm({ mem_bytes: 2 * 2 ** 30, pae_root: 'shadow_page', cr0: 0x11, cr4: 0, efer: 0 });
  assert.equal(vm.access(0x4123_4000), 1);
  const l2 = vm.shadowPages().filter((s) => (s.role & 0xf) === 2);
  assert.equal(l2.length, 1);
  assert.equal(l2[0]!.gfn, 1 << 18);
  assert.equal(vm.gvaToGpa(0x4123_4000), 0x4123_4000);
});

test('report: the shadow_page variant caches PAE roots across CR3 switches', () => {
  const r = paeRootReport(6, 4);
  assert.equal(r.special.root_loads, 7, 'upstream rebuilds the special root after every switch');
  assert.equal(r.shadow_page.root_loads, 2, 'one load per process, then prev_roots hits');
  assert.equal(r.special.faults, r.shadow_page.faults);
  assert.equal(r.shadow_page.shadow_pages_created - r.special.shadow_pages_created, 2, 'one PAE-root SP per process');
});

test('special roots over a 2-level guest with a 4/5-level host root: pml4_root[0] -> pae_root with P|A|W|U', () => {
  for (const hl of [4, 5] as const) {
    const vm = new ShadowVm({ mem_bytes: 128 << 20, host_root_level: hl, cr0: CR0, cr4: CR4_PSE, efer: 0 });
    const b = new GuestPageTableBuilder(vm.mem, 2, 0x10_0000);
    b.map(0x4000_3000, 0x80_0000, ALL);
    vm.setRegs(CR0, CR4_PSE, 0, b.cr3);
    assert.equal(vm.access(0x4000_3000), 1);
    const sv = vm.sv;
    assert.equal(vm.roots().kind, hl === 4 ? 'pml4' : 'pml5');
    const pm = 1 | 0x20 | 2 | 4;
    assert.equal(sv.pml4_root![0], ((sv.pae_root_pfn * 4096) % 2 ** 32 | pm) >>> 0);
    if (hl === 5) assert.equal(sv.pml5_root![0], ((sv.pml4_root_pfn * 4096) % 2 ** 32 | pm) >>> 0);
    for (let i = 0; i < 4; i++) assert.equal(sv.pae_root![2 * i]! & 0xfff, pm, `pae_root[${i}] flags`);
    const l2 = vm.shadowPages().filter((s) => (s.role & 0xf) === 2);
    assert.deepEqual(l2.map((s) => (s.role >>> 5) & 3).sort(), [0, 1, 2, 3], 'quadrants 0-3');
    assert.equal(vm.gvaToGpa(0x4000_3000), 0x80_0000);
  }
});

test('MOV CR3 of the same PAE CR3 with a changed PDPTE: load_pdptrs frees the special root; variant shadow_page revalidates its links', () => {
  for (const variant of ['special', 'shadow_page'] as const) {
    const { vm, b } = paeVm(variant);
    b.map(0x4000_1000, 0x100_0000, ALL);
    vm.setRegs(CR0, CR4_PAE, 0, b.cr3);
    vm.access(0x4000_1000);
    assert.equal(vm.gvaToGpa(0x4000_1000), 0x100_0000);
    // The guest points PDPTE 1 at another page directory, then reloads the same CR3.
    const other = new GuestPageTableBuilder(vm.mem, 3, 0x40_0000);
    other.map(0x4000_1000, 0x200_0000, ALL);
    vm.mem.write64(b.cr3 + 8, vm.mem.read64lo(other.cr3 + 8), vm.mem.read64hi(other.cr3 + 8));
    const loads = vm.sk.counters.root_loads;
    assert.equal(vm.loadCr3(b.cr3), true);
    vm.access(0x4000_1000);
    assert.equal(vm.gvaToGpa(0x4000_1000), 0x200_0000, `${variant}: no stale PDPTE link`);
    assert.equal(vm.sk.counters.root_loads - loads, variant === 'special' ? 1 : 0);
  }
});
