// A UDP relay for the browser tests, standing in for a network path the test can cut: browsers send media to the
// relay (vbank up advertises it), which forwards each browser's packets to the gateway from its own socket, like a
// NAT, and the replies back. `cut(ms)` drops everything in both directions for that long.
import dgram from 'node:dgram';

export async function udpRelay(targetPort) {
  const front = dgram.createSocket('udp4');
  await new Promise((ok) => front.bind(0, '127.0.0.1', ok));
  const mappings = new Map();
  let cutUntil = 0;
  const open = () => Date.now() >= cutUntil;
  front.on('message', (msg, from) => {
    if (!open()) return;
    const key = `${from.address}:${from.port}`;
    let back = mappings.get(key);
    if (!back) {
      back = dgram.createSocket('udp4');
      back.bind(0, '127.0.0.1');
      back.on('message', (reply) => { if (open()) front.send(reply, from.port, from.address); });
      mappings.set(key, back);
    }
    back.send(msg, targetPort, '127.0.0.1');
  });
  return {
    port: front.address().port,
    cut(ms) { cutUntil = Date.now() + ms; },
    close() { front.close(); for (const b of mappings.values()) b.close(); },
  };
}
