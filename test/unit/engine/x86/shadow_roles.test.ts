/**
 * Shadow pages created by the shadow-paging fault path for each guest paging mode. Expected role words
 * are assembled from the bit layout of union kvm_mmu_page_role (kvm-x86-mmu.md 1.1) and the role rules
 * (1.3, B7): root level max(guest level, 3), EFER.NX forced to 1 in the root role, children take
 * level - 1 and the guest's accumulated access, 4-byte-gPTE children get quadrant = parent index & 1,
 * PAE roots of a 2-level guest get quadrant i, guest huge pages below the guest leaf are direct.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { RET_PF_FIXED, RET_PF_RETRY } from '../../../../src/engine/x86/ret_pf';
import { DMA32_END_PFN } from '../../../../src/engine/mem/host_memory';

const CR0_PE = 1, CR0_ET = 0x10, CR0_WP = 1 << 16, CR0_PG = 1 << 31;
const CR4_PSE = 1 << 4, CR4_PAE = 1 << 5, CR4_LA57 = 1 << 12;
const EFER_LME = 1 << 8, EFER_LMA = 1 << 10, EFER_NX = 1 << 11;
const CR0 = (CR0_PE | CR0_ET | CR0_WP | CR0_PG) >>> 0;

/** role word from fields (bit layout of kvm_mmu_page_role). */
function role(f: { level: number; has4?: boolean; quadrant?: number; direct?: boolean; access: number; nx?: boolean; wp?: boolean }): number {
  return (
    (f.level |
      ((f.has4 ? 1 : 0) << 4) |
      ((f.quadrant ?? 0) << 5) |
      ((f.direct ? 1 : 0) << 7) |
      (f.access << 8) |
      ((f.nx ?? true ? 1 : 0) << 12) |
      ((f.wp ?? true ? 1 : 0) << 13)) >>>
    0
  );
}

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const ACC_X = 1, ACC_W = 2, ACC_U = 4, ACC_ALL = 7;

function setup(levels: 2 | 3 | 4 | 5, opts: { nx?: boolean } = {}) {
  const cr4 = levels === 2 ? CR4_PSE : levels === 5 ? CR4_PAE | CR4_LA57 | CR4_PSE : CR4_PAE | CR4_PSE;
  const efer = (levels >= 4 ? EFER_LME | EFER_LMA : 0) | (opts.nx ? EFER_NX : 0);
  const vm = new ShadowVm({ mem_bytes: 256 << 20, cr0: CR0, cr4, efer, cr3: 0 });
  const b = new GuestPageTableBuilder(vm.mem, levels, 0x10_0000);
  vm.setRegs(CR0, cr4, efer, b.cr3);
  return { vm, b };
}

function sps(vm: ShadowVm) {
  return vm.shadowPages().map((s) => ({ gfn: s.gfn, role: s.role }));
}

test('4-level guest: root, PDPT, PD and PT shadow pages with guest gfns and inherited access', () => {
  const { vm, b } = setup(4);
  const gva = 0x40_0000 + 0x5000;
  b.map(gva, 0x200_0000, ALL);
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const pml4 = b.cr3 / 4096;
  const pdpt = b.entryGpa(gva, 3) >>> 12;
  const pd = b.entryGpa(gva, 2) >>> 12;
  const pt = b.entryGpa(gva, 1) >>> 12;
  // Newest first on the active list. Guest EFER.NX=0 but the root role forces efer_nx.
  assert.deepEqual(sps(vm), [
    { gfn: pt, role: role({ level: 1, access: ACC_ALL }) },
    { gfn: pd, role: role({ level: 2, access: ACC_ALL }) },
    { gfn: pdpt, role: role({ level: 3, access: ACC_ALL }) },
    { gfn: pml4, role: role({ level: 4, access: ACC_ALL }) },
  ]);
  const leaf = vm.translate(gva)!;
  assert.equal(leaf.level, 1);
  assert.equal(vm.gvaToGpa(gva), 0x200_0000);
  assert.equal(vm.roots().kind, 'sp');
  assert.equal(vm.roots().root!.root_count, 1);
});

