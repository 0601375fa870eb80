// Live updates on /repositories, without reloading the page (ticked boxes stay ticked):
// - while a build runs, the state cells follow the JSON API;
// - when a build ends, or a workspace's repository list has loaded, the affected rows or
//   sections are swapped for fresh ones from the server-rendered page.
(function () {
  "use strict";
  var busy = ["queued", "cloning", "indexing"];
  var loadingPolls = 60; // a workspace list that loads for 2 minutes is left alone
  function isBusy(state) { return busy.indexOf(state) >= 0; }
  function anyBusy() {
    return Array.prototype.some.call(document.querySelectorAll("[data-state]"), function (c) {
      return isBusy(c.dataset.state);
    });
  }
  function loading() { return document.querySelectorAll("section[data-loading]"); }
  function describe(r) {
    if ((r.state === "cloning" || r.state === "indexing") && r.progress) return r.state + " " + r.progress;
    return r.state;
  }
  // This page, freshly rendered by the server.
  function fetchPage() {
    return fetch(window.location.pathname, { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.text() : Promise.reject(res.status); })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }
  // Replaces the elements with these ids by their versions in `fresh`.
  function replace(fresh, ids) {
    ids.forEach(function (id) {
      var now = document.getElementById(id);
      var next = fresh.getElementById(id);
      if (!now || !next) return;
      // Keep what the person ticked since the page loaded.
      now.querySelectorAll("input[type=checkbox]").forEach(function (box) {
        var twin = next.querySelector("input[type=checkbox][value='" + box.value + "']");
        if (twin) twin.checked = box.checked;
      });
      now.replaceWith(document.importNode(next, true));
    });
  }
  var polling = false;
  function pollStates() {
    polling = anyBusy();
    if (!polling) return;
    fetch("/api/v1/repositories", { credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : Promise.reject(res.status); })
      .then(function (repos) {
        var finished = [];
        repos.forEach(function (r) {
          var row = document.getElementById("repo-" + r.id);
          var cell = row && row.querySelector("[data-state]");
          if (!cell) return;
          if (isBusy(cell.dataset.state) && !isBusy(r.state)) finished.push(row.id);
          cell.dataset.state = r.state;
          cell.className = "state state-" + r.state;
          if (isBusy(r.state)) cell.textContent = describe(r);
        });
        // A build ended: its row gets its result and buttons from the server.
        if (finished.length) return fetchPage().then(function (fresh) { replace(fresh, finished); });
      })
      .then(function () { window.setTimeout(pollStates, 1500); })
      .catch(function () { window.setTimeout(pollStates, 5000); });
  }
  function pollLoading() {
    if (!loading().length || loadingPolls-- <= 0) return;
    var ids = Array.prototype.map.call(loading(), function (s) { return s.id; });
    fetchPage()
      .then(function (fresh) {
        replace(fresh, ids.filter(function (id) {
          var next = fresh.getElementById(id);
          return next && !next.hasAttribute("data-loading");
        }));
        // Rows that arrived mid-build show their states live too.
        if (!polling) pollStates();
      })
      .then(function () { window.setTimeout(pollLoading, 2000); })
      .catch(function () { window.setTimeout(pollLoading, 5000); });
  }
  window.setTimeout(pollStates, 1000);
  window.setTimeout(pollLoading, 1500);
})();
