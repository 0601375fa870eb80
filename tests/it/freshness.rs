//! Fresh within a poll interval of a push, without webhooks: head checks over git (ref
//! advertisements only), the sync of what moved, healing failures, the repository-list
//! schedule, and freshness in the API, on the page, in search results and MCP answers.

use std::time::{Duration, Instant};

use crate::common::{
    Backend, Options, TestApp,
    fake_bitbucket::{FakeBitbucket, FakeFile},
    indexed_user, poll_for, wait_until,
};
use crate::mcp::{call, client, text, token};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

on_both_databases!(
    a_push_becomes_searchable_by_itself_and_every_answer_says_how_fresh,
    an_unchanged_repository_is_never_fetched,
    a_hundred_repositories_cost_one_ref_request_each_per_interval,
    a_git_429_slows_the_poller_and_fails_nothing,
    a_failed_first_build_heals_by_itself,
    a_sync_asked_for_during_a_build_runs_once_more_after_it,
    repositories_that_appear_move_or_vanish_are_noticed_by_the_list_schedule,
);

async fn app_polling_every(backend: Backend, secs: u64, more: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![("CODELAYER_POLL_SECS", secs.to_string())];
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    TestApp::start(
        backend,
        Options {
            env,
            ..Options::default()
        },
    )
    .await
}

fn file(text: &str) -> Vec<(&'static str, FakeFile)> {
    vec![("src/lib.rs", FakeFile::Text(text.to_owned()))]
}

/// Arrival times of the requests with credentials whose path starts with `prefix`, at or
/// after `since`: git operations (a fetch also sends an anonymous request first, answered
/// 401; a head check sends its token up front).
fn operations(app: &TestApp, prefix: &str, since: Instant) -> Vec<Instant> {
    app.fake
        .authorized_log()
        .into_iter()
        .filter(|(p, t)| p.starts_with(prefix) && *t >= since)
        .map(|(_, t)| t)
        .collect()
}

/// Arrival times of requests whose path starts with `prefix`, at or after `since`.
fn times(app: &TestApp, prefix: &str, since: Instant) -> Vec<Instant> {
    app.fake
        .request_times(prefix)
        .into_iter()
        .filter(|t| *t >= since)
        .collect()
}

async fn hits(app: &TestApp, browser: &Client, q: &str) -> Vec<Value> {
    app.search(browser, q).await["results"]
        .as_array()
        .expect("results")
        .clone()
}

