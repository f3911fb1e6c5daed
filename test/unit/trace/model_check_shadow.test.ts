// Shadow-MMU model check: captures the model wrote from the shadow examples agree with the model; edited
// copies (a guest PTE made read-only, an SPTE made writable, an unsync mark dropped) are reported inside the
// fault that was edited, with both sides; walks with lost elements make the capture not checkable.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { modelCheckShadowStream } from '../../../src/trace/model_check_shadow';
import { loadScenario } from '../../../src/scenario/load';
import { nodeReader } from '../../../src/scenario/node_reader';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { createEngine } from '../../../src/scenario/engines';
import { formatTraceLine } from '../../../src/scenario/trace_text';

const ROOT = resolve(__dirname, '..', '..', '..');
const SHADOW_EXAMPLES = ['shadow-paging', 'unsync-shadow-pages', 'shadow-two-vcpus', 'shadow-pcid', 'pae-shadow-roots', 'shadow-dirty-log', 'tdp-legacy-mmu'];

// Paging modes and root switches the examples do not cover.
const GUEST_32 = `vm arch=x86 vendor=intel tdp=off maxphyaddr=46 vcpus=1
KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M backing=4K
guest map cr3=0x10000 gva 0x400000..0x404000 gpa=0x200000 page=4K flags=rw,user mode=32bit
guest map cr3=0x10000 gva 0xc0000000..0xc0001000 gpa=0x300000 page=4K flags=rw mode=32bit
guest set cr3=0x10000 cr4=0x10 efer=0 cr0=0x80010011
guest read gva=0x401000 user
guest write gva=0x401000 user
guest write gva=0xc0000000
guest read gva=0x800000 user
`;
const GUEST_LA57 = GUEST_32.replace(/mode=32bit/g, 'mode=5level').replace('cr4=0x10 efer=0', 'cr4=0x1020 efer=0xd00');
// Five address spaces: 0x10 and 0x20 alternate through the prev_roots cache (no root allocation), until
// three others push 0x10 out of it.
const ROOT_SWITCHES = `vm arch=x86 vendor=intel tdp=off maxphyaddr=46 vcpus=1
KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M backing=4K
${[1, 2, 3, 4, 5].map((i) => `guest map cr3=0x${i}0000 gva 0x400000..0x404000 gpa=0x${i}00000 page=4K flags=rw,user`).join('\n')}
guest set cr3=0x10000 cr4=0x20 efer=0xd00 cr0=0x80010011
guest read gva=0x400000 user
guest set cr3=0x20000
guest read gva=0x400000 user
guest set cr3=0x10000
guest read gva=0x401000 user
guest set cr3=0x20000
guest write gva=0x401000 user
${[3, 4, 5].map((i) => `guest set cr3=0x${i}0000\nguest read gva=0x401000 user`).join('\n')}
guest set cr3=0x10000
guest read gva=0x402000 user
guest set cr3=0x40000
guest read gva=0x402000 user
guest write gva=0x402000 user
`;
const INLINE: Record<string, string> = { 'guest-32bit': GUEST_32, 'guest-la57': GUEST_LA57, 'root-switches': ROOT_SWITCHES };

/** What `kvm-mmu run examples/NAME.kvmmmu --trace-out FILE` writes (or the inline scenario NAME), as lines. */
function capture(name: string): string[] {
  const file = join(ROOT, 'examples', `${name}.kvmmmu`);
  const program = loadScenario(file, nodeReader, INLINE[name] ?? nodeReader.read(file)!);
  const lines: string[] = [];
  let seq = 0;
  const runner = new ScenarioRunner(program, { engineFactory: createEngine, onEvent: (e, task) => lines.push(formatTraceLine(e, seq++, 'qemu-system-x86', task)) });
  try {
    runner.run();
    assert.ok(runner.ok, `${name}: the example's own expectations hold`);
  } finally {
    runner.dispose();
  }
  return lines;
}

async function* chunks(text: string): AsyncIterable<string> {
  // split mid-line too: the reader must not depend on chunk boundaries
  for (let i = 0; i < text.length; i += 777) yield text.slice(i, i + 777);
}

const check = (lines: string[], maxMismatches = 1) => modelCheckShadowStream(chunks(lines.join('\n') + '\n'), { maxMismatches });

