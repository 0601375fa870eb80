// Live updates on /repositories, without reloading the page (ticked boxes stay ticked):
// - while a build runs, the state cells, their progress bars and the overall bar follow the
//   JSON API; when the last build ends the banner says "Ready — search now";
// - when a build ends, or a workspace's repository list has loaded, the affected rows or
//   sections are swapped for fresh ones from the server-rendered page;
// - a filter box and "Select all shown" for long lists.
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
    applyFilter();
  }
  // Every repository seen building since the page loaded: the overall bar covers them all.
  var batch = {};
  var overall = document.getElementById("overall");
  function showOverall(repos) {
    if (!overall) return;
    var ids = Object.keys(batch);
    if (!ids.length) return;
    var done = 0, sum = 0, failed = 0;
    repos.forEach(function (r) {
      if (!batch[r.id]) return;
      if (isBusy(r.state)) { sum += r.progress_percent || 0; return; }
      done += 1; sum += 100;
      if (r.state === "failed") failed += 1;
    });
    var percent = Math.round(sum / ids.length);
    var text = overall.querySelector(".overall-text");
    var hint = overall.querySelector(".overall-hint");
    var bar = overall.querySelector("progress");
    overall.hidden = false;
    bar.value = percent;
    bar.textContent = percent + "%";
    if (done < ids.length) {
      text.textContent = "Building " + ids.length + (ids.length === 1 ? " repository" : " repositories") +
        " — " + done + " done, " + percent + "%";
      hint.textContent = "This page follows the work by itself.";
      return;
    }
    bar.hidden = true;
    hint.textContent = "";
    if (failed === ids.length) {
      overall.classList.add("failed");
      text.textContent = (failed === 1 ? "The build failed" : "The builds failed") + " — the reason is below, with Retry.";
    } else {
      overall.classList.add("done");
      text.textContent = failed ? (ids.length - failed) + " ready, " + failed + " failed (see below) — search now" : "Ready — search now";
      var search = document.createElement("a");
      search.className = "button primary";
      search.href = "/search";
      search.textContent = "Search";
      hint.appendChild(search);
    }
    // The "Building the knowledge layer for …" flash is over now.
    var flash = document.querySelector("p.flash");
    if (flash) flash.hidden = true;
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
          if (isBusy(r.state)) batch[r.id] = true;
          if (isBusy(cell.dataset.state) && !isBusy(r.state)) finished.push(row.id);
          cell.dataset.state = r.state;
          cell.className = "state state-" + r.state;
          if (isBusy(r.state)) {
            cell.textContent = describe(r);
            var bar = row.querySelector("progress.row-bar");
            // Nothing known yet: an indeterminate bar rather than a stuck 0%.
            if (bar && r.progress_percent == null) bar.removeAttribute("value");
            else if (bar) { bar.value = r.progress_percent; bar.textContent = r.progress_percent + "%"; }
          }
        });
        showOverall(repos);
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
  document.querySelectorAll("[data-state]").forEach(function (c) {
    var row = c.closest("tr");
    if (row && isBusy(c.dataset.state)) batch[row.dataset.repo] = true;
  });

  // Filter and select-all in place; without JavaScript a GET form and a link do the same.
  var tools = document.querySelector("#build .tools");
  var filter = document.getElementById("repo-filter");
  var all = document.getElementById("select-all");
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-repo]")); }
  // Rows that name every word typed stay shown (fresh rows from the server too).
  function applyFilter() {
    if (!filter) return;
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    rows().forEach(function (row) {
      var text = row.cells[0].textContent.toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
  }
  if (tools && filter && all) {
    tools.querySelectorAll(".no-script").forEach(function (e) { e.hidden = true; });
    tools.querySelectorAll(".with-script").forEach(function (e) { e.hidden = false; });
    filter.addEventListener("input", function () {
      applyFilter();
      all.checked = false;
    });
    all.addEventListener("change", function () {
      rows().forEach(function (row) {
        if (row.hidden) return;
        var box = row.querySelector("input[type=checkbox]");
        if (box) box.checked = all.checked;
      });
    });
  }

  window.setTimeout(pollStates, 1000);
  window.setTimeout(pollLoading, 1500);
})();
