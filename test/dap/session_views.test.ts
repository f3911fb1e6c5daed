// The custom requests the sidebar views read: watches a view adds coexist with the client's data
// breakpoints and all fire; RMP and stage-2 lists page; trace sessions answer from the rebuilt model;
// "Why?" names the kernel function behind each decision of the current fault.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { EXAMPLES, FIXTURES, ROOT, frames, launchStopped, startClient, topFrame } from './helpers';

const ZAP = join(FIXTURES, 'tdp-zap.kvmmmu');
let dc: DebugClient | undefined;

afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

async function argsOf(c: DebugClient): Promise<Record<string, string>> {
  const scopes = await c.scopesRequest({ frameId: (await topFrame(c)).id });
  const vars = (await c.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference })).body.variables;
  return Object.fromEntries(vars.map((v) => [v.name, v.value]));
}

async function cont(c: DebugClient): Promise<DebugProtocol.StoppedEvent> {
  const [, ev] = await Promise.all([c.continueRequest({ threadId: 1 }), c.waitForEvent('stopped') as Promise<DebugProtocol.StoppedEvent>]);
  return ev;
}

describe('DAP: view watches (kvmMmu/addDataBreakpoint)', () => {
  it('two SPTE watches added by a view coexist with the client set, survive its replacement, and both fire', async () => {
    dc = await startClient();
    // The client's own set watches gfn 6; the view adds gfn 5 then gfn 6 is replaced by the client.
    await launchStopped(dc, { program: ZAP, stopOnEntry: true });
    const a = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' })).body as { breakpoint: { verified: boolean } };
    assert.equal(a.breakpoint.verified, true);
    const b = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:6:1' })).body as { breakpoint: { verified: boolean }; breakpoints: unknown[] };
    assert.equal(b.breakpoint.verified, true);
    assert.equal(b.breakpoints.length, 2);
    // Adding the same watch again does not duplicate it; a bad one is refused, not added.
    const again = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' })).body as { breakpoints: unknown[] };
    assert.equal(again.breakpoints.length, 2);
    const bad = (await dc.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'nonsense' })).body as { breakpoint: { verified: boolean }; breakpoints: unknown[] };
    assert.equal(bad.breakpoint.verified, false);
    assert.equal(bad.breakpoints.length, 2);
    // VS Code sends its whole set (here: empty) whenever its Breakpoints view changes.
    await dc.setDataBreakpointsRequest({ breakpoints: [] });
    const listed = (await dc.customRequest('kvmMmu/dataBreakpoints', {})).body as { breakpoints: Array<{ dataId: string }> };
    assert.deepEqual(listed.breakpoints.map((x) => x.dataId).sort(), ['spte:0:5:1', 'spte:0:6:1']);

    const first = await cont(dc);
    assert.equal(first.body.reason, 'data breakpoint');
    assert.match((await frames(dc)).at(-1)!.name, /^guest read gpa=0x5000/);
    assert.equal((await argsOf(dc)).gfn, '0x5');
    const second = await cont(dc);
    assert.equal(second.body.reason, 'data breakpoint');
    assert.match((await frames(dc)).at(-1)!.name, /^guest read gpa=0x6000/);
    assert.equal((await argsOf(dc)).gfn, '0x6');

    // Removing one leaves the other: the zap of gfn 5 still stops, nothing for gfn 6 does.
    const rm = (await dc.customRequest('kvmMmu/removeDataBreakpoint', { dataId: 'spte:0:6:1' })).body as { removed: boolean; breakpoints: unknown[] };
    assert.equal(rm.removed, true);
    assert.equal(rm.breakpoints.length, 1);
    await cont(dc);
    assert.match((await frames(dc)).at(-1)!.name, /^host invalidate/);
    assert.equal((await argsOf(dc)).gfn, '0x5');
  });

  it('a client data breakpoint and a view watch both fire', async () => {
    dc = await startClient();
    const first = await launchStopped(dc, { program: ZAP, stopOnEntry: false }, async (c) => {
      await c.setDataBreakpointsRequest({ breakpoints: [{ dataId: 'spte:0:6:1' }] });
      await c.customRequest('kvmMmu/addDataBreakpoint', { dataId: 'spte:0:5:1' });
    });
    assert.equal(first.body.reason, 'data breakpoint');
    assert.equal((await argsOf(dc)).gfn, '0x5');
    await cont(dc);
    assert.equal((await argsOf(dc)).gfn, '0x6');
  });
});

