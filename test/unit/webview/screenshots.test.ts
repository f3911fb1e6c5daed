/**
 * Every panel's bundle in headless Chromium, in the light, dark and high-contrast themes, fed what the
 * extension would send for real sessions (scenarios run through the debug worker's own queries), saved as
 * screenshots under test-artifacts/webview (or $TEST_ARTIFACTS/webview) to be looked at. Each page must
 * load and draw without errors, and its canvas must show the colours of the theme it runs in. Skipped
 * when the built bundles, Chromium or the test host's playwright-core are not there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ScenarioProgram } from '../../../src/debug/scenario_program';
import { handleQuery } from '../../../src/debug/worker/queries';
import { vcpuTimeline } from '../../../src/debug/worker/vcpu_timeline';
import { stage2Map } from '../../../src/debug/worker/stage2_map';
import { decodeValue } from '../../../src/extension/panels/decode_kinds';
import { WebviewHost, deliver, webviewHostMissing, type Page } from '../../../src/bench/webview_host';
import { THEMES, type ThemeName } from '../../../src/bench/webview_themes';

const ROOT = resolve(__dirname, '..', '..', '..');
const OUT = join(process.env.TEST_ARTIFACTS ?? join(ROOT, 'test-artifacts'), 'webview');
const missing = webviewHostMissing(['decoder', 'where', 'ptmap', 'timeline']);

function program(text: string): ScenarioProgram {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-mmu-shots-'));
  const file = join(dir, 's.kvmmmu');
  writeFileSync(file, text);
  return programOf(file);
}

/** Run `file`, or only the statements before the first line matching `stopAt`. */
function programOf(file: string, stopAt?: RegExp): ScenarioProgram {
  const p = new ScenarioProgram(file, {});
  const stop = stopAt ? readFileSync(file, 'utf8').split('\n').findIndex((l) => stopAt.test(l)) + 1 : 0;
  for (let s = 0; s < p.length(); s++) {
    if (stop > 0 && p.locationOf(s).line >= stop) break;
    p.execute(s);
  }
  return p;
}

/** Two vCPUs faulting 4K and 2M pages, MMIO, dirty logging (eager split) then 2M leaves in a second slot, aged and invalidated by the host. */
const X86 = [
  'vm arch=x86 vendor=intel tdp=on vcpus=2',
  'param tdp_mmu=Y nx_huge_pages=off eager_page_split=Y',
  'KVM_SET_USER_MEMORY_REGION2 slot=0 gpa=0 size=1G hva=0x7f0000000000 backing=2M',
  'guest read gpa 0x0..0x400000 step 4K vcpu=0',
  'guest write gpa 0x800000..0x1000000 step 2M vcpu=1',
  'guest read gpa=0xfee00000 vcpu=1',
  'dirty_log enable slot=0',
  'guest write gpa 0x10000..0x20000 step 4K vcpu=1',
  'guest read gpa 0x2000000..0x2400000 step 64K vcpu=0',
  'KVM_SET_USER_MEMORY_REGION2 slot=1 gpa=0x40000000 size=1G hva=0x7f0040000000 backing=2M',
  'guest read gpa 0x40000000..0x41000000 step 2M vcpu=1',
  'host age gpa 0x40000000..0x40800000',
  'host invalidate gpa 0x40400000+4K reason=migration',
  'guest read gpa=0x40400000 vcpu=0',
  '',
].join('\n');

interface Shot {
  panel: string;
  bundle: string;
  message: unknown;
  /** Message type the page posts once drawn, or a DOM condition. */
  until: string | (() => boolean);
  state?: unknown;
  size?: { width: number; height: number };
}

