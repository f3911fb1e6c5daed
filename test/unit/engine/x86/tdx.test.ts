import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GiB, capture, slot, vm } from './fault_helpers';
import { KVM_X86_TDX_VM, KVM_MEM_GUEST_MEMFD, PRIVATE } from '../../../../src/engine/x86/index';
import { TdxModule, TDX_EPT_WALK_FAILED, TDX_EPT_ENTRY_STATE_INCORRECT, TDX_OPERAND_PAGE_METADATA_INCORRECT } from '../../../../src/engine/x86/tdx';
import { compare_tdx_stolen_bits } from '../../../../src/engine/x86/tdx_variants';
import { kvm_gmem_get_file } from '../../../../src/engine/kvm/guest_memfd';

const SHARED48 = 2 ** 47;
const ROLE_IS_MIRROR = 1 << 19;

function td(extra: Record<string, unknown> = {}) {
  const v = vm({ vm_type: KVM_X86_TDX_VM, ...extra });
  assert.equal(slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD }), 0);
  assert.equal(v.set_memory_attributes(0, GiB, PRIVATE), 0);
  return v;
}

test('the shared bit: GPA bit 47 (GPAW 48) or bit 51 (GPAW 52) as kvm_gfn_direct_bits', () => {
  assert.equal(vm({ vm_type: KVM_X86_TDX_VM }).kvm.arch.gfn_direct_bits, 2 ** 35);
  assert.equal(vm({ vm_type: KVM_X86_TDX_VM, tdx_gpaw: 52, vendor_config: { max_tdp_level: 5 } }).kvm.arch.gfn_direct_bits, 2 ** 39);
  assert.equal(vm().kvm.arch.gfn_direct_bits, 0);
});

test('a private fault maps through the mirror root and the TDX module; the direct root stays empty', () => {
  const v = td();
  const r = v.access(0, 0x5000, 'read');
  assert.equal(r.outcome, 'fixed');
  const mirror = v.current_root(0, true)!;
  assert.equal(mirror.role, 0x3784 | ROLE_IS_MIRROR);
  const leaf = v.read_spte(5, 1, mirror)!;
  assert.notEqual(leaf.lo & 0x800, 0);
  assert.equal(v.tdx!.mapped().get(5), leaf.pfn);
  assert.equal(v.leaves(v.current_root(0)!).size, 0);
  // TDX treats every private EPT violation as a write.
  assert.equal(v.vcpu(0).fault.write, true);
  assert.equal(v.vcpu(0).fault.is_private, true);
  // Tables were handed to the module top-down before the page.
  assert.deepEqual(v.tdx!.log.map((l) => `${l.leaf} l${l.level}`), ['TDH.MEM.SEPT.ADD l4', 'TDH.MEM.SEPT.ADD l3', 'TDH.MEM.SEPT.ADD l2', 'TDH.MEM.PAGE.AUG l1']);
});

test('private mappings are 4K even over 2M-capable memory', () => {
  const v = vm({ vm_type: KVM_X86_TDX_VM });
  slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD, backing: '2m-thp' });
  v.set_memory_attributes(0, GiB, PRIVATE);
  v.access(0, 0x20_0000, 'write');
  assert.equal(v.stats().vm.pages_2m, 0);
  assert.equal(v.stats().vm.pages_4k, 1);
});

test('a shared GPA maps through the direct root, indexed with the shared bit; the memslot sees the stripped gfn', () => {
  const v = td();
  v.set_memory_attributes(0x5000, 0x1000, 0);
  const c = capture();
  const r = v.access(0, SHARED48 + 0x5000, 'write');
  c.stop();
  assert.equal(r.outcome, 'fixed');
  const root = v.current_root(0)!;
  const full = 2 ** 35 + 5;
  const leaf = v.read_spte(full, 1, root)!;
  assert.notEqual(leaf.lo & 0x800, 0);
  // PML4 entry 256 is the shared half.
  assert.equal(v.read_spte(full, 4, root)!.sptep % 4096, 256 * 8);
  assert.equal(v.vcpu(0).fault.gfn, 5);
  assert.equal(v.tdx!.log.length, 0, 'shared mappings never reach the TDX module');
  // Trace gfns are the stripped ones.
  assert.match(c.events.find((e) => e.name === 'kvm_mmu_set_spte')!.text, /^gfn 5 /);
});

