/**
 * `kvm-mmu dap`: the debug adapter on stdio, for editors other than VS Code (nvim-dap, Emacs dap-mode).
 * Everything on stdout is protocol; diagnostics go to stderr.
 */
import { KvmMmuDebugSession } from '../../debug/session';

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write('usage: kvm-mmu dap\n\nSpeaks the Debug Adapter Protocol on stdin/stdout. Launch arguments: program | trace, stopOnEntry, kernelSource, variants, parameters.\n');
    return 0;
  }
  if (argv.length) {
    process.stderr.write(`kvm-mmu dap: unexpected argument '${argv[0]}'\n`);
    return 2;
  }
  const session = new KvmMmuDebugSession();
  session.setRunAsServer(false);
  session.start(process.stdin, process.stdout);
  await new Promise<void>((resolve) => {
    process.stdin.on('end', resolve);
    session.on('close', resolve);
  });
  return 0;
}
