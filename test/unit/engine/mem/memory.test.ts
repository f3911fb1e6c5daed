import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory, HostMemory, __GFP_DMA32, DMA32_END_PFN } from '../../../../src/engine/mem';

const TiB = 2 ** 40;

test('a 1 TiB guest reads zero everywhere with nothing allocated', () => {
  const m = new GuestMemory(TiB);
  const out = new Uint32Array(2);
  for (const gpa of [0, 0x1000, 0xfee00000, TiB - 8, 0x7f_ffff_f000]) {
    m.read64(gpa, out);
    assert.deepEqual([...out], [0, 0]);
    assert.equal(m.read32(gpa), 0);
  }
  assert.equal(m.populatedPages, 0);
  // Writing zero into an untouched page is not a reason to allocate it.
  m.write64(0x5000, 0, 0);
  assert.equal(m.populatedPages, 0);
});

test('64-bit writes land as halves in one page and read back', () => {
  const m = new GuestMemory(TiB);
  m.write64(0x12345ff8, 0xdeadbeef, 0x80000000);
  assert.equal(m.populatedPages, 1);
  assert.equal(m.read64lo(0x12345ff8), 0xdeadbeef);
  assert.equal(m.read64hi(0x12345ff8), 0x80000000);
  assert.equal(m.read32(0x12345ffc), 0x80000000);
  assert.equal(m.read32(0x12346000), 0); // next page untouched
  assert.equal(m.populatedPages, 1);
});

test('reads and writes outside the guest or misaligned are refused', () => {
  const m = new GuestMemory(1 << 20);
  assert.throws(() => m.read32(1 << 20), RangeError);
  assert.throws(() => m.write64(4, 1, 0), RangeError);
  assert.equal(m.contains((1 << 20) - 8, 8), true);
  assert.equal(m.contains(1 << 20, 8), false);
});

test('cmpxchg writes only when the old value matches', () => {
  const m = new GuestMemory(TiB);
  m.write64(0x2000, 0x21, 0);
  assert.equal(m.cmpxchg(0x2000, 8, 0x1, 0, 0x61, 0), false);
  assert.equal(m.read32(0x2000), 0x21);
  assert.equal(m.cmpxchg(0x2000, 8, 0x21, 0, 0x61, 0), true);
  assert.equal(m.read32(0x2000), 0x61);
  assert.equal(m.cmpxchg(0x3000, 4, 0, 0, 0x23, 0), true);
  assert.equal(m.read32(0x3000), 0x23);
});

test('property: the last write to each aligned quadword wins, everything else reads zero', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 ** 25 - 1 }), fc.nat(0xffffffff), fc.nat(0xffffffff)), { maxLength: 40 }), (writes) => {
      const m = new GuestMemory(TiB);
      const model = new Map<number, [number, number]>();
      for (const [q, lo, hi] of writes) {
        const gpa = (q * 8 * 4099) % TiB; // spread over many pages
        m.write64(gpa, lo, hi);
        model.set(gpa, [lo, hi]);
      }
      const out = new Uint32Array(2);
      for (const [gpa, [lo, hi]] of model) {
        m.read64(gpa, out);
        assert.deepEqual([out[0], out[1]], [lo, hi]);
      }
      m.read64(TiB - 8, out);
      if (!model.has(TiB - 8)) assert.deepEqual([...out], [0, 0]);
    }),
  );
});

test('host allocator: nothing materialised until a page is touched', () => {
  const h = new HostMemory({ endPfn: 0x1000_0000 }); // 1 TiB of host
  const pfn = h.alloc_page();
  assert.equal(h.allocatedPages, 1);
  assert.equal(h.materialisedPages, 0);
  const p = h.page(pfn);
  assert.equal(p.length, 1024);
  assert.equal(h.materialisedPages, 1);
});

test('host allocator: ordinary requests prefer memory above 4 GiB, DMA32 stays below', () => {
  const h = new HostMemory({ firstPfn: 0x1000, endPfn: 0x20_0000 });
  const a = h.alloc_page();
  assert.ok(a >= DMA32_END_PFN, `normal page 0x${a.toString(16)} should be above 4 GiB`);
  for (let i = 0; i < 100; i++) {
    const d = h.alloc_page(__GFP_DMA32);
    assert.ok(d >= 0x1000 && d < DMA32_END_PFN, `dma32 page 0x${d.toString(16)} must be below 4 GiB`);
  }
});

test('host allocator: DMA32 exhaustion returns -1; normal falls back to DMA32', () => {
  const h = new HostMemory({ firstPfn: DMA32_END_PFN - 2, endPfn: DMA32_END_PFN + 1 });
  assert.equal(h.alloc_page(), DMA32_END_PFN); // the one normal page
  assert.equal(h.alloc_page(__GFP_DMA32), DMA32_END_PFN - 2);
  assert.equal(h.alloc_page(), DMA32_END_PFN - 1); // fallback into DMA32
  assert.equal(h.alloc_page(__GFP_DMA32), -1);
  assert.equal(h.alloc_page(), -1);
});

test('host allocator: freed pages come back zeroed, LIFO, and double free throws', () => {
  const h = new HostMemory({ firstPfn: 0x1000, endPfn: 0x2000 });
  const a = h.alloc_page();
  const b = h.alloc_page();
  h.page(a)[5] = 0x1234;
  h.free_page(a);
  assert.throws(() => h.free_page(a));
  assert.throws(() => h.page(a));
  const c = h.alloc_page();
  assert.equal(c, a);
  assert.equal(h.page(c)[5], 0);
  assert.notEqual(b, c);
});

test('readEntry sees pages created, rewritten and cleared after earlier reads (page cache coherence)', () => {
  const m = new GuestMemory();
  const out = new Uint32Array(2);
  // gfns that share a cache slot (multiples of 64 apart), one of them above 2^31.
  const gpas = [0x3000, 0x3000 + 64 * 4096, 0x3000 + 2 ** 31 * 4096];
  for (const gpa of gpas) {
    assert.ok(m.readEntry(gpa, 8, out));
    assert.deepEqual([...out], [0, 0]);
  }
  gpas.forEach((gpa, i) => m.write64(gpa, 0x1000 + i, 7));
  for (let round = 0; round < 2; round++) {
    gpas.forEach((gpa, i) => {
      assert.ok(m.readEntry(gpa, 8, out));
      assert.deepEqual([...out], [0x1000 + i, 7]);
      assert.equal(m.peekPage(Math.floor(gpa / 4096))![0], 0x1000 + i);
    });
  }
  m.clear();
  for (const gpa of gpas) {
    assert.ok(m.readEntry(gpa, 8, out));
    assert.deepEqual([...out], [0, 0]);
    assert.equal(m.peekPage(Math.floor(gpa / 4096)), undefined);
  }
  m.write32(gpas[1]!, 0xabc);
  assert.ok(m.readEntry(gpas[1]!, 4, out));
  assert.deepEqual([...out], [0xabc, 0]);
});
