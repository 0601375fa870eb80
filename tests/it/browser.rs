//! The whole journey in a real headless Chromium, driven over WebDriver (chromedriver), against
//! the fake Bitbucket: sign in → consent → workspaces → repositories → search → file view →
//! disconnect a workspace → disconnect Bitbucket → signed out.
//!
//! Where a person would use the keyboard, the test does too: `/` to search, typing and Enter,
//! `j`/`k` through results, Escape. It checks what people complained about: no line repeated
//! in a snippet, ready repositories stay ready when more are built, a regex error points at
//! the right character, a link opened while signed out survives sign-in.
//!
//! Every page is saved as a screenshot at 1280×900 and 390×844 in the light colour scheme under
//! `target/e2e-screenshots/<step>-<width>.png` and in the dark one under
//! `target/e2e-screenshots/dark/` (plus `…-full.png` when the page is taller than the window),
//! so people can look at them. Needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/test` installs them); `CHROMEDRIVER` and `CHROMIUM` override their
//! paths. Every codelayer page must also fit the window width and show no raw error or debug
//! text.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::{
    Backend, Options, TestApp,
    fake_bitbucket::{FakeBitbucket, FakeFile, FakeUser},
};
use base64::Engine as _;
use fantoccini::{
    Client, ClientBuilder, Locator, elements::Element, wd::WebDriverCompatibleCommand,
};
use serde_json::{Value, json};

/// A chromedriver of our own on a free port, ended (with the browser it started) on drop,
/// also when the test panics.
struct ChromeDriver {
    child: Child,
    url: String,
    /// The browser profile, fresh for every run.
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(&binary);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Its own process group, so that the browser it starts ends with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {binary} ({e}): install Debian's chromium and chromium-driver \
                 (`.ci/test` does) or set CHROMEDRIVER"
            )
        });
        let mut driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::Builder::new()
                .prefix("codelayer-chromium-")
                .tempdir()
                .expect("profile dir"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("{binary} exited at start: {status}");
            }
            let ready = match http.get(format!("{}/status", driver.url)).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "{binary} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn browser(&self) -> Client {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

async fn cdp(c: &Client, cmd: &'static str, params: Value) -> Value {
    c.issue_cmd(Cdp { cmd, params })
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

/// Saves screenshots of the current page and checks it reads well at both widths.
struct Shots {
    dir: PathBuf,
}

impl Shots {
    fn new() -> Shots {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-screenshots");
        std::fs::create_dir_all(dir.join("dark")).expect("screenshot dir");
        Shots { dir }
    }

    /// `ours`: a codelayer page (the consent page is the fake Bitbucket's).
    async fn take(&self, c: &Client, step: &str, ours: bool) {
        // Dark first, light last: the journey goes on in the light scheme.
        for (scheme, dir) in [("dark", self.dir.join("dark")), ("light", self.dir.clone())] {
            colour_scheme(c, scheme).await;
            self.take_in(c, step, ours, &dir).await;
        }
    }

    async fn take_in(&self, c: &Client, step: &str, ours: bool, dir: &std::path::Path) {
        // Phone first, desktop last: the journey goes on at the desktop size.
        for (width, height, mobile) in [(390u32, 844u32, true), (1280, 900, false)] {
            viewport(c, width, height, mobile).await;
            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{step}-{width}.png")), png).expect("write");
            let full: f64 = c
                .execute("return document.documentElement.scrollHeight", vec![])
                .await
                .expect("height")
                .as_f64()
                .unwrap_or(0.0);
            let full_path = dir.join(format!("{step}-{width}-full.png"));
            let _ = std::fs::remove_file(&full_path);
            if full > f64::from(height) + 1.0 {
                let shot = cdp(
                    c,
                    "Page.captureScreenshot",
                    json!({"format": "png", "captureBeyondViewport": true,
                           "clip": {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}}),
                )
                .await;
                let png = base64::engine::general_purpose::STANDARD
                    .decode(shot["data"].as_str().expect("data"))
                    .expect("base64");
                std::fs::write(&full_path, png).expect("write");
            }
            if ours {
                let overflow = c
                    .execute(
                        "return document.documentElement.scrollWidth - window.innerWidth",
                        vec![],
                    )
                    .await
                    .expect("width");
                assert!(
                    overflow.as_f64().unwrap_or(0.0) <= 0.0,
                    "{step} at {width} px is wider than the window by {overflow} px"
                );
            }
        }
        if ours {
            assert_clean(c, step).await;
        }
    }
}

/// `prefers-color-scheme` as the page sees it: "light" or "dark".
async fn colour_scheme(c: &Client, scheme: &str) {
    cdp(
        c,
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
    )
    .await;
}

/// Types keys into whatever has the focus, as a person at the keyboard would.
async fn keys(c: &Client, text: &str) {
    c.active_element()
        .await
        .expect("focused element")
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type {text:?}: {e}"));
}

/// The id of the focused element ("" when it has none).
async fn focused_id(c: &Client) -> String {
    c.execute(
        "return document.activeElement ? document.activeElement.id : '';",
        vec![],
    )
    .await
    .expect("focus")
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

async fn viewport(c: &Client, width: u32, height: u32, mobile: bool) {
    cdp(
        c,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
    )
    .await;
    // Let the new layout settle before anything measures or shoots it.
    c.execute_async(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));",
        vec![],
    )
    .await
    .expect("a frame");
}

