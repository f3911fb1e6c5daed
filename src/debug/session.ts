/**
 * The Debug Adapter Protocol session. It translates DAP into requests to the engine worker and the
 * worker's events back into DAP. It knows nothing of VS Code's API: the extension runs it inline, and
 * `kvm-mmu dap` runs it over stdio for other editors.
 */
import {
  Breakpoint,
  ContinuedEvent,
  InitializedEvent,
  InvalidatedEvent,
  LoggingDebugSession,
  OutputEvent,
  ProgressEndEvent,
  ProgressStartEvent,
  ProgressUpdateEvent,
  Source,
  StoppedEvent,
  TerminatedEvent,
  Thread,
  Event,
} from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { resolve } from 'node:path';
import { EXCEPTION_FILTERS } from './exception_filters';
import type { LaunchOptions, WorkerEvent, WorkerRequest } from './protocol';
import { RuntimeClient } from './runtime_client';

export const THREAD_ID = 1;

export interface KvmMmuLaunchArguments extends DebugProtocol.LaunchRequestArguments {
  program?: string;
  trace?: string;
  stopOnEntry?: boolean;
  kernelSource?: string;
  variants?: Record<string, string>;
  parameters?: Record<string, string | number | boolean>;
  cwd?: string;
  /**
   * Milliseconds of execution between checkpoints for reverse execution (0: at every opportunity);
   * default: adaptive, a small multiple of what a snapshot costs.
   */
  checkpointInterval?: number;
}

export interface SessionOptions {
  /** Path of the bundled engine worker (defaults to dist/engineWorker.js beside the adapter). */
  workerPath?: string;
}

export class KvmMmuDebugSession extends LoggingDebugSession {
  private runtime: RuntimeClient | undefined;
  private terminatedSent = false;
  private hexFormat = false;
  /** Progress the worker reports as cancellable and has not ended yet. */
  private readonly cancellableProgress = new Set<string>();

  constructor(private readonly sessionOptions: SessionOptions = {}) {
    super();
    this.setDebuggerLinesStartAt1(true);
    this.setDebuggerColumnsStartAt1(true);
  }

  protected override initializeRequest(response: DebugProtocol.InitializeResponse): void {
    response.body = {
      supportsConfigurationDoneRequest: true,
      supportsFunctionBreakpoints: true,
      supportsConditionalBreakpoints: true,
      supportsHitConditionalBreakpoints: true,
      supportsLogPoints: true,
      supportsStepBack: true,
      supportsRestartRequest: true,
      supportsDataBreakpoints: true,
      supportsEvaluateForHovers: true,
      supportsCompletionsRequest: true,
      completionTriggerCharacters: [' ', '.'],
      supportsReadMemoryRequest: true,
      supportsValueFormattingOptions: true,
      supportsTerminateRequest: true,
      // For the capture's load progress (a cancellable ProgressStartEvent); requests finish too fast to cancel.
      supportsCancelRequest: true,
      supportsExceptionOptions: false,
      exceptionBreakpointFilters: EXCEPTION_FILTERS.map(({ filter, label, description, default: d }) => ({ filter, label, description, default: d })),
    };
    this.sendResponse(response);
  }

  protected override async launchRequest(response: DebugProtocol.LaunchResponse, args: KvmMmuLaunchArguments): Promise<void> {
    // This handler is async: a throw here would be an unhandled rejection that ends the adapter process,
    // so malformed arguments (null, a number for a path) are refused up front.
    if (this.runtime) {
      this.sendErrorResponse(response, 2007, 'a program is already running in this session');
      return;
    }
    const bad = launchArgumentsProblem(args);
    if (bad) {
      this.sendErrorResponse(response, 2001, bad);
      return;
    }
    const cwd = args.cwd ?? process.cwd();
    const options: LaunchOptions = {
      program: args.program ? resolve(cwd, args.program) : undefined,
      trace: args.trace ? resolve(cwd, args.trace) : undefined,
      stopOnEntry: args.stopOnEntry ?? true,
      variants: args.variants ?? {},
      parameters: args.parameters ?? {},
      kernelSource: args.kernelSource,
      checkpointInterval: args.checkpointInterval,
    };
    if (!options.program && !options.trace) {
      this.sendErrorResponse(response, 2001, 'launch needs "program" (a .kvmmmu scenario) or "trace" (a captured trace)');
      return;
    }
    try {
      this.runtime = new RuntimeClient(options, this.sessionOptions.workerPath);
    } catch (e) {
      this.sendErrorResponse(response, 2002, `cannot start the engine: ${(e as Error).message}`);
      return;
    }
    this.runtime.on('event', (e: WorkerEvent) => this.onWorkerEvent(e));
    this.sendResponse(response);
    this.sendEvent(new InitializedEvent());
  }

