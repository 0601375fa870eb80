//! Step 1 of the journey: signing in with Bitbucket, and every way it can go wrong.

use std::time::Duration;

use codelayer::bitbucket::Caller;

use crate::common::{Backend, Options, TestApp, captured_logs, location};
use reqwest::{StatusCode, header};

on_both_databases!(
    home_explains_the_consumer_registration_when_unconfigured,
    sign_in_shows_the_display_name_and_sign_out_ends_it,
    session_id_is_cycled_and_cookie_is_lax_http_only,
    denied_consent_saves_nothing,
    missing_or_wrong_state_is_refused,
    replayed_code_is_refused,
    bitbucket_errors_and_timeouts_end_on_a_friendly_page,
    only_same_site_paths_are_followed_after_sign_in,
    tokens_are_encrypted_at_rest_and_never_logged,
    access_token_is_refreshed_before_expiry,
    fifty_concurrent_calls_with_an_expired_token_refresh_once,
    fifty_concurrent_401s_refresh_once,
    revoked_grant_means_sign_in_again_but_stays_signed_in,
    cross_site_posts_are_refused,
    health_and_security_headers,
);

async fn signed_in_user(
    app: &TestApp,
) -> (reqwest::Client, crate::common::fake_bitbucket::FakeUser) {
    let user = app.fake.add_user("Ada Lovelace");
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    (browser, user)
}

async fn user_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("count")
}

async fn user_id(app: &TestApp) -> codelayer::ids::UserId {
    sqlx::query_scalar("SELECT id FROM users")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("one user")
}

async fn home_explains_the_consumer_registration_when_unconfigured(backend: Backend) {
    let app = TestApp::start(
        backend,
        Options {
            no_oauth: true,
            ..Options::default()
        },
    )
    .await;
    let page = reqwest::get(app.at("/")).await.expect("home");
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.expect("body");
    assert!(
        body.contains(&format!("{}/auth/callback", app.url)),
        "callback URL shown"
    );
    for permission in [
        "Account: Read",
        "Workspace membership: Read",
        "Repositories: Read",
    ] {
        assert!(body.contains(permission), "{permission} listed");
    }
    assert!(!body.contains("Sign in with Bitbucket"));
    // Login without a consumer goes back home instead of failing.
    let login = app
        .browser()
        .get(app.at("/auth/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(location(&login), "/");
}

async fn sign_in_shows_the_display_name_and_sign_out_ends_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let home = reqwest::get(app.at("/"))
        .await
        .expect("home")
        .text()
        .await
        .expect("body");
    assert!(home.contains("Sign in with Bitbucket"));

    let user = app.fake.add_user("Grace Hopper");
    let browser = app.browser();
    let login = browser
        .get(app.at("/auth/login"))
        .send()
        .await
        .expect("login");
    let authorize = location(&login);
    let authorize_url = url::Url::parse(&authorize).expect("url");
    assert!(authorize.starts_with(&format!("{}/site/oauth2/authorize?", app.fake.url())));
    let params: std::collections::HashMap<_, _> =
        authorize_url.query_pairs().into_owned().collect();
    assert_eq!(
        params.get("response_type").map(String::as_str),
        Some("code")
    );
    assert_eq!(
        params.get("client_id").map(String::as_str),
        Some("fake-client-id")
    );
    assert!(params.get("state").is_some_and(|s| s.len() >= 16));
    assert!(
        !params.contains_key("scope"),
        "Bitbucket takes scopes from the consumer"
    );

    let page = app.sign_in(&browser, &user).await;
    assert!(
        page.contains("Grace Hopper"),
        "signed-in page shows the display name"
    );
    assert!(
        page.contains("action=\"/auth/logout\""),
        "sign-out form on every signed-in page"
    );
    let account = browser
        .get(app.at("/account"))
        .send()
        .await
        .expect("account");
    assert_eq!(account.status(), StatusCode::OK);
    assert!(account.text().await.expect("body").contains("Grace Hopper"));
    // Error pages of a signed-in user carry the header and the sign-out form too.
    let missing = browser
        .get(app.at("/no/such/page"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = missing.text().await.expect("body");
    assert!(missing.contains("Grace Hopper") && missing.contains("action=\"/auth/logout\""));
    let anonymous = reqwest::get(app.at("/no/such/page"))
        .await
        .expect("404")
        .text()
        .await
        .expect("body");
    assert!(!anonymous.contains("Grace Hopper") && !anonymous.contains("/auth/logout"));

    let out = app.post(&browser, "/auth/logout").await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = browser
        .get(app.at("/account"))
        .send()
        .await
        .expect("account");
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "signed out: sent home"
    );
    // …carrying the page, so that signing in again lands on it.
    assert_eq!(location(&after), "/?next=%2Faccount");
    let api = browser
        .get(app.at("/api/v1/workspaces"))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

async fn session_id_is_cycled_and_cookie_is_lax_http_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Cycle");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .get(app.at("/auth/login"))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get(header::SET_COOKIE)
        .expect("session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http public URL");
    let before = cookie.split(';').next().expect("pair").to_owned();
    app.fake.sign_in_browser(&user);
    let callback = app.fake.grant_consent(&location(&login)).await;
    let landed = client
        .get(callback)
        .header(header::COOKIE, &before)
        .send()
        .await
        .expect("callback");
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        landed
            .headers()
            .get(header::REFERRER_POLICY)
            .map(|v| v.to_str().expect("ascii")),
        Some("no-referrer")
    );
    let after = landed
        .headers()
        .get(header::SET_COOKIE)
        .expect("new cookie")
        .to_str()
        .expect("ascii");
    let after = after.split(';').next().expect("pair").to_owned();
    assert_ne!(before, after, "session id cycled at sign-in");
    // The pre-sign-in id is dead.
    let old = client
        .get(app.at("/account"))
        .header(header::COOKIE, &before)
        .send()
        .await
        .expect("old");
    assert_eq!(old.status(), StatusCode::SEE_OTHER);
    let new = client
        .get(app.at("/account"))
        .header(header::COOKIE, &after)
        .send()
        .await
        .expect("new");
    assert_eq!(new.status(), StatusCode::OK);
}

async fn denied_consent_saves_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Denier");
    let browser = app.browser();
    let page = app.sign_in_until_callback(&browser, &user, "deny").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let body = page.text().await.expect("body");
    assert!(
        body.contains("You did not grant codelayer access"),
        "{body}"
    );
    assert!(body.contains("Try again"));
    assert_eq!(user_count(&app).await, 0);
    assert_eq!(app.fake.token_requests("authorization_code"), 0);
}

