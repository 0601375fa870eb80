//! A [`ShardQuery`] compiled once for all shards: regexes (with size limits), the trigram
//! condition, path filters and the words used for ranking.

use regex::bytes::{Regex, RegexBuilder};

use super::lines::{ExcerptLine, excerpt_lines, line_starts, lines};
use super::path_filter::PathMatcher;
use super::tokens::words;
use super::trigram_query::{Q, analyse};
use super::{IndexError, Pattern, ShardQuery};

/// Compiled-program and lazy-DFA cache bound for one pattern.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// A regex and how to run it.
pub(super) struct Matcher {
    pub(super) regex: Regex,
    /// Run it line by line (it cannot match a line break and has no literal to skip by).
    per_line: bool,
}

impl Matcher {
    fn new(regex: &str, case_sensitive: bool, per_line: bool) -> Result<Matcher, IndexError> {
        let regex = RegexBuilder::new(regex)
            .case_insensitive(!case_sensitive)
            .multi_line(true)
            .crlf(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| IndexError::BadPattern(e.to_string()))?;
        Ok(Matcher { regex, per_line })
    }

    pub(super) fn is_match(&self, content: &[u8]) -> bool {
        if self.per_line {
            lines(content).any(|line| self.regex.is_match(line))
        } else {
            self.regex.is_match(content)
        }
    }

    /// Non-empty matches as (line index, start, end), offsets relative to the line.
    pub(super) fn hits(
        &self,
        content: &[u8],
        starts: &[usize],
        out: &mut Vec<(usize, usize, usize)>,
    ) {
        if self.per_line {
            for (i, line) in lines(content).enumerate() {
                for m in self.regex.find_iter(line).filter(|m| !m.is_empty()) {
                    out.push((i, m.start(), m.end()));
                }
            }
        } else {
            for m in self.regex.find_iter(content).filter(|m| !m.is_empty()) {
                let i = starts.partition_point(|&s| s <= m.start()) - 1;
                out.push((i, m.start() - starts[i], m.end() - starts[i]));
            }
        }
    }
}

/// A `must` pattern, compiled.
pub(super) struct Must {
    pub(super) matcher: Matcher,
    /// For literal patterns: the pattern between non-identifier characters.
    pub(super) whole_word: Option<Matcher>,
    /// For literal patterns: its words, for BM25.
    words: Vec<String>,
    pub(super) literal: bool,
    q: Q,
}

impl Must {
    fn new(p: &Pattern) -> Result<Must, IndexError> {
        let analysis = analyse(&p.regex, p.case_sensitive);
        // With a required literal the regex crate's prefilter skips through a whole file
        // fastest; without one its engines run ≈ 5× faster line by line (measured on 300
        // MB of crates: 0.8 s vs 3.9 s for `[a-z]+_[0-9]{3}`, but 65 ms vs 160 ms for
        // "fn main"). A match that can span lines needs the whole file anyway.
        let per_line = !analysis.spans_lines && analysis.q == Q::All;
        let matcher = Matcher::new(&p.regex, p.case_sensitive, per_line)?;
        let whole_word = if p.literal {
            let edge = "(?-u:[^0-9A-Za-z_])";
            let re = format!("(?:^|{edge})(?:{})(?:{edge}|$)", p.regex);
            Some(Matcher::new(&re, p.case_sensitive, per_line)?)
        } else {
            None
        };
        Ok(Must {
            matcher,
            whole_word,
            words: if p.literal {
                words(&unescape(&p.regex))
            } else {
                Vec::new()
            },
            literal: p.literal,
            q: analysis.q,
        })
    }
}

/// A `sym:` pattern, matched against symbol names.
pub(super) struct SymMatcher {
    pub(super) regex: regex::Regex,
    /// For `sym:name`: the name, so an exact match can rank first.
    pub(super) literal: Option<String>,
    pub(super) case_sensitive: bool,
}

impl SymMatcher {
    pub(super) fn new(p: &Pattern) -> Result<SymMatcher, IndexError> {
        let regex = regex::RegexBuilder::new(&p.regex)
            .case_insensitive(!p.case_sensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| IndexError::BadPattern(e.to_string()))?;
        Ok(SymMatcher {
            regex,
            literal: p.literal.then(|| unescape(&p.regex)),
            case_sensitive: p.case_sensitive,
        })
    }

