import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import { activateExtension, screenshot, sleep, waitFor } from './helpers';

interface Rendered {
  value: string;
  bits: number;
  fields: number;
}
interface DecoderLike {
  readonly request: { kind: string; value: string; level: number } | undefined;
  readonly rendered: Rendered | undefined;
  readonly panel: vscode.WebviewPanel;
  toggleBit(bit: number): void;
}
interface WhereLike {
  answer: { gfn: string; gpa: string; sections: Array<{ title: string; rows: Array<{ key: string; value: string }>; note?: string }> } | undefined;
  onDidAnswer: vscode.Event<unknown>;
}
interface Api {
  views: {
    decoder(): DecoderLike | undefined;
    where(): WhereLike | undefined;
    timeline(): { rendered: { rows: number; buckets: number } | undefined } | undefined;
    ptmap(): { rendered: { tables: number; drawn: number } | undefined; map: { arch?: string; tables: Array<{ level: number; kinds: string; owners?: string }> } | undefined } | undefined;
    events: { onStopped: vscode.Event<{ reason: string; session: vscode.DebugSession }> };
  };
}

const TDP_BASICS_TEXT = "# tdp-basics: what the TDP MMU does with the first accesses to guest RAM on an Intel host (EPT, 4 levels).\n#\n# 1 GiB of RAM backed by 2 MiB transparent huge pages: the first read maps a 2M leaf (host mapping\n# level 2M, NX mitigation off), a later write needs no fault at all because a TDP leaf is made\n# writable even on a read fault when the host page is writable. Touching the rest of the slot in\n# 2 MiB steps fills the PD with 512 huge leaves. Turning on dirty logging then splits every 2M leaf\n# to 4K (eager_page_split) and write-protects them (PML off), so the next write is fixed by\n# fast_page_fault and shows up in KVM_GET_DIRTY_LOG.\n#\n# Run: kvm-mmu run examples/tdp-basics.kvmmmu   (try --set eager_page_split=N and watch line 42 fail)\n\nvm arch=x86 vendor=intel tdp=on tdp_levels=4 maxphyaddr=46 vcpus=1\nparam tdp_mmu=Y eager_page_split=Y nx_huge_pages=off pml=N\n\nKVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G hva=0x7f0000000000 backing=2M\nexpect ret 0\n\n# First touch: EPT violation on GPA 0x1000; the root is allocated on the way in.\nguest read gpa=0x1000\nexpect exit none\nexpect roots count=1 invalid=0\nexpect root role.level=4 role.direct=1 role.access=7\nexpect sp gfn=0 level=3 role.direct=1 role.access=7\nexpect spte gpa=0x1000 kind=leaf level=2 ps=1 r=1 w=1 x=1 mmu_writable=1 host_writable=1\nexpect trace kvm_mmu_spte_requested \"gfn 1 pfn * level 2\"\nexpect trace kvm_mmu_set_spte count=1\nexpect stat pf_fixed=1 pages_2m=1 pages_4k=0\n\n# The leaf is already writable: the write does not exit, no tracepoint fires.\nguest write gpa=0x1000\nexpect trace count=0\nexpect stat pf_fixed=1\n\n# The other 511 huge pages of the slot, one access each.\nguest read gpa 0x0..0x40000000 step 2M\nexpect stat pf_fixed=512 pages_2m=512\nexpect spte gpa=0x3fe00000 kind=leaf level=2\n\n# Dirty logging: eager split to 4K, then write-protect (PML is off).\ndirty_log enable slot=0\nexpect ret 0\nexpect stat pages_2m=0 pages_4k=262144\nexpect spte gpa=0x1000 kind=leaf level=1 w=0 mmu_writable=1\nexpect trace kvm_mmu_split_huge_page count=512\n\n# A write to a write-protected but MMU-writable SPTE: fast_page_fault sets W and marks the page dirty.\nguest write gpa=0x1000\nexpect spte gpa=0x1000 kind=leaf level=1 w=1\nexpect trace fast_page_fault count=1\nexpect stat pf_fast=1\nKVM_GET_DIRTY_LOG slot=0\nexpect dirty slot=0 count=1\nexpect dirty slot=0 gfn=0x1 dirty=1\n";

async function setTheme(name: string): Promise<void> {
  await vscode.workspace.getConfiguration('workbench').update('colorTheme', name, vscode.ConfigurationTarget.Global);
  const kind = /Light/.test(name) ? vscode.ColorThemeKind.Light : /High Contrast/.test(name) ? vscode.ColorThemeKind.HighContrast : vscode.ColorThemeKind.Dark;
  await waitFor(`theme ${name}`, () => (vscode.window.activeColorTheme.kind === kind ? true : undefined));
  await sleep(400);
}

