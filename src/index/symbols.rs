//! Symbols: definitions found at build time with tree-sitter and each grammar's shipped tags
//! query, stored in `symbols.bin` beside `content.bin`, and looked up when searching.
//!
//! A file that is too large, parses past its time budget or has more symbols than we keep is
//! indexed without (or with fewer) symbols and counted; nothing here can fail a build.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tree_sitter_tags::{TagsConfiguration, TagsContext};

use super::lines::line_starts;
use super::prepare::{PreparedQuery, SymMatcher};
use super::shard::Shard;
use super::{IndexError, Symbol, SymbolQuery};

/// Name of the symbol file inside a shard.
pub(crate) const SYMBOLS_FILE: &str = "symbols.bin";
const MAGIC: &[u8; 8] = b"CLSYM03\n";
/// zstd level of `symbols.bin`: names repeat a lot, and the whole file is read at once.
const ZSTD_LEVEL: i32 = 3;
/// A `symbols.bin` that decodes to more than this is damaged (ours are a few MB).
const MAX_DECODED_BYTES: u64 = 1 << 30;
/// Symbols kept per file; a generated file with more keeps the first ones (and is counted).
const MAX_SYMBOLS_PER_FILE: usize = 10_000;
/// Longer names are not identifiers anyone searches for (minified or generated code).
const MAX_NAME_BYTES: usize = 200;
/// Bytes of the definition before its name that are read to refine the kind.
const KIND_PROBE: usize = 256;
/// No parent symbol.
const NONE: u32 = u32::MAX;

/// What a symbol is, as the tags query (refined by the definition's keywords) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Function = 0,
    Method,
    Class,
    Struct,
    Enum,
    Interface,
    Trait,
    Type,
    Module,
    Macro,
    Constant,
    Union,
    Other,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::Function,
        Kind::Method,
        Kind::Class,
        Kind::Struct,
        Kind::Enum,
        Kind::Interface,
        Kind::Trait,
        Kind::Type,
        Kind::Module,
        Kind::Macro,
        Kind::Constant,
        Kind::Union,
        Kind::Other,
    ];

    /// The lower-case name used in answers and in `kind` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Function => "function",
            Kind::Method => "method",
            Kind::Class => "class",
            Kind::Struct => "struct",
            Kind::Enum => "enum",
            Kind::Interface => "interface",
            Kind::Trait => "trait",
            Kind::Type => "type",
            Kind::Module => "module",
            Kind::Macro => "macro",
            Kind::Constant => "constant",
            Kind::Union => "union",
            Kind::Other => "other",
        }
    }

    /// The kind a name stands for (case-insensitive), None when unknown.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }

    fn from_u8(b: u8) -> Kind {
        Kind::ALL
            .get(usize::from(b))
            .copied()
            .unwrap_or(Kind::Other)
    }

    /// From the query's `@definition.<type>` and the words before the name.
    fn refine(syntax: &str, prefix: &[u8]) -> Kind {
        let words: Vec<&[u8]> = prefix
            .split(|b| !b.is_ascii_alphanumeric() && *b != b'_')
            .filter(|w| !w.is_empty())
            .collect();
        let has = |w: &str| words.contains(&w.as_bytes());
        match syntax {
            "function" => Kind::Function,
            "method" => Kind::Method,
            "module" => Kind::Module,
            "macro" => Kind::Macro,
            "constant" => Kind::Constant,
            "interface" if has("trait") => Kind::Trait,
            "interface" => Kind::Interface,
            "class" | "type" if has("enum") => Kind::Enum,
            "class" | "type" if has("union") => Kind::Union,
            "class" | "type" if has("struct") => Kind::Struct,
            "class" if has("class") => Kind::Class,
            "class" if has("type") => Kind::Type,
            "class" => Kind::Class,
            "type" => Kind::Type,
            _ => Kind::Other,
        }
    }
}

/// One definition of a file, as built and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawSymbol {
    pub name: String,
    pub kind: Kind,
    /// 0-based line of the name, and the byte column where the name starts on it.
    pub line: u32,
    pub col: u32,
    /// 0-based first and last line of the whole definition.
    pub start: u32,
    pub end: u32,
    /// Index of the enclosing definition in the same file's list, `NONE` at top level.
    pub parent: u32,
}

/// One file's extraction as stored: its definitions, and whether there were more than
/// `MAX_SYMBOLS_PER_FILE`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extracted {
    pub symbols: Vec<RawSymbol>,
    pub capped: bool,
}

