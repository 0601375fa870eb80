//! Step 5 of the journey: the query language, results, the file view, the JSON API and
//! personal access tokens — and that nothing leaks between users.

mod common;

use common::{Backend, TestApp, fake_bitbucket::FakeFile};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

on_both_databases!(
    every_operator_and_their_combinations,
    results_page_file_view_and_errors,
    personal_access_tokens,
    two_users_with_the_same_repository_names_see_only_their_own,
);

fn corpus() -> Vec<(&'static str, FakeFile)> {
    let big = "x".repeat(1_100_000);
    vec![
        ("src/parser.rs", "// Parser for configs\npub fn parse_config(input: &str) -> Config {\n    let size = input.len();\n    Config::new(size)\n}\n\nfn helper_001() {}\n".into()),
        ("src/lib.rs", "pub mod parser;\nfn main_entry() { println!(\"Hello World\"); }\n".into()),
        ("tools/deploy.py", "def parse_config(path):\n    # parse the deploy config\n    return open(path).read()\n".into()),
        ("docs/notes.md", "Größe und Maß: ünïcödé text 🚀 rocket\nHello world in lower case\n".into()),
        ("vendor/old/parser.rs", "pub fn parse_config() {} // vendored copy\n".into()),
        ("data/blob.bin", FakeFile::Bytes(b"\0\x01binary".to_vec())),
        ("data/huge.txt", FakeFile::Text(big)),
    ]
}

/// A user whose workspace `ws` holds `repos` (each with `corpus()`), all indexed.
async fn indexed(app: &TestApp, name: &str, ws: &str, repos: &[&str]) -> (Client, Vec<i64>) {
    common::indexed_user(app, name, ws, repos, &corpus()).await
}

async fn search(browser: &Client, app: &TestApp, q: &str) -> Value {
    let r = browser
        .get(app.at("/api/v1/search"))
        .query(&[("q", q)])
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), StatusCode::OK, "{q}");
    r.json().await.expect("json")
}

/// The paths a query finds, sorted.
async fn paths(browser: &Client, app: &TestApp, q: &str) -> Vec<String> {
    let v = search(browser, app, q).await;
    let mut p: Vec<String> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["path"].as_str().expect("path").to_owned())
        .collect();
    p.sort();
    assert_eq!(
        v["total_files"].as_u64().expect("total") as usize,
        p.len(),
        "{q}"
    );
    p
}

