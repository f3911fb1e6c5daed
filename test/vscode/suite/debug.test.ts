import * as assert from 'assert';
import * as path from 'path';
import * as vscode from 'vscode';
import { activateExtension, waitFor } from './helpers';

const ROOT = process.env.KVM_MMU_ROOT ?? path.resolve(__dirname, '..', '..', '..', '..');
const LINES = path.join(ROOT, 'test', 'dap', 'fixtures', 'lines.kvmmmu');

describe('Debugging a scenario in VS Code', () => {
  before(async () => {
    await activateExtension();
  });

  afterEach(async () => {
    if (vscode.debug.activeDebugSession) await Promise.resolve(vscode.debug.stopDebugging()).catch(() => undefined);
  });

  it('launches the kvm-mmu adapter, stops on entry and steps to the next statement', async () => {
    const seen: string[] = [];
    const tracker = vscode.debug.registerDebugAdapterTrackerFactory('kvm-mmu', {
      createDebugAdapterTracker: () => ({
        onDidSendMessage: (m: { type: string; event?: string; body?: { reason?: string } }) => {
          if (m.type === 'event' && m.event === 'stopped') seen.push(m.body?.reason ?? '');
        },
      }),
    });
    try {
      const ok = await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name: 'lines', program: LINES, stopOnEntry: true });
      assert.ok(ok, 'startDebugging returned true');
      await waitFor('stop on entry', () => seen.includes('entry') || undefined);
      const session = vscode.debug.activeDebugSession!;
      assert.strictEqual(session.type, 'kvm-mmu');
      const st = await session.customRequest('stackTrace', { threadId: 1 });
      assert.strictEqual(st.stackFrames[0].line, 2);
      await session.customRequest('next', { threadId: 1 });
      await waitFor('stop after step', () => seen.includes('step') || undefined);
      const st2 = await session.customRequest('stackTrace', { threadId: 1 });
      assert.strictEqual(st2.stackFrames[0].line, 3);
      const role = await session.customRequest('evaluate', { expression: 'decode role 0x3784', context: 'repl' });
      assert.match(role.result, /l4 8-byte q0 direct wux nxe ad/);
    } finally {
      tracker.dispose();
    }
  });

  it('shows located Problems for a scenario with a mistake while it is edited', async () => {
    const doc = await vscode.workspace.openTextDocument({ language: 'kvm-mmu-scenario', content: 'vm vcpus=1\nKVM_SET_USER_MEMORY_REGON2 slot=0 gpa=0 size=4K\n' });
    await vscode.window.showTextDocument(doc);
    const diags = await waitFor('diagnostics', () => {
      const d = vscode.languages.getDiagnostics(doc.uri);
      return d.length ? d : undefined;
    });
    assert.strictEqual(diags[0].range.start.line, 1, 'the diagnostic is on line 2');
    assert.strictEqual(diags[0].range.start.character, 0);
    assert.match(diags[0].message, /KVM_SET_USER_MEMORY_REGION2/, 'suggests the nearest keyword');
  });
});
