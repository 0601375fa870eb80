#!/usr/bin/env python3
"""Symbol ranking on the corpus: does a bare identifier find the file that defines it?

  python3 bench/symbol_ranking.py REPOS_DIR BASE_URL TOKEN OUT_JSON

The identifiers are chosen by a fixed rule, independent of codelayer's own symbol index:
1. Definitions are found per language with plain regular expressions over every text file
   of at most 1 MiB (the index's limit): Rust `fn|struct|enum|trait|union|type|mod|macro_rules!`,
   Python `def|class`, Go `func|type`, JavaScript/TypeScript `function|class|interface`,
   Java `class|interface|enum`, C/C++ a function definition at the start of a line whose body
   opens on that line or the next, and `struct|enum|union|class NAME {`.
2. An identifier qualifies when it is 8–40 characters long, is defined exactly once in the
   whole corpus (one line of one file, by those expressions) and appears as a whole word in
   at least 3 other files.
3. Of the qualifying identifiers, ordered by the SHA-1 of the name (a fixed shuffle), the first
   ones are taken: at most 15 per language other than Rust, then Rust up to 100 in all.

For each identifier the script asks GET /api/v1/search?q=<identifier> and records the rank of
the defining file among the results (top 3 counts), and times `sym:<identifier>` through the
same API from one keep-alive connection (median and p95 over all identifiers, 3 runs each).
"""

import hashlib
import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

MAX_FILE = 1 << 20
PER_OTHER_LANGUAGE = 15
TOTAL = 100
WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")