/// Why a file got no (or not all) symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Extracted (possibly none defined).
    Done,
    /// Larger than the symbol size limit.
    TooLarge,
    /// The parse or the query ran past the per-file budget.
    TooSlow,
    /// More symbols than `MAX_SYMBOLS_PER_FILE`; the first ones are kept.
    Capped,
}

/// The grammars we extract from, by file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grammar {
    Rust,
    Python,
    Go,
    JavaScript,
    TypeScript,
    Tsx,
    Java,
    C,
    Cpp,
}

const GRAMMARS: usize = 9;

fn grammar_of(path: &str, lang: &str) -> Option<Grammar> {
    Some(match lang {
        "rust" => Grammar::Rust,
        "python" => Grammar::Python,
        "go" => Grammar::Go,
        "javascript" => Grammar::JavaScript,
        "typescript" if path.to_ascii_lowercase().ends_with(".tsx") => Grammar::Tsx,
        "typescript" => Grammar::TypeScript,
        "java" => Grammar::Java,
        "c" => Grammar::C,
        "cpp" => Grammar::Cpp,
        _ => return None,
    })
}

/// Trait methods declared without a body are definitions too (the shipped query has only
/// `function_item`).
const RUST_EXTRA: &str =
    "(declaration_list (function_signature_item name: (identifier) @name) @definition.method)";

/// The shipped C and C++ queries take a function's range from its declarator line only; these
/// give a definition its whole body (tree-sitter-tags keeps one tag per name: ours, listed
/// first).
const C_EXTRA: &str = "
(function_definition declarator: (function_declarator declarator: (identifier) @name)) @definition.function
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))) @definition.function
";

/// The patterns of a tags query that find definitions (and `impl` blocks, which give methods
/// their container): reference patterns match every call and type use, and we store no
/// references, so running them would be most of the query's work for nothing.
///
/// A top-level pattern runs from an opening bracket at depth 0 to the next one; strings and
/// `;` comments are skipped while counting depth.
fn definitions_only(query: &str) -> String {
    let mut chunks: Vec<&str> = Vec::new();
    let (mut depth, mut start, mut in_string, mut escaped, mut in_comment) =
        (0usize, 0usize, false, false, false);
    for (i, b) in query.bytes().enumerate() {
        if in_comment {
            in_comment = b != b'\n';
        } else if in_string {
            in_string = escaped || b != b'"';
            escaped = !escaped && b == b'\\';
        } else {
            match b {
                b'"' => in_string = true,
                b';' => in_comment = true,
                b'(' | b'[' => {
                    if depth == 0 && i > start {
                        chunks.push(&query[start..i]);
                        start = i;
                    }
                    depth += 1;
                }
                b')' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    chunks.push(&query[start..]);
    chunks
        .into_iter()
        .filter(|c| {
            !c.contains("@reference.")
                || c.contains("@definition.")
                || c.contains("@reference.implementation")
        })
        .collect()
}

/// The tags configuration of each grammar, compiled once per process; None if a grammar's
/// query does not compile against it (then that language has no symbols, logged once).
fn configs() -> &'static [Option<TagsConfiguration>; GRAMMARS] {
    static CONFIGS: OnceLock<[Option<TagsConfiguration>; GRAMMARS]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let make = |name: &str, language: tree_sitter::Language, query: &str| {
            TagsConfiguration::new(language, &definitions_only(query), "")
                .map_err(|e| tracing::error!(grammar = name, error = %e, "tags query rejected"))
                .ok()
        };
        // TypeScript's own query only adds what JavaScript's lacks (interfaces, modules,
        // signatures): the two together, as the tree-sitter CLI combines them.
        let ts = format!(
            "{}\n{}",
            tree_sitter_javascript::TAGS_QUERY,
            tree_sitter_typescript::TAGS_QUERY
        );
        // Our patterns first: of two tags on one name the earlier pattern's is kept.
        let rust = format!("{RUST_EXTRA}\n{}", tree_sitter_rust::TAGS_QUERY);
        let c = format!("{C_EXTRA}\n{}", tree_sitter_c::TAGS_QUERY);
        let cpp = format!("{C_EXTRA}\n{}", tree_sitter_cpp::TAGS_QUERY);
        [
            make("rust", tree_sitter_rust::LANGUAGE.into(), &rust),
            make(
                "python",
                tree_sitter_python::LANGUAGE.into(),
                tree_sitter_python::TAGS_QUERY,
            ),
            make(
                "go",
                tree_sitter_go::LANGUAGE.into(),
                tree_sitter_go::TAGS_QUERY,
            ),
            make(
                "javascript",
                tree_sitter_javascript::LANGUAGE.into(),
                tree_sitter_javascript::TAGS_QUERY,
            ),
            make(
                "typescript",
                tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
                &ts,
            ),
            make("tsx", tree_sitter_typescript::LANGUAGE_TSX.into(), &ts),
            make(
                "java",
                tree_sitter_java::LANGUAGE.into(),
                tree_sitter_java::TAGS_QUERY,
            ),
            make("c", tree_sitter_c::LANGUAGE.into(), &c),
            make("cpp", tree_sitter_cpp::LANGUAGE.into(), &cpp),
        ]
    })
}

