import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EPT_RAM_RO, EPT_RAM_RW, GiB, MiB, NPT_RAM_RW, bits, capture, hx, slot, vm } from './fault_helpers';
import { KVM_MEM_READONLY } from '../../../../src/engine/x86/index';

const PFN0 = 0x40_0000;

test('EPT write fault on a 4K slot installs a writable, dirty, WB+IPAT leaf and counts pf_fixed', () => {
  const v = vm();
  assert.equal(slot(v, 0, 0, GiB), 0);
  const r = v.access(0, 0x1234_5000, 'write');
  assert.equal(r.exit, 'ept_violation');
  assert.equal(r.outcome, 'fixed');
  const s = v.read_spte(0x12345, 1)!;
  assert.equal(hx(s.lo, s.hi), bits(EPT_RAM_RW, PFN0 + 0x12345));
  assert.equal(v.stats().vcpus[0]!.pf_fixed, 1);
  assert.equal(v.stats().vcpus[0]!.pf_taken, 1);
  assert.equal(v.stats().vm.pages_4k, 1);
  // The retried access now completes in hardware.
  assert.equal(v.access(0, 0x1234_5000, 'write').exit, 'none');
});

test('a read fault on a writable slot still maps the page writable (ACC_ALL, host-writable)', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x5000, 'read');
  const s = v.read_spte(5, 1)!;
  assert.equal(hx(s.lo, s.hi), bits(EPT_RAM_RW, PFN0 + 5));
});

test('read-only slot: reads map without W/D/host/MMU-writable, writes exit to userspace as MMIO', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { flags: KVM_MEM_READONLY });
  v.access(0, 0x7000, 'read');
  const s = v.read_spte(7, 1)!;
  assert.equal(hx(s.lo, s.hi), bits(EPT_RAM_RO, PFN0 + 7));
  const w = v.access(0, 0x7000, 'write');
  assert.equal(w.exit, 'ept_violation');
  assert.equal(w.ret, 0);
  assert.equal(v.vcpu(0).run_exit?.exit_reason, 6); // KVM_EXIT_MMIO
  assert.equal(v.stats().vcpus[0]!.pf_emulate, 1);
  // Emulation doesn't change the SPTE.
  assert.equal(hx(v.read_spte(7, 1)!.lo, v.read_spte(7, 1)!.hi), bits(EPT_RAM_RO, PFN0 + 7));
});

test('NPT leaf bits and #NPF error code', () => {
  const v = vm({ vendor: 'svm' });
  slot(v, 0, 0, GiB);
  const r = v.access(0, 0x9000, 'write');
  assert.equal(r.exit, 'npf');
  assert.equal(r.info_lo, 0x6); // W | U (NPT reports every access as user), not present
  assert.equal(r.info_hi, 1); // PFERR_GUEST_FINAL_MASK (bit 32)
  const s = v.read_spte(9, 1)!;
  assert.equal(hx(s.lo, s.hi), bits(NPT_RAM_RW, PFN0 + 9));
});

test('root role word: 4-level EPT with A/D is 0x3784; A/D off adds ad_disabled; 5-level when needed', () => {
  const a = vm();
  a.access(0, 0, 'read');
  assert.equal(a.roots()[0]!.role, 0x3784);
  const b = vm({ vendor_config: { ept_ad: false } });
  b.access(0, 0, 'read');
  assert.equal(b.roots()[0]!.role, 0x1_3784);
  const c = vm({ vendor_config: { max_tdp_level: 5, host_maxphyaddr: 52 }, guest_maxphyaddr: 52 });
  c.access(0, 0, 'read');
  assert.equal(c.roots()[0]!.role, 0x3785);
  const d = vm({ vendor_config: { max_tdp_level: 5, host_maxphyaddr: 52 }, guest_maxphyaddr: 48 });
  d.access(0, 0, 'read');
  assert.equal(d.roots()[0]!.role, 0x3784);
  const e = vm({ vendor_config: { max_tdp_level: 5, host_maxphyaddr: 52 }, guest_maxphyaddr: 48, params: { tdp_root_level: 5 } });
  e.access(0, 0, 'read');
  assert.equal(e.roots()[0]!.role, 0x3785);
});

