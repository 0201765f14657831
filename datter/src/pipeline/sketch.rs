//! The drawing ops: a figure put together step by step from the frame the pipeline holds.
//!
//! `frame` starts a figure (and finishes the one before); `axis`, `legend`, `colour`,
//! `gradient`, `font` and `clusters` set how it is drawn; `plot` adds the data as it is at
//! that step; `point`, `line`, `circle`, `shape`, `text` and `expr` annotate it. A figure is
//! finished by the next `frame` or the end of the pipeline, and only when something was
//! plotted. Every setting has a default that fits the data: the axes are the first two
//! measured columns (`pc1`, `pc2` after `pca`), the colour is by `cluster`, else by `label`,
//! and a plot is a line when x rises within every group, else a scatter.
//!
//! `animate` (before or after the figure's plots) makes the figure an animation: each plot
//! keeps the columns it drew and how, and at the finish is drawn again once per frame on the
//! frame's rows (see `animate.rs` for which), over the whole data's axis ranges, with every
//! group in the whole data's colour and in the legend from the first frame on (an `auto`
//! legend goes outside, where it neither jumps nor covers data that comes later). The
//! figure is then the last frame.

use std::collections::HashMap;

use rayon::prelude::*;
use serde_json::{Map, Value};

use super::animate::Animate;
use super::run::{CLUSTER, LABEL};
use crate::draw::colour::categorical;
use crate::draw::{
    Animation, Annotation, ClusterStyle, Enclosure, Figure, LegendPlace, Plot, PointColours, Rgba,
    Scale, Series,
};
use crate::{DataError, Frame};

/// The kinds `plot` draws (`visualtype` names the same).
pub const KINDS: [&str; 5] = ["line", "scatter", "histogram", "bar", "heatmap"];
/// Where `legend` puts the legend.
pub const PLACES: [&str; 3] = ["auto", "outside", "hidden"];
/// How `clusters` outlines a cluster.
pub const OUTLINES: [&str; 3] = ["circle", "hull", "none"];

/// A figure being put together, and how its next plot is drawn.
#[derive(Debug, Clone)]
pub struct Sketch {
    title: Option<String>,
    width: u32,
    height: u32,
    text_scale: Option<f32>,
    style: Style,
    plot: Plot,
    plotted: bool,
    /// The annotation ops' marks, for an animation's frames.
    notes: Vec<Annotation>,
    /// What the figure's `animate` step asks, known from the first plot it follows on.
    animate: Option<Animate>,
    /// Whether that step has run: a plot after it checks its column at once.
    animate_ran: bool,
    /// The plots so far, kept to be drawn again per frame when the figure is animated.
    recorded: Vec<Recorded>,
}

/// How the next plot is drawn: what `axis`, `legend`, `colour`, `gradient`, `visualtype` and
/// `clusters` set.
#[derive(Debug, Clone)]
struct Style {
    x: Option<String>,
    y: Option<String>,
    log_x: bool,
    log_y: bool,
    legend: LegendPlace,
    colour_by: Option<String>,
    gradient_by: Option<String>,
    kind: Option<String>,
    clusters: Option<ClusterStyle>,
}

/// One plot of an animated figure: how it was drawn and the columns it drew from.
#[derive(Debug, Clone)]
struct Recorded {
    style: Style,
    /// The plot step's params, its columns and kind settled.
    params: Map<String, Value>,
    /// The columns it read, and the one the frames step through.
    data: Frame,
    /// That column, or why the data has none that fits.
    over: Result<String, DataError>,
}

/// A finished figure and the file name it is written under (`<name>.png`, `.svg`).
#[derive(Debug, Clone)]
pub struct Drawn {
    /// Unique in the output: `figure-1`, or the title made a file name.
    pub name: String,
    /// Its title, for the report's caption.
    pub title: String,
    /// The figure (an animation's last frame).
    pub figure: Figure,
    /// Its frames, when an `animate` step made it an animation.
    pub animation: Option<Animation>,
    /// Whether the report page shows it (a table's picture is not: the page shows the table).
    pub in_report: bool,
}

impl Drawn {
    /// Titles it `title`; an animation's frames keep their captions after it.
    pub(super) fn retitle(&mut self, title: String) {
        let old = std::mem::replace(&mut self.title, title);
        let frames = self.animation.iter_mut().flat_map(|a| a.frames.iter_mut());
        for f in frames.chain(std::iter::once(&mut self.figure)) {
            let caption = f
                .title
                .as_deref()
                .and_then(|t| t.strip_prefix(old.as_str()))
                .unwrap_or_default();
            f.title = Some(format!("{}{caption}", self.title));
        }
    }
}

