import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { kvmStack, probes } from '../../../../src/engine/probes';
import { Arm64Vm } from '../../../../src/engine/arm64/mmu';
import { PkvmHyp } from '../../../../src/engine/arm64/pkvm_mem_protect';

describe('arm64 probes', () => {
  it('a guest fault reaches stage2_make_pte with the KVM call chain on the stack', () => {
    const vm = new Arm64Vm();
    vm.addMemslot({ gpa: 0x4000_0000, size: 4 << 20 });
    const hits: Array<{ name: string; args: Record<string, unknown>; stack: string[] }> = [];
    probes.listen((name, args) => hits.push({ name, args, stack: name === 'stage2_make_pte' ? kvmStack().map((f) => f.name) : [] }));
    try {
      vm.access(0x4000_1000, 'write');
    } finally {
      probes.listen(undefined);
    }
    const names = hits.map((h) => h.name);
    assert.ok(names.indexOf('kvm_handle_guest_abort') < names.indexOf('user_mem_abort'));
    assert.ok(names.indexOf('user_mem_abort') < names.indexOf('kvm_pgtable_stage2_map'));
    const make = hits.filter((h) => h.name === 'stage2_make_pte');
    assert.equal(make.length, 3); // L2 table, L3 table, the page
    const stack = make[2]!.stack;
    for (const fn of ['stage2_make_pte', 'stage2_map_walker_try_leaf', 'stage2_map_walk_leaf', 'kvm_pgtable_walk', 'kvm_pgtable_stage2_map', 'user_mem_abort', 'kvm_handle_guest_abort']) {
      assert.ok(stack.includes(fn), `${fn} on the stack: ${stack.join(' < ')}`);
    }
    assert.ok(stack.indexOf('stage2_make_pte') < stack.indexOf('kvm_handle_guest_abort'));
    const tl = hits.find((h) => h.name === 'stage2_map_walker_try_leaf' && (h.args['new'] as string | null)?.endsWith('7ff'));
    assert.ok(tl, 'try_leaf reports the new page descriptor');
    assert.equal((tl!.args['ctx'] as Record<string, unknown>)['level'], 3);
  });

  it('ownership transitions report the owner', () => {
    const h = new PkvmHyp({ granule: '4k', paBits: 40, encoding: 'annotate_2026', memory: [{ base: 0x4000_0000, size: 1 << 24 }] });
    const hits: Array<[string, Record<string, unknown>]> = [];
    probes.listen((name, args) => hits.push([name, args]));
    try {
      h.__pkvm_host_donate_hyp(0x40010, 1);
      h.handle_host_mem_abort(0x4001_0000);
    } finally {
      probes.listen(undefined);
    }
    assert.deepEqual(hits.find((x) => x[0] === '__pkvm_host_donate_hyp')![1], { pfn: 0x40010, nr_pages: 1, owner: 1 });
    const abort = hits.find((x) => x[0] === 'handle_host_mem_abort')![1];
    assert.equal(abort['ret'], -1);
    assert.deepEqual(abort['owner'], { owner: 1 });
    assert.ok(hits.some((x) => x[0] === 'kvm_pgtable_stage2_annotate'));
  });
});
