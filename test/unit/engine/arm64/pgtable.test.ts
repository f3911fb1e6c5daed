import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  KVM_PGTABLE_WALK_HANDLE_FAULT,
  KVM_PGTABLE_WALK_SHARED,
  KvmPgtable,
  type KvmPgtableOptions,
  kvm_pgtable_get_leaf,
  kvm_pgtable_stage2_annotate,
  kvm_pgtable_stage2_map,
  kvm_pgtable_stage2_mkold,
  kvm_pgtable_stage2_mkyoung,
  kvm_pgtable_stage2_relax_perms,
  kvm_pgtable_stage2_set_owner,
  kvm_pgtable_stage2_split,
  kvm_pgtable_stage2_test_clear_young,
  kvm_pgtable_stage2_unmap,
  kvm_pgtable_stage2_wrprotect,
  kvm_pgtable_stage2_destroy,
  kvm_pgtable_stage2_flush,
  kvm_pgtable_walk,
  kvm_pte_table,
  stage2DescriptorAt,
} from '../../../../src/engine/arm64/pgtable';
import { KvmMmuMemoryCache, kvm_mmu_topup_memory_cache } from '../../../../src/engine/arm64/page_alloc';
import {
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_RW,
  KVM_PGTABLE_PROT_RWX,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  KVM_PGTABLE_PROT_DEVICE,
} from '../../../../src/engine/arm64/pgtable_desc';

const K4 = 4096;
const M2 = 2 * 1024 * 1024;
const G1 = 1024 * 1024 * 1024;
const EAGAIN = -11;
const EINVAL = -22;
const ENOMEM = -12;
const ERANGE = -34;

function mk(o: Partial<KvmPgtableOptions> = {}): { pgt: KvmPgtable; mc: KvmMmuMemoryCache } {
  const pgt = new KvmPgtable({ granule: '4k', iaBits: 40, ...o });
  const mc = new KvmMmuMemoryCache(pgt.mm_ops.alloc, { capacity: 4 });
  return { pgt, mc };
}

function desc(pgt: KvmPgtable, ipa: number, level: number): { level: number; v: bigint } {
  const d = stage2DescriptorAt(pgt, ipa, level)!;
  return { level: d.level, v: (BigInt(d.hi) << 32n) | BigInt(d.lo) };
}

/** Refcount rule, checked from the outside: each reachable table page holds 1 + its non-zero entries. */
function checkRefcounts(pgt: KvmPgtable): number {
  let reachable = 0;
  const visit = (pa: number, level: number): void => {
    const page = pgt.mm_ops.alloc.page(pa)!;
    reachable++;
    let nonzero = 0;
    for (let i = 0; i < pgt.ptrs; i++) {
      const lo = page.data[2 * i]!;
      const hi = page.data[2 * i + 1]!;
      if (lo !== 0 || hi !== 0) nonzero++;
      if (kvm_pte_table(lo, level)) visit(pgt.child(lo, hi).pa, level + 1);
    }
    assert.equal(page.refcount, 1 + nonzero, `refcount of table 0x${pa.toString(16)} at level ${level}`);
  };
  for (const p of pgt.pgd!) visit(p.pa, pgt.start_level);
  return reachable;
}

