//! Attacks: hostile repositories and abusive requests meet a ceiling, never a crash.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    Backend, Options, TestApp, fake_bitbucket::FakeFile, free_port, indexed_user, poll_for,
    spawn_server_with, wait_until,
};
use crate::mcp::{call, client, failed, text, token};

on_both_databases!(
    a_tree_bomb_is_bounded_and_its_neighbours_build,
    a_build_that_kills_its_process_ends_failed_after_three_tries,
    one_megabyte_lines_give_small_answers,
    data_dir_is_private_and_a_new_token_rests_sealed,
    a_purge_leaves_no_deleted_file_open,
);

/// Runs git in `dir` with `input` on stdin; its stdout, trimmed.
fn git(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("git stdin");
    let out = child.wait_with_output().expect("git ends");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Ten levels of ten identical subtrees and a file on every level, written with
/// `git mktree`: a few kilobytes of git, more than 10^10 files.
fn tree_bomb(git_dir: &Path) -> String {
    let blob = git(git_dir, &["hash-object", "-w", "--stdin"], b"bomb text\n");
    let mut tree = git(
        git_dir,
        &["mktree"],
        format!("100644 blob {blob}\tf.txt\n").as_bytes(),
    );
    for _ in 0..10 {
        let mut listing = format!("100644 blob {blob}\tf.txt\n");
        for i in 0..10 {
            listing.push_str(&format!("040000 tree {tree}\td{i}\n"));
        }
        tree = git(git_dir, &["mktree"], listing.as_bytes());
    }
    tree
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Signs in a user of workspace "acme" and returns the browser and the listed repository
/// ids by slug (nothing is built yet).
async fn listed(app: &TestApp, slugs: &[&str]) -> (Client, Vec<i64>) {
    let user = app.fake.add_user("Attacked");
    app.fake.add_member("acme", &user, "member");
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let mut ids = Vec::new();
    for slug in slugs {
        let repo = poll_for(20, "the repository list loads", || async {
            app.repo_named(&browser, &format!("acme/{slug}")).await
        })
        .await;
        ids.push(repo["id"].as_i64().expect("id"));
    }
    (browser, ids)
}

/// Marks repositories selected and queued and stops the in-process app, so a child
/// `codelayer serve` on the same data picks the builds up at its start.
async fn hand_over_builds(app: &TestApp, ids: &[i64]) {
    for id in ids {
        sqlx::query("UPDATE repositories SET selected = 1, state = 'queued' WHERE id = $1")
            .bind(id)
            .execute(&app.state.db.pool)
            .await
            .expect("queue");
    }
    app.state.db.pool.close().await;
}

async fn row(db: &codelayer::db::Db, id: i64) -> (String, Option<String>, i64, String) {
    sqlx::query_as("SELECT state, error, files, skipped FROM repositories WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("row")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn a_tree_bomb_is_bounded_and_its_neighbours_build(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "bomb");
    let tree = tree_bomb(&app.fake.git_dir("acme", "bomb"));
    app.fake.commit_tree("acme", "bomb", "main", &tree);
    for slug in ["plain-a", "plain-b"] {
        app.fake.add_repo("acme", slug);
        let files: Vec<(String, FakeFile)> = (0..200)
            .map(|n| {
                (
                    format!("src/f{n}.rs"),
                    FakeFile::Text(format!("fn ordinary_{n}() {{}}\n")),
                )
            })
            .collect();
        let files: Vec<(&str, FakeFile)> =
            files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
        app.fake.commit("acme", slug, "main", &files);
    }
    let (_browser, ids) = listed(&app, &["bomb", "plain-a", "plain-b"]).await;
    hand_over_builds(&app, &ids).await;
    let (data, database_url) = app.reuse().expect("reuse");
    // Caps low enough for a debug build to reach them quickly, high enough to be real work.
    let child = spawn_server_with(
        &data,
        &database_url,
        &app.fake.url(),
        &[
            ("CODELAYER_MAX_TREE_ENTRIES", "200000"),
            ("CODELAYER_MAX_FILES", "10000"),
        ],
    );
    let pid = child.id();
    let db = codelayer::db::Db::connect(&database_url).await.expect("db");
    wait_until(
        240,
        "the bomb and its neighbours end their builds",
        || async {
            let mut done = true;
            for id in &ids {
                let (state, ..) = row(&db, *id).await;
                done &= state == "ready" || state == "failed";
            }
            done
        },
    )
    .await;
    let (state, error, files, skipped) = row(&db, ids[0]).await;
    assert_eq!(state, "ready", "{error:?}");
    assert_eq!(files, 10_000, "indexed up to the file limit");
    let stats: Value = serde_json::from_str(&skipped).expect("stats");
    assert_eq!(stats["stopped_at_entries"], 200_000, "{stats}");
    assert!(
        stats["skipped_over_file_limit"].as_u64() > Some(0),
        "{stats}"
    );
    for id in &ids[1..] {
        let (state, error, files, _) = row(&db, *id).await;
        assert_eq!((state.as_str(), files), ("ready", 200), "{error:?}");
    }
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    assert!(alive, "the server is still running");
    let peak = peak_rss_kib(pid);
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB is under 1 GiB");
    stop(child);
}

async fn a_build_that_kills_its_process_ends_failed_after_three_tries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "deadly");
    // Enough files that each build runs for a while, so it can be killed mid-way.
    let texts: Vec<(String, FakeFile)> = (0..6000)
        .map(|n| {
            (
                format!("dir{}/file{n}.txt", n % 50),
                FakeFile::Text(format!("DEADLY line {n}\n").repeat(20)),
            )
        })
        .collect();
    let files: Vec<(&str, FakeFile)> = texts.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
    app.fake.commit("acme", "deadly", "main", &files);
    let (_browser, ids) = listed(&app, &["deadly"]).await;
    let id = ids[0];
    hand_over_builds(&app, &ids).await;
    let (data, database_url) = app.reuse().expect("reuse");
    let db = codelayer::db::Db::connect(&database_url).await.expect("db");
    let env = [("CODELAYER_JOB_LEASE_SECS", "3")];

    // Three processes die while building (as an allocation failure would kill them) …
    for attempt in 1..=3 {
        let child = spawn_server_with(&data, &database_url, &app.fake.url(), &env);
        wait_until(120, &format!("attempt {attempt} is building"), || async {
            let attempts: Option<i64> =
                sqlx::query_scalar("SELECT attempts FROM jobs WHERE kind = 'sync_repository'")
                    .fetch_optional(&db.pool)
                    .await
                    .expect("jobs");
            let (state, ..) = row(&db, id).await;
            attempts == Some(attempt) && (state == "cloning" || state == "indexing")
        })
        .await;
        stop(child);
    }
    // … and the fourth does not run it again: the job and the repository end failed.
    let child = spawn_server_with(&data, &database_url, &app.fake.url(), &env);
    let pid = child.id();
    let error = poll_for(60, "the build is given up", || async {
        let (state, error, ..) = row(&db, id).await;
        (state == "failed").then_some(error)
    })
    .await
    .unwrap_or_default();
    assert_eq!(error, "stopped after 3 tries: the last run did not finish");
    let job: (String, i64) =
        sqlx::query_as("SELECT state, attempts FROM jobs WHERE kind = 'sync_repository'")
            .fetch_one(&db.pool)
            .await
            .expect("job");
    assert_eq!(job, ("failed".to_owned(), 3));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "the fourth process lives on"
    );
    let (state, ..) = row(&db, id).await;
    assert_eq!(state, "failed", "not claimed again after its lease");
    stop(child);
}

