/**
 * The kernel's own oracle, `pkvm_ownership_selftest()` (CONFIG_NVHE_EL2_DEBUG): a fixed script of transitions
 * on one page with the result each must return and the host / hyp / guest[gfn, gfn+1] states after it.
 * Expected values are the selftest's; the model must reproduce them under both owner encodings.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  PKVM_NOPAGE as NOPAGE,
  PKVM_PAGE_OWNED as OWNED,
  PKVM_PAGE_SHARED_BORROWED as BORROWED,
  PKVM_PAGE_SHARED_OWNED as SHARED,
  PkvmHyp,
  pageStateName,
} from '../../../../src/engine/arm64/pkvm_mem_protect';
import { KVM_PGTABLE_PROT_RWX } from '../../../../src/engine/arm64/pgtable_desc';
import { OWNER_ENCODINGS } from '../../../../src/engine/arm64/variants';

const EPERM = -1;
const ENOENT = -2;
const EBUSY = -16;

for (const enc of OWNER_ENCODINGS) {
  describe(`pkvm_ownership_selftest script (${enc})`, () => {
    it('every transition returns what the selftest expects and leaves the expected states', () => {
      const base = 0x8000_0000;
      const h = new PkvmHyp({ granule: '4k', paBits: 40, encoding: enc, memory: [{ base, size: 16 << 20 }] });
      const vm = h.createVm({ iaBits: 40, isProtected: false });
      const pfn = base / 4096 + 3;
      const phys = pfn * 4096;
      const gfn = 2 ** 39 / 4096; // BIT(ia_bits - 1)
      const prot = KVM_PGTABLE_PROT_RWX;
      // the selftest page comes from the hyp pool: hyp owns it, the host has no access
      assert.equal(h.__pkvm_host_donate_hyp(pfn, 1), 0);

      const want = { host: NOPAGE, hyp: OWNED, guest: [NOPAGE, NOPAGE] };
      let step = 0;
      const check = (): void => {
        const at = `step ${step}`;
        assert.equal(pageStateName(h.get_host_state(phys)), pageStateName(want.host), `${at}: host`);
        assert.equal(pageStateName(h.get_hyp_state(phys)), pageStateName(want.hyp), `${at}: hyp`);
        assert.equal(pageStateName(h.guestPageState(vm.handle, gfn)), pageStateName(want.guest[0]!), `${at}: guest[0]`);
        assert.equal(pageStateName(h.guestPageState(vm.handle, gfn + 1)), pageStateName(want.guest[1]!), `${at}: guest[1]`);
      };
      const t = (res: number, name: string, fn: () => number): void => {
        step++;
        assert.equal(fn(), res, `step ${step}: ${name}`);
        check();
      };
      const donate_hyp = (): number => h.__pkvm_host_donate_hyp(pfn, 1);
      const share_hyp = (): number => h.__pkvm_host_share_hyp(pfn);
      const unshare_hyp = (): number => h.__pkvm_host_unshare_hyp(pfn);
      const share_ffa = (): number => h.__pkvm_host_share_ffa(pfn, 1);
      const unshare_ffa = (): number => h.__pkvm_host_unshare_ffa(pfn, 1);
      const pin = (): number => h.hyp_pin_shared_mem(phys, 4096);
      const share_guest = (g = gfn): number => h.__pkvm_host_share_guest(pfn, g, 1, vm.handle, prot);
      const unshare_guest = (g = gfn): number => h.__pkvm_host_unshare_guest(g, 1, vm.handle);
      const hyp_donate_host = (): number => h.__pkvm_hyp_donate_host(pfn, 1);

      check();
      t(EPERM, 'donate_hyp', donate_hyp);
      t(EPERM, 'share_hyp', share_hyp);
      t(EPERM, 'unshare_hyp', unshare_hyp);
      t(EPERM, 'share_ffa', share_ffa);
      t(EPERM, 'unshare_ffa', unshare_ffa);
      t(EPERM, 'pin', pin);
      t(EPERM, 'share_guest', () => share_guest());
      t(ENOENT, 'unshare_guest', () => unshare_guest());

      want.host = OWNED;
      want.hyp = NOPAGE;
      t(0, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'unshare_hyp', unshare_hyp);
      t(EPERM, 'unshare_ffa', unshare_ffa);
      t(ENOENT, 'unshare_guest', () => unshare_guest());
      t(EPERM, 'pin', pin);

      want.host = SHARED;
      want.hyp = BORROWED;
      t(0, 'share_hyp', share_hyp);
      t(EPERM, 'share_hyp', share_hyp);
      t(EPERM, 'donate_hyp', donate_hyp);
      t(EPERM, 'share_ffa', share_ffa);
      t(EPERM, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'share_guest', () => share_guest());
      t(ENOENT, 'unshare_guest', () => unshare_guest());

      t(0, 'pin', pin);
      t(0, 'pin', pin);
      h.hyp_unpin_shared_mem(phys, 4096);
      assert.equal(h.hyp_page(phys)!.refcount, 1);
      t(EBUSY, 'unshare_hyp', unshare_hyp);
      t(EPERM, 'share_hyp', share_hyp);
      t(EPERM, 'donate_hyp', donate_hyp);
      t(EPERM, 'share_ffa', share_ffa);
      t(EPERM, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'share_guest', () => share_guest());
      t(ENOENT, 'unshare_guest', () => unshare_guest());
      h.hyp_unpin_shared_mem(phys, 4096);
      check();
      assert.equal(h.hyp_page(phys)!.refcount, 0);

      want.host = OWNED;
      want.hyp = NOPAGE;
      t(0, 'unshare_hyp', unshare_hyp);

      want.host = SHARED;
      want.hyp = NOPAGE;
      t(0, 'share_ffa', share_ffa);
      t(EPERM, 'share_ffa', share_ffa);
      t(EPERM, 'donate_hyp', donate_hyp);
      t(EPERM, 'share_hyp', share_hyp);
      t(EPERM, 'unshare_hyp', unshare_hyp);
      t(EPERM, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'share_guest', () => share_guest());
      t(ENOENT, 'unshare_guest', () => unshare_guest());
      t(EPERM, 'pin', pin);

      want.host = OWNED;
      want.hyp = NOPAGE;
      t(0, 'unshare_ffa', unshare_ffa);
      t(EPERM, 'unshare_ffa', unshare_ffa);

      want.host = SHARED;
      want.guest[0] = BORROWED;
      t(0, 'share_guest', () => share_guest());
      t(EPERM, 'share_guest', () => share_guest());
      t(EPERM, 'share_ffa', share_ffa);
      t(EPERM, 'donate_hyp', donate_hyp);
      t(EPERM, 'share_hyp', share_hyp);
      t(EPERM, 'unshare_hyp', unshare_hyp);
      t(EPERM, 'hyp_donate_host', hyp_donate_host);
      t(EPERM, 'pin', pin);

      want.guest[1] = BORROWED;
      t(0, 'share_guest gfn+1', () => share_guest(gfn + 1));
      assert.equal(h.hyp_page(phys)!.host_share_guest_count, 2);

      want.guest[0] = NOPAGE;
      t(0, 'unshare_guest', () => unshare_guest());

      want.guest[1] = NOPAGE;
      want.host = OWNED;
      t(0, 'unshare_guest gfn+1', () => unshare_guest(gfn + 1));

      want.host = NOPAGE;
      want.hyp = OWNED;
      t(0, 'donate_hyp', donate_hyp);
    });
  });
}
