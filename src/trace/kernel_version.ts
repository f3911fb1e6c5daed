/**
 * The kernel that produced a capture, for the few decodings that depend on it (kvm-x86-mmu.md 4.2,
 * trace-text.md "Format generations").
 */

export interface KernelVersion {
  major: number;
  minor: number;
}

export const DEFAULT_KERNEL: KernelVersion = { major: 6, minor: 18 };

/** `6.18`, `v6.8`, `5.10.0-rc3`, `6.1.55-generic` -> version; undefined when not a version. */
export function parseKernelVersion(text: string): KernelVersion | undefined {
  let i = 0;
  if (text.startsWith('v')) i = 1;
  const dot = text.indexOf('.', i);
  if (dot < 0) return undefined;
  const major = text.slice(i, dot);
  let j = dot + 1;
  while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++;
  const minor = text.slice(dot + 1, j);
  if (!/^[0-9]+$/.test(major) || minor.length === 0) return undefined;
  if (j < text.length && !/^[.\-+_]/.test(text.slice(j))) return undefined;
  return { major: Number(major), minor: Number(minor) };
}

export function atLeast(v: KernelVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

/**
 * RET_PF_SPURIOUS / RET_PF_FIXED as the kernel numbered them. RET_PF_WRITE_PROTECTED (3) was inserted in
 * 6.12, moving FIXED from 4 to 5 and SPURIOUS from 5 to 6; `fast_page_fault`'s `ret` is rebuilt from the
 * printed `spurious`/`fixed` comparisons with the numbers of the capture's kernel.
 */
const RET_PF_NOW = Object.freeze({ fixed: 5, spurious: 6 });
const RET_PF_BEFORE_6_12 = Object.freeze({ fixed: 4, spurious: 5 });

export function retPfNumbers(v: KernelVersion): { readonly fixed: number; readonly spurious: number } {
  return atLeast(v, 6, 12) ? RET_PF_NOW : RET_PF_BEFORE_6_12;
}
