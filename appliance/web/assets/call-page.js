// The call controls on the customer and teller pages. If the call drops without the user hanging up (network switch,
// a gateway that ended the session, lost signalling), the page rejoins the same room after a second.
import { joinCall } from '/assets/call.js';

const el = (id) => document.getElementById(id);
// The teller console can also join as a specialist (conferenced in): ?role=specialist.
const params0 = new URLSearchParams(location.search);
const role = document.body.dataset.page === 'teller' ? (params0.get('role') === 'specialist' ? 'specialist' : 'teller') : 'customer';
const params = new URLSearchParams(location.search);
if (params.get('room')) el('room').value = params.get('room');

const states = {
  new: '准备中 · Preparing', connecting: '连接中 · Connecting', connected: '通话中 · In call',
  disconnected: '网络中断，正在恢复 · Connection interrupted', reconnecting: '正在重新连接 · Reconnecting',
  failed: '连接失败 · Connection failed', ended: '通话结束 · Call ended',
};
const show = (s) => { el('call-state').textContent = states[s] ?? s; el('call').dataset.state = s; };

let call = null;
let wanted = false; // the user wants to be in the call
let retry = null;
let rejoins = 0;

function reconnect() {
  if (retry || !wanted) return;
  show('reconnecting');
  const old = call;
  call = null;
  old?.hangup();
  retry = setTimeout(() => { retry = null; rejoins += 1; el('call').dataset.rejoins = String(rejoins); start(); }, 1000);
}

async function start() {
  if (call) return;
  show('new');
  try {
    call = await joinCall({
      room: el('room').value.trim(),
      role,
      localVideo: el('local'),
      remotes: el('remotes'),
      onState: (s) => {
        show(s);
        if (s === 'ended' || s === 'failed') reconnect();
      },
    });
    el('hangup').hidden = false;
  } catch (e) {
    show(`error: ${e.message}`);
    call = null;
    reconnect();
  }
}

// Smart routing (智能选路): a new call goes to the least-loaded healthy gateway node. Compare node names, not
// origins, so a page opened by a LAN address is not sent to another name for the same node.
async function routed() {
  try {
    const [route, status] = await Promise.all([fetch('/api/route'), fetch('/api/status')].map((p) => p.then((r) => (r.ok ? r.json() : null))));
    if (route?.node && status?.node && route.node !== status.node && route.url) {
      location.href = new URL(`${location.pathname}?room=${encodeURIComponent(el('room').value.trim())}`, route.url).href;
      return false;
    }
  } catch {
    // Routing data unavailable: stay on this node.
  }
  return true;
}

el('join').addEventListener('click', async () => {
  el('join').disabled = true;
  if (!(await routed())) return;
  wanted = true;
  start();
});
el('hangup').addEventListener('click', () => {
  wanted = false;
  clearTimeout(retry);
  retry = null;
  const old = call;
  call = null;
  old?.hangup();
  show('ended');
  el('hangup').hidden = true;
  el('join').disabled = false;
});
