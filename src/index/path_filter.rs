//! Compiled path conditions: case-insensitive substrings and globs.

use regex::Regex;

use super::{IndexError, PathFilter};

/// A [`PathFilter`] ready to test paths.
#[derive(Debug)]
pub(crate) enum PathMatcher {
    /// Lower-cased needle.
    Substring(String),
    /// The glob as an anchored regex; `segment` globs match any one path segment.
    Glob { regex: Regex, segment: bool },
}

impl PathMatcher {
    /// Compiles a filter.
    pub(crate) fn new(filter: &PathFilter) -> Result<PathMatcher, IndexError> {
        match filter {
            PathFilter::Substring(s) => Ok(PathMatcher::Substring(s.to_lowercase())),
            PathFilter::Glob(glob) => {
                let glob = glob.trim_start_matches('/');
                let regex = regex::RegexBuilder::new(&glob_to_regex(glob))
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| IndexError::BadPattern(e.to_string()))?;
                Ok(PathMatcher::Glob {
                    regex,
                    segment: !glob.contains('/'),
                })
            }
        }
    }

    /// Whether `path` satisfies the filter.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Substring(needle) => {
                if path.is_ascii() && needle.is_ascii() {
                    contains_ignore_ascii_case(path, needle)
                } else {
                    path.to_lowercase().contains(needle.as_str())
                }
            }
            PathMatcher::Glob { regex, segment } => {
                if *segment {
                    path.split('/').any(|s| regex.is_match(s))
                } else {
                    regex.is_match(path)
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

/// `*` → within a segment, `**` → across segments, `?` → one character; the rest literal.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("(?:.*/)?");
                } else {
                    out.push_str(".*");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    out
}

impl PathFilter {
    /// Whether `path` passes this filter (an invalid glob matches nothing).
    pub fn matches(&self, path: &str) -> bool {
        PathMatcher::new(self).is_ok_and(|m| m.matches(path))
    }
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
