/* tierserve charts: the overview's time series drawn with the vendored uPlot.
 *
 * TierCharts.render(container, data[, options]) draws every chart into `container` and
 * returns {update(data), charts, destroy()}. `data` is plain JSON:
 *
 *   {series: {t: [...], idcAllocated: [...], idcReady: [...], cloudAllocated: [...],
 *             cloudReady: [...], coldStarts: [...], requestRate: [...],
 *             ttftP50: [...], ttftP90: [...], tpotP50: [...], tpotP90: [...],
 *             attainmentTtft: [...], attainmentTpot: [...], cloudCostPerHour: [...],
 *             cloudCostTotal: [...], usdPerMTokIdc: [...], usdPerMTokCloud: [...]},
 *    slo: {ttftSeconds, tpotSeconds, attainment} | null}
 *
 * Every series has one value (or null) per `t` (seconds; options.time = false for a
 * simulator's virtual seconds). Missing series draw as gaps. No network: only uPlot.
 */
(function (root) {
  "use strict";

  var C = {
    idc: "#2f6fb0",
    idcStarting: "#9dc3e6",
    cloud: "#e07a1f",
    cloudStarting: "#f3c293",
    p50: "#2f6fb0",
    p90: "#8e44ad",
    slo: "#c0392b",
    rate: "#16a085",
    cost: "#e07a1f",
    total: "#7f5539",
    cold: "#c0392b",
  };

  function column(data, name, n) {
    var s = (data.series || {})[name];
    if (!s) {
      s = [];
      for (var i = 0; i < n; i++) s.push(null);
    }
    return s;
  }

  function num(v) {
    return v === null || v === undefined ? 0 : v;
  }

  function fmt(digits, unit) {
    return function (u, v) {
      return v === null || v === undefined ? "–" : v.toFixed(digits) + (unit || "");
    };
  }

  function flat(value, n) {
    var out = [];
    for (var i = 0; i < n; i++) out.push(value);
    return out;
  }

  /* The stacked replicas chart: cumulative bands IDC Ready, IDC starting, cloud Ready,
   * cloud starting (drawn top band first so each lower one covers it), legend values the
   * counts themselves; cold starts as markers on top. */
  function replicas(data) {
    var t = data.series.t;
    var n = t.length;
    var idcR = column(data, "idcReady", n).map(num);
    var idcA = column(data, "idcAllocated", n).map(num);
    var cloudR = column(data, "cloudReady", n).map(num);
    var cloudA = column(data, "cloudAllocated", n).map(num);
    var cold = column(data, "coldStarts", n).map(num);
    var raw = {
      idcReady: idcR,
      idcStarting: idcA.map(function (a, i) { return Math.max(0, a - idcR[i]); }),
      cloudReady: cloudR,
      cloudStarting: cloudA.map(function (a, i) { return Math.max(0, a - cloudR[i]); }),
    };
    var l1 = raw.idcReady;
    var l2 = l1.map(function (v, i) { return v + raw.idcStarting[i]; });
    var l3 = l2.map(function (v, i) { return v + raw.cloudReady[i]; });
    var l4 = l3.map(function (v, i) { return v + raw.cloudStarting[i]; });
    var marks = cold.map(function (c, i) { return c > 0 ? l4[i] + 0.15 : null; });
    function shown(name) {
      return function (u, v, si, i) {
        return i === null || i === undefined ? "–" : String(raw[name][i]);
      };
    }
    return {
      title: "Replicas per tier (stacked; ● cloud cold start)",
      data: [t, l4, l3, l2, l1, marks],
      series: [
        { label: "cloud starting", stroke: C.cloudStarting, fill: C.cloudStarting, value: shown("cloudStarting") },
        { label: "cloud Ready", stroke: C.cloud, fill: C.cloud, value: shown("cloudReady") },
        { label: "IDC starting", stroke: C.idcStarting, fill: C.idcStarting, value: shown("idcStarting") },
        { label: "IDC Ready", stroke: C.idc, fill: C.idc, value: shown("idcReady") },
        {
          label: "cold starts",
          stroke: C.cold,
          paths: function () { return null; },
          points: { show: true, size: 9, fill: C.cold, stroke: C.cold },
          value: function (u, v, si, i) {
            return i === null || i === undefined ? "–" : String(cold[i]);
          },
        },
      ],
      y: { label: "replicas", min: 0, digits: 0 },
      raw: raw,
    };
  }

  function lines(data, title, names, labels, colors, yLabel, digits, extra) {
    var t = data.series.t;
    var out = [t];
    var series = [];
    names.forEach(function (name, k) {
      out.push(column(data, name, t.length));
      series.push({ label: labels[k], stroke: colors[k], width: 2, value: fmt(digits), spanGaps: false });
    });
    (extra || []).forEach(function (e) {
      out.push(flat(e.value, t.length));
      series.push({ label: e.label, stroke: C.slo, width: 1.5, dash: [6, 4], value: fmt(digits) });
    });
    return { title: title, data: out, series: series, y: { label: yLabel, min: 0, digits: digits } };
  }

  function specs(data) {
    var slo = data.slo || null;
    var ttftSlo = slo && slo.ttftSeconds ? [{ label: "SLO", value: slo.ttftSeconds }] : [];
    var tpotSlo = slo && slo.tpotSeconds ? [{ label: "SLO", value: slo.tpotSeconds }] : [];
    var attSlo = slo && slo.attainment ? [{ label: "target", value: slo.attainment }] : [];
    var costs = lines(data, "Cloud cost", ["cloudCostPerHour", "cloudCostTotal"],
      ["per hour", "cumulative"], [C.cost, C.total], "cost", 4);
    costs.series[1].scale = "total";
    costs.y2 = { scale: "total", label: "cumulative" };
    var attainment = lines(data, "SLO attainment (window)", ["attainmentTtft", "attainmentTpot"],
      ["TTFT", "TPOT"], [C.p50, C.p90], "share", 3, attSlo);
    attainment.y.max = 1;
    return [
      { id: "replicas", spec: replicas(data) },
      { id: "rate", spec: lines(data, "Request rate", ["requestRate"], ["req/s"], [C.rate], "req/s", 2) },
      { id: "ttft", spec: lines(data, "TTFT", ["ttftP50", "ttftP90"], ["p50", "p90"], [C.p50, C.p90], "seconds", 3, ttftSlo) },
      { id: "tpot", spec: lines(data, "TPOT", ["tpotP50", "tpotP90"], ["p50", "p90"], [C.p50, C.p90], "seconds", 4, tpotSlo) },
      { id: "attainment", spec: attainment },
      { id: "cost", spec: costs },
      { id: "usdPerMTok", spec: lines(data, "$ per 1M output tokens (window)", ["usdPerMTokIdc", "usdPerMTokCloud"], ["IDC", "cloud"], [C.idc, C.cloud], "$/1M tok", 3) },
    ];
  }

  function options(spec, width, time) {
    var axes = [{}, { label: spec.y.label, size: 60 }];
    var top = spec.y.max;
    var scales = { x: { time: time }, y: { range: function (u, min, max) { return [0, top || (max > 0 ? max * 1.1 : 1)]; } } };
    if (spec.y2) {
      axes.push({ side: 1, scale: spec.y2.scale, label: spec.y2.label, grid: { show: false }, size: 60 });
      scales[spec.y2.scale] = { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    }
    return {
      title: spec.title,
      width: width,
      height: 200,
      scales: scales,
      axes: axes,
      series: [{ label: time ? "time" : "t (s)" }].concat(spec.series),
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
  }

  /* A chart's width: its box's, less the box's padding (the page's CSS lays the boxes
   * out, e.g. a grid of two columns; a box with no layout yet gets 600 px). */
  function widthOf(box) {
    var style = root.getComputedStyle(box);
    var pad = parseFloat(style.paddingLeft || "0") + parseFloat(style.paddingRight || "0");
    return Math.max(240, Math.floor((box.clientWidth || 600) - pad));
  }

  function render(container, data, opts) {
    opts = opts || {};
    var time = opts.time !== false;
    var uPlot = root.uPlot;
    var charts = {};
    specs(data).forEach(function (c) {
      var box = document.createElement("div");
      box.className = "chart";
      box.id = "chart-" + c.id;
      container.appendChild(box);
      var plot = new uPlot(options(c.spec, widthOf(box), time), c.spec.data, box);
      charts[c.id] = { box: box, plot: plot, spec: c.spec };
    });
    function update(next) {
      data = next;
      specs(next).forEach(function (c) {
        var chart = charts[c.id];
        if (!chart) return;
        chart.spec = c.spec;
        chart.plot.setData(c.spec.data);
      });
    }
    function resize() {
      Object.keys(charts).forEach(function (k) {
        var w = widthOf(charts[k].box);
        if (Math.abs(w - charts[k].plot.width) > 1) charts[k].plot.setSize({ width: w, height: 200 });
      });
    }
    // A box's width changes with the window and with the page's scroll bar coming.
    var observer = root.ResizeObserver ? new root.ResizeObserver(resize) : null;
    if (observer) observer.observe(container);
    root.addEventListener("resize", resize);
    return {
      charts: charts,
      update: update,
      /* What each chart plots now: {id: [[x...], [y...], ...]} (tests read this). */
      plotted: function () {
        var out = {};
        Object.keys(charts).forEach(function (k) { out[k] = charts[k].plot.data; });
        return out;
      },
      destroy: function () {
        root.removeEventListener("resize", resize);
        if (observer) observer.disconnect();
        Object.keys(charts).forEach(function (k) { charts[k].plot.destroy(); charts[k].box.remove(); });
      },
    };
  }

  root.TierCharts = { render: render, specs: specs };
})(window);
