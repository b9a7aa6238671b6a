// The front desk on the pages. Customer: choose the business, read and accept the privacy notice, queue, see the place
// and the wait; when a teller
// answers, the call starts by itself. Teller: log in, set available or away, see a ring with answer/decline (keys A
// and D), and the call starts on answer. The call itself is call-page.js, reached with a `vbank:join` event.
const el = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const post = (path, body) => fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const say = (text) => { el('desk-state').textContent = text; };
const join = (msg) => window.dispatchEvent(new CustomEvent('vbank:join', { detail: { room: msg.room, token: msg.token, role: msg.role } }));
const minutes = (ms) => Math.max(1, Math.round(ms / 60000));
window.deskLog = []; // every desk message, for operators' debugging and the browser tests

function socket(path, onMessage) {
  const ws = new WebSocket(`wss://${location.host}${path}`);
  ws.onmessage = (e) => { const m = JSON.parse(e.data); window.deskLog.push(m); onMessage(m); };
  return ws;
}

if (page === 'customer') {
  let ws = null;
  // Hanging up ends the visit: the desk ends the call when the customer's socket closes.
  window.addEventListener('vbank:hangup', () => {
    if (!ws) return;
    ws.send(JSON.stringify({ type: 'hangup' }));
    el('rating').hidden = false;
    el('rating').querySelector('button').focus();
  });
  // The rating, once, after the call; then the visit is over.
  el('rating').addEventListener('click', (e) => {
    const stars = Number(e.target.dataset?.stars);
    if (!stars || !ws) return;
    ws.send(JSON.stringify({ type: 'rating', stars, comment: el('rating-comment').value }));
  });
  // The privacy notice for the chosen business: queueing needs it accepted, and sends the hash of what was shown.
  let notice = null;
  const loadNotice = async () => {
    el('consent-ok').checked = false;
    el('queue').disabled = true;
    const r = await fetch(`/api/consent?business=${encodeURIComponent(el('business').value)}`);
    notice = r.ok ? await r.json() : null;
    el('consent-text').textContent = notice?.text ?? '';
  };
  el('business').addEventListener('change', loadNotice);
  el('consent-ok').addEventListener('change', () => { el('queue').disabled = !(notice && el('consent-ok').checked); });
  loadNotice();
  el('queue').addEventListener('click', async () => {
    el('queue').disabled = true;
    const consent = { version: notice.version, sm3: notice.sm3 };
    const r = await post('/api/queue', { business: el('business').value, consent });
    const body = await r.json();
    if (!r.ok) { say(body.error); el('queue').disabled = false; if (r.status === 409) loadNotice(); return; }
    say('正在排队 · Waiting in the queue');
    ws = socket(`/api/queue/ws?customer=${encodeURIComponent(body.customer)}&secret=${encodeURIComponent(body.secret)}`, (m) => {
      if (m.type === 'position') {
        say(`前面还有 ${m.position - 1} 位，预计等待约 ${minutes(m.wait_ms)} 分钟 · ${m.position - 1} ahead of you, about ${minutes(m.wait_ms)} min`);
      } else if (m.type === 'connected') {
        say('柜员已接听 · A teller answered');
        join(m);
      } else if (m.type === 'rated') {
        el('rating').hidden = true;
        say('感谢您的评价 · Thank you for your rating');
        ws.close();
        ws = null;
        el('queue').disabled = !el('consent-ok').checked;
      } else if (m.type === 'error') {
        say(m.message);
      }
    });
  });
}

if (page === 'teller') {
  let ws = null;
  let ringing = null;
  let current = null;
  const ring = (m) => {
    ringing = m.customer;
    el('ring').hidden = false;
    el('ring-text').textContent = `来电 · Call: ${m.business}${m.from ? ` (转接自 · from ${m.from})` : ''}`;
    el('answer').focus();
  };
  const send = (o) => ws?.send(JSON.stringify(o));
  el('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await post('/api/login', { name: el('login-name').value, password: el('login-password').value });
    el('login-password').value = '';
    const body = await r.json();
    if (!r.ok) { say(body.error); return; }
    el('login-form').hidden = true;
    el('desk-controls').hidden = false;
    say(`${body.name} · ${body.businesses.join(', ')}`);
    ws = socket('/api/teller/ws', (m) => {
      if (m.type === 'state') el('teller-state').textContent = m.state;
      else if (m.type === 'ring') ring(m);
      else if (m.type === 'withdrawn') { if (ringing === m.customer) { ringing = null; el('ring').hidden = true; } }
      else if (m.type === 'connected') { current = ringing; ringing = null; el('ring').hidden = true; join(m); }
      else if (m.type === 'error' || m.type === 'transfer_failed') say(m.message ?? `转接未接听 · transfer not answered: ${m.to}`);
    });
  });
  el('available').addEventListener('click', () => send({ type: 'state', state: 'available' }));
  el('away').addEventListener('click', () => send({ type: 'state', state: 'away' }));
  el('answer').addEventListener('click', () => ringing && send({ type: 'answer', customer: ringing }));
  el('decline').addEventListener('click', () => ringing && send({ type: 'decline', customer: ringing }));
  document.addEventListener('keydown', (e) => {
    if (!ringing || e.target.tagName === 'INPUT') return;
    if (e.key === 'a') el('answer').click();
    if (e.key === 'd') el('decline').click();
  });
  window.addEventListener('vbank:hangup', () => {
    if (current) send({ type: 'hangup', customer: current, outcome: el('outcome').value, notes: el('outcome-notes').value });
    current = null;
    el('outcome-notes').value = '';
  });
}
