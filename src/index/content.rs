//! The shard's files on disk: `content.bin` (each file's bytes, lz4 when that is smaller,
//! addressed by offset and length), the in-memory cache of decoded files shared by all open
//! shards, and the directory tantivy writes a shard through, which leaves fsync to one pass
//! over the finished shard.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tantivy::Directory;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, DirectoryLock, FileHandle, Lock, MmapDirectory, TerminatingWrite, WatchCallback,
    WatchHandle, WritePtr,
};

use super::IndexError;

/// The bytes to store for a file: lz4-compressed when strictly smaller, else the raw bytes.
/// A reader tells them apart by comparing the stored length with the file size.
pub(crate) fn encode(raw: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0; lz4_flex::block::get_maximum_output_size(raw.len())];
    match lz4_flex::block::compress_into(&raw, &mut out) {
        Ok(n) if n < raw.len() => {
            out.truncate(n);
            out
        }
        _ => raw,
    }
}

/// Appends stored file bytes to `content.bin`.
pub(crate) struct ContentWriter {
    file: BufWriter<File>,
    offset: u64,
}

impl ContentWriter {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> io::Result<ContentWriter> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(ContentWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
        })
    }

    /// Appends `stored` and returns the offset it starts at.
    pub(crate) fn append(&mut self, stored: &[u8]) -> io::Result<u64> {
        let at = self.offset;
        self.file.write_all(stored)?;
        self.offset += stored.len() as u64;
        Ok(at)
    }

    /// Flushes and fsyncs the file.
    pub(crate) fn finish(self) -> io::Result<()> {
        let file = self
            .file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()
    }
}

/// Decoded file contents of recently read files, shared by all shards up to a byte budget,
/// least recently used out first: a file a query verifies again is not read and
/// decompressed again. A shard's entries go when its reader is dropped (replaced or purged).
pub struct ContentCache {
    budget: usize,
    inner: Mutex<Cached>,
}

type Key = (u64, u64, u64);

struct Cached {
    /// (reader id, offset in `content.bin`, stored length) → the decoded bytes. The length
    /// belongs to the key: an empty file shares its offset with the file after it.
    files: lru::LruCache<Key, Arc<[u8]>>,
    bytes: usize,
}

impl ContentCache {
    /// A cache holding up to `budget` bytes (0: nothing is kept).
    pub fn new(budget: usize) -> ContentCache {
        ContentCache {
            budget,
            inner: Mutex::new(Cached {
                files: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// Decoded bytes held now (for tests and the log).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn get(&self, key: Key) -> Option<Arc<[u8]>> {
        self.lock().files.get(&key).cloned()
    }

    fn put(&self, key: Key, content: &Arc<[u8]>) {
        // One large file may not push out everything else; an empty one is not worth a slot.
        if content.is_empty() || content.len() > self.budget / 16 {
            return;
        }
        let mut cached = self.lock();
        if let Some(old) = cached.files.put(key, content.clone()) {
            cached.bytes -= old.len();
        }
        cached.bytes += content.len();
        while cached.bytes > self.budget {
            match cached.files.pop_lru() {
                Some((_, gone)) => cached.bytes -= gone.len(),
                None => break,
            }
        }
    }

    /// Forgets every file of one reader.
    fn forget(&self, reader: u64) {
        let mut cached = self.lock();
        let keys: Vec<Key> = cached
            .files
            .iter()
            .filter(|((r, ..), _)| *r == reader)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(gone) = cached.files.pop(&key) {
                cached.bytes -= gone.len();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tells readers apart in the shared cache.
static NEXT_READER: AtomicU64 = AtomicU64::new(1);

/// Reads file bytes back from `content.bin` (positioned reads, shareable across threads).
pub(crate) struct ContentReader {
    file: File,
    len: u64,
    id: u64,
    cache: Option<Arc<ContentCache>>,
}

impl Drop for ContentReader {
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.forget(self.id);
        }
    }
}

impl ContentReader {
    /// Opens `content.bin`, keeping what it decodes in `cache` if given.
    pub(crate) fn open(path: &Path, cache: Option<Arc<ContentCache>>) -> io::Result<ContentReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(ContentReader {
            file,
            len,
            id: NEXT_READER.fetch_add(1, Ordering::Relaxed),
            // A cache of no bytes is no cache: reads skip its lock.
            cache: cache.filter(|c| c.budget > 0),
        })
    }

    /// The decoded bytes of the file stored at `offset` (`stored` bytes, `size` bytes once
    /// decoded).
    pub(crate) fn read(&self, address: (u64, u64, u64)) -> Result<Arc<[u8]>, IndexError> {
        let key = (self.id, address.0, address.1);
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(key)) {
            return Ok(hit);
        }
        let content: Arc<[u8]> = self.decode(address)?.into();
        if let Some(cache) = &self.cache {
            cache.put(key, &content);
        }
        Ok(content)
    }

    fn decode(&self, (offset, stored, size): (u64, u64, u64)) -> Result<Vec<u8>, IndexError> {
        let corrupt = || IndexError::Corrupt(format!("bad content address {offset}+{stored}"));
        let end = offset.checked_add(stored).ok_or_else(corrupt)?;
        // lz4 cannot expand more than 255×, so a larger size means a damaged shard.
        if end > self.len || stored > size || size > stored.saturating_mul(256) + 64 {
            return Err(corrupt());
        }
        let (stored, size) = (stored as usize, size as usize);
        let mut raw = vec![0; stored];
        self.file.read_exact_at(&mut raw, offset)?;
        if stored == size {
            return Ok(raw);
        }
        let mut out = vec![0; size];
        match lz4_flex::block::decompress_into(&raw, &mut out) {
            Ok(n) if n == size => Ok(out),
            _ => Err(corrupt()),
        }
    }
}

/// fsyncs every file in `dir` and then `dir` itself.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// An [`MmapDirectory`] whose writes are never fsynced: a shard is built in a scratch
/// directory and synced once when complete ([`sync_dir`]), instead of once per file.
#[derive(Clone, Debug)]
pub(crate) struct BuildDirectory {
    inner: MmapDirectory,
    root: PathBuf,
}

impl BuildDirectory {
    /// Opens the existing, empty directory `root`.
    pub(crate) fn open(root: &Path) -> Result<BuildDirectory, IndexError> {
        let inner = MmapDirectory::open(root)
            .map_err(|e| IndexError::Io(io::Error::other(e.to_string())))?;
        Ok(BuildDirectory {
            inner,
            root: root.to_path_buf(),
        })
    }
}

/// A file writer that only flushes on terminate.
struct NoSyncWriter(File);

impl Write for NoSyncWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl TerminatingWrite for NoSyncWriter {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.0.flush()
    }
}

impl Directory for BuildDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(path))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    OpenWriteError::wrap_io_error(e, path.to_path_buf())
                }
            })?;
        Ok(BufWriter::new(Box::new(NoSyncWriter(file))))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // Nobody reads the shard while it is built, so a plain write is enough.
        std::fs::write(self.root.join(path), data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(callback)
    }
}
