//! The scene model: what to draw, in data units, with no pixels in it. A [`Figure`] holds a
//! [`Plot`] or a grid of sub-figures; a plot holds [`Series`] and [`Annotation`]s over two
//! [`Axis`]es. Layout turns it into marks that the PNG and SVG writers share.

use super::colour::{Rgba, categorical};

/// A picture: a title, a size in pixels, and what it shows.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Drawn bold above the body; none leaves the room to the body.
    pub title: Option<String>,
    /// Width in pixels (ignored for a sub-figure: its grid cell sizes it).
    pub width: u32,
    /// Height in pixels (ignored for a sub-figure).
    pub height: u32,
    /// What it shows.
    pub body: Body,
    /// Text sizes relative to the defaults (1: 17 px titles, 12 px tick labels, to the em); the
    /// top-level figure's applies to its sub-figures too. Clamped to 0.25..=8.
    pub text_scale: f32,
}

/// What a figure shows.
#[derive(Clone, Debug)]
pub enum Body {
    /// One plot area.
    Plot(Box<Plot>),
    /// Sub-figures laid out row by row, `cols` to a row (a frame can hold frames).
    Grid {
        /// Figures per row (at least 1).
        cols: usize,
        /// The sub-figures; each may have its own title and may be a grid again.
        figures: Vec<Figure>,
    },
    /// A table of text cells.
    Table(Box<Table>),
}

/// A table drawn as a picture: a header row over rows of cells, numbers aligned right. Rows
/// that do not fit the figure are counted in a note below the last one shown.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// The column names.
    pub columns: Vec<String>,
    /// Which columns hold numbers (aligned right).
    pub numeric: Vec<bool>,
    /// The cells, row by row, as many as `columns` a row.
    pub rows: Vec<Vec<String>>,
    /// Rows not among `rows` (the table was cut before it was drawn).
    pub more: usize,
}

impl Figure {
    /// A figure of `width` × `height` pixels showing `plot`.
    pub fn new(width: u32, height: u32, plot: Plot) -> Figure {
        Figure {
            title: None,
            width,
            height,
            body: Body::Plot(Box::new(plot)),
            text_scale: 1.0,
        }
    }

    /// A figure of `width` × `height` pixels showing `figures`, `cols` to a row.
    pub fn grid(width: u32, height: u32, cols: usize, figures: Vec<Figure>) -> Figure {
        Figure {
            title: None,
            width,
            height,
            body: Body::Grid { cols, figures },
            text_scale: 1.0,
        }
    }

    /// A figure of `width` × `height` pixels showing `table`.
    pub fn table(width: u32, height: u32, table: Table) -> Figure {
        Figure {
            title: None,
            width,
            height,
            body: Body::Table(Box::new(table)),
            text_scale: 1.0,
        }
    }

    /// A sub-figure (for a grid) showing `plot` under `title`.
    pub fn sub(title: impl Into<String>, plot: Plot) -> Figure {
        Figure::new(0, 0, plot).with_title(title)
    }

    /// The same figure with its text `scale` times the default size (e.g. 1.5 for a poster).
    pub fn with_text_scale(mut self, scale: f32) -> Figure {
        self.text_scale = scale;
        self
    }

    /// The same figure with a title.
    pub fn with_title(mut self, title: impl Into<String>) -> Figure {
        self.title = Some(title.into());
        self
    }
}

/// How an axis maps values to positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// Even spacing of values.
    #[default]
    Linear,
    /// Even spacing of decades; values ≤ 0 are skipped.
    Log,
}

/// One axis of a plot.
#[derive(Clone, Debug, Default)]
pub struct Axis {
    /// The axis title, e.g. the column's name.
    pub title: Option<String>,
    /// Linear or log.
    pub scale: Scale,
    /// A fixed range; none fits the data (with a margin).
    pub range: Option<(f64, f64)>,
}

impl Axis {
    /// A linear axis titled `title`.
    pub fn titled(title: impl Into<String>) -> Axis {
        Axis {
            title: Some(title.into()),
            ..Axis::default()
        }
    }
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LegendPlace {
    /// In the corner of the plot area that hides no data, else outside on the right.
    #[default]
    Auto,
    /// Outside the plot area, on the right.
    Outside,
    /// No legend.
    Hidden,
}

/// One plot area: axes, series, annotations and a legend.
#[derive(Clone, Debug, Default)]
pub struct Plot {
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Drawn in order, later over earlier.
    pub series: Vec<Series>,
    /// Drawn over the series, in data units.
    pub annotations: Vec<Annotation>,
    /// Where the legend goes; it names each series that has a name.
    pub legend: LegendPlace,
}

impl Plot {
    /// An empty plot with axis titles.
    pub fn new(x_title: impl Into<String>, y_title: impl Into<String>) -> Plot {
        Plot {
            x: Axis::titled(x_title),
            y: Axis::titled(y_title),
            ..Plot::default()
        }
    }