async fn a_push_becomes_searchable_by_itself_and_every_answer_says_how_fresh(backend: Backend) {
    let interval = 2;
    let app = app_polling_every(backend, interval, &[]).await;
    let (browser, ids) =
        indexed_user(&app, "Pat", "acme", &["svc"], &file("fn old_marker() {}\n")).await;
    let id = ids[0];

    // A push, and nothing else: no click, no webhook.
    let pushed = Instant::now();
    let second = app
        .fake
        .commit("acme", "svc", "main", &file("fn middle_marker() {}\n"));
    poll_for(interval + 20, "the push is searchable", || async {
        let found = hits(&app, &browser, "middle_marker").await.len() == 1;
        let gone = hits(&app, &browser, "old_marker").await.is_empty();
        (found && gone).then_some(())
    })
    .await;
    let lag = pushed.elapsed();
    eprintln!("push to searchable: {lag:?} (poll interval {interval} s)");
    // Interval plus the build of a one-file repository (well under 8 s even on a busy CI).
    assert!(
        lag < Duration::from_secs(interval + 8),
        "searchable after {lag:?}"
    );
    let repo = app.repo_json(&browser, id).await;
    assert_eq!(repo["indexed_commit"], second.as_str());
    assert_eq!(repo["head_commit"], second.as_str());
    assert_eq!(repo["bitbucket_ahead"], false);

    // Now a push whose fetch is slow: the lag must be visible while it lasts.
    app.fake.set_latency(
        &FakeBitbucket::git_pack_path("acme", "svc"),
        Duration::from_secs(6),
    );
    let third = app
        .fake
        .commit("acme", "svc", "main", &file("fn new_marker() {}\n"));
    let lagging = poll_for(interval + 10, "the API shows Bitbucket ahead", || async {
        let repo = app.repo_json(&browser, id).await;
        (repo["head_commit"] == third.as_str()).then_some(repo)
    })
    .await;
    assert_eq!(lagging["indexed_commit"], second.as_str(), "{lagging}");
    assert_eq!(lagging["bitbucket_ahead"], true, "{lagging}");
    assert!(lagging["ahead_since"].is_string(), "{lagging}");
    assert!(lagging["checked_at"].is_string(), "{lagging}");
    let stale = hits(&app, &browser, "middle_marker").await;
    assert_eq!(stale.len(), 1, "the old shard still serves");
    assert_eq!(stale[0]["indexed_commit"], second.as_str());
    assert_eq!(stale[0]["bitbucket_ahead"], true);
    let page = app.page(&browser, "/repositories").await;
    assert!(page.contains("Bitbucket is ahead since"), "{page}");
    assert!(page.contains(&third[..7]), "the page names the new head");
    assert!(
        page.contains(&format!("indexed {}", &second[..7])),
        "{page}"
    );
    let (_, pat) = token(&browser, &app).await;
    let mcp = client(&app, &pat).await;
    let found = text(&call(&mcp, "search_code", json!({"query": "middle_marker"})).await);
    assert!(found.contains(&second[..12]), "{found}");
    assert!(found.contains("has moved past it"), "{found}");
    let read = text(
        &call(
            &mcp,
            "read_file",
            json!({"repository": "acme/svc", "path": "src/lib.rs"}),
        )
        .await,
    );
    assert!(read.contains("middle_marker"), "{read}");
    assert!(read.contains(&second[..12]), "{read}");
    assert!(read.contains("has moved past it"), "{read}");

    // And once the update is in, every answer says so.
    poll_for(30, "the slow update is searchable", || async {
        (hits(&app, &browser, "new_marker").await.len() == 1).then_some(())
    })
    .await;
    let fresh = app.repo_json(&browser, id).await;
    assert_eq!(fresh["indexed_commit"], third.as_str());
    assert_eq!(fresh["bitbucket_ahead"], false);
    assert!(fresh["ahead_since"].is_null(), "{fresh}");
    let result = &hits(&app, &browser, "new_marker").await[0];
    assert_eq!(result["indexed_commit"], third.as_str());
    assert_eq!(result["bitbucket_ahead"], false);
    let page = app.page(&browser, "/repositories").await;
    assert!(page.contains("up to date"), "{page}");
    assert!(!page.contains("Bitbucket is ahead since"), "{page}");
    let read = text(
        &call(
            &mcp,
            "read_file",
            json!({"repository": "acme/svc", "path": "src/lib.rs"}),
        )
        .await,
    );
    assert!(read.contains(&third[..12]), "{read}");
    assert!(read.contains("up to date"), "{read}");
    assert!(!read.contains("has moved past it"), "{read}");
    mcp.cancel().await.expect("MCP client closes");
}

async fn an_unchanged_repository_is_never_fetched(backend: Backend) {
    let app = app_polling_every(backend, 1, &[]).await;
    let (browser, ids) =
        indexed_user(&app, "Una", "acme", &["calm"], &file("fn calm() {}\n")).await;
    let (refs, packs) = (
        FakeBitbucket::git_refs_path("acme", "calm"),
        FakeBitbucket::git_pack_path("acme", "calm"),
    );
    let since = Instant::now();
    let packs_before = app.fake.requests(&packs);
    let checked_before = app.repo_json(&browser, ids[0]).await["checked_at"].clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let checks = operations(&app, &refs, since).len();
    let requests = times(&app, &refs, since).len();
    assert!(
        (3..=7).contains(&checks),
        "{checks} ref advertisements in 5 s at a 1 s interval"
    );
    assert!(
        requests <= checks + 1,
        "one request a check: {requests} requests for {checks} checks"
    );
    assert_eq!(
        app.fake.requests(&packs),
        packs_before,
        "nothing was fetched"
    );
    let repo = app.repo_json(&browser, ids[0]).await;
    assert_ne!(
        repo["checked_at"], checked_before,
        "the checks are recorded"
    );
    assert_eq!(repo["bitbucket_ahead"], false);

    // The same poller does fetch once the head moves.
    app.fake
        .commit("acme", "calm", "main", &file("fn moved() {}\n"));
    wait_until(15, "the moved head is fetched", || async {
        app.fake.requests(&packs) > packs_before
    })
    .await;
}

