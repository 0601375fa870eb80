//! The corpus benchmark (`cargo bench --bench corpus`; `bench/run.sh` runs it end to end
//! next to ripgrep and codesearch, see BENCHMARKS.md).
//!
//! On the repositories under `$CORPUS/repos` (one git repository each, made by
//! `make_corpus.sh`) it:
//! 1. indexes every repository's HEAD with the real indexing path (`index::build_shard` from
//!    the object database into `tmp/`, renamed to `shards/<id>`), as many builds at once as
//!    the app has job workers (2), largest repository first: wall time, MB/s, shard size;
//! 2. re-indexes one changed repository of about 10 MB (a commit on a clone of it);
//! 3. writes the app's database for that data dir (user, Bitbucket connection, workspace,
//!    one ready repository per shard, an API token) so `codelayer serve` can serve it;
//! 4. runs the query set of `bench/queries.tsv` through the real search path, N times each:
//!    the first results page through `search::run` (what GET /api/v1/search calls), and the
//!    full count (every matching file and line) through `PreparedQuery` +
//!    `Shard::search_prepared` over all shards in parallel: median and p95 latency, matching
//!    files and lines, trigram candidates;
//! 5. writes `ours.json` and one `<query id>.tsv` of per-file line counts per query into
//!    `$BENCH_OUT` for `bench/run.sh` to compare with the other tools.
//!
//! Environment: CORPUS (/tmp/corpus), BENCH_DATA_DIR (the data dir it fills, wiped first;
//! default $TMPDIR/codelayer-bench-data), BENCH_OUT (target/bench-corpus), BENCH_REPEATS
//! (20), BENCH_BUILD_THREADS (2), BENCH_TOKEN (the API token it registers), BENCH_QUERIES
//! (bench/queries.tsv).

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use codelayer::{
    app::{App, Tuning},
    auth::hash_api_token,
    config::Config,
    db::now,
    index::{BuildStats, Limits, PreparedQuery, Shard, build_shard},
    search::{self, query},
};
use serde_json::{Value, json};

/// The workspace slug every corpus repository is filed under.
const WORKSPACE: &str = "corpus";
/// Marks a data dir as the benchmark's own, so wiping it is safe.
const MARKER: &str = ".codelayer-bench";
/// Size of the repository chosen for the re-index measurement.
const REINDEX_TARGET_BYTES: u64 = 10_000_000;
/// Runs before the timed ones (warm cache, warm shard readers).
const WARMUP: usize = 2;
/// Files `search::run` asks of each shard for a first page (`wanted.max(200)`).
const PER_SHARD_FILES: usize = 200;

struct Settings {
    repos_dir: PathBuf,
    data_dir: PathBuf,
    out_dir: PathBuf,
    repeats: usize,
    build_threads: usize,
    token: String,
    queries: Vec<BenchQuery>,
}

/// One line of bench/queries.tsv (the rg and csearch columns are for bench/run.sh).
struct BenchQuery {
    id: String,
    label: String,
    text: String,
}

/// A corpus repository.
struct Repo {
    id: i64,
    name: String,
    git_dir: PathBuf,
    head: git2::Oid,
    /// Bytes of its working tree (outside .git): only used to order the builds.
    tree_bytes: u64,
}

