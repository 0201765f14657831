//! Layout: turns a [`Figure`] into a [`Canvas`] of marks in pixels. Text measurement drives it:
//! margins are sized to the tick labels and titles, tick labels are thinned until they do not
//! collide, and the legend goes where it hides no data (else outside the plot area).

use rayon::prelude::*;

use super::DrawError;
use super::colour::{Rgba, by_value, finite_range, viridis};
use super::marks::{Anchor, Canvas, DotColours, Layer, Mark, Rect, Role, Stroke, Text};
use super::scene::{Annotation, Body, Enclosure, Figure, Kind, LegendPlace, Plot, PointColours};
use super::text::measure;
use super::ticks;

/// Text sizes and spacing, in pixels.
const TITLE_SIZE: f32 = 17.0;
const SUB_TITLE_SIZE: f32 = 15.0;
const AXIS_TITLE_SIZE: f32 = 13.5;
const TICK_SIZE: f32 = 12.0;
const LEGEND_SIZE: f32 = 12.0;
pub(super) const PAD: f32 = 6.0;
const TICK_LEN: f32 = 5.0;
/// Least free room between two neighbouring tick labels.
const LABEL_GAP: f32 = 8.0;
/// Widest a tick label or legend entry may be before it is cut with an ellipsis.
pub(super) const MAX_LABEL: f32 = 140.0;
const MAX_LEGEND: f32 = 200.0;
/// Above this many cells a heatmap's cells are not labelled.
const MAX_CELL_LABELS: usize = 400;
/// How much wider than measured a line of text may come out in an SVG renderer that ignores
/// `textLength` and hints its glyphs (librsvg does): long texts are fitted with this much to
/// spare.
const HINTING_SLACK: f32 = 1.03;
/// The largest canvas side.
pub const MAX_SIDE: u32 = 16_384;

/// Lays out `fig` in pixels.
pub fn layout(fig: &Figure) -> Result<Canvas, DrawError> {
    let (w, h) = (fig.width, fig.height);
    if !(16..=MAX_SIDE).contains(&w) || !(16..=MAX_SIDE).contains(&h) {
        return Err(DrawError::Size {
            width: w,
            height: h,
        });
    }
    let mut canvas = Canvas {
        width: w,
        height: h,
        layers: Vec::new(),
    };
    let m = metrics(fig.text_scale)?;
    figure(
        fig,
        Rect::new(0.0, 0.0, w as f32, h as f32),
        0,
        &m,
        &mut canvas.layers,
    )?;
    Ok(canvas)
}

/// The ranges in data units that `plot`'s x and y axes are drawn over: a fixed range, else
/// the data's with the layout's margin; none for a category axis (bars, heatmaps). Fixing
/// these as [`super::Axis`]'s `range` draws a part of the data over the same axes, as an
/// animation's frames are.
pub fn axis_ranges(plot: &Plot) -> Result<[Option<(f64, f64)>; 2], DrawError> {
    let seen = see(plot)?;
    let data = |ax: &Ax| {
        ax.cats.is_none().then(|| {
            if ax.log {
                (10f64.powf(ax.lo), 10f64.powf(ax.hi))
            } else {
                (ax.lo, ax.hi)
            }
        })
    };
    Ok([data(&seen.x), data(&seen.y)])
}

fn figure(
    fig: &Figure,
    rect: Rect,
    depth: usize,
    m: &Metrics,
    out: &mut Vec<Layer>,
) -> Result<(), DrawError> {
    let mut body = rect;
    if let Some(title) = fig.title.as_deref().filter(|t| !t.is_empty()) {
        let size = if depth == 0 { m.title } else { m.sub_title };
        let t = fit(title, size, true, rect.w - 2.0 * PAD)?;
        let e = measure(&t, size, true)?;
        let y = rect.y + PAD + e.ascent;
        let mark = text(
            rect.x + rect.w / 2.0,
            y,
            t,
            size,
            Anchor::Middle,
            false,
            Rgba::INK,
            true,
            Role::Title,
        )?;
        out.push(Layer {
            clip: None,
            class: "title",
            marks: vec![mark],
        });
        let used = PAD + e.height();
        body = Rect::new(rect.x, rect.y + used, rect.w, rect.h - used);
    }
    match &fig.body {
        Body::Plot(plot) => plot_area(plot, body, m, out),
        Body::Table(table) => super::table::table_area(table, body, m, out),
        Body::Grid { cols, figures } => {
            let cols = (*cols).max(1);
            let rows = figures.len().div_ceil(cols).max(1);
            let (cw, ch) = (body.w / cols as f32, body.h / rows as f32);
            for (i, f) in figures.iter().enumerate() {
                let (r, c) = (i / cols, i % cols);
                let cell = Rect::new(body.x + c as f32 * cw, body.y + r as f32 * ch, cw, ch);
                figure(f, cell, depth + 1, m, out)?;
            }
            Ok(())
        }
    }
}

/// A laid-out text mark with its bounds.
#[allow(clippy::too_many_arguments)]
pub(super) fn text(
    x: f32,
    y: f32,
    s: String,
    size: f32,
    anchor: Anchor,
    vertical: bool,
    colour: Rgba,
    bold: bool,
    role: Role,
) -> Result<Mark, DrawError> {
    let e = measure(&s, size, bold)?;
    let along = match anchor {
        Anchor::Start => 0.0,
        Anchor::Middle => e.width / 2.0,
        Anchor::End => e.width,
    };
    let bounds = if vertical {
        Rect::new(x - e.ascent, y + along - e.width, e.height(), e.width)
    } else {
        Rect::new(x - along, y - e.ascent, e.width, e.height())
    };
    Ok(Mark::Text(Text {
        x,
        y,
        text: s,
        size,
        anchor,
        vertical,
        colour,
        bold,
        role,
        width: e.width,
        bounds,
    }))
}

