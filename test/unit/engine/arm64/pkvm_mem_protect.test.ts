import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
  PKVM_POISON,
  PkvmHyp,
} from '../../../../src/engine/arm64/pkvm_mem_protect';
import { stage2DescriptorAt } from '../../../../src/engine/arm64/pgtable';
import { KVM_PGTABLE_PROT_DEVICE, KVM_PGTABLE_PROT_RW, KVM_PGTABLE_PROT_RWX } from '../../../../src/engine/arm64/pgtable_desc';
import { OWNER_ENCODINGS, type OwnerEncoding } from '../../../../src/engine/arm64/variants';

const EPERM = -1;
const ENOENT = -2;
const EINVAL = -22;
const EBUSY = -16;
const EAGAIN = -11;
const EOPNOTSUPP = -95;

const MEM_BASE = 0x4000_0000;
const PFN = (MEM_BASE >>> 12) + 0x10;
const PHYS = PFN * 4096;

function hyp(encoding: OwnerEncoding): PkvmHyp {
  return new PkvmHyp({ granule: '4k', paBits: 40, encoding, memory: [{ base: MEM_BASE, size: 64 << 20 }] });
}

function hostPte(h: PkvmHyp, pa: number): bigint {
  const d = stage2DescriptorAt(h.host_pgt, pa, 3)!;
  return (BigInt(d.hi) << 32n) | BigInt(d.lo);
}

function states(h: PkvmHyp, pa: number): [number, number] {
  return [h.get_host_state(pa), h.get_hyp_state(pa)];
}