/// No page may show raw errors, debug output or markup as text.
async fn assert_clean(c: &Client, step: &str) {
    let text = body_text(c).await;
    for bad in [
        "panicked",
        "Error {",
        "Error(",
        "sqlx",
        "Some(",
        "None",
        "{{",
        "</",
        "Internal Server Error",
        "undefined",
        "NaN",
    ] {
        assert!(!text.contains(bad), "{step} shows {bad:?}:\n{text}");
    }
    let title = c.title().await.expect("title");
    assert!(
        !title.contains('<') && title.ends_with("· codelayer"),
        "{step} has the title {title:?}"
    );
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

/// Waits until `css` finds an element whose text contains `want`; returns that text.
async fn wait_text(c: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        if let Ok(found) = c.find_all(Locator::Css(css)).await {
            last.clear();
            for e in found {
                if let Ok(text) = e.text().await {
                    if text.contains(want) {
                        return text;
                    }
                    last.push(text);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {css} says {want:?}; they say {last:?} on {}",
            c.current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `script` returns true in the page.
async fn wait_until_js(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.execute(script, vec![]).await.expect("script") != json!(true) {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The id of a repository's row (`repo-<id>`), found by its full name.
async fn row_id(c: &Client, full_name: &str) -> String {
    wait_xpath(c, &row(full_name))
        .await
        .attr("id")
        .await
        .expect("id")
        .expect("a row id")
}

/// Waits for an element (by XPath) to be there and returns it.
async fn wait_xpath(c: &Client, xpath: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("no {xpath}: {e}"))
}

/// Clicks the button or link whose text is `label` (inside `scope`, an XPath prefix).
async fn click(c: &Client, scope: &str, label: &str) {
    let xpath = format!(
        "{scope}//*[(self::a or self::button) and normalize-space()={}]",
        xpath_literal(label)
    );
    wait_xpath(c, &xpath)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {label:?}: {e}"));
}

fn xpath_literal(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

/// The table row of a workspace or repository, found by its slug (full name for repositories).
fn row(code: &str) -> String {
    format!("//tr[.//code[normalize-space()={}]]", xpath_literal(code))
}

/// The text of column `n` (from 1) in the row of a workspace or repository.
async fn cell(c: &Client, code: &str, n: usize) -> String {
    wait_xpath(c, &format!("{}/td[{n}]", row(code)))
        .await
        .text()
        .await
        .expect("cell text")
        .trim()
        .to_owned()
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.expect("url");
    let mut p = url.path().to_owned();
    if let Some(q) = url.query() {
        p = format!("{p}?{q}");
    }
    p
}

async fn wait_path(c: &Client, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = path(c).await;
        if p.starts_with(prefix) {
            return;
        }
        assert!(Instant::now() < deadline, "still on {p}, not {prefix}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pretend assistant's redirect URI on a free loopback port: answers every request with a
/// short page and sends the request's path and query on the channel.
async fn callback_listener() -> (String, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let target = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n<title>Signed in</title>You can close this window.")
                .await;
            if target.starts_with("/cb") {
                let _ = tx.send(target).await;
            }
        }
    });
    (format!("http://127.0.0.1:{port}/cb"), rx)
}

/// The Bitbucket world of the journey: one user in two workspaces, with real commits.
fn arrange(app: &TestApp) -> FakeUser {
    let fake = &app.fake;
    let ada = fake.add_user("Ada Lovelace");
    fake.add_workspace("acme", "Acme Corp");
    fake.add_member("acme", &ada, "owner");
    fake.add_workspace("tools", "Tools Team");
    fake.add_member("tools", &ada, "member");

    fake.add_repo("acme", "api-server");
    // A file with many matches, for "Show more", and enough files for a count that the
    // first answer leaves open ("100+ files").
    let routes: String = (0..40)
        .map(|i| format!("fn route_{i}() {{\n    register_route(\"/r{i}\");\n}}\n"))
        .collect();
    let notes: Vec<(String, FakeFile)> = (0..120)
        .map(|i| {
            let text = format!("note {i}: counted_everywhere\n");
            (format!("notes/n{i:03}.txt"), FakeFile::Text(text))
        })
        .chain([("src/routes.rs".to_owned(), FakeFile::Text(routes))])
        .collect();
    let mut files: Vec<(&str, FakeFile)> = vec![
            (
                "src/main.rs",
                "mod config;\n\nfn main() {\n    let config = config::parse_config(\"codelayer.toml\").expect(\"a readable config\");\n    println!(\"listening on {}\", config.listen);\n}\n".into(),
            ),
            (
                "src/config.rs",
                FakeFile::Text(
                    "/// Settings read from a TOML file.\npub struct Config {\n    pub listen: String,\n}\n\n\
                     /// Reads the file at `path`.\n\
                     pub fn parse_config(path: &str) -> Result<Config, String> {\n    \
                     let text = std::fs::read_to_string(path).map_err(|e| format!(\"cannot read {path}: {e}\"))?;\n    \
                     let listen = text.lines().find_map(|l| l.strip_prefix(\"listen = \")).unwrap_or(\"127.0.0.1:8080\").trim_matches('\"').to_owned();\n    \
                     Ok(Config { listen })\n}\n"
                        .into(),
                ),
            ),
            (
                "tests/config_test.rs",
                "#[test]\nfn parse_config_reads_listen() {\n    assert!(api_server::parse_config(\"missing.toml\").is_err());\n}\n".into(),
            ),
            ("README.md", "# api-server\nCall parse_config to read the settings.\n".into()),
            // Matches close together (their context overlaps) and one far away.
            (
                "src/settings.rs",
                format!(
                    "use crate::config::{{parse_config, Config}};\n\n\
                     pub fn load() -> Config {{\n    parse_config(\"a.toml\")\n        \
                     .or_else(|_| parse_config(\"b.toml\"))\n        .expect(\"settings\")\n}}\n{}\
                     pub fn reload() -> Config {{\n    parse_config(\"c.toml\").expect(\"settings\")\n}}\n",
                    "// (unrelated lines)\n".repeat(13)
                )
                .as_str()
                .into(),
            ),
        ];
    files.extend(notes.iter().map(|(p, f)| (p.as_str(), f.clone())));
    fake.commit("acme", "api-server", "main", &files);
    fake.add_repo("acme", "web-client");
    fake.commit(
        "acme",
        "web-client",
        "main",
        &[(
            "src/config.ts",
            "// Mirrors parse_config in api-server.\nexport function parseConfig(text: string) { return JSON.parse(text); }\n".into(),
        )],
    );
    fake.add_repo("tools", "cli");
    fake.commit(
        "tools",
        "cli",
        "main",
        &[(
            "src/main.rs",
            "fn main() {\n    let path = std::env::args().nth(1).unwrap_or_default();\n    let settings = api_server::parse_config(&path);\n    println!(\"{}\", settings.is_ok());\n}\n".into(),
        )],
    );
    // Slow git answers, so that the progress of a build can be seen.
    fake.set_latency("/acme/api-server/", Duration::from_millis(1200));
    fake.set_latency("/tools/cli/", Duration::from_millis(1500));
    ada
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_in_chromium() {
    let started = Instant::now();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ada = arrange(&app);
    let driver = ChromeDriver::start().await;
    let c = driver.browser().await;
    let shots = Shots::new();
    viewport(&c, 1280, 900, false).await;

    // The start page.
    c.goto(&app.url).await.expect("home");
    wait_text(&c, "h1", "Search your Bitbucket code").await;
    assert!(
        c.find(Locator::Css(".who")).await.is_err(),
        "nobody is signed in"
    );
    shots.take(&c, "01-home", true).await;

    // A link to a search, opened while signed out: the start page, then sign-in leads there.
    c.goto(&app.at("/search?q=parse_config"))
        .await
        .expect("deep link");
    wait_path(&c, "/?next=").await;
    wait_text(&c, ".flash", "Sign in to open the page you followed").await;

    // Sign in → Bitbucket's consent page → Grant access.
    click(&c, "", "Sign in with Bitbucket").await;
    wait_text(&c, "h1", "is requesting access to your Bitbucket account").await;
    assert!(
        c.current_url()
            .await
            .expect("url")
            .as_str()
            .starts_with(&app.fake.url())
    );
    wait_text(&c, "strong.user", "Ada Lovelace").await;
    shots.take(&c, "02-consent", false).await;
    click(&c, "", "Grant access").await;

    // The deep link survived sign-in. Nothing is indexed yet: the page says where to go.
    wait_path(&c, "/search?q=parse_config").await;
    wait_text(&c, ".who .name", "Ada Lovelace").await;
    let empty = wait_text(&c, ".card.empty", "Nothing is indexed yet").await;
    assert!(!empty.contains("fewer words"), "{empty}");
    wait_xpath(
        &c,
        "//section[contains(@class,'empty')]//a[@href='/repositories']",
    )
    .await;
    shots.take(&c, "02b-search-nothing-indexed", true).await;

    // Two workspaces: none is linked by itself.
    click(&c, "//nav", "Workspaces").await;
    wait_path(&c, "/workspaces").await;
    for slug in ["acme", "tools"] {
        let status = cell(&c, slug, 3).await;
        assert!(
            status.contains("Inactive") && status.contains("not linked"),
            "{slug}: {status}"
        );
        // Bitbucket's count, until the list is read once the workspace is linked.
        let count = if slug == "acme" {
            "2 repositories on Bitbucket"
        } else {
            "1 repository on Bitbucket"
        };
        assert_eq!(cell(&c, slug, 4).await, count, "{slug}");
        wait_xpath(
            &c,
            &format!("{}//button[normalize-space()='Link']", row(slug)),
        )
        .await;
    }
    shots.take(&c, "03-workspaces", true).await;

    // Link one: its repositories load by themselves.
    click(&c, &row("acme"), "Link").await;
    wait_path(&c, "/repositories").await;
    wait_text(&c, ".flash", "Linked Acme Corp").await;
    shots.take(&c, "04-repositories-linking", true).await;
    wait_xpath(&c, &row("acme/api-server")).await;
    wait_xpath(&c, &row("acme/web-client")).await;

    // Link the second one, then Refresh.
    click(&c, "//nav", "Workspaces").await;
    wait_path(&c, "/workspaces").await;
    assert_eq!(cell(&c, "acme", 3).await, "Active");
    assert!(cell(&c, "tools", 3).await.starts_with("Inactive"));
    shots.take(&c, "05-workspaces-one-linked", true).await;
    click(&c, &row("tools"), "Link").await;
    wait_path(&c, "/repositories").await;
    wait_text(&c, ".flash", "Linked Tools Team").await;
    wait_xpath(&c, &row("tools/cli")).await;
    click(&c, "//nav", "Workspaces").await;
    wait_path(&c, "/workspaces").await;
    // Meanwhile Ada was added to a third workspace: Refresh shows it.
    app.fake.add_workspace("labs", "Research Labs");
    app.fake.add_member("labs", &ada, "collaborator");
    click(&c, "", "Refresh").await;
    wait_text(&c, ".flash", "Refreshed from Bitbucket: 3 workspaces.").await;
    for (slug, status, repositories) in [
        ("acme", "Active", "2"),
        ("tools", "Active", "1"),
        ("labs", "Inactive", "0 repositories on Bitbucket"),
    ] {
        let shown = cell(&c, slug, 3).await;
        assert_eq!(
            shown.split_whitespace().next(),
            Some(status),
            "{slug}: {shown}"
        );
        assert_eq!(cell(&c, slug, 4).await, repositories, "{slug}");
    }
    assert_eq!(cell(&c, "acme", 2).await, "owner");
    shots.take(&c, "06-workspaces-refreshed", true).await;

    // Repositories: tick two, build, watch the states change live until both are ready.
    click(&c, "//nav", "Repositories").await;
    wait_path(&c, "/repositories").await;
    wait_xpath(&c, &row("tools/cli")).await;
    // The filter narrows a long list as one types.
    c.find(Locator::Id("repo-filter"))
        .await
        .expect("filter")
        .send_keys("tools")
        .await
        .expect("type");
    wait_until_js(
        &c,
        "return document.querySelectorAll('tr[data-repo]:not([hidden])').length === 1",
        "the filter leaves one row",
    )
    .await;
    let shown = wait_text(&c, "tr[data-repo]:not([hidden])", "tools/cli").await;
    assert!(!shown.contains("api-server"), "{shown}");
    c.execute(
        "const f = document.getElementById('repo-filter'); f.value = ''; \
         f.dispatchEvent(new Event('input'));",
        vec![],
    )
    .await
    .expect("clear the filter");
    shots.take(&c, "07-repositories", true).await;
    for name in ["acme/api-server", "tools/cli"] {
        let checkbox = wait_xpath(&c, &format!("{}//input[@type='checkbox']", row(name))).await;
        checkbox.click().await.expect("tick");
        assert!(
            checkbox.is_selected().await.expect("ticked"),
            "{name} is ticked"
        );
    }
    click(&c, "", "Create knowledge layer").await;
    wait_text(
        &c,
        ".flash",
        "Building the knowledge layer for 2 repositories",
    )
    .await;
    // A marker that a reload would wipe out.
    c.execute("window.__journey = 'no reload';", vec![])
        .await
        .expect("marker");
    let state_of = |name: &'static str| {
        let c = &c;
        async move {
            // The live update replaces the cell as the state changes: when it was replaced
            // between finding and reading it, read the new one.
            let mut stale = 0;
            loop {
                let cell = c
                    .find(Locator::XPath(&format!("{}//*[@data-state]", row(name))))
                    .await
                    .expect("state cell");
                let read = async {
                    let state = cell.attr("data-state").await?.unwrap_or_default();
                    Ok::<_, fantoccini::error::CmdError>((state, cell.text().await?))
                };
                match read.await {
                    Ok(read) => return read,
                    Err(e) if e.is_stale_element_reference() && stale < 20 => stale += 1,
                    Err(e) => panic!("the state of {name}: {e}"),
                }
            }
        }
    };
    let (first, text) = state_of("acme/api-server").await;
    assert!(
        ["queued", "cloning", "indexing"].contains(&first.as_str()),
        "a fresh build is under way, not {first} ({text})"
    );
    assert_eq!(state_of("acme/web-client").await.0, "available");
    shots.take(&c, "08-repositories-building", true).await;
    // The state seen before the screenshot counts too: under load the build may finish
    // while the screenshot is taken.
    let mut seen = std::collections::BTreeSet::from([first.clone()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (a, a_text) = state_of("acme/api-server").await;
        let (b, b_text) = state_of("tools/cli").await;
        seen.insert(a.clone());
        seen.insert(b.clone());
        assert!(
            a != "failed" && b != "failed",
            "a build failed: {a_text} / {b_text}"
        );
        if a_text.starts_with("ready ·") && b_text.starts_with("ready ·") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "builds did not finish: {a_text} / {b_text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = c
        .execute("return window.__journey || null;", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker,
        json!("no reload"),
        "the page updated without a reload"
    );
    assert!(
        seen.len() >= 2,
        "the states changed on the page while building: {seen:?}"
    );
    let cli = wait_text(&c, "tr", "tools/cli").await;
    assert!(cli.contains("1 files") || cli.contains("1 file"), "{cli}");
    wait_xpath(
        &c,
        &format!("{}//button[normalize-space()='Sync now']", row("tools/cli")),
    )
    .await;
    // The banner ends with the moment to search, and the build's flash is gone.
    wait_text(&c, "#overall", "Ready — search now").await;
    wait_xpath(&c, "//*[@id='overall']//a[@href='/search']").await;
    shots.take(&c, "09-repositories-ready", true).await;

    // One more, with the two ready ones still ticked: only the new one is built; the ready
    // ones stay ready all along. Bitbucket refuses this clone: the reason is in words.
    app.fake.fail_next("/acme/web-client.git", 403, 10, None);
    let web = wait_xpath(
        &c,
        &format!("{}//input[@type='checkbox']", row("acme/web-client")),
    )
    .await;
    web.click().await.expect("tick");
    click(&c, "", "Create knowledge layer").await;
    wait_text(
        &c,
        ".flash",
        "Building the knowledge layer for 1 repository.",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for name in ["acme/api-server", "tools/cli"] {
            let (state, text) = state_of(name).await;
            assert_eq!(state, "ready", "{name} stays ready: {text}");
        }
        let (web_state, web_text) = state_of("acme/web-client").await;
        if web_state == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-client did not fail: {web_text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = wait_text(
        &c,
        &format!("#{} .status.failed", row_id(&c, "acme/web-client").await),
        "Bitbucket refused access to this repository",
    )
    .await;
    assert!(!refused.contains("http status"), "{refused}");
    shots.take(&c, "09b-repositories-refused", true).await;

    // Search: a word with operators; results come grouped by file.
    click(&c, "//nav", "Search").await;
    wait_path(&c, "/search").await;
    shots.take(&c, "10-search", true).await;
    // At the keyboard: Escape leaves the box, "/" comes back to it, Enter searches.
    keys(&c, "\u{e00c}").await;
    assert_ne!(focused_id(&c).await, "q");
    keys(&c, "/").await;
    assert_eq!(focused_id(&c).await, "q", "/ focuses the search box");
    let query = "parse_config lang:rust -path:tests/";
    keys(&c, &format!("{query}\u{e007}")).await;
    wait_path(&c, "/search?q=").await;
    wait_text(&c, ".summary", "4 files").await;
    let files = c
        .find_all(Locator::Css(".card.file h2"))
        .await
        .expect("files");
    let mut headings = Vec::new();
    for f in &files {
        headings.push(f.text().await.expect("heading"));
    }
    for want in [
        "api-server · src/config.rs",
        "api-server · src/main.rs",
        "api-server · src/settings.rs",
        "cli · src/main.rs",
    ] {
        assert!(
            headings.iter().any(|h| h.contains(want)),
            "{want} in {headings:?}"
        );
    }
    let page = body_text(&c).await;
    assert!(!page.contains("config_test.rs"), "-path:tests/ excludes");
    assert!(!page.contains("config.ts"), "lang:rust excludes");
    assert!(!page.contains("README"), "lang:rust excludes");
    let marks = c
        .find_all(Locator::Css(".card.file mark"))
        .await
        .expect("marks");
    assert!(!marks.is_empty(), "hits are highlighted");
    assert_eq!(marks[0].text().await.expect("mark"), "parse_config");
    // Every snippet counts its lines up without repeating one; close matches share a
    // snippet, and a separator stands where lines are left out.
    let snippets = c
        .execute(
            "return Array.from(document.querySelectorAll('.card.file')).map(card => [\
               card.querySelector('h2').textContent, \
               Array.from(card.querySelectorAll('table.code tr')).filter(tr => tr.getClientRects().length).map(tr => \
                 tr.classList.contains('gap') ? 'gap' : tr.querySelector('td.ln').textContent.trim())]);",
            vec![],
        )
        .await
        .expect("snippets");
    for card in snippets.as_array().expect("cards") {
        let (file, rows) = (card[0].as_str().unwrap_or_default(), &card[1]);
        let mut seen = std::collections::BTreeSet::new();
        let mut previous = 0u64;
        for row in rows.as_array().expect("rows") {
            if row == "gap" {
                previous = 0;
                continue;
            }
            // A definition's number cell also says "def".
            let n: u64 = row
                .as_str()
                .and_then(|t| t.split_whitespace().next()?.parse().ok())
                .expect("a line number");
            assert!(seen.insert(n), "{file} shows line {n} twice: {rows}");
            assert!(previous == 0 || n == previous + 1, "{file}: {rows}");
            previous = n;
        }
        if file.contains("settings.rs") {
            assert_eq!(
                rows,
                &json!(["1", "2", "3", "4", "5", "6", "gap", "21", "22", "23"]),
                "{file}"
            );
        }
    }
    // Syntax colours in the snippets, with the matches still marked.
    wait_xpath(&c, "//section[contains(@class,'file')]//table[contains(@class,'code')]//span[contains(@class,'hljs-keyword')]").await;
    // The facets add up to the total.
    let sums = c
        .execute(
            "return Array.from(document.querySelectorAll('.facets ul')).map(ul => \
               Array.from(ul.querySelectorAll('li > .muted')).reduce((s, n) => s + Number(n.textContent), 0));",
            vec![],
        )
        .await
        .expect("facets");
    assert_eq!(
        sums,
        json!([4, 4]),
        "repository and language counts add up to 4 files"
    );
    // j and k move through the results; the focused one is marked.
    keys(&c, "\u{e00c}").await;
    keys(&c, "j").await;
    keys(&c, "j").await;
    keys(&c, "k").await;
    let current = c
        .execute(
            "const cards = Array.from(document.querySelectorAll('.card.file')); \
             return [cards.findIndex(c => c.classList.contains('current')), \
                     cards.findIndex(c => c.contains(document.activeElement))];",
            vec![],
        )
        .await
        .expect("current");
    assert_eq!(current, json!([0, 0]), "j, j, k lands on the first result");
    shots.take(&c, "11-search-results", true).await;

    // Click a result line → the file view at that line.
    let line_link = c
        .find(Locator::Css(
            ".card.file table.code tr:not(.context) td.ln a",
        ))
        .await
        .expect("a result line");
    let line = line_link.text().await.expect("line number");
    let hit_line = c
        .find(Locator::XPath(
            "(//section[contains(@class,'file')]//tr[not(contains(@class,'context'))])[1]/td[2]",
        ))
        .await
        .expect("hit")
        .text()
        .await
        .expect("hit text");
    line_link.click().await.expect("open the line");
    wait_path(&c, "/repos/").await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.fragment(), Some(format!("L{line}").as_str()), "{url}");
    // "View on Bitbucket" opens the same line there.
    let on_bitbucket = wait_xpath(&c, "//a[@id='on-bitbucket']")
        .await
        .prop("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(
        on_bitbucket.ends_with(&format!("#lines-{line}")),
        "{on_bitbucket}"
    );
    let target = wait_xpath(&c, &format!("//tr[@id='L{line}']")).await;
    assert_eq!(
        target
            .text()
            .await
            .expect("row")
            .trim_start_matches(&line)
            .trim(),
        hit_line.trim()
    );
    let highlighted = c
        .execute(
            "const t = document.querySelector(':target'); \
             return t ? [t.id, getComputedStyle(t).backgroundColor] : null;",
            vec![],
        )
        .await
        .expect("target");
    assert_eq!(highlighted[0], json!(format!("L{line}")), "{highlighted}");
    assert_ne!(
        highlighted[1],
        json!("rgba(0, 0, 0, 0)"),
        "the line is highlighted"
    );
    wait_text(&c, "h1", "src/").await;
    wait_text(&c, "mark", "parse_config").await;
    shots.take(&c, "12-file-view", true).await;
    click(&c, "", "Back to results").await;
    wait_text(&c, ".summary", "4 files").await;

    // A regex with an unclosed group, typed at the keyboard: the error points at the "(".
    keys(&c, "/").await;
    keys(&c, "x /a(b/\u{e007}").await;
    wait_path(&c, "/search?q=x").await;
    let error = wait_text(&c, ".flash.error", "invalid regex").await;
    assert!(
        error.contains("invalid regex: unclosed group (at character 5)"),
        "{error}"
    );
    assert!(!error.contains("error:"), "says error once: {error}");
    let caret = c
        .execute(
            "return document.querySelector('pre.caret .at').textContent;",
            vec![],
        )
        .await
        .expect("caret");
    assert_eq!(caret, json!("    ^"), "the caret stands under the (");
    shots.take(&c, "12b-search-regex-error", true).await;

    // Symbols: the file that defines parse_config leads, its line marked "def"; a use links
    // to the definition, and the file view there shows the outline.
    c.goto(&app.at("/search?q=parse_config%20lang:rust%20-path:tests/"))
        .await
        .expect("search again");
    let first = c
        .find(Locator::Css(".card.file h2"))
        .await
        .expect("first file")
        .text()
        .await
        .expect("heading");
    assert!(first.contains("api-server · src/config.rs"), "{first}");
    wait_text(&c, ".card.file td.ln .def", "def").await;
    wait_xpath(
        &c,
        "//section[contains(@class,'file')][.//h2[contains(., 'api-server · src/main.rs')]]//td[contains(@class,'ln')]/a",
    )
    .await
    .click()
    .await
    .expect("open main.rs");
    wait_text(&c, "h1", "src/main.rs").await;
    let use_site = wait_xpath(&c, "//a[contains(@class,'def') and text()='parse_config']").await;
    use_site.click().await.expect("go to definition");
    wait_text(&c, "h1", "src/config.rs").await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.fragment(), Some("L7"), "{url}");
    wait_text(&c, "details.outline", "function parse_config").await;
    wait_text(&c, "details.outline", "struct Config").await;
    shots.take(&c, "12b-go-to-definition", true).await;
    c.back().await.expect("back");
    c.back().await.expect("back to results");
    wait_text(&c, ".summary", "4 files").await;

    // A file with 40 matches shows 5; "Show 30 more" (Enter on it, at the keyboard)
    // reveals the next ones in place, merged with the first: each line once, in order.
    c.goto(&app.at("/search?q=register_route"))
        .await
        .expect("many matches");
    wait_text(&c, ".summary", "1 file").await;
    let shown_lines = "return Array.from(document.querySelectorAll('.card.file table.code tr')) \
         .filter(tr => tr.getClientRects().length) \
         .map(tr => tr.classList.contains('gap') ? 'gap' : tr.querySelector('td.ln').textContent.trim());";
    let numbers = |to: u32| json!((1..=to).map(|n| n.to_string()).collect::<Vec<_>>());
    let before = c.execute(shown_lines, vec![]).await.expect("lines");
    assert_eq!(before, numbers(15), "5 matches with their context");
    let summary = wait_text(&c, "details.more summary", "Show 30 more matching lines").await;
    assert!(!summary.contains("fewer"), "{summary}");
    shots.take(&c, "12c-search-more-closed", true).await;
    c.execute(
        "document.querySelector('details.more summary').focus();",
        vec![],
    )
    .await
    .expect("focus");
    keys(&c, "\u{e007}").await;
    wait_until_js(
        &c,
        "return document.querySelector('details.more').open",
        "Enter opens it",
    )
    .await;
    let after = c.execute(shown_lines, vec![]).await.expect("lines");
    assert_eq!(
        after,
        numbers(105),
        "35 matches with their context, in place"
    );
    wait_text(&c, "details.more summary", "Show fewer lines").await;
    wait_text(
        &c,
        "details.more p",
        "5 more matching lines are in the file view",
    )
    .await;
    // The revealed lines are coloured like the first ones.
    wait_xpath(
        &c,
        "//tbody[contains(@class,'all')]/tr[100]//span[contains(@class,'hljs-title')]",
    )
    .await;
    shots.take(&c, "12d-search-more-open", true).await;
    // j still moves to the result; a click on the summary folds the lines away again.
    keys(&c, "j").await;
    wait_until_js(
        &c,
        "return document.querySelector('.card.file').classList.contains('current')",
        "j marks the result",
    )
    .await;
    c.find(Locator::Css("details.more summary"))
        .await
        .expect("summary")
        .click()
        .await
        .expect("click");
    wait_until_js(
        &c,
        "return !document.querySelector('details.more').open",
        "a click closes it",
    )
    .await;
    assert_eq!(
        c.execute(shown_lines, vec![]).await.expect("lines"),
        numbers(15)
    );

    // A count the first answer left open ("100+ files") follows in the background.
    c.goto(&app.at("/search?q=counted_everywhere"))
        .await
        .expect("many files");
    wait_text(&c, "#file-count", "120 files").await;
    let sums = c
        .execute(
            "return Array.from(document.querySelectorAll('.facets ul')).map(ul => \
               Array.from(ul.querySelectorAll('li > .muted')).reduce((s, n) => s + Number(n.textContent), 0));",
            vec![],
        )
        .await
        .expect("facets");
    assert_eq!(sums, json!([120, 120]), "the facets follow the count");
    let pages = c
        .execute("return Array.from(document.querySelectorAll('.pager a:not(.button), .pager span')).map(e => e.textContent);", vec![])
        .await
        .expect("pages");
    assert_eq!(
        pages,
        json!(["1", "2", "3", "…", "6"]),
        "and so do the page links"
    );
    assert!(
        c.find(Locator::Css("a[data-count]")).await.is_err(),
        "the count is exact: no link to count it"
    );
    let served = c
        .execute_async(
            "const done = arguments[0]; fetch(location.href).then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .expect("the page as served");
    let served = served.as_str().unwrap_or_default();
    assert!(
        served.contains("+ files</span>") && served.contains(">count exactly</a>"),
        "the page came with a lower bound: {served}"
    );
    shots.take(&c, "12e-search-counted", true).await;

    // The query help, a search without hits and a missing page read well too.
    click(&c, "", "Query syntax").await;
    wait_text(&c, "h1", "Query syntax").await;
    shots.take(&c, "13-search-help", true).await;
    c.goto(&app.at("/search?q=nothing_matches_this%20lang:rust"))
        .await
        .expect("no hits");
    wait_text(&c, ".card.empty", "No matches").await;
    shots.take(&c, "14-search-no-matches", true).await;
    c.goto(&app.at("/repos/999999/blob/src/main.rs"))
        .await
        .expect("missing");
    wait_text(&c, "h1", "Not found").await;
    shots.take(&c, "15-not-found", true).await;

    // Disconnect a workspace: confirmation page → confirm.
    c.goto(&app.at("/workspaces")).await.expect("workspaces");
    wait_path(&c, "/workspaces").await;
    click(&c, &row("tools"), "Disconnect").await;
    wait_text(&c, "h1", "Disconnect Tools Team?").await;
    wait_text(&c, ".deletions li", "tools/cli").await;
    shots.take(&c, "16-workspace-disconnect", true).await;
    click(&c, "", "Disconnect and delete").await;
    wait_path(&c, "/workspaces").await;
    wait_text(&c, ".flash", "Disconnected Tools Team").await;
    assert!(cell(&c, "tools", 3).await.starts_with("Inactive"));
    assert_eq!(cell(&c, "acme", 3).await, "Active");
    shots.take(&c, "17-workspaces-after-disconnect", true).await;

    // An assistant signs in over OAuth: the consent page, Approve, and it is on the account page.
    let (redirect, mut landed) = callback_listener().await;
    let client_id = crate::mcp_oauth::register(&app, "Claude Code", &[&redirect]).await;
    let (verifier, challenge) = crate::mcp_oauth::pkce();
    let authorize = crate::mcp_oauth::authorize_url(&app, &client_id, &redirect, &challenge);
    c.goto(&authorize).await.expect("authorize");
    wait_text(&c, "h1", "Allow Claude Code to read your code?").await;
    shots.take(&c, "18-mcp-consent", true).await;
    click(&c, "", "Approve").await;
    let back = tokio::time::timeout(Duration::from_secs(30), landed.recv())
        .await
        .expect("the browser came back to the assistant")
        .expect("callback");
    let back = url::Url::parse(&format!("{redirect}{}", back.trim_start_matches("/cb")))
        .expect("callback URL");
    let code = crate::mcp_oauth::param(&back, "code").expect("code");
    let (status, tokens) =
        crate::mcp_oauth::exchange(&app, &client_id, &code, &redirect, &verifier).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{tokens}");

    // Account: the connected assistant, a token, then Disconnect Bitbucket.
    c.goto(&app.at("/workspaces"))
        .await
        .expect("back in codelayer");
    click(&c, "//nav", "Account").await;
    wait_path(&c, "/account").await;
    wait_text(&c, ".card", "Signed in as Ada Lovelace").await;
    wait_text(&c, "#assistants td", "Claude Code").await;
    wait_text(&c, ".status", "Connected").await;
    wait_text(&c, "#tokens", "No tokens yet.").await;
    shots.take(&c, "18-account", true).await;
    c.find(Locator::Id("token-name"))
        .await
        .expect("token name")
        .send_keys("my laptop")
        .await
        .expect("type");
    click(&c, "", "Create token").await;
    wait_text(&c, "#tokens", "copy it now").await;
    wait_text(&c, "#tokens td", "my laptop").await;
    shots.take(&c, "19-account-token", true).await;
    // A token for an assistant: the snippets carry it, ready to copy.
    click(&c, "", "Make a token for an assistant").await;
    wait_text(&c, "#tokens", "copy it now").await;
    let token = wait_xpath(&c, "//*[@id='tokens']//pre/code")
        .await
        .text()
        .await
        .expect("token");
    let snippets = wait_text(&c, "#assistants", "claude mcp add").await;
    assert!(
        // (The prose may say `Bearer <token>`; a snippet's placeholder is followed by `"`.)
        !snippets.contains("<token>\"") && snippets.matches(token.trim()).count() == 3,
        "the three snippets carry the token: {snippets}"
    );
    cdp(
        &c,
        "Browser.grantPermissions",
        json!({"origin": app.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}),
    )
    .await;
    let copy = wait_xpath(
        &c,
        "//*[@id='assistant-token']/following::button[normalize-space()='Copy'][1]",
    )
    .await;
    copy.click().await.expect("copy");
    wait_text(&c, "#assistants button.copy", "Copied").await;
    let copied = c
        .execute_async(
            "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .expect("clipboard");
    assert!(
        copied
            .as_str()
            .is_some_and(|t| t.starts_with("claude mcp add") && t.contains(token.trim())),
        "{copied}"
    );
    shots.take(&c, "19b-account-assistant", true).await;
    click(&c, "", "Disconnect Bitbucket…").await;
    wait_path(&c, "/account/disconnect").await;
    wait_text(&c, "h1", "Disconnect Bitbucket?").await;
    wait_text(&c, ".deletions", "Acme Corp").await;
    shots.take(&c, "20-account-disconnect", true).await;
    click(&c, "", "Disconnect and delete everything").await;

    // Signed out, on the start page.
    wait_path(&c, "/?disconnected").await;
    wait_text(&c, ".flash", "Bitbucket is disconnected").await;
    wait_xpath(&c, "//a[normalize-space()='Sign in with Bitbucket']").await;
    assert!(
        c.find(Locator::Css(".who")).await.is_err(),
        "signed out: no name in the header"
    );
    shots.take(&c, "21-signed-out", true).await;
    // The old session is gone: a signed-in page sends the browser back to the start.
    c.goto(&app.at("/workspaces")).await.expect("workspaces");
    assert_eq!(path(&c).await, "/?next=%2Fworkspaces");
    wait_xpath(&c, "//a[normalize-space()='Sign in with Bitbucket']").await;

    c.close().await.expect("close the browser");
    drop(driver);
    eprintln!(
        "browser journey: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.dir.display()
    );
}

/// How fresh each index is, on the repositories page: up to date, or Bitbucket ahead while a
/// pushed commit is being fetched (screenshots `20-freshness-*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_on_the_repositories_page_in_chromium() {
    let app = TestApp::start(
        Backend::Sqlite,
        Options {
            env: vec![("CODELAYER_POLL_SECS", "2".into())],
            ..Options::default()
        },
    )
    .await;
    let grace = app.fake.add_user("Grace Hopper");
    app.fake.add_workspace("acme", "Acme Corp");
    app.fake.add_member("acme", &grace, "member");
    for slug in ["api-server", "web-client"] {
        app.fake.add_repo("acme", slug);
        app.fake.commit(
            "acme",
            slug,
            "main",
            &[("README.md", format!("# {slug}\n").as_str().into())],
        );
    }
    let driver = ChromeDriver::start().await;
    let c = driver.browser().await;
    let shots = Shots::new();
    viewport(&c, 1280, 900, false).await;
    c.goto(&app.url).await.expect("home");
    click(&c, "", "Sign in with Bitbucket").await;
    click(&c, "", "Grant access").await;
    // One workspace: linked by itself, and the app lands on its repositories (their list
    // loads in the background: slow when the machine is busy).
    wait_path(&c, "/repositories").await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while c
        .find(Locator::XPath(&row("acme/web-client")))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the repository list loads");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.expect("reload");
    }
    c.execute(
        "document.querySelectorAll('input[name=ids]').forEach(b => { b.checked = true; });",
        vec![],
    )
    .await
    .expect("tick");
    click(&c, "", "Create knowledge layer").await;
    wait_path(&c, "/repositories").await;
    let fresh = |state: &'static str| format!("//span[@data-fresh='{state}']");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .find_all(Locator::XPath(&fresh("up-to-date")))
        .await
        .map_or(0, |f| f.len())
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "both repositories indexed and checked"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.expect("reload");
    }
    shots.take(&c, "20-freshness-up-to-date", true).await;

    // A push whose fetch takes a while: the page says Bitbucket is ahead meanwhile.
    app.fake.set_latency(
        &FakeBitbucket::git_pack_path("acme", "web-client"),
        Duration::from_secs(20),
    );
    let pushed = app.fake.commit(
        "acme",
        "web-client",
        "main",
        &[("README.md", "# web-client, pushed\n".into())],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.find(Locator::XPath(&fresh("ahead"))).await.is_err() {
        assert!(Instant::now() < deadline, "the page shows Bitbucket ahead");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.expect("reload");
    }
    let ahead = wait_xpath(
        &c,
        &format!("{}//span[@data-fresh='ahead']", row("acme/web-client")),
    )
    .await
    .text()
    .await
    .expect("text");
    assert!(ahead.contains("Bitbucket is ahead since"), "{ahead}");
    assert!(ahead.contains(&pushed[..7]), "{ahead}");
    assert!(ahead.contains("updating"), "{ahead}");
    let other = wait_xpath(
        &c,
        &format!("{}//span[@data-fresh]", row("acme/api-server")),
    )
    .await
    .text()
    .await
    .expect("text");
    assert!(other.contains("up to date"), "{other}");
    shots.take(&c, "20-freshness-ahead", true).await;
}
