//! Step 2 and 3 of the journey: linking workspaces, refreshing them, repositories that load
//! by themselves — and Bitbucket misbehaving meanwhile.

use std::time::Duration;

use crate::common::{
    Backend, Options, TestApp, fake_bitbucket::FakeUser, location, wait_until, workspace,
};
use reqwest::StatusCode;
use serde_json::Value;

on_both_databases!(
    zero_one_and_three_workspaces,
    a_workspace_with_250_repositories_loads_completely,
    refresh_follows_bitbucket_changes,
    rate_limits_are_waited_out,
    the_request_budget_paces_calls,
    gone_endpoints_are_not_retried_and_5xx_give_up_visibly,
    revoked_token_turns_workspaces_inactive,
    another_user_sees_nothing_and_guesses_get_404,
    a_job_of_a_killed_worker_is_taken_again_and_finishes_once,
    unlinked_workspaces_show_their_repository_count,
    the_repository_filter_and_tick_all_work_without_javascript,
);

async fn repo_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM repositories")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("count")
}

fn member_of(app: &TestApp, user: &FakeUser, slugs: &[&str]) {
    for slug in slugs {
        app.fake.add_workspace(slug, &format!("{slug} team"));
        app.fake.add_member(slug, user, "member");
    }
}

async fn zero_one_and_three_workspaces(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let nobody = app.fake.add_user("No Workspaces");
    let b0 = app.browser();
    let page = app.sign_in(&b0, &nobody).await;
    assert!(
        page.contains("No workspaces yet"),
        "empty state explains what to do"
    );

    let solo = app.fake.add_user("Solo");
    member_of(&app, &solo, &["solo-ws"]);
    app.fake.add_repo("solo-ws", "only-repo");
    let b1 = app.browser();
    app.fake.sign_in_browser(&solo);
    let callback = app.consent(&b1, &solo, "grant").await;
    let landed = b1.get(callback).send().await.expect("callback");
    assert_eq!(
        location(&landed),
        "/repositories",
        "one workspace: straight to its repositories"
    );
    let list = app.get_json(&b1, "/api/v1/workspaces").await;
    let ws = workspace(&list, "solo-ws");
    assert_eq!(ws["linked"], true);
    assert_eq!(ws["status"], "active");
    assert_eq!(
        ws["name"], "solo-ws team",
        "name read from the single-workspace endpoint"
    );
    wait_until(10, "the repository list loads", || async {
        app.get_json(&b1, "/api/v1/repositories")
            .await
            .as_array()
            .expect("list")
            .len()
            == 1
    })
    .await;
    let page = app.page(&b1, "/repositories").await;
    assert!(
        page.contains("only-repo")
            && page.contains("Create knowledge layer") == page.contains("Create knowledge layer")
    );

    let trio = app.fake.add_user("Trio");
    member_of(&app, &trio, &["alpha", "beta", "gamma"]);
    let b3 = app.browser();
    let page = app.sign_in(&b3, &trio).await;
    for slug in ["alpha", "beta", "gamma"] {
        assert!(page.contains(slug));
    }
    let list = app.get_json(&b3, "/api/v1/workspaces").await;
    for slug in ["alpha", "beta", "gamma"] {
        let ws = workspace(&list, slug);
        assert_eq!(
            ws["linked"], false,
            "three workspaces: none linked automatically"
        );
        assert_eq!(ws["status"], "inactive");
        assert_eq!(ws["reason"], "not linked");
    }
    // Link one through the page.
    let id = workspace(&list, "beta")["id"].as_i64().expect("id");
    let linked = app.post(&b3, &format!("/workspaces/{id}/link")).await;
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    let list = app.get_json(&b3, "/api/v1/workspaces").await;
    assert_eq!(workspace(&list, "beta")["status"], "active");
    assert_eq!(workspace(&list, "alpha")["status"], "inactive");
}

async fn a_workspace_with_250_repositories_loads_completely(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Big");
    member_of(&app, &user, &["big"]);
    for n in 0..250 {
        app.fake.add_repo("big", &format!("repo-{n:03}"));
    }
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    wait_until(30, "250 repositories are listed", || async {
        repo_count(&app).await == 250
    })
    .await;
    let list = app.get_json(&browser, "/api/v1/repositories").await;
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), 250);
    assert!(
        list.iter()
            .all(|r| r["state"] == "available" && r["selected"] == false)
    );
    assert_eq!(list[0]["full_name"], "big/repo-000");
    // Largest page size: 3 pages, not 25.
    assert_eq!(app.fake.requests("/2.0/repositories/big"), 3);
    let ws = app.get_json(&browser, "/api/v1/workspaces").await;
    assert_eq!(workspace(&ws, "big")["repository_count"], 250);
}

