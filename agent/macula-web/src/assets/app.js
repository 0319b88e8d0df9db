'use strict';
// The Macula dashboard: one page, filled from GET /api/events (server-sent events: the node's
// state every second) and admin actions POSTed with the session's CSRF token. No external URL.
const main = document.getElementById('main');
let S = null, csrf = '', es = null, firstRender = null;

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) if (kid !== null && kid !== undefined && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const dash = (v) => (v === null || v === undefined || v === '' ? '-' : v);
function bytes(n) {
  if (n === null || n === undefined) return '-';
  const u = ['B', 'KB', 'MB', 'GB', 'TB']; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}
function dur(s) {
  if (s === null || s === undefined) return '-';
  if (s < 60) return s + ' s'; if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h'; return (s / 86400).toFixed(1) + ' d';
}
const badge = (t, cls) => h('span', { class: 'badge ' + (cls || t), title: t }, t);
const yn = (b) => badge(b ? 'yes' : 'no');
const card = (v, label, id) => h('div', { class: 'card' }, h('b', { id }, v), h('span', {}, label));
const table = (head, rows) => h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
  h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'hint' }, 'none yet')))));
const dl = (pairs) => h('dl', {}, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
const short = (id) => (id || '').slice(0, 10);

async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf }, body: JSON.stringify(body) };
  const r = await fetch(path, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, init));
  let j = null; try { j = await r.json(); } catch (e) { /* no JSON body */ }
  return { ok: r.ok, status: r.status, body: j };
}

async function start() {
  const s = await api('/api/session');
  if (s.ok && (s.body.logged_in || s.body.open)) { csrf = s.body.csrf || ''; connect(); } else login();
}

function login(msg) {
  if (es) { es.close(); es = null; }
  document.getElementById('nav').hidden = true;
  const tok = h('input', { id: 'token', type: 'password', autocomplete: 'current-password', placeholder: 'mdt_…', required: true });
  main.replaceChildren(h('form', { id: 'login', onsubmit: async (e) => {
    e.preventDefault();
    const r = await api('/api/login', { token: tok.value });
    if (r.ok) start(); else login((r.body && r.body.error) || 'login failed (' + r.status + ')');
  } }, h('h1', {}, 'Log in'), h('label', { for: 'token' }, 'Dashboard token'), tok, h('button', { type: 'submit' }, 'Log in'),
  msg ? h('p', { class: 'error', id: 'login-error' }, msg) : null,
  h('p', { class: 'hint' }, 'Issue one on this node: ', h('code', {}, 'maculactl dashboard token'))));
  tok.focus();
}

function connect() {
  document.getElementById('nav').hidden = false;
  es = new EventSource('/api/events');
  es.onmessage = (m) => { S = JSON.parse(m.data); document.getElementById('live').className = 'live on'; render(); };
  es.onerror = () => {
    document.getElementById('live').className = 'live';
    if (es && es.readyState === EventSource.CLOSED) { es = null; setTimeout(start, 1000); }
  };
  route();
}

// Members as this node knows them: itself first (state `self`), then its peers, with each one's
// report of itself and latest resource report (the join `maculactl realm status` makes: uptime
// from the member's report, from its resource report when it did not answer; docs/realms.md).
function members() {
  const res = {}; for (const r of S.resources) res[r.node_id] = r;
  const rep = {}; for (const r of S.reports || []) rep[r.node_id] = r;
  const n = S.node, st = S.storage.stats;
  const self = { node_id: n.node_id, name: n.name, role: n.role, state: 'self', version: n.version, site: S.site, power: S.power,
    storage_total: st.quota_bytes, storage_free: st.free_bytes, addrs: [], uplinks: [] };
  const peers = S.peers.slice().sort((a, b) => a.name.localeCompare(b.name));
  return [self].concat(peers).map((m) => {
    const r = res[m.node_id], p = rep[m.node_id];
    return Object.assign({ res: r, rep: p, uptime_s: p ? p.uptime_s : r ? r.uptime_s : null }, m);
  });
}

