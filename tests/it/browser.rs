//! The whole journey in a real headless Chromium, driven over WebDriver (chromedriver), against
//! the fake Bitbucket: sign in → consent → workspaces → repositories → search → file view →
//! disconnect a workspace → disconnect Bitbucket → signed out.
//!
//! Every page is saved as a screenshot at 1280×900 and 390×844 under
//! `target/e2e-screenshots/<step>-<width>.png` (plus `<step>-<width>-full.png` when the page is
//! taller than the window), so people can look at them. Needs `chromium` and `chromedriver`
//! (Debian's `chromium` and `chromium-driver`; `.ci/test` installs them); `CHROMEDRIVER` and
//! `CHROMIUM` override their paths; `CODELAYER_E2E_DARK=1` shoots the dark colour scheme into
//! `target/e2e-screenshots/dark/`. Every codelayer page must also fit the window width and show
//! no raw error or debug text.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::{
    Backend, TestApp,
    fake_bitbucket::{FakeFile, FakeUser},
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
        let name = if std::env::var_os("CODELAYER_E2E_DARK").is_some() {
            "target/e2e-screenshots/dark"
        } else {
            "target/e2e-screenshots"
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        Shots { dir }
    }

    /// `ours`: a codelayer page (the consent page is the fake Bitbucket's).
    async fn take(&self, c: &Client, step: &str, ours: bool) {
        // Phone first, desktop last: the journey goes on at the desktop size.
        for (width, height, mobile) in [(390u32, 844u32, true), (1280, 900, false)] {
            viewport(c, width, height, mobile).await;
            let png = c.screenshot().await.expect("screenshot");
            std::fs::write(self.dir.join(format!("{step}-{width}.png")), png).expect("write");
            let full: f64 = c
                .execute("return document.documentElement.scrollHeight", vec![])
                .await
                .expect("height")
                .as_f64()
                .unwrap_or(0.0);
            let full_path = self.dir.join(format!("{step}-{width}-full.png"));
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
    fake.commit(
        "acme",
        "api-server",
        "main",
        &[
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
        ],
    );
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
    // `CODELAYER_E2E_DARK=1` shoots the journey in the dark colour scheme instead.
    if std::env::var_os("CODELAYER_E2E_DARK").is_some() {
        cdp(
            &c,
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
        )
        .await;
    }

    // The start page.
    c.goto(&app.url).await.expect("home");
    wait_text(&c, "h1", "Search your Bitbucket code").await;
    assert!(
        c.find(Locator::Css(".who")).await.is_err(),
        "nobody is signed in"
    );
    shots.take(&c, "01-home", true).await;

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

    // Two workspaces: none is linked by itself.
    wait_path(&c, "/workspaces").await;
    wait_text(&c, ".who .name", "Ada Lovelace").await;
    for slug in ["acme", "tools"] {
        let status = cell(&c, slug, 3).await;
        assert!(
            status.contains("Inactive") && status.contains("not linked"),
            "{slug}: {status}"
        );
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
        ("labs", "Inactive", "0"),
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
    shots.take(&c, "09-repositories-ready", true).await;

    // Search: a word with operators; results come grouped by file.
    click(&c, "//nav", "Search").await;
    wait_path(&c, "/search").await;
    shots.take(&c, "10-search", true).await;
    let query = "parse_config lang:rust -path:tests/";
    let input = c.find(Locator::Id("q")).await.expect("search box");
    input.send_keys(query).await.expect("type");
    click(&c, "//form[@role='search']", "Search").await;
    wait_path(&c, "/search?q=").await;
    wait_text(&c, ".summary", "3 files").await;
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
    wait_text(&c, ".summary", "3 files").await;

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
    assert_eq!(path(&c).await, "/");
    wait_xpath(&c, "//a[normalize-space()='Sign in with Bitbucket']").await;

    c.close().await.expect("close the browser");
    drop(driver);
    eprintln!(
        "browser journey: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.dir.display()
    );
}
