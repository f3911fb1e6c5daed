/**
 * Finds a KVM function in the user's Linux tree (launch attribute `kernelSource`) so that a stack frame
 * can open the real kernel code. The probe registry names the file; the definition is found by name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { probes } from '../engine/probes';

const cache = new Map<string, { path: string; file: string; line: number } | null>();

export function findKernelFunction(root: string, fn: string): { path: string; file: string; line: number } | undefined {
  const key = root + '\0' + fn;
  const hit = cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  let found: { path: string; file: string; line: number } | null = null;
  const info = probes.info(fn);
  if (info?.file) {
    const path = join(root, info.file);
    if (existsSync(path)) {
      const lines = readFileSync(path, 'utf8').split('\n');
      // A definition starts a line with the name followed by '(' and is not a call (ends without ';').
      const re = new RegExp(`(^|[\\s*])${fn.replace(/[()]/g, '\\$&')}\\(`);
      for (let i = 0; i < lines.length; i++) {
        if (re.test(lines[i]) && !/^\s/.test(lines[i]) && !lines[i].trimEnd().endsWith(';')) {
          found = { path, file: info.file, line: i + 1 };
          break;
        }
      }
      if (!found) found = { path, file: info.file, line: 1 };
    }
  }
  cache.set(key, found);
  return found ?? undefined;
}
