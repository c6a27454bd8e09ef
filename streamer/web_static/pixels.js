// Pixels in and out of the network, as streamer/processing.py does them (OpenCV's resize, rounding and layout),
// so that the page's output of a frame matches `streamer convert` of the same frame. Pure functions on RGBA
// Uint8ClampedArray buffers (the canvas layout); no DOM, so Node can test them too.

export const MULTIPLE = 8;          // engines pad H and W to this (reflect) and crop the output back
export const PREDICTOR_SIDE = 256;  // the style predictor's square input

// Python's round(): half to even.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// streamer.adaptive.scaled / processing.processing_size: scaled (never up) so the longer side is longSide.
export function scaledSize(width, height, longSide) {
  const s = Math.min(1, longSide / Math.max(width, height));
  return [Math.max(1, roundHalfEven(width * s)), Math.max(1, roundHalfEven(height * s))];
}

// cv2.INTER_AREA for a shrink: integer factors average whole blocks, other factors weigh the pixels by the
// share of each output cell they cover (OpenCV's computeResizeAreaTab), separably.
function areaTable(ssize, dsize) {
  const scale = ssize / dsize;
  const tab = [];
  for (let d = 0; d < dsize; d++) {
    const fs1 = d * scale, fs2 = fs1 + scale;
    const cell = Math.min(scale, ssize - fs1);
    let s1 = Math.ceil(fs1), s2 = Math.floor(fs2);
    s2 = Math.min(s2, ssize - 1);
    s1 = Math.min(s1, s2);
    const taps = [];
    if (s1 - fs1 > 1e-3) taps.push([s1 - 1, (s1 - fs1) / cell]);
    for (let s = s1; s < s2; s++) taps.push([s, 1 / cell]);
    if (fs2 - s2 > 1e-3) taps.push([s2, Math.min(Math.min(fs2 - s2, 1), cell) / cell]);
    tab.push(taps);
  }
  return tab;
}

function flatTable(tab) {
  const start = new Int32Array(tab.length + 1);
  tab.forEach((taps, d) => { start[d + 1] = start[d] + taps.length; });
  const index = new Int32Array(start[tab.length]), weight = new Float32Array(start[tab.length]);
  tab.forEach((taps, d) => taps.forEach(([i, w], j) => { index[start[d] + j] = i; weight[start[d] + j] = w; }));
  return { start, index, weight };
}

export function resizeArea(src, sw, sh, dw, dh) {
  const dst = new Uint8ClampedArray(dw * dh * 4);
  const fx = sw / dw, fy = sh / dh;
  if (Number.isInteger(fx) && Number.isInteger(fy)) {        // resizeAreaFast: block sums, rounded
    const area = fx * fy, inv = Math.fround(1 / area);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < fy; j++) {
          let i = ((y * fy + j) * sw + x * fx) * 4;
          for (let k = 0; k < fx; k++, i += 4) { r += src[i]; g += src[i + 1]; b += src[i + 2]; }
        }
        const o = (y * dw + x) * 4;
        if (area === 4) {                                     // the SIMD 2x2 path: (sum + 2) >> 2
          dst[o] = (r + 2) >> 2; dst[o + 1] = (g + 2) >> 2; dst[o + 2] = (b + 2) >> 2;
        } else {
          dst[o] = Math.fround(r * inv); dst[o + 1] = Math.fround(g * inv); dst[o + 2] = Math.fround(b * inv);
        }
        dst[o + 3] = 255;
      }
    }
    return dst;
  }
  // separable: each source row filtered horizontally once (float), then the rows weighed per output row
  const xt = flatTable(areaTable(sw, dw)), yt = flatTable(areaTable(sh, dh));
  const rows = new Float32Array(sh * dw * 3);
  for (let sy = 0; sy < sh; sy++) {
    const base = sy * sw * 4, o = sy * dw * 3;
    for (let x = 0; x < dw; x++) {
      let r = 0, g = 0, b = 0;
      for (let t = xt.start[x]; t < xt.start[x + 1]; t++) {
        const i = base + xt.index[t] * 4, a = xt.weight[t];
        r += src[i] * a; g += src[i + 1] * a; b += src[i + 2] * a;
      }
      rows[o + x * 3] = r; rows[o + x * 3 + 1] = g; rows[o + x * 3 + 2] = b;
    }
  }
  const acc = new Float32Array(dw * 3);
  for (let y = 0; y < dh; y++) {
    acc.fill(0);
    for (let t = yt.start[y]; t < yt.start[y + 1]; t++) {
      const o = yt.index[t] * dw * 3, beta = yt.weight[t];
      for (let k = 0; k < dw * 3; k++) acc[k] += beta * rows[o + k];
    }
    for (let x = 0; x < dw; x++) {
      const o = (y * dw + x) * 4;
      dst[o] = acc[x * 3]; dst[o + 1] = acc[x * 3 + 1]; dst[o + 2] = acc[x * 3 + 2]; dst[o + 3] = 255;
    }
  }
  return dst;
}

