/**
 * The model check's thread (dist/modelCheckWorker.js): the check replays every fault of a capture through
 * the x86 model, seconds per hundred MB, which must not run on the extension host's thread. It answers with
 * one message: `result`, `cancelled` or `error`; `progress` messages come before it.
 * Cancel is a message (this thread returns to its event loop between chunks of the capture's read stream)
 * and reaches modelCheckFile as an AbortSignal.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { statSync } from 'node:fs';
import { modelCheckFile } from '../../trace/model_check';
import { AbortError } from '../../trace/stream';
import type { ModelCheckJob, ModelCheckWorkerMessage } from './protocol';

async function main(): Promise<void> {
  const port = parentPort!;
  const job = workerData as ModelCheckJob;
  const post = (m: ModelCheckWorkerMessage) => port.postMessage(m);
  const abort = new AbortController();
  port.on('message', (m: { type?: string }) => {
    if (m?.type === 'cancel') abort.abort();
  });
  let total = 0;
  let lastBytes = 0;
  let lastAt = 0;
  try {
    total = statSync(job.file).size;
    const result = await modelCheckFile(job.file, {
      maxMismatches: job.maxMismatches,
      signal: abort.signal,
      onProgress: (bytes) => {
        lastBytes = bytes;
        const now = performance.now();
        // a 1 MiB chunk is read every few ms; the notification needs a few updates a second
        if (now - lastAt < 100) return;
        lastAt = now;
        post({ type: 'progress', bytes, total });
      },
    });
    post({ type: 'result', result });
  } catch (e) {
    if (e instanceof AbortError || abort.signal.aborted) post({ type: 'cancelled', bytes: lastBytes, total });
    else post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  } finally {
    port.close();
  }
}

void main();
