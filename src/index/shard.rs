//! An open shard: the tantivy reader, the content file and every file's metadata in memory
//! (path, language, where its bytes are), plus candidate selection through the trigrams.

use std::path::Path;
use std::sync::Arc;

use tantivy::postings::TermInfo;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{
    DocSet, Index, IndexReader, InvertedIndexReader, ReloadPolicy, Searcher, SegmentReader,
    TERMINATED, Term,
};

use super::IndexError;
use super::content::{ContentCache, ContentReader};
use super::prepare::PreparedQuery;
use super::schema::{self, CONTENT_FILE, Fields, INDEX_DIR, LANG, OFFSET, PATH, SIZE, STORED};
use super::symbols::SymbolTable;
use super::trigram_query::Q;

/// An open shard (reader). Cheap to share across threads (Send + Sync).
pub struct Shard {
    pub(super) searcher: Searcher,
    _reader: IndexReader,
    pub(super) fields: Fields,
    pub(super) content: ContentReader,
    /// Per document, by global ordinal (segment base + doc id).
    pub(super) docs: Vec<DocMeta>,
    /// First global ordinal of each segment.
    pub(super) bases: Vec<u32>,
    /// Distinct language names; `DocMeta::lang` indexes this.
    pub(super) langs: Vec<String>,
    /// Global ordinals sorted by path.
    by_path: Vec<u32>,
    /// The definitions of the files (empty for a shard built before symbols).
    pub(super) symbols: SymbolTable,
    /// Global ordinals in static rank order (likely best files first), and each
    /// ordinal's position in it: a search that stops early has looked at the best.
    pub(super) by_rank: Vec<u32>,
    pub(super) rank_of: Vec<u32>,
    /// Per segment: its trigram postings, and which trigrams it has at all.
    trigrams: Vec<(Arc<InvertedIndexReader>, TrigramFilter)>,
}

/// Which trigrams a segment holds, as a Bloom filter built when the shard opens: most
/// shards lack some trigram of a selective query, and this says so in nanoseconds where a
/// term dictionary lookup takes a microsecond (hundreds of shards per query).
struct TrigramFilter {
    bits: Vec<u64>,
    mask: u64,
}

impl TrigramFilter {
    /// Bits per trigram: with 3 probes about 0.5 % of absent trigrams pass.
    const BITS_PER_TRIGRAM: usize = 16;

    fn new(trigrams: &[u32]) -> TrigramFilter {
        let bits = (trigrams.len() * Self::BITS_PER_TRIGRAM)
            .next_power_of_two()
            .max(64);
        let mut filter = TrigramFilter {
            bits: vec![0; bits / 64],
            mask: bits as u64 - 1,
        };
        for &t in trigrams {
            for bit in filter.probes(t) {
                filter.bits[(bit >> 6) as usize] |= 1 << (bit & 63);
            }
        }
        filter
    }

    fn probes(&self, trigram: u32) -> [u64; 3] {
        let h = u64::from(trigram).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        [h & self.mask, (h >> 21) & self.mask, (h >> 42) & self.mask]
    }

    /// False means the segment certainly lacks `trigram`.
    fn may_contain(&self, trigram: u32) -> bool {
        self.probes(trigram)
            .iter()
            .all(|&bit| self.bits[(bit >> 6) as usize] & (1 << (bit & 63)) != 0)
    }
}

/// The trigram terms of one segment's dictionary.
fn segment_trigrams(index: &InvertedIndexReader) -> Result<Vec<u32>, IndexError> {
    let mut out = Vec::with_capacity(index.terms().num_terms());
    let mut stream = index.terms().stream()?;
    while stream.advance() {
        let key: [u8; 8] = stream
            .key()
            .try_into()
            .map_err(|_| corrupt("a trigram term is not 8 bytes"))?;
        out.push(u64::from_be_bytes(key) as u32);
    }
    Ok(out)
}

/// What the shard knows about one file without reading it.
#[derive(Debug)]
pub(super) struct DocMeta {
    pub path: String,
    pub lang: u16,
    /// (offset, stored length, size) in `content.bin`.
    pub address: (u64, u64, u64),
}