// cv2.INTER_CUBIC (A = -0.75) and cv2.INTER_LINEAR on uint8: OpenCV's fixed point (11-bit coefficients per
// axis, rounded once at the end), borders replicated.
const COEF_SCALE = 2048;

function cubicCoeffs(x) {
  const A = -0.75;
  const c0 = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
  const c1 = ((A + 2) * x - (A + 3)) * x * x + 1;
  const c2 = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
  return [c0, c1, c2, 1 - c0 - c1 - c2];
}

function kernelTable(ssize, dsize, cubic) {
  const scale = ssize / dsize;
  const first = new Int32Array(dsize), coef = new Int32Array(dsize * (cubic ? 4 : 2));
  const k = cubic ? 4 : 2;
  for (let d = 0; d < dsize; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f -= s;
    if (!cubic && s < 0) { f = 0; s = 0; }
    if (!cubic && s >= ssize - 1) { f = 0; s = ssize - 1; }
    const c = cubic ? cubicCoeffs(f) : [1 - f, f];
    first[d] = cubic ? s - 1 : s;
    for (let j = 0; j < k; j++) coef[d * k + j] = roundHalfEven(Math.fround(c[j]) * COEF_SCALE);
  }
  return { first, coef, k };
}

function resizeKernel(src, sw, sh, dw, dh, cubic) {
  const xt = kernelTable(sw, dw, cubic), yt = kernelTable(sh, dh, cubic);
  const k = xt.k;
  const rows = new Map();                     // source row -> horizontally filtered row (ints, 3 per pixel)
  const hrow = (sy) => {
    sy = Math.min(Math.max(sy, 0), sh - 1);
    let r = rows.get(sy);
    if (r) return r;
    r = new Float64Array(dw * 3);
    const base = sy * sw * 4;
    for (let x = 0; x < dw; x++) {
      let a = 0, b = 0, c = 0;
      for (let j = 0; j < k; j++) {
        const sx = Math.min(Math.max(xt.first[x] + j, 0), sw - 1);
        const w = xt.coef[x * k + j], i = base + sx * 4;
        a += src[i] * w; b += src[i + 1] * w; c += src[i + 2] * w;
      }
      r[x * 3] = a; r[x * 3 + 1] = b; r[x * 3 + 2] = c;
    }
    rows.set(sy, r);
    return r;
  };
  const dst = new Uint8ClampedArray(dw * dh * 4);
  const shift = COEF_SCALE * COEF_SCALE, delta = shift / 2;
  for (let y = 0; y < dh; y++) {
    const taps = [];
    for (let j = 0; j < k; j++) taps.push([hrow(yt.first[y] + j), yt.coef[y * k + j]]);
    for (let x = 0; x < dw; x++) {
      for (let ch = 0; ch < 3; ch++) {
        let v = 0;
        for (const [r, w] of taps) v += r[x * 3 + ch] * w;
        dst[(y * dw + x) * 4 + ch] = Math.floor((v + delta) / shift);
      }
      dst[(y * dw + x) * 4 + 3] = 255;
    }
    if (rows.size > 8) for (const key of rows.keys()) { if (key < yt.first[y]) rows.delete(key); }
  }
  return dst;
}

export const resizeCubic = (src, sw, sh, dw, dh) => resizeKernel(src, sw, sh, dw, dh, true);
export const resizeLinear = (src, sw, sh, dw, dh) => resizeKernel(src, sw, sh, dw, dh, false);

