// The explorer page: state, and what each control does. Plain ES modules, no build step.
import * as api from './api.js';
import { drawPhoto, fillPanel, loadImage, makePanel } from './panels.js';

const $ = id => document.getElementById(id);
const state = {
  models: [], methods: [], images: [], limits: { max_passes: 64, max_windows: 400 },
  model: null,        // the served model's description (api models)
  image: null,        // {id, name, group, ...}
  photo: null,        // the <img> of the image
  prediction: null,   // api predict
  box: null,          // a detector's chosen detection (box_number)
  targetClass: null,  // a classifier's chosen class (null: the predicted one)
  neuron: null,       // {layer, channel, y, x} picked in the overview
  overview: null,     // api channels of the chosen layer
  generation: 0,      // bumped by every change: answers to older requests are dropped
  chosen: new Set(['saliency', 'guided_backprop', 'gradcam']),
  settings: {},       // parameter values by name
  camLayer: '',
};

function showError(message) {
  const e = $('error');
  e.textContent = message;
  e.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { e.hidden = true; }, 10000);
}
function status(text) { $('status').textContent = text; }

// ---- the image ----
function buildGallery() {
  const gallery = $('gallery');
  gallery.innerHTML = '';
  for (const image of state.images) {
    const button = document.createElement('button');
    button.title = image.name;
    button.dataset.image = image.id;
    button.innerHTML = `<img alt="${image.name}" src="${api.url('image', { image: image.id })}">`;
    button.onclick = () => chooseImage(image);
    gallery.appendChild(button);
  }
}

function modelFor(image) {
  // Fashion samples go to FashionCNN, photos to the photo model, when both are served.
  const wanted = image.group === 'fashion' ? 'fashion' : image.group === 'photo' ? 'photo' : null;
  return state.models.find(m => m.id === wanted) || state.model;
}

async function chooseImage(image) {
  state.image = image;
  $('image-notes').textContent = '';
  const model = modelFor(image);
  if (model !== state.model) setModel(model);
  for (const b of $('gallery').querySelectorAll('button')) b.classList.toggle('chosen', b.dataset.image === image.id);
  state.photo = await loadImage(api.url('image', { image: image.id }));
  state.box = null;
  state.targetClass = null;
  await predict();
}

async function predict() {
  const generation = ++state.generation;
  status('predicting...');
  try {
    const p = await api.get('predict', { model: state.model.id, image: state.image.id });
    if (generation !== state.generation) return;
    state.prediction = p;
    if (p.detector && state.box === null && p.detections.length) state.box = p.detections[0].box_number;
    drawPrediction();
    await Promise.all([refreshOverview(), explainAll()]);
  } catch (e) {
    showError(e.message);
  } finally {
    status('');
  }
}

function drawPrediction() {
  const p = state.prediction;
  drawPhoto($('photo'), state.photo, p.detector ? p.detections : [], state.box);
  const rows = p.detector
    ? p.detections.map(d => `<tr data-box="${d.box_number}" class="${d.box_number === state.box ? 'chosen' : ''}">
        <td>#${d.box_number}</td><td>${d.label}</td><td>p ${d.score.toFixed(3)}</td><td>${d.grid} head</td></tr>`)
    : p.top.map((t, k) => `<tr data-class="${t.class}" class="${(state.targetClass ?? p.top[0].class) === t.class ? 'chosen' : ''}">
        <td>${k + 1}</td><td>${t.label}</td><td>p ${t.p.toFixed(3)}</td></tr>`);
  $('prediction').innerHTML = p.detector && !p.detections.length
    ? '<p>No detection with p &ge; 0.5: the maps explain the predicted class\'s best anchor.</p>'
    : `<p class="hint">${p.detector ? 'Detections (click one to explain it):' : 'Top classes (click one to explain it):'}</p>
       <table>${rows.join('')}</table>`;
  for (const row of $('prediction').querySelectorAll('tr'))
    row.onclick = () => {
      if (row.dataset.box) state.box = Number(row.dataset.box);
      else state.targetClass = Number(row.dataset.class);
      state.neuron = null;
      drawPrediction();
      explainAll();
    };
}

