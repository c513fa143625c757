// The annotation page (cfcls/data/annotation_server.py documents the routes).
// Scribbles are a class-id map (Uint8Array, 255 = unlabelled) at the photo's
// resolution. After each stroke the map is sent to /api/solve as it is (one
// byte a pixel: a PNG would take the browser longer to encode than the solve)
// and the closed-form labels come back as an overlay PNG; an answer to an
// older stroke than the newest is dropped. Saves send an RGBA PNG with
// R = G = B = id; /api/scribbles answers in the same encoding.
'use strict';

const A = window.annotate = {
  state: null,      // /api/folder
  index: 0,         // the image shown
  cls: 1,           // the selected class id
  images: {},       // name -> {ids, undo: [], dirty, saved}
  seq: 0,           // the newest solve request (increasing across reloads)
  overlaySeq: 0,    // the request whose overlay is shown
  timings: [],      // {seq, ms: stroke end -> overlay drawn, solve, factor}
  strokes: [],      // {name, cls, width, erase, points: [[x, y], ...]}
  saves: 0,
  ready: false,
  error: null,
};

const $ = (id) => document.getElementById(id);
const photo = $('photo'), labels = $('labels'), strokes = $('strokes'),
      draw = $('draw');
const UNLABELLED = 255;
let W = 0, H = 0, strokeImage = null, drawing = null;

function current() { return A.state.images[A.index]; }
function entry() { return A.images[current().name]; }

function status(text, isError) {
  $('status').textContent = text;
  $('status').style.color = isError ? '#b00' : '#333';
  if (isError) A.error = text;
}

async function api(path, options) {
  const resp = await fetch(path, options);
  if (!resp.ok && resp.status !== 204) {
    let message = resp.status + ' ' + resp.statusText;
    try { message = (await resp.json()).error || message; } catch (e) {}
    throw new Error(message);
  }
  return resp;
}

function post(path, body, type) {
  return api(path, {method: 'POST', body,
                    headers: {'X-Annotate': '1', 'Content-Type': type}});
}

// ---- encoding of the id map
function idsToPng(ids) {
  const c = document.createElement('canvas');
  c.width = W; c.height = H;
  const ctx = c.getContext('2d');
  const im = ctx.createImageData(W, H);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    im.data[4 * i] = v; im.data[4 * i + 1] = v; im.data[4 * i + 2] = v;
    im.data[4 * i + 3] = 255;
  }
  ctx.putImageData(im, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, 'image/png'));
}

async function pngToIds(blob) {
  const bmp = await createImageBitmap(
      blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  const c = document.createElement('canvas');
  c.width = bmp.width; c.height = bmp.height;
  const ctx = c.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(bmp, 0, 0);
  const data = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
  const ids = new Uint8Array(bmp.width * bmp.height);
  for (let i = 0; i < ids.length; i++) ids[i] = data[4 * i];
  return ids;
}

// ---- drawing
function colour(id) { return A.state.colours[id]; }

function paintPixel(i) {
  const id = entry().ids[i], d = strokeImage.data;
  if (id === UNLABELLED) { d[4 * i + 3] = 0; return; }
  const c = colour(id);
  d[4 * i] = c[0]; d[4 * i + 1] = c[1]; d[4 * i + 2] = c[2];
  d[4 * i + 3] = 255;
}

function renderStrokes() {
  const ids = entry().ids;
  for (let i = 0; i < ids.length; i++) paintPixel(i);
  strokes.getContext('2d').putImageData(strokeImage, 0, 0);
}

// A width x width square around (x, y) (width odd), as the folder format's
// strokes (cfcls.data.scribbles.draw_polyline).
function stamp(x, y) {
  const ids = entry().ids, h = (A.width - 1) >> 1;
  const erase = $('erase').checked, all = $('eraseall').checked;
  for (let yy = Math.max(0, y - h); yy <= Math.min(H - 1, y + h); yy++) {
    for (let xx = Math.max(0, x - h); xx <= Math.min(W - 1, x + h); xx++) {
      const i = yy * W + xx;
      if (erase) {
        if (all || ids[i] === A.cls) ids[i] = UNLABELLED;
      } else {
        ids[i] = A.cls;
      }
      paintPixel(i);
    }
  }
}

// The 8-connected pixel line from (x0, y0) to (x1, y1) (Bresenham).
function line(x0, y0, x1, y1) {
  const dx = Math.abs(x1 - x0), dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    stamp(x0, y0);
    if (x0 === x1 && y0 === y1) break;
    const e2 = 2 * err;
    if (e2 >= dy) { err += dy; x0 += sx; }
    if (e2 <= dx) { err += dx; y0 += sy; }
  }
}