// processing.resize_rgb: area when shrinking, bilinear when enlarging, the same buffer when already that size.
export function resizeRgb(src, sw, sh, dw, dh) {
  if (sw === dw && sh === dh) return src;
  return dw < sw ? resizeArea(src, sw, sh, dw, dh) : resizeLinear(src, sw, sh, dw, dh);
}

// processing.to_rgb's upscale: cubic, the same buffer when already that size.
export function resizeOutput(src, sw, sh, dw, dh) {
  if (sw === dw && sh === dh) return src;
  return resizeCubic(src, sw, sh, dw, dh);
}

// numpy.pad(mode="reflect") index, one bounce.
const reflect = (i, n) => (i < n ? i : 2 * n - 2 - i);

// processing.to_nchw + the engine's reflect pad to MULTIPLE: RGBA uint8 (w x h) -> [1,3,PH,PW] float32 0..1.
const INV255 = Math.fround(1 / 255);
export function toNCHW(rgba, w, h, multiple = MULTIPLE) {
  const pw = Math.ceil(w / multiple) * multiple, ph = Math.ceil(h / multiple) * multiple;
  const plane = pw * ph;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < ph; y++) {
    const sy = reflect(y, h);
    for (let x = 0; x < pw; x++) {
      const i = (sy * w + reflect(x, w)) * 4, o = y * pw + x;
      out[o] = rgba[i] * INV255;
      out[plane + o] = rgba[i + 1] * INV255;
      out[2 * plane + o] = rgba[i + 2] * INV255;
    }
  }
  return { data: out, pw, ph };
}

// processing.to_rgb before the resize: [1,3,PH,PW] float32 -> the top-left w x h as RGBA uint8
// (cv2.max(x, 0) then convertScaleAbs(alpha=255): float32 product, saturated, half to even).
export function fromNCHW(data, pw, ph, w, h) {
  const plane = pw * ph;
  const dst = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * pw + x, o = (y * w + x) * 4;
      dst[o] = Math.fround(Math.max(data[i], 0) * 255);
      dst[o + 1] = Math.fround(Math.max(data[plane + i], 0) * 255);
      dst[o + 2] = Math.fround(Math.max(data[2 * plane + i], 0) * 255);
      dst[o + 3] = 255;
    }
  }
  return dst;
}

// media_files.center_square + StyleEncoder.encode_image: the largest centred square at side x side (area when
// shrinking, cubic when enlarging), NHWC float32 0..1 ([1, side, side, 3]).
export function centerSquare(rgba, w, h, side = PREDICTOR_SIDE) {
  const s = Math.min(w, h);
  const top = Math.floor((h - s) / 2), left = Math.floor((w - s) / 2);
  const crop = new Uint8ClampedArray(s * s * 4);
  for (let y = 0; y < s; y++) crop.set(rgba.subarray(((top + y) * w + left) * 4, ((top + y) * w + left + s) * 4), y * s * 4);
  const sq = s === side ? crop : s > side ? resizeArea(crop, s, s, side, side) : resizeCubic(crop, s, s, side, side);
  const out = new Float32Array(side * side * 3);
  for (let p = 0; p < side * side; p++) {
    out[p * 3] = sq[p * 4] / 255;
    out[p * 3 + 1] = sq[p * 4 + 1] / 255;
    out[p * 3 + 2] = sq[p * 4 + 2] / 255;
  }
  return out;
}

// style_sources.mix_style: s*style + (1-s)*content.
export function mixStyle(style, content, strength) {
  if (strength >= 1 || !content) return style;
  const out = new Float32Array(style.length);
  for (let i = 0; i < style.length; i++) out[i] = strength * style[i] + (1 - strength) * content[i];
  return out;
}

// temporal.EmaSmoothing: out_t = a*y_t + (1-a)*out_{t-1} in float, shown rounded; starts over on a size change.
export class Ema {
  constructor(alpha = 0.7) { this.alpha = alpha; this.prev = null; }
  reset() { this.prev = null; }
  apply(rgba) {
    const n = rgba.length, a = this.alpha;
    if (!this.prev || this.prev.length !== n) {
      this.prev = Float32Array.from(rgba);
      return rgba;
    }
    const prev = this.prev, out = new Uint8ClampedArray(n);
    for (let i = 0; i < n; i++) {
      const v = a * rgba[i] + (1 - a) * prev[i];
      prev[i] = v;
      out[i] = Math.floor(v + 0.5);
    }
    return out;
  }
}
