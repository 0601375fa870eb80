//! Step 6 of the journey (issue 6): disconnecting is permanent and verifiable. Canary strings
//! that search found before a disconnect are nowhere under DATA_DIR afterwards — not in the
//! database, its WAL, shards, clones or tmp, and not inside the decompressed objects of any
//! bare repository left; other workspaces and users keep theirs. A purge interrupted between
//! its steps finishes after a restart, and nobody can disconnect someone else's data.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::common::{
    Backend, Options, TestApp, clone_dir,
    fake_bitbucket::{FakeFile, FakeUser},
    location, poll_for, shard_dir, spawn_server, wait_until, workspace,
};
use codelayer::jobs::Job;
use reqwest::{Client, StatusCode, cookie::CookieStore, header};
use serde_json::{Value, json};

on_both_databases!(
    disconnecting_a_workspace_deletes_its_data_and_spares_the_other,
    disconnecting_bitbucket_deletes_everything_of_the_user,
    a_purge_interrupted_between_steps_finishes_after_a_restart,
    nobody_can_disconnect_what_is_not_theirs,
    a_build_running_at_disconnect_leaves_nothing_behind,
);

/// One workspace of the set-up: its indexed repository `code-<canary>` holds the canary in a
/// file's text, in a file's path and in its own slug (so the database holds it too); `idle`
/// is listed but never indexed.
struct Canary {
    slug: String,
    workspace_id: i64,
    repo_id: i64,
    full_name: String,
    canary: String,
}

fn random_canary() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("canary{hex}")
}

/// Arranges workspaces on the fake for `user`, signs in with `browser`, links them, indexes
/// each canary repository and checks that search finds every canary in its own repository.
async fn index_canaries(
    app: &TestApp,
    user: &FakeUser,
    browser: &Client,
    slugs: &[&str],
) -> Vec<Canary> {
    let mut canaries = Vec::new();
    for slug in slugs {
        let canary = random_canary();
        app.fake.add_workspace(slug, &format!("{slug} team"));
        app.fake.add_member(slug, user, "member");
        let repo = format!("code-{canary}");
        app.fake.add_repo(slug, &repo);
        let key_path = format!("keys/{canary}.txt");
        app.fake.commit(
            slug,
            &repo,
            "main",
            &[
                ("README.md", "Notes for the team.\n".into()),
                (
                    "docs/secret.txt",
                    FakeFile::Text(format!("the secret word is {canary}\n")),
                ),
                (&key_path, "a key file\n".into()),
            ],
        );
        app.fake.add_repo(slug, "idle");
        canaries.push((slug.to_string(), canary));
    }
    app.sign_in(browser, user).await;
    let workspaces = app.get_json(browser, "/api/v1/workspaces").await;
    let mut out = Vec::new();
    for (slug, canary) in canaries {
        let workspace_id = workspace(&workspaces, &slug)["id"].as_i64().expect("id");
        let linked = app
            .post(browser, &format!("/api/v1/workspaces/{workspace_id}/link"))
            .await;
        assert_eq!(linked.status(), StatusCode::OK, "link {slug}");
        let full_name = format!("{slug}/code-{canary}");
        let repo = poll_for(30, &format!("{full_name} is listed"), || async {
            app.repo_named(browser, &full_name).await
        })
        .await;
        out.push(Canary {
            slug,
            workspace_id,
            repo_id: repo["id"].as_i64().expect("id"),
            full_name,
            canary,
        });
    }
    let ids: Vec<i64> = out.iter().map(|c| c.repo_id).collect();
    let index = browser
        .post(app.at("/api/v1/repositories/index"))
        .header(header::ORIGIN, &app.url)
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .expect("index");
    assert_eq!(index.status(), StatusCode::OK);
    for c in &out {
        wait_until(60, &format!("{} is ready", c.full_name), || async {
            app.repo_named(browser, &c.full_name)
                .await
                .is_some_and(|r| r["state"] == "ready")
        })
        .await;
        assert_found(browser, app, c).await;
    }
    out
}

/// Search finds the canary, and only in its own repository.
async fn assert_found(browser: &Client, app: &TestApp, c: &Canary) {
    let found = app.search(browser, &c.canary).await;
    assert!(
        found["total_files"].as_u64().expect("total") >= 1,
        "{} is found: {found}",
        c.canary
    );
    for hit in found["results"].as_array().expect("results") {
        assert_eq!(hit["repository"], c.full_name, "{found}");
    }
}

