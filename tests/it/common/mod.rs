//! Shared set-up for the journey tests: a real app on a random port with its own database
//! (SQLite file or a fresh PostgreSQL database) and its own fake Bitbucket.
#![allow(dead_code)]

pub mod fake_bitbucket;

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

// The only place the tests name the app's state type (it is moving to `codelayer::state`).
use codelayer::app::AppState;
use codelayer::{
    app::{App, Tuning},
    bitbucket::RetryPolicy,
    config::Config,
};
use fake_bitbucket::{FakeBitbucket, FakeUser};
use reqwest::{Client, StatusCode, header};
use serde_json::Value;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once against SQLite and once against PostgreSQL: `on_both_databases!(a, b)`
/// in module `m` makes the tests `m::sqlite::a`, `m::postgres::a`, … (`main.rs` declares this
/// module with `#[macro_use]`, so every test module can use the macro by name).
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

/// Where the app keeps a repository's bare clone: `DATA_DIR/git/<repo_id>.git` (the documented
/// data-dir layout; the tests do not ask the crate for it).
pub fn clone_dir(data: &Path, repo_id: i64) -> PathBuf {
    data.join("git").join(format!("{repo_id}.git"))
}

/// Where the app keeps a repository's search shard: `DATA_DIR/shards/<repo_id>/`.
pub fn shard_dir(data: &Path, repo_id: i64) -> PathBuf {
    data.join("shards").join(repo_id.to_string())
}

/// The workspace with `slug` in a `/api/v1/workspaces` list.
pub fn workspace<'a>(list: &'a Value, slug: &str) -> &'a Value {
    list.as_array()
        .expect("list")
        .iter()
        .find(|w| w["slug"] == slug)
        .unwrap_or_else(|| panic!("no workspace {slug} in {list}"))
}

