import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import { activateExtension, screenshot, sleep, waitFor } from './helpers';

const ROOT = process.env.KVM_MMU_ROOT ?? path.resolve(__dirname, '..', '..', '..', '..');
void ROOT;

// The scenarios these tests drive live here, not in examples/ (which other work reshapes): line numbers
// below refer to these texts.
const FIXTURES: Record<string, string> = {
  'tdp-basics.kvmmmu': "# tdp-basics: what the TDP MMU does with the first accesses to guest RAM on an Intel host (EPT, 4 levels).\n#\n# 1 GiB of RAM backed by 2 MiB transparent huge pages: the first read maps a 2M leaf (host mapping\n# level 2M, NX mitigation off), a later write needs no fault at all because a TDP leaf is made\n# writable even on a read fault when the host page is writable. Touching the rest of the slot in\n# 2 MiB steps fills the PD with 512 huge leaves. Turning on dirty logging then splits every 2M leaf\n# to 4K (eager_page_split) and write-protects them (PML off), so the next write is fixed by\n# fast_page_fault and shows up in KVM_GET_DIRTY_LOG.\n#\n# Run: kvm-mmu run examples/tdp-basics.kvmmmu   (try --set eager_page_split=N and watch line 42 fail)\n\nvm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=1\nparam tdp_mmu=Y eager_page_split=Y nx_huge_pages=off pml=N\n\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G hva=0x7f0000000000 backing=2M\nexpect ret 0\n\n# First touch: EPT violation on GPA 0x1000; the root is allocated on the way in.\nguest read gpa=0x1000\nexpect exit none\nexpect roots count=1 invalid=0\nexpect root role.level=4 role.direct=1 role.access=7\nexpect sp gfn=0 level=3 role.direct=1 role.access=7\nexpect spte gpa=0x1000 kind=leaf level=2 ps=1 r=1 w=1 x=1 mmu_writable=1 host_writable=1\nexpect trace kvm_mmu_spte_requested \"gfn 1 pfn * level 2\"\nexpect trace kvm_mmu_set_spte count=1\nexpect stat pf_fixed=1 pages_2m=1 pages_4k=0\n\n# The leaf is already writable: the write does not exit, no tracepoint fires.\nguest write gpa=0x1000\nexpect trace count=0\nexpect stat pf_fixed=1\n\n# The other 511 huge pages of the slot, one access each.\nguest read gpa 0x0..0x40000000 step 2M\nexpect stat pf_fixed=512 pages_2m=512\nexpect spte gpa=0x3fe00000 kind=leaf level=2\n\n# Dirty logging: eager split to 4K, then write-protect (PML is off).\ndirty_log enable slot=0\nexpect ret 0\nexpect stat pages_2m=0 pages_4k=262144\nexpect spte gpa=0x1000 kind=leaf level=1 w=0 mmu_writable=1\nexpect trace kvm_mmu_split_huge_page count=512\n\n# A write to a write-protected but MMU-writable SPTE: fast_page_fault sets W and marks the page dirty.\nguest write gpa=0x1000\nexpect spte gpa=0x1000 kind=leaf level=1 w=1\nexpect trace fast_page_fault count=1\nexpect stat pf_fast=1\nKVM_GET_DIRTY_LOG slot=0\nexpect dirty slot=0 count=1\nexpect dirty slot=0 gfn=0x1 dirty=1\n",
  'pkvm-ownership.kvmmmu': [
    'vm arch=arm64 mode=protected type=protected ipa_bits=40 pa_bits=40 host_memory=0x80000000+2G',
    '__pkvm_host_share_hyp pfn=0x80010',
    'expect ret 0',
    '__pkvm_host_donate_hyp pfn=0x80011 nr_pages=1',
    'expect ret 0',
    '__pkvm_host_donate_guest pfn=0x80020 gfn=0x100',
    'expect ret 0',
    'expect page_state pfn=0x80020 host=NOPAGE owner=guest',
    '',
  ].join('\n'),
  'snp-rmp.kvmmmu': [
    'vm arch=x86 vendor=amd tdp=on type=snp maxphyaddr=48 vcpus=1',
    'param nx_huge_pages=off',
    'KVM_CREATE_GUEST_MEMFD fd=gmem0 size=1G',
    'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G flags=KVM_MEM_GUEST_MEMFD guest_memfd=gmem0 backing=2M',
    'KVM_SET_MEMORY_ATTRIBUTES address=0 size=1G attributes=KVM_MEMORY_ATTRIBUTE_PRIVATE',
    'guest read gpa=0x5000 private',
    'expect exception VC',
    'guest pvalidate gpa=0x5000 size=4K validate=1',
    'expect ret 0',
    'expect rmp gpa=0x5000 validated=1',
    '',
  ].join('\n'),
  'shadow-paging.kvmmmu': [
    'vm arch=x86 vendor=intel tdp=off maxphyaddr=46 vcpus=1',
    'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M backing=4K',
    'guest map cr3=0x10000 gva 0x400000..0x600000 gpa=0x200000 page=4K flags=rw,user',
    'guest map cr3=0x10000 gva 0x10000..0x20000 gpa=0x10000 page=4K flags=rw',
    'guest set cr3=0x10000 cr4=0x20 efer=0xd00 cr0=0x80010011',
    'guest read gva=0x401000 user',
    'expect root kind=sp role.level=4 role.direct=0',
    '',
  ].join('\n'),
};
// Two 4K leaves, both zapped by one invalidation (two SPTE watches fire in one statement), then a refault.
FIXTURES['two-leaves.kvmmmu'] = [
  'vm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=1',
  'param tdp_mmu=Y nx_huge_pages=off',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=16M hva=0x7f0000000000 backing=4K',
  'guest read gpa=0x5000',
  'guest read gpa=0x6000',
  'host invalidate gpa 0x5000..0x7000 reason=reclaim',
  'guest read gpa=0x5000',
  '',
].join('\n');
// An SNP guest touching 450 private pages: 450 RMP entries, more than two pages of the RMP view.
FIXTURES['snp-many-rmp.kvmmmu'] = [
  'vm arch=x86 vendor=amd tdp=on type=snp maxphyaddr=48 vcpus=1',
  'param nx_huge_pages=off',
  'KVM_CREATE_GUEST_MEMFD fd=gmem0 size=64M',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=64M flags=KVM_MEM_GUEST_MEMFD guest_memfd=gmem0 backing=4K',
  'KVM_SET_MEMORY_ATTRIBUTES address=0 size=64M attributes=KVM_MEMORY_ATTRIBUTE_PRIVATE',
  ...Array.from({ length: 450 }, (_, i) => `guest read gpa=0x${(i * 0x1000).toString(16)} private`),
  'expect rmp gpa=0x0 assigned=1',
  '',
].join('\n');
// `kvm-mmu run test/dap/fixtures/tdp-zap.kvmmmu --trace-out`: the capture a trace session replays (faults on
// gfn 5 and 6, an mmu-notifier zap of gfn 5, a refault of it).
FIXTURES['two-faults.trace.txt'] = '       CPU 0/KVM-1235    [000] .....    12.000001: kvm_mmu_get_page: sp gen 0 gfn 0 l4 8-byte q0 direct wux nxe ad root 0 sync new\n       CPU 0/KVM-1235    [000] .....    12.000002: kvm_page_fault: vcpu 0 rip 0xfff0 address 0x0000000000005000 error_code 0x181\n       CPU 0/KVM-1235    [000] .....    12.000003: kvm_mmu_spte_requested: gfn 5 pfn 1000005 level 1\n       CPU 0/KVM-1235    [000] .....    12.000004: kvm_mmu_get_page: sp gen 0 gfn 0 l3 8-byte q0 direct wux nxe ad root 0 sync new\n       CPU 0/KVM-1235    [000] .....    12.000005: kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 4 old_spte 8000000000000000 new_spte 8000000040001907\n       CPU 0/KVM-1235    [000] .....    12.000006: kvm_mmu_get_page: sp gen 0 gfn 0 l2 8-byte q0 direct wux nxe ad root 0 sync new\n       CPU 0/KVM-1235    [000] .....    12.000007: kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 3 old_spte 8000000000000000 new_spte 8000000040002907\n       CPU 0/KVM-1235    [000] .....    12.000008: kvm_mmu_get_page: sp gen 0 gfn 0 l1 8-byte q0 direct wux nxe ad root 0 sync new\n       CPU 0/KVM-1235    [000] .....    12.000009: kvm_tdp_mmu_spte_changed: as id 0 gfn 0 level 2 old_spte 8000000000000000 new_spte 8000000040003907\n       CPU 0/KVM-1235    [000] .....    12.000010: kvm_tdp_mmu_spte_changed: as id 0 gfn 5 level 1 old_spte 8000000000000000 new_spte 8600001000005b77\n       CPU 0/KVM-1235    [000] .....    12.000011: kvm_mmu_set_spte: gfn 5 spte 8600001000005b77 (rwxu) level 1 at 40003028\n       CPU 0/KVM-1235    [000] .....    12.000012: kvm_page_fault: vcpu 0 rip 0xfff0 address 0x0000000000006000 error_code 0x181\n       CPU 0/KVM-1235    [000] .....    12.000013: kvm_mmu_spte_requested: gfn 6 pfn 1000006 level 1\n       CPU 0/KVM-1235    [000] .....    12.000014: kvm_tdp_mmu_spte_changed: as id 0 gfn 6 level 1 old_spte 8000000000000000 new_spte 8600001000006b77\n       CPU 0/KVM-1235    [000] .....    12.000015: kvm_mmu_set_spte: gfn 6 spte 8600001000006b77 (rwxu) level 1 at 40003030\n qemu-system-x86-1234    [000] .....    12.000016: kvm_unmap_hva_range: mmu notifier unmap range: 0x007f0000005000 -- 0x007f0000006000\n qemu-system-x86-1234    [000] .....    12.000017: kvm_tdp_mmu_spte_changed: as id 0 gfn 5 level 1 old_spte 8600001000005b77 new_spte 8000000000000000\n       CPU 0/KVM-1235    [000] .....    12.000018: kvm_page_fault: vcpu 0 rip 0xfff0 address 0x0000000000005000 error_code 0x181\n       CPU 0/KVM-1235    [000] .....    12.000019: kvm_mmu_spte_requested: gfn 5 pfn 1000005 level 1\n       CPU 0/KVM-1235    [000] .....    12.000020: kvm_tdp_mmu_spte_changed: as id 0 gfn 5 level 1 old_spte 8000000000000000 new_spte 8600001000005b77\n       CPU 0/KVM-1235    [000] .....    12.000021: kvm_mmu_set_spte: gfn 5 spte 8600001000005b77 (rwxu) level 1 at 40003028\n';
const FIXTURE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-mmu-views-'));
for (const [name, text] of Object.entries(FIXTURES)) fs.writeFileSync(path.join(FIXTURE_DIR, name), text);
const TDP_BASICS = path.join(FIXTURE_DIR, 'tdp-basics.kvmmmu');
const PKVM = path.join(FIXTURE_DIR, 'pkvm-ownership.kvmmmu');
const SNP = path.join(FIXTURE_DIR, 'snp-rmp.kvmmmu');
const SHADOW = path.join(FIXTURE_DIR, 'shadow-paging.kvmmmu');
const TWO_LEAVES = path.join(FIXTURE_DIR, 'two-leaves.kvmmmu');
const MANY_RMP = path.join(FIXTURE_DIR, 'snp-many-rmp.kvmmmu');
const TRACE = path.join(FIXTURE_DIR, 'two-faults.trace.txt');

