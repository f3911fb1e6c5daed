import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { STATEMENTS } from '../../../src/scenario/grammar';
import { parseScenario } from '../../../src/scenario/parser';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';

const root = new URL('../../../', import.meta.url);

describe('docs/scenario-language.md', () => {
  const doc = readFileSync(new URL('docs/scenario-language.md', root), 'utf8');

  it('documents every statement and each of its arguments', () => {
    for (const s of STATEMENTS) {
      const head = `#### \`${s.keyword}\``;
      const at = doc.indexOf(head);
      assert.ok(at >= 0, `no section for ${s.keyword}`);
      const next = doc.indexOf('\n####', at + head.length);
      const section = doc.slice(at, next < 0 ? undefined : next);
      for (const a of s.args) assert.ok(section.includes(`\`${a.name}\``), `${s.keyword}: argument ${a.name} undocumented`);
    }
  });

  it('every scenario line quoted in a code block parses', () => {
    // Untagged fences hold scenario text; tagged ones (```ts) are something else.
    const blocks: string[] = [];
    let cur: string[] | undefined;
    let tagged = false;
    for (const l of doc.split('\n')) {
      if (l.startsWith('```')) {
        if (cur) {
          if (!tagged) blocks.push(cur.join('\n'));
          cur = undefined;
        } else {
          cur = [];
          tagged = l.length > 3;
        }
      } else cur?.push(l);
    }
    blocks.splice(0, blocks.length, ...blocks.filter((b) => !b.startsWith('kvm-mmu ')));
    assert.ok(blocks.length > 20);
    for (const b of blocks) {
      const errs = parseScenario(b, 'doc').diagnostics.filter((d) => d.severity === 'error' && d.code !== 'setup-too-late');
      assert.deepEqual(errs.map(formatDiagnostic), [], b);
    }
  });
});

describe('examples/', () => {
  it('every example parses without errors and starts with an explanation', () => {
    const files = readdirSync(new URL('examples/', root)).filter((f) => f.endsWith('.kvmmmu'));
    assert.ok(files.length >= 1);
    for (const f of files) {
      const text = readFileSync(new URL(`examples/${f}`, root), 'utf8');
      assert.ok(text.startsWith(`# ${f.replace(/\.kvmmmu$/, '')}:`), `${f} starts with '# name: explanation'`);
      const r = parseScenario(text, f);
      assert.deepEqual(r.diagnostics.map(formatDiagnostic), [], f);
      assert.ok(r.statements.some((s) => s.spec.group === 'expect'), `${f} checks itself`);
    }
  });
});

describe('docs list the examples', () => {
  it('every example file has a row in the Examples table', () => {
    const doc = readFileSync(new URL('docs/scenario-language.md', root), 'utf8');
    for (const f of readdirSync(new URL('examples/', root)).filter((x) => x.endsWith('.kvmmmu'))) {
      assert.ok(doc.includes(`| \`${f}\` |`), f);
    }
  });
});
