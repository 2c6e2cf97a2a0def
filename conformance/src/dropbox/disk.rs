//! The file system, off the runtime's threads: each call runs `std::fs` on tokio's blocking
//! pool. (tokio's own `fs` does the same; this keeps the crate from turning on that feature,
//! which would rebuild tokio and everything above it for the whole workspace.)

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Runs `op` on the blocking pool.
pub(super) async fn run<T: Send + 'static>(op: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(op).await.map_err(io::Error::other)?
}

fn owned(p: impl AsRef<Path>) -> PathBuf {
    p.as_ref().to_path_buf()
}

pub(super) async fn canonicalize(p: impl AsRef<Path>) -> io::Result<PathBuf> {
    let p = owned(p);
    run(move || std::fs::canonicalize(p)).await
}

pub(super) async fn metadata(p: impl AsRef<Path>) -> io::Result<Metadata> {
    let p = owned(p);
    run(move || std::fs::metadata(p)).await
}

pub(super) async fn symlink_metadata(p: impl AsRef<Path>) -> io::Result<Metadata> {
    let p = owned(p);
    run(move || std::fs::symlink_metadata(p)).await
}

pub(super) async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (owned(from), owned(to));
    run(move || std::fs::rename(from, to)).await
}

pub(super) async fn remove_file(p: impl AsRef<Path>) -> io::Result<()> {
    let p = owned(p);
    run(move || std::fs::remove_file(p)).await
}

pub(super) async fn create_dir(p: impl AsRef<Path>) -> io::Result<()> {
    let p = owned(p);
    run(move || std::fs::create_dir(p)).await
}

pub(super) async fn create_dir_all(p: impl AsRef<Path>) -> io::Result<()> {
    let p = owned(p);
    run(move || std::fs::create_dir_all(p)).await
}

pub(super) async fn remove_dir(p: impl AsRef<Path>) -> io::Result<()> {
    let p = owned(p);
    run(move || std::fs::remove_dir(p)).await
}

pub(super) async fn read_to_string(p: impl AsRef<Path>) -> io::Result<String> {
    let p = owned(p);
    run(move || std::fs::read_to_string(p)).await
}

pub(super) async fn open(options: OpenOptions, p: impl AsRef<Path>) -> io::Result<(File, Metadata)> {
    let p = owned(p);
    run(move || {
        let file = options.open(p)?;
        let meta = file.metadata()?;
        Ok((file, meta))
    })
    .await
}

/// A folder's entries with what each is itself (a link as a link), names as UTF-8 (lossy).
pub(super) async fn read_dir(p: impl AsRef<Path>) -> io::Result<Vec<(String, Metadata)>> {
    let p = owned(p);
    run(move || {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(p)? {
            let entry = entry?;
            // An entry that went away while listing is simply not listed.
            if let Ok(m) = entry.metadata() {
                entries.push((entry.file_name().to_string_lossy().into_owned(), m));
            }
        }
        Ok(entries)
    })
    .await
}
