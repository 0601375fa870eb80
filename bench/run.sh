#!/usr/bin/env bash
# The corpus benchmark, end to end: codelayer next to ripgrep and codesearch (cindex/csearch)
# on the same corpus and query set, then a load test of the running server. BENCHMARKS.md
# shows one run's output and explains it.
#
#   bash bench/run.sh            # everything; the summary lands in target/bench-corpus/summary.md
#
# Steps: build the corpus if missing (make_corpus.sh, ~1 min with registry access); install
# ripgrep, codesearch, hyperfine and wrk with apt-get if missing; build; run
# `cargo bench --bench corpus` (index, re-index, query set through the real search path;
# it also writes the app's database for its data dir); index the corpus with cindex; time
# rg and csearch on every query with hyperfine (warm cache, process start included) and
# collect their per-file matching-line counts; compare the counts with ours and explain every
# difference from the files themselves; start `codelayer serve` on the benchmark's data dir
# and load GET /api/v1/search with wrk from 16 and 64 connections; print the table.
#
# Knobs (environment): CORPUS (/tmp/corpus), MAKE_CORPUS (../shared/bench/make_corpus.sh),
# BENCH_OUT (target/bench-corpus), BENCH_DATA_DIR ($TMPDIR/codelayer-bench-data),
# BENCH_REPEATS (20, our runs per query), TOOL_RUNS (10, rg/csearch runs per query),
# API_SECS (5: each query alone through the HTTP API from one keep-alive wrk connection),
# LOAD_SECS (30 per load run), LOAD_RUNS ("all:16 all:64 selective:16": query set and
# connections; "selective" leaves out LOAD_SCANS, the queries that must read every file:
# "fn return re_nolit"), BENCH_PORT (38917),
# QUIET_LOAD (1.5: wait for the 1-minute load average to drop below this before each
# phase), QUIET_WAIT (300 s: the longest wait; the phase then runs anyway and says so),
# BENCH_SKIP_OURS=1 (reuse the last `cargo bench` output and data dir; redo the rest),
# FRESHNESS=1 (off by default: it takes 15 minutes or more) adds the freshness figure at the
# end: tests/it/freshness_corpus.rs puts every corpus repository in one workspace of a fake
# Bitbucket, has the release `codelayer serve` (default poll settings) build them all, pushes to
# FRESHNESS_PUSHES (20) of them spaced over FRESHNESS_SPREAD_SECS (150) and times each from the
# push until search finds it; it writes $BENCH_OUT/freshness.json (the test binary is a debug
# build: it only drives the server and the fake).
# The symbol step (bench/symbol_ranking.py) chooses its identifiers once per corpus and keeps
# them in $BENCH_OUT/symbol_identifiers.json (delete it to choose again).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CORPUS="${CORPUS:-/tmp/corpus}"
REPOS="$CORPUS/repos"
MAKE_CORPUS="${MAKE_CORPUS:-$ROOT/../shared/bench/make_corpus.sh}"
OUT="${BENCH_OUT:-$ROOT/target/bench-corpus}"
DATA="${BENCH_DATA_DIR:-${TMPDIR:-/tmp}/codelayer-bench-data}"
TOOL_RUNS="${TOOL_RUNS:-10}"
LOAD_SECS="${LOAD_SECS:-30}"
API_SECS="${API_SECS:-5}"
LOAD_RUNS="${LOAD_RUNS:-all:16 all:64 selective:16}"
LOAD_SCANS="${LOAD_SCANS:-fn return re_nolit}"
PORT="${BENCH_PORT:-38917}"
TOKEN="${BENCH_TOKEN:-codelayer-bench-token}"
QUIET_LOAD="${QUIET_LOAD:-1.5}"
QUIET_WAIT="${QUIET_WAIT:-300}"
QUERIES="$ROOT/bench/queries.tsv"
RG=(rg --no-config --no-ignore --max-filesize 1M)
export BENCH_OUT="$OUT" BENCH_DATA_DIR="$DATA" BENCH_TOKEN="$TOKEN" CORPUS LOAD_SECS
export CSEARCHINDEX="$OUT/csearchindex"

