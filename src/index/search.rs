//! Running a prepared query over one shard: take the trigram candidates, verify each with
//! the `regex` crate on its content, rank the matching files, and cut out their lines.

use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, Term};

use super::LineMatch;
use super::lines::{line_matches, line_starts};
use super::prepare::PreparedQuery;
use super::shard::Shard;
use super::{FileMatch, IndexError, ShardQuery, ShardResult, Stop};

/// Content bytes one search may hand to the regex engine before it stops early.
const MAX_SCAN_BYTES: u64 = 2 << 30;
/// Score added for a literal pattern matching the path, and for a whole-identifier match.
const PATH_BONUS: f32 = 2000.0;
const WORD_BONUS: f32 = 1000.0;
/// BM25 is capped below the word bonus so the tiers stay ordered.
const MAX_BM25: f32 = 899.0;

/// A verified file, before ranking.
struct Hit {
    doc: u32,
    path_match: bool,
    word_match: bool,
    score: f32,
    /// Symbols of this file the query names (`sym:` matches and defined words).
    defined: Vec<u32>,
}

impl Shard {
    /// Runs `query` over this shard: the matching files, ranked, with their lines.
    /// Searching many shards? Prepare the query once and use [`Shard::search_prepared`].
    pub fn search(&self, query: &ShardQuery) -> Result<ShardResult, IndexError> {
        self.search_prepared(&PreparedQuery::new(query)?)
    }

    /// Runs a prepared query over this shard.
    pub fn search_prepared(&self, query: &PreparedQuery) -> Result<ShardResult, IndexError> {
        self.search_until(query, &Stop::never())
    }

    /// Runs a prepared query over this shard until it is done or `stop` says so; a stopped
    /// search returns what it verified so far, marked `partial`.
    pub fn search_until(
        &self,
        query: &PreparedQuery,
        stop: &Stop,
    ) -> Result<ShardResult, IndexError> {
        let (must, must_not) = (&query.must, &query.must_not);
        let (mut partial, mut early) = (false, false);
        // `sym:` narrows the candidates to files defining a match, before any content is read.
        let mut sym_docs = (!query.symbols.is_empty()).then(|| self.symbol_docs(&query.symbols));
        let sym_excluded = self.symbol_excluded(&query.symbols_not);
        let mut identifier_defs = self.identifier_defs(&query.identifiers);
        let mut order = self.candidates(&query.q)?;
        if let Some(defining) = &sym_docs {
            order = Some(match order {
                Some(docs) => docs
                    .into_iter()
                    .filter(|d| defining.contains_key(d))
                    .collect(),
                None => defining.keys().copied().collect(),
            });
        }
        // A search that may stop early looks at the likely best files first: those that
        // define a searched identifier, then by static rank.
        let defines = |d: &u32| !identifier_defs.contains_key(d);
        let candidates: Box<dyn Iterator<Item = u32> + '_> = match order {
            Some(mut docs) if stop.counts_early() => {
                docs.sort_unstable_by_key(|&d| (defines(&d), self.rank_of[d as usize]));
                Box::new(docs.into_iter())
            }
            Some(docs) => Box::new(docs.into_iter()),
            None if stop.counts_early() && !identifier_defs.is_empty() => {
                let mut docs = self.by_rank.clone();
                docs.sort_by_key(defines);
                Box::new(docs.into_iter())
            }
            None if stop.counts_early() => Box::new(self.by_rank.iter().copied()),
            None => Box::new(0..self.docs.len() as u32),
        };
        let mut scanned = 0u64;
        let mut truncated = false;
        let mut hits = Vec::new();
        for (n, d) in candidates.enumerate() {
            if n % 64 == 63 && stop.reached() {
                partial = true;
                break;
            }
            if stop.has_enough() {
                early = true;
                break;
            }
            let doc = &self.docs[d as usize];
            let path = doc.path.as_str();
            if !query.accepts(path, self.lang(doc)) || sym_excluded.contains(&d) {
                continue;
            }
            let mut defined = sym_docs
                .as_mut()
                .and_then(|m| m.remove(&d))
                .unwrap_or_default();
            defined.extend(identifier_defs.remove(&d).unwrap_or_default());
            let mut hit = Hit {
                doc: d,
                path_match: false,
                word_match: false,
                score: 0.0,
                defined,
            };
            if !must.is_empty() || !must_not.is_empty() {
                if scanned > MAX_SCAN_BYTES {
                    truncated = true;
                    break;
                }
                let content = self.content.read(doc.address)?;
                scanned += content.len() as u64 * (must.len() + must_not.len()) as u64;
                if !must.iter().all(|m| m.matcher.is_match(&content))
                    || must_not.iter().any(|m| m.is_match(&content))
                {
                    continue;
                }
                hit.path_match = must
                    .iter()
                    .any(|m| m.literal && m.matcher.regex.is_match(path.as_bytes()));
                hit.word_match = must
                    .iter()
                    .any(|m| m.whole_word.as_ref().is_some_and(|w| w.is_match(&content)));
            }
            hits.push(hit);
            stop.found_enough();
        }

