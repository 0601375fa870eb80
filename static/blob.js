// Syntax highlighting of the file view with the vendored highlight.js, line by line so the
// line numbers, anchors and the server's <mark>ed matches stay as they are.
(function () {
  "use strict";
  var table = document.querySelector("table.blob");
  if (!table || typeof hljs === "undefined") return;
  var names = { cpp: "cpp", c: "c", rust: "rust", python: "python", javascript: "javascript",
    typescript: "typescript", go: "go", java: "java", shell: "bash", markdown: "markdown",
    yaml: "yaml", toml: "ini", json: "json", html: "xml", css: "css", sql: "sql",
    assembly: "x86asm", ruby: "ruby", php: "php", csharp: "csharp", kotlin: "kotlin", swift: "swift" };
  var language = names[table.dataset.language];
  if (!language || !hljs.getLanguage(language)) return;
  var codes = table.querySelectorAll("td > code");
  if (codes.length > 20000) return;
  codes.forEach(function (code) {
    if (code.querySelector("mark")) return;
    if (code.querySelector("a.def")) {
      // Keep the go-to-definition links: highlight the text between them, piece by piece.
      Array.prototype.slice.call(code.childNodes).forEach(function (node) {
        if (node.nodeType !== 3) return;
        var span = document.createElement("span");
        span.innerHTML = hljs.highlight(node.textContent, { language: language, ignoreIllegals: true }).value;
        code.replaceChild(span, node);
      });
      return;
    }
    code.innerHTML = hljs.highlight(code.textContent, { language: language, ignoreIllegals: true }).value;
  });
})();
