//! Credentials: the Bitbucket OAuth client, sealed tokens and their upkeep, the session
//! store and personal access tokens. Who the current user is lives in `identity`; the
//! sign-in pages in `signin`.

pub mod crypto;
pub mod oauth;
pub mod session_store;
pub mod tokens;

use sha2::{Digest, Sha256};

/// Personal access tokens are random, so a plain SHA-256 is a sufficient one-way store.
pub fn hash_api_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