/// The per-file time budget of the extractors of one build: each extractor publishes its
/// deadline, and a watchdog thread raises the cancellation flag tree-sitter polls while it
/// parses and queries (tree-sitter has no timeout of its own any more).
pub(crate) struct Budgets {
    epoch: Instant,
    slots: Vec<Slot>,
    finished: AtomicBool,
}

struct Slot {
    /// Microseconds since `epoch`; 0 when idle.
    deadline: AtomicU64,
    cancel: AtomicUsize,
}

impl Budgets {
    /// Slots for `n` extractors.
    pub(crate) fn new(n: usize) -> Budgets {
        Budgets {
            epoch: Instant::now(),
            slots: (0..n)
                .map(|_| Slot {
                    deadline: AtomicU64::new(0),
                    cancel: AtomicUsize::new(0),
                })
                .collect(),
            finished: AtomicBool::new(false),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Raises the flag of every slot past its deadline until `finish` is called.
    pub(crate) fn watch(&self) {
        while !self.finished.load(Ordering::Relaxed) {
            let now = self.now_us();
            for slot in &self.slots {
                let d = slot.deadline.load(Ordering::Relaxed);
                if d != 0 && now >= d {
                    slot.cancel.store(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Ends `watch`.
    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}

/// Ends the watchdog when the build leaves its thread scope, by success or by error.
pub(crate) struct FinishOnDrop<'a>(pub &'a Budgets);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Extracts symbols on one worker thread (owns a parser).
pub(crate) struct Extractor<'a> {
    context: TagsContext,
    budgets: &'a Budgets,
    slot: usize,
    max_bytes: u64,
    budget: Duration,
}

impl<'a> Extractor<'a> {
    /// An extractor using slot `slot` of `budgets`, for files up to `max_bytes` given
    /// `budget` each.
    pub(crate) fn new(
        budgets: &'a Budgets,
        slot: usize,
        max_bytes: u64,
        budget: Duration,
    ) -> Extractor<'a> {
        Extractor {
            context: TagsContext::new(),
            budgets,
            slot,
            max_bytes,
            budget,
        }
    }

    /// The definitions of one file, in file order, and how the extraction went.
    pub(crate) fn extract(
        &mut self,
        path: &str,
        lang: &str,
        source: &[u8],
    ) -> (Vec<RawSymbol>, Option<Outcome>) {
        let Some(grammar) = grammar_of(path, lang) else {
            return (Vec::new(), None);
        };
        let Some(config) = configs()[grammar as usize].as_ref() else {
            return (Vec::new(), None);
        };
        if source.len() as u64 > self.max_bytes {
            return (Vec::new(), Some(Outcome::TooLarge));
        }
        let Some(slot) = self.budgets.slots.get(self.slot) else {
            return (Vec::new(), None);
        };
        slot.cancel.store(0, Ordering::Relaxed);
        let budget_us = u64::try_from(self.budget.as_micros()).unwrap_or(u64::MAX);
        slot.deadline.store(
            self.budgets.now_us().saturating_add(budget_us).max(1),
            Ordering::Relaxed,
        );
        let result = collect(&mut self.context, config, source, &slot.cancel);
        slot.deadline.store(0, Ordering::Relaxed);
        match result {
            Some((symbols, capped)) => (
                symbols,
                Some(if capped {
                    Outcome::Capped
                } else {
                    Outcome::Done
                }),
            ),
            None => (Vec::new(), Some(Outcome::TooSlow)),
        }
    }
}

/// Runs the tags query; None when cancelled. Containers are found by range nesting, with
/// implementation blocks (`impl Type`) counted as containers though they are no definitions.
fn collect(
    context: &mut TagsContext,
    config: &TagsConfiguration,
    source: &[u8],
    cancel: &AtomicUsize,
) -> Option<(Vec<RawSymbol>, bool)> {
    let (tags, _has_error) = context.generate_tags(config, source, Some(cancel)).ok()?;
    // (byte range, symbol or container name, is a definition)
    let mut found: Vec<(std::ops::Range<usize>, Option<RawSymbol>, String)> = Vec::new();
    let starts = line_starts(source);
    let row = |byte: usize| (starts.partition_point(|&s| s <= byte).max(1) - 1) as u32;
    let (mut capped, mut kept) = (false, 0usize);
    for tag in tags {
        let tag = tag.ok()?;
        let name = String::from_utf8_lossy(source.get(tag.name_range.clone())?).into_owned();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            continue;
        }
        let syntax = config.syntax_type_name(tag.syntax_type_id);
        if !tag.is_definition {
            if syntax == "implementation" {
                found.push((tag.range, None, name));
            }
            continue;
        }
        if kept >= MAX_SYMBOLS_PER_FILE {
            capped = true;
            break;
        }
        kept += 1;
        let probe_from = tag
            .name_range
            .start
            .saturating_sub(KIND_PROBE)
            .max(tag.range.start);
        let prefix = source
            .get(probe_from..tag.name_range.start)
            .unwrap_or_default();
        let end_byte = tag.range.end.saturating_sub(1).max(tag.range.start);
        let symbol = RawSymbol {
            name: name.clone(),
            kind: Kind::refine(syntax, prefix),
            line: tag.span.start.row as u32,
            col: tag.span.start.column as u32,
            start: row(tag.range.start),
            end: row(end_byte),
            parent: NONE,
        };
        found.push((tag.range, Some(symbol), name));
    }
    // Outer before inner: by start, then longest first; a stack of open ranges gives each
    // definition its innermost container.
    found.sort_by(|a, b| {
        a.0.start
            .cmp(&b.0.start)
            .then_with(|| b.0.end.cmp(&a.0.end))
    });
    let mut out: Vec<RawSymbol> = Vec::new();
    // (end byte, index in `out` or NONE for a container-only range, its name)
    let mut stack: Vec<(usize, u32, String)> = Vec::new();
    let mut containers: Vec<(u32, String)> = Vec::new();
    for (range, symbol, name) in found {
        while stack.last().is_some_and(|top| top.0 <= range.start) {
            stack.pop();
        }
        let parent = stack.last().map(|top| (top.1, top.2.clone()));
        match symbol {
            Some(mut symbol) => {
                symbol.parent = match parent {
                    Some((i, _)) if i != NONE => i,
                    // Inside an `impl` only: a synthetic container entry keeps its name.
                    Some((_, impl_name)) => {
                        containers.push((out.len() as u32, impl_name));
                        NONE
                    }
                    None => NONE,
                };
                stack.push((range.end, out.len() as u32, name));
                out.push(symbol);
            }
            None => stack.push((range.end, NONE, name)),
        }
    }
    // Rust's query calls any item of a block a method: in a module's block it is a function.
    for i in 0..out.len() {
        let parent = out[i].parent;
        if out[i].kind == Kind::Method
            && out
                .get(parent as usize)
                .is_some_and(|p| p.kind == Kind::Module)
        {
            out[i].kind = Kind::Function;
        }
    }
    // A method of `impl Foo` is nested in `Foo`, when `Foo` is defined in the same file.
    let mut top_level: HashMap<&str, u32> = HashMap::new();
    for (i, s) in out.iter().enumerate().filter(|(_, s)| s.parent == NONE) {
        top_level.entry(s.name.as_str()).or_insert(i as u32);
    }
    let nest: Vec<(u32, u32)> = containers
        .into_iter()
        .filter_map(|(i, name)| Some((i, *top_level.get(name.as_str())?)))
        .filter(|(i, p)| i != p)
        .collect();
    for (i, p) in nest {
        out[i as usize].parent = p;
    }
    Some((out, capped))
}

/// Appends the symbols of each file to `symbols.bin`.
pub(crate) struct SymbolWriter {
    file: zstd::stream::write::Encoder<'static, BufWriter<std::fs::File>>,
}

impl SymbolWriter {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> std::io::Result<SymbolWriter> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut file =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), ZSTD_LEVEL)?;
        file.write_all(MAGIC)?;
        Ok(SymbolWriter { file })
    }

