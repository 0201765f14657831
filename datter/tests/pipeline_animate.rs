//! `animate` in pipelines: the figure it marks is drawn once per frame value of a column, each
//! frame over the whole data's axes and colours, and written as an APNG that decodes as one.
//! `DATTER_DRAW_SAMPLES=/tmp/draw-samples` also writes the APNG and its first and last frames
//! there, to look at.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use datter::draw::{Body, Figure, Kind, Plot};
use datter::pipeline::{Drawn, Inputs, Output, RunError, check, run};
use serde_json::{Value, json};

mod common;
use common::metrics_inputs as inputs;

fn go(steps: Value, inputs: &Inputs) -> Result<Output, RunError> {
    let steps = check(steps.as_array().unwrap(), &["metrics"]).unwrap();
    run(&steps, inputs)
}

/// The reward report with `animate` at `at` among its drawing steps.
fn reward_report(animate: Value, at: usize) -> Value {
    let mut steps = vec![
        json!(["access", {"from": "metrics"}]),
        json!(["label", {"by": "bundle"}]),
        json!(["frame", {"title": "Reward per step"}]),
        json!(["axis", {"x": "step", "y": "reward"}]),
        json!(["legend"]),
        json!(["plot", {"kind": "line"}]),
    ];
    steps.insert(at, animate);
    Value::Array(steps)
}

fn plot(f: &Figure) -> &Plot {
    match &f.body {
        Body::Plot(p) => p,
        _ => panic!("one plot"),
    }
}

/// The APNG's frames as a browser shows them (RGBA, each patch blended over the frame before),
/// the default image left out, and the frame count it declares.
fn decode(d: &Drawn) -> (u32, Vec<Vec<u8>>) {
    let bytes = d.animation.as_ref().unwrap().to_apng().unwrap();
    if let Ok(dir) = std::env::var("DATTER_DRAW_SAMPLES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/animate.png"), &bytes).unwrap();
        let frames = &d.animation.as_ref().unwrap().frames;
        frames[0].save(format!("{dir}/animate-first.png")).unwrap();
        frames[frames.len() - 1]
            .save(format!("{dir}/animate-last.png"))
            .unwrap();
    }
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
        .read_info()
        .unwrap();
    let (w, h) = reader.info().size();
    assert_eq!((w, h), (800, 560));
    let declared = reader.info().animation_control.unwrap().num_frames;
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let default = buf[..info.buffer_size()].to_vec();
    let mut shown = vec![0u8; default.len()];
    let mut frames = Vec::new();
    while let Ok(info) = reader.next_frame(&mut buf) {
        let fc = reader.info().frame_control.unwrap();
        for y in 0..info.height {
            for x in 0..info.width {
                let s = ((y * info.width + x) * 4) as usize;
                let d = (((fc.y_offset + y) * w + fc.x_offset + x) * 4) as usize;
                if buf[s + 3] == 255 {
                    shown[d..d + 4].copy_from_slice(&buf[s..s + 4]);
                }
            }
        }
        frames.push(shown.clone());
    }
    // The default image (for viewers that do not animate) is the last frame.
    assert!(frames.last() == Some(&default));
    (declared, frames)
}

/// Pixels in a colour (series, legend swatches), not white, grey or black.
fn coloured(rgba: &[u8]) -> usize {
    rgba.chunks_exact(4)
        .filter(|p| p[..3].iter().max().unwrap() - p[..3].iter().min().unwrap() > 60)
        .count()
}

#[test]
fn a_cumulative_line_plot_animates_over_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let out = go(
        reward_report(json!(["animate", {"over": "step", "frames": 10}]), 5),
        &inputs,
    )
    .unwrap();
    let d = &out.figures[0];
    let anim = d.animation.as_ref().expect("an animation");
    assert_eq!(anim.frames.len(), 10);
    assert_eq!(anim.delay_ms, 200);
    let titles: Vec<&str> = anim
        .frames
        .iter()
        .map(|f| f.title.as_deref().unwrap())
        .collect();
    // Ten of the twenty steps, evenly, the first and the last among them.
    assert_eq!(titles[0], "Reward per step — step ≤ 0");
    assert_eq!(titles[1], "Reward per step — step ≤ 2");
    assert_eq!(titles[9], "Reward per step — step ≤ 19");
    assert_eq!(d.title, "Reward per step", "the caption has no frame in it");
    assert_eq!(
        d.figure.title.as_deref(),
        Some(titles[9]),
        "the figure is the last frame"
    );
    // Every frame over the same axes, with every bundle in its colour and in the legend.
    let first = plot(&anim.frames[0]);
    let last = plot(&anim.frames[9]);
    assert!(first.x.range.is_some() && first.y.range.is_some());
    for f in &anim.frames {
        let p = plot(f);
        assert_eq!((p.x.range, p.y.range), (first.x.range, first.y.range));
        let names: Vec<_> = p
            .series
            .iter()
            .map(|s| (s.name.clone(), s.colour))
            .collect();
        let want: Vec<_> = last
            .series
            .iter()
            .map(|s| (s.name.clone(), s.colour))
            .collect();
        assert_eq!(names, want);
    }
    let (lo, hi) = first.x.range.unwrap();
    assert!(lo < 0.0 && hi > 19.0 && hi < 21.0, "{lo}..{hi}");
    // The third bundle starts at step 5: nothing of it in the first frame, but a legend entry.
    let Kind::Line { x, .. } = &first.series[2].kind else {
        panic!("a line")
    };
    assert!(x.is_empty());
    assert!(anim.frames[0].to_svg().unwrap().contains("b3:2"));
    // The APNG: ten frames, the first with far less drawn than the last.
    let (declared, frames) = decode(d);
    assert_eq!((declared, frames.len()), (10, 10));
    let (few, all) = (coloured(&frames[0]), coloured(&frames[9]));
    assert!(few * 3 < all, "frame 1 draws {few} pixels, the last {all}");
    let counts: Vec<usize> = frames.iter().map(|f| coloured(f)).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

