//! The shard's files on disk: `content.bin` (each file's bytes, lz4 when that is smaller,
//! addressed by offset and length), and the directory tantivy writes a shard through, which
//! leaves fsync to one pass over the finished shard.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Reads file bytes back from `content.bin` (positioned reads, shareable across threads).
#[derive(Debug)]
pub(crate) struct ContentReader {
    file: File,
    len: u64,
}

impl ContentReader {
    /// Opens `content.bin`.
    pub(crate) fn open(path: &Path) -> io::Result<ContentReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(ContentReader { file, len })
    }

    /// Reads the file stored at `offset` (`stored` bytes, `size` bytes once decoded) into
    /// `out`, using `scratch` for compressed bytes.
    pub(crate) fn read(
        &self,
        (offset, stored, size): (u64, u64, u64),
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), IndexError> {
        let corrupt = || IndexError::Corrupt(format!("bad content address {offset}+{stored}"));
        let end = offset.checked_add(stored).ok_or_else(corrupt)?;
        // lz4 cannot expand more than 255×, so a larger size means a damaged shard.
        if end > self.len || stored > size || size > stored.saturating_mul(256) + 64 {
            return Err(corrupt());
        }
        let (stored, size) = (stored as usize, size as usize);
        if stored == size {
            out.resize(size, 0);
            self.file.read_exact_at(out, offset)?;
            return Ok(());
        }
        scratch.resize(stored, 0);
        self.file.read_exact_at(scratch, offset)?;
        out.resize(size, 0);
        match lz4_flex::block::decompress_into(scratch, out) {
            Ok(n) if n == size => Ok(()),
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
