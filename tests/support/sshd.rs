//! The local sshd the SFTP tests run against (the same one `carehub bench` uses), with
//! the panics a test wants instead of errors.

pub use carehub_devkit::sshd::LocalSshd;

/// A started sshd; panics if it cannot start (`scripts/test` installs openssh-server).
pub struct Sshd;

impl Sshd {
    #[allow(clippy::new_ret_no_self)]
    pub fn start() -> LocalSshd {
        LocalSshd::start().expect("a local sshd (scripts/test installs openssh-server)")
    }
}
