//! Lines of file content: splitting, and turning match offsets into [`LineMatch`]es with
//! lossy UTF-8 text and ranges that stay valid in that text.

use super::LineMatch;

/// Returned lines are cut to a window of about this many bytes around their first match
/// (minified files have lines of a megabyte); context lines to their start.
pub const MAX_LINE_BYTES: usize = 300;
/// Bytes of a cut line kept before its first match.
const LEAD_BYTES: usize = 80;
/// Marks where a line was cut.
const ELLIPSIS: &str = "…";

/// The lines of `content`, without their `\n` (a final `\n` does not start a new line).
pub(crate) fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(content);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = (i + 1 < r.len()).then(|| &r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Byte offsets where each line of `content` starts.
pub(crate) fn line_starts(content: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        memchr::memchr_iter(b'\n', content)
            .map(|i| i + 1)
            .filter(|&s| s < content.len()),
    );
    starts
}

/// A line's bytes without its `\n` (and `\r`), given the line starts.
fn line_at<'a>(content: &'a [u8], starts: &[usize], i: usize) -> &'a [u8] {
    let end = starts.get(i + 1).map_or(content.len(), |&s| s - 1);
    let line = &content[starts[i]..end.max(starts[i])];
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Builds the returned lines from matches given as (line index, start, end) with offsets
/// relative to the line start; returns at most `max_lines` lines and the count of all
/// matching lines. Lines in `definitions` (line indices, best first) are marked, and the
/// best of them are chosen before other lines, so a definition far down a file is not
/// crowded out by its uses.
pub(crate) fn line_matches(
    content: &[u8],
    starts: &[usize],
    mut hits: Vec<(usize, usize, usize)>,
    max_lines: usize,
    definitions: &[usize],
) -> (Vec<LineMatch>, usize) {
    hits.sort_unstable();
    // (line, merged ranges) of every matching line; only the chosen ones are cut out.
    let mut grouped: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    for (line, s, e) in hits {
        match grouped.last_mut() {
            Some((l, ranges)) if *l == line => match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            },
            _ => grouped.push((line, vec![(s, e)])),
        }
    }
    let count = grouped.len();
    let matching = |line: &usize| grouped.binary_search_by_key(line, |g| g.0).is_ok();
    // The best definitions that match get places first; the rest go in file order.
    let mut chosen: Vec<usize> = definitions
        .iter()
        .copied()
        .filter(matching)
        .take(max_lines)
        .collect();
    chosen.sort_unstable();
    let mut all_defs = definitions.to_vec();
    all_defs.sort_unstable();
    let mut others = max_lines - chosen.len();
    let mut out = Vec::new();
    for (line, ranges) in grouped {
        if chosen.binary_search(&line).is_err() {
            if others == 0 {
                continue;
            }
            others -= 1;
        }
        let definition = all_defs.binary_search(&line).is_ok();
        let bytes = line_at(content, starts, line);
        let (text, ranges) = cut_around_match(bytes, &ranges);
        out.push(LineMatch {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            text,
            ranges,
            before: line
                .checked_sub(1)
                .map(|b| context_line(line_at(content, starts, b))),
            after: (line + 1 < starts.len())
                .then(|| context_line(line_at(content, starts, line + 1))),
            definition,
        });
    }
    (out, count)
}

/// Every matching line (with its ranges) and `context` lines each side of it (without),
/// ascending and each line once: runs of matches closer than `2 × context` lines merge.
/// Matching lines are cut like search results, context lines from their start.
pub(crate) fn excerpt_lines(
    content: &[u8],
    starts: &[usize],
    mut hits: Vec<(usize, usize, usize)>,
    context: usize,
) -> Vec<ExcerptLine> {
    hits.sort_unstable();
    let mut out: Vec<ExcerptLine> = Vec::new();
    let mut next = 0; // the first line index not yet in `out`
    let mut i = 0;
    while i < hits.len() {
        let line = hits[i].0;
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        while i < hits.len() && hits[i].0 == line {
            let (_, s, e) = hits[i];
            match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
            i += 1;
        }
        for c in line.saturating_sub(context).max(next)..line {
            out.push(ExcerptLine::context(c, line_at(content, starts, c)));
        }
        let (text, ranges) = cut_around_match(line_at(content, starts, line), &ranges);
        out.push(ExcerptLine {
            line: number(line),
            text,
            ranges,
        });
        // Context after this line, up to the next match (which brings its own).
        let upcoming = hits.get(i).map_or(usize::MAX, |h| h.0);
        let last = (line + context).min(starts.len() - 1);
        for c in line + 1..=last {
            if c >= upcoming {
                break;
            }
            out.push(ExcerptLine::context(c, line_at(content, starts, c)));
        }
        next = out.last().map_or(0, |l| l.line as usize);
    }
    out
}