/** An SNP VM whose guest touches `n` private 4K pages: each fault leaves one assigned RMP entry. */
function manyRmpEntries(n: number): { file: string; last: number } {
  const lines = [
    'vm arch=x86 vendor=amd tdp=on type=snp maxphyaddr=48 vcpus=1',
    'param nx_huge_pages=off',
    'KVM_CREATE_GUEST_MEMFD fd=gmem0 size=64M',
    'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M flags=KVM_MEM_GUEST_MEMFD guest_memfd=gmem0 backing=4K',
    'KVM_SET_MEMORY_ATTRIBUTES address=0 size=64M attributes=KVM_MEMORY_ATTRIBUTE_PRIVATE',
  ];
  // Each access stops at #VC (not yet validated), after the fault assigned the page in the RMP.
  for (let i = 0; i < n; i++) lines.push(`guest read gpa=0x${(i * 0x1000).toString(16)} private`);
  lines.push('expect rmp gpa=0x0 assigned=1');
  const file = join(mkdtempSync(join(tmpdir(), 'kvm-mmu-rmp-')), 'many-rmp.kvmmmu');
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, last: lines.length };
}

type Paged = { total: number; rows: Array<Record<string, unknown>> };

describe('DAP: long lists page (kvmMmu/rmp, kvmMmu/stage2Ownership)', () => {
  it('RMP rows come a page at a time; the pages join into the whole list in pfn order', async () => {
    const { file, last } = manyRmpEntries(450);
    dc = await startClient();
    await launchStopped(dc, { program: file, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: file }, breakpoints: [{ line: last }] }));
    const page = async (start: number, count: number) => (await dc!.customRequest('kvmMmu/rmp', { start, count })).body as Paged;
    const p0 = await page(0, 200);
    assert.equal(p0.total, 450);
    assert.equal(p0.rows.length, 200);
    const p1 = await page(200, 200);
    const p2 = await page(400, 200);
    assert.equal(p1.total, 450);
    assert.equal(p2.rows.length, 50, 'the last page holds the rest');
    const all = [...p0.rows, ...p1.rows, ...p2.rows].map((r) => r.pfn as number);
    assert.equal(new Set(all).size, 450, 'no row twice');
    assert.deepEqual(all, all.slice().sort((a, b) => a - b));
    assert.deepEqual((await page(450, 200)).rows, [], 'past the end: nothing');
    // A row is the same whichever page asks for it.
    assert.deepEqual((await page(399, 2)).rows[0], p1.rows[199]);
    assert.equal(p0.rows[0]!.gpa, '0x0');
  });

  it('host stage-2 ranges page the same way', async () => {
    // Shared, donated and guest-owned pages make ranges of their own around the host's.
    const file = join(mkdtempSync(join(tmpdir(), 'kvm-mmu-s2-')), 'ownership.kvmmmu');
    writeFileSync(file, [
      'vm arch=arm64 mode=protected type=protected ipa_bits=40 pa_bits=40 host_memory=0x80000000+2G',
      '__pkvm_host_share_hyp pfn=0x80010',
      '__pkvm_host_donate_hyp pfn=0x80011 nr_pages=1',
      '__pkvm_host_donate_guest pfn=0x80020 gfn=0x100',
      '__pkvm_host_share_hyp pfn=0x80030',
      'expect page_state pfn=0x80020 host=NOPAGE owner=guest',
      '',
    ].join('\n'));
    dc = await startClient();
    await launchStopped(dc, { program: file, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: file }, breakpoints: [{ line: 6 }] }));
    const whole = (await dc.customRequest('kvmMmu/stage2Ownership', { start: 0, count: 10000 })).body as Paged;
    assert.ok(whole.total >= 2, `ranges: ${whole.total}`);
    const parts: Array<Record<string, unknown>> = [];
    for (let s = 0; s < whole.total; s++) {
      const p = (await dc.customRequest('kvmMmu/stage2Ownership', { start: s, count: 1 })).body as Paged;
      assert.equal(p.total, whole.total);
      parts.push(...p.rows);
    }
    assert.deepEqual(parts, whole.rows);
  });
});

