/**
 * Property test: random guest activity on a 4-level shadow-paging VM (accesses, gPTE rewrites through
 * emulated writes to aliases of the guest tables, INVLPG, CR3 reloads, zap-all, notifier invalidation)
 * keeps the shadow MMU's bookkeeping consistent, and after a flushing CR3 load every shadow leaf agrees
 * with the guest's own translation and never grants more than the guest does.
 *
 * Invariants (kvm-x86-mmu.md 2, 4.8, 4.9): rmaps hold exactly the present leaf SPTEs of each gfn;
 * parent_ptes hold exactly the SPTEs linking each SP; unsync_children = bits set in the bitmap; upper
 * guest tables are write-tracked once per valid SP with gPTEs; n_used_mmu_pages counts live SPs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ShadowVm, GuestPageTableBuilder, GPTE_P, GPTE_W, GPTE_U, GPTE_A, GPTE_D } from '../../../../src/engine/x86/shadow_vm';
import { gfn_rmap_entries, kvm_mmu_page_get_gfn, ROLE_PAE_ROOT, type ShadowMmu } from '../../../../src/engine/x86/shadow_mmu';
import { is_obsolete_sp } from '../../../../src/engine/x86/mmu';
import { pte_list_entries } from '../../../../src/engine/x86/rmap';
import type { KvmMmuPage } from '../../../../src/engine/x86/mmu_page';

const ALL = GPTE_P | GPTE_W | GPTE_U | GPTE_A | GPTE_D;
const NG = 24;
const gvaOf = (i: number) => 0x4000_0000 + (i % 8) * 0x1000 + Math.floor(i / 8) * 0x20_0000;
const ALIAS = 0x7000_0000;

function spsOf(sk: ShadowMmu): KvmMmuPage[] {
  const out: KvmMmuPage[] = [];
  for (let sp = sk.active_head; sp !== null; sp = sp.link_next) out.push(sp);
  // Zapped roots leave the active list but stay accounted while a vCPU (current or prev_roots) holds them.
  for (const v of sk.vcpus) {
    const held: Array<KvmMmuPage | null | undefined> = [v.root_sp, ...v.prev_roots.map((p) => p.sp)];
    // Level-2 roots referenced by the special PAE root.
    if (v.pae_root !== null) for (let i = 0; i < 4; i++) if ((v.pae_root[2 * i]! & 1) !== 0) held.push(sk.sp_of_pfn(Math.floor(((v.pae_root[2 * i + 1]! & 0xfffff) * 2 ** 32 + v.pae_root[2 * i]!) / 4096)));
    for (const r of held) if (r !== null && r !== undefined && !out.includes(r)) out.push(r);
  }
  return out;
}

function checkInvariants(vm: ShadowVm): void {
  const sk = vm.sk;
  const sps = spsOf(sk);
  assert.equal(sk.kvm.arch.n_used_mmu_pages, sps.length, 'n_used_mmu_pages');
  const parents = new Map<KvmMmuPage, number[]>();
  const leafByGfn = new Map<number, number[]>();
  const tracked = new Map<number, number>();
  for (const sp of sps) {
    const level = sp.role & 0xf;
    let bits = 0;
    if (sp.unsync_child_bitmap !== null) for (const w of sp.unsync_child_bitmap) for (let x = w; x !== 0; x &= x - 1) bits++;
    assert.equal(sp.unsync_children, bits, 'unsync_children = popcount(bitmap)');
    if (sp.unsync) assert.equal(level, 1, 'only 4K pages are unsync');
    if ((sp.role & (0x800 | 0x80 | ROLE_PAE_ROOT)) === 0 && level > 1) tracked.set(sp.gfn, (tracked.get(sp.gfn) ?? 0) + 1);
    for (let i = 0; i < 512; i++) {
      const lo = sp.spt[2 * i]!;
      if ((lo & 0x800) === 0) continue;
      const sptep = sp.spt_pfn * 512 + i;
      if (level === 1 || (lo & 0x80) !== 0) {
        const gfn = kvm_mmu_page_get_gfn(sp, i) + (level === 1 ? 0 : 0);
        const key = gfn * 4 + level;
        if (!leafByGfn.has(key)) leafByGfn.set(key, []);
        leafByGfn.get(key)!.push(sptep);
      } else {
        const child = sk.sp_of_pfn(Math.floor(((sp.spt[2 * i + 1]! & 0xfffff) * 2 ** 32 + lo) / 4096) & ~0)!;
        assert.ok(child !== undefined, 'non-leaf SPTE points at a live SP');
        if (!parents.has(child)) parents.set(child, []);
        parents.get(child)!.push(sptep);
      }
    }
  }
  for (const sp of sps) {
    const want = (parents.get(sp) ?? []).sort((a, b) => a - b);
    assert.deepEqual(pte_list_entries(sk.desc_pool, sp.parent_ptes).sort((a, b) => a - b), want, 'parent_ptes');
  }
  for (const [key, list] of leafByGfn) {
    const gfn = Math.floor(key / 4);
    const level = key % 4;
    assert.deepEqual(gfn_rmap_entries(sk, vm.slot, gfn, level).sort((a, b) => a - b), list.sort((a, b) => a - b), `rmap of gfn ${gfn} level ${level}`);
  }
  for (const [gfn, n] of tracked) assert.equal(sk.write_track.get(gfn), n, `write_track of ${gfn}`);
  assert.equal([...sk.write_track.values()].reduce((a, b) => a + b, 0), [...tracked.values()].reduce((a, b) => a + b, 0));
  for (const sp of sps) if (!is_obsolete_sp(sk.kvm, sp)) assert.equal(sp.mmu_valid_gen, sk.kvm.arch.mmu_valid_gen);
}

/** The guest's own walk (no A/D updates) for 2-, 3- (PAE) or 4-level tables: gpa and effective W/U/NX, or null. */
function guestWalk(vm: ShadowVm, levels: number, cr3: number, gva: number): { gpa: number; w: boolean; u: boolean; nx: boolean; d: boolean } | null {
  let table = cr3;
  let w = true, u = true, nx = false;
  const e = new Uint32Array(2);
  const size = levels === 2 ? 4 : 8;
  let level = levels;
  if (levels === 3) {
    vm.mem.readEntry(cr3 + Math.floor(gva / 2 ** 30) * 8, 8, e);
    if ((e[0]! & 1) === 0) return null;
    table = ((e[0]! & ~0xfff) >>> 0) + (e[1]! & 0xfffff) * 2 ** 32;
    level = 2;
  }
  for (; level >= 1; level--) {
    const idx = size === 4 ? Math.floor(gva / 2 ** (12 + 10 * (level - 1))) % 1024 : Math.floor(gva / 2 ** (12 + 9 * (level - 1))) % 512;
    vm.mem.readEntry(table + idx * size, size, e);
    const lo = e[0]!, hi = size === 4 ? 0 : e[1]!;
    if ((lo & 1) === 0) return null;
    w &&= (lo & 2) !== 0;
    u &&= (lo & 4) !== 0;
    nx ||= (hi & 0x8000_0000) !== 0;
    const addr = ((lo & ~0xfff) >>> 0) + (hi & 0xfffff) * 2 ** 32;
    if (level === 1) return { gpa: addr, w, u, nx, d: (lo & 0x40) !== 0 };
    table = addr;
  }
  return null;
}

