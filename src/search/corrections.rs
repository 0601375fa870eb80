//! Corrections for queries the parser refuses: when the fix is obvious — a filter name
//! misspelled or borrowed from another tool, `OR`/`AND`/`NOT` written as operators, an
//! unbalanced bracket in a regex — the whole query, corrected, goes with the error.

use super::query::{CASE_VALUES, ParseError, error};
use super::syntax::{FILTERS, FOREIGN_FILTERS, filter_name};
use crate::index::language_aliases;

/// `chars` with the characters `from..to` replaced by `with`.
pub(super) fn replaced(chars: &[char], from: usize, to: usize, with: &str) -> String {
    let mut out: String = chars[..from].iter().collect();
    out.push_str(with);
    out.extend(&chars[to.min(chars.len())..]);
    out
}

/// A `key:value` word whose key is not a filter but looks like one: a filter name misspelled
/// (`lnag:rust`) or another tool's (`ext:py`). Anything else (`std::io`, `http://x`,
/// `name:value` in YAML) is text to search for.
pub(super) fn misspelled_filter(chars: &[char], word: &str, start: usize) -> Option<ParseError> {
    let (key, value) = word.split_once(':')?;
    let lower = key.to_ascii_lowercase();
    if value.is_empty() || value.starts_with(':') || filter_name(key).is_some() || key.is_empty() {
        return None;
    }
    if !key.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let key_end = start + key.chars().count() + 1;
    if let Some((_, instead)) = FOREIGN_FILTERS.iter().find(|(k, _)| *k == lower) {
        let message = if instead.is_empty() {
            format!("{key}: is not a filter here: words are searched in file content already")
        } else {
            format!("{key}: is not a filter here; write {instead}")
        };
        return Some(error(message, start).suggest(replaced(chars, start, key_end, instead)));
    }
    // One edit from a filter name, and a value that filter would take: `cache: npm` in YAML
    // and `fill:#fff` in CSS stay text, `lnag:rust` and `reop:api` are slips.
    // `file` is left out: `fill:` is CSS.
    let names = FILTERS
        .iter()
        .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
        .filter(|n| n.len() >= 4 && *n != "file");
    let known = closest(&lower, names, 1)?;
    let plausible = match filter_name(known).unwrap_or(known) {
        "lang" => language_aliases(value).is_some(),
        "case" => CASE_VALUES.contains(&value.to_ascii_lowercase().as_str()),
        _ => key.len() >= 3,
    };
    if !plausible {
        return None;
    }
    Some(
        error(
            format!("unknown filter {key}: — did you mean {known}:?"),
            start,
        )
        .suggest(replaced(chars, start, key_end, &format!("{known}:"))),
    )
}

/// `OR`, `AND`, `NOT` written as operators, with the query that says what they meant.
pub(super) fn not_an_operator(chars: &[char], word: &str, start: usize, end: usize) -> ParseError {
    let before = previous_word(chars, start);
    let after = next_word(chars, end);
    let message = format!(
        "{word} is not an operator here: every word must match already, - excludes, /a|b/ matches either; to search for the word itself write \"{word}\""
    );
    let plain = |w: &(usize, usize, String)| {
        !w.2.is_empty() && w.2.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let corrected = match (word, &before, &after) {
        ("AND", _, _) => Some(replaced(chars, start, skip_space(chars, end), "")),
        ("NOT", _, Some(a)) if plain(a) => Some(replaced(chars, start, a.0, "-")),
        ("OR", Some(b), Some(a)) if plain(b) && plain(a) => Some(replaced(
            chars,
            b.0,
            a.1,
            &format!("/{}|{}/", regex::escape(&b.2), regex::escape(&a.2)),
        )),
        _ => None,
    };
    let e = error(message, start);
    match corrected {
        Some(c) => e.suggest(c.split_whitespace().collect::<Vec<_>>().join(" ")),
        None => e,
    }
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The whitespace-separated word before `start`: (from, to, text).
fn previous_word(chars: &[char], start: usize) -> Option<(usize, usize, String)> {
    let mut end = start;
    while end > 0 && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    let mut from = end;
    while from > 0 && !chars[from - 1].is_whitespace() {
        from -= 1;
    }
    (from < end).then(|| (from, end, chars[from..end].iter().collect()))
}

/// The whitespace-separated word from `end` on: (from, to, text).
fn next_word(chars: &[char], end: usize) -> Option<(usize, usize, String)> {
    let from = skip_space(chars, end);
    let mut to = from;
    while to < chars.len() && !chars[to].is_whitespace() {
        to += 1;
    }
    (from < to).then(|| (from, to, chars[from..to].iter().collect()))
}

/// The candidate nearest to `word` within `budget` edits (transpositions count once).
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
    budget: usize,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, c), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions, transpositions.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A regex the regex crate refused: where in the query, and for an unbalanced bracket (the
/// usual slip: `/foo(/` meant a literal parenthesis) the query with it escaped.
pub(super) fn regex_error(message: String, chars: &[char], open: usize, next: usize) -> ParseError {
    let body: String = chars[open + 1..next - 1].iter().collect();
    let pattern = body.replace("\\/", "/");
    let Err(e) = regex_syntax::ast::parse::Parser::new().parse(&pattern) else {
        return error(message, open);
    };
    use regex_syntax::ast::ErrorKind as K;
    let at = e.span().start.offset;
    let position = open + 1 + pattern[..at.min(pattern.len())].chars().count();
    let escape = match e.kind() {
        K::GroupUnclosed | K::GroupUnopened | K::ClassUnclosed | K::RepetitionMissing => Some(at),
        _ => None,
    };
    let err = error(message, position);
    match escape.filter(|&a| pattern.is_char_boundary(a) && a < pattern.len()) {
        Some(a) => {
            let fixed = format!("{}\\{}", &pattern[..a], &pattern[a..]).replace('/', "\\/");
            if regex_syntax::ast::parse::Parser::new()
                .parse(&fixed.replace("\\/", "/"))
                .is_ok()
            {
                err.suggest(replaced(chars, open, next, &format!("/{fixed}/")))
            } else {
                err
            }
        }
        None => err,
    }
}
