//! Step 5 of the journey: the query language, results, the file view, the JSON API and
//! personal access tokens — and that nothing leaks between users.

use crate::common::{Backend, TestApp, fake_bitbucket::FakeFile};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

on_both_databases!(
    every_operator_and_their_combinations,
    results_page_file_view_and_errors,
    personal_access_tokens,
    two_users_with_the_same_repository_names_see_only_their_own,
    more_matching_lines_open_in_place_within_ceilings,
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
    crate::common::indexed_user(app, name, ws, repos, &corpus()).await
}

/// The paths a query finds, sorted.
async fn paths(browser: &Client, app: &TestApp, q: &str) -> Vec<String> {
    let mut p: Vec<String> = found(browser, app, q)
        .await
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    p.sort();
    p
}

/// The (repository, path) of every file a query finds, sorted; `total_files` must agree.
async fn found(browser: &Client, app: &TestApp, q: &str) -> Vec<(String, String)> {
    let v = app.search(browser, q).await;
    let mut found: Vec<(String, String)> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let field = |name: &str| r[name].as_str().expect(name).to_owned();
            (field("repository"), field("path"))
        })
        .collect();
    found.sort();
    assert_eq!(
        v["total_files"].as_u64().expect("total") as usize,
        found.len(),
        "{q}"
    );
    found
}

/// The repositories of the operator test (each holds `corpus()`), and no files.
const BOTH: &[&str] = &["acme/api", "acme/web"];
const WEB: &[&str] = &["acme/web"];
const API: &[&str] = &["acme/api"];
const NOTHING: &[&str] = &[];

/// Each query of the language, the files it finds and the repositories it finds each of them
/// in: exactly those, nothing else.
#[rustfmt::skip]
const OPERATOR_CASES: &[(&str, &[&str], &[&str])] = &[
    // Words: all must match, case-insensitive by default.
    ("parse_config", &["src/parser.rs", "tools/deploy.py", "vendor/old/parser.rs"], BOTH),
    ("PARSE_CONFIG deploy", &["tools/deploy.py"], BOTH),
    ("hello world", &["docs/notes.md", "src/lib.rs"], BOTH),
    ("\"Hello World\" case:yes", &["src/lib.rs"], BOTH),
    ("\"hello world\"", &["docs/notes.md", "src/lib.rs"], BOTH),
    ("nothing_matches_this_xyz", NOTHING, BOTH),
    // Negation of words and filters.
    ("parse_config -vendored", &["src/parser.rs", "tools/deploy.py"], BOTH),
    ("parse_config -path:vendor/", &["src/parser.rs", "tools/deploy.py"], BOTH),
    // Filters: path (substring and glob, file: alias), lang, repo, workspace.
    ("parse_config path:src/", &["src/parser.rs"], BOTH),
    ("parse_config file:*.py", &["tools/deploy.py"], BOTH),
    ("parse_config file:src/**/*.rs", &["src/parser.rs"], BOTH),
    ("parse_config lang:python", &["tools/deploy.py"], BOTH),
    ("parse_config lang:py", &["tools/deploy.py"], BOTH),
    ("parse_config -lang:rust", &["tools/deploy.py"], BOTH),
    ("parse_config repo:web lang:rust", &["src/parser.rs", "vendor/old/parser.rs"], WEB),
    ("parse_config repo:api path:tools", &["tools/deploy.py"], API),
    ("parse_config -repo:api -repo:web", NOTHING, BOTH),
    ("parse_config workspace:acme lang:python", &["tools/deploy.py"], BOTH),
    ("parse_config workspace:other", NOTHING, BOTH),
    // Regexes: anchors, classes, alternation, no literal at all, negated regex.
    ("/^pub fn parse_/", &["src/parser.rs", "vendor/old/parser.rs"], BOTH),
    ("/helper_[0-9]{3}/", &["src/parser.rs"], BOTH),
    ("/[a-z]+_[0-9]{3}/", &["src/parser.rs"], BOTH),
    ("/def |mod / -/vendored/", &["src/lib.rs", "tools/deploy.py"], BOTH),
    // Unicode content, case-insensitively (and ß is not ss).
    ("GRÖSSE", NOTHING, BOTH),
    ("größe", &["docs/notes.md"], BOTH),
    ("ÜNÏCÖDÉ 🚀", &["docs/notes.md"], BOTH),
    // Skipped files (binary, too large) are never found.
    ("binary", NOTHING, BOTH),
    ("/xxxxxxxxxxxxxxxxxxxx/", NOTHING, BOTH),
];

