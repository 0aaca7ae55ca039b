// The explorer page in a real browser: `make test-browser` runs this with Debian's chromium
// (headless) driven by puppeteer-core (installed from tests/browser/package-lock.json into
// build/browser/node_modules, no browser download).
//
//   node tests/browser/explorer.mjs --tgc build/bin/tgc --out build/browser
//
// It starts `tgc serve` on a free port, then walks the page as a student would: pick chelsea and
// see the Cat box; choose saliency, guided backprop and Grad-CAM and check each map is drawn and
// not blank (pixel statistics of its canvas); move the SmoothGrad slider; upload a picture the
// repository does not ship; pick a neuron from a layer's channel overview; switch the backward
// rule and see the saliency map change; stream a class visualization until three frames have
// arrived and stop it; stream an inversion of the photo until two frames have arrived and stop it;
// upload a corrupt file and see the error. No console errors are allowed.
// Screenshots go to the --out folder for a person to look at. Exits 1 on the first failure.
import { startServer } from './start_server.mjs';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, word, i, all) =>
  (word.startsWith('--') ? [...pairs, [word.slice(2), all[i + 1]]] : pairs), []));
const tgc = args.tgc || 'build/bin/tgc';
const out = args.out || 'build/browser';
const browserPath = args.browser || '/usr/bin/chromium';
mkdirSync(out, { recursive: true });
for (const old of readdirSync(out)) if (/^\d\d_.*\.png$/.test(old)) rmSync(path.join(out, old));  // the last run's
const require = createRequire(path.resolve(out, 'package.json'));
const puppeteer = require('puppeteer-core');

const UNSHIPPED = '/usr/share/icons/hicolor/256x256/apps/chromium.png';  // installed with chromium
const CORRUPT = 'tests/fuzz/regressions/image/dht-2040-codes.jpg';

let step = 0;
function say(text) { console.log(`browser: ${text}`); }
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}`);
}


// Mean and standard deviation of a canvas's pixels (RGB), read in the page.
async function canvasStats(page, selector) {
  return page.$eval(selector, canvas => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let sum = 0, squares = 0, n = 0;
    for (let i = 0; i < data.length; i += 4)
      for (let c = 0; c < 3; c++) { sum += data[i + c]; squares += data[i + c] ** 2; n++; }
    const mean = sum / n;
    return { mean, sd: Math.sqrt(Math.max(0, squares / n - mean * mean)), width: canvas.width, height: canvas.height,
             hash: Array.from(data.filter((_, i) => i % 97 === 0)).join(',') };
  });
}

async function panelsDone(page, methods, timeout = 60000) {
  await page.waitForFunction(names => names.every(name => {
    const panel = document.querySelector(`.panel[data-method="${name}"]`);
    return panel && ['done', 'failed', 'skipped'].includes(panel.dataset.state);
  }) && !document.querySelector('.panel.busy'), { timeout, polling: 100 }, methods);
  for (const name of methods) {
    const state = await page.$eval(`.panel[data-method="${name}"]`, p => [p.dataset.state, p.querySelector('.numbers').textContent]);
    check(state[0] === 'done', `${name} answered (${state[1].split('\n')[0]})`);
  }
}

async function shot(page, name) {
  const file = path.join(out, `${String(++step).padStart(2, '0')}_${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  say(`screenshot ${file}`);
}

// Starts a streamed climb (prefix vis or inv), waits for `wanted` frames, stops it; the frames seen.
async function streamFrames(page, prefix, wanted) {
  await page.click(`#${prefix}-start`);
  await page.waitForFunction((p, n) => Number(document.querySelector(`#${p}-frame`).dataset.frames) >= n,
                             { timeout: 90000, polling: 100 }, prefix, wanted);
  await page.click(`#${prefix}-stop`);
  await page.waitForFunction(p => !document.querySelector(`#${p}-start`).disabled, { timeout: 10000 }, prefix);
  return Number(await page.$eval(`#${prefix}-frame`, c => c.dataset.frames));
}

async function setChosenMethods(page, names) {
  for (const box of await page.$$('#method-choice input')) {
    const [value, checked] = await box.evaluate(b => [b.value, b.checked]);
    if (checked !== names.includes(value)) await box.click();
  }
}

