/** A scenario with its `include` lines expanded, ready to run. */
import type { Statement } from './ast';
import { type Diagnostic, diag, didYouMean } from './diagnostics';
import { parseScenario } from './parser';

export interface Program {
  /** The file given (the root of the include tree). */
  file: string;
  /** Every statement in execution order, includes expanded; each keeps its own file and line. */
  statements: Statement[];
  diagnostics: Diagnostic[];
  /** Files read, root first. */
  files: string[];
}

export interface FileReader {
  /** Text of a file, or undefined if it cannot be read. */
  read(path: string): string | undefined;
  /** Resolve `rel` as written in `from`. */
  resolve(from: string, rel: string): string;
}

const MAX_DEPTH = 16;
/**
 * Files read in all, counting a file each time it is included: without it, a few files that each
 * include the next several times expand exponentially (8 includes x 16 levels = 8^15 copies).
 */
const MAX_INCLUDES = 4096;

/** Parse `file` and the files it includes, in order. Never throws. */
export function loadScenario(file: string, reader: FileReader, text?: string): Program {
  const prog: Program = { file, statements: [], diagnostics: [], files: [] };
  const stack: string[] = [];
  let included = 0;
  let tooMany = false;
  const visit = (path: string, src: string) => {
    stack.push(path);
    prog.files.push(path);
    const r = parseScenario(src, path);
    prog.diagnostics.push(...r.diagnostics);
    for (const st of r.statements) {
      if (st.keyword !== 'include') {
        prog.statements.push(st);
        continue;
      }
      const arg = st.args['path'];
      if (!arg || arg.value.kind !== 'str') continue;
      const target = reader.resolve(path, arg.value.v);
      const at = (code: string, message: string, hint = '') =>
        prog.diagnostics.push(diag(path, st.line, arg.col, arg.endCol, code, message, hint));
      if (stack.includes(target)) {
        at('include-cycle', `"${arg.value.v}" includes itself (${[...stack, target].map(shortName).join(' -> ')})`, 'remove one of the include lines');
        continue;
      }
      if (stack.length >= MAX_DEPTH) {
        at('include-depth', `includes nest deeper than ${MAX_DEPTH} files`);
        continue;
      }
      if (++included > MAX_INCLUDES) {
        // one diagnostic, at the first include over the limit, not one per refused include
        if (!tooMany) at('include-too-many', `more than ${MAX_INCLUDES} files included in all (a file counts each time it is included)`, 'include shared set-up once, from the root file');
        tooMany = true;
        continue;
      }
      const inc = reader.read(target);
      if (inc === undefined) {
        at('include-missing', `cannot read "${arg.value.v}"`, `looked for ${target}`);
        continue;
      }
      visit(target, inc);
    }
    stack.pop();
  };
  const src = text ?? reader.read(file);
  if (src === undefined) {
    prog.diagnostics.push(diag(file, 1, 1, 2, 'file-missing', `cannot read ${file}`));
    return prog;
  }
  visit(file, src);
  // A setup line in an included file after the VM exists is as wrong as in the root file.
  let created: Statement | undefined;
  for (const st of prog.statements) {
    const setup = st.keyword === 'vm' || st.keyword === 'param' || st.keyword === 'variant';
    if (!setup && !created) created = st;
    if (setup && created && created.file !== st.file) {
      prog.diagnostics.push(diag(st.file, st.line, st.col, st.col + st.keyword.length, 'setup-too-late',
        `'${st.keyword}' after the VM was created (${shortName(created.file)}:${created.line} created it)`, 'include set-up files first'));
    }
  }
  checkNames(prog);
  return prog;
}

/** guest_memfd names must come from an earlier KVM_CREATE_GUEST_MEMFD (in any file of the program). */
function checkNames(prog: Program): void {
  const created = new Set<string>();
  for (const st of prog.statements) {
    if (st.keyword === 'KVM_CREATE_GUEST_MEMFD') {
      const v = st.args['fd']?.value;
      if (v?.kind === 'word') created.add(v.v);
      continue;
    }
    const use = st.keyword === 'fallocate' ? st.args['fd'] : st.keyword === 'KVM_SET_USER_MEMORY_REGION2' ? st.args['guest_memfd'] : undefined;
    if (use && use.value.kind === 'word' && !created.has(use.value.v)) {
      const dm = didYouMean(use.value.v, created);
      prog.diagnostics.push(diag(st.file, st.line, use.valueCol, use.endCol, 'unknown-name',
        `no guest_memfd named '${use.value.v}' was created before this line`, dm || `create it first: KVM_CREATE_GUEST_MEMFD fd=${use.value.v} size=...`));
    }
  }
}

function shortName(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}
