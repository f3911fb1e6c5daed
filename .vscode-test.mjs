// For machines that can download a desktop VS Code: `npx vscode-test` runs the same integration suite
// with @vscode/test-electron. Here (no such download) scripts/vscode-host/run-tests.sh runs it in code-server.
import { defineConfig } from '@vscode/test-cli';

export default defineConfig({
  files: 'out/test/vscode/suite/*.test.js',
  workspaceFolder: './examples',
  mocha: { ui: 'bdd', timeout: 20000 },
});