async function uploadFile(file) {
  if (!file) return;
  status(`uploading ${file.name}...`);
  try {
    const image = await api.upload(file, { model: state.model.id, fit: $('fit').value });
    image.name = file.name;
    await chooseImage(image);
    $('image-notes').textContent = image.notes.length ? image.notes.join(' ') : `fit ${image.fit}: as it is`;
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  } finally {
    status('');
  }
}

// ---- the network ----
function fillLayers() {
  const select = $('layers');
  select.innerHTML = state.model.layers
    .map(l => `<option value="${l.name}">${l.name.split('/').slice(-2).join('/')}  [${l.shape.join(',')}]</option>`).join('');
  const feature = state.model.layers.filter(l => l.shape.length === 4);
  state.camLayer = '';
  const start = state.model.cam_layer || (feature.length ? feature[feature.length - 1].name : state.model.layers[0].name);
  select.value = start;
}

async function refreshOverview() {
  const layer = $('layers').value;
  if (!layer || !state.image) return;
  const generation = state.generation;
  try {
    const o = await api.get('channels', { model: state.model.id, image: state.image.id, layer });
    if (generation !== state.generation && layer !== $('layers').value) return;
    state.overview = o;
    $('overview').src = o.png;
    $('overview-info').textContent = `${o.layer}: ${o.channels} channels of ${o.height}x${o.width}` +
      (o.shown < o.channels ? ` (first ${o.shown} shown)` : '') + `; values ${o.min.toFixed(2)} to ${o.max.toFixed(2)}` +
      `; the strongest: channel ${o.strongest.channel} at (${o.strongest.y}, ${o.strongest.x})`;
    $('overview').dataset.strongest = JSON.stringify(o.strongest);
  } catch (e) {
    showError(e.message);
  }
}

function pickNeuron(event) {
  const o = state.overview;
  if (!o) return;
  const cellW = o.tile_width + o.spacing, cellH = o.tile_height + o.spacing;
  const column = Math.floor(event.offsetX / cellW), row = Math.floor(event.offsetY / cellH);
  const channel = row * o.columns + column;
  if (column >= o.columns || channel >= o.shown) return;
  const y = Math.min(o.height - 1, Math.floor((event.offsetY - row * cellH) * o.height / o.tile_height));
  const x = Math.min(o.width - 1, Math.floor((event.offsetX - column * cellW) * o.width / o.tile_width));
  state.neuron = o.shape.length === 4 ? { layer: o.layer, channel, y, x } : { layer: o.layer, channel };
  showTarget();
  explainAll();
}

function neuronText(n) { return `${n.layer.split('/').slice(-2).join('/')} channel ${n.channel}` + (n.y !== undefined ? ` at (${n.y}, ${n.x})` : ''); }

function showTarget() {
  const t = $('target');
  const p = state.prediction;
  let text;
  if (state.neuron) text = `Explaining the neuron ${neuronText(state.neuron)}.`;
  else if (p && p.detector) {
    const d = p.detections.find(d => d.box_number === state.box);
    text = d ? `Explaining detection #${d.box_number}: ${d.label} (p ${d.score.toFixed(2)}), its anchor's class logit.`
             : 'Explaining the predicted class\'s best anchor.';
  } else if (p) {
    const c = state.targetClass ?? p.top[0].class;
    text = `Explaining the class ${state.model.classes[c].label}.`;
  } else text = '';
  t.innerHTML = text + (state.neuron ? ' <button id="clear-neuron">back to the class</button>' : '');
  if (state.neuron) $('clear-neuron').onclick = () => { state.neuron = null; showTarget(); explainAll(); };
  $('neuron').textContent = state.neuron ? `picked: ${neuronText(state.neuron)}` : '';
}

// ---- the methods ----
function buildMethodChoice() {
  $('method-choice').innerHTML = state.methods.map(m =>
    `<label title="${m.description}"><input type="checkbox" value="${m.name}" ${state.chosen.has(m.name) ? 'checked' : ''}> ${m.name}</label>`).join('');
  for (const box of $('method-choice').querySelectorAll('input'))
    box.onchange = () => {
      if (box.checked) state.chosen.add(box.value); else state.chosen.delete(box.value);
      buildParameters();
      explainAll();
    };
  buildParameters();
}

