//! The drawing ops: a figure put together step by step from the frame the pipeline holds.
//!
//! `frame` starts a figure (and finishes the one before); `axis`, `legend`, `colour`,
//! `gradient`, `font` and `clusters` set how it is drawn; `plot` adds the data as it is at
//! that step; `point`, `line`, `circle`, `shape`, `text` and `expr` annotate it. A figure is
//! finished by the next `frame` or the end of the pipeline, and only when something was
//! plotted. Every setting has a default that fits the data: the axes are the first two
//! measured columns (`pc1`, `pc2` after `pca`), the colour is by `cluster`, else by `label`,
//! and a plot is a line when x rises within every group, else a scatter.

use serde_json::{Map, Value};

use super::run::{CLUSTER, LABEL};
use crate::draw::colour::{by_category, categorical};
use crate::draw::{
    Annotation, ClusterStyle, Enclosure, Figure, LegendPlace, Plot, PointColours, Rgba, Scale,
    Series,
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
    x: Option<String>,
    y: Option<String>,
    log_x: bool,
    log_y: bool,
    legend: LegendPlace,
    colour_by: Option<String>,
    gradient_by: Option<String>,
    kind: Option<String>,
    clusters: Option<ClusterStyle>,
    text_scale: Option<f32>,
    plot: Plot,
    plotted: bool,
}

