// streamer in the browser: the camera (or the sample clip) -> the student ONNX in ONNX Runtime Web -> a canvas.
// Pre/post-processing is pixels.js (the same as streamer/processing.py); the size follows adaptive.js's ladder.
// window.streamer exposes the state and a few hooks (stats, grab, stylize, encode, set*) for tests and power users.
// Query parameters: backend=auto|webgpu|wasm, size=auto|N, smooth=ema|off, style=NAME, strength=0..1,
// source=camera|sample, threads=N (WASM threads).
import * as px from './pixels.js';
import { AdaptiveSize } from './adaptive.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const video = $('camera'), outCanvas = $('output'), overlay = $('overlay');
const outCtx = outCanvas.getContext('2d');
const grabCanvas = document.createElement('canvas');
const grabCtx = grabCanvas.getContext('2d', { willReadFrequently: true });
const recCanvas = document.createElement('canvas');
const recCtx = recCanvas.getContext('2d');

const state = {
  config: null, ort: null, backend: null, threads: 1, session: null, predictor: null, io: null,
  styles: new Map(), styleName: null, strength: 1, smoothing: 'ema', sizeMode: 'auto',
  content: null, contentFrom: null, generation: 0,
  source: { kind: null, label: '' }, adaptive: null, processing: [0, 0], camera: [0, 0], cameraFps: 30,
  frames: 0, times: [], latencies: [], stages: [], work: [], dropped: 0, firstFrameMs: null, modelLoadMs: null,
  last: null, error: null, notices: [], ema: null, emaKey: '', recorder: null, carry: {},
};
let frameSeq = 0, presented = 0, wake = null;
let readyResolve, firstResolve;
const ready = new Promise((r) => { readyResolve = r; });
const firstFrame = new Promise((r) => { firstResolve = r; });

// --- messages ------------------------------------------------------------------------------------------------
function showMessage(text, { notice = false, actions = [] } = {}) {
  const box = $('message');
  box.replaceChildren(document.createTextNode(text));
  for (const { label, run } of actions) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', () => { box.hidden = true; run(); });
    box.append(b);
  }
  box.className = notice ? 'notice' : '';
  box.hidden = false;
  if (notice) state.notices.push(text); else state.error = text;
}
const clearMessage = () => { $('message').hidden = true; };

// --- ONNX Runtime Web ----------------------------------------------------------------------------------------
async function pickBackend() {
  const want = params.get('backend') || 'auto';
  $('backend').value = want;
  if (want !== 'wasm' && navigator.gpu) {
    try { if (await navigator.gpu.requestAdapter()) return 'webgpu'; } catch { /* no adapter: WASM */ }
  }
  if (want === 'webgpu') showMessage('WebGPU is not available in this browser; running on WASM.', { notice: true });
  return 'wasm';
}

async function loadOrt(backend) {
  const file = backend === 'webgpu' ? 'ort.webgpu.min.mjs' : 'ort.wasm.min.mjs';
  const url = new URL(state.config.ort.path + file, location.href).href;
  let ort;
  try {
    ort = await import(url);
  } catch (e) {
    throw new Error(`ONNX Runtime Web (${url}) failed to load: ${e.message}. On the server, run \`make web\`.`);
  }
  ort.env.wasm.wasmPaths = new URL(state.config.ort.path, location.href).href;
  // ONNX Runtime Web's own default: half the cores (at most 4), leaving the rest to this page's pixel work; it
  // measured faster than all cores on a busy 2-core machine. Threads need a cross-origin isolated page.
  const cores = navigator.hardwareConcurrency || 1;
  state.threads = !self.crossOriginIsolated ? 1 : Number(params.get('threads')) || Math.min(4, Math.ceil(cores / 2));
  ort.env.wasm.numThreads = state.threads;
  return ort;
}