let page = '', forms = null, live = null;
function route() {
  const hash = location.hash || '#/';
  page = hash.split('/')[1] || '';
  for (const a of document.querySelectorAll('#nav a')) a.className = a.getAttribute('href') === '#/' + page || (page === 'node' && a.getAttribute('href') === '#/') ? 'on' : '';
  live = h('div', { id: 'view' }); forms = h('div', { id: 'forms' });
  main.replaceChildren(live, forms);
  if (page === '') forms.append(...inviteForm());
  if (page === 'updates') forms.append(...updateForm());
  if (S) render();
}
window.addEventListener('hashchange', route);

function render() {
  if (!live) return;
  const views = { '': overview, node: nodePage, storage, network, updates, proofs };
  live.replaceChildren(...[(views[page] || overview)()].flat());
  if (firstRender === null) { firstRender = performance.now(); document.body.dataset.firstRender = firstRender.toFixed(1); }
  document.body.dataset.updated = String(Date.now());
}

function lastUpdate(p) {
  if (!p || p.last_update === null) return '-';
  return p.last_update === '' ? badge('ok', 'good') : badge(p.last_update, 'bad');
}

function overview() {
  const ms = members(), count = (s) => ms.filter((m) => m.state === s).length;
  return [h('h1', {}, 'Realm as ', S.node.name, ' sees it'),
    h('div', { class: 'cards' }, card(ms.length, 'members', 'members'), card(count('alive') + 1, 'up (with this node)', 'up'),
      card(count('suspect'), 'suspect'), card(count('down'), 'down', 'down-count'), card(S.storage.repair.degraded, 'degraded segments')),
    h('h2', {}, 'Members'),
    table(['name', 'role', 'state', 'version', 'slot', 'last update', 'uptime', 'CPU', 'memory', 'storage free', 'site / power'], ms.map((m) => {
      const r = m.res;
      return h('tr', { 'data-node': m.node_id, 'data-state': m.state },
        h('td', {}, h('a', { href: '#/node/' + m.node_id }, m.name || short(m.node_id))), h('td', {}, m.role), h('td', {}, badge(m.state)),
        h('td', {}, dash(m.version)), h('td', {}, m.rep ? dash(m.rep.slot) : '-'), h('td', {}, lastUpdate(m.rep)), h('td', {}, dur(m.uptime_s)), h('td', {}, r ? (r.cpu_busy_permille / 10).toFixed(1) + ' %' : '-'),
        h('td', {}, r ? bytes(r.mem_total - r.mem_available) + ' / ' + bytes(r.mem_total) : '-'),
        h('td', {}, m.storage_total ? bytes(m.storage_free) + ' / ' + bytes(m.storage_total) : '-'),
        h('td', {}, dash(m.site) + ' / ' + dash(m.power)));
    })),
    h('h2', {}, 'Who sees whom'), seesMap(ms)];
}

// Rows: each member's own membership view (RPC node.view); columns: the members this node knows.
function seesMap(ms) {
  const views = {}; for (const v of S.views || []) views[v.node_id] = v;
  const name = (m) => m.name || short(m.node_id);
  return table(['sees →'].concat(ms.map(name)), ms.map((from) => {
    const v = views[from.node_id];
    return h('tr', {}, h('th', {}, name(from)), ms.map((to) => {
      if (to.node_id === from.node_id) return h('td', {}, '·');
      if (!v) return h('td', { class: 'hint' }, '-');
      const st = ['alive', 'suspect', 'down'].find((k) => v[k].includes(to.node_id)) || 'unknown';
      return h('td', { 'data-from': from.node_id, 'data-to': to.node_id, 'data-state': st }, badge(st));
    }));
  }));
}

