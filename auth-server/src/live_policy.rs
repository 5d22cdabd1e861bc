//! The policy in force, replaced whole when `AUTH_POLICY_FILE` is reloaded
//! (`SIGHUP`, or `AUTH_POLICY_RELOAD` noticing that the file changed).
//!
//! Requests never wait on a reload: a user's grant is worked out once per
//! remembered app token and tagged with the policy's generation, and the hot
//! path compares that tag with one atomic load. Only a request whose grant
//! is missing or from an older generation takes the read lock, to work the
//! grant out under the policy now in force. A reload swaps the policy and
//! bumps the generation under the write lock, so every credential issued
//! after [`LivePolicy::replace`] returns follows the new policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest as _, Sha256};

use crate::policy::{Policy, PolicyError};

/// A policy and the generation it belongs to.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The policy.
    pub(crate) policy: Policy,
    /// 0 for the policy the server started with, one more per reload.
    pub(crate) generation: u64,
}

/// What the file held when it was last read, for the poller: a reload is
/// tried only when this changes, so a broken or missing file is reported
/// once, not at every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The SHA-256 of its contents.
    Contents([u8; 32]),
    /// It could not be read.
    Unreadable,
}

/// The policy in force and where it comes from.
#[derive(Debug)]
pub(crate) struct LivePolicy {
    current: RwLock<Arc<Snapshot>>,
    /// The current snapshot's generation, readable without the lock.
    generation: AtomicU64,
    file: Option<PathBuf>,
    /// What a reload or the poller last read; `None` before the first look.
    seen: Mutex<Option<Seen>>,
}

/// Why a reload left the old policy in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyReloadError {
    /// `AUTH_POLICY_FILE` is not set: there is nothing to reload.
    #[error("AUTH_POLICY_FILE is not set: there is no policy file to reload")]
    NoPolicyFile,
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse; the error has its line and column.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: PolicyError,
    },
}

impl LivePolicy {
    /// `policy` in force from the start, read from `file` if there is one.
    /// The file is read once more for the poller's baseline; if it no longer
    /// holds `policy`, the first poll reloads it.
    pub(crate) fn new(policy: Policy, file: Option<PathBuf>) -> Self {
        let seen = file.as_deref().and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            (Policy::from_toml(&text).ok()? == policy).then(|| Seen::Contents(digest(&text)))
        });
        Self {
            current: RwLock::new(Arc::new(Snapshot {
                policy,
                generation: 0,
            })),
            generation: AtomicU64::new(0),
            file,
            seen: Mutex::new(seen),
        }
    }

    /// The generation in force: one atomic load, for the hot path.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The policy in force, with its generation.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads and parses the file, and puts it in force; returns the new
    /// generation. On an error the policy in force stays.
    pub(crate) fn reload(&self) -> Result<u64, PolicyReloadError> {
        let path = self
            .file
            .as_deref()
            .ok_or(PolicyReloadError::NoPolicyFile)?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) => {
                self.saw(Seen::Unreadable);
                return Err(PolicyReloadError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        self.saw(Seen::Contents(digest(&text)));
        let policy = Policy::from_toml(&text).map_err(|source| PolicyReloadError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Ok(self.replace(policy))
    }

    /// Puts `policy` in force; returns its generation.
    pub(crate) fn replace(&self, policy: Policy) -> u64 {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let generation = current.generation + 1;
        *current = Arc::new(Snapshot { policy, generation });
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// Whether the file now holds something other than what was last read
    /// (the poller's question). Without a file, never.
    pub(crate) fn changed_on_disk(&self) -> bool {
        let Some(path) = self.file.as_deref() else {
            return false;
        };
        let now = look(path);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != Some(now)
    }

    /// The policy file, if there is one.
    pub(crate) fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn saw(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
    }
}

fn look(path: &Path) -> Seen {
    std::fs::read_to_string(path).map_or(Seen::Unreadable, |text| Seen::Contents(digest(&text)))
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "auth-server-live-policy-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_reload_bumps_the_generation_and_a_broken_file_keeps_the_old_policy() {
        let first = "[default]\n\"chat:*\" = [\"subscribe\"]\n";
        let path = temp_file("reload", first);
        let live = LivePolicy::new(Policy::from_toml(first).unwrap(), Some(path.clone()));
        assert!(
            !live.changed_on_disk(),
            "the baseline is the file as loaded"
        );

        std::fs::write(&path, "[default]\n\"news:*\" = [\"subscribe\"]\n").unwrap();
        assert!(live.changed_on_disk());
        assert_eq!(live.reload().unwrap(), 1);
        assert!(!live.changed_on_disk());
        let after_reload = live.snapshot();

        std::fs::write(&path, "[default]\n\"news:*\" = [\"subscrib\"]\n").unwrap();
        let err = live.reload().unwrap_err();

        assert!(
            matches!(&err, PolicyReloadError::Parse { source, .. } if source.line == 2 && source.column == 13),
            "{err:?}"
        );
        assert!(!live.changed_on_disk(), "a broken file is reported once");
        assert_eq!(live.generation(), 1);
        assert!(Arc::ptr_eq(&live.snapshot(), &after_reload));
        assert_eq!(
            after_reload
                .policy
                .capability_for("alice", &[])
                .to_canonical_string(),
            r#"{"news:*":["subscribe"]}"#
        );
        std::fs::remove_file(&path).unwrap();
        assert!(live.changed_on_disk(), "a file that went is a change");
        assert!(matches!(live.reload(), Err(PolicyReloadError::Read { .. })));
        assert!(!live.changed_on_disk());
    }

    #[test]
    fn without_a_file_there_is_nothing_to_reload() {
        let live = LivePolicy::new(Policy::default(), None);

        assert!(matches!(
            live.reload(),
            Err(PolicyReloadError::NoPolicyFile)
        ));
        assert!(!live.changed_on_disk());
        assert_eq!(live.generation(), 0);
    }
}
