// Model check of private-memory captures: every example the model traces TDP changes for checks clean
// against the model configured from its own trace (TDX, SEV-SNP and SW-protected VMs included), and edits
// that only a correct inference of the VM type, the fault kind or the memory attributes can place are
// reported at the edited line.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { modelCheckStream, type ModelCheckResult } from '../../../src/trace/model_check';
import { createEngine } from '../../../src/scenario/engines';
import { loadScenario } from '../../../src/scenario/load';
import { nodeReader } from '../../../src/scenario/node_reader';
import { ScenarioRunner } from '../../../src/scenario/runner';
import { formatTraceLine } from '../../../src/scenario/trace_text';

const EXAMPLES = resolve(__dirname, '..', '..', '..', 'examples');

/** `kvm-mmu run FILE --trace-out`, in process: the example's trace text. */
function traceOf(name: string): string {
  const file = join(EXAMPLES, name);
  const src = nodeReader.read(file)!;
  const program = loadScenario(file, nodeReader, src);
  const lines: string[] = [];
  let seq = 0;
  const runner = new ScenarioRunner(program, {
    engineFactory: createEngine,
    onEvent: (e, task) => lines.push(formatTraceLine(e, seq++, runner.config.arch === 'arm64' ? 'qemu-system-aar' : 'qemu-system-x86', task)),
  });
  try {
    runner.run();
  } finally {
    runner.dispose();
  }
  return lines.join('\n') + '\n';
}

async function check(text: string): Promise<ModelCheckResult> {
  async function* one(): AsyncIterable<string> {
    yield text;
  }
  return modelCheckStream(one());
}

/** The capture with line `n` (1-based) passed through `edit`, which must change it. */
function editLine(text: string, n: number, edit: (line: string) => string): string {
  const lines = text.split('\n');
  const before = lines[n - 1]!;
  lines[n - 1] = edit(before);
  assert.notEqual(lines[n - 1], before, `edit of line ${n} changed nothing: ${before}`);
  return lines.join('\n');
}

function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `no line with ${needle}`);
  return i + 1;
}

const cache = new Map<string, string>();
function capture(name: string): string {
  let t = cache.get(name);
  if (t === undefined) cache.set(name, (t = traceOf(name)));
  return t;
}

/** The VM type the examples declare (`vm ... type=`), as the model check should infer it. */
const EXPECTED_KIND: Record<string, string | undefined> = {
  'private-memory.kvmmmu': 'sw',
  'snp-gmem-rmp.kvmmmu': 'snp',
  'snp-gmem-rmp.on_alloc.kvmmmu': 'snp',
  'snp-gmem-rmp.on_fault.kvmmmu': 'snp',
  'snp-launch.kvmmmu': 'snp',
  'tdx-map-gpa.kvmmmu': 'tdx',
  'tdx-shared-private.kvmmmu': 'tdx',
  'tdx-shared-private.mirror_role.kvmmmu': 'tdx',
  'tdx-shared-private.sp_field.kvmmmu': 'tdx',
};

