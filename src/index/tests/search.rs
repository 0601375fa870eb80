//! Search tests over the fixture shard: exact lines and ranges, skipped content, filters,
//! regexes, ranking, and candidate pruning.

use std::time::{Duration, Instant};

use super::{GENERATED, fixture};
use crate::index::{
    FileMatch, IndexError, PathFilter, Pattern, PreparedQuery, ShardQuery, ShardResult,
    language_aliases,
};

fn literal(word: &str, case_sensitive: bool) -> Pattern {
    Pattern {
        regex: regex::escape(word),
        case_sensitive,
        literal: true,
    }
}

fn regex(re: &str) -> Pattern {
    Pattern {
        regex: re.to_owned(),
        case_sensitive: true,
        literal: false,
    }
}

fn query(must: Vec<Pattern>) -> ShardQuery {
    ShardQuery {
        must,
        max_matches_per_file: 10,
        max_files: 0,
        ..ShardQuery::default()
    }
}

/// A query for case-insensitive words, as the search box sends them.
pub(super) fn words(w: &[&str]) -> ShardQuery {
    query(w.iter().map(|w| literal(w, false)).collect())
}

fn run(q: &ShardQuery) -> ShardResult {
    match fixture().shard.search(q) {
        Ok(r) => r,
        Err(e) => panic!("search failed: {e}"),
    }
}

fn paths(r: &ShardResult) -> Vec<&str> {
    let mut p: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    p.sort();
    p
}

fn file<'a>(r: &'a ShardResult, path: &str) -> &'a FileMatch {
    match r.files.iter().find(|f| f.path == path) {
        Some(f) => f,
        None => panic!("{path} not in {:?}", paths(r)),
    }
}

#[test]
fn literal_gives_exact_lines_and_ranges() {
    let r = run(&words(&["parse_http_request"]));
    assert_eq!(paths(&r), ["src/main.rs", "tools/script.py"]);
    assert_eq!(r.total_files, 2);
    let py = file(&r, "tools/script.py");
    assert_eq!(py.language, "python");
    assert_eq!(py.match_count, 1);
    let m = &py.matches[0];
    assert_eq!(
        (m.line, m.text.as_str()),
        (1, "def parse_http_request(data):")
    );
    assert_eq!(m.ranges, [(4, 22)]);
    assert_eq!(m.before, None);
    assert_eq!(m.after.as_deref(), Some("    return data"));
    let rs = file(&r, "src/main.rs");
    assert_eq!(rs.matches[0].line, 3);
    assert_eq!(rs.matches[0].ranges, [(19, 37)]);
}

#[test]
fn skipped_files_are_never_found() {
    // Each needle is in the object database (a binary blob, a large blob, the tree behind a
    // gitlink) or behind a symlink's target (/etc/passwd holds "root:x:0:0" on any Linux
    // machine), and none may be found.
    assert!(
        std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.contains("root:x:0:0")),
        "the symlink check needs /etc/passwd"
    );
    for needle in ["binaryneedle", "bigneedle", "root:x:0:0", "submoduleneedle"] {
        assert_eq!(run(&words(&[needle])).total_files, 0, "{needle}");
    }
    // The same search finds indexed text, so a zero above means "skipped", not "broken".
    assert_eq!(run(&words(&["zebraquokka"])).total_files, 1);
}

#[test]
fn symlinks_are_their_target_text() {
    let r = run(&words(&["/etc/passwd"]));
    assert_eq!(paths(&r), ["links/passwd"]);
    assert_eq!(file(&r, "links/passwd").language, "");
    assert_eq!(paths(&run(&words(&["../../secret"]))), ["links/secret"]);
}

#[test]
fn case_sensitivity() {
    let sensitive = run(&query(vec![literal("MAX_SIZE", true)]));
    assert_eq!(paths(&sensitive), ["tools/script.py"]);
    assert_eq!(file(&sensitive, "tools/script.py").match_count, 2);
    assert_eq!(run(&query(vec![literal("max_size", true)])).total_files, 0);
    let insensitive = run(&query(vec![literal("max_size", false)]));
    assert_eq!(paths(&insensitive), ["tools/script.py"]);
}