async fn missing_or_wrong_state_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Mallory");
    // A callback that no login of this browser started.
    let stranger = app.browser();
    let page = stranger
        .get(app.at("/auth/callback?code=abc&state=forged"))
        .send()
        .await
        .expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(page.text().await.expect("body").contains("not valid"));

    // A real login, but the state is swapped.
    let browser = app.browser();
    let callback = app.consent(&browser, &user, "grant").await;
    let mut url = url::Url::parse(&callback).expect("url");
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("code")
        .1
        .into_owned();
    url.query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "wrong");
    let page = browser.get(url).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    // The state was burned by the failed attempt: the right one no longer works either.
    let page = browser.get(callback).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert_eq!(user_count(&app).await, 0);
    assert_eq!(
        app.fake.token_requests("authorization_code"),
        0,
        "no code was exchanged"
    );
}

async fn replayed_code_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Replayer");
    let first = app.browser();
    let callback = app.consent(&first, &user, "grant").await;
    let used_code = url::Url::parse(&callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("code")
        .1
        .into_owned();
    assert_eq!(
        first.get(&callback).send().await.expect("ok").status(),
        StatusCode::SEE_OTHER
    );
    // Replaying the same URL: the state is single-use.
    assert_eq!(
        first.get(&callback).send().await.expect("replay").status(),
        StatusCode::BAD_REQUEST
    );

    // A fresh login whose callback carries the already used code: Bitbucket refuses it.
    let second = app.browser();
    let fresh = app.consent(&second, &user, "grant").await;
    let state = url::Url::parse(&fresh)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .expect("state")
        .1
        .into_owned();
    let replay = format!("{}/auth/callback?code={used_code}&state={state}", app.url);
    let page = second.get(replay).send().await.expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("expired or already used")
    );
    let api = second
        .get(app.at("/api/v1/workspaces"))
        .send()
        .await
        .expect("api");
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "the replay signed nobody in"
    );
}

