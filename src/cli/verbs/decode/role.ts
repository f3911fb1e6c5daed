/**
 * `kvm-mmu decode role VALUE [--json]`: a kvm_mmu_page_role word (32 bits) or, for a wider VALUE, a
 * kvm_cpu_role (base in bits 31:0, extended role in bits 63:32).
 */
import { decodeExtRole, decodeRole, kvm_mmu_role_as_id, role_trace_text } from '../../../engine/x86/role';
import { formatTable, hexOf, parseDecodeArgs, parseValue, runDecode, write } from './common';

const USAGE = `usage: kvm-mmu decode role VALUE [--json]

Decode a kvm_mmu_page_role word (hex, 0x optional). A value wider than 32 bits is read as a
kvm_cpu_role: base role in bits 31:0, kvm_mmu_extended_role in bits 63:32.
  --json   machine-readable output`;

const OPTIONS = { json: { type: 'boolean' } } as const;

const ACC = ['---', '--x', 'w--', 'w-x', '-u-', '-ux', 'wu-', 'wux'] as const;

export async function run(argv: string[]): Promise<number> {
  return runDecode('role', USAGE, argv, (args) => {
    const { values, positionals } = parseDecodeArgs(args, OPTIONS);
    const v = parseValue(positionals, 'role');
    const fields = decodeRole(v.lo);
    const r: Record<string, unknown> = {
      value: hexOf(v),
      word: hexOf({ lo: v.lo, hi: 0 }),
      fields,
      accessText: ACC[fields.access],
      asId: kvm_mmu_role_as_id(v.lo),
      traceText: role_trace_text(v.lo),
    };
    const unused = (v.lo >>> 20) & 0xf;
    if (unused !== 0) r.unusedBits = '0x' + (unused << 20).toString(16);
    if (v.hi !== 0) r.ext = decodeExtRole(v.hi);
    if (values.json) {
      write(JSON.stringify(r, null, 2));
      return 0;
    }
    const rows: string[][] = [['field', 'value']];
    for (const [k, val] of Object.entries(fields)) rows.push([k, typeof val === 'boolean' ? (val ? '1' : '0') : k === 'access' ? `${val} (${ACC[val]})` : String(val)]);
    let out = `role ${hexOf({ lo: v.lo, hi: 0 })}  as_id ${kvm_mmu_role_as_id(v.lo)}\ntrace text: ${r.traceText as string}\n\n${formatTable(rows)}`;
    if (unused !== 0) out += `\n\nwarning: unused bits 23:20 set (${r.unusedBits as string})`;
    if (v.hi !== 0) {
      const ext = decodeExtRole(v.hi);
      const erows: string[][] = [['ext field', 'value']];
      for (const [k, val] of Object.entries(ext)) erows.push([k, val ? '1' : '0']);
      out += `\n\nkvm_cpu_role ext ${hexOf({ lo: v.hi, hi: 0 })}\n${formatTable(erows)}`;
    }
    write(out);
    return 0;
  });
}
