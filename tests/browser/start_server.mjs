// Starts `tgc serve --port 0` and resolves with the process and its address once it listens
// (the browser test and tests/serve_load.mjs share it).
import { spawn } from 'node:child_process';

export function startServer(tgc) {
  return new Promise((resolve, reject) => {
    const server = spawn(tgc, ['serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    server.stdout.on('data', chunk => {
      text += chunk;
      const m = text.match(/open (http:\/\/[0-9.:]+)\//);
      if (m) resolve({ server, base: m[1] });
    });
    server.on('exit', code => reject(new Error(`tgc serve exited (${code}) before listening: ${text}`)));
  });
}
