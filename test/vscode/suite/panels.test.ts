import * as assert from 'assert';
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
interface Api {
  views: { decoder(): DecoderLike | undefined };
}

async function setTheme(name: string): Promise<void> {
  await vscode.workspace.getConfiguration('workbench').update('colorTheme', name, vscode.ConfigurationTarget.Global);
  await sleep(600);
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

  it('decodes a Variables value passed by the debug/variables/context menu', async () => {
    const req = await vscode.commands.executeCommand<{ kind: string; value: string }>('kvmMmu.decodeValue', {
      container: {},
      variable: { name: 'error_code', value: '0x6 W|U', evaluateName: 'error_code' },
    });
    assert.deepStrictEqual(req && { kind: req.kind, value: req.value }, { kind: 'pferr', value: '0x6' });
  });
});
