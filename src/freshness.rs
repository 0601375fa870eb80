//! Freshness without webhooks (they need write access; codelayer asks only to read).
//!
//! Three schedules, started by `app`:
//! - **head checks**: every selected repository's main branch head is read from the git
//!   server's ref advertisement (one GET, no fetch, no REST call) once per
//!   `CODELAYER_POLL_SECS`, spread evenly over the interval, within a share of Bitbucket's git
//!   budget, slowing down on 429. A head that moved queues that repository's sync alone.
//! - **healing**: a failed build is tried again after one poll interval, doubling with every
//!   failure in a row, at most the sync interval apart (`sync::mark_failed` sets when).
//! - **repository lists**: every linked workspace's list is read again (REST) every
//!   `CODELAYER_LIST_SECS`, stretched so these reads stay within a fifth of the install's
//!   request budget; the load job adds new repositories, keeps renamed ones (by uuid) and
//!   purges deleted ones.
//!
//! Nothing below imports this module: it runs beside the router, through the job queue.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rand::RngExt;
use tokio::task::JoinHandle;

use crate::{
    db::now,
    git::{self, HeadError},
    ids::{RepoId, UserId, WorkspaceId},
    jobs::Job,
    state::AppState,
    sync::{self, RepoState},
};

/// The longest the poller waits between checks after Bitbucket answered 429.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Starts the three schedules; they stop when the handles are aborted.
pub fn start(state: &AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(check_heads(state.clone())),
        tokio::spawn(heal_failed(state.clone())),
        tokio::spawn(reload_lists(state.clone())),
    ]
}

/// Repositories whose head is worth asking for: selected, built (or failed) with a main
/// branch, in a linked workspace of a user whose Bitbucket connection is live.
const POLLABLE: &str = "FROM repositories r \
     JOIN workspaces w ON w.id = r.workspace_id \
     JOIN bitbucket_connections c ON c.user_id = r.user_id AND c.status = 'ok' \
     JOIN users u ON u.id = r.user_id AND u.purging = 0 \
     WHERE r.selected = 1 AND r.state IN ('ready', 'failed') AND r.main_branch IS NOT NULL \
       AND w.linked = 1 AND w.reachable = 1 AND w.purging = 0";

#[derive(Debug, sqlx::FromRow)]
struct Pollable {
    id: RepoId,
    user_id: UserId,
    workspace: String,
    slug: String,
    main_branch: String,
    indexed_commit: Option<String>,
    head_commit: Option<String>,
    #[sqlx(try_from = "String")]
    state: RepoState,
    poll_at: i64,
}

/// How one check ended, for the pace of the next.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Bitbucket answered.
    Answered,
    /// 429, 5xx or no connection: slow down.
    SlowDown,
    /// Something about this repository (refused, gone): the pace stays.
    Skipped,
}

/// HTTP requests one check costs: one GET of `info/refs`, the token sent with it
/// (`git::remote_head`), so no anonymous request answered 401 comes first.
const REQUESTS_PER_CHECK: u64 = 1;

/// The gap between two checks: the interval shared by the repositories, never faster than
/// the git budget's share allows.
fn spacing(interval: Duration, repositories: u64, per_hour: u32, share_percent: u32) -> Duration {
    let allowed_per_hour =
        (u64::from(per_hour) * u64::from(share_percent) / 100 / REQUESTS_PER_CHECK).max(1);
    let floor = Duration::from_secs(3600).div_f64(allowed_per_hour as f64);
    let even = interval.div_f64(repositories.max(1) as f64);
    even.max(floor)
}

/// The poller's own slow-down after 429s and server trouble: doubling, jittered, capped,
/// and easing off one step per answered check.
#[derive(Debug, Default)]
struct Backoff {
    level: u32,
    wait: Duration,
}

impl Backoff {
    fn slow_down(&mut self, spacing: Duration) {
        self.level = (self.level + 1).min(16);
        let jitter: f64 = rand::rng().random_range(1.0..1.25);
        self.wait = spacing
            .saturating_mul(2u32.saturating_pow(self.level))
            .mul_f64(jitter)
            .min(MAX_BACKOFF);
    }

    fn answered(&mut self, spacing: Duration) {
        self.level = self.level.saturating_sub(1);
        self.wait = if self.level == 0 {
            Duration::ZERO
        } else {
            spacing
                .saturating_mul(2u32.saturating_pow(self.level))
                .min(MAX_BACKOFF)
        };
    }

