//! Step 4 of the journey: read-only clones, shards built from git trees, live states,
//! re-sync, hostile content and crashes.

use std::time::Duration;

use crate::common::{
    Backend, Options, TestApp, clone_dir, fake_bitbucket::FakeFile, poll_for, shard_dir,
    spawn_server, wait_until,
};
use codelayer::index::{Pattern, Shard, ShardQuery};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

on_both_databases!(
    hostile_repository_is_indexed_safely,
    sync_now_follows_new_commits_and_skips_unchanged_heads,
    revoked_token_fails_clearly_and_redirects_get_no_credentials,
    killed_mid_indexing_restarts_and_finishes,
    a_refused_clone_says_why,
);

/// Bitbucket answering git with 403: the row says it in words a person can act on.
async fn a_refused_clone_says_why(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "locked");
    app.fake
        .commit("acme", "locked", "main", &[("a.txt", "x\n".into())]);
    let (browser, ids) = one_workspace_existing(&app, &["locked"]).await;
    app.fake.fail_next("/acme/locked.git", 403, 10, None);
    browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("index");
    let failed = wait_for_state(&browser, &app, ids[0], "failed").await;
    assert_eq!(
        failed["error"],
        "Bitbucket refused access to this repository — your account may have lost read access to it",
        "{failed}"
    );
}

async fn repo_id(app: &TestApp, slug: &str) -> i64 {
    poll_for(10, "the repository list loads", || async {
        sqlx::query_scalar("SELECT id FROM repositories WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&app.state.db.pool)
            .await
            .expect("query")
    })
    .await
}

async fn wait_for_state(browser: &Client, app: &TestApp, id: i64, wanted: &str) -> Value {
    poll_for(60, &format!("repository {id} is {wanted}"), || async {
        let repo = app.repo_json(browser, id).await;
        (repo["state"] == wanted).then_some(repo)
    })
    .await
}

fn contains(shard: &Shard, text: &str) -> bool {
    let query = ShardQuery {
        must: vec![Pattern {
            regex: regex::escape(text),
            case_sensitive: true,
            literal: true,
        }],
        must_not: vec![],
        path_include: vec![],
        path_exclude: vec![],
        languages: vec![],
        exclude_languages: vec![],
        max_matches_per_file: 10,
        max_files: 0,
        ..ShardQuery::default()
    };
    shard.search(&query).expect("search").total_files > 0
}

fn shard(app: &TestApp, id: i64) -> Shard {
    Shard::open(&shard_dir(&app.data_path, id)).expect("shard opens")
}

fn hostile_files() -> Vec<(&'static str, FakeFile)> {
    let mut big = "large file text LARGEMARKER\n".repeat(80_000);
    big.truncate(2 * 1024 * 1024 + 10);
    vec![
        (
            "README.md",
            "# Welcome\nThe SEARCHABLE_README line.\n".into(),
        ),
        (
            "src/deep/nested/module/lib.rs",
            "pub fn nested_function() -> u32 {\n    42\n}\n".into(),
        ),
        (
            "tools/build.py",
            "def build_all():\n    return 'PYTHON_MARKER'\n".into(),
        ),
        (
            "assets/logo.bin",
            FakeFile::Bytes(b"BINARYMARKER\0\x01\x02\x03".to_vec()),
        ),
        ("data/huge.txt", FakeFile::Text(big)),
        ("links/passwd", FakeFile::Symlink("/etc/passwd".into())),
        ("links/escape", FakeFile::Symlink("../../secret".into())),
        (
            "latin1.txt",
            FakeFile::Bytes(b"caf\xe9 INVALID_UTF8_MARKER \xff\xfe end\n".to_vec()),
        ),
    ]
}

async fn hostile_repository_is_indexed_safely(backend: Backend) {
    let logs = crate::common::captured_logs();
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "hostile");
    app.fake
        .commit("acme", "hostile", "trunk", &hostile_files());
    app.fake.add_repo("acme", "empty");
    let (browser, ids) = one_workspace_existing(&app, &["hostile", "empty"]).await;
    let page = app.page(&browser, "/repositories").await;
    assert!(page.contains("Create knowledge layer"));

    let built = browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("index");
    assert_eq!(built.status(), StatusCode::OK);
    let hostile = wait_for_state(&browser, &app, ids[0], "ready").await;
    let empty = wait_for_state(&browser, &app, ids[1], "ready").await;
    assert_eq!(empty["files"], 0);
    assert_eq!(
        empty["indexed_commit"],
        Value::Null,
        "an empty repository has no commit"
    );
    assert_eq!(hostile["selected"], true);
    assert_eq!(
        hostile["indexed_commit"].as_str().expect("commit").len(),
        40
    );
    assert_eq!(hostile["error"], Value::Null);

    let shard = shard(&app, ids[0]);
    for found in [
        "SEARCHABLE_README",
        "nested_function",
        "PYTHON_MARKER",
        "INVALID_UTF8_MARKER",
        "/etc/passwd",
        "../../secret",
    ] {
        assert!(contains(&shard, found), "{found} is indexed");
    }
    for never in ["root:x:0:0", "BINARYMARKER", "LARGEMARKER"] {
        assert!(!contains(&shard, never), "{never} must not be indexed");
    }
    let skipped: String = sqlx::query_scalar("SELECT skipped FROM repositories WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&app.state.db.pool)
        .await
        .expect("stats");
    let skipped: Value = serde_json::from_str(&skipped).expect("json stats");
    assert_eq!(skipped["skipped_binary"], 1, "{skipped}");
    assert_eq!(skipped["skipped_large"], 1, "{skipped}");
    assert_eq!(skipped["symlinks"], 2, "{skipped}");
    assert_eq!(
        hostile["files"], 6,
        "README, lib.rs, build.py, latin1 and two symlinks"
    );
    let page = app.page(&browser, "/repositories").await;
    assert!(
        page.contains("skipped: 1 binary, 1 too large"),
        "the page reports what was skipped"
    );

    // A bare clone, no work tree, and no token anywhere on disk or in the log.
    let git_dir = clone_dir(&app.data_path, ids[0]);
    assert!(git_dir.join("HEAD").exists() && !git_dir.join(".git").exists());
    let config = std::fs::read_to_string(git_dir.join("config")).expect("config");
    let tokens = app.fake.issued_tokens();
    for token in &tokens {
        assert!(
            !config.contains(token.as_str()),
            "token in the clone's config"
        );
    }
    for (path, bytes) in app.files_on_disk() {
        for token in tokens.iter().filter(|t| t.len() > 100) {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "token in {}",
                path.display()
            );
        }
    }
    let text = logs.text();
    assert!(text.contains("repository indexed"));
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "token in the log");
    }
    assert!(
        std::fs::read_dir(app.data_path.join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "tmp/ is empty after builds"
    );
}

