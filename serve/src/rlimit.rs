//! The open-files limit (`RLIMIT_NOFILE`): every connection holds a file
//! descriptor, and many systems still start processes with a soft limit of
//! 1024 while allowing far more.

/// Raises the soft open-files limit to the hard limit (Unix; elsewhere it
/// does nothing), logs the result at debug level, and returns the soft limit
/// now in force (`None` when unlimited or unknown).
///
/// Call it once at start-up, before serving: the connection cap of
/// [`serve`](crate::serve) is lowered to fit the limit it finds. A failure
/// is logged, never fatal: the process runs with the limit it was given.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

        let limit = getrlimit(Resource::Nofile);
        if limit.current == limit.maximum {
            tracing::debug!(open_files_limit = ?limit.current, "open-files limit already at the hard limit");
            return limit.current;
        }
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(open_files_limit = ?limit.maximum, "raised the open-files limit to the hard limit");
                limit.maximum
            }
            Err(err) => {
                // macOS refuses an unlimited soft limit, for one.
                tracing::debug!(
                    error = %err,
                    open_files_limit = ?limit.current,
                    hard_limit = ?limit.maximum,
                    "cannot raise the open-files limit; keeping it"
                );
                limit.current
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The soft open-files limit now in force (`None` when unlimited, or not on
/// Unix).
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;

        let raised = raise_open_files_limit();

        assert_eq!(open_files_limit(), raised);
        // Only a hard limit the kernel refuses as a soft one (unlimited on
        // macOS) may stay out of reach.
        if cfg!(target_os = "linux") {
            assert_eq!(raised, hard);
        }
    }
}