    /// Adds a series; one without a colour gets the next palette colour.
    pub fn add(&mut self, mut series: Series) -> &mut Plot {
        if series.colour.is_none() {
            let used = self.series.iter().filter(|s| s.uses_palette()).count();
            series.colour = Some(categorical(used));
        }
        self.series.push(series);
        self
    }

    /// Adds an annotation.
    pub fn annotate(&mut self, a: Annotation) -> &mut Plot {
        self.annotations.push(a);
        self
    }
}

/// A series: a name for the legend, a colour, and its data.
#[derive(Clone, Debug)]
pub struct Series {
    /// Named in the legend; none leaves it out.
    pub name: Option<String>,
    /// Its colour; none takes the next palette colour when added to a plot.
    pub colour: Option<Rgba>,
    /// The data and how to draw it.
    pub kind: Kind,
}

impl Series {
    fn uses_palette(&self) -> bool {
        !matches!(self.kind, Kind::Heatmap { .. })
    }

    /// A line through (x, y) in order; NaN or infinite points break the line.
    pub fn line(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Series {
        Series {
            name: Some(name.into()),
            colour: None,
            kind: Kind::Line { x, y, width: 1.8 },
        }
    }

    /// Points at (x, y), discs of `radius` pixels, all in the series' colour.
    pub fn scatter(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>, radius: f32) -> Series {
        Series {
            name: Some(name.into()),
            colour: None,
            kind: Kind::Scatter {
                x,
                y,
                radius,
                colours: PointColours::Series,
            },
        }
    }

    /// A histogram of `values` in `bins` equal bins (0 picks a count from the data).
    pub fn histogram(name: impl Into<String>, values: Vec<f64>, bins: usize) -> Series {
        Series {
            name: Some(name.into()),
            colour: None,
            kind: Kind::Histogram { values, bins },
        }
    }

    /// One bar per category label, `values` high.
    pub fn bar(name: impl Into<String>, labels: Vec<String>, values: Vec<f64>) -> Series {
        Series {
            name: Some(name.into()),
            colour: None,
            kind: Kind::Bar { labels, values },
        }
    }

    /// A `rows` × `cols` grid of `values` (row-major, row 0 at the top) coloured by the
    /// gradient, with a colour bar.
    pub fn heatmap(rows: usize, cols: usize, values: Vec<f64>) -> Series {
        Series {
            name: None,
            colour: None,
            kind: Kind::Heatmap {
                rows,
                cols,
                values,
                row_labels: None,
                col_labels: None,
            },
        }
    }

    /// The same series with a colour.
    pub fn with_colour(mut self, c: Rgba) -> Series {
        self.colour = Some(c);
        self
    }

    /// The same scatter with its points coloured one by one or by value (other kinds are
    /// left as they are).
    pub fn with_point_colours(mut self, c: PointColours) -> Series {
        if let Kind::Scatter { colours, .. } = &mut self.kind {
            *colours = c;
        }
        self
    }

    /// The same heatmap with names for its rows (top to bottom) and columns (left to right);
    /// a list of the wrong length is ignored (the cells are numbered instead).
    pub fn with_cell_names(mut self, rows: Vec<String>, cols: Vec<String>) -> Series {
        if let Kind::Heatmap {
            row_labels,
            col_labels,
            ..
        } = &mut self.kind
        {
            *row_labels = Some(rows);
            *col_labels = Some(cols);
        }
        self
    }

    /// The same line with a stroke `width` pixels wide (other kinds are left as they are).
    pub fn with_line_width(mut self, w: f32) -> Series {
        if let Kind::Line { width, .. } = &mut self.kind {
            *width = w;
        }
        self
    }

    /// The same series without a legend entry.
    pub fn unnamed(mut self) -> Series {
        self.name = None;
        self
    }
}

/// How a scatter's points are coloured.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PointColours {
    /// All in the series' colour.
    #[default]
    Series,
    /// One colour per point (see [`super::colour::by_category`]).
    Each(Vec<Rgba>),
    /// One value per point, coloured by the gradient, with a colour bar.
    Values(Vec<f64>),
}

/// A series' data and how it is drawn.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A polyline.
    Line {
        /// Positions.
        x: Vec<f64>,
        /// Values.
        y: Vec<f64>,
        /// Stroke width in pixels.
        width: f32,
    },
    /// Discs.
    Scatter {
        /// Positions.
        x: Vec<f64>,
        /// Values.
        y: Vec<f64>,
        /// Disc radius in pixels.
        radius: f32,
        /// Their colours.
        colours: PointColours,
    },
    /// Counts of values in equal bins.
    Histogram {
        /// The values; NaN and infinities are skipped.
        values: Vec<f64>,
        /// Bin count; 0 picks one.
        bins: usize,
    },
    /// Bars over categories (the x axis becomes the categories of the plot's first bar series).
    Bar {
        /// One per bar.
        labels: Vec<String>,
        /// Bar heights.
        values: Vec<f64>,
    },
    /// A grid of coloured cells; the axes become its rows and columns.
    Heatmap {
        /// Row count.
        rows: usize,
        /// Column count.
        cols: usize,
        /// Row-major values, `rows * cols` of them.
        values: Vec<f64>,
        /// Names of the rows (y tick labels); none numbers them.
        row_labels: Option<Vec<String>>,
        /// Names of the columns (x tick labels); none numbers them.
        col_labels: Option<Vec<String>>,
    },
}