async fn a_hundred_repositories_cost_one_ref_request_each_per_interval(backend: Backend) {
    // 100 repositories at 60 s make at most ~100 ref requests a minute: measured here at a
    // 10 s interval over two intervals (at most ~200), scaled down to keep the test short.
    let interval = 10;
    let app = app_polling_every(backend, interval, &[]).await;
    let user = app.fake.add_user("Hun");
    app.fake.add_workspace("many", "Many");
    app.fake.add_member("many", &user, "member");
    for n in 0..100 {
        let slug = format!("r{n:03}");
        app.fake.add_repo("many", &slug);
        app.fake.commit("many", &slug, "main", &file("fn x() {}\n"));
    }
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let ids = app.wait_listed(&browser, 100, 30).await;
    let r = browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status(), StatusCode::OK);
    // 100 builds on a shared 2-core machine: minutes under load, not seconds.
    wait_until(300, "100 repositories ready", || async {
        app.repositories(&browser)
            .await
            .iter()
            .all(|r| r["state"] == "ready")
    })
    .await;
    let started = Instant::now();
    let window = Duration::from_secs(2 * interval);
    tokio::time::sleep(window).await;
    let log: Vec<(String, Instant)> = app
        .fake
        .request_log()
        .into_iter()
        .filter(|(_, at)| *at >= started && *at < started + window)
        .collect();
    let requests = log
        .iter()
        .filter(|(p, _)| p.ends_with("/info/refs"))
        .count();
    let refs: Vec<Instant> = app
        .fake
        .authorized_log()
        .into_iter()
        .filter(|(p, at)| p.ends_with("/info/refs") && *at >= started && *at < started + window)
        .map(|(_, at)| at)
        .collect();
    let packs = log
        .iter()
        .filter(|(p, _)| p.ends_with("/git-upload-pack"))
        .count();
    let rest = log.iter().filter(|(p, _)| p.starts_with("/2.0/")).count();
    eprintln!(
        "100 repositories, {interval} s interval, {window:?}: {} ref advertisements in {requests} HTTP requests, {packs} fetches, {rest} REST calls",
        refs.len()
    );
    // Nothing was fetched, so every ref request is a head check: each one request, with the
    // token, never an anonymous one answered 401 first.
    assert_eq!(
        requests,
        refs.len(),
        "{} anonymous ref requests",
        requests - refs.len()
    );
    assert!(
        refs.len() <= 220,
        "{} ref requests in two intervals",
        refs.len()
    );
    assert!(
        refs.len() >= 50,
        "the poller runs: {} ref requests",
        refs.len()
    );
    assert_eq!(packs, 0, "unchanged repositories are not fetched");
    assert_eq!(rest, 0, "no REST call outside the list schedule");
    // Spread evenly: about 10 a second, never a burst of the whole list.
    let mut per_second = vec![0usize; usize::try_from(2 * interval).expect("small")];
    for at in &refs {
        let s = usize::try_from(at.duration_since(started).as_secs()).expect("small");
        if let Some(bucket) = per_second.get_mut(s) {
            *bucket += 1;
        }
    }
    let busiest = per_second.iter().copied().max().unwrap_or(0);
    assert!(
        busiest <= 25,
        "a burst of {busiest} in one second: {per_second:?}"
    );
    // Every repository was asked for: the list is walked, not one repository over and over.
    let unchecked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM repositories WHERE selected = 1 AND poll_at IS NULL",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .expect("count");
    assert_eq!(unchecked, 0);
    // And those single requests did read the heads: a push is picked up by itself.
    let pushed = app
        .fake
        .commit("many", "r042", "main", &file("fn pushed_marker() {}\n"));
    poll_for(3 * interval + 30, "the push is searchable", || async {
        (hits(&app, &browser, "pushed_marker").await.len() == 1).then_some(())
    })
    .await;
    let repo = app.repo_named(&browser, "many/r042").await.expect("listed");
    assert_eq!(repo["indexed_commit"], pushed.as_str());
}

