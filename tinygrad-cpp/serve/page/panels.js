// Drawing: the photo with its boxes, a method's panel (map, numbers, colour bar, exports).

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error('the image could not be shown'));
    image.src = src;
  });
}

// The photo at its own aspect ratio, `width` wide; detections' boxes (fractions of the image).
export function drawPhoto(canvas, image, detections, chosen, width = 320) {
  canvas.width = width;
  canvas.height = Math.max(1, Math.round(width * image.height / image.width));
  const g = canvas.getContext('2d');
  g.imageSmoothingEnabled = image.width >= 100;
  g.drawImage(image, 0, 0, canvas.width, canvas.height);
  for (const d of detections || []) {
    const picked = d.box_number === chosen;
    g.strokeStyle = picked ? '#e01010' : '#ffd000';
    g.lineWidth = picked ? 3 : 2;
    const b = d.box;
    const x = b.x0 * canvas.width, y = b.y0 * canvas.height;
    g.strokeRect(x, y, (b.x1 - b.x0) * canvas.width, (b.y1 - b.y0) * canvas.height);
    const label = `${d.label} ${d.score.toFixed(2)}`;
    g.font = 'bold 13px sans-serif';
    g.fillStyle = g.strokeStyle;
    g.fillRect(x, Math.max(0, y - 16), g.measureText(label).width + 6, 16);
    g.fillStyle = '#000';
    g.fillText(label, x + 3, Math.max(12, y - 4));
  }
}

const GRADIENTS = {
  diverging: 'linear-gradient(to right, #3b4cc0, #ffffff, #b40426)',
  viridis: 'linear-gradient(to right, #440154, #3b528b, #21918c, #5ec962, #fde725)',
  gray: 'linear-gradient(to right, #000, #fff)',
};

function fmt(v) {
  if (v === null || v === undefined) return '-';
  return Math.abs(v) >= 0.01 && Math.abs(v) < 1000 ? v.toFixed(3) : v.toExponential(2);
}

export function makePanel(container, method) {
  const panel = document.createElement('div');
  panel.className = 'panel';
  panel.dataset.method = method;
  panel.innerHTML = `<h3>${method}</h3><canvas id="map-${method}" width="240" height="240"></canvas>
    <div class="bar"></div><div class="bar-words"><span></span><span></span><span></span></div>
    <div class="numbers"></div><div class="links"></div>`;
  container.appendChild(panel);
  return panel;
}

// The map drawn (over the photo when asked), its numbers and colour bar, PNG and .npy links.
export async function fillPanel(panel, result, photo, overlay, links) {
  const canvas = panel.querySelector('canvas');
  const heat = await loadImage(result.png);
  canvas.width = 240;
  canvas.height = Math.max(1, Math.round(240 * photo.height / photo.width));
  const g = canvas.getContext('2d');
  g.imageSmoothingEnabled = false;
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (overlay) {
    g.drawImage(photo, 0, 0, canvas.width, canvas.height);
    g.globalAlpha = 0.55;
  }
  g.drawImage(heat, 0, 0, canvas.width, canvas.height);
  g.globalAlpha = 1;
  if (result.target.box) {
    const b = result.target.box;
    g.strokeStyle = '#e01010';
    g.lineWidth = 2;
    g.strokeRect(b.x0 * canvas.width, b.y0 * canvas.height, (b.x1 - b.x0) * canvas.width, (b.y1 - b.y0) * canvas.height);
  }
  panel.querySelector('.bar').style.background = GRADIENTS[result.colormap] || GRADIENTS.gray;
  const words = panel.querySelectorAll('.bar-words span');
  words[0].textContent = result.bar.low;
  words[1].textContent = result.bar.middle;
  words[2].textContent = result.bar.high;
  const lines = [
    `min ${fmt(result.min)}  max ${fmt(result.max)}`,
    result.clip !== null ? `clip ${fmt(result.clip)} (99th pct of |a|)` : 'shown min to max (no clip)',
    result.share_in_box !== null ? `share inside the box ${(100 * result.share_in_box).toFixed(1)}%` : '',
    Object.keys(result.settings).length ? Object.entries(result.settings).map(([k, v]) => `${k} ${v}`).join(', ') : '',
    result.layer ? `layer ${result.layer.split('/').slice(-2).join('/')}` : '',
    `rule ${result.rule.applied ? result.rule.name : result.rule.method}  ·  ${Math.round(result.ms)} ms`,
  ].filter(Boolean);
  panel.querySelector('.numbers').textContent = lines.join('\n');
  panel.querySelector('.links').innerHTML =
    `<a href="${links.png}" download="${result.method}.png">PNG</a><a href="${links.npy}" download="${result.method}.npy">.npy</a>`;
}