describe('kvm_pgtable_stage2_map: descriptors', () => {
  it('a 4K page: L3 page descriptor with MemAttr NORMAL, S2AP RW, SH IS, AF, XN from prot', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x8000_0000, K4, 0x4000_0000, KVM_PGTABLE_PROT_RWX, mc), 0);
    // valid(1) | page(2) | MemAttr 0xf<<2 | R(0x40) | W(0x80) | SH 3<<8 | AF(0x400), XN=00
    assert.deepEqual(desc(pgt, 0x8000_0000, 3), { level: 3, v: 0x4000_07ffn });
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x8000_1000, K4, 0x4000_1000, KVM_PGTABLE_PROT_R, mc), 0);
    // R only, XN=0b10 (bit 54)
    assert.deepEqual(desc(pgt, 0x8000_1000, 3), { level: 3, v: (1n << 54n) | 0x4000_177fn });
    assert.equal(checkRefcounts(pgt), 2 + 2); // 2 PGD pages (40-bit IPA), one L2 and one L3 table
  });

  it('FWB changes MemAttr (6 for Normal, 1 for device) and device mappings refuse X', () => {
    const { pgt, mc } = mk({ fwbCap: true });
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, 0x1000_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(Number(desc(pgt, 0, 3).v & 0x3cn) >> 2, 6);
    assert.equal(kvm_pgtable_stage2_map(pgt, K4, K4, 0x2000_0000, KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_DEVICE, mc), 0);
    assert.equal(Number(desc(pgt, K4, 3).v & 0x3cn) >> 2, 1);
    assert.equal(kvm_pgtable_stage2_map(pgt, 2 * K4, K4, 0x2000_0000, KVM_PGTABLE_PROT_RWX | KVM_PGTABLE_PROT_DEVICE, mc), EINVAL);
  });

  it('2M and 1G blocks where size and both addresses are aligned; pages otherwise', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x4020_0000, M2, 0x8020_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    const b = desc(pgt, 0x4020_0000, 3);
    assert.equal(b.level, 2);
    assert.equal(b.v & 3n, 1n); // block: valid, type 0
    assert.equal(kvm_pgtable_stage2_map(pgt, G1 * 2, G1, G1 * 3, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(desc(pgt, G1 * 2 + 12345 * K4, 3).level, 1);
    // PA not 2M aligned: falls back to 512 pages
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x6000_0000, M2, 0x9000_1000, KVM_PGTABLE_PROT_RW, mc), 0);
    const p = desc(pgt, 0x6000_0000 + 5 * K4, 3);
    assert.equal(p.level, 3);
    assert.equal((p.v >> 12n) & 0xfffffffffn, BigInt(0x9000_1000 + 5 * K4) >> 12n);
    checkRefcounts(pgt);
  });

  it('16K and 64K granules: 32M and 512M blocks at level 2', () => {
    const a = mk({ granule: '16k', iaBits: 40 });
    kvm_mmu_topup_memory_cache(a.mc, 2);
    assert.equal(kvm_pgtable_stage2_map(a.pgt, 32 * 2 ** 20, 32 * 2 ** 20, 64 * 2 ** 20, KVM_PGTABLE_PROT_RW, a.mc), 0);
    assert.equal(desc(a.pgt, 32 * 2 ** 20, 3).level, 2);
    const b = mk({ granule: '64k', iaBits: 42 });
    kvm_mmu_topup_memory_cache(b.mc, 2);
    assert.equal(kvm_pgtable_stage2_map(b.pgt, 2 ** 29, 2 ** 29, 2 ** 30, KVM_PGTABLE_PROT_RW, b.mc), 0);
    assert.equal(desc(b.pgt, 2 ** 29, 3).level, 2);
    assert.equal(kvm_pgtable_stage2_map(b.pgt, 0, 2 ** 16, 2 ** 32, KVM_PGTABLE_PROT_RW, b.mc), 0);
    assert.deepEqual(desc(b.pgt, 0, 3).level, 3);
  });

  it('LPA2 puts OA[51:50] in bits 9:8 (no SH); 64K puts OA[51:48] in bits 15:12', () => {
    const a = mk({ granule: '4k', iaBits: 52, lpa2: true });
    kvm_mmu_topup_memory_cache(a.mc, 3);
    const pa = 0xc_1234_5678_9000; // bits 51:50 = 0b11
    assert.equal(kvm_pgtable_stage2_map(a.pgt, 0x1000, K4, pa, KVM_PGTABLE_PROT_RW, a.mc), 0);
    const v = desc(a.pgt, 0x1000, 3).v;
    assert.equal((v >> 8n) & 3n, 3n);
    assert.equal((v >> 12n) & ((1n << 38n) - 1n), (BigInt(pa) >> 12n) & ((1n << 38n) - 1n));
    const b = mk({ granule: '64k', iaBits: 52 });
    kvm_mmu_topup_memory_cache(b.mc, 3);
    const pb = 0xa_0000_0001_0000;
    assert.equal(kvm_pgtable_stage2_map(b.pgt, 0x10000, 0x10000, pb, KVM_PGTABLE_PROT_RW, b.mc), 0);
    const w = desc(b.pgt, 0x10000, 3).v;
    assert.equal((w >> 12n) & 0xfn, 0xan);
    assert.equal((w >> 16n) & 0xffffffffn, 1n);
  });

  it('no memcache for a needed table: -ENOMEM; outside the IPA space: -ERANGE', () => {
    const { pgt } = mk();
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, 0, KVM_PGTABLE_PROT_RW, null), ENOMEM);
    assert.equal(kvm_pgtable_stage2_map(pgt, 2 ** 40, K4, 0, KVM_PGTABLE_PROT_RW, null), ERANGE);
  });

  it('same mapping again is -EAGAIN: swallowed by a plain walk, returned with HANDLE_FAULT', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RWX, mc, KVM_PGTABLE_WALK_HANDLE_FAULT), EAGAIN);
  });

  it('a SHARED walk meeting a LOCKED entry backs off with -EAGAIN', () => {
    for (const encoding of ['set_owner_2021', 'annotate_2026'] as const) {
      const { pgt, mc } = mk({ encoding });
      kvm_mmu_topup_memory_cache(mc, 2);
      assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc), 0);
      const d = stage2DescriptorAt(pgt, 0, 3)!;
      const page = pgt.mm_ops.alloc.pageOf(d.ptepPa)!;
      const i = (d.ptepPa - page.pa) / 8;
      page.data[2 * i] = pgt.lockedLo;
      page.data[2 * i + 1] = pgt.lockedHi;
      const ret = kvm_pgtable_stage2_map(pgt, 0, K4, 2 * K4, KVM_PGTABLE_PROT_RW, mc, KVM_PGTABLE_WALK_SHARED | KVM_PGTABLE_WALK_HANDLE_FAULT);
      assert.equal(ret, EAGAIN, encoding);
    }
  });
});

