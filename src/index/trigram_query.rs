//! Which trigrams a file must contain to match a regex: a boolean tree of trigrams derived
//! from the regex's syntax tree (after Russ Cox's "Regular Expression Matching with a
//! Trigram Index"), and whether a regex can match across a line break.
//!
//! Every node of the syntax tree yields the set of strings it matches exactly (while that
//! set is small), or else a query that any match satisfies plus the possible first and last
//! two bytes of a match (to build trigrams that straddle a concatenation). Case-insensitive
//! regexes arrive as classes like `[Kk\u{212A}]`, so every case variant the regex crate can
//! match is an alternative here: the lookup is exact for Unicode too. Strings are folded
//! with ASCII case folding, like the indexed trigrams.

use std::collections::BTreeSet;

use regex_syntax::ParserBuilder;
use regex_syntax::hir::{Class, Hir, HirKind};

use super::tokens::{fold, trigram};
use super::trigram_tree::MAX_LEAVES;
pub(crate) use super::trigram_tree::Q;

/// Most strings kept in a set before it is turned into a query.
const MAX_SET: usize = 64;
/// Most characters a class may have to be expanded into alternatives.
const MAX_CLASS_CHARS: u32 = 64;

/// What a regex tells about the files it can match.
#[derive(Debug)]
pub(crate) struct Analysis {
    /// Trigrams a matching file must contain.
    pub q: Q,
    /// Whether a match can include a line break (then verify per file, not per line).
    pub spans_lines: bool,
}

/// Analyses `regex` with the flags it will be compiled with. A regex regex-syntax cannot
/// parse gives no constraint (compiling it reports the error).
pub(crate) fn analyse(regex: &str, case_sensitive: bool) -> Analysis {
    let parsed = ParserBuilder::new()
        .utf8(false)
        .case_insensitive(!case_sensitive)
        .multi_line(true)
        .crlf(true)
        .build()
        .parse(regex);
    match parsed {
        Ok(hir) => Analysis {
            q: info(&hir).full().prune(MAX_LEAVES),
            spans_lines: can_match_newline(&hir),
        },
        Err(_) => Analysis {
            q: Q::All,
            spans_lines: true,
        },
    }
}

type Set = BTreeSet<Vec<u8>>;

/// Facts about the strings a syntax node matches.
struct Info {
    /// All the strings it matches, when few.
    exact: Option<Set>,
    /// Possible first (up to two) bytes of a match, when not exact.
    prefix: Set,
    /// Possible last (up to two) bytes of a match, when not exact.
    suffix: Set,
    /// Trigrams any match contains, when not exact.
    q: Q,
}

impl Info {
    fn exact(set: Set) -> Info {
        Info {
            exact: Some(set),
            prefix: Set::new(),
            suffix: Set::new(),
            q: Q::All,
        }
    }

    fn any() -> Info {
        Info::inexact(empty_set(), empty_set(), Q::All)
    }

    fn inexact(prefix: Set, suffix: Set, q: Q) -> Info {
        let cut = |set: Set, keep: fn(&[u8]) -> &[u8]| {
            if set.len() > MAX_SET {
                empty_set()
            } else {
                set.iter().map(|s| keep(s).to_vec()).collect()
            }
        };
        Info {
            exact: None,
            prefix: cut(prefix, |s| &s[..s.len().min(2)]),
            suffix: cut(suffix, |s| &s[s.len().saturating_sub(2)..]),
            q,
        }
    }

    fn prefix_set(&self) -> Set {
        self.exact.clone().unwrap_or_else(|| self.prefix.clone())
    }

    fn suffix_set(&self) -> Set {
        self.exact.clone().unwrap_or_else(|| self.suffix.clone())
    }

    /// Everything known as one query.
    fn full(&self) -> Q {
        match &self.exact {
            Some(set) => trigrams(set),
            None => self.q.clone(),
        }
    }
}

fn empty_set() -> Set {
    Set::from([Vec::new()])
}

fn cross(a: &Set, b: &Set) -> Set {
    a.iter()
        .flat_map(|x| b.iter().map(move |y| [x.as_slice(), y].concat()))
        .collect()
}