test('trace: the events of a first fault, in order, with the 6.18 text', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.enter(v.vcpu(0));
  const c = capture();
  v.access(0, 0x1234_5000, 'write');
  c.stop();
  assert.deepEqual(c.events.map((e) => e.name), [
    'kvm_page_fault',
    'kvm_mmu_spte_requested',
    'kvm_mmu_get_page', 'kvm_tdp_mmu_spte_changed', // PDPT table linked into the PML4
    'kvm_mmu_get_page', 'kvm_tdp_mmu_spte_changed', // PD
    'kvm_mmu_get_page', 'kvm_tdp_mmu_spte_changed', // PT
    'kvm_tdp_mmu_spte_changed', // the leaf
    'kvm_mmu_set_spte',
  ]);
  const pfn = (PFN0 + 0x12345).toString(16);
  assert.equal(c.events[0]!.text, 'vcpu 0 rip 0xfff0 address 0x0000000012345000 error_code 0x182');
  assert.equal(c.events[1]!.text, `gfn 12345 pfn ${pfn} level 1`);
  assert.equal(c.events[2]!.text, 'sp gen 0 gfn 0 l3 8-byte q0 direct wux nxe ad root 0 sync new');
  assert.equal(c.events[6]!.text, 'sp gen 0 gfn 12200 l1 8-byte q0 direct wux nxe ad root 0 sync new');
  const leaf = bits(EPT_RAM_RW, PFN0 + 0x12345);
  assert.equal(c.events[8]!.text, `as id 0 gfn 12345 level 1 old_spte 8000000000000000 new_spte ${leaf}`);
  assert.match(c.events[9]!.text, new RegExp(`^gfn 12345 spte ${leaf} \\(rwxu\\) level 1 at [0-9a-f]+$`));
  // The non-leaf SPTEs point at the new table: present, A, RWX, SVE.
  const nl = c.events[3]!.fields['new_spte'] as string;
  assert.equal(BigInt('0x' + nl) & 0xfffn, 0x907n);
  assert.equal(BigInt('0x' + nl) >> 63n, 1n);
});

test('huge pages: THP-backed aligned slot maps 2M, hugetlb 1G, aligned pfn and PS set', () => {
  const v = vm();
  slot(v, 0, 0, GiB, { backing: '2m-thp' });
  const c = capture();
  v.access(0, 0x20_3000, 'write');
  c.stop();
  const s = v.read_spte(0x203, 2)!;
  assert.equal(hx(s.lo, s.hi), bits([...EPT_RAM_RW, 7], PFN0 + 0x200));
  assert.equal(v.stats().vm.pages_2m, 1);
  // spte_requested reports pfn | (gfn offset in the 2M page) at level 2.
  const req = c.events.find((e) => e.name === 'kvm_mmu_spte_requested')!;
  assert.equal(req.text, `gfn 203 pfn ${(PFN0 + 0x203).toString(16)} level 2`);

  const w = vm();
  slot(w, 0, 0, 4 * GiB, { backing: '1g-hugetlb', pfn_base: 0x100_0000 });
  w.access(0, 0x4000_5000, 'read');
  const g = w.read_spte(0x40005, 3)!;
  assert.equal(hx(g.lo, g.hi), bits([...EPT_RAM_RW, 7], 0x100_0000 + 0x40000));
  assert.equal(w.stats().vm.pages_1g, 1);
});

test('huge pages: a misaligned slot head and a dirty-logged slot stay at 4K', () => {
  const v = vm();
  // Slot starts at gfn 0x100 (1 MiB): the first 2M page sticks out of the slot.
  slot(v, 0, MiB, 8 * MiB, { backing: '2m-thp', uaddr: 0x7f00_0000_0000 + MiB });
  v.access(0, MiB + 0x1000, 'read');
  assert.equal(v.read_spte(0x101, 1) !== undefined, true);
  assert.equal(v.stats().vm.pages_4k, 1);
  v.access(0, 4 * MiB, 'read'); // 2M-aligned page fully inside
  assert.equal(v.stats().vm.pages_2m, 1);

  const d = vm();
  slot(d, 0, 0, GiB, { backing: '2m-thp', flags: 1 });
  d.access(0, 0x20_0000, 'read');
  assert.equal(d.stats().vm.pages_2m, 0);
  assert.equal(d.stats().vm.pages_4k, 1);
});

