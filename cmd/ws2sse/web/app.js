// The ws2sse dashboard: polls /channels and tails one channel over
// EventSource. Everything from the server is rendered with textContent.
'use strict';

(() => {
  const POLL_MS = 2000;
  const MAX_ROWS = 200;
  const MAX_DATA = 64 * 1024; // characters of one event's data shown
  const FLUSH_MS = 50; // rows are added in batches at most this often
  // Event names every tail listens to; others come from the channel's
  // eventNames in /channels.
  const BUILTIN_NAMES = ['message', 'gap', 'upstream', 'overload'];
  const NOTICES = new Set(['gap', 'upstream', 'overload']);
  // ORIGIN is an id before any event: resuming from it asks for everything
  // the channel keeps. The server answers with a gap, which the tail does
  // not show.
  const ORIGIN = '0-0';

  let routes = []; // the last /channels routes
  let channels = []; // the last /channels channels
  let routesKey = ''; // routes as JSON, to rebuild the forms only on change
  const rates = new Map(); // channel name -> {events, t, rate}
  let skew = 0; // ms the local clock is ahead of the server's, when far off
  let lastPoll = 0; // Date.now() of the last good poll
  let pollError = '';
  let tail = null; // the open tail, see openTail
  let raw = false; // show event data exactly as received, not re-indented
  let revealTail = false; // scroll the tail into view once it opens

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---- formatting ------------------------------------------------------

  function fmtInt(n) {
    return Number(n || 0).toLocaleString('en-US');
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return '–';
    if (r === 0) return '0';
    if (r < 10) return r.toFixed(1);
    return fmtInt(Math.round(r));
  }

  function fmtDuration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function fmtTime(d) {
    const p = (n, w) => String(n).padStart(w, '0');
    return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) +
      '.' + p(d.getMilliseconds(), 3);
  }

  // serverNow is the server's clock as this page estimates it.
  function serverNow() {
    return Date.now() - skew;
  }

  // prettyJSON returns data laid out for reading when it is a JSON object
  // or array, else null. Numbers and the order and repetition of keys are
  // shown as they came; strings as JavaScript reads them (escapes that
  // only spell a character, such as \u003c, are written as the character).
  function prettyJSON(data) {
    const t = data.trim();
    if (!t || (t[0] !== '{' && t[0] !== '[')) return null;
    try {
      JSON.parse(t);
    } catch (_) {
      return null; // not JSON: shown as it came
    }
    return layoutJSON(parseRaw(t), '');
  }

  // parseRaw reads valid JSON text into a tree whose leaves are their
  // source text: {members: [[key, value], ...]} for an object, {items:
  // [...]} for an array.
  function parseRaw(s) {
    let i = 0;
    const space = () => {
      while (i < s.length && ' \t\n\r'.includes(s[i])) i++;
    };
    const token = (re) => {
      re.lastIndex = i;
      re.exec(s);
      const text = s.slice(i, re.lastIndex);
      i = re.lastIndex;
      return text;
    };
    const STRING = /"(?:[^"\\]|\\.)*"/y;
    const SCALAR = /[^,\]}\s]+/y;
    function value() {
      space();
      if (s[i] === '{' || s[i] === '[') {
        const object = s[i++] === '{';
        const list = [];
        space();
        if (s[i] === (object ? '}' : ']')) {
          i++;
        } else {
          for (;;) {
            if (object) {
              space();
              const key = token(STRING);
              space();
              i++; // :
              list.push([key, value()]);
            } else {
              list.push(value());
            }
            space();
            if (s[i++] !== ',') break;
          }
        }
        return object ? { members: list } : { items: list };
      }
      return token(s[i] === '"' ? STRING : SCALAR);
    }
    return value();
  }

  // leaf writes a string as JavaScript reads it, anything else as it came.
  function leaf(text) {
    return text[0] === '"' ? JSON.stringify(JSON.parse(text)) : text;
  }

  const JSON_LINE = 110; // a value that fits in this many characters stays on one line

  // layoutJSON writes v on one line when it fits, else one member a line,
  // indented by two spaces a level.
  function layoutJSON(v, indent) {
    const flat = flatJSON(v);
    if (typeof v === 'string' || indent.length + flat.length <= JSON_LINE) return flat;
    const inner = indent + '  ';
    if (v.items) {
      return '[\n' + v.items.map((x) => inner + layoutJSON(x, inner)).join(',\n') + '\n' + indent + ']';
    }
    return '{\n' + v.members.map(([k, x]) => inner + leaf(k) + ': ' + layoutJSON(x, inner)).join(',\n') +
      '\n' + indent + '}';
  }

  function flatJSON(v) {
    if (typeof v === 'string') return leaf(v);
    if (v.items) return '[' + v.items.map(flatJSON).join(', ') + ']';
    if (!v.members.length) return '{}';
    return '{ ' + v.members.map(([k, x]) => leaf(k) + ': ' + flatJSON(x)).join(', ') + ' }';
  }

  const JSON_TOKEN = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  const HIGHLIGHT_MAX = 16 * 1024; // longer JSON is shown plain

  // fillData puts an event's data in pre: re-indented and coloured when it
  // is JSON, unless raw is set.
  function fillData(pre, data, raw) {
    let text = String(data);
    const json = raw ? null : prettyJSON(text);
    if (json !== null) text = json;
    let more = '';
    if (text.length > MAX_DATA) {
      more = '\n… ' + fmtInt(text.length - MAX_DATA) + ' more characters';
      text = text.slice(0, MAX_DATA);
    }
    pre.replaceChildren();
    if (json === null || text.length > HIGHLIGHT_MAX) {
      pre.textContent = text + more;
      return;
    }
    let last = 0;
    for (const m of text.matchAll(JSON_TOKEN)) {
      if (m.index > last) pre.append(text.slice(last, m.index));
      if (m[1] !== undefined) {
        pre.append(el('span', m[2] ? 'j-key' : 'j-str', m[1]));
        if (m[2]) pre.append(m[2]);
      } else {
        pre.append(el('span', /^[-0-9]/.test(m[0]) ? 'j-num' : 'j-lit', m[0]));
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) pre.append(text.slice(last));
    if (more) pre.append(more);
  }

  function parseJSON(s) {
    try {
      return JSON.parse(s);
    } catch (_) {
      return null;
    }
  }

  // nameClass gives each event name one of a few colours, the same on
  // every load.
  function nameClass(name) {
    if (NOTICES.has(name)) return 'n-' + name;
    if (name === 'message') return 'n-message';
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return 'c' + (h % 6);
  }

  // ---- paths -----------------------------------------------------------

  // parseTemplate splits a gorilla/mux path template into literal text and
  // variables: "/ticker/{symbol:[a-z]+}" -> [{text}, {name, re}, {text}].
  function parseTemplate(path) {
    const parts = [];
    let depth = 0;
    let start = 0;
    let lit = 0;
    for (let i = 0; i < path.length; i++) {
      const c = path[i];
      if (c === '{') {
        if (depth === 0) {
          parts.push({ text: path.slice(lit, i) });
          start = i + 1;
        }
        depth++;
      } else if (c === '}' && depth > 0) {
        depth--;
        if (depth === 0) {
          const inner = path.slice(start, i);
          const k = inner.indexOf(':');
          parts.push({
            name: (k < 0 ? inner : inner.slice(0, k)).trim(),
            re: k < 0 ? '[^/]+' : inner.slice(k + 1),
          });
          lit = i + 1;
        }
      }
    }
    parts.push({ text: path.slice(lit) });
    return parts;
  }

  function fillTemplate(path, values) {
    return parseTemplate(path)
      .map((p) => (p.name === undefined ? p.text : encodeURIComponent(values[p.name] || '')))
      .join('');
  }

  // variableRegExp compiles a template variable's pattern when JavaScript
  // reads it as Go does; otherwise the server alone checks the value.
  function variableRegExp(re) {
    try {
      return new RegExp('^(?:' + re + ')$', 'u');
    } catch (_) {
      return null;
    }
  }

  function templated(rt) {
    return Array.isArray(rt.variables) && rt.variables.length > 0;
  }

  // channelPath is the URL path of an open channel: its own "path" when the
  // server sends it, else the route of its name, else, for "ticker/btc",
  // the templated route "ticker" filled with the rest of the name.
  function channelPath(ch) {
    if (typeof ch.path === 'string' && ch.path.startsWith('/')) return ch.path;
    const name = String(ch.name);
    for (const rt of routes) {
      if (!templated(rt) && rt.name === name) return rt.path;
    }
    for (const rt of routes) {
      if (!templated(rt) || !name.startsWith(rt.name + '/')) continue;
      const values = name.slice(rt.name.length + 1).split('/');
      if (values.length !== rt.variables.length) continue;
      const m = {};
      rt.variables.forEach((v, i) => { m[v] = values[i]; });
      return fillTemplate(rt.path, m);
    }
    return null;
  }

  // ---- channels --------------------------------------------------------

  async function poll() {
    try {
      const resp = await fetch('channels', { cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!resp.ok) throw new Error('/channels answered ' + resp.status);
      const body = await resp.json();
      const date = Date.parse(resp.headers.get('Date') || '');
      if (!Number.isNaN(date)) {
        // Date has whole seconds: correct only a clock that is far off.
        const d = Date.now() - date;
        skew = Math.abs(d) > 2500 ? d : 0;
      }
      routes = Array.isArray(body.routes) ? body.routes : [];
      channels = Array.isArray(body.channels) ? body.channels : [];
      updateRates(performance.now());
      lastPoll = Date.now();
      pollError = '';
      render();
    } catch (err) {
      pollError = (err && err.message) || String(err);
      renderPoll();
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function updateRates(t) {
    const seen = new Set();
    for (const ch of channels) {
      seen.add(ch.name);
      const n = Number(ch.events) || 0;
      const prev = rates.get(ch.name);
      let rate = prev ? prev.rate : null;
      if (prev && n >= prev.events && t - prev.t > 200) {
        rate = ((n - prev.events) * 1000) / (t - prev.t);
      } else if (prev && n < prev.events) {
        rate = null; // the channel was opened anew
      }
      if (!prev || t - prev.t > 200) rates.set(ch.name, { events: n, t, rate });
    }
    for (const k of rates.keys()) {
      if (!seen.has(k)) rates.delete(k);
    }
  }

  function stateOf(ch) {
    // A lazy channel with no client has no upstream connection, on purpose.
    if (ch.lazy && !ch.clients && ch.state !== 'up' && !ch.error) return { cls: 'idle', label: 'idle' };
    switch (ch.state) {
      case 'up':
        return { cls: 'ok', label: 'connected' };
      case 'connecting':
        return { cls: 'warn', label: 'connecting' };
      case 'down':
        return { cls: 'bad', label: 'down' };
      default:
        return { cls: 'idle', label: String(ch.state || 'unknown') };
    }
  }

  function render() {
    renderPoll();
    renderChannels();
    renderRoutes();
    if (tail) learnNames(tail, true);
  }

  function renderPoll() {
    const box = $('poll');
    const text = $('poll-text');
    if (pollError) {
      box.className = 'poll bad';
      text.textContent = 'cannot read /channels: ' + pollError + ' (retrying)';
    } else if (!lastPoll) {
      box.className = 'poll';
      text.textContent = 'loading…';
    } else if (Date.now() - lastPoll > 3 * POLL_MS) {
      box.className = 'poll warn';
      text.textContent = 'stale: updated ' + fmtDuration(Date.now() - lastPoll) + ' ago';
    } else {
      box.className = 'poll ok';
      text.textContent = 'live';
    }
  }

  function cell(tr, label, cls) {
    const td = el('td', cls);
    td.dataset.label = label;
    tr.append(td);
    return td;
  }

  function since(iso, prefix, suffix) {
    const s = el('span', 'since');
    s.dataset.since = iso;
    s.dataset.prefix = prefix || '';
    s.dataset.suffix = suffix || '';
    updateSince(s);
    return s;
  }

  function updateSince(s) {
    const t = Date.parse(s.dataset.since);
    if (Number.isNaN(t)) {
      s.textContent = '';
      return;
    }
    const ms = serverNow() - t;
    const body = s.dataset.suffix && ms < 1000 ? 'just now' : fmtDuration(ms) + s.dataset.suffix;
    s.textContent = s.dataset.prefix + body;
  }

  function channelRow(ch) {
    const path = channelPath(ch);
    const tr = el('tr');
    tr.dataset.channel = ch.name;
    if (path) tr.dataset.path = path;
    if (tail && path && tail.path === path) tr.classList.add('selected');

    const name = cell(tr, 'Channel', 'name');
    if (path) {
      const b = el('button', 'link', ch.name);
      b.type = 'button';
      b.title = 'Tail ' + path;
      b.dataset.path = path;
      b.addEventListener('click', () => selectPath(path, true));
      name.append(b);
    } else {
      name.append(el('span', 'strong', ch.name));
    }
    const meta = el('div', 'meta');
    if (path) meta.append(el('code', '', path));
    if (ch.lazy) meta.append(el('span', 'tag', 'lazy'));
    name.append(meta);

    const up = cell(tr, 'Upstream', 'state');
    const st = stateOf(ch);
    const badge = el('span', 'badge ' + st.cls, st.label);
    badge.dataset.state = ch.state || '';
    up.append(badge);
    if (ch.stateSince) up.append(since(ch.stateSince, ' for ', ''));
    if (ch.reconnects > 0) {
      up.append(el('span', 'since', ' · ' + fmtInt(ch.reconnects) + (ch.reconnects === 1 ? ' reconnect' : ' reconnects')));
    }
    if (ch.error && st.cls !== 'idle') {
      const e = el('div', 'error', ch.error);
      e.title = ch.error;
      up.append(e);
    }

    const cl = cell(tr, 'Clients', 'num');
    cl.append(el('span', 'big', fmtInt(ch.clients)));
    const bt = ch.clientsByTransport;
    if (bt && typeof bt === 'object') {
      const parts = Object.keys(bt).sort().map((k) => (k === 'websocket' ? 'ws' : k) + ' ' + fmtInt(bt[k]));
      if (parts.length) cl.append(el('div', 'sub', parts.join(' · ')));
    }
    if (ch.slowClients > 0) cl.append(el('div', 'sub warn-text', fmtInt(ch.slowClients) + ' slow'));

    const rt = cell(tr, 'Events/s', 'num');
    const r = rates.get(ch.name);
    rt.append(el('span', 'big rate', fmtRate(r ? r.rate : null)));
    rt.append(el('div', 'sub', fmtInt(ch.events) + ' total'));

    const last = cell(tr, 'Last event', 'last');
    if (ch.lastEventId) {
      last.append(el('code', 'id', ch.lastEventId));
      if (ch.lastEventTime) {
        const d = el('div', 'sub');
        d.append(since(ch.lastEventTime, '', ' ago'));
        last.append(d);
      }
    } else {
      last.append(el('span', 'sub', 'none yet'));
    }
    return tr;
  }

  // The table is rebuilt by every poll. Not while a press on it is held or
  // text in it is selected: the press would end on another element and
  // the click be lost, the selection be dropped. It catches up after.
  let tablePressed = false;
  let tableStale = false; // a rebuild was put off

  function tableBusy() {
    const sel = document.getSelection();
    return tablePressed || (sel && !sel.isCollapsed && $('channels').contains(sel.anchorNode));
  }

  // catchUp rebuilds the table if a rebuild was put off and nothing holds
  // it any more.
  function catchUp() {
    if (tableStale && !tableBusy()) renderChannels();
  }

  function renderChannels() {
    tableStale = tableBusy();
    if (tableStale) return;
    const tbody = $('channels').tBodies[0];
    const focused = document.activeElement;
    const refocus = focused && focused.dataset && focused.closest('#channels') ? focused.dataset.path : null;
    const rows = channels.map(channelRow);
    tbody.replaceChildren(...rows);
    $('channels').hidden = rows.length === 0;
    $('no-channels').hidden = rows.length > 0;
    if (refocus) {
      const b = [...tbody.querySelectorAll('button[data-path]')].find((x) => x.dataset.path === refocus);
      if (b) b.focus({ preventScroll: true }); // the poll must not move the page
    }

    let clients = 0;
    let rate = 0;
    for (const ch of channels) {
      clients += Number(ch.clients) || 0;
      const r = rates.get(ch.name);
      if (r && r.rate) rate += r.rate;
    }
    $('summary').textContent = channels.length + (channels.length === 1 ? ' channel' : ' channels') +
      ' · ' + fmtInt(clients) + (clients === 1 ? ' client' : ' clients') + ' · ' + fmtRate(rate) + ' events/s';
  }

  function renderRoutes() {
    const tpl = routes.filter(templated);
    const key = JSON.stringify(tpl);
    if (key === routesKey) return;
    routesKey = key;
    $('routes').hidden = tpl.length === 0;
    $('route-forms').replaceChildren(...tpl.map(routeForm));
  }

  function routeForm(rt) {
    const parts = parseTemplate(rt.path);
    const form = el('form', 'route');
    form.noValidate = true;
    form.dataset.route = rt.name;
    const head = el('div', 'route-head');
    head.append(el('span', 'strong', rt.name), el('code', '', rt.path));
    form.append(head);
    const fields = el('div', 'fields');
    const inputs = [];
    for (const v of rt.variables) {
      const p = parts.find((x) => x.name === v);
      const label = el('label');
      label.append(el('span', '', v));
      const input = el('input');
      input.name = v;
      input.required = true;
      input.autocomplete = 'off';
      input.spellcheck = false;
      input.autocapitalize = 'off';
      if (p && p.re !== '[^/]+') input.placeholder = p.re;
      label.append(input);
      fields.append(label);
      inputs.push({ v, input, re: p ? variableRegExp(p.re) : null });
    }
    const open = el('button', 'primary', 'Open tail');
    open.type = 'submit';
    fields.append(open);
    form.append(fields);
    const err = el('div', 'error');
    form.append(err);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const values = {};
      for (const { v, input, re } of inputs) {
        const val = input.value.trim();
        if (!val || (re && !re.test(val))) {
          err.textContent = val ? v + ' does not match ' + (parts.find((x) => x.name === v) || {}).re : v + ' is required';
          input.focus();
          return;
        }
        values[v] = val;
      }
      err.textContent = '';
      selectPath(fillTemplate(rt.path, values), true);
    });
    return form;
  }

  // ---- tail ------------------------------------------------------------

  // validPath accepts a same-origin absolute path, as a location hash.
  function validPath(p) {
    return typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') && !p.includes('\\');
  }

  // selectPath opens the tail of path, through the address so that a
  // reload or a shared link shows it again. With reveal, the tail is then
  // scrolled into view if its head is off screen (on a phone).
  function selectPath(path, reveal) {
    revealTail = Boolean(reveal);
    if (location.hash.slice(1) !== path) {
      location.hash = path; // hashchange opens it
    } else {
      openTail(path);
    }
  }

  function revealIfHidden() {
    if (!revealTail) return;
    revealTail = false;
    requestAnimationFrame(() => {
      const r = $('tail').getBoundingClientRect();
      if (r.top > window.innerHeight - 120 || r.bottom < 0) $('tail').scrollIntoView({ behavior: 'smooth', block: 'start' });
    });
  }

  function fromHash() {
    const p = location.hash.slice(1);
    if (validPath(p)) {
      if (!tail || tail.path !== p) openTail(p);
    } else if (tail) {
      closeTail();
    }
  }

  function openTail(path) {
    closeTail(true);
    const t = {
      path,
      es: null,
      count: 0, // events received
      reconnects: 0, // times the stream opened again after it was lost
      opened: false, // the stream opened at least once
      lost: false, // the stream was lost and is not open again yet
      paused: false,
      held: 0, // events received while paused
      resyncDue: false, // names learned while paused: resync on resume
      lastId: '', // the id of the newest event received
      queue: [], // items not rendered yet, oldest first
      timer: 0,
      names: new Set(BUILTIN_NAMES), // event names listened to
      anchor: '', // an id every event not seen yet comes after; see learnNames
    };
    tail = t;
    $('tail').hidden = false;
    $('tail-path').textContent = path;
    $('events').replaceChildren();
    $('tail-empty').hidden = false;
    $('tail-note').hidden = true;
    setPause(t, false);
    learnNames(t, false);
    connect(t);
    for (const tr of $('channels').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.path === path);
    revealIfHidden();
  }

  // connect opens the tail's EventSource on url (the tail's path unless
  // resuming), listening to every name in t.names.
  function connect(t, url) {
    const es = new EventSource(url || t.path);
    t.es = es;
    // An upstream event named "open" or "error" comes as a MessageEvent
    // to these too: only the stream's own are taken.
    es.addEventListener('open', (e) => {
      if (t.es !== es || e instanceof MessageEvent) return;
      if (t.opened && t.lost) {
        t.reconnects++;
        push(t, { local: 'ok', text: 'reconnected' });
      }
      t.opened = true;
      t.lost = false;
      renderTail(t);
    });
    es.addEventListener('error', (e) => {
      if (t.es !== es || e instanceof MessageEvent) return;
      if (es.readyState === EventSource.CONNECTING) {
        // One row an outage, however many attempts the browser makes.
        if (!t.lost) push(t, { local: 'warn', text: 'connection lost; the browser reconnects' });
        t.lost = true;
      } else if (es.readyState === EventSource.CLOSED) {
        push(t, { local: 'bad', text: 'stream closed: the server refused it (wrong path, not allowed, or overloaded). Choose the channel again to retry.' });
      }
      renderTail(t);
    });
    for (const n of t.names) listen(t, es, n);
    renderTail(t);
  }

  function closeTail(keepHash) {
    const t = tail;
    if (!t) return;
    tail = null;
    t.es.close();
    t.es = null;
    clearTimeout(t.timer);
    $('tail').hidden = true;
    for (const tr of $('channels').tBodies[0].rows) tr.classList.remove('selected');
    if (!keepHash && location.hash) history.replaceState(null, '', location.pathname + location.search);
  }

  function listen(t, es, name) {
    es.addEventListener(name, (e) => {
      if (t.es !== es || !(e instanceof MessageEvent)) return; // not the stream's own open or error
      if (name === 'gap') {
        const g = parseJSON(e.data);
        if (g && g.lastEventId === ORIGIN) return; // asked for
      }
      t.count++;
      if (t.paused) t.held++;
      // Notices carry no id of their own; lastEventId is then the one of
      // the event before.
      const id = NOTICES.has(name) ? '' : e.lastEventId;
      if (id) t.lastId = id;
      push(t, { name, id, data: e.data });
    });
  }

  // learnNames listens to the event names /channels reports for the tailed
  // channel. An EventSource sees only the names it listens to: events of a
  // name not known yet were passed over, and with resync the stream is
  // opened again to have them replayed.
  //
  // /channels reports a channel's names and last event id together, so
  // every event after that id has one of those names. t.anchor is the last
  // id of a poll that brought no new name while the stream was open: all
  // events after it with a new name come after it, and resuming from it
  // replays them. A paused tail keeps its rows: the resync waits for the
  // resume, and the anchor stays where it was meanwhile.
  function learnNames(t, resync) {
    const ch = channels.find((c) => channelPath(c) === t.path);
    if (!t.es) {
      // Opening: every name known is listened to from the start. A channel
      // with no event yet, or not open yet (this tail opens it), has only
      // events that come after this.
      t.anchor = (ch && ch.lastEventId) || ORIGIN;
    }
    if (!ch) return;
    if (!Array.isArray(ch.eventNames)) {
      $('tail-note').textContent = 'This server does not list the channel\'s event names: only unnamed events and notices are shown.';
      $('tail-note').hidden = false;
      return;
    }
    $('tail-note').textContent = 'This channel has more event names than the server lists (' + ch.eventNames.length +
      '): events of the others are not shown.';
    $('tail-note').hidden = ch.moreEventNames !== true;
    let added = false;
    for (const n of ch.eventNames) {
      if (typeof n === 'string' && n && !t.names.has(n)) {
        t.names.add(n);
        if (t.es) listen(t, t.es, n); // heard from now on
        added = true;
      }
    }
    if (!t.es) return;
    // The events of a new name before now were passed over; reopening the
    // stream from the anchor replays them, unless the channel keeps no
    // replay: the rows after the anchor would then go for nothing.
    if (added && resync && ch.replay !== 0) t.resyncDue = true;
    if (t.resyncDue) {
      if (!t.paused) resyncTail(t);
    } else if (t.es.readyState === EventSource.OPEN && ch.lastEventId && idAfter(ch.lastEventId, t.anchor || ORIGIN)) {
      t.anchor = ch.lastEventId;
    }
  }

  // idParts splits an id of the form <unix-ms>-<seq>, which both of the
  // server's stores issue, for comparing; null for another form.
  function idParts(id) {
    const m = /^(\d+)-(\d+)$/.exec(id);
    return m ? [Number(m[1]), Number(m[2])] : null;
  }

  // idAfter reports whether id a comes after id b; true when either has an
  // unknown form.
  function idAfter(a, b) {
    const x = idParts(a);
    const y = idParts(b);
    if (!x || !y) return true;
    return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
  }

  // resyncTail opens the stream again from t.anchor and drops the rows
  // after it: the server replays them, with the events of the names just
  // learned. Items not shown yet (held by a pause) up to t.anchor stay.
  function resyncTail(t) {
    t.resyncDue = false;
    const from = t.anchor || ORIGIN;
    for (const li of [...$('events').children]) { // newest first
      if (li.dataset.id && !idAfter(li.dataset.id, from)) break;
      if (li.dataset.id) t.count--;
      li.remove();
    }
    const cut = t.queue.findIndex((it) => it.id && idAfter(it.id, from));
    for (const it of cut < 0 ? [] : t.queue.splice(cut)) {
      if (it.id) t.count--;
    }
    t.held = 0;
    if (t.queue.length && !t.paused && !t.timer) t.timer = setTimeout(() => flush(t), 0);
    const u = new URL(t.path, location.href);
    u.searchParams.set('lastEventId', from);
    t.es.close();
    t.opened = false; // not a reconnect to report
    t.lost = false;
    connect(t, u.pathname + u.search);
  }

  function push(t, item) {
    item.time = new Date();
    t.queue.push(item);
    if (t.queue.length > MAX_ROWS) t.queue.splice(0, t.queue.length - MAX_ROWS);
    if (t.paused) {
      renderTail(t);
      return;
    }
    if (!t.timer) t.timer = setTimeout(() => flush(t), FLUSH_MS);
  }

  function flush(t) {
    t.timer = 0;
    if (tail !== t || t.paused) return;
    const items = t.queue.splice(0);
    const frag = document.createDocumentFragment();
    for (let i = items.length - 1; i >= 0; i--) frag.append(eventRow(items[i]));
    const list = $('events');
    list.prepend(frag);
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
    renderTail(t);
  }

  function noticeText(name, data) {
    const v = parseJSON(data);
    if (name === 'gap') {
      const from = v && v.lastEventId ? v.lastEventId : '(none)';
      const next = v && v.next ? v.next : '(none)';
      return 'Gap: events after ' + from + ' are no longer kept; continuing at ' + next;
    }
    if (name === 'upstream') {
      if (v && v.state === 'up') return 'Upstream connected';
      if (v && v.state === 'down') {
        let s = 'Upstream down';
        if (v.error) s += ': ' + v.error;
        if (typeof v.retryInMs === 'number') s += ' (retry in ' + (v.retryInMs / 1000).toFixed(1) + ' s)';
        return s;
      }
      return 'Upstream ' + ((v && v.state) || 'changed');
    }
    return 'Server overloaded: ' + data + '; the browser retries later';
  }

  function eventRow(it) {
    const li = el('li', 'ev');
    const meta = el('div', 'ev-meta');
    const body = el('div', 'ev-body');
    li.append(meta, body);
    meta.append(el('time', 'ev-time', fmtTime(it.time)));
    if (it.local) {
      li.classList.add('local', it.local);
      li.dataset.kind = 'local';
      meta.append(el('span', 'ev-name n-local', 'browser'));
      body.append(el('div', 'ev-text', it.text));
      return li;
    }
    li.dataset.kind = it.name;
    meta.append(el('span', 'ev-name ' + nameClass(it.name), it.name));
    if (it.id) {
      li.dataset.id = it.id;
      meta.append(el('code', 'ev-id', it.id));
    }
    let cls = 'ev-data';
    if (NOTICES.has(it.name)) {
      li.classList.add('notice', 'notice-' + it.name);
      body.append(el('div', 'ev-text', noticeText(it.name, it.data)));
      cls += ' raw-only'; // the text above says it all
    }
    const pre = el('pre', cls);
    fillData(pre, it.data, raw);
    li.item = it;
    body.append(pre);
    return li;
  }

  function renderTail(t) {
    if (tail !== t || !t.es) return;
    const states = ['connecting', 'open', 'closed'];
    const rs = t.es.readyState;
    const badge = $('tail-state');
    badge.textContent = states[rs] || String(rs);
    badge.className = 'badge ' + ['warn', 'ok', 'bad'][rs];
    badge.dataset.state = states[rs] || '';
    let s = fmtInt(t.count) + (t.count === 1 ? ' event' : ' events') + ' · ' +
      fmtInt(t.reconnects) + (t.reconnects === 1 ? ' reconnect' : ' reconnects');
    if (t.paused) s += ' · paused, ' + fmtInt(t.held) + ' new';
    $('tail-stats').textContent = s;
    $('tail-empty').hidden = $('events').children.length > 0;
  }

  function setPause(t, paused) {
    t.paused = paused;
    const b = $('tail-pause');
    b.textContent = paused ? 'Resume' : 'Pause';
    b.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      t.held = 0;
      if (t.resyncDue) resyncTail(t);
      else if (t.queue.length && !t.timer) t.timer = setTimeout(() => flush(t), 0);
    }
    renderTail(t);
  }

  // ---- start -------------------------------------------------------------

  function tick() {
    for (const s of document.querySelectorAll('[data-since]')) updateSince(s);
    renderPoll();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('channels').addEventListener('pointerdown', () => { tablePressed = true; });
    for (const type of ['pointerup', 'pointercancel']) {
      window.addEventListener(type, () => {
        if (!tablePressed) return;
        tablePressed = false;
        setTimeout(catchUp, 0); // after the click this press makes
      });
    }
    document.addEventListener('selectionchange', catchUp);
    $('tail-pause').addEventListener('click', () => { if (tail) setPause(tail, !tail.paused); });
    $('tail-clear').addEventListener('click', () => {
      if (!tail) return;
      tail.queue = [];
      tail.held = 0;
      // A resync replays only what comes after the cleared events.
      if (tail.lastId && idAfter(tail.lastId, tail.anchor || ORIGIN)) tail.anchor = tail.lastId;
      $('events').replaceChildren();
      renderTail(tail);
    });
    $('tail-close').addEventListener('click', () => {
      const path = tail && tail.path;
      closeTail(false);
      // Focus goes back to the channel the tail was of, not to the page.
      const b = [...document.querySelectorAll('#channels button[data-path]')].find((x) => x.dataset.path === path);
      if (b) b.focus();
    });
    $('tail-raw').addEventListener('click', () => {
      raw = !raw;
      $('tail-raw').setAttribute('aria-pressed', String(raw));
      $('events').classList.toggle('raw', raw);
      for (const li of $('events').children) {
        const pre = li.querySelector('.ev-data');
        if (pre && li.item) fillData(pre, li.item.data, raw);
      }
    });
    // The first poll tells which event names a tail opened from the
    // address listens to.
    poll().then(() => {
      window.addEventListener('hashchange', fromHash);
      fromHash();
    });
    setInterval(tick, 1000);
  });
})();
