import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmStack, probes } from '../../../../src/engine/probes';
import {
  compare_gmem_prepare_variants, default_gmem_workload, format_gmem_variant_comparison, run_gmem_prepare_workload, type GmemWorkload,
} from '../../../../src/engine/x86/gmem_prepare_variant';

test('on_alloc: 2M RMP entries survive a transient 4K fault; the mixed chunk is PSMASHed once on the first 4K access', () => {
  const r = run_gmem_prepare_workload('on_alloc', default_gmem_workload());
  // chunk 0: prepared 2M, mapped 2M. chunk 1: prepared 2M, mapped 4K while mixed -> RMP #NPF -> PSMASH.
  // chunk 2: prepared 2M during the raced fault; the retry maps 2M. chunk 3: never touched.
  assert.deepEqual(r.chunks, [{ rmp_level: 2, npt_level: 2 }, { rmp_level: 1, npt_level: 1 }, { rmp_level: 2, npt_level: 2 }, { rmp_level: 0, npt_level: 0 }]);
  assert.equal(r.rmp_2m, 2);
  assert.equal(r.rmp_4k, 512);
  assert.equal(r.psmash, 1);
  assert.equal(r.rmp_npf, 1);
  // Three folio preparations, each one 2M RMPUPDATE.
  assert.equal(r.rmpupdate, 3);
  // 1 (chunk 0) + 1 + 1 RMP #NPF + 1 refault + 510 (chunk 1 while mixed) + 1 (the shared page, back to private)
  // + 1 raced + 1 retry (chunk 2) = 517.
  assert.equal(r.faults, 517);
  assert.equal(r.retries, 1);
  assert.equal(r.npt_2m, 2);
  assert.equal(r.npt_4k, 512);
  assert.equal(r.memory_fault_exits, 0);
});

test('on_fault: the RMP follows each fault\'s mapping level, so one transient 4K fault fragments a whole chunk', () => {
  const r = run_gmem_prepare_workload('on_fault', default_gmem_workload());
  assert.deepEqual(r.chunks, [{ rmp_level: 2, npt_level: 2 }, { rmp_level: 1, npt_level: 1 }, { rmp_level: 1, npt_level: 1 }, { rmp_level: 0, npt_level: 0 }]);
  assert.equal(r.rmp_2m, 1);
  // chunk 1: 511 pages converted at 4K while mixed, plus the shared page once back to private; chunk 2: 512.
  assert.equal(r.rmp_4k, 1024);
  assert.equal(r.psmash, 0);
  assert.equal(r.rmp_npf, 0);
  // One RMPUPDATE per 4K page plus chunk 0's 2M one.
  assert.equal(r.rmpupdate, 1025);
  // 1 + 511 + 1 + 1 raced + 512 (chunk 2 at 4K, every page its own fault) = 1026.
  assert.equal(r.faults, 1026);
  assert.equal(r.npt_2m, 1);
  assert.equal(r.npt_4k, 1024);
});

test('the variants differ on the same workload; with order-0 folios (the kernel today) they agree', () => {
  const huge = compare_gmem_prepare_variants(default_gmem_workload(true));
  assert.notDeepEqual(huge.on_alloc.chunks, huge.on_fault.chunks);
  assert.ok(huge.on_fault.rmp_4k > huge.on_alloc.rmp_4k);
  assert.ok(huge.on_fault.faults > huge.on_alloc.faults);
  const small = compare_gmem_prepare_variants(default_gmem_workload(false));
  const strip = (r: typeof small.on_alloc) => ({ ...r, variant: '' });
  assert.deepEqual(strip(small.on_alloc), strip(small.on_fault));
  // Three touched chunks, every page its own 4K entry and leaf.
  assert.equal(small.on_alloc.rmp_4k, 3 * 512);
  assert.equal(small.on_alloc.rmp_2m, 0);
  assert.equal(small.on_alloc.npt_4k, 3 * 512);
});

test('punching the shared page out: on_alloc PSMASHes at free time; both variants end with it unassigned', () => {
  const w: GmemWorkload = {
    chunks: 1, huge_folios: true, steps: [
      { op: 'touch', start: 0, end: 512 },
      { op: 'convert', start: 3, end: 4, to: 'shared', punch_hole: true },
    ],
  };
  const { on_alloc, on_fault } = compare_gmem_prepare_variants(w);
  for (const r of [on_alloc, on_fault]) {
    // The 2M entry is split by sev_gmem_invalidate, the punched page goes back to the hypervisor.
    assert.equal(r.psmash, 1);
    assert.equal(r.rmp_2m, 0);
    assert.equal(r.rmp_4k, 511);
  }
});

