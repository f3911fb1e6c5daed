/** Messages between the extension host and the model-check worker (see worker.ts). */
import type { ModelCheckResult } from '../../trace/model_check';

export interface ModelCheckJob {
  file: string;
  maxMismatches: number;
}

export type ModelCheckWorkerMessage =
  | { type: 'progress'; bytes: number; total: number }
  | { type: 'result'; result: ModelCheckResult }
  | { type: 'cancelled'; bytes: number; total: number }
  | { type: 'error'; message: string };
