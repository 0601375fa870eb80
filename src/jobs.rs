//! The durable job queue: a `jobs` table claimed with leases, and a pool of tokio workers.
//!
//! A claimed job carries a lease that its worker keeps extending; a job whose worker died is
//! claimed again once the lease runs out. Every job is idempotent, so running one twice gives
//! the same end state. On PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so several app
//! processes share one queue; on SQLite the single UPDATE statement is atomic.

use std::{sync::Arc, time::Duration};

use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    db::{Backend, Db, now},
    ids::{RepoId, UserId, WorkspaceId},
};

/// Wakes idle workers when a job is added (they also poll, for jobs of other processes).
pub type Doorbell = Arc<Notify>;

/// How long a claim lasts without renewal, unless configured otherwise.
pub const LEASE_SECS: i64 = 60;

/// What a job asks for; stored as JSON in `payload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Re-read the user's workspaces from Bitbucket.
    RefreshWorkspaces { user_id: UserId },
    /// Re-read one workspace's repositories from Bitbucket.
    LoadRepositories { workspace_id: WorkspaceId },
    /// Delete a workspace's repositories, files and rows (disconnect, lost access).
    PurgeWorkspace { workspace_id: WorkspaceId },
    /// Delete everything of a user.
    PurgeUser { user_id: UserId },
    /// Fetch a selected repository and rebuild its shard when the main branch moved.
    SyncRepository { repo_id: RepoId },
}

/// What a job does, stored as text in the `kind` column and in dedupe keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    RefreshWorkspaces,
    LoadRepositories,
    PurgeWorkspace,
    PurgeUser,
    SyncRepository,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RefreshWorkspaces => "refresh_workspaces",
            JobKind::LoadRepositories => "load_repositories",
            JobKind::PurgeWorkspace => "purge_workspace",
            JobKind::PurgeUser => "purge_user",
            JobKind::SyncRepository => "sync_repository",
        }
    }
}

/// The one spelling of a dedupe key: at most one queued job per key.
pub fn dedupe_key(kind: JobKind, id: i64) -> String {
    format!("{}:{id}", kind.as_str())
}

impl Job {
    /// What the job does and for which row.
    pub fn kind_and_id(&self) -> (JobKind, i64) {
        match self {
            Job::RefreshWorkspaces { user_id } => (JobKind::RefreshWorkspaces, user_id.get()),
            Job::LoadRepositories { workspace_id } => {
                (JobKind::LoadRepositories, workspace_id.get())
            }
            Job::PurgeWorkspace { workspace_id } => (JobKind::PurgeWorkspace, workspace_id.get()),
            Job::PurgeUser { user_id } => (JobKind::PurgeUser, user_id.get()),
            Job::SyncRepository { repo_id } => (JobKind::SyncRepository, repo_id.get()),
        }
    }

    /// At most one queued job per key: asking twice does the work once.
    pub fn dedupe_key(&self) -> String {
        let (kind, id) = self.kind_and_id();
        dedupe_key(kind, id)
    }

    /// Purges must finish whatever happens; Bitbucket calls give up after a few tries.
    fn max_attempts(&self) -> i64 {
        match self {
            Job::PurgeWorkspace { .. } | Job::PurgeUser { .. } => 1000,
            // A build that kills the process (out of memory, say) must not do so for ever.
            Job::SyncRepository { .. } => 3,
            _ => 4,
        }
    }
}

/// How a job run ended when it did not succeed.
#[derive(Debug)]
pub enum JobError {
    /// Worth another attempt later (network trouble, Bitbucket 5xx / 429).
    Retry(String),
    /// Another attempt cannot help (access gone, bad data).
    Permanent(String),
}

/// A claimed job.
#[derive(Debug)]
pub struct Claimed {
    pub id: i64,
    pub job: Job,
    pub attempts: i64,
    max_attempts: i64,
}

/// A job whose every attempt died with its process: failed without running again.
#[derive(Debug)]
pub struct Abandoned {
    pub job: Job,
    pub reason: String,
}

