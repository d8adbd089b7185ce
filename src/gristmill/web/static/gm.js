/* Gristmill web UI client helpers. Plain ES2017, no build step; one global: `gm`.
 *
 *   gm.lineage(el, data, opts)  dagre-laid-out SVG lineage graph
 *   gm.gantt(el, steps)         SVG Gantt chart of a run's steps
 *   gm.chart(el, spec)          uPlot line / bar chart (optional band)
 *   gm.autodraw(root)           draws [data-gm-lineage|gantt|chart] elements once
 *
 * Data is only ever put into the DOM with textContent / setAttribute (never innerHTML).
 * Needs dagre.min.js (lineage) and uPlot.iife.min.js (chart) loaded before drawing.
 */
(function (global) {
  'use strict';

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  var uid = 0;

  // Palette shared with gm.css (.badge.*): [fill, stroke] for lineage nodes, solid for bars.
  var NODE_COLORS = {
    fresh: ['#d3f9d8', '#2f9e44'],
    stale: ['#fff3bf', '#e8a200'],
    never: ['#e9ecef', '#868e96'],
    failed: ['#ffe3e3', '#e03131'],
    running: ['#d0ebff', '#1c7ed6'],
    unknown: ['#ffffff', '#adb5bd']
  };
  var BAR_COLORS = {
    success: '#2f9e44', noop: '#69db7c', fresh: '#2f9e44',
    failed: '#e03131', running: '#1c7ed6', queued: '#74c0fc',
    skipped: '#adb5bd', blocked: '#ced4da', never: '#adb5bd',
    cancelled: '#e8590c', timed_out: '#d9480f', crashed: '#a61e1e',
    stale: '#e8a200', unknown: '#868e96'
  };
  var SERIES_COLORS = ['#1c7ed6', '#e8590c', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#e03131', '#5c940d'];
  var KINDS = ['source', 'table', 'feature_view', 'training_set', 'model', 'service', 'monitor'];

  // ---------------------------------------------------------------- helpers
  function $(el) {
    return typeof el === 'string' ? document.getElementById(el) : el;
  }

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVG_NS, tag);
    if (attrs) {
      for (var k in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, k) && attrs[k] != null) node.setAttribute(k, String(attrs[k]));
      }
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function svgText(parent, str, attrs) {
    var t = svg('text', attrs, parent);
    t.textContent = str;
    return t;
  }

  function svgTitle(parent, str) {
    var t = svg('title', null, parent);
    t.textContent = str;
    return t;
  }

  function release(el) {
    if (el._gmPlot) {
      try { el._gmPlot.destroy(); } catch (e) { /* already gone */ }
      el._gmPlot = null;
    }
    if (el._gmObserver) {
      el._gmObserver.disconnect();
      el._gmObserver = null;
    }
  }

  function clear(el) {
    release(el);
    while (el.firstChild) el.removeChild(el.firstChild);
    el.removeAttribute('data-ready');
    el.removeAttribute('data-error');
  }

  function showError(el, what, err) {
    clear(el);
    var box = document.createElement('div');
    box.className = 'error';
    box.textContent = 'Could not draw ' + what + ': ' + (err && err.message ? err.message : String(err));
    el.appendChild(box);
    el.setAttribute('data-error', '1');
  }

  function showEmpty(el, message) {
    var p = document.createElement('p');
    p.className = 'gm-empty';
    p.textContent = message;
    el.appendChild(p);
  }

  var measureCtx = null;
  var measureCache = {};
  function textWidth(str, px, weight) {
    var font = (weight || 'normal') + ' ' + px + 'px ' + FONT;
    var key = font + '\u0000' + str;
    var w = measureCache[key];
    if (w !== undefined) return w;
    if (!measureCtx) measureCtx = document.createElement('canvas').getContext('2d');
    if (measureCtx) {
      measureCtx.font = font;
      w = measureCtx.measureText(str).width;
    } else {
      w = str.length * px * 0.6;
    }
    measureCache[key] = w;
    return w;
  }

  // str shortened with an ellipsis so that it fits in maxW pixels.
  function fit(str, maxW, px, weight) {
    if (textWidth(str, px, weight) <= maxW) return str;
    var lo = 0, hi = str.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (textWidth(str.slice(0, mid) + '\u2026', px, weight) <= maxW) lo = mid; else hi = mid - 1;
    }
    return str.slice(0, lo) + '\u2026';
  }

  function normStatus(s) {
    s = String(s == null ? 'unknown' : s).trim().toLowerCase().replace(/[\s-]+/g, '_');
    if (s === 'never_built') s = 'never';
    return s || 'unknown';
  }

  // Only relative links and http(s): no javascript:/data: URLs from data.
  function safeHref(href) {
    if (href == null) return null;
    href = String(href).trim();
    if (!href) return null;
    var scheme = /^([a-z][a-z0-9+.-]*):/i.exec(href);
    if (scheme && !/^https?$/i.test(scheme[1])) return null;
    return href;
  }

  function r1(v) {
    return Math.round(v * 10) / 10;
  }

  // d3's curveBasis (uniform cubic B-spline through the dagre bend points).
  function basisPath(pts) {
    var n = pts.length;
    if (n === 0) return '';
    var d = 'M' + r1(pts[0].x) + ',' + r1(pts[0].y);
    if (n === 1) return d;
    if (n === 2) return d + 'L' + r1(pts[1].x) + ',' + r1(pts[1].y);
    var x0 = pts[0].x, y0 = pts[0].y, x1 = x0, y1 = y0;
    function pt(x, y) {
      d += 'C' + r1((2 * x0 + x1) / 3) + ',' + r1((2 * y0 + y1) / 3) + ' ' +
        r1((x0 + 2 * x1) / 3) + ',' + r1((y0 + 2 * y1) / 3) + ' ' +
        r1((x0 + 4 * x1 + x) / 6) + ',' + r1((y0 + 4 * y1 + y) / 6);
    }
    for (var i = 1; i < n; i++) {
      var x = pts[i].x, y = pts[i].y;
      if (i === 1) {
        d += 'L' + r1((5 * x0 + x) / 6) + ',' + r1((5 * y0 + y) / 6);
      } else {
        pt(x, y);
      }
      x0 = x1; x1 = x; y0 = y1; y1 = y;
    }
    pt(x1, y1);
    d += 'L' + r1(x1) + ',' + r1(y1);
    return d;
  }

  // ---------------------------------------------------------------- lineage
  /* data = {nodes: [{id, label, kind, status, version, href}], edges: [[from, to], ...], focus}
   * opts = {ranker: 'auto'|'network-simplex'|'tight-tree'|'longest-path',
   *         fit: 'auto'|'width'|'none', nodesep, ranksep} */
  function lineage(el, data, opts) {
    el = $(el);
    if (!el) return null;
    opts = opts || {};
    try {
      return drawLineage(el, data || {}, opts);
    } catch (err) {
      showError(el, 'lineage', err);
      return null;
    }
  }

  function drawLineage(el, data, opts) {
    var t0 = (global.performance || Date).now();
    if (typeof global.dagre === 'undefined') throw new Error('dagre.min.js is not loaded');
    clear(el);
    el.classList.add('gm-lineage');

    var nodesIn = Array.isArray(data.nodes) ? data.nodes : [];
    var edgesIn = Array.isArray(data.edges) ? data.edges : [];
    var focus = data.focus == null ? null : String(data.focus);

    var g = new global.dagre.graphlib.Graph({ multigraph: false });
    var ranker = opts.ranker || 'auto';
    if (ranker === 'auto') ranker = nodesIn.length > 150 ? 'tight-tree' : 'network-simplex';
    g.setGraph({
      rankdir: 'LR', ranker: ranker,
      nodesep: opts.nodesep != null ? opts.nodesep : 14,
      ranksep: opts.ranksep != null ? opts.ranksep : 48,
      edgesep: 8, marginx: 8, marginy: 8
    });
    g.setDefaultEdgeLabel(function () { return {}; });

    var H = 46, MINW = 110, MAXW = 240, PAD = 12;
    var nodes = [];
    var seen = Object.create(null);
    nodesIn.forEach(function (n) {
      if (!n || n.id == null) return;
      var id = String(n.id);
      if (seen[id]) return;
      var label = n.label == null || n.label === '' ? id : String(n.label);
      var kind = n.kind == null ? 'table' : String(n.kind);
      if (KINDS.indexOf(kind) < 0) kind = 'table';
      var status = normStatus(n.status);
      if (!NODE_COLORS[status]) status = 'unknown';
      var version = n.version == null || n.version === '' ? null : 'v' + String(n.version).replace(/^v/, '');
      var shown = fit(label, MAXW - 2 * PAD, 13, '600');
      var w = Math.max(MINW, Math.min(MAXW, Math.ceil(textWidth(shown, 13, '600')) + 2 * PAD));
      var node = { id: id, label: label, shown: shown, kind: kind, status: status, version: version,
        href: safeHref(n.href), width: w, height: H };
      seen[id] = node;
      nodes.push(node);
      g.setNode(id, { width: w, height: H });
    });
    var edges = [];
    var seenEdge = Object.create(null);
    edgesIn.forEach(function (e) {
      if (!e) return;
      var a = Array.isArray(e) ? e[0] : e.from;
      var b = Array.isArray(e) ? e[1] : e.to;
      if (a == null || b == null) return;
      a = String(a); b = String(b);
      if (!seen[a] || !seen[b] || a === b) return; // unknown ids and self-loops are not drawn
      var key = a + '\u0000' + b;
      if (seenEdge[key]) return;
      seenEdge[key] = true;
      edges.push([a, b]);
      g.setEdge(a, b);
    });

    if (nodes.length) global.dagre.layout(g);
    var t1 = (global.performance || Date).now();

    var gw = Math.ceil(g.graph().width || 0), gh = Math.ceil(g.graph().height || 0);
    if (!nodes.length) { gw = 300; gh = 40; }
    var root = svg('svg', {
      viewBox: '0 0 ' + gw + ' ' + gh, width: gw, height: gh,
      role: 'img', 'aria-label': 'Lineage graph of ' + nodes.length + ' nodes',
      'font-family': FONT, 'class': 'gm-lineage-svg'
    });
    var fitMode = opts.fit || 'auto';
    var avail = el.clientWidth;
    if (fitMode === 'width' || (fitMode === 'auto' && (!avail || gw * 0.5 <= avail))) {
      root.style.maxWidth = '100%';
      root.style.height = 'auto';
    }
    root.style.display = 'block';

    var markerId = 'gm-arrow-' + (++uid) + '-' + Math.random().toString(36).slice(2, 8);
    var markerFocusId = markerId + '-f';
    var defs = svg('defs', null, root);
    [[markerId, '#868e96'], [markerFocusId, '#343a40']].forEach(function (m) {
      var marker = svg('marker', {
        id: m[0], viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8,
        markerUnits: 'userSpaceOnUse', orient: 'auto'
      }, defs);
      svg('path', { d: 'M0,0L10,5L0,10z', fill: m[1] }, marker);
    });

    if (!nodes.length) {
      svgText(root, 'No nodes', { x: 8, y: 25, 'font-size': 13, fill: '#868e96' });
    }

    var frag = document.createDocumentFragment();
    var edgeGroup = svg('g', { 'class': 'gm-edges', fill: 'none' }, frag);
    var edgeFocus = svg('g', { 'class': 'gm-edges gm-focus-edges', fill: 'none' }, null);
    edges.forEach(function (e) {
      var lab = g.edge(e[0], e[1]);
      if (!lab || !lab.points) return;
      var isFocus = focus !== null && (e[0] === focus || e[1] === focus);
      svg('path', {
        d: basisPath(lab.points),
        stroke: isFocus ? '#343a40' : '#adb5bd',
        'stroke-width': isFocus ? 1.8 : 1.2,
        'marker-end': 'url(#' + (isFocus ? markerFocusId : markerId) + ')',
        'data-from': e[0], 'data-to': e[1]
      }, isFocus ? edgeFocus : edgeGroup);
    });
    frag.appendChild(edgeFocus);

    var nodeGroup = svg('g', { 'class': 'gm-nodes' }, frag);
    var focusPos = null;
    nodes.forEach(function (n) {
      var pos = g.node(n.id);
      var x = r1(pos.x - n.width / 2), y = r1(pos.y - n.height / 2);
      var isFocus = focus !== null && n.id === focus;
      if (isFocus) focusPos = pos;
      var wrap;
      if (n.href) {
        wrap = svg('a', { href: n.href }, nodeGroup);
      } else {
        wrap = nodeGroup;
      }
      var grp = svg('g', {
        'class': 'gm-node gm-kind-' + n.kind + ' gm-status-' + n.status + (isFocus ? ' gm-focus' : ''),
        transform: 'translate(' + x + ',' + y + ')',
        'data-id': n.id
      }, wrap);
      svgTitle(grp, n.label + '\n' + n.kind.replace(/_/g, ' ') + ' \u00b7 ' + n.status +
        (n.version ? ' \u00b7 ' + n.version : ''));
      var c = NODE_COLORS[n.status];
      svg('rect', {
        width: n.width, height: n.height, rx: 7, ry: 7,
        fill: c[0], stroke: isFocus ? '#212529' : c[1], 'stroke-width': isFocus ? 3 : 1.2
      }, grp);
      svgText(grp, n.kind.replace(/_/g, ' '), {
        x: PAD, y: 16, 'font-size': 10, fill: '#495057', 'letter-spacing': '0.03em'
      });
      if (n.version) {
        svgText(grp, n.version, {
          x: n.width - PAD, y: 16, 'font-size': 10, fill: '#495057', 'text-anchor': 'end'
        });
      }
      svgText(grp, n.shown, { x: PAD, y: 35, 'font-size': 13, 'font-weight': 600, fill: '#212529' });
    });
    root.appendChild(frag);
    root.setAttribute('data-nodes', String(nodes.length));
    root.setAttribute('data-edges', String(edges.length));
    el.appendChild(root);

    if (focusPos && el.scrollWidth > el.clientWidth + 1) {
      var scale = root.getBoundingClientRect().width / (gw || 1);
      el.scrollLeft = Math.max(0, focusPos.x * scale - el.clientWidth / 2);
    }
    if (focusPos && el.scrollHeight > el.clientHeight + 1) {
      var scaleY = root.getBoundingClientRect().height / (gh || 1);
      el.scrollTop = Math.max(0, focusPos.y * scaleY - el.clientHeight / 2);
    }
    var t2 = (global.performance || Date).now();
    root.setAttribute('data-layout-ms', String(Math.round(t1 - t0)));
    root.setAttribute('data-render-ms', String(Math.round(t2 - t0)));
    root.setAttribute('data-ready', '1');
    el.setAttribute('data-ready', '1');
    return root;
  }

  // ---------------------------------------------------------------- gantt
  function parseTime(v) {
    if (v == null || v === '') return NaN;
    if (typeof v === 'number') return v < 1e11 ? v * 1000 : v; // epoch seconds or ms
    return Date.parse(String(v));
  }

  function fmtDuration(ms) {
    if (!isFinite(ms)) return '?';
    if (ms < 1000) return Math.round(ms) + ' ms';
    var s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + ' s';
    var m = Math.floor(s / 60);
    s = Math.round(s - m * 60);
    if (s === 60) { m += 1; s = 0; }
    if (m < 60) return m + 'm ' + (s < 10 ? '0' : '') + s + 's';
    var h = Math.floor(m / 60);
    m = m - h * 60;
    return h + 'h ' + (m < 10 ? '0' : '') + m + 'm';
  }

  function fmtTick(sec, step) {
    if (step < 0.1) return (Math.round(sec * 10000) / 10) + 'ms';
    if (step < 1) return (Math.round(sec * 10) / 10) + 's';
    if (step < 60) return Math.round(sec) + 's';
    if (step < 3600) {
      var m = Math.floor(sec / 60), s = Math.round(sec - m * 60);
      return m + 'm' + (s ? s + 's' : '');
    }
    var h = Math.floor(sec / 3600), mm = Math.round((sec - h * 3600) / 60);
    return h + 'h' + (mm ? mm + 'm' : '');
  }

  function niceStep(raw) {
    var steps = [60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    if (raw < 60) {
      var p = Math.pow(10, Math.floor(Math.log10(raw)));
      var f = raw / p;
      var s = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
      var v = s * p;
      if (v > 10 && v < 60) v = v <= 15 ? 15 : v <= 20 ? 20 : 30;
      return v;
    }
    for (var i = 0; i < steps.length; i++) if (steps[i] >= raw) return steps[i];
    return Math.ceil(raw / 86400) * 86400;
  }

  /* steps = [{name, start, end, status}]; start/end ISO-8601 (end null = still running). */
  function gantt(el, steps, opts) {
    el = $(el);
    if (!el) return null;
    try {
      return drawGantt(el, Array.isArray(steps) ? steps : (steps && steps.steps) || [], opts || {});
    } catch (err) {
      showError(el, 'timeline', err);
      return null;
    }
  }

  function drawGantt(el, steps, opts) {
    clear(el);
    el.classList.add('gm-gantt');
    var now = opts.now != null ? parseTime(opts.now) : Date.now();
    var rows = steps.filter(function (s) { return s; }).map(function (s) {
      var start = parseTime(s.start);
      var end = s.end == null || s.end === '' ? now : parseTime(s.end);
      if (isFinite(start) && isFinite(end) && end < start) end = start;
      return {
        name: s.name == null ? '' : String(s.name), status: normStatus(s.status),
        start: start, end: end, open: s.end == null || s.end === ''
      };
    });
    var starts = rows.filter(function (r) { return isFinite(r.start); });
    var t0 = Math.min.apply(null, starts.map(function (r) { return r.start; }));
    var tEnd = Math.max.apply(null, starts.map(function (r) { return isFinite(r.end) ? r.end : r.start; }));
    if (!starts.length) { t0 = 0; tEnd = 1000; }
    var span = Math.max(tEnd - t0, 1);

    var W = Math.max(360, Math.round(el.clientWidth || 800));
    var ROW = 24, BAR = 14, AXIS = 26, PADR = 12, FS = 12;
    var nameW = 0;
    rows.forEach(function (r) { nameW = Math.max(nameW, textWidth(r.name, FS)); });
    nameW = Math.min(Math.max(60, Math.ceil(nameW)), Math.round(W * 0.35));
    var x0 = nameW + 16, x1 = W - PADR, plotW = Math.max(40, x1 - x0);
    var H = AXIS + Math.max(1, rows.length) * ROW + 6;
    var sx = function (t) { return x0 + (t - t0) / span * plotW; };

    var root = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + H, width: '100%',
      preserveAspectRatio: 'xMinYMin meet', role: 'img',
      'aria-label': 'Timeline of ' + rows.length + ' steps', 'font-family': FONT,
      'font-size': FS, 'class': 'gm-gantt-svg'
    });
    root.style.display = 'block';
    root.style.maxWidth = W + 'px';

    // axis + grid
    var axis = svg('g', { 'class': 'gm-axis', fill: '#495057' }, root);
    var spanS = span / 1000;
    var step = niceStep(spanS / Math.max(2, Math.min(8, Math.floor(plotW / 90))));
    for (var s = 0; starts.length && s <= spanS + 1e-9; s += step) {
      var x = r1(x0 + s / spanS * plotW);
      svg('line', { x1: x, x2: x, y1: AXIS - 6, y2: H - 4, stroke: '#e9ecef' }, axis);
      var anchor = x > x1 - 20 ? 'end' : 'middle';
      svgText(axis, fmtTick(s, step), { x: x, y: AXIS - 10, 'text-anchor': anchor, 'font-size': 11 });
    }
    svg('line', { x1: x0, x2: x1, y1: AXIS - 6, y2: AXIS - 6, stroke: '#ced4da' }, axis);

    var body = svg('g', { 'class': 'gm-rows' }, root);
    rows.forEach(function (r, i) {
      var y = AXIS + i * ROW;
      var grp = svg('g', { 'class': 'gm-step gm-status-' + r.status, 'data-status': r.status }, body);
      if (i % 2 === 1) svg('rect', { x: 0, y: y, width: W, height: ROW, fill: '#f8f9fa' }, grp);
      var dur = isFinite(r.start) && isFinite(r.end) ? r.end - r.start : NaN;
      svgTitle(grp, r.name + ' \u2014 ' + r.status.replace(/_/g, ' ') +
        (isFinite(dur) ? ' \u2014 ' + fmtDuration(dur) + (r.open ? ' so far' : '') : ' \u2014 not started'));
      svgText(grp, fit(r.name, nameW, FS), { x: 4, y: y + ROW / 2 + 4, fill: '#212529' });
      var color = BAR_COLORS[r.status] || BAR_COLORS.unknown;
      if (!isFinite(r.start)) {
        svgText(grp, r.status.replace(/_/g, ' '), { x: x0 + 2, y: y + ROW / 2 + 4, fill: '#868e96', 'font-style': 'italic' });
        return;
      }
      var bx = sx(r.start), bw = Math.max(2, sx(r.end) - bx);
      svg('rect', {
        x: r1(bx), y: y + (ROW - BAR) / 2, width: r1(bw), height: BAR, rx: 2, fill: color,
        'class': 'gm-bar', opacity: r.open ? 0.8 : null
      }, grp);
      var label = fmtDuration(dur) + (r.open ? '\u2026' : '');
      var lw = textWidth(label, 11);
      var lx, la = 'start', lc = '#495057';
      if (bx + bw + 4 + lw <= W - 2) { lx = bx + bw + 4; }
      else if (bx - 4 - lw >= x0) { lx = bx - 4; la = 'end'; }
      else { lx = bx + bw - 4; la = 'end'; lc = '#ffffff'; }
      svgText(grp, label, { x: r1(lx), y: y + ROW / 2 + 4, 'font-size': 11, 'text-anchor': la, fill: lc });
    });
    if (!rows.length) svgText(root, 'No steps', { x: 4, y: AXIS + 16, fill: '#868e96' });
    root.setAttribute('data-steps', String(rows.length));
    root.setAttribute('data-ready', '1');
    el.appendChild(root);
    el.setAttribute('data-ready', '1');
    return root;
  }

  // ---------------------------------------------------------------- chart
  /* spec = {kind: 'line'|'bar', x: [...], xTime: bool, series: [{label, values, color}],
   *         height: 260, band: {lower: [...], upper: [...], label}, labels: [...], xLabel, legend}
   * Non-numeric x (xTime false), or x = 0..n-1 with `labels`, is drawn as categories. */
  function chart(el, spec) {
    el = $(el);
    if (!el) return null;
    try {
      return drawChart(el, spec || {});
    } catch (err) {
      showError(el, 'chart', err);
      return null;
    }
  }

  function num(v) {
    if (v == null || v === '') return null;
    var n = typeof v === 'number' ? v : Number(v);
    return isFinite(n) ? n : null;
  }

  function drawChart(el, spec) {
    var uPlot = global.uPlot;
    if (typeof uPlot === 'undefined') throw new Error('uPlot.iife.min.js is not loaded');
    clear(el);
    el.classList.add('gm-chart');
    var kind = spec.kind === 'bar' ? 'bar' : 'line';
    var xTime = !!spec.xTime;
    var rawX = Array.isArray(spec.x) ? spec.x : [];
    var seriesIn = (Array.isArray(spec.series) ? spec.series : []).filter(function (s) { return s; });
    var height = num(spec.height) || 260;

    var categories = null;
    var xs = rawX.map(function (v) {
      if (xTime) {
        var t = parseTime(v);
        return isFinite(t) ? t / 1000 : null;
      }
      return num(v);
    });
    if (!xTime && rawX.length && xs.some(function (v) { return v === null; })) {
      // Non-numeric x: categories at 0, 1, 2, ... labelled with the given values.
      categories = rawX.map(function (v) { return v == null ? '' : String(v); });
      xs = rawX.map(function (_, i) { return i; });
    } else if (!xTime && Array.isArray(spec.labels) && spec.labels.length === xs.length &&
               xs.every(function (v, i) { return v === i; })) {
      // x = 0..n-1 with spec.labels naming each point: categories too.
      categories = spec.labels.map(function (v) { return v == null ? '' : String(v); });
    }

    var cols = [xs];
    seriesIn.forEach(function (s) { cols.push(Array.isArray(s.values) ? s.values.map(num) : []); });
    var band = spec.band && Array.isArray(spec.band.lower) && Array.isArray(spec.band.upper) ? spec.band : null;
    if (band) {
      cols.push(band.lower.map(num));
      cols.push(band.upper.map(num));
    }
    // Keep rows with a usable x, sorted by x (uPlot needs ascending x).
    var idx = [];
    for (var i = 0; i < xs.length; i++) if (xs[i] !== null) idx.push(i);
    idx.sort(function (a, b) { return xs[a] - xs[b]; });
    var data = cols.map(function (col) {
      return idx.map(function (j) { return j < col.length && col[j] !== undefined ? col[j] : null; });
    });
    if (categories) categories = idx.map(function (j) { return categories[j]; });

    if (!data[0].length || !seriesIn.length) {
      showEmpty(el, 'No data');
      el.setAttribute('data-ready', '1');
      return null;
    }

    var step = Infinity;
    for (var k = 1; k < data[0].length; k++) {
      var dx = data[0][k] - data[0][k - 1];
      if (dx > 0 && dx < step) step = dx;
    }
    if (!isFinite(step)) step = categories ? 1 : (xTime ? 86400 : 1);

    var nBars = seriesIn.length;
    var series = [{ label: xTime ? 'time' : (spec.xLabel || 'x') }];
    seriesIn.forEach(function (s, si) {
      var color = s.color || SERIES_COLORS[si % SERIES_COLORS.length];
      var ser = {
        label: s.label == null ? 'series ' + (si + 1) : String(s.label),
        stroke: color, width: kind === 'bar' ? 1 : 2
      };
      if (kind === 'bar') {
        ser.fill = /^#[0-9a-f]{6}$/i.test(color) ? color + 'b3' : color;
        ser.points = { show: false };
        if (nBars === 1) {
          ser.paths = uPlot.paths.bars({ size: [0.7, 80] });
        } else {
          var group = step * 0.8, bw = group / nBars;
          ser.paths = uPlot.paths.bars({
            disp: {
              x0: { unit: 1, values: function (u) { return u.data[0].map(function (x) { return x - group / 2 + si * bw; }); } },
              size: { unit: 1, values: function () { return [bw]; } }
            }
          });
        }
      }
      series.push(ser);
    });
    var bands;
    if (band) {
      var bc = SERIES_COLORS[0];
      var blabel = band.label == null ? 'band' : String(band.label);
      series.push({ label: blabel + ' (lower)', stroke: bc + '59', width: 1, dash: [4, 3], points: { show: false } });
      series.push({ label: blabel + ' (upper)', stroke: bc + '59', width: 1, dash: [4, 3], points: { show: false } });
      var nS = series.length;
      bands = [{ series: [nS - 1, nS - 2], fill: bc + '26' }];
    }

    var xScale = { time: xTime };
    if (kind === 'bar' || categories) {
      xScale.range = function (u, min, max) {
        return [min - step / 2, max + step / 2];
      };
    }
    var yScale = {};
    if (kind === 'bar') {
      yScale.range = function (u, min, max) {
        return uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true);
      };
    }
    var xAxis = { stroke: '#495057', grid: { stroke: '#f1f3f5' }, ticks: { stroke: '#dee2e6' } };
    if (categories) {
      var cats = categories;
      xAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
      var catMax = 0;
      cats.forEach(function (c) { catMax = Math.max(catMax, textWidth(c.length > 16 ? c.slice(0, 15) + '\u2026' : c, 12)); });
      xAxis.space = Math.min(130, Math.max(40, Math.ceil(catMax) + 12));
      xAxis.values = function (u, splits) {
        return splits.map(function (v) {
          var c = v === Math.round(v) && v >= 0 && v < cats.length ? cats[v] : '';
          return c.length > 16 ? c.slice(0, 15) + '\u2026' : c;
        });
      };
    }
    var yAxis = { stroke: '#495057', grid: { stroke: '#f1f3f5' }, ticks: { stroke: '#dee2e6' } };

    var width = function () { return Math.max(200, Math.floor(el.clientWidth || 600)); };
    var opts = {
      width: width(), height: height,
      series: series, scales: { x: xScale, y: yScale }, axes: [xAxis, yAxis],
      legend: { show: spec.legend !== false },
      cursor: { drag: { x: kind === 'line', y: false } },
      hooks: {
        draw: [function () { el.setAttribute('data-ready', '1'); }]
      }
    };
    if (bands) opts.bands = bands;
    if (categories) opts.series[0].value = function (u, v) { return v == null ? '\u2014' : cats[v]; };

    var plot = new uPlot(opts, data, el);
    el._gmPlot = plot;

    if (typeof ResizeObserver !== 'undefined') {
      var lastW = width(), pending = false;
      el._gmObserver = new ResizeObserver(function () {
        if (pending) return;
        pending = true;
        requestAnimationFrame(function () {
          pending = false;
          if (el._gmPlot !== plot) return;
          var w = width();
          if (w !== lastW) {
            lastW = w;
            plot.setSize({ width: w, height: height });
          }
        });
      });
      el._gmObserver.observe(el);
    }
    return plot;
  }

  // ---------------------------------------------------------------- autodraw
  var DRAWERS = [
    ['data-gm-lineage', 'lineage', function (el, d) { lineage(el, d, readOpts(el)); }],
    ['data-gm-gantt', 'timeline', function (el, d) { gantt(el, d, readOpts(el)); }],
    ['data-gm-chart', 'chart', function (el, d) { chart(el, d); }]
  ];

  function readOpts(el) {
    var raw = el.getAttribute('data-gm-opts');
    if (!raw) return {};
    try { return JSON.parse(raw) || {}; } catch (e) { return {}; }
  }

  function readData(el, attr) {
    var id = el.getAttribute(attr);
    var script = id ? document.getElementById(id) : null;
    if (!script) throw new Error('no data element #' + id);
    return JSON.parse(script.textContent);
  }

  /* Draws every not-yet-drawn [data-gm-*] element under root (default: document).
   * force: also redraw elements already drawn (only=attr limits it to one kind). */
  function autodraw(root, force, only) {
    root = root && root.querySelectorAll ? root : document;
    var count = 0;
    DRAWERS.forEach(function (d) {
      if (only && only !== d[0]) return;
      var list = Array.prototype.slice.call(root.querySelectorAll('[' + d[0] + ']'));
      if (root.nodeType === 1 && root.hasAttribute(d[0])) list.unshift(root);
      list.forEach(function (el) {
        if (el.getAttribute('data-gm-done') === '1' && !force) return;
        el.setAttribute('data-gm-done', '1');
        var payload;
        try {
          payload = readData(el, d[0]);
        } catch (err) {
          showError(el, d[1], err);
          return;
        }
        d[2](el, payload);
        count++;
      });
    });
    return count;
  }

  // ---------------------------------------------------------------- wiring
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : null;
  }

  function sameOrigin(path) {
    try {
      return new URL(path, document.baseURI).origin === global.location.origin;
    } catch (e) {
      return true;
    }
  }

  document.addEventListener('htmx:configRequest', function (evt) {
    var token = csrfToken();
    var detail = evt.detail;
    if (token && detail && detail.headers && sameOrigin(detail.path)) {
      detail.headers['X-CSRF-Token'] = token;
    }
  });

  document.addEventListener('htmx:afterSettle', function () { autodraw(document); });

  // A page restored from htmx's history cache holds canvases without pixels: redraw charts.
  document.addEventListener('htmx:historyRestore', function () {
    autodraw(document, true, 'data-gm-chart');
    autodraw(document);
  });

  // Free uPlot instances / observers of elements htmx removes.
  document.addEventListener('htmx:beforeCleanupElement', function (evt) {
    var el = evt.target;
    if (el && el._gmPlot) release(el);
  });

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { autodraw(document); });
  } else {
    autodraw(document);
  }

  global.gm = {
    lineage: lineage,
    gantt: gantt,
    chart: chart,
    autodraw: autodraw,
    csrfToken: csrfToken,
    formatDuration: fmtDuration,
    colors: { node: NODE_COLORS, bar: BAR_COLORS, series: SERIES_COLORS }
  };
})(window);
