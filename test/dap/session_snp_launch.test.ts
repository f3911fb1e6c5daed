// SEV-SNP launch and page-state changes under the debugger: stops on RMP conversions show the entry
// before and after, with the KVM path that led there (svm/sev.c, virt/kvm/guest_memfd.c).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { EXAMPLES, frames, launchStopped, startClient, topFrame } from './helpers';

let dc: DebugClient | undefined;
afterEach(async () => {
  await dc?.stop();
  dc = undefined;
});

async function argsOf(c: DebugClient): Promise<Record<string, DebugProtocol.Variable>> {
  const scopes = await c.scopesRequest({ frameId: (await topFrame(c)).id });
  const vars = (await c.variablesRequest({ variablesReference: scopes.body.scopes[0]!.variablesReference })).body.variables;
  return Object.fromEntries(vars.map((v) => [v.name, v]));
}

async function fields(c: DebugClient, v: DebugProtocol.Variable | undefined): Promise<Record<string, string>> {
  assert.ok(v && v.variablesReference > 0, 'a structured RMP entry');
  return Object.fromEntries((await c.variablesRequest({ variablesReference: v.variablesReference })).body.variables.map((x) => [x.name, x.value]));
}

const yes = /^(true|1)$/;
const no = /^(false|0)$/;
const PROGRAM = join(EXAMPLES, 'snp-launch.kvmmmu');

describe('DAP: SEV-SNP launch and page-state changes', () => {
  it('stops in sev_gmem_post_populate under LAUNCH_UPDATE: shared before, assigned and validated after the firmware', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: PROGRAM, stopOnEntry: false }, (c) => c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'sev_gmem_post_populate' }] }));
    const names = (await frames(dc)).map((f) => f.name);
    assert.equal(names[0], 'sev_gmem_post_populate');
    for (const n of ['kvm_gmem_populate', 'snp_launch_update']) assert.ok(names.includes(n), names.join(' > '));
    const a = await argsOf(dc);
    const before = await fields(dc, a.old_entry);
    const after = await fields(dc, a.new_entry);
    assert.match(String(before.assigned), no);
    assert.match(String(before.validated), no);
    assert.match(String(after.assigned), yes);
    assert.match(String(after.validated), yes);
    assert.match(String(after.immutable), no);
    assert.equal(Number(a.gfn!.value), 0x10, 'the first page of the image (the PML4) ' + a.gfn!.value);
  });

  it('the RMP conversion filter stops where the firmware validates a LAUNCH_UPDATE page, after rmp_make_private', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: PROGRAM, stopOnEntry: false }, (c) => c.setExceptionBreakpointsRequest({ filters: ['rmp_conversion'] }));
    const seen: string[] = [];
    let names: string[] = [];
    for (let i = 0; i < 20; i++) {
      names = (await frames(dc)).map((f) => f.name);
      seen.push(names[0]!);
      if (names[0] === 'sev_gmem_post_populate') break;
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    }
    assert.equal(names[0], 'sev_gmem_post_populate', seen.join(', '));
    assert.ok(seen.includes('rmp_make_private'), 'KVM made the page private (immutable) before the firmware took it: ' + seen.join(', '));
    const a = await argsOf(dc);
    const before = await fields(dc, a.old_entry);
    const after = await fields(dc, a.new_entry);
    assert.match(String(before.validated), no);
    assert.match(String(after.validated), yes);
  });

  it('the RMP conversion filter reaches the shared conversion of a served page-state change: assigned before, not after', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: PROGRAM, stopOnEntry: false }, (c) => c.setExceptionBreakpointsRequest({ filters: ['rmp_conversion'] }));
    let names: string[] = [];
    for (let i = 0; i < 80; i++) {
      names = (await frames(dc)).map((f) => f.name);
      if (names[0] === 'rmp_make_shared' && names.includes('sev_gmem_invalidate')) break;
      await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
    }
    assert.equal(names[0], 'rmp_make_shared', names.join(' > '));
    assert.ok(names.includes('kvm_gmem_punch_hole'), 'the VMM punched the guest_memfd hole for the shared conversion');
    const a = await argsOf(dc);
    const before = await fields(dc, a.old_entry);
    const after = await fields(dc, a.new_entry);
    assert.match(String(before.assigned), yes);
    assert.match(String(after.assigned), no);
    assert.match(String(after.validated), no);
  });
});