/// `s` cut with an ellipsis so that it is at most `max` pixels wide.
pub(super) fn fit(s: &str, size: f32, bold: bool, max: f32) -> Result<String, DrawError> {
    // Room for renderers that ignore the SVG's textLength and round hinted advances up.
    let max = max / HINTING_SLACK;
    if measure(s, size, bold)?.width <= max {
        return Ok(s.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let cand: String = chars[..mid].iter().collect::<String>() + "…";
        if measure(&cand, size, bold)?.width <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(chars[..lo].iter().collect::<String>() + "…")
}

/// One axis after the data has been seen: its range in axis units (log10 for a log axis).
#[derive(Clone, Debug)]
struct Ax {
    lo: f64,
    hi: f64,
    log: bool,
    /// Category names at 0, 1, …; the range is then -0.5 .. n-0.5.
    cats: Option<Vec<String>>,
    /// The categories are read from the last (a heatmap's rows, top down): thinned labels
    /// count from there.
    cats_from_end: bool,
}

impl Ax {
    /// The axis unit of a data value, if it can be drawn.
    fn unit(&self, v: f64) -> Option<f64> {
        let u = if self.log {
            if v > 0.0 { v.log10() } else { f64::NAN }
        } else {
            v
        };
        u.is_finite().then_some(u)
    }
    /// The fraction 0..1 along the axis of an axis unit.
    fn frac(&self, u: f64) -> f64 {
        (u - self.lo) / (self.hi - self.lo)
    }
}

/// A range seen so far, if any.
type Span = Option<(f64, f64)>;

/// Widens a range that has no width, and finds one where there is none.
fn widen(r: Option<(f64, f64)>, log: bool) -> (f64, f64) {
    match r {
        None => (0.0, 1.0),
        Some((lo, hi)) if hi > lo => (lo, hi),
        Some((v, _)) => {
            let d = if log || v == 0.0 { 0.5 } else { v.abs() * 0.05 };
            (v - d, v + d)
        }
    }
}

fn grow(r: &mut Option<(f64, f64)>, v: f64) {
    if v.is_finite() {
        *r = Some(match *r {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
}

/// Histogram bins of a series: the edges and counts.
fn bins(values: &[f64], bins: usize, ax: &Ax) -> (Vec<f64>, Vec<f64>) {
    let units: Vec<f64> = values.iter().filter_map(|&v| ax.unit(v)).collect();
    let Some((lo, hi)) = finite_range(&units) else {
        return (Vec::new(), Vec::new());
    };
    let (lo, hi) = widen(Some((lo, hi)), ax.log);
    let n = if bins > 0 {
        bins.min(10_000)
    } else {
        // Sturges' rule, at least 10 bins like matplotlib's default.
        ((units.len() as f64).log2().ceil() as usize + 1).clamp(10, 100)
    };
    let w = (hi - lo) / n as f64;
    let mut counts = vec![0f64; n];
    for u in units {
        let k = (((u - lo) / w) as usize).min(n - 1);
        counts[k] += 1.0;
    }
    let edges = (0..=n).map(|i| lo + i as f64 * w).collect();
    (edges, counts)
}

/// Sizes that do not depend on the data.
pub(super) struct Metrics {
    title: f32,
    sub_title: f32,
    axis_title: f32,
    pub(super) tick: f32,
    legend: f32,
    pub(super) tick_h: f32,
    pub(super) tick_ascent: f32,
    title_h: f32,
    title_ascent: f32,
    legend_h: f32,
    legend_ascent: f32,
}

fn metrics(scale: f32) -> Result<Metrics, DrawError> {
    let scale = if scale.is_finite() {
        scale.clamp(0.25, 8.0)
    } else {
        1.0
    };
    let (tick, axis_title, legend) = (
        TICK_SIZE * scale,
        AXIS_TITLE_SIZE * scale,
        LEGEND_SIZE * scale,
    );
    let t = measure("0", tick, false)?;
    let a = measure("A", axis_title, false)?;
    let l = measure("A", legend, false)?;
    Ok(Metrics {
        title: TITLE_SIZE * scale,
        sub_title: SUB_TITLE_SIZE * scale,
        axis_title,
        tick,
        legend,
        tick_h: t.height(),
        tick_ascent: t.ascent,
        title_h: a.height(),
        title_ascent: a.ascent,
        legend_h: l.height(),
        legend_ascent: l.ascent,
    })
}

/// A tick: its place along the axis in pixels and its label's width.
#[derive(Clone, Debug)]
struct Tick {
    at: f32,
    label: String,
    width: f32,
}

/// Ticks of `ax` over `len` pixels (from `start`, growing or, for y, shrinking), thinned until
/// neighbouring labels keep a gap. `horizontal` says labels sit side by side (x axis).
fn axis_ticks(
    ax: &Ax,
    start: f32,
    len: f32,
    flip: bool,
    horizontal: bool,
    m: &Metrics,
) -> Result<Vec<Tick>, DrawError> {
    let place = |u: f64| -> f32 {
        let f = ax.frac(u) as f32;
        if flip {
            start + len - f * len
        } else {
            start + f * len
        }
    };
    let fits = |t: &[Tick]| -> bool {
        t.windows(2).all(|p| {
            let d = (p[1].at - p[0].at).abs();
            if horizontal {
                d >= (p[0].width + p[1].width) / 2.0 + LABEL_GAP
            } else {
                d >= m.tick_h + 2.0
            }
        })
    };
    let make = |values: &[f64], labels: Vec<String>| -> Result<Vec<Tick>, DrawError> {
        values
            .iter()
            .zip(labels)
            .map(|(&u, label)| {
                let label = fit(&label, m.tick, false, MAX_LABEL)?;
                let width = measure(&label, m.tick, false)?.width;
                Ok(Tick {
                    at: place(u),
                    label,
                    width,
                })
            })
            .collect()
    };
    if let Some(cats) = &ax.cats {
        let all: Vec<f64> = (0..cats.len()).map(|i| i as f64).collect();
        let full = make(&all, cats.clone())?;
        let first = if ax.cats_from_end {
            cats.len().saturating_sub(1)
        } else {
            0
        };
        // Every 1st, 2nd, 5th, 10th, 20th, 25th, 50th, … label, counted from the first.
        let steps = (0..8u32).flat_map(|e| [1usize, 2, 5].map(|m| m * 10usize.pow(e)));
        for every in steps {
            let t: Vec<Tick> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| i.abs_diff(first) % every == 0)
                .map(|(_, t)| t.clone())
                .collect();
            if fits(&t) || every >= cats.len() {
                return Ok(t);
            }
        }
        return Ok(full.into_iter().skip(first).take(1).collect());
    }
    let per = if horizontal { 80.0 } else { 45.0 };
    let start = ((len / per).round() as usize + 1).clamp(3, 10);
    let at = |target: usize| -> Result<Vec<Tick>, DrawError> {
        if ax.log {
            let v = ticks::log(ax.lo, ax.hi, target);
            let labels = v.iter().map(|&d| ticks::log_label(d)).collect();
            make(&v, labels)
        } else {
            let (v, step) = ticks::linear(ax.lo, ax.hi, target);
            let labels = ticks::labels(&v, step);
            make(&v, labels)
        }
    };
    // The most ticks up to the wanted count whose labels keep apart, at least two of them;
    // a coarse step can leave a single tick in the range, so finer steps are tried too.
    let mut single = None;
    for target in (1..=start).rev().chain(start + 1..=20) {
        let t = at(target)?;
        if t.len() >= 2 && fits(&t) {
            return Ok(t);
        }
        if t.len() == 1 && single.is_none() {
            single = Some(t);
        }
    }
    Ok(single.unwrap_or_default())
}

/// A legend entry: its name, colour and swatch.
struct Entry {
    name: String,
    colour: Rgba,
    swatch: Swatch,
}

#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Dot,
    Block,
}

/// A plot's data, seen once: the axes and what each series contributes.
struct Seen {
    x: Ax,
    y: Ax,
    hist: Vec<Option<(Vec<f64>, Vec<f64>)>>,
    colour_range: Option<(f64, f64)>,
    empty: bool,
}

fn see(plot: &Plot) -> Result<Seen, DrawError> {
    let xlog = plot.x.scale == super::Scale::Log;
    let ylog = plot.y.scale == super::Scale::Log;
    let mut x = Ax {
        lo: 0.0,
        hi: 1.0,
        log: xlog,
        cats: None,
        cats_from_end: false,
    };
    let mut y = Ax {
        lo: 0.0,
        hi: 1.0,
        log: ylog,
        cats: None,
        cats_from_end: false,
    };
    let (mut xr, mut yr): (Span, Span) = (None, None);
    let mut y_floor = false;
    let mut colour_range = None;
    let mut any = false;
    for s in &plot.series {
        match &s.kind {
            Kind::Line { x: xs, y: ys, .. } | Kind::Scatter { x: xs, y: ys, .. } => {
                if xs.len() != ys.len() {
                    return Err(DrawError::Lengths {
                        what: s.name.clone().unwrap_or_else(|| "a series".into()),
                        lengths: vec![xs.len(), ys.len()],
                    });
                }
                if let Kind::Scatter { colours, .. } = &s.kind {
                    let n = match colours {
                        PointColours::Series => xs.len(),
                        PointColours::Each(c) => c.len(),
                        PointColours::Values(v) => {
                            colour_range = colour_range.or(finite_range(v));
                            v.len()
                        }
                    };
                    if n != xs.len() {
                        return Err(DrawError::Lengths {
                            what: format!("colours of {}", s.name.as_deref().unwrap_or("a series")),
                            lengths: vec![xs.len(), n],
                        });
                    }
                }
                for (&a, &b) in xs.iter().zip(ys) {
                    if let (Some(a), Some(b)) = (x.unit(a), y.unit(b)) {
                        grow(&mut xr, a);
                        grow(&mut yr, b);
                        any = true;
                    }
                }
            }
            Kind::Histogram { values, .. } => {
                for &v in values {
                    if let Some(u) = x.unit(v) {
                        grow(&mut xr, u);
                    }
                }
                y_floor = true;
            }
            Kind::Bar { labels, values } => {
                if labels.len() != values.len() {
                    return Err(DrawError::Lengths {
                        what: s.name.clone().unwrap_or_else(|| "a bar series".into()),
                        lengths: vec![labels.len(), values.len()],
                    });
                }
                if x.cats.is_none() {
                    x.cats = Some(labels.clone());
                }
                for &v in values {
                    if let Some(u) = y.unit(v) {
                        grow(&mut yr, u);
                        any = true;
                    }
                }
                y_floor = true;
            }
            Kind::Heatmap {
                rows,
                cols,
                values,
                row_labels,
                col_labels,
            } => {
                if rows.checked_mul(*cols) != Some(values.len()) {
                    return Err(DrawError::Lengths {
                        what: "heatmap cells (rows × cols, values)".into(),
                        lengths: vec![rows.saturating_mul(*cols), values.len()],
                    });
                }
                if x.cats.is_none() && y.cats.is_none() {
                    let names = |given: &Option<Vec<String>>, n: usize| match given {
                        Some(l) if l.len() == n => l.clone(),
                        _ => (0..n).map(|i| i.to_string()).collect(),
                    };
                    x.cats = Some(names(col_labels, *cols));
                    let mut r = names(row_labels, *rows);
                    r.reverse();
                    y.cats = Some(r);
                    y.cats_from_end = true;
                }
                if let Some(r) = finite_range(values) {
                    colour_range = colour_range.or(Some(r));
                    any = true;
                }
            }
        }
    }
    // Histograms are binned over the whole x range, so that series share their bins' width.
    let mut hist = Vec::new();
    let mut y_max_count = None;
    for s in &plot.series {
        if let Kind::Histogram { values, bins: n } = &s.kind {
            let (edges, counts) = bins(values, *n, &x);
            if !counts.is_empty() {
                any = true;
                grow(&mut y_max_count, 0.0);
                for &c in &counts {
                    grow(&mut y_max_count, c);
                }
            }
            hist.push(Some((edges, counts)));
        } else {
            hist.push(None);
        }
    }
    if let Some((_, c)) = y_max_count {
        if ylog {
            grow(&mut yr, 0.0);
            if c > 0.0 {
                grow(&mut yr, c.log10());
            }
        } else {
            grow(&mut yr, 0.0);
            grow(&mut yr, c);
        }
    }
    let pad = |(lo, hi): (f64, f64)| {
        let d = (hi - lo) * 0.05;
        (lo - d, hi + d)
    };
    set_range(&mut x, xr, &plot.x.range, pad, false);
    set_range(&mut y, yr, &plot.y.range, pad, y_floor && !ylog);
    Ok(Seen {
        x,
        y,
        hist,
        colour_range,
        empty: !any,
    })
}

fn set_range(
    ax: &mut Ax,
    data: Option<(f64, f64)>,
    fixed: &Option<(f64, f64)>,
    pad: impl Fn((f64, f64)) -> (f64, f64),
    floor: bool,
) {
    if let Some(c) = &ax.cats {
        ax.lo = -0.5;
        ax.hi = c.len().max(1) as f64 - 0.5;
        if ax.cats.as_ref().is_some_and(|c| c.is_empty()) {
            ax.cats = None;
        }
        return;
    }
    if let Some((a, b)) = *fixed {
        let (a, b) = (ax.unit(a), ax.unit(b));
        if let (Some(a), Some(b)) = (a, b) {
            let (lo, hi) = widen(Some((a.min(b), a.max(b))), ax.log);
            ax.lo = lo;
            ax.hi = hi;
            return;
        }
    }
    let data = data.map(|(lo, hi)| {
        if floor && lo >= 0.0 {
            (0.0, hi)
        } else {
            (lo, hi)
        }
    });
    let (lo, hi) = widen(data, ax.log);
    let (plo, phi) = pad((lo, hi));
    ax.lo = if floor && lo == 0.0 && data.is_some() {
        0.0
    } else {
        plo
    };
    ax.hi = phi;
}

fn entries(plot: &Plot) -> Vec<Entry> {
    let hists = plot
        .series
        .iter()
        .filter(|s| matches!(s.kind, Kind::Histogram { .. }))
        .count();
    plot.series
        .iter()
        .filter_map(|s| {
            let name = s.name.clone().filter(|n| !n.is_empty())?;
            let swatch = match s.kind {
                Kind::Line { .. } => Swatch::Line,
                Kind::Scatter { .. } => Swatch::Dot,
                Kind::Histogram { .. } | Kind::Bar { .. } => Swatch::Block,
                Kind::Heatmap { .. } => return None,
            };
            // Points coloured one by one show a colour of theirs, not the series'.
            let colour = match &s.kind {
                Kind::Scatter {
                    colours: PointColours::Each(c),
                    ..
                } => c.first().copied(),
                Kind::Scatter {
                    colours: PointColours::Values(_),
                    ..
                } => Some(viridis(0.6)),
                // Overlapping histograms are drawn see-through; so are their swatches.
                Kind::Histogram { .. } if hists > 1 => s.colour.map(|c| c.with_alpha(150)),
                _ => s.colour,
            };
            Some(Entry {
                name,
                colour: colour.unwrap_or(Rgba::BLACK),
                swatch,
            })
        })
        .collect()
}

/// Where the plot's parts go.
struct Frame {
    area: Rect,
    xt: Vec<Tick>,
    yt: Vec<Tick>,
}

/// Places the plot area in `rect`, with `right` pixels kept free on the right for a legend or a
/// colour bar.
fn frame(
    plot: &Plot,
    seen: &Seen,
    rect: Rect,
    right: f32,
    m: &Metrics,
) -> Result<Frame, DrawError> {
    let top = (m.tick_h / 2.0 + 2.0).max(PAD + 2.0);
    let x_title = plot.x.title.as_deref().is_some_and(|t| !t.is_empty());
    let y_title = plot.y.title.as_deref().is_some_and(|t| !t.is_empty());
    let bottom = TICK_LEN + 3.0 + m.tick_h + if x_title { PAD + m.title_h } else { 0.0 } + PAD;
    let h = (rect.h - top - bottom).max(10.0);
    let y0 = rect.y + top;
    let yt = axis_ticks(&seen.y, y0, h, true, false, m)?;
    let widest = yt.iter().fold(0.0f32, |w, t| w.max(t.width));
    let mut left = PAD + if y_title { m.title_h + PAD } else { 0.0 } + widest + 3.0 + TICK_LEN;
    let mut right_pad = PAD + 4.0;
    let mut xt = Vec::new();
    for _ in 0..2 {
        let w = (rect.w - left - right - right_pad).max(10.0);
        xt = axis_ticks(&seen.x, rect.x + left, w, false, true, m)?;
        let area_right = rect.x + left + w;
        let over_r = xt.last().map_or(0.0, |t| t.at + t.width / 2.0 - area_right);
        let over_l = xt
            .first()
            .map_or(0.0, |t| rect.x + left - (t.at - t.width / 2.0));
        let need_r = over_r + 2.0 - right.min(over_r + 2.0);
        let need_l = over_l + 2.0;
        let mut again = false;
        if need_r > right_pad {
            right_pad = need_r;
            again = true;
        }
        if need_l > left {
            left = need_l;
            again = true;
        }
        if !again {
            break;
        }
    }
    let w = (rect.w - left - right - right_pad).max(10.0);
    Ok(Frame {
        area: Rect::new(rect.x + left, y0, w, h),
        xt,
        yt,
    })
}

/// A coarse map of where a plot's data lies, to find a free corner for the legend.
struct Occupancy {
    area: Rect,
    cols: usize,
    rows: usize,
    cells: Vec<bool>,
}

const CELL: f32 = 4.0;

impl Occupancy {
    fn new(area: Rect) -> Occupancy {
        let cols = (area.w / CELL).ceil().max(1.0) as usize;
        let rows = (area.h / CELL).ceil().max(1.0) as usize;
        Occupancy {
            area,
            cols,
            rows,
            cells: vec![false; cols * rows],
        }
    }
    fn mark(&mut self, x: f32, y: f32) {
        let (c, r) = ((x - self.area.x) / CELL, (y - self.area.y) / CELL);
        if c >= 0.0 && r >= 0.0 && (c as usize) < self.cols && (r as usize) < self.rows {
            self.cells[r as usize * self.cols + c as usize] = true;
        }
    }
    fn mark_rect(&mut self, r: Rect) {
        let c0 = ((r.x - self.area.x) / CELL).floor().max(0.0) as usize;
        let c1 = (((r.right() - self.area.x) / CELL).ceil().max(0.0) as usize).min(self.cols);
        let r0 = ((r.y - self.area.y) / CELL).floor().max(0.0) as usize;
        let r1 = (((r.bottom() - self.area.y) / CELL).ceil().max(0.0) as usize).min(self.rows);
        for row in r0..r1 {
            for c in c0..c1 {
                self.cells[row * self.cols + c] = true;
            }
        }
    }
    fn mark_segment(&mut self, a: (f32, f32), b: (f32, f32)) {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) / (CELL / 2.0))
            .ceil()
            .min(4096.0) as usize;
        for i in 0..=n {
            let t = if n == 0 { 0.0 } else { i as f32 / n as f32 };
            self.mark(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        }
    }
    fn free(&self, r: Rect) -> bool {
        let c0 = ((r.x - self.area.x) / CELL).floor().max(0.0) as usize;
        let c1 = (((r.right() - self.area.x) / CELL).ceil().max(0.0) as usize).min(self.cols);
        let r0 = ((r.y - self.area.y) / CELL).floor().max(0.0) as usize;
        let r1 = (((r.bottom() - self.area.y) / CELL).ceil().max(0.0) as usize).min(self.rows);
        (r0..r1).all(|row| (c0..c1).all(|c| !self.cells[row * self.cols + c]))
    }
}

/// Maps data to pixels inside a plot area.
struct Map<'a> {
    x: &'a Ax,
    y: &'a Ax,
    area: Rect,
}

impl Map<'_> {
    fn px(&self, u: f64) -> f32 {
        self.area.x + (self.x.frac(u) * f64::from(self.area.w)) as f32
    }
    fn py(&self, u: f64) -> f32 {
        self.area.bottom() - (self.y.frac(u) * f64::from(self.area.h)) as f32
    }
    /// A data point in pixels, if it can be drawn.
    fn point(&self, x: f64, y: f64) -> Option<(f32, f32)> {
        Some((self.px(self.x.unit(x)?), self.py(self.y.unit(y)?)))
    }
}

