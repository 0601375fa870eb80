//! The knowledge layer for AI assistants: MCP over Streamable HTTP, spoken by rmcp's client.

use crate::common::{Backend, TestApp, fake_bitbucket::FakeFile, indexed_user, wait_until};
use reqwest::StatusCode;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult},
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

on_both_databases!(
    tools_answer_like_the_search_page,
    isolation_tokens_and_disconnect
);

fn files() -> Vec<(&'static str, FakeFile)> {
    let long: String = (1..=3000)
        .map(|n| format!("line {n:04} {}\n", "y".repeat(90)))
        .collect();
    vec![
        (
            "src/parser.rs",
            "// the parser\npub fn parse_config(input: &str) -> usize {\n    input.len()\n}\n"
                .into(),
        ),
        (
            "tools/deploy.py",
            "def parse_config(path):\n    return path\n".into(),
        ),
        ("docs/long.txt", FakeFile::Text(long)),
    ]
}

pub(crate) async fn token(browser: &reqwest::Client, app: &TestApp) -> (i64, String) {
    let made: Value = browser
        .post(app.at("/api/v1/account/tokens"))
        .json(&json!({"name": "assistant"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    (
        made["id"].as_i64().expect("id"),
        made["token"].as_str().expect("token").to_owned(),
    )
}

pub(crate) async fn client(app: &TestApp, token: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(app.at("/mcp")).auth_header(token),
    );
    ().serve(transport).await.expect("MCP initialize")
}

pub(crate) async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> CallToolResult {
    let args = args.as_object().expect("object").clone();
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .expect("tool call answered")
}

pub(crate) fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn failed(result: &CallToolResult) -> bool {
    result.is_error == Some(true)
}

async fn tools_answer_like_the_search_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, ids) = indexed_user(&app, "Ada", "acme", &["web"], &files()).await;
    let (_, token) = token(&browser, &app).await;
    let mcp = client(&app, &token).await;

    let tools = mcp.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "file_outline",
            "find_symbol",
            "list_files",
            "list_repositories",
            "read_file",
            "search_code"
        ]
    );
    let search_tool = tools
        .iter()
        .find(|t| t.name == "search_code")
        .expect("search_code");
    let schema = serde_json::to_value(&*search_tool.input_schema).expect("schema");
    assert_eq!(schema["required"], json!(["query"]), "{schema}");
    assert!(
        search_tool
            .description
            .as_deref()
            .unwrap_or("")
            .contains("lang:")
    );

    let repos = text(&call(&mcp, "list_repositories", json!({})).await);
    assert!(repos.contains("acme/web — ready"), "{repos}");

    // search_code agrees with the JSON API on the same query.
    let api = app.search(&browser, "parse_config").await;
    let found = text(&call(&mcp, "search_code", json!({"query": "parse_config"})).await);
    assert!(
        found.starts_with(&format!("{} matching files", api["total_files"])),
        "{found}"
    );
    for file in api["results"].as_array().expect("results") {
        let path = file["path"].as_str().expect("path");
        assert!(
            found.contains(&format!("acme/web {path}")),
            "{path} in {found}"
        );
        let line = file["matches"][0]["line"].as_u64().expect("line");
        assert!(found.contains(&format!("{line:>6}: ")), "line {line}");
    }
    assert!(
        found.contains(&format!("/repos/{}/blob/src/parser.rs", ids[0])),
        "link to the file view"
    );
    let scoped = text(
        &call(
            &mcp,
            "search_code",
            json!({"query": "parse_config lang:python", "repository": "acme/web", "limit": 1}),
        )
        .await,
    );
    assert!(
        scoped.contains("tools/deploy.py") && !scoped.contains("src/parser.rs"),
        "{scoped}"
    );

    let read = text(
        &call(
            &mcp,
            "read_file",
            json!({"repository": "acme/web", "path": "src/parser.rs"}),
        )
        .await,
    );
    assert!(read.contains("     2  pub fn parse_config"), "{read}");
    let range = text(&call(&mcp, "read_file", json!({"repository": "acme/web", "path": "docs/long.txt", "start_line": 10, "end_line": 12})).await);
    assert!(
        range.contains("    10  line 0010")
            && range.contains("    12  line 0012")
            && !range.contains("line 0013 "),
        "{range}"
    );
    assert!(range.contains("start_line=13"), "says how to read on");
    let big = call(&mcp, "read_file", json!({"repository": "acme/web", "path": "docs/long.txt", "start_line": 1, "end_line": 3000})).await;
    let big_text = text(&big);
    assert!(
        big_text.len() <= 200 * 1024 + 200 && big_text.contains("answer cut at 200 KB"),
        "cut with a note"
    );

    let listed = text(
        &call(
            &mcp,
            "list_files",
            json!({"repository": "acme/web", "path_prefix": "src/"}),
        )
        .await,
    );
    assert!(
        listed.starts_with("1 files") && listed.contains("src/parser.rs\trust"),
        "{listed}"
    );
    let globbed = text(
        &call(
            &mcp,
            "list_files",
            json!({"repository": "acme/web", "path_prefix": "**/*.py"}),
        )
        .await,
    );
    assert!(
        globbed.contains("tools/deploy.py") && !globbed.contains("parser.rs"),
        "{globbed}"
    );

    // Bad arguments are tool errors, not protocol failures.
    let bad = call(&mcp, "search_code", json!({"query": "/a(b/"})).await;
    assert!(
        failed(&bad) && text(&bad).contains("invalid regex"),
        "{}",
        text(&bad)
    );
    let missing = call(
        &mcp,
        "read_file",
        json!({"repository": "acme/web", "path": "nope.rs"}),
    )
    .await;
    assert!(failed(&missing) && text(&missing).contains("not found"));
    mcp.cancel().await.expect("close");
}