/// The PostgreSQL server the suite uses; `.ci/test` starts one when none answers.
pub fn postgres_admin_url() -> String {
    std::env::var("CODELAYER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A running app, its fake Bitbucket and its private data directory.
pub struct TestApp {
    pub url: String,
    pub state: AppState,
    pub fake: FakeBitbucket,
    data_dir: tempfile::TempDir,
    /// Where this app keeps its data (a reused app's, when restarted on it).
    pub data_path: std::path::PathBuf,
    pub database_url: String,
    postgres_db: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Options for `TestApp::start`.
#[derive(Default)]
pub struct Options {
    /// Leave the OAuth consumer unconfigured.
    pub no_oauth: bool,
    /// Extra configuration keys.
    pub env: Vec<(&'static str, String)>,
    /// Reuse this fake (e.g. to restart an app against the same Bitbucket).
    pub fake: Option<FakeBitbucket>,
    /// Restart on the data dir and database of an earlier app (which must outlive this one).
    pub reuse: Option<(std::path::PathBuf, String)>,
}

impl TestApp {
    /// What `Options::reuse` needs to restart another app on this one's data.
    pub fn reuse(&self) -> Option<(std::path::PathBuf, String)> {
        Some((self.data_path.clone(), self.database_url.clone()))
    }

    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::start(backend, Options::default()).await
    }

    pub async fn start(backend: Backend, options: Options) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            // Debugging aid: `TEST_LOG=1 cargo test -- --nocapture` shows the app's log.
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info,codelayer=debug")
                .try_init();
        }
        let fake = match options.fake {
            Some(fake) => fake,
            None => FakeBitbucket::start().await,
        };
        let data_dir = tempfile::tempdir().expect("tempdir");
        let (data_path, database_url, postgres_db) = match (options.reuse, backend) {
            (Some((dir, url)), _) => (dir, url, None),
            (None, Backend::Sqlite) => (
                data_dir.path().to_path_buf(),
                format!(
                    "sqlite://{}",
                    data_dir.path().join("codelayer.db").display()
                ),
                None,
            ),
            (None, Backend::Postgres) => {
                let (url, name) = fresh_postgres_database().await;
                (data_dir.path().to_path_buf(), url, Some(name))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        fake.set_callback(&format!("{url}/auth/callback"));

        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("CODELAYER_PUBLIC_URL".into(), url.clone());
        env.insert("CODELAYER_DATA_DIR".into(), data_path.display().to_string());
        env.insert("DATABASE_URL".into(), database_url.clone());
        env.insert("BITBUCKET_AUTH_URL".into(), fake.url());
        env.insert("BITBUCKET_API_URL".into(), fake.url());
        env.insert("BITBUCKET_GIT_URL".into(), fake.url());
        env.insert("CODELAYER_HTTP_TIMEOUT_SECS".into(), "5".into());
        // The per-install request budget is tested on its own; elsewhere it must not slow tests.
        env.insert("CODELAYER_API_REQUESTS_PER_HOUR".into(), "3600000".into());
        if !options.no_oauth {
            env.insert(
                "BITBUCKET_CLIENT_ID".into(),
                FakeBitbucket::CLIENT_ID.into(),
            );
            env.insert(
                "BITBUCKET_CLIENT_SECRET".into(),
                FakeBitbucket::CLIENT_SECRET.into(),
            );
        }
        for (k, v) in options.env {
            env.insert(k.into(), v);
        }
        let config = Config::from_map(&env).expect("valid test config");
        let tuning = Tuning {
            retry: Some(RetryPolicy {
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(3),
                max_retries: 4,
            }),
            job_retry_base: Some(Duration::from_millis(200)),
        };
        let app = App::new(config, tuning).await.expect("app starts");
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestApp {
            url,
            state,
            fake,
            data_dir,
            data_path,
            database_url,
            postgres_db,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A browser-like client: keeps cookies, does not follow redirects, sends our Origin on POST.
    pub fn browser(&self) -> Client {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::ORIGIN, self.url.parse().expect("origin"));
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client")
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The body of the page at `path` as `browser` gets it (whatever the status).
    pub async fn page(&self, browser: &Client, path: &str) -> String {
        browser
            .get(self.at(path))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("body")
    }

    /// GET `path` with `browser`; it must answer 200 with JSON.
    pub async fn get_json(&self, browser: &Client, path: &str) -> Value {
        let r = browser.get(self.at(path)).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json")
    }

    /// A same-origin POST of `path` with `browser`, its Origin set to this app explicitly
    /// (the browser may have been made for another process on the same data).
    pub async fn post(&self, browser: &Client, path: &str) -> reqwest::Response {
        browser
            .post(self.at(path))
            .header(header::ORIGIN, &self.url)
            .send()
            .await
            .expect("post")
    }

    /// `/api/v1/search?q=` as `browser`; it must answer 200.
    pub async fn search(&self, browser: &Client, q: &str) -> Value {
        let r = browser
            .get(self.at("/api/v1/search"))
            .query(&[("q", q)])
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), StatusCode::OK, "search {q}");
        r.json().await.expect("json")
    }

    /// The repositories `browser` sees (`/api/v1/repositories`).
    pub async fn repositories(&self, browser: &Client) -> Vec<Value> {
        match self.get_json(browser, "/api/v1/repositories").await {
            Value::Array(list) => list,
            other => panic!("not a list: {other}"),
        }
    }

    /// The ids of the repositories listed to `browser`, once there are `count` of them
    /// (waiting at most `secs`).
    pub async fn wait_listed(&self, browser: &Client, count: usize, secs: u64) -> Vec<i64> {
        poll_for(secs, &format!("{count} repositories listed"), || async {
            let ids: Vec<i64> = self
                .repositories(browser)
                .await
                .iter()
                .filter_map(|r| r["id"].as_i64())
                .collect();
            (ids.len() == count).then_some(ids)
        })
        .await
    }

    /// The repository with `id` as `/api/v1/repositories` lists it to `browser`.
    pub async fn repo_json(&self, browser: &Client, id: i64) -> Value {
        self.repositories(browser)
            .await
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("repository {id} is not listed"))
    }

    /// The repository named `full_name` (`workspace/slug`), if `browser` sees it.
    pub async fn repo_named(&self, browser: &Client, full_name: &str) -> Option<Value> {
        self.repositories(browser)
            .await
            .into_iter()
            .find(|r| r["full_name"] == full_name)
    }

    /// Walks the whole OAuth dance as `user` and returns the page the app lands on.
    pub async fn sign_in(&self, browser: &Client, user: &FakeUser) -> String {
        let landed = self.sign_in_until_callback(browser, user, "grant").await;
        assert_eq!(landed.status(), StatusCode::SEE_OTHER, "callback redirects");
        let next = location(&landed);
        let page = browser
            .get(self.at(&next))
            .send()
            .await
            .expect("landing page");
        assert_eq!(page.status(), StatusCode::OK, "landing page {next}");
        page.text().await.expect("body")
    }

    /// Login → Bitbucket consent (granted or denied) → the app's callback response.
    pub async fn sign_in_until_callback(
        &self,
        browser: &Client,
        user: &FakeUser,
        decision: &str,
    ) -> reqwest::Response {
        let callback = self.consent(browser, user, decision).await;
        browser.get(callback).send().await.expect("callback")
    }

    /// Login → Bitbucket consent; returns the callback URL Bitbucket redirects to.
    pub async fn consent(&self, browser: &Client, user: &FakeUser, decision: &str) -> String {
        self.consent_from(browser, user, decision, "/auth/login")
            .await
    }

    /// Like [`TestApp::consent`], starting from `login` (e.g. `/auth/login?next=…`).
    pub async fn consent_from(
        &self,
        browser: &Client,
        user: &FakeUser,
        decision: &str,
        login: &str,
    ) -> String {
        self.fake.sign_in_browser(user);
        let login = browser.get(self.at(login)).send().await.expect("login");
        assert_eq!(
            login.status(),
            StatusCode::SEE_OTHER,
            "login redirects to Bitbucket"
        );
        let authorize = url::Url::parse(&location(&login)).expect("authorize URL");
        let consent_page = browser
            .get(authorize.clone())
            .send()
            .await
            .expect("consent");
        assert_eq!(consent_page.status(), StatusCode::OK);
        let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        form.push(("decision".into(), decision.into()));
        let decided = browser
            .post(format!("{}/site/oauth2/authorize", self.fake.url()))
            .form(&form)
            .send()
            .await
            .expect("decision");
        assert_eq!(
            decided.status(),
            StatusCode::FOUND,
            "Bitbucket redirects back"
        );
        location(&decided)
    }

    /// Stops the server (as a SIGTERM would).
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        self.state.db.pool.close().await;
    }

    /// Every file's bytes under the data dir, for scans of what is left on disk.
    pub fn files_on_disk(&self) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_path, &mut out);
        out
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(name) = self.postgres_db.take() {
            // Drop runs outside async context: a short-lived runtime removes the database.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(db) = codelayer::db::Db::connect(&postgres_admin_url()).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .execute(&db.pool)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Creates an empty database for one test; fails loudly when PostgreSQL is not there.
async fn fresh_postgres_database() -> (String, String) {
    let admin = postgres_admin_url();
    let db = codelayer::db::Db::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and did not answer at {admin} ({e}). \
             Run `.ci/test` (it starts one) or set CODELAYER_TEST_POSTGRES."
            )
        });
    let name = format!(
        "codelayer_test_{}_{}",
        std::process::id(),
        codelayer::auth::crypto::random_token(9)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&db.pool)
        .await
        .expect("create test database");
    db.pool.close().await;
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&name);
    (url.to_string(), name)
}

