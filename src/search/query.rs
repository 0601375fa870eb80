//! The query language shared by the search page, the JSON API and MCP.
//!
//! `foo bar` (all must match, case-insensitive), `"exact phrase"`, `/regex/`, filters
//! `repo:`, `workspace:`, `path:` (alias `file:`), `lang:`, `case:yes`, symbols `sym:name`
//! and `sym:/regex/` (the file defines a matching symbol), and `-` before a word, phrase,
//! regex or filter to negate it. Parsing never panics; errors say what and where.

use super::corrections::{closest, misspelled_filter, not_an_operator, regex_error, replaced};
use super::syntax::{NOT_OPERATORS, filter_name};
use crate::index::{PathFilter, Pattern, ShardQuery, language_aliases, language_names};

/// What `case:` takes.
pub(super) const CASE_VALUES: &[&str] =
    &["yes", "y", "true", "on", "no", "n", "false", "off", "auto"];

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Compiled size limit of one regex (the regex crate's own measure).
const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// A parsed query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<Term>,
    pub repos: Vec<Filter>,
    pub workspaces: Vec<Filter>,
    pub paths: Vec<Filter>,
    pub languages: Vec<Filter>,
    /// `sym:` terms: kind `Word` (part of a symbol's name) or `Regex`.
    pub symbols: Vec<Term>,
    pub case_sensitive: bool,
}

/// Something the content must (or, negated, must not) contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub kind: TermKind,
    pub text: String,
    pub negated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermKind {
    Word,
    Phrase,
    Regex,
}

/// A `key:value` restriction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub value: String,
    pub negated: bool,
}

/// What is wrong with a query, where (`position`, a character offset from 0; the message
/// counts from 1, as people do) and, when the fix is obvious, the whole query corrected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {}){}", position + 1, .suggestion.as_ref().map(|s| format!("; did you mean: {s}")).unwrap_or_default())]
pub struct ParseError {
    pub message: String,
    pub position: usize,
    pub suggestion: Option<String>,
}

pub(super) fn error(message: impl Into<String>, position: usize) -> ParseError {
    ParseError {
        message: message.into(),
        position,
        suggestion: None,
    }
}

impl ParseError {
    pub(super) fn suggest(mut self, corrected: String) -> ParseError {
        self.suggestion = Some(corrected);
        self
    }
}

