//! Building a shard from one commit of a bare repository: walk the tree, read blobs from the
//! object database on worker threads (filter, trigram, compress), and write the tantivy
//! index and `content.bin` on the calling thread.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use git2::{Oid, Repository};
use tantivy::{IndexBuilder, SingleSegmentIndexWriter, TantivyDocument};

use super::content::{BuildDirectory, ContentWriter, encode, sync_dir};
use super::schema::{self, CONTENT_FILE, Fields, INDEX_DIR};
use super::symbols::{
    Budgets, Extracted, Extractor, FinishOnDrop, Outcome, Previous, SYMBOLS_FILE, SymbolWriter,
};
use super::tokens::TrigramSet;
use super::{
    BuildStats, IndexError, Limits, MAX_PATH_BYTES, SHARD_VERSION, VERSION_FILE, language_of,
};

/// Threads reading and preparing blobs while the calling thread indexes.
const WORKERS: usize = 2;
/// A file with a NUL byte in this many first bytes is binary.
const BINARY_PROBE: usize = 8 << 10;
/// Git file modes of the tree entries we care about.
const MODE_TREE: i32 = 0o040000;
const MODE_SYMLINK: i32 = 0o120000;
const MODE_COMMIT: i32 = 0o160000;

/// A file entry of the tree, to be read.
struct Entry {
    path: String,
    oid: Oid,
    symlink: bool,
}

/// What a worker made of one entry.
enum Prepared {
    Doc {
        path: String,
        lang: &'static str,
        size: u64,
        stored: Vec<u8>,
        trigrams: Vec<u32>,
        text: String,
        symlink: bool,
        blob: [u8; 20],
        symbols: Extracted,
        /// None for a language without a grammar.
        outcome: Option<Outcome>,
        /// The symbols came from the shard being replaced.
        reused: bool,
    },
    Binary,
    Large,
    /// Left out: the build had read `Limits::max_total_bytes` already.
    OverBudget,
}

