import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario } from '../../../src/scenario/parser';
import { formatDiagnostic } from '../../../src/scenario/diagnostics';
import { STATEMENTS } from '../../../src/scenario/grammar';

function errors(text: string) {
  return parseScenario(text, 't.kvmmmu').diagnostics.filter((d) => d.severity === 'error');
}
function one(text: string) {
  const ds = errors(text);
  assert.equal(ds.length, 1, `expected one error, got: ${ds.map(formatDiagnostic).join(' / ')}`);
  return ds[0]!;
}

describe('scenario parser: good input', () => {
  it('parses set-up, ioctls, guest accesses and expects with positions and values', () => {
    const src = [
      '# a comment line',
      'vm arch=x86 vendor=amd tdp=on maxphyaddr=48 vcpus=2   # trailing comment',
      'param tdp_mmu=Y nx_huge_pages=off',
      '',
      'KVM_SET_USER_MEMORY_REGION2 slot=0 guest_phys_addr=0x100000 memory_size=2M flags=KVM_MEM_LOG_DIRTY_PAGES|KVM_MEM_READONLY',
      'guest write gpa 0x0..0x40000000 step 4K user vcpu=1',
      'expect stat pf_fixed >= 1 pages_2m=0',
      'expect trace kvm_mmu_set_spte "gfn 1 *" count=1',
      'expect ret -EINVAL',
    ].join('\n');
    const r = parseScenario(src, 't.kvmmmu');
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.statements.map((s) => [s.line, s.keyword]), [
      [2, 'vm'], [3, 'param'], [5, 'KVM_SET_USER_MEMORY_REGION2'], [6, 'guest write'], [7, 'expect stat'], [8, 'expect trace'], [9, 'expect ret'],
    ]);
    const vm = r.statements[0]!;
    assert.equal(vm.text, 'vm arch=x86 vendor=amd tdp=on maxphyaddr=48 vcpus=2');
    assert.deepEqual(vm.args['tdp']!.value, { kind: 'bool', v: true, text: 'on' });
    const slot = r.statements[2]!;
    // Kernel struct member names are aliases of the short names.
    assert.deepEqual(slot.args['gpa']!.value, { kind: 'num', v: 0x100000n, text: '0x100000' });
    assert.equal((slot.args['size']!.value as { v: bigint }).v, 2n * 1024n * 1024n);
    assert.deepEqual((slot.args['flags']!.value as { v: string[] }).v, ['KVM_MEM_LOG_DIRTY_PAGES', 'KVM_MEM_READONLY']);
    assert.equal(slot.args['gpa']!.col, 36); // after 'KVM_SET_USER_MEMORY_REGION2 slot=0 '
    const w = r.statements[3]!;
    assert.deepEqual(w.args['gpa']!.value, { kind: 'range', start: 0n, end: 0x40000000n, single: false, text: '0x0..0x40000000' });
    assert.equal((w.args['step']!.value as { v: bigint }).v, 4096n);
    assert.equal((w.args['cpl']!.value as { v: string }).v, 'user');
    const st = r.statements[4]!;
    assert.deepEqual(st.checks.map((c) => [c.name, c.op, c.value.text, c.col]), [['pf_fixed', '>=', '1', 13], ['pages_2m', '=', '0', 27]]);
    const tr = r.statements[5]!;
    assert.equal((tr.args['text']!.value as { v: string }).v, 'gfn 1 *');
    assert.equal((r.statements[6]!.args['value']!.value as { v: bigint }).v, -22n);
  });

  it('reads sizes with K/M/G/T/P suffixes and START+SIZE ranges', () => {
    const r = parseScenario('guest read gpa 0x100000000+2M step 1M\nKVM_CREATE_GUEST_MEMFD fd=gmem0 size=1T', 'x');
    assert.deepEqual(r.diagnostics, []);
    const g = r.statements[0]!.args['gpa']!.value as { start: bigint; end: bigint };
    assert.equal(g.start, 0x100000000n);
    assert.equal(g.end, 0x100200000n);
    assert.equal((r.statements[1]!.args['size']!.value as { v: bigint }).v, 1n << 40n);
  });

  it('every example line in the grammar table parses cleanly', () => {
    for (const s of STATEMENTS) {
      const r = parseScenario(s.example, 'ex');
      assert.deepEqual(r.diagnostics.map(formatDiagnostic), [], s.example);
      assert.equal(r.statements[0]!.keyword, s.keyword);
    }
  });

  it('a selector name that is also a field becomes a check once the selector is set', () => {
    const r = parseScenario('expect rmp pfn=0x10 gpa=0x1000 assigned=1', 'x');
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(Object.keys(r.statements[0]!.args), ['pfn']);
    assert.deepEqual(r.statements[0]!.checks.map((c) => c.name), ['gpa', 'assigned']);
  });
});