fn plot_area(plot: &Plot, rect: Rect, m: &Metrics, out: &mut Vec<Layer>) -> Result<(), DrawError> {
    let seen = see(plot)?;
    let entries = if plot.legend == LegendPlace::Hidden {
        Vec::new()
    } else {
        entries(plot)
    };
    // The colour bar's labels decide its width.
    let bar = match seen.colour_range {
        Some(r) => Some(colour_bar_ticks(r, m)?),
        None => None,
    };
    let bar_w = bar.as_ref().map_or(0.0, |b| b.width);
    // The legend may be as tall as the plot area about is.
    let legend = legend_size(&entries, rect.h - 3.0 * m.tick_h - 2.0 * PAD, m)?;
    let outside_w = legend.as_ref().map_or(0.0, |l| l.w + 2.0 * PAD);
    let mut fr = frame(plot, &seen, rect, bar_w, m)?;
    let mut legend_at = None;
    let dots_mark_cap = 200_000usize;
    if let Some(size) = &legend {
        let mut outside = plot.legend == LegendPlace::Outside;
        if !outside {
            let occ = occupancy(plot, &seen, fr.area, dots_mark_cap);
            let inset = PAD + 2.0;
            let a = fr.area;
            let corners = [
                (a.right() - inset - size.w, a.y + inset),
                (a.x + inset, a.y + inset),
                (a.right() - inset - size.w, a.bottom() - inset - size.h),
                (a.x + inset, a.bottom() - inset - size.h),
            ];
            let fits_inside = size.w + 2.0 * inset <= a.w && size.h + 2.0 * inset <= a.h;
            legend_at = corners
                .iter()
                .map(|&(x, y)| Rect::new(x, y, size.w, size.h))
                .find(|r| fits_inside && occ.free(*r));
            outside = legend_at.is_none();
        }
        if outside {
            fr = frame(plot, &seen, rect, bar_w + outside_w, m)?;
            let x = fr.area.right() + bar_w + PAD * 1.5;
            legend_at = Some(Rect::new(x, fr.area.y, size.w, size.h));
        }
    }
    let map = Map {
        x: &seen.x,
        y: &seen.y,
        area: fr.area,
    };

    // Grid lines and the plot area's background.
    let mut back = Layer {
        clip: None,
        class: "grid",
        marks: Vec::new(),
    };
    back.marks.push(Mark::Rect {
        rect: fr.area,
        fill: Some(Rgba::WHITE),
        stroke: None,
    });
    let grid = Stroke {
        colour: Rgba::rgb(232, 232, 232),
        width: 1.0,
    };
    if seen.x.cats.is_none() || seen.y.cats.is_none() {
        for t in &fr.xt {
            back.marks
                .push(line((t.at, fr.area.y), (t.at, fr.area.bottom()), grid));
        }
        for t in &fr.yt {
            back.marks
                .push(line((fr.area.x, t.at), (fr.area.right(), t.at), grid));
        }
    }
    out.push(back);

    out.push(series_layer(plot, &seen, &map, m)?);
    out.push(annotation_layer(plot, &map, m)?);
    out.push(axes_layer(plot, &fr, m)?);
    if let (Some(size), Some(at)) = (&legend, legend_at) {
        out.push(legend_layer(&entries, size, at, m)?);
    }
    if let (Some(b), Some(r)) = (&bar, seen.colour_range) {
        out.push(colour_bar_layer(b, r, fr.area, m)?);
    }
    if seen.empty {
        let c = (fr.area.x + fr.area.w / 2.0, fr.area.y + fr.area.h / 2.0);
        let t = text(
            c.0,
            c.1,
            "no data".into(),
            m.axis_title,
            Anchor::Middle,
            false,
            Rgba::GREY,
            false,
            Role::Note,
        )?;
        out.push(Layer {
            clip: None,
            class: "note",
            marks: vec![t],
        });
    }
    Ok(())
}