async function main() {
  const { server, base } = await startServer(tgc);
  const address = base + '/';
  say(`tgc serve at ${address}`);
  const browser = await puppeteer.launch({
    executablePath: browserPath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const consoleErrors = [];
  const expectedRefusals = [];  // the corrupt upload's 415 (the browser logs it as a console error)
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1100 });
    page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', e => consoleErrors.push(`page error: ${e.message}`));
    page.on('response', r => { if (r.status() >= 400) expectedRefusals.push(`${r.status()} ${r.url()}`); });

    const loadStart = Date.now();
    await page.goto(address, { waitUntil: 'load' });
    say(`page loaded in ${Date.now() - loadStart} ms`);
    await page.waitForSelector('body[data-ready="yes"]', { timeout: 60000 });

    // 1. chelsea: the Cat box
    await page.click('#gallery button[data-image="chelsea"]');
    await page.waitForFunction(() => document.querySelector('#prediction')?.textContent.includes('Cat'), { timeout: 30000 });
    const photo = await canvasStats(page, '#photo');
    check(photo.sd > 20, `chelsea drawn with her boxes (pixel sd ${photo.sd.toFixed(1)})`);
    const prediction = await page.$eval('#prediction', e => e.innerText.replace(/\s+/g, ' ').trim());
    check(/#1 Cat p 0\.\d+/.test(prediction), `the Cat box is the first detection: "${prediction.slice(0, 80)}"`);

    // 2. saliency, guided backprop, Grad-CAM: drawn and not blank
    await setChosenMethods(page, []);
    await setChosenMethods(page, ['saliency', 'guided_backprop', 'gradcam']);
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);
    const before = {};
    for (const m of ['saliency', 'guided_backprop', 'gradcam']) {
      const s = await canvasStats(page, `#map-${m}`);
      check(s.sd > 8 && s.mean > 5 && s.mean < 250, `${m}'s map is not blank (mean ${s.mean.toFixed(1)}, sd ${s.sd.toFixed(1)})`);
      before[m] = s;
    }
    await shot(page, 'chelsea_maps');

    // 3. SmoothGrad with the sigma slider moved
    await setChosenMethods(page, ['saliency', 'guided_backprop', 'gradcam', 'smoothgrad']);
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam', 'smoothgrad']);
    const samples = await page.$('#param-samples');
    check(samples !== null, 'SmoothGrad has a samples slider');
    const sliderName = (await page.$('#param-sigma')) ? 'sigma' : (await page.$('#param-noise')) ? 'noise' : null;
    check(sliderName !== null, `SmoothGrad has a noise slider (${sliderName})`);
    check(await page.$eval('#param-samples', i => Number(i.value)) <= 16, 'the page asks the photo model for at most 16 samples');
    const smoothBefore = await canvasStats(page, '#map-smoothgrad');
    await page.$eval(`#param-${sliderName}`, input => {
      input.value = Number(input.max) * 0.5;
      input.dispatchEvent(new Event('input'));
      input.dispatchEvent(new Event('change'));
    });
    await panelsDone(page, ['smoothgrad']);
    const smoothAfter = await canvasStats(page, '#map-smoothgrad');
    check(smoothAfter.sd > 8 && smoothAfter.hash !== smoothBefore.hash, `the slider recomputed SmoothGrad (sd ${smoothAfter.sd.toFixed(1)})`);
    await shot(page, 'smoothgrad_slider');
    await setChosenMethods(page, ['saliency', 'guided_backprop', 'gradcam']);
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);

    // 4. the backward rule: guided makes saliency change (into guided backprop)
    await page.select('#rule', 'guided');
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);
    const ruled = await canvasStats(page, '#map-saliency');
    check(ruled.hash !== before.saliency.hash, 'switching the rule to guided changed the saliency map');
    const firstLine = name => page.$eval(`.panel[data-method="${name}"] .numbers`, e => e.textContent.split('\n')[0]);
    const [ruledNumbers, guidedNumbers] = [await firstLine('saliency'), await firstLine('guided_backprop')];
    check(ruledNumbers === guidedNumbers, `saliency under the guided rule has guided backprop's numbers (${ruledNumbers})`);
    await shot(page, 'rule_guided');
    await page.select('#rule', 'vanilla');
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);

    // 5. a neuron from the channel overview
    // A linear bottleneck (no ReLU6 to saturate at 6, where the gradient is 0): its overview, then
    // a click on the strongest channel's tile at its strongest pixel (a neuron that fires on chelsea).
    const project = await page.$$eval('#layers option', options => options.map(o => o.value).find(v => v.endsWith('expanded_conv_12/project')));
    check(Boolean(project), `the layer list has ${project}`);
    await page.$eval('#overview', o => { delete o.dataset.strongest; });
    await page.select('#layers', project);
    await page.waitForSelector('#overview[data-strongest]');
    const overview = await page.$('#overview');
    await overview.evaluate(o => o.scrollIntoView());
    const strongest = JSON.parse(await overview.evaluate(o => o.dataset.strongest));
    const tile = await page.evaluate(() => {
      const info = document.querySelector('#overview-info').textContent;
      return info;
    });
    const grid = await page.evaluate(async s => {
      const layer = document.querySelector('#layers').value;
      const r = await fetch(`/api/channels?model=photo&image=chelsea&layer=${encodeURIComponent(layer)}`);
      const o = await r.json();
      const column = s.channel % o.columns, row = Math.floor(s.channel / o.columns);
      return { x: column * (o.tile_width + o.spacing) + (s.x + 0.5) * o.tile_width / o.width,
               y: row * (o.tile_height + o.spacing) + (s.y + 0.5) * o.tile_height / o.height };
    }, strongest);
    say(`overview: ${tile.slice(0, 160)}`);
    await page.$eval('#overview-box', (box, g) => { box.scrollLeft = g.x - 40; box.scrollTop = g.y - 40; }, grid);
    const boxOf = await overview.boundingBox();
    await page.mouse.click(boxOf.x + grid.x, boxOf.y + grid.y);
    await page.waitForFunction(() => document.querySelector('#target').textContent.includes('neuron'), { timeout: 10000 });
    await panelsDone(page, ['saliency', 'guided_backprop']);
    const neuronText = await page.$eval('#target', e => e.textContent);
    check(neuronText.includes(`channel ${strongest.channel} at (${strongest.y}, ${strongest.x})`),
          `picked the strongest neuron: "${neuronText.trim().slice(0, 90)}"`);
    const neuronMap = await canvasStats(page, '#map-guided_backprop');
    check(neuronMap.hash !== before.guided_backprop.hash && neuronMap.sd > 8,
          `the neuron's guided backprop is drawn and differs from the Cat's (sd ${neuronMap.sd.toFixed(1)})`);
    await shot(page, 'neuron');

    // 6. a class visualization: three frames, then stop
    const frames = await streamFrames(page, 'vis', 3);
    const frame = await canvasStats(page, '#vis-frame');
    check(frames >= 3 && frame.sd > 1, `the visualization streamed ${frames} frames and stopped (frame sd ${frame.sd.toFixed(1)})`);
    const visInfo = await page.$eval('#vis-info', e => e.textContent);
    check(/one detection/.test(visInfo) && /Olah/.test(visInfo), `the visualization says what it climbs: "${visInfo.slice(0, 120)}"`);
    await shot(page, 'visualization_stopped');

    // 6b. feature inversion of chelsea from a layer: two frames, then stop
    const invLayer = await page.$eval('#inv-layer', s => s.value);
    check(invLayer.length > 0, `the inversion has a layer chosen (${invLayer})`);
    const invFrames = await streamFrames(page, 'inv', 2);
    const invFrame = await canvasStats(page, '#inv-frame');
    const invInfo = await page.$eval('#inv-info', e => e.textContent);
    check(invFrames >= 2 && invFrame.sd > 1 && /code error \d/.test(invInfo),
          `the inversion streamed ${invFrames} frames and stopped (frame sd ${invFrame.sd.toFixed(1)}; "${invInfo.slice(0, 110)}")`);
    await shot(page, 'inversion_stopped');

    // Back to the Cat: the README's picture (a JPEG of the window, small enough to ship) shows the
    // maps, the overview, and a visualization and an inversion frame.
    await page.click('#clear-neuron');
    await page.waitForFunction(() => !document.querySelector('#target').textContent.includes('neuron'), { timeout: 10000 });
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.setViewport({ width: 1400, height: 1500 });
    await page.screenshot({ path: path.join(out, 'readme.jpg'), type: 'jpeg', quality: 72 });
    await page.setViewport({ width: 1400, height: 1100 });

    // 7. an image the repository does not ship (explained for its class)
    // Wait for the upload's own prediction and target (chelsea's are still on the page until then,
    // and so are her finished panels).
    const [oldPrediction, oldTarget] = [await page.$eval('#prediction', e => e.textContent), await page.$eval('#target', e => e.textContent)];
    await (await page.$('#file')).uploadFile(UNSHIPPED);
    await page.waitForFunction((p, t) => document.querySelector('#gallery button.chosen') === null &&
                               document.querySelector('#prediction').textContent.length > 0 &&
                               document.querySelector('#prediction').textContent !== p &&
                               document.querySelector('#target').textContent !== t, { timeout: 30000 }, oldPrediction, oldTarget);
    await panelsDone(page, ['saliency', 'guided_backprop', 'gradcam']);
    const uploaded = await canvasStats(page, '#photo');
    check(uploaded.sd > 5, `the uploaded picture is drawn (sd ${uploaded.sd.toFixed(1)}) and explained`);
    await shot(page, 'upload');

    // 8. a corrupt file: the server's one-line error on the page
    const refusalsBefore = expectedRefusals.length;
    await (await page.$('#file')).uploadFile(CORRUPT);
    await page.waitForSelector('#error:not([hidden])', { timeout: 10000 });
    const error = await page.$eval('#error', e => e.textContent);
    check(/corrupt JPEG/.test(error), `the corrupt upload is refused on the page: "${error}"`);
    await shot(page, 'corrupt_upload');

    // No console errors but the corrupt upload's refusal, which the browser logs itself.
    const refusals = expectedRefusals.slice(refusalsBefore);
    const unexpected = consoleErrors.filter(e => !(e.includes('415') && refusals.some(r => r.startsWith('415'))));
    check(expectedRefusals.length === refusals.length, `no request but the corrupt upload was refused (${expectedRefusals.join('; ') || 'none'})`);
    check(unexpected.length === 0, `no console errors (${unexpected.join(' | ') || 'none'})`);
    say('all checks passed');
  } catch (e) {
    const pages = await browser.pages();
    if (pages.length) await shot(pages[pages.length - 1], 'FAILED').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    server.kill('SIGINT');
  }
}

main().catch(e => {
  console.error(`browser: FAILED: ${e.message}`);
  process.exit(1);
});