describe('break-before-make, blocks and tables', () => {
  it('a page inside a block replaces the block by a table without copying the rest', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x20_0000, M2, 0x40_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    const before = pgt.mmu.tlbi_ipa;
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x20_3000, K4, 0x90_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(pgt.mmu.tlbi_ipa, before + 1); // the block was broken with a TLBI
    assert.equal(desc(pgt, 0x20_3000, 3).level, 3);
    assert.equal(desc(pgt, 0x20_4000, 3).v, 0n); // rest of the old block: gone, refaults lazily
    checkRefcounts(pgt);
  });

  it('a block over an existing table frees the table (free_unlinked_table)', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x20_0000, K4, 0x40_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    const live = pgt.mm_ops.alloc.stats.live;
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x20_0000, M2, 0x40_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(pgt.mm_ops.alloc.stats.live, live - 1);
    assert.equal(desc(pgt, 0x20_0000, 3).level, 2);
    assert.equal(pgt.mmu.tlbi_vmid, 1); // table break: range flush, whole VMID without TLBIRANGE
    checkRefcounts(pgt);
  });
});

describe('kvm_pgtable_stage2_unmap', () => {
  it('frees tables left empty; the PGD stays', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_map(pgt, 0x8000_0000, K4, 0x4000_0000, KVM_PGTABLE_PROT_RW, mc), 0);
    assert.equal(mc.nobjs, 2); // two of four consumed: an L2 and an L3 table
    assert.equal(kvm_pgtable_stage2_unmap(pgt, 0x8000_0000, K4), 0);
    assert.equal(pgt.mm_ops.alloc.stats.live, pgt.pgd!.length + mc.nobjs);
    for (const p of pgt.pgd!) assert.equal(p.refcount, 1);
  });

  it('unmapping part of a block removes the whole block', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0x20_0000, M2, 0x40_0000, KVM_PGTABLE_PROT_RW, mc);
    kvm_pgtable_stage2_unmap(pgt, 0x20_1000, K4);
    assert.equal(desc(pgt, 0x20_0000, 3).v, 0n);
    assert.equal(desc(pgt, 0x3f_f000, 3).v, 0n);
  });

  it('erases owner annotations and frees their table', () => {
    const { pgt, mc } = mk({ encoding: 'annotate_2026' });
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0x5000, K4, mc, 2, 2, 0), 0);
    assert.equal(desc(pgt, 0x5000, 3).v, 0x2000_0000_0000_0002n);
    checkRefcounts(pgt);
    assert.equal(kvm_pgtable_stage2_unmap(pgt, 0, 2 * M2), 0);
    assert.equal(desc(pgt, 0x5000, 3).v, 0n);
    assert.equal(desc(pgt, 0x5000, 3).level, 1); // L2 and L3 tables freed
  });
});