    /// Writes one extracted file's symbols (possibly none), under its path and blob id so a
    /// later build of an unchanged file can take them instead of parsing it again.
    pub(crate) fn append(
        &mut self,
        path: &str,
        blob: &[u8; 20],
        extracted: &Extracted,
    ) -> std::io::Result<()> {
        let f = &mut self.file;
        let symbols = &extracted.symbols;
        f.write_all(&(path.len() as u32).to_le_bytes())?;
        f.write_all(path.as_bytes())?;
        f.write_all(blob)?;
        f.write_all(&[u8::from(extracted.capped)])?;
        f.write_all(&(symbols.len() as u32).to_le_bytes())?;
        for s in symbols {
            f.write_all(&[s.kind as u8])?;
            f.write_all(&(s.name.len() as u16).to_le_bytes())?;
            f.write_all(s.name.as_bytes())?;
            for n in [s.line, s.col, s.start, s.end, s.parent] {
                f.write_all(&n.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// Ends the compressed stream, flushes and fsyncs the file.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        self.file
            .finish()?
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_all()
    }
}

/// One stored definition, in memory.
#[derive(Clone, Debug)]
pub(super) struct Sym {
    pub doc: u32,
    name: (u32, u32),
    pub kind: Kind,
    pub line: u32,
    pub col: u32,
    pub start: u32,
    pub end: u32,
    /// Index into `SymbolTable::syms`, or `NONE`.
    pub parent: u32,
}

/// A shard's symbols: grouped by file in file order, plus an index by folded name.
#[derive(Debug, Default)]
pub(super) struct SymbolTable {
    pub syms: Vec<Sym>,
    names: String,
    /// Per document ordinal: the range of its symbols in `syms`.
    by_doc: HashMap<u32, (u32, u32)>,
    /// Indices into `syms` sorted by ASCII-folded name.
    by_name: Vec<u32>,
    /// `name_key` of each entry of `by_name`: a lookup searches numbers, and compares names
    /// only among the few that share a key.
    name_keys: Vec<u64>,
}

/// The first 8 ASCII-folded bytes of a name, big-endian, zero-padded: ordered like the
/// folded names themselves (a shorter prefix sorts first).
fn name_key(name: &str) -> u64 {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(name.bytes()) {
        *k = b.to_ascii_lowercase();
    }
    u64::from_be_bytes(key)
}

fn corrupt(what: &str) -> IndexError {
    IndexError::Corrupt(format!("{SYMBOLS_FILE}: {what}"))
}

/// Reads little-endian fields from a byte slice, failing on a short read.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, IndexError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u16(&mut self) -> Result<u16, IndexError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

/// The decoded bytes of the shard's `symbols.bin`.
fn read_symbols_file(dir: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(dir.join(SYMBOLS_FILE))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(zstd::stream::read::Decoder::new(file)?, MAX_DECODED_BYTES),
        &mut out,
    )?;
    Ok(out)
}

/// Reads every file entry of a whole `symbols.bin`, in file order.
fn read_entries(
    bytes: &[u8],
    mut each: impl FnMut(&str, [u8; 20], Extracted) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    if !bytes.starts_with(MAGIC) {
        return Err(corrupt("unknown format"));
    }
    let mut c = Cursor(&bytes[MAGIC.len()..]);
    while !c.0.is_empty() {
        let len = c.u32()? as usize;
        let path = std::str::from_utf8(c.take(len)?).map_err(|_| corrupt("path"))?;
        let mut blob = [0u8; 20];
        blob.copy_from_slice(c.take(20)?);
        let capped = c.take(1)?[0] != 0;
        let n = c.u32()? as usize;
        if n > MAX_SYMBOLS_PER_FILE {
            return Err(corrupt("too many symbols"));
        }
        let mut symbols = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = Kind::from_u8(c.take(1)?[0]);
            let len = usize::from(c.u16()?);
            let name = std::str::from_utf8(c.take(len)?).map_err(|_| corrupt("name"))?;
            let (line, col, start, end, parent) =
                (c.u32()?, c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            symbols.push(RawSymbol {
                name: name.to_owned(),
                kind,
                line,
                col,
                start,
                end,
                parent: if parent as usize >= n { NONE } else { parent },
            });
        }
        each(path, blob, Extracted { symbols, capped })?;
    }
    Ok(())
}

/// The symbols of the shard a build replaces, by path and blob id: an unchanged file takes
/// its symbols from here instead of being parsed again (a re-index parses only what changed).
#[derive(Default)]
pub(crate) struct Previous(HashMap<(String, [u8; 20]), Extracted>);

impl Previous {
    /// Reads `symbols.bin` of the shard in `dir`. No shard, another format or a damaged file
    /// gives an empty set: every file is then parsed, as in a first build.
    pub(crate) fn load(dir: &Path) -> Previous {
        let Ok(bytes) = read_symbols_file(dir) else {
            return Previous::default();
        };
        let mut map = HashMap::new();
        let read = read_entries(&bytes, |path, blob, extracted| {
            map.insert((path.to_owned(), blob), extracted);
            Ok(())
        });
        if read.is_err() {
            return Previous::default();
        }
        Previous(map)
    }

    /// The symbols stored for `path` at blob `blob`, if that file was extracted before.
    pub(crate) fn get(&self, path: &str, blob: &[u8; 20]) -> Option<Extracted> {
        self.0.get(&(path.to_owned(), *blob)).cloned()
    }
}

impl SymbolTable {
    /// Loads `symbols.bin` of the shard in `dir`; a shard built before symbols existed has
    /// none (it is rebuilt by the next sync). `doc_of` maps a path to its document ordinal.
    pub(super) fn load(
        dir: &Path,
        doc_of: impl Fn(&str) -> Option<u32>,
    ) -> Result<SymbolTable, IndexError> {
        let bytes = match read_symbols_file(dir) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SymbolTable::default());
            }
            Err(e) => return Err(e.into()),
        };
        let mut table = SymbolTable::default();
        read_entries(&bytes, |path, _blob, extracted| {
            let doc = doc_of(path).ok_or_else(|| corrupt("symbols of a file not in the shard"))?;
            let first = table.syms.len() as u32;
            for raw in extracted.symbols {
                let at = table.names.len() as u32;
                table.names.push_str(&raw.name);
                // Keeps a scan of all names from matching across two of them.
                table.names.push('\n');
                table.syms.push(Sym {
                    doc,
                    name: (at, raw.name.len() as u32),
                    kind: raw.kind,
                    line: raw.line,
                    col: raw.col,
                    start: raw.start,
                    end: raw.end,
                    parent: if raw.parent == NONE {
                        NONE
                    } else {
                        first + raw.parent
                    },
                });
            }
            table.by_doc.insert(doc, (first, table.syms.len() as u32));
            Ok(())
        })?;
        let mut by_name: Vec<u32> = (0..table.syms.len() as u32).collect();
        by_name.sort_by_cached_key(|&i| table.name(i).to_ascii_lowercase());
        table.name_keys = by_name.iter().map(|&i| name_key(table.name(i))).collect();
        table.by_name = by_name;
        Ok(table)
    }

    /// The symbols whose name `matcher` matches, in order. A literal (`sym:name`) is found
    /// by one scan over all names instead of one regex run per name.
    pub(super) fn matching(&self, matcher: &SymMatcher) -> Vec<u32> {
        let scan = matcher
            .literal
            .as_deref()
            .is_some_and(|l| !l.is_empty() && !l.contains('\n'));
        if !scan {
            return (0..self.syms.len() as u32)
                .filter(|&i| matcher.regex.is_match(self.name(i)))
                .collect();
        }
        let mut found: Vec<u32> = Vec::new();
        for m in matcher.regex.find_iter(&self.names) {
            let at = m.start() as u32;
            let i = self
                .syms
                .partition_point(|s| s.name.0 <= at)
                .saturating_sub(1) as u32;
            if found.last() != Some(&i) {
                found.push(i);
            }
        }
        found
    }

    /// The name of symbol `i`.
    pub(super) fn name(&self, i: u32) -> &str {
        let (at, len) = self.syms[i as usize].name;
        self.names
            .get(at as usize..(at + len) as usize)
            .unwrap_or_default()
    }

    /// The symbols of document `doc`, as indices into `syms`.
    pub(super) fn of_doc(&self, doc: u32) -> std::ops::Range<u32> {
        self.by_doc.get(&doc).map_or(0..0, |&(a, b)| a..b)
    }

    /// Symbols named exactly `name` (ASCII case folded unless `case_sensitive`).
    pub(super) fn named(&self, name: &str, case_sensitive: bool) -> Vec<u32> {
        // Numbers first; names are compared only where the first 8 folded bytes agree.
        let key = name_key(name);
        let lo = self.name_keys.partition_point(|&k| k < key);
        let same_key = &self.by_name[lo..lo + self.name_keys[lo..].partition_point(|&k| k == key)];
        let cmp = |i: &u32| {
            self.name(*i)
                .bytes()
                .map(|b| b.to_ascii_lowercase())
                .cmp(name.bytes().map(|b| b.to_ascii_lowercase()))
        };
        let from = same_key.partition_point(|i| cmp(i).is_lt());
        let to = same_key.partition_point(|i| cmp(i).is_le());
        same_key[from..to]
            .iter()
            .copied()
            .filter(|&i| !case_sensitive || self.name(i) == name)
            .collect()
    }

    /// Nesting depth of symbol `i` (0 at top level); bounded by the symbols of its file.
    pub(super) fn depth(&self, i: u32) -> u32 {
        let mut depth = 0;
        let mut at = self.syms[i as usize].parent;
        while at != NONE && depth < MAX_SYMBOLS_PER_FILE as u32 {
            depth += 1;
            at = self.syms.get(at as usize).map_or(NONE, |s| s.parent);
        }
        depth
    }

    /// Whether symbol `i` is top level: not nested in another definition, and not a
    /// method (a Go method or one in an `impl` block of another file is still a member).
    pub(super) fn top_level(&self, i: u32) -> bool {
        let s = &self.syms[i as usize];
        s.parent == NONE && s.kind != Kind::Method
    }

    /// Number of stored symbols.
    pub(super) fn len(&self) -> usize {
        self.syms.len()
    }
}

