import * as vscode from 'vscode';
import { KvmMmuDebugSession } from '../debug/session';

/**
 * Runs the DAP session inside the extension host (no extra process) while the engine itself runs in a
 * worker thread, so a long scenario never blocks the editor.
 */
export class KvmMmuAdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private readonly workerPath: string) {}

  createDebugAdapterDescriptor(): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
    return new vscode.DebugAdapterInlineImplementation(new KvmMmuDebugSession({ workerPath: this.workerPath }));
  }
}