/// Like `one_workspace`, for a workspace the test has filled already.
async fn one_workspace_existing(app: &TestApp, repos: &[&str]) -> (Client, Vec<i64>) {
    let user = app.fake.add_user("Indexer");
    app.fake.add_member("acme", &user, "member");
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let mut ids = Vec::new();
    for slug in repos {
        ids.push(repo_id(app, slug).await);
    }
    (browser, ids)
}

async fn sync_now_follows_new_commits_and_skips_unchanged_heads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "living");
    app.fake.commit(
        "acme",
        "living",
        "main",
        &[("a.txt", "OLD_TEXT here\n".into())],
    );
    let (browser, ids) = one_workspace_existing(&app, &["living"]).await;
    let id = ids[0];
    browser
        .post(app.at("/repositories/index"))
        .form(&[("ids", id.to_string())])
        .send()
        .await
        .expect("form");
    let first = wait_for_state(&browser, &app, id, "ready").await;
    assert!(contains(&shard(&app, id), "OLD_TEXT"));

    let second_commit = app.fake.commit(
        "acme",
        "living",
        "main",
        &[("b.txt", "NEW_TEXT there\n".into())],
    );
    let synced = app
        .post(&browser, &format!("/repositories/{id}/sync"))
        .await;
    assert_eq!(synced.status(), StatusCode::SEE_OTHER);
    let now = poll_for(60, "the new commit is indexed", || async {
        let repo = app.repo_json(&browser, id).await;
        (repo["indexed_commit"] == second_commit.as_str() && repo["state"] == "ready")
            .then_some(repo)
    })
    .await;
    assert_ne!(first["indexed_commit"], now["indexed_commit"]);
    let shard_now = shard(&app, id);
    assert!(!contains(&shard_now, "OLD_TEXT"), "old text is gone");
    assert!(contains(&shard_now, "NEW_TEXT"), "new text is found");

    // Unchanged head: fetched, but nothing rebuilt.
    let shard_path = shard_dir(&app.data_path, id);
    std::fs::write(shard_path.join("untouched-marker"), b"x").expect("marker");
    let indexed_at: Option<i64> =
        sqlx::query_scalar("SELECT indexed_at FROM repositories WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db.pool)
            .await
            .expect("indexed_at");
    let fetches = app.fake.requests("/acme/living.git/git-upload-pack");
    let api = app
        .post(&browser, &format!("/api/v1/repositories/{id}/sync"))
        .await;
    assert_eq!(api.status(), StatusCode::OK);
    wait_until(30, "the sync ran", || async {
        app.fake.requests("/acme/living.git/git-upload-pack") > fetches
            && app.repo_json(&browser, id).await["state"] == "ready"
    })
    .await;
    assert!(
        shard_path.join("untouched-marker").exists(),
        "the shard was not rebuilt"
    );
    let after: Option<i64> =
        sqlx::query_scalar("SELECT indexed_at FROM repositories WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db.pool)
            .await
            .expect("indexed_at");
    assert_eq!(indexed_at, after);
}

async fn revoked_token_fails_clearly_and_redirects_get_no_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Revokee");
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_member("acme", &user, "member");
    app.fake.add_repo("acme", "repo");
    app.fake
        .commit("acme", "repo", "main", &[("a.txt", "hello\n".into())]);
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let id = repo_id(&app, "repo").await;
    app.fake.revoke_user(&user);
    browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .expect("index");
    let failed = wait_for_state(&browser, &app, id, "failed").await;
    let reason = failed["error"].as_str().expect("reason");
    assert!(reason.contains("sign in again"), "{reason}");

    // A git host that redirects to the real one: libgit2 must not follow, so nothing
    // (and no token) reaches the host it was redirected to.
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let redirect_url = format!("http://{}", redirector.local_addr().expect("addr"));
    let fake = crate::common::fake_bitbucket::FakeBitbucket::start().await;
    // Another host name for the same server: libgit2 only refuses off-site redirects.
    let target = fake.url().replace("127.0.0.1", "localhost");
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let to = format!("{target}{uri}");
            async move { axum::response::Redirect::permanent(&to) }
        });
        axum::serve(redirector, app).await.expect("redirector");
    });
    let other = TestApp::start(
        backend,
        Options {
            env: vec![("BITBUCKET_GIT_URL", redirect_url)],
            fake: Some(fake),
            ..Options::default()
        },
    )
    .await;
    other.fake.add_workspace("acme", "Acme");
    other.fake.add_repo("acme", "moved");
    other
        .fake
        .commit("acme", "moved", "main", &[("a.txt", "hi\n".into())]);
    let (b2, ids) = one_workspace_existing(&other, &["moved"]).await;
    let before = other.fake.requests("/acme/moved.git");
    b2.post(other.at("/api/v1/repositories/index"))
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("index");
    let failed = wait_for_state(&b2, &other, ids[0], "failed").await;
    assert!(
        failed["error"].as_str().expect("reason").contains("git"),
        "{failed}"
    );
    assert_eq!(
        other.fake.requests("/acme/moved.git"),
        before,
        "the redirect was not followed"
    );
    let page = other.page(&b2, "/repositories").await;
    assert!(page.contains("Retry"), "failed rows offer Retry");
}