impl Shard {
    /// The answer form of symbol `i`.
    fn symbol(&self, i: u32) -> Symbol {
        let t = &self.symbols;
        let s = &t.syms[i as usize];
        let doc = &self.docs[s.doc as usize];
        Symbol {
            path: doc.path.clone(),
            language: self.lang(doc).to_owned(),
            name: t.name(i).to_owned(),
            kind: s.kind.as_str(),
            line: s.line + 1,
            start_line: s.start + 1,
            end_line: s.end + 1,
            container: (s.parent != NONE).then(|| t.name(s.parent).to_owned()),
            depth: t.depth(i),
        }
    }

    /// The outline of one file: its definitions in file order, with their nesting depth.
    pub fn outline(&self, path: &str) -> Vec<Symbol> {
        self.doc_of(path).map_or_else(Vec::new, |d| {
            self.symbols.of_doc(d).map(|i| self.symbol(i)).collect()
        })
    }

    /// Definitions named exactly `name` (case-sensitive), top level first, at most `limit`.
    pub fn definitions_named(&self, name: &str, limit: usize) -> Vec<Symbol> {
        let mut found = self.symbols.named(name, true);
        found.sort_by_key(|&i| {
            let s = &self.symbols.syms[i as usize];
            (
                !self.symbols.top_level(i),
                self.docs[s.doc as usize].path.len(),
                s.doc,
                s.line,
            )
        });
        found
            .into_iter()
            .take(limit)
            .map(|i| self.symbol(i))
            .collect()
    }