async fn isolation_tokens_and_disconnect(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, _) = indexed_user(
        &app,
        "Alice",
        "alpha",
        &["secret-repo"],
        &[("a.txt", "ALICE_ONLY_TEXT\n".into())],
    )
    .await;
    let (bob, _) = indexed_user(&app, "Bob", "beta", &["web"], &files()).await;
    let (_, bob_token) = token(&bob, &app).await;
    let (alice_token_id, alice_token) = token(&alice, &app).await;

    // No token, a wrong one: 401 before any MCP message is read.
    let raw = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let none = raw
        .post(app.at("/mcp"))
        .json(&init)
        .send()
        .await
        .expect("post");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = raw
        .post(app.at("/mcp"))
        .bearer_auth("cl_wrong")
        .json(&init)
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Bob asking for Alice's repository: "not found", the same as a missing one.
    let mcp = client(&app, &bob_token).await;
    for (tool, args) in [
        (
            "read_file",
            json!({"repository": "alpha/secret-repo", "path": "a.txt"}),
        ),
        ("list_files", json!({"repository": "alpha/secret-repo"})),
        (
            "search_code",
            json!({"query": "ALICE_ONLY_TEXT", "repository": "alpha/secret-repo"}),
        ),
    ] {
        let r = call(&mcp, tool, args).await;
        assert!(
            failed(&r) && text(&r).contains("not found"),
            "{tool}: {}",
            text(&r)
        );
        assert!(!text(&r).contains("ALICE_ONLY_TEXT"));
    }
    let all = text(&call(&mcp, "search_code", json!({"query": "ALICE_ONLY_TEXT"})).await);
    assert!(all.starts_with("0 matching files"), "{all}");
    assert!(!text(&call(&mcp, "list_repositories", json!({})).await).contains("alpha"));
    mcp.cancel().await.expect("close");

    // A revoked token is refused.
    alice
        .delete(app.at(&format!("/api/v1/account/tokens/{alice_token_id}")))
        .send()
        .await
        .expect("revoke");
    let revoked = raw
        .post(app.at("/mcp"))
        .bearer_auth(&alice_token)
        .json(&init)
        .send()
        .await
        .expect("post");
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);

    // After disconnecting the workspace, its repositories vanish from every tool at once.
    let mcp = client(&app, &bob_token).await;
    assert!(text(&call(&mcp, "list_repositories", json!({})).await).contains("beta/web"));
    let ws = app.get_json(&bob, "/api/v1/workspaces").await;
    let id = ws[0]["id"].as_i64().expect("id");
    let r = app
        .post(&bob, &format!("/api/v1/workspaces/{id}/disconnect"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!text(&call(&mcp, "list_repositories", json!({})).await).contains("beta/web"));
    let gone = call(
        &mcp,
        "read_file",
        json!({"repository": "beta/web", "path": "src/parser.rs"}),
    )
    .await;
    assert!(failed(&gone) && text(&gone).contains("not found"));
    assert!(
        text(&call(&mcp, "search_code", json!({"query": "parse_config"})).await)
            .starts_with("0 matching files")
    );
    wait_until(20, "the purge finished", || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM repositories WHERE workspace_id = $1")
            .bind(id)
            .fetch_one(&app.state.db.pool)
            .await
            .expect("count")
            == 0
    })
    .await;
    mcp.cancel().await.expect("close");
}