describe('scenario parser: diagnostics are located and hinted', () => {
  it('unknown keyword suggests the nearest one', () => {
    const d = one('vm arch=x86\n  gest write gpa=0');
    assert.deepEqual([d.line, d.col, d.endCol, d.code], [2, 3, 7, 'unknown-keyword']);
    assert.match(d.hint, /did you mean 'guest'\?/);
  });

  it('unknown second word suggests within the group', () => {
    const d = one('guest reed gpa=0x1000');
    assert.deepEqual([d.line, d.col, d.endCol], [1, 7, 11]);
    assert.match(d.hint, /did you mean 'guest read'\?/);
  });

  it('an ioctl name with a typo', () => {
    const d = one('KVM_SET_USER_MEMORY_REGOIN2 slot=0 size=4K');
    assert.equal(d.col, 1);
    assert.match(d.hint, /KVM_SET_USER_MEMORY_REGION2/);
  });

  it('unknown field of an expect, with suggestion, at the field', () => {
    const d = one('expect spte gpa=0x1000 kind=leaf wx=1');
    assert.deepEqual([d.col, d.endCol, d.code], [34, 36, 'unknown-name']);
    assert.match(d.hint, /did you mean 'w'\?/);
  });

  it('unknown statistic', () => {
    const d = one('expect stat pf_fixd=1');
    assert.deepEqual([d.col, d.message], [13, "unknown statistic 'pf_fixd'"]);
    assert.match(d.hint, /pf_fixed/);
  });

  it('bad enum value points at the value', () => {
    const d = one('vm arch=x86 vendor=intell');
    assert.deepEqual([d.col, d.endCol], [20, 26]); // 'intell' spans 20..25
    assert.match(d.hint, /did you mean 'intel'\?/);
  });

  it('bad flag inside a flag list', () => {
    const d = one('KVM_SET_MEMORY_ATTRIBUTES address=0 size=4K attributes=KVM_MEMORY_ATTRIBUTE_PRIVAT');
    assert.equal(d.col, 56);
    assert.match(d.hint, /KVM_MEMORY_ATTRIBUTE_PRIVATE/);
  });

  it('not a number', () => {
    const d = one('KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0xzz size=4K');
    assert.deepEqual([d.col, d.message], [40, "'0xzz' is not a number"]);
  });

  it('missing required argument is reported at the end of the line', () => {
    const d = one('KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0');
    assert.equal(d.code, 'missing-argument');
    assert.equal(d.col, 41);
    assert.match(d.message, /needs 'size'/);
  });

  it('module parameter values are checked', () => {
    const d = one('param tdp_mmu=maybe');
    assert.deepEqual([d.col, d.code], [15, 'bad-value']);
    assert.match(d.hint, /Y, N/);
  });

  it('set-up after the VM exists', () => {
    const d = one('KVM_PRE_FAULT_MEMORY gpa=0 size=4K\nparam tdp_mmu=N');
    assert.deepEqual([d.line, d.col, d.code], [2, 1, 'setup-too-late']);
    assert.match(d.hint, /above line 1/);
  });

  it('unterminated string', () => {
    const d = one('include "common.kvmmmu');
    assert.deepEqual([d.col, d.code], [9, 'unterminated-string']);
  });

  it('ordering operators need numbers; selectors take only =', () => {
    assert.equal(one('expect spte gpa=0x1000 kind>leaf').code, 'bad-value');
    const d = one('expect spte gpa>0x1000 kind=leaf');
    assert.deepEqual([d.code, d.col], ['bad-operator', 16]);
  });

  it('both gva and gpa on an access', () => {
    const d = one('guest read gva=0x1000 gpa=0x2000');
    assert.deepEqual([d.code, d.col], ['conflicting-arguments', 23]);
  });

  it('an empty range', () => {
    const d = one('host invalidate gpa 0x2000..0x1000');
    assert.equal(d.col, 21);
    assert.match(d.message, /empty range/);
  });
});

