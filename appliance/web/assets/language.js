// Language and text size on the customer page. The page is written bilingually ("中文 · English"); a customer may
// choose Chinese only, English only, or both (the default), and large text. Each text node, placeholder and label
// holding " · " shows the chosen side; text the page adds later (queue place, call state) follows through a
// MutationObserver. The privacy notice is never rewritten: its hash is of the text as shown. Choices are kept in
// localStorage on the customer's own device.
const SEP = ' · ';
const original = new WeakMap(); // node → its bilingual text
const ATTRS = ['placeholder', 'aria-label'];
let mode = localStorage.getItem('vbank.lang') ?? 'both';

function pick(text) {
  const i = text.indexOf(SEP);
  if (mode === 'both' || i < 0) return text;
  return mode === 'zh' ? text.slice(0, i) : text.slice(i + SEP.length);
}

const skipped = (node) => node.parentElement?.closest('.notice, script, style, #lang-bar');

function apply(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.currentNode; n; n = walker.nextNode()) {
    if (n.nodeType !== Node.TEXT_NODE || skipped(n)) continue;
    if (!original.has(n)) {
      if (!n.data.includes(SEP)) continue;
      original.set(n, n.data);
    }
    const want = pick(original.get(n));
    if (n.data !== want) n.data = want;
  }
  const elements = root.nodeType === Node.ELEMENT_NODE ? [root, ...root.querySelectorAll('*')] : [];
  for (const e of elements) {
    for (const a of ATTRS) {
      const key = `data-bilingual-${a}`;
      if (!e.hasAttribute(key) && e.getAttribute(a)?.includes(SEP)) e.setAttribute(key, e.getAttribute(a));
      if (e.hasAttribute(key)) e.setAttribute(a, pick(e.getAttribute(key)));
    }
  }
  // The ".en" spans are the English half of a heading: hidden in Chinese only, the Chinese hidden in English only.
  for (const e of document.querySelectorAll('h1 .en')) e.hidden = mode === 'zh';
  for (const e of document.querySelectorAll('.lead:not(.en)')) e.hidden = mode === 'en';
  for (const e of document.querySelectorAll('.lead.en')) e.hidden = mode === 'zh';
}

function setMode(m) {
  mode = m;
  localStorage.setItem('vbank.lang', m);
  document.documentElement.lang = m === 'en' ? 'en' : 'zh-CN';
  for (const b of document.querySelectorAll('#lang-bar [data-lang]')) b.setAttribute('aria-pressed', String(b.dataset.lang === m));
  apply(document.body);
}

function setLarge(on) {
  document.body.classList.toggle('large-text', on);
  localStorage.setItem('vbank.large', on ? '1' : '0');
  document.getElementById('large-text').setAttribute('aria-pressed', String(on));
}

for (const b of document.querySelectorAll('#lang-bar [data-lang]')) b.addEventListener('click', () => setMode(b.dataset.lang));
document.getElementById('large-text').addEventListener('click', () => setLarge(!document.body.classList.contains('large-text')));
new MutationObserver((changes) => {
  if (mode === 'both') return;
  for (const c of changes) {
    if (c.type === 'characterData') {
      const o = original.get(c.target);
      if (o !== undefined && c.target.data === pick(o)) continue; // our own change
      original.delete(c.target);
      apply(c.target.parentElement ?? document.body);
    }
    for (const n of c.addedNodes) apply(n.nodeType === Node.TEXT_NODE ? n.parentElement ?? document.body : n);
  }
}).observe(document.body, { subtree: true, childList: true, characterData: true });
setLarge(localStorage.getItem('vbank.large') === '1');
setMode(mode);
