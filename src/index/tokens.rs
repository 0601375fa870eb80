//! Turning file bytes into index terms: distinct case-folded trigrams, and word tokens
//! (identifiers split on case changes and `_`) through a tantivy tokenizer.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Name under which [`CodeTokenizer`] is registered in every shard's index.
pub(crate) const CODE_TOKENIZER: &str = "code";

/// Word tokens longer than this are not indexed (hashes, base64 blobs).
const MAX_WORD_BYTES: usize = 64;

/// ASCII case folding of one byte; other bytes are kept as they are.
pub(crate) const fn fold(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

/// A trigram as a 24-bit number: three folded bytes, big-endian.
pub(crate) fn trigram(a: u8, b: u8, c: u8) -> u32 {
    (u32::from(fold(a)) << 16) | (u32::from(fold(b)) << 8) | u32::from(fold(c))
}

/// Collects the distinct folded trigrams of files; reuses one 2 MiB bitmap between files.
pub(crate) struct TrigramSet {
    seen: Vec<u64>,
}

impl TrigramSet {
    /// An empty set with room for every 24-bit trigram.
    pub(crate) fn new() -> Self {
        TrigramSet {
            seen: vec![0; (1 << 24) / 64],
        }
    }

    /// The distinct trigrams of `content`, in first-seen order.
    pub(crate) fn distinct(&mut self, content: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut t: u32 = 0;
        for (i, &b) in content.iter().enumerate() {
            t = ((t << 8) | u32::from(fold(b))) & 0x00FF_FFFF;
            if i < 2 {
                continue;
            }
            let (word, bit) = ((t >> 6) as usize, 1u64 << (t & 63));
            if self.seen[word] & bit == 0 {
                self.seen[word] |= bit;
                out.push(t);
            }
        }
        for &t in &out {
            self.seen[(t >> 6) as usize] = 0;
        }
        out
    }
}

/// Byte ranges of the words in `text`: runs of letters and digits, split where case
/// changes (`parseHttpRequest` → parse, Http, Request; `HTTPServer` → HTTP, Server).
/// Single characters and over-long runs are left out.
pub(crate) fn word_ranges(text: &str) -> Vec<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Upper,
        Lower,
        Digit,
    }
    fn kind(c: char) -> Option<Kind> {
        if c.is_ascii_digit() {
            Some(Kind::Digit)
        } else if c.is_uppercase() {
            Some(Kind::Upper)
        } else if c.is_alphanumeric() {
            Some(Kind::Lower)
        } else {
            None
        }
    }
    let mut out = Vec::new();
    let mut push = |s: usize, e: usize| {
        let len = e - s;
        if len <= MAX_WORD_BYTES && text[s..e].chars().nth(1).is_some() {
            out.push((s, e));
        }
    };
    let mut start: Option<usize> = None;
    let mut prev: Option<(usize, Kind)> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let Some(k) = kind(c) else {
            if let Some(s) = start.take() {
                push(s, i);
            }
            prev = None;
            continue;
        };
        if let (Some(s), Some((_, pk))) = (start, prev) {
            let next_lower = chars.peek().and_then(|&(_, n)| kind(n)) == Some(Kind::Lower);
            // lower→Upper starts a word (parseHttp); in UPPERUpperlower the last upper
            // starts one (HTTPServer → HTTP, Server).
            let split = (k == Kind::Upper && pk != Kind::Upper)
                || (k == Kind::Upper && pk == Kind::Upper && next_lower);
            if split {
                push(s, i);
                start = Some(i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
        prev = Some((i, k));
    }
    if let Some(s) = start {
        push(s, text.len());
    }
    out
}

/// The lower-cased words of `text` (the same words the index holds).
pub(crate) fn words(text: &str) -> Vec<String> {
    word_ranges(text)
        .into_iter()
        .map(|(s, e)| text[s..e].to_lowercase())
        .collect()
}

/// tantivy tokenizer producing [`word_ranges`], lower-cased.
#[derive(Clone, Default)]
pub(crate) struct CodeTokenizer {
    token: Token,
}

/// Token stream of [`CodeTokenizer`].
pub(crate) struct CodeTokenStream<'a> {
    text: &'a str,
    ranges: std::vec::IntoIter<(usize, usize)>,
    position: usize,
    token: &'a mut Token,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream<'a> {
        self.token.reset();
        CodeTokenStream {
            text,
            ranges: word_ranges(text).into_iter(),
            position: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let Some((s, e)) = self.ranges.next() else {
            return false;
        };
        self.token.offset_from = s;
        self.token.offset_to = e;
        self.token.position = self.position;
        self.position += 1;
        self.token.text.clear();
        let word = &self.text[s..e];
        if word.is_ascii() {
            self.token.text.push_str(word);
            self.token.text.make_ascii_lowercase();
        } else {
            self.token
                .text
                .extend(word.chars().flat_map(char::to_lowercase));
        }
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_identifiers_on_case_and_underscore() {
        assert_eq!(words("parseHttpRequest"), ["parse", "http", "request"]);
        assert_eq!(words("MAX_SIZE = 10"), ["max", "size", "10"]);
        assert_eq!(
            words("HTTPServer utf8Decode"),
            ["http", "server", "utf8", "decode"]
        );
        assert_eq!(words("x = größe_Wert"), ["größe", "wert"]);
    }

    #[test]
    fn trigrams_are_distinct_and_folded() {
        let mut set = TrigramSet::new();
        let t = set.distinct(b"abcABCabc");
        assert_eq!(t.len(), 3, "abc, bca, cab once each");
        assert!(t.contains(&trigram(b'a', b'b', b'c')));
        assert_eq!(set.distinct(b"ab"), Vec::<u32>::new());
        assert_eq!(set.distinct(b"abc"), vec![trigram(b'A', b'B', b'C')]);
    }
}
