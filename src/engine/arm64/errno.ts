/**
 * The Linux errno values the arm64 stage-2 and pKVM code returns, as negative numbers the way the
 * kernel's `int` results carry them (values from the engine-wide table in ../errno.ts), and their names.
 */
import { E2BIG, EAGAIN, EBUSY, EEXIST, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOEXEC, ENOMEM, EOPNOTSUPP, EPERM, ERANGE } from '../errno';

export { E2BIG, EAGAIN, EBUSY, EEXIST, EFAULT, EHWPOISON, EINVAL, ENOENT, ENOEXEC, ENOMEM, EOPNOTSUPP, EPERM, ERANGE };

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
