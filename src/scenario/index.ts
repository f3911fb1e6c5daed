/** The scenario language: parse (pure, for the editor), load (includes), run (step by step). */
export type { Value, ArgNode, CheckNode, Statement, ParseResult, CompareOp } from './ast';
export { type Diagnostic, type Severity, formatDiagnostic, hasErrors } from './diagnostics';
export { STATEMENTS, KEYWORDS, PARAMS, VARIANTS, STATS, type StmtSpec, type ArgSpec } from './grammar';
export { parseScenario, type ParseOptions } from './parser';
export { loadScenario, type Program, type FileReader } from './load';
export { ScenarioRunner, configOf, parseOverrides, type ExpectResult, type StepResult, type RunnerOptions, type RecordedExit } from './runner';
export type { ScenarioEngine, VmConfig, Outcome, Exit, Fields, FieldValue } from './engine_api';
export { createEngine, registerEngine } from './engines';
export { formatTraceLine } from './trace_text';
export { nodeReader } from './node_reader';
export { completionsAt, hoverAt, type Completion, type Hover } from './editor';