impl Shard {
    /// Opens the shard in `dir` (as written by [`build_shard`](super::build_shard)).
    pub fn open(dir: &Path) -> Result<Shard, IndexError> {
        Shard::open_with(dir, None)
    }

    /// Opens the shard in `dir`, keeping the files it decodes in `cache`.
    pub fn open_cached(dir: &Path, cache: Arc<ContentCache>) -> Result<Shard, IndexError> {
        Shard::open_with(dir, Some(cache))
    }

    fn open_with(dir: &Path, cache: Option<Arc<ContentCache>>) -> Result<Shard, IndexError> {
        let mut index = Index::open_in_dir(dir.join(INDEX_DIR))?;
        index.set_tokenizers(schema::tokenizers());
        let fields = Fields::from_schema(&index.schema())?;
        // A built shard never changes: no file watcher, no reloads.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let content = ContentReader::open(&dir.join(CONTENT_FILE), cache)?;
        let (mut docs, mut bases, mut langs) = (Vec::new(), Vec::new(), Vec::<String>::new());
        let mut trigrams = Vec::new();
        for segment in searcher.segment_readers() {
            bases.push(u32::try_from(docs.len()).map_err(|_| corrupt("too many documents"))?);
            load_segment(segment, &mut docs, &mut langs)?;
            let index = segment.inverted_index(fields.trigrams)?;
            let present = TrigramFilter::new(&segment_trigrams(&index)?);
            trigrams.push((index, present));
        }
        let mut by_path: Vec<u32> = (0..docs.len() as u32).collect();
        by_path.sort_unstable_by(|&a, &b| docs[a as usize].path.cmp(&docs[b as usize].path));
        let symbols = SymbolTable::load(dir, |path| {
            by_path
                .binary_search_by(|&d| docs[d as usize].path.as_str().cmp(path))
                .ok()
                .map(|i| by_path[i])
        })?;
        let mut by_rank = by_path.clone();
        by_rank.sort_by_cached_key(|&d| static_rank(&docs[d as usize], &langs));
        let mut rank_of = vec![0u32; docs.len()];
        for (position, &d) in by_rank.iter().enumerate() {
            rank_of[d as usize] = position as u32;
        }
        Ok(Shard {
            symbols,
            searcher,
            _reader: reader,
            fields,
            content,
            docs,
            bases,
            langs,
            by_path,
            by_rank,
            rank_of,
            trigrams,
        })
    }

    /// The document ordinal of a path, if the file is in the shard.
    pub(super) fn doc_of(&self, path: &str) -> Option<u32> {
        self.by_path
            .binary_search_by(|&d| self.docs[d as usize].path.as_str().cmp(path))
            .ok()
            .map(|i| self.by_path[i])
    }

    /// The whole content of one file at the indexed commit; None if not in the shard.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(d) = self.doc_of(path) else {
            return Ok(None);
        };
        Ok(Some(
            self.content.read(self.docs[d as usize].address)?.to_vec(),
        ))
    }

    /// Every indexed file: (path, language, size in bytes), sorted by path.
    pub fn list_files(&self) -> Result<Vec<(String, String, u64)>, IndexError> {
        Ok(self
            .by_path
            .iter()
            .map(|&d| {
                let doc = &self.docs[d as usize];
                (doc.path.clone(), self.lang(doc).to_owned(), doc.address.2)
            })
            .collect())
    }

    /// Number of files in the shard.
    pub fn num_files(&self) -> usize {
        self.docs.len()
    }

    pub(super) fn lang(&self, doc: &DocMeta) -> &str {
        self.langs
            .get(usize::from(doc.lang))
            .map_or("", String::as_str)
    }

    /// Global ordinals of the files holding the trigrams `q` asks for, ascending;
    /// None means every file.
    pub(super) fn candidates(&self, q: &Q) -> Result<Option<Vec<u32>>, IndexError> {
        if *q == Q::All {
            return Ok(None);
        }
        let mut out = Vec::new();
        let segments = self.searcher.segment_readers().iter().zip(&self.trigrams);
        for ((segment, (index, present)), &base) in segments.zip(&self.bases) {
            let trigrams = Trigrams {
                index,
                present,
                field: self.fields.trigrams,
                max_doc: segment.max_doc(),
            };
            out.extend(trigrams.docs(q)?.into_iter().map(|d| base + d));
        }
        Ok(Some(out))
    }

    /// How many files the trigram index proposes for `query`, before verification (a
    /// measure of how well the query's literals prune).
    pub fn candidate_count(&self, query: &PreparedQuery) -> Result<usize, IndexError> {
        Ok(self
            .candidates(&query.q)?
            .map_or(self.docs.len(), |c| c.len()))
    }
}