async fn bitbucket_errors_and_timeouts_end_on_a_friendly_page(backend: Backend) {
    let app = TestApp::start(
        backend,
        Options {
            env: vec![("CODELAYER_HTTP_TIMEOUT_SECS", "1".into())],
            ..Options::default()
        },
    )
    .await;
    let user = app.fake.add_user("Unlucky");

    app.fake
        .fail_next("/site/oauth2/access_token", 500, 1, None);
    let page = app
        .sign_in_until_callback(&app.browser(), &user, "grant")
        .await;
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    let body = page.text().await.expect("body");
    assert!(
        body.contains("Bitbucket could not be reached") && body.contains("Try again"),
        "{body}"
    );

    app.fake.fail_next("/2.0/user", 503, 10, None);
    let page = app
        .sign_in_until_callback(&app.browser(), &user, "grant")
        .await;
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);

    app.fake
        .set_latency("/site/oauth2/access_token", Duration::from_secs(3));
    let page = app
        .sign_in_until_callback(&app.browser(), &user, "grant")
        .await;
    assert_eq!(
        page.status(),
        StatusCode::BAD_GATEWAY,
        "a slow Bitbucket times out"
    );
    let body = page.text().await.expect("body");
    assert!(
        !body.contains("reqwest") && !body.contains("panicked"),
        "no debug text: {body}"
    );
    app.fake
        .set_latency("/site/oauth2/access_token", Duration::ZERO);

    assert_eq!(user_count(&app).await, 0, "nothing half-written");
    let connections: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bitbucket_connections")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("count");
    assert_eq!(connections, 0);

    // A BITBUCKET_API_URL that answers 404 is named as the likely cause, not "try again".
    let misconfigured = TestApp::start(
        backend,
        Options {
            env: vec![(
                "BITBUCKET_API_URL",
                format!("{}/not-the-api", app.fake.url()),
            )],
            fake: Some(app.fake.clone()),
            ..Options::default()
        },
    )
    .await;
    let page = misconfigured
        .sign_in_until_callback(&misconfigured.browser(), &user, "grant")
        .await;
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
    let body = page.text().await.expect("body");
    assert!(
        body.contains("answered 404 Not Found") && body.contains("BITBUCKET_API_URL"),
        "{body}"
    );

    // Unreachable: nothing listens on the token endpoint's port any more.
    let gone = TestApp::start(
        backend,
        Options {
            env: vec![("BITBUCKET_AUTH_URL", "http://127.0.0.1:9".into())],
            fake: Some(app.fake.clone()),
            ..Options::default()
        },
    )
    .await;
    let browser = gone.browser();
    let login = browser
        .get(gone.at("/auth/login"))
        .send()
        .await
        .expect("login");
    let state = url::Url::parse(&location(&login))
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .expect("state")
        .1
        .into_owned();
    let page = browser
        .get(gone.at(&format!("/auth/callback?code=whatever&state={state}")))
        .send()
        .await
        .expect("callback");
    assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
}

async fn only_same_site_paths_are_followed_after_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let user = app.fake.add_user("Navigator");
    for (next, expected) in [
        ("//evil.example/x", "/workspaces"),
        ("https://evil.example/", "/workspaces"),
        ("/\\evil.example", "/workspaces"),
        ("/account", "/account"),
    ] {
        let browser = app.browser();
        app.fake.sign_in_browser(&user);
        let mut login_url = url::Url::parse(&app.at("/auth/login")).expect("url");
        login_url.query_pairs_mut().append_pair("next", next);
        let login = browser.get(login_url).send().await.expect("login");
        let callback = app.fake.grant_consent(&location(&login)).await;
        let landed = browser.get(callback).send().await.expect("callback");
        assert_eq!(location(&landed), expected, "next={next}");
    }
}

async fn tokens_are_encrypted_at_rest_and_never_logged(backend: Backend) {
    let logs = captured_logs();
    let app = TestApp::spawn(backend).await;
    let (_browser, _user) = signed_in_user(&app).await;
    let id = user_id(&app).await;
    app.fake.expire_access_tokens(&_user);
    app.state
        .bitbucket
        .current_user(Caller::interactive(id))
        .await
        .expect("refreshes after 401");

    let issued = app.fake.issued_tokens();
    assert!(issued.len() >= 4, "access + refresh, twice");
    assert!(
        issued.iter().any(|t| t.len() > 2500),
        "Bitbucket-sized tokens are stored whole"
    );
    let (access, refresh): (String, String) =
        sqlx::query_as("SELECT access_token, refresh_token FROM bitbucket_connections")
            .fetch_one(&app.state.db.pool)
            .await
            .expect("connection");
    for token in &issued {
        assert!(!access.contains(token.as_str()) && !refresh.contains(token.as_str()));
    }
    if backend == Backend::Sqlite {
        app.state.db.checkpoint().await.expect("checkpoint");
        for (path, bytes) in app.files_on_disk() {
            for token in &issued {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "plaintext token in {}",
                    path.display()
                );
            }
        }
    }
    let text = logs.text();
    assert!(text.contains("signed in"), "the log capture works");
    for token in &issued {
        assert!(!text.contains(token.as_str()), "a token reached the log");
    }
    assert!(!text.contains(crate::common::fake_bitbucket::FakeBitbucket::CLIENT_SECRET));
}