test('on_fault: the RFC hook runs inside the private faultin path and kvm_arch_gmem_prepare never runs', () => {
  const seen: string[] = [];
  probes.listen((n) => seen.push(n));
  try {
    run_gmem_prepare_workload('on_fault', { chunks: 1, huge_folios: true, steps: [{ op: 'touch', start: 0, end: 1 }] });
  } finally {
    probes.listen(undefined);
  }
  const i = seen.indexOf('kvm_mmu_faultin_pfn_gmem');
  assert.ok(i >= 0);
  assert.ok(seen.indexOf('kvm_x86_gmem_prepare') > i);
  assert.ok(seen.indexOf('rmp_make_private') > seen.indexOf('kvm_x86_gmem_prepare'));
  assert.equal(seen.includes('kvm_arch_gmem_prepare'), false);
});

test('the leaf-level NPT backend reaches the same outcome as the engine TDP MMU on the review workload', () => {
  const m = compare_gmem_prepare_variants(default_gmem_workload(), 'model');
  assert.deepEqual(m.on_alloc.chunks.map((c) => c.rmp_level), [2, 1, 2, 0]);
  assert.deepEqual(m.on_fault.chunks.map((c) => c.rmp_level), [2, 1, 1, 0]);
  assert.equal(m.on_alloc.faults, 517);
  assert.equal(m.on_fault.faults, 1026);
  assert.equal(m.on_alloc.psmash, 1);
  assert.equal(m.on_fault.rmpupdate, 1025);
});

test('KVM call stacks: the RFC hook under the private faultin of kvm_mmu_page_fault; sev_gmem_prepare under kvm_gmem_get_pfn', () => {
  const stacks = new Map<string, string[]>();
  probes.listen((n) => {
    if ((n === 'rmp_make_private' || n === 'kvm_unmap_gfn_range') && !stacks.has(n)) stacks.set(n, kvmStack().map((f) => f.name));
  });
  try {
    run_gmem_prepare_workload('on_fault', { chunks: 1, huge_folios: true, steps: [{ op: 'touch', start: 0, end: 1 }] });
    const onFault = stacks.get('rmp_make_private')!;
    stacks.clear();
    run_gmem_prepare_workload('on_alloc', {
      chunks: 1, huge_folios: true, steps: [{ op: 'touch', start: 0, end: 1 }, { op: 'convert', start: 1, end: 2, to: 'shared' }],
    });
    const onAlloc = stacks.get('rmp_make_private')!;
    const unmap = stacks.get('kvm_unmap_gfn_range')!;
    assert.deepEqual(onFault.slice(0, 4), ['rmp_make_private', 'sev_gmem_prepare', 'kvm_x86_gmem_prepare', 'kvm_mmu_faultin_pfn_gmem']);
    assert.ok(onFault.includes('kvm_mmu_page_fault'));
    assert.deepEqual(onAlloc.slice(0, 6), [
      'rmp_make_private', 'sev_gmem_prepare', 'kvm_arch_gmem_prepare', 'kvm_gmem_prepare_folio', 'kvm_gmem_get_pfn', 'kvm_mmu_faultin_pfn_gmem',
    ]);
    assert.deepEqual(unmap.slice(0, 3), ['kvm_unmap_gfn_range', 'kvm_arch_pre_set_memory_attributes', 'kvm_vm_set_mem_attributes']);
  } finally {
    probes.listen(undefined);
  }
});

test('the comparison table prints both columns per row', () => {
  const lines = format_gmem_variant_comparison(compare_gmem_prepare_variants(default_gmem_workload(), 'model'));
  assert.match(lines[0]!, /on_alloc +on_fault$/);
  assert.match(lines.find((l) => l.startsWith('PSMASH'))!, /^PSMASH +1 +0$/);
  assert.match(lines.find((l) => l.startsWith('RMP entries 4K'))!, /^RMP entries 4K +512 +1024$/);
  assert.match(lines.at(-1)!, /2\/2 1\/1 2\/2 0\/0 +2\/2 1\/1 1\/1 0\/0$/);
});

test('with the engine backend the RMP #NPF of the mixed chunk is handled from npf_interception', () => {
  const stacks: string[][] = [];
  probes.listen((n) => {
    if (n === 'psmash') stacks.push(kvmStack().map((f) => f.name));
  });
  try {
    assert.equal(run_gmem_prepare_workload('on_alloc', default_gmem_workload(), 'tdp_mmu').psmash, 1);
  } finally {
    probes.listen(undefined);
  }
  assert.equal(stacks.length, 1);
  assert.deepEqual(stacks[0]!.slice(0, 3), ['psmash', 'sev_handle_rmp_fault', 'npf_interception']);
});
