/** The verb table. A verb lands with the issue that makes it real; until then it says which. */
export interface VerbModule {
  run(argv: string[]): Promise<number>;
}

export interface Verb {
  name: string;
  summary: string;
  available: boolean;
  /** Why it is not available yet. */
  pending?: string;
  load?: () => Promise<VerbModule>;
}

export const VERBS: Verb[] = [
  { name: 'run', summary: 'run a scenario file and check its expectations', available: true, load: () => import('./run') },
  { name: 'replay', summary: 'parse a real kvm/kvmmmu trace capture and rebuild the MMU state', available: true, load: () => import('./replay') },
  { name: 'decode', summary: 'decode an SPTE, a role word, a page-fault error code or a stage-2 descriptor', available: true, load: () => import('./decode') },
  { name: 'walk', summary: 'walk guest page tables as KVM does and explain the result', available: true, load: () => import('./walk') },
  { name: 'dap', summary: 'serve the Debug Adapter Protocol on stdio (for nvim-dap, Emacs dap-mode, ...)', available: true, load: () => import('./dap') },
  { name: 'bench', summary: 'measure the performance targets against same-run baselines', available: true, load: () => import('./bench') },
];
