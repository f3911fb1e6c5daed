/**
 * Replaying real kvm/kvmmmu captures.
 *
 * - All at once: `replayFile(path, opts)` / `replayStream(asyncIterableOfChunks, opts)` -> `ReplayResult`
 *   (plain JSON data: counts, unrecognized lines and warnings with line numbers, stacks, rebuilt SPTEs,
 *   roots, shadow pages, faults, fast_page_fault tallies, guest walks, detector findings). Options:
 *   `kernel` (RET_PF_* numbering), `detectors` thresholds, `onProgress(bytes)`, `signal` (AbortSignal).
 * - Parsing only: `new TraceParser({ onEvent, onStack, kernel })`, `push(text)` chunk by chunk, `end()`;
 *   or `parseStream(chunks, parser, { onProgress, signal })`; or `parseTraceText(text)` -> detached
 *   `TraceRecord`s (fields named as in the format files, 64-bit values >= 2^53 as hex strings).
 *   `onEvent` receives one reused `ParsedEvent` (halves in `lo`/`hi` by schema field index; prefix
 *   fields decoded on first read): copy it with `toRecord()` to keep it.
 * - Rebuilding from any event source: `new Rebuilder(warn, detectorOptions)`, `onEvent(ev)`, `summary()`.
 * - SPTE kinds: `spteKind(lo, hi, level)` (the engine's predicates; names as `kvm-mmu decode spte`).
 */
export { ParsedEvent, MAX_FIELDS, type TraceRecord, type DerivedFlags } from './event';
export { TraceParser, type ParserOptions, type StackBlock, type TraceWarning, type UnrecognizedLine, type LineStyles } from './parser';
export { parseStream, parseTraceText, AbortError, type StreamOptions } from './stream';
export { Rebuilder, type RebuildSummary, type RebuiltSpte, type RootInfo, type ShadowPageInfo, type WalkInfo, type Finding, type DetectorName, type DetectorOptions } from './rebuild';
export { replayStream, replayFile, type ReplayOptions, type ReplayResult, type StackedEvent } from './replay';
export { spteKind, spteKindCode, KIND_NAMES, type SpteKind } from './spte_kind';
export { parseKernelVersion, retPfNumbers, DEFAULT_KERNEL, type KernelVersion } from './kernel_version';
export { PAYLOAD_OK, PAYLOAD_TRUNCATED, PAYLOAD_MISMATCH, parsePayload, parseParts } from './payload';