pub(super) fn line(a: (f32, f32), b: (f32, f32), stroke: Stroke) -> Mark {
    Mark::Path {
        points: vec![a, b],
        closed: false,
        fill: None,
        stroke: Some(stroke),
    }
}

fn occupancy(plot: &Plot, seen: &Seen, area: Rect, cap: usize) -> Occupancy {
    let map = Map {
        x: &seen.x,
        y: &seen.y,
        area,
    };
    let mut occ = Occupancy::new(area);
    for (s, hist) in plot.series.iter().zip(&seen.hist) {
        match &s.kind {
            Kind::Scatter { x, y, radius, .. } => {
                let step = (x.len() / cap).max(1);
                for i in (0..x.len()).step_by(step) {
                    if let Some((px, py)) = map.point(x[i], y[i]) {
                        occ.mark_rect(Rect::new(
                            px - radius,
                            py - radius,
                            2.0 * radius,
                            2.0 * radius,
                        ));
                    }
                }
            }
            Kind::Line { x, y, .. } => {
                let mut prev = None;
                for (&a, &b) in x.iter().zip(y) {
                    let p = map.point(a, b);
                    if let (Some(p0), Some(p1)) = (prev, p) {
                        occ.mark_segment(p0, p1);
                    }
                    prev = p;
                }
            }
            Kind::Bar { .. } | Kind::Histogram { .. } => {
                for r in bar_rects(plot, s, hist.as_ref(), &map) {
                    occ.mark_rect(r);
                }
            }
            Kind::Heatmap { .. } => occ.mark_rect(area),
        }
    }
    occ
}