/** A capture of the tdp-zap scenario, written by the CLI the way a user would make one. */
function zapCapture(): string {
  const out = join(mkdtempSync(join(tmpdir(), 'kvm-mmu-trace-')), 'tdp-zap.txt');
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'run', ZAP, '--trace-out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

type Row = { index: number; gfn: number; level: number; kind: string; value: string; child?: number; large?: boolean };

describe('DAP: views on a replayed trace', () => {
  it('kvmMmu/vm, roots, table and memslots answer from the MMU rebuilt from the capture', async () => {
    const trace = zapCapture();
    dc = await startClient();
    // Line 16: both faults replayed, the notifier's zap of gfn 5 not yet.
    await launchStopped(dc, { trace, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: trace }, breakpoints: [{ line: 16 }] }));
    const vm = (await dc.customRequest('kvmMmu/vm', {})).body as { kind: string; vm: Record<string, unknown> | null };
    assert.equal(vm.kind, 'trace');
    assert.ok(vm.vm, 'a VM summary, not null');
    assert.equal(vm.vm.arch, 'x86');
    assert.equal(vm.vm.vendor, 'intel', 'VMX-looking EPT SPTEs');
    assert.equal(vm.vm.tdpLevels, 4);

    const roots = (await dc.customRequest('kvmMmu/roots', {})).body as { format: string; roots: Array<{ table: number; level: number; as_id: number; invalid: boolean; roleText: string; entries: number }> };
    assert.equal(roots.format, 'ept');
    assert.equal(roots.roots.length, 1);
    const root = roots.roots[0]!;
    assert.equal(root.level, 4);
    assert.equal(root.as_id, 0);
    assert.equal(root.invalid, false);
    assert.match(root.roleText, /direct/);
    // Walk root -> L3 -> L2 -> L1 through the `child` tables, as the MMU Pages tree expands them.
    let table = root.table;
    const path: string[] = [];
    let leaves: Row[] = [];
    for (let level = 4; level >= 1; level--) {
      const t = (await dc.customRequest('kvmMmu/table', { table, start: 0, count: 256 })).body as { level: number; total: number; rows: Row[] };
      assert.equal(t.level, level);
      if (level > 1) {
        assert.equal(t.rows.length, 1, `one table entry at level ${level}`);
        const e = t.rows[0]!;
        assert.equal(e.kind, 'nonleaf');
        assert.equal(e.index, 0);
        assert.equal(typeof e.child, 'number');
        path.push(`L${level}[${e.index}]`);
        table = e.child!;
      } else leaves = t.rows;
    }
    assert.deepEqual(path, ['L4[0]', 'L3[0]', 'L2[0]']);
    assert.deepEqual(leaves.map((r) => [r.index, r.gfn, r.kind]), [[5, 5, 'leaf'], [6, 6, 'leaf']]);
    assert.equal(leaves[0]!.value, '0x8600001000005b77', 'the value the capture set');
    // Paging within a table.
    const second = (await dc.customRequest('kvmMmu/table', { table, start: 1, count: 1 })).body as { total: number; rows: Row[] };
    assert.equal(second.total, 2);
    assert.deepEqual(second.rows.map((r) => r.gfn), [6]);

    const slots = (await dc.customRequest('kvmMmu/memslots', {})).body as { slots: Array<{ gpa: string; backing: string }>; stats: Record<string, number>; shadowPages: unknown[] };
    assert.equal(slots.slots.length, 1);
    assert.equal(slots.slots[0]!.gpa, '0x0');
    assert.match(slots.slots[0]!.backing, /inferred/);
    assert.equal(slots.stats.faults, 2);
    assert.equal(slots.stats.sptes, 5);
    assert.ok(slots.shadowPages.length >= 4, 'the root and the three tables kvm_mmu_get_page showed');

    // After the zap of gfn 5 (line 17) its leaf is non-present; gfn 6 stays.
    await dc.setBreakpointsRequest({ source: { path: trace }, breakpoints: [{ line: 18 }] });
    await cont(dc);
    const after = (await dc.customRequest('kvmMmu/table', { table, start: 0, count: 256 })).body as { rows: Row[] };
    const g5 = after.rows.find((r) => r.gfn === 5);
    assert.notEqual(g5?.kind, 'leaf', `gfn 5 after the zap: ${g5?.kind}`);
    assert.equal(after.rows.find((r) => r.gfn === 6)?.kind, 'leaf');
    await assert.rejects(dc.customRequest('kvmMmu/table', { table: 999, start: 0, count: 1 }), /no page table/);
  });

  it('"Why?" on a capture: the chain its events prove, and a fault still being replayed says so', async () => {
    const trace = zapCapture();
    dc = await startClient();
    // 14: gfn 6's fault requested its leaf, the SPTE change not yet replayed; 16: both faults done.
    await launchStopped(dc, { trace, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: trace }, breakpoints: [{ line: 14 }, { line: 16 }] }));
    let w = (await dc.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    assert.equal(w.fault?.ret_pf, 'in progress');
    assert.match(w.sections[0]!.note ?? '', /still being replayed \(next: kvm_tdp_mmu_spte_changed\)/);
    await cont(dc);
    w = (await dc.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    assert.equal(w.fault?.ret_pf, 'RET_PF_FIXED');
    assert.equal(w.fault?.gfn, '0x6');
    assert.deepEqual(w.sections[0]!.rows.map((r) => r.key), ['kvm_page_fault', 'page_fault_can_be_fast', 'kvm_mmu_hugepage_adjust', 'kvm_tdp_mmu_map']);
    assert.match(w.sections[0]!.rows[3]!.value, /^RET_PF_FIXED: the 4K leaf was installed \(kvm_tdp_mmu_spte_changed: as id 0 gfn 6 level 1/);
    // Where is GFN 6 in the capture: its walk through the rebuilt root, and the fault's chain.
    const where = (await dc.customRequest('kvmMmu/whereIsGfn', { gfn: 6 })).body as WhyAnswer;
    const sptes = where.sections.find((x) => x.title.startsWith('SPTEs in root #'));
    assert.deepEqual(sptes?.rows.map((r) => r.key), ['level 4', 'level 3', 'level 2', 'level 1']);
    assert.match(sptes!.rows[3]!.value, /^0x8600001000006b77 {2}leaf/);
    assert.ok(where.sections.some((x) => x.title === 'why RET_PF_FIXED? (vCPU 0, gpa 0x6000)'), where.sections.map((x) => x.title).join(' | '));
  });
});