/// A file's rank before any query, lower first: source in a known language before tests
/// and examples, before vendored or generated code, before files of no known language;
/// then shallower and shorter paths, then smaller files.
fn static_rank(doc: &DocMeta, langs: &[String]) -> (u8, usize, usize, u64) {
    let path = doc.path.to_ascii_lowercase();
    let known = langs
        .get(usize::from(doc.lang))
        .is_some_and(|l| !l.is_empty());
    let has = |parts: &[&str]| parts.iter().any(|p| path.contains(p));
    let class = if !known {
        3
    } else if has(&[
        "vendor/",
        "third_party/",
        "third-party/",
        "node_modules/",
        "generated",
        ".min.",
    ]) {
        2
    } else if has(&["test", "example", "bench", "fixture", "mock"]) {
        1
    } else {
        0
    };
    (class, path.matches('/').count(), path.len(), doc.address.2)
}

fn corrupt(what: &str) -> IndexError {
    IndexError::Corrupt(what.to_owned())
}

/// Reads one segment's fast fields into `docs`.
fn load_segment(
    segment: &SegmentReader,
    docs: &mut Vec<DocMeta>,
    langs: &mut Vec<String>,
) -> Result<(), IndexError> {
    let fast = segment.fast_fields();
    let strings =
        |name: &str| -> Result<(Vec<String>, tantivy::columnar::Column<u64>), IndexError> {
            let (dict, ords) = fast
                .str(name)?
                .ok_or_else(|| corrupt("string column missing"))?
                .into_parts();
            let mut terms = Vec::new();
            let mut stream = dict.stream()?;
            while stream.advance() {
                terms.push(String::from_utf8_lossy(stream.key()).into_owned());
            }
            Ok((terms, ords))
        };
    let (paths, path_ords) = strings(PATH)?;
    let (seg_langs, lang_ords) = strings(LANG)?;
    let lang_ids: Vec<u16> = seg_langs
        .into_iter()
        .map(|l| match langs.iter().position(|x| *x == l) {
            Some(i) => i as u16,
            None => {
                langs.push(l);
                (langs.len() - 1) as u16
            }
        })
        .collect();
    let (size, offset, stored) = (fast.u64(SIZE)?, fast.u64(OFFSET)?, fast.u64(STORED)?);
    for doc in 0..segment.max_doc() {
        let missing = || corrupt("document without path or address");
        let path = path_ords.first(doc).and_then(|o| paths.get(o as usize));
        let lang = lang_ords.first(doc).and_then(|o| lang_ids.get(o as usize));
        docs.push(DocMeta {
            path: path.ok_or_else(missing)?.clone(),
            lang: lang.copied().unwrap_or(u16::MAX),
            address: (
                offset.first(doc).ok_or_else(missing)?,
                stored.first(doc).ok_or_else(missing)?,
                size.first(doc).ok_or_else(missing)?,
            ),
        });
    }
    Ok(())
}

/// The tantivy query for a trigram condition.
/// One segment's trigram postings, read directly: a `TermQuery` per trigram would build a
/// BM25 weight for each even with scoring off, and that was a large part of a query's cost
/// over hundreds of shards.
struct Trigrams<'a> {
    index: &'a InvertedIndexReader,
    present: &'a TrigramFilter,
    field: Field,
    max_doc: u32,
}