describe('owner annotations', () => {
  it('set_owner (2021): owner in bits 9:2, counted; owner 0 is the zero PTE, uncounted', () => {
    const { pgt, mc } = mk({ encoding: 'set_owner_2021' });
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x3000, 2 * K4, mc, 1), 0);
    assert.equal(desc(pgt, 0x3000, 3).v, 0x4n);
    assert.equal(desc(pgt, 0x4000, 3).v, 0x4n);
    checkRefcounts(pgt);
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x4000, K4, mc, 0), 0);
    assert.equal(desc(pgt, 0x4000, 3).v, 0n);
    checkRefcounts(pgt);
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x4000, K4, mc, 256), EINVAL);
    const capped = mk({ encoding: 'set_owner_2021', maxOwnerId: 1 });
    assert.equal(kvm_pgtable_stage2_set_owner(capped.pgt, 0, K4, capped.mc, 2), EINVAL);
  });

  it('annotate (2026): type 0, LOCKED, or a payload in bit 0 / bits 63:60 is -EINVAL', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0, K4, mc, 0, 2, 0), EINVAL);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0, K4, mc, 1, 2, 0), EINVAL);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0, K4, mc, 2, 1, 0), EINVAL);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0, K4, mc, 2, 2, 0x1000_0000), EINVAL);
    assert.equal(kvm_pgtable_stage2_annotate(pgt, 0, K4, mc, 3, 0, 0), 0);
    assert.equal(desc(pgt, 0, 3).v, 0x3000_0000_0000_0000n);
  });

  it('annotating a page inside a block forces page granularity', () => {
    const { pgt, mc } = mk({ encoding: 'set_owner_2021' });
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0x20_0000, M2, 0x20_0000, KVM_PGTABLE_PROT_RW, mc);
    assert.equal(kvm_pgtable_stage2_set_owner(pgt, 0x20_0000, K4, mc, 1), 0);
    assert.deepEqual(desc(pgt, 0x20_0000, 3), { level: 3, v: 4n });
    checkRefcounts(pgt);
  });
});

describe('attribute walkers', () => {
  it('mkold / mkyoung / test_clear_young toggle AF of a valid leaf only', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc);
    assert.equal(kvm_pgtable_stage2_mkold(pgt, 0), true);
    assert.equal(desc(pgt, 0, 3).v & 0x400n, 0n);
    assert.equal(kvm_pgtable_stage2_test_clear_young(pgt, 0, K4, false), false);
    assert.equal(kvm_pgtable_stage2_mkyoung(pgt, 0), 0);
    assert.equal(desc(pgt, 0, 3).v & 0x400n, 0x400n);
    assert.equal(kvm_pgtable_stage2_mkold(pgt, 0x10_0000), false);
  });

  it('wrprotect clears S2AP_W without TLB maintenance; relax_perms adds W and X back with a local TLBI', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc);
    const t = pgt.mmu.tlbi_ipa;
    assert.equal(kvm_pgtable_stage2_wrprotect(pgt, 0, K4), 0);
    assert.equal(desc(pgt, 0, 3).v & 0x80n, 0n);
    assert.equal(pgt.mmu.tlbi_ipa, t);
    assert.equal(kvm_pgtable_stage2_relax_perms(pgt, 0, KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X), 0);
    const v = desc(pgt, 0, 3).v;
    assert.equal(v & 0xc0n, 0xc0n);
    assert.equal((v >> 53n) & 3n, 0n);
    assert.equal(pgt.mmu.tlbi_ipa_nsh, 1);
    assert.equal(kvm_pgtable_stage2_relax_perms(pgt, 0, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_SW0), EINVAL);
    // invalid leaf: -EAGAIN, visible only to a fault handler
    assert.equal(kvm_pgtable_stage2_relax_perms(pgt, 0x5000, KVM_PGTABLE_PROT_W), 0);
    assert.equal(kvm_pgtable_stage2_relax_perms(pgt, 0x5000, KVM_PGTABLE_PROT_W, KVM_PGTABLE_WALK_HANDLE_FAULT), EAGAIN);
  });

  it('SW bits only: rewritten in place, no break-before-make', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW, mc);
    const t = pgt.mmu.tlbi_ipa;
    assert.equal(kvm_pgtable_stage2_map(pgt, 0, K4, K4, KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_SW0, mc), 0);
    assert.equal((desc(pgt, 0, 3).v >> 55n) & 0xfn, 1n);
    assert.equal(pgt.mmu.tlbi_ipa, t);
  });
});

