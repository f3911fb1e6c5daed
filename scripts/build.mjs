// One build for everything: the extension (CommonJS, `vscode` external), the CLI, the standalone debug
// adapter, the engine worker, the webview bundles and the integration test suite.
// Identifiers are never minified: the debugger derives the KVM call stack from function names.
import * as esbuild from 'esbuild';
import { existsSync, readFileSync, chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: production ? false : 'linked',
  keepNames: true,
  // Whitespace stays: stack frames in the engine open the shipped bundle at readable lines.
  minifyWhitespace: false,
  minifySyntax: production,
  logLevel: 'warning',
  define: { __VERSION__: JSON.stringify(pkg.version) },
};

const nodeEntries = [
  { in: 'src/extension/extension.ts', out: 'dist/extension', external: ['vscode'] },
  { in: 'src/cli/bin.ts', out: 'dist/cli', banner: '#!/usr/bin/env node' },
  { in: 'src/debug/adapter_main.ts', out: 'dist/debugAdapter' },
  { in: 'src/debug/engine_worker.ts', out: 'dist/engineWorker' },
  // KVM MMU: Model-Check Trace Capture runs off the extension host's thread, in this worker.
  { in: 'src/extension/model_check/worker.ts', out: 'dist/modelCheckWorker' },
].filter((e) => existsSync(e.in));

const builds = nodeEntries.map((e) => ({
  ...common,
  entryPoints: [e.in],
  outfile: e.out + '.js',
  external: e.external ?? [],
  banner: e.banner ? { js: e.banner } : undefined,
}));

// Webviews: every webview/<panel>/main.ts becomes dist/webview/<panel>.js for the browser.
if (existsSync('webview')) {
  for (const d of readdirSync('webview', { withFileTypes: true })) {
    const entry = join('webview', d.name, 'main.ts');
    if (d.isDirectory() && existsSync(entry)) {
      builds.push({
        ...common,
        platform: 'browser',
        target: 'es2022',
        format: 'iife',
        entryPoints: [entry],
        outfile: `dist/webview/${d.name}.js`,
        define: {},
      });
    }
  }
}

// Integration tests that run inside a real VS Code extension host.
if (existsSync('test/vscode/suite/index.ts') && !production) {
  const suite = readdirSync('test/vscode/suite').filter((f) => f.endsWith('.ts')).map((f) => join('test/vscode/suite', f));
  builds.push({
    ...common,
    entryPoints: suite,
    outdir: 'out/test/vscode/suite',
    external: ['vscode', 'mocha'],
    sourcemap: 'inline',
  });
}

mkdirSync('dist', { recursive: true });
if (watch) {
  const ctxs = await Promise.all(builds.map((b) => esbuild.context(b)));
  await Promise.all(ctxs.map((c) => c.watch()));
  console.log(`watching ${ctxs.length} bundles`);
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
  if (existsSync('dist/cli.js')) chmodSync('dist/cli.js', 0o755);
  console.log(`built ${builds.length} bundles${production ? ' (production)' : ''}`);
}