  private onWorkerEvent(e: WorkerEvent): void {
    switch (e.event) {
      case 'stopped': {
        const ev = new StoppedEvent(e.reason, THREAD_ID) as DebugProtocol.StoppedEvent;
        ev.body.description = e.description;
        ev.body.text = e.text;
        ev.body.allThreadsStopped = true;
        if (e.hitBreakpointIds) ev.body.hitBreakpointIds = e.hitBreakpointIds;
        this.sendEvent(ev);
        break;
      }
      case 'continued':
        this.sendEvent(new ContinuedEvent(THREAD_ID, true));
        break;
      case 'output': {
        const ev = new OutputEvent(e.output, e.category) as DebugProtocol.OutputEvent;
        if (e.file) {
          ev.body.source = new Source(e.file.split('/').pop() ?? e.file, e.file);
          ev.body.line = e.line;
        }
        this.sendEvent(ev);
        break;
      }
      case 'terminated':
        if (!this.terminatedSent) {
          this.terminatedSent = true;
          this.sendEvent(new TerminatedEvent());
        }
        break;
      case 'invalidated':
        this.sendEvent(new InvalidatedEvent(['variables']));
        break;
      case 'breakpoint':
        this.sendEvent(new Event('breakpoint', { reason: 'changed', breakpoint: e.breakpoint }));
        break;
      case 'progress':
        if (e.kind === 'start') {
          const ev = new ProgressStartEvent(e.id, e.title ?? 'KVM MMU', e.message) as DebugProtocol.ProgressStartEvent;
          if (e.cancellable) {
            ev.body.cancellable = true;
            this.cancellableProgress.add(e.id);
          }
          if (e.percentage !== undefined) ev.body.percentage = e.percentage;
          this.sendEvent(ev);
        } else if (e.kind === 'update') {
          const ev = new ProgressUpdateEvent(e.id, e.message) as DebugProtocol.ProgressUpdateEvent;
          if (e.percentage !== undefined) ev.body.percentage = e.percentage;
          this.sendEvent(ev);
        } else {
          this.cancellableProgress.delete(e.id);
          this.sendEvent(new ProgressEndEvent(e.id, e.message));
        }
        break;
      case 'kvmmmu':
        this.sendEvent(new Event(e.name, e.body));
        break;
    }
  }

  /** Forward a request to the worker; errors become DAP error responses, never exceptions. */
  private async forward<T>(response: DebugProtocol.Response, req: WorkerRequest, fill?: (body: T) => void): Promise<void> {
    if (!this.runtime) {
      this.sendErrorResponse(response, 2003, 'no program is running (launch first)');
      return;
    }
    try {
      const body = await this.runtime.request<T>(req);
      if (fill) fill(body);
      else response.body = body as DebugProtocol.Response['body'];
      this.sendResponse(response);
    } catch (e) {
      this.sendErrorResponse(response, 2004, (e as Error).message);
    }
  }

  protected override setBreakPointsRequest(response: DebugProtocol.SetBreakpointsResponse, args: DebugProtocol.SetBreakpointsArguments): Promise<void> {
    const file = args.source.path ?? '';
    const lines = (args.breakpoints ?? (args.lines ?? []).map((line) => ({ line }))).map((b) => ({
      line: this.convertClientLineToDebugger(b.line),
      condition: (b as DebugProtocol.SourceBreakpoint).condition,
      hitCondition: (b as DebugProtocol.SourceBreakpoint).hitCondition,
      logMessage: (b as DebugProtocol.SourceBreakpoint).logMessage,
    }));
    return this.forward<{ breakpoints: DebugProtocol.Breakpoint[] }>(response, { cmd: 'setBreakpoints', file: resolve(file), lines }, (body) => {
      response.body = {
        breakpoints: body.breakpoints.map((b) => {
          const bp = new Breakpoint(b.verified, b.line !== undefined ? this.convertDebuggerLineToClient(b.line) : undefined) as DebugProtocol.Breakpoint;
          bp.id = b.id;
          bp.message = b.message;
          if (b.endLine !== undefined) bp.endLine = this.convertDebuggerLineToClient(b.endLine);
          bp.source = args.source;
          return bp;
        }),
      };
    });
  }

