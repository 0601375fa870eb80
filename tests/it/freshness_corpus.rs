//! The freshness figure of BENCHMARKS.md, measured on the benchmark corpus: every corpus
//! repository in one workspace, built and then kept fresh by a `codelayer serve` process with
//! default settings; pushes to a fixed sample of them, each timed from the push until search
//! finds it; and the git and REST requests Bitbucket saw meanwhile, per hour.
//!
//! Ignored (it takes many minutes); `FRESHNESS=1 bash bench/run.sh` runs it. Environment:
//! `CORPUS` (/tmp/corpus, built by make_corpus.sh), `CODELAYER_BENCH_BIN` (the server binary,
//! e.g. target/release/codelayer; the debug one otherwise), `BENCH_OUT` (target/bench-corpus:
//! freshness.json and the server's log), `FRESHNESS_PUSHES` (20), `FRESHNESS_SPREAD_SECS`
//! (150: the pushes are spaced evenly over this).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{
    Backend, TestApp, fake_bitbucket::FakeBitbucket, free_port, poll_for, server_command,
};

const WORKSPACE: &str = "corpus";
/// Which repositories get a push: the same ones in every run on the same corpus.
const SEED: u64 = 20_261_202;
/// A push not searchable after this long counts as missed.
const CEILING: Duration = Duration::from_secs(600);
const SEARCH_EVERY: Duration = Duration::from_millis(250);

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn env_number(key: &str, default: u64) -> u64 {
    std::env::var(key).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number"))
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The child server, stopped however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The corpus's repositories (directories holding a `.git`) by slug: a Bitbucket slug keeps
/// only `[a-z0-9._-]`, so the `+` of a crate's build suffix (`+1.9.7`) becomes `-`.
fn corpus_repositories(repos: &Path) -> Vec<(String, PathBuf)> {
    let entries = std::fs::read_dir(repos).unwrap_or_else(|e| {
        panic!(
            "no corpus at {} ({e}): build it with ../shared/bench/make_corpus.sh or set CORPUS",
            repos.display()
        )
    });
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(".git").exists())
        .filter_map(|p| {
            let slug = p.file_name()?.to_str()?.replace('+', "-");
            Some((slug, p))
        })
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no git repositories under {}",
        repos.display()
    );
    found
}

