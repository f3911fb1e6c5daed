// Draws media/icon.png (128x128): a four-level page-table radix tree, the walk to one leaf highlighted.
// Run once by hand when the design changes; the PNG is committed.
import { deflateSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';

const W = 128, H = 128;
const px = new Uint8Array(W * H * 4);
function fill(x0, y0, w, h, [r, g, b, a = 255]) {
  for (let y = Math.max(0, y0); y < Math.min(H, y0 + h); y++)
    for (let x = Math.max(0, x0); x < Math.min(W, x0 + w); x++) {
      const i = (y * W + x) * 4; px[i] = r; px[i + 1] = g; px[i + 2] = b; px[i + 3] = a;
    }
}
function line(x0, y0, x1, y1, c, t = 2) {
  const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0));
  for (let s = 0; s <= n; s++) fill(Math.round(x0 + ((x1 - x0) * s) / n) - (t >> 1), Math.round(y0 + ((y1 - y0) * s) / n) - (t >> 1), t, t, c);
}
const bg = [30, 34, 48], dim = [110, 122, 150], hot = [255, 176, 46], leaf = [86, 196, 140];
// rounded background
for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
  const dx = Math.max(0, Math.abs(x - 63.5) - 48), dy = Math.max(0, Math.abs(y - 63.5) - 48);
  if (dx * dx + dy * dy <= 16 * 16) fill(x, y, 1, 1, bg);
}
const levels = [[64], [34, 94], [20, 48, 80, 108], [12, 28, 40, 56, 72, 88, 100, 116]];
const ys = [18, 46, 74, 102];
const path = [0, 1, 2, 5];
for (let l = 0; l < 3; l++) levels[l].forEach((x, i) => {
  for (const j of [2 * i, 2 * i + 1]) {
    const on = path[l] === i && path[l + 1] === j;
    line(x, ys[l] + 6, levels[l + 1][j], ys[l + 1] - 6, on ? hot : dim, on ? 3 : 2);
  }
});
levels.forEach((xs, l) => xs.forEach((x, i) => {
  const on = path[l] === i;
  const c = l === 3 ? (on ? hot : leaf) : on ? hot : dim;
  const w = l === 3 ? 10 : 18;
  fill(x - w / 2, ys[l] - 6, w, 12, c);
}));
function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) { c = (crc ^ b) & 0xff; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; crc = (crc >>> 8) ^ c; }
  return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
const raw = Buffer.alloc((W * 4 + 1) * H);
for (let y = 0; y < H; y++) { raw[y * (W * 4 + 1)] = 0; Buffer.from(px.buffer, y * W * 4, W * 4).copy(raw, y * (W * 4 + 1) + 1); }
const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(W, 0); ihdr.writeUInt32BE(H, 4); ihdr[8] = 8; ihdr[9] = 6;
writeFileSync('media/icon.png', Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]));
console.log('media/icon.png written');
