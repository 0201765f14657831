//! What datter's tests share: running Python (numpy, scikit-learn) on the same data, and a
//! sweep's metrics as pipeline inputs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use datter::pipeline::{Inputs, Origin, Source};

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

/// Three bundles of `metrics.csv`, 20 steps each, rewards rising at different rates; the third
/// starts at step 5.
pub fn metrics_inputs(dir: &std::path::Path) -> Inputs {
    let mut files = Vec::new();
    for (i, (first, rate)) in [(0, 0.05), (0, 0.1), (5, 0.2)].iter().enumerate() {
        let path = dir.join(format!("m{i}.csv"));
        let mut text = "step,reward\n".to_owned();
        for s in *first..20 {
            let r = 1.0 - (-(s as f64) * rate).exp() + 0.03 * (s as f64 + i as f64).sin();
            text.push_str(&format!("{s},{r}\n"));
        }
        std::fs::write(&path, text).unwrap();
        files.push(Source {
            path,
            origin: Origin {
                bundle: format!("b3:{i}"),
                address: format!("/e/sweep-1/lr=0.{i}"),
                version: 1,
                file: "metrics.csv".into(),
                params: [("lr".to_owned(), format!("0.{i}"))].into(),
            },
        });
    }
    let mut inputs = Inputs::new();
    inputs.insert("metrics", files);
    inputs
}
