/**
 * Walker tracepoint text against the 6.18 print fmt, worked out by hand:
 *   "addr %llx pferr %x %s" / "pte %llx level %u" / "pferr %x %s" / "gpa %llx", where %s is
 *   __print_flags(pferr, "|", P=1<<0, W=1<<1, U=1<<2, PK=1<<5, SS=1<<6, SGX=1<<15, RSVD=1<<3, F=1<<4):
 *   flags in table order, leftover bits as 0x%lx, nothing for 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  kvm_mmu_pagetable_walk_text,
  kvm_mmu_paging_element_text,
  kvm_mmu_set_ad_bit_text,
  kvm_mmu_walker_error_text,
  walkerPferrFlags,
} from '../../../../src/engine/x86/paging_trace';

test('__print_flags of the walker pferr: table order, RSVD after SGX, leftovers last', () => {
  assert.equal(walkerPferrFlags(0), '');
  assert.equal(walkerPferrFlags(0x1), 'P');
  assert.equal(walkerPferrFlags(0x3), 'P|W');
  assert.equal(walkerPferrFlags(0x1f), 'P|W|U|RSVD|F');
  assert.equal(walkerPferrFlags(0x21), 'P|PK');
  assert.equal(walkerPferrFlags(0x8040), 'SS|SGX');
  assert.equal(walkerPferrFlags(0x100), '0x100');
  assert.equal(walkerPferrFlags(0x101), 'P|0x100');
  assert.equal(walkerPferrFlags(0xffffffff), 'P|W|U|PK|SS|SGX|RSVD|F|0xffff7f80');
});

test('event payloads', () => {
  assert.equal(kvm_mmu_pagetable_walk_text(0, 0, 0), 'addr 0 pferr 0 ');
  assert.equal(kvm_mmu_pagetable_walk_text(0x00000000, 0xffff9234, 0x10), 'addr ffff923400000000 pferr 10 F');
  assert.equal(kvm_mmu_pagetable_walk_text(0x23456123, 0x7fff, 0x7), 'addr 7fff23456123 pferr 7 P|W|U');
  assert.equal(kvm_mmu_paging_element_text(0, 0x80000000, 1), 'pte 8000000000000000 level 1');
  assert.equal(kvm_mmu_paging_element_text(0x2007, 0, 4), 'pte 2007 level 4');
  assert.equal(kvm_mmu_walker_error_text(0xd), 'pferr d P|U|RSVD');
  assert.equal(kvm_mmu_walker_error_text(0x25), 'pferr 25 P|U|PK');
  assert.equal(kvm_mmu_set_ad_bit_text(0x42b0), 'gpa 42b0');
  assert.equal(kvm_mmu_set_ad_bit_text(0), 'gpa 0');
});

test('the emitted events carry format-file field names and agree with the shared tracepoint formatter', async () => {
  const { trace } = await import('../../../../src/engine/trace_sink');
  const { formatTracepoint } = await import('../../../../src/engine/tracepoints');
  const m = await import('../../../../src/engine/x86/paging_trace');
  const got: Array<{ name: string; text: string; fields: Record<string, number | string | boolean> }> = [];
  const off = trace.subscribe((e) => got.push({ name: e.name, text: e.text, fields: e.fields }));
  try {
    m.emit_kvm_mmu_pagetable_walk(0, 0x00000000, 0xffff9234, 0x10);
    m.emit_kvm_mmu_pagetable_walk(0, 0x23456123, 0x7fff, 0x0);
    m.emit_kvm_mmu_paging_element(0, 0x5007, 0x80000000, 1);
    m.emit_kvm_mmu_paging_element(0, 0x2007, 0, 4);
    m.emit_kvm_mmu_walker_error(0, 0x2d);
    m.emit_kvm_mmu_set_accessed_bit(0, 0x42b0);
    m.emit_kvm_mmu_set_dirty_bit(0, 0x42b0);
  } finally {
    off();
  }
  assert.deepEqual(got[0]!.fields, { addr: 'ffff923400000000', pferr: 0x10 });
  assert.deepEqual(got[2]!.fields, { pte: '8000000000005007', level: 1 });
  for (const e of got) assert.equal(formatTracepoint(e.name, e.fields), e.text, e.name);
});