const caps = new Map<string, string[]>();
before(() => {
  for (const e of [...SHADOW_EXAMPLES, ...Object.keys(INLINE)]) caps.set(e, capture(e));
});

/** Index of the only line matching `re` (1-based capture line = index + 1). */
function only(lines: string[], re: RegExp): number {
  const hits = lines.flatMap((l, i) => (re.test(l) ? [i] : []));
  assert.equal(hits.length, 1, `one line matches ${re}: ${hits.length}`);
  return hits[0]!;
}

describe('shadow model check: the model agrees with its own captures', () => {
  for (const name of [...SHADOW_EXAMPLES, ...Object.keys(INLINE)]) {
    it(`${name} checks clean`, async () => {
      const r = await check(caps.get(name)!);
      assert.equal(r.skipped, undefined);
      assert.deepEqual(r.mismatches, []);
      assert.equal(r.ok, true);
      assert.ok(r.faultsReplayed > 0 && r.compared > 0);
      assert.equal(r.modelChanges, r.realChanges);
    });
  }

  it('rebuilds the paging mode, vCPUs and memory each example describes', async () => {
    const pae = await check(caps.get('pae-shadow-roots')!);
    assert.equal(pae.vm.levels, 3);
    assert.match(pae.vm.description, /PAE guest paging/);
    // the guest's two address spaces map 4M at 0x200000 and 0x800000
    assert.deepEqual(pae.vm.slots.map((s) => s.gpa), ['0x0', '0x800000']);
    const two = await check(caps.get('shadow-two-vcpus')!);
    assert.match(two.vm.description, /2 vCPUs/);
    // vCPU 1 syncs the page vCPU 0 unsynced: an entry operation of its own, after vCPU 0's fault
    assert.equal(two.operations['entry'], 3);
    const legacy = await check(caps.get('tdp-legacy-mmu')!);
    assert.match(legacy.vm.description, /tdp_mmu=N/);
    // direct_map prefetches 7 neighbours after the leaf: counted, not compared
    assert.equal(legacy.notReplayed, 7);
  });

  it('32-bit and 5-level guests: the mode comes from the walk, the table indices from the walk address', async () => {
    const g32 = await check(caps.get('guest-32bit')!);
    assert.equal(g32.vm.levels, 2);
    assert.match(g32.vm.description, /32-bit guest paging/);
    const la57 = await check(caps.get('guest-la57')!);
    assert.equal(la57.vm.levels, 5);
    // 0xc0000000 is PDE 0x300 of a 32-bit page directory (4-byte entries): the walk's A bit lands at 0x10c00
    const lines = [...caps.get('guest-32bit')!];
    const i = only(lines, /kvm_mmu_set_accessed_bit: gpa 10c00$/);
    lines[i] = lines[i]!.replace('gpa 10c00', 'gpa 10600');
    const r = await check(lines);
    assert.equal(r.mismatches[0]?.line, i + 1);
    assert.match(r.mismatches[0]!.model!.text, /gpa 10c00/);
  });

  it('switches to cached roots without allocation, as the capture did', async () => {
    const r = await check(caps.get('root-switches')!);
    // 0x10 <-> 0x20 twice, and back to 0x40 at the end: prev_roots hits with no kvm_mmu_get_page
    assert.equal(r.operations['cr3_switch'], 3);
    assert.equal(r.operations['entry'], 6);
  });

  it('a capture that reuses a root the model evicted from prev_roots is reported at the walk', async () => {
    const lines = [...caps.get('root-switches')!];
    // 0x10 comes back after three other roots: the real KVM allocated it again (existing page)
    const i = only(lines, /kvm_mmu_get_page: .* gfn 10 l4 .* existing$/);
    lines.splice(i, 1);
    const r = await check(lines);
    assert.equal(r.ok, false);
    const m = r.mismatches[0]!;
    // the walk's first element: the model's switch allocated a root first
    assert.equal(m.line, i + 2);
    assert.match(m.model!.text, /kvm_mmu_get_page: .* gfn 10 l4 .* existing/);
  });

  it("a #PF intercept's kvm_page_fault before each walk joins that walk's fault", async () => {
    const lines = caps.get('shadow-paging')!.flatMap((l) => {
      const m = / kvm_mmu_pagetable_walk: addr ([0-9a-f]+) pferr ([0-9a-f]+) /.exec(l);
      return m ? [l.replace(/kvm_mmu_pagetable_walk: .*/, `kvm_page_fault: vcpu 0 rip 0x1000 address 0x${m[1]!.padStart(16, '0')} error_code 0x${m[2]}`), l] : [l];
    });
    const plain = await check(caps.get('shadow-paging')!);
    const r = await check(lines);
    assert.deepEqual(r.mismatches, []);
    assert.deepEqual(r.operations, plain.operations);
  });

  it('infers the write protection KVM_GET_DIRTY_LOG did (untraced) from a P|W fault the model would not take', async () => {
    const r = await check(caps.get('shadow-dirty-log')!);
    assert.equal(r.operations['inferred_write_protect'], 1);
    assert.equal(r.ok, true);
  });
});