    /// Number of definitions stored in this shard.
    pub fn num_symbols(&self) -> usize {
        self.symbols.len()
    }

    /// Definitions matching `query`, best first (exact name, then name starting with the
    /// pattern, then top level, then shorter names and paths), and how many matched.
    pub fn find_symbols(&self, query: &SymbolQuery) -> Result<(Vec<Symbol>, usize), IndexError> {
        let matcher = SymMatcher::new(&query.pattern)?;
        let literal = matcher.literal.as_deref().map(str::to_ascii_lowercase);
        let mut found: Vec<(u8, u32)> = Vec::new();
        for i in self.symbols.matching(&matcher) {
            let s = &self.symbols.syms[i as usize];
            let name = self.symbols.name(i);
            if query.kind.is_some_and(|k| k != s.kind) {
                continue;
            }
            let doc = &self.docs[s.doc as usize];
            let lang = self.lang(doc);
            if !query.languages.is_empty()
                && !query.languages.iter().any(|l| l.eq_ignore_ascii_case(lang))
            {
                continue;
            }
            let closeness = if matcher.exact(name) {
                0
            } else if literal
                .as_deref()
                .is_some_and(|l| name.to_ascii_lowercase().starts_with(l))
            {
                1
            } else {
                2
            };
            found.push((closeness, i));
        }
        let total = found.len();
        found.sort_by_key(|&(closeness, i)| {
            let s = &self.symbols.syms[i as usize];
            (
                closeness,
                !self.symbols.top_level(i),
                self.symbols.name(i).len(),
                self.docs[s.doc as usize].path.len(),
                s.doc,
                s.line,
            )
        });
        Ok((
            found
                .into_iter()
                .take(query.limit)
                .map(|(_, i)| self.symbol(i))
                .collect(),
            total,
        ))
    }