type Node = { kind: string; group?: string; probes?: Array<{ name: string }>; probe?: { name: string }; ev?: { name: string; index: number; step: number; text: string }; text?: string };
interface Tree {
  getChildren(n?: Node): Node[] | Promise<Node[]>;
  getTreeItem(n: Node): vscode.TreeItem;
  onDidChangeTreeData: vscode.Event<unknown>;
}
interface RowLike {
  kind: string;
  label: string;
  description?: string;
  children?: RowLike[];
}
interface RowsTree {
  getChildren(n?: RowLike): Promise<RowLike[]>;
}
interface Api {
  views: {
    events: { onStopped: vscode.Event<{ reason: string; session: vscode.DebugSession }> };
    probes: Tree;
    eventsTree: Tree & { filter: string; readonly loaded: ReadonlyArray<{ name: string; text: string; step: number }>; reload(): Promise<void> };
    vm(): { arch: string; type: string } | undefined;
    pages: Tree;
    pagesView: vscode.TreeView<unknown>;
    state: { memslots: RowsTree; ownership: RowsTree; rmp: RowsTree };
    where(): unknown;
  };
}

/** Start a session and resolve at its first stop. */
async function startAndStop(api: Api, program: string, kind: 'program' | 'trace' = 'program'): Promise<vscode.DebugSession> {
  const name = `${path.basename(program)} ${Date.now()}`;
  const stopped = new Promise<vscode.DebugSession>((resolve) => {
    const sub = api.views.events.onStopped((e) => {
      if (e.session.name !== name) return;
      sub.dispose();
      resolve(e.session);
    });
  });
  const ok = await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name, [kind]: program, stopOnEntry: true });
  assert.ok(ok, 'startDebugging');
  return stopped;
}

