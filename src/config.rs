//! Settings from the environment, optionally from a TOML file with the same keys.
//!
//! Every problem is reported on a line of its own so an operator can fix them all in one go.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;

/// The validated configuration of one codelayer process.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub secret_key: Option<String>,
    pub bitbucket: Option<OAuthClient>,
    pub auth_url: Url,
    pub api_url: Url,
    pub git_url: Url,
    /// Timeout of every outbound HTTP call to Bitbucket.
    pub http_timeout: Duration,
    /// Requests per hour this install may send to Bitbucket's REST API (shared by all users).
    pub api_requests_per_hour: u32,
    /// Requests that may go out at once before the hourly rate applies.
    pub api_burst: u32,
    /// Number of background job workers.
    pub workers: usize,
    /// How long a job's claim lasts without renewal (a dead process's job waits this long).
    pub job_lease: Duration,
    /// How often selected repositories are fetched again.
    pub sync_interval: Duration,
    /// How often each selected repository's main branch head is asked for (over git).
    pub poll_interval: Duration,
    /// Git requests per hour Bitbucket allows (its git budget), and the share head checks may use.
    pub git_requests_per_hour: u32,
    pub poll_share_percent: u32,
    /// How often each linked workspace's repository list is read again (REST).
    pub list_interval: Duration,
    /// A git transfer with no data for this long fails.
    pub git_timeout: Duration,
    /// Largest clone transfer accepted.
    pub max_repo_bytes: u64,
    pub max_files: u64,
    pub max_file_bytes: u64,
    pub max_tree_depth: usize,
    pub max_tree_entries: u64,
    pub max_index_bytes: u64,
    /// A search stops here and answers with what it has, marked partial.
    pub search_deadline: Duration,
    /// Searches that run at once, in all and per user.
    pub search_concurrency: usize,
    pub search_per_user: usize,
    /// Ceiling of one MCP tool answer in bytes; longer answers are cut and say how to go on.
    pub mcp_answer_bytes: usize,
    /// Recent search answers kept per user (0: none).
    pub search_cache_per_user: usize,
    /// Bytes of decoded file content kept in memory for searches (0: none).
    pub content_cache_bytes: usize,
}

/// The registered Bitbucket OAuth consumer.
#[derive(Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for OAuthClient {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Every key the app reads, with its default (`None`: no default).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("CODELAYER_LISTEN", Some("127.0.0.1:3000")),
    ("CODELAYER_PUBLIC_URL", Some("http://127.0.0.1:3000")),
    ("CODELAYER_DATA_DIR", Some("./data")),
    ("DATABASE_URL", None),
    ("CODELAYER_SECRET_KEY", None),
    ("BITBUCKET_CLIENT_ID", None),
    ("BITBUCKET_CLIENT_SECRET", None),
    ("BITBUCKET_AUTH_URL", Some("https://bitbucket.org")),
    ("BITBUCKET_API_URL", Some("https://api.bitbucket.org")),
    ("BITBUCKET_GIT_URL", Some("https://bitbucket.org")),
    ("CODELAYER_HTTP_TIMEOUT_SECS", Some("30")),
    ("CODELAYER_API_REQUESTS_PER_HOUR", Some("900")),
    ("CODELAYER_API_BURST", Some("50")),
    ("CODELAYER_WORKERS", Some("2")),
    ("CODELAYER_JOB_LEASE_SECS", Some("60")),
    ("CODELAYER_SYNC_INTERVAL_SECS", Some("3600")),
    ("CODELAYER_POLL_SECS", Some("60")),
    ("CODELAYER_GIT_REQUESTS_PER_HOUR", Some("60000")),
    ("CODELAYER_POLL_SHARE_PERCENT", Some("50")),
    ("CODELAYER_LIST_SECS", Some("900")),
    ("CODELAYER_GIT_TIMEOUT_SECS", Some("60")),
    ("CODELAYER_MAX_REPO_BYTES", Some("2147483648")),
    ("CODELAYER_MAX_FILES", Some("200000")),
    ("CODELAYER_MAX_FILE_BYTES", Some("1048576")),
    ("CODELAYER_MAX_TREE_DEPTH", Some("64")),
    ("CODELAYER_MAX_TREE_ENTRIES", Some("1000000")),
    ("CODELAYER_MAX_INDEX_BYTES", Some("2147483648")),
    ("CODELAYER_SEARCH_DEADLINE_MS", Some("10000")),
    ("CODELAYER_SEARCH_CONCURRENCY", Some("4")),
    ("CODELAYER_SEARCH_PER_USER", Some("2")),
    ("CODELAYER_MCP_ANSWER_BYTES", Some("60000")),
    ("CODELAYER_SEARCH_CACHE", Some("32")),
    ("CODELAYER_CONTENT_CACHE_MB", Some("256")),
    ("RUST_LOG", Some("info")),
];

