// `kvm-mmu dap` speaks DAP on stdio: the same session as the adapter bundle, for nvim-dap and Emacs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DebugClient } from '@vscode/debugadapter-testsupport';
import { FIXTURES, launchStopped, topFrame } from './helpers';

describe('kvm-mmu dap', () => {
  it('serves a session on stdin/stdout: stop on entry, step, continue to the end', async () => {
    const dc = new DebugClient('node', join(FIXTURES, 'cli-dap.js'), 'kvm-mmu');
    dc.defaultTimeout = 20000;
    await dc.start();
    try {
      const ev = await launchStopped(dc, { program: join(FIXTURES, 'lines.kvmmmu'), stopOnEntry: true });
      assert.equal(ev.body.reason, 'entry');
      assert.equal((await topFrame(dc)).line, 2);
      await Promise.all([dc.nextRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      assert.equal((await topFrame(dc)).line, 3);
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('terminated')]);
    } finally {
      await dc.stop();
    }
  });
});
