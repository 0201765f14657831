//! Drawing fixtures, checked by structure rather than pixels: each figure is written as SVG, the
//! SVG is scanned for its elements and texts, and the texts' boxes (from their position, size,
//! anchor and measured length) must lie inside the canvas without tick labels overlapping.
//! `DATTER_DRAW_SAMPLES=/tmp/draw-samples` also writes each as PNG and SVG there, to look at.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

use datter::draw::colour::by_category;
use datter::draw::{
    Annotation, Axis, ClusterStyle, Enclosure, Figure, LegendPlace, Plot, PointColours, Rgba,
    Scale, Series,
};

/// A tiny deterministic generator, so the fixtures do not change.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn line_plot() -> Figure {
    let x: Vec<f64> = (0..200).map(|i| i as f64 * 50.0).collect();
    let mut plot = Plot::new("step", "reward");
    for (k, name) in ["lr=0.1", "lr=0.01", "lr=0.001"].iter().enumerate() {
        let rate = 0.0006 / (k as f64 + 1.0);
        let y = x
            .iter()
            .map(|s| 1.0 - (-s * rate).exp() + 0.02 * (s / 300.0 + k as f64).sin())
            .collect();
        plot.add(Series::line(*name, x.clone(), y));
    }
    Figure::new(800, 500, plot).with_title("Reward per step")
}

fn cluster_data() -> (Vec<f64>, Vec<f64>, Vec<i64>) {
    let mut r = Rng(7);
    let centres = [(-4.0, 2.0), (3.0, 4.0), (1.0, -3.0), (6.0, -1.0)];
    let (mut x, mut y, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for (k, c) in centres.iter().enumerate() {
        for _ in 0..150 {
            x.push(c.0 + r.normal() * 0.8);
            y.push(c.1 + r.normal() * 0.8);
            l.push(k as i64);
        }
    }
    for _ in 0..60 {
        x.push(r.next() * 16.0 - 7.0);
        y.push(r.next() * 12.0 - 6.0);
        l.push(-1);
    }
    (x, y, l)
}

fn cluster_plot(drop_noise: bool, shape: Enclosure) -> Figure {
    let (x, y, l) = cluster_data();
    let mut plot = Plot::new("PC 1", "PC 2");
    let style = ClusterStyle {
        enclose: Some(shape),
        drop_noise,
        ..ClusterStyle::default()
    };
    plot.add_clusters(&x, &y, &l, style).unwrap();
    Figure::new(800, 600, plot).with_title("Clusters (DBSCAN)")
}

fn histogram() -> Figure {
    let mut r = Rng(3);
    let a: Vec<f64> = (0..5000).map(|_| r.normal() * 1.5 + 10.0).collect();
    let b: Vec<f64> = (0..5000).map(|_| r.normal() + 13.0).collect();
    let mut plot = Plot::new("latency (ms)", "count");
    plot.add(Series::histogram("before", a, 40));
    plot.add(Series::histogram("after", b, 40));
    Figure::new(700, 450, plot).with_title("Latency")
}

fn bars() -> Figure {
    let labels: Vec<String> = ["adam", "sgd", "rmsprop", "adagrad", "lion"]
        .map(String::from)
        .to_vec();
    let mut plot = Plot::new("optimiser", "final reward");
    plot.add(Series::bar(
        "seed 0",
        labels.clone(),
        vec![0.91, 0.72, 0.85, 0.64, 0.93],
    ));
    plot.add(Series::bar(
        "seed 1",
        labels,
        vec![0.89, 0.75, 0.81, 0.66, 0.95],
    ));
    Figure::new(700, 450, plot).with_title("Final reward by optimiser")
}

fn heatmap() -> Figure {
    let (rows, cols) = (5, 6);
    let values: Vec<f64> = (0..rows * cols)
        .map(|i| ((i * 37) % 23) as f64 / 7.0)
        .collect();
    let s = Series::heatmap(rows, cols, values).with_cell_names(
        ["1e-1", "1e-2", "1e-3", "1e-4", "1e-5"]
            .map(String::from)
            .to_vec(),
        (0..cols).map(|c| format!("{}", 16 << c)).collect(),
    );
    let mut plot = Plot::new("batch size", "learning rate");
    plot.add(s);
    Figure::new(700, 500, plot).with_title("Final loss")
}

fn grid() -> Figure {
    let take = |f: Figure, t: &str| {
        let mut f = f;
        f.title = Some(t.into());
        f
    };
    Figure::grid(
        1200,
        900,
        2,
        vec![
            take(line_plot(), "Reward"),
            take(cluster_plot(true, Enclosure::Hull), "Clusters"),
            take(histogram(), "Latency"),
            take(heatmap(), "Loss"),
        ],
    )
    .with_title("Experiment 2")
}

/// A `<text>` element as the SVG has it.
#[derive(Debug)]
struct SvgText {
    class: String,
    text: String,
    x: f32,
    y: f32,
    size: f32,
    anchor: String,
    length: f32,
    vertical: bool,
}

impl SvgText {
    /// Its box, from DejaVu Sans' ascent (0.928 em) and descent (0.236 em).
    fn bounds(&self) -> (f32, f32, f32, f32) {
        let (asc, desc) = (self.size * 0.928, self.size * 0.236);
        let along = match self.anchor.as_str() {
            "middle" => self.length / 2.0,
            "end" => self.length,
            _ => 0.0,
        };
        if self.vertical {
            (
                self.x - asc,
                self.y + along - self.length,
                self.x + desc,
                self.y + along,
            )
        } else {
            (
                self.x - along,
                self.y - asc,
                self.x - along + self.length,
                self.y + desc,
            )
        }
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(tag[at..].split('"').next()?.to_string())
}

fn num(tag: &str, name: &str) -> f32 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f32::NAN)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

fn texts(svg: &str) -> Vec<SvgText> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text ") {
        let tail = &rest[start..];
        let open_end = tail.find('>').unwrap();
        let close = tail.find("</text>").unwrap();
        let tag = &tail[..open_end];
        out.push(SvgText {
            class: attr(tag, "class").unwrap_or_default(),
            text: unescape(&tail[open_end + 1..close]),
            x: num(tag, "x"),
            y: num(tag, "y"),
            size: num(tag, "font-size"),
            anchor: attr(tag, "text-anchor").unwrap_or_default(),
            length: num(tag, "textLength"),
            vertical: attr(tag, "transform").is_some_and(|t| t.starts_with("rotate(-90")),
        });
        rest = &tail[close..];
    }
    out
}

