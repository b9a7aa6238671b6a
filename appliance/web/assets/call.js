// One call: our camera and microphone go out; every other participant's tracks come in, one <video> per person.
// SDP travels over /ws (same origin, TLS): we offer once when joining; the gateway offers again whenever someone's
// tracks appear or go, and we answer. Chat, link, document and whiteboard messages travel on the same socket
// (`send(body)`); each arrives back, with its place in the call's record, through `onMessage`. A call the front desk
// set up carries its call token (`token`). In an end-to-end encrypted call every frame goes through the page's
// frame-encryption worker (e2ee/call-e2ee.js); the gateway relays only what it cannot read.
import { frameEncryption } from '/assets/e2ee/call-e2ee.js';

export async function joinCall({ room, role, token, localVideo, remotes, onState: report, onMessage = () => {} }) {
  let closed = false; // hung up: this call reports nothing more (its socket's close would look like a drop)
  const onState = (s) => { if (!closed) report(s); };
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { width: { ideal: 640 }, height: { ideal: 480 } },
  });
  localVideo.srcObject = media;
  const e2ee = await frameEncryption();
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', ...e2ee?.peerConfig });
  for (const track of media.getTracks()) {
    pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
  }
  e2ee?.send(pc.getSenders());
  pc.ontrack = (e) => {
    e2ee?.receive(e.receiver);
    const id = e.streams[0]?.id ?? e.track.id;
    let video = remotes.querySelector(`video[data-stream="${CSS.escape(id)}"]`);
    if (!video) {
      video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      video.dataset.stream = id;
      remotes.append(video);
    }
    video.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    e.track.onended = () => { if (!video.srcObject?.getTracks().some((t) => t.readyState === 'live')) video.remove(); };
  };
  pc.onconnectionstatechange = () => onState(pc.connectionState);
  // The media path broke while signalling stayed up (a NAT rebinding, a Wi-Fi/4G switch on the phone): restart ICE
  // in the same session after 2 s, so tracks and subscriptions stay. If that fails, the page rejoins instead.
  let restartTimer = null;
  let restarts = 0;
  const restartIce = async () => {
    restartTimer = null;
    if (ws.readyState !== WebSocket.OPEN || pc.signalingState !== 'stable') return;
    if (!['disconnected', 'failed'].includes(pc.iceConnectionState)) return;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      ws.send(JSON.stringify({ type: 'restart', sdp: pc.localDescription.sdp }));
      restarts += 1;
      onState('reconnecting');
    } catch {
      // The connection closed meanwhile; the page rejoins.
    }
  };
  pc.oniceconnectionstatechange = () => {
    if (['disconnected', 'failed'].includes(pc.iceConnectionState)) {
      restartTimer ??= setTimeout(restartIce, 2000);
    } else if (restartTimer) {
      clearTimeout(restartTimer);
      restartTimer = null;
    }
  };

  const ws = new WebSocket(`wss://${location.host}/ws`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error('signalling unavailable')); });
  // A gateway node that dies (power, a kernel panic, a network split) closes nothing: its socket just goes quiet. The
  // page pings four times a second; with nothing heard for 1.2 s the call is 'lost' and the page rejoins at once,
  // through the VIP, on the node that took over. Counted from the join's answer: the gateway reads nothing while it
  // admits the join (it opens the recording first).
  let heard = performance.now();
  let answered = false;
  const heartbeat = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (answered && performance.now() - heard > 1200) {
      clearInterval(heartbeat);
      onState('lost');
      return;
    }
    ws.send('{"type":"ping"}');
  }, 250);
  // One message at a time, in order: a media key must not overtake the answer that says the call is encrypted.
  let inbox = Promise.resolve();
  ws.onmessage = (m) => {
    heard = performance.now();
    inbox = inbox.then(() => handle(m)).catch((e) => onState(`error: ${e.message}`));
  };
  const handle = async (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === 'answer') {
      answered = true;
      if (e2ee && !msg.restart) await (msg.e2ee ? e2ee.start(msg.e2ee) : e2ee.clear());
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    } else if (msg.type === 'media-key') {
      try {
        await e2ee.key(msg);
      } catch (e) {
        onState(`error: ${e.message}`);
      }
    } else if (msg.type === 'offer') {
      // Our ICE-restart offer crossed this one: the gateway drops its offer and sends it again after answering ours.
      if (pc.signalingState === 'have-local-offer') return;
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      ws.send(JSON.stringify({ type: 'answer', sdp: pc.localDescription.sdp }));
    } else if (msg.type === 'message') {
      onMessage(msg);
    } else if (msg.type === 'error' && ['bad_message', 'rate_limited', 'read_only', 'not_recorded', 'missed_messages'].includes(msg.code)) {
      onMessage({ type: 'error', code: msg.code, message: msg.message });
    } else if (msg.type === 'error') {
      onState(`error: ${msg.message}`);
    } else if (msg.type === 'left') {
      onState('ended');
    }
  };
  ws.onclose = () => { clearInterval(heartbeat); onState('ended'); };
  await pc.setLocalDescription(await pc.createOffer());
  ws.send(JSON.stringify({
    type: 'join', room, role, sdp: pc.localDescription.sdp, ...(token ? { token } : {}),
    ...(e2ee ? { e2ee: { public_key: e2ee.publicKey } } : {}),
  }));

  const call = {
    pc,
    ws,
    send(body) { ws.send(JSON.stringify({ type: 'message', body })); },
    get restarts() { return restarts; },
    /** End-to-end encryption: null when this browser has none; its `suite` is null when the call is not encrypted. */
    e2ee,
    hangup() {
      closed = true;
      clearInterval(heartbeat);
      ws.close();
      pc.close();
      e2ee?.close();
      media.getTracks().forEach((t) => t.stop());
    },
  };
  window.vbankCall = call; // for operators' debugging and the browser tests
  return call;
}