function pixelOf(ev) {
  const r = draw.getBoundingClientRect();
  const x = Math.floor((ev.clientX - r.left) * W / r.width);
  const y = Math.floor((ev.clientY - r.top) * H / r.height);
  return [Math.min(W - 1, Math.max(0, x)), Math.min(H - 1, Math.max(0, y))];
}

draw.addEventListener('pointerdown', (ev) => {
  if (!A.ready || ev.button !== 0) return;
  draw.setPointerCapture(ev.pointerId);
  const e = entry();
  e.undo.push(e.ids.slice());
  if (e.undo.length > 100) e.undo.shift();
  const p = pixelOf(ev);
  drawing = {name: current().name, cls: A.cls, width: A.width,
             erase: $('erase').checked, points: [p]};
  line(p[0], p[1], p[0], p[1]);
  strokes.getContext('2d').putImageData(strokeImage, 0, 0);
  ev.preventDefault();
});

draw.addEventListener('pointermove', (ev) => {
  if (!drawing) return;
  const p = pixelOf(ev), last = drawing.points[drawing.points.length - 1];
  if (p[0] === last[0] && p[1] === last[1]) return;
  line(last[0], last[1], p[0], p[1]);
  drawing.points.push(p);
  strokes.getContext('2d').putImageData(strokeImage, 0, 0);
});

function endStroke() {
  if (!drawing) return;
  A.strokes.push(drawing);
  drawing = null;
  markDirty();
  solve();
}
draw.addEventListener('pointerup', endStroke);
draw.addEventListener('pointercancel', endStroke);

function markDirty() {
  entry().dirty = true;
  $('imgname').classList.add('dirty');
  status(`${current().name}: not saved yet (s or the save button writes ` +
         `scribbles/${current().name}.png)`);
}

// ---- the closed-form labels
async function solve() {
  const name = current().name, ids = entry().ids.slice();
  const seq = A.seq = Math.max(A.seq + 1, Date.now());
  const t0 = performance.now();
  try {
    const t1 = performance.now();  // (sent as they are: one byte a pixel)
    const full = $('full').checked ? '&full=1' : '';
    const resp = await post(
        `/api/solve/${encodeURIComponent(name)}?seq=${seq}${full}`, ids,
        'application/octet-stream');
    if (resp.status === 204 || seq !== A.seq) return;  // a newer stroke won
    const t2 = performance.now();
    const bmp = await createImageBitmap(await resp.blob());
    if (seq !== A.seq || name !== current().name) return;
    const ctx = labels.getContext('2d');
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(bmp, 0, 0);
    const ms = performance.now() - t0;
    const solveS = parseFloat(resp.headers.get('X-Solve-Seconds'));
    const factor = parseInt(resp.headers.get('X-Factor'), 10);
    const unsure = parseFloat(resp.headers.get('X-Unsure'));
    A.overlaySeq = seq;
    // ms: stroke end -> overlay drawn; request: sent -> answered (the solve
    // included).
    A.timings.push({seq, ms, solve: solveS, factor, request: t2 - t1});
    $('teacher').textContent =
        `solved in ${solveS.toFixed(2)} s` +
        (factor > 1 ? ` (at 1/${factor} size)` : ' (full size)') +
        `, shown ${(ms / 1000).toFixed(2)} s after the stroke; ` +
        `unsure ${(100 * unsure).toFixed(1)} % (hatched)`;
  } catch (err) {
    status('solve: ' + err.message, true);
  }
}

// ---- images
async function load(index) {
  A.ready = false;
  A.index = (index + A.state.images.length) % A.state.images.length;
  const info = current();
  W = info.width; H = info.height;
  status(`loading ${info.name}…`);
  try {
    const bmp = await createImageBitmap(
        await (await api(`/api/image/${encodeURIComponent(info.name)}`)).blob());
    if (!A.images[info.name]) {
      const resp = await api(`/api/scribbles/${encodeURIComponent(info.name)}`);
      A.images[info.name] = {ids: await pngToIds(await resp.blob()), undo: [],
                             dirty: false};
    }
    const scale = fitScale();
    for (const c of [photo, labels, strokes, draw]) {
      c.width = W; c.height = H;
      c.style.width = (W * scale) + 'px'; c.style.height = (H * scale) + 'px';
    }
    photo.getContext('2d').drawImage(bmp, 0, 0);
    labels.getContext('2d').clearRect(0, 0, W, H);
    strokeImage = strokes.getContext('2d').createImageData(W, H);
    renderStrokes();
    $('imgname').textContent = info.name;
    $('imgname').classList.toggle('dirty', entry().dirty);
    $('counter').textContent = `${A.index + 1} / ${A.state.images.length}`;
    status(`${info.name}: ${W}x${H}` +
           (info.saved ? ', scribbles saved before' : ', no scribbles yet'));
    A.ready = true;
    solve();
  } catch (err) {
    status(`${info.name}: ${err.message}`, true);
  }
}