    /// Takes a finished check's outcome into account.
    fn learn(&mut self, done: Result<Checked, tokio::task::JoinError>, spacing: Duration) {
        match done {
            Ok(Checked::Answered) => self.answered(spacing),
            Ok(Checked::SlowDown) => {
                self.slow_down(spacing);
                tracing::info!(
                    wait_ms = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
                    "Bitbucket's git server asked to slow down; head checks wait longer"
                );
            }
            Ok(Checked::Skipped) => {}
            Err(e) => tracing::warn!(error = %e, "a head check stopped"),
        }
    }

    fn stretch(&self, spacing: Duration) -> Duration {
        spacing.max(self.wait)
    }
}

/// Checks in flight at once: a slow answer must not stretch the pace for everyone else.
const MAX_IN_FLIGHT: usize = 8;

/// The head-check loop: one check every `spacing`, the repository due longest first.
async fn check_heads(state: AppState) {
    let config = state.config.clone();
    let mut backoff = Backoff::default();
    let mut last: Option<Instant> = None;
    let mut running: tokio::task::JoinSet<Checked> = tokio::task::JoinSet::new();
    let mut even = config.poll_interval;
    loop {
        // Answers first: a 429 slows the very next check.
        while let Some(done) = running.try_join_next() {
            backoff.learn(done, even);
        }
        let count: Result<i64, _> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {POLLABLE}")))
                .fetch_one(&state.db.pool)
                .await;
        let count = match count {
            Ok(n) => u64::try_from(n).unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "counting repositories to check failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        even = spacing(
            config.poll_interval,
            count,
            config.git_requests_per_hour,
            config.poll_share_percent,
        );
        let gap = backoff.stretch(even);
        // Re-evaluated at least every second, so a grown list speeds the pace up at once.
        if let Some(remaining) = last.and_then(|at| gap.checked_sub(at.elapsed()))
            && !remaining.is_zero()
        {
            tokio::time::sleep(remaining.min(Duration::from_secs(1))).await;
            continue;
        }
        if count == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if running.len() >= MAX_IN_FLIGHT {
            // Bitbucket is slow to answer: wait for one instead of piling more on.
            if let Ok(Some(done)) =
                tokio::time::timeout(Duration::from_secs(1), running.join_next()).await
            {
                backoff.learn(done, even);
            }
            continue;
        }
        match claim_next(&state).await {
            Ok(Some(repo)) => {
                last = Some(Instant::now());
                let state = state.clone();
                running.spawn(async move { check(&state, &repo).await });
            }
            Ok(None) => tokio::time::sleep(even.min(Duration::from_secs(1))).await,
            Err(e) => {
                tracing::warn!(error = %e, "choosing a repository to check failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Takes the repository due longest, marking it checked for this interval so another app
/// process sharing the database does not ask for it again.
async fn claim_next(state: &AppState) -> Result<Option<Pollable>, sqlx::Error> {
    let interval = i64::try_from(state.config.poll_interval.as_secs()).unwrap_or(i64::MAX / 2);
    for _ in 0..8 {
        let at = now();
        let next: Option<Pollable> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT r.id, r.user_id, w.slug AS workspace, r.slug, r.main_branch, \
               r.indexed_commit, r.head_commit, r.state, COALESCE(r.poll_at, 0) AS poll_at \
             {POLLABLE} \
               AND COALESCE(r.poll_at, 0) <= $1 \
             ORDER BY COALESCE(r.poll_at, 0), r.id LIMIT 1"
        )))
        .bind(at)
        .fetch_optional(&state.db.pool)
        .await?;
        let Some(repo) = next else {
            return Ok(None);
        };
        // A second early, so this process's own pace, not the clock's rounding, decides.
        let claimed = sqlx::query(
            "UPDATE repositories SET poll_at = $2 WHERE id = $1 AND COALESCE(poll_at, 0) = $3",
        )
        .bind(repo.id)
        .bind(at + (interval - 1).max(0))
        .bind(repo.poll_at)
        .execute(&state.db.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(Some(repo));
        }
    }
    Ok(None)
}

/// Asks Bitbucket for one repository's head, records it, and queues a sync when it moved.
async fn check(state: &AppState, repo: &Pollable) -> Checked {
    let url = match sync::clone_url(&state.config.git_url, &repo.workspace, &repo.slug) {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(repo_id = %repo.id, error = %e, "no clone URL for a head check");
            return Checked::Skipped;
        }
    };
    let token = match state.tokens.access_token(repo.user_id).await {
        Ok(token) => token,
        Err(e) => {
            tracing::info!(repo_id = %repo.id, error = %e, "no token for a head check");
            return Checked::Skipped;
        }
    };
    let head = match ask(&url, &repo.main_branch, token.clone()).await {
        Err(HeadError::Unauthorized) => {
            // Once more with a refreshed token, as a fetch does; a second refusal waits for
            // the next check (a sync would report it on the row).
            match state.tokens.after_unauthorized(repo.user_id, &token).await {
                Ok(fresh) => ask(&url, &repo.main_branch, fresh).await,
                Err(e) => {
                    tracing::info!(repo_id = %repo.id, error = %e, "head check refused");
                    return Checked::Skipped;
                }
            }
        }
        other => other,
    };
    let head = match head {
        Ok(Some(head)) => head.to_string(),
        Ok(None) => {
            // The branch was renamed or deleted: the next repository list says what became
            // of it, and the hourly sync reports it; nothing to compare meanwhile.
            tracing::info!(repo_id = %repo.id, branch = %repo.main_branch, "main branch not advertised");
            return Checked::Skipped;
        }
        Err(e @ (HeadError::RateLimited | HeadError::Unavailable(_))) => {
            tracing::info!(repo_id = %repo.id, error = %e, "head check failed");
            return Checked::SlowDown;
        }
        Err(e) => {
            tracing::info!(repo_id = %repo.id, error = %e, "head check failed");
            return Checked::Skipped;
        }
    };
    if let Err(e) = record(state, repo, &head).await {
        tracing::warn!(repo_id = %repo.id, error = %e, "recording a head check failed");
    }
    Checked::Answered
}

/// One ref advertisement, on the blocking pool (libgit2 blocks).
async fn ask(url: &url::Url, branch: &str, token: String) -> Result<git::Head, HeadError> {
    let (url, branch) = (url.clone(), branch.to_owned());
    tokio::task::spawn_blocking(move || git::remote_head(&url, &branch, &token))
        .await
        .unwrap_or_else(|e| Err(HeadError::Git(format!("head check stopped: {e}"))))
}

/// Stores what Bitbucket said; a head that moved since the last look (and is not what is
/// indexed) queues the repository's sync — running it once more if one is under way.
async fn record(state: &AppState, repo: &Pollable, head: &str) -> Result<(), sqlx::Error> {
    let ahead = repo.indexed_commit.as_deref() != Some(head);
    let at = now();
    sqlx::query(
        "UPDATE repositories SET head_commit = $2, checked_at = $3, \
           ahead_since = CASE WHEN $4 = 1 THEN COALESCE(ahead_since, $3) ELSE NULL END \
         WHERE id = $1",
    )
    .bind(repo.id)
    .bind(head)
    .bind(at)
    .bind(i64::from(ahead))
    .execute(&state.db.pool)
    .await?;
    // Compared with the last head seen, not only the indexed one: a build that keeps failing
    // on one commit is retried by `heal_failed`'s backoff, not by every check. A failed
    // repository whose head was never seen (its first fetch failed) waits for that backoff too.
    let moved = match repo.head_commit.as_deref() {
        Some(seen) => seen != head,
        None => repo.state != RepoState::Failed,
    };
    if ahead && moved {
        tracing::info!(repo_id = %repo.id, head, "main branch moved on Bitbucket; syncing");
        state
            .enqueue(&Job::SyncRepository { repo_id: repo.id })
            .await?;
    }
    Ok(())
}

/// Queues failed builds whose retry time has come (set by `sync::mark_failed`).
async fn heal_failed(state: AppState) {
    let tick = state.config.poll_interval.min(Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let due: Result<Vec<RepoId>, _> = sqlx::query_scalar(
            "SELECT r.id FROM repositories r JOIN workspaces w ON w.id = r.workspace_id \
             WHERE r.selected = 1 AND r.state = $1 AND r.retry_at IS NOT NULL \
               AND r.retry_at <= $2 AND w.linked = 1 AND w.reachable = 1 AND w.purging = 0",
        )
        .bind(RepoState::Failed.as_str())
        .bind(now())
        .fetch_all(&state.db.pool)
        .await;
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "finding failed builds to retry failed");
                continue;
            }
        };
        for repo_id in due {
            if let Err(e) = retry(&state, repo_id).await {
                tracing::warn!(%repo_id, error = %e, "retrying a failed build failed");
            }
        }
    }
}

