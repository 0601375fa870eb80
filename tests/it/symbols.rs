//! Symbols: definitions ranked first, `sym:` queries, the symbols API, the outline and
//! go-to-definition in the file view, the MCP tools, isolation, and old shards rebuilding.

use crate::common::{
    Backend, TestApp, fake_bitbucket::FakeFile, indexed_user, poll_for, shard_dir,
};
use crate::mcp::{call, client, failed, text, token};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_databases!(
    definitions_rank_first_and_are_found_everywhere,
    another_users_symbols_never_appear
);

const DEF_FILE: &str = "src/config/loader_of_everything.rs";

fn files() -> Vec<(&'static str, FakeFile)> {
    let user =
        "use crate::parse_config;\nfn run() {\n    parse_config();\n    parse_config();\n}\n";
    vec![
        (
            DEF_FILE,
            FakeFile::Text(format!(
                "// {}\npub struct Loader;\n\nimpl Loader {{\n    fn load(&self) {{}}\n}}\n\npub fn parse_config() -> u8 {{\n    0\n}}\n",
                "filler ".repeat(300)
            )),
        ),
        // Named like the identifier and using it often: on words alone it would win.
        ("parse_config_user.rs", FakeFile::Text(user.repeat(3))),
        ("b.rs", user.into()),
        (
            "tools/deploy.py",
            "class Deployer:\n    def run(self):\n        return 1\n".into(),
        ),
    ]
}

async fn symbols(app: &TestApp, browser: &reqwest::Client, query: &str) -> Value {
    app.get_json(browser, &format!("/api/v1/symbols?{query}"))
        .await
}