        let total_files = hits.len();
        let mut languages = std::collections::BTreeMap::<&str, usize>::new();
        for hit in &hits {
            *languages
                .entry(self.lang(&self.docs[hit.doc as usize]))
                .or_default() += 1;
        }
        let languages = languages
            .into_iter()
            .map(|(l, n)| (l.to_owned(), n))
            .collect();
        let bm25 = self.bm25(&hits, &query.words)?;
        for (hit, bm25) in hits.iter_mut().zip(bm25) {
            let path_len = self.docs[hit.doc as usize].path.len() as f32;
            let exact = |name: &str| {
                query.symbols.iter().any(|m| m.exact(name))
                    || query.identifiers.iter().any(|(w, cs)| {
                        if *cs {
                            w == name
                        } else {
                            w.eq_ignore_ascii_case(name)
                        }
                    })
            };
            hit.score = self.definition_bonus(&hit.defined, exact)
                + if hit.path_match { PATH_BONUS } else { 0.0 }
                + if hit.word_match { WORD_BONUS } else { 0.0 }
                + bm25.min(MAX_BM25)
                + 0.99 / (1.0 + path_len);
        }
        hits.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then_with(|| {
                self.docs[a.doc as usize]
                    .path
                    .cmp(&self.docs[b.doc as usize].path)
            })
        });
        if query.max_files > 0 {
            hits.truncate(query.max_files);
        }

        let mut files = Vec::with_capacity(hits.len());
        for hit in hits {
            let doc = &self.docs[hit.doc as usize];
            let (mut matches, mut match_count) = (Vec::new(), 0);
            // Past the stop, the files found keep their place but not their lines.
            let wants_lines =
                (!must.is_empty() || !query.symbols.is_empty()) && query.max_matches_per_file > 0;
            let stopped = wants_lines && stop.reached();
            partial |= stopped;
            if wants_lines && !stopped {
                (matches, match_count) =
                    self.lines_of(hit.doc, query, query.max_matches_per_file)?;
            }
            files.push(FileMatch {
                doc: hit.doc,
                path: doc.path.clone(),
                language: self.lang(doc).to_owned(),
                score: hit.score,
                matches,
                match_count,
            });
        }
        Ok(ShardResult {
            files,
            total_files,
            truncated,
            partial,
            languages,
            early,
        })
    }

    /// The matching lines of one file a search of this shard found (`doc` from its
    /// [`FileMatch`]): at most `max_lines`, and the count of all.
    pub fn lines(
        &self,
        doc: u32,
        query: &PreparedQuery,
        max_lines: usize,
    ) -> Result<(Vec<LineMatch>, usize), IndexError> {
        if doc as usize >= self.docs.len() {
            return Err(IndexError::Corrupt(format!("no document {doc}")));
        }
        self.lines_of(doc, query, max_lines)
    }

    fn lines_of(
        &self,
        doc: u32,
        query: &PreparedQuery,
        max_lines: usize,
    ) -> Result<(Vec<LineMatch>, usize), IndexError> {
        let content = self.content.read(self.docs[doc as usize].address)?;
        let content = &content[..];
        let starts = line_starts(content);
        let mut found = Vec::new();
        for m in &query.must {
            m.matcher.hits(content, &starts, &mut found);
        }
        let defined = self.defined_in(doc, query);
        let mut definitions = Vec::with_capacity(defined.len());
        for &i in &defined {
            let span = self.symbol_span(i);
            definitions.push(span.0);
            // A `sym:` match is itself a hit: its name is what the line shows.
            if !query.symbols.is_empty() && span.0 < starts.len() {
                found.push(span);
            }
        }
        // Best first: top level before nested, then in file order.
        definitions.sort_by_key(|&line| {
            let top = defined
                .iter()
                .any(|&i| self.symbol_span(i).0 == line && self.symbols.top_level(i));
            (!top, line)
        });
        let mut seen = std::collections::HashSet::new();
        definitions.retain(|&line| seen.insert(line));
        Ok(line_matches(
            content,
            &starts,
            found,
            max_lines,
            &definitions,
        ))
    }

    /// BM25 of `words` on the word field for each hit (hits ascending by document).
    fn bm25(&self, hits: &[Hit], words: &[String]) -> Result<Vec<f32>, IndexError> {
        let mut scores = vec![0.0; hits.len()];
        if words.is_empty() || hits.is_empty() {
            return Ok(scores);
        }
        let query = BooleanQuery::new(
            words
                .iter()
                .map(|w| {
                    let term = Term::from_field_text(self.fields.words, w);
                    let q: Box<dyn Query> =
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                    (Occur::Should, q)
                })
                .collect(),
        );
        let weight = query.weight(EnableScoring::enabled_from_searcher(&self.searcher))?;
        let segments = self.searcher.segment_readers();
        let mut i = 0;
        for (s, segment) in segments.iter().enumerate() {
            let base = self.bases[s];
            let end = self.bases.get(s + 1).copied().unwrap_or(u32::MAX);
            let mut scorer = weight.scorer(segment, 1.0)?;
            while i < hits.len() && hits[i].doc < end {
                let local = hits[i].doc - base;
                if scorer.doc() < local {
                    scorer.seek(local);
                }
                if scorer.doc() == local {
                    scores[i] = scorer.score();
                }
                i += 1;
            }
        }
        Ok(scores)
    }
}