#[test]
fn regex_anchors_classes_and_alternation() {
    let r = run(&query(vec![regex("^fn ")]));
    assert_eq!(
        paths(&r),
        ["src/main.rs"],
        "pub fn in lib.rs does not start a line"
    );
    let lines: Vec<u32> = file(&r, "src/main.rs")
        .matches
        .iter()
        .map(|m| m.line)
        .collect();
    assert_eq!(lines, [1, 6]);

    let r = run(&query(vec![regex(r"helper_[0-9]+\(")]));
    assert_eq!(paths(&r), ["src/main.rs"]);
    assert_eq!(file(&r, "src/main.rs").matches[0].ranges, [(3, 14)]);

    let r = run(&query(vec![regex("zebraquokka|latin1needle")]));
    assert_eq!(paths(&r), ["gen/rare.txt", "latin1.txt"]);

    let r = run(&query(vec![regex(r"0x[0-9a-f]|crlf[n]eedle$")]));
    assert_eq!(paths(&r), ["crlf.txt"], "$ matches before \\r\\n");
    let m = &file(&r, "crlf.txt").matches[0];
    assert_eq!(
        (m.text.as_str(), m.ranges.as_slice()),
        ("second crlfneedle", &[(7, 17)][..])
    );
    assert_eq!(m.before.as_deref(), Some("first"));
}

#[test]
fn regex_without_literal_scans_everything() {
    let r = run(&query(vec![regex("[a-z]+_[0-9]{3}")]));
    assert_eq!(paths(&r), ["src/main.rs", "tools/script.py"]);
    let py = file(&r, "tools/script.py");
    assert_eq!(py.matches[0].line, 5);
    assert_eq!(py.matches[0].ranges, [(0, 9)]);

    // A pattern matching the empty string matches every file (and returns no lines).
    let r = run(&query(vec![regex("q*")]));
    assert_eq!(r.total_files, fixture().shard.num_files());
}

#[test]
fn multi_line_regex_reports_the_first_line() {
    let r = run(&query(vec![regex(r"fn main\(\) \{\n\s+let")]));
    assert_eq!(paths(&r), ["src/main.rs"]);
    let m = &file(&r, "src/main.rs").matches[0];
    assert_eq!((m.line, m.ranges.as_slice()), (1, &[(0, 11)][..]));
}

#[test]
fn every_must_pattern_has_to_match() {
    let r = run(&words(&["parse", "http", "request", "def"]));
    assert_eq!(paths(&r), ["tools/script.py"]);
    // Lines of every pattern are returned, ranges merged per line.
    let ranges = &file(&r, "tools/script.py").matches[0].ranges;
    assert_eq!(ranges, &[(0, 3), (4, 9), (10, 14), (15, 22)]);
}

#[test]
fn must_not_excludes_files() {
    let mut q = words(&["parse_http_request"]);
    q.must_not = vec![literal("def ", true)];
    assert_eq!(paths(&run(&q)), ["src/main.rs"]);
}

#[test]
fn path_filters() {
    let mut q = words(&["parse_http_request"]);
    q.path_include = vec![PathFilter::Substring("SRC/".into())];
    assert_eq!(paths(&run(&q)), ["src/main.rs"]);
    q.path_include = vec![PathFilter::Glob("*.py".into())];
    assert_eq!(paths(&run(&q)), ["tools/script.py"]);
    q.path_include = vec![PathFilter::Glob("src/**".into())];
    assert_eq!(paths(&run(&q)), ["src/main.rs"]);
    q.path_include = vec![];
    q.path_exclude = vec![PathFilter::Glob("tools/*".into())];
    assert_eq!(paths(&run(&q)), ["src/main.rs"]);

    // A path filter alone lists the files it selects.
    let mut q = query(vec![]);
    q.path_include = vec![PathFilter::Substring("links/".into())];
    let r = run(&q);
    assert_eq!(paths(&r), ["links/passwd", "links/secret"]);
    assert!(r.files.iter().all(|f| f.matches.is_empty()));
}

#[test]
fn language_filters() {
    let mut q = words(&["parse_http_request"]);
    q.languages = vec![language_aliases("py").unwrap_or_default().to_owned()];
    assert_eq!(paths(&run(&q)), ["tools/script.py"]);
    q.languages = vec![];
    q.exclude_languages = vec!["python".into()];
    assert_eq!(paths(&run(&q)), ["src/main.rs"]);
}

