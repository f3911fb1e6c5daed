import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { STATEMENTS } from '../../../src/scenario/grammar';
import { parseScenario } from '../../../src/scenario/parser';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';

const root = new URL('../../../', import.meta.url);
const json = (p: string) => JSON.parse(readFileSync(new URL(p, root), 'utf8'));

interface Rule { name?: string; match?: string; captures?: Record<string, { name: string }> }

describe('editor files', () => {
  const grammar = json('syntaxes/kvm-mmu-scenario.tmLanguage.json') as { scopeName: string; patterns: Rule[] };

  it('the TextMate grammar colours every statement keyword of the language', () => {
    assert.equal(grammar.scopeName, 'source.kvmmmu');
    const stmtRules = grammar.patterns.filter((r) => r.name?.startsWith('meta.statement.'));
    for (const s of STATEMENTS) {
      const line = `  ${s.example}`;
      const hit = stmtRules.map((r) => new RegExp(r.match!).exec(line)).find((m) => m);
      assert.ok(hit, `no grammar rule matches '${s.keyword}'`);
      assert.equal(hit.slice(1).filter(Boolean).join(' '), s.keyword, s.keyword);
    }
  });

  it('the grammar does not colour a misspelt keyword as a statement', () => {
    const stmtRules = grammar.patterns.filter((r) => r.name?.startsWith('meta.statement.'));
    for (const bad of ['gest write gpa=0', 'expect spt gpa=0', 'KVM_SET_USER_MEMORY_REGION slot=0']) {
      assert.ok(!stmtRules.some((r) => new RegExp(r.match!).test(bad)), bad);
    }
  });

  it('language configuration: # line comments', () => {
    const conf = json('language-configuration.json') as { comments: { lineComment: string }; wordPattern: string };
    assert.equal(conf.comments.lineComment, '#');
    const words = 'KVM_SET_USER_MEMORY_REGION2 role.direct=1 0x1000 2M -EINVAL'.match(new RegExp(conf.wordPattern, 'g'));
    assert.deepEqual(words, ['KVM_SET_USER_MEMORY_REGION2', 'role.direct', '1', '0x1000', '2M', '-EINVAL']);
  });

  it('every snippet, expanded with its defaults, is a valid scenario', () => {
    const snippets = json('snippets/kvm-mmu-scenario.json') as Record<string, { prefix: string; body: string[] }>;
    assert.ok(Object.keys(snippets).length >= 10);
    for (const [name, s] of Object.entries(snippets)) {
      const text = s.body
        .join('\n')
        .replace(/\$\{\d+\|([^,|]*)[^}]*\}/g, '$1')
        .replace(/\$\{\d+:([^}]*)\}/g, '$1')
        .replace(/\$\d+/g, '');
      const r = parseScenario(text, name);
      assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), [], `${name}:\n${text}`);
      assert.ok(r.statements.length >= 1, name);
    }
  });
});
