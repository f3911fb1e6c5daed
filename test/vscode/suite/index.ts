// The integration suite's entry, with @vscode/test-electron's contract: `run()` returns a promise that
// rejects when a test fails. It runs inside a real VS Code extension host.
import * as path from 'path';
import * as fs from 'fs';
import Mocha from 'mocha';
import * as vscode from 'vscode';

export function run(): Promise<void> {
  // One retry: a loaded 2-core machine can delay the workbench's view refreshes past a check.
  const mocha = new Mocha({ ui: 'bdd', timeout: 20000, color: false, retries: 2 });
  const passed: string[] = [];
  const failed: Array<{ title: string; error: string }> = [];
  for (const f of fs.readdirSync(__dirname).sort()) {
    if (f.endsWith('.test.js')) mocha.addFile(path.join(__dirname, f));
  }
  console.log(`VS Code version ${vscode.version} (${vscode.env.appName}, ${vscode.env.appHost}), extension host Node ${process.version}`);
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const out = process.env.TEST_RESULTS_FILE;
      if (out) fs.writeFileSync(out, JSON.stringify({ passes: passed.length, failures, passed, failed, vscode: vscode.version }));
      if (failures) reject(new Error(`${failures} tests failed`));
      else resolve();
    });
    runner.on('pass', (t) => passed.push(t.fullTitle()));
    runner.on('fail', (t, e) => failed.push({ title: t.fullTitle(), error: String(e && (e as Error).message) }));
  });
}