/// The bars of a bar or histogram series, in pixels.
fn bar_rects(
    plot: &Plot,
    s: &super::Series,
    hist: Option<&(Vec<f64>, Vec<f64>)>,
    map: &Map,
) -> Vec<Rect> {
    let base = if map.y.log {
        map.y.lo
    } else {
        0.0f64.max(map.y.lo)
    };
    let y_of = |v: f64| map.y.unit(v).map(|u| map.py(u));
    let mut out = Vec::new();
    match &s.kind {
        Kind::Histogram { .. } => {
            if let Some((edges, counts)) = hist {
                for (i, &c) in counts.iter().enumerate() {
                    if c <= 0.0 {
                        continue;
                    }
                    let (x0, x1) = (map.px(edges[i]), map.px(edges[i + 1]));
                    if let Some(top) = y_of(c) {
                        let b = map.py(base);
                        out.push(Rect::new(x0, top.min(b), x1 - x0, (b - top).abs()));
                    }
                }
            }
        }
        Kind::Bar { labels, values } => {
            let bars: Vec<&super::Series> = plot
                .series
                .iter()
                .filter(|s| matches!(s.kind, Kind::Bar { .. }))
                .collect();
            let k = bars.iter().position(|b| std::ptr::eq(*b, s)).unwrap_or(0);
            let group = 0.8 / bars.len().max(1) as f64;
            let cats = map.x.cats.clone().unwrap_or_default();
            for (label, &v) in labels.iter().zip(values) {
                let Some(i) = cats.iter().position(|c| c == label) else {
                    continue;
                };
                let Some(top) = y_of(v) else { continue };
                let x0 = i as f64 - 0.4 + k as f64 * group;
                let (p0, p1) = (map.px(x0), map.px(x0 + group));
                let b = map.py(base);
                out.push(Rect::new(p0, top.min(b), p1 - p0, (b - top).abs()));
            }
        }
        _ => {}
    }
    out
}

fn series_layer(plot: &Plot, seen: &Seen, map: &Map, m: &Metrics) -> Result<Layer, DrawError> {
    let mut layer = Layer {
        clip: Some(map.area),
        class: "data",
        marks: Vec::new(),
    };
    let hists = plot
        .series
        .iter()
        .filter(|s| matches!(s.kind, Kind::Histogram { .. }))
        .count();
    for (s, hist) in plot.series.iter().zip(&seen.hist) {
        let colour = s.colour.unwrap_or(Rgba::BLACK);
        match &s.kind {
            Kind::Line { x, y, width } => {
                let stroke = Stroke {
                    colour,
                    width: *width,
                };
                let mut run: Vec<(f32, f32)> = Vec::new();
                for (&a, &b) in x.iter().zip(y) {
                    match map.point(a, b) {
                        Some(p) => run.push(p),
                        None => {
                            if run.len() > 1 {
                                layer.marks.push(Mark::Path {
                                    points: std::mem::take(&mut run),
                                    closed: false,
                                    fill: None,
                                    stroke: Some(stroke),
                                });
                            }
                            run.clear();
                        }
                    }
                }
                if run.len() > 1 {
                    layer.marks.push(Mark::Path {
                        points: run,
                        closed: false,
                        fill: None,
                        stroke: Some(stroke),
                    });
                } else if let Some(&(cx, cy)) = run.first() {
                    layer.marks.push(Mark::Circle {
                        cx,
                        cy,
                        r: width.max(1.5),
                        fill: Some(colour),
                        stroke: None,
                    });
                }
            }
            Kind::Scatter {
                x,
                y,
                radius,
                colours,
            } => {
                layer
                    .marks
                    .push(dots(x, y, *radius, colour, colours, seen.colour_range, map));
            }
            Kind::Histogram { .. } | Kind::Bar { .. } => {
                let fill = if hists > 1 {
                    colour.with_alpha(150)
                } else {
                    colour
                };
                let edge = Stroke {
                    colour: Rgba::WHITE,
                    width: 0.8,
                };
                for r in bar_rects(plot, s, hist.as_ref(), map) {
                    layer.marks.push(Mark::Rect {
                        rect: r,
                        fill: Some(fill),
                        stroke: Some(edge),
                    });
                }
            }
            Kind::Heatmap {
                rows, cols, values, ..
            } => {
                let colours = by_value_in(values, seen.colour_range);
                layer.marks.push(Mark::Cells {
                    rect: map.area,
                    cols: *cols,
                    rows: *rows,
                    colours: colours.clone(),
                });
                if rows * cols <= MAX_CELL_LABELS && rows * cols > 0 {
                    cell_labels(&mut layer, *rows, *cols, values, &colours, map.area, m)?;
                }
            }
        }
    }
    Ok(layer)
}