/// Marks one failed repository queued (keeping its last error in view) and queues its sync.
async fn retry(state: &AppState, repo_id: RepoId) -> Result<(), sqlx::Error> {
    let taken = sqlx::query(
        "UPDATE repositories SET state = $2, progress = '', retry_at = NULL \
         WHERE id = $1 AND state = $3 AND retry_at IS NOT NULL",
    )
    .bind(repo_id)
    .bind(RepoState::Queued.as_str())
    .bind(RepoState::Failed.as_str())
    .execute(&state.db.pool)
    .await?;
    if taken.rows_affected() == 1 {
        tracing::info!(%repo_id, "retrying a failed build on schedule");
        state
            .ensure_queued(&Job::SyncRepository { repo_id })
            .await?;
    }
    Ok(())
}

/// How often a workspace's list is read again: as configured, or slower when the linked
/// workspaces' pages would take more than a fifth of the install's hourly request budget
/// (background work may use 60 % of it; people and sign-ins keep the rest).
fn list_period(configured: Duration, pages: u64, requests_per_hour: u32) -> Duration {
    let allowed = (u64::from(requests_per_hour) / 5).max(1);
    configured.max(Duration::from_secs(pages.saturating_mul(3600) / allowed))
}

/// Queues `LoadRepositories` for linked workspaces whose list is older than the period.
async fn reload_lists(state: AppState) {
    let configured = state.config.list_interval;
    let tick = (configured / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    // When this process last queued each workspace: a list that keeps failing is not queued
    // again before its period is over.
    let mut queued: HashMap<WorkspaceId, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(tick).await;
        let rows: Result<Vec<(WorkspaceId, i64, i64)>, _> = sqlx::query_as(
            "SELECT w.id, w.refreshed_at, \
               (SELECT COUNT(*) FROM repositories r WHERE r.workspace_id = w.id) \
             FROM workspaces w \
             JOIN bitbucket_connections c ON c.user_id = w.user_id AND c.status = 'ok' \
             JOIN users u ON u.id = w.user_id AND u.purging = 0 \
             WHERE w.linked = 1 AND w.reachable = 1 AND w.purging = 0",
        )
        .fetch_all(&state.db.pool)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "finding repository lists to reload failed");
                continue;
            }
        };
        // Bitbucket pages repositories 100 at a time.
        let pages: u64 = rows
            .iter()
            .map(|(_, _, n)| u64::try_from(*n).unwrap_or(0).div_ceil(100).max(1))
            .sum();
        let period = list_period(configured, pages, state.config.api_requests_per_hour);
        let stale_before = now() - i64::try_from(period.as_secs()).unwrap_or(i64::MAX / 2);
        queued.retain(|id, _| rows.iter().any(|(w, _, _)| w == id));
        for (workspace_id, refreshed_at, _) in rows {
            let recently = queued
                .get(&workspace_id)
                .is_some_and(|at| at.elapsed() < period);
            if refreshed_at > stale_before || recently {
                continue;
            }
            queued.insert(workspace_id, Instant::now());
            if let Err(e) = state
                .ensure_queued(&Job::LoadRepositories { workspace_id })
                .await
            {
                tracing::warn!(%workspace_id, error = %e, "queueing a repository list failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_spread_over_the_interval_within_the_git_budget() {
        let minute = Duration::from_secs(60);
        // 100 repositories a minute: one check every 0.6 s.
        assert_eq!(spacing(minute, 100, 60_000, 50), Duration::from_millis(600));
        // 10,000 would need 166 a second; half of 60,000 requests an hour, one a check,
        // allow one every 0.12 s.
        assert_eq!(
            spacing(minute, 10_000, 60_000, 50),
            Duration::from_millis(120)
        );
        assert_eq!(spacing(minute, 0, 60_000, 50), minute);
    }

    #[test]
    fn backoff_doubles_and_eases_off() {
        let gap = Duration::from_secs(1);
        let mut b = Backoff::default();
        assert_eq!(b.stretch(gap), gap);
        b.slow_down(gap);
        assert!(b.stretch(gap) >= Duration::from_secs(2), "{b:?}");
        b.slow_down(gap);
        assert!(b.stretch(gap) >= Duration::from_secs(4), "{b:?}");
        b.answered(gap);
        assert_eq!(b.stretch(gap), Duration::from_secs(2));
        b.answered(gap);
        assert_eq!(b.stretch(gap), gap);
        for _ in 0..40 {
            b.slow_down(gap);
        }
        assert!(b.stretch(gap) <= MAX_BACKOFF);
    }

    #[test]
    fn lists_slow_down_to_stay_in_budget() {
        let quarter = Duration::from_secs(900);
        assert_eq!(list_period(quarter, 10, 900), quarter);
        // 500 pages with 180 requests an hour for lists: one round in 10,000 s.
        assert_eq!(list_period(quarter, 500, 900), Duration::from_secs(10_000));
    }
}