impl Sketch {
    /// A new figure, as `frame`'s params say.
    pub fn new(p: &Map<String, Value>) -> Sketch {
        let size = |name: &str, default: u32| {
            p.get(name)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(default)
        };
        Sketch {
            title: text(p, "title").map(str::to_owned),
            width: size("width", 800),
            height: size("height", 560),
            text_scale: None,
            style: Style {
                x: None,
                y: None,
                log_x: false,
                log_y: false,
                legend: LegendPlace::Hidden,
                colour_by: None,
                gradient_by: None,
                kind: None,
                clusters: None,
            },
            plot: Plot::default(),
            plotted: false,
            notes: Vec::new(),
            animate: None,
            animate_ran: false,
            recorded: Vec::new(),
        }
    }

    /// `axis`: which columns, and log scales.
    pub fn axis(&mut self, p: &Map<String, Value>) {
        if let Some(x) = text(p, "x") {
            self.style.x = Some(x.to_owned());
        }
        if let Some(y) = text(p, "y") {
            self.style.y = Some(y.to_owned());
        }
        self.style.log_x |= flag(p, "log_x");
        self.style.log_y |= flag(p, "log_y");
    }

    /// `legend`: where (auto by default).
    pub fn legend(&mut self, p: &Map<String, Value>) {
        self.style.legend = match text(p, "place") {
            Some("outside") => LegendPlace::Outside,
            Some("hidden") => LegendPlace::Hidden,
            _ => LegendPlace::Auto,
        };
    }

    /// `colour`: one series per value of a column (default `cluster`, else `label`).
    pub fn colour(&mut self, p: &Map<String, Value>) {
        self.style.colour_by = text(p, "by").map(str::to_owned);
        self.style.gradient_by = None;
    }

    /// `gradient`: points coloured by a number column, with a colour bar.
    pub fn gradient(&mut self, p: &Map<String, Value>) {
        self.style.gradient_by = text(p, "by").map(str::to_owned);
        self.style.colour_by = None;
    }

    /// `font`: text larger or smaller than the default.
    pub fn font(&mut self, p: &Map<String, Value>) {
        self.text_scale = p.get("scale").and_then(Value::as_f64).map(|s| s as f32);
    }

    /// `visualtype`: the kind of the plots that follow.
    pub fn kind(&mut self, p: &Map<String, Value>) {
        self.style.kind = text(p, "kind").map(str::to_owned);
    }

    /// `clusters`: scatters of the `cluster` column are outlined and named per cluster.
    pub fn clusters(&mut self, p: &Map<String, Value>) {
        let enclose = match text(p, "outline") {
            Some("hull") => Some(Enclosure::Hull),
            Some("none") => None,
            _ if p.get("circle").and_then(Value::as_bool) == Some(false) => None,
            _ => Some(Enclosure::Circle),
        };
        self.style.clusters = Some(ClusterStyle {
            enclose,
            label: p.get("label").and_then(Value::as_bool).unwrap_or(true),
            drop_noise: p.get("drop_noise").and_then(Value::as_bool).unwrap_or(true),
            ..ClusterStyle::default()
        });
        if self.style.colour_by.is_none() {
            self.style.colour_by = Some(CLUSTER.to_owned());
        }
    }

    /// `animate`: the figure becomes an animation (it may come before or after the plots).
    /// The plots before it were kept for it (see [`Sketch::foresee`]); their column is
    /// checked now.
    pub fn animate(&mut self, p: &Map<String, Value>) -> Result<(), DataError> {
        let a = Animate::new(p)?;
        if let Some(Err(e)) = self.recorded.iter().map(|r| &r.over).find(|o| o.is_err()) {
            return Err(e.clone());
        }
        self.animate = Some(a);
        self.animate_ran = true;
        Ok(())
    }

    /// An `animate` step comes later in this figure: the plots from now on keep their data
    /// for it. (A bad param is refused when the step itself runs.)
    pub fn foresee(&mut self, p: &Map<String, Value>) {
        if let Ok(a) = Animate::new(p) {
            self.animate = Some(a);
        }
    }