test('MMIO: no slot installs an MMIO SPTE (EPT WX misconfig value + generation), later a misconfig emulates', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  const c = capture();
  const r1 = v.access(0, 0xfee0_0000, 'read');
  c.stop();
  assert.equal(r1.ret_pf, 2); // RET_PF_EMULATE
  assert.equal(v.vcpu(0).run_exit?.exit_reason, 6);
  const s = v.read_spte(0xfee00, 1)!;
  // gpa | gen(2) in bits 3-10 | W|X (0b110); suppress-#VE clear.
  assert.equal(hx(s.lo, s.hi), (0xfee0_0000 + (2 << 3) + 0x6).toString(16));
  const mark = c.events.find((e) => e.name === 'mark_mmio_spte')!;
  assert.match(mark.text, /^sptep:[0-9a-f]{16} gfn fee00 access 6 gen 2$/);
  assert.equal(v.stats().vcpus[0]!.pf_mmio_spte_created, 1);
  const r2 = v.access(0, 0xfee0_0000, 'read');
  assert.equal(r2.exit, 'ept_misconfig');
  assert.equal(r2.ret_pf, 2);
  // The RSVD path does not count pf_taken.
  assert.equal(v.stats().vcpus[0]!.pf_taken, 1);
});

test('MMIO: with mmio_caching off nothing is installed and every access emulates', () => {
  const v = vm({ params: { mmio_caching: false } });
  slot(v, 0, 0, GiB);
  v.access(0, 0xfee0_0000, 'read');
  assert.equal(v.read_spte(0xfee00, 1), undefined);
  assert.equal(v.stats().vcpus[0]!.pf_mmio_spte_created, 0);
  assert.equal(v.access(0, 0xfee0_0000, 'read').exit, 'ept_violation');
});

test('MMIO: a memslot change makes the MMIO SPTE stale: check_mmio_spte fails and the fault remaps it', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0xfee0_0000, 'read');
  slot(v, 1, 2 * GiB, GiB); // generation 2 -> 4
  v.vcpu(0).mmio_gfn = -1; // a different MMIO access in between dropped the cache
  const c = capture();
  const r = v.access(0, 0xfee0_0000, 'read');
  c.stop();
  assert.equal(r.exit, 'ept_misconfig');
  const chk = c.events.find((e) => e.name === 'check_mmio_spte')!;
  assert.match(chk.text, /kvm_gen 4 spte-gen 2 valid 0$/);
  const s = v.read_spte(0xfee00, 1)!;
  assert.equal(hx(s.lo, s.hi), (0xfee0_0000 + (4 << 3) + 0x6).toString(16));
});

test('fast_page_fault: a write to a write-protected (MMU-writable) SPTE is fixed locklessly and logged dirty', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x3000, 'write');
  assert.equal(v.set_dirty_logging(0, true), 0);
  const wp = v.read_spte(3, 1)!;
  assert.equal(wp.lo & 2, 0, 'W cleared by dirty logging');
  assert.notEqual(wp.hi & (1 << 26), 0, 'MMU-writable kept');
  const c = capture();
  const r = v.access(0, 0x3000, 'write');
  c.stop();
  assert.equal(r.outcome, 'fixed');
  assert.equal(v.stats().vcpus[0]!.pf_fast, 1);
  assert.notEqual(v.read_spte(3, 1)!.lo & 2, 0);
  const ev = c.events.find((e) => e.name === 'fast_page_fault')!;
  // The EPT qualification says "GVA translated", so PFERR_GUEST_FINAL (bit 32) is set and printed as hex.
  assert.match(ev.text, /^vcpu 0 gva 3000 error_code P\|W\|0x100000000 sptep [0-9a-f]{16} old 0x[0-9a-f]+ new [0-9a-f]+ spurious 0 fixed 1$/);
  // No kvm_tdp_mmu_spte_changed: the fast path bypasses handle_changed_spte.
  assert.equal(c.events.some((e) => e.name === 'kvm_tdp_mmu_spte_changed'), false);
  const bm = v.get_dirty_log(0) as Uint32Array;
  assert.equal(bm[0]! & (1 << 3), 1 << 3);
});