fn by_value_in(values: &[f64], range: Option<(f64, f64)>) -> Vec<Rgba> {
    match range {
        Some((lo, hi)) if hi > lo => values
            .iter()
            .map(|&v| {
                if v.is_finite() {
                    viridis((v - lo) / (hi - lo))
                } else {
                    Rgba::rgb(235, 235, 235)
                }
            })
            .collect(),
        _ => by_value(values),
    }
}

fn cell_labels(
    layer: &mut Layer,
    rows: usize,
    cols: usize,
    values: &[f64],
    colours: &[Rgba],
    area: Rect,
    m: &Metrics,
) -> Result<(), DrawError> {
    let (cw, ch) = (area.w / cols as f32, area.h / rows as f32);
    let size = m.tick.min(ch * 0.55);
    if size < 7.0 {
        return Ok(());
    }
    let labels: Vec<String> = values.iter().map(|&v| ticks::short(v)).collect();
    for l in &labels {
        if measure(l, size, false)?.width > cw - 4.0 {
            return Ok(());
        }
    }
    let e = measure("0", size, false)?;
    for (i, l) in labels.into_iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        let (r, c) = (i / cols, i % cols);
        let x = area.x + (c as f32 + 0.5) * cw;
        let y = area.y + (r as f32 + 0.5) * ch + (e.ascent - e.descent) / 2.0;
        let ink = if colours[i].luminance() > 0.5 {
            Rgba::BLACK
        } else {
            Rgba::WHITE
        };
        layer.marks.push(text(
            x,
            y,
            l,
            size,
            Anchor::Middle,
            false,
            ink,
            false,
            Role::Cell,
        )?);
    }
    Ok(())
}

fn dots(
    x: &[f64],
    y: &[f64],
    radius: f32,
    colour: Rgba,
    colours: &PointColours,
    range: Option<(f64, f64)>,
    map: &Map,
) -> Mark {
    let each: Option<std::borrow::Cow<[Rgba]>> = match colours {
        PointColours::Series => None,
        PointColours::Each(c) => Some(std::borrow::Cow::Borrowed(&c[..])),
        PointColours::Values(v) => Some(std::borrow::Cow::Owned(by_value_in(v, range))),
    };
    // Mapped in chunks on rayon's threads; the chunks keep the points' order.
    let chunk = 1 << 16;
    let parts: Vec<(Vec<[f32; 2]>, Vec<Rgba>)> = (0..x.len().div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(x.len()));
            let mut xy = Vec::with_capacity(hi - lo);
            let mut kept = Vec::new();
            for i in lo..hi {
                if let Some((px, py)) = map.point(x[i], y[i]) {
                    xy.push([px, py]);
                    if let Some(c) = &each {
                        kept.push(c[i]);
                    }
                }
            }
            (xy, kept)
        })
        .collect();
    let mut xy = Vec::with_capacity(x.len());
    let mut kept = Vec::with_capacity(if each.is_some() { x.len() } else { 0 });
    for (p, k) in parts {
        xy.extend_from_slice(&p);
        kept.extend_from_slice(&k);
    }
    let colours = if each.is_some() {
        DotColours::Each(kept)
    } else {
        DotColours::One(colour)
    };
    Mark::Dots {
        xy,
        radius,
        colours,
    }
}

fn annotation_layer(plot: &Plot, map: &Map, m: &Metrics) -> Result<Layer, DrawError> {
    let mut layer = Layer {
        clip: Some(map.area),
        class: "annotations",
        marks: Vec::new(),
    };
    let a = map.area;
    for ann in &plot.annotations {
        match ann {
            Annotation::Circle {
                x,
                y,
                radius,
                colour,
            } => {
                if let Some((cx, cy)) = map.point(*x, *y) {
                    layer.marks.push(Mark::Circle {
                        cx,
                        cy,
                        r: *radius,
                        fill: None,
                        stroke: Some(Stroke {
                            colour: *colour,
                            width: 1.5,
                        }),
                    });
                }
            }
            Annotation::Shape { points, colour } => {
                let pts: Vec<(f32, f32)> = points
                    .iter()
                    .filter_map(|&(x, y)| map.point(x, y))
                    .collect();
                if pts.len() >= 2 {
                    layer.marks.push(Mark::Path {
                        points: pts,
                        closed: true,
                        fill: Some(colour.with_alpha(40)),
                        stroke: Some(Stroke {
                            colour: *colour,
                            width: 1.5,
                        }),
                    });
                }
            }
            Annotation::Text {
                x,
                y,
                text: s,
                colour,
            } => {
                if let Some((px, py)) = map.point(*x, *y) {
                    layer.marks.push(text(
                        px,
                        py,
                        s.clone(),
                        m.legend,
                        Anchor::Start,
                        false,
                        *colour,
                        false,
                        Role::Note,
                    )?);
                }
            }
            Annotation::Point {
                x,
                y,
                label,
                colour,
            } => {
                if let Some((px, py)) = map.point(*x, *y) {
                    layer.marks.push(Mark::Circle {
                        cx: px,
                        cy: py,
                        r: 4.0,
                        fill: Some(*colour),
                        stroke: Some(Stroke {
                            colour: Rgba::WHITE,
                            width: 1.0,
                        }),
                    });
                    if let Some(l) = label {
                        layer.marks.push(text(
                            px + 7.0,
                            py - 4.0,
                            l.clone(),
                            m.legend,
                            Anchor::Start,
                            false,
                            colour.darker(),
                            false,
                            Role::Note,
                        )?);
                    }
                }
            }
            Annotation::Line { from, to, colour } => {
                if let (Some(p), Some(q)) = (map.point(from.0, from.1), map.point(to.0, to.1)) {
                    layer.marks.push(line(
                        p,
                        q,
                        Stroke {
                            colour: *colour,
                            width: 1.5,
                        },
                    ));
                }
            }
            Annotation::Enclose {
                points,
                shape,
                label,
                colour,
            } => {
                let pts: Vec<(f32, f32)> = points
                    .iter()
                    .filter_map(|&(x, y)| map.point(x, y))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let stroke = Some(Stroke {
                    colour: colour.darker(),
                    width: 1.6,
                });
                let n = pts.len() as f32;
                let (cx, _) = pts
                    .iter()
                    .fold((0.0, 0.0), |(sx, sy), p| (sx + p.0 / n, sy + p.1 / n));
                let top = match shape {
                    Enclosure::Circle => {
                        let (cx, cy, r) = enclosing_circle(&pts);
                        let r = r + 8.0;
                        layer.marks.push(Mark::Circle {
                            cx,
                            cy,
                            r,
                            fill: Some(colour.with_alpha(25)),
                            stroke,
                        });
                        (cx, cy - r)
                    }
                    Enclosure::Hull => {
                        let hull = padded_hull(&pts, 8.0);
                        let top = hull
                            .iter()
                            .fold((cx, f32::INFINITY), |b, p| if p.1 < b.1 { *p } else { b });
                        layer.marks.push(Mark::Path {
                            points: hull,
                            closed: true,
                            fill: Some(colour.with_alpha(25)),
                            stroke,
                        });
                        top
                    }
                };
                if let Some(l) = label {
                    let e = measure(l, m.legend, true)?;
                    let x = top.0.clamp(
                        a.x + e.width / 2.0 + 2.0,
                        (a.right() - e.width / 2.0 - 2.0).max(a.x + e.width / 2.0 + 2.0),
                    );
                    let y = (top.1 - 4.0).clamp(a.y + e.ascent + 2.0, a.bottom() - e.descent - 2.0);
                    // A faint white plate keeps the label readable over points and outlines.
                    let plate = Rect::new(
                        x - e.width / 2.0 - 3.0,
                        y - e.ascent - 1.0,
                        e.width + 6.0,
                        e.height() + 2.0,
                    );
                    layer.marks.push(Mark::Rect {
                        rect: plate,
                        fill: Some(Rgba::WHITE.with_alpha(200)),
                        stroke: None,
                    });
                    layer.marks.push(text(
                        x,
                        y,
                        l.clone(),
                        m.legend,
                        Anchor::Middle,
                        false,
                        colour.darker(),
                        true,
                        Role::Note,
                    )?);
                }
            }
        }
    }
    Ok(layer)
}

