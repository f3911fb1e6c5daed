// `npm test`: build, type-check, unit and engine tests, DAP tests with a real DAP client, the VSIX
// contents check, and the integration suite inside a real VS Code. Ends with one line
// `total: N passed, N failed` summing every runner.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const steps = [
  ['build', 'node', ['scripts/build.mjs']],
  ['typecheck', 'npx', ['--no-install', 'tsc', '-p', '.']],
  // The real-VS-Code host (code-server, Chromium, playwright-core) first: webview unit tests use its browser.
  ['vscode-host', 'bash', ['scripts/vscode-host/setup.sh']],
  ['unit', 'node', ['scripts/run-unit-tests.mjs', 'test/unit']],
  ['dap', 'node', ['scripts/run-unit-tests.mjs', 'test/dap'], () => existsSync('test/dap')],
  ['vsix', 'node', ['scripts/run-unit-tests.mjs', 'test/package']],
  ['vscode', 'bash', ['scripts/vscode-host/run-tests.sh']],
];

let passed = 0;
let failed = 0;
const failedSteps = [];

function runStep(name, cmd, args) {
  return new Promise((resolve) => {
    console.log(`\n=== ${name}: ${cmd} ${args.join(' ')}`);
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    p.stdout.on('data', (d) => {
      process.stdout.write(d);
      tail = (tail + d.toString()).slice(-4000);
    });
    p.on('close', (code) => {
      const pass = /(?:ℹ|#) pass (\d+)/.exec(tail) ?? /vscode: (\d+) passed/.exec(tail);
      const fail = /(?:ℹ|#) fail (\d+)/.exec(tail) ?? /vscode: \d+ passed, (\d+) failed/.exec(tail);
      if (pass) passed += +pass[1];
      if (fail) failed += +fail[1];
      resolve(code ?? 1);
    });
  });
}

for (const [name, cmd, args, when] of steps) {
  if (when && !when()) continue;
  const code = await runStep(name, cmd, args);
  if (code !== 0) {
    failedSteps.push(name);
    if (name === 'build' || name === 'typecheck') break;
  }
}
console.log(failedSteps.length ? `\nfailed steps: ${failedSteps.join(', ')}` : '\nall steps passed');
console.log(`total: ${passed} passed, ${failed} failed`);
process.exit(failedSteps.length ? 1 : 0);
