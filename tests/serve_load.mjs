// Load test and latency benchmark of `tgc serve` (Node 18+, no packages). Not part of `make test`
// (it takes minutes and measures time); run it by hand:
//
//   node tests/serve_load.mjs [--tgc build/bin/tgc] [--clients 16] [--seconds 60] [--bench 15]
//
// 1. The latency benchmark, one request at a time on an idle server: the page's first load (its
//    HTML, CSS and JS modules), a saliency and a guided-backprop map of chelsea (300x300 photo
//    model), the first map of a new upload, a layer's channel overview. Prints the median and p95
//    of --bench repetitions. --seconds 0 runs the benchmark only.
// 2. The load test: --clients concurrent clients for --seconds of mixed requests (predict, maps
//    as .npy compared byte for byte with `tgc explain --npy`, channel overviews, uploads of a
//    photo and of every fuzz regression image, ascents cancelled after two frames). Counts the
//    answers by kind, the 503s (busy), any wrong answer or crash; samples the server's resident
//    memory (flat after warm-up is the goal); reports requests/s and p50/p95 latency.
// Exits 1 when an answer was wrong or the server died.
import { execFileSync } from 'node:child_process';
import { startServer } from './browser/start_server.mjs';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, word, i, all) =>
  (word.startsWith('--') ? [...pairs, [word.slice(2), all[i + 1]]] : pairs), []));
const tgc = args.tgc || 'build/bin/tgc';
const clients = Number(args.clients || 16);
const seconds = Number(args.seconds || 60);
const benchRuns = Number(args.bench || 15);
const PHOTO = 'assets/models/ssd_mobilenetv2_oidv4_fp16.tflite';


function rssMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(status.match(/VmRSS:\s+(\d+)/)[1]) / 1024;
}

function quantile(values, q) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// A .npy's float32 values (v1.0, its header padded to 64 bytes: the data starts after it).
function npyValues(buffer) {
  const headerLength = buffer.readUInt16LE(8);
  const data = buffer.subarray(10 + headerLength);
  return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}
// The largest |a - b| relative to max |b|. Not bytes: a kernel's sums run in another order when the
// thread pool is busy with another model's request (TG_NUM_THREADS=1 and 2 differ in the last bits).
let worstDifference = 0;
function sameMap(answer, reference, what, wrong) {
  const a = npyValues(answer), b = npyValues(reference);
  if (a.length !== b.length) { wrong.push(`${what}: ${a.length} values, tgc explain wrote ${b.length}`); return; }
  let scale = 0, worst = 0;
  for (let i = 0; i < b.length; i++) { scale = Math.max(scale, Math.abs(b[i])); worst = Math.max(worst, Math.abs(a[i] - b[i])); }
  worstDifference = Math.max(worstDifference, worst / scale);
  if (worst > 1e-4 * scale) wrong.push(`${what} differs from tgc explain by ${(worst / scale).toExponential(2)} of its max`);
}

// The .npy `tgc explain` writes, the reference the server's maps must equal.
function tgcNpy(model, image, method) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'serve-load-'));
  const file = path.join(dir, 'map.npy');
  execFileSync(tgc, ['explain', '--model', model, '--image', image, '--method', method, '--npy', file], { stdio: 'ignore' });
  return readFileSync(file);
}

async function timed(fn) {
  const start = performance.now();
  const result = await fn();
  return [performance.now() - start, result];
}

