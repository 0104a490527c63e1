/* dmp's tiny chart helper: plain SVG, no dependencies, no network.
 * Any element with data-chart="bars|line|hbars|spark|heat|lift" and its data in
 * data-series (JSON) is drawn on page load. Text goes in as text nodes, never HTML. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var ACCENT = "#2457c5", SECOND = "#e0891b", GRID = "#dde1e8";

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, value, anchor) {
    var t = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    t.textContent = value;
    return t;
  }
  function svg(host, w, h) {
    var s = el("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", role: "img" });
    host.appendChild(s);
    return s;
  }
  function fmt(n) { return Number(n).toLocaleString(); }
  function max(values) { return Math.max.apply(null, values.concat([1])); }

  function axes(s, w, h, pad, top) {
    el("line", { x1: pad, y1: h - pad, x2: w - 5, y2: h - pad, stroke: GRID }, s);
    text(s, 2, 12, fmt(top));
    text(s, 2, h - pad, "0");
  }

  function bars(host, rows, xKey, yKey) {
    var w = 700, h = 220, pad = 30, values = rows.map(function (r) { return r[yKey]; });
    var top = max(values), s = svg(host, w, h), bw = (w - pad - 5) / Math.max(rows.length, 1);
    axes(s, w, h, pad, top);
    rows.forEach(function (r, i) {
      var bh = (h - 2 * pad) * r[yKey] / top;
      var rect = el("rect", { x: pad + i * bw + 1, y: h - pad - bh, width: Math.max(bw - 2, 1), height: bh, fill: ACCENT }, s);
      el("title", {}, rect).textContent = r[xKey] + ": " + fmt(r[yKey]);
    });
    if (rows.length) {
      text(s, pad, h - 8, rows[0][xKey]);
      text(s, w - 5, h - 8, rows[rows.length - 1][xKey], "end");
    }
  }

  function line(host, rows, xKey, yKey) {
    var w = 700, h = 220, pad = 30, s = svg(host, w, h);
    var values = rows.map(function (r) { return r[yKey]; }), top = max(values);
    axes(s, w, h, pad, top);
    if (!rows.length) { text(s, w / 2, h / 2, "no data yet", "middle"); return; }
    var step = (w - pad - 5) / Math.max(rows.length - 1, 1);
    var pts = rows.map(function (r, i) {
      return (pad + i * step).toFixed(1) + "," + (h - pad - (h - 2 * pad) * r[yKey] / top).toFixed(1);
    });
    el("polyline", { points: pts.join(" "), fill: "none", stroke: ACCENT, "stroke-width": 2 }, s);
    text(s, pad, h - 8, rows[0][xKey]);
    text(s, w - 5, h - 8, rows[rows.length - 1][xKey], "end");
  }

  function hbars(host, data, labels) {
    var entries = Array.isArray(data)
      ? data.map(function (v, i) { return [labels ? labels[i] : String(i), v]; })
      : Object.keys(data).map(function (k) { return [k, data[k]]; });
    var w = 700, rowH = 22, h = Math.max(entries.length * rowH, 22), label = 220;
    var s = svg(host, w, h), top = max(entries.map(function (e) { return e[1]; }));
    s.setAttribute("preserveAspectRatio", "xMinYMin meet");
    entries.forEach(function (e, i) {
      var bw = (w - label - 90) * e[1] / top;
      text(s, label - 6, i * rowH + 15, String(e[0]).slice(0, 34), "end");
      el("rect", { x: label, y: i * rowH + 4, width: bw, height: rowH - 8, fill: ACCENT }, s);
      text(s, label + bw + 6, i * rowH + 15, fmt(e[1]));
    });
    if (!entries.length) text(s, 4, 15, "no data yet");
  }

  function spark(host, values) {
    var w = 120, h = 24, s = svg(host, w, h);
    if (values.length < 2) { el("line", { x1: 0, y1: h - 2, x2: w, y2: h - 2, stroke: GRID }, s); return; }
    var top = max(values), lo = Math.min.apply(null, values), span = Math.max(top - lo, 1);
    var pts = values.map(function (v, i) {
      return (i * w / (values.length - 1)).toFixed(1) + "," + (h - 2 - (h - 4) * (v - lo) / span).toFixed(1);
    });
    el("polyline", { points: pts.join(" "), fill: "none", stroke: ACCENT, "stroke-width": 1.5 }, s);
  }

  function heat(host, data) {
    var names = data.labels, cell = 28, label = 180, n = names.length;
    var s = svg(host, label + n * cell + 10, label + n * cell + 10);
    s.setAttribute("preserveAspectRatio", "xMinYMin meet");
    var share = {};
    data.cells.forEach(function (c) { share[c[0] + "\u0000" + c[1]] = c[2]; });
    names.forEach(function (row, i) {
      text(s, label - 6, label + i * cell + 18, row.slice(0, 26), "end");
      var t = text(s, 0, 0, row.slice(0, 26));
      t.setAttribute("transform", "translate(" + (label + i * cell + 18) + "," + (label - 6) + ") rotate(-60)");
      names.forEach(function (col, j) {
        var v = i === j ? 1 : (share[row + "\u0000" + col] || 0);
        var rect = el("rect", { x: label + j * cell, y: label + i * cell, width: cell - 2, height: cell - 2,
          fill: "rgb(" + Math.round(255 - 219 * v) + "," + Math.round(255 - 168 * v) + "," + Math.round(255 - 58 * v) + ")" }, s);
        el("title", {}, rect).textContent = row + " in " + col + ": " + (v * 100).toFixed(1) + "%";
      });
    });
  }

  function lift(host, rows) {
    var w = 700, h = 240, pad = 36, s = svg(host, w, h), lastX = -99;
    var top = Math.max.apply(null, rows.map(function (r) { return r.reach; }).concat([0.01]));
    var yTop = Math.max.apply(null, rows.map(function (r) { return Math.max(r.recall, r.random_recall); }).concat([0.01]));
    el("line", { x1: pad, y1: h - pad, x2: w - 5, y2: h - pad, stroke: GRID }, s);
    el("line", { x1: pad, y1: 5, x2: pad, y2: h - pad, stroke: GRID }, s);
    function xy(reach, recall) {
      return [(pad + (w - pad - 5) * reach / top).toFixed(1), (h - pad - (h - pad - 20) * recall / yTop).toFixed(1)];
    }
    function poly(key, color, dash) {
      var pts = [xy(0, 0).join(",")].concat(rows.map(function (r) { return xy(r.reach, r[key]).join(","); }));
      el("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash || "" }, s);
    }
    poly("recall", ACCENT);
    poly("random_recall", SECOND, "4 3");
    rows.forEach(function (r) {
      var p = xy(r.reach, r.recall);
      el("circle", { cx: p[0], cy: p[1], r: 3, fill: ACCENT }, s);
      if (p[0] - lastX < 60) return;  // too close to the last label to read
      lastX = p[0];
      text(s, p[0], p[1] - 8, "lift " + (r.lift == null ? "-" : r.lift.toFixed(2)), "middle");
      text(s, p[0], h - pad + 14, (r.reach * 100).toFixed(0) + "%", "middle");
    });
    text(s, w - 5, h - 4, "reach", "end");
    text(s, pad + 4, 14, "recall of held-out seeds (blue) vs random (orange)");
  }

  function draw(host) {
    var kind = host.getAttribute("data-chart"), data = JSON.parse(host.getAttribute("data-series") || "[]");
    host.textContent = "";
    var x = host.getAttribute("data-x"), y = host.getAttribute("data-y");
    if (kind === "bars") bars(host, data, x, y);
    else if (kind === "line") line(host, data, x, y);
    else if (kind === "hbars") hbars(host, data, JSON.parse(host.getAttribute("data-labels") || "null"));
    else if (kind === "spark") spark(host, data);
    else if (kind === "heat") heat(host, data);
    else if (kind === "lift") lift(host, data);
  }

  window.dmpCharts = { draw: draw };
  document.querySelectorAll("[data-chart]").forEach(draw);
})();
