//! Drawing: figures of plots (line, scatter, histogram, bar, heatmap) with axes, nice ticks,
//! titles, legends, colour bars, annotations and cluster outlines, written as PNG or SVG.
//!
//! A [`Figure`] is the scene, in data units. [`layout`] measures its text with the embedded
//! DejaVu Sans and places everything in pixels as a [`Canvas`] of marks; [`raster`] draws that
//! into a PNG and [`svg`] writes the same marks as SVG, so both files show the same picture.
//! Nothing here panics on data: NaN and infinite values are skipped, an axis with no data gets
//! a "no data" note, a range of no width is widened; lengths that disagree are a
//! [`DrawError::Lengths`].
//!
//! ```
//! use datter::draw::{Figure, Plot, Series};
//! let mut plot = Plot::new("step", "reward");
//! plot.add(Series::line("run a", vec![0.0, 1.0, 2.0], vec![0.1, 0.5, 0.4]));
//! let fig = Figure::new(640, 480, plot).with_title("Reward per step");
//! let png: Vec<u8> = fig.to_png().unwrap();
//! let svg: String = fig.to_svg().unwrap();
//! assert!(png.starts_with(b"\x89PNG") && svg.contains("Reward per step"));
//! ```
//!
//! How the pipeline's drawing ops map onto it:
//! - `frame`: [`Figure::new`] (one plot) or [`Figure::grid`] of [`Figure::sub`]s, titled with
//!   [`Figure::with_title`]; `font` is [`Figure::with_text_scale`].
//! - `axis`: [`Plot::x`] / [`Plot::y`], an [`Axis`] with a title, [`Scale::Log`] and a fixed
//!   range. `legend`: [`Plot::legend`] ([`LegendPlace`]); entries are the named series.
//! - `plot` with `kind` (`visualtype`): [`Series::line`], [`Series::scatter`],
//!   [`Series::histogram`], [`Series::bar`], [`Series::heatmap`], added with [`Plot::add`],
//!   which gives each the next palette colour.
//! - `colour` by a column: [`Series::with_point_colours`] with [`PointColours::Each`] from
//!   [`colour::by_category`], or one series per group ([`Series::with_colour`],
//!   [`colour::categorical`]); `gradient`: [`PointColours::Values`] (viridis, with a colour bar).
//! - `point`, `line`, `circle`, `shape`, `text`, `expr` (a formula shown as text): an
//!   [`Annotation`] added with [`Plot::annotate`].
//! - `clusters`: [`Plot::add_clusters`] with the labels of `dbscan`/`kmeans` (noise is < 0)
//!   and a [`ClusterStyle`] (circle or hull, label, drop or grey the noise).
//! - `table`: [`Figure::table`] of a [`Table`] of cells (a grid cell can be one too).
//! - output: [`Figure::to_png`], [`Figure::to_svg`] or [`Figure::save`] (by extension).
//! - `animate`: an [`Animation`] of one figure per frame value, each plotting the rows up to
//!   (or at) that value with the whole data's axis ranges ([`Axis`]'s `range`, from
//!   [`layout::axis_ranges`]) and group colours, written by [`Animation::to_apng`].

pub mod animate;
pub mod colour;
pub mod layout;
pub mod marks;
pub mod raster;
pub mod scene;
pub mod svg;
mod table;
pub mod text;
pub mod ticks;

use std::path::{Path, PathBuf};

pub use animate::Animation;
pub use colour::Rgba;
pub use marks::Canvas;
pub use scene::{
    Annotation, Axis, Body, ClusterStyle, Enclosure, Figure, Kind, LegendPlace, Plot, PointColours,
    Scale, Series, Table,
};

/// Why a figure could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// The canvas is too small or too large.
    #[error(
        "a figure must be 16 to {} pixels a side, not {width} × {height}",
        layout::MAX_SIDE
    )]
    Size {
        /// Asked width.
        width: u32,
        /// Asked height.
        height: u32,
    },
    /// Data that belong together have different lengths.
    #[error("{what}: lengths differ ({})", lengths.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" vs "))]
    Lengths {
        /// What they are, e.g. the series' name.
        what: String,
        /// Their lengths.
        lengths: Vec<usize>,
    },
    /// The embedded font could not be read (a build fault).
    #[error("the embedded font is unreadable: {0}")]
    Font(String),
    /// An animation's frames do not make one (none, or of different sizes).
    #[error("{0}")]
    Animation(String),
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path's extension is neither `.png` nor `.svg`.
    #[error("{0}: write figures to a .png or .svg file")]
    Format(PathBuf),
}

impl Figure {
    /// Lays the figure out in pixels (what both writers draw).
    pub fn layout(&self) -> Result<Canvas, DrawError> {
        layout::layout(self)
    }

    /// The figure as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, DrawError> {
        raster::encode_png(&raster::render(&self.layout()?)?)
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> Result<String, DrawError> {
        svg::render(&self.layout()?)
    }

    /// Writes the figure to `path`, as PNG or SVG by its extension.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), DrawError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let bytes = match ext.as_deref() {
            Some("png") => self.to_png()?,
            Some("svg") => self.to_svg()?.into_bytes(),
            _ => return Err(DrawError::Format(path.to_path_buf())),
        };
        std::fs::write(path, bytes).map_err(|source| DrawError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
