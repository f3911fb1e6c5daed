/**
 * Replay = parse + rebuild + detect, over a stream in bounded memory. The result is plain JSON data (hex
 * strings for 64-bit numbers) for `kvm-mmu replay --json`, the extension's views and the DAP.
 */
import { createReadStream } from 'node:fs';
import { parseStream, type StreamOptions } from './stream';
import { TraceParser, type LineStyles, type TraceWarning, type UnrecognizedLine } from './parser';
import { Rebuilder, type DetectorOptions, type RebuildSummary, type RebuiltSpte } from './rebuild';
import { DEFAULT_KERNEL, type KernelVersion } from './kernel_version';

export interface ReplayOptions extends StreamOptions {
  kernel?: KernelVersion;
  detectors?: DetectorOptions;
  /** Details kept for unrecognized lines, warnings and stacks (all are counted). Default 100. */
  maxDetails?: number;
  /** Rebuilt SPTEs listed (all are counted). Default 100000. */
  maxSptes?: number;
}

export interface StackedEvent {
  /** Line of the event the stack belongs to. */
  line: number;
  event: string;
  /** Line of the `<stack trace>` marker. */
  stackLine: number;
  frames: string[];
}

export interface ReplayResult extends RebuildSummary {
  kernel: string;
  bytes: number;
  lines: number;
  events: number;
  byType: Record<string, number>;
  /** Well-formed events of tracepoints that are not modelled, by name (they are also in `unrecognized`). */
  otherEvents: Record<string, number>;
  styles: LineStyles;
  joinedLines: number;
  unrecognized: { count: number; first: UnrecognizedLine[] };
  stacks: { count: number; first: StackedEvent[] };
  warnings: { count: number; first: TraceWarning[] };
}

/** Parse and rebuild `source`. Rejects only with an AbortError (cancellation) or the source's own error. */
export async function replayStream(source: AsyncIterable<Uint8Array | string>, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const maxDetails = opts.maxDetails ?? 100;
  const stacks: StackedEvent[] = [];
  let warnTo: TraceParser | null = null;
  const rebuilder = new Rebuilder((line, message) => warnTo!.warn(line, message), opts.detectors);
  const parser = new TraceParser({
    kernel: opts.kernel ?? DEFAULT_KERNEL,
    maxDetails,
    sink: rebuilder,
    onStack: (s) => {
      if (stacks.length < maxDetails) stacks.push({ line: s.eventLine, event: s.eventName, stackLine: s.line, frames: s.frames });
    },
  });
  warnTo = parser;
  const streamOpts: StreamOptions = {};
  if (opts.onProgress) streamOpts.onProgress = opts.onProgress;
  if (opts.signal) streamOpts.signal = opts.signal;
  const bytes = await parseStream(source, parser, streamOpts);
  const k = opts.kernel ?? DEFAULT_KERNEL;
  const warnings = [...parser.warnings].sort((a, b) => a.line - b.line);
  // the SPTE list (one object and two hex strings per SPTE) is made when first read: a caller that only
  // wants counts, findings or warnings does not pay for it; the finished rebuilder no longer changes
  const { sptes: _empty, ...rest } = rebuilder.summary(0);
  const done = rebuilder;
  let sptes: RebuiltSpte[] | null = null;
  return {
    kernel: `${k.major}.${k.minor}`,
    bytes,
    lines: parser.lines,
    events: parser.events,
    byType: parser.byType(),
    otherEvents: Object.fromEntries([...parser.otherEvents].sort((a, b) => b[1] - a[1])),
    styles: { ...parser.styles },
    joinedLines: parser.joinedLines,
    unrecognized: { count: parser.unrecognizedCount, first: parser.unrecognized.slice() },
    stacks: { count: parser.stackCount + parser.callchainCount, first: stacks },
    warnings: { count: parser.warningCount, first: warnings },
    get sptes(): RebuiltSpte[] {
      return (sptes ??= done.spteList(opts.maxSptes));
    },
    set sptes(v: RebuiltSpte[]) {
      sptes = v;
    },
    ...rest,
  };
}

/** Replay a file (any size; read in 1 MiB chunks). */
export function replayFile(path: string, opts: ReplayOptions = {}): Promise<ReplayResult> {
  return replayStream(createReadStream(path, { highWaterMark: 1 << 20 }), opts);
}