/// One line of an excerpt: its 1-based number, its text (cut), and where the query matched
/// in it (empty for a context line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExcerptLine {
    pub line: u32,
    pub text: String,
    pub ranges: Vec<(usize, usize)>,
}

impl ExcerptLine {
    fn context(index: usize, bytes: &[u8]) -> ExcerptLine {
        ExcerptLine {
            line: number(index),
            text: context_line(bytes),
            ranges: Vec::new(),
        }
    }

    /// Whether the query matched on this line (else it is context).
    pub fn is_match(&self) -> bool {
        !self.ranges.is_empty()
    }
}

fn number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// A matching line as text, cut to `MAX_LINE_BYTES` around its first match with an
/// ellipsis at each cut end; ranges move with the text and are clipped to the window.
pub(crate) fn cut_around_match(
    bytes: &[u8],
    ranges: &[(usize, usize)],
) -> (String, Vec<(usize, usize)>) {
    if bytes.len() <= MAX_LINE_BYTES {
        return lossy_with_ranges(bytes, ranges);
    }
    let first = ranges.first().map_or(0, |r| r.0).min(bytes.len());
    let start = first.saturating_sub(LEAD_BYTES);
    let end = (start + MAX_LINE_BYTES).min(bytes.len());
    let start = end.saturating_sub(MAX_LINE_BYTES).min(start);
    let window: Vec<(usize, usize)> = ranges
        .iter()
        .filter(|&&(s, e)| e > start && s < end)
        .map(|&(s, e)| (s.max(start) - start, e.min(end) - start))
        .collect();
    let (text, moved) = lossy_with_ranges(&bytes[start..end], &window);
    let lead = if start > 0 { ELLIPSIS } else { "" };
    let tail = if end < bytes.len() { ELLIPSIS } else { "" };
    let shift = lead.len();
    (
        format!("{lead}{text}{tail}"),
        moved
            .into_iter()
            .map(|(s, e)| (s + shift, e + shift))
            .collect(),
    )
}