#[test]
fn unicode_and_invalid_utf8() {
    let r = run(&query(vec![literal("größe", true)]));
    assert_eq!(paths(&r), ["src/main.rs", "unicode.txt"]);
    let line = &file(&r, "unicode.txt").matches[0];
    let (s, e) = line.ranges[0];
    assert_eq!(&line.text[s..e], "größe");

    // Case-insensitive Unicode: "ärger" finds "ÄRGER", "🦀" is found byte for byte.
    assert_eq!(paths(&run(&words(&["ärger"]))), ["unicode.txt"]);
    assert_eq!(paths(&run(&words(&["🦀"]))), ["src/lib.rs", "unicode.txt"]);

    let r = run(&words(&["latin1needle"]));
    let m = &file(&r, "latin1.txt").matches[0];
    assert_eq!(m.text, "caf\u{fffd} au lait latin1needle");
    assert_eq!(&m.text[m.ranges[0].0..m.ranges[0].1], "latin1needle");
}

#[test]
fn invalid_regex_is_a_bad_pattern() {
    let result = fixture().shard.search(&query(vec![regex("foo(")]));
    assert!(matches!(result, Err(IndexError::BadPattern(m)) if m.contains("unclosed")));
    let mut q = words(&["x"]);
    q.path_include = vec![PathFilter::Glob("[".into())];
    assert!(
        matches!(fixture().shard.search(&q), Err(IndexError::BadPattern(_))),
        "an unclosed glob class is the user's error"
    );
    let mut q = words(&["common"]);
    q.path_include = vec![PathFilter::Glob("[rR]are.txt".into())];
    match fixture().shard.search(&q) {
        Ok(r) => assert_eq!(paths(&r), ["gen/rare.txt"]),
        Err(e) => panic!("a glob class should work: {e}"),
    }
}

