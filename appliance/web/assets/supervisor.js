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
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

async function refresh() {
  const r = await fetch('/api/supervisor/overview');
  if (!r.ok) { el('desk-state').textContent = (await r.json()).error; return; }
  const o = await r.json();
  window.overview = o; // for the browser tests
  fill('queues', o.queues.map((q) => [q.business, String(q.waiting), secs(q.longest_wait_ms)]));
  fill('tellers', o.tellers.map((t) => [t.name, t.ringing ? `${t.state} (ringing)` : t.state, t.businesses.join(', ')]));
  fill('calls', o.calls.map((c) => [c.business, c.tellers.join(' → ')]));
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
