import * as assert from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import { activateExtension, waitFor } from './helpers';

const ROOT = process.env.KVM_MMU_ROOT ?? path.resolve(__dirname, '..', '..', '..', '..');
const STACKS = path.join(ROOT, 'test', 'fixtures', 'traces', 'tdp_stacks.txt');

interface Msg {
  type: string;
  event?: string;
  body?: { progressId?: string; cancellable?: boolean; output?: string };
}

describe('Cancelling the load of a large capture in VS Code', () => {
  let dir: string;
  let big: string;

  before(async function () {
    this.timeout(60000);
    await activateExtension();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-mmu-cancel-vscode-'));
    big = path.join(dir, 'big.txt');
    const body = fs.readFileSync(STACKS, 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('\n') + '\n';
    const block = Buffer.from(body.repeat(Math.ceil((4 << 20) / body.length)));
    const fd = fs.openSync(big, 'w');
    try {
      for (let n = 0; n < 200e6; n += block.length) fs.writeSync(fd, block);
    } finally {
      fs.closeSync(fd);
    }
  });

  after(async () => {
    if (vscode.debug.activeDebugSession) await Promise.resolve(vscode.debug.stopDebugging()).catch(() => undefined);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gets a cancellable progress, cancels it by its id, and the session ends with the reason', async function () {
    this.timeout(60000);
    const seen: Msg[] = [];
    const tracker = vscode.debug.registerDebugAdapterTrackerFactory('kvm-mmu', {
      createDebugAdapterTracker: () => ({ onDidSendMessage: (m: Msg) => void seen.push(m) }),
    });
    let ended = false;
    const onEnd = vscode.debug.onDidTerminateDebugSession(() => (ended = true));
    try {
      assert.ok(await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name: 'big capture', trace: big, stopOnEntry: true }));
      const start = await waitFor('a progress start', () => seen.find((m) => m.event === 'progressStart'));
      assert.strictEqual(start.body?.cancellable, true, 'VS Code shows Cancel only on cancellable progress');
      const session = vscode.debug.activeDebugSession!;
      // What the notification's Cancel button sends.
      await session.customRequest('cancel', { progressId: start.body!.progressId });
      await waitFor('the session to end', () => ended || undefined, 30000);
      const out = seen.filter((m) => m.event === 'output').map((m) => m.body?.output ?? '');
      const msg = out.find((o) => /trace load cancelled after \d+ MB/.test(o));
      assert.ok(msg, `cancel message among: ${out.join(' | ')}`);
      assert.ok(Number(/after (\d+) MB/.exec(msg)![1]) < 190, msg);
      assert.ok(seen.some((m) => m.event === 'terminated'));
      assert.ok(!seen.some((m) => m.event === 'stopped'), 'the capture was never replayed');
      assert.ok(!out.some((o) => /engine (stopped|exited)/.test(o)), out.join(' | '));
    } finally {
      onEnd.dispose();
      tracker.dispose();
    }
    // The extension host and the adapter factory are fine: a small capture replays right after.
    const again: Msg[] = [];
    const t2 = vscode.debug.registerDebugAdapterTrackerFactory('kvm-mmu', {
      createDebugAdapterTracker: () => ({ onDidSendMessage: (m: Msg) => void again.push(m) }),
    });
    try {
      assert.ok(await vscode.debug.startDebugging(undefined, { type: 'kvm-mmu', request: 'launch', name: 'small capture', trace: STACKS, stopOnEntry: true }));
      await waitFor('stop on entry', () => again.find((m) => m.event === 'stopped'));
      await vscode.debug.stopDebugging();
    } finally {
      t2.dispose();
    }
  });
});