#[test]
fn animate_applies_to_the_figure_before_or_after_its_plot() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let titles = |out: &Output| -> Vec<String> {
        let anim = out.figures[0].animation.as_ref().unwrap();
        anim.frames
            .iter()
            .map(|f| f.title.clone().unwrap())
            .collect()
    };
    let animate = json!(["animate", {"frames": 4, "delay_ms": 80}]);
    let before = go(reward_report(animate.clone(), 3), &inputs).unwrap();
    let after = go(reward_report(animate, 6), &inputs).unwrap();
    // `step` by default; 4 of the 20 steps.
    assert_eq!(titles(&before), titles(&after));
    assert_eq!(
        titles(&after)[..2],
        ["Reward per step — step ≤ 0", "Reward per step — step ≤ 6"]
    );
    assert_eq!(after.figures[0].animation.as_ref().unwrap().delay_ms, 80);
    // An animate in another figure leaves this one still.
    let mut steps = reward_report(json!(["frame", {"title": "Again"}]), 6);
    let extra = steps.as_array_mut().unwrap();
    extra.push(json!(["plot", {"kind": "line"}]));
    extra.push(json!(["animate", {"frames": 3}]));
    let out = go(steps, &inputs).unwrap();
    assert!(out.figures[0].animation.is_none());
    assert_eq!(out.figures[1].animation.as_ref().unwrap().frames.len(), 3);
    // `each`: a frame draws only its step's rows.
    let out = go(
        reward_report(json!(["animate", {"mode": "each", "frames": 20}]), 6),
        &inputs,
    )
    .unwrap();
    let anim = out.figures[0].animation.as_ref().unwrap();
    assert_eq!(
        anim.frames[7].title.as_deref(),
        Some("Reward per step — step = 7")
    );
    let points: Vec<usize> = plot(&anim.frames[7])
        .series
        .iter()
        .map(|s| match &s.kind {
            Kind::Line { x, .. } => x.len(),
            _ => panic!("lines"),
        })
        .collect();
    assert_eq!(points, [1, 1, 1]);
    // After repeat, each group's animation is titled with its group, before the frame's value.
    let out = go(
        json!([["access", {"from": "metrics"}], ["label", {"by": "bundle"}],
               ["frame", {"title": "Reward"}], ["axis", {"x": "step", "y": "reward"}],
               ["animate", {"frames": 2}], "repeat", ["plot", {"kind": "line"}]]),
        &inputs,
    )
    .unwrap();
    let d = &out.figures[2];
    assert_eq!(d.title, "Reward: b3:2");
    let anim = d.animation.as_ref().unwrap();
    assert_eq!(
        anim.frames[0].title.as_deref(),
        Some("Reward: b3:2 — step ≤ 5")
    );
    assert_eq!(d.figure.title.as_deref(), Some("Reward: b3:2 — step ≤ 19"));
}

#[test]
fn a_bad_over_column_is_named_with_the_columns_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    for at in [3, 6] {
        let e = go(
            reward_report(json!(["animate", {"over": "epoch"}]), at),
            &inputs,
        )
        .unwrap_err()
        .to_string();
        let op = if at == 3 {
            "step 6 (plot)"
        } else {
            "step 6 (animate)"
        };
        assert!(
            e.starts_with(&format!(
                "{op}: animate over \"epoch\": there is no such column; the data has \"step\", \"reward\", \"bundle\""
            )),
            "{e}"
        );
    }
    let e = go(
        reward_report(json!(["animate", {"over": "label"}]), 6),
        &inputs,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("holds text values; name a number column"), "{e}");
    let e = go(reward_report(json!(["animate", {"frames": 0}]), 6), &inputs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 1 frame"), "{e}");
}

#[test]
fn the_registry_checks_animate_s_params() {
    let e = |v: Value| check(v.as_array().unwrap(), &[]).unwrap_err().to_string();
    assert_eq!(
        e(json!([["animate", {"mode": "sometimes"}]])),
        "step 0 (animate), param \"mode\": expected one of cumulative, each, got \"sometimes\""
    );
    assert_eq!(
        e(json!([["animate", {"frames": -3}]])),
        "step 0 (animate), param \"frames\": expected a whole number, 0 or more, got -3"
    );
    assert_eq!(
        e(json!([["animate", {"over": 3}]])),
        "step 0 (animate), param \"over\": expected a text, got 3"
    );
    assert_eq!(
        e(json!([["animate", {"fps": 12}]])),
        "step 0 (animate), param \"fps\": animate has no such param; it takes over, frames, mode, delay_ms"
    );
    let ok = check(
        json!([["animate", {"over": "step", "frames": 10, "mode": "each", "delay_ms": 100}],
               "animate"])
        .as_array()
        .unwrap(),
        &[],
    )
    .unwrap();
    assert_eq!(ok[1].op.name, "animate");
}
