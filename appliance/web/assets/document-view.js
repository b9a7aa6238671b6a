// The document a teller shows in the call, with live annotations, on both pages. The teller pushes a page (a call
// message the gateway records with the document's SM3); everyone fetches the page image the appliance rendered and
// draws the strokes in the call's order. Staff draw with pen, highlighter or eraser; the customer watches. Strokes
// are in page-relative coordinates (0..1), so both sides draw them in the same place whatever their screen.
// Talks to call-page.js through window events: `vbank:message` in (each call message), `vbank:send` out.
const el = (id) => document.getElementById(id);
const staff = document.body.dataset.page === 'teller';
const send = (body) => window.dispatchEvent(new CustomEvent('vbank:send', { detail: body }));
const canvas = el('doc-ink');
const img = el('doc-page');
const ink = canvas.getContext('2d');
const TOOLS = { pen: { width: 3 }, highlighter: { width: 18, color: '#ffd400' }, eraser: { width: 28, color: '#000000' } };

let visit = null; // the customer's `id:secret`, which lets the page fetch its call's documents
let shown = null; // the pushed document message body
let strokes = []; // strokes on the shown page, in call order
window.addEventListener('vbank:visit', (e) => { visit = e.detail; });

function draw(s) {
  if (!canvas.width) return;
  ink.save();
  ink.globalCompositeOperation = s.tool === 'eraser' ? 'destination-out' : 'source-over';
  ink.globalAlpha = s.tool === 'highlighter' ? 0.35 : 1;
  ink.strokeStyle = s.color;
  ink.lineWidth = s.width * (canvas.width / (canvas.clientWidth || canvas.width));
  ink.lineCap = 'round';
  ink.lineJoin = 'round';
  ink.beginPath();
  const [x0, y0] = s.points[0];
  ink.moveTo(x0 * canvas.width, y0 * canvas.height);
  for (const [x, y] of s.points.length > 1 ? s.points.slice(1) : [[x0 + 0.0005, y0]]) ink.lineTo(x * canvas.width, y * canvas.height);
  ink.stroke();
  ink.restore();
}
const redraw = () => { ink.clearRect(0, 0, canvas.width, canvas.height); strokes.forEach(draw); canvas.dataset.strokes = String(strokes.length); };

async function show(body) {
  shown = body;
  strokes = [];
  el('doc').hidden = false;
  el('doc-name').textContent = body.name;
  el('doc-pageno').textContent = `${body.page} / ${body.pages}`;
  img.removeAttribute('data-loaded');
  const r = await fetch(`/api/documents/${encodeURIComponent(body.id)}/pages/${body.page}`, { headers: visit ? { 'x-vbank-visit': visit } : {} });
  if (shown !== body) return; // another page was pushed meanwhile
  if (!r.ok) { el('doc-pageno').textContent = (await r.json()).error; return; }
  const old = img.src;
  img.onload = () => {
    if (old.startsWith('blob:')) URL.revokeObjectURL(old);
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    redraw();
    img.dataset.loaded = `${body.id}/${body.page}`;
  };
  img.src = URL.createObjectURL(await r.blob());
}

window.addEventListener('vbank:message', (e) => {
  const m = e.detail;
  if (m.type !== 'message') return;
  if (m.body.kind === 'document') show(m.body);
  else if (m.body.kind === 'stroke' && shown) { strokes.push(m.body); redraw(); } // redrawn whole: own live ink gives way to the call's order
  else if (m.body.kind === 'clear') { strokes = []; redraw(); }
});
for (const ev of ['vbank:hangup', 'vbank:leave']) window.addEventListener(ev, () => { el('doc').hidden = true; shown = null; strokes = []; });

if (staff) {
  const tool = () => document.querySelector('input[name="doc-tool"]:checked')?.value ?? 'pen';
  let points = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  };
  const current = () => {
    const t = tool();
    return { kind: 'stroke', tool: t, width: TOOLS[t].width, color: TOOLS[t].color ?? el('doc-color').value, points };
  };
  canvas.addEventListener('pointerdown', (e) => { if (!shown) return; canvas.setPointerCapture(e.pointerId); points = [at(e)]; });
  canvas.addEventListener('pointermove', (e) => {
    if (!points) return;
    const p = at(e);
    const [lx, ly] = points[points.length - 1];
    if (Math.hypot(p[0] - lx, p[1] - ly) < 0.002) return;
    points.push(p);
    draw({ ...current(), points: [[lx, ly], p] }); // drawn now; redrawn in call order when it comes back
  });
  const finish = () => {
    if (!points) return;
    // A long stroke goes as several messages of at most 1000 points, each continuing the last.
    for (let i = 0; i < points.length; i += 999) send({ ...current(), points: points.slice(i, i + 1000) });
    points = null;
  };
  canvas.addEventListener('pointerup', finish);
  canvas.addEventListener('pointercancel', finish);
  const turn = (by) => { if (shown && shown.page + by >= 1 && shown.page + by <= shown.pages) send({ kind: 'document', id: shown.id, page: shown.page + by }); };
  el('doc-prev').addEventListener('click', () => turn(-1));
  el('doc-next').addEventListener('click', () => turn(1));
  el('doc-clear').addEventListener('click', () => send({ kind: 'clear' }));
  document.addEventListener('keydown', (e) => {
    if (!shown || ['INPUT', 'TEXTAREA', 'SELECT'].includes(e.target.tagName)) return;
    if (e.key === 'PageDown') turn(1);
    if (e.key === 'PageUp') turn(-1);
  });
}
