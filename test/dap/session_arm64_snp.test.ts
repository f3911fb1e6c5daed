// pKVM's 2021 set_owner and SEV-SNP RMP conversions under the debugger: the stops the issues name.
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

describe('DAP: pKVM ownership and the SNP RMP', () => {
  it('stops in kvm_pgtable_stage2_set_owner and, one level down, shows the walker context and the descriptor before and after', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: join(EXAMPLES, 'pkvm-stage2-ownership.set_owner_2021.kvmmmu'), stopOnEntry: false }, (c) =>
      c.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_pgtable_stage2_set_owner' }] }));
    assert.equal((await topFrame(dc)).name, 'kvm_pgtable_stage2_set_owner');
    const entry = await argsOf(dc);
    assert.ok(entry.owner && entry.addr, 'owner id and address at the entry');
    let names: string[] = [];
    for (let i = 0; i < 30; i++) {
      await Promise.all([dc.stepInRequest({ threadId: 1 }), dc.waitForEvent('stopped')]);
      names = (await frames(dc)).map((f) => f.name);
      if (names[0] === 'stage2_map_walker_try_leaf') break;
    }
    assert.equal(names[0], 'stage2_map_walker_try_leaf');
    assert.ok(names.includes('kvm_pgtable_stage2_set_owner'), names.join(' > '));
    assert.ok(names.includes('kvm_pgtable_walk'), 'the walker is on the stack');
    const a = await argsOf(dc);
    assert.ok(a.ctx && a.ctx.variablesReference > 0, 'the visitor context');
    const ctx = Object.fromEntries((await dc.variablesRequest({ variablesReference: a.ctx.variablesReference })).body.variables.map((v) => [v.name, v.value]));
    for (const k of ['ptep', 'old', 'addr', 'level']) assert.ok(ctx[k] !== undefined, `ctx.${k}`);
    assert.ok(a.old && a.new, 'descriptor before and after');
    // set_owner_2021 writes an invalid PTE (bit 0 clear) carrying the owner id in bits 9:2.
    const after = BigInt(JSON.parse(a.new.value));
    assert.equal(after & 1n, 0n, 'an invalid entry');
    const owner = Number(JSON.parse(entry.owner.value));
    assert.equal(Number((after >> 2n) & 0xffn), owner, 'owner id in bits 9:2');
  });

  it('the RMP conversion filter stops at rmp_make_private with the entry before and after', async () => {
    dc = await startClient();
    await launchStopped(dc, { program: join(EXAMPLES, 'snp-gmem-rmp.kvmmmu'), stopOnEntry: false }, (c) =>
      c.setExceptionBreakpointsRequest({ filters: ['rmp_conversion'] }));
    const f = await frames(dc);
    assert.ok(['rmp_make_private', 'rmp_make_shared', 'psmash', 'rmpupdate'].includes(f[0]!.name), f.map((x) => x.name).join(' > '));
    const a = await argsOf(dc);
    assert.ok(a.pfn, 'the pfn');
    assert.ok(a.old_entry && a.old_entry.variablesReference > 0, 'the RMP entry before');
    assert.ok(a.new_entry && a.new_entry.variablesReference > 0, 'the RMP entry after');
    const before = Object.fromEntries((await dc.variablesRequest({ variablesReference: a.old_entry.variablesReference })).body.variables.map((v) => [v.name, v.value]));
    const after = Object.fromEntries((await dc.variablesRequest({ variablesReference: a.new_entry.variablesReference })).body.variables.map((v) => [v.name, v.value]));
    if (f[0]!.name === 'rmp_make_private') {
      assert.match(String(before.assigned), /^(false|0)$/);
      assert.match(String(after.assigned), /^(true|1)$/);
    }
  });
});
