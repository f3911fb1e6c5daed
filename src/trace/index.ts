/**
 * Replaying real kvm/kvmmmu captures: parse (./parser, ./stream), rebuild and detect (./rebuild), all at
 * once (./replay).
 */
export { ParsedEvent, MAX_FIELDS, type TraceRecord, type DerivedFlags } from './event';
export { TraceParser, type ParserOptions, type StackBlock, type TraceWarning, type UnrecognizedLine, type LineStyles } from './parser';
export { parseStream, parseTraceText, AbortError, type StreamOptions } from './stream';
export { Rebuilder, type RebuildSummary, type RebuiltSpte, type RootInfo, type ShadowPageInfo, type WalkInfo, type Finding, type DetectorName, type DetectorOptions } from './rebuild';
export { replayStream, replayFile, type ReplayOptions, type ReplayResult, type StackedEvent } from './replay';
export { spteKind, spteKindCode, KIND_NAMES, type SpteKind } from './spte_kind';
export { parseKernelVersion, retPfNumbers, DEFAULT_KERNEL, type KernelVersion } from './kernel_version';
export { PAYLOAD_OK, PAYLOAD_TRUNCATED, PAYLOAD_MISMATCH, parsePayload, parseParts } from './payload';
