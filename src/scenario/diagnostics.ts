/**
 * Diagnostics are data, not exceptions: the VS Code provider turns them into Problems while the user
 * types, the CLI prints them as `file:line:col: severity: message` followed by the hint.
 *
 * Positions are 1-based; `endCol` is exclusive (the column just after the last character), so an
 * editor converts with `line - 1`, `col - 1`, `endCol - 1`.
 */

export type Severity = 'error' | 'warning' | 'info';

export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  endCol: number;
  severity: Severity;
  message: string;
  /** What to do about it, in one line; may be empty. */
  hint: string;
  /** Stable machine-readable id (e.g. `unknown-keyword`), for quick fixes and tests. */
  code: string;
}

export function diag(
  file: string,
  line: number,
  col: number,
  endCol: number,
  code: string,
  message: string,
  hint = '',
  severity: Severity = 'error',
): Diagnostic {
  return { file, line, col, endCol: Math.max(endCol, col + 1), severity, message, hint, code };
}

/** `file:line:col: error: message` then, indented, `hint: ...`. */
export function formatDiagnostic(d: Diagnostic): string {
  const head = `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
  return d.hint ? `${head}\n    hint: ${d.hint}` : head;
}

export function hasErrors(ds: readonly Diagnostic[]): boolean {
  return ds.some((d) => d.severity === 'error');
}

/** Optimal-string-alignment distance, case-insensitive; small inputs only. */
export function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const n = a.length;
  const m = b.length;
  if (n === 0) return m;
  if (m === 0) return n;
  let prev2 = new Array<number>(m + 1).fill(0);
  let prev = new Array<number>(m + 1);
  let cur = new Array<number>(m + 1);
  for (let j = 0; j <= m; j++) prev[j] = j;
  for (let i = 1; i <= n; i++) {
    cur[0] = i;
    for (let j = 1; j <= m; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2]! + 1);
      cur[j] = v;
    }
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return prev[m]!;
}

/**
 * The candidate nearest to `word`, if it is near enough to be a plausible typo: distance at most a
 * third of the longer word (at least 1, at most 4), or one is a prefix of the other.
 */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const lw = word.toLowerCase();
  for (const c of candidates) {
    const lc = c.toLowerCase();
    let d = editDistance(lw, lc);
    if (d > 0 && lw.length >= 3 && (lc.startsWith(lw) || lw.startsWith(lc))) d = Math.min(d, 1.5);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.min(4, Math.max(1, Math.floor(Math.max(word.length, best.length) / 3)));
  return bestD <= limit || bestD === 1.5 ? best : undefined;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const n = nearest(word, candidates);
  return n ? `did you mean '${n}'?` : '';
}