/// Configuration problems, one human sentence each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.0 {
            writeln!(f, "config: {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads the process environment, then `file` (TOML) for keys the environment leaves unset.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
        let mut values: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| KEYS.iter().any(|(key, _)| key == k))
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
            for (key, value) in parse_toml(&text).map_err(|e| ConfigErrors(vec![e]))? {
                values.entry(key).or_insert(value);
            }
        }
        Config::from_map(&values)
    }

    /// Builds a configuration from explicit key/value pairs (used by `load` and by tests).
    pub fn from_map(values: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let get = |key: &str| -> Option<String> {
            values
                .get(key)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .or_else(|| default_of(key).map(str::to_owned))
        };
        let mut url = |key: &str| -> Url {
            let raw = get(key).unwrap_or_default();
            match Url::parse(raw.trim_end_matches('/')) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
                _ => {
                    errors.push(format!("{key} must be an http(s) URL, got {raw:?}"));
                    Url::parse("http://invalid.invalid").expect("static URL")
                }
            }
        };
        let public_url = url("CODELAYER_PUBLIC_URL");
        let auth_url = url("BITBUCKET_AUTH_URL");
        let api_url = url("BITBUCKET_API_URL");
        let git_url = url("BITBUCKET_GIT_URL");

        let listen_raw = get("CODELAYER_LISTEN").unwrap_or_default();
        let listen = listen_raw.parse().unwrap_or_else(|_| {
            errors.push(format!(
                "CODELAYER_LISTEN must be an address like 127.0.0.1:3000, got {listen_raw:?}"
            ));
            SocketAddr::from(([127, 0, 0, 1], 3000))
        });
        let data_dir = PathBuf::from(get("CODELAYER_DATA_DIR").unwrap_or_default());
        let database_url = get("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("codelayer.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            errors.push("DATABASE_URL must start with sqlite: or postgres://".to_owned());
        }
        let bitbucket = match (get("BITBUCKET_CLIENT_ID"), get("BITBUCKET_CLIENT_SECRET")) {
            (Some(client_id), Some(client_secret)) => Some(OAuthClient {
                client_id,
                client_secret,
            }),
            (None, None) => None,
            (Some(_), None) => {
                errors
                    .push("BITBUCKET_CLIENT_SECRET is missing (BITBUCKET_CLIENT_ID is set)".into());
                None
            }
            (None, Some(_)) => {
                errors
                    .push("BITBUCKET_CLIENT_ID is missing (BITBUCKET_CLIENT_SECRET is set)".into());
                None
            }
        };
        let mut number = |key: &str, min: u64| -> u64 {
            let raw = get(key).unwrap_or_default();
            match raw.parse::<u64>() {
                Ok(n) if n >= min => n,
                _ => {
                    errors.push(format!("{key} must be a whole number ≥ {min}, got {raw:?}"));
                    min
                }
            }
        };
        let http_timeout = Duration::from_secs(number("CODELAYER_HTTP_TIMEOUT_SECS", 1));
        let api_requests_per_hour =
            u32::try_from(number("CODELAYER_API_REQUESTS_PER_HOUR", 1)).unwrap_or(u32::MAX);
        let api_burst = u32::try_from(number("CODELAYER_API_BURST", 1)).unwrap_or(u32::MAX);
        let workers = usize::try_from(number("CODELAYER_WORKERS", 1)).unwrap_or(1);
        let job_lease = Duration::from_secs(number("CODELAYER_JOB_LEASE_SECS", 3));
        let sync_interval = Duration::from_secs(number("CODELAYER_SYNC_INTERVAL_SECS", 60));
        let poll_interval = Duration::from_secs(number("CODELAYER_POLL_SECS", 1));
        let git_requests_per_hour =
            u32::try_from(number("CODELAYER_GIT_REQUESTS_PER_HOUR", 1)).unwrap_or(u32::MAX);
        let poll_share = number("CODELAYER_POLL_SHARE_PERCENT", 1);
        let list_interval = Duration::from_secs(number("CODELAYER_LIST_SECS", 1));
        let git_timeout = Duration::from_secs(number("CODELAYER_GIT_TIMEOUT_SECS", 1));
        let max_repo_bytes = number("CODELAYER_MAX_REPO_BYTES", 1024);
        let max_files = number("CODELAYER_MAX_FILES", 1);
        let max_file_bytes = number("CODELAYER_MAX_FILE_BYTES", 1);
        let max_tree_depth = usize::try_from(number("CODELAYER_MAX_TREE_DEPTH", 1)).unwrap_or(64);
        let max_tree_entries = number("CODELAYER_MAX_TREE_ENTRIES", 1);
        let max_index_bytes = number("CODELAYER_MAX_INDEX_BYTES", 1);
        let search_deadline = Duration::from_millis(number("CODELAYER_SEARCH_DEADLINE_MS", 10));
        let search_concurrency =
            usize::try_from(number("CODELAYER_SEARCH_CONCURRENCY", 1)).unwrap_or(4);
        let search_per_user = usize::try_from(number("CODELAYER_SEARCH_PER_USER", 1)).unwrap_or(2);
        let mcp_answer_bytes =
            usize::try_from(number("CODELAYER_MCP_ANSWER_BYTES", 4096)).unwrap_or(60_000);
        let search_cache_per_user =
            usize::try_from(number("CODELAYER_SEARCH_CACHE", 0)).unwrap_or(32);
        let content_cache_bytes = usize::try_from(number("CODELAYER_CONTENT_CACHE_MB", 0))
            .unwrap_or(256)
            .saturating_mul(1 << 20);
        let poll_share_percent = match u32::try_from(poll_share) {
            Ok(n @ 1..=100) => n,
            _ => {
                errors.push(format!(
                    "CODELAYER_POLL_SHARE_PERCENT must be between 1 and 100, got {poll_share}"
                ));
                50
            }
        };

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            listen,
            public_url,
            data_dir,
            database_url,
            secret_key: get("CODELAYER_SECRET_KEY"),
            bitbucket,
            auth_url,
            api_url,
            git_url,
            http_timeout,
            api_requests_per_hour,
            api_burst,
            workers,
            job_lease,
            sync_interval,
            poll_interval,
            git_requests_per_hour,
            poll_share_percent,
            list_interval,
            git_timeout,
            max_repo_bytes,
            max_files,
            max_file_bytes,
            max_tree_depth,
            max_tree_entries,
            max_index_bytes,
            search_deadline,
            search_concurrency,
            search_per_user,
            mcp_answer_bytes,
            search_cache_per_user,
            content_cache_bytes,
        })
    }

    /// The OAuth redirect URI Bitbucket sends the browser back to.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.public_origin())
    }

    /// The public URL without a trailing slash, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }

    /// The limits a shard build applies to hostile repositories.
    pub fn index_limits(&self) -> crate::index::Limits {
        crate::index::Limits {
            max_file_bytes: self.max_file_bytes,
            max_files: self.max_files,
            max_tree_depth: self.max_tree_depth,
            max_tree_entries: self.max_tree_entries,
            max_total_bytes: self.max_index_bytes,
            ..crate::index::Limits::default()
        }
    }

    /// Whether cookies must carry the Secure flag.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