test('access accumulates down the walk: a read-only supervisor PDE gives children access x only', () => {
  const { vm, b } = setup(4);
  const gva = 0x80_0000;
  b.map(gva, 0x300_0000, ALL);
  const pde = b.entryGpa(gva, 2);
  b.write(pde, (vm.mem.page(pde >>> 12)[(pde & 0xfff) / 4]! & ~(GPTE_W | GPTE_U)) >>> 0, 0);
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const pt = sps(vm)[0]!;
  assert.equal(pt.role, role({ level: 1, access: ACC_X }), 'PT shadow page role.access = pt_access below the PDE');
  void ACC_W;
});

test('5-level guest: a level-5 root', () => {
  const { vm, b } = setup(5);
  const gva = 0x1234_5000;
  b.map(gva, 0x10_0000 * 3, ALL);
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const levels = sps(vm).map((s) => s.role & 0xf);
  assert.deepEqual(levels, [1, 2, 3, 4, 5]);
  assert.equal(vm.roots().root!.gfn, b.cr3 / 4096);
  assert.equal(vm.roots().root!.role, role({ level: 5, access: ACC_ALL }));
});

test('PAE guest: four PAE roots from the PDPTEs, non-present PDPTEs stay INVALID_PAE_ROOT, pae_root below 4 GiB', () => {
  const { vm, b } = setup(3);
  const gva = 0x4000_0000 + 0x20_3000; // PDPTE 1
  b.map(gva, 0x80_0000, ALL);
  vm.setRegs(CR0, CR4_PAE, 0, b.cr3); // reload PDPTRs after building
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const r = vm.roots();
  assert.equal(r.kind, 'pae');
  assert.ok(r.pae_root_pfn > 0 && r.pae_root_pfn < DMA32_END_PFN, 'the PDPT page sits below 4 GiB');
  assert.equal(r.pae![0]!.lo, 0);
  assert.equal(r.pae![2]!.lo, 0);
  assert.equal(r.pae![3]!.lo, 0);
  assert.equal(r.pae![1]!.lo & 1, 1);
  const pd = b.entryGpa(gva, 2) >>> 12;
  const pt = b.entryGpa(gva, 1) >>> 12;
  const list = sps(vm);
  assert.deepEqual(list, [
    { gfn: pt, role: role({ level: 1, access: ACC_ALL }) },
    { gfn: pd, role: role({ level: 2, access: ACC_ALL }) },
  ]);
  assert.equal(vm.shadowPages()[1]!.root_count, 1, 'the level-2 root is referenced by pae_root[1]');
});

test('2-level guest: PAE roots for CR3 with quadrants 0-3; PT shadow pages take quadrant = PDE index & 1', () => {
  const { vm, b } = setup(2);
  // gva in the third GiB (PAE root 2); the guest PDE index is gva >> 22; the shadow PDE index (gva >> 21) & 511.
  const gva = 0x8000_0000 + 0x60_0000 + 0x1000; // bit 21 set -> odd shadow PDE
  b.map(gva, 0x50_0000, ALL);
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const cr3gfn = b.cr3 / 4096;
  const ptgfn = b.entryGpa(gva, 1) >>> 12;
  const list = sps(vm);
  assert.deepEqual(list, [
    { gfn: ptgfn, role: role({ level: 1, has4: true, quadrant: 1, access: ACC_ALL }) },
    { gfn: cr3gfn, role: role({ level: 2, has4: true, quadrant: 3, access: ACC_ALL }) },
    { gfn: cr3gfn, role: role({ level: 2, has4: true, quadrant: 2, access: ACC_ALL }) },
    { gfn: cr3gfn, role: role({ level: 2, has4: true, quadrant: 1, access: ACC_ALL }) },
    { gfn: cr3gfn, role: role({ level: 2, has4: true, quadrant: 0, access: ACC_ALL }) },
  ]);
  // The other 2 MiB half of the same guest PT: same gfn, quadrant 0.
  const gva2 = 0x8000_0000 + 0x40_0000 + 0x1000;
  b.map(gva2, 0x51_0000, ALL);
  assert.equal(vm.fault(gva2, 0), RET_PF_FIXED);
  assert.deepEqual(sps(vm)[0], { gfn: ptgfn, role: role({ level: 1, has4: true, quadrant: 0, access: ACC_ALL }) });
});