    /// The documents defining a match of every one of `matchers`, with those symbols.
    pub(super) fn symbol_docs(&self, matchers: &[SymMatcher]) -> BTreeMap<u32, Vec<u32>> {
        let mut docs: BTreeMap<u32, (usize, Vec<u32>)> = BTreeMap::new();
        for (m, matcher) in matchers.iter().enumerate() {
            for i in self.symbols.matching(matcher) {
                let entry = docs.entry(self.symbols.syms[i as usize].doc).or_default();
                // Counts each matcher once per document: (matchers seen, symbols).
                if entry.0 == m {
                    entry.0 += 1;
                }
                entry.1.push(i);
            }
        }
        docs.into_iter()
            .filter(|(_, (seen, _))| *seen == matchers.len())
            .map(|(doc, (_, syms))| (doc, syms))
            .collect()
    }

    /// The documents defining a match of any of `matchers`.
    pub(super) fn symbol_excluded(&self, matchers: &[SymMatcher]) -> HashSet<u32> {
        if matchers.is_empty() {
            return HashSet::new();
        }
        matchers
            .iter()
            .flat_map(|m| self.symbols.matching(m))
            .map(|i| self.symbols.syms[i as usize].doc)
            .collect()
    }

    /// The definitions of each identifier (exact name, its case rule), by document.
    pub(super) fn identifier_defs(&self, identifiers: &[(String, bool)]) -> HashMap<u32, Vec<u32>> {
        let mut out: HashMap<u32, Vec<u32>> = HashMap::new();
        for (name, case_sensitive) in identifiers {
            for i in self.symbols.named(name, *case_sensitive) {
                out.entry(self.symbols.syms[i as usize].doc)
                    .or_default()
                    .push(i);
            }
        }
        out
    }