async function nextStop(api: Api, session: vscode.DebugSession, request: string, args: object): Promise<void> {
  const stopped = new Promise<void>((resolve) => {
    const sub = api.views.events.onStopped((e) => {
      if (e.session.id !== session.id) return;
      sub.dispose();
      resolve();
    });
  });
  await session.customRequest(request, args);
  await stopped;
}

/** Step over statements until the top frame is at `line` or beyond. */
async function stepToLine(api: Api, session: vscode.DebugSession, line: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const st = await session.customRequest('stackTrace', { threadId: 1 });
    if (st.stackFrames[0].line >= line) return;
    await nextStop(api, session, 'next', { threadId: 1 });
  }
  throw new Error(`never reached line ${line}`);
}

/** The level-1 SPTE nodes of the first root, expanding tables on the way down. */
async function leafNodes(tree: Tree): Promise<Node[]> {
  type P = Node & { row?: { level: number; child?: number } };
  let level: P[] = (await tree.getChildren()) as P[];
  for (let depth = 0; depth < 8; depth++) {
    const next: P[] = [];
    for (const n of level) {
      if (n.kind === 'spte' && n.row?.level === 1) next.push(n);
      else if (n.kind === 'as' || n.kind === 'root' || (n.kind === 'spte' && n.row?.child !== undefined)) next.push(...((await tree.getChildren(n)) as P[]));
    }
    level = next;
    if (level.length && level.every((n) => n.kind === 'spte' && n.row?.level === 1)) return level;
  }
  return level.filter((n) => n.kind === 'spte' && n.row?.level === 1);
}

/** Send a resume request and resolve with the reason of the next stop. */
async function stopReason(api: Api, session: vscode.DebugSession, request: string): Promise<string> {
  const stopped = new Promise<string>((resolve) => {
    const sub = api.views.events.onStopped((e) => {
      if (e.session.id !== session.id) return;
      sub.dispose();
      resolve(e.reason);
    });
  });
  await session.customRequest(request, { threadId: 1 });
  return stopped;
}