    /// `plot`: the data as it is now, drawn as `kind` (or what fits).
    pub fn plot(&mut self, data: &Frame, p: &Map<String, Value>) -> Result<(), DataError> {
        if let Some(x) = text(p, "x") {
            self.style.x = Some(x.to_owned());
        }
        if let Some(y) = text(p, "y") {
            self.style.y = Some(y.to_owned());
        }
        let settled = self.style.settle(data, p)?;
        self.style.draw(&mut self.plot, data, &settled, None)?;
        // No `legend` step, no legend. Cluster names sit by their outlines all over the
        // plot: a legend inside would cover some of them.
        self.plot.legend = match self.style.legend {
            LegendPlace::Auto if self.style.clusters.is_some() => LegendPlace::Outside,
            place => place,
        };
        if let Some(a) = &self.animate {
            let r = self.style.record(data, settled, a)?;
            if self.animate_ran
                && let Err(e) = &r.over
            {
                return Err(e.clone());
            }
            self.recorded.push(r);
        }
        self.plotted = true;
        Ok(())
    }

    /// `point`, `line`, `circle`, `shape`, `text`, `expr`: marks in data units.
    pub fn annotate(&mut self, op: &str, p: &Map<String, Value>) {
        let num = |name: &str| p.get(name).and_then(Value::as_f64).unwrap_or(0.0);
        let colour = Rgba::rgb(0x33, 0x33, 0x33);
        let a = match op {
            "point" => Annotation::Point {
                x: num("x"),
                y: num("y"),
                label: text(p, "label").map(str::to_owned),
                colour,
            },
            "line" => Annotation::Line {
                from: (num("x1"), num("y1")),
                to: (num("x2"), num("y2")),
                colour,
            },
            "circle" => Annotation::Circle {
                x: num("x"),
                y: num("y"),
                radius: p.get("radius").and_then(Value::as_f64).unwrap_or(12.0) as f32,
                colour,
            },
            "shape" => Annotation::Shape {
                points: p
                    .get("points")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|q| Some((q.get(0)?.as_f64()?, q.get(1)?.as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
                colour,
            },
            // `text` and `expr` (a formula shown as it is written).
            _ => Annotation::Text {
                x: num("x"),
                y: num("y"),
                text: text(p, "text")
                    .or(text(p, "formula"))
                    .unwrap_or_default()
                    .to_owned(),
                colour,
            },
        };
        self.notes.push(a.clone());
        self.plot.annotate(a);
    }

    /// Its title, as `frame` gave it.
    pub fn title(&self) -> Option<String> {
        self.title.clone()
    }

    /// Its size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Its text scale, as `font` gave it.
    pub fn text_scale(&self) -> Option<f32> {
        self.text_scale
    }

    /// Whether anything was plotted on it yet.
    pub fn plotted(&self) -> bool {
        self.plotted
    }

    /// The finished figure, if anything was plotted; `n` numbers it among the output's.
    pub fn finish(mut self, n: usize) -> Result<Option<Drawn>, DataError> {
        if !self.plotted {
            return Ok(None);
        }
        let title = self.title.clone().unwrap_or_else(|| {
            let x = self.plot.x.title.clone().unwrap_or_default();
            let y = self.plot.y.title.clone().unwrap_or_default();
            format!("{y} by {x}")
        });
        let name = file_name(self.title.as_deref(), n);
        let animation = match &self.animate {
            Some(a) if !self.recorded.is_empty() => Some(self.animation(a, &title)?),
            _ => None,
        };
        let figure = match animation.as_ref().and_then(|a| a.frames.last()) {
            Some(last) => last.clone(),
            None => {
                let plot = std::mem::take(&mut self.plot);
                self.figure(plot, title.clone())
            }
        };
        Ok(Some(Drawn {
            name,
            title,
            figure,
            animation,
            in_report: true,
        }))
    }

    fn figure(&self, plot: Plot, title: String) -> Figure {
        let figure = Figure::new(self.width, self.height, plot).with_title(title);
        match self.text_scale {
            Some(s) => figure.with_text_scale(s),
            None => figure,
        }
    }

    /// The frames: each plot drawn again on each frame's rows, over the whole data's axes.
    fn animation(&self, a: &Animate, title: &str) -> Result<Animation, DataError> {
        let overs: Vec<(String, Vec<f64>)> = self
            .recorded
            .iter()
            .map(|r| {
                let over = r.over.clone()?;
                let values = r.data.numbers(&over)?;
                Ok((over, values))
            })
            .collect::<Result<_, DataError>>()?;
        let values: Vec<Vec<f64>> = overs.iter().map(|(_, v)| v.clone()).collect();
        let frames = a.values(&values);
        let over = overs.first().map_or("", |(name, _)| name.as_str());
        let [x_range, y_range] = crate::draw::layout::axis_ranges(&self.plot)
            .map_err(|e| DataError::Invalid(format!("animate: {e}")))?;
        let orders: Vec<Option<Vec<String>>> = self
            .recorded
            .iter()
            .map(|r| r.style.group_order(&r.data))
            .collect();
        let legend = match self.plot.legend {
            LegendPlace::Auto => LegendPlace::Outside,
            place => place,
        };
        let frames = frames
            .par_iter()
            .map(|&v| {
                let mut plot = Plot::default();
                for ((r, over), order) in self.recorded.iter().zip(&values).zip(&orders) {
                    let rows = r.data.filter(&a.rows(over, v));
                    r.style
                        .draw(&mut plot, &rows, &r.params, order.as_deref())
                        .map_err(|e| DataError::Invalid(format!("animate, frame {v}: {e}")))?;
                }
                plot.annotations.extend(self.notes.iter().cloned());
                plot.legend = legend;
                plot.x.range = x_range;
                plot.y.range = y_range;
                let caption = a.caption(over, v);
                Ok(self.figure(plot, format!("{title} — {caption}")))
            })
            .collect::<Result<Vec<Figure>, DataError>>()?;
        Ok(Animation {
            frames,
            delay_ms: a.delay_ms,
        })
    }
}

impl Style {
    /// The plot step's params with what the data settles filled in: `x`, `y`, `kind` and a
    /// heatmap's `value`, so that drawing them again on fewer rows draws the same.
    fn settle(
        &self,
        data: &Frame,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DataError> {
        let (x_name, y_name) = self.columns(data)?;
        let kind = text(p, "kind")
            .or(self.kind.as_deref())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let groups = self.groups(data);
                if rises_within(data, &x_name, groups.as_deref()) {
                    "line".to_owned()
                } else {
                    "scatter".to_owned()
                }
            });
        let mut settled = p.clone();
        if kind == "heatmap" && text(p, "value").is_none() {
            let value = data
                .numeric_names()
                .into_iter()
                .find(|n| *n != x_name && *n != y_name && !super::run::is_provenance(n))
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "a heatmap of {x_name} × {y_name} needs a third number column: name it with value"
                    ))
                })?;
            settled.insert("value".into(), Value::String(value));
        }
        settled.insert("x".into(), Value::String(x_name));
        settled.insert("y".into(), Value::String(y_name));
        settled.insert("kind".into(), Value::String(kind));
        Ok(settled)
    }

    /// Adds `data`'s series to `plot` as the settled params `p` say. `order` fixes the groups'
    /// order and colours (an animation's frames keep the whole data's); a group in it with no
    /// rows here is an empty series, so it stays in the legend.
    fn draw(
        &self,
        plot: &mut Plot,
        data: &Frame,
        p: &Map<String, Value>,
        order: Option<&[String]>,
    ) -> Result<(), DataError> {
        let x_name = text(p, "x").unwrap_or_default();
        let y_name = text(p, "y").unwrap_or_default();
        let kind = text(p, "kind").unwrap_or_default();
        plot.x.title.get_or_insert_with(|| x_name.to_owned());
        if kind != "histogram" {
            plot.y.title.get_or_insert_with(|| y_name.to_owned());
        } else {
            plot.y.title.get_or_insert_with(|| "count".to_owned());
        }
        if self.log_x {
            plot.x.scale = Scale::Log;
        }
        if self.log_y {
            plot.y.scale = Scale::Log;
        }
        let x = data.numbers(x_name)?;
        match kind {
            "histogram" => {
                let bins = p
                    .get("bins")
                    .and_then(Value::as_u64)
                    .and_then(|b| usize::try_from(b).ok())
                    .unwrap_or(0);
                self.by_group(plot, data, order, |name, rows, colour| {
                    let values = rows.iter().map(|&r| x[r]).collect();
                    Series::histogram(name, values, bins).with_colour(colour)
                });
            }
            "bar" => {
                let y = data.numbers(y_name)?;
                let labels = data.column(x_name)?;
                let names = (0..data.rows()).map(|r| labels.text_at(r)).collect();
                plot.add(Series::bar(y_name, names, y));
            }
            "heatmap" => {
                let y = data.numbers(y_name)?;
                heatmap(plot, data, &x, &y, text(p, "value").unwrap_or_default())?;
            }
            "line" | "scatter" => {
                let y = data.numbers(y_name)?;
                let clusters = self
                    .clusters
                    .filter(|_| kind == "scatter")
                    .and_then(|s| Some((s, data.get(CLUSTER)?)));
                if let Some((style, col)) = clusters {
                    let labels: Vec<i64> = (0..data.rows())
                        .map(|r| {
                            let v = col.f64_at(r);
                            if v.is_finite() { v as i64 } else { -1 }
                        })
                        .collect();
                    plot.add_clusters(&x, &y, &labels, style)
                        .map_err(|e| DataError::Invalid(e.to_string()))?;
                } else if let Some(g) = &self.gradient_by {
                    let values = data.numbers(g)?;
                    plot.add(
                        Series::scatter(y_name, x, y, 3.0)
                            .with_point_colours(PointColours::Values(values)),
                    );
                } else {
                    let line = kind == "line";
                    // Large scatters draw as small points; a few hundred as clear discs.
                    let radius = if data.rows() > 20_000 { 1.5 } else { 3.0 };
                    self.by_group(plot, data, order, |name, rows, colour| {
                        let (gx, gy) = rows.iter().map(|&r| (x[r], y[r])).unzip();
                        if line {
                            Series::line(name, gx, gy).with_colour(colour)
                        } else {
                            Series::scatter(name, gx, gy, radius).with_colour(colour)
                        }
                    });
                }
            }
            other => {
                return Err(DataError::Invalid(format!(
                    "plot has no kind {other:?}; use one of {}",
                    KINDS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The plot kept for an animation: the columns drawing `settled` reads from `data`, and
    /// the one the frames step through.
    fn record(
        &self,
        data: &Frame,
        settled: Map<String, Value>,
        a: &Animate,
    ) -> Result<Recorded, DataError> {
        let x = text(&settled, "x").unwrap_or_default();
        let over = a.column(data, x);
        let mut names: Vec<String> = ["x", "y", "value"]
            .iter()
            .filter_map(|k| text(&settled, k).map(str::to_owned))
            .collect();
        names.extend(self.groups(data));
        names.extend(self.gradient_by.clone());
        if self.clusters.is_some() {
            names.push(CLUSTER.to_owned());
        }
        names.extend(over.clone().ok());
        let mut columns = Vec::with_capacity(names.len());
        for n in names {
            if !columns.iter().any(|(have, _)| *have == n)
                && let Some(col) = data.get(&n)
            {
                columns.push((n, col.clone()));
            }
        }
        Ok(Recorded {
            style: self.clone(),
            params: settled,
            data: Frame::from_columns(columns)?,
            over,
        })
    }

    /// The axis columns: as set, else the first two measured columns.
    fn columns(&self, data: &Frame) -> Result<(String, String), DataError> {
        let measured: Vec<String> = data
            .numeric_names()
            .into_iter()
            .filter(|n| {
                !super::run::is_provenance(n)
                    && n != CLUSTER
                    && Some(n) != self.colour_by.as_ref()
                    && Some(n) != self.gradient_by.as_ref()
            })
            .collect();
        let mut free = measured
            .iter()
            .filter(|n| Some(*n) != self.x.as_ref() && Some(*n) != self.y.as_ref());
        let x = match &self.x {
            Some(x) => x.clone(),
            None => free.next().cloned().ok_or_else(|| no_columns(data))?,
        };
        let y = match &self.y {
            Some(y) => y.clone(),
            None => free.next().cloned().unwrap_or_else(|| x.clone()),
        };
        Ok((x, y))
    }

    /// The column the series are split by: as `colour` said, else `cluster`, else `label`.
    fn groups(&self, data: &Frame) -> Option<String> {
        if self.gradient_by.is_some() {
            return None;
        }
        self.colour_by
            .clone()
            .or_else(|| {
                [CLUSTER, LABEL]
                    .into_iter()
                    .map(str::to_owned)
                    .find(|c| data.get(c).is_some())
            })
            .filter(|c| data.get(c).is_some())
    }

    /// The groups of `data` in order of first appearance, if its series are split by a column.
    fn group_order(&self, data: &Frame) -> Option<Vec<String>> {
        let col = data.get(&self.groups(data)?)?;
        let mut seen = std::collections::HashSet::new();
        Some(
            (0..data.rows())
                .map(|r| col.text_at(r))
                .filter(|k| seen.insert(k.clone()))
                .collect(),
        )
    }

    /// One series per group, in `order` and then in order of first appearance, the i-th in
    /// the i-th palette colour (as [`crate::draw::colour::by_category`] gives them).
    fn by_group(
        &self,
        plot: &mut Plot,
        data: &Frame,
        order: Option<&[String]>,
        mut make: impl FnMut(String, &[usize], Rgba) -> Series,
    ) {
        let Some(col) = self.groups(data).and_then(|g| data.get(&g)) else {
            let all: Vec<usize> = (0..data.rows()).collect();
            plot.add(make(String::new(), &all, categorical(0)).unnamed());
            return;
        };
        let mut names: Vec<String> = order.map(<[String]>::to_vec).unwrap_or_default();
        let mut index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for r in 0..data.rows() {
            let key = col.text_at(r);
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), names.len());
                    names.push(key);
                    rows.push(Vec::new());
                    names.len() - 1
                }
            };
            rows[i].push(r);
        }
        for (i, (name, rows)) in names.into_iter().zip(rows).enumerate() {
            plot.add(make(name, &rows, categorical(i)));
        }
    }
}

/// A heatmap of `value` over the x and y columns' distinct values.
fn heatmap(
    plot: &mut Plot,
    data: &Frame,
    x: &[f64],
    y: &[f64],
    value: &str,
) -> Result<(), DataError> {
    let v = data.numbers(value)?;
    let distinct = |xs: &[f64]| {
        let mut d: Vec<f64> = xs.iter().copied().filter(|a| a.is_finite()).collect();
        d.sort_by(f64::total_cmp);
        d.dedup();
        d
    };
    let (cols, rows) = (distinct(x), distinct(y));
    let mut cells = vec![f64::NAN; rows.len() * cols.len()];
    for i in 0..x.len() {
        let (Ok(c), Ok(r)) = (
            cols.binary_search_by(|a| a.total_cmp(&x[i])),
            rows.binary_search_by(|a| a.total_cmp(&y[i])),
        ) else {
            continue;
        };
        // Row 0 is drawn at the top: the largest y first.
        cells[(rows.len() - 1 - r) * cols.len() + c] = v[i];
    }
    let fmt = |a: &f64| crate::column::format_f64(*a);
    let series = Series::heatmap(rows.len(), cols.len(), cells).with_cell_names(
        rows.iter().rev().map(fmt).collect(),
        cols.iter().map(fmt).collect(),
    );
    plot.add(series);
    Ok(())
}

/// Whether x never falls within a group of rows (so the rows read as a line).
fn rises_within(data: &Frame, x: &str, groups: Option<&str>) -> bool {
    let Ok(xs) = data.numbers(x) else {
        return false;
    };
    let keys: Option<Vec<String>> = groups
        .and_then(|g| data.get(g))
        .map(|c| (0..data.rows()).map(|r| c.text_at(r)).collect());
    let mut last: Vec<(String, f64)> = Vec::new();
    for (r, v) in xs.iter().enumerate() {
        let k = keys.as_ref().map(|k| k[r].clone()).unwrap_or_default();
        match last.iter_mut().find(|(g, _)| *g == k) {
            Some((_, prev)) if *v < *prev => return false,
            Some((_, prev)) => *prev = *v,
            None => last.push((k, *v)),
        }
    }
    xs.len() > 1
}

fn no_columns(data: &Frame) -> DataError {
    DataError::Invalid(format!(
        "there is no number column to plot (the data has {}); name it with axis x and y",
        data.names().join(", ")
    ))
}

/// A file name from a title (letters, digits and '-'), else `figure-<n>`.
pub(super) fn file_name(title: Option<&str>, n: usize) -> String {
    let slug: String = title
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug: Vec<&str> = slug.split('-').filter(|s| !s.is_empty()).collect();
    if slug.is_empty() {
        format!("figure-{n}")
    } else {
        format!("{n}-{}", slug.join("-"))
    }
}

fn text<'a>(p: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    p.get(name).and_then(Value::as_str)
}

fn flag(p: &Map<String, Value>, name: &str) -> bool {
    p.get(name).and_then(Value::as_bool) == Some(true)
}