test('fast_page_fault: a fault on an SPTE that already allows the access is spurious', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.access(0, 0x3000, 'write');
  const c = capture();
  const n = v.fault(0, 0x3000, 0x3); // present write, as a racing vCPU would report it
  c.stop();
  assert.equal(n, 1);
  assert.equal(v.vcpu(0).last_outcome, 'spurious');
  assert.equal(v.stats().vcpus[0]!.pf_spurious, 1);
  assert.match(c.events.find((e) => e.name === 'fast_page_fault')!.text, /spurious 1 fixed 0$/);
});

test('access tracking without A/D: aging clears RWX and saves R/X at bits 54/56; the next access restores them', () => {
  const v = vm({ vendor_config: { ept_ad: false } });
  slot(v, 0, 0, GiB);
  v.access(0, 0x4000, 'read');
  const before = v.read_spte(4, 1)!;
  assert.equal(before.lo & 7, 7);
  const hva = 0x7f00_0000_0000 + 0x4000;
  assert.equal(v.notifier_age(hva, hva + 4096, 'clear_young'), true);
  const aged = v.read_spte(4, 1)!;
  assert.equal(aged.lo & 7, 0);
  assert.equal(aged.lo & 0x100, 0, 'software accessed bit cleared');
  assert.equal((aged.hi >>> (54 - 32)) & 1, 1, 'R saved at 54');
  assert.equal((aged.hi >>> (56 - 32)) & 1, 1, 'X saved at 56');
  const r = v.access(0, 0x4000, 'read');
  assert.equal(r.outcome, 'fixed');
  assert.equal(v.stats().vcpus[0]!.pf_fast, 1);
  const back = v.read_spte(4, 1)!;
  assert.equal(back.lo & 5, 5);
  assert.notEqual(back.lo & 0x100, 0);
});

test('a notifier invalidation racing with the fault makes it stale: RET_PF_RETRY, nothing mapped', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  const vc = v.vcpu(0);
  let once = true;
  vc.on_faultin_done = () => {
    if (!once) return;
    once = false;
    v.notifier_invalidate(0x7f00_0000_0000 + 0x8000, 0x7f00_0000_0000 + 0x9000);
  };
  const r = v.access(0, 0x8000, 'write');
  assert.equal(r.ret_pf, 1);
  assert.equal(v.read_spte(8, 1)?.lo ?? 0, 0);
  assert.equal(v.access(0, 0x8000, 'write').outcome, 'fixed');
});

test('hwpoisoned host page: SIGBUS to the VMM and RET_PF_RETRY', () => {
  const v = vm();
  slot(v, 0, 0, GiB);
  v.kvm.kvm_memslots(0).byId(0)!.host_hwpoison.add(0x10);
  const r = v.access(0, 0x10000, 'read');
  assert.equal(r.ret_pf, 1);
  assert.match(v.vcpu(0).signals[0]!, /^SIGBUS BUS_MCEERR_AR/);
});

test('SW-protected VM: a fault whose private-ness disagrees with the attribute exits with KVM_EXIT_MEMORY_FAULT', () => {
  const v = vm({ vm_type: 1 });
  slot(v, 0, 0, GiB, { flags: 4 });
  assert.equal(v.set_memory_attributes(0x5000, 0x1000, 1 << 3), 0);
  // Private attribute: a shared-looking access gets PRIVATE_ACCESS added and maps through gmem.
  const r = v.access(0, 0x5000, 'read');
  assert.equal(r.outcome, 'fixed');
  // Direct fault claiming private on a shared gfn: mismatch -> memory fault exit.
  const n = v.fault(0, 0x6000, 0, 1 << (49 - 32));
  assert.equal(n, -14);
  assert.deepEqual(v.vcpu(0).run_exit, { exit_reason: 39, flags: 8, gpa: 0x6000, size: 4096 });
});

test('events raised while a vCPU handles its fault are attributed to that vCPU; ioctl-time events to none', () => {
  const v = vm({ nr_vcpus: 2 });
  slot(v, 0, 0, GiB);
  const c = capture();
  v.access(1, 0x1000, 'write');
  const n = c.events.length;
  v.zap_gfn_range(0, 2);
  c.stop();
  assert.ok(n >= 9);
  assert.ok(c.events.slice(0, n).every((e) => e.vcpu === 1), 'root load and fault events on vCPU 1');
  assert.deepEqual(c.events.slice(n).map((e) => [e.name, e.vcpu]), [['kvm_tdp_mmu_spte_changed', -1]]);
});