fn main() -> Result<()> {
    let settings = settings()?;
    std::fs::create_dir_all(&settings.out_dir)?;
    let repos = discover(&settings.repos_dir)?;
    println!(
        "corpus: {} repositories under {}; data dir {}; load average {}",
        repos.len(),
        settings.repos_dir.display(),
        settings.data_dir.display(),
        loadavg()
    );
    fresh_data_dir(&settings.data_dir)?;

    // The same build without symbol extraction first, in a scratch data dir: what symbols
    // cost in build time and shard size (issue 14 allows 25 % and 15 %).
    let plain_dir = settings.data_dir.join("without-symbols");
    for sub in ["tmp", "shards"] {
        std::fs::create_dir_all(plain_dir.join(sub))?;
    }
    let without = Limits {
        max_symbol_file_bytes: 0,
        ..Limits::default()
    };
    println!("\nwithout symbols:");
    let (plain_report, _) = index_all(&settings, &repos, &plain_dir, &without)?;
    std::fs::remove_dir_all(&plain_dir)?;
    println!("with symbols (as the app builds):");
    let (index_report, stats) =
        index_all(&settings, &repos, &settings.data_dir, &Limits::default())?;
    let growth = |key: &str| {
        let (with, plain) = (index_report[key].as_f64(), plain_report[key].as_f64());
        with.zip(plain).map(|(w, p)| 100.0 * (w / p - 1.0))
    };
    let symbols_report = json!({
        "without": plain_report,
        "time_growth_pct": growth("wall_s"),
        "size_growth_pct": growth("shard_bytes"),
    });
    println!(
        "symbols add {:.0}% build time and {:.0}% shard size",
        growth("wall_s").unwrap_or(f64::NAN),
        growth("shard_bytes").unwrap_or(f64::NAN)
    );
    let reindex_report = reindex(&settings.data_dir, &repos, &stats)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let app = runtime.block_on(fixture(&settings, &repos, &stats))?;

    let query_report = run_queries(&settings, &repos, &runtime, &app)?;
    let memory = json!({
        "bench_vm_hwm_kib": proc_status_kib("VmHWM"),
        "bench_vm_rss_kib": proc_status_kib("VmRSS"),
    });
    let report = json!({
        "machine": machine(),
        "repeats": settings.repeats,
        "warmup": WARMUP,
        "index": index_report,
        "symbols_overhead": symbols_report,
        "reindex": reindex_report,
        "queries": query_report,
        "memory": memory,
        "data_dir": settings.data_dir,
        "loadavg_end": loadavg(),
    });
    let path = settings.out_dir.join("ours.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn settings() -> Result<Settings> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = PathBuf::from(env("CORPUS").unwrap_or_else(|| "/tmp/corpus".into()));
    let number = |key: &str, default: usize| -> Result<usize> {
        env(key).map_or(Ok(default), |v| {
            v.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| anyhow!("{key} must be a positive number, got {v:?}"))
        })
    };
    let queries_path = env("BENCH_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("bench/queries.tsv"));
    Ok(Settings {
        repos_dir: corpus.join("repos"),
        data_dir: env("BENCH_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("codelayer-bench-data")),
        out_dir: env("BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target/bench-corpus")),
        repeats: number("BENCH_REPEATS", 20)?,
        build_threads: number("BENCH_BUILD_THREADS", 2)?,
        token: env("BENCH_TOKEN").unwrap_or_else(|| "codelayer-bench-token".into()),
        queries: load_queries(&queries_path)?,
    })
}

fn load_queries(path: &Path) -> Result<Vec<BenchQuery>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [id, label, text, ..] = cols.as_slice() else {
            bail!(
                "{}: a line with fewer than 3 columns: {line:?}",
                path.display()
            );
        };
        out.push(BenchQuery {
            id: (*id).to_owned(),
            label: (*label).to_owned(),
            text: (*text).to_owned(),
        });
    }
    Ok(out)
}

/// The git repositories under `dir`, sorted by name, ids from 1.
fn discover(dir: &Path) -> Result<Vec<Repo>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("no corpus at {} (run make_corpus.sh)", dir.display()))?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.path().join(".git").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no git repositories under {}", dir.display());
    }
    let mut repos = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let root = dir.join(&name);
        let git_dir = root.join(".git");
        let head = git2::Repository::open(&git_dir)?
            .head()?
            .peel_to_commit()?
            .id();
        repos.push(Repo {
            id: i as i64 + 1,
            name,
            git_dir,
            head,
            tree_bytes: tree_bytes(&root),
        });
    }
    Ok(repos)
}

fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name() != ".git")
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

fn fresh_data_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a benchmark data dir (no {MARKER}); not wiping it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::create_dir_all(dir.join("shards"))?;
    std::fs::write(
        dir.join(MARKER),
        "made by benches/corpus.rs; wiped by its next run\n",
    )?;
    Ok(())
}

/// Builds one shard the way the sync job does: into tmp/, then renamed into place.
fn build_one(
    git_dir: &Path,
    head: git2::Oid,
    tmp: &Path,
    dest: &Path,
    limits: &Limits,
    previous: Option<&Path>,
) -> Result<BuildStats> {
    let stats = build_shard(git_dir, head, tmp, limits, previous, &|_, _| {})
        .with_context(|| format!("indexing {}", git_dir.display()))?;
    if dest.exists() {
        let old = dest.with_extension("old");
        std::fs::rename(dest, &old)?;
        std::fs::rename(tmp, dest)?;
        std::fs::remove_dir_all(old)?;
    } else {
        std::fs::rename(tmp, dest)?;
    }
    Ok(stats)
}

