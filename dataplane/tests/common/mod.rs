//! What the DPDK test binaries share.

/// The EAL file prefix of this test process, `rvs-NAME-PID`, and its
/// runtime directory, removed when dropped (at the test's end, passed or
/// not): DPDK leaves it behind, one per run.
pub(crate) struct RuntimeDir {
    prefix: String,
}

impl RuntimeDir {
    pub(crate) fn new(name: &str) -> RuntimeDir {
        RuntimeDir { prefix: format!("rvs-{name}-{}", std::process::id()) }
    }

    /// For EAL's `--file-prefix`.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}