/// OR over the strings of AND over each string's trigrams, with the trigrams all strings
/// share pulled out first: case variants such as `ſ` for `s` differ in few trigrams, and
/// the shared ones stay usable even when the OR grows too large to keep.
fn trigrams(set: &Set) -> Q {
    let per_string: Vec<BTreeSet<u32>> = set
        .iter()
        .map(|s| s.windows(3).map(|w| trigram(w[0], w[1], w[2])).collect())
        .collect();
    let Some((first, others)) = per_string.split_first() else {
        return Q::All;
    };
    let common: BTreeSet<u32> = first
        .iter()
        .filter(|t| others.iter().all(|o| o.contains(t)))
        .copied()
        .collect();
    let rest = Q::or_all(
        per_string
            .iter()
            .map(|ts| Q::and_all(ts.difference(&common).map(|&t| Q::Tri(t)))),
    );
    Q::and_all(common.into_iter().map(Q::Tri).chain([rest]))
}

fn info(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(empty_set()),
        HirKind::Literal(lit) => Info::exact(Set::from([lit.0.iter().map(|&b| fold(b)).collect()])),
        HirKind::Class(class) => class_strings(class).map_or_else(Info::any, Info::exact),
        HirKind::Capture(cap) => info(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = info(&rep.sub);
            match (rep.min, rep.max) {
                (1, Some(1)) => sub,
                (0, Some(1)) => match sub.exact {
                    Some(mut set) if set.len() < MAX_SET => {
                        set.insert(Vec::new());
                        Info::exact(set)
                    }
                    _ => Info::any(),
                },
                (0, _) => Info::any(),
                _ => Info::inexact(sub.prefix_set(), sub.suffix_set(), sub.full()),
            }
        }
        HirKind::Concat(subs) => subs
            .iter()
            .fold(Info::exact(empty_set()), |acc, h| concat(acc, info(h))),
        HirKind::Alternation(subs) => alternate(subs.iter().map(info).collect()),
    }
}

fn concat(x: Info, y: Info) -> Info {
    if let (Some(ex), Some(ey)) = (&x.exact, &y.exact)
        && ex.len() * ey.len() <= MAX_SET
    {
        return Info::exact(cross(ex, ey));
    }
    let (xs, yp) = (x.suffix_set(), y.prefix_set());
    let mut q = x.full().and(y.full());
    let tail = Info::inexact(Set::new(), xs.clone(), Q::All).suffix;
    let head = Info::inexact(yp.clone(), Set::new(), Q::All).prefix;
    if tail.len() * head.len() <= MAX_SET {
        q = q.and(trigrams(&cross(&tail, &head)));
    }
    let prefix = match x.exact {
        Some(ex) if ex.len() * yp.len() <= MAX_SET => cross(&ex, &yp),
        Some(ex) => ex,
        None => x.prefix,
    };
    let suffix = match y.exact {
        Some(ey) if xs.len() * ey.len() <= MAX_SET => cross(&xs, &ey),
        Some(ey) => ey,
        None => y.suffix,
    };
    Info::inexact(prefix, suffix, q)
}

fn alternate(infos: Vec<Info>) -> Info {
    let exact: Option<Set> = infos.iter().try_fold(Set::new(), |mut all, i| {
        all.extend(i.exact.clone()?);
        Some(all)
    });
    if let Some(set) = exact.filter(|s| s.len() <= MAX_SET) {
        return Info::exact(set);
    }
    let (mut prefix, mut suffix) = (Set::new(), Set::new());
    for i in &infos {
        prefix.extend(i.prefix_set());
        suffix.extend(i.suffix_set());
    }
    Info::inexact(prefix, suffix, Q::or_all(infos.iter().map(Info::full)))
}

/// The characters of a small class as folded strings; None when too many.
fn class_strings(class: &Class) -> Option<Set> {
    match class {
        Class::Unicode(c) => {
            let count: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            (count <= MAX_CLASS_CHARS).then(|| {
                c.iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(|ch| {
                        let mut buf = [0; 4];
                        ch.encode_utf8(&mut buf).bytes().map(fold).collect()
                    })
                    .collect()
            })
        }
        Class::Bytes(c) => {
            let count: u32 = c
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            (count <= MAX_CLASS_CHARS).then(|| {
                c.iter()
                    .flat_map(|r| r.start()..=r.end())
                    .map(|b| vec![fold(b)])
                    .collect()
            })
        }
    }
}