#[test]
fn pathological_regexes_return_promptly() {
    for re in ["(a*)*b", "(x+x+)+y", "(a|aa)+$b", r"(\w+\s?)+z"] {
        let started = Instant::now();
        let r = run(&query(vec![regex(re)]));
        let found = paths(&r);
        assert!(
            !found.contains(&"aaaa.txt") && !found.contains(&"xxxx.txt"),
            "{re}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{re} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn lines_per_file_are_capped_but_counted() {
    let mut q = words(&["widget"]);
    q.max_matches_per_file = 1;
    let r = run(&q);
    let aaa = file(&r, "src/aaa.rs");
    assert_eq!((aaa.matches.len(), aaa.match_count), (1, 2));
    assert_eq!(aaa.matches[0].ranges, [(0, 6), (7, 13), (14, 20)]);
}

#[test]
fn ranking_prefers_path_then_whole_identifier() {
    let r = run(&words(&["widget"]));
    assert_eq!(r.files[0].path, "ui/widget_view.rs", "path match first");
    assert_eq!(r.files[1].path, "src/aaa.rs");
    assert!(r.files[0].score > r.files[1].score);

    // "request" stands alone only in lib.rs ("-> Request"); elsewhere it is part of
    // parse_http_request or ParseHttpRequest.
    let r = run(&words(&["request"]));
    assert_eq!(r.total_files, 4);
    assert_eq!(r.files[0].path, "src/lib.rs");
}

#[test]
fn max_files_cuts_after_ranking_and_counts_all() {
    let mut q = words(&["common"]);
    q.max_files = 3;
    let r = run(&q);
    assert_eq!(r.files.len(), 3);
    assert_eq!(r.total_files, GENERATED + 1);
    assert!(!r.truncated);
    assert!(r.files.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn trigram_candidates_prune() -> Result<(), IndexError> {
    let shard = &fixture().shard;
    let candidates = |q: &ShardQuery| shard.candidate_count(&PreparedQuery::new(q)?);
    assert!(shard.num_files() > GENERATED);
    assert_eq!(candidates(&words(&["zebraquokka"]))?, 1);
    assert_eq!(candidates(&words(&["ZebraQuokka"]))?, 1);
    assert_eq!(candidates(&query(vec![regex("zebra(quokka|xyz)")]))?, 1);
    assert_eq!(candidates(&words(&["zebraquokka", "common"]))?, 1);
    assert_eq!(candidates(&words(&["nosuchthing"]))?, 0);
    let all = candidates(&query(vec![regex("[a-z]+_[0-9]{3}")]))?;
    assert_eq!(
        all,
        shard.num_files(),
        "no trigram: every file is a candidate"
    );
    Ok(())
}

#[test]
fn a_search_may_stop_once_enough_files_matched() {
    let q = words(&["common"]);
    let prepared = PreparedQuery::new(&q).expect("prepares");
    let exact = fixture().shard.search_prepared(&prepared).expect("search");
    assert!(!exact.early);
    assert!(exact.total_files > 200, "{}", exact.total_files);

    let stop = crate::index::Stop::never().after_matches(10);
    let early = fixture()
        .shard
        .search_until(&prepared, &stop)
        .expect("search");
    assert!(early.early, "it stopped early");
    assert_eq!(
        early.total_files, 10,
        "a lower bound: exactly the files it needed"
    );
    // Every file it found is a real match, with its lines available afterwards.
    for f in &early.files {
        let (lines, count) = fixture().shard.lines(f.doc, &prepared, 5).expect("lines");
        assert!(
            count >= 1 && lines[0].text.to_lowercase().contains("common"),
            "{}",
            f.path
        );
    }
    // It looked at the best-ranked files first: shallow source files before the deep ones.
    let deepest = early
        .files
        .iter()
        .map(|f| f.path.matches('/').count())
        .max();
    let exact_deepest = exact
        .files
        .iter()
        .map(|f| f.path.matches('/').count())
        .max();
    assert!(deepest <= exact_deepest);
}

/// Files decoded once and kept in the shared cache give the same answers as files read
/// again; the cache keeps to its budget, and a shard's files leave it with the shard.
#[test]
fn cached_content_answers_alike_keeps_its_budget_and_leaves_with_its_shard()
-> Result<(), IndexError> {
    use crate::index::{ContentCache, Shard};
    use std::sync::Arc;

    let dir = fixture()._out.path().join("shard");
    let queries = [
        words(&["main"]),
        query(vec![regex(r"fn [a-z_]+\(")]),
        // Every file with a vowel: most of the fixture.
        query(vec![regex("[aeiou]")]),
    ];
    let cache = Arc::new(ContentCache::new(1 << 20));
    let cached = Shard::open_cached(&dir, cache.clone())?;
    for q in &queries {
        let fresh = format!("{:?}", run(q).files);
        // Twice: the second answer comes from the cache.
        assert_eq!(format!("{:?}", cached.search(q)?.files), fresh);
        assert_eq!(format!("{:?}", cached.search(q)?.files), fresh);
    }
    assert!(!run(&queries[0]).files.is_empty(), "the queries find files");
    let held = cache.bytes();
    assert!(held > 0, "decoded files were kept");
    drop(cached);
    assert_eq!(cache.bytes(), 0, "a closed shard's files leave the cache");

    // Half of what the queries decode: some files must go again.
    let budget = held / 2;
    let small = Arc::new(ContentCache::new(budget));
    let cached = Shard::open_cached(&dir, small.clone())?;
    for q in &queries {
        assert_eq!(
            format!("{:?}", cached.search(q)?.files),
            format!("{:?}", run(q).files)
        );
        assert!(
            small.bytes() <= budget,
            "{} of {budget} bytes held",
            small.bytes()
        );
    }
    assert!(
        small.bytes() > 0,
        "small files are kept under a small budget too"
    );
    Ok(())
}

/// An empty file is stored at the offset where the next file starts: the cache must not
/// hand one out for the other.
#[test]
fn a_cached_empty_file_never_stands_in_for_its_neighbour() -> Result<(), IndexError> {
    use super::{FILE, Node, build};
    use crate::index::{ContentCache, Limits, Shard};
    use std::sync::Arc;

    let built = build(
        &[
            Node::Blob("a_empty.txt", FILE, Vec::new()),
            Node::Blob("b_full.txt", FILE, b"the needle is here\n".to_vec()),
        ],
        &Limits::default(),
    )?;
    let dir = built._out.path().join("shard");
    let cache = Arc::new(ContentCache::new(1 << 20));
    let shard = Shard::open_cached(&dir, cache.clone())?;
    for _ in 0..2 {
        assert_eq!(shard.read_file("a_empty.txt")?, Some(Vec::new()));
        let found = shard.search(&query(vec![literal("needle", true)]))?;
        assert_eq!(paths(&found), ["b_full.txt"]);
        assert_eq!(
            shard.read_file("b_full.txt")?.as_deref(),
            Some(&b"the needle is here\n"[..])
        );
    }
    assert!(cache.bytes() > 0, "the files went through the cache");
    Ok(())
}
