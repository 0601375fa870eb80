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
mod symbols;
mod tokens;
mod trigram_query;
mod trigram_tree;

#[cfg(test)]
mod tests;

pub use build::build_shard;
pub use content::ContentCache;
pub use language::{language_aliases, language_names, language_of};
pub use lines::ExcerptLine;
pub use path_filter::PathMatcher;
pub use prepare::PreparedQuery;
pub use shard::Shard;
pub use symbols::Kind as SymbolKind;

/// The shard format's version, written to `VERSION` in every shard. A shard without it, or
/// with another, is rebuilt by the next sync even when its commit has not moved.
/// 2: symbols (`symbols.bin`). 3: `symbols.bin` keeps each file's blob id (symbol reuse).
/// 4: `symbols.bin` is zstd-compressed.
pub const SHARD_VERSION: u32 = 4;
/// The file holding [`SHARD_VERSION`] inside a shard.
pub(crate) const VERSION_FILE: &str = "VERSION";

/// Whether the shard in `dir` was written by this version of the format.
pub fn shard_is_current(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join(VERSION_FILE))
        .is_ok_and(|v| v.trim() == SHARD_VERSION.to_string())
}

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
    /// Symbols are extracted only from files up to this many bytes (counted otherwise).
    pub max_symbol_file_bytes: u64,
    /// Time one file's symbol extraction (parse and tags query) may take before it is
    /// abandoned; the file is indexed without symbols and counted.
    pub symbol_budget: std::time::Duration,
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
            max_symbol_file_bytes: 512 << 10,
            symbol_budget: std::time::Duration::from_millis(250),
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
    /// Definitions stored for symbol search.
    pub symbols: u64,
    /// Files in a language with a grammar (Rust, Python, Go, JavaScript, TypeScript, Java,
    /// C, C++) indexed without any symbol, whatever the reason (the next three, or none
    /// defined).
    pub files_without_symbols: u64,
    /// Of those: larger than `Limits::max_symbol_file_bytes`.
    pub symbols_skipped_large: u64,
    /// Of those: extraction ran past `Limits::symbol_budget`.
    pub symbols_timed_out: u64,
    /// Files with more definitions than we keep per file (the first ones are kept).
    pub symbols_capped: u64,
    /// Files whose symbols were taken from the replaced shard (same path, same blob).
    pub symbols_reused: u64,
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
    /// Matching lines returned per file; further ones are only counted. 0: no lines at all
    /// (ranking only; [`Shard::lines`] gives a file's lines later).
    pub max_matches_per_file: usize,
    /// Files returned after ranking; 0 returns them all.
    pub max_files: usize,
    /// The file must define a symbol whose name matches each of these (`sym:`); a literal
    /// pattern matches part of the name.
    pub symbols: Vec<Pattern>,
    /// The file must define no symbol matching any of these (`-sym:`).
    pub symbols_not: Vec<Pattern>,
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
    /// How many of the `total_files` matching files each language has ("" for none), so
    /// facets add up to the total rather than to the files returned.
    pub languages: Vec<(String, usize)>,
    /// True when it stopped because enough files had matched (across the shards of one
    /// search): `total_files` is then a lower bound.
    pub early: bool,
}

/// When a search must stop early: at a deadline, or when the flag is raised (its client
/// went away). Checked between files, so one file's verification is the most it overruns.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    deadline: Option<std::time::Instant>,
    cancelled: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Files matched so far by every shard of the search, and how many are enough.
    enough: Option<(std::sync::Arc<std::sync::atomic::AtomicUsize>, usize)>,
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
            enough: None,
        }
    }

    /// Never stops early.
    pub fn never() -> Stop {
        Stop::default()
    }

    /// Also stops once `files` files have matched in all the shards sharing this `Stop`
    /// (they examine their best-ranked files first, so the first page is among those).
    pub fn after_matches(mut self, files: usize) -> Stop {
        self.enough = Some((std::sync::Arc::default(), files.max(1)));
        self
    }

    /// Counts one matching file; true when enough have matched.
    pub(crate) fn found_enough(&self) -> bool {
        self.enough.as_ref().is_some_and(|(n, target)| {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= *target
        })
    }

    /// Whether enough files have matched already.
    pub(crate) fn has_enough(&self) -> bool {
        self.enough
            .as_ref()
            .is_some_and(|(n, target)| n.load(std::sync::atomic::Ordering::Relaxed) >= *target)
    }

    /// Whether this search stops after enough matches (a count is then a lower bound).
    pub fn counts_early(&self) -> bool {
        self.enough.is_some()
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
    /// The file within its shard, for [`Shard::lines`] (valid for the shard that found it).
    pub doc: u32,
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
    /// The line defines a symbol the query names (a word of it, or a `sym:` pattern).
    pub definition: bool,
}

/// A definition in a file of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Symbol {
    /// Path of the file.
    pub path: String,
    /// Lower-case language of the file.
    pub language: String,
    pub name: String,
    /// "function", "method", "class", "struct", "enum", "interface", "trait", "type",
    /// "module", "macro", "constant", "union" or "other".
    pub kind: &'static str,
    /// 1-based line of the name.
    pub line: u32,
    /// 1-based first and last line of the definition.
    pub start_line: u32,
    pub end_line: u32,
    /// Name of the enclosing definition, if any.
    pub container: Option<String>,
    /// Nesting depth in the file's outline (0 at top level).
    pub depth: u32,
}

/// A symbol search over one shard ([`Shard::find_symbols`]).
#[derive(Clone, Debug)]
pub struct SymbolQuery {
    /// The name pattern; a literal one matches part of the name.
    pub pattern: Pattern,
    /// Only this kind, if given.
    pub kind: Option<SymbolKind>,
    /// Only files passing these (as for a search).
    pub languages: Vec<String>,
    /// Definitions returned at most (the best ones).
    pub limit: usize,
}