async fn every_operator_and_their_combinations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (b, _) = indexed(&app, "Searcher", "acme", &["web", "api"]).await;
    let both = |p: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = p
            .iter()
            .flat_map(|p| [p.to_string(), p.to_string()])
            .collect();
        v.sort();
        v
    };
    // Words: all must match, case-insensitive by default.
    assert_eq!(
        paths(&b, &app, "parse_config").await,
        both(&["src/parser.rs", "tools/deploy.py", "vendor/old/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "PARSE_CONFIG deploy").await,
        both(&["tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "hello world").await,
        both(&["docs/notes.md", "src/lib.rs"])
    );
    assert_eq!(
        paths(&b, &app, "\"Hello World\" case:yes").await,
        both(&["src/lib.rs"])
    );
    assert_eq!(
        paths(&b, &app, "\"hello world\"").await,
        both(&["docs/notes.md", "src/lib.rs"])
    );
    assert!(paths(&b, &app, "nothing_matches_this_xyz").await.is_empty());
    // Negation of words and filters.
    assert_eq!(
        paths(&b, &app, "parse_config -vendored").await,
        both(&["src/parser.rs", "tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config -path:vendor/").await,
        both(&["src/parser.rs", "tools/deploy.py"])
    );
    // Filters: path (substring and glob, file: alias), lang, repo, workspace.
    assert_eq!(
        paths(&b, &app, "parse_config path:src/").await,
        both(&["src/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config file:*.py").await,
        both(&["tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config file:src/**/*.rs").await,
        both(&["src/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config lang:python").await,
        both(&["tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config lang:py").await,
        both(&["tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config -lang:rust").await,
        both(&["tools/deploy.py"])
    );
    assert_eq!(
        paths(&b, &app, "parse_config repo:web lang:rust").await,
        vec!["src/parser.rs", "vendor/old/parser.rs"]
    );
    let r = search(&b, &app, "parse_config repo:api path:tools").await;
    assert_eq!(r["results"][0]["repository"], "acme/api");
    assert_eq!(
        paths(&b, &app, "parse_config -repo:api -repo:web").await,
        Vec::<String>::new()
    );
    assert_eq!(
        paths(&b, &app, "parse_config workspace:acme lang:python")
            .await
            .len(),
        2
    );
    assert!(
        paths(&b, &app, "parse_config workspace:other")
            .await
            .is_empty()
    );
    // Regexes: anchors, classes, alternation, no literal at all, negated regex.
    assert_eq!(
        paths(&b, &app, "/^pub fn parse_/").await,
        both(&["src/parser.rs", "vendor/old/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "/helper_[0-9]{3}/").await,
        both(&["src/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "/[a-z]+_[0-9]{3}/").await,
        both(&["src/parser.rs"])
    );
    assert_eq!(
        paths(&b, &app, "/def |mod / -/vendored/").await,
        both(&["src/lib.rs", "tools/deploy.py"])
    );
    // Unicode content, case-insensitively.
    assert_eq!(
        paths(&b, &app, "GRÖSSE").await,
        Vec::<String>::new(),
        "ß is not ss"
    );
    assert_eq!(paths(&b, &app, "größe").await, both(&["docs/notes.md"]));
    assert_eq!(
        paths(&b, &app, "ÜNÏCÖDÉ 🚀").await,
        both(&["docs/notes.md"])
    );
    // Skipped files are never found.
    assert!(paths(&b, &app, "binary").await.is_empty());
    assert!(paths(&b, &app, "/xxxxxxxxxxxxxxxxxxxx/").await.is_empty());

    // Shape: lines are 1-based, ranges are byte offsets into the text.
    let r = search(&b, &app, "size repo:web path:src/parser.rs").await;
    let file = &r["results"][0];
    assert_eq!(file["language"], "rust");
    let m = &file["matches"][0];
    assert_eq!(m["line"], 3);
    assert_eq!(m["text"], "    let size = input.len();");
    assert_eq!(m["ranges"], json!([[8, 12]]));
    assert!(r["took_ms"].is_u64());
    let r = search(&b, &app, "größe").await;
    let m = &r["results"][0]["matches"][0];
    let text = m["text"].as_str().expect("text");
    let [s, e] = [
        m["ranges"][0][0].as_u64().expect("s") as usize,
        m["ranges"][0][1].as_u64().expect("e") as usize,
    ];
    assert_eq!(&text[s..e], "Größe");

    // Errors: invalid regex, pathological regex, too long — clear 400s, never a 5xx.
    let bad = b
        .get(app.at("/api/v1/search"))
        .query(&[("q", "/a(b/")])
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("invalid regex"),
        "{body}"
    );
    let slow = b
        .get(app.at("/api/v1/search"))
        .query(&[("q", "/(x+x+)+y/")])
        .send()
        .await
        .expect("pathological");
    assert_eq!(slow.status(), StatusCode::OK);
    let huge = b
        .get(app.at("/api/v1/search"))
        .query(&[("q", "/\\w{1000}{1000}/")])
        .send()
        .await
        .expect("huge");
    assert_eq!(huge.status(), StatusCode::BAD_REQUEST);
    let long = "a".repeat(4097);
    let r = b
        .get(app.at("/api/v1/search"))
        .query(&[("q", long.as_str())])
        .send()
        .await
        .expect("long");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("4096")
    );
}

async fn results_page_file_view_and_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (b, ids) = indexed(&app, "Reader", "acme", &["web"]).await;
    let page = b
        .get(app.at("/search"))
        .query(&[("q", "parse_config lang:rust")])
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("body");
    assert!(
        html.contains("value=\"parse_config lang:rust\""),
        "the query stays in the box"
    );
    assert!(html.contains("2 files"));
    assert!(html.contains("<mark>parse_config</mark>"));
    assert!(html.contains("src/parser.rs") && html.contains("acme/web"));
    assert!(
        html.contains("/search?q=parse_config%20lang%3Arust%20repo%3Aweb")
            || html.contains("repo%3Aweb"),
        "a repository facet narrows the query"
    );
    assert!(html.contains("href=\"/search/help\""));
    let help = b
        .get(app.at("/search/help"))
        .send()
        .await
        .expect("help")
        .text()
        .await
        .expect("body");
    assert!(help.contains("case:yes") && help.contains("lang:python"));

    // A bad query is answered next to the box, not with a 500.
    let bad = b
        .get(app.at("/search"))
        .query(&[("q", "foo \"open")])
        .send()
        .await
        .expect("page");
    assert_eq!(bad.status(), StatusCode::OK);
    assert!(
        bad.text()
            .await
            .expect("body")
            .contains("never closed (at character 4)")
    );

    // Cursor pagination through a common word.
    let first: Value = b
        .get(app.at("/api/v1/search"))
        .query(&[("q", "/./")])
        .send()
        .await
        .expect("p1")
        .json()
        .await
        .expect("json");
    assert!(first["total_files"].as_u64().expect("total") >= 5);

    // The file view: whole file, line anchors, highlighted matches, link to Bitbucket.
    let id = ids[0];
    let view = b
        .get(app.at(&format!("/repos/{id}/blob/src/parser.rs?q=size")))
        .send()
        .await
        .expect("blob");
    assert_eq!(view.status(), StatusCode::OK);
    let html = view.text().await.expect("body");
    assert!(html.contains("id=\"L3\"") && html.contains("href=\"#L3\""));
    assert!(html.contains("<mark>size</mark>"));
    assert!(html.contains("/src/") && html.contains("View on Bitbucket"));
    assert!(html.contains("Config::new"));
    // Skipped files show a notice; unknown paths and traversal are 404.
    let binary = b
        .get(app.at(&format!("/repos/{id}/blob/data/blob.bin")))
        .send()
        .await
        .expect("bin")
        .text()
        .await
        .expect("body");
    assert!(binary.contains("binary file"), "{binary}");
    let huge = b
        .get(app.at(&format!("/repos/{id}/blob/data/huge.txt")))
        .send()
        .await
        .expect("huge")
        .text()
        .await
        .expect("body");
    assert!(huge.contains("larger than the indexing limit"));
    for path in [
        "no/such/file.rs",
        "../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = b
            .get(app.at(&format!("/repos/{id}/blob/{path}")))
            .send()
            .await
            .expect("missing");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Cloned content is escaped and served as HTML we made, never as its own type.
    let r = b
        .get(app.at(&format!("/repos/{id}/blob/src/lib.rs")))
        .send()
        .await
        .expect("lib");
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = r.text().await.expect("body");
    assert!(
        html.contains("println!(&#34;Hello World&#34;)")
            || html.contains("println!(&quot;Hello World&quot;)"),
        "escaped"
    );
}

async fn personal_access_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (b, _) = indexed(&app, "Automator", "acme", &["web"]).await;
    let made = b
        .post(app.at("/api/v1/account/tokens"))
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("create");
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.expect("json");
    let token = made["token"].as_str().expect("token").to_owned();
    assert_eq!(made["name"], "ci");
    let list: Value = b
        .get(app.at("/api/v1/account/tokens"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list[0]["name"], "ci");
    assert!(
        list[0].get("token").is_none(),
        "the secret is shown once only"
    );
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_one(&app.state.db.pool)
        .await
        .expect("row");
    assert_ne!(stored, token);
    assert!(!stored.contains(&token));

    let bare = Client::new();
    let with_token = bare
        .get(app.at("/api/v1/search"))
        .query(&[("q", "parse_config")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("search");
    assert_eq!(with_token.status(), StatusCode::OK);
    let v: Value = with_token.json().await.expect("json");
    assert_eq!(v["total_files"], 3);
    let used: Value = b
        .get(app.at("/api/v1/account/tokens"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(used[0]["last_used_at"].is_i64());
    // Bearer POSTs need no Origin.
    let refreshed = bare
        .post(app.at("/api/v1/workspaces/refresh"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), StatusCode::OK);
    let wrong = bare
        .get(app.at("/api/v1/search"))
        .query(&[("q", "x")])
        .bearer_auth("cl_nope")
        .send()
        .await
        .expect("wrong");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let id = made["id"].as_i64().expect("id");
    let revoked = b
        .delete(app.at(&format!("/api/v1/account/tokens/{id}")))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after = bare
        .get(app.at("/api/v1/search"))
        .query(&[("q", "parse_config")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("search");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    // The account page makes tokens too, and shows each one once.
    let form = b
        .post(app.at("/account/tokens"))
        .form(&[("name", "laptop")])
        .send()
        .await
        .expect("form");
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    let page = b
        .get(app.at("/account"))
        .send()
        .await
        .expect("account")
        .text()
        .await
        .expect("body");
    assert!(page.contains("shown only this once") && page.contains("cl_"));
    let again = b
        .get(app.at("/account"))
        .send()
        .await
        .expect("account")
        .text()
        .await
        .expect("body");
    assert!(!again.contains("shown only this once"));
}

async fn two_users_with_the_same_repository_names_see_only_their_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, alice_ids) = indexed(&app, "Alice", "alpha", &["web"]).await;
    // Bob: a workspace of his own with a repository of the same name, and a secret.
    let (bob, bob_ids) = common::indexed_user(
        &app,
        "Bob",
        "beta",
        &["web"],
        &[("secret.txt", "BOB_ONLY_SECRET parse_config\n".into())],
    )
    .await;

    assert!(paths(&alice, &app, "BOB_ONLY_SECRET").await.is_empty());
    assert_eq!(
        paths(&bob, &app, "BOB_ONLY_SECRET").await,
        vec!["secret.txt"]
    );
    assert_eq!(
        paths(&bob, &app, "parse_config").await,
        vec!["secret.txt"],
        "Bob sees none of Alice's files"
    );
    assert_eq!(paths(&alice, &app, "parse_config repo:web").await.len(), 3);
    let page = alice
        .get(app.at("/search"))
        .query(&[("q", "parse_config")])
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(
        !page.contains("beta/web") && !page.contains("BOB_ONLY"),
        "no leak through results or facets"
    );
    let page = bob
        .get(app.at("/search"))
        .query(&[("q", "parse_config")])
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("beta/web") && !page.contains("alpha/web"),
        "facets are Bob's only"
    );
    // Guessed URLs: someone else's file view and selection are 404.
    let r = bob
        .get(app.at(&format!("/repos/{}/blob/src/parser.rs", alice_ids[0])))
        .send()
        .await
        .expect("blob");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = bob
        .post(app.at("/api/v1/repositories/index"))
        .json(&json!({"ids": [alice_ids[0]]}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = bob
        .post(app.at(&format!("/api/v1/repositories/{}/sync", alice_ids[0])))
        .send()
        .await
        .expect("sync");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = alice
        .get(app.at(&format!("/repos/{}/blob/secret.txt", bob_ids[0])))
        .send()
        .await
        .expect("blob");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