/// Indexes every repository into `data`'s shards with `limits`, as the app's job workers would.
fn index_all(
    settings: &Settings,
    repos: &[Repo],
    data: &Path,
    limits: &Limits,
) -> Result<(Value, HashMap<i64, BuildStats>)> {
    let mut order: Vec<&Repo> = repos.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.tree_bytes));
    let next = AtomicUsize::new(0);
    let results: Mutex<HashMap<i64, BuildStats>> = Mutex::new(HashMap::new());
    let load_before = loadavg();
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..settings.build_threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let Some(repo) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return Ok(());
                        };
                        let tmp = data.join("tmp").join(format!("{}-build", repo.id));
                        let dest = shard_dir(data, repo.id);
                        let stats = build_one(&repo.git_dir, repo.head, &tmp, &dest, limits, None)?;
                        results
                            .lock()
                            .map_err(|_| anyhow!("poisoned"))?
                            .insert(repo.id, stats);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow!("an index thread panicked"))??;
        }
        Ok(())
    })?;
    let wall = started.elapsed();
    let stats = results.into_inner().map_err(|_| anyhow!("poisoned"))?;

    let sum = |f: fn(&BuildStats) -> u64| stats.values().map(f).sum::<u64>();
    let text_bytes = sum(|s| s.bytes);
    let shard_bytes = dir_bytes(&data.join("shards"));
    let content_bytes: u64 = repos
        .iter()
        .map(|r| {
            std::fs::metadata(shard_dir(data, r.id).join("content.bin")).map_or(0, |m| m.len())
        })
        .sum();
    let mb_s = text_bytes as f64 / 1e6 / wall.as_secs_f64();
    println!(
        "\nindex: {} repositories, {} files, {:.1} MB of text in {:.2} s = {:.1} MB/s \
         ({} build threads)",
        stats.len(),
        sum(|s| s.files),
        text_bytes as f64 / 1e6,
        wall.as_secs_f64(),
        mb_s,
        settings.build_threads
    );
    println!(
        "       shards {:.1} MB = {:.0}% of the text (content.bin {:.1} MB, tantivy {:.1} MB); \
         skipped: {} binary, {} over 1 MiB",
        shard_bytes as f64 / 1e6,
        100.0 * shard_bytes as f64 / text_bytes as f64,
        content_bytes as f64 / 1e6,
        (shard_bytes - content_bytes) as f64 / 1e6,
        sum(|s| s.skipped_binary),
        sum(|s| s.skipped_large),
    );
    let report = json!({
        "repositories": stats.len(),
        "files": sum(|s| s.files),
        "text_bytes": text_bytes,
        "skipped_binary": sum(|s| s.skipped_binary),
        "skipped_large": sum(|s| s.skipped_large),
        "symlinks": sum(|s| s.symlinks),
        "wall_s": wall.as_secs_f64(),
        "mb_per_s": mb_s,
        "sum_of_build_s": sum(|s| s.duration_ms) as f64 / 1000.0,
        "build_threads": settings.build_threads,
        "shard_bytes": shard_bytes,
        "content_bin_bytes": content_bytes,
        "shard_pct_of_text": 100.0 * shard_bytes as f64 / text_bytes as f64,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    });
    Ok((report, stats))
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Re-indexes one repository of about 10 MB after a commit that changes one file, in a
/// scratch clone and scratch data dir (the benchmark's shards keep the corpus as it is).
fn reindex(data: &Path, repos: &[Repo], stats: &HashMap<i64, BuildStats>) -> Result<Value> {
    let repo = repos
        .iter()
        .min_by_key(|r| {
            stats
                .get(&r.id)
                .map_or(u64::MAX, |s| s.bytes.abs_diff(REINDEX_TARGET_BYTES))
        })
        .ok_or_else(|| anyhow!("no repositories"))?;
    let first = stats.get(&repo.id).cloned().unwrap_or_default();
    let previous = shard_dir(data, repo.id);
    let scratch = tempfile::Builder::new()
        .prefix("codelayer-bench-reindex")
        .tempdir()?;
    let work = scratch.path().join("clone");
    let source = repo
        .git_dir
        .parent()
        .ok_or_else(|| anyhow!("no working tree"))?;
    let clone = git2::Repository::clone(&source.to_string_lossy(), &work)?;
    let changed = change_one_file(&clone)?;
    let commit = clone.head()?.peel_to_commit()?.id();
    let (tmp, dest) = (scratch.path().join("tmp"), scratch.path().join("shard"));
    let mut times = Vec::new();
    let mut rebuilt = BuildStats::default();
    for _ in 0..3 {
        let started = Instant::now();
        // Replacing the corpus shard of the commit before, as a sync would.
        rebuilt = build_one(
            clone.path(),
            commit,
            &tmp,
            &dest,
            &Limits::default(),
            Some(&previous),
        )?;
        times.push(started.elapsed());
    }
    let median = stats_of(&times).0;
    println!(
        "re-index: {} ({:.1} MB, {} files) after a commit changing {changed}: \
         median {:.0} ms of 3 (runs {}); its first build took {} ms",
        repo.name,
        rebuilt.bytes as f64 / 1e6,
        rebuilt.files,
        ms(median),
        times
            .iter()
            .map(|t| format!("{:.0}", ms(*t)))
            .collect::<Vec<_>>()
            .join(", "),
        first.duration_ms
    );
    Ok(json!({
        "repository": repo.name,
        "bytes": rebuilt.bytes,
        "files": rebuilt.files,
        "changed_file": changed,
        "runs_ms": times.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
        "median_ms": ms(median),
        "first_build_ms": first.duration_ms,
    }))
}