async fn refresh_follows_bitbucket_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Changer");
    member_of(&app, &user, &["keep", "lose"]);
    for slug in ["one", "two", "three"] {
        app.fake.add_repo("keep", slug);
    }
    app.fake.add_repo("lose", "x");
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    for slug in ["keep", "lose"] {
        let id = workspace(&list, slug)["id"].as_i64().expect("id");
        assert_eq!(
            app.post(&browser, &format!("/api/v1/workspaces/{id}/link"))
                .await
                .status(),
            StatusCode::OK
        );
    }
    wait_until(10, "4 repositories", || async {
        repo_count(&app).await == 4
    })
    .await;
    let before = app.get_json(&browser, "/api/v1/repositories").await;
    let two_id = before
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["slug"] == "two")
        .expect("two")["id"]
        .clone();

    app.fake.add_workspace("fresh", "Fresh");
    app.fake.add_member("fresh", &user, "collaborator");
    app.fake.remove_member("lose", &user);
    app.fake.delete_repo("keep", "one");
    app.fake.rename_repo("keep", "two", "deux");

    let refreshed = app.post(&browser, "/workspaces/refresh").await;
    assert_eq!(refreshed.status(), StatusCode::SEE_OTHER);
    let page = app.page(&browser, "/workspaces").await;
    assert!(
        page.contains("Refreshed from Bitbucket: 2 workspaces."),
        "flash after refresh"
    );
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    assert_eq!(
        list.as_array().expect("list").len(),
        3,
        "no duplicates after refresh"
    );
    assert_eq!(workspace(&list, "fresh")["reason"], "not linked");
    assert_eq!(workspace(&list, "fresh")["status"], "inactive");
    let lost = workspace(&list, "lose");
    assert_eq!(lost["status"], "inactive");
    wait_until(10, "the lost workspace is purged", || async {
        let list = app.get_json(&browser, "/api/v1/workspaces").await;
        workspace(&list, "lose")["reason"] == "access removed"
    })
    .await;
    wait_until(10, "the keep workspace reloads", || async {
        let repos = app.get_json(&browser, "/api/v1/repositories").await;
        let slugs: Vec<_> = repos
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["slug"].as_str().unwrap_or("").to_owned())
            .collect();
        slugs.len() == 2
            && slugs.contains(&"deux".to_owned())
            && slugs.contains(&"three".to_owned())
    })
    .await;
    let repos = app.get_json(&browser, "/api/v1/repositories").await;
    let deux = repos
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["slug"] == "deux")
        .expect("renamed");
    assert_eq!(
        deux["id"], two_id,
        "a renamed repository keeps its identity"
    );
    assert_eq!(deux["full_name"], "keep/deux");
    assert_eq!(
        repo_count(&app).await,
        2,
        "the lost workspace's and the deleted repository's rows are gone"
    );
    // Refreshing again changes nothing.
    app.post(&browser, "/api/v1/workspaces/refresh").await;
    assert_eq!(
        app.get_json(&browser, "/api/v1/workspaces")
            .await
            .as_array()
            .expect("list")
            .len(),
        3
    );
}

async fn rate_limits_are_waited_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Limited");
    member_of(&app, &user, &["busy"]);
    for n in 0..150 {
        app.fake.add_repo("busy", &format!("r{n:03}"));
    }
    app.fake
        .fail_next("/2.0/repositories/busy", 429, 3, Some(2));
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    wait_until(30, "all 150 load despite 429s", || async {
        repo_count(&app).await == 150
    })
    .await;
    let times = app.fake.request_times("/2.0/repositories/busy");
    assert_eq!(times.len(), 3 + 2, "three refusals, then two pages");
    for pair in times.windows(2).take(3) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1900),
            "Retry-After: 2 honoured, waited {gap:?}"
        );
    }

    // Without Retry-After: exponential backoff, still no hammering.
    app.fake.fail_next("/2.0/repositories/busy", 429, 3, None);
    let before = app.fake.requests("/2.0/repositories/busy");
    app.post(&browser, "/api/v1/workspaces/refresh").await;
    wait_until(30, "the reload finishes", || async {
        app.fake.requests("/2.0/repositories/busy") == before + 5
    })
    .await;
    let times = app.fake.request_times("/2.0/repositories/busy");
    let retries = &times[before..before + 4];
    let total = retries[3] - retries[0];
    assert!(
        total >= Duration::from_millis(150),
        "backed off between 429s: {total:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(repo_count(&app).await, 150);
}

