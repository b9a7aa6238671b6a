// A UDP relay for the browser tests, standing in for a network path the test can impair: browsers send media to the
// relay (vbank up advertises it), which forwards each browser's packets to the gateway from its own socket, like a
// NAT, and the replies back. `cut(ms)` drops everything in both directions for that long; `impair({loss, jitterMs})`
// drops that fraction of packets at random and delays each by a random 0..jitterMs (so packets also reorder).
// The machine's kernel has no netem, so this is the in-process impairment.
import dgram from 'node:dgram';

export async function udpRelay(targetPort) {
  const front = dgram.createSocket('udp4');
  await new Promise((ok) => front.bind(0, '127.0.0.1', ok));
  const mappings = new Map();
  let cutUntil = 0;
  let loss = 0;
  let jitterMs = 0;
  const open = () => Date.now() >= cutUntil && Math.random() >= loss;
  const later = (f) => (jitterMs > 0 ? setTimeout(f, Math.random() * jitterMs) : f());
  front.on('message', (msg, from) => {
    if (!open()) return;
    const key = `${from.address}:${from.port}`;
    let back = mappings.get(key);
    if (!back) {
      back = dgram.createSocket('udp4');
      back.bind(0, '127.0.0.1');
      back.on('message', (reply) => { if (open()) later(() => front.send(reply, from.port, from.address)); });
      mappings.set(key, back);
    }
    later(() => back.send(msg, targetPort, '127.0.0.1'));
  });
  return {
    port: front.address().port,
    cut(ms) { cutUntil = Date.now() + ms; },
    impair(opts) { loss = opts.loss ?? 0; jitterMs = opts.jitterMs ?? 0; },
    close() { front.close(); for (const b of mappings.values()) b.close(); },
  };
}