function buildParameters() {
  const seen = new Map();
  for (const m of state.methods)
    if (state.chosen.has(m.name)) for (const p of m.parameters) if (!seen.has(p.name) && p.name !== 'seed') seen.set(p.name, p);
  // The sliders' ranges: the method table's, within the server's caps on a map's cost (limits).
  const side = state.model ? Math.max(state.model.input[1], state.model.input[2]) : 28;
  const smallestStride = Math.ceil(side / Math.floor(Math.sqrt(state.limits.max_windows)));
  const range = p => {
    if (p.name === 'samples' || p.name === 'steps') return [p.min, Math.min(p.max, state.limits.max_passes)];
    if (p.name === 'stride') return [Math.max(p.min, smallestStride), Math.min(p.max, side)];
    if (p.name === 'window') return [p.min, Math.min(p.max, side)];
    return [p.min, p.whole ? p.max : Math.min(p.max, 1)];
  };
  const fallback = p => {
    if (p.name === 'stride') return Math.max(p.default, smallestStride);
    if (p.name === 'window') return Math.max(p.default, 2 * smallestStride);
    // A photo model's pass takes a tenth of a second or more: 16 passes answer in seconds.
    if ((p.name === 'samples' || p.name === 'steps') && side > 64) return Math.min(p.default, 16);
    return Math.min(p.default, range(p)[1]);
  };
  const html = [...seen.values()].map(p => {
    const [min, max] = range(p);
    const value = Math.min(max, Math.max(min, state.settings[p.name] ?? fallback(p)));
    state.settings[p.name] = value;
    const step = p.whole ? 1 : (max - min) / 100;
    return `<label title="${p.help}">${p.name} <input type="range" id="param-${p.name}" data-name="${p.name}" min="${min}"
      max="${max}" step="${step}" value="${value}"> <output>${value}</output></label>`;
  });
  const camUsed = state.methods.some(m => state.chosen.has(m.name) && m.uses_layer);
  $('parameters').innerHTML = html.join('') +
    `<label ${camUsed ? '' : 'hidden'}>Grad-CAM layer <select id="cam-layer"></select></label>`;
  for (const input of $('parameters').querySelectorAll('input[type=range]')) {
    input.oninput = () => { input.nextElementSibling.textContent = input.value; };
    input.onchange = () => { state.settings[input.dataset.name] = Number(input.value); explainAll(); };
  }
  if (state.model) {
    const chosen = state.camLayer;
    fillLayersCam();
    $('cam-layer').value = chosen;
  }
  $('cam-layer').onchange = () => { state.camLayer = $('cam-layer').value; explainAll(); };
}

function fillLayersCam() {
  const feature = state.model.layers.filter(l => l.shape.length === 4);
  $('cam-layer').innerHTML = '<option value="">(the usual one)</option>' +
    feature.map(l => `<option value="${l.name}">${l.name.split('/').slice(-2).join('/')} ${l.shape.slice(2).join('x')}</option>`).join('');
}

function explainParams(method) {
  const params = { model: state.model.id, image: state.image.id, method: method.name, rule: $('rule').value };
  if (state.neuron) {
    params.neuron_layer = state.neuron.layer;
    params.neuron_channel = state.neuron.channel;
    if (state.neuron.y !== undefined) { params.neuron_y = state.neuron.y; params.neuron_x = state.neuron.x; }
  } else if (state.prediction.detector && state.box !== null) params.box = state.box;
  else if (state.targetClass !== null) params.target = state.targetClass;
  if (method.uses_layer && state.camLayer) params.layer = state.camLayer;
  for (const p of method.parameters) if (state.settings[p.name] !== undefined) params[p.name] = state.settings[p.name];
  return params;
}

