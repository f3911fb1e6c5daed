/**
 * Exhaustive permission matrix in the style of kvm-unit-tests x86/access.c: entry flags at the leaf and
 * the level above x CR0.WP x CR4.SMEP/SMAP/PKE x EFER.NXE x user/supervisor x read/write/fetch x
 * EFLAGS.AC x implicit access x PKRU.
 *
 * The expectation is an independent, table-free statement of the SDM rules (Vol. 3 4.6 access rights,
 * 4.7 page-fault error code) as KVM implements them (implicit supervisor accesses never get the AC
 * override), written below without calling the walker or the permission tables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createGuestMmu,
  GuestWalker,
  ListGuestPageTables,
  walk_addr_generic,
  type GuestPagingRegs,
} from '../../../../src/engine/x86/paging_tmpl';

// Entry bits (SDM Vol. 3 Table 4-19/4-20).
const P = 1;
const W = 2;
const U = 4;
const A = 0x20;
const D = 0x40;
const NX_HI = 0x8000_0000;
// #PF error code bits (SDM 4.7).
const EC_P = 1;
const EC_W = 2;
const EC_U = 4;
const EC_RSVD = 8;
const EC_F = 0x10;
const EC_PK = 0x20;

type Mode = 'long4' | 'long5' | 'pae' | '32';
type Access = 'read' | 'write' | 'fetch';

interface Case {
  mode: Mode;
  /** Flags of the leaf PTE and of the PDE above it: bit 0 P, 1 W, 2 U, 3 NX. */
  pte: number;
  pde: number;
  wp: boolean;
  smep: boolean;
  smap: boolean;
  pke: boolean;
  nx: boolean;
  user: boolean;
  access: Access;
  ac: boolean;
  implicit: boolean;
  /** PKRU AD1 / WD1 for the leaf's key 1. */
  ad1: boolean;
  wd1: boolean;
}

interface Expect {
  fault: boolean;
  errorCode: number;
}

/** The rules, level by level then on the combined rights. */
function sdmExpect(c: Case): Expect {
  const longMode = c.mode === 'long4' || c.mode === 'long5';
  const hasNxBit = c.mode !== '32'; // 4-byte entries have no bit 63
  const accessBits = (c.access === 'write' ? EC_W : 0) | (c.user ? EC_U : 0);
  // I/D is reported only when EFER.NXE or CR4.SMEP is on. (The SDM asks for PAE paging as well as NXE;
  // KVM's walker keys on EFER.NXE alone, so a 2-level guest with NXE=1 sees F too. We model KVM.)
  const fetchBit = c.access === 'fetch' && (c.nx || c.smep) ? EC_F : 0;
  // Upper levels above the PDE are P|W|U (as access.c sets them); only the PDE and PTE vary.
  for (const flags of [c.pde, c.pte]) {
    if (!(flags & 1)) return { fault: true, errorCode: accessBits | fetchBit };
    if (hasNxBit && flags & 8 && !c.nx) return { fault: true, errorCode: EC_P | EC_RSVD | accessBits | fetchBit };
  }
  const writable = (c.pde & 2) !== 0 && (c.pte & 2) !== 0;
  const userPage = (c.pde & 4) !== 0 && (c.pte & 4) !== 0;
  const executable = !(hasNxBit && c.nx && ((c.pde & 8) !== 0 || (c.pte & 8) !== 0));
  let fault = false;
  if (c.user) {
    if (!userPage) fault = true;
    if (c.access === 'write' && !writable) fault = true;
    if (c.access === 'fetch' && !executable) fault = true;
  } else {
    if (c.access === 'write' && !writable && c.wp) fault = true;
    if (c.access === 'fetch') {
      if (!executable) fault = true;
      if (userPage && c.smep) fault = true;
    } else if (userPage && c.smap) {
      // Explicit supervisor data accesses may use EFLAGS.AC=1 to reach user pages; implicit ones never.
      const acOverride = c.ac && !c.implicit;
      if (!acOverride) fault = true;
    }
  }
  let pk = false;
  if (longMode && c.pke && userPage && c.access !== 'fetch') {
    if (c.ad1) pk = true;
    else if (c.access === 'write' && c.wd1 && (c.user || c.wp)) pk = true;
  }
  if (pk) return { fault: true, errorCode: EC_P | EC_PK | accessBits | fetchBit };
  if (fault) return { fault: true, errorCode: EC_P | accessBits | fetchBit };
  return { fault: false, errorCode: 0 };
}

