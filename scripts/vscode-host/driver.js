// Opens the VS Code web workbench (code-server) in headless Chromium with the extension under development
// and the integration test suite, and turns the suite's result into this process's exit code.
const { chromium } = require('playwright-core');
const util = require('util');
const path = require('path');
const [port, extDir, testsDir, wsDir, envJson] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  let exitWith;
  const exited = new Promise((r) => { exitWith = r; });
  const env = JSON.parse(envJson || '{}');
  await page.exposeFunction('codeAutomationLog', (type, args) => {
    const s = util.format(...(args || []));
    const noise = /^\s+at |workbench\.js|open-vsx|ENOTFOUND|vsda/m.test(s);
    if (!process.env.QUIET_LOG || (!noise && /passing|failing|pending|✔|✓|VS Code version|^\s*\d+\) |^\s{2,}\S/m.test(s))) console.log(s);
  });
  await page.exposeFunction('codeAutomationExit', (code) => exitWith(code));
  const host = `127.0.0.1:${port}`;
  const payload = [
    ['extensionDevelopmentPath', `vscode-remote://${host}${extDir}`],
    ['extensionTestsPath', `vscode-remote://${host}${testsDir}`],
    ['skipWelcome', 'true'],
    ['skipReleaseNotes', 'true'],
    ['extensionEnvironment', JSON.stringify(env)],
  ];
  await page.goto(`http://${host}/?folder=${encodeURIComponent(wsDir)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
  // The extension host cannot reach the browser, so the suite asks for screenshots by writing
  // <artifacts>/.requests/NAME.req; the driver answers with NAME.png and renames the request to NAME.done.
  const fs = require('fs');
  const reqDir = env.TEST_ARTIFACTS ? path.join(env.TEST_ARTIFACTS, '.requests') : undefined;
  let polling = true;
  (async () => {
    while (polling && reqDir) {
      try {
        for (const f of fs.existsSync(reqDir) ? fs.readdirSync(reqDir) : []) {
          if (!f.endsWith('.req')) continue;
          const name = f.slice(0, -4);
          await page.waitForTimeout(400);
          await page.screenshot({ path: path.join(env.TEST_ARTIFACTS, `${name}.png`) });
          fs.renameSync(path.join(reqDir, f), path.join(reqDir, `${name}.done`));
        }
      } catch (e) { /* the page may be navigating; try again */ }
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  const timeoutMs = +(process.env.TEST_TIMEOUT_MS || 300000);
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), timeoutMs))]);
  polling = false;
  await browser.close();
  process.exit(code === 'timeout' ? 124 : code);
})().catch((e) => { console.error(e); process.exit(2); });