/// Parses a query string.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(error(
            format!("the query is longer than {MAX_QUERY_BYTES} bytes"),
            MAX_QUERY_BYTES,
        ));
    }
    let chars: Vec<char> = input.chars().collect();
    let mut query = Query::default();
    // Where each regex's characters came from in the input, to place its errors.
    let mut regex_origins = Vec::new();
    let mut symbol_origins = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let negated = chars[i] == '-' && i + 1 < chars.len() && !chars[i + 1].is_whitespace();
        if negated {
            i += 1;
        }
        // `sym:/regex/` is read like a regex term (it may hold spaces or quotes).
        let sym_regex: String = chars[i..chars.len().min(i + 5)].iter().collect();
        if sym_regex.eq_ignore_ascii_case("sym:/") {
            let (text, origins, next) = regex_literal(&chars, i + 4)?;
            validate_regex(&text, query.case_sensitive)
                .map_err(|(m, at)| error(m, place(&origins, at, start)))?;
            symbol_origins.push((origins, start));
            query.symbols.push(Term {
                kind: TermKind::Regex,
                text,
                negated,
            });
            i = next;
            continue;
        }
        match chars[i] {
            '"' => {
                let (text, next) =
                    quoted(&chars, i).map_err(|e| e.suggest(format!("{}\"", input.trim_end())))?;
                if text.is_empty() {
                    return Err(error("an empty \"phrase\" matches nothing useful", start));
                }
                query.terms.push(Term {
                    kind: TermKind::Phrase,
                    text,
                    negated,
                });
                i = next;
            }
            '/' => {
                let (text, origins, next) = regex_literal(&chars, i).map_err(|e| {
                    // Obvious only when no other slash could have been meant as the end.
                    let body: String = chars[i + 1..].iter().collect();
                    if body.contains('/') || body.trim().is_empty() {
                        e
                    } else {
                        e.suggest(format!("{}/", input.trim_end()))
                    }
                })?;
                validate_regex(&text, query.case_sensitive).map_err(|(m, at)| ParseError {
                    // Placed at the failing character; the correction, when obvious, kept.
                    position: place(&origins, at, start),
                    ..regex_error(m, &chars, i, next)
                })?;
                regex_origins.push((origins, start));
                query.terms.push(Term {
                    kind: TermKind::Regex,
                    text,
                    negated,
                });
                i = next;
            }
            _ => {
                let (word, next) = bare(&chars, i);
                let word_start = i;
                i = next;
                if !negated && NOT_OPERATORS.contains(&word.as_str()) {
                    return Err(not_an_operator(&chars, &word, word_start, next));
                }
                if let Some(e) = misspelled_filter(&chars, &word, word_start) {
                    return Err(e);
                }
                if let Some((key, value)) = split_filter(&word) {
                    let value_start = start + usize::from(negated) + key.chars().count() + 1;
                    let value = if value.is_empty() && i < chars.len() && chars[i] == '"' {
                        let (v, next) = quoted(&chars, i)?;
                        i = next;
                        v
                    } else {
                        value
                    };
                    if value.is_empty() {
                        return Err(error(format!("{key}: needs a value"), value_start));
                    }
                    let filter = Filter {
                        value: value.clone(),
                        negated,
                    };
                    match key.as_str() {
                        "repo" => query.repos.push(filter),
                        "workspace" => query.workspaces.push(filter),
                        "path" => query.paths.push(filter),
                        "lang" => {
                            let Some(name) = language_aliases(&value) else {
                                let e = error(format!("unknown language {value:?}"), value_start);
                                return Err(match closest(&value, language_names(), 2) {
                                    Some(known) => e.suggest(replaced(
                                        &chars,
                                        value_start,
                                        value_start + value.chars().count(),
                                        known,
                                    )),
                                    None => e,
                                });
                            };
                            query.languages.push(Filter {
                                value: name.to_owned(),
                                negated,
                            });
                        }
                        "sym" | "symbol" => query.symbols.push(Term {
                            kind: TermKind::Word,
                            text: value,
                            negated,
                        }),
                        "case" => match value.to_ascii_lowercase().as_str() {
                            "yes" | "y" | "true" | "on" => query.case_sensitive = true,
                            "no" | "n" | "false" | "off" | "auto" => query.case_sensitive = false,
                            _ => return Err(error("case: takes yes or no", value_start)),
                        },
                        _ => unreachable!("split_filter only returns known keys"),
                    }
                } else {
                    query.terms.push(Term {
                        kind: TermKind::Word,
                        text: word,
                        negated,
                    });
                }
            }
        }
    }
    // case:yes may come after a regex: validate again with the final flags.
    let regexes = query.terms.iter().filter(|t| t.kind == TermKind::Regex);
    for (term, (origins, start)) in regexes.zip(&regex_origins) {
        validate_regex(&term.text, query.case_sensitive)
            .map_err(|(m, at)| error(m, place(origins, at, *start)))?;
    }
    let symbol_regexes = query.symbols.iter().filter(|t| t.kind == TermKind::Regex);
    for (term, (origins, start)) in symbol_regexes.zip(&symbol_origins) {
        validate_regex(&term.text, query.case_sensitive)
            .map_err(|(m, at)| error(m, place(origins, at, *start)))?;
    }
    if query.terms.iter().all(|t| t.negated)
        && query.symbols.iter().all(|t| t.negated)
        && query.paths.iter().all(|f| f.negated)
        && query.languages.iter().all(|f| f.negated)
        && query.repos.iter().all(|f| f.negated)
        && query.workspaces.iter().all(|f| f.negated)
    {
        return Err(error(
            "say what to look for: a word, \"a phrase\", /a regex/, sym:name or a path:/lang:/repo: filter",
            0,
        ));
    }
    Ok(query)
}

fn quoted(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let mut text = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\') => {
                text.push(chars[i + 1]);
                i += 2;
            }
            '"' => return Ok((text, i + 1)),
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(error("this \" is never closed", open))
}

