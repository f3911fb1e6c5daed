import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';

export const EXTENSION_ID = 'kvm-mmu-tools.kvm-mmu-debugger';

export async function activateExtension<T = unknown>(): Promise<T> {
  const ext = vscode.extensions.getExtension<T>(EXTENSION_ID);
  if (!ext) throw new Error(`extension ${EXTENSION_ID} is not loaded`);
  return ext.activate();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Ask the browser driver for a screenshot of the whole workbench (saved as a test artifact). */
export async function screenshot(name: string): Promise<string | undefined> {
  const dir = process.env.TEST_ARTIFACTS;
  if (!dir) return undefined;
  const req = path.join(dir, '.requests');
  fs.mkdirSync(req, { recursive: true });
  fs.writeFileSync(path.join(req, `${name}.req`), '');
  await waitFor(`screenshot ${name}`, () => fs.existsSync(path.join(req, `${name}.done`)) || undefined, 15000);
  return path.join(dir, `${name}.png`);
}
