/**
 * KVM MMU: Model-Check Trace Capture. `kvm-mmu replay FILE --model-check` from VS Code: the check runs in a
 * worker thread (dist/modelCheckWorker.js) behind a cancellable progress notification, and its result is a
 * notification (agreement, or the first mismatch with both sides and a Go to Line action), the full report
 * in an output channel, and one problem per mismatch on the capture.
 */
import * as vscode from 'vscode';
import type { ModelCheckResult } from '../../trace/model_check';
import { CAPTURE_EXTENSIONS, mismatchProblems, percentOf, reportText, summaryLine } from './format';
import { runModelCheck } from './run';

export const MODEL_CHECK_COMMAND = 'kvmMmu.modelCheckTrace';
export const REVEAL_LINE_COMMAND = 'kvmMmu.revealCaptureLine';

/** The command's second argument when called from code (the integration tests, other extensions). */
export interface ModelCheckCommandOptions {
  /** Cancels like the notification's Cancel button. */
  token?: vscode.CancellationToken;
  /** Mismatches to collect before the check stops (default 20; the CLI's default is 1). */
  maxMismatches?: number;
}

function isOptions(v: unknown): v is ModelCheckCommandOptions {
  // From the explorer the second argument is the multi-selection (an array of URIs), not options.
  return !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof vscode.Uri);
}

async function pickCapture(): Promise<vscode.Uri | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  const picked = await vscode.window.showOpenDialog({
    title: 'Model-check a kvm/kvmmmu trace capture',
    openLabel: 'Model-Check',
    canSelectMany: false,
    defaultUri: active?.scheme === 'file' ? active : vscode.workspace.workspaceFolders?.[0]?.uri,
    filters: { 'Trace captures': CAPTURE_EXTENSIONS, 'All files': ['*'] },
  });
  return picked?.[0];
}

export function registerModelCheck(context: vscode.ExtensionContext): void {
  const workerPath = context.asAbsolutePath('dist/modelCheckWorker.js');
  const diagnostics = vscode.languages.createDiagnosticCollection('kvm-mmu-model-check');
  let output: vscode.OutputChannel | undefined;
  const report = () => (output ??= vscode.window.createOutputChannel('KVM MMU Model Check'));
  context.subscriptions.push(diagnostics, { dispose: () => output?.dispose() });

  const present = (target: vscode.Uri, r: ModelCheckResult) => {
    const out = report();
    out.appendLine(reportText(r, target.fsPath));
    out.appendLine('');
    const problems = mismatchProblems(r);
    diagnostics.set(
      target,
      problems.map((p) => {
        // The line's length is not known without reading a capture that may be gigabytes: VS Code clamps the end.
        const d = new vscode.Diagnostic(new vscode.Range(p.line, 0, p.line, Number.MAX_SAFE_INTEGER), p.message, vscode.DiagnosticSeverity.Warning);
        d.source = 'kvm-mmu model check';
        return d;
      }),
    );
    const text = summaryLine(r, target.fsPath);
    const first = r.mismatches[0];
    // Not awaited: the command returns its result while the notification waits for the user.
    if (r.skipped) {
      void vscode.window.showWarningMessage(text, 'Show Report').then((c) => c && out.show(true));
    } else if (r.ok || !first) {
      void vscode.window.showInformationMessage(text, 'Show Report').then((c) => c && out.show(true));
    } else {
      void vscode.window.showWarningMessage(text, 'Go to Line', 'Show Report').then((c) => {
        if (c === 'Go to Line') void vscode.commands.executeCommand(REVEAL_LINE_COMMAND, target, first.line);
        else if (c === 'Show Report') out.show(true);
      });
    }
  };

  context.subscriptions.push(
    vscode.commands.registerCommand(MODEL_CHECK_COMMAND, async (uri?: unknown, second?: unknown): Promise<ModelCheckResult | undefined> => {
      const options: ModelCheckCommandOptions = isOptions(second) ? second : {};
      const target = uri instanceof vscode.Uri ? uri : await pickCapture();
      if (!target) return undefined;
      if (target.scheme !== 'file') {
        void vscode.window.showErrorMessage(`Model check reads local files only, not ${target.scheme}: URIs.`);
        return undefined;
      }
      diagnostics.delete(target);
      const name = target.path.split('/').pop();
      let outcome;
      try {
        outcome = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: `Model-checking ${name}`, cancellable: true },
          async (progress, token) => {
            const abort = new AbortController();
            const subs = [token.onCancellationRequested(() => abort.abort())];
            if (options.token) {
              subs.push(options.token.onCancellationRequested(() => abort.abort()));
              if (options.token.isCancellationRequested) abort.abort();
            }
            let shown = 0;
            try {
              return await runModelCheck(workerPath, target.fsPath, {
                maxMismatches: options.maxMismatches ?? 20,
                signal: abort.signal,
                onProgress: (bytes, total) => {
                  const p = percentOf(bytes, total);
                  if (p <= shown) return;
                  // `increment` is relative: the notification's bar adds it up
                  progress.report({ increment: p - shown, message: `${p}% of ${(total / 1e6).toFixed(0)} MB` });
                  shown = p;
                },
              });
            } finally {
              for (const s of subs) s.dispose();
            }
          },
        );
      } catch (e) {
        void vscode.window.showErrorMessage(`Model check of ${name} failed: ${(e as Error).message}`);
        return undefined;
      }
      if (outcome.kind === 'cancelled') {
        report().appendLine(`${target.fsPath}: model check cancelled after ${(outcome.bytes / 1e6).toFixed(0)} of ${(outcome.total / 1e6).toFixed(0)} MB`);
        return undefined;
      }
      present(target, outcome.result);
      return outcome.result;
    }),
    vscode.commands.registerCommand(REVEAL_LINE_COMMAND, async (uri: vscode.Uri, line: number) => {
      const at = new vscode.Position(Math.max(0, line - 1), 0);
      const editor = await vscode.window.showTextDocument(uri, { selection: new vscode.Range(at, at), preview: true });
      editor.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenter);
      return editor;
    }),
  );
}