fn size(svg: &str) -> (f32, f32) {
    let tag = &svg[..svg.find('>').unwrap()];
    (num(tag, "width"), num(tag, "height"))
}

fn overlaps(a: (f32, f32, f32, f32), b: (f32, f32, f32, f32)) -> bool {
    a.0 < b.2 - 0.5 && b.0 < a.2 - 0.5 && a.1 < b.3 - 0.5 && b.1 < a.3 - 0.5
}

/// The checks every figure must pass: texts inside the canvas, tick labels apart, the legend's
/// box inside the canvas.
fn check(name: &str, fig: &Figure) -> String {
    let svg = fig.to_svg().unwrap();
    if let Ok(dir) = std::env::var("DATTER_DRAW_SAMPLES") {
        std::fs::create_dir_all(&dir).unwrap();
        fig.save(format!("{dir}/{name}.png")).unwrap();
        fig.save(format!("{dir}/{name}.svg")).unwrap();
    }
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<g ").count(),
        svg.matches("</g>").count(),
        "{name}: groups balance"
    );
    let (w, h) = size(&svg);
    let ts = texts(&svg);
    for t in &ts {
        let b = t.bounds();
        assert!(
            t.length > 0.0 || t.text.is_empty(),
            "{name}: {t:?} has no length"
        );
        assert!(
            b.0 >= -0.5 && b.1 >= -0.5 && b.2 <= w + 0.5 && b.3 <= h + 0.5,
            "{name}: {t:?} leaves the canvas {w}×{h}: {b:?}"
        );
    }
    // Labels, titles and legend entries must not overlap one another (cell labels and notes
    // sit on the data, by design).
    let fixed: Vec<&SvgText> = ts
        .iter()
        .filter(|t| !matches!(t.class.as_str(), "cell" | "note"))
        .collect();
    for (i, a) in fixed.iter().enumerate() {
        for b in &fixed[i + 1..] {
            assert!(
                !overlaps(a.bounds(), b.bounds()),
                "{name}: {a:?} overlaps {b:?}"
            );
        }
    }
    if let Some(at) = svg.find(r#"<g class="legend">"#) {
        let tag = &svg[at..];
        let rect = &tag[tag.find("<rect ").unwrap()..];
        let (x, y) = (num(rect, "x"), num(rect, "y"));
        let (rw, rh) = (num(rect, "width"), num(rect, "height"));
        assert!(
            x >= 0.0 && y >= 0.0 && x + rw <= w && y + rh <= h,
            "{name}: legend leaves the canvas"
        );
    }
    svg
}

