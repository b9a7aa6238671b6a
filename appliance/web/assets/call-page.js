// The call controls on the customer and teller pages.
import { joinCall } from '/assets/call.js';

const el = (id) => document.getElementById(id);
const role = document.body.dataset.page === 'teller' ? 'teller' : 'customer';
const params = new URLSearchParams(location.search);
if (params.get('room')) el('room').value = params.get('room');

const states = {
  new: '准备中 · Preparing', connecting: '连接中 · Connecting', connected: '通话中 · In call',
  disconnected: '网络中断，正在重连 · Reconnecting', failed: '连接失败 · Connection failed', ended: '通话结束 · Call ended',
};
const show = (s) => { el('call-state').textContent = states[s] ?? s; el('call').dataset.state = s; };

let call = null;
el('join').addEventListener('click', async () => {
  el('join').disabled = true;
  show('new');
  try {
    call = await joinCall({ room: el('room').value.trim(), role, localVideo: el('local'), remotes: el('remotes'), onState: show });
    el('hangup').hidden = false;
  } catch (e) {
    show(`error: ${e.message}`);
    el('join').disabled = false;
  }
});
el('hangup').addEventListener('click', () => {
  call?.hangup();
  show('ended');
  el('hangup').hidden = true;
  el('join').disabled = false;
});
