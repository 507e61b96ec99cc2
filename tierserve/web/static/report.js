/* tierserve simulate --html: draws the report embedded in #report-data with uPlot.
 *
 * One run: per service, replicas per tier (stacked IDC under cloud, allocated as areas,
 * Ready as lines, cold starts marked), request rate, TTFT and TPOT p50/p90 against the
 * SLO, SLO attainment, cloud cost per hour and cumulative, $/1M output tokens per tier;
 * then the decisions with their reasons. Several runs (a comparison): the summary table,
 * the key series of every configuration overlaid, then every configuration's charts side
 * by side on the same scales, and each one's decisions.
 *
 * The data is columnar (tierserve/sim/series.py): series[name][i] holds over
 * [t_s[i], end_s[i]), so every chart is drawn in steps from the window's start.
 */
(function () {
  "use strict";

  var TIER = { idc: "#1f77b4", cloud: "#ff7f0e" };
  var DARK = { idc: "#0b3c66", cloud: "#a64d00" };
  var SLO = "#d62728";
  var P50 = "#9467bd";
  var P90 = "#2ca02c";
  var GREY = "#7f7f7f";
  var VARIANTS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var HEIGHT = 190;
  var charts = [];

  function clock(t) {
    if (t == null || !isFinite(t)) return "";
    var neg = t < 0 ? "-" : "";
    var s = Math.round(Math.abs(t));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m));
    return neg + (h ? h + ":" + mm : mm) + ":" + String(sec).padStart(2, "0");
  }

  function num(v, digits, unit) {
    if (v == null) return "–";
    return v.toFixed(digits) + (unit || "");
  }

  function money(v) {
    if (v == null) return "–";
    return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function latency(v) {
    if (v == null) return "–";
    if (v >= 1) return v.toFixed(2) + " s";
    return (v < 0.1 ? (v * 1000).toFixed(1) : (v * 1000).toFixed(0)) + " ms";
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "class") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  /* x: window starts and the last window's end; y: each value, the last one repeated so
     the last step reaches the end. */
  function stepX(s) {
    return s.t_s.length ? s.t_s.concat([s.end_s[s.end_s.length - 1]]) : [];
  }
  function stepY(values) {
    return values.length ? values.concat([values[values.length - 1]]) : [];
  }
  function add(a, b) {
    return a.map(function (v, i) { return v == null || b[i] == null ? null : v + b[i]; });
  }
  function constant(xs, v) { return xs.map(function () { return v; }); }
  function maxOf(values) {
    var m = 0;
    values.forEach(function (v) { if (v != null && isFinite(v) && v > m) m = v; });
    return m;
  }

  var stepped = uPlot.paths.stepped({ align: 1 });

  function line(label, color, opts) {
    var s = { label: label, stroke: color, width: 1.5, paths: stepped, points: { show: false } };
    Object.keys(opts || {}).forEach(function (k) { s[k] = opts[k]; });
    return s;
  }

  function markers(times, color) {
    return function (u) {
      if (!times || !times.length) return;
      var ctx = u.ctx, top = u.bbox.top, left = u.bbox.left, right = left + u.bbox.width;
      var r = 5 * devicePixelRatio;
      ctx.save();
      ctx.fillStyle = color;
      ctx.strokeStyle = color;
      ctx.globalAlpha = 0.6;
      ctx.setLineDash([3 * devicePixelRatio, 3 * devicePixelRatio]);
      times.forEach(function (t) {
        var x = Math.round(u.valToPos(t, "x", true));
        if (x < left || x > right) return;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + u.bbox.height);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(x - r, top);
        ctx.lineTo(x + r, top);
        ctx.lineTo(x, top + r * 1.5);
        ctx.closePath();
        ctx.fill();
      });
      ctx.restore();
    };
  }

  /* One uPlot chart in `target`: spec = {title, series, data, unit, yMax, y2, marks}. */
  function draw(target, spec) {
    var box = el("div", { class: "chart" });
    target.appendChild(box);
    var width = Math.max(260, (target.clientWidth || 600) - 16);
    var yRange = function (u, min, max) {
      var top = spec.yMax != null ? Math.max(spec.yMax, max || 0) : max;
      if (spec.yFixed != null) top = spec.yFixed;
      return [0, top > 0 ? top * (spec.yFixed != null ? 1 : 1.05) : 1];
    };
    var scales = { x: { time: false }, y: { range: yRange } };
    var axes = [
      { values: function (u, vals) { return vals.map(clock); } },
      { label: spec.unit || "", size: 60 }
    ];
    if (spec.y2) {
      scales.y2 = { range: function (u, min, max) {
        var top = spec.y2Max != null ? Math.max(spec.y2Max, max || 0) : max;
        return [0, top > 0 ? top * 1.05 : 1];
      } };
      axes.push({ scale: "y2", side: 1, label: spec.y2, grid: { show: false }, size: 60 });
    }
    var opts = {
      title: spec.title,
      width: width,
      height: HEIGHT,
      scales: scales,
      axes: axes,
      series: [{ label: "time", value: function (u, v) { return clock(v); } }].concat(spec.series),
      cursor: { sync: { key: spec.sync || "report" } },
      legend: { show: true },
      hooks: { draw: [markers(spec.marks, GREY)] }
    };
    charts.push(new uPlot(opts, spec.data, box));
    return box;
  }

  /* The chart specs of one service (shared by the single view and side by side). */
  function specs(run, svc, scale) {
    var s = svc.series, x = stepX(s), slo = run.summary.slo, sync = run.label;
    scale = scale || {};
    var idcAlloc = s.idc_allocated, total = add(s.idc_allocated, s.cloud_allocated);
    var stackedReady = add(s.idc_allocated, s.cloud_ready);
    return [
      {
        key: "replicas",
        title: "Replicas per tier (areas allocated, lines Ready, ▼ cold start)",
        unit: "replicas",
        sync: sync,
        marks: svc.cold_starts,
        yMax: scale.replicas,
        series: [
          line("cloud allocated", TIER.cloud, { fill: "#fdd0a2", width: 0 }),
          line("idc allocated", TIER.idc, { fill: "#9ecae1", width: 0 }),
          line("idc Ready", DARK.idc, { width: 2 }),
          line("cloud Ready (stacked)", DARK.cloud, { width: 2 }),
          line("desired", GREY, { dash: [5, 4], width: 1 })
        ],
        data: [x, stepY(total), stepY(idcAlloc), stepY(s.idc_ready), stepY(stackedReady),
               stepY(s.desired)]
      },
      {
        key: "rate",
        title: "Request rate",
        unit: "requests/s",
        sync: sync,
        yMax: scale.rate,
        series: [line("arrivals/s", GREY, { fill: "rgba(127,127,127,0.15)" })],
        data: [x, stepY(s.arrivals_per_s)]
      },
      {
        key: "ttft",
        title: "TTFT p50 / p90 (SLO " + latency(slo.ttft_s) + ")",
        unit: "seconds",
        sync: sync,
        yMax: Math.max(scale.ttft || 0, slo.ttft_s * 1.2),
        series: [line("TTFT p50", P50), line("TTFT p90", P90),
                 line("SLO", SLO, { dash: [6, 4], width: 1 })],
        data: [x, stepY(s.ttft_p50_s), stepY(s.ttft_p90_s), constant(x, slo.ttft_s)]
      },
      {
        key: "tpot",
        title: "TPOT p50 / p90 (SLO " + latency(slo.tpot_s) + ")",
        unit: "seconds",
        sync: sync,
        yMax: Math.max(scale.tpot || 0, slo.tpot_s * 1.2),
        series: [line("TPOT p50", P50), line("TPOT p90", P90),
                 line("SLO", SLO, { dash: [6, 4], width: 1 })],
        data: [x, stepY(s.tpot_p50_s), stepY(s.tpot_p90_s), constant(x, slo.tpot_s)]
      },
      {
        key: "attainment",
        title: "SLO attainment (run: " +
          num(run.summary.attainment_pct.both, 1, " %") + ")",
        unit: "% of requests",
        sync: sync,
        yFixed: 100,
        series: [line("both objectives", P90, { fill: "rgba(44,160,44,0.12)" }),
                 line("run", GREY, { dash: [5, 4], width: 1 })],
        data: [x, stepY(s.attainment_pct), constant(x, run.summary.attainment_pct.both)]
      },
      {
        key: "cost",
        title: "Cloud cost per hour and cumulative",
        unit: "$ per hour",
        y2: "$ so far",
        sync: sync,
        yMax: scale.cost,
        y2Max: scale.cost_total,
        series: [line("cloud $/h", TIER.cloud, { fill: "rgba(255,127,14,0.15)" }),
                 line("cloud $ cumulative", DARK.cloud, { scale: "y2", paths: uPlot.paths.linear() })],
        data: [x, stepY(s.cloud_cost_per_h), stepY(s.cloud_cost_total)]
      },
      {
        key: "usd_per_1m",
        title: "$ per 1M output tokens per tier (so far; IDC GPUs are owned)",
        unit: "$ / 1M tokens",
        sync: sync,
        yMax: scale.usd_per_1m,
        series: [line("idc", TIER.idc), line("cloud", TIER.cloud)],
        data: [x, stepY(s.usd_per_1m_idc), stepY(s.usd_per_1m_cloud)]
      }
    ];
  }

  function scalesAcross(runs, name) {
    var scale = { replicas: 0, rate: 0, ttft: 0, tpot: 0, cost: 0, cost_total: 0, usd_per_1m: 0 };
    runs.forEach(function (run) {
      run.services.forEach(function (svc) {
        if (svc.name !== name) return;
        var s = svc.series;
        scale.replicas = Math.max(scale.replicas, maxOf(add(s.idc_allocated, s.cloud_allocated)),
                                  maxOf(s.desired));
        scale.rate = Math.max(scale.rate, maxOf(s.arrivals_per_s));
        scale.ttft = Math.max(scale.ttft, maxOf(s.ttft_p90_s));
        scale.tpot = Math.max(scale.tpot, maxOf(s.tpot_p90_s));
        scale.cost = Math.max(scale.cost, maxOf(s.cloud_cost_per_h));
        scale.cost_total = Math.max(scale.cost_total, maxOf(s.cloud_cost_total));
        scale.usd_per_1m = Math.max(scale.usd_per_1m, maxOf(s.usd_per_1m_idc),
                                    maxOf(s.usd_per_1m_cloud));
      });
    });
    return scale;
  }

  function cards(summary, decisionsByKind) {
    var att = summary.attainment_pct, lat = summary.latency_s, req = summary.requests;
    var items = [
      ["autoscaler", summary.autoscaler],
      ["requests", req.total + " (" + req.failed + " failed)"],
      ["SLO attainment", num(att.both, 1, " %") + " (TTFT " + num(att.ttft, 1, " %") +
        ", TPOT " + num(att.tpot, 1, " %") + ")"],
      ["TTFT p50 / p90", latency(lat.ttft.p50) + " / " + latency(lat.ttft.p90)],
      ["TPOT p50 / p90", latency(lat.tpot.p50) + " / " + latency(lat.tpot.p90)],
      ["cloud GPU-h", num(summary.tiers.cloud.gpu_hours, 2)],
      ["IDC GPU-h", num(summary.tiers.idc.gpu_hours, 2)],
      ["cloud cost", money(summary.cloud_cost)],
      ["$/1M output tokens", money(summary.usd_per_1m_tokens) + " (cloud " +
        money(summary.tiers.cloud.usd_per_1m_tokens) + ")"],
      ["cold starts", String(summary.cold_starts)],
      ["first scale-out", summary.first_scale_out_s == null ? "never" :
        clock(summary.first_scale_out_s)],
      ["peak replicas", "idc " + summary.peak_replicas.idc + ", cloud " +
        summary.peak_replicas.cloud],
      ["budget blocks", String((decisionsByKind || {}).BudgetBlocked || 0)]
    ];
    return el("dl", { class: "cards" }, items.map(function (kv) {
      return el("div", { class: "card" }, [el("dt", { text: kv[0] }), el("dd", { text: kv[1] })]);
    }));
  }

  function decisionsTable(run) {
    var wrap = el("div", { class: "decisions" });
    var kinds = {};
    run.decisions.forEach(function (d) { kinds[d.kind] = (kinds[d.kind] || 0) + d.count; });
    var filter = el("div", { class: "filter" });
    var table = el("table", { class: "timeline" });
    var head = el("tr", {}, ["time", "kind", "service", "subject", "reason"].map(function (h) {
      return el("th", { text: h });
    }));
    table.appendChild(el("thead", {}, [head]));
    var body = el("tbody");
    run.decisions.forEach(function (d) {
      var times = d.count > 1 ? " (x" + d.count + ")" : "";
      var row = el("tr", { "data-kind": d.kind, class: "kind-" + d.kind }, [
        el("td", { text: clock(d.t_s), class: "num" }),
        el("td", { text: d.kind }),
        el("td", { text: d.service }),
        el("td", { text: d.subject }),
        el("td", { text: d.message + times })
      ]);
      body.appendChild(row);
    });
    table.appendChild(body);
    Object.keys(kinds).sort().forEach(function (kind) {
      var box = el("input", { type: "checkbox", checked: "checked" });
      box.addEventListener("change", function () {
        body.querySelectorAll('tr[data-kind="' + kind + '"]').forEach(function (tr) {
          tr.hidden = !box.checked;
        });
      });
      filter.appendChild(el("label", {}, [box, document.createTextNode(" " + kind + " " +
        kinds[kind])]));
    });
    var left = Object.keys(run.decisions_left_out || {});
    if (left.length) {
      wrap.appendChild(el("p", { class: "note", text: "Not shown (the file keeps the first " +
        run.decisions.length + "): " + left.map(function (k) {
          return k + " " + run.decisions_left_out[k];
        }).join(", ") }));
    }
    wrap.appendChild(filter);
    wrap.appendChild(el("div", { class: "scroll" }, [table]));
    return wrap;
  }

  function serviceSection(run, svc, scale) {
    var section = el("section", { class: "service" }, [el("h2", { text: "Service " + svc.name })]);
    var grid = el("div", { class: "grid" });
    section.appendChild(grid);
    return { section: section, grid: grid, specs: specs(run, svc, scale) };
  }

  function single(root, run) {
    root.appendChild(cards(run.summary, run.summary.decisions.by_kind));
    var pending = [];
    run.services.forEach(function (svc) {
      var part = serviceSection(run, svc, null);
      root.appendChild(part.section);
      pending.push(part);
    });
    pending.forEach(function (part) {
      part.specs.forEach(function (spec) {
        var cell = el("div", { class: "cell" });
        part.grid.appendChild(cell);
        draw(cell, spec);
      });
    });
    root.appendChild(el("h2", { text: "Decisions" }));
    root.appendChild(decisionsTable(run));
  }

  function comparisonTable(comparison) {
    var head = el("tr", {}, [el("th", { text: "configuration" })].concat(
      comparison.columns.map(function (c) { return el("th", { text: c }); })));
    var rows = comparison.rows.map(function (row, i) {
      var swatch = el("span", { class: "swatch" });
      swatch.style.background = VARIANTS[i % VARIANTS.length];
      return el("tr", {}, [el("td", {}, [swatch, document.createTextNode(row.label)])].concat(
        row.cells.map(function (c) {
          return el("td", { text: c.text, class: "num" + (c.best ? " best" : "") });
        })));
    });
    return el("table", { class: "comparison" }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  /* One line per configuration of `pick(series)`, joined on a common x. */
  function overlay(target, runs, name, title, unit, pick, extra) {
    var tables = [], series = [];
    runs.forEach(function (run, i) {
      var svc = run.services.filter(function (s) { return s.name === name; })[0];
      if (!svc) return;
      tables.push([stepX(svc.series), stepY(pick(svc.series))]);
      series.push(line(run.label, VARIANTS[i % VARIANTS.length], { spanGaps: true }));
    });
    if (!tables.length) return;
    var data = uPlot.join(tables);
    if (extra) {
      series.push(line(extra.label, SLO, { dash: [6, 4], width: 1 }));
      data.push(constant(data[0], extra.value));
    }
    var cell = el("div", { class: "cell" });
    target.appendChild(cell);
    draw(cell, { title: title, unit: unit, series: series, data: data, sync: "compare",
                 yFixed: extra && extra.fixed ? extra.fixed : null });
  }

  function compare(root, data) {
    var runs = data.runs;
    root.appendChild(el("h2", { text: "Comparison" }));
    root.appendChild(el("p", { class: "note", text: "Bold: the best value of each column." }));
    root.appendChild(el("div", { class: "scroll" }, [comparisonTable(data.comparison)]));
    var names = [];
    runs.forEach(function (run) {
      run.services.forEach(function (svc) {
        if (names.indexOf(svc.name) < 0) names.push(svc.name);
      });
    });
    var slo = runs[0].summary.slo;
    names.forEach(function (name) {
      root.appendChild(el("h2", { text: "Service " + name + ": configurations overlaid" }));
      var grid = el("div", { class: "grid" });
      root.appendChild(grid);
      overlay(grid, runs, name, "Replicas allocated (idc + cloud)", "replicas", function (s) {
        return add(s.idc_allocated, s.cloud_allocated);
      });
      overlay(grid, runs, name, "Cloud replicas allocated", "replicas", function (s) {
        return s.cloud_allocated;
      });
      overlay(grid, runs, name, "TTFT p90", "seconds", function (s) { return s.ttft_p90_s; },
              { label: "SLO", value: slo.ttft_s });
      overlay(grid, runs, name, "TPOT p90", "seconds", function (s) { return s.tpot_p90_s; },
              { label: "SLO", value: slo.tpot_s });
      overlay(grid, runs, name, "SLO attainment", "% of requests", function (s) {
        return s.attainment_pct;
      }, { label: "100 %", value: 100, fixed: 100 });
      overlay(grid, runs, name, "Cloud cost, cumulative", "$", function (s) {
        return s.cloud_cost_total;
      });

      root.appendChild(el("h2", { text: "Service " + name + ": side by side (same scales)" }));
      var scale = scalesAcross(runs, name);
      var side = el("div", { class: "side" });
      side.style.gridTemplateColumns = "repeat(" + runs.length + ", minmax(340px, 1fr))";
      root.appendChild(el("div", { class: "scroll" }, [side]));
      var columns = runs.map(function (run, i) {
        var col = el("div", { class: "column" });
        var heading = el("h3", { text: run.label });
        heading.style.borderColor = VARIANTS[i % VARIANTS.length];
        col.appendChild(heading);
        side.appendChild(col);
        return col;
      });
      runs.forEach(function (run, i) {
        var svc = run.services.filter(function (s) { return s.name === name; })[0];
        if (!svc) {
          columns[i].appendChild(el("p", { class: "note", text: "not in this configuration" }));
          return;
        }
        specs(run, svc, scale).forEach(function (spec) { draw(columns[i], spec); });
      });
    });
    runs.forEach(function (run) {
      var details = el("details", { class: "run" }, [
        el("summary", { text: run.label + ": figures and decisions" })]);
      details.appendChild(cards(run.summary, run.summary.decisions.by_kind));
      details.appendChild(decisionsTable(run));
      root.appendChild(details);
    });
  }

  function main() {
    var root = document.getElementById("report");
    var data = JSON.parse(document.getElementById("report-data").textContent);
    root.textContent = "";
    if (data.runs.length === 1) single(root, data.runs[0]);
    else compare(root, data);
    document.body.setAttribute("data-charts", String(charts.length));
    document.body.setAttribute("data-rendered", "true");
  }

  try {
    main();
  } catch (err) {
    var box = document.getElementById("report-error");
    box.hidden = false;
    box.textContent = "The report could not be drawn: " + (err && err.stack ? err.stack : err);
    document.body.setAttribute("data-rendered", "error");
  }
})();