async fn a_git_429_slows_the_poller_and_fails_nothing(backend: Backend) {
    let interval = 2u64;
    let app = app_polling_every(backend, interval, &[]).await;
    let (browser, ids) = indexed_user(&app, "Ria", "acme", &["busy"], &file("fn b() {}\n")).await;
    let refs = FakeBitbucket::git_refs_path("acme", "busy");
    let ready = Instant::now();
    wait_until(15, "the poller checks twice", || async {
        times(&app, &refs, ready).len() >= 2
    })
    .await;
    let injected = Instant::now();
    app.fake.fail_git_refs("acme", "busy", 2);
    let after = poll_for(60, "two 429s and an answer", || async {
        let t = times(&app, &refs, injected);
        (t.len() >= 3).then_some(t)
    })
    .await;
    let (first_gap, second_gap) = (after[1] - after[0], after[2] - after[1]);
    eprintln!("interval {interval} s; gaps after 429s: {first_gap:?}, {second_gap:?}");
    let normal = Duration::from_secs(interval);
    assert!(
        first_gap >= normal.mul_f64(1.5),
        "after a 429 the next check waits longer: {first_gap:?}"
    );
    assert!(
        second_gap >= first_gap.mul_f64(1.3),
        "and longer again after another: {first_gap:?} then {second_gap:?}"
    );
    let repo = app.repo_json(&browser, ids[0]).await;
    assert_eq!(repo["state"], "ready", "{repo}");
    assert!(repo["error"].is_null(), "{repo}");
    // The answer after the 429s is recorded like any other check.
    let injected_at =
        codelayer::db::now() - i64::try_from(injected.elapsed().as_secs()).expect("small") - 1;
    wait_until(10, "checked again after the 429s", || async {
        let checked: Option<i64> =
            sqlx::query_scalar("SELECT checked_at FROM repositories WHERE id = $1")
                .bind(ids[0])
                .fetch_one(&app.state.db.pool)
                .await
                .expect("checked_at");
        checked.is_some_and(|c| c >= injected_at)
    })
    .await;
}

async fn a_failed_first_build_heals_by_itself(backend: Backend) {
    let app = app_polling_every(backend, 2, &[]).await;
    let user = app.fake.add_user("Hal");
    app.fake.add_workspace("acme", "Acme");
    app.fake.add_member("acme", &user, "member");
    app.fake.add_repo("acme", "flaky");
    app.fake
        .commit("acme", "flaky", "main", &file("fn healed() {}\n"));
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let id = poll_for(20, "the repository is listed", || async {
        app.repo_named(&browser, "acme/flaky").await?["id"].as_i64()
    })
    .await;
    let packs = FakeBitbucket::git_pack_path("acme", "flaky");
    // Bitbucket's git side fails the first two fetches.
    app.fake.fail_next(&packs, 500, 2, None);
    let started = Instant::now();
    let r = browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status(), StatusCode::OK);
    let failed = poll_for(30, "the first build fails", || async {
        let repo = app.repo_json(&browser, id).await;
        (repo["state"] == "failed").then_some(repo)
    })
    .await;
    assert!(
        failed["error"].as_str().expect("reason").contains("500"),
        "{failed}"
    );
    // Nobody presses Retry.
    poll_for(40, "the build heals on its own", || async {
        (app.repo_json(&browser, id).await["state"] == "ready").then_some(())
    })
    .await;
    assert_eq!(hits(&app, &browser, "healed").await.len(), 1);
    let fetches = times(&app, &packs, started);
    // A shallow first clone negotiates in two POSTs; a retry of its own would add more.
    assert_eq!(fetches.len(), 4, "two failures, then the clone that worked");
    let (first, second) = (fetches[1] - fetches[0], fetches[2] - fetches[1]);
    eprintln!("retries after {first:?}, then {second:?}");
    assert!(
        second >= Duration::from_secs(3),
        "the second retry waits about twice the first (2 s, then 4 s): {first:?}, {second:?}"
    );
    let row: (i64, Option<i64>) =
        sqlx::query_as("SELECT failures, retry_at FROM repositories WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db.pool)
            .await
            .expect("row");
    assert_eq!(row, (0, None), "success resets the backoff");
}

