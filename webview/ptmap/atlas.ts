/**
 * Every table of the map drawn once at one pixel per entry into an atlas canvas, so a frame is one scaled
 * drawImage per visible table however many entries they hold (panning a million-SPTE root at 60 fps).
 * Rebuilt only when the map, the colouring or the theme changes.
 */
import { blockSize, type MapData } from '../shared/ptmap_protocol';

export interface Atlas {
  canvas: HTMLCanvasElement;
  /** Where table i sits in the atlas. */
  at: Array<{ x: number; y: number }>;
  w: number;
  h: number;
}

/** Maximum atlas width in pixels; tables wrap onto new shelves below. */
const ATLAS_W = 4096;

/** `colorOf(table, entry)` gives an [r, g, b] triple already blended over the background. */
export function buildAtlas(map: MapData, colorOf: (t: number, e: number) => readonly [number, number, number]): Atlas {
  const { w, h } = blockSize(map.entries ?? 512);
  const perRow = Math.max(1, Math.floor(ATLAS_W / w));
  const rows = Math.max(1, Math.ceil(map.tables.length / perRow));
  const canvas = document.createElement('canvas');
  canvas.width = Math.min(map.tables.length, perRow) * w || 1;
  canvas.height = rows * h;
  const g = canvas.getContext('2d')!;
  const img = g.createImageData(canvas.width, canvas.height);
  const px = img.data;
  const at: Atlas['at'] = [];
  for (let t = 0; t < map.tables.length; t++) {
    const ax = (t % perRow) * w;
    const ay = Math.floor(t / perRow) * h;
    at.push({ x: ax, y: ay });
    const n = w * h;
    for (let e = 0; e < n; e++) {
      const [r, gg, b] = colorOf(t, e);
      const o = ((ay + Math.floor(e / w)) * canvas.width + ax + (e % w)) * 4;
      px[o] = r;
      px[o + 1] = gg;
      px[o + 2] = b;
      px[o + 3] = 255;
    }
  }
  g.putImageData(img, 0, 0);
  return { canvas, at, w, h };
}

/** A CSS colour as [r, g, b, a] (0-255, a 0-1), read back through a 1x1 canvas. */
export function parseColor(css: string): [number, number, number, number] {
  const c = document.createElement('canvas');
  c.width = c.height = 1;
  const g = c.getContext('2d', { willReadFrequently: true })!;
  g.clearRect(0, 0, 1, 1);
  g.fillStyle = '#888';
  g.fillStyle = css;
  g.fillRect(0, 0, 1, 1);
  const d = g.getImageData(0, 0, 1, 1).data;
  return [d[0]!, d[1]!, d[2]!, d[3]! / 255];
}

/** `fg` at opacity `alpha` (times its own alpha) over the opaque `bg`. */
export function blend(fg: readonly number[], bg: readonly number[], alpha: number): [number, number, number] {
  const a = alpha * (fg[3] ?? 1);
  return [0, 1, 2].map((i) => Math.round(fg[i]! * a + bg[i]! * (1 - a))) as [number, number, number];
}
