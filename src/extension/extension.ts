/**
 * Activation: registers the `kvm-mmu` debugger (configuration provider + adapter factory), the language
 * features, and the KVM MMU views. Activation is on demand (debug type, language, views), never `*`.
 */
import * as vscode from 'vscode';
import { KvmMmuConfigurationProvider } from './debug_config';
import { registerSessionView } from './session_view';
import { KvmMmuAdapterFactory } from './debug_adapter';
import { registerScenarioDiagnostics } from './scenario_diagnostics';
import { registerViews, type KvmMmuViews } from './views/register';
import { registerModelCheck } from './model_check/command';

export interface KvmMmuApi {
  /** Exposed for the integration tests and for other extensions that want to drive sessions. */
  readonly configurationProvider: KvmMmuConfigurationProvider;
  /** The KVM MMU views and panels (issue 10), for tests and other extensions. */
  readonly views: KvmMmuViews;
}

export function activate(context: vscode.ExtensionContext): KvmMmuApi {
  const configurationProvider = new KvmMmuConfigurationProvider();
  context.subscriptions.push(
    vscode.debug.registerDebugConfigurationProvider('kvm-mmu', configurationProvider),
    vscode.debug.registerDebugAdapterDescriptorFactory('kvm-mmu', new KvmMmuAdapterFactory(context.asAbsolutePath('dist/engineWorker.js'))),
    vscode.commands.registerCommand('kvmMmu.debugScenario', async (uri?: vscode.Uri) => {
      const target = uri ?? vscode.window.activeTextEditor?.document.uri;
      if (!target) {
        void vscode.window.showInformationMessage('Open a .kvmmmu scenario to debug it.');
        return false;
      }
      return vscode.debug.startDebugging(vscode.workspace.getWorkspaceFolder(target), {
        type: 'kvm-mmu',
        request: 'launch',
        name: 'Debug KVM MMU scenario',
        program: target.fsPath,
        stopOnEntry: true,
      });
    }),
  );
  registerSessionView(context);
  registerScenarioDiagnostics(context);
  registerModelCheck(context);
  const views = registerViews(context);
  return { configurationProvider, views };
}

export function deactivate(): void {
  // Sessions and views are disposed through context.subscriptions.
}
