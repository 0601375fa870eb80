//! Answers that fit: a text builder that stops at the ceiling on a line boundary, and the
//! opaque cursors that continue exactly where an answer stopped.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

/// Bytes kept free under the ceiling for the closing note (cut, cursor, how to go on).
const NOTE_RESERVE: usize = 700;

/// An answer under construction, never longer than its ceiling.
pub struct Answer {
    text: String,
    limit: usize,
    lines: usize,
}

impl Answer {
    /// An empty answer whose body may grow to `ceiling` less room for the closing note.
    pub fn new(ceiling: usize) -> Answer {
        Answer {
            text: String::new(),
            limit: ceiling.saturating_sub(NOTE_RESERVE).max(NOTE_RESERVE),
            lines: 0,
        }
    }

    /// Appends `text` if it fits under the ceiling — or if nothing was added yet, so every
    /// answer makes progress. False when it did not fit (nothing was added).
    pub fn add(&mut self, text: &str) -> bool {
        if self.lines > 0 && self.text.len() + text.len() > self.limit {
            return false;
        }
        self.text.push_str(text);
        self.lines += 1;
        true
    }

    /// Whether `bytes` more would still fit.
    pub fn fits(&self, bytes: usize) -> bool {
        self.lines == 0 || self.text.len() + bytes <= self.limit
    }

    /// Appends text that must be there whatever the size (headers, the closing note).
    pub fn always(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// A cursor: `T` as base64url JSON. Opaque to clients; they pass it back unchanged.
pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// The cursor a client passed back, if it is one of ours.
pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Option<T> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// A short fingerprint of `parts`, so a cursor is refused with arguments it was not made for.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` cut to at most `max` bytes on a character boundary, with a note of what was left.
pub fn cut_line(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!(
        "{}… [{} more bytes on this line]",
        &text[..at],
        text.len() - at
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_ceiling_but_always_says_something() {
        let mut a = Answer::new(1000);
        assert!(a.add(&"x".repeat(5000)), "the first line always goes in");
        assert!(!a.add("y"));
        let mut a = Answer::new(1000);
        assert!(a.add("a\n"));
        assert!(!a.add(&"b".repeat(800)));
        assert!(a.add("c\n"));
        assert_eq!(a.finish(), "a\nc\n");
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = encode_cursor(&(3u32, "x"));
        assert_eq!(decode_cursor::<(u32, String)>(&c), Some((3, "x".into())));
        assert_eq!(decode_cursor::<(u32, String)>("nonsense!"), None);
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(cut_line("ééé", 3), "é… [4 more bytes on this line]");
    }
}