describe('scenario parser: absurd sizes are refused where they are written', () => {
  it('10^9-access range', () => {
    const d = one('guest read gpa 0x0..0x40000000 step 1');
    assert.deepEqual([d.code, d.col, d.endCol], ['too-many-accesses', 16, 31]);
    assert.match(d.message, /1073741824 accesses/);
  });

  it('repeat multiplies the count', () => {
    assert.equal(errors('guest read gpa 0x0..0x40000000 step 4K').length, 0);
    assert.equal(one('guest read gpa 0x0..0x40000000 step 4K repeat=100').code, 'too-many-accesses');
  });

  it('1 PiB memslot: KVM_MEM_MAX_NR_PAGES warning (KVM returns -EINVAL)', () => {
    const r = parseScenario('KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1P', 'x');
    assert.equal(r.diagnostics.length, 1);
    const d = r.diagnostics[0]!;
    assert.deepEqual([d.severity, d.code, d.col], ['warning', 'kvm-einval', 47]); // the value '1P'
  });

  it('addresses beyond MAXPHYADDR', () => {
    const d = one('vm maxphyaddr=40\nKVM_PRE_FAULT_MEMORY gpa=0x10000000000 size=4K');
    assert.deepEqual([d.line, d.code, d.col], [2, 'address-out-of-range', 26]);
    const d2 = one('vm maxphyaddr=46\nKVM_CREATE_GUEST_MEMFD fd=g size=1P');
    assert.deepEqual([d2.line, d2.code], [2, 'size-out-of-range']);
  });

  it('a number that does not fit in 64 bits', () => {
    const d = one('guest write_pte gva=0x1000 level=1 value=0x10000000000000000');
    assert.match(d.message, /does not fit in 64 bits/);
  });
});

describe('scenario parser: guest map sizes', () => {
  it('a 1 PiB map in 4K pages is refused at the range', () => {
    const d = one('guest map cr3=0x1000 gva 0x0..0x4000000000000 gpa=0 page=4K');
    assert.deepEqual([d.code, d.col], ['too-many-accesses', 26]);
    assert.equal(errors('guest map cr3=0x1000 gva 0x0..0x4000000000000 gpa=0 page=1G').length, 0);
  });
});

describe('scenario parser: pre-fault sizes', () => {
  it('more than 16M pages in one KVM_PRE_FAULT_MEMORY is refused at the size', () => {
    const d = one('KVM_PRE_FAULT_MEMORY gpa=0 size=128G');
    assert.deepEqual([d.code, d.col], ['too-many-accesses', 33]); // the value after 'size='
    assert.match(d.hint, /at most 64G/);
    assert.equal(errors('KVM_PRE_FAULT_MEMORY gpa=0 size=64G').length, 0);
  });
});

describe('scenario parser: module-qualified parameters', () => {
  it('kvm_intel.pml=N is pml=N', () => {
    const r = parseScenario('param kvm_intel.pml=N kvm.tdp_mmu=Y', 'x');
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.statements[0]!.checks.map((c) => c.name), ['pml', 'tdp_mmu']);
  });
});

describe('scenario parser: settings of the other architecture', () => {
  it('x86 settings on arm64 and arm64 settings on x86', () => {
    const a = one('vm arch=arm64 tdp=on');
    assert.deepEqual([a.code, a.col], ['wrong-arch', 15]);
    const b = one('vm arch=x86 ipa_bits=40');
    assert.deepEqual([b.code, b.col], ['wrong-arch', 13]);
    assert.match(b.hint, /arch=arm64/);
  });
});
