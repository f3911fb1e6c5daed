/**
 * The arm64 binding: scenario statements onto the pKVM hypervisor model (host stage-2 ownership,
 * hyp and guest transitions) in src/engine/arm64/. One guest VM is created with the VM; its guest
 * stage-2 lives at EL2 as in pKVM.
 */
import { decodeS2Descriptor } from '../../engine/arm64/decode';
import { stage2DescriptorAt } from '../../engine/arm64/pgtable';
import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X } from '../../engine/arm64/pgtable_desc';
import { PkvmHyp, type PkvmHypVm, pageStateName } from '../../engine/arm64/pkvm_mem_protect';
import { type OwnerEncoding, ownerName } from '../../engine/arm64/variants';
import { type Fields, NotSupportedYet, type Outcome, type ScenarioEngine, type VmConfig } from '../engine_api';

/** owner_encoding variant names: `upstream` is today's typed annotations. */
function encodingOf(cfg: VmConfig): OwnerEncoding {
  const v = cfg.variants['owner_encoding'] ?? 'upstream';
  return v === 'proposed' || v === 'set_owner_2021' ? 'set_owner_2021' : 'annotate_2026';
}

/** `PKVM_PAGE_SHARED_OWNED` -> `SHARED_OWNED`, `PKVM_NOPAGE` -> `NOPAGE`: both spellings compare equal. */
function shortState(s: number): string {
  return pageStateName(s).replace(/^PKVM_(PAGE_)?/, '');
}

function protOf(words: string[] | undefined): number {
  if (!words) return KVM_PGTABLE_PROT_R | KVM_PGTABLE_PROT_W | KVM_PGTABLE_PROT_X;
  let p = 0;
  for (const w of words) p |= w === 'R' ? KVM_PGTABLE_PROT_R : w === 'W' ? KVM_PGTABLE_PROT_W : KVM_PGTABLE_PROT_X;
  return p;
}

class Arm64Engine implements ScenarioEngine {
  readonly name: string;
  readonly hyp: PkvmHyp;
  readonly vm: PkvmHypVm;

  constructor(readonly cfg: VmConfig) {
    const encoding = encodingOf(cfg);
    this.name = `arm64 pKVM (owner_encoding ${encoding})`;
    this.hyp = new PkvmHyp({
      granule: '4k',
      paBits: cfg.paBits,
      encoding,
      memory: [{ base: cfg.hostMemory.start, size: cfg.hostMemory.end - cfg.hostMemory.start }],
    });
    this.vm = this.hyp.createVm({ iaBits: cfg.ipaBits, isProtected: cfg.type === 'pkvm' });
  }

  pkvm(call: string, a: { pfn?: number; gfn?: number; nrPages: number; prot?: string[]; vcpu: number; phys?: number }): Outcome {
    const h = this.hyp;
    const handle = this.vm.handle;
    const pfn = a.pfn ?? 0;
    const gfn = a.gfn ?? 0;
    // The host tops up the guest's memcache before any call that may allocate guest tables.
    const topup = () => h.topupGuestMemcache(this.vm, this.vm.memcache.capacity);
    switch (call) {
      case '__pkvm_host_share_hyp':
        return { ret: h.__pkvm_host_share_hyp(pfn) };
      case '__pkvm_host_unshare_hyp':
        return { ret: h.__pkvm_host_unshare_hyp(pfn) };
      case '__pkvm_host_donate_hyp':
        return { ret: h.__pkvm_host_donate_hyp(pfn, a.nrPages) };
      case '__pkvm_hyp_donate_host':
        return { ret: h.__pkvm_hyp_donate_host(pfn, a.nrPages) };
      case 'hyp_pin_shared_mem':
        return { ret: h.hyp_pin_shared_mem(pfn * h.pageSize, h.pageSize) };
      case 'hyp_unpin_shared_mem':
        h.hyp_unpin_shared_mem(pfn * h.pageSize, h.pageSize);
        return { ret: 0 };
      case '__pkvm_host_share_guest':
        topup();
        return { ret: h.__pkvm_host_share_guest(pfn, gfn, a.nrPages, handle, protOf(a.prot)) };
      case '__pkvm_host_unshare_guest':
        return { ret: h.__pkvm_host_unshare_guest(gfn, a.nrPages, handle) };
      case '__pkvm_host_donate_guest':
        topup();
        return { ret: h.__pkvm_host_donate_guest(pfn, gfn, handle) };
      case '__pkvm_guest_share_host':
        return { ret: h.__pkvm_guest_share_host(handle, gfn) };
      case '__pkvm_host_reclaim_page_guest':
        return { ret: h.__pkvm_host_reclaim_page_guest(handle, gfn) };
      case '__pkvm_host_force_reclaim_page_guest':
        return { ret: h.__pkvm_host_force_reclaim_page_guest(a.phys ?? 0) };
      default:
        throw new NotSupportedYet(`the pKVM model has no ${call}`);
    }
  }