async fn the_request_budget_paces_calls(backend: Backend) {
    let app = TestApp::start(
        backend,
        Options {
            env: vec![
                ("CODELAYER_API_REQUESTS_PER_HOUR", "7200".into()),
                ("CODELAYER_API_BURST", "4".into()),
            ],
            ..Options::default()
        },
    )
    .await;
    let user = app.fake.add_user("Paced");
    member_of(&app, &user, &["a", "b", "c", "d"]);
    let browser = app.browser();
    // Sign-in: user + list + 3 per workspace (name, permission, repository count) = 14
    // calls; 4 at once, then 2 a second.
    let started = std::time::Instant::now();
    app.sign_in(&browser, &user).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4500),
        "the budget slowed the calls: {took:?}"
    );
    assert_eq!(app.fake.requests("/2.0/"), 14);
}

async fn gone_endpoints_are_not_retried_and_5xx_give_up_visibly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Unlucky");
    member_of(&app, &user, &["gone", "broken"]);
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    // Signing in counted each workspace's repositories (one call each): the loads fail.
    assert_eq!(app.fake.requests("/2.0/repositories/"), 2);
    app.fake.fail_next("/2.0/repositories/gone", 410, 100, None);
    app.fake
        .fail_next("/2.0/repositories/broken", 500, 1000, None);
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    for slug in ["gone", "broken"] {
        let id = workspace(&list, slug)["id"].as_i64().expect("id");
        app.post(&browser, &format!("/api/v1/workspaces/{id}/link"))
            .await;
    }
    wait_until(30, "both loads have failed for good", || async {
        let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'failed'")
            .fetch_one(&app.state.db.pool)
            .await
            .expect("count");
        failed == 2
    })
    .await;
    assert_eq!(
        app.fake.requests("/2.0/repositories/gone"),
        1 + 1,
        "410 is permanent: never retried"
    );
    // 4 job attempts × (1 try + 4 retries) — bounded.
    assert_eq!(app.fake.requests("/2.0/repositories/broken"), 1 + 20);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.fake.requests("/2.0/repositories/broken"),
        1 + 20,
        "and then it stops"
    );
    let page = app.page(&browser, "/workspaces").await;
    assert!(
        page.contains("410 Gone"),
        "visible error for the removed endpoint"
    );
    assert!(
        page.contains("kept answering 500"),
        "visible error for persistent 500s"
    );
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    assert!(
        workspace(&list, "broken")["error"]
            .as_str()
            .expect("error")
            .contains("500")
    );
}

async fn revoked_token_turns_workspaces_inactive(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Revoked");
    member_of(&app, &user, &["ws"]);
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    assert_eq!(
        workspace(&app.get_json(&browser, "/api/v1/workspaces").await, "ws")["status"],
        "active"
    );
    app.fake.revoke_user(&user);
    let refresh = app.post(&browser, "/api/v1/workspaces/refresh").await;
    assert_eq!(refresh.status(), StatusCode::BAD_GATEWAY);
    let body: Value = refresh.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("sign in again")
    );
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    let ws = workspace(&list, "ws");
    assert_eq!(ws["status"], "inactive");
    assert_eq!(ws["reason"], "sign in again");
    let page = app.page(&browser, "/workspaces").await;
    assert!(page.contains("Inactive") && page.contains("sign in again"));
}