async function main() {
  const { server, base } = await startServer(tgc);
  console.log(`load: tgc serve at ${base} (pid ${server.pid})`);
  let failed = false;
  try {
    // ---- 1. latency benchmark ----
    const page = ['/', '/style.css', '/app.js', '/api.js', '/panels.js'];
    const bench = {
      'page first load (html+css+3 modules)': async () => { for (const p of page) await (await fetch(base + p)).arrayBuffer(); },
      'saliency map, chelsea 300x300 (json+png)': async () => (await fetch(`${base}/api/explain?model=photo&image=chelsea&method=saliency`)).json(),
      'guided map, chelsea 300x300 (json+png)': async () => (await fetch(`${base}/api/explain?model=photo&image=chelsea&method=guided_backprop`)).json(),
      // The first map of a target also runs the forward pass that resolves it (the page's later maps
      // of that target do not): chelsea uploaded anew each time, the upload not timed.
      'saliency map, a new upload of chelsea (target resolved too)': [async () => {
        const r = await fetch(`${base}/api/upload?model=photo`, { method: 'POST', body: readFileSync('assets/chelsea.png') });
        return (await r.json()).id;
      }, async id => (await fetch(`${base}/api/explain?model=photo&image=${id}&method=saliency`)).json()],
      'channel overview, Conv_1/relu6 (1280 x 10x10)': async () =>
        (await fetch(`${base}/api/channels?model=photo&image=chelsea&layer=${encodeURIComponent('FeatureExtractor/MobilenetV2/Conv_1/relu6')}`)).json(),
      'channel overview, expanded_conv/project (16 x 150x150)': async () =>
        (await fetch(`${base}/api/channels?model=photo&image=chelsea&layer=${encodeURIComponent('FeatureExtractor/MobilenetV2/expanded_conv/project')}`)).json(),
    };
    console.log(`bench: ${os.cpus().length} x ${os.cpus()[0]?.model}, load average ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`);
    for (const [name, entry] of benchRuns > 0 ? Object.entries(bench) : []) {
      const [prepare, run] = Array.isArray(entry) ? entry : [async () => undefined, entry];  // prepare: not timed
      await run(await prepare());  // warm-up
      const times = [];
      for (let i = 0; i < benchRuns; i++) {
        const prepared = await prepare();
        times.push((await timed(() => run(prepared)))[0]);
      }
      console.log(`bench: ${name}: median ${quantile(times, 0.5).toFixed(1)} ms, p95 ${quantile(times, 0.95).toFixed(1)} ms (${benchRuns} runs)`);
    }

    // ---- 2. load test (--seconds 0: the benchmark only) ----
    if (seconds <= 0) return;
    const reference = {
      fashion: tgcNpy('assets/fashion_cnn.safetensors', 'assets/fashion-png/1_trouser.png', 'saliency'),
      photo: tgcNpy(PHOTO, 'assets/chelsea.png', 'guided_backprop'),
    };
    const photoBytes = readFileSync('assets/coffee.png');
    const regressions = readdirSync('tests/fuzz/regressions/image').map(f => readFileSync(path.join('tests/fuzz/regressions/image', f)));
    const counts = {}, latencies = [];
    const count = key => { counts[key] = (counts[key] || 0) + 1; };
    const wrong = [];
    const kinds = [
      ['predict', async () => {
        const r = await fetch(`${base}/api/predict?model=photo&image=chelsea`);
        if (r.status !== 200) return r.status;
        const j = await r.json();
        if (j.detections[0]?.label !== 'Cat') wrong.push('predict: no Cat');
        return 200;
      }],
      ['map fashion .npy', async () => {
        const r = await fetch(`${base}/api/explain?model=fashion&image=fashion-1&method=saliency&format=npy`);
        if (r.status !== 200) return r.status;
        sameMap(Buffer.from(await r.arrayBuffer()), reference.fashion, 'fashion saliency', wrong);
        return 200;
      }],
      ['map photo .npy', async () => {
        const r = await fetch(`${base}/api/explain?model=photo&image=chelsea&method=guided_backprop&format=npy`);
        if (r.status !== 200) return r.status;
        sameMap(Buffer.from(await r.arrayBuffer()), reference.photo, 'photo guided backprop', wrong);
        return 200;
      }],
      ['channels', async () => (await fetch(`${base}/api/channels?model=fashion&image=fashion-3&layer=relu2`)).status],
      ['upload photo', async () => {
        const r = await fetch(`${base}/api/upload`, { method: 'POST', body: photoBytes });
        if (r.status !== 200) return r.status;
        const { id } = await r.json();
        return (await fetch(`${base}/api/predict?model=photo&image=${id}`)).status;
      }],
      ['hostile upload', async () => {
        const bytes = regressions[Math.floor(Math.random() * regressions.length)];
        const r = await fetch(`${base}/api/upload`, { method: 'POST', body: bytes });
        await r.text();
        if (r.status < 400 || r.status >= 500) wrong.push(`hostile upload answered ${r.status}`);
        return r.status === 503 ? 503 : 'refused';
      }],
      ['ascent cancelled', async () => {
        const controller = new AbortController();
        const r = await fetch(`${base}/api/visualize?model=fashion&target=1&steps=400&every=1`, { signal: controller.signal });
        if (r.status !== 200) { await r.text(); return r.status; }
        const reader = r.body.getReader();
        let text = '';
        while ((text.match(/\n/g) || []).length < 2) {
          const { value, done } = await reader.read();
          if (done) break;
          text += Buffer.from(value).toString();
        }
        controller.abort();
        return 200;
      }],
    ];
    const rss = [];
    const sampler = setInterval(() => { try { rss.push([performance.now(), rssMb(server.pid)]); } catch { } }, 1000);
    const start = performance.now(), end = start + seconds * 1000;
    let requests = 0;
    async function client(k) {
      while (performance.now() < end) {
        const [name, run] = kinds[(k + requests) % kinds.length];
        requests++;
        try {
          const [ms, status] = await timed(run);
          count(`${name} ${status}`);
          if (status === 200 || status === 'refused') latencies.push(ms);
          if (status === 503) await new Promise(done => setTimeout(done, 200));
        } catch (e) {
          if (e.name !== 'AbortError') { count(`${name} error`); wrong.push(`${name}: ${e.message}`); }
        }
      }
    }
    await Promise.all(Array.from({ length: clients }, (_, k) => client(k)));
    clearInterval(sampler);
    const elapsed = (performance.now() - start) / 1000;
    const alive = (await fetch(`${base}/api/rules`)).status === 200;
    const warm = rss.filter(([t]) => t - start > 10000).map(([, m]) => m);
    console.log(`load: ${clients} clients, ${elapsed.toFixed(0)} s: ${requests} requests, ${(requests / elapsed).toFixed(1)} requests/s`);
    console.log(`load: latency of answered requests: p50 ${quantile(latencies, 0.5).toFixed(0)} ms, p95 ${quantile(latencies, 0.95).toFixed(0)} ms`);
    for (const key of Object.keys(counts).sort()) console.log(`load:   ${key}: ${counts[key]}`);
    const busy = Object.entries(counts).filter(([k]) => k.endsWith(' 503')).reduce((n, [, v]) => n + v, 0);
    console.log(`load: 503 (busy) answers: ${busy}`);
    console.log(`load: resident memory after warm-up (10 s): first ${warm[0]?.toFixed(0)} MB, max ${Math.max(...warm).toFixed(0)} MB, ` +
                `last ${warm[warm.length - 1]?.toFixed(0)} MB`);
    console.log(`load: resident memory every 5 s: ${rss.filter((_, i) => i % 5 === 4).map(([, m]) => m.toFixed(0)).join(' ')} MB`);
    console.log(`load: maps against tgc explain --npy: largest difference ${worstDifference.toExponential(2)} of the map's max`);
    console.log(`load: server alive after the run: ${alive}; wrong answers: ${wrong.length}${wrong.length ? ' (' + [...new Set(wrong)].slice(0, 5).join('; ') + ')' : ''}`);
    failed = !alive || wrong.length > 0;
  } finally {
    server.kill('SIGINT');
  }
  process.exit(failed ? 1 : 0);
}

main().catch(e => { console.error(`load: FAILED: ${e.message}`); process.exit(1); });
