// Live panels without a framework: every few seconds fetch /console/panels and swap each [data-panel] by id.
// Hand-written (~40 lines) instead of vendoring htmx: nothing to keep up to date, no inline script (the page's
// Content-Security-Policy allows 'self' scripts only), and it keeps the operator's ticked boxes and open payloads.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var every = Math.max(1, Number(live.dataset.refresh) || 5) * 1000;
  var busy = false;
  function keep(selector, attr) {
    var set = {};
    live.querySelectorAll(selector).forEach(function (el) { set[el.getAttribute(attr)] = true; });
    return set;
  }
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(live.dataset.src, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login?next=%2F"; throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        // Read at swap time, not before the fetch: a box ticked while the answer was on its way stays ticked.
        var checked = keep("input[name=id]:checked", "value"), open = keep("details[open]", "data-key");
        doc.querySelectorAll("[data-panel]").forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (old) old.replaceWith(document.importNode(fresh, true));
        });
        live.querySelectorAll("input[name=id]").forEach(function (el) { el.checked = !!checked[el.value]; });
        live.querySelectorAll("details[data-key]").forEach(function (el) { el.open = !!open[el.dataset.key]; });
        live.classList.remove("stale");
      })
      .catch(function () { live.classList.add("stale"); })
      .finally(function () { busy = false; });
  }
  live.addEventListener("change", function (e) {
    if (e.target.matches("[data-select-all]")) {
      live.querySelectorAll("input[name=id]").forEach(function (el) { el.checked = e.target.checked; });
    }
  });
  setInterval(refresh, every);
})();