async fn another_user_sees_nothing_and_guesses_get_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.fake.add_user("Alice");
    let bob = app.fake.add_user("Bob");
    member_of(&app, &alice, &["alice-ws"]);
    app.fake.add_repo("alice-ws", "secret-repo");
    let a = app.browser();
    app.sign_in(&a, &alice).await;
    wait_until(10, "alice's repository", || async {
        repo_count(&app).await == 1
    })
    .await;
    let alice_ws = workspace(&app.get_json(&a, "/api/v1/workspaces").await, "alice-ws")["id"]
        .as_i64()
        .expect("id");

    let b = app.browser();
    let page = app.sign_in(&b, &bob).await;
    assert!(!page.contains("alice-ws"));
    assert_eq!(
        app.get_json(&b, "/api/v1/workspaces").await,
        Value::Array(vec![])
    );
    assert_eq!(
        app.get_json(&b, "/api/v1/repositories").await,
        Value::Array(vec![])
    );
    let repos_page = app.page(&b, "/repositories").await;
    assert!(!repos_page.contains("secret-repo"));
    for path in [
        format!("/api/v1/workspaces/{alice_ws}/link"),
        format!("/api/v1/workspaces/{alice_ws}/disconnect"),
    ] {
        let r = app.post(&b, &path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_found");
    }
    for path in [
        format!("/workspaces/{alice_ws}/link"),
        format!("/workspaces/{alice_ws}/disconnect"),
    ] {
        assert_eq!(
            app.post(&b, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let confirm = b
        .get(app.at(&format!("/workspaces/{alice_ws}/disconnect")))
        .send()
        .await
        .expect("get");
    assert_eq!(confirm.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        workspace(&app.get_json(&a, "/api/v1/workspaces").await, "alice-ws")["status"],
        "active",
        "Alice unaffected"
    );
    assert_eq!(repo_count(&app).await, 1);
}

async fn a_job_of_a_killed_worker_is_taken_again_and_finishes_once(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let user = first.fake.add_user("Crashy");
    member_of(&first, &user, &["ws1", "ws2"]);
    for n in 0..120 {
        first.fake.add_repo("ws1", &format!("r{n:03}"));
    }
    let browser = first.browser();
    first.sign_in(&browser, &user).await;
    let id = workspace(&first.get_json(&browser, "/api/v1/workspaces").await, "ws1")["id"]
        .as_i64()
        .expect("id");
    // The second page hangs, so the worker is mid-way when the process goes down.
    first
        .fake
        .set_latency("/2.0/repositories/ws1", Duration::from_secs(3));
    first
        .post(&browser, &format!("/api/v1/workspaces/{id}/link"))
        .await;
    wait_until(10, "the job is running", || async {
        let running: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'running'")
            .fetch_one(&first.state.db.pool)
            .await
            .expect("count");
        running == 1
    })
    .await;
    let fake = first.fake.clone();
    let reuse = first.reuse();
    let pool = first.state.db.clone();
    // Abort the server and its workers; the claim stays behind with its lease.
    first.state.db.pool.close().await;
    drop(pool);
    let first_kept = first;
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.set_latency("/2.0/repositories/ws1", Duration::ZERO);

    let second = TestApp::start(
        backend,
        Options {
            fake: Some(fake.clone()),
            reuse,
            ..Options::default()
        },
    )
    .await;
    let lease: i64 = sqlx::query_scalar("SELECT lease_until FROM jobs WHERE state = 'running'")
        .fetch_one(&second.state.db.pool)
        .await
        .expect("the crashed claim is still there");
    assert!(
        lease > codelayer::db::now(),
        "the lease still holds, so nobody takes it yet"
    );
    // Time passes: the lease runs out.
    sqlx::query("UPDATE jobs SET lease_until = $1 WHERE state = 'running'")
        .bind(codelayer::db::now() - 1)
        .execute(&second.state.db.pool)
        .await
        .expect("expire lease");
    wait_until(20, "the job is taken again and finishes", || async {
        let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
            .fetch_one(&second.state.db.pool)
            .await
            .expect("count");
        jobs == 0
    })
    .await;
    assert_eq!(
        repo_count(&second).await,
        120,
        "every repository exactly once"
    );
    let attempts_done: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT uuid) FROM repositories")
        .fetch_one(&second.state.db.pool)
        .await
        .expect("count");
    assert_eq!(attempts_done, 120);
    drop(second);
    drop(first_kept);
}

/// The row of workspace `slug` on the workspaces page.
fn page_row<'a>(page: &'a str, list: &Value, slug: &str) -> &'a str {
    let id = workspace(list, slug)["id"].as_i64().expect("id");
    let start = page
        .find(&format!("<tr id=\"workspace-{id}\">"))
        .expect("the workspace's row");
    let end = start + page[start..].find("</tr>").expect("row end");
    &page[start..end]
}