/** An argument of the top frame (the probe's arguments scope). */
async function topArg(session: vscode.DebugSession, name: string): Promise<string> {
  const st = await session.customRequest('stackTrace', { threadId: 1 });
  const scopes = await session.customRequest('scopes', { frameId: st.stackFrames[0].id });
  const vars = await session.customRequest('variables', { variablesReference: scopes.scopes[0].variablesReference });
  return (vars.variables as Array<{ name: string; value: string }>).find((v) => v.name === name)?.value ?? '';
}

async function setTheme(name: string): Promise<void> {
  await vscode.workspace.getConfiguration('workbench').update('colorTheme', name, vscode.ConfigurationTarget.Global);
  const kind = /Light/.test(name) ? vscode.ColorThemeKind.Light : /High Contrast/.test(name) ? vscode.ColorThemeKind.HighContrast : vscode.ColorThemeKind.Dark;
  await waitFor(`theme ${name}`, () => (vscode.window.activeColorTheme.kind === kind ? true : undefined));
  await new Promise((r) => setTimeout(r, 300));
}

/** Give the side bar room for descriptions before a screenshot. */
async function widenSideBar(): Promise<void> {
  await vscode.commands.executeCommand('workbench.action.focusSideBar');
  for (let i = 0; i < 5; i++) await vscode.commands.executeCommand('workbench.action.increaseViewSize');
}