test('2-level guest 4 MiB page: a direct level-1 child (has_4_byte_gpte and quadrant inherited) for the 2 MiB half', () => {
  const { vm, b } = setup(2);
  const gva = 0x40_0000 * 5 + 0x20_0000 + 0x3000; // upper 2 MiB half of a 4 MiB page
  b.map(gva - (gva % 0x40_0000), 0x80_0000, ALL, 2);
  assert.equal(vm.fault(gva, 0), RET_PF_FIXED);
  const top = sps(vm)[0]!;
  // Host backing is 4K, so the 2M shadow level is split into a direct PT.
  assert.equal(top.role, role({ level: 1, has4: true, quadrant: 1, direct: true, access: ACC_ALL }));
  assert.equal(top.gfn, (0x80_0000 + 0x20_0000) / 4096, 'direct SP gfn = start of the 2 MiB frame region');
  assert.equal(vm.gvaToGpa(gva), 0x80_0000 + 0x20_3000);
});

test('reuse by role: a second mapping under the same tables creates no shadow page; a different access does', () => {
  const { vm, b } = setup(4);
  b.map(0x1000, 0x10_0000 * 8, ALL);
  b.map(0x2000, 0x10_0000 * 8 + 0x1000, ALL);
  vm.fault(0x1000, 0);
  const n = vm.shadowPages().length;
  const miss = vm.stats().mmu_cache_miss!;
  vm.fault(0x2000, 0);
  // Prefetch may already have mapped it; either way no new shadow page.
  assert.equal(vm.shadowPages().length, n);
  assert.equal(vm.stats().mmu_cache_miss, miss);
  // A second guest PDE pointing at the same PT but read-only: same gfn, different role.access.
  const pt = b.entryGpa(0x1000, 1) & ~0xfff;
  const pde2 = b.entryGpa(0x20_0000 * 7, 2);
  b.write(pde2, (pt | GPTE_P | GPTE_U | GPTE_A) >>> 0, 0);
  assert.equal(vm.fault(0x20_0000 * 7 + 0x1000, 0), RET_PF_FIXED);
  const pts = sps(vm).filter((s) => s.gfn === pt / 4096);
  assert.deepEqual(pts.map((s) => s.role).sort((x, y) => x - y), [role({ level: 1, access: ACC_X | ACC_U }), role({ level: 1, access: ACC_ALL })].sort((x, y) => x - y));
  void RET_PF_RETRY;
});

test('CR0.PG=0: direct PAE roots for gfn i << 18 and direct children', () => {
  const vm = new ShadowVm({ mem_bytes: 64 << 20, cr0: CR0_PE | CR0_ET, cr4: 0, efer: 0, cr3: 0 });
  assert.equal(vm.fault(0x12_3000, 0), RET_PF_FIXED);
  const r = vm.roots();
  assert.equal(r.kind, 'pae');
  // Roots: four level-2 direct roots at gfn 0, 1<<18, 2<<18, 3<<18; nonpaging role has no wp/smep bits.
  const list = sps(vm);
  const roots = list.filter((s) => (s.role & 0xf) === 2).map((s) => s.gfn).sort((a, b) => a - b);
  assert.deepEqual(roots, [0, 1 << 18, 2 << 18, 3 << 18]);
  const rootRole = role({ level: 2, direct: true, access: ACC_ALL, wp: false });
  for (const s of list.filter((s) => (s.role & 0xf) === 2)) assert.equal(s.role, rootRole);
  assert.deepEqual(list[0], { gfn: 0, role: role({ level: 1, direct: true, access: ACC_ALL, wp: false }) });
  assert.equal(vm.gvaToGpa(0x12_3000), 0x12_3000);
});