/// Appends a line to the first `.rs` file (else the first file) of HEAD's tree and commits.
fn change_one_file(repo: &git2::Repository) -> Result<String> {
    let tree = repo.head()?.peel_to_tree()?;
    let mut files = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            files.push(format!("{dir}{}", entry.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    })?;
    let path = files
        .iter()
        .find(|p| p.ends_with(".rs"))
        .or(files.first())
        .ok_or_else(|| anyhow!("empty repository"))?
        .clone();
    let workdir = repo.workdir().ok_or_else(|| anyhow!("bare clone"))?;
    let mut text = std::fs::read(workdir.join(&path))?;
    text.extend_from_slice(b"\n// changed by the codelayer corpus benchmark\n");
    std::fs::write(workdir.join(&path), text)?;
    let mut index = repo.index()?;
    index.add_path(Path::new(&path))?;
    index.write()?;
    let new_tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("bench", "bench@example.invalid")?;
    let parent = repo.head()?.peel_to_commit()?;
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "bench change",
        &new_tree,
        &[&parent],
    )?;
    Ok(path)
}

/// Opens the app on the data dir and writes the rows that make every shard searchable by
/// one user with an API token (Bitbucket tokens are dummies: nothing here calls Bitbucket).
async fn fixture(
    settings: &Settings,
    repos: &[Repo],
    stats: &HashMap<i64, BuildStats>,
) -> Result<App> {
    let mut values = HashMap::new();
    values.insert(
        "CODELAYER_DATA_DIR".to_owned(),
        settings.data_dir.to_string_lossy().into_owned(),
    );
    // Every timed run does the work: no answers kept from the run before.
    values.insert("CODELAYER_SEARCH_CACHE".to_owned(), "0".to_owned());
    let config = Config::from_map(&values).map_err(|e| anyhow!("{e}"))?;
    let app = App::new(config, Tuning::default()).await?;
    let pool = &app.state.db.pool;
    let t = now();
    let mut tx = pool.begin().await?;
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (bitbucket_uuid, account_id, nickname, display_name, purging, created_at) \
         VALUES ('{bench-user}', 'bench', 'bench', 'Benchmark', 0, $1) RETURNING id",
    )
    .bind(t)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO bitbucket_connections (user_id, access_token, refresh_token, expires_at, status, updated_at) \
         VALUES ($1, 'unused', 'unused', $2, 'ok', $3)",
    )
    .bind(user_id)
    .bind(t + 10 * 365 * 86_400)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    let workspace_id: i64 = sqlx::query_scalar(
        "INSERT INTO workspaces (user_id, uuid, slug, name, permission, linked, reachable, purging, refreshed_at) \
         VALUES ($1, '{bench-workspace}', $2, $2, 'member', 1, 1, 0, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(WORKSPACE)
    .bind(t)
    .fetch_one(&mut *tx)
    .await?;
    for repo in repos {
        let s = stats.get(&repo.id).cloned().unwrap_or_default();
        sqlx::query(
            "INSERT INTO repositories (id, user_id, workspace_id, uuid, slug, name, full_name, language, \
             size, is_private, updated_on, main_branch, html_url, selected, state, indexed_commit, \
             files, bytes, indexed_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, '', $7, 1, '2024-01-01T00:00:00Z', 'main', $8, 1, \
             'ready', $9, $10, $11, $12)",
        )
        .bind(repo.id)
        .bind(user_id)
        .bind(workspace_id)
        .bind(format!("{{bench-{}}}", repo.id))
        .bind(&repo.name)
        .bind(format!("{WORKSPACE}/{}", repo.name))
        .bind(i64::try_from(repo.tree_bytes)?)
        .bind(format!("https://bitbucket.org/{WORKSPACE}/{}", repo.name))
        .bind(repo.head.to_string())
        .bind(i64::try_from(s.files)?)
        .bind(i64::try_from(s.bytes)?)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, 'bench', $2, $3)",
    )
    .bind(user_id)
    .bind(hash_api_token(&settings.token))
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(app)
}