describe('shadow model check: edited captures are reported where they differ', () => {
  it('a set_spte made writable is reported at that line with both values', async () => {
    const lines = [...caps.get('shadow-paging')!];
    // the first user read maps gfn 201 read-only (guest D clear)
    const i = only(lines, /kvm_mmu_set_spte: gfn 201 spte 1000201a25 /);
    lines[i] = lines[i]!.replace('1000201a25 (r-xu)', '1000201a27 (rwxu)');
    const r = await check(lines);
    assert.equal(r.ok, false);
    assert.equal(r.mismatches.length, 1);
    const m = r.mismatches[0]!;
    assert.equal(m.line, i + 1);
    assert.equal(m.gfn, '201');
    assert.equal(m.level, 1);
    assert.equal(m.real!.new, '1000201a27');
    assert.match(m.model!.new, /a25$/);
  });

  it('a guest PTE made read-only under a user write: the model refuses the write inside that fault', async () => {
    const lines = [...caps.get('shadow-paging')!];
    const walk = only(lines, /kvm_mmu_pagetable_walk: addr 401000 pferr 7 /);
    const pte = walk + 4;
    assert.match(lines[pte]!, /kvm_mmu_paging_element: pte 201027 level 1$/);
    lines[pte] = lines[pte]!.replace('pte 201027', 'pte 201025');
    const r = await check(lines);
    assert.equal(r.ok, false);
    const m = r.mismatches[0]!;
    // the walk itself is the same; the real walker went on to set D, the model's raised a #PF
    assert.equal(m.line, pte + 2);
    assert.match(m.real!.text, /kvm_mmu_set_dirty_bit: gpa 13008/);
    assert.match(m.model!.text, /kvm_mmu_walker_error: pferr 7/);
    assert.match(m.reason, new RegExp(`fault at line ${walk + 1}`));
  });

  it('a dropped unsync mark: the model unsyncs the page where the capture did not', async () => {
    const lines = caps.get('shadow-paging')!.filter((l) => !/kvm_mmu_unsync_page:/.test(l));
    const set = only(lines, /kvm_mmu_set_spte: gfn 13 /);
    const r = await check(lines);
    assert.equal(r.ok, false);
    const m = r.mismatches[0]!;
    assert.equal(m.line, set + 1);
    assert.match(m.model!.text, /kvm_mmu_unsync_page: sp gen \d+ gfn 13 l1/);
  });

  it('a shadow page claimed new although the model already had it', async () => {
    const lines = [...caps.get('shadow-pcid')!];
    const i = only(lines, /kvm_mmu_get_page: .* gfn 20 l4 .* existing$/);
    lines[i] = lines[i]!.replace(/existing$/, 'new');
    const r = await check(lines);
    assert.equal(r.mismatches[0]?.line, i + 1);
  });

  it('vCPU 1 syncing before vCPU 0 unsynced (reordered) is reported at the sync', async () => {
    const lines = [...caps.get('shadow-two-vcpus')!];
    const sync = only(lines, /CPU 1\/KVM.* kvm_mmu_sync_page: .* gfn 13 /);
    const unsync = only(lines, /kvm_mmu_unsync_page: .* gfn 13 /);
    // move vCPU 1's sync (and the walk after it) before vCPU 0's unsync fault: there is nothing to sync yet
    const [moved] = lines.splice(sync, 1);
    const walk = only(lines, /kvm_mmu_pagetable_walk: addr 13008 /);
    lines.splice(walk, 0, moved!);
    assert.ok(walk < unsync);
    const r = await check(lines);
    assert.equal(r.ok, false);
    assert.equal(r.mismatches[0]!.line, walk + 1);
    assert.match(r.mismatches[0]!.reason, /does not do this \(sync_page gfn 13/);
  });
});

describe('shadow model check: TDP with the legacy MMU (tdp_mmu=N)', () => {
  it('a kvm_page_fault (EPT violation) drives the fault: its GPA, not the requested gfn', async () => {
    const lines = [...caps.get('tdp-legacy-mmu')!];
    const req = only(lines, /kvm_mmu_spte_requested: gfn 203 /);
    const pf = (gpa: string, qual: string) => lines[req]!.replace(/kvm_mmu_spte_requested: .*/, `kvm_page_fault: vcpu 0 rip 0xfff0 address 0x${gpa.padStart(16, '0')} error_code 0x${qual}`);
    // a read (qualification bit 0, GVA valid and translated) of 0x203000: what the example did
    const same = [...lines.slice(0, req), pf('203000', '181'), ...lines.slice(req)];
    const ok = await check(same);
    assert.deepEqual(ok.mismatches, []);
    assert.equal(ok.operations['fault'], 2);
    const other = [...lines.slice(0, req), pf('204000', '181'), ...lines.slice(req)];
    const r = await check(other);
    assert.equal(r.mismatches[0]?.line, req + 2);
    assert.match(r.mismatches[0]!.model!.text, /kvm_mmu_spte_requested: gfn 204 /);
  });

  it('the fast path after dirty logging write-protected the SPTE: an edited fix is reported at its line', async () => {
    const lines = [...caps.get('tdp-legacy-mmu')!];
    const i = only(lines, /fast_page_fault: .* fixed 1$/);
    // the real fast path made gfn 203 writable again; claim it left the SPTE read-only
    lines[i] = lines[i]!.replace(/new 8600001000203b77/, 'new 8600001000203b75');
    const r = await check(lines);
    assert.equal(r.mismatches[0]?.line, i + 1);
    assert.match(r.mismatches[0]!.model!.text, /new 8600001000203b77/);
  });
});

describe('shadow model check: captures that cannot be checked say why', () => {
  it('a walk that lost a paging element', async () => {
    const lines = [...caps.get('shadow-paging')!];
    const walk = only(lines, /kvm_mmu_pagetable_walk: addr 401000 pferr 4 /);
    lines.splice(walk + 3, 1);
    const r = await check(lines);
    assert.equal(r.ok, false);
    assert.equal(r.mismatches.length, 0);
    assert.match(r.skipped!, new RegExp(`walk at line ${walk + 1} goes from level 3 to 1`));
  });

  it('a walk that restarted (A/D cmpxchg lost a race) is rebuilt from its last attempt', async () => {
    const lines = [...caps.get('shadow-paging')!];
    const walk = only(lines, /kvm_mmu_pagetable_walk: addr 401000 pferr 4 /);
    // a first attempt that read a different leaf, then the real one
    const first = lines.slice(walk + 1, walk + 5).map((l) => l.replace('pte 201007', 'pte 209007'));
    lines.splice(walk + 1, 0, ...first);
    const r = await check(lines);
    assert.equal(r.skipped, undefined);
    assert.deepEqual(r.mismatches, []);
  });

  it('walker events filtered out of the capture', async () => {
    const lines = caps.get('shadow-paging')!.filter((l) => !/kvm_mmu_paging_element:/.test(l));
    const r = await check(lines);
    assert.match(r.skipped!, /has no kvm_mmu_paging_element events/);
  });

  it('a TDP MMU capture is left to the TDP check', async () => {
    const r = await check(capture('guest-paging'));
    assert.match(r.skipped!, /kvm_tdp_mmu_spte_changed/);
  });

  it('no walks and no requests', async () => {
    const r = await check(caps.get('shadow-paging')!.filter((l) => /kvm_mmu_get_page:/.test(l)));
    assert.match(r.skipped!, /no kvm_mmu_pagetable_walk or kvm_mmu_spte_requested/);
  });
});