async function loadModel({ file, url }, providers) {
  let bytes;
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`HTTP ${r.status} ${r.statusText}`);
    bytes = new Uint8Array(await r.arrayBuffer());
  } catch (e) {
    throw new Error(`model ${file} (${url}) could not be downloaded: ${e.message}`);
  }
  try {
    return await state.ort.InferenceSession.create(bytes, { executionProviders: providers, graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new Error(`model ${file} failed to load in ONNX Runtime Web ${state.config.ort.version} ` +
      `(${providers.join(', ')}): ${e.message || e}`);
  }
}

function checkContract(session, file) {
  const ins = session.inputNames, outs = session.outputNames;
  if (!ins.includes('frame') || !ins.includes('style')) {
    throw new Error(`model ${file} failed to load: not the student contract (inputs ${ins.join(', ')}; ` +
      'expected frame [N,3,H,W] and style [N,100])');
  }
  // a stateful student (student-hq: whole-frame moments carried from frame to frame) has a `state` input, served
  // without its default (streamer/web_server.py), and a `state_out` output fed back on the next frame
  const stateSize = ins.includes('state') && outs.includes('state_out') ? state.config.model.state_size : 0;
  return { frame: 'frame', style: 'style', out: outs.includes('stylized') ? 'stylized' : outs[0], stateSize };
}

function sameVector(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// --- the network ---------------------------------------------------------------------------------------------
// RGBA (w x h, already at the processing size) -> RGBA stylized at that size (uint8, before any upscale).
// `carry`: where a stateful student keeps its state between calls (the live loop's; a still gets a fresh one)
async function runStudent(rgba, w, h, vector, carry = {}) {
  const ort = state.ort;
  const x = px.toNCHW(rgba, w, h);
  const feeds = {
    [state.io.frame]: new ort.Tensor('float32', x.data, [1, 3, x.ph, x.pw]),
    [state.io.style]: new ort.Tensor('float32', vector, [1, vector.length]),
  };
  const n = state.io.stateSize;
  if (n) {   // zeros: no previous frame (the first one, a new style or size); the graph notices cuts itself
    if (!carry.state || !sameVector(carry.style, vector) || carry.size !== `${w}x${h}`) carry.state = new Float32Array(n);
    feeds.state = new ort.Tensor('float32', carry.state, [1, n]);
  }
  const result = await state.session.run(feeds);
  if (n) {
    carry.state = Float32Array.from(result.state_out.data ?? await result.state_out.getData());
    carry.style = Float32Array.from(vector);
    carry.size = `${w}x${h}`;
  }
  const y = result[state.io.out];
  const data = y.data ?? await y.getData();
  const out = px.fromNCHW(data, x.pw, x.ph, w, h);
  for (const t of Object.values(result)) t.dispose?.();
  return out;
}

// RGBA (w x h) -> the 100-d style vector (StyleEncoder.encode_image: centre square at 256, NHWC 0..1).
async function encodeStyle(rgba, w, h) {
  const ort = state.ort;
  const x = px.centerSquare(rgba, w, h);
  const name = state.predictor.inputNames[0];
  const result = await state.predictor.run({ [name]: new ort.Tensor('float32', x, [1, px.PREDICTOR_SIDE, px.PREDICTOR_SIDE, 3]) });
  const y = result[state.predictor.outputNames[0]];
  return Float32Array.from(y.data ?? await y.getData());
}

function styleVector() {
  return px.mixStyle(state.styles.get(state.styleName).vector, state.content, state.strength);
}

// --- styles --------------------------------------------------------------------------------------------------
function addStyleButton(name, thumbUrl) {
  const b = document.createElement('button');
  b.type = 'button';
  b.dataset.style = name;
  b.title = name;
  const img = document.createElement('img');
  img.src = thumbUrl;
  img.alt = name;
  const label = document.createElement('span');
  label.textContent = name;
  b.append(img, label);
  b.addEventListener('click', () => setStyle(name));
  $('styles').append(b);
}

function setStyle(name) {
  if (!state.styles.has(name)) throw new Error(`${name}: no such style (have ${[...state.styles.keys()].join(', ')})`);
  if (name !== state.styleName) state.generation++;
  state.styleName = name;
  for (const b of $('styles').children) b.setAttribute('aria-pressed', String(b.dataset.style === name));
}

async function decodeImage(blob, name) {
  try {
    return await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`${name}: not an image the browser can read${blob.type ? ` (${blob.type})` : ''}`);
  }
}

function bitmapPixels(bitmap) {
  const c = document.createElement('canvas');
  c.width = bitmap.width;
  c.height = bitmap.height;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { data: ctx.getImageData(0, 0, c.width, c.height).data, w: c.width, h: c.height };
}

async function uploadStyle(file) {
  try {
    if (file.type && !file.type.startsWith('image/')) throw new Error(`${file.name}: not an image (${file.type})`);
    const bitmap = await decodeImage(file, file.name);
    const { data, w, h } = bitmapPixels(bitmap);
    const vector = await encodeStyle(data, w, h);
    let name = file.name;
    for (let i = 2; state.styles.has(name); i++) name = `${file.name} (${i})`;
    state.styles.set(name, { vector, uploaded: true });
    addStyleButton(name, URL.createObjectURL(file));
    setStyle(name);
    clearMessage();
  } catch (e) {
    showMessage(e.message);
  }
}

// --- sources -------------------------------------------------------------------------------------------------
function describeCameraError(e) {
  const why = {
    NotAllowedError: 'permission to use the camera was denied',
    NotFoundError: 'no camera was found',
    NotReadableError: 'the camera is in use by another program or cannot be read',
    OverconstrainedError: 'the camera cannot deliver the requested format',
    SecurityError: 'camera access is blocked on this page',
    AbortError: 'the camera could not be started',
  }[e?.name];
  return why ? `${why} (${e.name})` : (e?.message || String(e));
}

function stopSource() {
  state.carry = {};   // another video: a stateful student starts afresh
  const stream = video.srcObject;
  if (stream) for (const t of stream.getTracks()) t.stop();
  video.srcObject = null;
  video.removeAttribute('src');
  state.content = null;
  state.adaptive = null;
}

async function startCamera(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw Object.assign(new Error('this page has no camera access (browsers allow it on https:// and localhost only)'),
      { name: 'SecurityError' });
  }
  const constraints = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
  if (deviceId) constraints.deviceId = { exact: deviceId };
  const stream = await navigator.mediaDevices.getUserMedia({ video: constraints, audio: false });
  stopSource();
  video.srcObject = stream;
  video.loop = false;
  await video.play();
  const track = stream.getVideoTracks()[0];
  const settings = track.getSettings();
  state.cameraFps = settings.frameRate || 30;
  state.source = { kind: 'camera', label: track.label || 'camera', deviceId: settings.deviceId };
  setMirror(true);
  await listCameras(settings.deviceId);
  track.addEventListener('ended', () => showMessage('The camera stopped (unplugged?).', {
    actions: [{ label: 'Use the sample clip', run: startSample }, { label: 'Retry the camera', run: () => tryCamera() }],
  }));
}

