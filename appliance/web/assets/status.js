// Shows whether the appliance can take calls, from the gateway's /api/status. No third-party code: the appliance is
// air-gapped, so everything a page needs is served by the gateway itself.
const el = (id) => document.getElementById(id);

function show(status) {
  el('dev-banner').hidden = !status.dev;
  const box = el('service-status');
  box.dataset.state = status.ready ? 'ready' : 'unavailable';
  el('status-text').textContent = status.ready
    ? '服务可用 · Service available'
    : '服务暂不可用，请稍后再试 · Service temporarily unavailable, please try again later';
  el('node').textContent = `${status.node} · vbank ${status.version}`;
  const tbody = document.querySelector('#checks tbody');
  if (tbody) {
    tbody.replaceChildren(...Object.entries(status.checks).map(([name, check]) => {
      const tr = document.createElement('tr');
      const a = document.createElement('td');
      const b = document.createElement('td');
      a.textContent = name;
      b.textContent = check.state + (check.detail ? ` — ${check.detail}` : '');
      tr.append(a, b);
      return tr;
    }));
  }
}

async function refresh() {
  try {
    const r = await fetch('/api/status', { cache: 'no-store' });
    show(await r.json());
  } catch (e) {
    el('service-status').dataset.state = 'unavailable';
    el('status-text').textContent = '无法连接服务 · Cannot reach the service';
  }
}

refresh();
setInterval(refresh, 5000);
