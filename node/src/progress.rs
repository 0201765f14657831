//! How a long transfer (push, get) tells its caller how far it is. Library code only reports;
//! the binary decides whether and how to draw it (a progress bar on a terminal, nothing
//! otherwise).

/// Receives the size of a job and how much of it is done, both as absolute counts (a retried
/// step may go back).
pub trait Progress: Send + Sync {
    /// The whole job: `files` files of `bytes` bytes in all.
    fn length(&self, files: u64, bytes: u64);
    /// Done so far.
    fn position(&self, files: u64, bytes: u64);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn length(&self, _files: u64, _bytes: u64) {}
    fn position(&self, _files: u64, _bytes: u64) {}
}
