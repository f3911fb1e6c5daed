/**
 * A webview bundle from dist/webview in headless Chromium without VS Code, for the panel benchmarks and
 * the screenshot tests: the page gets the body class and `--vscode-*` variables VS Code would inject for a
 * theme, and a stand-in `acquireVsCodeApi` that records what the page posts. playwright-core comes from the
 * real-VS-Code test host's tools folder (.vscode-host), not from our dependencies.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { THEMES, type ThemeName } from './webview_themes';

export interface Page {
  on(event: 'pageerror', cb: (e: Error) => void): void;
  setContent(html: string): Promise<void>;
  setViewportSize(s: { width: number; height: number }): Promise<void>;
  evaluate<R, A = undefined>(fn: string | ((arg: A) => R | Promise<R>), arg?: A): Promise<R>;
  addScriptTag(o: { content: string }): Promise<unknown>;
  addStyleTag(o: { content: string }): Promise<unknown>;
  waitForFunction<A = undefined>(fn: string | ((arg: A) => unknown), arg?: A, o?: { timeout?: number }): Promise<unknown>;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<unknown>;
  click(selector: string): Promise<void>;
  mouse: { move(x: number, y: number): Promise<void>; down(): Promise<void>; up(): Promise<void> };
  close(): Promise<void>;
}
interface Browser {
  newPage(o?: { viewport?: { width: number; height: number }; deviceScaleFactor?: number }): Promise<Page>;
  close(): Promise<void>;
}
interface Playwright {
  chromium: { launch(o: { executablePath: string; headless: boolean; args: string[] }): Promise<Browser> };
}

/** The repository root, from src/bench (tsx) or dist (the bundled CLI). */
function repoRoot(): string {
  for (const up of [join(__dirname, '..', '..'), join(__dirname, '..')]) {
    if (existsSync(join(up, 'package.json')) && existsSync(join(up, 'webview'))) return resolve(up);
  }
  return resolve(__dirname, '..', '..');
}

export const ROOT = repoRoot();
const PW = join(ROOT, '.vscode-host', 'node_modules', 'playwright-core');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** What is missing to run a bundle in Chromium (empty when everything is there). */
export function webviewHostMissing(bundles: string[]): string[] {
  return [PW, CHROMIUM, ...bundles.map((b) => join(ROOT, 'dist', 'webview', `${b}.js`))].filter((p) => !existsSync(p));
}

export class WebviewHost {
  private constructor(private readonly browser: Browser) {}

  static async launch(): Promise<WebviewHost> {
    const { chromium } = createRequire(join(ROOT, 'package.json'))(PW) as Playwright;
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    return new WebviewHost(browser);
  }

  /** A page running dist/webview/<bundle>.js in `theme`, with `window.posted` collecting what it posts. */
  /** `init` runs in the page before the bundle (instrumentation). */
  async open(bundle: string, theme: ThemeName, size = { width: 1000, height: 640 }, state?: unknown, init?: string): Promise<{ page: Page; errors: string[] }> {
    const page = await this.browser.newPage({ viewport: size, deviceScaleFactor: 1 });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const t = THEMES[theme];
    const vars = Object.entries(t.vars).map(([k, v]) => `--vscode-${k}: ${v};`).join(' ');
    await page.setContent(`<!DOCTYPE html><html><head></head><body class="${t.bodyClass}" data-vscode-theme-kind="${t.bodyClass}"><div id="app"></div></body></html>`);
    await page.addStyleTag({ content: `html { ${vars} }` });
    const css = join(ROOT, 'dist', 'webview', `${bundle}.css`);
    if (existsSync(css)) await page.addStyleTag({ content: readFileSync(css, 'utf8') });
    // tsx keeps function names with an `__name` helper; functions handed to evaluate() carry calls to it.
    await page.evaluate('globalThis.__name = (f) => f');
    await page.evaluate((s) => {
      const w = window as unknown as { posted: unknown[]; acquireVsCodeApi: () => unknown; vsState: unknown };
      w.posted = [];
      w.vsState = s;
      w.acquireVsCodeApi = () => ({ postMessage: (m: unknown) => w.posted.push(m), getState: () => w.vsState, setState: (x: unknown) => { w.vsState = x; } });
    }, state ?? null);
    if (init) await page.evaluate(init);
    await page.addScriptTag({ content: readFileSync(join(ROOT, 'dist', 'webview', `${bundle}.js`), 'utf8') });
    return { page, errors };
  }

  close(): Promise<void> {
    return this.browser.close();
  }
}

/** Post a message to the page as the extension would, and wait until the page posts one of type `until`. */
export async function deliver(page: Page, message: unknown, until: string, timeout = 20000): Promise<Record<string, unknown>> {
  const before = await page.evaluate(() => (window as unknown as { posted: unknown[] }).posted.length);
  await page.evaluate((m) => window.postMessage(m, '*'), message);
  await page.waitForFunction(([n, type]) => (window as unknown as { posted: Array<{ type: string }> }).posted.slice(n as number).some((m) => m.type === type), [before, until] as const, { timeout });
  return page.evaluate(([n, type]) => (window as unknown as { posted: Array<Record<string, unknown>> }).posted.slice(n as number).find((m) => m.type === type)!, [before, until] as const);
}