async fn access_token_is_refreshed_before_expiry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.set_token_lifetime(2);
    let (_browser, _user) = signed_in_user(&app).await;
    let id = user_id(&app).await;
    let before = app.fake.token_requests("refresh_token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let me = app
        .state
        .bitbucket
        .current_user(Caller::interactive(id))
        .await
        .expect("works after expiry");
    assert_eq!(me.display_name, "Ada Lovelace");
    assert_eq!(app.fake.token_requests("refresh_token"), before + 1);
}

async fn fifty_concurrent_calls_with_an_expired_token_refresh_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fake.set_token_lifetime(2);
    let (_browser, _user) = signed_in_user(&app).await;
    let id = user_id(&app).await;
    app.fake.set_token_lifetime(3600);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = app.fake.token_requests("refresh_token");
    let calls = (0..50).map(|_| {
        let bitbucket = app.state.bitbucket.clone();
        tokio::spawn(async move { bitbucket.current_user(Caller::interactive(id)).await })
    });
    let results = futures_join(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        50,
        "{results:?}"
    );
    assert_eq!(
        app.fake.token_requests("refresh_token") - before,
        1,
        "exactly one refresh"
    );
}

async fn fifty_concurrent_401s_refresh_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_browser, user) = signed_in_user(&app).await;
    let id = user_id(&app).await;
    app.fake.expire_access_tokens(&user);
    let before = app.fake.token_requests("refresh_token");
    let calls = (0..50).map(|_| {
        let bitbucket = app.state.bitbucket.clone();
        tokio::spawn(async move { bitbucket.current_user(Caller::interactive(id)).await })
    });
    let results = futures_join(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        50,
        "{results:?}"
    );
    assert_eq!(
        app.fake.token_requests("refresh_token") - before,
        1,
        "exactly one refresh"
    );
}

async fn revoked_grant_means_sign_in_again_but_stays_signed_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, user) = signed_in_user(&app).await;
    let id = user_id(&app).await;
    app.fake.revoke_user(&user);
    let before = app.fake.token_requests("refresh_token");
    let err = app
        .state
        .bitbucket
        .current_user(Caller::interactive(id))
        .await
        .expect_err("revoked");
    assert_eq!(err.to_string(), "Bitbucket access ended: sign in again");
    assert_eq!(
        app.fake.token_requests("refresh_token") - before,
        1,
        "one refresh try, no loop"
    );
    // Later calls do not even try.
    assert!(
        app.state
            .bitbucket
            .current_user(Caller::interactive(id))
            .await
            .is_err()
    );
    assert_eq!(app.fake.token_requests("refresh_token") - before, 1);
    let account = browser
        .get(app.at("/account"))
        .send()
        .await
        .expect("account");
    assert_eq!(
        account.status(),
        StatusCode::OK,
        "still signed in to codelayer"
    );
    assert!(
        account
            .text()
            .await
            .expect("body")
            .contains("sign in again")
    );
    // Signing in again restores the connection.
    app.sign_in(&browser, &user).await;
    assert!(
        app.state
            .bitbucket
            .current_user(Caller::interactive(id))
            .await
            .is_ok()
    );
}

async fn cross_site_posts_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, _user) = signed_in_user(&app).await;
    let evil = browser
        .post(app.at("/auth/logout"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let api = browser
        .post(app.at("/api/v1/workspaces/refresh"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = api.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "forbidden");
    let still = browser
        .get(app.at("/account"))
        .send()
        .await
        .expect("account");
    assert_eq!(
        still.status(),
        StatusCode::OK,
        "the forged sign-out did nothing"
    );
    // No Origin at all, but the browser says same-origin: allowed.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let no_origin = bare
        .post(app.at("/auth/logout"))
        .send()
        .await
        .expect("post");
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
    let fetch_site = bare
        .post(app.at("/auth/logout"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("post");
    assert_eq!(fetch_site.status(), StatusCode::SEE_OTHER);
}

async fn health_and_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        reqwest::get(app.at("/healthz"))
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        reqwest::get(app.at("/readyz"))
            .await
            .expect("readyz")
            .status(),
        StatusCode::OK
    );
    let page = reqwest::get(app.at("/")).await.expect("home");
    let h = page.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    let missing = reqwest::get(app.at("/no/such/page")).await.expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.state.db.pool.close().await;
    assert_eq!(
        reqwest::get(app.at("/readyz"))
            .await
            .expect("readyz")
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}
