import { DebugClient } from '@vscode/debugadapter-testsupport';
import { join, resolve } from 'node:path';
import type { DebugProtocol } from '@vscode/debugprotocol';

export const ROOT = resolve(__dirname, '..', '..');
export const ADAPTER = join(ROOT, 'dist', 'debugAdapter.js');
export const FIXTURES = join(__dirname, 'fixtures');
export const EXAMPLES = join(ROOT, 'examples');

/** A real DAP client talking to the built adapter over stdio. */
export async function startClient(): Promise<DebugClient> {
  const dc = new DebugClient('node', ADAPTER, 'kvm-mmu');
  dc.defaultTimeout = 20000;
  await dc.start();
  return dc;
}

export async function launchStopped(dc: DebugClient, args: Record<string, unknown>, setup?: (dc: DebugClient) => Promise<unknown>): Promise<DebugProtocol.StoppedEvent> {
  const stopped = dc.waitForEvent('stopped') as Promise<DebugProtocol.StoppedEvent>;
  await Promise.all([
    dc.waitForEvent('initialized').then(async () => {
      if (setup) await setup(dc);
      await dc.configurationDoneRequest();
    }),
    dc.launch(args),
  ]);
  return stopped;
}

export async function topFrame(dc: DebugClient): Promise<DebugProtocol.StackFrame> {
  const st = await dc.stackTraceRequest({ threadId: 1 });
  return st.body.stackFrames[0]!;
}

export async function frames(dc: DebugClient): Promise<DebugProtocol.StackFrame[]> {
  return (await dc.stackTraceRequest({ threadId: 1 })).body.stackFrames;
}