/// Builds a shard for `commit` of the bare repository at `git_dir` into `out_dir` (a fresh,
/// not yet existing directory). Reads the tree and blobs from the object database, never a
/// checkout, and calls `progress(done, total)` now and then (counting file entries).
/// `previous` is the shard this one replaces, if any: unchanged files keep its symbols.
pub fn build_shard(
    git_dir: &Path,
    commit: Oid,
    out_dir: &Path,
    limits: &Limits,
    previous: Option<&Path>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BuildStats, IndexError> {
    let started = Instant::now();
    // Our own clones: libgit2's SHA-1 re-check of every blob read is wasted work.
    git2::opts::strict_hash_verification(false);
    let repo = Repository::open(git_dir)?;
    let tree = repo.find_commit(commit)?.tree()?;
    let mut stats = BuildStats::default();
    let entries = walk(&repo, &tree, limits, &mut stats)?;
    drop(tree);
    drop(repo);

    std::fs::create_dir(out_dir)?;
    let index_dir = out_dir.join(INDEX_DIR);
    std::fs::create_dir(&index_dir)?;
    let schema = schema::schema();
    let fields = Fields::from_schema(&schema)?;
    let budget = (entries.len() * 4096).clamp(1 << 20, 48 << 20);
    let mut writer = IndexBuilder::new()
        .schema(schema)
        .tokenizers(schema::tokenizers())
        .single_segment_index_writer(BuildDirectory::open(&index_dir)?, budget)?;
    let mut content = ContentWriter::create(&out_dir.join(CONTENT_FILE))?;
    let mut symbol_file = SymbolWriter::create(&out_dir.join(SYMBOLS_FILE))?;
    let budgets = Budgets::new(WORKERS);
    let previous = previous.map(Previous::load).unwrap_or_default();

    let total = entries.len() as u64;
    progress(0, total);
    let next = AtomicUsize::new(0);
    let bytes_read = AtomicU64::new(0);
    std::thread::scope(|scope| {
        // Ends the watchdog however this closure is left (an error returns early).
        let _finish = FinishOnDrop(&budgets);
        scope.spawn(|| budgets.watch());
        let (tx, rx) = mpsc::sync_channel(4 * WORKERS);
        for slot in 0..WORKERS {
            let tx = tx.clone();
            let reader = Reader {
                git_dir,
                entries: &entries,
                next: &next,
                bytes_read: &bytes_read,
                limits,
                budgets: &budgets,
                previous: &previous,
                slot,
            };
            scope.spawn(move || reader.run(tx));
        }
        drop(tx);
        let mut done = 0u64;
        for prepared in rx {
            match prepared? {
                Prepared::Binary => stats.skipped_binary += 1,
                Prepared::Large => stats.skipped_large += 1,
                Prepared::OverBudget => stats.skipped_over_byte_limit += 1,
                Prepared::Doc {
                    path,
                    lang,
                    size,
                    stored,
                    trigrams,
                    text,
                    symlink,
                    blob,
                    symbols,
                    outcome,
                    reused,
                } => {
                    let offset = content.append(&stored)?;
                    stats.symbols += symbols.symbols.len() as u64;
                    stats.symbols_reused += u64::from(reused);
                    if outcome.is_some() && symbols.symbols.is_empty() {
                        stats.files_without_symbols += 1;
                    }
                    match outcome {
                        Some(Outcome::TooLarge) => stats.symbols_skipped_large += 1,
                        Some(Outcome::TooSlow) => stats.symbols_timed_out += 1,
                        Some(Outcome::Capped) => stats.symbols_capped += 1,
                        Some(Outcome::Done) | None => {}
                    }
                    // Only a finished extraction is kept (and may be reused); one cut short
                    // is tried again by the next build.
                    if matches!(outcome, Some(Outcome::Done | Outcome::Capped)) {
                        symbol_file.append(&path, &blob, &symbols)?;
                    }
                    let mut doc = TantivyDocument::new();
                    doc.add_text(fields.path, &path);
                    doc.add_text(fields.lang, lang);
                    doc.add_u64(fields.size, size);
                    doc.add_u64(fields.offset, offset);
                    doc.add_u64(fields.stored, stored.len() as u64);
                    for t in trigrams {
                        doc.add_u64(fields.trigrams, u64::from(t));
                    }
                    doc.add_text(fields.words, &text);
                    doc.add_text(fields.words, &path);
                    writer.add_document(doc)?;
                    stats.files += 1;
                    stats.bytes += size;
                    stats.symlinks += u64::from(symlink);
                }
            }
            done += 1;
            if done.is_multiple_of(256) {
                progress(done, total);
            }
        }
        Ok::<(), IndexError>(())
    })?;
    symbol_file.finish()?;
    std::fs::write(out_dir.join(VERSION_FILE), format!("{SHARD_VERSION}\n"))?;
    finalize(writer, content, out_dir)?;
    progress(total, total);
    stats.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(stats)
}

/// Closes the index and content file and syncs the shard once.
fn finalize(
    writer: SingleSegmentIndexWriter,
    content: ContentWriter,
    out_dir: &Path,
) -> Result<(), IndexError> {
    writer.finalize()?;
    content.finish()?;
    sync_dir(&out_dir.join(INDEX_DIR))?;
    sync_dir(out_dir)?;
    Ok(())
}

/// Lists the file entries of `tree`, breadth first, counting what the limits leave out.
///
/// Every entry visited counts against `max_tree_entries` (directories too, so identical
/// subtrees cannot multiply without end), and the paths held are bounded by the file and
/// entry limits and `MAX_PATH_BYTES`.
fn walk(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    limits: &Limits,
    stats: &mut BuildStats,
) -> Result<Vec<Entry>, IndexError> {
    let mut files = Vec::new();
    let mut visited = 0u64;
    let mut queue = VecDeque::from([(tree.id(), String::new(), 0usize)]);
    while let Some((tree, prefix, depth)) = queue.pop_front() {
        for entry in &repo.find_tree(tree)? {
            visited += 1;
            if visited > limits.max_tree_entries {
                stats.stopped_at_entries = Some(limits.max_tree_entries);
                return Ok(files);
            }
            let name = String::from_utf8_lossy(entry.name_bytes());
            if prefix.len() + 1 + name.len() > MAX_PATH_BYTES {
                stats.skipped_long_path += 1;
                continue;
            }
            let path = if prefix.is_empty() {
                name.into_owned()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.filemode() {
                MODE_TREE if depth >= limits.max_tree_depth => stats.skipped_too_deep += 1,
                MODE_TREE => queue.push_back((entry.id(), path, depth + 1)),
                MODE_COMMIT => stats.submodules += 1,
                _ if files.len() as u64 >= limits.max_files => {
                    stats.skipped_over_file_limit += 1;
                }
                mode => files.push(Entry {
                    path,
                    oid: entry.id(),
                    symlink: mode == MODE_SYMLINK,
                }),
            }
        }
    }
    Ok(files)
}

/// A worker's share of a build: takes entries by index from `next` until none are left or
/// the receiver is gone; all workers count the bytes they read against one budget.
struct Reader<'a> {
    git_dir: &'a Path,
    entries: &'a [Entry],
    next: &'a AtomicUsize,
    bytes_read: &'a AtomicU64,
    limits: &'a Limits,
    budgets: &'a Budgets,
    previous: &'a Previous,
    slot: usize,
}

impl Reader<'_> {
    fn run(self, tx: mpsc::SyncSender<Result<Prepared, IndexError>>) {
        let repo = match Repository::open(self.git_dir) {
            Ok(repo) => repo,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        let odb = match repo.odb() {
            Ok(odb) => odb,
            Err(e) => {
                let _ = tx.send(Err(e.into()));
                return;
            }
        };
        let mut trigrams = TrigramSet::new();
        let mut extractor = Extractor::new(
            self.budgets,
            self.slot,
            self.limits.max_symbol_file_bytes,
            self.limits.symbol_budget,
        );
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(entry) = self.entries.get(i) else {
                return;
            };
            let prepared = self.prepare(&odb, entry, &mut trigrams, &mut extractor);
            let failed = prepared.is_err();
            if tx.send(prepared).is_err() || failed {
                return;
            }
        }
    }

    /// Reads one blob and turns it into a document, or says why it is skipped. The size
    /// comes from the object header first, so a skipped blob is never inflated.
    fn prepare(
        &self,
        odb: &git2::Odb<'_>,
        entry: &Entry,
        trigrams: &mut TrigramSet,
        extractor: &mut Extractor<'_>,
    ) -> Result<Prepared, IndexError> {
        let (size, _) = odb.read_header(entry.oid)?;
        let size = size as u64;
        if size > self.limits.max_file_bytes {
            return Ok(Prepared::Large);
        }
        let before = self.bytes_read.fetch_add(size, Ordering::Relaxed);
        if before + size > self.limits.max_total_bytes {
            return Ok(Prepared::OverBudget);
        }
        let object = odb.read(entry.oid)?;
        let data = object.data();
        if memchr::memchr(0, &data[..data.len().min(BINARY_PROBE)]).is_some() {
            return Ok(Prepared::Binary);
        }
        let raw = data.to_vec();
        drop(object);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let lang = if entry.symlink {
            ""
        } else {
            language_of(&entry.path)
        };
        let mut blob = [0u8; 20];
        blob.copy_from_slice(entry.oid.as_bytes());
        let (symbols, outcome, reused) = match self.previous.get(&entry.path, &blob) {
            Some(kept) => {
                let outcome = if kept.capped {
                    Outcome::Capped
                } else {
                    Outcome::Done
                };
                (kept, Some(outcome), true)
            }
            None => {
                let (symbols, outcome) = extractor.extract(&entry.path, lang, &raw);
                let capped = outcome == Some(Outcome::Capped);
                (Extracted { symbols, capped }, outcome, false)
            }
        };
        Ok(Prepared::Doc {
            path: entry.path.clone(),
            lang,
            blob,
            symbols,
            outcome,
            reused,
            size: raw.len() as u64,
            trigrams: trigrams.distinct(&raw),
            stored: encode(raw),
            text,
            symlink: entry.symlink,
        })
    }
}
