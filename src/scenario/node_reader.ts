/** Reading scenario files from disk (CLI and debug adapter; the editor passes text instead). */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { FileReader } from './load';

export const nodeReader: FileReader = {
  read(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  resolve(from: string, rel: string): string {
    return isAbsolute(rel) ? rel : resolve(dirname(from), rel);
  },
};