/// Polls `check` until it holds, failing the test after `secs` seconds.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` until it yields a value, failing the test after `secs` seconds.
pub async fn poll_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Location header of a redirect.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on {} {}", response.status(), response.url()))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Everything the process logged, captured for scans (installed once, by the first test that
/// asks, for the whole test binary).
pub fn captured_logs() -> LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer(Arc::new(Mutex::new(Vec::new())));
            let writer = buffer.clone();
            tracing_subscriber::fmt()
                .with_env_filter("debug,codelayer=trace")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            buffer
        })
        .clone()
}

/// A shared in-memory log sink.
#[derive(Clone)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Signs in a new user whose workspace `ws` holds `repos`, each committed with `files`, and
/// builds all their knowledge layers; returns the browser and the repository ids.
pub async fn indexed_user(
    app: &TestApp,
    name: &str,
    ws: &str,
    repos: &[&str],
    files: &[(&str, fake_bitbucket::FakeFile)],
) -> (Client, Vec<i64>) {
    let user = app.fake.add_user(name);
    app.fake.add_workspace(ws, ws);
    app.fake.add_member(ws, &user, "member");
    for slug in repos {
        app.fake.add_repo(ws, slug);
        app.fake.commit(ws, slug, "main", files);
    }
    let browser = app.browser();
    app.sign_in(&browser, &user).await;
    let ids: Vec<i64> = poll_for(20, "repositories listed", || async {
        let list: serde_json::Value = browser
            .get(app.at("/api/v1/repositories"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let ids: Vec<i64> = list
            .as_array()?
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        (ids.len() == repos.len()).then_some(ids)
    })
    .await;
    let r = browser
        .post(app.at("/api/v1/repositories/index"))
        .json(&serde_json::json!({"ids": ids}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status(), StatusCode::OK);
    poll_for(60, "all repositories ready", || async {
        let list: serde_json::Value = browser
            .get(app.at("/api/v1/repositories"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.as_array()?
            .iter()
            .all(|r| r["state"] == "ready")
            .then_some(())
    })
    .await;
    (browser, ids)
}

/// Starts a real `codelayer serve` process on an app's data (for kill -9 tests).
pub fn spawn_server(
    data: &std::path::Path,
    database_url: &str,
    fake_url: &str,
) -> std::process::Child {
    spawn_server_with(data, database_url, fake_url, &[])
}

/// Like [`spawn_server`], with extra configuration (the last of a key wins).
pub fn spawn_server_with(
    data: &std::path::Path,
    database_url: &str,
    fake_url: &str,
    extra: &[(&str, &str)],
) -> std::process::Child {
    server_command(
        Path::new(env!("CARGO_BIN_EXE_codelayer")),
        data,
        database_url,
        fake_url,
    )
    .envs(extra.iter().copied())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("codelayer serve starts")
}

/// `binary serve` on an app's data against a fake Bitbucket, every other setting at its
/// default; the caller adds configuration and chooses where the output goes.
pub fn server_command(
    binary: &Path,
    data: &Path,
    database_url: &str,
    fake_url: &str,
) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CODELAYER_LISTEN", "127.0.0.1:0")
        .env("CODELAYER_DATA_DIR", data)
        .env("DATABASE_URL", database_url)
        .env("BITBUCKET_CLIENT_ID", FakeBitbucket::CLIENT_ID)
        .env("BITBUCKET_CLIENT_SECRET", FakeBitbucket::CLIENT_SECRET)
        .env("BITBUCKET_AUTH_URL", fake_url)
        .env("BITBUCKET_API_URL", fake_url)
        .env("BITBUCKET_GIT_URL", fake_url);
    command
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An id as a job payload carries it (ids are otherwise only read from rows or made by the
/// authentication extractors; a test that plays a job needs one from a number).
pub fn job_payload_id<T: serde::de::DeserializeOwned>(id: i64) -> T {
    serde_json::from_value(serde_json::json!(id)).expect("an id from a number")
}
