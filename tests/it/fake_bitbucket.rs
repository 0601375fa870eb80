//! Proves the fake Bitbucket Cloud in tests/it/common/fake_bitbucket behaves like the facts in
//! BITBUCKET.md, so the app's tests can trust it: OAuth code grant and rotation, the API's
//! shapes and pagination, removed endpoints, fault injection and git over smart HTTP.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::fake_bitbucket::{FakeBitbucket, FakeFile, FakeUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CALLBACK: &str = "http://127.0.0.1:9/auth/callback";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

fn authorize_url(fake: &FakeBitbucket, state: &str) -> String {
    format!(
        "{}/site/oauth2/authorize?client_id={}&response_type=code&state={state}",
        fake.url(),
        FakeBitbucket::CLIENT_ID
    )
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).expect("absolute URL");
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// POSTs to the token endpoint with the consumer's Basic credentials.
async fn token_request(fake: &FakeBitbucket, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/site/oauth2/access_token", fake.url()))
        .basic_auth(FakeBitbucket::CLIENT_ID, Some(FakeBitbucket::CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status();
    (status, resp.json().await.expect("token answer is JSON"))
}

struct Tokens {
    access: String,
    refresh: String,
}

fn tokens_of(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    }
}

/// The whole browser round trip for `user`, then the code exchange.
async fn sign_in(fake: &FakeBitbucket, user: &FakeUser) -> Tokens {
    fake.sign_in_browser(user);
    let location = fake.grant_consent(&authorize_url(fake, "st")).await;
    let code = query_param(&location, "code").expect("code in callback");
    let (status, body) = token_request(
        fake,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokens_of(&body)
}

async fn refresh(fake: &FakeBitbucket, refresh_token: &str) -> (StatusCode, Value) {
    token_request(
        fake,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// GET `path` on the fake with a bearer token; the body parsed as JSON.
async fn api(fake: &FakeBitbucket, token: &str, path: &str) -> (StatusCode, Value) {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", fake.url())
    };
    let resp = client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("API request");
    let status = resp.status();
    let text = resp.text().await.expect("API body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn error_message(body: &Value) -> &str {
    assert_eq!(body["type"], "error", "{body}");
    body["error"]["message"].as_str().expect("error.message")
}

/// A fake with the callback set and Alice, who owns workspace `acme`.
async fn world() -> (FakeBitbucket, FakeUser) {
    let fake = FakeBitbucket::start().await;
    fake.set_callback(CALLBACK);
    let alice = fake.add_user("Alice Example");
    fake.add_workspace("acme", "Acme Corp");
    fake.add_member("acme", &alice, "owner");
    (fake, alice)
}

#[tokio::test]
async fn code_grant_issues_long_tokens_and_each_code_works_once() {
    let (fake, alice) = world().await;
    let http = client();

    // PKCE and scope parameters are ignored, as by the real service.
    let page = http
        .get(format!(
            "{}&code_challenge=abc&code_challenge_method=S256&scope=account",
            authorize_url(&fake, "xyz")
        ))
        .send()
        .await
        .expect("consent page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<title>Authorize codelayer</title>"),
        "{html}"
    );
    assert!(html.contains("Alice Example"));
    assert!(html.contains(r#"name="decision" value="grant">Grant access"#));
    assert!(html.contains(r#"name="decision" value="deny">Deny"#));
    assert!(html.contains(r#"<input type="hidden" name="state" value="xyz">"#));

    let decision = http
        .post(format!("{}/site/oauth2/authorize", fake.url()))
        .form(&[
            ("client_id", FakeBitbucket::CLIENT_ID),
            ("state", "xyz"),
            ("decision", "grant"),
        ])
        .send()
        .await
        .expect("decision");
    assert_eq!(decision.status(), StatusCode::FOUND);
    let location = decision.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        location.starts_with(&format!("{CALLBACK}?code=")),
        "{location}"
    );
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    let code = query_param(&location, "code").expect("code");

    let (status, body) = token_request(
        &fake,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], "account repository");
    assert_eq!(body["state"], "authorization_code");
    let tokens = tokens_of(&body);
    assert!(tokens.access.len() >= 2500, "{}", tokens.access.len());
    let url_safe = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    assert!(url_safe(&tokens.access) && url_safe(&tokens.refresh));
    assert!((30..=60).contains(&tokens.refresh.len()));
    let issued = fake.issued_tokens();
    assert!(issued.contains(&tokens.access) && issued.contains(&tokens.refresh));

    // Single use, and unknown codes fail the same way.
    for bad in [code.as_str(), "no-such-code"] {
        let (status, body) = token_request(
            &fake,
            &[("grant_type", "authorization_code"), ("code", bad)],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert!(body["error_description"].is_string());
    }
    assert_eq!(fake.token_requests("authorization_code"), 3);

    let (status, user) = api(&fake, &tokens.access, "/2.0/user").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["type"], "user");
    assert_eq!(user["uuid"], alice.uuid.as_str());
    assert!(alice.uuid.starts_with('{') && alice.uuid.ends_with('}'));
    assert_eq!(user["account_id"], alice.account_id.as_str());
    assert_eq!(user["nickname"], alice.nickname.as_str());
    assert_eq!(user["display_name"], "Alice Example");
    assert!(user["links"]["avatar"]["href"].is_string());
    assert!(user["links"]["html"]["href"].is_string());
    assert!(user["created_on"].is_string());
    assert!(user.get("username").is_none());

    // Bearer header only: a query-string token is not looked at.
    let resp = http
        .get(format!(
            "{}/2.0/user?access_token={}",
            fake.url(),
            tokens.access
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = api(&fake, "not-a-token", "/2.0/user").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!error_message(&body).is_empty());
}

#[tokio::test]
async fn authorize_and_token_endpoints_refuse_bad_requests() {
    let fake = FakeBitbucket::start().await;
    let alice = fake.add_user("Alice Example");
    let http = client();

    // No callback on the consumer: the token endpoint says so.
    let location = fake
        .grant_consent(&format!(
            "{}&redirect_uri={}",
            authorize_url(&fake, "s"),
            CALLBACK
        ))
        .await;
    let code = query_param(&location, "code").expect("code");
    let (status, body) = token_request(
        &fake,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": "No callback uri defined for the OAuth client"})
    );

    fake.set_callback(CALLBACK);
    let resp = http
        .get(format!(
            "{}/site/oauth2/authorize?client_id=someone-else&response_type=code&state=s",
            fake.url()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );

    // redirect_uri must extend the configured callback.
    let extended = format!("{CALLBACK}/more");
    let location = fake
        .grant_consent(&format!(
            "{}&redirect_uri={extended}",
            authorize_url(&fake, "s")
        ))
        .await;
    assert!(
        location.starts_with(&format!("{extended}?code=")),
        "{location}"
    );
    let resp = http
        .get(format!(
            "{}&redirect_uri=http://evil.example/cb",
            authorize_url(&fake, "s")
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let location = fake.deny_consent(&authorize_url(&fake, "s2")).await;
    assert!(location.starts_with(CALLBACK));
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&location, "error_description").is_some());
    assert_eq!(query_param(&location, "state").as_deref(), Some("s2"));
    assert_eq!(query_param(&location, "code"), None);

    // Client authentication is HTTP Basic with the right secret, nothing else.
    let tokens = sign_in(&fake, &alice).await;
    let url = format!("{}/site/oauth2/access_token", fake.url());
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh.as_str()),
    ];
    let mut with_body_credentials = form.to_vec();
    with_body_credentials.push(("client_id", FakeBitbucket::CLIENT_ID));
    with_body_credentials.push(("client_secret", FakeBitbucket::CLIENT_SECRET));
    for req in [
        http.post(&url).form(&with_body_credentials),
        http.post(&url)
            .basic_auth(FakeBitbucket::CLIENT_ID, Some("wrong"))
            .form(&form),
    ] {
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "invalid_client", "{body}");
    }
    // Those refusals did not use up the refresh token.
    let (status, _) = refresh(&fake, &tokens.refresh).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = token_request(&fake, &[("grant_type", "password")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");

    fake.set_code_lifetime(Duration::ZERO);
    let location = fake.grant_consent(&authorize_url(&fake, "s")).await;
    let code = query_param(&location, "code").expect("code");
    let (status, body) = token_request(
        &fake,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    fake.set_code_lifetime(Duration::from_secs(600));

    // The pre-May-2026 field name, to test that the app accepts both.
    fake.set_legacy_scopes_field(true);
    let location = fake.grant_consent(&authorize_url(&fake, "s")).await;
    let code = query_param(&location, "code").expect("code");
    let (_, body) = token_request(
        &fake,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(body["scopes"], "account repository");
    assert!(body.get("scope").is_none());

    let resp = http
        .post(format!("{}/site/oauth2/revoke", fake.url()))
        .form(&[("token", tokens.refresh.as_str())])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(fake.requests("/site/oauth2/revoke"), 1);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_used_one_is_dead() {
    let (fake, alice) = world().await;
    let first = sign_in(&fake, &alice).await;

    let (status, body) = refresh(&fake, &first.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "refresh_token");
    let second = tokens_of(&body);
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(
        api(&fake, &second.access, "/2.0/user").await.0,
        StatusCode::OK
    );
    // Older access tokens live on until they expire.
    assert_eq!(
        api(&fake, &first.access, "/2.0/user").await.0,
        StatusCode::OK
    );

    let (status, body) = refresh(&fake, &first.refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let (status, body) = refresh(&fake, &second.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fake.token_requests("refresh_token"), 3);
    assert_eq!(fake.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn expired_and_revoked_tokens() {
    let (fake, alice) = world().await;
    let bob = fake.add_user("Bob Builder");
    let tokens = sign_in(&fake, &alice).await;
    let bobs = sign_in(&fake, &bob).await;

    fake.expire_access_tokens(&alice);
    let (status, body) = api(&fake, &tokens.access, "/2.0/user").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_message(&body), "Access token expired.");
    let (status, body) = refresh(&fake, &tokens.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let renewed = tokens_of(&body);
    assert_eq!(
        api(&fake, &renewed.access, "/2.0/user").await.0,
        StatusCode::OK
    );

    fake.set_token_lifetime(0);
    let (_, body) = refresh(&fake, &renewed.refresh).await;
    assert_eq!(body["expires_in"], 0);
    let short = tokens_of(&body);
    assert_eq!(
        api(&fake, &short.access, "/2.0/user").await.0,
        StatusCode::UNAUTHORIZED
    );
    fake.set_token_lifetime(7200);
    let (_, body) = refresh(&fake, &short.refresh).await;
    let live = tokens_of(&body);
    assert_eq!(
        api(&fake, &live.access, "/2.0/user").await.0,
        StatusCode::OK
    );

    fake.revoke_user(&alice);
    assert_eq!(
        api(&fake, &live.access, "/2.0/user").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = refresh(&fake, &live.refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    // Bob's grant is untouched.
    assert_eq!(
        api(&fake, &bobs.access, "/2.0/user").await.0,
        StatusCode::OK
    );
    assert_eq!(refresh(&fake, &bobs.refresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn workspaces_of_the_caller() {
    let (fake, alice) = world().await;
    let bob = fake.add_user("Bob Builder");
    let beta = fake.add_workspace("beta", "Beta Team");
    fake.add_member("beta", &alice, "member");
    fake.add_workspace("bobs", "Bob's");
    fake.add_member("bobs", &bob, "owner");
    let t = sign_in(&fake, &alice).await.access;

    let (status, page) = api(&fake, &t, "/2.0/user/workspaces").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["size"], 2);
    assert_eq!(page["page"], 1);
    assert!(page.get("next").is_none());
    let values = page["values"].as_array().expect("values");
    assert_eq!(values[0]["type"], "workspace_access");
    assert_eq!(values[0]["administrator"], true);
    assert_eq!(values[0]["workspace"]["type"], "workspace_base");
    assert_eq!(values[0]["workspace"]["slug"], "acme");
    assert!(values[0]["workspace"]["links"]["self"]["href"].is_string());
    assert!(values[0]["workspace"].get("name").is_none());
    assert_eq!(values[1]["administrator"], false);
    assert_eq!(values[1]["workspace"]["uuid"], beta.as_str());

    let (_, page) = api(&fake, &t, "/2.0/user/workspaces?administrator=true").await;
    assert_eq!(page["size"], 1);
    let (status, _) = api(&fake, &t, "/2.0/user/workspaces?sort=workspace.slug").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, ws) = api(&fake, &t, "/2.0/workspaces/acme").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ws["type"], "workspace");
    assert_eq!(ws["name"], "Acme Corp");
    assert_eq!(ws["is_private"], true);
    let by_uuid = format!(
        "/2.0/workspaces/{}",
        beta.replace('{', "%7B").replace('}', "%7D")
    );
    assert_eq!(api(&fake, &t, &by_uuid).await.1["slug"], "beta");
    assert_eq!(
        api(&fake, &t, "/2.0/workspaces/bobs").await.0,
        StatusCode::NOT_FOUND
    );

    let (status, m) = api(&fake, &t, "/2.0/user/workspaces/acme/permission").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(m["type"], "workspace_membership");
    assert_eq!(m["permission"], "owner");
    assert_eq!(m["user"]["uuid"], alice.uuid.as_str());
    assert_eq!(m["workspace"]["slug"], "acme");
    let (_, m) = api(&fake, &t, "/2.0/user/workspaces/beta/permission").await;
    assert_eq!(m["permission"], "member");
    let (status, body) = api(&fake, &t, "/2.0/user/workspaces/bobs/permission").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);

    fake.remove_member("beta", &alice);
    assert_eq!(api(&fake, &t, "/2.0/user/workspaces").await.1["size"], 1);
    assert_eq!(
        api(&fake, &t, "/2.0/user/workspaces/beta/permission")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api(&fake, &t, "/2.0/repositories/beta").await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn repositories_paginate_over_250() {
    let (fake, alice) = world().await;
    let bob = fake.add_user("Bob Builder");
    // Added in reverse: the listing sorts by slug.
    for i in (0..250).rev() {
        fake.add_repo("acme", &format!("repo-{i:03}"));
    }
    let t = sign_in(&fake, &alice).await.access;

    let mut url = format!(
        "{}/2.0/repositories/acme?pagelen=100&role=member",
        fake.url()
    );
    let mut sizes = Vec::new();
    let mut slugs = Vec::new();
    loop {
        let (status, page) = api(&fake, &t, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["size"], 250);
        assert_eq!(page["pagelen"], 100);
        let values = page["values"].as_array().expect("values");
        sizes.push(values.len());
        slugs.extend(
            values
                .iter()
                .map(|r| r["slug"].as_str().expect("slug").to_owned()),
        );
        if sizes.len() > 1 {
            assert!(page["previous"].is_string());
        }
        match page.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with(&format!("{}/2.0/repositories/acme?", fake.url())));
                assert!(
                    next.contains("pagelen=100") && next.contains("role=member"),
                    "{next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    let expected: Vec<String> = (0..250).map(|i| format!("repo-{i:03}")).collect();
    assert_eq!(slugs, expected);

    let (_, page) = api(&fake, &t, "/2.0/repositories/acme").await;
    assert_eq!(page["pagelen"], 10);
    assert_eq!(page["values"].as_array().map(Vec::len), Some(10));
    assert_eq!(
        page["next"],
        format!("{}/2.0/repositories/acme?page=2", fake.url()).as_str()
    );
    let (status, body) = api(&fake, &t, "/2.0/repositories/acme?pagelen=101").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_message(&body), "Invalid pagelen");
    let (status, _) = api(&fake, &t, "/2.0/repositories/acme?pagelen=100&page=4").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Every member reads every repository, but only owners pass role=admin.
    fake.add_member("acme", &bob, "member");
    let bobs = sign_in(&fake, &bob).await.access;
    let (_, page) = api(&fake, &bobs, "/2.0/repositories/acme?role=admin").await;
    assert_eq!(page["size"], 0);
    fake.remove_member("acme", &bob);
    let (status, body) = api(&fake, &bobs, "/2.0/repositories/acme").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    error_message(&body);

    // fields= trims like the real API: without `next` listed, there is no next.
    let (_, page) = api(&fake, &t, "/2.0/repositories/acme?fields=values.slug").await;
    assert_eq!(page.get("next"), None);
    assert_eq!(page["values"][0], json!({"slug": "repo-000"}));
    let (_, page) = api(
        &fake,
        &t,
        "/2.0/repositories/acme?fields=next,values.slug,values.mainbranch.name",
    )
    .await;
    assert!(page["next"].as_str().expect("next").contains("fields="));
    assert_eq!(
        page["values"][0],
        json!({"slug": "repo-000", "mainbranch": null})
    );
    let (_, page) = api(&fake, &t, "/2.0/repositories/acme?fields=-values.links").await;
    assert!(page["values"][0].get("links").is_none() && page["next"].is_string());
    // A count: the envelope's `size` alone. `size` is optional: the fake can leave it out.
    let count = "/2.0/repositories/acme?pagelen=1&role=member&fields=size";
    assert_eq!(api(&fake, &t, count).await.1, json!({"size": 250}));
    fake.set_omit_page_size(true);
    assert_eq!(api(&fake, &t, count).await.1, json!({}));
    let (_, page) = api(&fake, &t, "/2.0/repositories/acme?pagelen=100").await;
    assert!(page.get("size").is_none() && page["next"].is_string());
}

#[tokio::test]
async fn repository_follows_commits_renames_and_deletes() {
    let (fake, alice) = world().await;
    let uuid = fake.add_repo("acme", "app");
    let t = sign_in(&fake, &alice).await.access;

    let (status, repo) = api(&fake, &t, "/2.0/repositories/acme/app").await;
    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(repo["type"], "repository");
    assert_eq!(repo["uuid"], uuid.as_str());
    assert_eq!(repo["full_name"], "acme/app");
    assert_eq!(repo["name"], "app");
    assert_eq!(repo["is_private"], true);
    assert_eq!(repo["description"], "");
    assert_eq!(repo["language"], "");
    assert!(repo["size"].is_u64());
    assert!(repo["created_on"].is_string() && repo["updated_on"].is_string());
    assert_eq!(repo["mainbranch"], Value::Null);
    assert_eq!(repo["workspace"]["slug"], "acme");
    assert_eq!(repo["workspace"]["name"], "Acme Corp");
    assert!(repo["project"]["key"].is_string() && repo["project"]["uuid"].is_string());
    let clone = repo["links"]["clone"].as_array().expect("clone links");
    assert_eq!(clone[0]["name"], "https");
    assert!(
        clone[0]["href"]
            .as_str()
            .expect("href")
            .ends_with("/acme/app.git")
    );
    assert_eq!(clone[1]["name"], "ssh");
    assert!(repo["links"]["html"]["href"].is_string());

    fake.commit("acme", "app", "main", &[("a.txt", "a".into())]);
    let (_, repo) = api(&fake, &t, "/2.0/repositories/acme/app").await;
    assert_eq!(
        repo["mainbranch"],
        json!({"type": "branch", "name": "main"})
    );
    fake.commit("acme", "app", "dev", &[("b.txt", "b".into())]);
    assert_eq!(
        api(&fake, &t, "/2.0/repositories/acme/app").await.1["mainbranch"]["name"],
        "main"
    );
    fake.set_main_branch("acme", "app", "dev");
    assert_eq!(
        api(&fake, &t, "/2.0/repositories/acme/app").await.1["mainbranch"]["name"],
        "dev"
    );

    fake.rename_repo("acme", "app", "app2");
    assert_eq!(
        api(&fake, &t, "/2.0/repositories/acme/app").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, repo) = api(&fake, &t, "/2.0/repositories/acme/app2").await;
    assert_eq!(repo["uuid"], uuid.as_str());
    assert_eq!(repo["full_name"], "acme/app2");
    let by_uuid = format!(
        "/2.0/repositories/acme/{}",
        uuid.replace('{', "%7B").replace('}', "%7D")
    );
    assert_eq!(api(&fake, &t, &by_uuid).await.1["slug"], "app2");

    let bob = fake.add_user("Bob Builder");
    let bobs = sign_in(&fake, &bob).await.access;
    assert_eq!(
        api(&fake, &bobs, "/2.0/repositories/acme/app2").await.0,
        StatusCode::FORBIDDEN
    );

    fake.delete_repo("acme", "app2");
    assert_eq!(
        api(&fake, &t, "/2.0/repositories/acme/app2").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api(&fake, &t, "/2.0/repositories/acme").await.1["size"], 0);
}

#[tokio::test]
async fn removed_endpoints_answer_410_gone() {
    let (fake, alice) = world().await;
    let t = sign_in(&fake, &alice).await.access;
    let expected = json!({
        "type": "error",
        "error": {
            "message": "CHANGE-2770 - Functionality has been deprecated",
            "detail": "Please read the changelog entry for more details.",
            "data": {"announcement_url": "https://developer.atlassian.com/cloud/bitbucket/changelog/#CHANGE-2770"}
        }
    });
    for path in [
        "/2.0/workspaces",
        "/2.0/repositories",
        "/2.0/user/permissions/workspaces",
    ] {
        let (status, body) = api(&fake, &t, path).await;
        assert_eq!(status, StatusCode::GONE, "{path}");
        assert_eq!(body, expected, "{path}");
    }
}

#[tokio::test]
async fn faults_latency_and_the_request_log() {
    let (fake, alice) = world().await;
    let tokens = sign_in(&fake, &alice).await;
    let http = client();
    let user_url = format!("{}/2.0/user", fake.url());

    fake.fail_next("/2.0/user", 429, 2, Some(7));
    for _ in 0..2 {
        let resp = http
            .get(&user_url)
            .bearer_auth(&tokens.access)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain")
        );
        assert_eq!(
            resp.text().await.expect("body"),
            "Rate limit for this resource has been exceeded"
        );
    }
    assert_eq!(
        api(&fake, &tokens.access, "/2.0/user").await.0,
        StatusCode::OK
    );
    assert_eq!(fake.requests("/2.0/user"), 3);

    fake.fail_next("/2.0/user", 429, 1, None);
    let resp = http
        .get(&user_url)
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());

    fake.fail_next("/2.0/repositories", 503, 1, None);
    let (status, body) = api(&fake, &tokens.access, "/2.0/repositories/acme").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    error_message(&body);
    assert_eq!(
        api(&fake, &tokens.access, "/2.0/repositories/acme").await.0,
        StatusCode::OK
    );

    // A brownout-style 410 on an endpoint that still exists.
    fake.fail_next("/2.0/workspaces/acme", 410, 1, None);
    let (status, body) = api(&fake, &tokens.access, "/2.0/workspaces/acme").await;
    assert_eq!(status, StatusCode::GONE);
    assert!(error_message(&body).starts_with("CHANGE-2770"));

    // A faulted token request is counted but never reaches the endpoint: the refresh token
    // it carried stays alive.
    fake.fail_next("/site/oauth2/access_token", 500, 1, None);
    let (status, body) = refresh(&fake, &tokens.refresh).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    error_message(&body);
    assert_eq!(fake.token_requests("refresh_token"), 1);
    assert_eq!(refresh(&fake, &tokens.refresh).await.0, StatusCode::OK);
    assert_eq!(fake.token_requests("refresh_token"), 2);

    fake.set_latency("/2.0/user", Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        api(&fake, &tokens.access, "/2.0/user").await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    fake.set_latency("/2.0/user", Duration::ZERO);
    let started = Instant::now();
    api(&fake, &tokens.access, "/2.0/user").await;
    assert!(started.elapsed() < Duration::from_millis(300));

    let times = fake.request_times("/2.0/user");
    assert_eq!(times.len(), fake.requests("/2.0/user"));
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

/// Runs the git CLI with the token handed over by a GIT_ASKPASS script (never in the URL),
/// isolated from the machine's git configuration.
async fn git(args: &[&str], token: &str, cwd: &Path) -> std::process::Output {
    let home = tempfile::tempdir().expect("temp home");
    let askpass = home.path().join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\ncase \"$1\" in\n  Username*) echo x-token-auth ;;\n  *) printf '%s\\n' \"$FAKE_BB_TOKEN\" ;;\nesac\n",
    )
    .expect("write askpass");
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
        .expect("chmod askpass");
    tokio::process::Command::new("git")
        .args(["-c", "credential.helper="])
        .args(args)
        .current_dir(cwd)
        .env("HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", &askpass)
        .env("FAKE_BB_TOKEN", token)
        .output()
        .await
        .expect("run git")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn git_clone_over_smart_http_with_the_token() {
    let (fake, alice) = world().await;
    let bob = fake.add_user("Bob Builder");
    fake.add_repo("acme", "app");
    let first = fake.commit(
        "acme",
        "app",
        "main",
        &[
            ("README.md", "# App\n".into()),
            ("src/deep/lib.rs", "pub fn f() {}\n".into()),
            ("data.bin", FakeFile::Bytes(vec![0, 159, 146, 150, 0])),
            ("link", FakeFile::Symlink("README.md".into())),
            ("gone.txt", "bye\n".into()),
        ],
    );
    let t = sign_in(&fake, &alice).await.access;
    let work = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/acme/app.git", fake.url());

    let out = git(&["clone", &url, "c1"], &t, work.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let c1 = work.path().join("c1");
    assert_eq!(
        std::fs::read_to_string(c1.join("README.md")).expect("README"),
        "# App\n"
    );
    assert_eq!(
        std::fs::read_to_string(c1.join("src/deep/lib.rs")).expect("lib.rs"),
        "pub fn f() {}\n"
    );
    assert_eq!(
        std::fs::read(c1.join("data.bin")).expect("bin"),
        [0, 159, 146, 150, 0]
    );
    assert_eq!(
        std::fs::read_link(c1.join("link")).expect("symlink"),
        Path::new("README.md")
    );
    let head = git(&["rev-parse", "HEAD"], &t, &c1).await;
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), first);
    let branch = git(&["symbolic-ref", "--short", "HEAD"], &t, &c1).await;
    assert_eq!(String::from_utf8_lossy(&branch.stdout).trim(), "main");
    assert!(
        fake.requests("/acme/app.git/info/refs") >= 2,
        "401 first, then with credentials"
    );

    // The next commit replaces the whole tree and has the previous head as parent.
    let second = fake.commit("acme", "app", "main", &[("README.md", "# App v2\n".into())]);
    let out = git(&["pull", "--ff-only"], &t, &c1).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!c1.join("gone.txt").exists());
    let parent = git(&["rev-parse", "HEAD^"], &t, &c1).await;
    assert_eq!(String::from_utf8_lossy(&parent.stdout).trim(), first);
    let head = git(&["rev-parse", "HEAD"], &t, &c1).await;
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), second);

    // Pushing is refused: the fake is read-only.
    std::fs::write(c1.join("new.txt"), "x").expect("write");
    let out = git(&["add", "new.txt"], &t, &c1).await;
    assert!(out.status.success());
    let out = git(
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-qm",
            "x",
        ],
        &t,
        &c1,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = git(&["push", "origin", "main"], &t, &c1).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    let out = git(&["clone", &url, "bad"], "not-the-token", work.path()).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );

    let bobs = sign_in(&fake, &bob).await.access;
    let out = git(&["clone", &url, "bob"], &bobs, work.path()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    fake.add_repo("acme", "empty");
    let out = git(
        &["clone", &format!("{}/acme/empty.git", fake.url()), "e"],
        &t,
        work.path(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("empty repository"),
        "{}",
        stderr(&out)
    );

    // Forty branches make the upload-pack request big enough for git to gzip it.
    fake.add_repo("acme", "wide");
    for i in 0..40 {
        let name = format!("f{i}.txt");
        fake.commit(
            "acme",
            "wide",
            &format!("branch-{i:02}"),
            &[(name.as_str(), "x".into())],
        );
    }
    let out = git(
        &["clone", &format!("{}/acme/wide.git", fake.url()), "w"],
        &t,
        work.path(),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let branches = git(&["branch", "-r"], &t, &work.path().join("w")).await;
    assert_eq!(
        String::from_utf8_lossy(&branches.stdout).lines().count(),
        41,
        "40 + HEAD"
    );

    // A rename moves the git URL with it.
    fake.rename_repo("acme", "app", "renamed");
    let out = git(&["clone", &url, "old"], &t, work.path()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let renamed = format!("{}/acme/renamed.git", fake.url());
    let out = git(&["clone", &renamed, "new"], &t, work.path()).await;
    assert!(out.status.success(), "{}", stderr(&out));

    fake.fail_next("/acme/renamed.git/", 503, 1, None);
    let out = git(&["clone", &renamed, "faulted"], &t, work.path()).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));

    fake.revoke_user(&alice);
    let out = git(&["clone", &renamed, "revoked"], &t, work.path()).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn git2_clones_a_bare_repository_with_a_credentials_callback() {
    let (fake, alice) = world().await;
    fake.add_repo("acme", "lib");
    let sha = fake.commit(
        "acme",
        "lib",
        "trunk",
        &[("a/b/c.txt", "deep\n".into()), ("top.txt", "top\n".into())],
    );
    let t = sign_in(&fake, &alice).await.access;
    let url = format!("{}/acme/lib.git", fake.url());
    let dest = tempfile::tempdir().expect("tempdir");

    let clone = |token: String, path: std::path::PathBuf| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut callbacks = git2::RemoteCallbacks::new();
            let mut attempts = 0;
            callbacks.credentials(move |_, _, _| {
                attempts += 1;
                if attempts > 1 {
                    return Err(git2::Error::from_str("credentials refused"));
                }
                git2::Cred::userpass_plaintext("x-token-auth", &token)
            });
            let mut fetch = git2::FetchOptions::new();
            fetch.remote_callbacks(callbacks);
            git2::build::RepoBuilder::new()
                .bare(true)
                .fetch_options(fetch)
                .clone(&url, &path)
                .map(|repo| {
                    let head = repo.head().expect("HEAD");
                    let id = head.target().expect("direct HEAD").to_string();
                    (head.shorthand().ok().map(str::to_owned), id)
                })
        })
    };

    let (branch, head) = clone(t, dest.path().join("ok.git"))
        .await
        .expect("join")
        .expect("git2 clone");
    assert_eq!(branch.as_deref(), Some("trunk"));
    assert_eq!(head, sha);

    let refused = clone("wrong".into(), dest.path().join("bad.git"))
        .await
        .expect("join");
    assert!(refused.is_err());
}