    /// The symbols of document `doc` that `query` names: `sym:` matches, and definitions
    /// of its identifier words (by their case rule).
    pub(super) fn defined_in(&self, doc: u32, query: &PreparedQuery) -> Vec<u32> {
        self.symbols
            .of_doc(doc)
            .filter(|&i| {
                let name = self.symbols.name(i);
                query.symbols.iter().any(|m| m.regex.is_match(name))
                    || query.identifiers.iter().any(|(w, cs)| {
                        if *cs {
                            w == name
                        } else {
                            w.eq_ignore_ascii_case(name)
                        }
                    })
            })
            .collect()
    }

    /// The ranking bonus of a file defining `syms`: top level above nested, and an exact
    /// name (`exact`) above a partial one.
    pub(super) fn definition_bonus(&self, syms: &[u32], exact: impl Fn(&str) -> bool) -> f32 {
        syms.iter()
            .map(|&i| {
                let top = if self.symbols.top_level(i) {
                    500.0
                } else {
                    0.0
                };
                let whole = if exact(self.symbols.name(i)) {
                    250.0
                } else {
                    0.0
                };
                DEFINITION_BONUS + top + whole
            })
            .fold(0.0, f32::max)
    }

    /// The (line index, name start, name end) of symbol `i`, for highlighting.
    pub(super) fn symbol_span(&self, i: u32) -> (usize, usize, usize) {
        let s = &self.symbols.syms[i as usize];
        let col = s.col as usize;
        (s.line as usize, col, col + self.symbols.name(i).len())
    }
}

/// Score added for a file that defines what was searched for; above every other tier
/// (path 2000 + word 1000 + BM25 < 900), so a definition always ranks above mere uses.
pub(super) const DEFINITION_BONUS: f32 = 4000.0;
