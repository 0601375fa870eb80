//! The one place that hands out a valid Bitbucket access token for a user's connection.
//!
//! Tokens are refreshed ahead of expiry and once after a 401. Bitbucket rotates refresh
//! tokens (the old one dies on use), so two racing refreshes would log the user out: a
//! connection refreshes one at a time — an in-process mutex per user, and a lease column in
//! the database so several app processes sharing PostgreSQL do the same.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    auth::{
        crypto::SecretBox,
        oauth::{OAuth, OAuthError, TokenSet},
    },
    db::{Db, now},
    ids::UserId,
};

/// How long one process may hold the refresh lease of a connection.
const REFRESH_LEASE_SECS: i64 = 60;

/// Why no access token can be handed out.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The grant is gone (revoked, expired refresh token): only a new sign-in helps.
    #[error("Bitbucket access ended: sign in again")]
    SignInAgain,
    /// Bitbucket's token endpoint could not be reached; a later attempt may work.
    #[error("Bitbucket could not be reached to renew access ({0})")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// Hands out access tokens and keeps the stored pair current.
pub struct TokenKeeper {
    db: Db,
    secrets: SecretBox,
    oauth: Option<OAuth>,
    locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    access_token: String,
    refresh_token: String,
    expires_at: i64,
    status: String,
    updated_at: i64,
}

impl ConnectionRow {
    /// Refresh when less than a quarter of the lifetime (at most 5 minutes) is left.
    fn is_fresh(&self, at: i64) -> bool {
        let margin = ((self.expires_at - self.updated_at) / 4).clamp(0, 300);
        at < self.expires_at - margin
    }
}

impl TokenKeeper {
    pub fn new(db: Db, secrets: SecretBox, oauth: Option<OAuth>) -> TokenKeeper {
        TokenKeeper {
            db,
            secrets,
            oauth,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Stores a token pair from a sign-in, replacing whatever the user had.
    pub async fn store_new<'e, E>(
        &self,
        executor: E,
        user_id: UserId,
        tokens: &TokenSet,
    ) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let refresh = tokens.refresh_token.as_deref().unwrap_or_default();
        let at = now();
        sqlx::query(
            "INSERT INTO bitbucket_connections \
               (user_id, access_token, refresh_token, expires_at, status, refresh_lock_until, updated_at) \
             VALUES ($1, $2, $3, $4, 'ok', 0, $5) \
             ON CONFLICT (user_id) DO UPDATE SET access_token = excluded.access_token, \
               refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, \
               status = 'ok', refresh_lock_until = 0, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(self.secrets.seal(&tokens.access_token, &context("access", user_id)))
        .bind(self.secrets.seal(refresh, &context("refresh", user_id)))
        .bind(at + expires_in_secs(tokens))
        .bind(at)
        .execute(executor)
        .await?;
        Ok(())
    }

    /// A token valid for a while yet, refreshing first when it is close to expiry.
    pub async fn access_token(&self, user_id: UserId) -> Result<String, TokenError> {
        let row = self.load(user_id).await?;
        if row.status != "ok" {
            return Err(TokenError::SignInAgain);
        }
        if row.is_fresh(now()) {
            return self.open(&row.access_token, "access", user_id);
        }
        self.refresh_when(user_id, |row| !row.is_fresh(now())).await
    }

    /// Bitbucket answered 401 to `rejected`: refresh once, unless someone already did.
    pub async fn after_unauthorized(
        &self,
        user_id: UserId,
        rejected: &str,
    ) -> Result<String, TokenError> {
        self.refresh_when(user_id, |row| {
            self.open(&row.access_token, "access", user_id)
                .map(|current| current == rejected)
                .unwrap_or(true)
        })
        .await
    }

    /// Marks the connection as needing a new sign-in (grant revoked or refused).
    pub async fn mark_sign_in_again(&self, user_id: UserId) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE bitbucket_connections SET status = 'sign_in_again', refresh_lock_until = 0 \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Whether the user's connection still works (false: "sign in again").
    pub async fn is_connected(&self, user_id: UserId) -> Result<bool, sqlx::Error> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM bitbucket_connections WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(status.as_deref() == Some("ok"))
    }

