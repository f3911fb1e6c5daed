import * as assert from 'assert';
import * as vscode from 'vscode';
import { activateExtension, EXTENSION_ID } from './helpers';

interface Api {
  configurationProvider: vscode.DebugConfigurationProvider;
}

describe('KVM MMU Debugger extension', () => {
  it('is installed and activates, exporting its API', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, 'extension present');
    const api = await activateExtension<Api>();
    assert.ok(ext.isActive);
    assert.ok(api.configurationProvider, 'API exports the configuration provider');
  });

  it('contributes the kvm-mmu debugger and the scenario language', () => {
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON;
    const dbg = pkg.contributes.debuggers.find((d: { type: string }) => d.type === 'kvm-mmu');
    assert.ok(dbg, 'debugger kvm-mmu contributed');
    const props = Object.keys(dbg.configurationAttributes.launch.properties);
    for (const p of ['program', 'trace', 'stopOnEntry', 'kernelSource', 'variants', 'parameters']) assert.ok(props.includes(p), `launch attribute ${p}`);
    assert.ok(pkg.contributes.breakpoints.some((b: { language: string }) => b.language === 'kvm-mmu-scenario'));
    assert.ok(!pkg.activationEvents.includes('*'), 'never activates on *');
  });

  it('resolves a launch configuration for the kvm-mmu type', async () => {
    const api = await activateExtension<Api>();
    const folder = vscode.workspace.workspaceFolders?.[0];
    const resolved = await api.configurationProvider.resolveDebugConfiguration!(folder,
      { type: 'kvm-mmu', request: 'launch', name: 'x', program: '/tmp/a.kvmmmu' });
    assert.ok(resolved && typeof resolved === 'object');
    const r = resolved as vscode.DebugConfiguration;
    assert.strictEqual(r.type, 'kvm-mmu');
    assert.strictEqual(r.stopOnEntry, true, 'stopOnEntry defaults to true');
    const both = await api.configurationProvider.resolveDebugConfiguration!(folder,
      { type: 'kvm-mmu', request: 'launch', name: 'x', program: '/tmp/a.kvmmmu', trace: '/tmp/t.txt' });
    assert.strictEqual(both, undefined, 'program and trace together are refused');
  });

  it('shows the KVM MMU view container with its Session view', async () => {
    await vscode.commands.executeCommand('workbench.view.extension.kvm-mmu');
    // The view's own focus command exists only when the view is contributed and registered.
    await vscode.commands.executeCommand('kvmMmu.session.focus');
    const cmds = await vscode.commands.getCommands(true);
    assert.ok(cmds.includes('kvmMmu.debugScenario'));
  });
});
