import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KvmPgtable, kvm_pgtable_stage2_pte_prot, stage2_set_prot_attr } from '../../../../src/engine/arm64/pgtable';
import {
  KVM_PGTABLE_PROT_DEVICE,
  KVM_PGTABLE_PROT_NORMAL_NC,
  KVM_PGTABLE_PROT_PX,
  KVM_PGTABLE_PROT_R,
  KVM_PGTABLE_PROT_SW0,
  KVM_PGTABLE_PROT_SW3,
  KVM_PGTABLE_PROT_UX,
  KVM_PGTABLE_PROT_W,
  KVM_PGTABLE_PROT_X,
  kvm_phys_to_pte_hi,
  kvm_phys_to_pte_lo,
  kvm_pte_to_phys,
} from '../../../../src/engine/arm64/pgtable_desc';

const EINVAL = -22;

function attr(pgt: KvmPgtable, prot: number): { ret: number; xn: number; lo: number; hi: number } {
  const out = { lo: 0, hi: 0 };
  const ret = stage2_set_prot_attr(pgt, prot, out);
  return { ret, xn: (out.hi >>> 21) & 3, lo: out.lo, hi: out.hi };
}

describe('stage2_set_prot_attr', () => {
  it('XN[1:0] from PX/UX (FEAT_XNX): both 00, UX only 01, neither 10, PX only 11', () => {
    const pgt = new KvmPgtable({ granule: '4k', iaBits: 40, xnxCap: true });
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_X).xn, 0b00);
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_UX).xn, 0b01);
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R).xn, 0b10);
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_PX).xn, 0b11);
  });

  it('without XNX, PX != UX is -EINVAL; device/NC refuse X and each other', () => {
    const pgt = new KvmPgtable({ granule: '4k', iaBits: 40 });
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_PX).ret, EINVAL);
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_DEVICE | KVM_PGTABLE_PROT_NORMAL_NC).ret, EINVAL);
    assert.equal(attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_NORMAL_NC | KVM_PGTABLE_PROT_X).ret, EINVAL);
    const nc = attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_NORMAL_NC);
    assert.equal((nc.lo >>> 2) & 0xf, 0x5);
  });

  it('AF always, SH=IS unless LPA2, SW bits copied to 58:55', () => {
    const pgt = new KvmPgtable({ granule: '4k', iaBits: 40 });
    const a = attr(pgt, KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_SW3);
    assert.equal(a.lo, 0x7fc); // MemAttr 0xf<<2 | R | W | SH 3<<8 | AF
    assert.equal(a.hi >>> 23, 0b1000);
    const l = new KvmPgtable({ granule: '4k', iaBits: 52, lpa2: true });
    assert.equal(attr(l, KVM_PGTABLE_PROT_R).lo & 0x300, 0);
  });

  it('kvm_pgtable_stage2_pte_prot gives back R, W, X and SW bits (property)', () => {
    const pgt = new KvmPgtable({ granule: '4k', iaBits: 40, xnxCap: true });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 15 }), (low, sw) => {
        const prot = (low & (KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X)) | (sw * KVM_PGTABLE_PROT_SW0);
        const a = attr(pgt, prot);
        assert.equal(a.ret, 0);
        assert.equal(kvm_pgtable_stage2_pte_prot(a.lo | 1, a.hi), prot);
        // an invalid PTE reports only its SW bits
        assert.equal(kvm_pgtable_stage2_pte_prot(a.lo & ~1, a.hi), sw * KVM_PGTABLE_PROT_SW0);
      }),
    );
  });
});

describe('output address encoding (property)', () => {
  it('phys -> pte -> phys for every granule, with and without LPA2', () => {
    const cases: Array<[number, boolean, number]> = [
      [12, false, 48],
      [14, false, 48],
      [16, false, 52],
      [12, true, 52],
      [14, true, 52],
    ];
    for (const [shift, lpa2, bits] of cases) {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** (bits - shift) - 1 }), (frame) => {
          const pa = frame * 2 ** shift;
          const lo = kvm_phys_to_pte_lo(pa, shift, lpa2);
          const hi = kvm_phys_to_pte_hi(pa, shift, lpa2);
          assert.equal(lo & 1, 0);
          assert.equal(kvm_pte_to_phys(lo, hi, shift, lpa2), pa);
          assert.equal(hi >>> (lpa2 ? 18 : 16), 0); // nothing above OA bit 49 / 47
        }),
        { numRuns: 200 },
      );
    }
  });
});