describe('kvm_pgtable_stage2_split', () => {
  it('2M block -> 512 pages with the block attributes (1 page from the memcache)', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0x20_0000, M2, 0x60_0000, KVM_PGTABLE_PROT_R, mc);
    const blk = desc(pgt, 0x20_0000, 3).v;
    const n = mc.nobjs;
    assert.equal(kvm_pgtable_stage2_split(pgt, 0x20_0000, M2, mc), 0);
    assert.equal(mc.nobjs, n - 1);
    for (const off of [0, 0x1000, 0x1f_f000]) {
      const p = desc(pgt, 0x20_0000 + off, 3);
      assert.equal(p.level, 3);
      assert.equal(p.v, (blk | 2n) + BigInt(off)); // same attributes, page type, consecutive OA
    }
    checkRefcounts(pgt);
  });

  it('1G block: full tree with >= 513 pages; one level at a time with fewer (until -ENOMEM); -ENOMEM with none', () => {
    const a = mk();
    const big = new KvmMmuMemoryCache(a.pgt.mm_ops.alloc, { capacity: 600 });
    kvm_mmu_topup_memory_cache(big, 600);
    kvm_pgtable_stage2_map(a.pgt, G1, G1, G1, KVM_PGTABLE_PROT_RW, big);
    assert.equal(kvm_pgtable_stage2_split(a.pgt, G1, G1, big), 0);
    assert.equal(desc(a.pgt, G1 + 0x12_3000, 3).level, 3);
    const b = mk();
    kvm_mmu_topup_memory_cache(b.mc, 2);
    kvm_pgtable_stage2_map(b.pgt, G1, G1, G1, KVM_PGTABLE_PROT_RW, b.mc);
    // 4 pages: one L2 table, then the walk descends into it and splits three 2M blocks before running dry
    assert.equal(b.mc.nobjs, 4);
    assert.equal(kvm_pgtable_stage2_split(b.pgt, G1, G1, b.mc), ENOMEM);
    assert.equal(desc(b.pgt, G1 + 0x12_3000, 3).level, 3);
    assert.equal(desc(b.pgt, G1 + 2 * M2 + 0x3000, 3).level, 3);
    assert.equal(desc(b.pgt, G1 + 3 * M2, 3).level, 2);
    assert.equal(desc(b.pgt, G1 + 100 * M2, 3).level, 2);
    checkRefcounts(b.pgt);
    const c = mk();
    kvm_mmu_topup_memory_cache(c.mc, 1);
    kvm_pgtable_stage2_map(c.pgt, G1, G1, G1, KVM_PGTABLE_PROT_RW, c.mc);
    const empty = new KvmMmuMemoryCache(c.pgt.mm_ops.alloc);
    assert.equal(kvm_pgtable_stage2_split(c.pgt, G1, G1, empty), ENOMEM);
  });
});