function entry(flags: number, key: number, frame: number, mode: Mode): { lo: number; hi: number } {
  const lo = ((frame << 12) | (flags & 1 ? P : 0) | (flags & 2 ? W : 0) | (flags & 4 ? U : 0)) >>> 0;
  if (mode === '32') return { lo, hi: 0 };
  // Protection keys exist only in long mode; in PAE bits 62:52 are reserved.
  return { lo, hi: ((flags & 8 ? NX_HI : 0) | (mode === 'long4' || mode === 'long5' ? key << 27 : 0)) >>> 0 };
}

const walker = new GuestWalker();

function runCase(c: Case): { fault: boolean; errorCode: number; entries: Uint32Array; list: ListGuestPageTables } {
  const regs: GuestPagingRegs = {
    cr0_pg: true,
    cr0_wp: c.wp,
    cr4_pae: c.mode !== '32',
    cr4_pse: true,
    cr4_smep: c.smep,
    cr4_smap: c.smap,
    cr4_pke: c.pke,
    cr4_la57: c.mode === 'long5',
    efer_lma: c.mode === 'long4' || c.mode === 'long5',
    efer_nx: c.nx,
  };
  const mmu = createGuestMmu(regs, { maxphyaddr: 46, gbpages: true, pse36: true, amd: false });
  const upper = { lo: 0x0000_2000 | P | W | U, hi: 0 };
  const list: Array<{ lo: number; hi: number }> = [];
  if (c.mode === 'long5') list.push(upper);
  if (c.mode === 'long4' || c.mode === 'long5') list.push(upper, upper);
  if (c.mode === 'pae') list.push({ lo: 0x0000_3000 | P, hi: 0 }); // PDPTE: P only (W/U are reserved there)
  list.push(entry(c.pde, 2, 0x4, c.mode), entry(c.pte, 1, 0x5, c.mode));
  const src = new ListGuestPageTables(list);
  const pkru = 0x30 | (c.wd1 ? 8 : 0) | (c.ad1 ? 4 : 0); // key 2 (non-leaf) fully denied: must not matter
  const accessLo = (c.access === 'write' ? EC_W : 0) | (c.user ? EC_U : 0) | (c.access === 'fetch' ? EC_F : 0);
  const accessHi = c.implicit ? 1 << 16 : 0; // PFERR_IMPLICIT_ACCESS = bit 48
  const r = walk_addr_generic(walker, { vcpu_id: 0, rflags: c.ac ? 1 << 18 : 0, pkru }, mmu, src, 0x2345_6000, 0x0000_7fff, accessLo, accessHi);
  return { fault: r === 0, errorCode: walker.error_code, entries: src.entries, list: src };
}

function* cases(mode: Mode): Generator<Case> {
  const flagCount = mode === '32' ? 8 : 16;
  for (let pte = 0; pte < flagCount; pte++)
    for (let pde = 0; pde < flagCount; pde++)
      for (const wp of [false, true])
        for (const smep of [false, true])
          for (const smap of [false, true])
            for (const nx of [false, true])
              for (const pke of mode === 'long4' || mode === 'long5' ? [false, true] : [false])
                for (const [ad1, wd1] of pke ? [[false, false], [true, false], [false, true], [true, true]] : [[false, false]])
                  for (const user of [false, true])
                    for (const access of ['read', 'write', 'fetch'] as const)
                      for (const ac of [false, true])
                        for (const implicit of user ? [false] : [false, true])
                          yield { mode, pte, pde, wp, smep, smap, pke, nx, user, access, ac, implicit, ad1: ad1!, wd1: wd1! };
}

function describe(c: Case): string {
  return JSON.stringify(c);
}