  protected override setFunctionBreakPointsRequest(response: DebugProtocol.SetFunctionBreakpointsResponse, args: DebugProtocol.SetFunctionBreakpointsArguments): Promise<void> {
    return this.forward(response, { cmd: 'setFunctionBreakpoints', breakpoints: args.breakpoints.map((b) => ({ name: b.name.trim(), condition: b.condition, hitCondition: b.hitCondition })) });
  }

  protected override setExceptionBreakPointsRequest(response: DebugProtocol.SetExceptionBreakpointsResponse, args: DebugProtocol.SetExceptionBreakpointsArguments): Promise<void> {
    return this.forward(response, { cmd: 'setExceptionBreakpoints', filters: args.filters ?? [] });
  }

  protected override dataBreakpointInfoRequest(response: DebugProtocol.DataBreakpointInfoResponse, args: DebugProtocol.DataBreakpointInfoArguments): Promise<void> {
    return this.forward(response, { cmd: 'dataBreakpointInfo', name: args.name, variablesReference: args.variablesReference });
  }

  protected override setDataBreakpointsRequest(response: DebugProtocol.SetDataBreakpointsResponse, args: DebugProtocol.SetDataBreakpointsArguments): Promise<void> {
    return this.forward(response, { cmd: 'setDataBreakpoints', breakpoints: args.breakpoints.map((b) => ({ dataId: b.dataId, condition: b.condition, hitCondition: b.hitCondition })) });
  }

  protected override configurationDoneRequest(response: DebugProtocol.ConfigurationDoneResponse): Promise<void> {
    return this.forward(response, { cmd: 'configurationDone' });
  }

  protected override threadsRequest(response: DebugProtocol.ThreadsResponse): void {
    response.body = { threads: [new Thread(THREAD_ID, 'KVM MMU')] };
    this.sendResponse(response);
  }

  protected override continueRequest(response: DebugProtocol.ContinueResponse): Promise<void> {
    return this.forward(response, { cmd: 'continue' }, () => (response.body = { allThreadsContinued: true }));
  }

  protected override nextRequest(response: DebugProtocol.NextResponse, args: DebugProtocol.NextArguments): Promise<void> {
    return this.forward(response, { cmd: 'next', granularity: args.granularity }, () => undefined);
  }

  protected override stepInRequest(response: DebugProtocol.StepInResponse): Promise<void> {
    return this.forward(response, { cmd: 'stepIn' }, () => undefined);
  }

  protected override stepOutRequest(response: DebugProtocol.StepOutResponse): Promise<void> {
    return this.forward(response, { cmd: 'stepOut' }, () => undefined);
  }

  protected override stepBackRequest(response: DebugProtocol.StepBackResponse): Promise<void> {
    return this.forward(response, { cmd: 'stepBack' }, () => undefined);
  }

  protected override reverseContinueRequest(response: DebugProtocol.ReverseContinueResponse): Promise<void> {
    return this.forward(response, { cmd: 'reverseContinue' }, () => undefined);
  }

  protected override restartRequest(response: DebugProtocol.RestartResponse): Promise<void> {
    this.terminatedSent = false;
    return this.forward(response, { cmd: 'restart' }, () => undefined);
  }

  protected override pauseRequest(response: DebugProtocol.PauseResponse): void {
    this.runtime?.pause();
    this.sendResponse(response);
  }

  protected override stackTraceRequest(response: DebugProtocol.StackTraceResponse, args: DebugProtocol.StackTraceArguments): Promise<void> {
    return this.forward<DebugProtocol.StackTraceResponse['body']>(response, { cmd: 'stackTrace', startFrame: args.startFrame, levels: args.levels }, (body) => {
      const start = args.startFrame ?? 0;
      const frames = body.stackFrames.slice(start, args.levels ? start + args.levels : undefined);
      response.body = { stackFrames: frames, totalFrames: body.totalFrames };
    });
  }

  protected override scopesRequest(response: DebugProtocol.ScopesResponse, args: DebugProtocol.ScopesArguments): Promise<void> {
    return this.forward(response, { cmd: 'scopes', frameId: args.frameId });
  }

  protected override variablesRequest(response: DebugProtocol.VariablesResponse, args: DebugProtocol.VariablesArguments): Promise<void> {
    return this.forward(response, { cmd: 'variables', variablesReference: args.variablesReference, start: args.start, count: args.count, hex: args.format?.hex ?? this.hexFormat });
  }

