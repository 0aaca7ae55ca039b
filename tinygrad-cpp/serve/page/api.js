// The server's JSON routes (tinygrad-cpp/serve/explorer.h lists them). A refusal arrives as
// {"error": "..."}; a busy model (503) is asked again after the Retry-After it names.

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  return q.toString();
}

async function fetchRetrying(url, options = {}, attempts = 6) {
  for (let i = 0; ; i++) {
    const response = await fetch(url, options);
    if (response.status !== 503 || i + 1 >= attempts) return response;
    const wait = Number(response.headers.get('Retry-After') || 1);
    await new Promise(done => setTimeout(done, 1000 * wait));
  }
}

async function reply(response) {
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = { error: `HTTP ${response.status}: ${text.slice(0, 200)}` }; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

export async function get(route, params = {}) {
  return reply(await fetchRetrying(`/api/${route}?${query(params)}`));
}

// A file's bytes through the server's intake; `params`: the model it is fitted to, and fit.
export async function upload(file, params = {}) {
  return reply(await fetch(`/api/upload?${query(params)}`, { method: 'POST', body: file }));
}

export function url(route, params) { return `/api/${route}?${query(params)}`; }

// An ascent's frames: onFrame(line) for each JSON line until done; `signal` (an AbortController's)
// stops it, and the server stops climbing when the connection closes.
export async function stream(route, params, onLine, signal) {
  const response = await fetchRetrying(`/api/${route}?${query(params)}`, { signal });
  if (!response.ok) return reply(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line) onLine(JSON.parse(line));
    }
  }
}