async function startSample() {
  stopSource();
  video.srcObject = null;
  video.src = state.config.sample;
  video.loop = true;
  video.muted = true;
  state.cameraFps = 30;
  state.source = { kind: 'sample', label: 'sample clip' };
  $('source').value = 'sample';
  setMirror(false);
  try {
    await video.play();
  } catch (e) {
    showMessage(`The sample clip (${state.config.sample}) cannot play: ${e.message}`);
  }
}

async function tryCamera(deviceId) {
  try {
    await startCamera(deviceId);
    clearMessage();
  } catch (e) {
    showMessage(`Camera unavailable: ${describeCameraError(e)}.`, {
      actions: [{ label: 'Use the sample clip instead', run: startSample }],
    });
    state.source = { kind: null, label: 'no camera' };
  }
}

async function listCameras(current) {
  const select = $('source');
  let devices = [];
  try { devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput'); } catch { /* none */ }
  select.replaceChildren();
  devices.forEach((d, i) => select.append(new Option(d.label.split('/').pop() || `Camera ${i + 1}`, d.deviceId)));
  select.append(new Option('Sample clip', 'sample'));
  select.value = current && devices.some((d) => d.deviceId === current) ? current : (devices[0]?.deviceId ?? 'sample');
}

function setMirror(on) {
  $('mirror').checked = on;
  video.classList.toggle('mirrored', on);
  outCanvas.classList.toggle('mirrored', on);
}

// --- the frame loop ------------------------------------------------------------------------------------------
function onVideoFrame(_now, meta) {
  frameSeq++;
  presented = meta?.presentedFrames ?? frameSeq;
  if (wake) { const w = wake; wake = null; w(); }
  video.requestVideoFrameCallback(onVideoFrame);
}

function nextFrame(seen) {
  if (frameSeq > seen) return Promise.resolve();
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) return new Promise((r) => { wake = r; });
  return new Promise((r) => setTimeout(r, 10));       // no rVFC: poll
}

