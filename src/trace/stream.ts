/**
 * Feeding a parser from a stream of chunks (a Node Readable, a file stream, any async iterable of Buffers
 * or strings) in bounded memory, with progress and cancellation.
 */
import { isAscii } from 'node:buffer';
import { StringDecoder } from 'node:string_decoder';
import type { TraceRecord } from './event';
import { TraceParser, type ParserOptions } from './parser';

export interface StreamOptions {
  /** Called after each chunk with the total bytes read so far. */
  onProgress?: (bytesRead: number) => void;
  /** Aborting stops the parse between chunks; `parseStream` then rejects with an `AbortError`. */
  signal?: AbortSignal;
}

export class AbortError extends Error {
  constructor() {
    super('trace parse cancelled');
    this.name = 'AbortError';
  }
}

/** Push every chunk of `source` into `parser`, then `end()` it. Returns the bytes read. */
export async function parseStream(source: AsyncIterable<Uint8Array | string>, parser: TraceParser, opts: StreamOptions = {}): Promise<number> {
  const decoder = new StringDecoder('utf8');
  let bytes = 0;
  let pendingUtf8 = false;
  const { signal, onProgress } = opts;
  if (signal?.aborted) throw new AbortError();
  for await (const chunk of source) {
    if (signal?.aborted) throw new AbortError();
    if (typeof chunk === 'string') {
      bytes += parser.pushCounting(chunk);
    } else {
      bytes += chunk.length;
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      // pure ASCII (the usual capture) decodes as latin1 without UTF-8 validation; a chunk after a split
      // multi-byte character still goes through the decoder, which holds the partial bytes
      if (!pendingUtf8 && isAscii(buf)) parser.pushAscii(buf.toString('latin1'), buf);
      else {
        const text = decoder.write(buf);
        // the decoder holds back an incomplete trailing sequence; until it is flushed, keep using it
        pendingUtf8 = !isAscii(buf.subarray(Math.max(0, buf.length - 3)));
        parser.push(text);
      }
    }
    if (onProgress) onProgress(bytes);
  }
  const tail = decoder.end();
  if (tail) parser.push(tail);
  parser.end();
  return bytes;
}

/** Parse a whole text (tests, small captures) into detached records with their stacks attached. */
export function parseTraceText(text: string, opts: Omit<ParserOptions, 'onEvent' | 'onStack'> = {}): { records: TraceRecord[]; parser: TraceParser } {
  const records: TraceRecord[] = [];
  const parser = new TraceParser({
    ...opts,
    onEvent: (ev) => records.push(ev.toRecord()),
    onStack: (s) => {
      if (s.eventSeq >= 0) records[s.eventSeq]!.stack = s.frames;
    },
  });
  parser.push(text);
  parser.end();
  return { records, parser };
}