/// How a group of points is enclosed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enclosure {
    /// The smallest circle around the centre that holds them (on screen, so it stays round).
    #[default]
    Circle,
    /// Their convex hull, padded.
    Hull,
}

/// Something drawn over the series, placed in data units.
#[derive(Clone, Debug)]
pub enum Annotation {
    /// A circle of `radius` pixels around (x, y).
    Circle {
        /// Centre.
        x: f64,
        /// Centre.
        y: f64,
        /// Radius in pixels.
        radius: f32,
        /// Outline colour.
        colour: Rgba,
    },
    /// A filled, outlined polygon.
    Shape {
        /// Corners.
        points: Vec<(f64, f64)>,
        /// Outline; the fill is the same, faint.
        colour: Rgba,
    },
    /// Text whose start is at (x, y).
    Text {
        /// Position.
        x: f64,
        /// Position of the baseline.
        y: f64,
        /// What it says.
        text: String,
        /// Its colour.
        colour: Rgba,
    },
    /// A marked point with an optional label beside it.
    Point {
        /// Position.
        x: f64,
        /// Position.
        y: f64,
        /// Beside it.
        label: Option<String>,
        /// Its colour.
        colour: Rgba,
    },
    /// A straight segment.
    Line {
        /// One end.
        from: (f64, f64),
        /// The other.
        to: (f64, f64),
        /// Its colour.
        colour: Rgba,
    },
    /// A circle or hull around points, with a label above it: how clusters are marked.
    Enclose {
        /// The points.
        points: Vec<(f64, f64)>,
        /// Circle or hull.
        shape: Enclosure,
        /// Written above.
        label: Option<String>,
        /// Outline and label colour.
        colour: Rgba,
    },
}

/// How [`Plot::add_clusters`] marks clusters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterStyle {
    /// Circle or hull around each cluster; none draws no outline.
    pub enclose: Option<Enclosure>,
    /// Write each cluster's name by it.
    pub label: bool,
    /// Leave out unclustered (noise, label < 0) points; else draw them grey.
    pub drop_noise: bool,
    /// Disc radius of the points in pixels.
    pub radius: f32,
}

impl Default for ClusterStyle {
    fn default() -> ClusterStyle {
        ClusterStyle {
            enclose: Some(Enclosure::Circle),
            label: true,
            drop_noise: true,
            radius: 3.0,
        }
    }
}

impl Plot {
    /// Draws clustered points: one series per cluster (`labels[i] >= 0`) in the palette's
    /// colours, each circled and labelled `cluster k`; noise points (label < 0) greyed or
    /// dropped. Points with a NaN coordinate are skipped. Lengths must agree.
    pub fn add_clusters(
        &mut self,
        x: &[f64],
        y: &[f64],
        labels: &[i64],
        style: ClusterStyle,
    ) -> Result<&mut Plot, super::DrawError> {
        if x.len() != y.len() || x.len() != labels.len() {
            return Err(super::DrawError::Lengths {
                what: "clusters".into(),
                lengths: vec![x.len(), y.len(), labels.len()],
            });
        }
        let mut ids: Vec<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        ids.sort_unstable();
        ids.dedup();
        if !style.drop_noise {
            let (nx, ny) = pick(x, y, labels, |l| l < 0);
            if !nx.is_empty() {
                self.add(
                    Series::scatter("noise", nx, ny, style.radius * 0.8)
                        .with_colour(Rgba::GREY.with_alpha(150)),
                );
            }
        }
        for (k, id) in ids.iter().enumerate() {
            let colour = categorical(k);
            let (cx, cy) = pick(x, y, labels, |l| l == *id);
            let name = format!("cluster {id}");
            if let Some(shape) = style.enclose {
                self.annotate(Annotation::Enclose {
                    points: cx.iter().copied().zip(cy.iter().copied()).collect(),
                    shape,
                    label: style.label.then(|| name.clone()),
                    colour,
                });
            }
            self.add(Series::scatter(name, cx, cy, style.radius).with_colour(colour));
        }
        Ok(self)
    }
}

fn pick(x: &[f64], y: &[f64], labels: &[i64], keep: impl Fn(i64) -> bool) -> (Vec<f64>, Vec<f64>) {
    let mut ox = Vec::new();
    let mut oy = Vec::new();
    for i in 0..labels.len() {
        if keep(labels[i]) && x[i].is_finite() && y[i].is_finite() {
            ox.push(x[i]);
            oy.push(y[i]);
        }
    }
    (ox, oy)
}
