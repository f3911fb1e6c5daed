export { GuestMemory, PAGE_SHIFT, PAGE_SIZE } from './guest_memory';
export { HostMemory, __GFP_DMA32, GFP_KERNEL_ACCOUNT, DMA32_END_PFN, type HostMemoryOptions } from './host_memory';
