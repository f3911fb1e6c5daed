/**
 * "KVM MMU: Why?": the current fault's chain of kernel decisions (kvmMmu/why), shown in the "Where is
 * GFN X?" panel of the fault's gfn, where it sits next to why this mapping level and the SPTEs it left.
 */
import * as vscode from 'vscode';
import { activeKvmSession, errorText } from './session_events';

export interface WhyAnswer {
  fault: { vcpu: number; gpa: string; gfn: string; ret_pf: string; outcome: string; path: string; summary: string } | null;
  sections: Array<{ title: string; rows: Array<{ key: string; value: string }>; note?: string }>;
}

export function registerWhyCommand(context: vscode.ExtensionContext): void {
  context.subscriptions.push(
    vscode.commands.registerCommand('kvmMmu.why', async (): Promise<WhyAnswer | undefined> => {
      const s = activeKvmSession();
      if (!s) {
        void vscode.window.showInformationMessage('Start a KVM MMU debug session first: "Why?" explains its current fault.');
        return undefined;
      }
      try {
        const r = (await s.customRequest('kvmMmu/why', {})) as WhyAnswer;
        if (!r?.fault) {
          void vscode.window.showInformationMessage(r?.sections?.[0]?.note ?? 'no fault to explain yet');
          return r;
        }
        await vscode.commands.executeCommand('kvmMmu.whereIsGfn', { gfn: r.fault.gfn });
        return r;
      } catch (e) {
        void vscode.window.showErrorMessage(`Why?: ${errorText(e)}`);
        return undefined;
      }
    }),
  );
}