fn run_queries(
    settings: &Settings,
    repos: &[Repo],
    runtime: &tokio::runtime::Runtime,
    app: &App,
) -> Result<Value> {
    let state = &app.state;
    let user_id: codelayer::ids::UserId = runtime.block_on(
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE token_hash = $1")
            .bind(hash_api_token(&settings.token))
            .fetch_one(&state.db.pool),
    )?;

    let started = Instant::now();
    // Opened through the app's own cache, by the ids the user may read (as search does).
    let readable = runtime
        .block_on(codelayer::visible::readable(state, user_id))
        .map_err(|e| anyhow!("{e}"))?;
    let shards: Vec<(&Repo, Arc<Shard>)> = repos
        .iter()
        .map(|r| {
            let id = readable
                .iter()
                .find(|s| s.id.get() == r.id)
                .ok_or_else(|| anyhow!("repository {} is not readable", r.id))?
                .id;
            Ok((r, state.shards.get(id)?))
        })
        .collect::<Result<_>>()?;
    let open_ms = ms(started.elapsed());
    println!(
        "opened {} shards in {open_ms:.0} ms; bench process RSS {} MiB",
        shards.len(),
        proc_status_kib("VmRSS") / 1024
    );

    println!(
        "\n{:<10} {:<34} {:>15} {:>15} {:>15} {:>8} {:>9} {:>10}",
        "query",
        "codelayer query",
        "page p50/p95",
        "page/prepared1",
        "full p50/p95",
        "files",
        "lines",
        "candidates"
    );
    let mut out = Vec::new();
    for q in &settings.queries {
        let parsed = query::parse(&q.text).map_err(|e| anyhow!("query {}: {e}", q.id))?;
        let selected: Vec<&(&Repo, Arc<Shard>)> = shards
            .iter()
            .filter(|(r, _)| {
                parsed.allows_repository(WORKSPACE, &r.name, &format!("{WORKSPACE}/{}", r.name))
            })
            .collect();
        // The full count: every matching file and line (one line returned, all counted).
        let full = PreparedQuery::new(&parsed.shard_query(1, 0))?;
        // What `search::run` asks of each shard for the first page, compiled once.
        let page_query = parsed.shard_query(
            search::LINES_PER_FILE,
            search::PAGE_SIZE.max(PER_SHARD_FILES),
        );
        let candidates: usize = selected
            .iter()
            .map(|(_, s)| s.candidate_count(&full))
            .sum::<Result<usize, _>>()?;

        let mut files = Vec::new();
        let full_times = timed(settings.repeats, || {
            files = search_all(&selected, &full)?;
            Ok(())
        })?;
        // The API path itself: the database lookup, per-shard searches, merge, one page.
        let mut page = None;
        let page_times = timed(settings.repeats, || {
            let results = runtime
                .block_on(search::run(
                    state,
                    user_id,
                    &q.text,
                    None,
                    search::PAGE_SIZE,
                ))
                .map_err(|e| anyhow!("query {}: {e}", q.id))?;
            page = Some(results);
            Ok(())
        })?;
        let page = page.ok_or_else(|| anyhow!("no page"))?;
        // The same page with the query compiled once for all shards (as `search_prepared`
        // allows) instead of once per shard: what the API would cost that way.
        let prepared_times = timed(settings.repeats, || {
            let prepared = PreparedQuery::new(&page_query)?;
            let mut hits = search_all(&selected, &prepared)?;
            hits.sort_by(|a, b| b.2.total_cmp(&a.2));
            hits.truncate(search::PAGE_SIZE);
            Ok(())
        })?;
        let prepare_times = timed(settings.repeats, || {
            PreparedQuery::new(&page_query)?;
            Ok(())
        })?;

        files.sort_by(|a, b| a.0.cmp(&b.0));
        let lines: usize = files.iter().map(|(_, n, _)| n).sum();
        let mut tsv = String::new();
        for (path, n, _) in &files {
            let _ = writeln!(tsv, "{path}\t{n}");
        }
        std::fs::write(settings.out_dir.join(format!("{}.tsv", q.id)), tsv)?;
        if page.total_files != files.len() {
            println!(
                "  note: {}: the results page counts {} files, the full count {}",
                q.id,
                page.total_files,
                files.len()
            );
        }
        let pair = |t: &[Duration]| {
            let (p50, p95) = stats_of(t);
            format!("{:.1} / {:.1}", ms(p50), ms(p95))
        };
        println!(
            "{:<10} {:<34} {:>15} {:>15} {:>15} {:>8} {:>9} {:>10}",
            q.id,
            q.text,
            pair(&page_times),
            pair(&prepared_times),
            pair(&full_times),
            files.len(),
            lines,
            candidates
        );
        out.push(json!({
            "id": q.id,
            "label": q.label,
            "query": q.text,
            "shards": selected.len(),
            "candidates": candidates,
            "files": files.len(),
            "lines": lines,
            "page_total_files": page.total_files,
            "page_results": page.results.len(),
            "page_ms": times_json(&page_times),
            "page_prepared_once_ms": times_json(&prepared_times),
            "prepare_once_ms": times_json(&prepare_times),
            "full_ms": times_json(&full_times),
        }));
    }
    Ok(json!({ "open_shards_ms": open_ms, "results": out }))
}