say() { printf '\n== %s\n' "$*"; }
mkdir -p "$OUT" "$OUT/rg" "$OUT/csearch" "$OUT/hyperfine"
: > "$OUT/phases.txt"

# Waits (at most QUIET_WAIT s) until the 1-minute load average is below QUIET_LOAD, then
# notes the phase and the load it started under.
quiet() {
  local phase="$1" waited=0
  while awk -v max="$QUIET_LOAD" '{ exit !($1 >= max) }' /proc/loadavg; do
    if (( waited >= QUIET_WAIT )); then
      echo "   (load average still $(cut -d' ' -f1-3 /proc/loadavg) after ${waited}s: measuring anyway)"
      break
    fi
    sleep 10; waited=$((waited + 10))
  done
  printf '%s\t%s\n' "$phase" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/phases.txt"
  echo "   load average $(cut -d' ' -f1-3 /proc/loadavg) at the start of: $phase"
}

# --- corpus and tools -------------------------------------------------------------------
if [[ ! -d "$REPOS" ]] || [[ -z "$(ls -A "$REPOS" 2>/dev/null)" ]]; then
  say "building the corpus in $CORPUS (make_corpus.sh)"
  [[ -f "$MAKE_CORPUS" ]] || { echo "no corpus at $REPOS and no $MAKE_CORPUS; set MAKE_CORPUS" >&2; exit 1; }
  CORPUS="$CORPUS" bash "$MAKE_CORPUS"