async fn one_megabyte_lines_give_small_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut minified = "x=1;".repeat(250_000);
    minified.replace_range(
        500_000..510_000,
        &format!("{:<10000}", "var NEEDLE_IN_MINIFIED=2;"),
    );
    let files = [
        ("dist/app.min.js", FakeFile::Text(minified.clone())),
        (
            "dist/other.min.js",
            FakeFile::Text(format!("{minified}\n{minified}\n")),
        ),
    ];
    let (browser, _) = indexed_user(&app, "Min", "acme", &["web"], &files[..1]).await;

    let started = Instant::now();
    let response = browser
        .get(app.at("/api/v1/search?q=NEEDLE_IN_MINIFIED"))
        .send()
        .await
        .expect("search");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.expect("body");
    assert!(body.len() < 4_000, "the answer is {} bytes", body.len());
    let answer: Value = serde_json::from_str(&body).expect("json");
    let line = &answer["results"][0]["matches"][0];
    let cut = line["text"].as_str().expect("text");
    assert!(cut.len() <= 310, "a cut line, {} bytes", cut.len());
    assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
    let [s, e] = [line["ranges"][0][0].as_u64(), line["ranges"][0][1].as_u64()]
        .map(|v| usize::try_from(v.expect("range")).expect("usize"));
    assert_eq!(&cut[s..e], "NEEDLE_IN_MINIFIED");
    assert!(started.elapsed() < Duration::from_secs(30));

    // The page and the file view stay bounded too.
    let page = app.page(&browser, "/search?q=NEEDLE_IN_MINIFIED").await;
    assert!(page.len() < 40_000, "results page is {} bytes", page.len());
    assert!(page.contains("NEEDLE_IN_MINIFIED"));
    let href = format!(
        "/repos/{}/blob/dist/app.min.js",
        answer["results"][0]["repository_id"]
    );
    let view = app.page(&browser, &href).await;
    assert!(view.len() < 100_000, "file view is {} bytes", view.len());
    assert!(
        view.contains("are cut here"),
        "the view says it cut the line"
    );

    // MCP answers are cut around the match as well.
    let (_, secret) = token(&browser, &app).await;
    let mcp = client(&app, &secret).await;
    let found = call(&mcp, "search_code", json!({"query": "NEEDLE_IN_MINIFIED"})).await;
    assert!(!failed(&found));
    let found = text(&found);
    assert!(found.contains("NEEDLE_IN_MINIFIED"));
    assert!(found.len() < 4_000, "MCP answer is {} bytes", found.len());
    // An 8 KB glob is refused at once, with a reason, before any path is looked at.
    let glob = format!("{}*.js", "a".repeat(8 * 1024));
    let refused = call(
        &mcp,
        "list_files",
        json!({"repository": "acme/web", "path_prefix": glob}),
    )
    .await;
    assert!(failed(&refused), "{}", text(&refused));
    assert!(text(&refused).contains("glob"), "{}", text(&refused));
    let listed = call(
        &mcp,
        "list_files",
        json!({"repository": "acme/web", "path_prefix": "**/*.min.js"}),
    )
    .await;
    assert!(
        text(&listed).contains("dist/app.min.js"),
        "{}",
        text(&listed)
    );
    let _ = mcp.cancel().await;
}