for (const enc of OWNER_ENCODINGS) {
  describe(`pKVM ownership transitions (${enc})`, () => {
    it('host <-> hyp sharing: states, pinning and -EPERM/-EBUSY', () => {
      const h = hyp(enc);
      assert.deepEqual(states(h, PHYS), [PKVM_PAGE_OWNED, PKVM_NOPAGE]);
      assert.equal(h.__pkvm_host_share_hyp(PFN), 0);
      assert.deepEqual(states(h, PHYS), [PKVM_PAGE_SHARED_OWNED, PKVM_PAGE_SHARED_BORROWED]);
      assert.equal(h.__pkvm_host_share_hyp(PFN), EPERM);
      assert.equal(h.__pkvm_host_donate_hyp(PFN, 1), EPERM);
      assert.equal(h.hyp_pin_shared_mem(PHYS, 4096), 0);
      assert.ok(h.hypMapped.has(PFN));
      assert.equal(h.__pkvm_host_unshare_hyp(PFN), EBUSY);
      h.hyp_unpin_shared_mem(PHYS, 4096);
      assert.ok(!h.hypMapped.has(PFN));
      assert.equal(h.__pkvm_host_unshare_hyp(PFN), 0);
      assert.deepEqual(states(h, PHYS), [PKVM_PAGE_OWNED, PKVM_NOPAGE]);
      assert.equal(h.__pkvm_host_unshare_hyp(PFN), EPERM);
      assert.equal(h.hyp_pin_shared_mem(PHYS, 4096), EPERM);
      // outside memory
      assert.equal(h.__pkvm_host_share_hyp(0x10), EPERM);
      assert.equal(h.__pkvm_host_donate_hyp(0x10, 1), EINVAL);
    });

    it('host -> hyp donation annotates the host stage-2; the host then faults; hyp gives it back', () => {
      const h = hyp(enc);
      assert.equal(h.__pkvm_host_donate_hyp(PFN, 2), 0);
      assert.deepEqual(states(h, PHYS), [PKVM_NOPAGE, PKVM_PAGE_OWNED]);
      assert.deepEqual(states(h, PHYS + 4096), [PKVM_NOPAGE, PKVM_PAGE_OWNED]);
      // owner HYP = 1: bits 9:2 -> 0x4 (2021); type DONATION(2)<<60 | owner 1<<1 (2026)
      assert.equal(hostPte(h, PHYS), enc === 'set_owner_2021' ? 0x4n : 0x2000_0000_0000_0002n);
      assert.equal(h.ownerOf(PHYS).owner, 1);
      const abort = h.handle_host_mem_abort(PHYS + 0x80);
      assert.equal(abort.ret, EPERM);
      assert.equal(abort.injected, enc === 'annotate_2026');
      assert.equal(abort.bug, enc === 'set_owner_2021');
      assert.equal(abort.owner?.owner, 1);
      assert.equal(h.__pkvm_host_share_hyp(PFN), EPERM);
      assert.equal(h.__pkvm_host_donate_hyp(PFN, 1), EPERM);
      assert.equal(h.__pkvm_hyp_donate_host(PFN, 2), 0);
      assert.deepEqual(states(h, PHYS), [PKVM_PAGE_OWNED, PKVM_NOPAGE]);
      assert.equal(h.__pkvm_hyp_donate_host(PFN, 2), EPERM);
      if (enc === 'set_owner_2021') assert.equal(hostPte(h, PHYS), 0n); // refaulted lazily
      else assert.equal(hostPte(h, PHYS) & 0xfffff_ffff_f003n, BigInt(PHYS) | 3n); // RWX idmap page
      assert.equal(h.handle_host_mem_abort(PHYS).ret, 0);
      assert.equal(h.ownerOf(PHYS).owner, 0);
    });

    it('host faults build the idmap with the largest block inside the memblock region', () => {
      const h = hyp(enc);
      const r = h.handle_host_mem_abort(MEM_BASE + 0x12_3456);
      assert.equal(r.ret, 0);
      assert.deepEqual(r.mapped, { start: MEM_BASE, size: 2 << 20 }); // 64M region: no 1G block fits
      assert.equal(stage2DescriptorAt(h.host_pgt, MEM_BASE + 0x12_3456, 3)!.level, 2);
      // the MMIO hole [0, 1G) below memory takes a 1G block, mapped RW and XN
      const m = h.handle_host_mem_abort(0x900_0000);
      assert.equal(m.ret, 0);
      assert.deepEqual(m.mapped, { start: 0, size: 1 << 30 });
      const d = stage2DescriptorAt(h.host_pgt, 0x900_0000, 3)!;
      assert.equal(d.level, 1);
      assert.equal((d.hi >>> 21) & 3, 2);
    });

    it('host shares with non-protected guests (multi-share), unshares, counts', () => {
      const h = hyp(enc);
      const vm = h.createVm({ iaBits: 40, isProtected: false });
      const vm2 = h.createVm({ iaBits: 40, isProtected: false });
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x100, 1, vm.handle, KVM_PGTABLE_PROT_RWX), 0);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_SHARED_OWNED);
      assert.equal(h.guestPageState(vm.handle, 0x100), PKVM_PAGE_SHARED_BORROWED);
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x100, 1, vm2.handle, KVM_PGTABLE_PROT_RW), 0);
      assert.equal(h.hyp_page(PHYS)!.host_share_guest_count, 2);
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x100, 1, vm.handle, KVM_PGTABLE_PROT_RW), EPERM);
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x101, 1, vm.handle, KVM_PGTABLE_PROT_RW | KVM_PGTABLE_PROT_DEVICE), EINVAL);
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x101, 3, vm.handle, KVM_PGTABLE_PROT_RW), EINVAL);
      assert.equal(h.__pkvm_host_share_hyp(PFN), EPERM);
      const pvm = h.createVm({ iaBits: 40, isProtected: true });
      assert.equal(h.__pkvm_host_share_guest(PFN, 0x100, 1, pvm.handle, KVM_PGTABLE_PROT_RW), EPERM);
      assert.equal(h.__pkvm_host_unshare_guest(0x100, 1, vm.handle), 0);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_SHARED_OWNED);
      assert.equal(h.__pkvm_host_unshare_guest(0x100, 1, vm2.handle), 0);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_OWNED);
      assert.equal(h.__pkvm_host_unshare_guest(0x100, 1, vm.handle), ENOENT);
      // a 2M block share needs pfn and ipa aligned to 2M
      const blkPfn = (MEM_BASE + (4 << 20)) / 4096;
      assert.equal(h.__pkvm_host_share_guest(blkPfn, 0x400, 512, vm.handle, KVM_PGTABLE_PROT_RW), 0);
      assert.equal(stage2DescriptorAt(vm.pgt, 0x400 * 4096, 3)!.level, 2);
      assert.equal(h.__pkvm_host_share_guest(blkPfn + 1, 0x800, 512, vm.handle, KVM_PGTABLE_PROT_RW), EINVAL);
      assert.equal(h.__pkvm_host_relax_perms_guest(pvm.handle, 0x100, KVM_PGTABLE_PROT_RW), EPERM);
    });

    it('donation to a protected guest, guest shares back, host reclaims', () => {
      const h = hyp(enc);
      const pvm = h.createVm({ iaBits: 40, isProtected: true });
      assert.equal(h.__pkvm_host_donate_guest(PFN, 0x200, pvm.handle), 0);
      assert.equal(h.get_host_state(PHYS), PKVM_NOPAGE);
      assert.equal(h.guestPageState(pvm.handle, 0x200), PKVM_PAGE_OWNED);
      const o = h.ownerOf(PHYS);
      assert.equal(o.owner, 2);
      if (enc === 'annotate_2026') {
        assert.equal(o.handle, pvm.handle);
        assert.equal(o.gfn, 0x200);
      } else {
        assert.equal(o.handle, undefined);
        assert.equal(hostPte(h, PHYS), 0x8n);
      }
      assert.equal(h.__pkvm_host_donate_guest(PFN, 0x200, pvm.handle), EPERM);
      assert.equal(h.handle_host_mem_abort(PHYS).ret, EPERM);
      assert.equal(h.__pkvm_guest_share_host(pvm.handle, 0x200), 0);
      assert.equal(h.guestPageState(pvm.handle, 0x200), PKVM_PAGE_SHARED_OWNED);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_SHARED_BORROWED);
      assert.equal(h.handle_host_mem_abort(PHYS).ret, 0);
      assert.equal(h.__pkvm_guest_share_host(pvm.handle, 0x200), EPERM);
      assert.equal(h.__pkvm_guest_share_host(pvm.handle, 0x201), ENOENT);
      assert.equal(h.__pkvm_host_reclaim_page_guest(pvm.handle, 0x200), 0);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_OWNED);
      assert.equal(h.guestPageState(pvm.handle, 0x200), PKVM_NOPAGE);
    });

    it('force reclaim needs the 2026 annotation (handle, gfn, POISONED)', () => {
      const h = hyp(enc);
      const pvm = h.createVm({ iaBits: 40, isProtected: true });
      assert.equal(h.__pkvm_host_donate_guest(PFN, 0x300, pvm.handle), 0);
      if (enc === 'set_owner_2021') {
        assert.equal(h.__pkvm_host_force_reclaim_page_guest(PHYS), EOPNOTSUPP);
        return;
      }
      assert.equal(h.__pkvm_host_force_reclaim_page_guest(PHYS + 4096), EAGAIN); // host still owns that one
      assert.equal(h.__pkvm_host_force_reclaim_page_guest(PHYS), 0);
      assert.equal(h.guestPageState(pvm.handle, 0x300), PKVM_POISON);
      assert.equal(h.get_host_state(PHYS), PKVM_PAGE_OWNED);
      assert.equal(h.__pkvm_guest_share_host(pvm.handle, 0x300), -133);
      assert.equal(h.__pkvm_host_reclaim_page_guest(pvm.handle, 0x300), 0);
    });
  });
}