async fn every_operator_and_their_combinations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (b, _) = indexed(&app, "Searcher", "acme", &["web", "api"]).await;
    for (n, &(query, files, repos)) in OPERATOR_CASES.iter().enumerate() {
        let mut expected: Vec<(String, String)> = repos
            .iter()
            .flat_map(|repo| {
                files
                    .iter()
                    .map(|file| (repo.to_string(), file.to_string()))
            })
            .collect();
        expected.sort();
        assert_eq!(
            found(&b, &app, query).await,
            expected,
            "operator case {n}: {query:?} finds {files:?} in {repos:?}"
        );
    }

    // Shape: lines are 1-based, ranges are byte offsets into the text.
    let r = app.search(&b, "size repo:web path:src/parser.rs").await;
    let file = &r["results"][0];
    assert_eq!(file["language"], "rust");
    let m = &file["matches"][0];
    assert_eq!(m["line"], 3);
    assert_eq!(m["text"], "    let size = input.len();");
    assert_eq!(m["ranges"], json!([[8, 12]]));
    assert!(r["took_ms"].is_u64());
    let r = app.search(&b, "größe").await;
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
    let help = app.page(&b, "/search/help").await;
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
            .contains("never closed (at character 5)")
    );

    // Cursor pagination through a common word.
    let first = app.search(&b, "/./").await;
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
    let binary = app
        .page(&b, &format!("/repos/{id}/blob/data/blob.bin"))
        .await;
    assert!(binary.contains("binary file"), "{binary}");
    let huge = app
        .page(&b, &format!("/repos/{id}/blob/data/huge.txt"))
        .await;
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
    let list = app.get_json(&b, "/api/v1/account/tokens").await;
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
    let used = app.get_json(&b, "/api/v1/account/tokens").await;
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
    let page = app.page(&b, "/account").await;
    assert!(page.contains("shown only this once") && page.contains("cl_"));
    let again = app.page(&b, "/account").await;
    assert!(!again.contains("shown only this once"));
}

async fn two_users_with_the_same_repository_names_see_only_their_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, alice_ids) = indexed(&app, "Alice", "alpha", &["web"]).await;
    // Bob: a workspace of his own with a repository of the same name, and a secret.
    let (bob, bob_ids) = crate::common::indexed_user(
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
    let r = app
        .post(&bob, &format!("/api/v1/repositories/{}/sync", alice_ids[0]))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = alice
        .get(app.at(&format!("/repos/{}/blob/secret.txt", bob_ids[0])))
        .send()
        .await
        .expect("blob");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// `n` functions, each calling `register_route` on its second line (lines 2, 5, 8, …).
fn routes(n: usize) -> String {
    (0..n)
        .map(|i| format!("fn route_{i}() {{\n    register_route(\"/r{i}\");\n}}\n"))
        .collect()
}

/// The line numbers of the rows in one `<tbody class="…">` of an HTML snippet.
fn body_lines(html: &str, class: &str) -> Vec<u32> {
    let start = html
        .find(&format!("<tbody class=\"{class}\">"))
        .unwrap_or_else(|| panic!("a {class} body in {html}"));
    let body = &html[start..start + html[start..].find("</tbody>").expect("end")];
    let number = regex::Regex::new(r#"<td class="ln">(?:<a [^>]*>)?(\d+)"#).expect("regex");
    number
        .captures_iter(body)
        .map(|c| c[1].parse().expect("a number"))
        .collect()
}

async fn more_matching_lines_open_in_place_within_ceilings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Eight files of 40 matching lines: 5 shown each, 30 more to reveal — until the page's
    // 200 are used up.
    let files: Vec<(String, FakeFile)> = (0..8)
        .map(|i| (format!("src/routes_{i}.rs"), FakeFile::Text(routes(40))))
        .chain([("src/one.rs".to_owned(), FakeFile::Text(routes(2)))])
        .collect();
    let files: Vec<(&str, FakeFile)> = files.iter().map(|(p, f)| (p.as_str(), f.clone())).collect();
    let (b, _) = crate::common::indexed_user(&app, "Many", "acme", &["web"], &files).await;
    let html = app.page(&b, "/search?q=register_route").await;
    let cards: Vec<&str> = html
        .split("<section class=\"card file\">")
        .skip(1)
        .collect();
    assert_eq!(cards.len(), 9);
    let mut revealed = Vec::new();
    for card in &cards {
        if card.contains("src/one.rs") {
            assert!(
                !card.contains("<details") && !card.contains("more matching"),
                "{card}"
            );
            assert_eq!(body_lines(card, "lines"), [1, 2, 3, 4, 5, 6]);
            continue;
        }
        // The first five matches with their context, merged into one run of lines.
        let shown: Vec<u32> = (1..=15).collect();
        if !card.contains("<details class=\"more\">") {
            // The page's ceiling is reached: the file view has the rest.
            assert_eq!(body_lines(card, "lines"), shown);
            assert!(
                card.contains("Show 35 more matching lines in the file</a>"),
                "{card}"
            );
            revealed.push(0);
            continue;
        }
        assert_eq!(body_lines(card, "lines fewer"), shown);
        let all = body_lines(card, "lines all");
        let n = (all.len() as u32 - 15) / 3;
        assert_eq!(
            all,
            (1..=15 + 3 * n).collect::<Vec<u32>>(),
            "each line once, in order"
        );
        assert!(
            card.contains(&format!(
                "<span class=\"closed\">Show {n} more matching lines</span>"
            )),
            "{card}"
        );
        let beyond = 35 - n;
        assert!(
            card.contains(&format!("{beyond} more matching lines are in <a href=")),
            "{card}"
        );
        revealed.push(n);
    }
    revealed.sort_unstable();
    assert_eq!(
        revealed,
        [0, 20, 30, 30, 30, 30, 30, 30],
        "30 per file, 200 per page"
    );

    // The JSON API keeps its shape: five lines per file and no revealed ones.
    let v = app.search(&b, "register_route").await;
    for r in v["results"].as_array().expect("results") {
        assert!(r.get("more_matches").is_none(), "{r}");
        assert!(r["matches"].as_array().expect("matches").len() <= 5);
    }
}