/// Every entry under `dir` with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        out.push((
            entry.path(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

async fn data_dir_is_private_and_a_new_token_rests_sealed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, ids) = indexed_user(
        &app,
        "Private",
        "acme",
        &["secret"],
        &[("a.txt", "PRIVATE_TEXT\n".into())],
    )
    .await;

    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::metadata(&app.data_path).expect("data dir");
    assert_eq!(root.permissions().mode() & 0o777, 0o700, "DATA_DIR itself");
    let mut all = Vec::new();
    modes(&app.data_path, &mut all);
    let open: Vec<_> = all
        .iter()
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
    // The walk saw what matters: the clone, the shard, and (SQLite) the database and its WAL.
    let names: Vec<String> = all.iter().map(|(p, ..)| p.display().to_string()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("git/{}.git/HEAD", ids[0])))
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains(&format!("shards/{}/", ids[0])))
    );
    if backend == Backend::Sqlite {
        assert!(names.iter().any(|n| n.ends_with("codelayer.db")));
        assert!(names.iter().any(|n| n.ends_with("codelayer.db-wal")));
    }

    // A token made on the account page is shown once; the session held it sealed only.
    let made = browser
        .post(app.at("/account/tokens"))
        .form(&[("name", "laptop")])
        .send()
        .await
        .expect("create");
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    // Between the form and the page that shows it, the token rests in the session: sealed.
    let resting: Vec<String> = sqlx::query_scalar("SELECT data FROM sessions")
        .fetch_all(&app.state.db.pool)
        .await
        .expect("sessions");
    assert!(
        resting.iter().any(|s| s.contains("new_token")),
        "{resting:?}"
    );
    assert!(
        resting.iter().all(|s| !s.contains("cl_")),
        "no plaintext token: {resting:?}"
    );
    let page = app.page(&browser, "/account").await;
    let plain = page
        .split(['<', '>', '"', ' ', '\n'])
        .find(|w| w.starts_with("cl_"))
        .expect("the new token is on the page")
        .to_owned();
    let works = Client::new()
        .get(app.at("/api/v1/repositories"))
        .bearer_auth(&plain)
        .send()
        .await
        .expect("api");
    assert_eq!(works.status(), StatusCode::OK, "the shown token works");
    let sessions: Vec<String> = sqlx::query_scalar("SELECT data FROM sessions")
        .fetch_all(&app.state.db.pool)
        .await
        .expect("sessions");
    assert!(!sessions.is_empty());
    assert!(
        sessions.iter().all(|s| !s.contains(&plain)),
        "no plaintext in sessions"
    );
    let tokens: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(&app.state.db.pool)
        .await
        .expect("tokens");
    assert!(tokens.iter().all(|t| !t.contains(&plain)));
    if backend == Backend::Sqlite {
        for (path, bytes) in app.files_on_disk() {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "the token's plaintext is in {}",
                path.display()
            );
        }
    }
}