/// A `/regex/`: its text, where each of its characters sits in the query, and where the
/// query goes on.
fn regex_literal(chars: &[char], open: usize) -> Result<(String, Vec<usize>, usize), ParseError> {
    let mut text = String::new();
    let mut origins = Vec::new();
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            // `\/` is a literal slash; every other escape is the regex's own.
            '\\' if i + 1 < chars.len() && chars[i + 1] == '/' => {
                text.push('/');
                origins.push(i + 1);
                i += 2;
            }
            '\\' if i + 1 < chars.len() => {
                text.push('\\');
                text.push(chars[i + 1]);
                origins.extend([i, i + 1]);
                i += 2;
            }
            '/' if i + 1 == chars.len() || chars[i + 1].is_whitespace() => {
                if text.is_empty() {
                    return Err(error("an empty /regex/", open));
                }
                origins.push(i);
                return Ok((text, origins, i + 1));
            }
            c => {
                text.push(c);
                origins.push(i);
                i += 1;
            }
        }
    }
    Err(error(
        "this /regex/ is never closed (end it with / and a space)",
        open,
    ))
}

fn bare(chars: &[char], start: usize) -> (String, usize) {
    let mut i = start;
    let mut word = String::new();
    while i < chars.len() && !chars[i].is_whitespace() {
        // A filter's quoted value starts right after the colon.
        if chars[i] == '"' && word.ends_with(':') {
            break;
        }
        word.push(chars[i]);
        i += 1;
    }
    (word, i)
}

/// `key:value` of a known filter, the key given by its canonical name (the value may be
/// empty: a quoted value follows, or it is an error).
fn split_filter(word: &str) -> Option<(String, String)> {
    let (key, value) = word.split_once(':')?;
    filter_name(key).map(|name| (name.to_owned(), value.to_owned()))
}

/// The query position of the regex's `at`-th character (its closing `/` past the end); the
/// regex's start when the error has no place.
fn place(origins: &[usize], at: Option<usize>, start: usize) -> usize {
    at.and_then(|a| origins.get(a).or(origins.last()).copied())
        .unwrap_or(start)
}

/// Checks a regex; an error says what is wrong and at which of its characters, when it
/// has a place (a syntax error has; "too big" has not).
fn validate_regex(pattern: &str, case_sensitive: bool) -> Result<(), (String, Option<usize>)> {
    // regex-syntax names the failing span; the regex crate's own error is a multi-line
    // picture of it that reads badly in one line.
    if let Err(e) = regex_syntax::ParserBuilder::new()
        .case_insensitive(!case_sensitive)
        .build()
        .parse(pattern)
    {
        let (kind, offset) = match &e {
            regex_syntax::Error::Parse(e) => (e.kind().to_string(), e.span().start.offset),
            regex_syntax::Error::Translate(e) => (e.kind().to_string(), e.span().start.offset),
            _ => ("not understood".to_owned(), 0),
        };
        let at = pattern.get(..offset).map_or(0, |p| p.chars().count());
        return Err((format!("invalid regex: {kind}"), Some(at)));
    }
    regex::bytes::RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => (
                "this regex is too big; make it more specific".to_owned(),
                None,
            ),
            other => (
                format!(
                    "invalid regex: {}",
                    other
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("not understood")
                        .trim()
                        .trim_start_matches("error: ")
                ),
                None,
            ),
        })
}

impl Query {
    /// The per-shard part of the query (content, path and language); repository and
    /// workspace filters choose the shards instead.
    pub fn shard_query(&self, max_matches_per_file: usize, max_files: usize) -> ShardQuery {
        let pattern = |t: &Term| Pattern {
            regex: match t.kind {
                TermKind::Regex => t.text.clone(),
                _ => regex::escape(&t.text),
            },
            case_sensitive: self.case_sensitive,
            literal: t.kind != TermKind::Regex,
        };
        let path = |f: &Filter| {
            if f.value.contains(['*', '?', '[']) {
                PathFilter::Glob(f.value.clone())
            } else {
                PathFilter::Substring(f.value.clone())
            }
        };
        ShardQuery {
            must: self
                .terms
                .iter()
                .filter(|t| !t.negated)
                .map(pattern)
                .collect(),
            must_not: self
                .terms
                .iter()
                .filter(|t| t.negated)
                .map(pattern)
                .collect(),
            path_include: self.paths.iter().filter(|f| !f.negated).map(path).collect(),
            path_exclude: self.paths.iter().filter(|f| f.negated).map(path).collect(),
            languages: self
                .languages
                .iter()
                .filter(|f| !f.negated)
                .map(|f| f.value.clone())
                .collect(),
            exclude_languages: self
                .languages
                .iter()
                .filter(|f| f.negated)
                .map(|f| f.value.clone())
                .collect(),
            max_matches_per_file,
            max_files,
            symbols: self
                .symbols
                .iter()
                .filter(|t| !t.negated)
                .map(pattern)
                .collect(),
            symbols_not: self
                .symbols
                .iter()
                .filter(|t| t.negated)
                .map(pattern)
                .collect(),
        }
    }