async fn definitions_rank_first_and_are_found_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, ids) = indexed_user(&app, "Ada", "acme", &["web"], &files()).await;
    let id = ids[0];

    // Ranking: the defining file first, its definition line marked; users are not.
    let found = app.search(&browser, "parse_config").await;
    let results = found["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{found}");
    assert_eq!(results[0]["path"], DEF_FILE, "{found}");
    let def_line = results[0]["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .find(|m| m["definition"] == true)
        .expect("a definition line");
    assert_eq!(def_line["line"], 8);
    for user in &results[1..] {
        assert!(
            user["matches"]
                .as_array()
                .expect("matches")
                .iter()
                .all(|m| m["definition"] == false),
            "{user}"
        );
    }

    // sym: finds definitions only, combined with filters and words.
    let sym = app.search(&browser, "sym:PARSE_conf lang:rust").await;
    assert_eq!(sym["total_files"], 1, "{sym}");
    assert_eq!(sym["results"][0]["path"], DEF_FILE);
    assert_eq!(sym["results"][0]["matches"][0]["definition"], true);
    assert_eq!(
        app.search(&browser, "sym:/^Deploy/").await["results"][0]["path"],
        "tools/deploy.py"
    );
    assert_eq!(
        app.search(&browser, "sym:parse_config -path:src/").await["total_files"],
        0
    );
    assert_eq!(
        app.search(&browser, "sym:parse_config lang:python").await["total_files"],
        0
    );
    assert_eq!(
        app.search(&browser, "sym:Loader filler").await["total_files"],
        1
    );
    assert_eq!(
        app.search(&browser, "sym:Loader zebra").await["total_files"],
        0
    );

    // The symbols API: best first, with kind, lines and container.
    let listed = symbols(&app, &browser, "q=load").await;
    let first = &listed["symbols"][0];
    assert_eq!(listed["total"], 2, "{listed}");
    assert_eq!(
        (&first["name"], &first["kind"], &first["path"]),
        (&json!("load"), &json!("method"), &json!(DEF_FILE))
    );
    assert_eq!(first["container"], "Loader");
    assert_eq!(
        (&first["start_line"], &first["end_line"]),
        (&json!(5), &json!(5))
    );
    assert_eq!(first["repository"], "acme/web");
    let classes = symbols(&app, &browser, "q=e&kind=class&repository=acme/web").await;
    assert_eq!(classes["total"], 1, "{classes}");
    assert_eq!(classes["symbols"][0]["name"], "Deployer");
    let bad = browser
        .get(app.at("/api/v1/symbols?q="))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // The file view: an outline, and uses linked to their one definition.
    let deploy = app
        .page(&browser, &format!("/repos/{id}/blob/tools/deploy.py"))
        .await;
    assert!(deploy.contains("Outline"), "{deploy}");
    assert!(
        deploy.contains(r##"<a href="#L2"><span class="muted">function</span> run</a>"##),
        "{deploy}"
    );
    let user_view = app
        .page(&browser, &format!("/repos/{id}/blob/parse_config_user.rs"))
        .await;
    let link = format!(
        r#"<a class="def" href="/repos/{id}/blob/src/config/loader_of_everything.rs?q=#L8">parse_config</a>"#
    );
    assert!(user_view.contains(&link), "{user_view}");
    // A name with no definition in the repository stays plain.
    assert!(!user_view.contains(">crate</a>"));
    // The definition's own name is not a link to itself.
    let def_view = app
        .page(&browser, &format!("/repos/{id}/blob/{DEF_FILE}"))
        .await;
    assert!(!def_view.contains(&link), "no self link");

    // MCP: find_symbol and file_outline.
    let (_, token) = token(&browser, &app).await;
    let mcp = client(&app, &token).await;
    let found = text(&call(&mcp, "find_symbol", json!({"name": "parse_config"})).await);
    assert!(found.starts_with("1 definitions"), "{found}");
    assert!(
        found.contains(&format!(
            "function parse_config  — acme/web {DEF_FILE}, lines 8–10 (rust)"
        )),
        "{found}"
    );
    assert!(
        found.contains("     8  pub fn parse_config() -> u8 {"),
        "{found}"
    );
    let method = text(
        &call(
            &mcp,
            "find_symbol",
            json!({"name": "LOAD", "kind": "method", "repository": "acme/web", "limit": 1}),
        )
        .await,
    );
    assert!(method.contains("method load (in Loader)"), "{method}");
    let outline = text(
        &call(
            &mcp,
            "file_outline",
            json!({"repository": "acme/web", "path": "tools/deploy.py"}),
        )
        .await,
    );
    assert!(
        outline.contains("class Deployer  lines 1–3\n  function run  lines 2–3"),
        "{outline}"
    );
    let missing = call(
        &mcp,
        "file_outline",
        json!({"repository": "acme/web", "path": "nope.py"}),
    )
    .await;
    assert!(failed(&missing) && text(&missing).contains("not found"));
    let bad_kind = call(&mcp, "find_symbol", json!({"name": "x", "kind": "gadget"})).await;
    assert!(failed(&bad_kind) && text(&bad_kind).contains("unknown kind"));
    mcp.cancel().await.expect("close");

    // A shard of an older format (no VERSION) is rebuilt though the branch has not moved.
    let shard = shard_dir(&app.data_path, id);
    std::fs::remove_file(shard.join("VERSION")).expect("VERSION");
    std::fs::write(shard.join("old-shard-marker"), b"x").expect("marker");
    let synced = app
        .post(&browser, &format!("/api/v1/repositories/{id}/sync"))
        .await;
    assert_eq!(synced.status(), StatusCode::OK);
    poll_for(60, "the old shard is rebuilt", || async {
        (shard.join("VERSION").exists() && !shard.join("old-shard-marker").exists()).then_some(())
    })
    .await;
}

async fn another_users_symbols_never_appear(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, _) = indexed_user(
        &app,
        "Alice",
        "alpha",
        &["secret-repo"],
        &[("a.rs", "fn alice_secret_fn() {}\n".into())],
    )
    .await;
    let (bob, _) = indexed_user(&app, "Bob", "beta", &["web"], &files()).await;

    // Alice finds her symbol; Bob, asking the same, does not.
    assert_eq!(symbols(&app, &alice, "q=alice_secret").await["total"], 1);
    assert_eq!(symbols(&app, &bob, "q=alice_secret").await["total"], 0);
    assert_eq!(
        symbols(&app, &bob, "q=/.*/").await["symbols"]
            .as_array()
            .expect("symbols")
            .iter()
            .filter(|s| s["repository"] != "beta/web")
            .count(),
        0
    );
    assert_eq!(
        app.search(&alice, "sym:alice_secret").await["total_files"],
        1
    );
    assert_eq!(app.search(&bob, "sym:alice_secret").await["total_files"], 0);
    // Naming her repository is "not found", like a missing one.
    let r = bob
        .get(app.at("/api/v1/symbols?q=alice&repository=alpha/secret-repo"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (_, bob_token) = token(&bob, &app).await;
    let mcp = client(&app, &bob_token).await;
    let none = text(&call(&mcp, "find_symbol", json!({"name": "alice_secret"})).await);
    assert!(none.starts_with("No definition"), "{none}");
    let theirs = call(
        &mcp,
        "find_symbol",
        json!({"name": "alice", "repository": "alpha/secret-repo"}),
    )
    .await;
    assert!(failed(&theirs) && text(&theirs).contains("not found"));
    let outline = call(
        &mcp,
        "file_outline",
        json!({"repository": "alpha/secret-repo", "path": "a.rs"}),
    )
    .await;
    assert!(failed(&outline) && text(&outline).contains("not found"));
    // Bob's own outline works through the same tool.
    let own = call(
        &mcp,
        "file_outline",
        json!({"repository": "beta/web", "path": "b.rs"}),
    )
    .await;
    assert!(
        !failed(&own) && text(&own).contains("function run"),
        "{}",
        text(&own)
    );
    mcp.cancel().await.expect("close");
}