describe('KVM MMU views', () => {
  let api: Api;
  before(async () => {
    api = await activateExtension<Api>();
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await vscode.commands.executeCommand('workbench.action.closePanel');
  });
  after(async () => {
    await setTheme('Default Dark Modern');
  });
  afterEach(async () => {
    // A session that ends on its own while being stopped rejects the stop with "Canceled": it ended all the same.
    if (vscode.debug.activeDebugSession) await Promise.resolve(vscode.debug.stopDebugging()).catch(() => undefined);
    // Let the session finish ending: views asked during the next test must not reach a closing adapter.
    await waitFor('no debug session', () => (vscode.debug.activeDebugSession ? undefined : true), 15000).catch(() => undefined);
    const fbs = vscode.debug.breakpoints.filter((b) => b instanceof vscode.FunctionBreakpoint);
    if (fbs.length) vscode.debug.removeBreakpoints(fbs);
  });

  it('MMU Probes lists the registry by group without a session and mirrors function breakpoints', async () => {
    await vscode.commands.executeCommand('workbench.view.extension.kvm-mmu');
    await vscode.commands.executeCommand('kvmMmu.probes.focus');
    const groups = await api.views.probes.getChildren();
    const names = groups.map((g) => g.group);
    for (const g of ['fault', 'stage2', 'walk']) assert.ok(names.includes(g), `group ${g} in ${names.join(',')}`);
    assert.ok(names.indexOf('fault') < names.indexOf('stage2'), 'fault group first');
    const fault = groups.find((g) => g.group === 'fault')!;
    const kids = await api.views.probes.getChildren(fault);
    const uma = kids.find((k) => k.probe?.name === 'user_mem_abort');
    assert.ok(uma, 'user_mem_abort is a fault probe');
    assert.strictEqual(api.views.probes.getTreeItem(uma).checkboxState, vscode.TreeItemCheckboxState.Unchecked);

    await vscode.commands.executeCommand('kvmMmu.probes.toggle', 'user_mem_abort');
    await waitFor('function breakpoint added', () =>
      vscode.debug.breakpoints.some((b) => b instanceof vscode.FunctionBreakpoint && b.functionName === 'user_mem_abort') || undefined);
    assert.strictEqual(api.views.probes.getTreeItem(uma).checkboxState, vscode.TreeItemCheckboxState.Checked, 'checked once the breakpoint exists');
    assert.match(api.views.probes.getTreeItem(groups.find((g) => g.group === 'fault')!).description as string, /^1\//, 'group counts armed probes');

    // A breakpoint added elsewhere (Breakpoints view, API) checks the probe too.
    vscode.debug.addBreakpoints([new vscode.FunctionBreakpoint('walk_addr_generic')]);
    const walk = (await api.views.probes.getChildren(groups.find((g) => g.group === 'walk')!)).find((k) => k.probe?.name === 'walk_addr_generic')!;
    await waitFor('walk_addr_generic checked', () => api.views.probes.getTreeItem(walk).checkboxState === vscode.TreeItemCheckboxState.Checked || undefined);
    await screenshot('probes-view-dark');

    await vscode.commands.executeCommand('kvmMmu.probes.toggle', 'user_mem_abort');
    await waitFor('function breakpoint removed', () =>
      !vscode.debug.breakpoints.some((b) => b instanceof vscode.FunctionBreakpoint && b.functionName === 'user_mem_abort') || undefined);
    assert.strictEqual(api.views.probes.getTreeItem(uma).checkboxState, vscode.TreeItemCheckboxState.Unchecked);
  });

  it('Events shows the session\'s tracepoint events, refreshes at each stop, filters, and reveals the emitting statement', async function () {
    this.timeout(60000);
    await vscode.commands.executeCommand('kvmMmu.events.focus');
    const session = await startAndStop(api, TDP_BASICS);
    await waitFor('vm context', () => api.views.vm());
    assert.strictEqual(api.views.vm()?.arch, 'x86');
    const tree = api.views.eventsTree;
    await waitFor('events view loaded', async () => ((await tree.getChildren()).length > 0 ? true : undefined));
    const first = await tree.getChildren();
    assert.ok(first.every((n) => n.kind === 'message'), 'before the first fault: a message, no events');

    // Run to the end of the first guest access block (line 28, `expect trace kvm_mmu_set_spte count=1`).
    for (let i = 0; i < 6; i++) {
      const refreshed = new Promise<void>((resolve) => {
        const sub = tree.onDidChangeTreeData(() => {
          sub.dispose();
          resolve();
        });
      });
      await nextStop(api, session, 'next', { threadId: 1 });
      await refreshed;
    }
    const engineHasEvents = tree.loaded.length > 0;
    if (engineHasEvents) {
      const names = tree.loaded.map((e) => e.name);
      assert.ok(names.includes('kvm_mmu_spte_requested'), `kvm_mmu_spte_requested among ${names.join(',')}`);
      const req = tree.loaded.find((e) => e.name === 'kvm_mmu_spte_requested')!;
      assert.match(req.text, /gfn 1 pfn [0-9a-f]+ level 2/);
      const st = await vscode.debug.activeDebugSession!.customRequest('kvmMmu/stepLocation', { step: req.step });
      assert.strictEqual(st.line, 19, 'emitted by `guest read gpa=0x1000`');
      await vscode.commands.executeCommand('kvmMmu.events.reveal', req);
      await waitFor('statement revealed', () => {
        const e = vscode.window.activeTextEditor;
        return e && e.document.uri.fsPath === TDP_BASICS && e.selection.active.line === 18 ? true : undefined;
      });
      await vscode.commands.executeCommand('kvmMmu.events.focus');
      await widenSideBar();
      await screenshot('events-view-dark');
      // Go to Event: the session re-executes to the moment the event was emitted and stops there.
      const back = new Promise<void>((resolve) => {
        const sub = api.views.events.onStopped(() => {
          sub.dispose();
          resolve();
        });
      });
      const went = await vscode.commands.executeCommand<boolean>('kvmMmu.events.goto', { kind: 'event', ev: req });
      assert.strictEqual(went, true, 'kvmMmu/gotoEvent accepted');
      await back;
      const frames = (await session.customRequest('stackTrace', { threadId: 1 })).stackFrames as Array<{ name: string; line: number; source?: { path?: string } }>;
      assert.ok(frames.some((f) => f.line === 19 && f.name.startsWith('guest read')), `stopped inside line 19: ${frames.map((f) => `${f.name}@${f.line}`).join(' < ')}`);
      await vscode.commands.executeCommand('kvmMmu.events.filter', 'kvm_page_fault');
      assert.ok(tree.loaded.length > 0 && tree.loaded.every((e) => e.name.includes('kvm_page_fault') || e.text.includes('kvm_page_fault')), 'filtered');
      await screenshot('events-view-filtered-dark');
      await vscode.commands.executeCommand('kvmMmu.events.clearFilter');
    } else {
      // The x86 binding has not landed yet: the view says why instead of showing nothing.
      const kids = await tree.getChildren();
      assert.strictEqual(kids[0].kind, 'message');
      await screenshot('events-view-dark');
    }
  });

  it('MMU Pages shows roots -> tables -> SPTEs lazily, pages 256 at a time, and updates after a step', async function () {
    this.timeout(60000);
    await vscode.commands.executeCommand('kvmMmu.pages.focus');
    const session = await startAndStop(api, TDP_BASICS);
    const pages = api.views.pages;
    const msg = await pages.getChildren();
    assert.strictEqual(msg[0].kind, 'message', 'before the first fault there is no root');
    // `guest read gpa=0x1000` and the checks after it (up to line 28).
    for (let i = 0; i < 6; i++) await nextStop(api, session, 'next', { threadId: 1 });
    const ases = await pages.getChildren();
    assert.deepStrictEqual(ases.map((a) => a.kind), ['as']);
    const roots = await pages.getChildren(ases[0]);
    assert.strictEqual(roots.length, 1, 'one root');
    const rootItem = pages.getTreeItem(roots[0]);
    const rootMap = await vscode.commands.executeCommand<{ root: number; tables: unknown[] }>('kvmMmu.showPageTableMap', roots[0]);
    assert.strictEqual(rootMap?.root, (roots[0] as unknown as { root: { table: number } }).root.table, 'the map of the root the command came from');
    assert.strictEqual(rootMap?.tables.length, 3, 'PML4, PDPT and PD; no PT yet (the PD holds a 2M leaf)');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    assert.match(String(rootItem.description), /^l4 8-byte q0 direct wux.*refcount \d+ {2}valid/);
    // Walk index 0 down to the PD: one 2M leaf for gfn 0..0x1ff.
    let node = roots[0];
    const labels: string[] = [];
    for (let level = 4; level >= 2; level--) {
      const kids = await pages.getChildren(node);
      assert.ok(kids.length >= 1, `level ${level} has entries`);
      node = kids[0];
      const item = pages.getTreeItem(node);
      labels.push(`${item.label} | ${item.description}`);
    }
    assert.match(labels[0], /^\[0\] gfn 0x0-0x7ffffff \| L4 table/);
    assert.match(labels[1], /^\[0\] gfn 0x0-0x3ffff \| L3 table/);
    assert.match(labels[2], /^\[0\] gfn 0x0-0x1ff \| L2 huge leaf 2M {2}rwxu? pfn 0x[0-9a-f]+ A/, labels.join(" ; "));
    const leafItem = pages.getTreeItem(node);
    assert.strictEqual(leafItem.contextValue, 'spte.hugeLeaf');
    assert.ok(leafItem.tooltip instanceof vscode.MarkdownString && /MMU_PRESENT/.test(leafItem.tooltip.value), 'tooltip lists the fields');
    const copied = await vscode.commands.executeCommand<string>('kvmMmu.pages.copyValue', node);
    assert.match(copied ?? '', /^0x[0-9a-f]{16}$/);
    const dataId = await vscode.commands.executeCommand<string>('kvmMmu.pages.breakOnChange', node);
    assert.strictEqual(dataId, 'spte:0:0:2');
    const decoded = await vscode.commands.executeCommand<{ kind: string; value: string; level: number }>('kvmMmu.pages.decode', node);
    assert.deepStrictEqual(decoded, { kind: 'ept-spte', value: copied, level: 2 });
    // From the Variables view: an SPTE variable decodes in the VM's format (EPT here) without asking.
    const fromVar = await vscode.commands.executeCommand<{ kind: string; value: string }>('kvmMmu.decodeValue', { container: {}, variable: { name: 'old_spte', value: copied } });
    assert.strictEqual(fromVar?.kind, 'ept-spte');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    await vscode.commands.executeCommand('kvmMmu.pages.focus');
    await api.views.pagesView.reveal(node, { select: true, focus: true, expand: false });
    await widenSideBar();
    await screenshot('pages-view-dark');
    await setTheme('Default Light Modern');
    await screenshot('pages-view-light');
    await setTheme('Default Dark Modern');

    // Line 36 maps the other 511 huge pages: the PD now pages 256 at a time.
    await stepToLine(api, session, 37);
    const r2 = await pages.getChildren();
    const pml4 = (await pages.getChildren(r2[0]))[0];
    const pdpt = (await pages.getChildren(pml4))[0];
    const pd = (await pages.getChildren(pdpt))[0];
    const entries = await pages.getChildren(pd);
    assert.strictEqual(entries.length, 257, '256 entries and a more… node');
    const more = entries[256];
    assert.strictEqual(more.kind, 'more');
    assert.match(String(pages.getTreeItem(more).label), /more… \(256 more entries\)/);
    await vscode.commands.executeCommand('kvmMmu.pages.more', (more as unknown as { table: number }).table);
    const all = await pages.getChildren(pd);
    assert.strictEqual(all.length, 512);
    assert.match(String(pages.getTreeItem(all[511]).label), /^\[511\] gfn 0x3fe00-0x3ffff$/);

    // The data breakpoint set above fires when dirty logging splits the 2M leaf of gfn 0.
    const reasons: string[] = [];
    const sub = api.views.events.onStopped((e) => reasons.push(e.reason));
    try {
      await session.customRequest('continue', { threadId: 1 });
      await waitFor('data breakpoint stop', () => (reasons.length ? true : undefined));
      assert.strictEqual(reasons[0], 'data breakpoint');
      const st = await session.customRequest('stackTrace', { threadId: 1 });
      const bottom = st.stackFrames[st.stackFrames.length - 1];
      assert.strictEqual(bottom.line, 40, 'dirty_log enable slot=0 changed it');
    } finally {
      sub.dispose();
    }
  });

  it('Memslots & Attributes lists the slots and follows dirty logging; Stage-2 Ownership shows pKVM owners', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, TDP_BASICS);
    await stepToLine(api, session, 16);
    await vscode.commands.executeCommand('kvmMmu.memslots.focus');
    let groups = await api.views.state.memslots.getChildren();
    assert.deepStrictEqual(groups.map((g) => g.label), ['Memslots', 'Attributes']);
    let slots = await api.views.state.memslots.getChildren(groups[0]);
    assert.strictEqual(slots[0].label, 'slot 0');
    assert.match(slots[0].description ?? '', /^0x0-0x3fffffff/);
    assert.ok(!/dirty-log/.test(slots[0].description ?? ''));
    await stepToLine(api, session, 41);
    groups = await api.views.state.memslots.getChildren();
    slots = await api.views.state.memslots.getChildren(groups[0]);
    assert.match(slots[0].description ?? '', /LOG_DIRTY_PAGES.*dirty-log/, 'updated after the dirty_log statement');
    await screenshot('memslots-view-dark');
    const ownNone = await api.views.state.ownership.getChildren();
    assert.strictEqual(ownNone[0].label, 'not available for this VM', 'no pKVM on x86');
    await vscode.debug.stopDebugging();
    await waitFor('session gone', () => (vscode.debug.activeDebugSession ? undefined : true));

    const s2 = await startAndStop(api, PKVM);
    await waitFor('pkvm context', () => (api.views.vm()?.arch === 'arm64' ? true : undefined));
    await stepToLine(api, s2, 8);
    await vscode.commands.executeCommand('kvmMmu.stage2.focus');
    const ranges = await api.views.state.ownership.getChildren();
    const donated = ranges.find((r) => r.label === '0x80020000-0x80020fff');
    assert.ok(donated, `the donated page is a range of its own: ${ranges.map((r) => r.label).join(', ')}`);
    assert.match(donated.description ?? '', /^guest handle 0x[0-9a-f]+ {2}host NOPAGE/);
    await screenshot('stage2-ownership-view-dark');
  });

  it('MMU Pages follows the shadow MMU (tdp=off): indirect pages down to the guest\'s 4K mapping', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, SHADOW);
    await stepToLine(api, session, 7);
    const pages = api.views.pages;
    const ases = await pages.getChildren();
    assert.match(String(pages.getTreeItem(ases[0]).description), /1 root \(shadow MMU\)/);
    const roots = await pages.getChildren(ases[0]);
    assert.match(String(pages.getTreeItem(roots[0]).description), /^l4 8-byte q0 wux/, 'an indirect root: no "direct" in the role');
    let node = roots[0];
    for (let level = 4; level >= 1; level--) node = (await pages.getChildren(node))[0];
    const leaf = pages.getTreeItem(node);
    assert.match(`${leaf.label} | ${leaf.description}`, /^\[1\] gfn 0x201 \| L1 leaf 4K/, 'gva 0x401000 -> gpa 0x201000');
  });

  it('RMP lists the assigned entries of an SEV-SNP VM and follows PVALIDATE', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, SNP);
    await waitFor('snp context', () => (api.views.vm()?.type === 'snp' ? true : undefined));
    await stepToLine(api, session, 7);
    await vscode.commands.executeCommand('kvmMmu.rmp.focus');
    let rows = await api.views.state.rmp.getChildren();
    assert.strictEqual(rows.length, 1, rows.map((r) => r.label).join(', '));
    assert.match(rows[0].description ?? '', /^(4K|2M) gpa 0x[0-9a-f]+ asid 1 {2}not validated/);
    await stepToLine(api, session, 9);
    rows = await api.views.state.rmp.getChildren();
    assert.match(rows.map((r) => r.description).join(' | '), /asid 1 {2}Validated/, 'after guest pvalidate');
    await screenshot('rmp-view-dark');
  });

  it('MMU Pages and Memslots show a replayed trace: the MMU rebuilt from the capture', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, TRACE, 'trace');
    await waitFor('trace vm context', () => (api.views.vm()?.arch === 'x86' ? true : undefined));
    // Line 16: both faults replayed, the zap of gfn 5 not yet.
    await stepToLine(api, session, 16);
    await vscode.commands.executeCommand('kvmMmu.pages.focus');
    const leaves = await leafNodes(api.views.pages);
    const labels = leaves.map((n) => `${api.views.pages.getTreeItem(n).label} | ${api.views.pages.getTreeItem(n).description}`);
    assert.strictEqual(labels.length, 2, labels.join(' ; '));
    assert.match(labels[0], /^\[5\] gfn 0x5 \| L1 leaf 4K/);
    assert.match(labels[1], /^\[6\] gfn 0x6 \| L1 leaf 4K/);
    const groups = await api.views.state.memslots.getChildren();
    assert.deepStrictEqual(groups.map((g) => g.label), ['Memslots', 'Attributes', 'Shadow pages', 'Capture']);
    assert.match(groups[0].description ?? '', /^1 inferred/);
    const capture = await api.views.state.memslots.getChildren(groups[3]);
    assert.ok(capture.some((r) => r.label === 'faults' && r.description === '2'), capture.map((r) => `${r.label}=${r.description}`).join(', '));
    await screenshot('pages-view-trace-dark');
    // After the zap (line 17) the tree follows the rebuilt state: gfn 5 is gone, gfn 6 stays.
    await stepToLine(api, session, 18);
    const after = (await leafNodes(api.views.pages)).map((n) => String(api.views.pages.getTreeItem(n).label));
    assert.deepStrictEqual(after, ['[6] gfn 0x6']);
  });

  it('"Break when SPTE changes" on two SPTEs: both watches coexist with VS Code\'s data breakpoints and both fire', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, TWO_LEAVES);
    await stepToLine(api, session, 6);
    const leaves = await leafNodes(api.views.pages);
    assert.strictEqual(leaves.length, 2);
    const ids: string[] = [];
    for (const n of leaves) ids.push((await vscode.commands.executeCommand<string>('kvmMmu.pages.breakOnChange', n)) ?? '');
    assert.deepStrictEqual(ids, ['spte:0:5:1', 'spte:0:6:1']);
    // The tree mirrors the adapter's watches; one can be dropped from its node and added back.
    const marked = await waitFor('watched marks', async () => {
      const items = (await leafNodes(api.views.pages)).map((n) => api.views.pages.getTreeItem(n));
      return items.every((i) => String(i.description).endsWith('(watched)') && /\.watched$/.test(i.contextValue ?? '')) ? items : undefined;
    });
    assert.strictEqual(marked.length, 2);
    assert.strictEqual(await vscode.commands.executeCommand<string>('kvmMmu.pages.unwatch', leaves[1]), 'spte:0:6:1');
    const one = (await session.customRequest('kvmMmu/dataBreakpoints', {})) as { breakpoints: Array<{ dataId: string }> };
    assert.deepStrictEqual(one.breakpoints.map((b) => b.dataId), ['spte:0:5:1']);
    assert.ok(!String(api.views.pages.getTreeItem(leaves[1]).description).endsWith('(watched)'));
    assert.strictEqual(await vscode.commands.executeCommand<string>('kvmMmu.pages.breakOnChange', leaves[1]), 'spte:0:6:1');
    // VS Code sends its whole (here empty) data breakpoint set whenever it syncs: the watches stay.
    await session.customRequest('setDataBreakpoints', { breakpoints: [] });
    const listed = (await session.customRequest('kvmMmu/dataBreakpoints', {})) as { breakpoints: Array<{ dataId: string }> };
    assert.deepStrictEqual(listed.breakpoints.map((b) => b.dataId), ids);
    const gfns: string[] = [];
    for (let i = 0; i < 2; i++) {
      const reason = await stopReason(api, session, 'continue');
      assert.strictEqual(reason, 'data breakpoint');
      gfns.push(await topArg(session, 'gfn'));
    }
    assert.deepStrictEqual(gfns, ['0x5', '0x6'], 'the one invalidation zaps both, one stop each');
  });

  it('RMP pages a long list: 200 rows, then "more…" loads the next page', async function () {
    this.timeout(90000);
    const session = await startAndStop(api, MANY_RMP);
    await waitFor('snp context', () => (api.views.vm()?.type === 'snp' ? true : undefined));
    vscode.debug.addBreakpoints([new vscode.SourceBreakpoint(new vscode.Location(vscode.Uri.file(MANY_RMP), new vscode.Position(455, 0)))]);
    try {
      // VS Code sends the breakpoint to the adapter asynchronously: let it arrive before running.
      await sleep(500);
      await stopReason(api, session, 'continue');
      await vscode.commands.executeCommand('kvmMmu.rmp.focus');
      let rows = await api.views.state.rmp.getChildren();
      assert.strictEqual(rows.length, 201);
      assert.strictEqual(rows[200].kind, 'more');
      assert.strictEqual(rows[200].label, 'more… (250 more entries)');
      await vscode.commands.executeCommand('kvmMmu.state.more', 'rmp');
      rows = await api.views.state.rmp.getChildren();
      assert.strictEqual(rows.length, 401);
      assert.strictEqual(rows[400].label, 'more… (50 more entries)');
      await vscode.commands.executeCommand('kvmMmu.state.more', 'rmp');
      rows = await api.views.state.rmp.getChildren();
      assert.strictEqual(rows.length, 450);
      assert.ok(rows.every((r) => r.kind === 'row'));
      assert.strictEqual(new Set(rows.map((r) => r.label)).size, 450, 'no row twice');
      await screenshot('rmp-view-paged-dark');
    } finally {
      vscode.debug.removeBreakpoints(vscode.debug.breakpoints.filter((b) => b instanceof vscode.SourceBreakpoint));
    }
  });

  it('"Why?" explains the current fault and shows it in Where is GFN', async function () {
    this.timeout(60000);
    const session = await startAndStop(api, TWO_LEAVES);
    await stepToLine(api, session, 5);
    const r = await vscode.commands.executeCommand<{ fault: { ret_pf: string; path: string; gfn: string }; sections: Array<{ title: string; rows: Array<{ key: string }> }> }>('kvmMmu.why');
    assert.strictEqual(r?.fault.ret_pf, 'RET_PF_FIXED');
    assert.strictEqual(r?.fault.gfn, '0x5');
    assert.deepStrictEqual(r?.sections[0].rows.map((x) => x.key), ['kvm_mmu_do_page_fault', 'page_fault_can_be_fast', 'kvm_mmu_faultin_pfn', 'kvm_mmu_hugepage_adjust', 'kvm_tdp_mmu_map']);
    await waitFor('where panel', () => api.views.where());
    await screenshot('why-where-panel-dark');
  });

  it('Events says so when there is no session', async () => {
    const tree = api.views.eventsTree;
    await waitFor('no session', () => (vscode.debug.activeDebugSession ? undefined : true));
    await tree.reload();
    assert.deepStrictEqual(await tree.getChildren(), []);
    assert.ok(fs.existsSync(TDP_BASICS));
  });
});
