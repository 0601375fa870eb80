// Syntax colouring of code (the file view and result snippets) with the vendored
// highlight.js, line by line so line numbers and anchors stay as they are; the server's
// <mark>ed matches are put back over the coloured text. Without JavaScript the code is plain.
(function () {
  "use strict";
  var names = { cpp: "cpp", c: "c", rust: "rust", python: "python", javascript: "javascript",
    typescript: "typescript", go: "go", java: "java", shell: "bash", markdown: "markdown",
    yaml: "yaml", toml: "ini", json: "json", html: "xml", css: "css", sql: "sql",
    assembly: "x86asm", ruby: "ruby", php: "php", csharp: "csharp", kotlin: "kotlin", swift: "swift" };

  // Wraps the characters [start, end) of `root`'s text in <mark>, across the spans
  // highlight.js made.
  function mark(root, start, end) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var pos = 0, parts = [];
    while (walker.nextNode()) {
      var text = walker.currentNode, from = pos, to = pos + text.length;
      pos = to;
      if (to > start && from < end) parts.push([text, Math.max(start, from) - from, Math.min(end, to) - from]);
    }
    parts.forEach(function (p) {
      var text = p[0];
      if (p[2] < text.length) text.splitText(p[2]);
      var inside = p[1] > 0 ? text.splitText(p[1]) : text;
      var m = document.createElement("mark");
      inside.parentNode.replaceChild(m, inside);
      m.appendChild(inside);
    });
  }

  function colour(code, language) {
    if (code.querySelector("a.def")) {
      // Keep the go-to-definition links (and marks): colour the text between them.
      Array.prototype.slice.call(code.childNodes).forEach(function (node) {
        if (node.nodeType !== 3) return;
        var span = document.createElement("span");
        span.innerHTML = hljs.highlight(node.textContent, { language: language, ignoreIllegals: true }).value;
        code.replaceChild(span, node);
      });
      return;
    }
    var marks = [], pos = 0;
    code.childNodes.forEach(function (n) {
      var length = n.textContent.length;
      if (n.nodeName === "MARK") marks.push([pos, pos + length]);
      pos += length;
    });
    code.innerHTML = hljs.highlight(code.textContent, { language: language, ignoreIllegals: true }).value;
    marks.forEach(function (m) { mark(code, m[0], m[1]); });
  }

  if (typeof hljs !== "undefined") {
    document.querySelectorAll("table.code[data-language]").forEach(function (table) {
      var language = names[table.dataset.language];
      if (!language || !hljs.getLanguage(language)) return;
      var codes = table.querySelectorAll("td > code");
      if (codes.length > 20000) return;
      codes.forEach(function (code) { colour(code, language); });
    });
  }

  // "View on Bitbucket" opens the line this page points at (Bitbucket's anchor is #lines-N).
  var link = document.getElementById("on-bitbucket");
  if (link) {
    var base = link.href.split("#")[0];
    var follow = function () {
      var line = /^#L(\d+)$/.exec(window.location.hash);
      link.href = line ? base + "#lines-" + line[1] : base;
    };
    follow();
    window.addEventListener("hashchange", follow);
  }
})();
