import * as vscode from 'vscode';
import * as path from 'path';
import { loadScenario, type Diagnostic as ScenarioDiagnostic, type FileReader } from '../scenario';

/**
 * Problems for .kvmmmu files while typing: the same parser the engine runs, over the editor's unsaved
 * text (and the included files, from open editors first, then disk).
 */
export function registerScenarioDiagnostics(context: vscode.ExtensionContext): vscode.DiagnosticCollection {
  const collection = vscode.languages.createDiagnosticCollection('kvm-mmu-scenario');
  const timers = new Map<string, ReturnType<typeof setTimeout>>();

  const reader: FileReader = {
    read(p) {
      const open = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === p);
      if (open) return open.getText();
      try {
        return require('fs').readFileSync(p, 'utf8') as string;
      } catch {
        return undefined;
      }
    },
    resolve: (from, rel) => path.resolve(path.dirname(from), rel),
  };

  const refresh = (doc: vscode.TextDocument) => {
    if (doc.languageId !== 'kvm-mmu-scenario') return;
    const file = doc.uri.fsPath;
    const prog = loadScenario(file, reader, doc.getText());
    const byFile = new Map<string, vscode.Diagnostic[]>();
    for (const d of prog.diagnostics) {
      const list = byFile.get(d.file) ?? [];
      list.push(toVscode(d));
      byFile.set(d.file, list);
    }
    collection.set(doc.uri, byFile.get(file) ?? []);
  };

  const schedule = (doc: vscode.TextDocument) => {
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => refresh(doc), 150));
  };

  context.subscriptions.push(
    collection,
    vscode.workspace.onDidOpenTextDocument(refresh),
    vscode.workspace.onDidChangeTextDocument((e) => schedule(e.document)),
    vscode.workspace.onDidCloseTextDocument((d) => collection.delete(d.uri)),
  );
  vscode.workspace.textDocuments.forEach(refresh);
  return collection;
}

function toVscode(d: ScenarioDiagnostic): vscode.Diagnostic {
  const line = Math.max(0, d.line - 1);
  const range = new vscode.Range(line, Math.max(0, d.col - 1), line, Math.max(d.col, (d.endCol ?? d.col + 1) - 1));
  const severity = d.severity === 'error' ? vscode.DiagnosticSeverity.Error : d.severity === 'warning' ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Information;
  const diag = new vscode.Diagnostic(range, d.hint ? `${d.message} (${d.hint})` : d.message, severity);
  diag.source = 'kvm-mmu';
  diag.code = d.code;
  return diag;
}
