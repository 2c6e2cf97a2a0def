//! The SFTP operations on one user's folder (SFTP version 3, draft-ietf-secsh-filexfer-02),
//! each answered with a proper status code, and the events they report.
//!
//! Requests on one channel are answered one at a time, in order (`russh-sftp` runs the
//! handler sequentially), so when a client has its answer to a write, the write is on disk,
//! and when it has its answer to a close, the observer has been told.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::{Handler, StatusReply};
use tracing::debug;

use carehub_core::delivery::poller::shown;

use super::disk;
use super::jail::{Jail, Refusal, Virtual};
use super::{DropboxEvent, DropboxOp, Observer};

/// The most bytes one read answers with; clients ask for 32 KiB to 256 KiB.
const MAX_READ: u32 = 256 * 1024;
/// Names per `readdir` answer.
const NAMES_PER_READDIR: usize = 100;
/// Handles one session may hold open at once.
const MAX_HANDLES: usize = 256;
/// The OpenSSH extension that renames over an existing file.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn refuse(code: StatusCode, message: impl Into<String>) -> StatusReply {
    code.with_message(message)
}

/// An IO error as SFTP sees it. The message names the client's path, never the disk's.
fn io_status(e: &io::Error, path: &Virtual) -> StatusReply {
    let shown = path.absolute();
    match e.kind() {
        io::ErrorKind::NotFound => refuse(StatusCode::NoSuchFile, format!("{shown}: no such file")),
        io::ErrorKind::PermissionDenied => refuse(StatusCode::PermissionDenied, format!("{shown}: permission denied")),
        io::ErrorKind::AlreadyExists => refuse(StatusCode::Failure, format!("{shown}: already exists")),
        io::ErrorKind::DirectoryNotEmpty => refuse(StatusCode::Failure, format!("{shown}: folder not empty")),
        io::ErrorKind::IsADirectory => refuse(StatusCode::Failure, format!("{shown}: is a folder")),
        io::ErrorKind::NotADirectory => refuse(StatusCode::NoSuchFile, format!("{shown}: not a folder")),
        io::ErrorKind::InvalidInput => refuse(StatusCode::BadMessage, format!("{shown}: not a valid name")),
        _ => refuse(StatusCode::Failure, format!("{shown}: {}", e.kind())),
    }
}

fn refusal(r: Refusal, path: &Virtual) -> StatusReply {
    match r {
        Refusal::Outside => refuse(StatusCode::PermissionDenied, "outside the drop box"),
        Refusal::Io(e) => io_status(&e, path),
    }
}

fn parse(path: &str) -> Result<Virtual, StatusReply> {
    Virtual::parse(path).map_err(|r| refusal(r, &Virtual::root()))
}

/// A file's attributes as SFTP v3 carries them (type bits in the permissions).
fn attributes(m: &std::fs::Metadata) -> FileAttributes {
    use std::os::unix::fs::MetadataExt;
    let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
    FileAttributes {
        size: Some(m.len()),
        uid: Some(m.uid()),
        user: None,
        gid: Some(m.gid()),
        group: None,
        permissions: Some(m.mode()),
        atime: Some(secs(m.atime())),
        mtime: Some(secs(m.mtime())),
    }
}

/// What an SFTP handle stands for.
enum Open {
    File {
        /// Shared with the blocking pool while a read or write runs.
        file: Arc<std::fs::File>,
        path: Virtual,
        /// Opened to write: closing it reports [`DropboxOp::Written`].
        writing: bool,
        append: bool,
    },
    Dir {
        entries: VecDeque<File>,
    },
}

/// One SFTP session: a user, their folder, their open handles.
pub(super) struct Files {
    user: String,
    jail: Jail,
    observer: Observer,
    handles: HashMap<String, Open>,
    next_handle: u64,
}

impl Files {
    pub fn new(user: String, jail: Jail, observer: Observer) -> Files {
        Files { user, jail, observer, handles: HashMap::new(), next_handle: 0 }
    }