/// Runs `f` WARMUP times, then `repeats` times timed.
fn timed(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(repeats);
    for i in 0..WARMUP + repeats {
        let started = Instant::now();
        f()?;
        if i >= WARMUP {
            times.push(started.elapsed());
        }
    }
    Ok(times)
}

/// Searches `shards` with `query` on as many threads as there are cores, each taking a
/// contiguous chunk (as `search::run` does): every returned file as (repository/path,
/// matching lines, score).
fn search_all(
    shards: &[&(&Repo, Arc<Shard>)],
    query: &PreparedQuery,
) -> Result<Vec<(String, usize, f32)>> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let per_chunk = shards.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let tasks: Vec<_> = shards
            .chunks(per_chunk)
            .map(|chunk| {
                scope.spawn(move || -> Result<Vec<(String, usize, f32)>> {
                    let mut files = Vec::new();
                    for (repo, shard) in chunk {
                        let result = shard.search_prepared(query)?;
                        if result.truncated {
                            bail!("{}: the scan budget ran out", repo.name);
                        }
                        files.extend(result.files.into_iter().map(|f| {
                            (format!("{}/{}", repo.name, f.path), f.match_count, f.score)
                        }));
                    }
                    Ok(files)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(
                t.join()
                    .map_err(|_| anyhow!("a search thread panicked"))??,
            );
        }
        Ok(all)
    })
}

fn times_json(times: &[Duration]) -> Value {
    let (p50, p95) = stats_of(times);
    json!({
        "median": ms(p50),
        "p95": ms(p95),
        "min": times.iter().min().map_or(0.0, |t| ms(*t)),
        "max": times.iter().max().map_or(0.0, |t| ms(*t)),
        "runs": times.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
    })
}

/// Median (mean of the middle two for an even count) and p95 (nearest rank).
fn stats_of(times: &[Duration]) -> (Duration, Duration) {
    if times.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let mut t = times.to_vec();
    t.sort();
    let n = t.len();
    let median = (t[(n - 1) / 2] + t[n / 2]) / 2;
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    (median, t[rank - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or(String::new(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "cpu": cpu,
        "mem_gib": mem_kib as f64 / 1024.0 / 1024.0,
    })
}

/// A repository's shard under the data dir, as DESIGN.md documents the layout.
fn shard_dir(data: &Path, repo_id: i64) -> PathBuf {
    data.join("shards").join(repo_id.to_string())
}
