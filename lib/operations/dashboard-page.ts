/**
 * The dashboard's one page: HTML, CSS and a small script, served as it is (nothing to build). Edited here;
 * spec/browser/dashboard.spec.ts drives it in Chromium.
 */
/** The page's icon: an envelope, inline so the page asks for nothing else (a missing favicon was a 404). */
const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E" +
  "%3Crect x='1' y='3' width='14' height='10' rx='2' fill='%23111827'/%3E" +
  "%3Cpath d='M1 4l7 5 7-5' stroke='%23fde68a' fill='none'/%3E%3C/svg%3E";

export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>postage-ts dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="${FAVICON}">
<style>
  body { font: 14px/1.4 system-ui, Helvetica, Arial, sans-serif; margin: 0; color: #111827; background: #f9fafb; }
  header { background: #111827; color: #f9fafb; padding: 10px 20px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .live { font-size: 12px; color: #9ca3af; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px 20px; }
  main > * { min-width: 0; }
  section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px 14px; overflow: auto; }
  section svg { max-width: 100%; height: auto; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td {
    text-align: left; padding: 4px 8px; border-bottom: 1px solid #f3f4f6; vertical-align: top; overflow-wrap: anywhere;
  }
  td.actions { white-space: nowrap; overflow-wrap: normal; }
  td.actions button + button { margin-left: 4px; }
  .id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; }
  .when { white-space: nowrap; font-variant-numeric: tabular-nums; }
  th { color: #6b7280; font-weight: 600; font-size: 12px; }
  .component { border: 1px solid #d1d5db; border-radius: 6px; padding: 8px 10px; margin-bottom: 8px; }
  .component.up { border-left: 5px solid #16a34a; }
  .component.down { border-left: 5px solid #9ca3af; opacity: .6; }
  .state { font-size: 12px; font-weight: 600; }
  .up .state { color: #16a34a; } .down .state { color: #6b7280; }
  .outbox.failing { color: #b91c1c; }
  .muted { color: #6b7280; font-size: 12px; }
  .count { font-weight: 700; font-size: 16px; }
  .error-queue {
    border: 1px solid #fecaca; background: #fef2f2; border-radius: 6px; padding: 8px 10px; margin-bottom: 8px;
  }
  button {
    font: inherit; font-size: 12px; padding: 2px 8px; border-radius: 4px; border: 1px solid #9ca3af; background: #fff;
    cursor: pointer;
  }
  button.danger { border-color: #dc2626; color: #dc2626; }
  pre { background: #f3f4f6; padding: 8px; border-radius: 4px; max-height: 320px; overflow: auto; font-size: 12px; }
  input { font: inherit; padding: 2px 6px; width: min(360px, 60%); }
  #notice { color: #b91c1c; }
</style>
</head>
<body>
<header><h1>postage-ts</h1><span class="live" id="live">connecting…</span><span id="notice"></span></header>
<main>
  <section id="components"><h2>Components</h2><div id="component-list" class="muted">none answered yet</div></section>
  <section id="errors"><h2>Error queues</h2>
    <div id="error-list" class="muted">no component reports an error queue</div></section>
  <section id="error-view" class="wide" hidden><div id="error-detail"></div></section>
  <section id="queues" class="wide"><h2>Queues</h2><table>
    <thead><tr><th>queue</th><th>depth</th><th>consumers</th><th>in/s</th><th>out/s</th></tr></thead>
    <tbody id="queue-rows"></tbody></table></section>
  <section id="topology" class="wide"><h2>Topology</h2><div id="graph"></div></section>
  <section id="conversation" class="wide"><h2>Conversation</h2>
    <input id="conversation-id" placeholder="conversation id (or click a message below)">
    <button id="show-conversation">show</button>
    <div id="sequence"></div>
    <h2 style="margin-top:12px">Recent messages</h2><table>
      <thead><tr><th>when</th><th>message</th><th>from</th><th>to</th><th>where</th><th>conversation</th></tr></thead>
      <tbody id="recent"></tbody></table>
  </section>
</main>
<script>
(function () {
  'use strict';
  var lastGraph = '';
  var openQueue = null;
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'onclick') e.addEventListener('click', attrs[k]);
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  // Local time, 24-hour, as every time on the page is (the server's are ISO, in UTC).
  function clock(d, ms) {
    function two(n) { return (n < 10 ? '0' : '') + n; }
    var t = two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
    return ms ? t + '.' + String(d.getMilliseconds()).padStart(3, '0') : t;
  }
  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso || '';
    var day = d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-'
      + String(d.getDate()).padStart(2, '0');
    return day + ' ' + clock(d, false);
  }
  function notice(text) { document.getElementById('notice').textContent = text || ''; }
  function post(path, body) {
    // The token travels as the cookie the page's address set (same origin only, unreadable to scripts).
    return fetch(path, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
    })
      .then(function (r) {
        return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.statusText); return j; });
      });
  }
  function renderComponents(list) {
    var box = document.getElementById('component-list');
    box.textContent = '';
    box.className = list.length ? '' : 'muted';
    if (!list.length) {
      box.textContent = 'none answered yet';
      // What a newcomer looks at first: where the components come from.
      box.appendChild(el('p', { 'class': 'hint', text: 'A component shows here within a second of starting on'
        + ' this broker and vhost: postage run MODULE, serve(), or the NestJS module.' }));
      return;
    }
    list.forEach(function (c) {
      var f = c.fingerprint;
      var own = ['quit', 'restart', 'describe', 'ping', 'join_group', 'leave_group'];
      var handlers = c.handlers.filter(function (h) { return own.indexOf(h.name) < 0; })
        .map(function (h) { return (h.kind === 'message' ? '' : h.kind + ' ') + h.type + '/' + h.name; }).join(', ');
      var binds = c.bindings.map(function (b) {
        return (b.exchange || '(default)') + ' / ' + b.key + ' → ' + b.queue;
      }).join('; ');
      var about = '  ' + f.type + ' · ' + f.pid + '@' + f.host + ' · ' + c.library.name + ' ' + c.library.version
        + ' · concurrency ' + (c.concurrency || 1) + '  ';
      var card = { 'class': 'component ' + (c.up ? 'up' : 'down'), 'data-name': f.name, 'data-id': c.id };
      box.appendChild(el('div', card, [
        el('div', {}, [
          el('strong', { text: f.name }), el('span', { 'class': 'muted', text: about }),
          el('span', { 'class': 'state', text: c.up ? 'up' : 'down' })
        ]),
        el('div', { 'class': 'muted', text: 'handles: ' + (handlers || '—') }),
        el('div', { 'class': 'muted', text: 'bindings: ' + (binds || '—') })
      ].concat((c.partitions || []).map(function (p) {
        // A replica that is down holds no partition (the broker gave its partitions to the others): its last
        // description is not what is.
        if (!c.up) return el('div', { 'class': 'muted partitions', text: 'partitions of ' + p.queue + ': none (down)' });
        // A partitioned processor: where this replica is active, and how the partitions spread over the others.
        var spread = p.rebalance
          ? p.replicas.map(function (r) {
              return r.pid + '@' + r.host + ' ' + (r.partitions.length ? r.partitions.join(', ') : 'idle');
            }).join('; ')
          : 'not spread';
        var waiting = p.waiting
          ? ' · waiting: ' + p.partitions.map(function (n) { return n + ' ' + (p.waiting[n] || 0); }).join(', ')
          : '';
        var here = (p.activeHere.join(', ') || 'none (idle)')
          + (p.lettingGo && p.lettingGo.length ? ' · letting go ' + p.lettingGo.join(', ') : '')
          + (p.standbyHere && p.standbyHere.length ? ' · standby for ' + p.standbyHere.join(', ') : '');
        var text = 'partitions of ' + p.queue + ': active here ' + here + ' · replicas: ' + spread + waiting;
        return el('div', { 'class': 'muted partitions', text: text });
      })).concat(c.outbox ? [outboxLine(c.outbox)] : [])));
    });
  }
  function outboxLine(o) {
    // A processor with a store: its outbox backlog as its last sweep saw it; failed rows need an operator.
    var text = 'outbox: ' + o.waiting + ' waiting · oldest ' + (o.oldestMs / 1000).toFixed(1) + ' s · '
      + o.failed + ' failed';
    return el('div', { 'class': 'muted outbox' + (o.failed > 0 ? ' failing' : ''), text: text });
  }
  function renderQueues(queues) {
    var rows = document.getElementById('queue-rows');
    rows.textContent = '';
    queues.forEach(function (q) {
      rows.appendChild(el('tr', { 'data-queue': q.name }, [
        el('td', { text: q.name + (q.error ? '  (errors)' : '') }),
        el('td', {
          'class': 'depth', text: q.messages === null ? '—' : String(q.messages),
          title: q.messages === null ? 'not readable: exclusive to its component, or gone' : ''
        }),
        el('td', { text: q.consumers === null ? '—' : String(q.consumers) }),
        el('td', { text: q.inPerSecond.toFixed(1) }), el('td', { text: q.outPerSecond.toFixed(1) })
      ]));
    });
  }
  function renderErrors(state) {
    var box = document.getElementById('error-list');
    box.textContent = '';
    box.className = state.errorQueues.length ? '' : 'muted';
    if (!state.errorQueues.length) { box.textContent = 'no component reports an error queue'; return; }
    state.errorQueues.forEach(function (name) {
      var q = state.queues.filter(function (x) { return x.name === name; })[0];
      var count = q && q.messages !== null ? q.messages : 0;
      box.appendChild(el('div', { 'class': 'error-queue', 'data-queue': name }, [
        el('strong', { text: name }), el('span', { text: '  ' }), el('span', { 'class': 'count', text: String(count) }),
        el('span', { 'class': 'muted', text: ' failed  ' }),
        el('button', { 'class': 'inspect', text: 'inspect', onclick: function () {
          openQueue = name; document.getElementById('error-view').hidden = false; loadErrors(name);
        } }), el('span', { text: ' ' }),
        el('button', { 'class': 'replay-all', text: 'replay all', onclick: function () {
          post('/api/errors/replay', { queue: name, all: true }).then(function (r) {
            notice('replayed ' + r.replayed.length
              + (r.unroutable.length ? ', ' + r.unroutable.length + ' unroutable' : '')
              + (r.refused.length ? ', ' + r.refused.length + ' refused (' + r.refused[0].reason + ')' : '')
              + (r.notTaken ? ', ' + r.notTaken + ' held by another reader' : ''));
            if (openQueue === name) loadErrors(name);
          }, function (e) { notice(e.message); });
        } }), el('span', { text: ' ' }),
        el('button', { 'class': 'purge-all danger', text: 'purge all', onclick: function () {
          if (!confirm('Remove every message from ' + name + ' for good?')) return;
          post('/api/errors/purge', { queue: name, all: true }).then(function (r) {
            notice('purged ' + r.purged.length); if (openQueue === name) loadErrors(name);
          }, function (e) { notice(e.message); });
        } })
      ]));
    });
  }
  function loadErrors(name) {
    fetch('/api/errors?queue=' + encodeURIComponent(name)).then(function (r) { return r.json(); }).then(function (d) {
      var box = document.getElementById('error-detail');
      box.textContent = '';
      if (d.error) { box.textContent = d.error; return; }
      var groups = el('table', { 'class': 'groups' }, [el('thead', {}, [el('tr', {}, [
        el('th', { text: 'error' }), el('th', { text: 'message' }), el('th', { text: 'count' }), el('th', { text: '' })
      ])])]);
      var gb = el('tbody');
      d.groups.forEach(function (g) {
        gb.appendChild(el('tr', {}, [
          el('td', { text: g.errorName }), el('td', { text: g.messageName }), el('td', { text: String(g.count) }),
          el('td', { 'class': 'actions' }, [el('button', {
            'class': 'replay-group', 'data-error': g.errorName, text: 'replay these', onclick: function () {
              // A group of messages that name none is selected as such: no message is named '(no name)'.
              post('/api/errors/replay', g.unnamed
                ? { queue: name, errorName: g.errorName, unnamed: true }
                : { queue: name, errorName: g.errorName, messageName: g.messageName })
                .then(function (r) { notice('replayed ' + r.replayed.length); loadErrors(name); },
                  function (e) { notice(e.message); });
            }
          })])
        ]));
      });
      groups.appendChild(gb);
      var heads = ['when', 'message', 'origin', 'error', 'attempts', ''];
      var list = el('table', { 'class': 'messages' }, [el('thead', {}, [el('tr', {}, heads.map(function (h) {
        return el('th', { text: h });
      }))])]);
      var lb = el('tbody');
      d.messages.forEach(function (m) {
        lb.appendChild(el('tr', { 'data-id': m.id }, [
          el('td', { 'class': 'when', text: m.failedAt ? when(m.failedAt) : '', title: m.failedAt || '' }),
          el('td', { text: m.message }), el('td', { text: m.origin }),
          el('td', { text: m.errorName + ': ' + m.errorMessage }),
          el('td', { text: String(m.attempts === undefined ? '' : m.attempts) }),
          el('td', { 'class': 'actions' }, [
            el('button', { text: 'show', onclick: function () {
              fetch('/api/errors/message?queue=' + encodeURIComponent(name) + '&id=' + encodeURIComponent(m.id))
                .then(function (r) { return r.json(); })
                .then(function (w) {
                  document.getElementById('error-whole').textContent = JSON.stringify(w, null, 2);
                });
            } }),
            el('button', { text: 'replay', onclick: function () {
              post('/api/errors/replay', { queue: name, ids: [m.id] })
                .then(function () { loadErrors(name); }, function (e) { notice(e.message); });
            } }),
            el('button', { 'class': 'danger', text: 'purge', onclick: function () {
              if (!confirm('Remove ' + m.id + ' for good?')) return;
              post('/api/errors/purge', { queue: name, ids: [m.id] })
                .then(function () { loadErrors(name); }, function (e) { notice(e.message); });
            } })
          ])]));
      });
      list.appendChild(lb);
      box.appendChild(el('h2', { text: name + ': ' + d.count + ' failed' }));
      if (d.locked) box.appendChild(el('div', { 'class': 'locked muted', text: 'another tool (postage errors or a'
        + ' dashboard) is working on this queue: what it holds is not shown' }));
      box.appendChild(groups);
      box.appendChild(list);
      box.appendChild(el('pre', { id: 'error-whole', text: 'show a message to see it whole' }));
    });
  }
  function loadGraph(components) {
    if (!components.length) {
      lastGraph = '';
      document.getElementById('graph').innerHTML = '<p class="muted">nothing to draw until a component answers</p>';
      return;
    }
    var key = JSON.stringify(components.map(function (c) {
      return [c.id, c.up, c.bindings.length, c.handlers.length];
    }));
    if (key === lastGraph) return;
    lastGraph = key;
    fetch('/api/graph.svg').then(function (r) { return r.text(); }).then(function (svg) {
      document.getElementById('graph').innerHTML = svg;
    });
  }
  function showConversation(id) {
    document.getElementById('conversation-id').value = id;
    fetch('/api/conversation?id=' + encodeURIComponent(id)).then(function (r) { return r.json(); }).then(function (d) {
      document.getElementById('sequence').innerHTML = d.messages.length
        ? d.svg
        : '<p class="muted">nothing seen of that conversation since the page opened</p>';
    });
  }
  function loadRecent() {
    fetch('/api/messages').then(function (r) { return r.json(); }).then(function (list) {
      var rows = document.getElementById('recent');
      rows.textContent = '';
      list.slice(0, 30).forEach(function (m) {
        rows.appendChild(el('tr', {}, [
          el('td', { 'class': 'when', text: clock(new Date(m.at), true), title: m.at }), el('td', { text: m.what }),
          el('td', { text: m.from }), el('td', { text: m.to.join(', ') || '—' }),
          el('td', { text: m.exchange + ' / ' + m.routingKey }),
          el('td', {}, [el('a', {
            href: '#', 'class': 'id conversation',
            title: 'conversation ' + (m.conversationId || '') + ': show it as a sequence diagram',
            text: m.conversationId || '',
            onclick: function (ev) { ev.preventDefault(); showConversation(m.conversationId); }
          })])
        ]));
      });
    });
  }
  document.getElementById('show-conversation').addEventListener('click', function () {
    showConversation(document.getElementById('conversation-id').value.trim());
  });
  var seen = -1;
  function apply(state) {
    document.getElementById('live').textContent = 'live · ' + clock(new Date(), false);
    renderComponents(state.components);
    renderQueues(state.queues);
    renderErrors(state);
    loadGraph(state.components);
    if (state.seen !== seen) { seen = state.seen; loadRecent(); }
  }
  var source = new EventSource('/api/events');
  source.addEventListener('state', function (ev) { apply(JSON.parse(ev.data)); });
  source.onerror = function () { document.getElementById('live').textContent = 'reconnecting…'; };
})();
</script>
</body>
</html>
`;
