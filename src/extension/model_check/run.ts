/**
 * Runs a model check in the worker thread and gives back its outcome as a promise. No `vscode` here: the
 * command wraps it in a progress notification.
 */
import { Worker } from 'node:worker_threads';
import type { ModelCheckResult } from '../../trace/model_check';
import type { ModelCheckJob, ModelCheckWorkerMessage } from './protocol';

export type ModelCheckOutcome = { kind: 'result'; result: ModelCheckResult } | { kind: 'cancelled'; bytes: number; total: number };

export interface RunOptions {
  maxMismatches?: number;
  signal?: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
  /** After a cancel, how long the worker gets to stop between chunks before it is terminated. */
  cancelGraceMs?: number;
}

export function runModelCheck(workerPath: string, file: string, opts: RunOptions = {}): Promise<ModelCheckOutcome> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      resolve({ kind: 'cancelled', bytes: 0, total: 0 });
      return;
    }
    const job: ModelCheckJob = { file, maxMismatches: opts.maxMismatches ?? 20 };
    const worker = new Worker(workerPath, { workerData: job, execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')) });
    let settled = false;
    let lastBytes = 0;
    let lastTotal = 0;
    let grace: NodeJS.Timeout | undefined;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      if (grace) clearTimeout(grace);
      f();
    };
    const onAbort = () => {
      worker.postMessage({ type: 'cancel' });
      // A check inside one long operation (no chunk boundary for a while) is stopped the hard way.
      grace = setTimeout(() => {
        settle(() => resolve({ kind: 'cancelled', bytes: lastBytes, total: lastTotal }));
        void worker.terminate();
      }, opts.cancelGraceMs ?? 2000);
    };
    opts.signal?.addEventListener('abort', onAbort);
    worker.on('message', (m: ModelCheckWorkerMessage) => {
      switch (m.type) {
        case 'progress':
          lastBytes = m.bytes;
          lastTotal = m.total;
          opts.onProgress?.(m.bytes, m.total);
          break;
        case 'result':
          settle(() => resolve({ kind: 'result', result: m.result }));
          break;
        case 'cancelled':
          settle(() => resolve({ kind: 'cancelled', bytes: m.bytes, total: m.total }));
          break;
        case 'error':
          settle(() => reject(new Error(m.message)));
          break;
      }
    });
    worker.on('error', (e) => settle(() => reject(new Error(`the model check stopped: ${e.message}`))));
    worker.on('exit', (code) => settle(() => (opts.signal?.aborted ? resolve({ kind: 'cancelled', bytes: lastBytes, total: lastTotal }) : reject(new Error(`the model check exited with code ${code}`)))));
  });
}
