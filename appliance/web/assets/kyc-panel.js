// The teller's identity checks during a call (身份核验): read the ID card held to the camera, face in frame, the live
// face against the card's photo (advisory), 联网核查 with the card read or with what the teller typed, and a company's
// credit code. Each button asks the appliance for one check of the customer in this call; the answer shows what the
// KYC service masked (110101********1234, 测*甲) and what to do next. The ID number typed by the teller is cleared
// from the page once it has been checked. Face in frame can also run every few seconds while the customer signs
// (签署期间持续检测), each check attested in the recording. When the authority returns its photo of the citizen (NCIIC),
// it is shown beside the answer for this check only and removed when the customer leaves.
const el = (id) => document.getElementById(id);
let customer = null;
let watching = null;
window.kycLog = []; // every answer, for the browser tests

async function ask(path, body, out) {
  out.dataset.state = 'checking';
  out.textContent = '核验中… · Checking…';
  let r;
  try {
    r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch {
    out.dataset.state = 'error';
    out.textContent = '网络中断，请重试 · The network failed: try again';
    return null;
  }
  const answer = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  window.kycLog.push({ path, status: r.status, ...answer });
  out.dataset.state = r.ok ? answer.verdict : 'error';
  out.textContent = r.ok ? answer.message : answer.error;
  return r.ok ? answer : null;
}

async function faceInFrame() {
  if (!customer) return;
  const a = await ask('/api/kyc/face-in-frame', { customer }, el('kyc-face-result'));
  if (a && a.verdict !== 'one-face' && watching) el('kyc-face-result').textContent = `⚠ ${a.message}`;
}

el('kyc-face').addEventListener('click', faceInFrame);
el('kyc-compare').addEventListener('click', async () => {
  if (!customer) return;
  const out = el('kyc-compare-result');
  const a = await ask('/api/kyc/face-compare', { customer }, out);
  if (a && typeof a.score === 'number') out.textContent = `${a.message} (${a.score}/100)`;
});
for (const side of ['front', 'back']) {
  el(`kyc-card-${side}`).addEventListener('click', async () => {
    if (!customer) return;
    const out = el('kyc-card-result');
    const a = await ask('/api/kyc/id-card', { customer, side }, out);
    if (!a) return;
    const fields = side === 'front'
      ? [a.name, a.id_number, a.sex, a.ethnicity, a.address]
      : [a.authority, a.validity];
    out.textContent = `${a.message} — ${fields.filter(Boolean).join(' · ')}${a.warnings?.length ? ` ⚠ ${a.warnings.join('; ')}` : ''}`;
    // The full name and number stay on the appliance; this button verifies them.
    if (side === 'front') el('kyc-identity-card').disabled = a.verdict !== 'read';
  });
}
function showIdentity(a, out) {
  out.textContent = `${a.message} — ${a.name} ${a.id_number}${a.request_id ? ` (${a.request_id})` : ''}`;
  const photo = el('kyc-identity-photo');
  photo.hidden = !a.photo;
  if (a.photo) photo.src = a.photo; else photo.removeAttribute('src');
}

el('kyc-identity-card').addEventListener('click', async () => {
  if (!customer) return;
  const out = el('kyc-identity-result');
  const a = await ask('/api/kyc/identity', { customer, from_card: true }, out);
  el('kyc-identity-card').disabled = true; // a card read is used once
  if (a) showIdentity(a, out);
});
el('kyc-identity').addEventListener('click', async () => {
  if (!customer) return;
  const name = el('kyc-name').value.trim();
  const id = el('kyc-id').value.trim().toUpperCase();
  const out = el('kyc-identity-result');
  const a = await ask('/api/kyc/identity', { customer, name, id_number: id }, out);
  if (!a) return;
  showIdentity(a, out);
  if (a.verdict !== 'bad-input') {
    el('kyc-id').value = '';
    el('kyc-name').value = '';
  }
});

el('kyc-uscc-check').addEventListener('click', () => customer
  && ask('/api/kyc/credit-code', { customer, code: el('kyc-uscc').value.trim() }, el('kyc-uscc-result')));

const stopWatching = () => { clearInterval(watching); watching = null; };
window.addEventListener('vbank:signing', (e) => {
  stopWatching();
  if (e.detail && el('kyc-face-watch').checked) {
    faceInFrame();
    watching = setInterval(faceInFrame, 5000);
  }
});
window.addEventListener('vbank:customer', (e) => {
  customer = e.detail;
  el('kyc').hidden = !customer;
  if (!customer) {
    stopWatching();
    el('kyc-identity-card').disabled = true;
    for (const id of ['kyc-name', 'kyc-id']) el(id).value = '';
    el('kyc-identity-photo').hidden = true;
    el('kyc-identity-photo').removeAttribute('src');
  }
});
