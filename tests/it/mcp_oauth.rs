//! Signing an assistant in without copying a token: OAuth for MCP clients. The dance runs
//! with rmcp's own OAuth client (discovery from the 401, registration, PKCE, token exchange,
//! then MCP over HTTP with the token); the refusals are driven by hand, where the test must
//! misbehave on purpose.

use crate::common::{Backend, TestApp, indexed_user, location};
use crate::mcp::{call, client, text};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use oauth2::TokenResponse;
use reqwest::{Client, StatusCode, header};
use rmcp::{
    ServiceExt,
    transport::{
        StreamableHttpClientTransport,
        auth::{AuthClient, AuthorizationRequest, OAuthState},
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_databases!(
    the_whole_dance_with_rmcps_oauth_client,
    refusals_replays_and_sign_in_on_the_way,
    a_grant_is_its_users_alone,
);

/// Where the pretend assistant listens (nobody does: the test reads the redirect itself).
const REDIRECT: &str = "http://127.0.0.1:45678/callback";

fn files(marker: &str) -> Vec<(&'static str, crate::common::fake_bitbucket::FakeFile)> {
    vec![(
        "src/lib.rs",
        crate::common::fake_bitbucket::FakeFile::Text(format!("pub fn {marker}() {{}}\n")),
    )]
}

/// A request to `/mcp` without (or with) a bearer token, as a client's first try.
async fn raw_mcp(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = Client::new()
        .post(app.at("/mcp"))
        .header(header::ACCEPT, "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        );
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.expect("post /mcp")
}

fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("WWW-Authenticate")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = codelayer::auth::crypto::random_token(40);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Registers a public client (RFC 7591) and returns its id.
pub(crate) async fn register(app: &TestApp, name: &str, redirect_uris: &[&str]) -> String {
    let r = Client::new()
        .post(app.at("/oauth/register"))
        .json(&json!({"client_name": name, "redirect_uris": redirect_uris,
                      "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_endpoint_auth_method"], "none");
    body["client_id"].as_str().expect("client_id").to_owned()
}

pub(crate) fn authorize_url(
    app: &TestApp,
    client_id: &str,
    redirect: &str,
    challenge: &str,
) -> String {
    let mut url = url::Url::parse(&app.at("/oauth/authorize")).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st4te")
        .append_pair("scope", "mcp")
        .append_pair("resource", &app.at("/mcp"));
    url.to_string()
}

/// The consent page at `url` as `browser` sees it, then its decision; returns where the
/// browser is sent (the client's redirect URI with a code or an error).
async fn decide(browser: &Client, url: &str, decision: &str) -> url::Url {
    let page = browser.get(url).send().await.expect("consent page");
    assert_eq!(page.status(), StatusCode::OK, "consent page at {url}");
    let html = page.text().await.expect("html");
    assert!(html.contains("Approve") && html.contains("Deny"), "{html}");
    let mut form: Vec<(String, String)> = url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    form.push(("decision".into(), decision.into()));
    let decided = browser
        .post(url.split('?').next().expect("path"))
        .form(&form)
        .send()
        .await
        .expect("decision");
    assert_eq!(decided.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        decided.headers()[header::REFERRER_POLICY],
        "no-referrer",
        "the code must not leak in a Referer"
    );
    url::Url::parse(&location(&decided)).expect("redirect")
}

pub(crate) fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Approves `client_id` as the user of `browser`; returns the code.
async fn approve(
    app: &TestApp,
    browser: &Client,
    client_id: &str,
    redirect: &str,
    challenge: &str,
) -> String {
    let back = decide(
        browser,
        &authorize_url(app, client_id, redirect, challenge),
        "approve",
    )
    .await;
    assert_eq!(param(&back, "state").as_deref(), Some("st4te"));
    assert_eq!(param(&back, "iss").as_deref(), Some(app.url.as_str()));
    param(&back, "code").expect("code")
}

async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = Client::new()
        .post(app.at("/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    (r.status(), r.json().await.expect("json"))
}

pub(crate) async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(app: &TestApp, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
    token_request(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// The whole flow by hand: register (or reuse `client_id`), approve, exchange; the tokens.
async fn authorized(app: &TestApp, browser: &Client, client_id: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let code = approve(app, browser, client_id, REDIRECT, &challenge).await;
    let (status, body) = exchange(app, client_id, &code, REDIRECT, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["access_token"].as_str().expect("access").to_owned(),
        body["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

async fn works(app: &TestApp, access: &str) -> bool {
    raw_mcp(app, Some(access)).await.status() == StatusCode::OK
}

async fn the_whole_dance_with_rmcps_oauth_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, _) = indexed_user(&app, "Ada", "acme", &["web"], &files("ada_code")).await;

    // 1. The first try has no token: 401 pointing at the protected-resource metadata.
    let first = raw_mcp(&app, None).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&first);
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            app.url
        )
    );
    let resource: Value = Client::new()
        .get(app.at("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .expect("PRM")
        .json()
        .await
        .expect("json");
    assert_eq!(resource["resource"], app.at("/mcp"));
    assert_eq!(resource["authorization_servers"], json!([app.url]));
    let server: Value = Client::new()
        .get(app.at("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("AS metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(server["issuer"], app.url);
    assert_eq!(server["code_challenge_methods_supported"], json!(["S256"]));
    for (key, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("registration_endpoint", "/oauth/register"),
    ] {
        assert_eq!(server[key], app.at(path), "{key}");
    }

    // 2. rmcp's OAuth client discovers from the challenge and registers itself.
    let mut oauth = OAuthState::new(app.at("/mcp"), None)
        .await
        .expect("OAuth state");
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT)
                .with_client_name("Test Assistant")
                .with_challenge(challenge),
        )
        .await
        .expect("discovery and registration");
    let authorize = oauth.get_authorization_url().await.expect("authorize URL");
    assert!(
        authorize.starts_with(&app.at("/oauth/authorize?")),
        "{authorize}"
    );
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );

    // 3. The signed-in person sees the named client and approves it.
    let consent = app
        .page(&browser, authorize.trim_start_matches(&app.url))
        .await;
    assert!(
        consent.contains("Allow <strong>Test Assistant</strong>"),
        "{consent}"
    );
    assert!(
        consent.contains("http://127.0.0.1:45678"),
        "where the browser goes next"
    );
    let back = decide(&browser, &authorize, "approve").await;
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert!(param(&back, "code").is_some() && param(&back, "state").is_some());

    // 4. rmcp checks the issuer, exchanges the code (with its PKCE verifier) and speaks MCP.
    oauth
        .handle_callback_url(back.as_str())
        .await
        .expect("token exchange");
    let manager = oauth.into_authorization_manager().expect("authorized");
    let (client_id, tokens) = manager.get_credentials().await.expect("credentials");
    let tokens = tokens.expect("tokens");
    let first_access = tokens.access_token().secret().clone();
    let first_refresh = tokens
        .refresh_token()
        .expect("refresh token")
        .secret()
        .clone();
    assert!(tokens.expires_in().is_some_and(|d| d.as_secs() <= 3600));
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::default(), manager),
        StreamableHttpClientTransportConfig::with_uri(app.at("/mcp")),
    );
    let mcp = ().serve(transport).await.expect("MCP over OAuth");
    let repos = text(&call(&mcp, "list_repositories", json!({})).await);
    assert!(repos.contains("acme/web — ready"), "{repos}");
    let found = text(&call(&mcp, "search_code", json!({"query": "ada_code"})).await);
    assert!(found.contains("src/lib.rs"), "{found}");
    mcp.cancel().await.expect("close");

    // 5. The grant is on the account page, with a Revoke button.
    let account = app.page(&browser, "/account").await;
    assert!(account.contains("<td>Test Assistant</td>"), "{account}");
    assert!(account.contains("aria-label=\"Revoke Test Assistant\""));
    let grants = app.get_json(&browser, "/api/v1/account/grants").await;
    assert_eq!(grants.as_array().expect("list").len(), 1);
    assert_eq!(grants[0]["client_name"], "Test Assistant");

    // 6. Refresh rotates; the old refresh token presented again revokes the whole grant.
    let (status, rotated) = refresh(&app, &client_id, &first_refresh).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (access2, refresh2) = (
        rotated["access_token"].as_str().expect("access").to_owned(),
        rotated["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    );
    assert_ne!(refresh2, first_refresh);
    assert_ne!(access2, first_access);
    assert!(works(&app, &access2).await);
    let (status, replay) = refresh(&app, &client_id, &first_refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(replay["error"], "invalid_grant");
    for token in [&first_access, &access2] {
        let refused = raw_mcp(&app, Some(token)).await;
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "revoked with the grant"
        );
        assert!(www_authenticate(&refused).contains("error=\"invalid_token\""));
    }
    assert_eq!(
        refresh(&app, &client_id, &refresh2).await.0,
        StatusCode::BAD_REQUEST
    );
    assert!(
        app.get_json(&browser, "/api/v1/account/grants")
            .await
            .as_array()
            .expect("list")
            .is_empty()
    );

    // 7. Revoke on the account page: the assistant's token is refused at once.
    let (access, refresh_token) = authorized(&app, &browser, &client_id).await;
    assert!(works(&app, &access).await);
    let grants = app.get_json(&browser, "/api/v1/account/grants").await;
    let id = grants[0]["id"].as_i64().expect("id");
    let revoked = app
        .post(&browser, &format!("/account/grants/{id}/revoke"))
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        raw_mcp(&app, Some(&access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, &client_id, &refresh_token).await.0,
        StatusCode::BAD_REQUEST
    );

    // 8. Personal access tokens keep working beside OAuth.
    let (_, pat) = crate::mcp::token(&browser, &app).await;
    assert!(works(&app, &pat).await);

    // 9. Disconnecting Bitbucket revokes every grant (and the rows go with the purge).
    let (access, _) = authorized(&app, &browser, &client_id).await;
    assert!(works(&app, &access).await);
    let gone = app.post(&browser, "/api/v1/account/disconnect").await;
    assert_eq!(gone.status(), StatusCode::ACCEPTED);
    assert_eq!(
        raw_mcp(&app, Some(&access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for table in ["oauth_grants", "oauth_tokens", "oauth_codes"] {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&app.state.db.pool)
                .await
                .expect("count");
        assert_eq!(rows, 0, "{table}");
    }
}

async fn refusals_replays_and_sign_in_on_the_way(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, _) = indexed_user(&app, "Ada", "acme", &["web"], &files("ada_code")).await;

    // Registration takes https, loopback http and app schemes, nothing else.
    for bad in [
        json!({"redirect_uris": ["http://evil.example/cb"]}),
        json!({"redirect_uris": ["javascript:alert(1)"]}),
        json!({"redirect_uris": []}),
        json!({"client_name": "no uris"}),
    ] {
        let r = Client::new()
            .post(app.at("/oauth/register"))
            .json(&bad)
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.expect("json");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .starts_with("invalid_"),
            "{body}"
        );
    }
    let loopback = "http://127.0.0.1:1234/cb";
    let client_id = register(
        &app,
        "Loopback Tool",
        &[loopback, "https://tool.example/cb"],
    )
    .await;
    let (verifier, challenge) = pkce();

    // A redirect URI that was not registered is refused on our page, never followed.
    for wrong in [
        "http://127.0.0.1:1234/other",
        "https://evil.example/cb",
        "https://tool.example/cb/",
        "http://localhost:1234/cb",
    ] {
        let r = browser
            .get(authorize_url(&app, &client_id, wrong, &challenge))
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{wrong}");
        assert!(r.headers().get(header::LOCATION).is_none());
    }
    let unknown = browser
        .get(authorize_url(&app, "clc_nobody", loopback, &challenge))
        .send()
        .await
        .expect("authorize");
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    // Without PKCE S256 the client hears why, at its own redirect URI.
    let plain = authorize_url(&app, &client_id, loopback, &challenge)
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let r = browser.get(&plain).send().await.expect("authorize");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = url::Url::parse(&location(&r)).expect("url");
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&back, "state").as_deref(), Some("st4te"));

    // Deny: the client is told, nothing is granted.
    let denied = decide(
        &browser,
        &authorize_url(&app, &client_id, loopback, &challenge),
        "deny",
    )
    .await;
    assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"));
    assert!(param(&denied, "code").is_none());

    // A loopback redirect URI may name another port (RFC 8252); the exchange must repeat it.
    let other_port = "http://127.0.0.1:50999/cb";
    let code = approve(&app, &browser, &client_id, other_port, &challenge).await;
    let (status, body) = exchange(&app, &client_id, &code, loopback, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // That try burned the code: a code is worth one exchange.
    let (status, _) = exchange(&app, &client_id, &code, other_port, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A wrong verifier is refused.
    let code = approve(&app, &browser, &client_id, loopback, &challenge).await;
    let (wrong_verifier, _) = pkce();
    let (status, body) = exchange(&app, &client_id, &code, loopback, &wrong_verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A replayed code is refused, and what its first exchange gave out is revoked.
    let code = approve(&app, &browser, &client_id, loopback, &challenge).await;
    let (status, tokens) = exchange(&app, &client_id, &code, loopback, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert!(works(&app, &access).await);
    let (status, body) = exchange(&app, &client_id, &code, loopback, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        raw_mcp(&app, Some(&access)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The token endpoint knows only registered clients and the two grant types.
    let (status, body) = exchange(&app, "clc_nobody", "x", loopback, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, body) = token_request(
        &app,
        &[("grant_type", "password"), ("client_id", &client_id)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );

    // Signed out: Bitbucket sign-in first, then back to the same consent page.
    let carol = app.fake.add_user("Carol");
    app.fake.add_workspace("carols", "Carol's");
    app.fake.add_member("carols", &carol, "member");
    let fresh = app.browser();
    let authorize = authorize_url(&app, &client_id, loopback, &challenge);
    let r = fresh.get(&authorize).send().await.expect("authorize");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = location(&r);
    assert!(
        login.starts_with("/auth/login?next=%2Foauth%2Fauthorize%3F"),
        "{login}"
    );
    let callback = app.consent_from(&fresh, &carol, "grant", &login).await;
    let landed = fresh.get(callback).send().await.expect("callback");
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.at(&location(&landed)),
        authorize,
        "back to the consent page"
    );
    let back = decide(&fresh, &authorize, "approve").await;
    assert!(param(&back, "code").is_some());
}

async fn a_grant_is_its_users_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, _) = indexed_user(
        &app,
        "Alice",
        "alpha",
        &["secret-repo"],
        &files("alice_only"),
    )
    .await;
    let (bob, _) = indexed_user(&app, "Bob", "beta", &["web"], &files("bob_only")).await;
    // One registered client, approved by both (one app installed by two people).
    let client_id = register(&app, "Shared Assistant", &[REDIRECT]).await;
    let (alice_access, alice_refresh) = authorized(&app, &alice, &client_id).await;
    let (bob_access, _) = authorized(&app, &bob, &client_id).await;
    let bob_client = register(&app, "Bob's Other Tool", &[REDIRECT]).await;

    // Each token reads its own user's code only.
    let mcp = client(&app, &alice_access).await;
    assert!(!text(&call(&mcp, "list_repositories", json!({})).await).contains("beta"));
    let found = text(&call(&mcp, "search_code", json!({"query": "bob_only"})).await);
    assert!(found.starts_with("0 matching files"), "{found}");
    let r = call(
        &mcp,
        "read_file",
        json!({"repository": "beta/web", "path": "src/lib.rs"}),
    )
    .await;
    assert!(crate::mcp::failed(&r) && text(&r).contains("not found"));
    mcp.cancel().await.expect("close");

    // Bob cannot see, revoke or refresh Alice's grant.
    let bob_grants = app.get_json(&bob, "/api/v1/account/grants").await;
    assert_eq!(bob_grants.as_array().expect("list").len(), 1);
    let alice_grants = app.get_json(&alice, "/api/v1/account/grants").await;
    let alice_grant = alice_grants[0]["id"].as_i64().expect("id");
    assert_ne!(bob_grants[0]["id"], alice_grants[0]["id"]);
    let r = bob
        .delete(app.at(&format!("/api/v1/account/grants/{alice_grant}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .post(&bob, &format!("/account/grants/{alice_grant}/revoke"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, body) = refresh(&app, &bob_client, &alice_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert!(
        works(&app, &alice_access).await,
        "Alice's grant is untouched"
    );

    // Bob revoking his own grant leaves Alice's working, and the other way round.
    let bob_grant = bob_grants[0]["id"].as_i64().expect("id");
    let r = bob
        .delete(app.at(&format!("/api/v1/account/grants/{bob_grant}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        raw_mcp(&app, Some(&bob_access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(works(&app, &alice_access).await);
    let (status, _) = refresh(&app, &client_id, &alice_refresh).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Alice's refresh token is still hers to use"
    );
}
