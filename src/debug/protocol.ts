/**
 * Messages between the debug session (extension host or `kvm-mmu dap`) and the engine worker.
 * Requests are answered synchronously by the worker even while it is paused inside an engine function.
 */
import type { DebugProtocol } from '@vscode/debugprotocol';

export interface LaunchOptions {
  program?: string;
  trace?: string;
  stopOnEntry: boolean;
  variants: Record<string, string>;
  parameters: Record<string, string | number | boolean>;
  kernelSource?: string;
  /** See KvmMmuLaunchArguments.checkpointInterval. */
  checkpointInterval?: number;
}

export type WorkerRequest =
  | { cmd: 'setBreakpoints'; file: string; lines: Array<{ line: number; condition?: string; hitCondition?: string; logMessage?: string }> }
  | { cmd: 'setFunctionBreakpoints'; breakpoints: Array<{ name: string; condition?: string; hitCondition?: string }> }
  | { cmd: 'setExceptionBreakpoints'; filters: string[] }
  | { cmd: 'setDataBreakpoints'; breakpoints: Array<{ dataId: string; condition?: string; hitCondition?: string }> }
  | { cmd: 'dataBreakpointInfo'; variablesReference?: number; name: string }
  | { cmd: 'configurationDone' }
  | { cmd: 'continue' }
  | { cmd: 'next'; granularity?: string }
  | { cmd: 'stepIn' }
  | { cmd: 'stepOut' }
  | { cmd: 'stepBack' }
  | { cmd: 'reverseContinue' }
  | { cmd: 'goto'; position: number }
  | { cmd: 'gotoEvent'; index: number }
  | { cmd: 'restart' }
  | { cmd: 'stackTrace'; startFrame?: number; levels?: number }
  | { cmd: 'scopes'; frameId: number }
  | { cmd: 'variables'; variablesReference: number; start?: number; count?: number; hex?: boolean }
  | { cmd: 'evaluate'; expression: string; context?: string; hex?: boolean }
  | { cmd: 'completions'; text: string; column: number }
  | { cmd: 'readMemory'; memoryReference: string; offset?: number; count: number }
  | { cmd: 'writeMemory'; memoryReference: string; offset?: number; data: string }
  | { cmd: 'custom'; name: string; args: Record<string, unknown> }
  | { cmd: 'disconnect' };

export interface WorkerResponse {
  seq: number;
  ok: boolean;
  body?: unknown;
  error?: string;
}

export type WorkerEvent =
  | { event: 'stopped'; reason: string; description?: string; text?: string; hitBreakpointIds?: number[] }
  | { event: 'continued' }
  | { event: 'output'; category: 'stdout' | 'stderr' | 'console' | 'important'; output: string; file?: string; line?: number }
  | { event: 'terminated'; exitCode: number }
  | { event: 'breakpoint'; breakpoint: DebugProtocol.Breakpoint }
  | { event: 'invalidated' }
  | { event: 'progress'; kind: 'start' | 'update' | 'end'; id: string; title?: string; message?: string; percentage?: number; cancellable?: boolean }
  | { event: 'kvmmmu'; name: string; body: unknown };

export type WorkerMessage = ({ type: 'response' } & WorkerResponse) | ({ type: 'event' } & WorkerEvent);

/** Slots of the shared Int32Array between session and worker. */
export const SIG_MESSAGES = 0;
export const SIG_PAUSE = 1;
/**
 * Set by a DAP `cancel` of the capture's load progress. A flag in shared memory, not a message: the worker
 * is inside the synchronous read of the capture and drains no port until it has finished.
 */
export const SIG_CANCEL_LOAD = 2;
export const SIG_SLOTS = 3;