    /// Whether `name` is exactly the literal asked for (by the query's case rule).
    pub(super) fn exact(&self, name: &str) -> bool {
        self.literal.as_deref().is_some_and(|l| {
            if self.case_sensitive {
                l == name
            } else {
                l.eq_ignore_ascii_case(name)
            }
        })
    }
}

/// The text of a `regex::escape`d literal.
pub(super) fn unescape(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len());
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// A [`ShardQuery`] ready to run on any number of shards (Send + Sync): compile it once
/// per search request and pass it to [`Shard::search_prepared`](super::Shard::search_prepared).
pub struct PreparedQuery {
    pub(super) must: Vec<Must>,
    pub(super) must_not: Vec<Matcher>,
    pub(super) include: Vec<PathMatcher>,
    pub(super) exclude: Vec<PathMatcher>,
    pub(super) languages: Vec<String>,
    pub(super) exclude_languages: Vec<String>,
    /// Trigrams every matching file contains.
    pub(super) q: Q,
    /// Distinct words of the literal patterns, for BM25.
    pub(super) words: Vec<String>,
    pub(super) max_matches_per_file: usize,
    pub(super) max_files: usize,
    /// `sym:` patterns: the file must define a match of each.
    pub(super) symbols: Vec<SymMatcher>,
    pub(super) symbols_not: Vec<SymMatcher>,
    /// Literal words that are identifiers, with their case rule: a file defining one ranks
    /// above files that only use it.
    pub(super) identifiers: Vec<(String, bool)>,
}

impl PreparedQuery {
    /// Compiles `query`; an invalid regex or glob is [`IndexError::BadPattern`].
    pub fn new(query: &ShardQuery) -> Result<PreparedQuery, IndexError> {
        let must = query
            .must
            .iter()
            .map(Must::new)
            .collect::<Result<Vec<_>, _>>()?;
        let must_not = query
            .must_not
            .iter()
            .map(|p| {
                let spans = analyse(&p.regex, p.case_sensitive).spans_lines;
                Matcher::new(&p.regex, p.case_sensitive, !spans)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let include = query.path_include.iter().map(PathMatcher::new);
        let exclude = query.path_exclude.iter().map(PathMatcher::new);
        let identifiers = query
            .must
            .iter()
            .filter(|p| p.literal)
            .map(|p| (unescape(&p.regex), p.case_sensitive))
            .filter(|(w, _)| is_identifier(w))
            .collect();
        let symbols = query.symbols.iter().map(SymMatcher::new);
        let symbols_not = query.symbols_not.iter().map(SymMatcher::new);
        let mut words: Vec<String> = must.iter().flat_map(|m| m.words.clone()).collect();
        words.sort_unstable();
        words.dedup();
        Ok(PreparedQuery {
            q: must.iter().fold(Q::All, |q, m| q.and(m.q.clone())),
            must,
            must_not,
            include: include.collect::<Result<Vec<_>, _>>()?,
            exclude: exclude.collect::<Result<Vec<_>, _>>()?,
            languages: query.languages.clone(),
            exclude_languages: query.exclude_languages.clone(),
            words,
            max_matches_per_file: query.max_matches_per_file,
            max_files: query.max_files,
            symbols: symbols.collect::<Result<Vec<_>, _>>()?,
            symbols_not: symbols_not.collect::<Result<Vec<_>, _>>()?,
            identifiers,
        })
    }

    /// The lines of one file's `content` where the query's patterns match, with `context`
    /// lines around each (merged where they meet), for answers that show code in place.
    pub fn excerpt(&self, content: &[u8], context: usize) -> Vec<ExcerptLine> {
        let starts = line_starts(content);
        let mut found = Vec::new();
        for m in &self.must {
            m.matcher.hits(content, &starts, &mut found);
        }
        excerpt_lines(content, &starts, found, context)
    }

    /// Whether a file with this path and language passes the filters.
    pub(super) fn accepts(&self, path: &str, lang: &str) -> bool {
        (self.languages.is_empty() || self.languages.iter().any(|l| l.eq_ignore_ascii_case(lang)))
            && !self
                .exclude_languages
                .iter()
                .any(|l| l.eq_ignore_ascii_case(lang))
            && self.include.iter().all(|m| m.matches(path))
            && !self.exclude.iter().any(|m| m.matches(path))
    }
}

/// Whether `word` could name a definition: letters, digits, `_` and `$`, not a digit first.
fn is_identifier(word: &str) -> bool {
    word.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}