    fn tell(&self, op: DropboxOp, path: &Virtual, size: u64) {
        debug!(user = %self.user, op = ?op, path = %shown(&path.relative()), size, "dropbox change");
        (self.observer)(DropboxEvent { user: self.user.clone(), op, path: path.relative(), size });
    }

    fn add_handle(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(refuse(StatusCode::Failure, "too many open handles"));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    async fn existing(&self, path: &Virtual) -> Result<PathBuf, StatusReply> {
        self.jail.existing(path).await.map_err(|r| refusal(r, path))
    }

    async fn creatable(&self, path: &Virtual) -> Result<PathBuf, StatusReply> {
        self.jail.creatable(path).await.map_err(|r| refusal(r, path))
    }

    async fn rename_to(&mut self, id: u32, old: String, new: String, replace: bool) -> Result<Status, StatusReply> {
        let (from, to) = (parse(&old)?, parse(&new)?);
        if from.is_root() || to.is_root() {
            return Err(refuse(StatusCode::PermissionDenied, "the drop box's own folder cannot be renamed"));
        }
        let real_from = self.existing(&from).await?;
        let real_to = self.creatable(&to).await?;
        if !replace && disk::symlink_metadata(&real_to).await.is_ok() {
            // SFTP v3, as OpenSSH: a plain rename never replaces a file.
            return Err(refuse(StatusCode::Failure, format!("{}: already exists", to.absolute())));
        }
        let size = disk::metadata(&real_from).await.map(|m| if m.is_dir() { 0 } else { m.len() }).unwrap_or(0);
        disk::rename(&real_from, &real_to).await.map_err(|e| io_status(&e, &to))?;
        self.tell(DropboxOp::Renamed { from: from.relative() }, &to, size);
        Ok(ok(id))
    }
}

impl Drop for Files {
    /// The connection ended: files still open for writing were never finished.
    fn drop(&mut self) {
        let abandoned: Vec<(Virtual, PathBuf)> = self
            .handles
            .drain()
            .filter_map(|(_, open)| match open {
                Open::File { path, writing: true, .. } => Some(path),
                _ => None,
            })
            .map(|v| {
                let real = self.jail.to_real(&v);
                (v, real)
            })
            .collect();
        if abandoned.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (user, observer) = (self.user.clone(), self.observer.clone());
        // The size needs the disk, which is not for a drop on the runtime's threads.
        runtime.spawn_blocking(move || {
            for (path, real) in abandoned {
                let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
                observer(DropboxEvent { user: user.clone(), op: DropboxOp::Abandoned, path: path.relative(), size });
            }
        });
    }
}

impl Handler for Files {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        refuse(StatusCode::OpUnsupported, "not supported by the drop box")
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, StatusReply> {
        let mut v = Version::new();
        v.extensions.insert(POSIX_RENAME.into(), "1".into());
        Ok(v)
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        let v = parse(&path)?;
        // Links inside the folder resolve to where they lead; a path not there yet stays as
        // written (clients ask before they upload).
        let resolved = match self.jail.existing(&v).await {
            Ok(real) => self.jail.to_virtual(&real).unwrap_or(v),
            Err(Refusal::Outside) => return Err(refusal(Refusal::Outside, &v)),
            Err(Refusal::Io(_)) => v,
        };
        Ok(Name { id, files: vec![File::dummy(resolved.absolute())] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let v = parse(&path)?;
        let real = self.existing(&v).await?;
        let m = disk::metadata(&real).await.map_err(|e| io_status(&e, &v))?;
        Ok(Attrs { id, attrs: attributes(&m) })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        // Only paths that resolve inside are answered; the answer is about the name itself.
        let v = parse(&path)?;
        self.existing(&v).await?;
        let m = disk::symlink_metadata(self.jail.to_real(&v)).await.map_err(|e| io_status(&e, &v))?;
        Ok(Attrs { id, attrs: attributes(&m) })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        match self.handles.get(&handle) {
            Some(Open::File { file, path, .. }) => {
                let file = file.clone();
                let m = disk::run(move || file.metadata()).await.map_err(|e| io_status(&e, path))?;
                Ok(Attrs { id, attrs: attributes(&m) })
            }
            Some(Open::Dir { .. }) => Err(refuse(StatusCode::Failure, "a folder handle")),
            None => Err(refuse(StatusCode::Failure, "no such handle")),
        }
    }

    async fn setstat(&mut self, id: u32, path: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        // Accepted and ignored (clients set times and modes after uploading), but only on a
        // path inside the folder.
        let v = parse(&path)?;
        self.existing(&v).await?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        if self.handles.contains_key(&handle) {
            Ok(ok(id))
        } else {
            Err(refuse(StatusCode::Failure, "no such handle"))
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        let v = parse(&path)?;
        let real = self.existing(&v).await?;
        // What each entry is itself (a link shows as a link, wherever it leads).
        let listed = disk::read_dir(&real).await.map_err(|e| io_status(&e, &v))?;
        let entries: VecDeque<File> = listed.into_iter().map(|(name, m)| File::new(name, attributes(&m))).collect();
        let handle = self.add_handle(Open::Dir { entries })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        let Some(Open::Dir { entries }) = self.handles.get_mut(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such folder handle"));
        };
        if entries.is_empty() {
            return Err(refuse(StatusCode::Eof, "end of folder"));
        }
        let n = entries.len().min(NAMES_PER_READDIR);
        Ok(Name { id, files: entries.drain(..n).collect() })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, StatusReply> {
        let v = parse(&filename)?;
        if v.is_root() {
            return Err(refuse(StatusCode::Failure, "/: is a folder"));
        }
        let create = pflags.contains(OpenFlags::CREATE);
        let append = pflags.contains(OpenFlags::APPEND);
        let writing = pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let real = if create { self.creatable(&v).await? } else { self.existing(&v).await? };
        let mut options = std::fs::OpenOptions::new();
        options.read(pflags.contains(OpenFlags::READ) || !writing);
        options.write(writing && !append);
        options.append(append);
        if create && pflags.contains(OpenFlags::EXCLUDE) {
            options.create_new(true);
        } else {
            options.create(create);
        }
        options.truncate(pflags.contains(OpenFlags::TRUNCATE));
        let (file, meta) = disk::open(options, &real).await.map_err(|e| io_status(&e, &v))?;
        if meta.is_dir() {
            return Err(refuse(StatusCode::Failure, format!("{}: is a folder", v.absolute())));
        }
        let handle = self.add_handle(Open::File { file: Arc::new(file), path: v, writing, append })?;
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, StatusReply> {
        let Some(Open::File { file, path, .. }) = self.handles.get(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such file handle"));
        };
        let file = file.clone();
        let wanted = len.min(MAX_READ) as usize;
        let (mut data, filled) = disk::run(move || {
            let mut data = vec![0u8; wanted];
            let mut filled = 0;
            while filled < data.len() {
                let n = file.read_at(&mut data[filled..], offset + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            Ok((data, filled))
        })
        .await
        .map_err(|e| io_status(&e, path))?;
        if filled == 0 && wanted > 0 {
            return Err(refuse(StatusCode::Eof, "end of file"));
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, StatusReply> {
        let Some(Open::File { file, path, writing, append }) = self.handles.get(&handle) else {
            return Err(refuse(StatusCode::Failure, "no such file handle"));
        };
        if !*writing {
            return Err(refuse(StatusCode::PermissionDenied, format!("{}: opened for reading", path.absolute())));
        }
        let (file, append) = (file.clone(), *append);
        // Done when answered: the bytes are in the file, where any reader sees them.
        disk::run(move || {
            if append {
                // Opened with O_APPEND: every write goes to the end, whatever the offset.
                std::io::Write::write_all(&mut &*file, &data)
            } else {
                file.write_all_at(&data, offset)
            }
        })
        .await
        .map_err(|e| io_status(&e, path))?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        match self.handles.remove(&handle) {
            Some(Open::File { file, path, writing: true, .. }) => {
                // The file closes on the blocking pool when its last reference goes, here.
                let size = disk::run(move || file.metadata()).await.map(|m| m.len()).unwrap_or(0);
                self.tell(DropboxOp::Written, &path, size);
                Ok(ok(id))
            }
            Some(_) => Ok(ok(id)),
            None => Err(refuse(StatusCode::Failure, "no such handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, StatusReply> {
        let v = parse(&filename)?;
        let real = self.existing(&v).await?;
        let m = disk::metadata(&real).await.map_err(|e| io_status(&e, &v))?;
        if m.is_dir() {
            return Err(refuse(StatusCode::Failure, format!("{}: is a folder (rmdir)", v.absolute())));
        }
        disk::remove_file(&real).await.map_err(|e| io_status(&e, &v))?;
        self.tell(DropboxOp::Removed, &v, m.len());
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, _attrs: FileAttributes) -> Result<Status, StatusReply> {
        let v = parse(&path)?;
        if v.is_root() {
            return Err(refuse(StatusCode::Failure, "/: already exists"));
        }
        let real = self.creatable(&v).await?;
        disk::create_dir(&real).await.map_err(|e| io_status(&e, &v))?;
        self.tell(DropboxOp::MadeDir, &v, 0);
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, StatusReply> {
        let v = parse(&path)?;
        if v.is_root() {
            return Err(refuse(StatusCode::PermissionDenied, "the drop box's own folder cannot be removed"));
        }
        let real = self.existing(&v).await?;
        disk::remove_dir(&real).await.map_err(|e| io_status(&e, &v))?;
        self.tell(DropboxOp::RemovedDir, &v, 0);
        Ok(ok(id))
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, StatusReply> {
        self.rename_to(id, oldpath, newpath, false).await
    }

    async fn symlink(&mut self, _id: u32, _linkpath: String, _targetpath: String) -> Result<Status, StatusReply> {
        Err(refuse(StatusCode::PermissionDenied, "the drop box makes no links"))
    }

    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Result<Packet, StatusReply> {
        if request != POSIX_RENAME {
            return Err(self.unimplemented());
        }
        let mut rest = data.as_slice();
        let (Some(old), Some(new)) = (ssh_string(&mut rest), ssh_string(&mut rest)) else {
            return Err(refuse(StatusCode::BadMessage, "posix-rename needs two paths"));
        };
        Ok(Packet::Status(self.rename_to(id, old, new, true).await?))
    }
}

/// Reads one SSH `string` (u32 length, then UTF-8 bytes) off the front of `data`.
fn ssh_string(data: &mut &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let bytes = data.get(4..4 + len)?;
    let s = String::from_utf8(bytes.to_vec()).ok()?;
    *data = &data[4 + len..];
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_rename_reads_two_strings() {
        let mut data = Vec::new();
        for s in ["a.tmp", "inbox/a.xml"] {
            data.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        let mut rest = data.as_slice();
        assert_eq!(ssh_string(&mut rest).as_deref(), Some("a.tmp"));
        assert_eq!(ssh_string(&mut rest).as_deref(), Some("inbox/a.xml"));
        assert_eq!(ssh_string(&mut rest), None);
        assert_eq!(ssh_string(&mut &[0u8, 0, 0, 9, b'x'][..]), None);
    }

    #[test]
    fn io_errors_name_the_clients_path_only() {
        let v = Virtual::parse("/inbox/a.xml").expect("parses");
        let r = io_status(&io::Error::from(io::ErrorKind::NotFound), &v);
        assert_eq!(r.status_code, StatusCode::NoSuchFile);
        assert_eq!(r.error_message.as_deref(), Some("/inbox/a.xml: no such file"));
        let r = refusal(Refusal::Outside, &v);
        assert_eq!(r.status_code, StatusCode::PermissionDenied);
    }
}