  protected override evaluateRequest(response: DebugProtocol.EvaluateResponse, args: DebugProtocol.EvaluateArguments): Promise<void> {
    return this.forward(response, { cmd: 'evaluate', expression: args.expression, context: args.context, hex: args.format?.hex });
  }

  protected override completionsRequest(response: DebugProtocol.CompletionsResponse, args: DebugProtocol.CompletionsArguments): Promise<void> {
    return this.forward(response, { cmd: 'completions', text: args.text, column: args.column });
  }

  protected override readMemoryRequest(response: DebugProtocol.ReadMemoryResponse, args: DebugProtocol.ReadMemoryArguments): Promise<void> {
    return this.forward(response, { cmd: 'readMemory', memoryReference: args.memoryReference, offset: args.offset, count: args.count });
  }

  protected override customRequest(command: string, response: DebugProtocol.Response, args: Record<string, unknown>): void {
    if (command === 'kvmMmu/setHex') this.hexFormat = !!args?.hex;
    if (command === 'kvmMmu/gotoEvent') {
      void this.forward(response, { cmd: 'gotoEvent', index: Number(args?.index) }, () => undefined);
      return;
    }
    if (command === 'kvmMmu/goto') {
      void this.forward(response, { cmd: 'goto', position: Number(args?.position ?? 0) }, () => undefined);
      return;
    }
    if (command.startsWith('kvmMmu/')) {
      void this.forward(response, { cmd: 'custom', name: command, args: args ?? {} });
      return;
    }
    this.sendErrorResponse(response, 2005, `unknown request '${command}'`);
  }

  /**
   * Cancels the capture's load (its progress id); the worker then ends the session. A request id, or a
   * progress that already ended, is acknowledged and changes nothing: cancel is a hint in DAP.
   */
  protected override cancelRequest(response: DebugProtocol.CancelResponse, args: DebugProtocol.CancelArguments): void {
    if (args?.progressId !== undefined && this.cancellableProgress.has(args.progressId)) this.runtime?.cancelLoad();
    this.sendResponse(response);
  }

  protected override terminateRequest(response: DebugProtocol.TerminateResponse): Promise<void> {
    return this.endSession(response);
  }

  protected override disconnectRequest(response: DebugProtocol.DisconnectResponse): Promise<void> {
    return this.endSession(response);
  }

  private async endSession(response: DebugProtocol.Response): Promise<void> {
    const rt = this.runtime;
    this.runtime = undefined;
    if (rt) await rt.terminate();
    if (!this.terminatedSent) {
      this.terminatedSent = true;
      this.sendEvent(new TerminatedEvent());
    }
    this.sendResponse(response);
  }

  /** Requests the base class does not know reach here; keep the session alive whatever arrives. */
  protected override dispatchRequest(request: DebugProtocol.Request): void {
    try {
      super.dispatchRequest(request);
    } catch (e) {
      const response: DebugProtocol.Response = { type: 'response', seq: 0, request_seq: request.seq, command: request.command, success: false };
      this.sendErrorResponse(response, 2006, `internal error in '${request.command}': ${(e as Error).message}`);
    }
  }
}

/** Why launch arguments cannot be used (wrong JSON types), or undefined when they can. */
function launchArgumentsProblem(args: unknown): string | undefined {
  if (!args || typeof args !== 'object' || Array.isArray(args)) return 'launch needs an object of arguments with "program" or "trace"';
  const a = args as Record<string, unknown>;
  for (const k of ['program', 'trace', 'cwd', 'kernelSource']) {
    if (a[k] !== undefined && a[k] !== null && typeof a[k] !== 'string') return `launch argument "${k}" must be a string`;
  }
  if (a['stopOnEntry'] !== undefined && typeof a['stopOnEntry'] !== 'boolean') return 'launch argument "stopOnEntry" must be true or false';
  const ci = a['checkpointInterval'];
  if (ci !== undefined && ci !== null && (typeof ci !== 'number' || !Number.isFinite(ci) || ci < 0)) return 'launch argument "checkpointInterval" must be a number of milliseconds >= 0';
  for (const k of ['variants', 'parameters']) {
    const v = a[k];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Array.isArray(v))) return `launch argument "${k}" must be an object of NAME: VALUE`;
  }
  return undefined;
}