test('private <-> shared conversion zaps the other alias', () => {
  const v = td();
  v.access(0, 0x7000, 'read');
  assert.equal(v.tdx!.mapped().has(7), true);
  // Shared access to a private gfn: KVM_EXIT_MEMORY_FAULT for userspace to convert.
  const r = v.access(0, SHARED48 + 0x7000, 'read');
  assert.equal(r.ret, -14);
  assert.equal(v.vcpu(0).run_exit!.exit_reason, 39);
  assert.equal(v.vcpu(0).run_exit!.flags, 0);
  assert.equal(v.set_memory_attributes(0x7000, 0x1000, 0), 0);
  assert.equal(v.tdx!.mapped().has(7), false);
  assert.deepEqual(v.tdx!.log.slice(-3).map((l) => l.leaf), ['TDH.MEM.RANGE.BLOCK', 'TDH.MEM.TRACK', 'TDH.MEM.PAGE.REMOVE']);
  assert.equal(v.read_spte(7, 1, v.current_root(0, true))!.lo & 0x800, 0);
  v.access(0, SHARED48 + 0x7000, 'read');
  assert.notEqual(v.read_spte(2 ** 35 + 7, 1)!.lo & 0x800, 0);
  // And back: the shared SPTE goes, the module is not involved.
  const n = v.tdx!.log.length;
  assert.equal(v.set_memory_attributes(0x7000, 0x1000, PRIVATE), 0);
  assert.equal(v.read_spte(2 ** 35 + 7, 1)!.lo & 0x800, 0);
  assert.equal(v.tdx!.log.length, n);
});

test('kvm_mmu_zap_all_fast invalidates only the direct root; the mirror root and S-EPT stay', () => {
  const v = td();
  v.access(0, 0x5000, 'read');
  const mirror = v.current_root(0, true)!;
  v.zap_all_fast();
  assert.equal(mirror.role & 0x800, 0);
  assert.equal(v.tdx!.mapped().size, 1);
  assert.equal(v.roots().filter((r) => r.invalid).length, 1);
});

test('shared MMIO: the SPTE is installed with suppress-#VE clear; the re-executed access is a #VE, not an exit', () => {
  const v = td();
  const r = v.access(0, SHARED48 + 0xfee0_0000, 'read');
  assert.equal(r.outcome, 'retry_instruction');
  const s = v.read_spte(2 ** 35 + 0xfee00, 1)!;
  assert.equal(s.hi >>> 31, 0, 'SVE clear so the guest gets #VE');
  assert.equal(s.lo & 7, 0);
  assert.equal(v.access(0, SHARED48 + 0xfee0_0000, 'read').exit, 've');
});

test('a refusal by the TDX module leaves the mirror SPTE as it was and the fault retries', () => {
  const v = td();
  // Make the module believe the gmem page for gfn 9 already belongs elsewhere.
  const s0 = v.kvm.kvm_memslots(0).byId(0)!;
  const b = kvm_gmem_get_file(v.kvm.private_mem, s0)!;
  const pfn = b.file.pfn_base + b.pgoff + 9;
  v.tdx!.assigned.set(pfn, 'someone else');
  const r = v.access(0, 0x9000, 'read');
  assert.equal(r.ret_pf, 1);
  assert.equal(v.tdx!.log.at(-1)!.status, TDX_OPERAND_PAGE_METADATA_INCORRECT);
  const s = v.read_spte(9, 1, v.current_root(0, true))!;
  assert.equal(s.hi >>> 0, 0x8000_0000, 'SHADOW_NONPRESENT_VALUE restored, not FROZEN');
  assert.equal(s.lo, 0);
});

