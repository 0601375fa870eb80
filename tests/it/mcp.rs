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
    isolation_tokens_and_disconnect,
    context_lines_merge_where_they_meet,
    answers_fit_and_cursors_continue_without_gaps_or_repeats,
    invalid_queries_say_where_and_how_to_fix,
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
        big_text.len() <= 60_000 && big_text.contains("cut at the answer ceiling"),
        "cut with a note: {} bytes",
        big_text.len()
    );
    let resume = big_text
        .split("start_line=")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("says where to go on");
    assert!(big_text.contains(&format!("{:>6}  line {:04}", resume - 1, resume - 1)));
    assert!(
        !big_text.contains(&format!("line {resume:04} ")),
        "stops right before it"
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
        listed.starts_with("1 file in acme/web") && listed.contains("src/parser.rs\trust"),
        "{listed}"
    );
    let limited = text(
        &call(
            &mcp,
            "list_files",
            json!({"repository": "acme/web", "limit": 1}),
        )
        .await,
    );
    assert!(
        limited.starts_with("3 files") && limited.contains("2 more: call list_files with offset=1"),
        "{limited}"
    );
    let paged = text(
        &call(
            &mcp,
            "list_files",
            json!({"repository": "acme/web", "limit": 1, "offset": 1}),
        )
        .await,
    );
    assert!(
        paged.contains("src/parser.rs") && paged.contains("offset=2"),
        "{paged}"
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

/// The numbered lines of a `search_code` answer: (path, line, is_match), in order.
fn answer_lines(answer: &str, repo: &str) -> Vec<(String, u32, bool)> {
    let mut path = String::new();
    let mut out = Vec::new();
    for line in answer.lines() {
        if let Some(rest) = line.strip_prefix(&format!("## {repo} ")) {
            path = rest.split(" (").next().expect("path").to_owned();
            continue;
        }
        let trimmed = line.trim_start();
        if path.is_empty() {
            continue;
        }
        let digits: String = trimmed.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || line.len() < 8 {
            continue;
        }
        let mark = trimmed[digits.len()..].chars().next();
        if matches!(mark, Some(':' | ' ')) {
            out.push((
                path.clone(),
                digits.parse().expect("number"),
                mark == Some(':'),
            ));
        }
    }
    out
}

/// The cursor an answer ends with, if it was cut or more files match.
fn next_cursor(answer: &str) -> Option<String> {
    let at = answer.find("cursor: ")? + "cursor: ".len();
    Some(
        answer[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

async fn context_lines_merge_where_they_meet(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body: String = (1..=40)
        .map(|n| {
            if [10, 12, 30].contains(&n) {
                format!("row {n:02} hit_me\n")
            } else {
                format!("row {n:02}\n")
            }
        })
        .collect();
    let (browser, _) = indexed_user(
        &app,
        "Ada",
        "acme",
        &["web"],
        &[("src/ctx.rs", FakeFile::Text(body))],
    )
    .await;
    let commit = app.repositories(&browser).await[0]["indexed_commit"]
        .as_str()
        .expect("commit")
        .to_owned();
    let (_, token) = token(&browser, &app).await;
    let mcp = client(&app, &token).await;
    let search = |context: u32| {
        let mcp = &mcp;
        async move {
            text(
                &call(
                    mcp,
                    "search_code",
                    json!({"query": "hit_me", "context_lines": context}),
                )
                .await,
            )
        }
    };

    let two = search(2).await;
    assert!(
        two.contains(&format!("acme/web: indexed commit {commit}")),
        "{two}"
    );
    assert!(
        two.contains(&format!(
            "## acme/web src/ctx.rs (rust, 3 matching lines, commit {})",
            &commit[..12]
        )),
        "{two}"
    );
    let expected = "     8  row 08\n     9  row 09\n    10: row 10 hit_me\n    11  row 11\n    12: row 12 hit_me\n    13  row 13\n    14  row 14\n    --\n    28  row 28\n    29  row 29\n    30: row 30 hit_me\n    31  row 31\n    32  row 32\n";
    assert!(two.contains(expected), "{two}");
    assert!(
        two.starts_with("1 matching file (files 1–1 below)\n"),
        "{two}"
    );
    assert!(
        two.contains("/blob/src/ctx.rs?q=hit_me#L10\n"),
        "the link opens at the first match: {two}"
    );
    let lines = answer_lines(&two, "acme/web");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.2)
            .map(|l| l.1)
            .collect::<Vec<_>>(),
        [10, 12, 30]
    );

    let one = search(1).await;
    assert!(
        one.contains("     9  row 09\n    10: row 10 hit_me\n    11  row 11\n    12: row 12 hit_me\n    13  row 13\n    --\n    29  row 29\n"),
        "11 is the context of both and shown once: {one}"
    );
    let none = search(0).await;
    assert!(
        none.contains(
            "    10: row 10 hit_me\n    --\n    12: row 12 hit_me\n    --\n    30: row 30 hit_me\n"
        ),
        "{none}"
    );
    let ten = search(10).await;
    assert_eq!(
        answer_lines(&ten, "acme/web")
            .iter()
            .map(|l| l.1)
            .collect::<Vec<_>>(),
        (1..=40).collect::<Vec<u32>>(),
        "context reaches the file's ends and no further"
    );
    let refused = call(
        &mcp,
        "search_code",
        json!({"query": "hit_me", "context_lines": 11}),
    )
    .await;
    assert!(failed(&refused) && text(&refused).contains("at most 10"));
    mcp.cancel().await.expect("close");
}

async fn answers_fit_and_cursors_continue_without_gaps_or_repeats(backend: Backend) {
    const CEILING: usize = 8000;
    let app = TestApp::start(
        backend,
        crate::common::Options {
            env: vec![("CODELAYER_MCP_ANSWER_BYTES", CEILING.to_string())],
            ..Default::default()
        },
    )
    .await;
    // Eight long files; every third line matches, so context merges them into long runs.
    let filler = "z".repeat(100);
    let mut files: Vec<(&'static str, FakeFile)> = Vec::new();
    for name in [
        "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "g.txt", "h.txt",
    ] {
        let body: String = (1..=400)
            .map(|n| {
                if n % 3 == 0 {
                    format!("L{n:04} needle {filler}\n")
                } else {
                    format!("L{n:04} hay {filler}\n")
                }
            })
            .collect();
        files.push((name, FakeFile::Text(body)));
    }
    let (browser, _) = indexed_user(&app, "Ada", "acme", &["big"], &files).await;
    let (_, token) = token(&browser, &app).await;
    let mcp = client(&app, &token).await;

    let mut seen: Vec<(String, u32, bool)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut answers = 0;
    loop {
        let mut args = json!({"query": "needle", "repository": "acme/big", "context_lines": 1, "max_results": 3});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let result = call(&mcp, "search_code", args).await;
        let answer = text(&result);
        assert!(!failed(&result), "{answer}");
        assert!(answer.len() <= CEILING, "{} bytes: {answer}", answer.len());
        assert!(answer.starts_with("8 matching files"), "{answer}");
        let lines = answer_lines(&answer, "acme/big");
        assert!(!lines.is_empty(), "every answer makes progress");
        seen.extend(lines);
        answers += 1;
        assert!(answers < 200, "the cursor must come to an end");
        cursor = next_cursor(&answer);
        if cursor.is_none() {
            break;
        }
    }
    assert!(
        answers > 10,
        "a ceiling this low takes many answers: {answers}"
    );
    // Files in rank order, each shown once from line 2 (the context of line 3) to 400.
    let mut expected: Vec<(String, u32, bool)> = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for (path, _, _) in &seen {
        if !order.contains(path) {
            order.push(path.clone());
        }
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "g.txt", "h.txt"
        ]
    );
    for path in &order {
        expected.extend((2..=400).map(|n| (path.clone(), n, n % 3 == 0)));
    }
    assert_eq!(seen.len(), expected.len(), "no gaps, no repeats");
    assert_eq!(seen, expected);

    // A cursor belongs to its search.
    let first = text(
        &call(
            &mcp,
            "search_code",
            json!({"query": "needle", "context_lines": 1}),
        )
        .await,
    );
    let c = next_cursor(&first).expect("cut");
    let other = call(&mcp, "search_code", json!({"query": "hay", "cursor": c})).await;
    assert!(
        failed(&other) && text(&other).contains("another search"),
        "{}",
        text(&other)
    );
    let garbage = call(
        &mcp,
        "search_code",
        json!({"query": "needle", "cursor": "nonsense"}),
    )
    .await;
    assert!(failed(&garbage));
    mcp.cancel().await.expect("close");
}

async fn invalid_queries_say_where_and_how_to_fix(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (browser, _) = indexed_user(&app, "Ada", "acme", &["web"], &files()).await;
    let (_, token) = token(&browser, &app).await;
    let mcp = client(&app, &token).await;

    for (query, says, corrected) in [
        (
            "foo \"bar",
            "this \" is never closed (at character 4",
            Some("foo \"bar\""),
        ),
        (
            "lnag:rust parse_config",
            "unknown filter lnag: — did you mean lang:?",
            Some("lang:rust parse_config"),
        ),
        (
            "/parse_config(input/",
            "unclosed group",
            Some(r"/parse_config\(input/"),
        ),
        (
            "parse_config OR deploy",
            "OR is not an operator here",
            Some("/parse_config|deploy/"),
        ),
        (
            "ext:py parse_config",
            "ext: is not a filter here",
            Some("path:*.py parse_config"),
        ),
        (
            "lang:pyhton parse_config",
            "unknown language",
            Some("lang:python parse_config"),
        ),
        ("-parse_config", "say what to look for", None),
    ] {
        let r = call(&mcp, "search_code", json!({ "query": query })).await;
        let answer = text(&r);
        assert!(failed(&r), "{query}: {answer}");
        assert!(answer.contains(says), "{query}: {answer}");
        match corrected {
            Some(fixed) => {
                assert!(
                    answer.contains(&format!("corrected query: {fixed}\n")),
                    "{query}: {answer}"
                );
                let again = call(&mcp, "search_code", json!({ "query": fixed })).await;
                assert!(!failed(&again), "the correction works: {}", text(&again));
            }
            None => assert!(answer.contains("query language is in this tool's description")),
        }
    }
    // The caret stands under the spot.
    let r = text(&call(&mcp, "search_code", json!({"query": "x lnag:rust"})).await);
    assert!(r.contains("\n  x lnag:rust\n    ^\n"), "{r}");

    // The description states the language the parser takes, from the source /search/help uses.
    let tools = mcp.list_all_tools().await.expect("tools");
    let description = tools
        .iter()
        .find(|t| t.name == "search_code")
        .and_then(|t| t.description.clone())
        .expect("description");
    let help = app.page(&browser, "/search/help").await;
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;")
    };
    for form in codelayer::search::syntax::FORMS {
        for w in form.write {
            assert!(
                description.contains(&format!("`{w}`")),
                "{w} in {description}"
            );
            assert!(
                help.contains(&format!("<code>{}</code>", escape(w))),
                "{w} on the help page"
            );
        }
        assert!(description.contains(form.finds) && help.contains(&escape(form.finds)));
    }
    for (example, _) in codelayer::search::syntax::EXAMPLES {
        assert!(description.contains(example) && help.contains(&escape(example)));
    }
    for filter in codelayer::search::syntax::FILTERS {
        assert!(description.contains(&format!("{}:", filter.name)));
    }
    assert!(
        description.contains("60 KB"),
        "names the ceiling: {description}"
    );
    mcp.cancel().await.expect("close");
}