    /// Whether a repository passes the `repo:` and `workspace:` filters.
    pub fn allows_repository(&self, workspace: &str, slug: &str, full_name: &str) -> bool {
        let repo_hit = |f: &Filter| {
            let v = f.value.to_lowercase();
            slug.to_lowercase() == v || full_name.to_lowercase().contains(&v)
        };
        let ws_hit = |f: &Filter| workspace.eq_ignore_ascii_case(&f.value);
        self.repos.iter().all(|f| repo_hit(f) != f.negated)
            && self.workspaces.iter().all(|f| ws_hit(f) != f.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, negated: bool) -> Term {
        Term {
            kind: TermKind::Word,
            text: text.into(),
            negated,
        }
    }

    #[test]
    fn words_phrases_regexes_and_negation() {
        let q = parse(r#"foo -bar "a b\"c" /fn\s+\w+/ -/TODO/"#).expect("valid");
        assert_eq!(q.terms[0], word("foo", false));
        assert_eq!(q.terms[1], word("bar", true));
        assert_eq!(
            q.terms[2],
            Term {
                kind: TermKind::Phrase,
                text: "a b\"c".into(),
                negated: false
            }
        );
        assert_eq!(
            q.terms[3],
            Term {
                kind: TermKind::Regex,
                text: r"fn\s+\w+".into(),
                negated: false
            }
        );
        assert_eq!(
            q.terms[4],
            Term {
                kind: TermKind::Regex,
                text: "TODO".into(),
                negated: true
            }
        );
        assert!(!q.case_sensitive);
    }

    #[test]
    fn filters_and_aliases() {
        let q = parse(
            r#"x repo:api -workspace:acme file:src/*.rs path:"my dir" lang:py -lang:rs case:yes"#,
        )
        .expect("valid");
        assert_eq!(
            q.repos,
            vec![Filter {
                value: "api".into(),
                negated: false
            }]
        );
        assert_eq!(
            q.workspaces,
            vec![Filter {
                value: "acme".into(),
                negated: true
            }]
        );
        assert_eq!(q.paths[0].value, "src/*.rs");
        assert_eq!(q.paths[1].value, "my dir");
        assert_eq!(
            q.languages[0],
            Filter {
                value: "python".into(),
                negated: false
            }
        );
        assert_eq!(
            q.languages[1],
            Filter {
                value: "rust".into(),
                negated: true
            }
        );
        assert!(q.case_sensitive);
        let sq = q.shard_query(5, 10);
        assert!(matches!(&sq.path_include[0], PathFilter::Glob(g) if g == "src/*.rs"));
        assert!(matches!(&sq.path_include[1], PathFilter::Substring(s) if s == "my dir"));
        assert!(sq.must[0].case_sensitive);
    }

    #[test]
    fn words_are_escaped_for_the_regex_engine() {
        let q = parse("a.b(").expect("valid");
        assert_eq!(q.shard_query(1, 1).must[0].regex, r"a\.b\(");
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = parse("foo \"unclosed").expect_err("bad");
        assert_eq!(e.position, 4);
        let e = parse("x /a(/").expect_err("bad");
        assert_eq!(e.message, "invalid regex: unclosed group", "{e}");
        // The unclosed `(`, not the regex's start; the message counts from 1.
        assert_eq!(e.position, 4);
        assert!(e.to_string().contains("(at character 5)"), "{e}");
        let e = parse(r"/a\/b[/").expect_err("bad");
        assert_eq!(e.position, 5, "{e}");
        assert!(
            parse("lang:klingon x")
                .expect_err("bad")
                .message
                .contains("unknown language")
        );
        assert!(parse("x case:maybe").is_err());
        assert!(parse("-foo").is_err(), "only negations");
        assert!(parse("   ").is_err());
        assert!(
            parse(&"a".repeat(MAX_QUERY_BYTES + 1))
                .expect_err("long")
                .message
                .contains("longer")
        );
        assert!(parse("/never closed").is_err());
        assert!(
            parse(r"/\w{1000}{1000}/")
                .expect_err("big")
                .message
                .contains("too big")
        );
    }

    #[test]
    fn obvious_corrections_come_with_the_error() {
        let fix = |q: &str| parse(q).expect_err(q).suggestion;
        assert_eq!(fix(r#"foo "bar baz"#).as_deref(), Some(r#"foo "bar baz""#));
        assert_eq!(fix("x /fn (foo").as_deref(), Some("x /fn (foo/"));
        let e = parse("x /foo(bar/ y").expect_err("unclosed group");
        assert_eq!(e.position, 6, "{e}");
        assert_eq!(e.suggestion.as_deref(), Some(r"x /foo\(bar/ y"));
        assert_eq!(fix("/a)b/").as_deref(), Some(r"/a\)b/"));
        assert_eq!(fix("/[abc/").as_deref(), Some(r"/\[abc/"));
        assert_eq!(fix("/*.rs/").as_deref(), Some(r"/\*.rs/"));
        assert_eq!(fix("todo lnag:rust").as_deref(), Some("todo lang:rust"));
        assert_eq!(fix("todo reop:api").as_deref(), Some("todo repo:api"));
        assert_eq!(fix("x langauge:go").as_deref(), Some("x language:go"));
        assert_eq!(fix("x worksapce:acme").as_deref(), Some("x workspace:acme"));
        assert_eq!(fix("x cas:yes").as_deref(), Some("x case:yes"));
        assert_eq!(fix("x ext:py").as_deref(), Some("x path:*.py"));
        assert_eq!(fix("x lang:pyhton").as_deref(), Some("x lang:python"));
        assert_eq!(
            fix("get OR fetch lang:go").as_deref(),
            Some("/get|fetch/ lang:go")
        );
        assert_eq!(fix("get AND fetch").as_deref(), Some("get fetch"));
        assert_eq!(fix("get NOT test").as_deref(), Some("get -test"));
        let e = parse("x lnag:rust").expect_err("misspelled");
        assert_eq!(e.position, 2);
        assert!(e.to_string().contains("did you mean: x lang:rust"), "{e}");
        // Code that merely looks like a filter is text.
        for q in [
            "std::io",
            "name:value",
            "http://x",
            "\"OR\" x",
            "a or b",
            "key:1",
        ] {
            assert!(parse(q).is_ok(), "{q}");
        }
    }

    #[test]
    fn a_lone_dash_and_slashes_inside_words_are_words() {
        let q = parse("- a/b/c").expect("valid");
        assert_eq!(q.terms[0], word("-", false));
        assert_eq!(q.terms[1], word("a/b/c", false));
    }

    #[test]
    fn repository_filters() {
        let q = parse("x repo:web -repo:legacy workspace:acme").expect("valid");
        assert!(q.allows_repository("acme", "web-app", "acme/web-app"));
        assert!(q.allows_repository("ACME", "web", "acme/web"));
        assert!(!q.allows_repository("other", "web", "other/web"));
        assert!(!q.allows_repository("acme", "legacy-web", "acme/legacy-web"));
    }

    #[test]
    fn symbol_terms() {
        let q = parse(r"sym:Parse_Config -SYM:/^test_\w+ x$/ lang:rust words").expect("valid");
        assert_eq!(q.symbols[0], word("Parse_Config", false));
        assert_eq!(
            q.symbols[1],
            Term {
                kind: TermKind::Regex,
                text: r"^test_\w+ x$".into(),
                negated: true
            }
        );
        assert_eq!(q.terms, [word("words", false)]);
        let sq = q.shard_query(5, 10);
        assert_eq!(sq.symbols.len(), 1);
        assert_eq!(sq.symbols[0].regex, "Parse_Config");
        assert!(sq.symbols[0].literal && !sq.symbols[0].case_sensitive);
        assert_eq!(sq.symbols_not[0].regex, r"^test_\w+ x$");
        assert!(sq.must.iter().all(|p| p.regex != "Parse_Config"));
        // A sym: term alone is a query; a negated one alone is not.
        assert!(parse("sym:main").is_ok());
        assert!(parse("-sym:main").is_err());
        assert!(parse("sym:").is_err());
        assert!(
            parse("sym:/a(b/")
                .expect_err("bad")
                .message
                .contains("invalid regex")
        );
        assert!(
            parse("sym:x case:yes")
                .expect("valid")
                .shard_query(1, 1)
                .symbols[0]
                .case_sensitive
        );
    }
}