// Every chosen method, one after another (the server computes one at a time per model).
async function explainAll() {
  if (!state.image || !state.prediction) return;
  const generation = ++state.generation;
  showTarget();
  const container = $('panels');
  container.innerHTML = '';
  const chosen = state.methods.filter(m => state.chosen.has(m.name));
  const panels = chosen.map(m => makePanel(container, m.name));
  for (const [k, method] of chosen.entries()) {
    const panel = panels[k];
    if (state.neuron && !method.targets.neuron) {
      panel.querySelector('.numbers').textContent = `${method.name} explains classes and detections, not a neuron`;
      panel.dataset.state = 'skipped';
      continue;
    }
    panel.classList.add('busy');
    panel.dataset.state = 'busy';
    status(`computing ${method.name}...`);
    try {
      const params = explainParams(method);
      const result = await api.get('explain', params);
      if (generation !== state.generation) return;
      await fillPanel(panel, result, state.photo, $('overlay').checked,
        { png: api.url('explain', { ...params, format: 'png' }), npy: api.url('explain', { ...params, format: 'npy' }) });
      panel.dataset.state = 'done';
      panel.dataset.max = result.max;
      const t = result.target;
      if (t.kind === 'detection' && !state.prediction.detections.some(d => d.anchor === t.anchor))
        $('target').textContent = `Explaining the best anchor of ${t.label} (p ${t.p.toFixed(2)}, below 0.5: no detection).`;
    } catch (e) {
      if (generation !== state.generation) return;
      panel.dataset.state = 'failed';
      panel.querySelector('.numbers').innerHTML = `<span class="failed"></span>`;
      panel.querySelector('.failed').textContent = e.message;
    } finally {
      panel.classList.remove('busy');
    }
  }
  if (generation === state.generation) status('');
}

// ---- what the network wants: a visualization, an inversion ----
// Both stream frames from the library calls lesson 9 / tgc visualize and lesson 10 / tgc invert
// make (explain/recipes.h); the server picks the recipe and its default steps.
function fillVisualizeClasses() {
  $('vis-class').innerHTML = state.model.classes.filter(c => !c.background && c.label)
    .map(c => `<option value="${c.index}">${c.label}</option>`).join('');
  const cat = state.model.classes.find(c => c.label === 'Cat');
  if (cat) $('vis-class').value = cat.index;
  $('vis-steps').value = '';
  // Inversion: every layer; by default FashionCNN's fc1 (lesson 10) or the code the photo
  // model's 1x1 head reads (lesson 10's "fc7": chelsea's Cat detection is read from it).
  $('inv-layer').innerHTML = state.model.layers.map(l => `<option value="${l.name}">${l.name} [${l.shape.join(',')}]</option>`).join('');
  const heads = state.model.heads || [];
  const wanted = state.model.layers.some(l => l.name === 'fc1') ? 'fc1' : heads.length ? heads[heads.length - 1].layer : '';
  if (wanted) $('inv-layer').value = wanted;
  $('inv-steps').value = '';
}

// One streamed climb: `prefix` names its controls (vis-, inv-); describe(line) says what a frame shows.
const climbs = {};
async function runClimb(prefix, route, params, describe, finished) {
  stopClimb(prefix);
  const controller = new AbortController();
  climbs[prefix] = controller;
  $(`${prefix}-start`).disabled = true;
  $(`${prefix}-stop`).disabled = false;
  const canvas = $(`${prefix}-frame`);
  const info = $(`${prefix}-info`);
  canvas.dataset.frames = 0;
  canvas.dataset.done = '';
  info.textContent = 'starting...';
  const draw = async png => {
    const frame = await loadImage(png);
    const g = canvas.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(frame, 0, 0, canvas.width, canvas.height);
  };
  try {
    await api.stream(route, params, async line => {
      if (line.error) throw new Error(line.error);
      if (line.done) {
        if (line.png) await draw(line.png);
        info.textContent = finished(line) + (line.stopped ? ` (stopped: ${line.stopped})` : '');
        canvas.dataset.done = 'yes';
        return;
      }
      await draw(line.png);
      canvas.dataset.frames = Number(canvas.dataset.frames) + 1;
      info.textContent = describe(line);
    }, controller.signal);
  } catch (e) {
    if (e.name === 'AbortError') info.textContent += ' (stopped)';
    else showError(e.message);
  } finally {
    if (climbs[prefix] === controller) {
      delete climbs[prefix];
      $(`${prefix}-start`).disabled = false;
      $(`${prefix}-stop`).disabled = true;
    }
  }
}

