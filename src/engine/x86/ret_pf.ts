/**
 * RET_PF_* (mmu_internal.h): what the page-fault handlers return. Adding RET_PF_WRITE_PROTECTED (6.12)
 * shifted INVALID/FIXED/SPURIOUS up by one, so naming a traced value needs the kernel's numbering.
 */

export const RET_PF_CONTINUE = 0;
export const RET_PF_RETRY = 1;
export const RET_PF_EMULATE = 2;
export const RET_PF_WRITE_PROTECTED = 3;
export const RET_PF_INVALID = 4;
export const RET_PF_FIXED = 5;
export const RET_PF_SPURIOUS = 6;

/** `current`: 6.12 and later (has WRITE_PROTECTED). `pre-6.12`: CONTINUE..SPURIOUS without it. */
export type RetPfNumbering = 'current' | 'pre-6.12';

const CURRENT = ['RET_PF_CONTINUE', 'RET_PF_RETRY', 'RET_PF_EMULATE', 'RET_PF_WRITE_PROTECTED', 'RET_PF_INVALID', 'RET_PF_FIXED', 'RET_PF_SPURIOUS'] as const;
const PRE_6_12 = ['RET_PF_CONTINUE', 'RET_PF_RETRY', 'RET_PF_EMULATE', 'RET_PF_INVALID', 'RET_PF_FIXED', 'RET_PF_SPURIOUS'] as const;

export function retPfNames(numbering: RetPfNumbering = 'current'): readonly string[] {
  return numbering === 'current' ? CURRENT : PRE_6_12;
}

/** The RET_PF_* name of `value` under `numbering`, or undefined if the value is not in that enum. */
export function ret_pf_name(value: number, numbering: RetPfNumbering = 'current'): string | undefined {
  const t = retPfNames(numbering);
  return Number.isInteger(value) && value >= 0 && value < t.length ? t[value] : undefined;
}

/** The numeric value of a RET_PF_* name (with or without the prefix) under `numbering`. */
export function ret_pf_value(name: string, numbering: RetPfNumbering = 'current'): number | undefined {
  const full = name.startsWith('RET_PF_') ? name : 'RET_PF_' + name.toUpperCase();
  const i = retPfNames(numbering).indexOf(full);
  return i < 0 ? undefined : i;
}
