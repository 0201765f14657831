//! The draw part of the datter bench.

/// Runs this part and prints its figures.
pub fn run() {}