function stopClimb(prefix) {
  if (climbs[prefix]) climbs[prefix].abort();
}

function startVisualization() {
  const params = { model: state.model.id, steps: $('vis-steps').value };
  if ($('vis-neuron').checked && state.neuron) {
    params.neuron_layer = state.neuron.layer;
    params.neuron_channel = state.neuron.channel;
    if (state.neuron.y !== undefined) { params.neuron_y = state.neuron.y; params.neuron_x = state.neuron.x; }
  } else params.target = $('vis-class').value;
  return runClimb('vis', 'visualize', params,
    line => `${line.what} (${line.recipe}): step ${line.step} of ${line.steps}, objective ${line.objective.toFixed(3)}, ` +
      `${line.reading}` + (line.steps < line.recipe_steps ? ` (lesson 9 climbs ${line.recipe_steps} steps)` : ''),
    line => `${line.what}: done after ${line.steps} steps, objective ${line.objective.toFixed(3)}` +
      (line.reading ? `; on the 8-bit image ${line.reading}` : ''));
}
function stopVisualization() { stopClimb('vis'); }

function startInversion() {
  if (!state.image) return showError('invert: pick an image first');
  const params = { model: state.model.id, image: state.image.id, layer: $('inv-layer').value, steps: $('inv-steps').value };
  return runClimb('inv', 'invert', params,
    line => `inverting ${state.image.name}, ${line.what}: step ${line.step} of ${line.steps}, ` +
      `code error ${line.code_error.toFixed(4)} (a gray image: ${line.gray_error.toFixed(4)})`,
    line => `${line.what}: after ${line.steps} steps the relative code error is ${line.code_error.toFixed(4)}` +
      (line.gray_error !== undefined ? ` on the 8-bit image (a gray image: ${line.gray_error.toFixed(4)})` : ''));
}
function stopInversion() { stopClimb('inv'); }

// ---- start ----
function setModel(model) {
  state.model = model;
  $('model').value = model.id;
  state.neuron = null;
  state.overview = null;
  state.settings = {};  // the sliders' ranges depend on the input's size
  $('overview').removeAttribute('src');
  fillLayers();
  fillVisualizeClasses();
  buildParameters();
}

async function start() {
  try {
    [state.models, state.methods, state.images, state.limits] =
      await Promise.all([api.get('models'), api.get('methods'), api.get('images'), api.get('limits')]);
    const rules = await api.get('rules');
    $('rule').innerHTML = rules.map(r => `<option>${r}</option>`).join('');
    // Which methods the menu changes, from the method table's rule field.
    const named = words => state.methods.filter(m => m.rule === words).map(m => m.name).join(', ');
    $('rule-note').textContent = `changes ${named('as given')}; ${named('its own')} keep their own rule` +
      (named('no gradient') ? `; ${named('no gradient')} takes no gradient` : '');
    $('model').innerHTML = state.models.map(m => `<option value="${m.id}">${m.id} (${m.arch}${m.detector ? ', detector' : ''})</option>`).join('');
    buildMethodChoice();
    setModel(state.models[0]);
    buildGallery();
    $('model').onchange = () => { setModel(state.models.find(m => m.id === $('model').value)); predict(); };
    $('rule').onchange = explainAll;
    $('overlay').onchange = explainAll;
    $('layers').onchange = refreshOverview;
    $('overview').onclick = pickNeuron;
    $('file').onchange = () => uploadFile($('file').files[0]);
    const drop = $('drop');
    drop.ondragover = e => { e.preventDefault(); drop.classList.add('over'); };
    drop.ondragleave = () => drop.classList.remove('over');
    drop.ondrop = e => { e.preventDefault(); drop.classList.remove('over'); uploadFile(e.dataTransfer.files[0]); };
    $('vis-start').onclick = startVisualization;
    $('vis-stop').onclick = stopVisualization;
    $('inv-start').onclick = startInversion;
    $('inv-stop').onclick = stopInversion;
    const first = state.images.find(i => modelFor(i) === state.models[0]) || state.images[0];
    if (first) await chooseImage(first);
    document.body.dataset.ready = 'yes';
  } catch (e) {
    showError(e.message);
  }
}

start();
