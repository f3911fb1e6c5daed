// Model check: a capture the model itself wrote agrees with the model; the same capture with one SPTE
// value edited is reported at the edited line, with both sides; memslot inference covers what was touched.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { inferSlots, modelCheckFile, modelCheckStream } from '../../../src/trace/model_check';
import { trace, type TraceEvent } from '../../../src/engine/trace_sink';
import { X86Vm } from '../../../src/engine/x86/index';
import { formatTraceLine } from '../../../src/scenario/trace_text';

const ROOT = resolve(__dirname, '..', '..', '..');

async function* chunks(...texts: string[]): AsyncIterable<string> {
  yield* texts;
}
let dir = '';
let capture = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-model-check-'));
  capture = join(dir, 'tdp-basics.txt');
  // The CLI from source: `kvm-mmu run examples/tdp-basics.kvmmmu --trace-out FILE`.
  execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'tdp-basics.kvmmmu'), '--trace-out', capture], { cwd: ROOT, stdio: 'pipe' });
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('model check', () => {
  it('a capture written by the model checks clean, with the VM the example describes', async () => {
    const r = await modelCheckFile(capture);
    assert.equal(r.skipped, undefined);
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.ok, true);
    // examples/tdp-basics.kvmmmu: Intel host (EPT), 4 levels; 1 GiB of RAM at GPA 0 backed by 2M THPs.
    assert.equal(r.vm.format, 'ept');
    assert.equal(r.vm.levels, 4);
    assert.deepEqual(r.vm.slots, [{ slot: 0, gpa: '0x0', size: '0x40000000', backing: '2m-thp' }]);
    // 1 read at 0x1000, then 512 reads in 2M steps (the first of which hits the leaf already mapped
    // and does not exit), then the write after dirty logging: 1 + 511 + 1 faults reach KVM.
    assert.equal(r.faultSource, 'kvm_page_fault');
    assert.equal(r.faultsReplayed, 513);
    // enabling dirty logging (eager split, all write-protected), then KVM_GET_DIRTY_LOG write-protecting
    // the one page written since
    assert.equal(r.operations['dirty_log'], 2);
    assert.equal(r.notReplayed, 0);
    assert.ok(r.compared > 512 * 512, 'every 4K leaf of the eager split was compared');
  });

  it('an edited copy (one SPTE made read-only) is reported at the edited line with both values', async () => {
    const lines = readFileSync(capture, 'utf8').split('\n');
    // The first read maps a 2M leaf at gfn 0 (the example's first expectation): make it non-writable.
    const i = lines.findIndex((l) => / kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 2 old_spte 8000000000000000 new_spte /.test(l));
    assert.ok(i >= 0);
    const m = /new_spte ([0-9a-f]+)$/.exec(lines[i]!)!;
    const original = BigInt('0x' + m[1]);
    assert.equal(original & 2n, 2n, 'the leaf the model installs is writable (example: w=1)');
    const edited = (original & ~2n).toString(16);
    lines[i] = lines[i]!.replace(/new_spte [0-9a-f]+$/, `new_spte ${edited}`);
    const copy = join(dir, 'edited.txt');
    writeFileSync(copy, lines.join('\n'));
    const r = await modelCheckFile(copy);
    assert.equal(r.ok, false);
    assert.equal(r.mismatches.length, 1);
    const x = r.mismatches[0]!;
    assert.equal(x.line, i + 1);
    assert.equal(x.gfn, '0');
    assert.equal(x.level, 2);
    assert.match(x.reason, /^new_spte differs/);
    assert.equal(x.real?.new, edited);
    assert.equal(x.model?.new, m[1]);
  });

  it('the hand-written EPT fixture agrees with the model; without kvm_page_fault the requests drive it', async () => {
    // test/fixtures/traces/tdp_stacks.txt: faults on gfn 1a2 (read) and 1a3 (write), a notifier zap of
    // 1a2, a refault of 1a2; SPTEs written by hand from the EPT format (kvm-x86-mmu.md).
    const fixture = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
    const r = await modelCheckFile(fixture);
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.faultsReplayed, 3);
    // the zap follows kvm_unmap_hva_range: replayed as that notifier invalidation
    assert.deepEqual(r.operations, { fault: 3, unmap: 1 });
    // 7 kvm_tdp_mmu_spte_changed and 3 kvm_mmu_set_spte
    assert.equal(r.compared, 10);
    const noFaults = readFileSync(fixture, 'utf8').split('\n').filter((l) => !/ kvm_page_fault: /.test(l)).join('\n');
    const r2 = await modelCheckStream(chunks(noFaults));
    assert.equal(r2.faultSource, 'kvm_mmu_spte_requested');
    assert.equal(r2.faultsReplayed, 3);
    assert.deepEqual(r2.mismatches, []);
  });

  it('an AMD (NPT) capture of two vCPUs and two memslots, one THP-backed, checks clean', async () => {
    const scenario = join(dir, 'npt.kvmmmu');
    writeFileSync(scenario, [
      'vm arch=x86 vendor=amd tdp=on tdp_levels=4 maxphyaddr=46 vcpus=2',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M hva=0x7f0000000000 backing=4k',
      'KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x40000000 size=4M hva=0x7f1000000000 backing=2M',
      'guest read gpa=0x1000',
      'guest write gpa=0x2000',
      'guest write gpa=0x40001000 vcpu=1',
      'guest fetch gpa=0x3000',
      '',
    ].join('\n'));
    const out = join(dir, 'npt.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', scenario, '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.vm.format, 'npt');
    // four first touches of unmapped pages: four #NPFs; the THP-backed slot maps its page with a 2M leaf
    assert.equal(r.faultsReplayed, 4);
    assert.deepEqual(r.vm.slots.map((x) => [x.gpa, x.backing]), [['0x0', '4k'], ['0x40000000', '2m-thp']]);
  });

  it('a kvm_mmu_set_spte that disagrees with the model is reported at its line', async () => {
    const fixture = join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');
    const lines = readFileSync(fixture, 'utf8').split('\n');
    // line 39: the leaf of the write fault on gfn 1a3 as kvm_mmu_set_spte prints it; make it read-only
    assert.match(lines[38]!, / kvm_mmu_set_spte: gfn 1a3 spte 86000003f00a3b77 \(rwxu\) level 1 /);
    lines[38] = lines[38]!.replace('spte 86000003f00a3b77 (rwxu)', 'spte 86000003f00a3b75 (r-xu)');
    const r = await modelCheckStream(chunks(lines.join('\n')));
    assert.equal(r.mismatches.length, 1);
    assert.equal(r.mismatches[0]!.line, 39);
    assert.match(r.mismatches[0]!.reason, /^kvm_mmu_set_spte spte differs/);
    assert.equal(r.mismatches[0]!.real?.new, '86000003f00a3b75');
  });

  it('a missing SPTE change (the model makes one the capture lacks) is reported at the operation', async () => {
    const text = [
      '       CPU 0/KVM-4711    [002] .....   812.000102: kvm_page_fault: vcpu 0 rip 0xffffffff8100abcd address 0x00000000001a2000 error_code 0x181',
      // the capture drops the level-4..2 table links the model must make for the first fault
      '       CPU 0/KVM-4711    [002] .....   812.000108: kvm_tdp_mmu_spte_changed: as id 0 gfn 1a2 level 1 old_spte 8000000000000000 new_spte 86000003f00a2b77',
      '',
    ].join('\n');
    const r = await modelCheckStream(chunks(text), { maxMismatches: 5 });
    assert.equal(r.ok, false);
    assert.equal(r.mismatches[0]!.line, 1);
    assert.match(r.mismatches[0]!.reason, /the model changes this SPTE in this fault, the capture does not/);
    assert.equal(r.mismatches[0]!.level, 4);
  });

  it('a shadow-MMU capture goes to the shadow check, which says why it cannot check one without walks or requests', async () => {
    const r = await modelCheckStream(chunks('       CPU 0/KVM-4711    [002] .....   812.000102: kvm_mmu_set_spte: gfn 1a2 spte 6000003f00a2b77 (rwxu) level 1 at 1c4f0d10\n'));
    assert.match(r.vm.description, /^shadow MMU capture/);
    assert.match(r.skipped ?? '', /no kvm_mmu_pagetable_walk or kvm_mmu_spte_requested events/);
  });

  it('a capture with neither TDP MMU changes nor shadow-MMU work is not checked, and says why', async () => {
    const r = await modelCheckStream(chunks('       CPU 0/KVM-4711    [002] .....   812.000102: kvm_page_fault: vcpu 0 rip 0xffffffff81000000 address 0x00000000001a2000 error_code 0x182\n'));
    assert.match(r.skipped ?? '', /no kvm_tdp_mmu_spte_changed and no shadow-MMU events/);
  });

  it('host aging and invalidations (examples/host-notifiers.kvmmmu) are replayed through the notifiers and check clean', async () => {
    const out = join(dir, 'host-notifiers.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'host-notifiers.kvmmmu'), '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    // one clear_young over four 2M leaves, a THP reclaim (2M) and a 4K migration out of a THP, whose
    // refaults map 4K leaves only because the partial invalidation split the host's THP
    assert.deepEqual(r.operations, { fault: 6, age: 1, unmap: 2 });
    assert.equal(r.notReplayed, 0);
    assert.deepEqual(r.vm.slots, [{ slot: 0, gpa: '0x0', size: '0x800000', backing: '2m-thp', hva: '0x7f0000000000' }]);
    // an aged leaf that keeps its accessed bit in the capture is reported at that line, as an age
    const lines = readFileSync(out, 'utf8').split('\n');
    const i = lines.findIndex((l) => / kvm_tdp_mmu_spte_changed: as id 0 gfn 200 level 2 old_spte 8600001000200bf7 new_spte 8600001000200af7$/.test(l));
    assert.ok(i > 0 && / kvm_age_hva: /.test(lines.slice(0, i).reverse().find((l) => !/spte_changed/.test(l)) ?? ''));
    lines[i] = lines[i]!.replace(/new_spte 8600001000200af7$/, 'new_spte 8600001000200bf7');
    const r2 = await modelCheckStream(chunks(lines.join('\n')));
    assert.equal(r2.mismatches[0]?.line, i + 1);
    assert.match(r2.mismatches[0]!.reason, /^new_spte differs/);
  });

  it('KVM_PRE_FAULT_MEMORY (examples/prefault-memory.kvmmmu): prefetched leaves without A, and a miss outside memslots', async () => {
    const out = join(dir, 'prefault.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'prefault-memory.kvmmmu'), '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.faultSource, 'kvm_mmu_spte_requested');
    // one ioctl's run of requests: four 2M pages, then the page at 1 GiB, which has no memslot (an MMIO SPTE)
    assert.deepEqual(r.operations, { prefault: 1 });
    assert.equal(r.faultsReplayed, 5);
    // the request with an error pfn does not make memory appear at 1 GiB
    assert.deepEqual(r.vm.slots.map((x) => [x.gpa, x.size]), [['0x0', '0x800000']]);
  });

  it('MMIO SPTEs (examples/mmio-spte.kvmmmu): no memory where requests found no memslot; a hidden memslot update refreshes the stale one', async () => {
    const out = join(dir, 'mmio.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'mmio-spte.kvmmmu'), '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    // three kvm_page_faults (RAM, then two MMIO gpas) and two EPT misconfigurations: the cached MMIO SPTE
    // hit (valid), then the one made stale by the memslot update (kvm_gen 4, spte-gen 2), re-marked
    assert.deepEqual(r.operations, { fault: 3, mmio: 2 });
    assert.deepEqual(r.vm.slots.map((x) => x.gpa), ['0x0']);
    // the refreshed MMIO SPTE carries the new generation: one with the old one is a mismatch at its line
    const lines = readFileSync(out, 'utf8').split('\n');
    const i = lines.findIndex((l) => / kvm_tdp_mmu_spte_changed: as id 0 gfn fee00 level 1 old_spte fee00016 new_spte fee00026$/.test(l));
    assert.ok(i > 0);
    lines[i] = lines[i]!.replace(/new_spte fee00026$/, 'new_spte fee00016');
    const r2 = await modelCheckStream(chunks(lines.join('\n')));
    assert.equal(r2.mismatches[0]?.line, i + 1);
  });

  it('manual dirty-log protection (examples/dirty-logging.kvmmmu): KVM_CLEAR_DIRTY_LOG of part of a slot', async () => {
    const out = join(dir, 'dirty.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'dirty-logging.kvmmmu'), '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    // INITIALLY_SET: enabling changes nothing; the clear of pages 0..511 splits the first 2M page only
    assert.deepEqual(r.operations, { fault: 3, dirty_log: 1 });
    assert.equal(r.notReplayed, 0);
    assert.ok(r.compared >= 512);
    // a change the clear cannot explain (the page stays writable): reported at its line
    const lines = readFileSync(out, 'utf8').split('\n');
    const i = lines.findIndex((l) => / kvm_tdp_mmu_spte_changed: as id 0 gfn 100 level 1 old_spte ([0-9a-f]+)b77 new_spte \1b75$/.test(l));
    assert.ok(i > 0);
    lines[i] = lines[i]!.replace(/b75$/, 'b77');
    const r2 = await modelCheckStream(chunks(lines.join('\n')));
    assert.equal(r2.mismatches[0]?.line, i + 1);
    assert.match(r2.mismatches[0]!.reason, /^the capture changes this SPTE in this dirty_log .*, the model does not/);
  });

  it('NX huge pages (examples/nx-huge-pages.kvmmmu): the mitigation is inferred, its recovery replayed', async () => {
    const out = join(dir, 'nx.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', join(ROOT, 'examples', 'nx-huge-pages.kvmmmu'), '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    // an exec fault split to 4K, a read beside it, a non-executable 2M leaf (the evidence), the recovery
    // zapping the NX-split table, and the read that maps the 2M page again
    assert.deepEqual(r.operations, { fault: 4, zap: 1 });
    assert.equal(r.notReplayed, 0);
    // with the 2M leaves made executable there is no evidence: the model, mitigation off, maps the exec
    // fault on the THP with a 2M leaf where the capture split it
    const text = readFileSync(out, 'utf8').replace(/(new_spte [0-9a-f]+)bf3$/gm, '$1bf7');
    const r2 = await modelCheckStream(chunks(text));
    assert.equal(r2.ok, false);
    assert.ok(r2.mismatches[0]!.line <= 11, `first mismatch in the exec fault, not at line ${r2.mismatches[0]!.line}`);
  });

  it('SMM: faults whose changes are in address space 1 run in SMM (a capture the engine writes directly)', async () => {
    // no scenario verb enters SMM: drive the x86 model and print its events as `--trace-out` does
    const lines: string[] = [];
    let seq = 0;
    const unsubscribe = trace.subscribe((e: TraceEvent) => lines.push(formatTraceLine(e, seq++, 'qemu-system-x86', e.vcpu)));
    const vm = new X86Vm({ vendor: 'vmx', nr_vcpus: 1 });
    try {
      vm.add_slot(0, 0, 0x40_0000, { host_backing: '4k' });
      vm.add_slot((1 << 16) | 0, 0, 0x40_0000, { host_backing: '4k' });
      vm.access(0, 0x1000, 'write');
      vm.smm(0, true);
      vm.access(0, 0x2000, 'write');
      vm.access(0, 0x5000, 'read');
      vm.smm(0, false);
      vm.access(0, 0x3000, 'read');
    } finally {
      unsubscribe();
      vm.destroy();
    }
    const text = lines.join('\n') + '\n';
    assert.match(text, / kvm_tdp_mmu_spte_changed: as id 1 gfn 2 level 1 /);
    const r = await modelCheckStream(chunks(text));
    assert.deepEqual(r.mismatches, []);
    assert.equal(r.faultsReplayed, 4);
    // the SMM root's table links and both SMM leaves were compared in address space 1
    assert.ok(r.compared >= 12, `compared ${r.compared}`);
  });

  it('a memslot away from the default HVA: its HVA is learnt from the notifier operations', async () => {
    const scenario = join(dir, 'hva.kvmmmu');
    writeFileSync(scenario, [
      'vm arch=x86 vendor=intel tdp=on vcpus=1',
      'param nx_huge_pages=off',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M hva=0x7f0000000000 backing=4k',
      'KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x40000000 size=8M hva=0x7e1230000000 backing=2M',
      'guest write gpa 0x40000000..0x40600000 step 2M',
      'guest read gpa=0x3000',
      'host age gpa 0x40000000..0x40800000',
      'host invalidate gpa 0x40201000+4K reason=migration',
      'guest read gpa=0x40201000',
      'host invalidate gpa 0x40400000+2M reason=reclaim',
      'guest write gpa=0x40400000',
      '',
    ].join('\n'));
    const out = join(dir, 'hva.txt');
    execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'bin.ts'), 'run', scenario, '--trace-out', out], { cwd: ROOT, stdio: 'pipe' });
    const r = await modelCheckFile(out);
    assert.deepEqual(r.mismatches, []);
    assert.deepEqual(r.operations, { fault: 6, age: 1, unmap: 2 });
    // slot 0 saw no notifier: the model's default HVA; slot 1's HVA comes from its age and unmap lines
    assert.deepEqual(r.vm.slots.map((x) => [x.gpa, x.hva]), [['0x0', undefined], ['0x40000000', '0x7e1230000000']]);
  });

  it('inferred memslots cover every touched 2M region, are disjoint and ordered, and back huge leaves', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 4096 }), { maxLength: 40 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(2, 3)), { maxLength: 4 }), (regions, huge) => {
        const hugeAt = new Map<number, number>();
        for (const [r, l] of huge) hugeAt.set(r, Math.max(hugeAt.get(r) ?? 0, l));
        const slots = inferSlots(new Set(regions), hugeAt);
        const MB2 = 0x20_0000;
        const inSlot = (gpa: number) => slots.find((s) => gpa >= s.gpa && gpa < s.gpa + s.size);
        for (const r of [...regions, ...hugeAt.keys()]) assert.ok(inSlot(r * MB2), `region ${r} covered`);
        for (let k = 1; k < slots.length; k++) assert.ok(slots[k - 1]!.gpa + slots[k - 1]!.size < slots[k]!.gpa, 'disjoint, not adjacent, ordered');
        for (const [r, l] of hugeAt) {
          const s = inSlot(r * MB2)!;
          if (l === 3) {
            assert.equal(s.backing, '1g-hugetlb');
            const base = r - (r % 512);
            assert.ok(s.gpa <= base * MB2 && s.gpa + s.size >= (base + 512) * MB2, 'a 1G leaf has its whole 1 GiB');
          } else assert.notEqual(s.backing, '4k');
        }
      }),
    );
  });
});