function nodePage() {
  const id = decodeURIComponent(location.hash.split('/')[2] || '');
  const m = members().find((x) => x.node_id === id);
  if (!m) return [h('h1', {}, 'Unknown member'), h('p', {}, 'This node does not know ', h('code', {}, id), '.')];
  const r = m.res, self = m.state === 'self', name = m.name || short(m.node_id);
  const out = [h('h1', {}, name, ' ', badge(m.state)),
    dl([['node ID', h('span', { class: 'mono' }, m.node_id)], ['role', m.role], ['version', dash(m.version)], ['slot', m.rep ? dash(m.rep.slot) : '-'], ['last update', lastUpdate(m.rep)],
      ['addresses', dash((m.addrs || []).map((a, i) => a + (m.uplinks[i] ? ' (' + m.uplinks[i] + ')' : '')).join(', '))],
      ['overlay key', dash(m.overlay_key)], ['site / power', dash(m.site) + ' / ' + dash(m.power)],
      ['storage', m.storage_total ? bytes(m.storage_free) + ' free of ' + bytes(m.storage_total) : '-']])];
  out.push(h('h2', {}, 'Resources'));
  if (!r) out.push(h('p', { class: 'hint' }, 'No resource report yet (needs [proofs] enabled on both nodes).'));
  else out.push(dl([['uptime', dur(m.uptime_s)], ['report age', (r.age_ms / 1000).toFixed(1) + ' s'], ['CPU', r.processors + ' × ' + r.cores_per_processor + ' cores, ' + (r.cpu_busy_permille / 10).toFixed(1) + ' % busy'],
    ['load', [r.load_1_milli, r.load_5_milli, r.load_15_milli].map((l) => (l / 1000).toFixed(2)).join(' ')],
    ['memory', bytes(r.mem_available) + ' available of ' + bytes(r.mem_total)], ['swap', bytes(r.swap_used) + ' of ' + bytes(r.swap_total)],
    ['disk', bytes(r.disk_taken) + ' taken of ' + bytes(r.disk_reported) + ' offered'], ['traffic', bytes(r.rx_bytes_per_s) + '/s in, ' + bytes(r.tx_bytes_per_s) + '/s out']]));
  if (!self) out.push(h('h2', {}, 'Admin'), h('button', { class: 'danger', id: 'revoke', onclick: () => {
    if (confirm('Revoke ' + name + ' from the realm? It cannot rejoin with its certificate.')) act('/api/revoke', { node_id: m.node_id });
  } }, 'Revoke ', name));
  return out;
}

function storage() {
  const s = S.storage.stats, q = S.storage.repair;
  const ms = members();
  return [h('h1', {}, 'Storage'),
    h('div', { class: 'cards' }, card(bytes(s.quota_bytes), 'capacity here'), card(bytes(s.used_bytes), 'used here'), card(dash(s.shards), 'shards here'),
      card(S.s3 ? S.s3.objects : '-', 'S3 objects'), card(q.degraded, 'degraded segments', 'degraded'), card(q.inflight, 'repairs in flight', 'inflight'),
      card(q.repaired, 'shards repaired', 'repaired'), card(q.unrecoverable.length, 'unrecoverable')),
    h('h2', {}, 'Repair queue'),
    dl([['segments held', q.segments], ['degraded', q.degraded], ['leading (this node repairs)', q.leading], ['in flight', q.inflight],
      ['repaired / failed', q.repaired + ' / ' + q.failed], ['unrecoverable', q.unrecoverable.length ? q.unrecoverable.join(', ') : 'none']]),
    h('h2', {}, 'Realm capacity'),
    table(['member', 'state', 'free', 'total'], ms.map((m) => h('tr', { 'data-node': m.node_id, 'data-state': m.state },
      h('td', {}, m.name || short(m.node_id)), h('td', {}, badge(m.state)), h('td', {}, bytes(m.storage_free)), h('td', {}, bytes(m.storage_total))))),
    h('h2', {}, 'Settings'),
    dl([['running', yn(s.running)], ['coding', s.k + ' + ' + s.m + ' (' + s.codec + ')'], ['segment', bytes(s.segment_bytes)], ['nodes storing', dash(s.nodes)],
      ['put / get through here', bytes(s.put_bytes) + ' / ' + bytes(s.get_bytes)]])];
}