fn default_of(key: &str) -> Option<&'static str> {
    KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, d)| *d)
}

/// Reads a flat TOML table whose keys are the environment names (any case).
fn parse_toml(text: &str) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file is not valid TOML: {e}"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let upper = key.to_ascii_uppercase();
        if !KEYS.iter().any(|(k, _)| *k == upper) {
            return Err(format!("config file: unknown key {key:?}"));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            other => {
                return Err(format!(
                    "config file: {key} must be a string or number, got {other}"
                ));
            }
        };
        out.push((upper, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_make_a_runnable_config() {
        let config = Config::from_map(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.callback_url(), "http://127.0.0.1:3000/auth/callback");
        assert!(config.database_url.ends_with("codelayer.db"));
        assert!(config.bitbucket.is_none());
    }

    #[test]
    fn every_problem_gets_its_own_line() {
        let errors = Config::from_map(&map(&[
            ("CODELAYER_LISTEN", "nowhere"),
            ("CODELAYER_PUBLIC_URL", "ftp://x"),
            ("BITBUCKET_CLIENT_ID", "id"),
        ]))
        .expect_err("invalid");
        assert_eq!(errors.0.len(), 3, "{errors}");
    }

    #[test]
    fn toml_keys_are_the_environment_names() {
        let pairs = parse_toml("codelayer_listen = \"0.0.0.0:80\"\nCODELAYER_WORKERS = 4\n")
            .expect("valid");
        assert_eq!(pairs.len(), 2);
        assert!(parse_toml("nonsense = 1").is_err());
    }
}