/// Whether some match of `hir` can contain a `\n`.
fn can_match_newline(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => lit.0.contains(&b'\n'),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        HirKind::Class(Class::Bytes(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
        HirKind::Capture(cap) => can_match_newline(&cap.sub),
        HirKind::Repetition(rep) => can_match_newline(&rep.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().any(can_match_newline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tri(s: &str) -> Q {
        let b = s.as_bytes();
        Q::Tri(trigram(b[0], b[1], b[2]))
    }

    #[test]
    fn literal_gives_and_of_its_trigrams() {
        let a = analyse("hello", true);
        let Q::And(mut parts) = a.q else {
            panic!("{:?}", a.q)
        };
        parts.sort_by_key(|q| format!("{q:?}"));
        let mut want = vec![tri("hel"), tri("ell"), tri("llo")];
        want.sort_by_key(|q| format!("{q:?}"));
        assert_eq!(parts, want);
        assert!(!a.spans_lines);
        assert_eq!(analyse("HeLLo", false).q, analyse("hello", true).q);
    }

    #[test]
    fn alternation_is_or_and_small_classes_expand() {
        assert_eq!(
            analyse("abc|xyz", true).q,
            Q::Or(vec![tri("abc"), tri("xyz")])
        );
        let hex = analyse("0x[0-9a-f]", true).q;
        assert!(matches!(&hex, Q::Or(v) if v.len() == 16), "{hex:?}");
        assert_eq!(analyse("^fn ", true).q, tri("fn "));
    }

    #[test]
    fn no_literal_gives_no_constraint() {
        assert_eq!(analyse("[a-z]+_[0-9]{3}", true).q, Q::All);
        assert_eq!(analyse("a*", true).q, Q::All);
        assert_eq!(analyse("", true).q, Q::All);
        assert_eq!(analyse("ab", true).q, Q::All);
    }

    #[test]
    fn repetitions_and_boundaries_keep_what_is_certain() {
        // "foo" is required, and "o+b" straddles into "ob" + the next bytes.
        let q = analyse("foo+bar", true).q;
        let Q::And(parts) = &q else { panic!("{q:?}") };
        assert!(
            parts.contains(&tri("foo")) && parts.contains(&tri("bar")),
            "{q:?}"
        );
        assert!(parts.contains(&tri("oba")), "{q:?}");
    }

    #[test]
    fn newlines_are_detected() {
        assert!(analyse(r"foo\nbar", true).spans_lines);
        assert!(analyse(r"foo\s+bar", true).spans_lines);
        assert!(analyse(r"(?s)a.b", true).spans_lines);
        assert!(!analyse(r"a.b", true).spans_lines);
        assert!(!analyse(r"^fn\b", true).spans_lines);
    }

    #[test]
    fn case_insensitive_unicode_keeps_all_variants() {
        // (?i)k also matches the Kelvin sign: both spellings are alternatives.
        let q = analyse("kelvin", false).q;
        assert!(matches!(&q, Q::Or(_)) || matches!(&q, Q::And(_)), "{q:?}");
        assert_ne!(q, Q::All);
    }

    #[test]
    fn case_variants_share_their_common_trigrams() {
        // (?i)s also matches ſ: 4 variants of this word, which share most trigrams.
        let q = analyse("strict_hash_verification", false).q;
        let Q::And(parts) = &q else { panic!("{q:?}") };
        for t in ["tri", "_ha", "ver", "tio"] {
            assert!(parts.contains(&tri(t)), "{t}: {q:?}");
        }
        // Even 2^7 variants (s and k) keep their shared trigrams.
        assert_ne!(analyse("stacks_kiosks", false).q, Q::All);
    }

    #[test]
    fn huge_alternations_are_pruned() {
        let words: Vec<String> = (0..2000).map(|i| format!("word{i:05}")).collect();
        let q = analyse(&words.join("|"), true).q;
        assert!(q.leaves() <= MAX_LEAVES);
    }
}
