// The processing size moves along a ladder to hold the camera's frame rate: streamer/adaptive.py's AdaptiveSize,
// in the page. Once a second the page hands update() the work per frame (grab + resize + infer + postprocess,
// everything that scales with the pixels) and how many camera frames it skipped:
//   down at once when the work passes `high` x the frame interval or frames were skipped;
//   up only after `calmS` seconds below `low` x the interval, and only when the next size up is predicted
//   (by its pixel count) to stay under `high`; never more than one step per `minGapS`.
import { scaledSize } from './pixels.js';

export const LADDER = [720, 640, 540, 480, 400, 320];

export class AdaptiveSize {
  constructor(width, height, fps, { ladder = LADDER, high = 0.85, low = 0.55, calmS = 3, minGapS = 1, minSide = 32,
    startLongSide = ladder[0] } = {}) {
    Object.assign(this, { width, height, fps, high, low, calmS, minGapS });
    const native = Math.max(width, height);
    const sides = [...new Set(ladder.filter((s) => s <= Math.max(startLongSide, ladder[ladder.length - 1]))
      .map((s) => Math.min(s, native)))].sort((a, b) => b - a);
    this.ladder = sides.filter((s) => Math.min(...scaledSize(width, height, s)) >= minSide);
    if (!this.ladder.length) this.ladder = [sides[sides.length - 1]];
    this.index = 0;
    this.size = scaledSize(width, height, this.ladder[0]);
    this.lastChange = -1e9;
    this.calmSince = null;
    this.changes = [];
  }

  get intervalMs() { return 1000 / Math.max(this.fps, 1e-6); }

  // Returns the change made ({size, reason}) or null. `now` in seconds.
  update(workMsPerFrame, dropped, now = performance.now() / 1000) {
    const load = workMsPerFrame / this.intervalMs;
    if (load > this.high || dropped > 0) {
      this.calmSince = null;
      if (now - this.lastChange < this.minGapS || this.index + 1 >= this.ladder.length) return null;
      return this.move(+1, now, `${workMsPerFrame.toFixed(0)} ms/frame of ${this.intervalMs.toFixed(0)}` +
        (dropped ? `, ${dropped} dropped` : ''));
    }
    if (load < this.low && this.index > 0) {
      this.calmSince = this.calmSince ?? now;
      const bigger = scaledSize(this.width, this.height, this.ladder[this.index - 1]);
      const predicted = load * (bigger[0] * bigger[1]) / (this.size[0] * this.size[1]);
      if (now - this.calmSince >= this.calmS && now - this.lastChange >= this.minGapS && predicted < this.high) {
        this.calmSince = null;
        return this.move(-1, now, `${workMsPerFrame.toFixed(0)} ms/frame of ${this.intervalMs.toFixed(0)}, ` +
          `headroom for ${bigger[0]}x${bigger[1]}`);
      }
    } else {
      this.calmSince = null;
    }
    return null;
  }

  move(step, now, reason) {
    this.index += step;
    this.size = scaledSize(this.width, this.height, this.ladder[this.index]);
    this.lastChange = now;
    const change = { size: [...this.size], reason: (step > 0 ? 'down: ' : 'up: ') + reason };
    this.changes.push(change);
    return change;
  }
}