describe('model check of private-memory captures', () => {
  it('every example with kvm_tdp_mmu_spte_changed events checks clean, with the VM type it declares', async () => {
    let checked = 0;
    // tdp-basics is model_check.test.ts's (a quarter million changes); the rest are small
    for (const name of readdirSync(EXAMPLES).filter((f) => f.endsWith('.kvmmmu') && f !== 'tdp-basics.kvmmmu').sort()) {
      const text = capture(name);
      if (!text.includes('kvm_tdp_mmu_spte_changed')) continue;
      const r = await check(text);
      assert.equal(r.skipped, undefined, name);
      assert.deepEqual(r.mismatches, [], `${name}: ${JSON.stringify(r.mismatches[0])}`);
      assert.equal(r.ok, true, name);
      assert.equal(r.vm.private, EXPECTED_KIND[name], `${name}: ${r.vm.description}`);
      checked++;
    }
    // 15 besides tdp-basics today: a filter that dropped examples would not pass quietly
    assert.ok(checked >= 15, `only ${checked} examples checked`);
    for (const name of Object.keys(EXPECTED_KIND)) assert.ok(cache.has(name), `${name} missing`);
  });

  it('TDX: the shared bit routes a fault to the direct root, its absence to the mirror root', async () => {
    const text = capture('tdx-shared-private.kvmmmu');
    const r = await check(text);
    assert.equal(r.ok, true);
    assert.match(r.vm.description, /TDX \(shared bit 47/);
    // The memslot is the private GPA range: the shared alias is the same memory.
    assert.deepEqual(r.vm.slots.map((s) => s.gpa), ['0x0']);
    // The first (private) write made as the shared alias: it builds the direct root's upper tables, so the
    // capture's later shared fault, which built them in the real direct root, finds them there already.
    const first = lineOf(text, 'address 0x0000000000001000 error_code 0x2');
    const edited = editLine(text, first, (l) => l.replace('address 0x0000000000001000', 'address 0x0000800000001000'));
    const e = await check(edited);
    assert.equal(e.ok, false);
    const shared = lineOf(text, 'address 0x0000800000200000');
    const upper = lineOf(text.split('\n').slice(shared).join('\n'), 'level 4 old_spte') + shared;
    assert.equal(e.mismatches[0]!.line, upper);
    assert.match(e.mismatches[0]!.reason, /the model does not/);
  });

  it('TDX: a zap by the vCPU task after a KVM_EXIT_MEMORY_FAULT is a conversion, replayed on the mirror root', async () => {
    const text = capture('tdx-map-gpa.kvmmmu');
    const r = await check(text);
    assert.equal(r.ok, true);
    assert.ok((r.operations['attributes'] ?? 0) >= 2, JSON.stringify(r.operations));
    // The private 4K leaf the conversion to shared removes: an edit of its old value is caught there.
    const zap = lineOf(text, 'gfn 300 level 1 old_spte 8600008000300b77 new_spte 8000000000000000');
    const e = await check(editLine(text, zap, (l) => l.replace('old_spte 8600008000300b77', 'old_spte 8600008000300b75')));
    assert.equal(e.ok, false);
    assert.equal(e.mismatches[0]!.line, zap);
    assert.match(e.mismatches[0]!.reason, /old_spte differs/);
  });

  it('SEV-SNP: a private refault in a huge page with one shared gfn maps 4K (the page is mixed)', async () => {
    const text = capture('snp-gmem-rmp.kvmmmu');
    const r = await check(text);
    assert.equal(r.ok, true);
    assert.match(r.vm.description, /SEV-SNP \(PFERR_GUEST_ENC/);
    // Without the mixed inference the model maps this fault with a 2M leaf, and the first difference
    // would be the level-2 table the capture links just before.
    const leaf = lineOf(text, 'kvm_tdp_mmu_spte_changed: as id 0 gfn 40201 level 1 old_spte 8000000000000000');
    const e = await check(editLine(text, leaf, (l) => l.replace(/new_spte 8040201e67$/, 'new_spte 8040201e65')));
    assert.equal(e.ok, false);
    assert.equal(e.mismatches[0]!.line, leaf);
    assert.match(e.mismatches[0]!.reason, /new_spte differs/);
    assert.match(e.mismatches[0]!.model!.new, /e67$/);
  });

  it('SEV-SNP: a request after a fault installed its page is KVM_PRE_FAULT_MEMORY, not part of that fault', async () => {
    const text = capture('snp-launch.kvmmmu');
    const r = await check(text);
    assert.equal(r.ok, true);
    assert.equal(r.operations['prefault'], 1, JSON.stringify(r.operations));
    // the prefetched leaf (no accessed bit) made read-only: the model's prefetch maps it writable
    const leaf = lineOf(text, 'gfn 800 level 1 old_spte 8000000000000000 new_spte 8000800e47');
    const e = await check(editLine(text, leaf, (l) => l.replace('new_spte 8000800e47', 'new_spte 8000800e45')));
    assert.equal(e.mismatches[0]!.line, leaf);
    assert.match(e.mismatches[0]!.model!.new, /e47$/);
  });

  it('SW-protected: a 2M leaf zapped and refaulted at 4K is an attribute change that left the 2M page mixed', async () => {
    const text = capture('private-memory.kvmmmu');
    const r = await check(text);
    assert.equal(r.ok, true);
    assert.match(r.vm.description, /KVM_X86_SW_PROTECTED_VM/);
    // Without the inference the refault maps 2M again and differs at the level-2 SPTE first.
    const leaf = lineOf(text, 'gfn 100000 level 1 old_spte 8000000000000000');
    const e = await check(editLine(text, leaf, (l) => l.replace(/new_spte 8600001040000b77$/, 'new_spte 8600001040000b75')));
    assert.equal(e.ok, false);
    assert.equal(e.mismatches[0]!.line, leaf);
    assert.match(e.mismatches[0]!.model!.new, /b77$/);
  });

  it('a default VM whose refault maps as big as the zapped leaf is not taken for private memory', async () => {
    const text = capture('private-memory.kvmmmu');
    // The refault after the zap made 2M (its level-1 table and leaf dropped): an ordinary zap and refault.
    const req = lineOf(text, 'kvm_mmu_spte_requested: gfn 100000 pfn 1040000 level 1');
    let edited = editLine(text, req, (l) => l.replace('level 1', 'level 2'));
    const lines = edited.split('\n');
    const table = lines.findIndex((l, i) => i >= req && l.includes('gfn 100000 level 2 old_spte 8000000000000000 new_spte 8000000040003907'));
    lines[table] = lines[table]!.replace('new_spte 8000000040003907', 'new_spte 8600001040000bf7');
    lines.splice(table + 1, 1);
    lines.splice(table - 1, 1); // kvm_mmu_get_page of the level-1 table
    // and the capture ends before the 4K fault at 0x100001000 that follows
    edited = lines.slice(0, lines.findIndex((l) => l.includes('address 0x0000000100001000'))).join('\n') + '\n';
    const r = await check(edited);
    assert.equal(r.vm.private, undefined, r.vm.description);
  });
});