/// The smallest circle holding every point (Welzl's algorithm, iterative, over a fixed
/// shuffle so the result does not depend on luck): centre and radius.
fn enclosing_circle(pts: &[(f32, f32)]) -> (f32, f32, f32) {
    let mut p: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(x, y)| (f64::from(x), f64::from(y)))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..p.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        p.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let inside = |c: (f64, f64, f64), q: (f64, f64)| {
        ((q.0 - c.0).powi(2) + (q.1 - c.1).powi(2)).sqrt() <= c.2 * (1.0 + 1e-9) + 1e-6
    };
    let two = |a: (f64, f64), b: (f64, f64)| {
        let (x, y) = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
        (x, y, ((a.0 - x).powi(2) + (a.1 - y).powi(2)).sqrt())
    };
    let three = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        let d = 2.0 * (a.0 * (b.1 - c.1) + b.0 * (c.1 - a.1) + c.0 * (a.1 - b.1));
        if d.abs() < 1e-12 {
            // Collinear: the widest pair.
            let cands = [two(a, b), two(a, c), two(b, c)];
            return cands
                .into_iter()
                .fold((0.0, 0.0, -1.0), |m, x| if x.2 > m.2 { x } else { m });
        }
        let sq = |q: (f64, f64)| q.0 * q.0 + q.1 * q.1;
        let x = (sq(a) * (b.1 - c.1) + sq(b) * (c.1 - a.1) + sq(c) * (a.1 - b.1)) / d;
        let y = (sq(a) * (c.0 - b.0) + sq(b) * (a.0 - c.0) + sq(c) * (b.0 - a.0)) / d;
        (x, y, ((a.0 - x).powi(2) + (a.1 - y).powi(2)).sqrt())
    };
    let Some(&first) = p.first() else {
        return (0.0, 0.0, 0.0);
    };
    let mut c = (first.0, first.1, 0.0);
    for i in 1..p.len() {
        if inside(c, p[i]) {
            continue;
        }
        c = (p[i].0, p[i].1, 0.0);
        for j in 0..i {
            if inside(c, p[j]) {
                continue;
            }
            c = two(p[i], p[j]);
            for k in 0..j {
                if !inside(c, p[k]) {
                    c = three(p[i], p[j], p[k]);
                }
            }
        }
    }
    (c.0 as f32, c.1 as f32, c.2 as f32)
}

/// The convex hull of `pts` (Andrew's monotone chain), each corner pushed `pad` pixels away from
/// the centre so the outline clears the points.
fn padded_hull(pts: &[(f32, f32)], pad: f32) -> Vec<(f32, f32)> {
    let mut p: Vec<(f32, f32)> = pts.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.dedup();
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::new();
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f32, f32)>> = if pass == 0 {
            Box::new(p.iter())
        } else {
            Box::new(p.iter().rev())
        };
        for &q in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    if hull.len() < 3 {
        // A point or a line: a small box around it.
        let (x0, x1) = p.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |m, q| {
            (m.0.min(q.0), m.1.max(q.0))
        });
        let (y0, y1) = p.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |m, q| {
            (m.0.min(q.1), m.1.max(q.1))
        });
        return vec![
            (x0 - pad, y0 - pad),
            (x1 + pad, y0 - pad),
            (x1 + pad, y1 + pad),
            (x0 - pad, y1 + pad),
        ];
    }
    let n = hull.len() as f32;
    let (cx, cy) = hull
        .iter()
        .fold((0.0, 0.0), |(sx, sy), q| (sx + q.0 / n, sy + q.1 / n));
    hull.iter()
        .map(|&(x, y)| {
            let (dx, dy) = (x - cx, y - cy);
            let d = (dx * dx + dy * dy).sqrt().max(1e-3);
            (x + dx / d * pad, y + dy / d * pad)
        })
        .collect()
}