function fitScale() {
  const main = $('main');
  const s = Math.min((main.clientWidth - 20) / W, (main.clientHeight - 20) / H);
  return s >= 1 ? Math.min(Math.floor(s), 8) : s;
}

async function save() {
  const info = current(), e = entry();
  try {
    const resp = await post(`/api/save/${encodeURIComponent(info.name)}`,
                            await idsToPng(e.ids), 'image/png');
    const out = await resp.json();
    e.dirty = false;
    info.saved = true;
    A.saves += 1;
    $('imgname').classList.remove('dirty');
    status(`saved ${out.saved} (${out.labelled} labelled pixels)`);
  } catch (err) {
    status('save: ' + err.message, true);
    throw err;
  }
}

async function go(step) {
  if (!A.ready) return;
  if (entry().dirty && $('autosave').checked) {
    try { await save(); } catch (err) { return; }
  }
  load(A.index + step);
}

function undo() {
  const e = entry();
  if (!e.undo.length) return;
  e.ids = e.undo.pop();
  renderStrokes();
  markDirty();
  solve();
}

// ---- classes
function renderClasses() {
  const box = $('classes');
  box.textContent = '';
  A.state.classes.forEach((name, id) => {
    const row = document.createElement('div');
    row.className = 'cls' + (id === A.cls ? ' on' : '');
    row.dataset.id = id;
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${colour(id).join(',')})`;
    const text = document.createElement('span');
    text.textContent = `${id} ${name}`;  // textContent: names are not HTML
    row.append(sw, text);
    row.addEventListener('click', () => selectClass(id));
    box.append(row);
  });
}

function selectClass(id) {
  if (id < 0 || id >= A.state.classes.length) return;
  A.cls = id;
  renderClasses();
}

async function addClass() {
  const name = $('newclass').value.trim();
  if (!name) return;
  try {
    const resp = await post('/api/classes', JSON.stringify({name}),
                            'application/json');
    A.state.classes = (await resp.json()).classes;
    $('newclass').value = '';
    selectClass(A.state.classes.length - 1);
    status(`class ${A.state.classes.length - 1} ${name} added to classes.txt`);
  } catch (err) {
    status('add class: ' + err.message, true);
  }
}

function setWidth(w) {
  A.width = Math.max(1, Math.min(41, w | 1));
  $('width').value = A.width;
  $('widthval').textContent = A.width;
}

// ---- controls
$('prev').onclick = () => go(-1);
$('next').onclick = () => go(1);
$('save').onclick = () => save().catch(() => {});
$('undo').onclick = undo;
$('addclass').onclick = addClass;
$('newclass').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') addClass();
});
$('width').oninput = () => setWidth(parseInt($('width').value, 10));
$('overlay').onchange = () => {
  labels.style.display = $('overlay').checked ? '' : 'none';
};
$('opacity').oninput = () => {
  labels.style.opacity = $('opacity').value / 100;
};
$('full').onchange = () => solve();

document.addEventListener('keydown', (ev) => {
  if (ev.target.tagName === 'INPUT' && ev.target.type === 'text') return;
  const k = ev.key;
  if ((ev.ctrlKey || ev.metaKey) && k === 's') { ev.preventDefault(); save(); }
  else if ((ev.ctrlKey || ev.metaKey) && k === 'z') { ev.preventDefault(); undo(); }
  else if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  else if (k >= '0' && k <= '9') selectClass(parseInt(k, 10));
  else if (k === 'z') undo();
  else if (k === 's') save().catch(() => {});
  else if (k === 'n' || k === 'ArrowRight') go(1);
  else if (k === 'p' || k === 'ArrowLeft') go(-1);
  else if (k === 'e') $('erase').checked = !$('erase').checked;
  else if (k === 'o') { $('overlay').checked = !$('overlay').checked; $('overlay').onchange(); }
  else if (k === '[') setWidth(A.width - 2);
  else if (k === ']') setWidth(A.width + 2);
});

window.addEventListener('beforeunload', (ev) => {
  if (Object.values(A.images).some((e) => e.dirty)) ev.preventDefault();
});

(async () => {
  try {
    A.state = await (await api('/api/folder')).json();
    setWidth(5);
    A.cls = Math.min(1, A.state.classes.length - 1);
    renderClasses();
    labels.style.opacity = $('opacity').value / 100;
    await load(0);
  } catch (err) {
    status('cannot open the folder: ' + err.message, true);
  }
})();
