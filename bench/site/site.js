/* Geometry Bench leaderboard: sorting, filtering, search and tie marks. No dependencies.
 * Ties: in a column sorted by a measure, a row is tied when its 95% interval overlaps the
 * interval of the visible row just above or below it (the same rule as bench/site/data.py). */
(function () {
  "use strict";
  var table = document.getElementById("leaderboard");
  var source = document.getElementById("lb-data");
  if (!table || !source) return;
  var data = JSON.parse(source.textContent);
  var tbody = table.tBodies[0];
  var trByIndex = {};
  Array.prototype.forEach.call(tbody.rows, function (tr) { trByIndex[tr.getAttribute("data-i")] = tr; });
  var sortKey = table.getAttribute("data-sort-key");
  var descending = table.getAttribute("data-sort-desc") === "true";

  function el(id) { return document.getElementById(id); }
  var controls = {
    search: el("f-search"), family: el("f-family"), pretraining: el("f-pretraining"),
    license: el("f-license"), weights: el("f-weights"), pmin: el("f-pmin"), pmax: el("f-pmax")
  };

  function measureOf(key) { return key.indexOf("m:") === 0 ? key.slice(2) : null; }

  function keyValue(d, key) {
    var m = measureOf(key);
    if (m) return d.v[m] ? d.v[m][0] : null;
    if (key === "model") return d.model;
    return d[key] === undefined ? null : d[key];
  }

  function matches(d) {
    var q = controls.search.value.trim().toLowerCase();
    if (q && q.split(/\s+/).some(function (w) { return d.search.indexOf(w) < 0; })) return false;
    var pairs = [["family", "family"], ["pretraining", "pretraining"], ["license", "license"], ["weights", "weights"]];
    for (var i = 0; i < pairs.length; i++) {
      var want = controls[pairs[i][0]].value;
      if (want && d[pairs[i][1]] !== want) return false;
    }
    var lo = parseFloat(controls.pmin.value), hi = parseFloat(controls.pmax.value);
    var p = d.params === null ? null : d.params / 1e6;
    if (!isNaN(lo) && (p === null || p < lo)) return false;
    if (!isNaN(hi) && (p === null || p > hi)) return false;
    return true;
  }

  function compare(a, b) {
    var x = keyValue(a, sortKey), y = keyValue(b, sortKey);
    if (x === null && y === null) return a.i - b.i;
    if (x === null) return 1;           /* missing values always last */
    if (y === null) return -1;
    var c = typeof x === "string" ? x.localeCompare(y) : x - y;
    return (descending ? -c : c) || a.i - b.i;
  }

  function overlaps(a, b, m) {
    var u = a.v[m], w = b.v[m];
    if (!u || !w || u[1] === null || u[2] === null || w[1] === null || w[2] === null) return false;
    return u[1] <= w[2] && w[1] <= u[2];
  }

  function refresh() {
    var visible = data.filter(matches).sort(compare);
    var shown = {};
    visible.forEach(function (d) { shown[d.i] = true; });
    var m = measureOf(sortKey);
    var valued = visible.filter(function (d) { return keyValue(d, sortKey) !== null; });
    visible.forEach(function (d) {
      var tr = trByIndex[d.i];
      var pos = valued.indexOf(d);
      tr.hidden = false;
      tr.querySelector(".rank-n").textContent = pos >= 0 ? String(pos + 1) : "";
      var tied = m !== null && pos >= 0 &&
        ((pos > 0 && overlaps(d, valued[pos - 1], m)) || (pos < valued.length - 1 && overlaps(d, valued[pos + 1], m)));
      tr.querySelector(".tie").hidden = !tied;
      tr.classList.toggle("tied", tied);
      tbody.appendChild(tr);
    });
    data.forEach(function (d) {
      if (!shown[d.i]) { var tr = trByIndex[d.i]; tr.hidden = true; tbody.appendChild(tr); }
    });
    Array.prototype.forEach.call(table.tHead.querySelectorAll("th[data-sort]"), function (th) {
      var active = th.getAttribute("data-sort") === sortKey;
      th.setAttribute("aria-sort", active ? (descending ? "descending" : "ascending") : "none");
    });
    el("f-count").textContent = visible.length + " of " + data.length + " shown";
  }

  Array.prototype.forEach.call(table.tHead.querySelectorAll("th[data-sort]"), function (th) {
    th.tabIndex = 0;
    function activate() {
      var key = th.getAttribute("data-sort");
      if (key === sortKey) descending = !descending;
      else { sortKey = key; descending = !!measureOf(key) || key === "top1" || key === "params"; }
      refresh();
    }
    th.addEventListener("click", activate);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(); } });
  });
  Object.keys(controls).forEach(function (k) {
    controls[k].addEventListener("input", refresh);
    controls[k].addEventListener("change", refresh);
  });
  refresh();
})();
