//! The shard's tantivy schema: field names and options, shared by building and searching.

use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};

use super::IndexError;
use super::tokens::{CODE_TOKENIZER, CodeTokenizer};

/// Name of the file holding the files' bytes, beside the `index/` directory.
pub(crate) const CONTENT_FILE: &str = "content.bin";
/// Name of the tantivy index directory inside a shard.
pub(crate) const INDEX_DIR: &str = "index";

/// Path in the repository (fast string).
pub(crate) const PATH: &str = "path";
/// Language name (fast string).
pub(crate) const LANG: &str = "lang";
/// Size of the file in bytes (fast u64).
pub(crate) const SIZE: &str = "size";
/// Offset of the file's stored bytes in `content.bin` (fast u64).
pub(crate) const OFFSET: &str = "offset";
/// Length of the stored bytes; lz4-compressed when smaller than `size` (fast u64).
pub(crate) const STORED: &str = "stored";
/// Distinct folded trigrams of the content (indexed u64, doc ids only).
pub(crate) const TRIGRAMS: &str = "trigrams";
/// Word tokens of content and path (text, with term frequencies for BM25).
pub(crate) const WORDS: &str = "words";

/// The fields of a shard.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub path: Field,
    pub lang: Field,
    pub size: Field,
    pub offset: Field,
    pub stored: Field,
    pub trigrams: Field,
    pub words: Field,
}

impl Fields {
    /// Looks the fields up in a shard's schema.
    pub(crate) fn from_schema(schema: &Schema) -> Result<Fields, IndexError> {
        let get = |name: &str| {
            schema
                .get_field(name)
                .map_err(|_| IndexError::Corrupt(format!("field {name} missing from schema")))
        };
        Ok(Fields {
            path: get(PATH)?,
            lang: get(LANG)?,
            size: get(SIZE)?,
            offset: get(OFFSET)?,
            stored: get(STORED)?,
            trigrams: get(TRIGRAMS)?,
            words: get(WORDS)?,
        })
    }
}

/// The schema every shard is built with.
pub(crate) fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field(PATH, TextOptions::default().set_fast("raw"));
    b.add_text_field(LANG, TextOptions::default().set_fast("raw"));
    let fast_u64 = NumericOptions::default().set_fast();
    b.add_u64_field(SIZE, fast_u64.clone());
    b.add_u64_field(OFFSET, fast_u64.clone());
    b.add_u64_field(STORED, fast_u64);
    b.add_u64_field(TRIGRAMS, INDEXED);
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(CODE_TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    b.add_text_field(WORDS, words);
    b.build()
}

/// The tokenizers a shard needs, with [`CodeTokenizer`] registered.
pub(crate) fn tokenizers() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(CODE_TOKENIZER, TextAnalyzer::from(CodeTokenizer::default()));
    manager
}
