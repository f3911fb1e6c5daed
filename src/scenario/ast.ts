/** The parsed form of a scenario. Numbers are exact (bigint): the parser is an edge, not a hot path. */
import type { Diagnostic } from './diagnostics';
import type { StmtSpec } from './grammar';

export type Value =
  | { kind: 'num'; v: bigint; text: string }
  /** [start, end): `single` when written as one address. */
  | { kind: 'range'; start: bigint; end: bigint; single: boolean; text: string }
  | { kind: 'word'; v: string; text: string }
  /** Flag words joined by `|` or `,`. */
  | { kind: 'words'; v: string[]; text: string }
  | { kind: 'str'; v: string; text: string }
  | { kind: 'bool'; v: boolean; text: string };

export type CompareOp = '=' | '!=' | '<' | '<=' | '>' | '>=';

export interface ArgNode {
  name: string;
  value: Value;
  /** Columns of the whole `name=value` text (1-based, end exclusive). */
  col: number;
  endCol: number;
  /** Column where the value starts. */
  valueCol: number;
}

export interface CheckNode extends ArgNode {
  op: CompareOp;
}

export interface Statement {
  keyword: string;
  spec: StmtSpec;
  file: string;
  line: number;
  /** Columns of the statement text without its comment. */
  col: number;
  endCol: number;
  args: Record<string, ArgNode>;
  checks: CheckNode[];
  /** The line's text without the comment, trimmed. */
  text: string;
}

export interface ParseResult {
  file: string;
  statements: Statement[];
  diagnostics: Diagnostic[];
}
