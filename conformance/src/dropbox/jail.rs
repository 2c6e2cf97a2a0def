//! The chroot: every path a client sends goes through here, and comes out as a path on disk
//! under the user's folder, or as a refusal.
//!
//! Two steps, so each can be reasoned about alone:
//! 1. [`Virtual::parse`] is pure: it reads the client's path as seen from the user's folder
//!    (`/` is the folder, a relative path starts there, `.` and empty parts vanish) and
//!    refuses a `..` that would climb above the folder. `/etc/passwd` is simply
//!    `<folder>/etc/passwd`, which does not exist.
//! 2. [`Jail::existing`] and [`Jail::creatable`] ask the file system: the path is resolved
//!    with every symbolic link followed, and refused unless the result is still inside the
//!    folder. A link someone left in the folder that points out cannot be read, written,
//!    listed through, or renamed.
//!
//! Not protected against: a local process swapping a folder for a link between the check and
//! the open (the drop box serves test data to one vendor; it is not a shared host).

use std::io;
use std::path::{Path, PathBuf};

use super::disk;

/// A client's path after parsing: the names below the user's folder, none of them `.`, `..`
/// or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Virtual(Vec<String>);

/// Why a path cannot be used.
#[derive(Debug)]
pub(super) enum Refusal {
    /// It leaves the user's folder.
    Outside,
    /// The file system said no (not found, not a folder, ...).
    Io(io::Error),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Io(e)
    }
}

impl Virtual {
    /// The user's folder itself.
    pub fn root() -> Virtual {
        Virtual(Vec::new())
    }

    /// Reads a client's path. Pure.
    pub fn parse(path: &str) -> Result<Virtual, Refusal> {
        let mut parts: Vec<String> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(Refusal::Outside);
                    }
                }
                name if name.contains('\0') => {
                    return Err(Refusal::Io(io::Error::new(io::ErrorKind::InvalidInput, "a name with NUL")))
                }
                name => parts.push(name.to_owned()),
            }
        }
        Ok(Virtual(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The folder it is in, and its own name; `None` for the root.
    pub fn split(&self) -> Option<(Virtual, &str)> {
        let (last, parent) = self.0.split_last()?;
        Some((Virtual(parent.to_vec()), last))
    }

    /// As the client sees it: `/inbox/a.xml`, or `/`.
    pub fn absolute(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// As the observer hears it: `inbox/a.xml`, or the empty string for the root.
    pub fn relative(&self) -> String {
        self.0.join("/")
    }
}

/// One user's folder.
#[derive(Debug)]
pub(super) struct Jail {
    /// Canonical (no links, absolute), so "inside" is a prefix test.
    root: PathBuf,
}

impl Jail {
    /// The jail of `root`, which is made if missing.
    pub async fn open(root: &Path) -> io::Result<Jail> {
        disk::create_dir_all(root).await?;
        Ok(Jail { root: disk::canonicalize(root).await? })
    }

    /// Where `v` is on disk, links not resolved (for `lstat`, after [`Jail::existing`]
    /// said it resolves inside).
    pub fn to_real(&self, v: &Virtual) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(&v.0);
        p
    }

    /// The path seen from the folder, if `real` (canonical) is inside it.
    pub fn to_virtual(&self, real: &Path) -> Option<Virtual> {
        let rest = real.strip_prefix(&self.root).ok()?;
        Some(Virtual(rest.iter().map(|c| c.to_string_lossy().into_owned()).collect()))
    }

    /// An existing file or folder, with links followed; refused if it leaves the folder.
    pub async fn existing(&self, v: &Virtual) -> Result<PathBuf, Refusal> {
        let real = disk::canonicalize(self.to_real(v)).await?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(Refusal::Outside)
        }
    }

    /// Where a new file or folder named `v` goes: its folder must exist inside the jail, and
    /// if the name is already there it must resolve inside too (a link pointing out, even a
    /// dangling one, is refused).
    pub async fn creatable(&self, v: &Virtual) -> Result<PathBuf, Refusal> {
        let Some((parent, name)) = v.split() else {
            // The folder itself always exists; creating it is the caller's refusal to make.
            return Ok(self.root.clone());
        };
        let candidate = self.existing(&parent).await?.join(name);
        match disk::symlink_metadata(&candidate).await {
            Ok(m) if m.file_type().is_symlink() => match disk::canonicalize(&candidate).await {
                Ok(real) if real.starts_with(&self.root) => Ok(real),
                _ => Err(Refusal::Outside),
            },
            Ok(_) => Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(candidate),
            Err(e) => Err(Refusal::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Option<String> {
        Virtual::parse(p).ok().map(|v| v.absolute())
    }

    #[test]
    fn paths_are_read_from_the_users_folder() {
        assert_eq!(parse("").as_deref(), Some("/"));
        assert_eq!(parse(".").as_deref(), Some("/"));
        assert_eq!(parse("/").as_deref(), Some("/"));
        assert_eq!(parse("inbox/a.xml").as_deref(), Some("/inbox/a.xml"));
        assert_eq!(parse("/inbox//./a.xml").as_deref(), Some("/inbox/a.xml"));
        assert_eq!(parse("inbox/../outbox").as_deref(), Some("/outbox"));
        assert_eq!(parse("/etc/passwd").as_deref(), Some("/etc/passwd"));
    }

    #[test]
    fn climbing_above_the_folder_is_refused() {
        for p in ["..", "../etc/passwd", "/..", "inbox/../../x", "/a/b/../../../c"] {
            assert!(matches!(Virtual::parse(p), Err(Refusal::Outside)), "{p}");
        }
        assert!(matches!(Virtual::parse("a\0b"), Err(Refusal::Io(_))));
    }

    #[test]
    fn names_for_the_observer_have_no_leading_slash() {
        let v = Virtual::parse("/inbox/a.xml").expect("parses");
        assert_eq!(v.relative(), "inbox/a.xml");
        assert_eq!(v.split().map(|(p, n)| (p.absolute(), n.to_owned())), Some(("/inbox".into(), "a.xml".into())));
        assert!(Virtual::root().is_root() && Virtual::root().split().is_none());
    }
}
