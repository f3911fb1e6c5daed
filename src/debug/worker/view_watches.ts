/**
 * Data breakpoints a view adds one at a time ("Break when SPTE changes"). DAP's setDataBreakpoints
 * replaces the client's whole set and VS Code's API cannot add a data breakpoint to its own model, so
 * a view adds to the adapter's set through kvmMmu/addDataBreakpoint instead: these watches survive the
 * client's next setDataBreakpoints and fire next to the client's own. kvmMmu/dataBreakpoints mirrors
 * the set so the view can show and remove them.
 */
import type { DataBp } from './controller';
import type { ProbeArgs } from '../../engine/probes';

export function additiveDataBreakpoint(
  bps: DataBp[],
  name: string,
  args: Record<string, unknown>,
  nextId: () => number,
  matcher: (dataId: string) => ((a: ProbeArgs) => boolean) | undefined,
): unknown {
  const list = () => ({ breakpoints: bps.map((b) => ({ id: b.id, dataId: b.dataId, additive: !!b.additive, hits: b.hits })) });
  if (name === 'kvmMmu/dataBreakpoints') return list();
  const dataId = typeof args.dataId === 'string' ? args.dataId : '';
  if (name === 'kvmMmu/removeDataBreakpoint') {
    const i = bps.findIndex((b) => b.additive && b.dataId === dataId);
    if (i >= 0) bps.splice(i, 1);
    return { removed: i >= 0, ...list() };
  }
  const have = bps.find((b) => b.additive && b.dataId === dataId);
  if (have) return { breakpoint: { id: have.id, verified: true, message: `stops where ${dataId} changes` }, ...list() };
  const match = matcher(dataId);
  if (!match) return { breakpoint: { id: nextId(), verified: false, message: `cannot watch '${dataId}'` }, ...list() };
  const bp: DataBp = { id: nextId(), dataId, match, hits: 0, additive: true };
  bps.push(bp);
  return { breakpoint: { id: bp.id, verified: true, message: `stops where ${dataId} changes` }, ...list() };
}
