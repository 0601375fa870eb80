// Live repository states on /repositories: polls the JSON API while any build runs.
(function () {
  "use strict";
  var busy = ["queued", "cloning", "indexing"];
  function cells() { return document.querySelectorAll("[data-state]"); }
  function anyBusy() {
    return Array.prototype.some.call(cells(), function (c) { return busy.indexOf(c.dataset.state) >= 0; });
  }
  function describe(r) {
    if ((r.state === "cloning" || r.state === "indexing") && r.progress) return r.state + " " + r.progress;
    return r.state;
  }
  function poll() {
    if (!anyBusy()) return;
    fetch("/api/v1/repositories", { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : Promise.reject(res.status); })
      .then(function (repos) {
        var finished = false;
        repos.forEach(function (r) {
          var row = document.getElementById("repo-" + r.id);
          var cell = row && row.querySelector("[data-state]");
          if (!cell) return;
          if (busy.indexOf(cell.dataset.state) >= 0 && busy.indexOf(r.state) < 0) finished = true;
          cell.dataset.state = r.state;
          cell.className = "state state-" + r.state;
          if (busy.indexOf(r.state) >= 0) cell.textContent = describe(r);
        });
        // A build ended: reload once so the row shows its result and buttons.
        if (finished) { window.location.reload(); return; }
        window.setTimeout(poll, 1500);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
