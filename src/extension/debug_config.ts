import * as vscode from 'vscode';

/**
 * Fills in a launch configuration the way a KVM developer expects: F5 on an open scenario just works,
 * and a configuration names either a scenario (`program`) or a captured trace (`trace`), never both.
 */
export class KvmMmuConfigurationProvider implements vscode.DebugConfigurationProvider {
  resolveDebugConfiguration(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
  ): vscode.ProviderResult<vscode.DebugConfiguration> {
    if (!config.type && !config.request && !config.name) {
      const doc = vscode.window.activeTextEditor?.document;
      if (doc && doc.languageId === 'kvm-mmu-scenario') {
        config.type = 'kvm-mmu';
        config.name = 'Debug KVM MMU scenario';
        config.request = 'launch';
        config.program = '${file}';
        config.stopOnEntry = true;
      }
    }
    if (!config.program && !config.trace) {
      // Not awaited: the message stays up while the launch is cancelled.
      void vscode.window.showErrorMessage('A kvm-mmu launch configuration needs "program" (a .kvmmmu scenario) or "trace" (a captured trace).');
      return undefined;
    }
    if (config.program && config.trace) {
      void vscode.window.showErrorMessage('A kvm-mmu launch configuration takes "program" or "trace", not both.');
      return undefined;
    }
    config.type = 'kvm-mmu';
    config.request = config.request ?? 'launch';
    config.stopOnEntry = config.stopOnEntry ?? true;
    if (config.kernelSource && !vscode.workspace.isTrusted) {
      // A kernel tree path from an untrusted workspace is not followed.
      delete config.kernelSource;
    }
    return config;
  }
}
