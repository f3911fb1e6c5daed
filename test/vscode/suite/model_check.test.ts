import * as assert from 'assert';
import * as cp from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import { activateExtension, waitFor } from './helpers';

const ROOT = process.env.KVM_MMU_ROOT ?? path.resolve(__dirname, '..', '..', '..', '..');
const STACKS = path.join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');

interface Result {
  ok: boolean;
  skipped?: string;
  compared: number;
  faultsReplayed: number;
  mismatches: Array<{ line: number; reason: string; real?: { text: string }; model?: { text: string } }>;
}

function modelCheck(file: string, token?: vscode.CancellationToken): Thenable<Result | undefined> {
  return vscode.commands.executeCommand<Result | undefined>('kvmMmu.modelCheckTrace', vscode.Uri.file(file), { token });
}

function problems(file: string): vscode.Diagnostic[] {
  return vscode.languages.getDiagnostics(vscode.Uri.file(file)).filter((d) => d.source === 'kvm-mmu model check');
}

describe('KVM MMU: Model-Check Trace Capture', () => {
  let dir: string;
  /** A capture the model wrote itself (`kvm-mmu run --trace-out`): the model must agree with it. */
  let written: string;
  /** The hand-written 6.18 capture with one installed SPTE's low bits changed (line 32). */
  let altered: string;

  before(async function () {
    this.timeout(60000);
    await activateExtension();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-mmu-mc-vscode-'));
    written = path.join(dir, 'tdp-basics.txt');
    cp.execFileSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'run', path.join(ROOT, 'examples', 'tdp-basics.kvmmmu'), '--trace-out', written], {
      // the desktop extension host is Electron; code-server's is Node already
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: 'ignore',
    });
    const lines = fs.readFileSync(STACKS, 'utf8').split('\n');
    assert.match(lines[31]!, /kvm_tdp_mmu_spte_changed: as id 0 gfn 1a3 level 1 .* new_spte 86000003f00a3b77$/);
    lines[31] = lines[31]!.replace(/b77$/, 'b75');
    altered = path.join(dir, 'altered.txt');
    fs.writeFileSync(altered, lines.join('\n'));
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is contributed to the palette and the context menus of capture files', async () => {
    const pkg = vscode.extensions.getExtension('kvm-mmu-tools.kvm-mmu-debugger')!.packageJSON;
    const cmd = pkg.contributes.commands.find((c: { command: string }) => c.command === 'kvmMmu.modelCheckTrace');
    assert.strictEqual(`${cmd.category}: ${cmd.title}`, 'KVM MMU: Model-Check Trace Capture');
    for (const menu of ['explorer/context', 'editor/context']) {
      const item = pkg.contributes.menus[menu].find((m: { command: string }) => m.command === 'kvmMmu.modelCheckTrace');
      assert.ok(item && /txt\|dat\|trace/.test(item.when), `${menu}: ${JSON.stringify(item)}`);
    }
    assert.ok((await vscode.commands.getCommands(true)).includes('kvmMmu.modelCheckTrace'));
  });

  it('agrees with a capture the model wrote, off the extension host thread', async function () {
    this.timeout(90000);
    // The extension host keeps running timers while the check runs in its worker.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 50);
    const t0 = Date.now();
    let r: Result | undefined;
    try {
      r = await modelCheck(written);
    } finally {
      clearInterval(timer);
    }
    const ms = Date.now() - t0;
    assert.ok(r, 'a result');
    assert.strictEqual(r.skipped, undefined);
    assert.strictEqual(r.ok, true, JSON.stringify(r.mismatches[0]));
    assert.ok(r.faultsReplayed > 500 && r.compared > 200000, `${r.faultsReplayed} faults, ${r.compared} compared`);
    assert.deepStrictEqual(problems(written), []);
    assert.ok(ticks >= ms / 50 / 4, `the host thread stayed responsive: ${ticks} ticks in ${ms} ms`);
  });

  it('reports a mismatch with both sides, as a problem at its line, and goes to that line', async function () {
    this.timeout(60000);
    const r = await modelCheck(altered);
    assert.ok(r && !r.ok && r.mismatches.length >= 1, JSON.stringify(r));
    const m = r.mismatches[0]!;
    assert.strictEqual(m.line, 32);
    assert.match(m.real!.text, /new_spte 86000003f00a3b75$/);
    assert.match(m.model!.text, /gfn 1a3 level 1 .*b77$/);
    const diags = await waitFor('problems on the capture', () => (problems(altered).length ? problems(altered) : undefined));
    assert.strictEqual(diags[0]!.range.start.line, 31);
    assert.match(diags[0]!.message, /capture: .*b75\nmodel: .*b77/);
    await vscode.commands.executeCommand('kvmMmu.revealCaptureLine', vscode.Uri.file(altered), m.line);
    const ed = vscode.window.activeTextEditor;
    assert.strictEqual(ed?.document.uri.fsPath, altered);
    assert.strictEqual(ed.selection.active.line, 31);
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    // Checking the fixed capture again clears its problems.
    fs.copyFileSync(STACKS, altered);
    const again = await modelCheck(altered);
    assert.strictEqual(again?.ok, true);
    assert.deepStrictEqual(problems(altered), []);
  });

  it('stops when its cancellation token is cancelled', async function () {
    this.timeout(120000);
    // ~200 MB: the first pass alone reads it for seconds, far longer than the cancel below takes.
    const big = path.join(dir, 'big.txt');
    const chunk = fs.readFileSync(written);
    const fd = fs.openSync(big, 'w');
    try {
      for (let n = 0; n < 200e6; n += chunk.length) fs.writeSync(fd, chunk);
    } finally {
      fs.closeSync(fd);
    }
    const cts = new vscode.CancellationTokenSource();
    const pending = modelCheck(big, cts.token);
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    cts.cancel();
    const r = await pending;
    const ms = Date.now() - t0;
    assert.strictEqual(r, undefined, 'a cancelled check returns no result');
    assert.ok(ms < 5000, `stopped ${ms} ms after the cancel`);
    assert.deepStrictEqual(problems(big), []);
    // A token cancelled before the start means no check at all.
    cts.dispose();
    const pre = new vscode.CancellationTokenSource();
    pre.cancel();
    assert.strictEqual(await modelCheck(written, pre.token), undefined);
    fs.rmSync(big, { force: true });
  });
});
