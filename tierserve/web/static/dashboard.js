/* The tierserve dashboard: one EventSource on /api/v1/dashboard/stream (the session
 * cookie goes with it, same origin), an `overview` event with every service's history,
 * then an `update` event per sample with one new point per service, the current tables
 * and the new events. No polling; the page is never reloaded. */
(function () {
  "use strict";

  var state = { overview: null, service: null, charts: null, updates: 0, events: [] };
  window.tierserveDashboard = state; // what the browser test reads

  function $(sel) { return document.querySelector(sel); }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "class") e.className = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else if (k === "width") e.style.width = attrs[k]; // CSSOM: the CSP allows no inline style
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  function n(v, digits, unit) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits) + (unit || "");
  }
  function ms(v) { return v === null || v === undefined ? "–" : (v * 1000).toFixed(0) + " ms"; }
  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }
  function age(s) {
    if (s < 120) return s.toFixed(0) + "s";
    if (s < 7200) return (s / 60).toFixed(0) + "m";
    return (s / 3600).toFixed(1) + "h";
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function keyOf(s) { return s.namespace + "/" + s.name; }

  // -- tabs ---------------------------------------------------------------------------------
  document.querySelectorAll("#tabs button").forEach(function (b) {
    b.addEventListener("click", function () {
      document.querySelectorAll("#tabs button").forEach(function (x) { x.classList.remove("active"); });
      document.querySelectorAll(".tab").forEach(function (x) { x.classList.remove("active"); });
      b.classList.add("active");
      $("#" + b.dataset.tab).classList.add("active");
    });
  });
  $("#service").addEventListener("change", function () {
    state.service = this.value;
    if (state.charts) { state.charts.destroy(); state.charts = null; }
    draw();
  });

  // -- state --------------------------------------------------------------------------------
  function current() {
    var o = state.overview;
    if (!o) return null;
    for (var i = 0; i < o.services.length; i++) {
      if (keyOf(o.services[i]) === state.service) return o.services[i];
    }
    return o.services[0] || null;
  }

  function onOverview(o) {
    state.overview = o;
    state.events = o.events.slice();
    if (!state.service && o.services.length) state.service = keyOf(o.services[0]);
    if (state.charts) { state.charts.destroy(); state.charts = null; }
    draw();
  }

  function onUpdate(u) {
    var o = state.overview;
    if (!o) return;
    state.updates += 1;
    var byKey = {};
    o.services.forEach(function (s) { byKey[keyOf(s)] = s; });
    var next = u.services.map(function (detail) {
      var key = keyOf(detail);
      var history = (byKey[key] && byKey[key].history) || {};
      var point = u.points[key];
      if (point) {
        o.fields.forEach(function (f) {
          var col = history[f] || (history[f] = []);
          col.push(point[f] === undefined ? null : point[f]);
          if (col.length > o.points) col.shift();
        });
      }
      detail.history = history;
      return detail;
    });
    o.services = next;
    o.nodes = u.nodes;
    o.now = u.now;
    u.events.forEach(function (e) {
      // A repeat (count, folded message) replaces its entry; a new event is appended.
      var at = state.events.findIndex(function (x) { return x.id === e.id; });
      if (at >= 0) state.events.splice(at, 1);
      state.events.push(e);
    });
    if (state.events.length > 500) state.events.splice(0, state.events.length - 500);
    draw();
  }

  // -- drawing ------------------------------------------------------------------------------
  function draw() {
    var o = state.overview;
    var pick = $("#service");
    var keys = o.services.map(keyOf);
    if (pick.options.length !== keys.length || keys.some(function (k, i) { return pick.options[i].value !== k; })) {
      pick.innerHTML = "";
      keys.forEach(function (k) { pick.appendChild(el("option", { value: k, text: k })); });
    }
    if (state.service) pick.value = state.service;
    var s = current();
    drawOverview(s);
    drawNodes(o.nodes);
    drawTimeline(state.events);
    drawService(s);
    $("#history-note").textContent =
      "history: " + o.points + " points per service every " + o.intervalS + " s (" +
      (o.points * o.intervalS / 3600).toFixed(1) + " h), " +
      Math.round(o.bytesPerServiceHour / 1024) + " KiB per service-hour; window " + o.windowS + " s";
  }

  function last(h, f) {
    var c = h[f] || [];
    return c.length ? c[c.length - 1] : null;
  }

  function drawOverview(s) {
    var box = $("#charts");
    if (!s) {
      box.textContent = "No services yet: apply an InferenceService.";
      return;
    }
    var h = s.history;
    $("#tile-idc").textContent = n(last(h, "idcReady"), 0) + " / " + n(last(h, "idcAllocated"), 0);
    $("#tile-cloud").textContent = n(last(h, "cloudReady"), 0) + " / " + n(last(h, "cloudAllocated"), 0);
    $("#tile-rate").textContent = n(last(h, "requestRate"), 2);
    $("#tile-ttft").textContent = ms(last(h, "ttftP50")) + " / " + ms(last(h, "ttftP90"));
    $("#tile-tpot").textContent = ms(last(h, "tpotP50")) + " / " + ms(last(h, "tpotP90"));
    $("#tile-attainment").textContent = s.slo
      ? pct(last(h, "attainmentTtft")) + " · " + pct(last(h, "attainmentTpot"))
      : "no SLO set";
    $("#tile-cost-hour").textContent = n(last(h, "cloudCostPerHour"), 2);
    $("#tile-cost-total").textContent = n(last(h, "cloudCostTotal"), 4);
    $("#tile-usd-mtok").textContent = n(last(h, "usdPerMTokIdc"), 2) + " · " + n(last(h, "usdPerMTokCloud"), 2);
    var data = { series: h, slo: s.slo };
    if (!h.t || !h.t.length) return;
    if (!state.charts) {
      box.innerHTML = "";
      state.charts = window.TierCharts.render(box, data);
    } else {
      state.charts.update(data);
    }
  }

  function tierCell(tier) { return el("td", { class: "tier-" + tier, text: tier }); }

  function drawNodes(nodes) {
    var body = $("#nodes-table tbody");
    body.innerHTML = "";
    nodes.forEach(function (node) {
      var reps = node.replicas.map(function (r) {
        return r.name + " (" + r.phase + (r.gpus.length ? ", GPU " + r.gpus.join(",") : "") + ")";
      }).join("; ");
      var width = node.gpus ? Math.round(60 * node.gpusUsed / node.gpus) : 0;
      body.appendChild(el("tr", { "data-node": node.name }, [
        el("td", { text: node.name }),
        tierCell(node.tier),
        el("td", { text: node.gpuModel || "–" }),
        el("td", {}, [el("span", { class: "bar", width: width + "px" }), node.gpusUsed + " / " + node.gpus]),
        el("td", { text: String(node.gpusFree) }),
        el("td", { text: reps || "–" }),
        el("td", { text: node.pricePerGpuHour === null ? "–" : n(node.pricePerGpuHour, 2) }),
        el("td", { text: node.gpuQuota === null ? "–" : String(node.gpuQuota) }),
        el("td", { text: node.coldStartS === null ? "–" : node.coldStartS + " s" }),
      ]));
    });
  }

  var DECISIONS = {
    SuccessfulRescale: 1, Rebalance: 1, BudgetBlocked: 1, Scheduled: 1,
    FailedScheduling: 1, SuccessfulDelete: 1, Killing: 1,
  };
  $("#decisions-only").addEventListener("change", function () { drawTimeline(state.events); });

  function drawTimeline(events) {
    var list = $("#timeline");
    var only = $("#decisions-only").checked;
    list.innerHTML = "";
    events.filter(function (e) { return !only || DECISIONS[e.reason]; }).slice().sort(function (a, b) { return b.lastTimestamp - a.lastTimestamp; }).forEach(function (e) {
      list.appendChild(el("li", { class: e.type + (DECISIONS[e.reason] ? " decision" : ""), "data-reason": e.reason }, [
        el("span", { class: "when", text: clock(e.lastTimestamp) + (e.count > 1 ? " ×" + e.count : "") }),
        el("span", { class: "reason", text: e.reason }),
        el("span", { class: "object", text: e.kind + " " + (e.namespace ? e.namespace + "/" : "") + e.name }),
        el("span", { class: "message", text: e.message }),
      ]));
    });
  }

  function drawService(s) {
    var pods = $("#pods-table tbody");
    var units = $("#units-table tbody");
    var auto = $("#autoscaler");
    pods.innerHTML = "";
    units.innerHTML = "";
    auto.innerHTML = "";
    if (!s) return;
    $("#service-title").textContent = keyOf(s) + " — " + s.ready + "/" + s.replicas + " Ready (host " + s.host + ")";
    s.pods.forEach(function (p) {
      pods.appendChild(el("tr", { "data-pod": p.name }, [
        el("td", { text: p.name }),
        el("td", { text: p.phase }),
        el("td", { text: p.node || "<none>" }),
        tierCell(p.tier || "–"),
        el("td", { text: p.unit === null ? "–" : String(p.unit) }),
        el("td", { text: age(p.ageS) }),
        el("td", { text: String(p.restarts) }),
        el("td", { text: String(p.inFlight) }),
        el("td", { text: ms(p.ttftP50) }),
        el("td", { text: n(p.costPerHour, 2) }),
        el("td", { text: p.reason ? p.reason + (p.message ? ": " + p.message : "") : "" }),
      ]));
    });
    s.units.forEach(function (u) {
      units.appendChild(el("tr", {}, [
        el("td", { text: u.policy }),
        el("td", { text: String(u.index) }),
        el("td", { text: u.resource }),
        el("td", { text: JSON.stringify(u.nodeSelector) }),
        el("td", { text: u.fill + " / " + (u.max === null ? "∞" : u.max) }),
      ]));
    });
    var a = s.autoscaler;
    var rows = [
      ["policy", a.policy],
      ["replicas (min–max)", (a.minReplicas === null ? "–" : a.minReplicas) + " – " + (a.maxReplicas === null ? "–" : a.maxReplicas)],
      ["scale metric", a.scaleMetric ? a.scaleMetric + " target " + a.scaleTarget : (a.metrics.map(function (m) { return m.name + " " + m.target; }).join(", ") || "–")],
      ["SLO", s.slo ? "TTFT " + s.slo.ttftSeconds + " s, TPOT " + (s.slo.tpotSeconds === null ? "–" : s.slo.tpotSeconds + " s") + ", attainment " + s.slo.attainment : "–"],
      ["cloud budget / hour", a.budgetPerHour === null ? "–" : String(a.budgetPerHour)],
      ["period", a.periodS + " s"],
      ["scale-down stabilization", a.downscaleStabilizationS + " s"],
      ["last plan", a.lastPlan ? a.lastPlan.reason : "–"],
    ];
    rows.forEach(function (r) {
      auto.appendChild(el("dt", { text: r[0] }));
      auto.appendChild(el("dd", { text: r[1] }));
    });
  }

  // -- live ---------------------------------------------------------------------------------
  function connect() {
    var live = $("#live");
    var source = new EventSource("/api/v1/dashboard/stream");
    source.addEventListener("overview", function (m) {
      live.textContent = "live";
      live.classList.remove("off");
      onOverview(JSON.parse(m.data));
    });
    source.addEventListener("update", function (m) { onUpdate(JSON.parse(m.data)); });
    source.onerror = function () {
      live.textContent = "reconnecting…";
      live.classList.add("off");
      // A lost session (signed out, new token) answers 401: back to the login form.
      fetch("/api/v1/dashboard/overview", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { source.close(); window.location.assign("/dashboard"); }
      }).catch(function () {});
    };
  }
  connect();
})();