async fn a_sync_asked_for_during_a_build_runs_once_more_after_it(backend: Backend) {
    // The poller checks once after the build and then not for an hour: only the second
    // Sync can bring the new commit in.
    let start = Instant::now();
    let app = app_polling_every(backend, 3600, &[]).await;
    let (browser, ids) = indexed_user(
        &app,
        "Sam",
        "acme",
        &["svc"],
        &file("fn before_marker() {}\n"),
    )
    .await;
    let id = ids[0];
    let refs = FakeBitbucket::git_refs_path("acme", "svc");
    wait_until(15, "the poller's one check", || async {
        operations(&app, &refs, start).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refs_before = operations(&app, &refs, start).len();
    app.fake.set_latency(
        &FakeBitbucket::git_pack_path("acme", "svc"),
        Duration::from_secs(3),
    );
    let sync = format!("/api/v1/repositories/{id}/sync");
    assert_eq!(app.post(&browser, &sync).await.status(), StatusCode::OK);
    wait_until(15, "the first sync fetches", || async {
        operations(&app, &refs, start).len() > refs_before
    })
    .await;
    // The fetch has read the old head; a push lands and the user asks again meanwhile.
    let newer = app
        .fake
        .commit("acme", "svc", "main", &file("fn after_marker() {}\n"));
    assert_eq!(app.repo_json(&browser, id).await["state"], "cloning");
    assert_eq!(app.post(&browser, &sync).await.status(), StatusCode::OK);
    let done = poll_for(40, "the second sync indexes the push", || async {
        let repo = app.repo_json(&browser, id).await;
        (repo["indexed_commit"] == newer.as_str() && repo["state"] == "ready").then_some(repo)
    })
    .await;
    assert_eq!(
        hits(&app, &browser, "after_marker").await.len(),
        1,
        "{done}"
    );
    assert!(hits(&app, &browser, "before_marker").await.is_empty());
    assert_eq!(
        operations(&app, &refs, start).len() - refs_before,
        2,
        "exactly two syncs: the running one and the one asked for meanwhile"
    );
}

async fn repositories_that_appear_move_or_vanish_are_noticed_by_the_list_schedule(
    backend: Backend,
) {
    let app = app_polling_every(backend, 60, &[("CODELAYER_LIST_SECS", "2")]).await;
    let (browser, ids) =
        indexed_user(&app, "Lia", "acme", &["alpha"], &file("fn alpha() {}\n")).await;
    app.fake.add_repo("acme", "beta");
    poll_for(20, "a new repository shows up by itself", || async {
        app.repo_named(&browser, "acme/beta").await
    })
    .await;
    app.fake.rename_repo("acme", "alpha", "alpha2");
    let renamed = poll_for(20, "a renamed repository keeps its identity", || async {
        app.repo_named(&browser, "acme/alpha2").await
    })
    .await;
    assert_eq!(renamed["id"], ids[0]);
    assert_eq!(renamed["state"], "ready", "its knowledge layer stays");
    assert!(app.repo_named(&browser, "acme/alpha").await.is_none());
    app.fake.delete_repo("acme", "beta");
    wait_until(20, "a deleted repository is purged", || async {
        app.repo_named(&browser, "acme/beta").await.is_none()
    })
    .await;
}

/// Head checks hand the token to nobody but the configured git origin and follow no
/// redirect (libgit2's default would follow one on the first request, to any host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_checks_follow_no_redirect() {
    let app = app_polling_every(Backend::Sqlite, 3600, &[]).await;
    let (_, _) = indexed_user(&app, "Ned", "acme", &["svc"], &file("fn n() {}\n")).await;
    let head: String = sqlx::query_scalar("SELECT indexed_commit FROM repositories")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("indexed");
    let direct = url::Url::parse(&format!("{}/acme/svc.git", app.fake.url())).expect("url");
    // Any access token the fake issued works straight away.
    let mut answered = None;
    for t in app.fake.issued_tokens() {
        let url = direct.clone();
        let got =
            tokio::task::spawn_blocking(move || codelayer::git::remote_head(&url, "main", &t))
                .await
                .expect("joined");
        if let Ok(Some(oid)) = got {
            answered = Some(oid.to_string());
            break;
        }
    }
    assert_eq!(
        answered.as_deref(),
        Some(head.as_str()),
        "a direct check answers"
    );

    // The same check through a host that redirects elsewhere reaches nothing.
    let elsewhere = FakeBitbucket::start().await;
    let target = elsewhere.url().replace("127.0.0.1", "localhost");
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let redirect_url = format!("http://{}", redirector.local_addr().expect("addr"));
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let to = format!("{target}{uri}");
            async move { axum::response::Redirect::temporary(&to) }
        });
        axum::serve(redirector, app).await.expect("redirector");
    });
    let url = url::Url::parse(&format!("{redirect_url}/acme/svc.git")).expect("url");
    let tokens = app.fake.issued_tokens();
    let got = tokio::task::spawn_blocking(move || {
        codelayer::git::remote_head(&url, "main", tokens.last().expect("a token"))
    })
    .await
    .expect("joined");
    assert!(got.is_err(), "{got:?}");
    assert_eq!(elsewhere.requests("/"), 0, "the redirect was not followed");
}
