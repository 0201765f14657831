//! What datter's reference tests share: running Python (numpy, scikit-learn) on the same data.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Runs a Python snippet, failing with what to install when it cannot; returns its stdout.
pub fn python(code: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", code])
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "python3 with numpy and scikit-learn failed (pip install numpy scikit-learn): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`python`], its output read as JSON.
pub fn python_json(code: &str) -> serde_json::Value {
    serde_json::from_str(&python(code)).unwrap()
}
