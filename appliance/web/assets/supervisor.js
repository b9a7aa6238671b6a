// The supervisor console: log in, then the tellers, queues, live calls and the customers' ratings, refreshed every
// two seconds. Everything is inserted as text, never as HTML.
const el = (id) => document.getElementById(id);
const secs = (ms) => (ms == null ? '–' : `${Math.round(ms / 1000)} s`);

function fill(id, rows) {
  const body = el(id).querySelector('tbody');
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.append(c); else td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

// Take a teller out of the rotation (they left the desk with the console open).
function awayButton(t) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = '设为暂离 · Set away';
  b.dataset.teller = t.name;
  b.disabled = t.state !== 'available';
  b.addEventListener('click', async () => {
    const r = await fetch(`/api/supervisor/tellers/${encodeURIComponent(t.name)}/state`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ state: 'away' }) });
    el('desk-state').textContent = r.ok ? `${t.name}: away` : (await r.json()).error;
    refresh();
  });
  return b;
}

async function refresh() {
  const r = await fetch('/api/supervisor/overview');
  if (!r.ok) { el('desk-state').textContent = (await r.json()).error; return; }
  const o = await r.json();
  window.overview = o; // for the browser tests
  fill('queues', o.queues.map((q) => [q.business, String(q.waiting), secs(q.longest_wait_ms)]));
  fill('tellers', o.tellers.map((t) => [t.name, t.ringing ? `${t.state} (ringing)` : t.state, t.businesses.join(', '), awayButton(t)]));
  const quality = (q) => (q ? `RTT ${Math.round(q.rtt_ms ?? 0)} ms · ${(q.loss_pct ?? 0).toFixed(1)}% · jitter ${Math.round(q.jitter_ms ?? 0)} ms` : '–');
  fill('calls', o.calls.map((c) => [c.business, c.tellers.join(' → '), c.room ?? '', quality(c.quality)]));
  const rated = await fetch('/api/supervisor/ratings');
  if (rated.ok) {
    const { ratings } = await rated.json();
    window.ratings = ratings;
    fill('ratings', ratings.map((x) => [new Date(x.at_ms).toLocaleString(), x.room, '★'.repeat(x.stars), x.comment]));
  }
}

el('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: el('login-name').value, password: el('login-password').value }) });
  el('login-password').value = '';
  const body = await r.json();
  if (!r.ok) { el('desk-state').textContent = body.error; return; }
  if (body.role !== 'supervisor') { el('desk-state').textContent = '仅限班长 · Supervisors only'; return; }
  el('login-form').hidden = true;
  el('overview').hidden = false;
  el('desk-state').textContent = body.name;
  await refresh();
  setInterval(refresh, 2000);
});

// Recordings: search (audited), open one (its events; audited), play it with a stated reason (audited, watermarked).
let opened = null;
const when = (us) => (us ? new Date(us / 1000).toLocaleString() : '–');
el('rec-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch(`/api/supervisor/recordings?call=${encodeURIComponent(el('rec-call').value.trim())}`);
  const body = await r.json();
  if (!r.ok) { el('desk-state').textContent = body.error ?? body.message; return; }
  window.recordings = body.recordings;
  const rows = body.recordings.map((x) => {
    const tr = document.createElement('tr');
    for (const c of [when(x.started_us), x.call, x.state, String(x.tracks)]) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    const td = document.createElement('td');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = '查看 · Open';
    b.dataset.id = x.id;
    b.addEventListener('click', () => openRecording(x));
    td.append(b);
    tr.append(td);
    return tr;
  });
  el('recordings').querySelector('tbody').replaceChildren(...rows);
});

async function openRecording(x) {
  opened = x;
  el('rec-view').hidden = false;
  el('rec-video').hidden = true;
  el('rec-video').removeAttribute('src');
  el('rec-title').textContent = `${x.call} · ${x.id}`;
  const r = await fetch(`/api/supervisor/recordings/${encodeURIComponent(x.id)}/events`);
  const body = await r.json();
  if (!r.ok) { el('rec-events').replaceChildren(); el('desk-state').textContent = body.error ?? body.message; return; }
  window.recordingEvents = body.events;
  el('rec-events').replaceChildren(...body.events.map((ev) => {
    const li = document.createElement('li');
    const extra = ev.role ?? ev.teller ?? ev.state ?? ev.outcome ?? ev.name ?? '';
    li.textContent = `${when(ev.at_us)} ${ev.kind}${ev.step ? ` · ${ev.step}: ${ev.result}` : ''}${extra ? ` · ${extra}` : ''}`;
    return li;
  }));
  // The personal-data ledger: what each identity check collected and where it went, from its sealed attestation;
  // first, the call's own audio and video.
  const rows = [[body.events[0]?.at_us, '双录 · recording', '通话音视频 · the call\'s audio and video',
    '本录像，加密，密钥在 HSM · this recording, encrypted under a key in the HSM',
    '随本录像，按本行留存规定 · with this recording, under the bank\'s retention rules']];
  for (const ev of body.events.filter((e) => Array.isArray(e.personal_data))) {
    for (const p of ev.personal_data) rows.push([ev.at_us, ev.step, p.item, p.kept, p.deleted]);
  }
  el('rec-ledger').hidden = rows.length < 2;
  el('rec-ledger').querySelector('tbody').replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    for (const c of [when(cells[0]), ...cells.slice(1)]) {
      const td = document.createElement('td');
      td.textContent = c ?? '';
      tr.append(td);
    }
    return tr;
  }));
  el('rec-reason').focus();
}

el('play-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (!opened) return;
  const v = el('rec-video');
  v.hidden = false;
  v.src = `/api/supervisor/recordings/${encodeURIComponent(opened.id)}/video?reason=${encodeURIComponent(el('rec-reason').value.trim())}`;
  v.play().catch(() => {});
});

el('audit-load').addEventListener('click', async () => {
  const r = await fetch('/api/supervisor/audit');
  const body = await r.json();
  if (!r.ok) { el('desk-state').textContent = body.error ?? body.message; return; }
  window.auditEntries = body.entries;
  fill('audit', body.entries.map((x) => [x.time ?? x.at ?? '', x.actor ?? '', x.action ?? '', x.target ?? '', x.outcome ?? '']));
});