impl Trigrams<'_> {
    /// The documents of the segment that `q` admits, ascending.
    fn docs(&self, q: &Q) -> Result<Vec<u32>, IndexError> {
        Ok(match q {
            Q::All => (0..self.max_doc).collect(),
            Q::Tri(t) => self.postings(*t)?,
            Q::And(parts) => {
                // A trigram the segment lacks settles it before any postings are read; then
                // the rarest parts first, so the running intersection stays small, and each
                // later trigram is only asked about the documents still in it.
                let absent = |part: &Q| matches!(part, Q::Tri(t) if !self.present.may_contain(*t));
                if parts.iter().any(absent) {
                    return Ok(Vec::new());
                }
                let mut sized = Vec::with_capacity(parts.len());
                for part in parts {
                    let info = match part {
                        Q::Tri(t) => match self.index.get_term_info(&self.term(*t))? {
                            Some(info) => Some(info),
                            None => return Ok(Vec::new()),
                        },
                        _ => None,
                    };
                    sized.push((info.as_ref().map_or(u32::MAX, |i| i.doc_freq), info, part));
                }
                sized.sort_by_key(|(size, ..)| *size);
                let mut result: Option<Vec<u32>> = None;
                for (_, info, part) in sized {
                    let kept = match (result, info) {
                        (Some(so_far), Some(info)) => self.keep(&info, Some(&so_far))?,
                        (None, Some(info)) => self.keep(&info, None)?,
                        (Some(so_far), None) => intersect(&so_far, &self.docs(part)?),
                        (None, None) => self.docs(part)?,
                    };
                    if kept.is_empty() {
                        return Ok(kept);
                    }
                    result = Some(kept);
                }
                result.unwrap_or_else(|| (0..self.max_doc).collect())
            }
            Q::Or(parts) => {
                let mut all = Vec::new();
                for part in parts {
                    all.extend(self.docs(part)?);
                }
                all.sort_unstable();
                all.dedup();
                all
            }
        })
    }

    fn term(&self, trigram: u32) -> Term {
        Term::from_field_u64(self.field, u64::from(trigram))
    }

    fn postings(&self, trigram: u32) -> Result<Vec<u32>, IndexError> {
        if !self.present.may_contain(trigram) {
            return Ok(Vec::new());
        }
        match self.index.get_term_info(&self.term(trigram))? {
            Some(info) => self.keep(&info, None),
            None => Ok(Vec::new()),
        }
    }

    /// The documents of a term's postings, all of them or those also in `within`
    /// (ascending; found by skipping through the postings, not reading all of them).
    fn keep(&self, info: &TermInfo, within: Option<&[u32]>) -> Result<Vec<u32>, IndexError> {
        let mut postings = self
            .index
            .read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
        let mut docs = Vec::new();
        match within {
            Some(within) => {
                for &d in within {
                    let mut at = postings.doc();
                    // `seek` may only move forward.
                    if at < d {
                        at = postings.seek(d);
                    }
                    if at == TERMINATED {
                        break;
                    }
                    if at == d {
                        docs.push(d);
                    }
                }
            }
            None => {
                docs.reserve(postings.doc_freq() as usize);
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    docs.push(doc);
                    doc = postings.advance();
                }
            }
        }
        Ok(docs)
    }
}

/// The values in both ascending lists.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::TrigramFilter;

    /// The filter may only err towards "maybe": every present trigram passes, and few
    /// absent ones do (so most shards lacking a query's trigram are skipped).
    #[test]
    fn trigram_filter_keeps_every_present_trigram_and_few_absent_ones() {
        let present: Vec<u32> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) & 0xFF_FFFF)
            .collect();
        let filter = TrigramFilter::new(&present);
        assert!(present.iter().all(|&t| filter.may_contain(t)));
        let set: std::collections::HashSet<u32> = present.iter().copied().collect();
        let absent: Vec<u32> = (0..0x100_0000u32)
            .step_by(97)
            .filter(|t| !set.contains(t))
            .take(20_000)
            .collect();
        let passed = absent.iter().filter(|&&t| filter.may_contain(t)).count();
        assert!(
            passed < absent.len() / 50,
            "{passed} of {} absent trigrams passed",
            absent.len()
        );
        assert!(passed < absent.len(), "the filter answers no for some");
        let empty = TrigramFilter::new(&[]);
        assert!(!empty.may_contain(0x61_62_63));
    }
}