/// Nearest-rank percentile of sorted seconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Repository states from the server's API: (ready slugs, failed slugs, all).
async fn states(browser: &Client, origin: &str) -> (Vec<String>, Vec<String>, usize) {
    let list: Vec<Value> = browser
        .get(format!("{origin}/api/v1/repositories"))
        .send()
        .await
        .expect("repositories")
        .json()
        .await
        .expect("json");
    let prefix = format!("{WORKSPACE}/");
    let slugs = |state: &str| {
        list.iter()
            .filter(|r| r["state"] == state)
            .filter_map(|r| r["full_name"].as_str()?.strip_prefix(prefix.as_str()))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    (slugs("ready"), slugs("failed"), list.len())
}

/// Pushes a file holding a unique token to `slug` at `at`, then searches for the token every
/// 250 ms; the seconds from the push until it is found, `None` past the ceiling.
async fn push_and_find(
    fake: FakeBitbucket,
    browser: Client,
    origin: String,
    n: usize,
    slug: String,
    at: Instant,
) -> Option<f64> {
    tokio::time::sleep_until(at.into()).await;
    let token = format!(
        "freshness_probe_{n}_{:08x}",
        rand::rng().random_range(0..u32::MAX)
    );
    fake.add_file(
        WORKSPACE,
        &slug,
        "main",
        &format!("freshness_probe_{n}.rs"),
        &format!("pub fn {token}() {{}}\n"),
    );
    let pushed = Instant::now();
    // The repository filter keeps each probe to one shard, so the probes themselves do not
    // load the server much.
    let query = format!("repo:{WORKSPACE}/{slug} {token}");
    while pushed.elapsed() < CEILING {
        let answer = browser
            .get(format!("{origin}/api/v1/search"))
            .query(&[("q", &query)])
            .send()
            .await;
        // Anything but a 200 with a result (a busy slot, say) is "not yet".
        if let Ok(r) = answer
            && r.status() == StatusCode::OK
            && let Ok(body) = r.json::<Value>().await
            && body["results"].as_array().is_some_and(|a| !a.is_empty())
        {
            let secs = pushed.elapsed().as_secs_f64();
            eprintln!("  push {n} to {slug}: searchable after {secs:.1} s");
            return Some(secs);
        }
        tokio::time::sleep(SEARCH_EVERY).await;
    }
    eprintln!("  push {n} to {slug}: MISSED (not searchable after {CEILING:?})");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long: FRESHNESS=1 bash bench/run.sh"]
async fn push_to_searchable_on_the_corpus() {
    let corpus = PathBuf::from(env_or("CORPUS", "/tmp/corpus"));
    let out = PathBuf::from(env_or(
        "BENCH_OUT",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-corpus"),
    ));
    let binary = PathBuf::from(env_or(
        "CODELAYER_BENCH_BIN",
        env!("CARGO_BIN_EXE_codelayer"),
    ));
    let pushes = usize::try_from(env_number("FRESHNESS_PUSHES", 20)).expect("pushes");
    let spread = Duration::from_secs(env_number("FRESHNESS_SPREAD_SECS", 150));
    let repos = corpus_repositories(&corpus.join("repos"));
    std::fs::create_dir_all(&out).expect("BENCH_OUT");
    let load_at_start = load_average();
    eprintln!(
        "{} repositories from {}; server {}; load average {load_at_start}",
        repos.len(),
        corpus.display(),
        binary.display()
    );

    // The in-process app signs the user in and lists the workspace (its settings are the
    // defaults too, bar test timeouts); then it stops and the child does everything else.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let settings = json!({
        "poll_secs": app.state.config.poll_interval.as_secs(),
        "git_requests_per_hour": app.state.config.git_requests_per_hour,
        "poll_share_percent": app.state.config.poll_share_percent,
        "list_secs": app.state.config.list_interval.as_secs(),
        "workers": app.state.config.workers,
        "database": "sqlite",
    });
    let user = app.fake.add_user("Bench");
    app.fake.add_workspace(WORKSPACE, "Corpus");
    app.fake.add_member(WORKSPACE, &user, "member");
    for (slug, path) in &repos {
        app.fake.add_repo_from(WORKSPACE, slug, path);
    }
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let ids = app.wait_listed(&browser, repos.len(), 300).await;
    app.state.db.pool.close().await;

    let origin = format!("http://127.0.0.1:{}", free_port());
    let log = File::create(out.join("freshness-server.log")).expect("server log");
    let _server = Server(
        server_command(&binary, &app.data_path, &app.database_url, &app.fake.url())
            .env("CODELAYER_LISTEN", origin.trim_start_matches("http://"))
            .env("CODELAYER_PUBLIC_URL", &origin)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("codelayer serve starts"),
    );
    poll_for(60, "the server is ready", || async {
        let r = reqwest::get(format!("{origin}/readyz")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Select everything, then wait for every build to end.
    let started = Instant::now();
    let selected = browser
        .post(format!("{origin}/api/v1/repositories/index"))
        .header(header::ORIGIN, &origin)
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .expect("index");
    assert_eq!(selected.status(), StatusCode::OK, "select all");
    let mut report = started;
    let (ready, failed) = loop {
        let (ready, failed, all) = states(&browser, &origin).await;
        if ready.len() + failed.len() == all {
            break (ready, failed);
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "builds still running after an hour: {} of {all} ready, {} failed",
            ready.len(),
            failed.len()
        );
        if report.elapsed() >= Duration::from_secs(60) {
            report = Instant::now();
            eprintln!(
                "  {:.0} s: {} of {all} ready, {} failed",
                started.elapsed().as_secs_f64(),
                ready.len(),
                failed.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let initial_build = started.elapsed().as_secs_f64();
    eprintln!(
        "initial build: {initial_build:.0} s ({} ready, failed: {failed:?})",
        ready.len()
    );

    // Pushes to a fixed sample, spaced evenly; each is searched for until found.
    let ready_at = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let chosen = rand::seq::index::sample(&mut rng, ready.len(), pushes.min(ready.len()));
    let mut probes = tokio::task::JoinSet::new();
    for (n, i) in chosen.iter().enumerate() {
        let at = ready_at + spread.mul_f64(n as f64 / chosen.len() as f64);
        let (slug, fake) = (ready[i].clone(), app.fake.clone());
        let (browser, origin) = (browser.clone(), origin.clone());
        probes.spawn(async move {
            let lag = push_and_find(fake, browser, origin, n, slug.clone(), at).await;
            (n, slug, lag)
        });
    }
    let mut lags = probes.join_all().await;
    lags.sort_by_key(|(n, ..)| *n);
    let ended = Instant::now();

    // What Bitbucket saw from all-ready to the last answer.
    let window = (ended - ready_at).as_secs_f64();
    let in_window = |log: Vec<(String, Instant)>| -> Vec<String> {
        log.into_iter()
            .filter(|(_, at)| *at >= ready_at && *at <= ended)
            .map(|(path, _)| path)
            .collect()
    };
    let requests = in_window(app.fake.request_log());
    let authorized = in_window(app.fake.authorized_log());
    let count = |paths: &[String], pick: &dyn Fn(&str) -> bool| {
        paths.iter().filter(|p| pick(p.as_str())).count()
    };
    let refs = count(&requests, &|p| p.ends_with("/info/refs"));
    let refs_with_token = count(&authorized, &|p| p.ends_with("/info/refs"));
    let packs = count(&requests, &|p| p.ends_with("/git-upload-pack"));
    let rest = count(&requests, &|p| p.starts_with("/2.0/"));
    let oauth = count(&requests, &|p| p.starts_with("/site/oauth2/"));
    let per_hour = |n: usize| (n as f64 * 3600.0 / window).round();

    let mut found: Vec<f64> = lags.iter().filter_map(|(.., lag)| *lag).collect();
    found.sort_by(f64::total_cmp);
    let misses = lags.len() - found.len();
    let (median, p90, max) = if found.is_empty() {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        (
            (found[(found.len() - 1) / 2] + found[found.len() / 2]) / 2.0,
            percentile(&found, 0.9),
            found[found.len() - 1],
        )
    };
    let load_at_end = load_average();
    let result = json!({
        "repositories": repos.len(),
        "ready": ready.len(),
        "failed": failed,
        "server_binary": binary.display().to_string(),
        "settings": settings,
        "initial_build_secs": initial_build,
        "pushes": lags.len(),
        "spread_secs": spread.as_secs(),
        "push_to_searchable_secs": {
            "median": median, "p90": p90, "max": max, "misses": misses,
            "ceiling": CEILING.as_secs(),
            "samples": lags.iter().map(|(_, slug, lag)| json!({"repository": slug, "secs": lag})).collect::<Vec<_>>(),
        },
        "window_secs": window,
        "requests_in_window": {
            "info_refs": refs, "info_refs_with_token": refs_with_token,
            "upload_pack": packs, "rest": rest, "oauth": oauth,
        },
        "per_hour": {
            "git": per_hour(refs + packs), "info_refs": per_hour(refs),
            "upload_pack": per_hour(packs), "rest": per_hour(rest), "oauth": per_hour(oauth),
        },
        "load_average": {"start": load_at_start, "end": load_at_end},
    });
    let file = out.join("freshness.json");
    std::fs::write(&file, serde_json::to_string_pretty(&result).expect("json")).expect("write");
    println!(
        "\nfreshness on the corpus: {} repositories ({} ready, {} failed), server {}\n\
         settings: {settings}\n\
         initial build (select all to all ready): {initial_build:.0} s\n\
         push -> searchable over {} pushes in {} s: median {median:.1} s, p90 {p90:.1} s, \
         max {max:.1} s, misses {misses} (ceiling {} s)\n\
         requests over {window:.0} s from all-ready: {refs} info/refs ({refs_with_token} with \
         the token), {packs} upload-pack, {rest} REST, {oauth} OAuth\n\
         per hour: git {} (info/refs {}, upload-pack {}), REST {}, OAuth {}\n\
         load average: {load_at_start} at the start, {load_at_end} at the end\n\
         written to {}",
        repos.len(),
        ready.len(),
        failed.len(),
        binary.display(),
        lags.len(),
        spread.as_secs(),
        CEILING.as_secs(),
        per_hour(refs + packs),
        per_hour(refs),
        per_hour(packs),
        per_hour(rest),
        per_hour(oauth),
        file.display(),
    );
    assert_eq!(misses, 0, "every push became searchable");
}