test('teardown: the HKID is released first, then every private page and S-EPT page is reclaimed', () => {
  const v = td();
  for (const g of [1, 2, 0x300, 0x40000 - 1]) v.access(0, g * 0x1000, 'read');
  v.destroy();
  assert.equal(v.tdx!.mapped().size, 0);
  assert.equal(v.tdx!.table_count(), 0);
  assert.equal(v.tdx!.failures, 0);
  assert.equal(v.kvm.pool.live, 0);
  assert.deepEqual(v.kvm.warnings, []);
});

test('TDX module model rejects illegal S-EPT operations', () => {
  const m = new TdxModule(4);
  assert.equal(m.page_aug(5, 1, 0x1234), -5);
  assert.equal(m.log.at(-1)!.status, TDX_EPT_WALK_FAILED);
  assert.equal(m.sept_add(0, 3, 0x100), -5, 'no level-4 entry yet');
  assert.equal(m.sept_add(0, 4, 0x100), 0);
  assert.equal(m.sept_add(0, 4, 0x101), -5);
  assert.equal(m.log.at(-1)!.status, TDX_EPT_ENTRY_STATE_INCORRECT);
  assert.equal(m.sept_add(0, 3, 0x102), 0);
  assert.equal(m.sept_add(0, 2, 0x103), 0);
  assert.equal(m.page_aug(5, 1, 0x1234), 0);
  assert.equal(m.page_aug(5, 1, 0x1235), -5, 'entry taken');
  assert.equal(m.page_aug(6, 1, 0x1234), -5, 'pfn already assigned');
  assert.equal(m.page_aug(0x200, 2, 0x2000), -5, 'no huge private pages');
  assert.equal(m.page_remove(7, 1, 0x1234), -5, 'nothing mapped there');
  assert.equal(m.page_remove(5, 1, 0x9999), -5, 'wrong pfn');
  assert.equal(m.sept_reclaim(0, 1, 0x103), -5, 'HKID still assigned');
  m.hkid_assigned = false;
  assert.equal(m.sept_reclaim(0, 1, 0x103), -5, 'table not empty');
  assert.equal(m.page_remove(5, 1, 0x1234), 0);
  assert.equal(m.sept_reclaim(0, 1, 0x103), 0);
});

test('design variant tdx_stolen_bits: sp_field uses one root, one SP fewer, 8 more header bytes per SP', () => {
  const rep = compare_tdx_stolen_bits((v) => {
    slot(v, 0, 0, GiB, { flags: KVM_MEM_GUEST_MEMFD });
    v.set_memory_attributes(0, 0x10_0000, PRIVATE);
    v.access(0, 0x1000, 'read'); // private
    v.access(0, SHARED48 + 0x20_0000, 'write'); // shared
  });
  assert.equal(rep.mirror_role.roots, 2);
  assert.equal(rep.sp_field.roots, 1);
  // Private path: 3 tables under the (mirror) root; shared path: 3 more under the direct half.
  assert.equal(rep.mirror_role.sps, 2 + 6);
  assert.equal(rep.sp_field.sps, 1 + 6);
  assert.equal(rep.sp_field.extra_header_bytes, 8 * 7);
  assert.equal(rep.mirror_role.extra_header_bytes, 0);
  assert.equal(rep.sp_field.hash_entries, 6);
  for (const s of [rep.mirror_role, rep.sp_field]) {
    assert.equal(s.private_leaves, 1);
    assert.equal(s.shared_leaves, 1);
    assert.equal(s.private_pages, 1);
    assert.equal(s.sept_tables, 3);
  }
  assert.ok(rep.differences.some((d) => d.startsWith('roots: 2 (mirror_role) vs 1 (sp_field)')));
});