describe('owner_encoding: both variants agree on ownership, differ in descriptors', () => {
  it('same script, same owners and states, different host PTEs for annotated pages', () => {
    const a = hyp('set_owner_2021');
    const b = hyp('annotate_2026');
    const script = (h: PkvmHyp): void => {
      h.__pkvm_host_donate_hyp(PFN, 1);
      h.__pkvm_host_share_hyp(PFN + 1);
      const pvm = h.createVm({ iaBits: 40, isProtected: true });
      h.__pkvm_host_donate_guest(PFN + 2, 0x42, pvm.handle);
      h.handle_host_mem_abort(PHYS + 3 * 4096);
    };
    script(a);
    script(b);
    for (let i = 0; i < 4; i++) {
      const pa = PHYS + i * 4096;
      const oa = a.ownerOf(pa);
      const ob = b.ownerOf(pa);
      assert.equal(oa.owner, ob.owner, `owner of page ${i}`);
      assert.equal(oa.hostState, ob.hostState, `host state of page ${i}`);
      assert.equal(oa.hypState, ob.hypState, `hyp state of page ${i}`);
    }
    assert.notEqual(hostPte(a, PHYS), hostPte(b, PHYS));
    assert.notEqual(hostPte(a, PHYS + 2 * 4096), hostPte(b, PHYS + 2 * 4096));
  });
});

describe('compareOwnerEncodings', () => {
  it('lists the pages whose host descriptors differ, with ownership agreeing', async () => {
    const { compareOwnerEncodings } = await import('../../../../src/engine/arm64/pkvm_mem_protect');
    const a = hyp('set_owner_2021');
    const b = hyp('annotate_2026');
    for (const h of [a, b]) {
      h.__pkvm_host_donate_hyp(PFN, 1);
      h.__pkvm_host_donate_hyp(PFN + 1, 1);
      h.__pkvm_hyp_donate_host(PFN + 1, 1);
    }
    const d = compareOwnerEncodings(a, b, PHYS, 4 * 4096);
    // page 0: 0x4 vs DONATION annotation; page 1: zero PTE (2021) vs RWX idmap (2026); pages 2, 3: both zero
    assert.deepEqual(d.map((x) => x.pa), [PHYS, PHYS + 4096]);
    assert.ok(d.every((x) => x.ownershipAgrees));
    assert.deepEqual(d.map((x) => x.a.owner), [1, 0]);
  });
});
