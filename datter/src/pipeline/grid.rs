//! Figures that hold other figures or cells: a `frame` with `cols` is a grid whose cells are
//! the figures finished after it (by later frames, by a `repeat`'s groups, by `table`), and
//! `table` draws the rows as they are as a table.
//!
//! A grid holds every figure finished until the next grid frame, a frame with `"alone": true`
//! or the end; it is one picture (`<n>-<title>.png`), its cells are not written apart. An
//! animated cell shows its last frame: a grid is still. A grid opened inside a `repeat` is
//! one grid per group.

use serde_json::{Map, Value};

use super::params::texts;
use super::run::{State, StepFailure, is_provenance};
use super::sketch::{Drawn, Sketch, file_name};
use crate::draw::ticks::short;
use crate::draw::{Figure, Table as Cells};
use crate::{ColumnKind, DataError, Frame};

/// Rows `table` draws when its `rows` param is not given.
const TABLE_ROWS: usize = 20;
/// A grid cell's size when the grid frame does not give one.
const CELL_WIDTH: u32 = 420;
const CELL_HEIGHT: u32 = 320;

/// A grid being filled: the figures from `from` on are its cells.
#[derive(Debug, Clone)]
pub(super) struct Grid {
    title: Option<String>,
    cols: usize,
    width: Option<u32>,
    height: Option<u32>,
    text_scale: Option<f32>,
    pub(super) from: usize,
}

impl State {
    /// `frame`: finishes the figure before it; with `cols`, opens a grid; with `alone`,
    /// closes the open grid so this figure stands on its own.
    pub(super) fn frame(&mut self, p: &Map<String, Value>) -> Result<(), DataError> {
        self.finish_sketch()?;
        let cols = p
            .get("cols")
            .and_then(Value::as_u64)
            .and_then(|c| usize::try_from(c).ok());
        let alone = p.get("alone").and_then(Value::as_bool) == Some(true);
        if cols.is_some() || alone {
            self.close_grid();
        }
        match cols {
            Some(cols) => {
                let size = |name: &str| {
                    p.get(name)
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                };
                self.grid = Some(Grid {
                    title: p.get("title").and_then(Value::as_str).map(str::to_owned),
                    cols: cols.max(1),
                    width: size("width"),
                    height: size("height"),
                    text_scale: None,
                    from: self.figures.len(),
                });
                // Plots straight after the grid frame go into its first cell.
                self.sketch = Some(Sketch::new(&Map::new()));
            }
            None => self.sketch = Some(Sketch::new(p)),
        }
        Ok(())
    }

    /// `font` on a grid frame sizes the text of every cell.
    pub(super) fn grid_font(&mut self, scale: Option<f32>) {
        if let Some(g) = self.grid.as_mut().filter(|g| g.from == self.figures.len()) {
            g.text_scale = scale;
        }
    }

    /// Makes the open grid one figure of the cells finished since it opened.
    pub(super) fn close_grid(&mut self) {
        let Some(g) = self.grid.take() else {
            return;
        };
        let cells: Vec<Drawn> = self
            .figures
            .drain(g.from.min(self.figures.len())..)
            .collect();
        if cells.is_empty() {
            return;
        }
        let cols = g.cols.min(cells.len());
        let rows = cells.len().div_ceil(cols);
        let title = g.title.clone().unwrap_or_else(|| {
            let names: Vec<&str> = cells.iter().map(|c| c.title.as_str()).collect();
            names.join(" · ")
        });
        let width = g
            .width
            .unwrap_or_else(|| (CELL_WIDTH * cols as u32).min(1680));
        let height = g
            .height
            .unwrap_or_else(|| (CELL_HEIGHT * rows as u32 + 40).min(4000));
        // An animated cell is its last frame, under its own title (not the frame's caption).
        let figures = cells
            .into_iter()
            .map(|c| match c.animation {
                Some(_) => c.figure.with_title(c.title),
                None => c.figure,
            })
            .collect();
        let mut figure = Figure::grid(width, height, cols, figures).with_title(title.clone());
        if let Some(s) = g.text_scale {
            figure = figure.with_text_scale(s);
        }
        let n = self.figures.len() + 1;
        self.figures.push(Drawn {
            name: file_name(g.title.as_deref(), n),
            title,
            figure,
            animation: None,
            in_report: true,
        });
    }

    /// `table`: the rows as they are, drawn as a table and put aside (a CSV, and a table on
    /// the report page). The figure being put together lends its title and size, unless
    /// something was plotted on it.
    pub(super) fn table(&mut self, p: &Map<String, Value>) -> Result<(), StepFailure> {
        let sketch = match self.sketch.take() {
            Some(s) if s.plotted() => {
                self.sketch = Some(s);
                self.finish_sketch()?;
                None
            }
            s => s,
        };
        let columns = match texts(p, "columns") {
            c if !c.is_empty() => c,
            _ => self
                .data
                .names()
                .iter()
                .filter(|n| !is_provenance(n) || n.as_str() == super::run::LABEL)
                .cloned()
                .collect(),
        };
        let mut picked = Vec::with_capacity(columns.len());
        for c in &columns {
            picked.push((c.clone(), self.data.column(c)?.clone()));
        }
        let frame = Frame::from_columns(picked)?;
        let title = p
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| sketch.as_ref().and_then(Sketch::title))
            .unwrap_or_else(|| "Table".to_owned());
        let shown = p
            .get("rows")
            .and_then(Value::as_u64)
            .and_then(|r| usize::try_from(r).ok())
            .unwrap_or(TABLE_ROWS)
            .min(frame.rows());
        let cells = Cells {
            columns: frame.names().to_vec(),
            numeric: frame.iter().map(|(_, c)| c.is_numeric()).collect(),
            // The picture's floats are short, as a heatmap's cells; the CSV keeps every digit.
            rows: (0..shown)
                .map(|r| {
                    frame
                        .iter()
                        .map(|(_, c)| match c.kind() {
                            ColumnKind::F64 => short(c.f64_at(r)),
                            _ => c.text_at(r),
                        })
                        .collect()
                })
                .collect(),
            more: frame.rows() - shown,
        };
        let (width, height) = match &sketch {
            Some(s) => s.size(),
            // As tall as the rows need, within reason.
            None => (800, (60 + 24 * (shown as u32 + 2)).clamp(120, 1200)),
        };
        let mut figure = Figure::table(width, height, cells).with_title(title.clone());
        if let Some(s) = sketch.as_ref().and_then(Sketch::text_scale) {
            figure = figure.with_text_scale(s);
        }
        let name = file_name(Some(&title), self.figures.len() + 1);
        self.put_aside(&name, frame);
        self.figures.push(Drawn {
            name,
            title,
            figure,
            animation: None,
            // The page shows the table itself; its picture is for a grid, or to be used apart.
            in_report: false,
        });
        Ok(())
    }
}