RUST = re.compile(
    rb"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|const|unsafe|extern\s+\"[^\"]*\")\s+)*"
    rb"(?:fn|struct|enum|trait|union|type|mod)\s+([A-Za-z_][A-Za-z0-9_]*)"
    rb"|^\s*macro_rules!\s*([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
PYTHON = re.compile(rb"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
GO = re.compile(
    rb"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_][A-Za-z0-9_]*)|^type\s+([A-Za-z_][A-Za-z0-9_]*)", re.M
)
JS = re.compile(
    rb"^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?|class|interface)\s+"
    rb"([A-Za-z_$][A-Za-z0-9_$]*)",
    re.M,
)
JAVA = re.compile(
    rb"^\s*(?:(?:public|private|protected|static|final|abstract)\s+)*(?:class|interface|enum)\s+"
    rb"([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
C_FUNC = re.compile(
    rb"^(?!(?:return|else|if|while|for|switch|do|case|typedef|#)\b)[A-Za-z_][A-Za-z0-9_ \t\*]*?"
    rb"[ \t\*]([A-Za-z_][A-Za-z0-9_]*)\s*\([^;{}]*\)\s*(?:\{\s*$|\n\{)",
    re.M,
)
C_TYPE = re.compile(rb"^(?:typedef\s+)?(?:struct|enum|union|class)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", re.M)

LANGUAGES = {
    ".rs": ("rust", [RUST]),
    ".py": ("python", [PYTHON]),
    ".go": ("go", [GO]),
    ".js": ("javascript", [JS]),
    ".mjs": ("javascript", [JS]),
    ".ts": ("typescript", [JS]),
    ".tsx": ("typescript", [JS]),
    ".java": ("java", [JAVA]),
    ".c": ("c", [C_FUNC, C_TYPE]),
    ".h": ("c", [C_FUNC, C_TYPE]),
    ".cc": ("cpp", [C_FUNC, C_TYPE]),
    ".cpp": ("cpp", [C_FUNC, C_TYPE]),
    ".hpp": ("cpp", [C_FUNC, C_TYPE]),
}


def files(repos_dir):
    for repo in sorted(os.listdir(repos_dir)):
        root = os.path.join(repos_dir, repo)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if os.path.getsize(path) > MAX_FILE:
                    continue
                yield repo, os.path.relpath(path, root), path


def scan(repos_dir):
    """Definitions per name, and per name the set of files it appears in as a word."""
    definitions = {}  # name -> list of (language, repo, path)
    word_files = {}  # name -> number of files
    for repo, rel, path in files(repos_dir):
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            continue
        for word in set(WORD.findall(data)):
            if 8 <= len(word) <= 40:
                word_files[word] = word_files.get(word, 0) + 1
        ext = os.path.splitext(rel)[1].lower()
        if ext not in LANGUAGES:
            continue
        language, patterns = LANGUAGES[ext]
        for pattern in patterns:
            for m in pattern.finditer(data):
                name = next((g for g in m.groups() if g), None)
                if name and 8 <= len(name) <= 40:
                    definitions.setdefault(name, []).append((language, repo, rel))
    return definitions, word_files


def choose(definitions, word_files):
    qualifying = []
    for name, defs in definitions.items():
        if len(defs) == 1 and word_files.get(name, 0) - 1 >= 3:
            qualifying.append((hashlib.sha1(name).hexdigest(), name.decode(), defs[0]))
    qualifying.sort()
    chosen, per_language = [], {}
    for _, name, (language, repo, rel) in qualifying:
        if language != "rust" and per_language.get(language, 0) < PER_OTHER_LANGUAGE:
            per_language[language] = per_language.get(language, 0) + 1
            chosen.append((name, language, repo, rel))
    for _, name, (language, repo, rel) in qualifying:
        if language == "rust" and len(chosen) < TOTAL:
            chosen.append((name, language, repo, rel))
    return chosen


class Api:
    def __init__(self, base, token):
        url = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}"}

    def search(self, q):
        path = "/api/v1/search?q=" + urllib.parse.quote(q, safe="")
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{q}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body), took


def rank_of(results, repo, rel):
    for i, hit in enumerate(results):
        name = hit["repository"]
        if (name == repo or name.endswith("/" + repo)) and hit["path"] == rel:
            return i + 1
    return None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    repos_dir, base, token, out = sys.argv[1:5]
    started = time.time()
    # The choice depends on the corpus alone: kept beside the report and reused.
    cached = os.path.join(os.path.dirname(os.path.abspath(out)), "symbol_identifiers.json")
    if os.path.exists(cached):
        with open(cached) as f:
            chosen = [tuple(row) for row in json.load(f)]
    else:
        chosen = choose(*scan(repos_dir))
        with open(cached, "w") as f:
            json.dump(chosen, f, indent=0)
    scanned_s = time.time() - started
    api = Api(base, token)
    rows, sym_times = [], []
    for name, language, repo, rel in chosen:
        answer, _ = api.search(name)
        rank = rank_of(answer["results"], repo, rel)
        sym_answer = None
        for _ in range(3):
            sym_answer, took = api.search(f"sym:{name}")
            sym_times.append(took)
        sym_rank = rank_of(sym_answer["results"], repo, rel)
        rows.append(
            {"name": name, "language": language, "repository": repo, "path": rel,
             "rank": rank, "sym_rank": sym_rank, "files": answer["total_files"]}
        )
    top3 = sum(1 for r in rows if r["rank"] is not None and r["rank"] <= 3)
    by_language = {}
    for r in rows:
        entry = by_language.setdefault(r["language"], {"identifiers": 0, "top3": 0})
        entry["identifiers"] += 1
        entry["top3"] += int(r["rank"] is not None and r["rank"] <= 3)
    report = {
        "identifiers": len(rows),
        "top3": top3,
        "top3_pct": 100.0 * top3 / max(1, len(rows)),
        "first": sum(1 for r in rows if r["rank"] == 1),
        "sym_found": sum(1 for r in rows if r["sym_rank"] is not None),
        "by_language": by_language,
        "sym_ms_p50": statistics.median(sym_times) if sym_times else None,
        "sym_ms_p95": percentile(sym_times, 95) if sym_times else None,
        "sym_requests": len(sym_times),
        "scan_s": scanned_s,
        "rows": rows,
    }
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    languages = ", ".join(f"{k} {v['identifiers']}" for k, v in sorted(by_language.items()))
    print(
        f"   {len(rows)} identifiers ({languages}): "
        f"defining file in the top 3 for {top3} ({report['top3_pct']:.0f}%), first for {report['first']}; "
        f"sym: p50 {report['sym_ms_p50']:.1f} ms, p95 {report['sym_ms_p95']:.1f} ms"
    )
    for r in rows:
        if r["rank"] is None or r["rank"] > 3:
            print(f"   missed: {r['name']} ({r['language']}) {r['repository']}/{r['path']}: rank {r['rank']} of {r['files']}")


if __name__ == "__main__":
    main()