fn axes_layer(plot: &Plot, fr: &Frame, m: &Metrics) -> Result<Layer, DrawError> {
    let mut layer = Layer {
        clip: None,
        class: "axes",
        marks: Vec::new(),
    };
    let a = fr.area;
    let ink = Stroke {
        colour: Rgba::INK,
        width: 1.0,
    };
    layer.marks.push(Mark::Rect {
        rect: a,
        fill: None,
        stroke: Some(ink),
    });
    for t in &fr.xt {
        layer
            .marks
            .push(line((t.at, a.bottom()), (t.at, a.bottom() + TICK_LEN), ink));
        let y = a.bottom() + TICK_LEN + 3.0 + m.tick_ascent;
        layer.marks.push(text(
            t.at,
            y,
            t.label.clone(),
            m.tick,
            Anchor::Middle,
            false,
            Rgba::INK,
            false,
            Role::TickX,
        )?);
    }
    for t in &fr.yt {
        layer
            .marks
            .push(line((a.x - TICK_LEN, t.at), (a.x, t.at), ink));
        let y = t.at + m.tick_ascent - m.tick_h / 2.0;
        layer.marks.push(text(
            a.x - TICK_LEN - 3.0,
            y,
            t.label.clone(),
            m.tick,
            Anchor::End,
            false,
            Rgba::INK,
            false,
            Role::TickY,
        )?);
    }
    if let Some(title) = plot.x.title.as_deref().filter(|t| !t.is_empty()) {
        let t = fit(title, m.axis_title, false, a.w)?;
        let y = a.bottom() + TICK_LEN + 3.0 + m.tick_h + PAD + m.title_ascent;
        layer.marks.push(text(
            a.x + a.w / 2.0,
            y,
            t,
            m.axis_title,
            Anchor::Middle,
            false,
            Rgba::INK,
            false,
            Role::AxisTitle,
        )?);
    }
    if let Some(title) = plot.y.title.as_deref().filter(|t| !t.is_empty()) {
        let t = fit(title, m.axis_title, false, a.h)?;
        let widest = fr.yt.iter().fold(0.0f32, |w, t| w.max(t.width));
        let x = a.x - TICK_LEN - 3.0 - widest - PAD - (m.title_h - m.title_ascent);
        layer.marks.push(text(
            x,
            a.y + a.h / 2.0,
            t,
            m.axis_title,
            Anchor::Middle,
            true,
            Rgba::INK,
            false,
            Role::AxisTitle,
        )?);
    }
    Ok(layer)
}

/// The legend box's size and the entries that fit.
struct LegendSize {
    w: f32,
    h: f32,
    shown: usize,
    row: f32,
    names: Vec<String>,
}

const SWATCH: f32 = 20.0;

fn legend_size(entries: &[Entry], room: f32, m: &Metrics) -> Result<Option<LegendSize>, DrawError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let row = m.legend_h * 1.3;
    let fits = (((room - 3.0 * PAD) / row).floor().max(1.0)) as usize;
    let mut shown = entries.len().min(fits);
    let mut names: Vec<String> = Vec::new();
    for e in &entries[..shown] {
        names.push(fit(&e.name, m.legend, false, MAX_LEGEND)?);
    }
    if shown < entries.len() && shown > 0 {
        shown -= 1;
        names.truncate(shown);
        names.push(format!("… {} more", entries.len() - shown));
    }
    let mut widest = 0.0f32;
    for n in &names {
        widest = widest.max(measure(n, m.legend, false)?.width);
    }
    let w = PAD + SWATCH + PAD + widest * HINTING_SLACK + PAD;
    let h = PAD * 0.7 + names.len() as f32 * row + PAD * 0.7;
    Ok(Some(LegendSize {
        w,
        h,
        shown,
        row,
        names,
    }))
}

fn legend_layer(
    entries: &[Entry],
    size: &LegendSize,
    at: Rect,
    m: &Metrics,
) -> Result<Layer, DrawError> {
    let mut layer = Layer {
        clip: None,
        class: "legend",
        marks: Vec::new(),
    };
    layer.marks.push(Mark::Rect {
        rect: at,
        fill: Some(Rgba::WHITE.with_alpha(230)),
        stroke: Some(Stroke {
            colour: Rgba::rgb(200, 200, 200),
            width: 1.0,
        }),
    });
    for (i, name) in size.names.iter().enumerate() {
        let mid = at.y + PAD * 0.7 + (i as f32 + 0.5) * size.row;
        let sx = at.x + PAD;
        if let Some(e) = entries.get(i).filter(|_| i < size.shown) {
            match e.swatch {
                Swatch::Line => layer.marks.push(line(
                    (sx, mid),
                    (sx + SWATCH, mid),
                    Stroke {
                        colour: e.colour,
                        width: 2.0,
                    },
                )),
                Swatch::Dot => layer.marks.push(Mark::Circle {
                    cx: sx + SWATCH / 2.0,
                    cy: mid,
                    r: 4.0,
                    fill: Some(e.colour),
                    stroke: None,
                }),
                Swatch::Block => layer.marks.push(Mark::Rect {
                    rect: Rect::new(sx + 3.0, mid - 5.0, SWATCH - 6.0, 10.0),
                    fill: Some(e.colour),
                    stroke: None,
                }),
            }
        }
        let y = mid + m.legend_ascent - m.legend_h / 2.0;
        layer.marks.push(text(
            sx + SWATCH + PAD,
            y,
            name.clone(),
            m.legend,
            Anchor::Start,
            false,
            Rgba::INK,
            false,
            Role::Legend,
        )?);
    }
    Ok(layer)
}

/// A colour bar's ticks (values and labels) and the width it needs beside the plot.
struct ColourBar {
    values: Vec<f64>,
    labels: Vec<String>,
    width: f32,
}

const BAR_GAP: f32 = 14.0;
const BAR_W: f32 = 14.0;

fn colour_bar_ticks(range: (f64, f64), m: &Metrics) -> Result<ColourBar, DrawError> {
    let (lo, hi) = widen(Some(range), false);
    let (values, step) = ticks::linear(lo, hi, 5);
    let labels = ticks::labels(&values, step);
    let mut widest = 0.0f32;
    for l in &labels {
        widest = widest.max(measure(l, m.tick, false)?.width);
    }
    Ok(ColourBar {
        values,
        labels,
        width: BAR_GAP + BAR_W + TICK_LEN + 3.0 + widest + PAD,
    })
}

fn colour_bar_layer(
    b: &ColourBar,
    range: (f64, f64),
    area: Rect,
    m: &Metrics,
) -> Result<Layer, DrawError> {
    let (lo, hi) = widen(Some(range), false);
    let rect = Rect::new(area.right() + BAR_GAP, area.y, BAR_W, area.h);
    let steps = 128usize;
    let colours = (0..steps)
        .map(|i| viridis(1.0 - (i as f64 + 0.5) / steps as f64))
        .collect();
    let mut layer = Layer {
        clip: None,
        class: "colour-bar",
        marks: Vec::new(),
    };
    layer.marks.push(Mark::Cells {
        rect,
        cols: 1,
        rows: steps,
        colours,
    });
    let ink = Stroke {
        colour: Rgba::INK,
        width: 1.0,
    };
    layer.marks.push(Mark::Rect {
        rect,
        fill: None,
        stroke: Some(ink),
    });
    let e = measure("0", m.tick, false)?;
    for (v, l) in b.values.iter().zip(&b.labels) {
        let y = rect.bottom() - ((v - lo) / (hi - lo)) as f32 * rect.h;
        layer
            .marks
            .push(line((rect.right(), y), (rect.right() + TICK_LEN, y), ink));
        let ty = y + e.ascent - e.height() / 2.0;
        layer.marks.push(text(
            rect.right() + TICK_LEN + 3.0,
            ty,
            l.clone(),
            m.tick,
            Anchor::Start,
            false,
            Rgba::INK,
            false,
            Role::ColourBar,
        )?);
    }
    Ok(layer)
}