function network() {
  const out = [h('h1', {}, 'Network'), h('h2', {}, 'Firewall')];
  const f = S.firewall;
  if (!f) out.push(h('p', { class: 'hint' }, 'Firewall off on this node.'));
  else {
    out.push(dl([['pending apply', f.pending ? badge('generation ' + f.pending + ', rollback in ' + f.rollback_in_s + ' s', 'warn') : 'none'],
      ['last rollback', dash(f.last_rollback)], ['applies / rollbacks', f.applies + ' / ' + f.rollbacks], ['quarantined addresses', f.quarantined]]));
    if (f.pending) out.push(h('button', { id: 'confirm', onclick: () => act('/api/firewall/confirm', {}) }, 'Confirm firewall apply'));
  }
  out.push(h('h2', {}, 'Uplinks'));
  if (!S.uplinks || !S.uplinks.length) out.push(h('p', { class: 'hint' }, 'No uplinks managed on this node.'));
  else out.push(table(['uplink', 'interface', 'priority', 'active', 'healthy', 'carrier', 'RTT', 'probes'], S.uplinks.map((l) => h('tr', {},
    h('td', {}, l.name), h('td', {}, l.interface), h('td', {}, l.priority), h('td', {}, l.active ? badge('active', 'good') : ''), h('td', {}, yn(l.healthy)),
    h('td', {}, yn(l.carrier)), h('td', {}, l.rtt_us ? (l.rtt_us / 1000).toFixed(1) + ' ms' : '-'), h('td', {}, l.received + ' / ' + l.sent)))));
  out.push(h('h2', {}, 'Overlay'));
  const o = S.overlay;
  if (!o) out.push(h('p', { class: 'hint' }, 'Overlay off on this node.'));
  else {
    const now = Date.now() / 1000;
    out.push(dl([['interface', o.status.interface + ' ' + o.status.address], ['public key', h('span', { class: 'mono' }, o.status.public_key)], ['WireGuard', o.status.implementation]]),
      table(['peer', 'endpoint', 'last handshake', 'received', 'sent'], o.peers.map((p) => h('tr', {}, h('td', {}, p.address || short(p.public_key)), h('td', {}, dash(p.endpoint)),
        h('td', {}, p.last_handshake_s ? dur(Math.max(0, Math.round(now - p.last_handshake_s))) + ' ago' : 'never'), h('td', {}, bytes(p.rx_bytes)), h('td', {}, bytes(p.tx_bytes))))));
  }
  out.push(h('h2', {}, 'Mesh peers'), table(['member', 'state', 'addresses'], S.peers.map((p) => h('tr', {}, h('td', {}, p.name), h('td', {}, badge(p.state)), h('td', { class: 'mono' }, p.addrs.join(' '))))));
  return out;
}