function currentSize(w, h) {
  if (state.sizeMode !== 'auto') return px.scaledSize(w, h, Math.min(state.sizeMode, state.config.max_side));
  const a = state.adaptive;
  if (!a || a.width !== w || a.height !== h || a.fps !== state.cameraFps) {
    state.adaptive = new AdaptiveSize(w, h, state.cameraFps, { ladder: state.config.ladder });
  }
  return state.adaptive.size;
}

async function processFrame() {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return;
  const t0 = performance.now();
  if (grabCanvas.width !== w || grabCanvas.height !== h) { grabCanvas.width = w; grabCanvas.height = h; }
  grabCtx.drawImage(video, 0, 0, w, h);
  const input = grabCtx.getImageData(0, 0, w, h).data;
  if (state.strength < 1 && !state.content) {       // the frame's own look, as FixedStyle/StyleBank compute it once
    state.content = await encodeStyle(input, w, h);
  }
  const [pw, ph] = currentSize(w, h);
  const t1 = performance.now();
  const small = px.resizeRgb(input, w, h, pw, ph);
  const t2 = performance.now();
  const raw = await runStudent(small, pw, ph, styleVector(), state.carry);
  const t3 = performance.now();
  let shown = raw;
  if (state.smoothing === 'ema') {
    const key = `${pw}x${ph}:${state.generation}`;
    if (!state.ema || state.emaKey !== key) { state.ema = new px.Ema(state.config.ema_alpha); state.emaKey = key; }
    shown = state.ema.apply(raw);
  }
  if (outCanvas.width !== pw || outCanvas.height !== ph) { outCanvas.width = pw; outCanvas.height = ph; }
  outCtx.putImageData(new ImageData(shown, pw, ph), 0, 0);
  if (state.recorder) recCtx.drawImage(outCanvas, 0, 0, recCanvas.width, recCanvas.height);
  const t4 = performance.now();
  state.last = { input, w, h, output: shown, raw, pw, ph, style: state.styleName, strength: state.strength,
    smoothing: state.smoothing };
  state.processing = [pw, ph];
  state.camera = [w, h];
  state.frames++;
  state.times.push(t4);
  state.latencies.push(t4 - t0);
  state.work.push(t4 - t0);
  state.stages.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
  if (state.times.length > 120) { state.times.shift(); state.latencies.shift(); state.stages.shift(); }
  if (state.firstFrameMs === null) {
    state.firstFrameMs = t4;
    $('snapshot').disabled = false;
    $('record').disabled = false;
    firstResolve();
  }
  drawOverlay();
}