async fn assert_not_found(browser: &Client, app: &TestApp, canary: &str) {
    let found = app.search(browser, canary).await;
    assert_eq!(found["total_files"], 0, "{canary} is not found: {found}");
    assert_eq!(found["results"], json!([]), "{found}");
}

async fn count(app: &TestApp, sql: &str, id: i64) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits until no purge job is left (a finished job leaves the table; a failed one stays).
async fn wait_for_purges(app: &TestApp) {
    wait_until(60, "every purge job has finished", || async {
        let left: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT dedupe_key, state, last_error FROM jobs \
             WHERE kind IN ('purge_workspace', 'purge_user')",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .expect("jobs");
        assert!(
            left.iter().all(|(_, state, _)| state != "failed"),
            "a purge failed: {left:?}"
        );
        left.is_empty()
    })
    .await;
}

/// Every file under the data dir that holds one of `needles`, with the needle it holds.
fn leftovers(app: &TestApp, needles: &[&str]) -> Vec<(String, PathBuf)> {
    let files = app.files_on_disk();
    if app.database_url.starts_with("sqlite:") {
        assert!(
            files.iter().any(|(p, _)| p.ends_with("codelayer.db")),
            "the scan reads the database file"
        );
    }
    let mut found = Vec::new();
    for (path, bytes) in &files {
        for needle in needles.iter().filter(|n| !n.is_empty()) {
            if holds(bytes, needle) {
                found.push(((*needle).to_owned(), path.clone()));
            }
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every bare repository under git/ with its objects decompressed: a raw scan cannot see
/// into zlib-compressed objects, `git cat-file --batch-all-objects --batch` can.
fn git_objects(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(data.join("git")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .map(|dir| {
            let out = std::process::Command::new("git")
                .args(["cat-file", "--batch-all-objects", "--batch"])
                .env("GIT_DIR", &dir)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "git cat-file in {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            (dir, out.stdout)
        })
        .collect()
}

/// Names in one directory of the data dir (git/, shards/, tmp/).
fn names_in(data: &Path, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join(dir))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Both scans see a canary that is still there: they would catch a leftover.
fn assert_on_disk(app: &TestApp, c: &Canary) {
    assert!(
        leftovers(app, &[&c.canary])
            .iter()
            .any(|(_, p)| p.starts_with(shard_dir(&app.data_path, c.repo_id))),
        "the raw scan sees {} in its shard",
        c.canary
    );
    let objects = git_objects(&app.data_path);
    let (_, own) = objects
        .iter()
        .find(|(dir, _)| *dir == clone_dir(&app.data_path, c.repo_id))
        .expect("the clone is there");
    assert!(holds(own, &c.canary), "git objects hold {}", c.canary);
}

/// The end state after `gone`'s workspace was disconnected while `kept`'s stayed.
async fn assert_workspace_purged(app: &TestApp, browser: &Client, gone: &Canary, kept: &Canary) {
    assert_not_found(browser, app, &gone.canary).await;
    assert_found(browser, app, kept).await;

    let list = app.get_json(browser, "/api/v1/workspaces").await;
    let ws = workspace(&list, &gone.slug);
    assert_eq!(ws["status"], "inactive", "{ws}");
    assert_eq!(ws["reason"], "not linked", "{ws}");
    assert_eq!(ws["linked"], false, "{ws}");
    assert_eq!(ws["repository_count"], 0, "{ws}");
    assert_eq!(workspace(&list, &kept.slug)["status"], "active");
    let repos = app.get_json(browser, "/api/v1/repositories").await;
    assert!(
        repos
            .as_array()
            .expect("list")
            .iter()
            .all(|r| r["workspace"] != gone.slug.as_str()),
        "{repos}"
    );
    assert!(app.repo_named(browser, &kept.full_name).await.is_some());

    // Rows: none of the workspace's repositories or jobs are left.
    assert_eq!(
        count(
            app,
            "SELECT COUNT(*) FROM repositories WHERE workspace_id = $1",
            gone.workspace_id
        )
        .await,
        0
    );
    let pattern = format!("%{}%", gone.canary);
    let named: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM repositories WHERE slug LIKE $1 OR full_name LIKE $1",
    )
    .bind(&pattern)
    .fetch_one(&app.state.db.pool)
    .await
    .expect("count");
    assert_eq!(named, 0);
    let keys: Vec<String> = sqlx::query_scalar("SELECT dedupe_key FROM jobs")
        .fetch_all(&app.state.db.pool)
        .await
        .expect("jobs");
    for key in [
        format!("load_repositories:{}", gone.workspace_id),
        format!("purge_workspace:{}", gone.workspace_id),
        format!("sync_repository:{}", gone.repo_id),
    ] {
        assert!(!keys.contains(&key), "job {key} is left: {keys:?}");
    }

    // Files: its clone and shard went as whole directories; nothing is left in tmp/.
    let data = &app.data_path;
    assert!(!clone_dir(data, gone.repo_id).exists(), "clone is gone");
    assert!(!shard_dir(data, gone.repo_id).exists(), "shard is gone");
    assert!(clone_dir(data, kept.repo_id).exists());
    assert!(shard_dir(data, kept.repo_id).exists());
    assert_eq!(names_in(data, "tmp"), Vec::<String>::new(), "tmp/ is empty");

    // Bytes: no file under the data dir holds the canary (database and WAL included) …
    let left = leftovers(app, &[&gone.canary]);
    assert!(left.is_empty(), "{} left on disk: {left:?}", gone.canary);
    // … nor any remaining repository's decompressed objects.
    let objects = git_objects(data);
    assert!(!objects.is_empty(), "the kept clone is scanned");
    for (dir, bytes) in &objects {
        assert!(
            !holds(bytes, &gone.canary),
            "{} inside the objects of {}",
            gone.canary,
            dir.display()
        );
    }
    assert_on_disk(app, kept);
}

/// Linking the disconnected workspace again starts from nothing: its repositories load
/// again as new, unselected rows with no files.
async fn assert_relink_starts_from_nothing(app: &TestApp, browser: &Client, gone: &Canary) {
    let linked = app
        .post(
            browser,
            &format!("/api/v1/workspaces/{}/link", gone.workspace_id),
        )
        .await;
    assert_eq!(linked.status(), StatusCode::OK);
    let again = poll_for(30, "the repositories load again", || async {
        let list = app.get_json(browser, "/api/v1/repositories").await;
        let mine: Vec<Value> = list
            .as_array()
            .expect("list")
            .iter()
            .filter(|r| r["workspace"] == gone.slug.as_str())
            .cloned()
            .collect();
        (mine.len() == 2).then_some(mine)
    })
    .await;
    for repo in &again {
        assert_eq!(repo["state"], "available", "{repo}");
        assert_eq!(repo["selected"], false, "{repo}");
        assert_eq!(repo["indexed_commit"], Value::Null, "{repo}");
        let id = repo["id"].as_i64().expect("id");
        assert_ne!(id, gone.repo_id, "a new row, not the old one");
        assert!(!clone_dir(&app.data_path, id).exists());
        assert!(!shard_dir(&app.data_path, id).exists());
    }
    assert_not_found(browser, app, &gone.canary).await;
}

/// Two workspaces of one user, each with an indexed canary repository.
async fn two_workspaces(app: &TestApp, browser: &Client) -> (FakeUser, Canary, Canary) {
    let user = app.fake.add_user("Alice Example");
    let mut canaries = index_canaries(app, &user, browser, &["alpha", "bravo"]).await;
    let kept = canaries.pop().expect("bravo");
    let gone = canaries.pop().expect("alpha");
    (user, gone, kept)
}

async fn disconnecting_a_workspace_deletes_its_data_and_spares_the_other(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = app.browser();
    let (_, gone, kept) = two_workspaces(&app, &browser).await;
    assert_on_disk(&app, &gone);

    let confirm = browser
        .get(app.at(&format!("/workspaces/{}/disconnect", gone.workspace_id)))
        .send()
        .await
        .expect("confirmation");
    assert_eq!(confirm.status(), StatusCode::OK);
    let page = confirm.text().await.expect("body");
    for listed in [
        gone.full_name.as_str(),
        "alpha/idle",
        "Disconnect and delete",
    ] {
        assert!(page.contains(listed), "the confirmation lists {listed}");
    }
    assert!(!page.contains(&kept.full_name));

    let done = app
        .post(
            &browser,
            &format!("/workspaces/{}/disconnect", gone.workspace_id),
        )
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/workspaces");
    wait_for_purges(&app).await;

    assert_workspace_purged(&app, &browser, &gone, &kept).await;
    assert_relink_starts_from_nothing(&app, &browser, &gone).await;
}

/// A browser whose cookies the test can read (to replay the session cookie later).
fn browser_with_jar(app: &TestApp) -> (Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let mut headers = header::HeaderMap::new();
    headers.insert(header::ORIGIN, app.url.parse().expect("origin"));
    let client = Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client");
    (client, jar)
}

/// GET /api/v1/workspaces with only this Cookie header or bearer token.
async fn status_with(app: &TestApp, name: header::HeaderName, value: &str) -> StatusCode {
    Client::new()
        .get(app.at("/api/v1/workspaces"))
        .header(name, value)
        .send()
        .await
        .expect("get")
        .status()
}

async fn disconnecting_bitbucket_deletes_everything_of_the_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, jar) = browser_with_jar(&app);
    let (alice, a, b) = two_workspaces(&app, &browser).await;
    // A bystander whose data must stay, and whose canary proves the scans can see one.
    let carol = app.fake.add_user("Carol Bystander");
    let carol_browser = app.browser();
    let carol_ws = index_canaries(&app, &carol, &carol_browser, &["charlie"])
        .await
        .pop()
        .expect("charlie");

    // Alice also signed in on a second device and made a personal access token.
    let phone = app.browser();
    app.sign_in(&phone, &alice).await;
    let made = browser
        .post(app.at("/api/v1/account/tokens"))
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .expect("token");
    assert_eq!(made.status(), StatusCode::CREATED);
    let pat = made.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cookie = jar
        .cookies(&app.url.parse().expect("url"))
        .expect("a session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let bearer = format!("Bearer {pat}");
    assert_eq!(
        status_with(&app, header::COOKIE, &cookie).await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(&app, header::AUTHORIZATION, &bearer).await,
        StatusCode::OK
    );

    // What the database holds of her beyond the canaries: these bytes must go too.
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE bitbucket_uuid = $1")
        .bind(&alice.uuid)
        .fetch_one(&app.state.db.pool)
        .await
        .expect("user");
    let (access, refresh): (String, String) = sqlx::query_as(
        "SELECT access_token, refresh_token FROM bitbucket_connections WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&app.state.db.pool)
    .await
    .expect("connection");
    let sessions: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&app.state.db.pool)
        .await
        .expect("sessions");
    assert!(sessions.len() >= 2, "two devices: {sessions:?}");
    let token_hash: String =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&app.state.db.pool)
            .await
            .expect("token hash");
    let repo_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&app.state.db.pool)
        .await
        .expect("repositories");
    assert_eq!(
        repo_ids.len(),
        4,
        "two workspaces with two repositories each"
    );
    assert_on_disk(&app, &a);
    assert_on_disk(&app, &b);

    let confirm = browser
        .get(app.at("/account/disconnect"))
        .send()
        .await
        .expect("confirmation");
    assert_eq!(confirm.status(), StatusCode::OK);
    let page = confirm.text().await.expect("body");
    for listed in ["alpha team", "bravo team", "1 personal access token"] {
        assert!(page.contains(listed), "the confirmation lists {listed}");
    }
    assert!(!page.contains("charlie"));

    let done = app.post(&browser, "/account/disconnect").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let home = app.page(&browser, &location(&done)).await;
    assert!(
        home.contains("Sign in with Bitbucket"),
        "signed out: {home}"
    );
    // Signed out everywhere at once, before the purge job has even run.
    for client in [&browser, &phone] {
        let r = client
            .get(app.at("/api/v1/workspaces"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        status_with(&app, header::COOKIE, &cookie).await,
        StatusCode::UNAUTHORIZED,
        "the old session cookie no longer works"
    );
    assert_eq!(
        status_with(&app, header::AUTHORIZATION, &bearer).await,
        StatusCode::UNAUTHORIZED,
        "the personal access token no longer works"
    );
    wait_for_purges(&app).await;

    // Rows: the user and everything hanging off her.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM users WHERE id = $1", user_id).await,
        0
    );
    for table in [
        "bitbucket_connections",
        "sessions",
        "api_tokens",
        "workspaces",
        "repositories",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1");
        assert_eq!(count(&app, &sql, user_id).await, 0, "{table}");
    }
    let keys: Vec<String> = sqlx::query_scalar("SELECT dedupe_key FROM jobs")
        .fetch_all(&app.state.db.pool)
        .await
        .expect("jobs");
    let mut hers = vec![
        format!("refresh_workspaces:{user_id}"),
        format!("purge_user:{user_id}"),
    ];
    for ws in [a.workspace_id, b.workspace_id] {
        hers.push(format!("load_repositories:{ws}"));
        hers.push(format!("purge_workspace:{ws}"));
    }
    hers.extend(repo_ids.iter().map(|id| format!("sync_repository:{id}")));
    for key in &hers {
        assert!(!keys.contains(key), "job {key} is left: {keys:?}");
    }

    // Bytes: no canary, identity, token, session id or token hash of hers under DATA_DIR.
    let issued = app.fake.issued_tokens();
    let mut needles: Vec<&str> = vec![
        a.canary.as_str(),
        b.canary.as_str(),
        alice.uuid.as_str(),
        alice.account_id.as_str(),
        access.as_str(),
        refresh.as_str(),
        token_hash.as_str(),
        pat.as_str(),
    ];
    needles.extend(sessions.iter().map(String::as_str));
    needles.extend(issued.iter().map(String::as_str));
    let left = leftovers(&app, &needles);
    assert!(left.is_empty(), "left on disk: {left:?}");
    // The same scan sees the bystander (her uuid lives only in the SQLite file here).
    assert_on_disk(&app, &carol_ws);
    if backend == Backend::Sqlite {
        assert!(!leftovers(&app, &[&carol.uuid]).is_empty());
    }

    // git/ and shards/ hold only the bystander's repository; nothing of Alice decompresses.
    let data = &app.data_path;
    assert_eq!(
        names_in(data, "git"),
        vec![format!("{}.git", carol_ws.repo_id)]
    );
    assert_eq!(names_in(data, "shards"), vec![carol_ws.repo_id.to_string()]);
    for (dir, bytes) in git_objects(data) {
        for canary in [&a.canary, &b.canary] {
            assert!(!holds(&bytes, canary), "{canary} in {}", dir.display());
        }
    }
    // Search serves none of it: not to her old sessions, nor to anyone else (and below, not
    // to her when she comes back).
    for client in [&browser, &phone] {
        let r = client
            .get(app.at("/api/v1/search"))
            .query(&[("q", &a.canary)])
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_not_found(&carol_browser, &app, &a.canary).await;
    assert_found(&carol_browser, &app, &carol_ws).await;

    // Coming back needs Bitbucket's consent again and starts from nothing.
    let again = app.browser();
    app.sign_in(&again, &alice).await;
    let new_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE bitbucket_uuid = $1")
        .bind(&alice.uuid)
        .fetch_one(&app.state.db.pool)
        .await
        .expect("user");
    assert_ne!(new_id, user_id);
    let list = app.get_json(&again, "/api/v1/workspaces").await;
    for slug in ["alpha", "bravo"] {
        assert_eq!(workspace(&list, slug)["reason"], "not linked");
    }
    assert_eq!(
        app.get_json(&again, "/api/v1/repositories").await,
        json!([])
    );
    assert_not_found(&again, &app, &a.canary).await;
}

async fn a_purge_interrupted_between_steps_finishes_after_a_restart(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let browser = first.browser();
    let (_, gone, kept) = two_workspaces(&first, &browser).await;

    // A process claimed the purge and died half-way: its lease still holds …
    let key = format!("purge_workspace:{}", gone.workspace_id);
    let payload = serde_json::to_string(&Job::PurgeWorkspace {
        workspace_id: crate::common::job_payload_id(gone.workspace_id),
    })
    .expect("json");
    let now = codelayer::db::now();
    sqlx::query(
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_after, lease_until, created_at) \
         VALUES ('purge_workspace', $1, $2, 'running', 1, 1000, $3, $4, $3)",
    )
    .bind(&payload)
    .bind(&key)
    .bind(now)
    .bind(now + 3600)
    .execute(&first.state.db.pool)
    .await
    .expect("claimed job");
    // … the mark step happened (through the page) …
    let done = first
        .post(
            &browser,
            &format!("/workspaces/{}/disconnect", gone.workspace_id),
        )
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    // … and it was in the files step: the clone was deleted, the shard and rows not yet.
    std::fs::remove_dir_all(clone_dir(&first.data_path, gone.repo_id)).expect("delete clone");
    assert!(shard_dir(&first.data_path, gone.repo_id).exists());
    assert_eq!(
        count(
            &first,
            "SELECT COUNT(*) FROM repositories WHERE workspace_id = $1",
            gone.workspace_id
        )
        .await,
        2,
        "the rows are still there"
    );
    // From the mark on, the workspace is invisible and search excludes it.
    let list = first.get_json(&browser, "/api/v1/workspaces").await;
    assert_eq!(workspace(&list, &gone.slug)["status"], "inactive");
    assert_eq!(workspace(&list, &gone.slug)["reason"], "disconnecting");
    assert!(first.repo_named(&browser, &gone.full_name).await.is_none());
    assert_not_found(&browser, &first, &gone.canary).await;
    assert_found(&browser, &first, &kept).await;

    // The process is gone for good and its lease runs out; a restarted `codelayer serve`
    // takes the job again and finishes it.
    let reuse = first.reuse();
    let (data, database_url) = reuse.clone().expect("reuse");
    let fake = first.fake.clone();
    first.state.db.pool.close().await;
    let db = codelayer::db::Db::connect(&database_url).await.expect("db");
    sqlx::query("UPDATE jobs SET lease_until = $1 WHERE dedupe_key = $2")
        .bind(codelayer::db::now() - 1)
        .bind(&key)
        .execute(&db.pool)
        .await
        .expect("lease runs out");
    let mut child = spawn_server(&data, &database_url, &fake.url());
    wait_until(60, "the restarted process finishes the purge", || async {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE dedupe_key = $1")
            .bind(&key)
            .fetch_one(&db.pool)
            .await
            .expect("jobs");
        left == 0
    })
    .await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    db.pool.close().await;

    let second = TestApp::start(
        backend,
        Options {
            fake: Some(fake),
            reuse,
            ..Options::default()
        },
    )
    .await;
    assert_workspace_purged(&second, &browser, &gone, &kept).await;

    // Running the purge twice is harmless: directly, and as a queued job.
    codelayer::purge::workspace(
        &second.state,
        crate::common::job_payload_id(gone.workspace_id),
    )
    .await
    .expect("a second run succeeds");
    second
        .state
        .enqueue(&Job::PurgeWorkspace {
            workspace_id: crate::common::job_payload_id(gone.workspace_id),
        })
        .await
        .expect("enqueue");
    wait_for_purges(&second).await;
    assert_workspace_purged(&second, &browser, &gone, &kept).await;
    assert_relink_starts_from_nothing(&second, &browser, &gone).await;
    drop(second);
    drop(first);
}

async fn nobody_can_disconnect_what_is_not_theirs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.fake.add_user("Alice Example");
    let alice_browser = app.browser();
    let mine = index_canaries(&app, &alice, &alice_browser, &["alpha"])
        .await
        .pop()
        .expect("alpha");
    let bob = app.fake.add_user("Bob Other");
    let bob_browser = app.browser();
    let his = index_canaries(&app, &bob, &bob_browser, &["bravo"])
        .await
        .pop()
        .expect("bravo");

    // Bob guesses Alice's workspace id: page and API answer 404.
    let page = format!("/workspaces/{}/disconnect", mine.workspace_id);
    let api = format!("/api/v1/workspaces/{}/disconnect", mine.workspace_id);
    let confirm = bob_browser.get(app.at(&page)).send().await.expect("get");
    assert_eq!(confirm.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.post(&bob_browser, &page).await.status(),
        StatusCode::NOT_FOUND
    );
    let refused = app.post(&bob_browser, &api).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    // Another site cannot make Alice's own browser disconnect anything.
    for path in [
        page.as_str(),
        api.as_str(),
        "/account/disconnect",
        "/api/v1/account/disconnect",
    ] {
        let forged = alice_browser
            .post(app.at(path))
            .header(header::ORIGIN, "https://evil.example")
            .send()
            .await
            .expect("post");
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{path}");
    }

    // Bob's own disconnect (the only account he can name) takes only his data.
    let gone = app.post(&bob_browser, "/account/disconnect").await;
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    wait_for_purges(&app).await;
    let r = bob_browser
        .get(app.at("/api/v1/workspaces"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let left = leftovers(&app, &[&his.canary, &bob.uuid]);
    assert!(left.is_empty(), "Bob's data left: {left:?}");

    // Alice is unaffected.
    let list = app.get_json(&alice_browser, "/api/v1/workspaces").await;
    let ws = workspace(&list, "alpha");
    assert_eq!(ws["status"], "active", "{ws}");
    assert_eq!(ws["repository_count"], 2, "{ws}");
    let repo = app
        .repo_named(&alice_browser, &mine.full_name)
        .await
        .expect("still listed");
    assert_eq!(repo["state"], "ready");
    assert_found(&alice_browser, &app, &mine).await;
    assert_on_disk(&app, &mine);
}

/// A re-sync stalled in the middle: it has claimed its job and asked Bitbucket to renew an
/// expired access token, which takes two seconds — before it opens its clone.
struct StalledBuild {
    /// A second canary, in a commit only this build fetches.
    canary: String,
    pack_path: String,
    packs_before: usize,
}

const TOKEN_PATH: &str = "/site/oauth2/access_token";

async fn start_stalled_build(app: &TestApp, browser: &Client, c: &Canary) -> StalledBuild {
    let canary = random_canary();
    let slug = c.full_name.split_once('/').expect("full name").1;
    app.fake.commit(
        &c.slug,
        slug,
        "main",
        &[(
            "docs/later.txt",
            FakeFile::Text(format!("added {canary}\n")),
        )],
    );
    sqlx::query(
        "UPDATE bitbucket_connections SET expires_at = 0 \
         WHERE user_id = (SELECT user_id FROM repositories WHERE id = $1)",
    )
    .bind(c.repo_id)
    .execute(&app.state.db.pool)
    .await
    .expect("expire the access token");
    app.fake
        .set_latency(TOKEN_PATH, std::time::Duration::from_secs(2));
    let pack_path = format!("/{}/{slug}.git/git-upload-pack", c.slug);
    let packs_before = app.fake.requests(&pack_path);
    let renewals = app.fake.requests(TOKEN_PATH);
    let sync = app
        .post(browser, &format!("/api/v1/repositories/{}/sync", c.repo_id))
        .await;
    assert_eq!(sync.status(), StatusCode::OK);
    wait_until(30, "the build is renewing its token", || async {
        app.fake.requests(TOKEN_PATH) > renewals
    })
    .await;
    StalledBuild {
        canary,
        pack_path,
        packs_before,
    }
}

/// Waits until the stalled build has fetched, every purge has finished and no job is left;
/// then a moment longer, for a build that would still write after the purge.
async fn wait_until_settled(app: &TestApp, build: &StalledBuild) {
    wait_until(30, "the stalled build has fetched", || async {
        app.fake.requests(&build.pack_path) > build.packs_before
    })
    .await;
    wait_for_purges(app).await;
    wait_until(60, "every job has finished", || async {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&app.state.db.pool)
            .await
            .expect("jobs");
        left == 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

async fn a_build_running_at_disconnect_leaves_nothing_behind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = app.browser();
    let (_, gone, kept) = two_workspaces(&app, &browser).await;

    // Disconnect a workspace while one of its repositories is being built.
    let build = start_stalled_build(&app, &browser, &gone).await;
    let done = app
        .post(
            &browser,
            &format!("/api/v1/workspaces/{}/disconnect", gone.workspace_id),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    wait_until_settled(&app, &build).await;
    assert_workspace_purged(&app, &browser, &gone, &kept).await;
    let left = leftovers(&app, &[&build.canary]);
    assert!(left.is_empty(), "left on disk: {left:?}");

    // Disconnect Bitbucket while the other one is being built.
    let build = start_stalled_build(&app, &browser, &kept).await;
    let done = app.post(&browser, "/account/disconnect").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    wait_until_settled(&app, &build).await;
    assert_eq!(names_in(&app.data_path, "git"), Vec::<String>::new());
    assert_eq!(names_in(&app.data_path, "shards"), Vec::<String>::new());
    let left = leftovers(&app, &[&build.canary, &kept.canary, &gone.canary]);
    assert!(left.is_empty(), "left on disk: {left:?}");
    let repos: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repositories")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("count");
    assert_eq!(repos, 0);
}
