/**
 * The decoded part of an SPTE row in the MMU Pages tree, shared by live sessions and replayed traces so
 * both show an SPTE the same way.
 */
import { hex0x } from '../../engine/bits/u64';
import type { SpteDescription } from '../../engine/x86/spte_decode';

export function spteRowFields(d: SpteDescription, lo: number, hi: number): Record<string, unknown> {
  const row: Record<string, unknown> = {
    value: hex0x(lo, hi, 16),
    kind: d.kind,
    large: d.large,
    flags: d.traceFlags,
    pfn: d.pfn,
    fields: d.fields.map((f) => ({ name: f.name, bits: f.bits, hex: f.hex, value: f.value, meaning: f.meaning })),
  };
  if (d.kind === 'leaf' || d.kind === 'nonleaf') {
    row.accessed = d.accessed;
    row.dirty = d.dirty;
    row.mmuWritable = d.mmuWritable;
    row.hostWritable = d.hostWritable;
  }
  if (d.mmio) row.mmio = d.mmio;
  return row;
}
