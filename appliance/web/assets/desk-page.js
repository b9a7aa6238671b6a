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

// A desk socket. What is sent while it is not open (a click right after logging in) goes once it is. If it drops (a
// phone changing networks, a gateway restarting), it reconnects with the same credentials for two minutes: the
// customer keeps their place, the teller their session.
function socket(path, onMessage) {
  const waiting = [];
  let ws = null;
  let closing = false;
  let lostSince = null;
  const open = () => {
    ws = new WebSocket(`wss://${location.host}${path}`);
    ws.onopen = () => { lostSince = null; for (const text of waiting.splice(0)) ws.send(text); };
    ws.onmessage = (e) => { const m = JSON.parse(e.data); window.deskLog.push(m); onMessage(m); };
    ws.onclose = () => {
      if (closing) return;
      lostSince ??= Date.now();
      if (Date.now() - lostSince > 120_000) { say('连接已断开，请刷新页面 · Connection lost: reload the page'); return; }
      setTimeout(open, 1000);
    };
  };
  open();
  return {
    send: (text) => (ws.readyState === WebSocket.OPEN ? ws.send(text) : waiting.push(text)),
    close: () => { closing = true; ws.close(); },
  };
}

if (page === 'customer') {
  let ws = null;
  window.deskSend = (o) => ws?.send(JSON.stringify(o)); // for operators' debugging and the browser tests
  // Hanging up ends the visit: the desk ends the call when the customer's socket closes.
  window.addEventListener('vbank:hangup', () => {
    if (!ws) return;
    ws.send(JSON.stringify({ type: 'hangup' }));
    el('rating').hidden = false;
    el('rating').querySelector('button').focus();
  });
  // The electronic signature: the teller's document, signed by drawing; the gateway seals it.
  let request = null;
  const pad = el('sign-pad');
  const ink = pad.getContext('2d');
  let drawn = false;
  const showSign = (m) => {
    request = m.request;
    el('sign-title').textContent = m.title;
    el('sign-text').textContent = m.text;
    ink.clearRect(0, 0, pad.width, pad.height);
    drawn = false;
    el('sign').hidden = false;
  };
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)]; };
  let pen = false;
  pad.addEventListener('pointerdown', (e) => { pen = true; ink.beginPath(); ink.moveTo(...at(e)); });
  for (const end of ['pointerup', 'pointerleave', 'pointercancel']) pad.addEventListener(end, () => { pen = false; });
  pad.addEventListener('pointermove', (e) => {
    if (!pen) return;
    ink.lineWidth = 2.5; ink.lineCap = 'round'; ink.strokeStyle = '#0b1220';
    ink.lineTo(...at(e)); ink.stroke(); drawn = true;
  });
  el('sign-clear').addEventListener('click', () => { ink.clearRect(0, 0, pad.width, pad.height); drawn = false; });
  el('sign-submit').addEventListener('click', () => {
    if (!drawn) { say('请先签名 · Please sign first'); return; }
    ws?.send(JSON.stringify({ type: 'signature', request, png: pad.toDataURL('image/png') }));
  });
  // Screen sharing, only when the customer allows it here (and picks what to share in the browser's own prompt).
  // The consent is recorded before the page starts sending the screen in place of the camera.
  let screen = null;
  const stopScreen = () => {
    if (!screen) return;
    window.dispatchEvent(new CustomEvent('vbank:screen', { detail: { track: null } }));
    screen.getTracks().forEach((t) => t.stop());
    screen = null;
    el('screen-stop').hidden = true;
    ws?.send(JSON.stringify({ type: 'screen', state: 'stopped' }));
  };
  el('screen-allow').addEventListener('click', async () => {
    el('screen').hidden = true;
    ws?.send(JSON.stringify({ type: 'screen', state: 'allowed' }));
    try {
      screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      say('未共享屏幕 · Screen not shared');
      return;
    }
    const track = screen.getVideoTracks()[0];
    track.onended = stopScreen; // the browser's own "stop sharing"
    ws?.send(JSON.stringify({ type: 'screen', state: 'started' }));
    window.dispatchEvent(new CustomEvent('vbank:screen', { detail: { track } }));
    el('screen-stop').hidden = false;
    say('正在共享屏幕 · Sharing your screen');
  });
  el('screen-decline').addEventListener('click', () => {
    el('screen').hidden = true;
    ws?.send(JSON.stringify({ type: 'screen', state: 'declined' }));
  });
  el('screen-stop').addEventListener('click', stopScreen);
  window.addEventListener('vbank:hangup', stopScreen);
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
    el('desk').dataset.visit = body.customer; // the business choice and notice give way to the visit
    window.dispatchEvent(new CustomEvent('vbank:visit', { detail: `${body.customer}:${body.secret}` }));
    ws = socket(`/api/queue/ws?customer=${encodeURIComponent(body.customer)}&secret=${encodeURIComponent(body.secret)}`, (m) => {
      if (m.type === 'position') {
        say(`前面还有 ${m.position - 1} 位，预计等待约 ${minutes(m.wait_ms)} 分钟 · ${m.position - 1} ahead of you, about ${minutes(m.wait_ms)} min`);
      } else if (m.type === 'connected') {
        say('柜员已接听 · A teller answered');
        join(m);
      } else if (m.type === 'screen_request') {
        el('screen').hidden = false;
        el('screen-allow').focus();
      } else if (m.type === 'sign_request') {
        showSign(m);
      } else if (m.type === 'signed') {
        el('sign').hidden = true;
        say('已签署 · Signed');
      } else if (m.type === 'rated') {
        el('rating').hidden = true;
        say('感谢您的评价 · Thank you for your rating');
        ws.close();
        ws = null;
        delete el('desk').dataset.visit;
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
    // The queues this teller serves: how many wait, and the longest wait.
    const queues = async () => {
      const r = await fetch('/api/teller/queues');
      if (!r.ok) return;
      const { queues: qs } = await r.json();
      el('my-queues').textContent = qs.map((q) => `${q.business}: ${q.waiting}${q.waiting ? ` (${minutes(q.longest_wait_ms)} min)` : ''}`).join(' · ');
    };
    queues();
    setInterval(queues, 3000);
    ws = socket('/api/teller/ws', (m) => {
      if (m.type === 'state') el('teller-state').textContent = m.state;
      else if (m.type === 'ring') ring(m);
      else if (m.type === 'withdrawn') { if (ringing === m.customer) { ringing = null; el('ring').hidden = true; } }
      else if (m.type === 'connected') {
        current = ringing;
        ringing = null;
        el('ring').hidden = true;
        join(m);
        window.dispatchEvent(new CustomEvent('vbank:customer', { detail: current }));
      }
      else if (m.type === 'screen') say({ allowed: '客户同意共享屏幕 · The customer allowed screen sharing', declined: '客户拒绝共享屏幕 · The customer declined screen sharing', started: '客户正在共享屏幕 · The customer is sharing their screen', stopped: '客户已停止共享屏幕 · The customer stopped sharing' }[m.state]);
      else if (m.type === 'ended' && m.customer === current) {
        // The customer left: this page leaves the call too (its recording closes when the last one is out).
        current = null;
        window.dispatchEvent(new CustomEvent('vbank:customer', { detail: null }));
        window.dispatchEvent(new CustomEvent('vbank:leave'));
        say(`客户已离开 · The customer left (${m.why})`);
      } else if (m.type === 'signed') {
        say(`客户已签署 · The customer signed (SM3 ${m.document_sm3.slice(0, 16)}…)`);
        window.dispatchEvent(new CustomEvent('vbank:signing', { detail: false }));
      }
      else if (m.type === 'error' || m.type === 'transfer_failed') say(m.message ?? `转接未接听 · transfer not answered: ${m.to}`);
    });
  });
  el('available').addEventListener('click', () => send({ type: 'state', state: 'available' }));
  el('away').addEventListener('click', () => send({ type: 'state', state: 'away' }));
  el('sign-request').addEventListener('click', () => {
    if (!current) return;
    send({ type: 'sign_request', customer: current, title: el('sign-title').value, text: el('sign-text').value });
    window.dispatchEvent(new CustomEvent('vbank:signing', { detail: true }));
  });
  // A document for the call: uploaded, rendered by the appliance, then its first page pushed to everyone.
  el('doc-push').addEventListener('click', async () => {
    const file = el('doc-file').files[0];
    if (!current || !file) { say('请先接通客户并选择文件 · Answer a call and choose a file first'); return; }
    say('正在处理文档 · Preparing the document…');
    const r = await fetch(`/api/documents?customer=${encodeURIComponent(current)}&name=${encodeURIComponent(file.name)}`, { method: 'POST', body: file });
    const b = await r.json();
    if (!r.ok) { say(b.error); return; }
    window.dispatchEvent(new CustomEvent('vbank:send', { detail: { kind: 'document', id: b.id, page: 1 } }));
    say(`已推送 · Pushed: ${b.name} (${b.pages} 页 · pages)`);
  });
  el('screen-request').addEventListener('click', () => current && send({ type: 'screen_request', customer: current }));
  // A warm transfer: the other teller rings and joins; this one stays until they hang up.
  el('transfer').addEventListener('click', () => current && send({ type: 'transfer', customer: current, to: el('transfer-to').value.trim() }));
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
    window.dispatchEvent(new CustomEvent('vbank:customer', { detail: null }));
    el('outcome-notes').value = '';
  });
}