fi
missing=()
for tool in rg:ripgrep cindex:codesearch csearch:codesearch hyperfine:hyperfine wrk:wrk curl:curl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if (( ${#missing[@]} )); then
  say "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "building (release)"
(cd "$ROOT" && nice -n 10 cargo build --release --quiet && nice -n 10 cargo bench --bench corpus --no-run --quiet)

# --- ours -----------------------------------------------------------------------------
if [[ "${BENCH_SKIP_OURS:-0}" == 1 && -f "$OUT/ours.json" ]]; then
  say "codelayer: reusing $OUT/ours.json and $DATA (BENCH_SKIP_OURS=1)"
else
  say "codelayer: index, re-index, query set (cargo bench --bench corpus)"
  quiet "codelayer bench (index + queries)"
  (cd "$ROOT" && cargo bench --bench corpus --quiet) 2>&1 | tee "$OUT/ours.log"
fi

# --- codesearch index -------------------------------------------------------------------
say "cindex: indexing $REPOS (3 runs)"
quiet "cindex"
hyperfine -N --runs 3 --prepare "rm -f $CSEARCHINDEX" --export-json "$OUT/hyperfine/cindex.json" \
  "cindex $REPOS" 2>&1 | grep -E 'Time|Range' || true
# The files cindex took (it skips the rest silently): its verbose log lists them.
rm -f "$CSEARCHINDEX"
cindex -verbose "$REPOS" 2>&1 | grep -E '^[0-9/]+ [0-9:]+ [0-9]+ [0-9]+ /' | cut -d' ' -f5- > "$OUT/csearch/indexed-files.txt"
stat -c %s "$CSEARCHINDEX" > "$OUT/csearch/index-bytes.txt"

# --- rg and csearch: counts, then timings --------------------------------------------------
say "rg and csearch: matching-line counts per file"
# (rg reads stdin instead of the directory when stdin is a pipe or file: give it /dev/null.)
while IFS=$'\t' read -r id _label _query rg_args cs_args; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  (cd "$REPOS" && eval "${RG[*]} -c --null $rg_args" < /dev/null || true) \
    | tr '\0' '\t' | sort > "$OUT/rg/$id.tsv"
  (eval "csearch -c $cs_args" < /dev/null || true) \
    | sed -E "s#^$REPOS/##; s#: ([0-9]+)\$#\t\1#" | sort > "$OUT/csearch/$id.tsv"
done < "$QUERIES"

say "rg and csearch: latency, $TOOL_RUNS runs per query after 2 warm-ups (output to a pipe)"
quiet "rg and csearch timings"
while IFS=$'\t' read -r id _label _query rg_args cs_args; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  (cd "$REPOS" && hyperfine -N -i --warmup 2 --runs "$TOOL_RUNS" --output=pipe --style none \
    --export-json "$OUT/hyperfine/rg-$id.json" "${RG[*]} -n $rg_args" < /dev/null >/dev/null)
  hyperfine -N -i --warmup 2 --runs "$TOOL_RUNS" --output=pipe --style none \
    --export-json "$OUT/hyperfine/csearch-$id.json" "csearch -n $cs_args" < /dev/null >/dev/null
  echo "   $id done"
done < "$QUERIES"

# --- the server: single-client API latency, then load -----------------------------------
say "codelayer serve on $DATA, 127.0.0.1:$PORT"
SERVER_LOG="$OUT/server.log"
env -u CODELAYER_CONFIG CODELAYER_DATA_DIR="$DATA" DATABASE_URL="sqlite://$DATA/codelayer.db" \
  CODELAYER_LISTEN="127.0.0.1:$PORT" CODELAYER_PUBLIC_URL="http://127.0.0.1:$PORT" \
  CODELAYER_SEARCH_CACHE=0 CODELAYER_SEARCH_PER_USER=4 \
  "$ROOT/target/release/codelayer" serve > "$SERVER_LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
AUTH="Authorization: Bearer $TOKEN"
urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
probe=$(curl -fsS -H "$AUTH" "http://127.0.0.1:$PORT/api/v1/search?q=SingleSegmentIndexWriter")
echo "   probe: $(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total_files"], "files,", len(d["results"]), "results")' <<< "$probe")"
rm -f "$OUT/api-paths.tsv"
while IFS=$'\t' read -r id _label query _rest; do
  [[ -z "$id" || "$id" == \#* ]] && continue
  printf '%s\t%s\n' "$id" "/api/v1/search?q=$(urlencode "$query")" >> "$OUT/api-paths.tsv"
done < "$QUERIES"

# Every request does the work (no answers kept: CODELAYER_SEARCH_CACHE=0; decoded file content
# is kept as a server keeps it unless CODELAYER_CONTENT_CACHE_MB says otherwise); the load test
# plays one user's clients, so that user may use every search slot (CODELAYER_SEARCH_PER_USER).
say "API, one keep-alive client (wrk -c1) per query for ${API_SECS}s; whether its count is exact"
quiet "API single-client timings"
cat > "$OUT/one.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
done = function(summary, latency, requests)
  io.write(string.format("RESULT\\t%d\\t%.3f\\t%.3f\\t%d\\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, summary.errors.status))
end
LUA
while IFS=$'\t' read -r id path; do
  curl -fsS -H "$AUTH" "http://127.0.0.1:$PORT$path" > "$OUT/api-$id.json" || echo '{}' > "$OUT/api-$id.json"
  wrk -t1 -c1 -d"${API_SECS}s" --timeout 60s -s "$OUT/one.lua" "http://127.0.0.1:$PORT$path" < /dev/null \
    | awk -F'\t' '/^RESULT/ {print $2"\t"$3"\t"$4"\t"$5}' > "$OUT/api-$id.tsv"
  echo "   $id: $(cat "$OUT/api-$id.tsv")"
done < "$OUT/api-paths.tsv"

# wrk scripts: each connection sends the queries of its set in turn.
for qset in all selective; do
  {
    echo 'local paths = {'
    while IFS=$'\t' read -r id path; do
      if [[ "$qset" == selective && " $LOAD_SCANS " == *" $id "* ]]; then continue; fi
      echo "  \"$path\","
    done < "$OUT/api-paths.tsv"
    echo '}'
    echo 'local i = 0'
    echo 'request = function()'
    echo '  i = i + 1'
    echo "  return wrk.format(\"GET\", paths[(i % #paths) + 1], { [\"Authorization\"] = \"Bearer $TOKEN\" })"
    echo 'end'
  } > "$OUT/rotate-$qset.lua"
done
: > "$OUT/load.tsv"
for run in $LOAD_RUNS; do
  qset="${run%%:*}" c="${run#*:}"
  say "load: $c connections for ${LOAD_SECS}s, query set '$qset' in rotation"
  quiet "load test, $qset, $c connections"
  wrk -t2 -c"$c" -d"${LOAD_SECS}s" --timeout 60s --latency -s "$OUT/rotate-$qset.lua" \
    "http://127.0.0.1:$PORT" < /dev/null | tee "$OUT/wrk-$qset-$c.txt"
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER/status")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status")
  printf '%s\t%s\t%s\t%s\n' "$qset" "$c" "$hwm" "$rss" >> "$OUT/load.tsv"
done
say "symbols: does a bare identifier find its defining file? sym: latency (bench/symbol_ranking.py)"
quiet "symbol ranking"
python3 "$ROOT/bench/symbol_ranking.py" "$REPOS" "http://127.0.0.1:$PORT" "$TOKEN" "$OUT/symbols.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
trap - EXIT

# --- the table ---------------------------------------------------------------------------
say "summary"
python3 - "$OUT" "$REPOS" "$QUERIES" <<'PY'
import json, os, re, statistics, sys, math
out, repos, queries_path = sys.argv[1], sys.argv[2], sys.argv[3]
ours = json.load(open(f"{out}/ours.json"))
queries = [l.rstrip("\n").split("\t") for l in open(queries_path) if l.strip() and not l.startswith("#")]

def stats(runs_ms):
    s = sorted(runs_ms); n = len(s)
    med = (s[(n - 1) // 2] + s[n // 2]) / 2
    return med, s[max(1, math.ceil(0.95 * n)) - 1]

def hf(name):
    p = f"{out}/hyperfine/{name}.json"
    if not os.path.exists(p): return None
    return stats([t * 1000 for t in json.load(open(p))["results"][0]["times"]])

def counts(path):
    d = {}
    if os.path.exists(path):
        for line in open(path, encoding="utf-8", errors="surrogateescape"):
            f, _, n = line.rstrip("\n").rpartition("\t")
            if f and int(n) > 0: d[f] = int(n)
    return d

facts_cache = {}
def facts(rel):
    if rel in facts_cache: return facts_cache[rel]
    p = os.path.join(repos, rel)
    try: data = open(p, "rb").read()
    except OSError: data = b""
    f = {
        "large": len(data) > (1 << 20),
        "nul8k": b"\0" in data[:8192],
        "nul_later": b"\0" not in data[:8192] and b"\0" in data[8192:],
        "utf16bom": data[:2] in (b"\xff\xfe", b"\xfe\xff"),
        "long_line": max((len(l) for l in data.split(b"\n")), default=0) > 2000,
        "bad_utf8": False,
        "cr": b"\r" in data,
    }
    try: data.decode("utf-8")
    except UnicodeDecodeError: f["bad_utf8"] = True
    facts_cache[rel] = f
    return f

cindexed = set()
for line in open(f"{out}/csearch/indexed-files.txt", encoding="utf-8", errors="surrogateescape"):
    cindexed.add(os.path.relpath(line.rstrip("\n"), repos))

def why_rg(rel, a, b):
    f = facts(rel)
    if f["nul_later"]: return "NUL after the first 8 KiB: we index it, rg stops at the NUL (binary)"
    if f["nul8k"]: return "NUL in the first 8 KiB: binary, we skip it"
    if f["utf16bom"]: return "UTF-16 BOM: rg transcodes"
    return "UNEXPLAINED"

def why_cs(rel, a, b):
    f = facts(rel)
    if rel not in cindexed:
        r = [k for k, v in (("over 1 MiB", f["large"]), ("line > 2000 bytes", f["long_line"]),
             ("invalid UTF-8", f["bad_utf8"]), ("NUL", f["nul8k"] or f["nul_later"])) if v]
        return "cindex skipped it (" + (", ".join(r) or "no long line, bad UTF-8 or NUL: its limit of 20,000 distinct trigrams") + ")"
    if f["large"]: return "over 1 MiB: we (and rg --max-filesize 1M) skip it, cindex indexes it"
    if f["cr"] and a != b: return "CRLF line endings"
    return "UNEXPLAINED"

def compare(mine, theirs, why):
    diffs = {}
    for rel in sorted(set(mine) | set(theirs)):
        a, b = mine.get(rel, 0), theirs.get(rel, 0)
        if a != b:
            key = why(rel, a, b)
            n = diffs.setdefault(key, [0, 0, 0, rel])
            n[0] += 1; n[1] += a; n[2] += b
    return diffs

def draw_chart(chart, load_rows):
    """Two panels, log-scale milliseconds: per query codelayer's API median beside rg and
    csearch; then the latency percentiles of each load run. Plain SVG, no fonts fetched."""
    width, left, bar, gap = 900, 190, 7, 10
    lo, hi = 0.1, 100000.0
    x = lambda v: left + (width - left - 20) * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    colors = (("codelayer API", "#2563eb"), ("rg", "#dc2626"), ("csearch", "#6b7280"))
    rows = len(chart) * (3 * bar + gap)
    height = 60 + rows + 60 + len(load_rows) * 28 + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="18" font-size="14" font-weight="bold">Latency per query (ms, log scale, median)</text>']
    for i, (name, color) in enumerate(colors):
        out.append(f'<rect x="{10 + i * 130}" y="28" width="10" height="10" fill="{color}"/><text x="{24 + i * 130}" y="37">{name}</text>')
    y0 = 50
    for t in (0.1, 1, 10, 100, 1000, 10000, 100000):
        out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + rows}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{x(t):.1f}" y="{y0 + rows + 12}" text-anchor="middle">{t:g}</text>')
    y = y0
    for qid, *vals in chart:
        out.append(f'<text x="{left - 6}" y="{y + 2 * bar}" text-anchor="end">{qid}</text>')
        for k, v in enumerate(vals):
            if v is not None:
                out.append(f'<rect x="{left}" y="{y + k * bar}" width="{max(1, x(v) - left):.1f}" height="{bar - 1}" fill="{colors[k][1]}"><title>{qid} {colors[k][0]}: {v:.1f} ms</title></rect>')
        y += 3 * bar + gap
    y += 40
    out.append(f'<text x="10" y="{y}" font-size="14" font-weight="bold">Under load: latency percentiles p50 / p75 / p90 / p99 (ms, log scale)</text>')
    y += 14
    shades = ("#93c5fd", "#60a5fa", "#2563eb", "#1e3a8a")
    for label, pcts in load_rows:
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{label}</text>')
        for k, v in reversed(list(enumerate(pcts))):
            if v is not None:
                out.append(f'<rect x="{left}" y="{y + 4}" width="{max(1, x(v) - left):.1f}" height="14" fill="{shades[k]}"><title>p{(50, 75, 90, 99)[k]}: {v:.1f} ms</title></rect>')
        y += 28
    for t in (0.1, 1, 10, 100, 1000, 10000, 100000):
        out.append(f'<text x="{x(t):.1f}" y="{y + 12}" text-anchor="middle">{t:g}</text>')
    out.append("</svg>")
    return "\n".join(out)

idx = ours["index"]
cindex_t = hf("cindex")
cindex_bytes = int(open(f"{out}/csearch/index-bytes.txt").read())
cindex_text = sum(os.path.getsize(os.path.join(repos, rel)) for rel in cindexed)
lines = []
P = lines.append
P("## Indexing")
P("")
P("| | time | MB/s | index size | % of text |")
P("|---|---:|---:|---:|---:|")
P(f"| codelayer ({idx['repositories']} shards, {idx['build_threads']} at a time) | {idx['wall_s']:.2f} s | "
  f"{idx['mb_per_s']:.1f} | {idx['shard_bytes']/1e6:.1f} MB | {idx['shard_pct_of_text']:.0f}% |")
P(f"| cindex (median of 3) | {cindex_t[0]/1000:.2f} s | {cindex_text/1e6/(cindex_t[0]/1000):.1f} | "
  f"{cindex_bytes/1e6:.1f} MB | {100*cindex_bytes/cindex_text:.0f}% |")
P("| rg | no index | | | |")
P("")
P(f"codelayer indexed {idx['text_bytes']/1e6:.1f} MB of text in {idx['files']} files "
  f"({idx['skipped_binary']} binary files and {idx['skipped_large']} over 1 MiB skipped); its shards hold the "
  f"content too (content.bin {idx['content_bin_bytes']/1e6:.1f} MB). cindex indexed {cindex_text/1e6:.1f} MB in "
  f"{len(cindexed)} files (it keeps files over 1 MiB, skips long-line, non-UTF-8 and trigram-heavy ones) and stores "
  f"no content: csearch reads the files themselves.")
so = ours.get("symbols_overhead")
if so:
    w = so["without"]
    P(f"Symbols (tree-sitter, issue 14) cost: the same build without them took {w['wall_s']:.2f} s "
      f"({w['mb_per_s']:.1f} MB/s) with {w['shard_bytes']/1e6:.1f} MB of shards; with them "
      f"**+{so['time_growth_pct']:.0f}% build time** and **+{so['size_growth_pct']:.0f}% shard size**.")
r = ours["reindex"]
P(f"Re-index of {r['repository']} ({r['bytes']/1e6:.1f} MB, {r['files']} files) after a one-file commit: "
  f"median {r['median_ms']:.0f} ms (runs: {', '.join(f'{x:.0f}' for x in r['runs_ms'])} ms). "
  f"Opening all {idx['repositories']} shards (a cold server's first search): {ours['queries']['open_shards_ms']:.0f} ms.")
P("")
P("## Queries through the HTTP API (milliseconds, median / p95; warm cache)")
P("")
P("One keep-alive client sends the query again and again for a few seconds (wrk -c1), beside "
  "`rg -n` and `csearch -n` timed by hyperfine (process start included, as a person running them "
  "pays it). *ours / rg* is the ratio of the medians: below 1 is faster than ripgrep. "
  "Search answers are not kept (`CODELAYER_SEARCH_CACHE=0`: every request does the search); "
  f"decoded file content is, as a server keeps it (`CODELAYER_CONTENT_CACHE_MB={os.environ.get('CODELAYER_CONTENT_CACHE_MB', '256 (default)')}`), "
  "as rg and csearch read files through the page cache.")
P("")
P("| query | API | ours / rg | count exact? | rg | csearch | in-process first page | in-process full count | files ours / rg / cs | lines ours / rg / cs |")
P("|---|---:|---:|:---:|---:|---:|---:|---:|---:|---:|")
notes = []
chart = []
by_id = {q["id"]: q for q in ours["queries"]["results"]}
fmt = lambda t: "–" if t is None else f"{t[0]:.0f} / {t[1]:.0f}" if t[0] >= 10 else f"{t[0]:.1f} / {t[1]:.1f}"
def api(qid):
    p = f"{out}/api-{qid}.tsv"
    if not os.path.exists(p) or not open(p).read().strip(): return None
    n, p50, p95, bad = open(p).read().split("\t")
    return float(p50), float(p95)
def exact(qid):
    try: return json.load(open(f"{out}/api-{qid}.json")).get("total_exact")
    except (OSError, ValueError): return None
api_medians = []
for cols in queries:
    qid, label, text = cols[0], cols[1], cols[2]
    q = by_id[qid]
    page = (q["page_ms"]["median"], q["page_ms"]["p95"])
    full = (q["full_ms"]["median"], q["full_ms"]["p95"])
    a, rgt, cst = api(qid), hf("rg-" + qid), hf("csearch-" + qid)
    ratio = f"{a[0] / rgt[0]:.2f}" if a and rgt else "–"
    if a: api_medians.append(a[0])
    chart.append((qid, a[0] if a else None, rgt[0] if rgt else None, cst[0] if cst else None))
    ex = exact(qid)
    mine = counts(f"{out}/{qid}.tsv")
    rgc = counts(f"{out}/rg/{qid}.tsv")
    csc = counts(f"{out}/csearch/{qid}.tsv")
    cell = f"`{text}` ({label})".replace("|", "\\|")  # a | would end the table cell
    P(f"| {cell} | {fmt(a)} | {ratio} | {'yes' if ex else 'no (N+)' if ex is False else '?'} | {fmt(rgt)} | {fmt(cst)} | "
      f"{fmt(page)} | {fmt(full)} | {len(mine)} / {len(rgc)} / {len(csc)} | "
      f"{sum(mine.values())} / {sum(rgc.values())} / {sum(csc.values())} |")
    for tool, theirs, why in (("rg", rgc, why_rg), ("csearch", csc, why_cs)):
        for reason, (nf, a2, b2, ex2) in sorted(compare(mine, theirs, why).items()):
            notes.append(f"- `{qid}` vs {tool}: {nf} file(s), {a2} lines ours vs {b2} theirs — {reason} (e.g. {ex2})")
if api_medians:
    P("")
    P(f"p50 over the query set's API medians: {statistics.median(api_medians):.1f} ms. "
      "The file and line counts compare the *full* count (in-process, every file) with rg and csearch; "
      "a first page whose count is not exact says so (`total_exact: false`, \"N+ files\" on the page).")
P("")
P("Count differences, each traced to the files involved:")
P("")
lines.extend(notes or ["- none"])
P("")
P(f"## Load (GET /api/v1/search, queries in rotation, wrk -t2, {os.environ.get('LOAD_SECS', '30')} s each)")
P("")
P("| query set | connections | requests/s | p50 | p99 | non-2xx | server VmHWM | server VmRSS |")
P("|---|---:|---:|---:|---:|---:|---:|---:|")
for row in open(f"{out}/load.tsv"):
    qset, c, hwm, rss = row.split()
    txt = open(f"{out}/wrk-{qset}-{c}.txt").read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", txt)
    p50 = re.search(r"^\s+50%\s+(\S+)", txt, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", txt, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", txt)
    timeouts = re.search(r"timeout (\d+)", txt)
    P(f"| {qset} | {c} | {rps.group(1) if rps else '?'} | {p50.group(1) if p50 else '?'} | {p99.group(1) if p99 else '?'} | "
      f"{bad.group(1) if bad else 0}{' (+' + timeouts.group(1) + ' timeouts)' if timeouts and timeouts.group(1) != '0' else ''} | "
      f"{int(hwm)/1024:.0f} MiB | {int(rss)/1024:.0f} MiB |")
P("")
load_rows = []
for row in open(f"{out}/load.tsv"):
    qset, c, _, _ = row.split()
    txt = open(f"{out}/wrk-{qset}-{c}.txt").read()
    def ms_of(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\b", txt, re.M)
        if not m: return None
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    load_rows.append((f"{qset}, {c} connections", [ms_of(p) for p in (50, 75, 90, 99)]))
svg = draw_chart(chart, load_rows)
open(f"{out}/chart.svg", "w").write(svg)
P("![per-query latency and latency under load](bench/chart.svg)")
P("")
if os.path.exists(f"{out}/symbols.json"):
    sy = json.load(open(f"{out}/symbols.json"))
    P("## Symbols: the defining file of a bare identifier")
    P("")
    P(f"{sy['identifiers']} identifiers chosen by the rule in `bench/symbol_ranking.py` (defined once in the corpus, "
      f"used in at least 3 other files; " + ", ".join(f"{k} {v['identifiers']}" for k, v in sorted(sy['by_language'].items())) +
      f"): the defining file is in the top 3 results for **{sy['top3']} ({sy['top3_pct']:.0f}%)**, first for {sy['first']}. "
      f"`sym:<identifier>` through the API from one keep-alive client ({sy['sym_requests']} requests): "
      f"**p50 {sy['sym_ms_p50']:.1f} ms**, p95 {sy['sym_ms_p95']:.1f} ms; it finds the defining file for {sy['sym_found']}.")
    P("")
    P("| language | identifiers | defining file in the top 3 |")
    P("|---|---:|---:|")
    for k, v in sorted(sy["by_language"].items()):
        P(f"| {k} | {v['identifiers']} | {v['top3']} |")
    P("")
m = ours["machine"]
P(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']:.1f} GiB RAM. Load average at the start of each phase: " +
  "; ".join(f"{p}: {l}" for p, l in (x.rstrip('\n').split('\t') for x in open(f'{out}/phases.txt'))) + ".")
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
echo "summary: $OUT/summary.md"

# --- freshness (FRESHNESS=1) -------------------------------------------------------------
if [[ "${FRESHNESS:-0}" == 1 ]]; then
  say "freshness: push to searchable on the corpus (release server, default poll settings)"
  quiet "freshness"
  (cd "$ROOT" && CODELAYER_BENCH_BIN="$ROOT/target/release/codelayer" \
    cargo test --locked --test it freshness_corpus -- --ignored --nocapture) 2>&1 | tee "$OUT/freshness.log"
  echo "freshness: $OUT/freshness.json"
fi
