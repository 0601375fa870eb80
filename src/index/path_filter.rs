//! Compiled path conditions: case-insensitive substrings and globs (globset, ripgrep's glob
//! engine: `*` and `?` stay within a segment, `**` crosses segments, `[ab]` classes).

use globset::{GlobBuilder, GlobMatcher};

use super::{IndexError, PathFilter};

/// Globs longer than this are refused rather than compiled.
pub const MAX_GLOB_BYTES: usize = 1024;

/// A [`PathFilter`] compiled once, ready to test many paths.
#[derive(Debug)]
pub enum PathMatcher {
    /// Lower-cased needle.
    Substring(String),
    /// A glob; `segment` globs (no `/`) match any one path segment.
    Glob { glob: GlobMatcher, segment: bool },
}

impl PathMatcher {
    /// Compiles a filter.
    pub fn new(filter: &PathFilter) -> Result<PathMatcher, IndexError> {
        match filter {
            PathFilter::Substring(s) => Ok(PathMatcher::Substring(s.to_lowercase())),
            PathFilter::Glob(glob) => {
                if glob.len() > MAX_GLOB_BYTES {
                    return Err(IndexError::BadPattern(format!(
                        "the glob is longer than {MAX_GLOB_BYTES} bytes"
                    )));
                }
                let glob = glob.trim_start_matches('/');
                let matcher = GlobBuilder::new(glob)
                    .case_insensitive(true)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| IndexError::BadPattern(e.to_string()))?
                    .compile_matcher();
                Ok(PathMatcher::Glob {
                    glob: matcher,
                    segment: !glob.contains('/'),
                })
            }
        }
    }

    /// Whether `path` satisfies the filter.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Substring(needle) => {
                if path.is_ascii() && needle.is_ascii() {
                    contains_ignore_ascii_case(path, needle)
                } else {
                    path.to_lowercase().contains(needle.as_str())
                }
            }
            PathMatcher::Glob { glob, segment } => {
                if *segment {
                    path.split('/').any(|s| glob.is_match(s))
                } else {
                    glob.is_match(path)
                }
            }
        }
    }
}

fn contains_ignore_ascii_case(haystack: &str, lower_needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), lower_needle.as_bytes());
    n.is_empty()
        || h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(g: &str, path: &str) -> bool {
        PathMatcher::new(&PathFilter::Glob(g.into()))
            .map(|m| m.matches(path))
            .unwrap_or(false)
    }

    #[test]
    fn globs() {
        assert!(glob("*.rs", "src/main.rs"));
        assert!(!glob("*.rs", "src/main.rsx"));
        assert!(glob("src/*.rs", "src/main.rs"));
        assert!(!glob("src/*.rs", "src/a/main.rs"));
        assert!(glob("src/**/*.rs", "src/a/b/main.rs"));
        assert!(glob("src/**/*.rs", "src/main.rs"));
        assert!(glob("**/test_?.py", "a/b/test_1.py"));
        assert!(glob("test*", "tests/x.c"));
        assert!(glob("*.RS", "lib.rs"));
        assert!(glob("src/{a,b}/*.rs", "src/b/x.rs"));
        assert!(!glob("[", "["));
        assert!(!glob(&"*".repeat(MAX_GLOB_BYTES + 1), "a"));
    }

    #[test]
    fn substrings_ignore_case() {
        let m = PathMatcher::new(&PathFilter::Substring("Src/Lib".into()));
        assert!(m.as_ref().is_ok_and(|m| m.matches("crates/x/src/lib.rs")));
        assert!(m.as_ref().is_ok_and(|m| !m.matches("crates/x/src/main.rs")));
        let u = PathMatcher::new(&PathFilter::Substring("GRÖSSE".into()));
        assert!(u.is_ok_and(|m| m.matches("docs/größe/grösse.md")));
    }
}