describe('walker', () => {
  it('visits TABLE_PRE, LEAF, TABLE_POST in order with the entry level and address', () => {
    const { pgt, mc } = mk({ iaBits: 36 });
    kvm_mmu_topup_memory_cache(mc, 2);
    kvm_pgtable_stage2_map(pgt, 0x20_0000, K4, 0, KVM_PGTABLE_PROT_RW, mc);
    const seen: string[] = [];
    kvm_pgtable_walk(pgt, 0x20_0000, 2 * K4, {
      cb: (ctx, visit) => {
        seen.push(`${visit}@${ctx.level}:${ctx.addr.toString(16)}`);
        return 0;
      },
      arg: undefined,
      flags: 7,
    });
    assert.deepEqual(seen, ['2@1:200000', '2@2:200000', '1@3:200000', '1@3:201000', '4@2:200000', '4@1:200000']);
    const leaf = kvm_pgtable_get_leaf(pgt, 0x20_0000);
    assert.equal(leaf.level, 3);
    assert.equal(leaf.lo & 1, 1);
  });

  it('destroy frees everything', () => {
    const { pgt, mc } = mk();
    kvm_mmu_topup_memory_cache(mc, 3);
    kvm_pgtable_stage2_map(pgt, 0, 8 * M2, 0, KVM_PGTABLE_PROT_RW, mc);
    kvm_pgtable_stage2_map(pgt, 0x4000_0000, K4, 0, KVM_PGTABLE_PROT_RW, mc);
    kvm_pgtable_stage2_destroy(pgt);
    assert.equal(pgt.mm_ops.alloc.stats.live, mc.nobjs);
  });
});

describe('refcount rule under random map / unmap / annotate sequences (property)', () => {
  it('every table page holds 1 + its non-zero entries; unmapping everything leaves only the PGD', () => {
    const op = fc.record({
      kind: fc.constantFrom('map', 'unmap', 'annotate', 'block'),
      page: fc.integer({ min: 0, max: 2047 }),
      n: fc.integer({ min: 1, max: 8 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), fc.constantFrom('set_owner_2021', 'annotate_2026'), (ops, encoding) => {
        const { pgt, mc } = mk({ iaBits: 36, encoding });
        for (const o of ops) {
          kvm_mmu_topup_memory_cache(mc, 3);
          const ipa = o.page * K4;
          if (o.kind === 'map') kvm_pgtable_stage2_map(pgt, ipa, o.n * K4, ipa, KVM_PGTABLE_PROT_RW, mc);
          else if (o.kind === 'block') kvm_pgtable_stage2_map(pgt, ipa - (ipa % M2), M2, 0, KVM_PGTABLE_PROT_RW, mc);
          else if (o.kind === 'unmap') kvm_pgtable_stage2_unmap(pgt, ipa, o.n * K4);
          else if (encoding === 'set_owner_2021') kvm_pgtable_stage2_set_owner(pgt, ipa, o.n * K4, mc, 1);
          else kvm_pgtable_stage2_annotate(pgt, ipa, o.n * K4, mc, 2, 2, 0);
          const reachable = checkRefcounts(pgt);
          assert.equal(pgt.mm_ops.alloc.stats.live, reachable + mc.nobjs);
        }
        kvm_pgtable_stage2_unmap(pgt, 0, 2 ** 36);
        assert.equal(checkRefcounts(pgt), pgt.pgd!.length);
      }),
      { numRuns: 60 },
    );
  });
});

describe('kvm_pgtable_stage2_flush', () => {
  it('cleans each cacheable leaf without FWB, skips device leaves, does nothing with FWB', () => {
    for (const fwbCap of [false, true]) {
      const { pgt, mc } = mk({ fwbCap });
      kvm_mmu_topup_memory_cache(mc, 2);
      kvm_pgtable_stage2_map(pgt, 0, 2 * K4, 0x10_0000, KVM_PGTABLE_PROT_RW, mc);
      kvm_pgtable_stage2_map(pgt, 2 * K4, K4, 0x20_0000, KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_DEVICE, mc);
      const before = pgt.mmu.dcache_clean;
      assert.equal(kvm_pgtable_stage2_flush(pgt, 0, M2), 0);
      assert.equal(pgt.mmu.dcache_clean - before, fwbCap ? 0 : 2);
    }
  });
});