  hostStage2Fault(op: { addr: number }): Outcome {
    return { ret: this.hyp.handle_host_mem_abort(op.addr).ret };
  }

  query(subject: string, sel: Fields): Fields[] | undefined {
    const h = this.hyp;
    if (subject === 'page_state') {
      if (sel['gfn'] !== undefined) return [{ guest: shortState(h.guestPageState(this.vm.handle, Number(sel['gfn']))) }];
      const phys = sel['phys'] !== undefined ? Number(sel['phys']) : Number(sel['pfn']) * h.pageSize;
      const own = h.ownerOf(phys);
      const page = h.hyp_page(phys);
      const f: Fields = { host: shortState(own.hostState), hyp: shortState(own.hypState), owner: ownerName(own.owner) };
      if (page) {
        f['refcount'] = page.refcount;
        f['host_share_guest_count'] = page.host_share_guest_count;
      }
      return [f];
    }
    if (subject === 'stage2') {
      const host = sel['pa'] !== undefined;
      const pgt = host ? h.host_pgt : this.vm.pgt;
      const addr = Number(host ? sel['pa'] : sel['ipa']);
      const d = stage2DescriptorAt(pgt, addr, sel['at_level'] !== undefined ? Number(sel['at_level']) : 3);
      if (!d) return [];
      const dec = decodeS2Descriptor(d.lo, d.hi, { level: d.level, granule: '4k', encoding: h.encoding });
      const field = (n: string) => dec.fields.find((x) => x.name === n)?.value;
      const valid = (d.lo & 1) === 1;
      const value = (BigInt(d.hi >>> 0) << 32n) | BigInt(d.lo >>> 0);
      const f: Fields = { valid: valid ? 1 : 0, type: dec.kind, level: d.level, value };
      if (dec.outputAddress) {
        const oa = Number(BigInt(dec.outputAddress));
        f['oa'] = oa;
        f['pfn'] = Math.floor(oa / h.pageSize);
      }
      if (valid && dec.kind !== 'table') {
        const xn = field('KVM_PTE_LEAF_ATTR_HI_S2_XN') ?? 0;
        f['r'] = field('KVM_PTE_LEAF_ATTR_LO_S2_S2AP_R') ?? 0;
        f['w'] = field('KVM_PTE_LEAF_ATTR_LO_S2_S2AP_W') ?? 0;
        f['xn'] = xn;
        f['x'] = xn === 0 ? 1 : 0;
        f['af'] = field('KVM_PTE_LEAF_ATTR_LO_S2_AF') ?? 0;
        f['sh'] = field('KVM_PTE_LEAF_ATTR_LO_S2_SH') ?? 0;
        f['memattr'] = field('KVM_PTE_LEAF_ATTR_LO_S2_MEMATTR') ?? 0;
        f['sw'] = field('KVM_PTE_LEAF_ATTR_HI_SW') ?? 0;
      }
      if (dec.owner) f['owner'] = dec.owner.name;
      else if (host && valid) f['owner'] = 'host';
      if (dec.annotationType) f['annotation'] = dec.annotationType;
      f['state'] = host ? shortState(h.get_host_state(addr)) : shortState(h.guest_get_page_state(d.lo, d.hi));
      return [f];
    }
    return undefined;
  }
}

export function createArm64Engine(cfg: VmConfig): ScenarioEngine | string {
  if (cfg.hostMemory.end <= cfg.hostMemory.start || cfg.hostMemory.start % 4096 || cfg.hostMemory.end % 4096) {
    return 'host_memory must be a non-empty page-aligned range';
  }
  return new Arm64Engine(cfg);
}
