// Every page, better with JavaScript (each works without it):
// - "/" focuses the search box (or opens search), Escape leaves it;
// - j / k move through search results (Enter opens the focused one);
// - a "Copy" button on each block marked data-copy (callback URL, tokens, MCP snippets);
// - a results count that is a lower bound ("100+ files") is counted exactly in the
//   background, facets and page links with it; the "count exactly" link stays if that fails.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }
  function results() { return Array.prototype.slice.call(document.querySelectorAll(".card.file h2 a")); }
  function move(step) {
    var links = results();
    if (!links.length) return;
    var at = links.indexOf(document.activeElement);
    var next = links[Math.max(0, Math.min(links.length - 1, at < 0 ? (step > 0 ? 0 : links.length - 1) : at + step))];
    links.forEach(function (l) { l.closest(".card").classList.toggle("current", l === next); });
    next.focus({ preventScroll: true });
    next.closest(".card").scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape" && typing(e)) { e.target.blur(); return; }
    if (typing(e)) return;
    if (e.key === "/") {
      var box = document.getElementById("q");
      e.preventDefault();
      if (box) { box.focus(); box.select(); } else { window.location.href = "/search"; }
    } else if (e.key === "j") {
      move(1);
    } else if (e.key === "k") {
      move(-1);
    }
  });

  // The same page counted exactly: its count, facets and page links replace these.
  var counting = document.querySelector("a[data-count]");
  var count = document.getElementById("file-count");
  if (counting && count && window.fetch && window.AbortController) {
    var stop = new AbortController();
    var timer = window.setTimeout(function () { stop.abort(); }, 30000);
    fetch(counting.href, { credentials: "same-origin", signal: stop.signal })
      .then(function (res) { return res.ok ? res.text() : Promise.reject(res.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var exact = fresh.getElementById("file-count");
        // Still a lower bound (the search hit its time limit): the link stays.
        if (!exact || exact.textContent.indexOf("+") >= 0) return;
        count.textContent = exact.textContent;
        [".facets", ".pager"].forEach(function (css) {
          var now = document.querySelector(css), next = fresh.querySelector(css);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        counting.closest(".count-exactly").remove();
      })
      .catch(function () { /* the link still counts exactly */ })
      .then(function () { window.clearTimeout(timer); });
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on a LAN has no clipboard API: the older way still works there.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  document.querySelectorAll("[data-copy]").forEach(function (block) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy " + (block.dataset.copy || "this"));
    button.addEventListener("click", function () {
      copy(block.textContent.trim()).then(
        function () { button.textContent = "Copied"; },
        function () { button.textContent = "Select and copy by hand"; });
      window.setTimeout(function () { button.textContent = "Copy"; }, 2500);
    });
    block.insertAdjacentElement("afterend", button);
  });
})();