for (const mode of ['long4', 'long5', 'pae', '32'] as const) {
  test(`access matrix (${mode}): fault and exact error code match the SDM rules; A/D only when permitted`, () => {
    let n = 0;
    let faults = 0;
    for (const c of cases(mode)) {
      n++;
      const exp = sdmExpect(c);
      const got = runCase(c);
      if (got.fault !== exp.fault || (exp.fault && got.errorCode !== exp.errorCode)) {
        assert.fail(`${describe(c)}: expected fault=${exp.fault} ec=0x${exp.errorCode.toString(16)}, got fault=${got.fault} ec=0x${got.errorCode.toString(16)}`);
      }
      const e = got.entries;
      const nEntries = e.length / 2;
      const firstWalked = mode === 'pae' ? 1 : 0; // the PDPTR is never given an A bit
      if (exp.fault) {
        faults++;
        for (let i = firstWalked; i < nEntries; i++) {
          if (e[2 * i]! & (A | D)) assert.fail(`${describe(c)}: faulting walk wrote A/D into entry ${i}`);
        }
      } else {
        for (let i = firstWalked; i < nEntries; i++) {
          if (!(e[2 * i]! & A)) assert.fail(`${describe(c)}: entry ${i} did not get A`);
          const isLeaf = i === nEntries - 1;
          const wantD = isLeaf && c.access === 'write';
          if (((e[2 * i]! & D) !== 0) !== wantD) assert.fail(`${describe(c)}: entry ${i} D=${(e[2 * i]! & D) !== 0}, want ${wantD}`);
        }
        if (mode === 'pae' && e[0]! & (A | D)) assert.fail(`${describe(c)}: PDPTR was modified`);
      }
    }
    // The matrix must really exercise both outcomes.
    assert.ok(n > 1000 && faults > 0 && faults < n, `n=${n} faults=${faults}`);
  });
}

test('EPT matrix: XWR of the PDE and PTE x read/write/fetch x exec-only capability (nested EPT walk)', async () => {
  const { createGuestEptMmu } = await import('../../../../src/engine/x86/paging_tmpl');
  let n = 0;
  for (const execonly of [false, true]) {
    const mmu = createGuestEptMmu({ level: 4, execonly, huge_page_level: 3, accessed_dirty: true, maxphyaddr: 46 });
    for (let pde = 0; pde < 8; pde++)
      for (let pte = 0; pte < 8; pte++)
        for (const access of ['read', 'write', 'fetch'] as const) {
          n++;
          // Expected, from the SDM's EPT rules as KVM applies them to L1's tables.
          const accBits = access === 'write' ? 2 : access === 'read' ? 4 : 0; // KVM encodes an EPT read as PFERR_USER
          const qualAcc = access === 'read' ? 1 : access === 'write' ? 2 : 4;
          const misconfig = (x: number) => x === 2 || x === 6 || (x === 4 && !execonly);
          let exp: { fault: boolean; ec: number; qual: number };
          if (pde === 0) exp = { fault: true, ec: accBits, qual: qualAcc };
          else if (misconfig(pde)) exp = { fault: true, ec: 1 | 8 | accBits, qual: 0 };
          else if (pte === 0) exp = { fault: true, ec: accBits, qual: qualAcc };
          else if (misconfig(pte)) exp = { fault: true, ec: 1 | 8 | accBits, qual: 0 };
          else {
            const eff = 7 & pde & pte; // the upper two levels are RWX
            const need = access === 'read' ? 1 : access === 'write' ? 2 : 4;
            exp = eff & need ? { fault: false, ec: 0, qual: 0 } : { fault: true, ec: 1 | accBits, qual: qualAcc | (eff << 3) };
          }
          const src = new ListGuestPageTables([
            { lo: 0x2007, hi: 0 },
            { lo: 0x3007, hi: 0 },
            { lo: 0x4000 | pde, hi: 0 },
            { lo: 0x5030 | pte, hi: 0 }, // WB
          ]);
          const w = new GuestWalker();
          const r = walk_addr_generic(w, { vcpu_id: 0, rflags: 0, pkru: 0 }, mmu, src, 0x23456000, 1, access === 'write' ? 2 : access === 'read' ? 4 : 0x10);
          const what = `execonly=${execonly} pde=${pde} pte=${pte} ${access}`;
          assert.equal(r === 0, exp.fault, what);
          if (exp.fault) {
            assert.equal(w.error_code, exp.ec, `${what}: error code`);
            assert.equal(w.exit_qualification, exp.qual, `${what}: exit qualification`);
          }
        }
  }
  assert.equal(n, 2 * 8 * 8 * 3);
});