/// A context line as text, cut to `MAX_LINE_BYTES` from its start.
fn context_line(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_LINE_BYTES {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!(
        "{}{ELLIPSIS}",
        String::from_utf8_lossy(&bytes[..MAX_LINE_BYTES])
    )
}

/// `bytes` as lossy UTF-8 and `ranges` moved onto the same characters in that text
/// (clipped to the text and widened to character boundaries; empty ones dropped).
fn lossy_with_ranges(bytes: &[u8], ranges: &[(usize, usize)]) -> (String, Vec<(usize, usize)>) {
    let (text, map) = match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => {
            // map[i] = offset in the text of original byte i.
            let mut text = String::with_capacity(bytes.len() + 8);
            let mut map = Vec::with_capacity(bytes.len() + 1);
            for chunk in bytes.utf8_chunks() {
                map.extend((0..chunk.valid().len()).map(|k| text.len() + k));
                text.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    map.extend(std::iter::repeat_n(text.len(), chunk.invalid().len()));
                    text.push(char::REPLACEMENT_CHARACTER);
                }
            }
            map.push(text.len());
            (text, Some(map))
        }
    };
    let moved = ranges
        .iter()
        .filter_map(|&(s, e)| {
            let (s, e) = (s.min(bytes.len()), e.min(bytes.len()));
            let (mut s, mut e) = match &map {
                None => (s, e),
                // An end inside an invalid sequence covers its replacement character.
                Some(m) => (
                    m[s],
                    if e > s && m[e] == m[e - 1] {
                        m[e] + 3
                    } else {
                        m[e]
                    },
                ),
            };
            e = e.min(text.len());
            while s > 0 && !text.is_char_boundary(s) {
                s -= 1;
            }
            while e < text.len() && !text.is_char_boundary(e) {
                e += 1;
            }
            (s < e).then_some((s, e))
        })
        .collect();
    (text, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_like_an_editor() {
        let l: Vec<&[u8]> = lines(b"a\nbb\n\nc\n").collect();
        assert_eq!(l, [&b"a"[..], b"bb", b"", b"c"]);
        assert_eq!(line_starts(b"a\nbb\n\nc\n"), [0, 2, 5, 6]);
        assert_eq!(lines(b"x").count(), 1);
    }

    #[test]
    fn ranges_survive_invalid_utf8() {
        let (text, r) = lossy_with_ranges(b"a\xffbc", &[(2, 4)]);
        assert_eq!(text, "a\u{fffd}bc");
        assert_eq!(&text[r[0].0..r[0].1], "bc");
        let (text, r) = lossy_with_ranges("größe".as_bytes(), &[(3, 4)]);
        assert_eq!(&text[r[0].0..r[0].1], "ö", "widened to the whole character");
    }

    #[test]
    fn long_lines_are_cut_around_the_match() {
        let mut line = vec![b'a'; 1_000_000];
        line[500_000..500_006].copy_from_slice(b"needle");
        let (text, ranges) = cut_around_match(&line, &[(500_000, 500_006)]);
        assert!(
            text.len() <= MAX_LINE_BYTES + 2 * ELLIPSIS.len(),
            "{}",
            text.len()
        );
        assert!(text.starts_with(ELLIPSIS) && text.ends_with(ELLIPSIS));
        assert_eq!(&text[ranges[0].0..ranges[0].1], "needle");
        // A match at the very start keeps the line's start and loses only its tail.
        let (text, ranges) = cut_around_match(&line[499_990..], &[(10, 16)]);
        assert!(!text.starts_with(ELLIPSIS) && text.ends_with(ELLIPSIS));
        assert_eq!(&text[ranges[0].0..ranges[0].1], "needle");
        // Multi-byte characters at the cut are not split.
        let wide = "é".repeat(400);
        let (text, _) = cut_around_match(wide.as_bytes(), &[(400, 402)]);
        assert!(text.len() < 400);
        // Context lines are cut too.
        assert!(context_line(&line).len() <= MAX_LINE_BYTES + ELLIPSIS.len());
    }

    #[test]
    fn excerpts_merge_close_matches_and_keep_each_line_once() {
        let content: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let content = content.as_bytes();
        let starts = line_starts(content);
        // Matches on lines 3, 6 and 20 (indices 2, 5, 19), two lines of context.
        let hits = vec![(5, 0, 4), (2, 0, 4), (19, 0, 4), (2, 5, 6)];
        let lines = excerpt_lines(content, &starts, hits, 2);
        let numbers: Vec<u32> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22]);
        let matched: Vec<u32> = lines
            .iter()
            .filter(|l| l.is_match())
            .map(|l| l.line)
            .collect();
        assert_eq!(matched, [3, 6, 20]);
        assert_eq!(lines[2].ranges, [(0, 4), (5, 6)]);
        assert_eq!(lines[0].text, "line 1");
        // At the end of the file the context stops at the last line.
        let lines = excerpt_lines(content, &starts, vec![(29, 0, 4)], 3);
        let numbers: Vec<u32> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [27, 28, 29, 30]);
        assert!(excerpt_lines(content, &starts, vec![(0, 0, 1)], 0).len() == 1);
    }

    #[test]
    fn builds_context_and_counts() {
        let content = b"one\r\ntwo foo\r\nthree foo foo\r\n";
        let starts = line_starts(content);
        let hits = vec![(1, 4, 7), (2, 6, 9), (2, 10, 13)];
        let (lines, count) = line_matches(content, &starts, hits, 1, &[]);
        assert_eq!(count, 2);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[0].text, "two foo");
        assert_eq!(lines[0].ranges, [(4, 7)]);
        assert_eq!(lines[0].before.as_deref(), Some("one"));
        assert_eq!(lines[0].after.as_deref(), Some("three foo foo"));
        assert!(!lines[0].definition);
        // A definition line wins the one place, and is marked.
        let hits = vec![(1, 4, 7), (2, 6, 9)];
        let (lines, count) = line_matches(content, &starts, hits, 1, &[2]);
        assert_eq!(count, 2);
        assert_eq!(lines[0].line, 3);
        assert!(lines[0].definition);
    }
}