/// The queue's operations.
#[derive(Clone, Debug)]
pub struct Queue {
    db: Db,
    /// First retry delay; doubles with every attempt (with jitter).
    pub retry_base: Duration,
    /// How long a claim lasts without renewal.
    pub lease_secs: i64,
}

impl Queue {
    pub fn new(db: Db, retry_base: Duration, lease_secs: i64) -> Queue {
        Queue {
            db,
            retry_base,
            lease_secs: lease_secs.max(1),
        }
    }

    /// Fails the jobs whose lease ran out on their last attempt: their process died while
    /// running them (a crash, an abort on memory), and claiming them again could only repeat
    /// that. A job whose process died earlier is claimed again, and that counts as a try.
    pub async fn fail_abandoned(&self) -> Result<Vec<Abandoned>, sqlx::Error> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, payload, attempts FROM jobs \
             WHERE state = 'running' AND lease_until < $1 AND attempts >= max_attempts",
        )
        .bind(now())
        .fetch_all(&self.db.pool)
        .await?;
        let mut abandoned = Vec::new();
        for (id, payload, attempts) in rows {
            let reason = format!(
                "stopped after {attempts} {}: the last run did not finish",
                if attempts == 1 { "try" } else { "tries" }
            );
            let failed = sqlx::query(
                "UPDATE jobs SET state = 'failed', lease_until = 0, last_error = $2 \
                 WHERE id = $1 AND state = 'running' AND lease_until < $3",
            )
            .bind(id)
            .bind(&reason)
            .bind(now())
            .execute(&self.db.pool)
            .await?;
            // Another process may have failed it first; only the one that did reports it.
            if failed.rows_affected() == 1
                && let Ok(job) = serde_json::from_str(&payload)
            {
                abandoned.push(Abandoned { job, reason });
            }
        }
        Ok(abandoned)
    }

    /// Adds a job unless the same one is already waiting. A failed one is queued afresh; a
    /// running one is marked to run once more when it ends (what it is doing may already be
    /// out of date: a push, a click on Sync or Refresh arrived after it started).
    pub async fn enqueue(&self, job: &Job) -> Result<(), sqlx::Error> {
        self.add(job, true).await
    }

    /// Makes sure the job is queued or running, without asking a running one to run again
    /// (start-up recovery and schedules that only want the work done once).
    pub async fn ensure(&self, job: &Job) -> Result<(), sqlx::Error> {
        self.add(job, false).await
    }

    async fn add(&self, job: &Job, again_if_running: bool) -> Result<(), sqlx::Error> {
        let payload = serde_json::to_string(job).expect("jobs serialize");
        let at = now();
        sqlx::query(
            "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, run_after, lease_until, created_at) \
             VALUES ($1, $2, $3, 'queued', 0, $4, $5, 0, $5) \
             ON CONFLICT (dedupe_key) DO UPDATE SET \
               state = CASE WHEN jobs.state = 'failed' THEN 'queued' ELSE jobs.state END, \
               attempts = CASE WHEN jobs.state = 'failed' THEN 0 ELSE jobs.attempts END, \
               run_after = CASE WHEN jobs.state = 'failed' THEN excluded.run_after ELSE jobs.run_after END, \
               last_error = CASE WHEN jobs.state = 'failed' THEN NULL ELSE jobs.last_error END, \
               rerun = CASE WHEN jobs.state = 'running' AND $6 = 1 THEN 1 ELSE jobs.rerun END \
             WHERE jobs.state IN ('failed', 'running')",
        )
        .bind(job.kind_and_id().0.as_str())
        .bind(payload)
        .bind(job.dedupe_key())
        .bind(job.max_attempts())
        .bind(at)
        .bind(i64::from(again_if_running))
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Takes the next due job (or one whose lease ran out) for this worker. A job whose
    /// lease ran out on its last attempt is `fail_abandoned`'s, even if the clock ticked
    /// past its lease between the two calls.
    pub async fn claim(&self) -> Result<Option<Claimed>, sqlx::Error> {
        let lock = match self.db.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_until = $1, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM jobs \
                 WHERE (state = 'queued' AND run_after <= $2) \
                    OR (state = 'running' AND lease_until < $2 AND attempts < max_attempts) \
                 ORDER BY run_after, id LIMIT 1 {lock}) \
             RETURNING id, payload, attempts, max_attempts"
        );
        let at = now();
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(at + self.lease_secs)
            .bind(at)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some((id, payload, attempts, max_attempts)) = row else {
            return Ok(None);
        };
        match serde_json::from_str(&payload) {
            Ok(job) => Ok(Some(Claimed {
                id,
                job,
                attempts,
                max_attempts,
            })),
            Err(e) => {
                self.fail(id, &format!("unreadable job: {e}")).await?;
                Ok(None)
            }
        }
    }

    /// Extends the lease of a job still being worked on.
    pub async fn renew(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE jobs SET lease_until = $2 WHERE id = $1 AND state = 'running'")
            .bind(id)
            .bind(now() + self.lease_secs)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// A finished job leaves the table, unless it was asked for again while it ran: then
    /// it is queued once more. Returns true when it was.
    pub async fn complete(&self, id: i64) -> Result<bool, sqlx::Error> {
        // `rerun` only turns on while the job runs, so if this delete misses, it is set.
        let deleted = sqlx::query("DELETE FROM jobs WHERE id = $1 AND rerun = 0")
            .bind(id)
            .execute(&self.db.pool)
            .await?;
        if deleted.rows_affected() == 1 {
            return Ok(false);
        }
        self.run_again(id).await
    }

    /// Queues a job that was asked for again while it ran, as a fresh job due now.
    async fn run_again(&self, id: i64) -> Result<bool, sqlx::Error> {
        let queued = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, rerun = 0, run_after = $2, \
               lease_until = 0, last_error = NULL WHERE id = $1 AND rerun = 1",
        )
        .bind(id)
        .bind(now())
        .execute(&self.db.pool)
        .await?;
        Ok(queued.rows_affected() == 1)
    }

    /// Schedules another attempt with exponential backoff and jitter, or fails the job.
    /// Returns true when the job has failed for good.
    pub async fn retry_or_fail(&self, claimed: &Claimed, error: &str) -> Result<bool, sqlx::Error> {
        if claimed.attempts >= claimed.max_attempts {
            self.fail(claimed.id, error).await?;
            return Ok(true);
        }
        let exponent = u32::try_from(claimed.attempts.clamp(1, 16) - 1).unwrap_or(0);
        let base = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(exponent));
        let capped = base.min(Duration::from_secs(3600));
        let jitter: f64 = rand::rng().random_range(0.5..1.0);
        let delay_ms = (capped.as_millis() as f64 * jitter) as i64;
        // The next attempt also does what was asked for meanwhile.
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_after = $2, lease_until = 0, last_error = $3, \
               rerun = 0 WHERE id = $1",
        )
        .bind(claimed.id)
        // run_after has a resolution of seconds: round up so the delay is never skipped.
        .bind(now() + (delay_ms + 999) / 1000)
        .bind(error)
        .execute(&self.db.pool)
        .await?;
        Ok(false)
    }

    /// Fails a job for good (another attempt cannot help).
    pub async fn give_up(&self, claimed: &Claimed, error: &str) -> Result<(), sqlx::Error> {
        self.fail(claimed.id, error).await
    }

    /// Fails a job, or queues it afresh when it was asked for again while it ran.
    async fn fail(&self, id: i64, error: &str) -> Result<(), sqlx::Error> {
        let failed = sqlx::query(
            "UPDATE jobs SET state = 'failed', lease_until = 0, last_error = $2 \
             WHERE id = $1 AND rerun = 0",
        )
        .bind(id)
        .bind(error)
        .execute(&self.db.pool)
        .await?;
        if failed.rows_affected() == 0 {
            self.run_again(id).await?;
        }
        Ok(())
    }
}
