//! Logging set-up: human-readable lines, level from RUST_LOG (default `info`).

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber; call once at start-up.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    fmt().with_env_filter(filter).with_target(false).init();
}