/// A finished figure and the file name it is written under (`<name>.png`, `.svg`).
#[derive(Debug, Clone)]
pub struct Drawn {
    /// Unique in the output: `figure-1`, or the title made a file name.
    pub name: String,
    /// Its title, for the report's caption.
    pub title: String,
    /// The figure.
    pub figure: Figure,
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
            x: None,
            y: None,
            log_x: false,
            log_y: false,
            legend: LegendPlace::Hidden,
            colour_by: None,
            gradient_by: None,
            kind: None,
            clusters: None,
            text_scale: None,
            plot: Plot::default(),
            plotted: false,
        }
    }

    /// `axis`: which columns, and log scales.
    pub fn axis(&mut self, p: &Map<String, Value>) {
        if let Some(x) = text(p, "x") {
            self.x = Some(x.to_owned());
        }
        if let Some(y) = text(p, "y") {
            self.y = Some(y.to_owned());
        }
        self.log_x |= flag(p, "log_x");
        self.log_y |= flag(p, "log_y");
    }

    /// `legend`: where (auto by default).
    pub fn legend(&mut self, p: &Map<String, Value>) {
        self.legend = match text(p, "place") {
            Some("outside") => LegendPlace::Outside,
            Some("hidden") => LegendPlace::Hidden,
            _ => LegendPlace::Auto,
        };
    }

    /// `colour`: one series per value of a column (default `cluster`, else `label`).
    pub fn colour(&mut self, p: &Map<String, Value>) {
        self.colour_by = text(p, "by").map(str::to_owned);
        self.gradient_by = None;
    }

    /// `gradient`: points coloured by a number column, with a colour bar.
    pub fn gradient(&mut self, p: &Map<String, Value>) {
        self.gradient_by = text(p, "by").map(str::to_owned);
        self.colour_by = None;
    }

    /// `font`: text larger or smaller than the default.
    pub fn font(&mut self, p: &Map<String, Value>) {
        self.text_scale = p.get("scale").and_then(Value::as_f64).map(|s| s as f32);
    }

    /// `visualtype`: the kind of the plots that follow.
    pub fn kind(&mut self, p: &Map<String, Value>) {
        self.kind = text(p, "kind").map(str::to_owned);
    }

    /// `clusters`: scatters of the `cluster` column are outlined and named per cluster.
    pub fn clusters(&mut self, p: &Map<String, Value>) {
        let enclose = match text(p, "outline") {
            Some("hull") => Some(Enclosure::Hull),
            Some("none") => None,
            _ if p.get("circle").and_then(Value::as_bool) == Some(false) => None,
            _ => Some(Enclosure::Circle),
        };
        self.clusters = Some(ClusterStyle {
            enclose,
            label: p.get("label").and_then(Value::as_bool).unwrap_or(true),
            drop_noise: p.get("drop_noise").and_then(Value::as_bool).unwrap_or(true),
            ..ClusterStyle::default()
        });
        if self.colour_by.is_none() {
            self.colour_by = Some(CLUSTER.to_owned());
        }
    }

    /// `plot`: the data as it is now, drawn as `kind` (or what fits).
    pub fn plot(&mut self, data: &Frame, p: &Map<String, Value>) -> Result<(), DataError> {
        if let Some(x) = text(p, "x") {
            self.x = Some(x.to_owned());
        }
        if let Some(y) = text(p, "y") {
            self.y = Some(y.to_owned());
        }
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
        self.plot.x.title.get_or_insert_with(|| x_name.clone());
        if kind != "histogram" {
            self.plot.y.title.get_or_insert_with(|| y_name.clone());
        } else {
            self.plot.y.title.get_or_insert_with(|| "count".to_owned());
        }
        if self.log_x {
            self.plot.x.scale = Scale::Log;
        }
        if self.log_y {
            self.plot.y.scale = Scale::Log;
        }
        let x = data.numbers(&x_name)?;
        match kind.as_str() {
            "histogram" => {
                let bins = p
                    .get("bins")
                    .and_then(Value::as_u64)
                    .and_then(|b| usize::try_from(b).ok())
                    .unwrap_or(0);
                self.by_group(data, |name, rows, colour| {
                    let values = rows.iter().map(|&r| x[r]).collect();
                    Series::histogram(name, values, bins).with_colour(colour)
                });
            }
            "bar" => {
                let y = data.numbers(&y_name)?;
                let labels = data.column(&x_name)?;
                let names = (0..data.rows()).map(|r| labels.text_at(r)).collect();
                self.plot.add(Series::bar(y_name.clone(), names, y));
            }
            "heatmap" => {
                let y = data.numbers(&y_name)?;
                self.heatmap(data, &x_name, &y_name, &x, &y, p)?;
            }
            "line" | "scatter" => {
                let y = data.numbers(&y_name)?;
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
                    self.plot
                        .add_clusters(&x, &y, &labels, style)
                        .map_err(|e| DataError::Invalid(e.to_string()))?;
                } else if let Some(g) = self.gradient_by.clone() {
                    let values = data.numbers(&g)?;
                    self.plot.add(
                        Series::scatter(y_name.clone(), x, y, 3.0)
                            .with_point_colours(PointColours::Values(values)),
                    );
                } else {
                    let line = kind == "line";
                    // Large scatters draw as small points; a few hundred as clear discs.
                    let radius = if data.rows() > 20_000 { 1.5 } else { 3.0 };
                    self.by_group(data, |name, rows, colour| {
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
        // No `legend` step, no legend. Cluster names sit by their outlines all over the
        // plot: a legend inside would cover some of them.
        self.plot.legend = match self.legend {
            LegendPlace::Auto if self.clusters.is_some() => LegendPlace::Outside,
            place => place,
        };
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
        self.plot.annotate(a);
    }

    /// Whether anything was plotted on it yet.
    pub fn plotted(&self) -> bool {
        self.plotted
    }

    /// The finished figure, if anything was plotted; `n` numbers it among the output's.
    pub fn finish(self, n: usize) -> Option<Drawn> {
        if !self.plotted {
            return None;
        }
        let title = self.title.clone().unwrap_or_else(|| {
            let x = self.plot.x.title.clone().unwrap_or_default();
            let y = self.plot.y.title.clone().unwrap_or_default();
            format!("{y} by {x}")
        });
        let name = file_name(self.title.as_deref(), n);
        let mut figure = Figure::new(self.width, self.height, self.plot).with_title(title.clone());
        if let Some(s) = self.text_scale {
            figure = figure.with_text_scale(s);
        }
        Some(Drawn {
            name,
            title,
            figure,
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

    /// One series per group (in order of first appearance), each in its palette colour.
    fn by_group(&mut self, data: &Frame, mut make: impl FnMut(String, &[usize], Rgba) -> Series) {
        let all: Vec<usize> = (0..data.rows()).collect();
        match self.groups(data).and_then(|g| data.get(&g).cloned()) {
            None => {
                let s = make(String::new(), &all, categorical(0)).unnamed();
                self.plot.add(s);
            }
            Some(col) => {
                let keys: Vec<String> = all.iter().map(|&r| col.text_at(r)).collect();
                let colours = by_category(&keys);
                let mut order: Vec<(String, Vec<usize>)> = Vec::new();
                for (r, k) in keys.iter().enumerate() {
                    match order.iter_mut().find(|(name, _)| name == k) {
                        Some((_, rows)) => rows.push(r),
                        None => order.push((k.clone(), vec![r])),
                    }
                }
                for (name, rows) in order {
                    let colour = colours[rows[0]];
                    let s = make(name, &rows, colour);
                    self.plot.add(s);
                }
            }
        }
    }

    /// A heatmap of `value` (default the first other measured column) over the x and y
    /// columns' distinct values.
    fn heatmap(
        &mut self,
        data: &Frame,
        x_name: &str,
        y_name: &str,
        x: &[f64],
        y: &[f64],
        p: &Map<String, Value>,
    ) -> Result<(), DataError> {
        let value_name = match text(p, "value") {
            Some(v) => v.to_owned(),
            None => data
                .numeric_names()
                .into_iter()
                .find(|n| n != x_name && n != y_name && !super::run::is_provenance(n))
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "a heatmap of {x_name} × {y_name} needs a third number column: name it with value"
                    ))
                })?,
        };
        let v = data.numbers(&value_name)?;
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
        self.plot.add(series);
        Ok(())
    }
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
fn file_name(title: Option<&str>, n: usize) -> String {
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
