/**
 * The Linux errno values the arm64 stage-2 and pKVM code returns, as negative numbers the way the
 * kernel's `int` results carry them. Kept local so the arm64 model has no dependency on the x86 side.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const E2BIG = 7;
export const ENOEXEC = 8;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EINVAL = 22;
export const ERANGE = 34;
export const EOPNOTSUPP = 95;
export const EHWPOISON = 133;

const NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [E2BIG]: 'E2BIG',
  [ENOEXEC]: 'ENOEXEC',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [EINVAL]: 'EINVAL',
  [ERANGE]: 'ERANGE',
  [EOPNOTSUPP]: 'EOPNOTSUPP',
  [EHWPOISON]: 'EHWPOISON',
};

/** `0` or `-EPERM` style text for a kernel return value. */
export function errnoName(ret: number): string {
  if (ret >= 0) return String(ret);
  const n = NAMES[-ret];
  return n ? `-${n}` : String(ret);
}