/// Paths under `data` that this process holds open or mapped, and which of them are deleted.
fn held_under(data: &Path) -> (Vec<String>, Vec<String>) {
    let data = data.display().to_string();
    let mut held = Vec::new();
    for fd in std::fs::read_dir("/proc/self/fd").expect("fds").flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            held.push(target.display().to_string());
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    held.extend(
        maps.lines()
            .filter_map(|l| l.split_once('/').map(|(_, p)| format!("/{p}"))),
    );
    held.retain(|p| p.starts_with(&data));
    let deleted = held
        .iter()
        .filter(|p| p.ends_with("(deleted)"))
        .cloned()
        .collect();
    (held, deleted)
}

async fn a_purge_leaves_no_deleted_file_open(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Enough text that a regex without a literal is still scanning when the purge starts.
    let texts: Vec<(String, FakeFile)> = (0..300)
        .map(|n| {
            (
                format!("f{n}.txt"),
                FakeFile::Text(format!("HELD_OPEN_TEXT word{n} more words\n").repeat(1500)),
            )
        })
        .collect();
    let files: Vec<(&str, FakeFile)> = texts.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
    let (browser, _) = indexed_user(&app, "Leaver", "acme", &["one", "two"], &files).await;
    let found = app
        .get_json(&browser, "/api/v1/search?q=HELD_OPEN_TEXT&exact=1")
        .await;
    assert_eq!(found["total_files"], 600);
    let (held, _) = held_under(&app.data_path);
    assert!(
        held.iter().any(|p| p.contains("/shards/")),
        "searching opened the shards: {held:?}"
    );

    // A slow search is reading the shards while the workspace is disconnected.
    let slow = {
        let (client, url) = (
            browser.clone(),
            app.at("/api/v1/search?q=%2F%5Ba-z%5D%2B%5Cd%2B%5Cs%5Ba-z%5D%2Bz%2F"),
        );
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let workspaces = app.get_json(&browser, "/api/v1/workspaces").await;
    let id = crate::common::workspace(&workspaces, "acme")["id"].clone();
    let r = app
        .post(&browser, &format!("/api/v1/workspaces/{id}/disconnect"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The moment the files are gone, nothing of them may be held open or mapped.
    let mut checked = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let gone = std::fs::read_dir(app.data_path.join("shards")).map_or(true, |d| d.count() == 0);
        if gone {
            let (held, deleted) = held_under(&app.data_path);
            assert!(deleted.is_empty(), "deleted files still open: {deleted:?}");
            assert!(!held.iter().any(|p| p.contains("/shards/")), "{held:?}");
            checked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(checked, "the purge removed the shards");
    let status = slow.await.expect("task").expect("the slow search answered");
    assert!(
        status == StatusCode::OK || status == StatusCode::NOT_FOUND,
        "{status}"
    );
}

mod sqlite_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_gigabyte_of_zeros_is_viewed_without_inflating_it() {
        let app = TestApp::spawn(Backend::Sqlite).await;
        app.fake.add_workspace("acme", "Acme");
        app.fake.add_repo("acme", "zeros");
        let git_dir = app.fake.git_dir("acme", "zeros");
        // 1 GiB of zeros compresses to about a megabyte: cheap to send, costly to inflate.
        let zeros = Command::new("sh")
            .arg("-c")
            .arg("head -c 1073741824 /dev/zero | git hash-object -w --stdin")
            .current_dir(&git_dir)
            .output()
            .expect("hash-object");
        let zeros = String::from_utf8_lossy(&zeros.stdout).trim().to_owned();
        let readme = git(
            &git_dir,
            &["hash-object", "-w", "--stdin"],
            b"ZEROS_README\n",
        );
        let tree = git(
            &git_dir,
            &["mktree"],
            format!("100644 blob {zeros}\tzeros.bin\n100644 blob {readme}\tREADME.md\n").as_bytes(),
        );
        app.fake.commit_tree("acme", "zeros", "main", &tree);
        let (browser, ids) = listed(&app, &["zeros"]).await;
        let id = ids[0];
        hand_over_builds(&app, &ids).await;
        let (data, database_url) = app.reuse().expect("reuse");
        let port = free_port().to_string();
        let origin = format!("http://127.0.0.1:{port}");
        let child = spawn_server_with(
            &data,
            &database_url,
            &app.fake.url(),
            &[
                ("CODELAYER_LISTEN", &format!("127.0.0.1:{port}")),
                ("CODELAYER_PUBLIC_URL", &origin),
            ],
        );
        let pid = child.id();
        let db = codelayer::db::Db::connect(&database_url).await.expect("db");
        wait_until(300, "the zeros repository is built", || async {
            let (state, ..) = row(&db, id).await;
            state == "ready" || state == "failed"
        })
        .await;
        let (state, error, files, _) = row(&db, id).await;
        assert_eq!((state.as_str(), files), ("ready", 1), "{error:?}");
        let before = peak_rss_kib(pid);

        // Several people open the skipped file at once: the answer comes from its header.
        let views: Vec<_> = (0..6)
            .map(|_| {
                let (client, url) = (
                    browser.clone(),
                    format!("{origin}/repos/{id}/blob/zeros.bin"),
                );
                tokio::spawn(async move {
                    let r = client.get(url).send().await.expect("view");
                    (r.status(), r.text().await.unwrap_or_default())
                })
            })
            .collect();
        for view in views {
            let (status, page) = view.await.expect("task");
            assert_eq!(status, StatusCode::OK);
            assert!(page.contains("larger than the indexing limit"), "{page}");
            assert!(page.contains("1.1 GB"), "the size, from the header");
        }
        let readme = browser
            .get(format!("{origin}/repos/{id}/blob/README.md"))
            .send()
            .await
            .expect("readme");
        assert!(
            readme
                .text()
                .await
                .unwrap_or_default()
                .contains("ZEROS_README")
        );
        let after = peak_rss_kib(pid);
        assert!(
            after < before + 200 * 1024 && after < 1024 * 1024,
            "peak RSS went from {before} KiB to {after} KiB"
        );
        stop(child);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_regex_flood_does_not_starve_other_users_or_healthz() {
        let app = TestApp::start(
            Backend::Sqlite,
            Options {
                env: vec![
                    ("CODELAYER_SEARCH_DEADLINE_MS", "2000".to_owned()),
                    ("CODELAYER_SEARCH_CONCURRENCY", "3".to_owned()),
                    ("CODELAYER_SEARCH_PER_USER", "2".to_owned()),
                ],
                ..Options::default()
            },
        )
        .await;
        // The attacker's corpus: enough text that a regex without a literal scans for a while.
        let texts: Vec<(String, FakeFile)> = (0..400)
            .map(|n| {
                (
                    format!("f{n}.txt"),
                    FakeFile::Text(format!("word{n} and more words {n}\n").repeat(1500)),
                )
            })
            .collect();
        let files: Vec<(&str, FakeFile)> =
            texts.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
        let (attacker, _) = indexed_user(&app, "Attacker", "evil", &["big"], &files).await;
        let (victim, _) = indexed_user(
            &app,
            "Victim",
            "good",
            &["small"],
            &[("lib.rs", "fn victim_function() {}\n".into())],
        )
        .await;

        // Each request differs (a filter that excludes nothing), so none is a cached answer.
        let flood: Vec<_> = (0..16)
            .map(|n| {
                let (client, url) = (
                    attacker.clone(),
                    app.at(&format!(
                        "/api/v1/search?q=%2F%5Ba-z%5D%2B%5Cd%2B%5Cs%5Ba-z%5D%2Bz%2F+-path%3Anothing{n}"
                    )),
                );
                tokio::spawn(async move {
                    let started = Instant::now();
                    let r = client.get(url).send().await.expect("flood request");
                    (r.status(), r.json::<Value>().await.ok(), started.elapsed())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // While the flood runs: /healthz answers promptly, and the other user's search works.
        let mut worst_health = Duration::ZERO;
        for _ in 0..10 {
            let started = Instant::now();
            let r = Client::new()
                .get(app.at("/healthz"))
                .send()
                .await
                .expect("healthz");
            assert_eq!(r.status(), StatusCode::OK);
            worst_health = worst_health.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            worst_health < Duration::from_secs(1),
            "healthz took {worst_health:?}"
        );
        let started = Instant::now();
        let found = app.search(&victim, "victim_function").await;
        let victim_took = started.elapsed();
        assert_eq!(found["total_files"], 1, "{found}");
        assert_eq!(found["partial"], false);
        assert!(
            victim_took < Duration::from_secs(5),
            "the victim waited {victim_took:?}"
        );

        // The flood got answers or "busy", never an error, and each within its deadline.
        let (mut answered, mut busy) = (0, 0);
        for request in flood {
            let (status, body, took) = request.await.expect("task");
            match status {
                StatusCode::OK => {
                    answered += 1;
                    let body = body.expect("json");
                    assert!(body["results"].is_array(), "{body}");
                }
                StatusCode::SERVICE_UNAVAILABLE => busy += 1,
                other => panic!("flood request answered {other}"),
            }
            assert!(
                took < Duration::from_secs(15),
                "a flood request took {took:?}"
            );
        }
        assert!(answered >= 2, "{answered} answered, {busy} busy");
    }
}
