/**
 * Value decoders for the Variables view and conditions: SPTEs, role words and page-fault error codes
 * expand into the kernel's bit fields. The format of an SPTE (EPT or NPT) comes from the VM being
 * debugged; EPT is assumed until a VM says otherwise.
 */
import { decodeFields } from '../engine/bits/fields';
import { hex } from '../engine/bits/u64';
import { EPT_SPTE_FIELDS, NPT_SPTE_FIELDS } from '../engine/x86/spte_fields';
import { ROLE_FIELDS, role_trace_text } from '../engine/x86/role';
import { PFERR_FIELDS, pferr_trace_flags } from '../engine/x86/pferr';
import { registerDecoder, asU64 } from './inspect';

let sptFormat: 'ept' | 'npt' = 'ept';

export function setSpteFormat(f: 'ept' | 'npt'): void {
  sptFormat = f;
}

const u64Of = asU64;

let installed = false;

export function installDecoders(): void {
  if (installed) return;
  installed = true;
  registerDecoder({
    matches: (k, v) => /(^|_)spte$|^(old|new)_spte$/.test(k) && u64Of(v) !== undefined,
    summary: (_k, v) => {
      const u = u64Of(v)!;
      return `0x${hex(u.lo, u.hi)}`;
    },
    fields: (_k, v) => {
      const u = u64Of(v)!;
      return decodeFields(u.lo, u.hi, sptFormat === 'ept' ? EPT_SPTE_FIELDS : NPT_SPTE_FIELDS);
    },
  });
  registerDecoder({
    matches: (k, v) => /(^|_)role(_word)?$|^word$/.test(k) && typeof v === 'number',
    summary: (_k, v) => `0x${(v as number).toString(16)} (${role_trace_text(v as number)})`,
    fields: (_k, v) => decodeFields((v as number) >>> 0, 0, ROLE_FIELDS),
  });
  registerDecoder({
    matches: (k, v) => /error_code$|^pferr$/.test(k) && u64Of(v) !== undefined,
    summary: (_k, v) => {
      const u = u64Of(v)!;
      return `0x${hex(u.lo, u.hi)} ${pferr_trace_flags(u.lo, u.hi)}`;
    },
    fields: (_k, v) => {
      const u = u64Of(v)!;
      return decodeFields(u.lo, u.hi, PFERR_FIELDS).filter((f) => f.value !== 0);
    },
  });
}
