//! A lock on a run folder, so that two trainers (or a trainer and anything else that writes
//! checkpoints there) never write one folder at once: the second is refused with a one-line
//! error naming the holder. The lock is a file `.nvg-lock` created exclusively, holding the
//! holder's process id; it is removed when the lock is dropped. A lock whose process no longer
//! runs (a trainer killed with -9, a crashed machine) is stale and taken over, with a note.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the folder.
pub const LOCK_FILE: &str = ".nvg-lock";

/// A held lock; dropping it releases the folder.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("{}: in use by process {pid} ({what}); wait for it to finish or stop it (if no such process runs, delete {})", .dir.display(), .lock.display())]
    Busy {
        /// The folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's process id.
        pid: u32,
        /// What the holder said it does.
        what: String,
    },
    /// The lock file could not be written or read.
    #[error("{}: cannot lock ({reason})", .dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// Cause.
        reason: String,
    },
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists (EPERM: it exists but belongs to someone else).
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl RunLock {
    /// Locks `dir` (created if missing) for `what` (e.g. "train-generator"). Returns the lock
    /// and, when a stale lock was taken over, a note saying so.
    pub fn acquire(dir: &Path, what: &str) -> Result<(Self, Option<String>), LockError> {
        let io = |e: std::io::Error| LockError::Io { dir: dir.to_path_buf(), reason: e.to_string() };
        fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut note = None;
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{} {what}", std::process::id()).and_then(|()| f.sync_all()).map_err(io)?;
                    return Ok((Self { path }, note));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    let mut parts = text.trim().splitn(2, ' ');
                    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
                    let holder = parts.next().unwrap_or("").to_string();
                    match pid {
                        Some(pid) if pid != std::process::id() && alive(pid) => {
                            return Err(LockError::Busy { dir: dir.to_path_buf(), lock: path, pid, what: holder });
                        }
                        // A stale lock (its process is gone, or the file is half written): take it over.
                        _ => {
                            note = Some(format!(
                                "took over a stale lock in {} (process {} no longer runs)",
                                dir.display(),
                                pid.map_or("?".to_string(), |p| p.to_string())
                            ));
                            match fs::remove_file(&path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => return Err(io(e)),
                            }
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Io { dir: dir.to_path_buf(), reason: "the lock file keeps changing under us".into() })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_stale_lock_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let (lock, note) = RunLock::acquire(d.path(), "first").unwrap();
        assert!(note.is_none());
        // The same process again counts as stale (its own leftover), so simulate another holder:
        // the parent of this process is alive.
        drop(lock);
        let parent = unsafe { libc::getppid() } as u32;
        fs::write(d.path().join(LOCK_FILE), format!("{parent} train-generator\n")).unwrap();
        let e = RunLock::acquire(d.path(), "second").unwrap_err().to_string();
        assert!(e.contains(&format!("in use by process {parent} (train-generator)")) && !e.contains('\n'), "{e}");
        // A lock of a process that does not run is stale.
        fs::write(d.path().join(LOCK_FILE), "4194303 train-tokenizer\n").unwrap();
        let (lock, note) = RunLock::acquire(d.path(), "third").unwrap();
        assert!(note.unwrap().contains("stale"));
        assert!(d.path().join(LOCK_FILE).exists());
        drop(lock);
        assert!(!d.path().join(LOCK_FILE).exists(), "dropping the lock frees the folder");
    }
}
