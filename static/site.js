// Every page, better with JavaScript (each works without it):
// - "/" focuses the search box (or opens search), Escape leaves it;
// - j / k move through search results (Enter opens the focused one);
// - a "Copy" button on each block marked data-copy (callback URL, tokens, MCP snippets).
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