function shots(): Shot[] {
  const x86 = program(X86);
  const tableMap = handleQuery('kvmMmu/tableMap', { root: -1, maxTables: 8192 }, { program: x86 }) as Record<string, unknown>;
  // The panel adds the current fault ("Why?") to the map for its walk.
  const why = handleQuery('kvmMmu/why', {}, { program: x86 }) as { fault: { gfn: string; gpa: string; vcpu: number; ret_pf: string } | null };
  assert.ok(why.fault, 'a current fault');
  tableMap.walk = { gfn: Number.parseInt(why.fault.gfn, 16), label: `current fault: vCPU ${why.fault.vcpu} gpa ${why.fault.gpa} ${why.fault.ret_pf}` };
  const where = handleQuery('kvmMmu/whereIsGfn', { gfn: 0x10 }, { program: x86 }) as { gfn: string; gpa: string; sections: unknown[] };
  const timeline = vcpuTimeline(x86, { buckets: 300 });
  x86.dispose();
  // While the guest shares gfn 0x100 back with the host: every page state is on the map at once.
  const pkvm = programOf(join(ROOT, 'examples', 'pkvm-stage2-ownership.kvmmmu'), /^__pkvm_guest_unshare_host/);
  const host = stage2Map(pkvm, { root: 1 });
  const guestS2 = stage2Map(pkvm, { root: 0 });
  pkvm.dispose();
  const arm = programOf(join(ROOT, 'examples', 'arm64-stage2-faults.kvmmmu'));
  const armMap = stage2Map(arm, { root: 0 });
  arm.dispose();
  const rendered = 'rendered';
  return [
    { panel: 'decoder', bundle: 'decoder', message: { type: 'decoded', result: decodeValue({ kind: 'ept-spte', value: '0x600000001234b37', level: 1 }) }, until: rendered, size: { width: 1000, height: 720 } },
    { panel: 'where', bundle: 'where', message: { type: 'answer', answer: { ...where, at: 'line 14: guest read gpa=0x40400000 vcpu=0' } }, until: () => document.querySelectorAll('section').length > 3, size: { width: 1000, height: 900 } },
    { panel: 'ptmap-x86', bundle: 'ptmap', message: { type: 'map', map: { ...tableMap, at: 'line 14' } }, until: rendered },
    { panel: 'ptmap-arm64', bundle: 'ptmap', message: { type: 'map', map: armMap }, until: rendered },
    { panel: 'ptmap-pkvm-host-owner', bundle: 'ptmap', message: { type: 'map', map: host }, until: rendered, state: { colorBy: 'owner' }, size: { width: 520, height: 640 } },
    { panel: 'ptmap-pkvm-guest-owner', bundle: 'ptmap', message: { type: 'map', map: guestS2 }, until: rendered, state: { colorBy: 'owner' } },
    { panel: 'timeline', bundle: 'timeline', message: { type: 'timeline', data: timeline }, until: rendered },
  ];
}

/** Distinct colours in the page's canvas (0 when it has none), sampled on a grid. */
function canvasColours(page: Page): Promise<number> {
  return page.evaluate(() => {
    const c = document.querySelector('canvas');
    if (!c) return 0;
    const g = c.getContext('2d')!;
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
    return seen.size;
  });
}

test('every panel renders in light, dark and high contrast (screenshots saved)', { skip: missing.length ? `not available: ${missing.join(', ')}` : false, timeout: 180000 }, async () => {
  mkdirSync(OUT, { recursive: true });
  const all = shots();
  const host = await WebviewHost.launch();
  try {
    for (const theme of Object.keys(THEMES) as ThemeName[]) {
      for (const s of all) {
        const { page, errors } = await host.open(s.bundle, theme, s.size ?? { width: 1000, height: 640 }, s.state);
        if (typeof s.until === 'string') await deliver(page, s.message, s.until);
        else {
          await page.evaluate((m) => window.postMessage(m, '*'), s.message);
          await page.waitForFunction(s.until);
        }
        // Let the frame the 'rendered' message came from reach the screen.
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        await page.screenshot({ path: join(OUT, `${s.panel}-${theme}.png`) });
        assert.deepEqual(errors, [], `${s.panel} in ${theme}`);
        if (s.panel === 'ptmap-x86' || s.panel === 'ptmap-arm64') {
          assert.match(await page.evaluate(() => document.querySelector('.info')?.textContent ?? ''), /walk of the (current fault: vCPU 0|last stage-2 abort)/);
        }
        if (s.bundle === 'ptmap' || s.bundle === 'timeline') {
          const n = await canvasColours(page);
          assert.ok(n >= 4, `${s.panel} in ${theme}: the canvas shows ${n} colours`);
          const bg = await page.evaluate(() => getComputedStyle(document.body).getPropertyValue('--vscode-editor-background').trim());
          assert.equal(bg, THEMES[theme].vars['editor-background'], 'the theme reached the page');
        }
        await page.close();
      }
    }
  } finally {
    await host.close();
  }
});
