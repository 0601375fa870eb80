//! `AppState`: everything a handler or job may need, and how it is built from the config.
//!
//! Low in the house: capabilities import it; it imports only the clients and stores below.

use std::{sync::Arc, time::Duration};

use crate::{
    auth::{crypto::SecretBox, oauth::OAuth, session_store::DbSessionStore, tokens::TokenKeeper},
    bitbucket::{Bitbucket, RetryPolicy},
    config::Config,
    db::Db,
    gate::{Gate, Pool},
    index::ContentCache,
    jobs::{Doorbell, Job, Queue},
    layout::Layout,
    recent::Recent,
    shards::ShardCache,
};

/// Everything a handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub layout: Layout,
    pub db: Db,
    pub oauth: Option<OAuth>,
    /// Seals secrets that must rest anywhere (tokens in the database, in a session).
    pub secrets: SecretBox,
    pub tokens: Arc<TokenKeeper>,
    pub bitbucket: Arc<Bitbucket>,
    pub sessions: DbSessionStore,
    pub queue: Queue,
    pub doorbell: Doorbell,
    pub shards: Arc<ShardCache>,
    /// Admission for searches (fair between users), and the threads they run on.
    pub search_gate: Arc<Gate>,
    pub search_pool: Arc<Pool>,
    /// Each user's most recent search answers, until a shard changes.
    pub recent: Arc<Recent>,
}

/// Knobs tests turn; production uses the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tuning {
    pub retry: Option<RetryPolicy>,
    /// First delay before a failed job runs again (default 30 s).
    pub job_retry_base: Option<Duration>,
}

impl AppState {
    /// Prepares the data dir, connects and migrates the database, builds the clients.
    pub async fn build(config: Config, tuning: Tuning) -> anyhow::Result<AppState> {
        // Everything codelayer writes is its own: files 0600, directories 0700, whatever the
        // umask it was started with (SQLite, git and tantivy create files with default modes).
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        std::fs::set_permissions(
            &config.data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| anyhow::anyhow!("cannot make the data dir private: {e}"))?;
        let layout = Layout::new(config.data_dir.clone());
        layout
            .clear_tmp()
            .map_err(|e| anyhow::anyhow!("cannot empty the data dir's tmp/: {e}"))?;
        crate::git::set_timeouts(config.git_timeout);
        let secrets = SecretBox::load(config.secret_key.as_deref(), &config.data_dir)
            .map_err(anyhow::Error::msg)?;
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;

        // Every outbound call has a timeout; none follows redirects (the token exchange
        // must not, and API `next` links are followed by hand after an origin check).
        let http = reqwest::Client::builder()
            .user_agent(concat!("codelayer/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.http_timeout)
            .build()?;
        let oauth = config
            .bitbucket
            .as_ref()
            .map(|consumer| OAuth::new(&config, consumer, http.clone()));
        let tokens = Arc::new(TokenKeeper::new(db.clone(), secrets.clone(), oauth.clone()));
        let bitbucket = Arc::new(Bitbucket::new(
            http,
            config.api_url.clone(),
            tokens.clone(),
            config.api_requests_per_hour,
            config.api_burst,
            tuning.retry.unwrap_or_default(),
        ));
        let lease_secs =
            i64::try_from(config.job_lease.as_secs()).unwrap_or(crate::jobs::LEASE_SECS);
        let search_gate = Arc::new(Gate::new(config.search_concurrency, config.search_per_user));
        let recent = Arc::new(Recent::new(config.search_cache_per_user));
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let search_pool = Arc::new(Pool::new(cores));
        let content_cache = Arc::new(ContentCache::new(config.content_cache_bytes));
        Ok(AppState {
            config: Arc::new(config),
            sessions: DbSessionStore::new(db.clone()),
            queue: Queue::new(
                db.clone(),
                tuning.job_retry_base.unwrap_or(Duration::from_secs(30)),
                lease_secs,
            ),
            doorbell: Doorbell::default(),
            shards: Arc::new(ShardCache::new(layout.clone(), 1024, content_cache)),
            search_gate,
            search_pool,
            recent,
            layout,
            db,
            oauth,
            secrets,
            tokens,
            bitbucket,
        })
    }

    /// Queues a job and wakes an idle worker.
    pub async fn enqueue(&self, job: &Job) -> Result<(), sqlx::Error> {
        self.queue.enqueue(job).await?;
        self.doorbell.notify_one();
        Ok(())
    }

    /// Like `enqueue`, but a running job is not asked to run once more (see `Queue::ensure`).
    pub async fn ensure_queued(&self, job: &Job) -> Result<(), sqlx::Error> {
        self.queue.ensure(job).await?;
        self.doorbell.notify_one();
        Ok(())
    }
}