for (const [levels, pae] of [[2, 'special'], [2, 'shadow_page'], [3, 'special'], [3, 'shadow_page'], [4, 'special']] as const) test(`property (${levels}-level guest, pae_root=${pae}): random guest activity keeps shadow MMU invariants; after a flushing CR3 load shadows agree with the guest`, () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('access' as const), i: fc.nat(NG - 1), w: fc.boolean(), u: fc.boolean() }),
    fc.record({ k: fc.constant('rewrite' as const), i: fc.nat(NG - 1), frame: fc.nat(31), flags: fc.constantFrom(ALL, GPTE_P | GPTE_A, GPTE_P | GPTE_W | GPTE_A, GPTE_P | GPTE_U | GPTE_A | GPTE_D, 0), nx: fc.boolean() }),
    fc.record({ k: fc.constant('invlpg' as const), i: fc.nat(NG - 1) }),
    fc.record({ k: fc.constant('cr3' as const) }),
    fc.record({ k: fc.constant('zap' as const) }),
    fc.record({ k: fc.constant('notify' as const), frame: fc.nat(31) }),
    fc.record({ k: fc.constant('alias_access' as const), t: fc.nat(7) }),
  );
  fc.assert(
    fc.property(fc.array(op, { minLength: 10, maxLength: 60 }), (ops) => {
      const cr4 = levels === 2 ? 0x10 : 0x30;
      const efer = levels === 4 ? 0x500 | 0x800 : levels === 3 ? 0x800 : 0;
      const vm = new ShadowVm({ mem_bytes: 64 << 20, cr4, efer, pae_root: pae });
      const b = new GuestPageTableBuilder(vm.mem, levels, 0x10_0000);
      for (let i = 0; i < NG; i++) b.map(gvaOf(i), 0x100_0000 + (i % 32) * 0x1000, ALL);
      // Aliases of every guest table page so the guest can rewrite its own PTEs.
      const tables: number[] = [];
      for (let p = 0x10_0000; p < 0x10_0000 + 16 * 4096; p += 4096) tables.push(p);
      tables.forEach((p, t) => b.map(ALIAS + t * 0x1000, p, ALL));
      vm.setRegs(vm.cr0, cr4, efer, b.cr3);
      const pteGpa = (i: number) => b.entryGpa(gvaOf(i), 1, false);
      for (const o of ops) {
        switch (o.k) {
          case 'access':
            vm.access(gvaOf(o.i), o.w, o.u, false);
            break;
          case 'rewrite': {
            const g = pteGpa(o.i);
            const t = tables.indexOf(g & ~0xfff);
            const lo = (0x100_0000 + o.frame * 0x1000) | o.flags;
            vm.guestWrite(ALIAS + t * 0x1000 + (g & 0xfff), lo >>> 0, o.nx && levels > 2 ? 0x8000_0000 : 0, levels === 2 ? 4 : 8);
            break;
          }
          case 'invlpg':
            vm.invlpg(gvaOf(o.i));
            break;
          case 'cr3':
            vm.loadCr3(b.cr3);
            break;
          case 'zap':
            vm.zapAll();
            break;
          case 'notify':
            vm.notifierInvalidate(0x1000 + o.frame, 0x1000 + o.frame + 1);
            break;
          case 'alias_access':
            vm.access(ALIAS + o.t * 0x1000, false, false, false);
            break;
        }
        checkInvariants(vm);
      }
      vm.loadCr3(b.cr3);
      vm.reload();
      checkInvariants(vm);
      for (let i = 0; i < NG; i++) {
        const leaf = vm.translate(gvaOf(i));
        if (leaf === null) continue;
        const g = guestWalk(vm, levels, b.cr3, gvaOf(i));
        assert.ok(g !== null, 'no shadow leaf without a guest mapping');
        assert.equal(vm.gvaToGpa(gvaOf(i)), g.gpa, 'same frame as the guest');
        if ((leaf.lo & 2) !== 0) assert.ok(g.w && g.d, 'writable only if the guest allows it and D is set');
        if ((leaf.lo & 4) !== 0) assert.ok(g.u, 'user only if the guest allows it');
        if (g.nx) assert.ok((leaf.hi & 0x8000_0000) !== 0, 'guest NX is kept');
      }
    }),
    { numRuns: 70 },
  );
});
