/**
 * The Linux errno values the engine's kernel functions return, negated as the kernel's `int` results
 * carry them (include/uapi/asm-generic/errno-base.h, errno.h). One table for every architecture.
 */
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const E2BIG = 7;
export const ENOEXEC = 8;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EOPNOTSUPP = 95;
export const EHWPOISON = 133;