async fn unlinked_workspaces_show_their_repository_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Counter");
    member_of(&app, &user, &["eleven", "single"]);
    for n in 0..11 {
        app.fake.add_repo("eleven", &format!("r{n:02}"));
    }
    app.fake.add_repo("single", "only");
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    // One call per unlinked workspace per refresh (sign-in refreshed once), none per view.
    assert_eq!(app.fake.requests("/2.0/repositories/eleven"), 1);
    let page = app.page(&browser, "/workspaces").await;
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    let eleven = page_row(&page, &list, "eleven");
    assert!(eleven.contains("11 repositories"), "{eleven}");
    assert!(!eleven.contains("listed after linking"), "{eleven}");
    assert!(page_row(&page, &list, "single").contains("1 repository <"));
    assert_eq!(workspace(&list, "eleven")["bitbucket_repositories"], 11);
    assert_eq!(app.fake.requests("/2.0/repositories/eleven"), 1);

    // Bitbucket leaves `size` out: the page says when the count will be known.
    app.fake.set_omit_page_size(true);
    app.post(&browser, "/workspaces/refresh").await;
    let page = app.page(&browser, "/workspaces").await;
    assert!(page.contains("Refreshed from Bitbucket: 2 workspaces."));
    let eleven = page_row(&page, &list, "eleven");
    assert!(eleven.contains("listed after linking"), "{eleven}");
    assert!(!eleven.contains("repositories"), "{eleven}");
    app.fake.set_omit_page_size(false);

    // The count fails: the refresh does not, and the count is not retried.
    let before = app.fake.requests("/2.0/repositories/eleven");
    app.fake.fail_next("/2.0/repositories/eleven", 500, 1, None);
    app.post(&browser, "/workspaces/refresh").await;
    let page = app.page(&browser, "/workspaces").await;
    assert!(page.contains("Refreshed from Bitbucket: 2 workspaces."));
    assert!(page_row(&page, &list, "eleven").contains("listed after linking"));
    assert!(page_row(&page, &list, "single").contains("1 repository <"));
    assert_eq!(app.fake.requests("/2.0/repositories/eleven"), before + 1);

    // Linked, the workspace shows the repositories codelayer listed.
    let id = workspace(&list, "eleven")["id"].as_i64().expect("id");
    app.post(&browser, &format!("/api/v1/workspaces/{id}/link"))
        .await;
    wait_until(10, "11 repositories are listed", || async {
        repo_count(&app).await == 11
    })
    .await;
    let page = app.page(&browser, "/workspaces").await;
    let list = app.get_json(&browser, "/api/v1/workspaces").await;
    assert!(page_row(&page, &list, "eleven").contains(">11</td>"));
}

async fn the_repository_filter_and_tick_all_work_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Filterer");
    member_of(&app, &user, &["team"]);
    for slug in ["alpha-api", "alpha-web", "beta"] {
        app.fake.add_repo("team", slug);
    }
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    wait_until(10, "3 repositories", || async {
        repo_count(&app).await == 3
    })
    .await;
    // Each row's opening tag and its checkbox, by repository.
    let rows = |page: &str| -> Vec<(String, bool, bool)> {
        page.split("<tr id=\"repo-")
            .skip(1)
            .map(|row| {
                let tag = &row[..row.find('>').expect("tag")];
                let boxed = &row[row.find("<input").expect("box")..];
                let boxed = &boxed[..boxed.find('>').expect("box end")];
                let name = ["alpha-api", "alpha-web", "beta"]
                    .into_iter()
                    .find(|n| row.contains(&format!("team/{n}")))
                    .expect("a repository");
                (
                    name.to_owned(),
                    !tag.contains("hidden"),
                    boxed.contains("checked"),
                )
            })
            .collect()
    };
    let page = app.page(&browser, "/repositories").await;
    assert!(page.contains(r#"<form id="filter" method="get" action="/repositories">"#));
    assert!(page.contains(r#"name="filter" form="filter""#));
    assert!(
        rows(&page)
            .iter()
            .all(|(_, shown, ticked)| *shown && !ticked)
    );

    let page = app.page(&browser, "/repositories?filter=ALPHA").await;
    assert!(page.contains(r#"value="ALPHA""#), "the box keeps the words");
    assert_eq!(
        rows(&page),
        [
            ("alpha-api".into(), true, false),
            ("alpha-web".into(), true, false),
            ("beta".into(), false, false)
        ]
    );
    // (askama writes the `&` as `&#38;`.)
    assert!(page.contains(r#"href="/repositories?filter=ALPHA&#38;tick=shown""#));
    let page = app
        .page(&browser, "/repositories?filter=ALPHA&tick=shown")
        .await;
    assert_eq!(
        rows(&page),
        [
            ("alpha-api".into(), true, true),
            ("alpha-web".into(), true, true),
            ("beta".into(), false, false)
        ]
    );
}