function updates() {
  const u = S.update;
  const out = [h('h1', {}, 'Updates')];
  if (!u) out.push(h('p', { class: 'hint' }, 'RAUC does not answer on this node: no A/B slots to show.'));
  else out.push(dl([['booted slot', u.booted], ['next boot', u.primary], ['operation', u.operation], ['health check', badge(u.health, u.health === 'good' ? 'good' : 'warn')],
    ['last error', dash(u.last_error)], ['compatible', u.compatible]]), h('h2', {}, 'Slots'),
  table(['name', 'boot name', 'state', 'boot status', 'version'], u.slots.map((l) => h('tr', {}, l.split(' ').map((c) => h('td', {}, c))))));
  out.push(h('h2', {}, 'Realm rollout'));
  const r = S.rollout, names = {}; for (const m of members()) names[m.node_id] = m.name;
  if (!r) out.push(h('p', { class: 'hint' }, 'No rollout published (maculactl update publish, on a hub).'));
  else out.push(dl([['version', r.version + ' (' + r.compatible + ')'], ['published', new Date(r.published_at * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' by ' + (names[r.publisher] || short(r.publisher))],
    ['bundle', bytes(r.bundle_bytes)], ['waves', r.waves], ['phase', badge(r.phase + (r.wave ? ' ' + r.wave : ''), r.phase === 'halted' ? 'bad' : r.phase === 'done' ? 'good' : 'warn')],
    ['halted', r.halted_by ? (names[r.halted_by] || short(r.halted_by)) + ': ' + r.reason : '-']]),
  table(['node', 'wave', 'step', 'at', 'detail'], r.nodes.map((l) => { const c = l.split(' '); return h('tr', {}, h('td', {}, names[c[0]] || short(c[0])), c.slice(1, 4).map((x) => h('td', {}, x)), h('td', {}, c.slice(4).join(' '))); })));
  out.push(h('h2', {}, 'Versions in the realm'), table(['member', 'version', 'slot', 'last update'], members().map((m) => h('tr', {},
    h('td', {}, m.name), h('td', {}, dash(m.version)), h('td', {}, m.rep ? dash(m.rep.slot) : '-'), h('td', {}, lastUpdate(m.rep))))));
  return out;
}

function proofs() {
  const p = S.proofs;
  if (!p) return [h('h1', {}, 'Proofs and ledger'), h('p', { class: 'hint' }, 'Proofs are off on this node ([proofs] enabled = false).')];
  const names = {}; for (const m of members()) names[m.node_id] = m.name;
  const who = (id) => names[id] || short(id);
  return [h('h1', {}, 'Proofs and ledger'),
    h('div', { class: 'cards' }, card(p.status.epoch, 'epoch'), card(p.status.records, 'ledger records'), card(p.status.verified, 'proofs verified'), card(p.status.quarantined, 'quarantined', 'quarantined')),
    h('h2', {}, 'Ledger'),
    table(['member', 'standing', 'passed', 'failed', 'RW1', 'RW2'], p.ledger.map((b) => h('tr', {}, h('td', {}, who(b.node_id)), h('td', {}, badge(b.standing, b.standing === 'active' ? 'good' : b.standing.startsWith('probation') ? 'warn' : 'bad')),
      h('td', {}, b.passed), h('td', {}, b.failed), h('td', {}, (b.rw1_micro / 1e6).toFixed(3)), h('td', {}, (b.rw2_micro / 1e6).toFixed(3))))),
    h('h2', {}, 'Quarantine'), p.quarantined.length ? h('p', {}, p.quarantined.map(who).join(', ')) : h('p', { class: 'hint' }, 'Nobody is quarantined.'),
    h('h2', {}, 'Latest verdicts'),
    table(['epoch', 'verifier', 'prover', 'kind', 'verdict'], p.history.map((e) => h('tr', {}, h('td', {}, e.epoch), h('td', {}, who(e.verifier)), h('td', {}, who(e.prover)), h('td', {}, e.kind),
      h('td', {}, e.passed ? badge('passed', 'good') : badge(e.failure || 'failed', 'bad'))))),
    h('p', { class: 'hint mono' }, 'ledger head ', p.status.head)];
}

let result = null;
async function act(path, body) {
  const r = await api(path, body);
  if (r.status === 401) return login('Your session ended; log in again.');
  result = h('p', { id: 'result', class: r.ok ? 'hint' : 'error' }, r.ok ? (r.body && r.body.message) || 'done' : (r.body && r.body.error) || 'failed (' + r.status + ')');
  if (r.ok && r.body && r.body.code) result = [result, h('pre', { id: 'code' }, r.body.code)];
  const old = document.getElementById('outcome'); const box = h('div', { id: 'outcome' }, result);
  if (old) old.replaceWith(box); else forms.append(box);
}

function inviteForm() {
  const name = h('input', { id: 'invite-name', placeholder: 'new node name', required: true });
  const role = h('select', { id: 'invite-role' }, h('option', {}, 'edge'), h('option', {}, 'hub'));
  return [h('h2', {}, 'Admit a node'), h('form', { onsubmit: (e) => { e.preventDefault(); act('/api/invite', { name: name.value, role: role.value }); } },
    name, role, h('button', { type: 'submit' }, 'Make a one-time join code')), h('p', { class: 'hint' }, 'On the new node: maculactl realm join --code CODE (valid 1 h, once).')];
}

function updateForm() {
  const path = h('input', { id: 'bundle', placeholder: '/data/update.raucb', size: 30, required: true });
  return [h('h2', {}, 'Install an update'), h('form', { onsubmit: (e) => { e.preventDefault(); if (confirm('Install ' + path.value + ' into the other slot?')) act('/api/update', { path: path.value }); } },
    path, h('button', { type: 'submit' }, 'Start update'))];
}

start();
