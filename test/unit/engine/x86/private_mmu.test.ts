/**
 * The private-memory model inside the engine's real fault path and TDP MMU (wired by X86Vm):
 * NPT leaves for private gfns come from guest_memfd and are never larger than the RMP entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X86Vm } from '../../../../src/engine/x86/index';
import { KVM_MEM_GUEST_MEMFD } from '../../../../src/engine/x86/memslot';
import { PFERR_GUEST_FINAL_MASK_HI, PFERR_GUEST_ENC_MASK_HI, PFERR_PRIVATE_ACCESS_HI, PFERR_USER_MASK, PFERR_WRITE_MASK, PFERR_PRESENT_MASK, PFERR_GUEST_RMP_MASK } from '../../../../src/engine/x86/pferr';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SNP_VM, kvm_vm_set_mem_attributes } from '../../../../src/engine/kvm/attributes';
import { kvm_gmem_create, kvm_gmem_file } from '../../../../src/engine/kvm/guest_memfd';
import { sev_handle_rmp_fault, to_kvm_sev_info } from '../../../../src/engine/x86/sev_snp';

const GPA = 0x1_0000_0000;
const GFN = GPA / 4096;
const ERR_HI = PFERR_GUEST_FINAL_MASK_HI | PFERR_GUEST_ENC_MASK_HI | PFERR_PRIVATE_ACCESS_HI;

function snp(huge: boolean) {
  // X86Vm wires kvm_x86_private_mem_init and sev_snp_init itself.
  const v = new X86Vm({ vendor: 'svm', vm_type: KVM_X86_SNP_VM, sev_asid: 7 });
  const kvm = v.kvm;
  const sev = to_kvm_sev_info(kvm)!;
  assert.equal(sev.asid, 7);
  const fd = kvm_gmem_create(kvm, { size: 8 << 20, flags: 0 }, { huge_folios: huge });
  assert.equal(v.add_slot(0, GPA, 8 << 20, { flags: KVM_MEM_GUEST_MEMFD, guest_memfd: fd }), 0);
  kvm_vm_set_mem_attributes(kvm, GFN, GFN + 2048, KVM_MEMORY_ATTRIBUTE_PRIVATE);
  return { v, kvm, sev, fd, f: kvm_gmem_file(kvm, fd)! };
}

const leaf = (v: X86Vm, gfn: number) => {
  for (const level of [2, 1]) {
    const s = v.read_spte(gfn, level);
    if (s !== undefined && (s.lo & 0x800) !== 0 && (level === 1 || (s.lo & 0x80) !== 0)) return { level, pfn: s.pfn };
  }
  return undefined;
};

test('huge guest_memfd folio prepared as a 2M RMP entry: the NPT leaf is 2M and maps the gmem pfn', () => {
  const { v, sev, f } = snp(true);
  assert.equal(v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI), 1);
  assert.deepEqual(leaf(v, GFN + 0x213), { level: 2, pfn: f.pfn_base + 0x200 });
  assert.equal(sev.rmp.entry(f.pfn_base + 0x200).pagesize, 1);
});

test('after a PSMASH the refault maps 4K: the NPT leaf never exceeds the RMP entry', () => {
  const { v, sev, f } = snp(true);
  v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
  // A 4K access meets the 2M entry (e.g. the guest's 4K PVALIDATE): #NPF with RMP | SIZEM.
  const res = sev_handle_rmp_fault(v.vcpus[0]!, (GFN + 0x213) * 4096, PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK | PFERR_USER_MASK, ERR_HI);
  assert.equal(res.action, 'psmash');
  // kvm_zap_gfn_range(gfn, gfn + 512) still covers the 2M leaf that held gfn.
  assert.equal(leaf(v, GFN + 0x213), undefined);
  v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
  assert.deepEqual(leaf(v, GFN + 0x213), { level: 1, pfn: f.pfn_base + 0x213 });
  // A neighbour in the same (now 4K) RMP region is also mapped 4K.
  v.fault(0, (GFN + 0x300) * 4096, PFERR_USER_MASK, ERR_HI);
  assert.equal(leaf(v, GFN + 0x300)!.level, 1);
  assert.equal(sev.rmp.stats.psmash, 1);
});

test('order-0 guest_memfd (the kernel today): private NPT leaves are 4K and the RMP entries 4K', () => {
  const { v, sev, f } = snp(false);
  v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
  assert.deepEqual(leaf(v, GFN + 0x213), { level: 1, pfn: f.pfn_base + 0x213 });
  assert.equal(sev.rmp.entry(f.pfn_base + 0x213).pagesize, 0);
  assert.equal(sev.rmp.entry(f.pfn_base + 0x213).assigned, true);
});

test('converting a private page to shared zaps the 2M private leaf over it', () => {
  const { v, kvm } = snp(true);
  v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
  kvm_vm_set_mem_attributes(kvm, GFN + 0x220, GFN + 0x221, 0);
  assert.equal(leaf(v, GFN + 0x213), undefined);
  // The 2M range is mixed now: the refault maps 4K.
  v.fault(0, (GFN + 0x213) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
  assert.equal(leaf(v, GFN + 0x213)!.level, 1);
});

test('property: after any mix of private faults, conversions, hole punches and RMP #NPFs, no private NPT leaf is larger than its RMP entry or maps an unassigned page', async () => {
  const fc = (await import('fast-check')).default;
  const { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, kvm_gmem_fallocate } = await import('../../../../src/engine/kvm/guest_memfd');
  const NP = 2048;
  const op = fc.oneof(
    fc.record({ k: fc.constant('fault' as const), g: fc.integer({ min: 0, max: NP - 1 }) }),
    fc.record({ k: fc.constant('convert' as const), g: fc.integer({ min: 0, max: NP - 1 }), n: fc.integer({ min: 1, max: 600 }), priv: fc.boolean() }),
    fc.record({ k: fc.constant('punch' as const), g: fc.integer({ min: 0, max: NP - 1 }), n: fc.integer({ min: 1, max: 600 }) }),
    fc.record({ k: fc.constant('rmp_npf' as const), g: fc.integer({ min: 0, max: NP - 1 }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
      const { v, kvm, sev, f, fd } = snp(true);
      for (const o of ops) {
        if (o.k === 'fault') {
          if (kvm.kvm_mem_is_private(GFN + o.g)) v.fault(0, (GFN + o.g) * 4096, PFERR_USER_MASK | PFERR_WRITE_MASK, ERR_HI);
        } else if (o.k === 'convert') {
          kvm_vm_set_mem_attributes(kvm, GFN + o.g, GFN + Math.min(NP, o.g + o.n), o.priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0);
        } else if (o.k === 'punch') {
          kvm_gmem_fallocate(kvm, fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, o.g * 4096, (Math.min(NP, o.g + o.n) - o.g) * 4096);
        } else if (kvm.kvm_mem_is_private(GFN + o.g)) {
          sev_handle_rmp_fault(v.vcpus[0]!, (GFN + o.g) * 4096, PFERR_GUEST_RMP_MASK | PFERR_PRESENT_MASK | PFERR_USER_MASK, ERR_HI);
        }
        for (let g = 0; g < NP; g++) {
          const l = leaf(v, GFN + g);
          if (l === undefined) continue;
          const pfn = f.pfn_base + g;
          if (l.pfn !== pfn - (l.level === 2 ? g % 512 : 0)) return false;
          const e = sev.rmp.entry(pfn);
          if (!e.assigned) return false;
          const rmpLevel = sev.rmp.entry(pfn - (pfn % 512)).pagesize ? 2 : 1;
          if (l.level > rmpLevel) return false;
          if (l.level === 2) g += 511 - (g % 512);
        }
      }
      return true;
    }),
    { numRuns: 40 },
  );
});