fn with_class<'a>(svg: &'a [SvgText], class: &str) -> Vec<&'a str> {
    svg.iter()
        .filter(|t| t.class == class)
        .map(|t| t.text.as_str())
        .collect()
}

#[test]
fn line_plot_has_title_axes_ticks_and_legend() {
    let svg = check("line", &line_plot());
    let ts = texts(&svg);
    assert_eq!(with_class(&ts, "title"), ["Reward per step"]);
    assert_eq!(with_class(&ts, "axis-title"), ["step", "reward"]);
    assert_eq!(with_class(&ts, "legend"), ["lr=0.1", "lr=0.01", "lr=0.001"]);
    let xt = with_class(&ts, "tick-x");
    assert!(xt.len() >= 3 && xt.contains(&"0"), "{xt:?}");
    assert!(with_class(&ts, "tick-y").len() >= 3);
    assert_eq!(
        svg.matches("<polyline ").count() - with_polyline_axes(&svg),
        3
    );
}

/// Polylines that are not data (ticks, grid lines, legend swatches).
fn with_polyline_axes(svg: &str) -> usize {
    svg.split("<g ")
        .filter(|g| !g.starts_with(r#"class="data""#))
        .map(|g| g.matches("<polyline ").count())
        .sum()
}

#[test]
fn clusters_are_circled_and_labelled_and_noise_dropped() {
    let svg = check("clusters", &cluster_plot(true, Enclosure::Circle));
    let ts = texts(&svg);
    assert_eq!(
        with_class(&ts, "note"),
        ["cluster 0", "cluster 1", "cluster 2", "cluster 3"]
    );
    assert_eq!(
        with_class(&ts, "legend"),
        ["cluster 0", "cluster 1", "cluster 2", "cluster 3"]
    );
    let ann = &svg[svg.find(r#"<g class="annotations""#).unwrap()..];
    let ann = &ann[..ann.find("</g>").unwrap()];
    assert_eq!(ann.matches("<circle ").count(), 4);
    // 600 clustered points, the 60 noise points dropped.
    let data = &svg[svg.find(r#"<g class="data""#).unwrap()..];
    let data = &data[..data.find("</g>").unwrap()];
    assert_eq!(data.matches("<circle ").count(), 600);

    let svg = check("clusters-noise", &cluster_plot(false, Enclosure::Hull));
    assert!(with_class(&texts(&svg), "legend").contains(&"noise"));
    assert!(svg.contains("<polygon "));
}

#[test]
fn histogram_bar_heatmap_and_grid() {
    let svg = check("histogram", &histogram());
    assert_eq!(with_class(&texts(&svg), "legend"), ["before", "after"]);
    let svg = check("bars", &bars());
    let ts = texts(&svg);
    assert_eq!(
        with_class(&ts, "tick-x"),
        ["adam", "sgd", "rmsprop", "adagrad", "lion"]
    );
    let svg = check("heatmap", &heatmap());
    let ts = texts(&svg);
    assert_eq!(with_class(&ts, "cell").len(), 30);
    assert!(with_class(&ts, "colour-bar").len() >= 3);
    assert_eq!(
        with_class(&ts, "tick-y"),
        ["1e-5", "1e-4", "1e-3", "1e-2", "1e-1"]
    );
    let svg = check("grid", &grid());
    let ts = texts(&svg);
    assert_eq!(
        with_class(&ts, "title"),
        ["Experiment 2", "Reward", "Clusters", "Latency", "Loss"]
    );
}

#[test]
fn bad_data_draws_an_empty_axes_or_fails_with_a_reason() {
    let mut plot = Plot::new("x", "y");
    plot.add(Series::line(
        "nothing",
        vec![f64::NAN, f64::INFINITY],
        vec![1.0, 2.0],
    ));
    let svg = check("empty", &Figure::new(400, 300, plot));
    assert!(with_class(&texts(&svg), "note").contains(&"no data"));
    let mut plot = Plot::new("x", "y");
    plot.add(Series::scatter(
        "flat",
        vec![1.0, 1.0, 1.0],
        vec![5.0, 5.0, 5.0],
        3.0,
    ));
    check("flat", &Figure::new(400, 300, plot));
    let mut plot = Plot::default();
    plot.add(Series::line("ragged", vec![1.0, 2.0], vec![1.0]));
    let err = Figure::new(400, 300, plot).to_png().unwrap_err();
    assert!(err.to_string().contains("ragged"), "{err}");
    assert!(Figure::new(0, 300, Plot::default()).to_png().is_err());
    assert!(
        Figure::new(300, 300, Plot::default())
            .save("/tmp/x.gif")
            .is_err()
    );
    check("nothing", &Figure::new(300, 200, Plot::default()));
}

#[test]
fn log_axis_long_labels_and_annotations() {
    let x: Vec<f64> = (1..=60).map(|i| 10f64.powf(i as f64 / 10.0)).collect();
    let y: Vec<f64> = x.iter().map(|v| v.sqrt() * 1e6).collect();
    let mut plot = Plot {
        x: Axis {
            title: Some("tokens".into()),
            scale: Scale::Log,
            range: None,
        },
        y: Axis::titled("a very long axis title that is longer than the plot is tall, surely, yes"),
        legend: LegendPlace::Outside,
        ..Plot::default()
    };
    plot.add(Series::line(
        "a series with a rather long name to see it cut somewhere",
        x,
        y,
    ));
    plot.annotate(Annotation::Point {
        x: 100.0,
        y: 1e7,
        label: Some("ten million".into()),
        colour: Rgba::BLACK,
    });
    plot.annotate(Annotation::Line {
        from: (10.0, 0.0),
        to: (1e5, 3e8),
        colour: Rgba::GREY,
    });
    plot.annotate(Annotation::Text {
        x: 2.0,
        y: 2e8,
        text: "a <note> & more".into(),
        colour: Rgba::BLACK,
    });
    plot.annotate(Annotation::Shape {
        points: vec![(10.0, 1e8), (100.0, 1e8), (50.0, 2e8)],
        colour: Rgba::rgb(200, 0, 0),
    });
    plot.annotate(Annotation::Circle {
        x: 1000.0,
        y: 5e7,
        radius: 20.0,
        colour: Rgba::rgb(0, 0, 200),
    });
    let svg = check("log", &Figure::new(600, 300, plot));
    let ts = texts(&svg);
    assert!(with_class(&ts, "tick-x").contains(&"100"));
    assert!(with_class(&ts, "legend")[0].ends_with('…'));
    assert!(with_class(&ts, "note").contains(&"a <note> & more"));
}

#[test]
fn dense_scatter_is_embedded_as_an_image_in_svg() {
    let mut r = Rng(11);
    let n = 50_000;
    let x: Vec<f64> = (0..n).map(|_| r.normal()).collect();
    let y: Vec<f64> = (0..n).map(|_| r.normal()).collect();
    let values: Vec<f64> = x.iter().map(|v| v * v).collect();
    let mut plot = Plot::new("x", "y");
    plot.add(
        Series::scatter("points", x.clone(), y.clone(), 1.5)
            .with_point_colours(PointColours::Values(values)),
    );
    let cats: Vec<i64> = x.iter().map(|v| (v * 2.0).round() as i64).collect();
    let moved = x.iter().map(|v| v + 5.0).collect();
    plot.add(
        Series::scatter("by category", moved, y, 1.5)
            .with_point_colours(PointColours::Each(by_category(&cats))),
    );
    let fig = Figure::new(800, 600, plot).with_title("50,000 points");
    let svg = check("dense", &fig);
    assert_eq!(svg.matches("<image ").count(), 2);
    assert!(svg.len() < 2_000_000, "{} bytes", svg.len());
    let png = fig.to_png().unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn a_crowded_small_grid_keeps_its_text_apart() {
    let x: Vec<f64> = (0..50).map(f64::from).collect();
    let figs = (0..9)
        .map(|k| {
            let mut p = Plot::new("step", "value");
            for j in 0..12 {
                let y = x
                    .iter()
                    .map(|v| (v / 7.0 + f64::from(j)).sin() * 1e4 * f64::from(k + 1))
                    .collect();
                p.add(Series::line(format!("series {j}"), x.clone(), y));
            }
            Figure::sub(format!("run {k}"), p)
        })
        .collect();
    let svg = check(
        "crowded",
        &Figure::grid(900, 700, 3, figs).with_title("Nine runs"),
    );
    let ts = texts(&svg);
    assert!(
        with_class(&ts, "legend")
            .iter()
            .any(|t| t.starts_with("… ")),
        "the legend says what it left out"
    );
    assert_eq!(with_class(&ts, "title").len(), 10);
}

#[test]
fn a_large_heatmap_is_one_image_in_svg_and_unlabelled() {
    let (rows, cols) = (80, 120);
    let values: Vec<f64> = (0..rows * cols)
        .map(|i| ((i % cols) as f64 / 9.0).sin() * ((i / cols) as f64 / 7.0).cos())
        .collect();
    let mut plot = Plot::new("column", "row");
    plot.add(Series::heatmap(rows, cols, values));
    let svg = check(
        "heatmap-large",
        &Figure::new(800, 600, plot).with_title("9,600 cells"),
    );
    assert_eq!(svg.matches("<image ").count(), 1);
    assert!(with_class(&texts(&svg), "cell").is_empty());
    let ticks = with_class(&texts(&svg), "tick-x").len();
    assert!((2..=40).contains(&ticks), "{ticks} column labels, thinned");
    let mut plot = Plot::default();
    plot.add(Series::heatmap(2, 3, vec![1.0; 5]));
    assert!(Figure::new(300, 200, plot).to_svg().is_err());
}

#[test]
fn larger_text_still_fits() {
    let svg = check("line-large-text", &line_plot().with_text_scale(1.6));
    let ts = texts(&svg);
    let tick = ts.iter().find(|t| t.class == "tick-x").unwrap();
    assert!((tick.size - 12.0 * 1.6).abs() < 0.01, "{tick:?}");
    let svg = check("grid-small-text", &grid().with_text_scale(0.8));
    assert_eq!(with_class(&texts(&svg), "title").len(), 5);
}

/// Odd inputs draw something (or fail with a reason) and never panic.
#[test]
fn odd_inputs_never_panic() {
    let odd = [
        vec![],
        vec![f64::NAN],
        vec![f64::INFINITY, f64::NEG_INFINITY],
        vec![0.0],
        vec![-1.0, -2.0],
        vec![1e300, -1e300],
        vec![1e-300, 2e-300],
        vec![5.0, 5.0, 5.0],
        vec![0.0, 1.0, f64::NAN, 3.0],
    ];
    for xs in &odd {
        for ys in &odd {
            if xs.len() != ys.len() {
                continue;
            }
            for scale in [Scale::Linear, Scale::Log] {
                let mut plot = Plot::new("x", "y");
                plot.x.scale = scale;
                plot.y.scale = scale;
                plot.add(Series::line("l", xs.clone(), ys.clone()));
                plot.add(Series::scatter("s", xs.clone(), ys.clone(), 3.0));
                plot.add(Series::histogram("h", xs.clone(), 0));
                plot.add(Series::bar(
                    "b",
                    (0..ys.len()).map(|i| i.to_string()).collect(),
                    ys.clone(),
                ));
                plot.annotate(Annotation::Enclose {
                    points: xs.iter().copied().zip(ys.iter().copied()).collect(),
                    shape: Enclosure::Hull,
                    label: Some("c".into()),
                    colour: Rgba::BLACK,
                });
                let fig = Figure::new(200, 150, plot);
                fig.to_png().unwrap();
                fig.to_svg().unwrap();
            }
        }
        let mut plot = Plot::default();
        plot.x.range = Some((1.0, 1.0));
        plot.y.range = Some((f64::NAN, 3.0));
        plot.add(Series::heatmap(1, xs.len(), xs.clone()));
        plot.add(Series::scatter(
            "far",
            vec![1e30, -1e30],
            vec![1e30, 0.0],
            2.0,
        ));
        plot.annotate(Annotation::Text {
            x: 1e30,
            y: -1e30,
            text: "far away".into(),
            colour: Rgba::BLACK,
        });
        Figure::new(120, 90, plot).to_png().unwrap();
    }
    let tiny = Figure::grid(
        16,
        16,
        0,
        vec![Figure::sub("a title far too long for the cell", Plot::default()); 3],
    );
    tiny.to_png().unwrap();
    tiny.to_svg().unwrap();
    let mut plot = Plot::default();
    plot.add_clusters(
        &[1.0, f64::NAN, 2.0],
        &[1.0, 2.0, f64::INFINITY],
        &[0, 0, -1],
        ClusterStyle::default(),
    )
    .unwrap();
    plot.add(Series::heatmap(0, 0, vec![]));
    Figure::new(300, 200, plot).to_png().unwrap();
}

#[test]
fn a_part_drawn_over_the_whole_s_axis_ranges_keeps_its_ticks() {
    let whole = line_plot();
    let datter::draw::Body::Plot(full) = &whole.body else {
        panic!("one plot")
    };
    let [x, y] = datter::draw::layout::axis_ranges(full).unwrap();
    let (x, y) = (x.unwrap(), y.unwrap());
    // The data's range (0..9950 steps) with the layout's 5% margin.
    assert!(
        (x.0 + 497.5).abs() < 1e-9 && (x.1 - 10_447.5).abs() < 1e-9,
        "{x:?}"
    );
    // The first 20 steps alone fit other axes; over the whole's ranges, the same ticks.
    let mut part = (**full).clone();
    for s in &mut part.series {
        if let datter::draw::Kind::Line { x, y, .. } = &mut s.kind {
            x.truncate(20);
            y.truncate(20);
        }
    }
    let ticks = |plot: Plot| {
        let svg = check("part", &Figure::new(800, 500, plot));
        let ts = texts(&svg);
        (
            with_class(&ts, "tick-x").join(" "),
            with_class(&ts, "tick-y").join(" "),
        )
    };
    let own = ticks(part.clone());
    part.x.range = Some(x);
    part.y.range = Some(y);
    assert_eq!(ticks(part), ticks((**full).clone()));
    assert_ne!(
        own,
        ticks((**full).clone()),
        "the part alone fits its own axes"
    );
    // A category axis is left to the layout; a log axis's range is in data units.
    let [bx, by] = datter::draw::layout::axis_ranges(&match bars().body {
        datter::draw::Body::Plot(p) => *p,
        _ => panic!("one plot"),
    })
    .unwrap();
    assert!(
        bx.is_none() && by.is_some_and(|(lo, _)| lo == 0.0),
        "{by:?}"
    );
    let mut log = Plot {
        x: Axis {
            title: None,
            scale: Scale::Log,
            range: None,
        },
        ..Plot::default()
    };
    log.add(Series::line("l", vec![1.0, 100.0], vec![1.0, 2.0]));
    let [lx, _] = datter::draw::layout::axis_ranges(&log).unwrap();
    let (lo, hi) = lx.unwrap();
    assert!((lo.log10() + 0.1).abs() < 1e-9 && (hi.log10() - 2.1).abs() < 1e-9);
}