type WhyAnswer = { fault: { ret_pf: string; path: string; gfn: string; vcpu: number } | null; sections: Array<{ title: string; rows: Array<{ key: string; value: string }>; note?: string }> };

describe('DAP: "Why?" (kvmMmu/why)', () => {
  it('explains the MMIO path, a stale MMIO SPTE and the slow path of a scenario, each by the deciding function', async () => {
    const file = join(EXAMPLES, 'mmio-spte.kvmmmu');
    dc = await startClient();
    // Line 24: a RAM fault; 28: the first MMIO access (no memslot); 50: the MMIO SPTE hit; 64: its generation is stale.
    await launchStopped(dc, { program: file, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: file }, breakpoints: [{ line: 20 }, { line: 24 }, { line: 28 }, { line: 50 }, { line: 64 }] }));
    const why = async () => (await dc!.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    const keys = (w: WhyAnswer) => w.sections[0]!.rows.map((r) => r.key);
    const said = (w: WhyAnswer, k: string) => w.sections[0]!.rows.find((r) => r.key === k)?.value ?? '';

    let w = await why();
    assert.equal(w.fault, null, 'before the first fault');
    await cont(dc);
    w = await why();
    assert.equal(w.fault?.ret_pf, 'RET_PF_FIXED');
    assert.equal(w.fault?.path, 'slow');
    assert.deepEqual(keys(w), ['kvm_mmu_do_page_fault', 'page_fault_can_be_fast', 'kvm_mmu_faultin_pfn', 'kvm_mmu_hugepage_adjust', 'kvm_tdp_mmu_map']);
    assert.equal(w.sections[1]?.title, 'why this mapping level?', 'then why this level');

    await cont(dc);
    w = await why();
    assert.equal(w.fault?.ret_pf, 'RET_PF_EMULATE');
    assert.match(said(w, 'kvm_handle_noslot_fault'), /no memslot covers gfn 0xfee00: MMIO/);
    assert.match(said(w, 'x86_emulate_instruction'), /KVM_EXIT_MMIO/);

    await cont(dc);
    w = await why();
    assert.equal(w.fault?.path, 'mmio');
    assert.deepEqual(keys(w).slice(0, 3), ['kvm_mmu_page_fault', 'check_mmio_spte', 'handle_mmio_page_fault']);
    assert.match(said(w, 'handle_mmio_page_fault'), /^RET_PF_EMULATE via the MMIO SPTE/);

    await cont(dc);
    w = await why();
    assert.match(said(w, 'check_mmio_spte'), /generation 2 differs from the memslots' 4/);
    assert.match(said(w, 'handle_mmio_page_fault'), /^RET_PF_INVALID/);
    assert.ok(keys(w).includes('kvm_handle_noslot_fault'), 'then the slow path rebuilds it');

    // Where is GFN shows the fault's decisions for its gfn, next to why this mapping level.
    const where = (await dc.customRequest('kvmMmu/whereIsGfn', { gfn: 0xfee00 })).body as WhyAnswer;
    assert.ok(where.sections.some((s) => /^why RET_PF_EMULATE\? \(vCPU 0, gpa 0xfee00000\)$/.test(s.title)), where.sections.map((s) => s.title).join(' | '));
    const other = (await dc.customRequest('kvmMmu/whereIsGfn', { gfn: 1 })).body as WhyAnswer;
    assert.ok(!other.sections.some((s) => s.title.startsWith('why RET_PF')), 'only for the fault\'s own gfn');
  });

  it('explains a KVM_EXIT_MEMORY_FAULT by the private/shared mismatch and a write-protected shadow page by make_spte', async () => {
    const snp = join(EXAMPLES, 'snp-gmem-rmp.kvmmmu');
    const line = 50; // expect exit KVM_EXIT_MEMORY_FAULT gpa=0x6000 size=4K flags=0
    dc = await startClient();
    await launchStopped(dc, { program: snp, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: snp }, breakpoints: [{ line }] }));
    let w = (await dc.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    assert.equal(w.fault?.path, 'memory-fault');
    const row = w.sections[0]!.rows.find((r) => r.key === 'kvm_mmu_faultin_pfn');
    assert.match(row?.value ?? '', /^KVM_EXIT_MEMORY_FAULT \(gpa 0x6000 size 0x1000 flags 0\): the access is shared but the gfn's attributes say private/);
    await dc.stop();

    const shadow = join(EXAMPLES, 'shadow-paging.kvmmmu');
    dc = await startClient();
    await launchStopped(dc, { program: shadow, stopOnEntry: false }, (c) => c.setBreakpointsRequest({ source: { path: shadow }, breakpoints: [{ line: 45 }, { line: 51 }] }));
    w = (await dc.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    assert.equal(w.fault?.path, 'write-protected');
    assert.match(w.sections[0]!.rows.find((r) => r.key === 'FNAME(fetch)')?.value ?? '', /^RET_PF_WRITE_PROTECTED/);
    assert.match(w.sections[0]!.rows.find((r) => r.key === 'kvm_mmu_write_protect_fault')?.value ?? '', /^RET_PF_EMULATE/);
    await cont(dc);
    w = (await dc.customRequest('kvmMmu/why', {})).body as WhyAnswer;
    assert.equal(w.fault?.path, 'guest-fault');
    assert.match(w.sections[0]!.rows.find((r) => r.key === 'FNAME(walk_addr)')?.value ?? '', /kvm_inject_emulated_page_fault/);
  });
});