    /// Refreshes if `needs_refresh` still holds once this caller is the only refresher.
    async fn refresh_when(
        &self,
        user_id: UserId,
        needs_refresh: impl Fn(&ConnectionRow) -> bool,
    ) -> Result<String, TokenError> {
        let lock = self.lock_for(user_id);
        let _guard = lock.lock().await;
        let deadline = now() + REFRESH_LEASE_SECS + 5;
        loop {
            let row = self.load(user_id).await?;
            if row.status != "ok" {
                return Err(TokenError::SignInAgain);
            }
            if !needs_refresh(&row) {
                return self.open(&row.access_token, "access", user_id);
            }
            if self.take_lease(user_id).await? {
                return self.refresh(user_id, &row).await;
            }
            // Another process is refreshing this connection: wait for its result.
            if now() > deadline {
                return Err(TokenError::Unavailable("token renewal is stuck".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn refresh(&self, user_id: UserId, row: &ConnectionRow) -> Result<String, TokenError> {
        let Some(oauth) = &self.oauth else {
            self.release_lease(user_id).await?;
            return Err(TokenError::Unavailable(
                "Bitbucket sign-in is not configured".into(),
            ));
        };
        let refresh_token = self.open(&row.refresh_token, "refresh", user_id)?;
        match oauth.refresh(&refresh_token).await {
            Ok(tokens) => {
                // The new pair is stored before the new access token is used: the old
                // refresh token is already dead on Bitbucket's side.
                let keep_old = tokens.refresh_token.as_deref().is_none_or(str::is_empty);
                let refresh = if keep_old {
                    row.refresh_token.clone()
                } else {
                    self.secrets.seal(
                        tokens.refresh_token.as_deref().unwrap_or_default(),
                        &context("refresh", user_id),
                    )
                };
                let at = now();
                sqlx::query(
                    "UPDATE bitbucket_connections SET access_token = $2, refresh_token = $3, \
                     expires_at = $4, updated_at = $5, refresh_lock_until = 0, status = 'ok' \
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(
                    self.secrets
                        .seal(&tokens.access_token, &context("access", user_id)),
                )
                .bind(refresh)
                .bind(at + expires_in_secs(&tokens))
                .bind(at)
                .execute(&self.db.pool)
                .await?;
                tracing::info!(%user_id, "refreshed Bitbucket access token");
                Ok(tokens.access_token)
            }
            Err(OAuthError::Rejected(reason)) => {
                tracing::warn!(%user_id, %reason, "Bitbucket refused the refresh token");
                self.mark_sign_in_again(user_id).await?;
                Err(TokenError::SignInAgain)
            }
            Err(OAuthError::Unavailable(reason)) => {
                self.release_lease(user_id).await?;
                Err(TokenError::Unavailable(reason))
            }
        }
    }

    async fn take_lease(&self, user_id: UserId) -> Result<bool, sqlx::Error> {
        let at = now();
        let taken = sqlx::query(
            "UPDATE bitbucket_connections SET refresh_lock_until = $2 \
             WHERE user_id = $1 AND refresh_lock_until < $3",
        )
        .bind(user_id)
        .bind(at + REFRESH_LEASE_SECS)
        .bind(at)
        .execute(&self.db.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self, user_id: UserId) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE bitbucket_connections SET refresh_lock_until = 0 WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    async fn load(&self, user_id: UserId) -> Result<ConnectionRow, TokenError> {
        sqlx::query_as(
            "SELECT access_token, refresh_token, expires_at, status, updated_at \
             FROM bitbucket_connections WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or(TokenError::SignInAgain)
    }

    fn open(&self, sealed: &str, kind: &str, user_id: UserId) -> Result<String, TokenError> {
        // A token that no longer decrypts (the key changed) is as good as revoked.
        self.secrets
            .open(sealed, &context(kind, user_id))
            .map_err(|_| TokenError::SignInAgain)
    }

    fn lock_for(&self, user_id: UserId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(user_id).or_default().clone()
    }
}

fn context(kind: &str, user_id: UserId) -> String {
    format!("bitbucket_connections.{kind}_token:{user_id}")
}

fn expires_in_secs(tokens: &TokenSet) -> i64 {
    i64::try_from(tokens.expires_in.as_secs()).unwrap_or(7200)
}
