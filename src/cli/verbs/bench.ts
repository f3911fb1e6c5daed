/** `kvm-mmu bench [--json] [--quick] [--only NAME]...` */
import { parseArgs } from 'node:util';
import { cpus, totalmem } from 'node:os';
import { formatTable, runBench } from '../../bench/index';

export async function run(argv: string[]): Promise<number> {
  let values: { json?: boolean; quick?: boolean; only?: string[]; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, quick: { type: 'boolean' }, only: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (e) {
    process.stderr.write(`kvm-mmu bench: ${(e as Error).message.split('\n')[0]}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write('usage: kvm-mmu bench [--json] [--quick] [--only NAME]...\n\nMeasures every performance target; --quick uses smaller sizes (CI). Exit 1 when a target is missed.\n');
    return 0;
  }
  const rows = await runBench({ quick: !!values.quick, only: values.only, log: (s) => process.stderr.write(`bench: ${s}\n`) });
  if (values.json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  } else {
    const c = cpus();
    process.stdout.write(`machine: ${c.length} x ${c[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}${values.quick ? ', --quick sizes' : ''}\n\n`);
    process.stdout.write(formatTable(rows) + '\n');
  }
  return rows.some((r) => r.met === false) ? 1 : 0;
}
