//! The search index: one shard per repository, built from a git commit and searched alone.
//!
//! A shard is a directory holding a tantivy index (trigram and word-token postings, fast
//! fields with path, language and where each file's bytes live) and `content.bin`, the
//! files' bytes (lz4 per file when that is smaller). Search finds candidate files through
//! the trigram postings, verifies them with the `regex` crate on the content and ranks them.
//! This module owns the shard format, building ([`build_shard`]), searching ([`Shard`]) and
//! language detection ([`language_of`]); the query language is parsed elsewhere into a
//! [`ShardQuery`].

mod build;
mod content;
mod language;
mod lines;
mod path_filter;
mod prepare;
mod schema;
mod search;
mod shard;
mod tokens;
mod trigram_query;
mod trigram_tree;

#[cfg(test)]
mod tests;

pub use build::build_shard;
pub use language::{language_aliases, language_names, language_of};
pub use lines::ExcerptLine;
pub use path_filter::PathMatcher;
pub use prepare::PreparedQuery;
pub use shard::Shard;

use serde::{Deserialize, Serialize};

/// Bounds applied while building a shard; what exceeds them is skipped and counted.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Files larger than this many bytes are skipped (counted in `skipped_large`).
    pub max_file_bytes: u64,
    /// At most this many file entries (blobs and symlinks) are taken from the tree.
    pub max_files: u64,
    /// Entries nested deeper than this many directories are skipped.
    pub max_tree_depth: usize,
    /// The walk visits at most this many tree entries (directories, files, links, submodules)
    /// and then stops: a "tree bomb" of identical subtrees cannot make it run without end.
    pub max_tree_entries: u64,
    /// At most this many bytes of file content are read in one build; later files are skipped.
    pub max_total_bytes: u64,
}

/// Paths longer than this are skipped (git allows any length; the walk holds every path).
pub const MAX_PATH_BYTES: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 20,
            max_files: 200_000,
            max_tree_depth: 64,
            max_tree_entries: 1_000_000,
            max_total_bytes: 2 << 30,
        }
    }
}

/// What a build indexed and what it skipped on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildStats {
    /// Documents in the shard (text files and symlinks).
    pub files: u64,
    /// Bytes of indexed content (before compression).
    pub bytes: u64,
    /// Files skipped because a NUL byte sits in their first 8 KiB.
    pub skipped_binary: u64,
    /// Files skipped because they exceed `Limits::max_file_bytes`.
    pub skipped_large: u64,
    /// Tree entries (files, or whole directories) below `Limits::max_tree_depth`, not descended.
    pub skipped_too_deep: u64,
    /// File entries beyond `Limits::max_files`.
    pub skipped_over_file_limit: u64,
    /// Files left out because `Limits::max_total_bytes` had been read.
    pub skipped_over_byte_limit: u64,
    /// Entries whose path is longer than `MAX_PATH_BYTES`.
    pub skipped_long_path: u64,
    /// The walk stopped at `Limits::max_tree_entries`: the rest of the tree was not looked at.
    pub stopped_at_entries: Option<u64>,
    /// Symlinks, indexed as a tiny file holding the link target (never followed).
    pub symlinks: u64,
    /// Submodules (commits inside the tree), skipped.
    pub submodules: u64,
    /// Wall time of the build in milliseconds.
    pub duration_ms: u64,
}

/// Why building, opening or searching a shard failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The git object database could not be read.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// tantivy failed to write or read the index.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// A file of the shard could not be read or written.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A search pattern is not a valid regular expression (the regex crate's message).
    #[error("invalid pattern: {0}")]
    BadPattern(String),
    /// The shard's files are inconsistent (truncated, or written by another version).
    #[error("corrupt shard: {0}")]
    Corrupt(String),
}

/// One search over one shard: which files match and how many lines to return.
#[derive(Clone, Debug, Default)]
pub struct ShardQuery {
    /// Every pattern must match somewhere in a file (AND).
    pub must: Vec<Pattern>,
    /// Files where any of these patterns matches are excluded.
    pub must_not: Vec<Pattern>,
    /// The path must match every one of these.
    pub path_include: Vec<PathFilter>,
    /// The path must match none of these.
    pub path_exclude: Vec<PathFilter>,
    /// If not empty, the file's language must be one of these (names from [`language_of`]).
    pub languages: Vec<String>,
    /// The file's language must be none of these.
    pub exclude_languages: Vec<String>,
    /// Matching lines returned per file; further ones are only counted.
    pub max_matches_per_file: usize,
    /// Files returned after ranking; 0 returns them all.
    pub max_files: usize,
}

/// A pattern to find in file content (and, for ranking, in the path).
#[derive(Clone, Debug)]
pub struct Pattern {
    /// Rust regex syntax; a literal word arrives already `regex::escape`d.
    pub regex: String,
    /// Whether letter case must match.
    pub case_sensitive: bool,
    /// True for words and phrases: path and whole-identifier ranking bonuses apply.
    pub literal: bool,
}

/// A condition on a file's path.
#[derive(Clone, Debug)]
pub enum PathFilter {
    /// Part of the path, case-insensitive.
    Substring(String),
    /// A glob: `*` (within one path segment), `**` (any depth), `?`; case-insensitive.
    /// Without a `/` it matches any one segment of the path (`*.rs`, `test*`); with one it
    /// matches the whole path (`src/**/*.rs`).
    Glob(String),
}

/// The matching files of one shard, best first.
#[derive(Clone, Debug, Default)]
pub struct ShardResult {
    /// The returned files, ranked (at most `ShardQuery::max_files` unless that is 0).
    pub files: Vec<FileMatch>,
    /// All matching files, even beyond `max_files`.
    pub total_files: usize,
    /// True when the scan budget ran out (a pathological query): counts are lower bounds.
    pub truncated: bool,
    /// True when the search was stopped (deadline, client gone) before it looked at every
    /// candidate: what it found so far is returned.
    pub partial: bool,
}

/// When a search must stop early: at a deadline, or when the flag is raised (its client
/// went away). Checked between files, so one file's verification is the most it overruns.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    deadline: Option<std::time::Instant>,
    cancelled: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Stop {
    /// Stops at `deadline`, or once `cancelled` is set.
    pub fn new(
        deadline: std::time::Instant,
        cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Stop {
        Stop {
            deadline: Some(deadline),
            cancelled: Some(cancelled),
        }
    }

    /// Never stops early.
    pub fn never() -> Stop {
        Stop::default()
    }

    /// Whether the search should stop now.
    pub fn reached(&self) -> bool {
        self.cancelled
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            || self
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
    }
}

/// One matching file.
#[derive(Clone, Debug)]
pub struct FileMatch {
    /// Path in the repository.
    pub path: String,
    /// Lower-case language name, "" when unknown.
    pub language: String,
    /// Rank within the shard, comparable across shards; higher is better.
    pub score: f32,
    /// The first matching lines, in file order.
    pub matches: Vec<LineMatch>,
    /// All matching lines of the file (including those not returned).
    pub match_count: usize,
}

/// One matching line with its matches and one line of context each side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineMatch {
    /// 1-based line number.
    pub line: u32,
    /// The line, lossy UTF-8, without its line ending.
    pub text: String,
    /// Byte offsets of the matches in `text`, sorted, not overlapping.
    pub ranges: Vec<(usize, usize)>,
    /// The line before, if any.
    pub before: Option<String>,
    /// The line after, if any.
    pub after: Option<String>,
}
