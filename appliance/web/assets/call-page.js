// The call controls on the customer and teller pages. If the call drops without the user hanging up (network switch,
// a gateway that ended the session, lost signalling), the page rejoins the same room after a second; if its gateway
// went silent (the node died), at once.
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
  lost: '服务节点中断，正在切换 · Server lost, switching over',
};
const show = (s) => { el('call-state').textContent = states[s] ?? s; el('call').dataset.state = s; };

let call = null;
let token = null; // the call token the front desk handed over, if the call came through it
let role2 = role; // the role the desk gave (a transferred-to teller joins as specialist)
let wanted = false; // the user wants to be in the call
let retry = null;
let rejoins = 0;

function reconnect(afterMs = 1000) {
  if (retry || !wanted) return;
  show('reconnecting');
  const old = call;
  call = null;
  old?.hangup();
  retry = setTimeout(() => { retry = null; rejoins += 1; el('call').dataset.rejoins = String(rejoins); start(); }, afterMs);
}

async function start() {
  if (call) return;
  show('new');
  try {
    call = await joinCall({
      room: el('room').value.trim(),
      role: role2,
      token,
      localVideo: el('local'),
      remotes: el('remotes'),
      onMessage: showMessage,
      onState: (s) => {
        show(s);
        if (s === 'ended' || s === 'failed') reconnect();
        if (s === 'lost') reconnect(0);
      },
    });
    el('hangup').hidden = false;
    el('call-controls').hidden = false;
    el('chat').hidden = false;
    muted(false);
  } catch (e) {
    show(`error: ${e.message}`);
    call = null;
    reconnect();
  }
}

// Chat: text is always inserted as text (never HTML); links are shown only when they are https.
const roles = { customer: '客户 · Customer', teller: '柜员 · Teller', specialist: '专家 · Specialist' };
function showMessage(msg) {
  window.dispatchEvent(new CustomEvent('vbank:message', { detail: msg }));
  const li = document.createElement('li');
  if (msg.type === 'error') {
    li.className = 'chat-error';
    li.textContent = msg.message;
  } else {
    li.dataset.seq = String(msg.seq);
    li.dataset.kind = msg.body.kind;
    const who = document.createElement('strong');
    who.textContent = `${roles[msg.role] ?? msg.role}: `;
    li.append(who);
    if (msg.body.kind === 'chat') {
      li.append(msg.body.text);
    } else if (msg.body.kind === 'link' && msg.body.url.startsWith('https://')) {
      const a = document.createElement('a');
      a.href = msg.body.url;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = msg.body.title || msg.body.url;
      li.append(a);
    } else if (msg.body.kind === 'document') {
      li.append(`文档 · Document: ${msg.body.name} (p. ${msg.body.page})`);
    } else {
      return; // strokes are drawn on the shown page (document-view.js), not listed
    }
  }
  el('chat-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

// Mute: the microphone track stays, sending silence, so nothing is renegotiated and the recording shows the pause.
const sender = (kind) => call?.pc.getSenders().find((s) => s.track?.kind === kind);
function muted(on) {
  const mic = sender('audio')?.track;
  if (mic) mic.enabled = !on;
  el('mute').setAttribute('aria-pressed', String(on));
  el('mute').textContent = on ? '取消静音 · Unmute' : '静音 · Mute';
}
el('mute').addEventListener('click', () => muted(el('mute').getAttribute('aria-pressed') !== 'true'));
// Switch camera (a phone's front and back): the next camera replaces the current one on the same sender.
el('switch-camera').addEventListener('click', async () => {
  const video = sender('video');
  if (!video || camera) return; // not while the screen is shared
  const cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  if (cams.length < 2) { el('call-state').textContent = '只有一个摄像头 · This device has one camera'; return; }
  const now = video.track.getSettings().deviceId;
  const next = cams[(cams.findIndex((c) => c.deviceId === now) + 1) % cams.length];
  const media = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: next.deviceId }, width: { ideal: 640 }, height: { ideal: 480 } } });
  const old = video.track;
  await video.replaceTrack(media.getVideoTracks()[0]);
  old.stop();
  el('local').srcObject = new MediaStream([media.getVideoTracks()[0], ...(sender('audio')?.track ? [sender('audio').track] : [])]);
  call.extraTracks = [...(call.extraTracks ?? []), media.getVideoTracks()[0]];
});

// Screen sharing (desk-page.js, after the customer allowed it): the screen goes out on the camera's sender in its
// place, without renegotiating; `track: null` puts the camera back.
let camera = null;
window.addEventListener('vbank:screen', async (e) => {
  const sender = call?.pc.getSenders().find((s) => s.track?.kind === 'video');
  if (!sender) return;
  camera ??= sender.track;
  await sender.replaceTrack(e.detail.track ?? camera);
  if (!e.detail.track) camera = null;
});

// Other parts of the page (the document viewer) send call messages through here.
window.addEventListener('vbank:send', (e) => call?.send(e.detail));

el('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = el('chat-text').value.trim();
  if (!text || !call) return;
  // A bare https address goes as a link the other side can open; anything else as text.
  call.send(/^https:\/\/\S+$/.test(text) && text.length <= 2048 ? { kind: 'link', url: text } : { kind: 'chat', text });
  el('chat-text').value = '';
});

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
// The front desk (desk-page.js) connected us: join its room with its token.
window.addEventListener('vbank:join', (e) => {
  el('call').dataset.desk = '1'; // the desk chose the room: no room field or start button to confuse
  el('room').value = e.detail.room;
  token = e.detail.token ?? null;
  role2 = e.detail.role ?? role;
  wanted = true;
  el('join').disabled = true;
  start();
});
// Leave the call: the user hung up (the desk is told, `vbank:hangup`), or the desk ended it (`vbank:leave`).
function leave() {
  wanted = false;
  clearTimeout(retry);
  retry = null;
  const old = call;
  call = null;
  old?.hangup();
  old?.extraTracks?.forEach((t) => t.stop());
  show('ended');
  el('hangup').hidden = true;
  el('call-controls').hidden = true;
  el('join').disabled = false;
}
el('hangup').addEventListener('click', () => {
  window.dispatchEvent(new CustomEvent('vbank:hangup'));
  leave();
});
window.addEventListener('vbank:leave', leave);