describe('Bit Decoder panel', () => {
  let api: Api;
  before(async () => {
    api = await activateExtension<Api>();
    await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar');
    await vscode.commands.executeCommand('workbench.action.closePanel');
  });
  after(async () => {
    await setTheme('Default Dark Modern');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('decodes an EPT SPTE into a 64-bit grid, re-decodes when a bit is toggled, in dark and light themes', async () => {
    // 4K leaf: RWX, WB, A, D, MMU-present, pfn 0x1234, host- and MMU-writable (bits 57, 58).
    const req = await vscode.commands.executeCommand<{ kind: string; value: string }>('kvmMmu.decodeValue', { kind: 'ept-spte', value: '0x600000001234b37', level: 1 });
    assert.deepStrictEqual(req && { kind: req.kind, value: req.value }, { kind: 'ept-spte', value: '0x600000001234b37' });
    const r = await waitFor('the panel draws the grid', () => {
      const d = api.views.decoder();
      return d?.rendered?.value === '0x600000001234b37' ? d.rendered : undefined;
    });
    assert.strictEqual(r.bits, 64, '64 bit cells');
    assert.ok(r.fields >= 15, `EPT SPTE fields drawn (${r.fields})`);
    const d = api.views.decoder()!;
    assert.match(d.panel.title, /EPT SPTE/);
    await screenshot('decoder-ept-spte-dark');

    // Toggling bit 1 (W) in the webview makes it ask for a new decode.
    d.toggleBit(1);
    await waitFor('re-decoded after toggling W', () => (d.rendered?.value === '0x600000001234b35' ? true : undefined));
    assert.strictEqual(d.request?.value, '0x600000001234b35');

    await setTheme('Default Light Modern');
    await vscode.commands.executeCommand('kvmMmu.decodeValue', { kind: 'pferr', value: '0x200000006' });
    await waitFor('PFERR drawn', () => (api.views.decoder()?.rendered?.value === '0x200000006' ? true : undefined));
    await screenshot('decoder-pferr-light');
    await vscode.commands.executeCommand('kvmMmu.decodeValue', { kind: 'role', value: '0x3784' });
    const role = await waitFor('role drawn', () => {
      const x = api.views.decoder()?.rendered;
      return x?.value === '0x3784' ? x : undefined;
    });
    assert.strictEqual(role.bits, 32, 'a page role is a u32: one row of 32 bits');
    await screenshot('decoder-role-light');
    await setTheme('Default High Contrast');
    await vscode.commands.executeCommand('kvmMmu.decodeValue', { kind: 's2-desc', value: '0x800107ff', level: 3 });
    await waitFor('stage-2 drawn', () => (api.views.decoder()?.rendered?.value === '0x800107ff' ? true : undefined));
    await screenshot('decoder-s2-hc');
  });

  it('"Where is GFN X?" answers from the session and follows it at each stop', async function () {
    this.timeout(60000);
    // Our own copy of the TDP walk-through (examples/ changes under other work): the lines below refer to it.
    const program = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-mmu-panels-')), 'tdp-basics.kvmmmu');
    fs.writeFileSync(program, TDP_BASICS_TEXT);
    const name = `where ${Date.now()}`;
    await vscode.commands.executeCommand('workbench.action.closeAllGroups');
    await setTheme('Default Dark Modern');
    const stops: string[] = [];
    const sub = api.views.events.onStopped((e) => {
      if (e.session.name === name) stops.push(e.reason);
    });
    try {
      await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name, program, stopOnEntry: true });
      await waitFor('entry', () => (stops.length ? true : undefined));
      const session = vscode.debug.activeDebugSession!;
      // Run to line 27 (after the first fault) with a line breakpoint.
      const bp = new vscode.SourceBreakpoint(new vscode.Location(vscode.Uri.file(program), new vscode.Position(26, 0)));
      vscode.debug.addBreakpoints([bp]);
      await sleep(300);
      const before = stops.length;
      await session.customRequest('continue', { threadId: 1 });
      await waitFor('breakpoint', () => (stops.length > before ? true : undefined));
      vscode.debug.removeBreakpoints([bp]);
      const a = await vscode.commands.executeCommand<WhereLike['answer']>('kvmMmu.whereIsGfn', 'gpa 0x1000');
      assert.ok(a, 'an answer');
      assert.strictEqual(a.gfn, '0x1');
      const titles = a.sections.map((x) => x.title);
      assert.ok(titles[0].startsWith('memslot (address space 0)'), titles.join(' | '));
      assert.deepStrictEqual(a.sections[0].rows.find((r) => r.key === 'hva')?.value, '0x7f0000001000');
      const sptes = a.sections.find((x) => x.title.startsWith('SPTEs in root'))!;
      assert.deepStrictEqual(sptes.rows.map((r) => r.key), ['level 4 [0]', 'level 3 [0]', 'level 2 [0]'], 'the walk ends at the 2M leaf');
      assert.match(sptes.rows[2].value, /leaf \(huge\)/);
      const why = a.sections.find((x) => x.title === 'why this mapping level?')!;
      assert.deepStrictEqual(why.rows.map((r) => `${r.key}=${r.value.split(' ')[0]}`), [
        'kvm_mmu_max_mapping_level=2M', 'host_pfn_mapping_level=2M', 'kvm_slot_dirty_track_enabled=no', 'is_nx_huge_page_enabled=no', 'leaf now=2M',
      ]);
      await screenshot('where-gfn-dark');

      // After dirty logging splits the huge page the walk reaches level 1.
      const bp2 = new vscode.SourceBreakpoint(new vscode.Location(vscode.Uri.file(program), new vscode.Position(41, 0)));
      vscode.debug.addBreakpoints([bp2]);
      await sleep(300);
      const answered = new Promise<void>((resolve) => {
        const s2 = api.views.where()!.onDidAnswer(() => {
          s2.dispose();
          resolve();
        });
      });
      await session.customRequest('continue', { threadId: 1 });
      await answered;
      vscode.debug.removeBreakpoints([bp2]);
      const b = api.views.where()!.answer!;
      const sptes2 = b.sections.find((x) => x.title.startsWith('SPTEs in root'))!;
      assert.deepStrictEqual(sptes2.rows.map((r) => r.key), ['level 4 [0]', 'level 3 [0]', 'level 2 [0]', 'level 1 [1]']);
      assert.match(b.sections[0].rows.find((r) => r.key === 'flags')?.value ?? '', /KVM_MEM_LOG_DIRTY_PAGES/);
      const why2 = b.sections.find((x) => x.title === 'why this mapping level?')!;
      assert.match(why2.note ?? '', /dirty logging splits huge leaves/, 'the 4K leaf is explained by dirty logging');
      await setTheme('Default Light Modern');
      await screenshot('where-gfn-light');
      await setTheme('Default High Contrast');
      await screenshot('where-gfn-hc');
      await setTheme('Default Light Modern');

      // The page-table map of the same moment: 1 PML4 + 1 PDPT + 1 PD + 512 PTs after the eager split.
      const map = await vscode.commands.executeCommand<{ tables: Array<{ level: number; kinds: string }> }>('kvmMmu.showPageTableMap');
      assert.ok(map, 'a map');
      assert.strictEqual(map.tables.length, 515);
      assert.deepStrictEqual(map.tables.slice(0, 3).map((t) => t.level), [4, 3, 2]);
      assert.strictEqual(map.tables[2].kinds, 'T'.repeat(512), 'every PD entry now points to a PT');
      assert.ok(map.tables.slice(3).every((t) => t.level === 1 && /^L{512}$/.test(t.kinds)), 'every PT is full of 4K leaves');
      const drawn = await waitFor('canvas drawn', () => api.views.ptmap()?.rendered);
      assert.strictEqual(drawn.tables, 515);
      assert.ok(drawn.drawn > 0 && drawn.drawn < 515, `virtualised: ${drawn.drawn} of 515 blocks drawn`);
      await screenshot('ptmap-light');
      await setTheme('Default Dark Modern');
      await sleep(300);
      await screenshot('ptmap-dark');

      // The timeline of the same window: the split at line 40 a wall of SPTE updates.
      await vscode.commands.executeCommand('workbench.action.closeAllGroups');
      const tl = await vscode.commands.executeCommand<{ rows: Array<{ vcpu: number; total: number }>; kinds: Array<{ kind: string; total: number; names: string[] }>; steps: Array<{ line: number }>; counts: number[][][] }>('kvmMmu.showTimeline');
      assert.ok(tl, 'timeline data');
      // The window's newest events are the eager split of KVM_SET_USER_MEMORY_REGION's dirty logging: the
      // ioctl's, not a vCPU's, so they sit in the VM / host row.
      assert.ok(tl.rows.some((r) => r.vcpu === -1), tl.rows.map((r) => r.vcpu).join(','));
      const mapKind = tl.kinds.findIndex((k) => k.names.includes('kvm_tdp_mmu_spte_changed'));
      assert.ok(mapKind >= 0 && tl.kinds[mapKind].kind === 'map', tl.kinds.map((k) => `${k.kind}:${k.names.join('|')}`).join(','));
      assert.ok(tl.steps.some((x) => x.line === 40), 'events of `dirty_log enable slot=0`');
      const inBuckets = tl.counts.reduce((a, row) => a + row[mapKind].reduce((x, y) => x + y, 0), 0);
      assert.strictEqual(inBuckets, tl.kinds[mapKind].total, 'the buckets hold every event of the kind');
      await waitFor('timeline drawn', () => api.views.timeline()?.rendered);
      await screenshot('timeline-dark');
      await setTheme('Default Light Modern');
      await screenshot('timeline-light');
      await setTheme('Default High Contrast');
      await screenshot('timeline-hc');
      await vscode.commands.executeCommand('kvmMmu.showPageTableMap');
      await waitFor('map drawn', () => api.views.ptmap()?.rendered);
      await screenshot('ptmap-hc');
      await setTheme('Default Dark Modern');
    } finally {
      sub.dispose();
      await vscode.debug.stopDebugging();
    }
  });

  it('draws the arm64 stage-2 of a pKVM session with page states and owners', async function () {
    this.timeout(60000);
    // Our own pKVM scenario (examples/ changes under other work): shares, donations, a guest share back.
    const text = [
      'vm arch=arm64 mode=protected type=protected ipa_bits=40 pa_bits=40 host_memory=0x80000000+2G',
      '__pkvm_host_share_hyp pfn=0x80010',
      'host stage2_fault addr=0x80011000 read',
      '__pkvm_host_donate_hyp pfn=0x80012 nr_pages=1',
      '__pkvm_host_donate_guest pfn=0x80020 gfn=0x100',
      '__pkvm_host_donate_guest pfn=0x80021 gfn=0x101',
      '__pkvm_guest_share_host gfn=0x100',
      '__pkvm_guest_unshare_host gfn=0x100',
      '',
    ].join('\n');
    const program = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-mmu-panels-')), 'pkvm.kvmmmu');
    fs.writeFileSync(program, text);
    // Stop while the guest shares gfn 0x100 with the host.
    const line = text.split('\n').findIndex((l) => l.startsWith('__pkvm_guest_unshare_host'));
    assert.ok(line > 0, 'the example has the unshare line');
    const name = `pkvm map ${Date.now()}`;
    await vscode.commands.executeCommand('workbench.action.closeAllGroups');
    await setTheme('Default Dark Modern');
    const stops: string[] = [];
    const sub = api.views.events.onStopped((e) => {
      if (e.session.name === name) stops.push(e.reason);
    });
    const bp = new vscode.SourceBreakpoint(new vscode.Location(vscode.Uri.file(program), new vscode.Position(line, 0)));
    vscode.debug.addBreakpoints([bp]);
    try {
      await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name, program, stopOnEntry: false });
      await waitFor('breakpoint', () => (stops.length ? true : undefined));
      // The stop reveals the scenario in the active group: open the map beside it only then, or the
      // editor covers the map (a hidden webview draws nothing).
      await waitFor('the stop shown in an editor', () => (vscode.window.activeTextEditor?.document.uri.fsPath === program ? true : undefined));
      await sleep(300);
      const map = await vscode.commands.executeCommand<{ arch?: string; entries?: number; ownership?: string; tables: Array<{ level: number; kinds: string; owners?: string }> }>('kvmMmu.showPageTableMap');
      assert.ok(map, 'a map');
      assert.strictEqual(map.arch, 'arm64');
      assert.strictEqual(map.entries, 512);
      assert.strictEqual(map.ownership, 'guest');
      const leaf = map.tables.find((t) => t.level === 3)!;
      assert.strictEqual(leaf.owners?.[0x100], 's', 'gfn 0x100 is PKVM_PAGE_SHARED_OWNED in the guest stage-2');
      assert.strictEqual(leaf.owners?.[0x101], 'o', 'gfn 0x101 is PKVM_PAGE_OWNED');
      try {
        await waitFor('map drawn', () => api.views.ptmap()?.rendered);
      } finally {
        await screenshot('ptmap-arm64-pkvm-dark');
      }
    } finally {
      vscode.debug.removeBreakpoints([bp]);
      sub.dispose();
      await vscode.debug.stopDebugging();
    }
  });

  it('decodes a Variables value passed by the debug/variables/context menu', async () => {
    const req = await vscode.commands.executeCommand<{ kind: string; value: string }>('kvmMmu.decodeValue', {
      container: {},
      variable: { name: 'error_code', value: '0x6 W|U', evaluateName: 'error_code' },
    });
    assert.deepStrictEqual(req && { kind: req.kind, value: req.value }, { kind: 'pferr', value: '0x6' });
  });
});
