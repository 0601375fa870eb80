//! Workers: tokio tasks that claim jobs, keep their lease alive, run them and record the
//! outcome. High in the house: running a job means calling the capability that owns it.

use std::time::Duration;

use tracing::Instrument;

use crate::{
    jobs::{Claimed, Job, JobError},
    purge, repositories,
    state::AppState,
    sync, workspaces,
};

/// Starts `count` workers; they stop when the returned handles are aborted.
pub fn start(state: &AppState, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|n| {
            let state = state.clone();
            tokio::spawn(async move { work(state, n).await })
        })
        .collect()
}

async fn work(state: AppState, worker: usize) {
    loop {
        match state.queue.fail_abandoned().await {
            Ok(abandoned) => {
                for gone in abandoned {
                    tracing::warn!(job = ?gone.job, reason = %gone.reason, "job abandoned");
                    record_failure(&state, &gone.job, &gone.reason).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "checking for abandoned jobs failed"),
        }
        match state.queue.claim().await {
            Ok(Some(claimed)) => run_one(&state, claimed, worker).await,
            Ok(None) => {
                let _ = tokio::time::timeout(Duration::from_millis(500), state.doorbell.notified())
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn run_one(state: &AppState, claimed: Claimed, worker: usize) {
    let span = tracing::info_span!("job", id = claimed.id, attempt = claimed.attempts, worker);
    // Keep the lease while the job runs; a crashed process stops renewing it.
    let renew = {
        let queue = state.queue.clone();
        let id = claimed.id;
        tokio::spawn(async move {
            let period =
                Duration::from_millis(u64::try_from(queue.lease_secs * 1000 / 3).unwrap_or(20_000));
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = queue.renew(id).await {
                    tracing::warn!(error = %e, job = id, "renewing a lease failed");
                }
            }
        })
    };
    // Run on a task of its own so a panic ends this job, not the worker.
    let outcome = {
        let (state, job) = (state.clone(), claimed.job.clone());
        tokio::spawn(async move { execute(&state, &job).await }.instrument(span))
            .await
            .unwrap_or_else(|e| {
                let reason = if e.is_panic() {
                    "the job stopped on an internal error (a bug); it has been logged".to_owned()
                } else {
                    "the job was cancelled".to_owned()
                };
                tracing::error!(job = claimed.id, error = %e, "job panicked");
                Err(JobError::Permanent(reason))
            })
    };
    renew.abort();
    let recorded = match outcome {
        Ok(()) => match state.queue.complete(claimed.id).await {
            Ok(again) => {
                if again {
                    // Asked for again while it ran: an idle worker takes it now.
                    tracing::info!(
                        job = claimed.id,
                        "job runs once more (asked for while running)"
                    );
                    state.doorbell.notify_one();
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
        Err(JobError::Retry(reason)) => {
            tracing::info!(job = claimed.id, %reason, "job will be retried");
            match state.queue.retry_or_fail(&claimed, &reason).await {
                Ok(true) => {
                    record_failure(state, &claimed.job, &reason).await;
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        Err(JobError::Permanent(reason)) => {
            tracing::warn!(job = claimed.id, %reason, "job failed");
            record_failure(state, &claimed.job, &reason).await;
            state.queue.give_up(&claimed, &reason).await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "recording a job outcome failed; the lease will expire and it runs again");
    }
}

/// Shows a job's final failure where its owner looks: the repository's or workspace's row.
async fn record_failure(state: &AppState, job: &Job, reason: &str) {
    let recorded = match job {
        Job::SyncRepository { repo_id } => sync::mark_failed(state, *repo_id, reason).await,
        Job::LoadRepositories { workspace_id } => {
            workspaces::record_load_error(state, *workspace_id, reason).await
        }
        _ => Ok(()),
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "recording a job failure failed");
    }
}

/// Runs one job to completion.
pub async fn execute(state: &AppState, job: &Job) -> Result<(), JobError> {
    match job {
        Job::RefreshWorkspaces { user_id } => workspaces::refresh::run(state, *user_id).await,
        Job::LoadRepositories { workspace_id } => {
            repositories::load::run(state, *workspace_id).await
        }
        Job::PurgeWorkspace { workspace_id } => purge::workspace(state, *workspace_id).await,
        Job::PurgeUser { user_id } => purge::user(state, *user_id).await,
        Job::SyncRepository { repo_id } => sync::run(state, *repo_id).await,
    }
}