async function loop() {
  let seen = 0;
  for (;;) {
    await nextFrame(seen);
    seen = frameSeq;
    if (!state.session || video.readyState < 2) continue;
    try {
      await processFrame();
    } catch (e) {
      showMessage(`Stylizing failed: ${e.message || e}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

// Once a second: the adaptive ladder (auto size only), with the work per frame and the frames skipped.
let lastPresented = 0, lastFrames = 0;
function tick() {
  const skipped = Math.max(0, (presented - lastPresented) - (state.frames - lastFrames));
  lastPresented = presented;
  lastFrames = state.frames;
  state.dropped += skipped;
  const work = state.work.splice(0);
  if (state.sizeMode === 'auto' && state.adaptive && work.length) {
    const mean = work.reduce((a, b) => a + b, 0) / work.length;
    const change = state.adaptive.update(mean, skipped);
    if (change) console.info(`streamer: processing ${change.size.join('x')} (${change.reason})`);
  }
  drawOverlay();
}

function fps() {
  const t = state.times, now = performance.now();
  const recent = t.filter((x) => now - x < 2000);
  if (recent.length < 2) return 0;
  return (recent.length - 1) * 1000 / (recent[recent.length - 1] - recent[0]);
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function drawOverlay() {
  const s = stats();
  overlay.textContent = state.session
    ? `${s.fps.toFixed(1)} fps  ${s.latency_ms === null ? '-' : s.latency_ms.toFixed(0)} ms/frame\n` +
      `${s.backend}${s.backend === 'wasm' ? ` ×${state.threads}` : ''}  ${s.processing.join('×')}` +
      `${state.sizeMode === 'auto' ? ' (auto)' : ''}\n${s.style}  ${s.strength.toFixed(2)}  smooth ${s.smoothing}`
    : 'loading…';
}

// --- snapshot and recording ----------------------------------------------------------------------------------
function rgbaToPng(data, w, h) {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  c.getContext('2d').putImageData(new ImageData(data, w, h), 0, 0);
  return c.toDataURL('image/png');
}

const stamp = () => new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);

function download(href, name) {
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

function grab() {
  const last = state.last;
  if (!last) return null;
  const full = px.resizeOutput(last.output, last.pw, last.ph, last.w, last.h);
  return { input: rgbaToPng(last.input, last.w, last.h), output: rgbaToPng(full, last.w, last.h),
    size: [last.w, last.h], processing: [last.pw, last.ph], style: last.style, strength: last.strength,
    smoothing: last.smoothing };
}

function snapshot() {
  const g = grab();
  if (g) download(g.output, `streamer-${stamp()}.png`);
}

function toggleRecord() {
  if (state.recorder) { state.recorder.stop(); return; }
  [recCanvas.width, recCanvas.height] = state.camera;
  const mime = ['video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm'].find((m) => MediaRecorder.isTypeSupported(m));
  const rec = new MediaRecorder(recCanvas.captureStream(30), { mimeType: mime, videoBitsPerSecond: 4_000_000 });
  const chunks = [];
  rec.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  rec.onstop = () => {
    const url = URL.createObjectURL(new Blob(chunks, { type: 'video/webm' }));
    download(url, `streamer-${stamp()}.webm`);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    state.recorder = null;
    $('record').textContent = 'Record (WebM)';
  };
  state.recorder = rec;
  recCtx.drawImage(outCanvas, 0, 0, recCanvas.width, recCanvas.height);
  rec.start(500);
  $('record').textContent = 'Stop recording';
}

// --- the public object ---------------------------------------------------------------------------------------
// Mean milliseconds per frame of each step over the last 30 frames: grab (canvas readback; the predictor too on
// the frame that computes the content vector), resize, infer (tensor in, network, tensor out), show.
function stageMs() {
  const recent = state.stages.slice(-30);
  if (!recent.length) return null;
  const mean = (i) => recent.reduce((a, r) => a + r[i], 0) / recent.length;
  return { grab: mean(0), resize: mean(1), infer: mean(2), show: mean(3) };
}

function stats() {
  return {
    fps: fps(), frames: state.frames, latency_ms: median(state.latencies.slice(-30)), backend: state.backend,
    processing: [...state.processing], style: state.styleName, strength: state.strength, smoothing: state.smoothing,
    size_mode: state.sizeMode, camera: [...state.camera], camera_fps: state.cameraFps, source: state.source.kind,
    dropped: state.dropped, threads: state.threads, first_frame_ms: state.firstFrameMs,
    model_load_ms: state.modelLoadMs, model: state.config?.model.file ?? null,
    adaptive: state.adaptive ? state.adaptive.changes.slice(-10) : [], error: state.error,
    notices: [...state.notices], recording: !!state.recorder, stage_ms: stageMs(),
  };
}

function setStrength(s) {
  state.strength = Math.min(1, Math.max(0, Number(s)));
  $('strength').value = String(state.strength);
  $('strength-value').textContent = state.strength.toFixed(2);
}

function setSmoothing(mode) {
  if (!['ema', 'off'].includes(mode)) throw new Error(`${mode}: smoothing is ema or off`);
  state.smoothing = mode;
  state.ema = null;
  $('smooth').value = mode;
}

function setSize(mode) {
  state.sizeMode = mode === 'auto' ? 'auto' : Number(mode);
  $('size').value = String(mode);
}

// A still image through the same steps as `streamer convert IMAGE`: the processing size from longSide, the
// network, the upscale back; the content vector for strength < 1 from the image itself. Returns a PNG data URL.
async function stylize(url, { style = state.styleName, longSide = state.config.max_side, strength = 1 } = {}) {
  await ready;
  const blob = await (await fetch(url)).blob();
  const { data, w, h } = bitmapPixels(await decodeImage(blob, url));
  const [pw, ph] = px.scaledSize(w, h, Math.min(longSide, state.config.max_side));
  let vector = state.styles.get(style).vector;
  if (strength < 1) vector = px.mixStyle(vector, await encodeStyle(data, w, h), strength);
  const t0 = performance.now();
  const out = await runStudent(px.resizeRgb(data, w, h, pw, ph), pw, ph, vector);
  const ms = performance.now() - t0;
  return { output: rgbaToPng(px.resizeOutput(out, pw, ph, w, h), w, h), processing: [pw, ph], ms };
}

async function encode(url) {
  await ready;
  const blob = await (await fetch(url)).blob();
  const { data, w, h } = bitmapPixels(await decodeImage(blob, url));
  return Array.from(await encodeStyle(data, w, h));
}

window.streamer = {
  stats, grab, stylize, encode, setStyle, setStrength, setSmoothing, setSize, snapshot, ready, firstFrame,
  styles: () => [...state.styles.keys()],
  styleVector: () => Array.from(styleVector()),
  useSample: startSample, useCamera: tryCamera,
};

// --- start ---------------------------------------------------------------------------------------------------
function wireControls() {
  $('strength').addEventListener('input', (e) => setStrength(e.target.value));
  $('smooth').addEventListener('change', (e) => setSmoothing(e.target.value));
  $('size').addEventListener('change', (e) => setSize(e.target.value));
  $('mirror').addEventListener('change', (e) => setMirror(e.target.checked));
  $('snapshot').addEventListener('click', snapshot);
  $('record').addEventListener('click', toggleRecord);
  $('upload').addEventListener('change', (e) => { const f = e.target.files[0]; if (f) uploadStyle(f); e.target.value = ''; });
  $('backend').addEventListener('change', (e) => {
    const q = new URLSearchParams(location.search);
    q.set('backend', e.target.value);
    location.search = q.toString();
  });
  $('source').addEventListener('change', (e) => {
    if (e.target.value === 'sample') startSample(); else tryCamera(e.target.value);
  });
  for (const side of state.config.ladder) $('size').append(new Option(`${side} px`, String(side)));
}

async function main() {
  try {
    const r = await fetch('config.json');
    if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
    state.config = await r.json();
  } catch (e) {
    showMessage(`The page's configuration could not be loaded (${e.message}); is \`streamer web\` running?`);
    return;
  }
  wireControls();
  setSmoothing(params.get('smooth') || 'ema');
  setSize(params.get('size') || 'auto');
  setStrength(params.get('strength') ?? 1);
  for (const s of state.config.styles) {
    state.styles.set(s.name, { vector: Float32Array.from(s.vector), url: s.url });
    addStyleButton(s.name, s.url);
  }
  setStyle(params.get('style') && state.styles.has(params.get('style')) ? params.get('style') : state.config.default_style);
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) video.requestVideoFrameCallback(onVideoFrame);
  else setInterval(() => { frameSeq++; presented++; }, 1000 / 30);
  setInterval(tick, 1000);
  const sourceStarted = params.get('source') === 'sample' ? startSample() : tryCamera();
  try {
    const t0 = performance.now();
    state.backend = await pickBackend();
    state.ort = await loadOrt(state.backend);
    const providers = state.backend === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'];
    try {
      state.session = null;
      const session = await loadModel(state.config.model, providers);
      state.io = checkContract(session, state.config.model.file);
      state.predictor = await loadModel(state.config.predictor, ['wasm']);
      state.session = session;
    } catch (e) {
      if (state.backend !== 'webgpu') throw e;
      showMessage(`WebGPU failed (${e.message}); running on WASM.`, { notice: true });
      state.backend = 'wasm';
      const session = await loadModel(state.config.model, ['wasm']);
      state.io = checkContract(session, state.config.model.file);
      state.predictor = state.predictor || await loadModel(state.config.predictor, ['wasm']);
      state.session = session;
    }
    state.modelLoadMs = performance.now() - t0;
  } catch (e) {
    showMessage(e.message || String(e));
    drawOverlay();
    return;
  }
  readyResolve();
  drawOverlay();
  await sourceStarted;
  loop();
}

main();
