/** The VSIX's size, packaged fresh by `npm run package`. */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchContext, type Metric, type MetricResult } from './metric';

export const vsixSize: Metric = {
  name: 'vsix_size',
  async run(ctx: BenchContext): Promise<MetricResult> {
    const root = join(__dirname, '..');
    if (!existsSync(join(root, 'package.json'))) throw new Error('run from the project (dist/ beside package.json)');
    ctx.log('packaging the VSIX');
    execFileSync('npm', ['run', '--silent', 'package'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    const size = statSync(join(root, 'dist', 'kvm-mmu-debugger.vsix')).size;
    return { name: 'vsix_size', value: Number((size / 1024 / 1024).toFixed(3)), unit: 'MB', target: '<= 1.5 MB', met: size <= 1.5 * 1024 * 1024, note: `${size} bytes` };
  },
};