async fn killed_mid_indexing_restarts_and_finishes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_repo("acme", "big");
    app.fake.commit(
        "acme",
        "big",
        "main",
        &[("first.txt", "FIRST_VERSION\n".into())],
    );
    let (browser, ids) = one_workspace_existing(&app, &["big"]).await;
    let id = ids[0];
    browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .expect("index");
    wait_for_state(&browser, &app, id, "ready").await;

    // A second commit large enough that indexing takes a while.
    let texts: Vec<(String, FakeFile)> = (0..6000)
        .map(|n| {
            (
                format!("dir{}/file{n}.txt", n % 50),
                FakeFile::Text(format!("SECOND_VERSION line {n}\n").repeat(20)),
            )
        })
        .collect();
    let files: Vec<(&str, FakeFile)> = texts.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
    let head = app.fake.commit("acme", "big", "main", &files);
    sqlx::query("UPDATE repositories SET state = 'queued' WHERE id = $1")
        .bind(id)
        .execute(&app.state.db.pool)
        .await
        .expect("queue");
    let (data, database_url) = app.reuse().expect("reuse");
    let fake_url = app.fake.url();
    app.state.db.pool.close().await;

    // A real `codelayer serve` process resumes the queued build; kill -9 it mid-indexing.
    let mut child = spawn_server(&data, &database_url, &fake_url);
    let db = codelayer::db::Db::connect(&database_url).await.expect("db");
    wait_until(120, "the child is indexing", || async {
        let state: String = sqlx::query_scalar("SELECT state FROM repositories WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .expect("state");
        state == "indexing"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(
        contains(&shard(&app, id), "FIRST_VERSION"),
        "the previous shard keeps serving after the crash"
    );

    let mut child = spawn_server(&data, &database_url, &fake_url);
    // Ready with the new commit, and the build's job done and gone (the repository turns
    // ready just before its job is removed; the schedules may queue a list refresh since).
    wait_until(120, "the restarted process finishes the build", || async {
        let row: (String, Option<String>, i64) = sqlx::query_as(
            "SELECT state, indexed_commit, \
               (SELECT COUNT(*) FROM jobs WHERE kind = 'sync_repository') \
             FROM repositories WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("row");
        row.0 == "ready" && row.1.as_deref() == Some(head.as_str()) && row.2 == 0
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let shard_now = shard(&app, id);
    assert!(contains(&shard_now, "SECOND_VERSION"));
    assert!(!contains(&shard_now, "FIRST_VERSION"));
    let files: i64 = sqlx::query_scalar("SELECT files FROM repositories WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("files");
    assert_eq!(files, 6000);
    assert!(
        std::fs::read_dir(data.join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "tmp/ emptied"
    );
    let shards: Vec<_> = std::fs::read_dir(data.join("shards"))
        .expect("shards")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        shards,
        vec![std::ffi::OsString::from(id.to_string())],
        "no orphan or duplicate shards"
    );
}
