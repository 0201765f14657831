//! Running checked steps over a task's inputs, one op after another on one frame.
//!
//! The frame starts empty; `access` fills it from an input's files, every row keeping where it
//! came from in the provenance columns (`bundle`, `address`, `version`, `file`, and
//! `param.<name>` for each param of the node the file belongs to). Later ops read and replace
//! it, and some also put a named table aside for the task's output (`matrix`, the statistics).
//! Every op has defaults that fit what the step before produced, so a pipeline of bare op
//! names runs.
//!
//! The learning ops work on the measured columns (every number column but the provenance,
//! `label` and `cluster`) unless named: `pca` replaces them with `pc1..pcN` (2 by default, or
//! fewer when there are fewer columns) and puts the explained variance aside as table `pca`;
//! `kmeans` (or `kmean`; k = 3, seed 0, 300 iterations, k-means++) and `dbscan` (min_samples
//! 5; eps by default the knee of the sorted k-distances, see [`crate::learn::default_eps`])
//! write the `cluster` column (-1 for DBSCAN's noise).
//!
//! The math ops (`boxer`, `cosine_similarity`, the element-wise functions, `derivative`,
//! `integral`, `fit`) fill in their defaults in `math.rs`; `repeat` splits the run in
//! `repeat.rs`. Here they are only dispatched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::params::{count, text, texts};
use super::sketch::{Drawn, Sketch};
use super::steps::Step;
use crate::elementwise::Func;
use crate::expr::Expr;
use crate::group::group_reduce;
use crate::learn::{self, Centring, Init, KMeansOptions, LearnError};
use crate::stats::Reduce;
use crate::transform::{self, Scaling};
use crate::{Column, DataError, Frame, ReadError};

/// The provenance columns `access` adds, and the prefix of the node's params.
pub const PROVENANCE: [&str; 4] = ["bundle", "address", "version", "file"];
/// The prefix of the param columns `access` adds (`param.lr`).
pub const PARAM_PREFIX: &str = "param.";
/// The column `label` writes.
pub const LABEL: &str = "label";
/// The column `kmeans` and `dbscan` write.
pub const CLUSTER: &str = "cluster";

/// Where one input file came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The bundle's content id.
    pub bundle: String,
    /// The node it is a version of.
    pub address: String,
    /// Its version at that node.
    pub version: u64,
    /// The file's path inside the bundle.
    pub file: String,
    /// The node's params (a sweep child's `lr=0.1`), by name.
    pub params: BTreeMap<String, String>,
}

/// One file an input matched: where it lies on disk and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The file on disk.
    pub path: PathBuf,
    /// Its provenance.
    pub origin: Origin,
}

/// The files each of a task's inputs matched, by input name.
#[derive(Debug, Clone, Default)]
pub struct Inputs(BTreeMap<String, Vec<Source>>);

impl Inputs {
    /// No inputs.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Sets the files of input `name`.
    pub fn insert(&mut self, name: impl Into<String>, files: Vec<Source>) {
        self.0.insert(name.into(), files);
    }

    fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A table a step put aside for the output: `matrix`, or a statistic's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Its name, unique in the output (`matrix`, `mean`, `mean-2`).
    pub name: String,
    /// Its rows.
    pub frame: Frame,
}

/// What a pipeline made.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The frame as the last step left it.
    pub data: Frame,
    /// The tables put aside, in the order they were made.
    pub tables: Vec<Table>,
    /// The title of the report page, when a `report` step asked for one.
    pub report: Option<String>,
    /// Where the output goes, relative to the run's node, when a `handoff` step said so.
    pub handoff: Option<String>,
    /// The figures the drawing ops made, in order.
    pub figures: Vec<Drawn>,
}

/// Why a step failed, naming the step and its op.
#[derive(Debug, thiserror::Error)]
#[error("step {index} ({op}): {cause}")]
pub struct RunError {
    /// The step, from 0.
    pub index: usize,
    /// Its op.
    pub op: &'static str,
    /// What went wrong.
    #[source]
    pub cause: StepFailure,
}

/// What went wrong in a step.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// An input file could not be read (the error names the file).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The data does not fit the op.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An input file's data does not fit the op.
    #[error("{file}: {cause}")]
    File {
        /// The file on disk.
        file: PathBuf,
        /// Why.
        cause: DataError,
    },
    /// A step after `repeat` failed on one group's rows.
    #[error("in the rows of {group}: {cause}")]
    Group {
        /// The group, as `label "lr=0.1"`.
        group: String,
        /// Why.
        cause: Box<StepFailure>,
    },
}

/// Runs `steps` over `inputs`. Blocking and CPU-bound: call it from a thread of its own.
pub fn run(steps: &[Step], inputs: &Inputs) -> Result<Output, RunError> {
    run_observed(steps, inputs, &mut |_, _, _| {})
}

/// [`run`], telling `done` after each step how long it took and how many rows it left.
pub fn run_observed(
    steps: &[Step],
    inputs: &Inputs,
    done: &mut dyn FnMut(&Step, std::time::Duration, usize),
) -> Result<Output, RunError> {
    let mut state = State::default();
    state.run(steps, inputs, done)?;
    // The last figure is finished after the last step (an animation's frames are drawn then).
    state.finish_sketch().map_err(|cause| RunError {
        index: steps.last().map_or(0, |s| s.index),
        op: steps.last().map_or("none", |s| s.op.name),
        cause: cause.into(),
    })?;
    state.close_grid();
    Ok(Output {
        figures: state.figures,
        data: state.data,
        tables: state.tables,
        report: state.report,
        handoff: state.handoff,
    })
}

/// What the steps so far have made. The ops of other modules (`math`, `repeat`) work on it too.
#[derive(Default)]
pub(super) struct State {
    pub(super) data: Frame,
    /// Whether `label` has run: the statistics then group by the label.
    pub(super) labelled: bool,
    pub(super) tables: Vec<Table>,
    pub(super) report: Option<String>,
    pub(super) handoff: Option<String>,
    /// The figure the drawing ops are putting together, and those finished.
    pub(super) sketch: Option<Sketch>,
    pub(super) figures: Vec<Drawn>,
    /// The grid the finished figures go into, while one is open.
    pub(super) grid: Option<super::grid::Grid>,
}

impl State {
    /// Runs `steps` in order; a `repeat` runs the steps after it once per group.
    /// `done` hears of each step that ran (per group after a `repeat`).
    pub(super) fn run(
        &mut self,
        steps: &[Step],
        inputs: &Inputs,
        done: &mut dyn FnMut(&Step, std::time::Duration, usize),
    ) -> Result<(), RunError> {
        for (i, step) in steps.iter().enumerate() {
            if step.op.name == "repeat" {
                return self.repeat(step, &steps[i + 1..], inputs, done);
            }
            if step.op.name == "plot"
                && let Some(a) = animate_ahead(&steps[i + 1..])
            {
                // The plot keeps its data for the frames only when they are to be drawn.
                self.sketch().foresee(&a.params);
            }
            let start = std::time::Instant::now();
            self.step(step, inputs).map_err(|cause| RunError {
                index: step.index,
                op: step.op.name,
                cause,
            })?;
            done(step, start.elapsed(), self.data.rows());
        }
        Ok(())
    }

    fn step(&mut self, step: &Step, inputs: &Inputs) -> Result<(), StepFailure> {
        let p = &step.params;
        match step.op.name {
            "access" => self.access(p, inputs)?,
            "label" => self.label(p)?,
            "select" => {
                let expr = Expr::parse(text(p, "where").unwrap_or_default())?;
                let keep = expr.rows(&self.data)?;
                self.data = self.data.filter(&keep);
            }
            "order" => {
                let by = match texts(p, "by") {
                    by if !by.is_empty() => by,
                    _ => self.default_order()?,
                };
                let descending = p.get("descending").and_then(Value::as_bool) == Some(true);
                self.data = transform::order(&self.data, &by, descending)?;
            }
            "scale" => {
                let how = text(p, "method")
                    .and_then(Scaling::parse)
                    .unwrap_or(Scaling::Standardise);
                let columns = match texts(p, "columns") {
                    c if !c.is_empty() => c,
                    _ => self.measured()?,
                };
                self.data = transform::scale(&self.data, &columns, how)?;
            }
            "page" => {
                let size = count(p, "size").unwrap_or(100);
                let page = count(p, "page").unwrap_or(1);
                self.data = transform::page(&self.data, size, page);
            }
            "report" => {
                self.report = Some(text(p, "title").unwrap_or("Report").to_owned());
                // A report is read at the node's reports unless a handoff says otherwise.
                self.handoff
                    .get_or_insert_with(|| super::registry::HANDOFF_DEFAULT.to_owned());
            }
            "handoff" => {
                let to = text(p, "to").unwrap_or(super::registry::HANDOFF_DEFAULT);
                self.handoff = Some(to.to_owned());
            }
            "pca" => self.pca(p)?,
            "boxer" => self.boxer(p)?,
            "cosine_similarity" => self.cosine_similarity(p)?,
            "derivative" => self.derivative(p)?,
            "integral" => self.integral(p)?,
            "fit" => self.fit(p)?,
            f if Func::parse(f).is_some() => self.elementwise(f, p)?,
            "kmeans" => self.kmeans(p)?,
            "dbscan" => self.dbscan(p)?,
            "frame" => self.frame(p)?,
            "table" => self.table(p)?,
            "axis" => self.sketch().axis(p),
            "legend" => self.sketch().legend(p),
            "colour" => self.sketch().colour(p),
            "gradient" => self.sketch().gradient(p),
            "font" => {
                self.sketch().font(p);
                let scale = self.sketch().text_scale();
                self.grid_font(scale);
            }
            "visualtype" => self.sketch().kind(p),
            "animate" => self.sketch().animate(p)?,
            "clusters" => {
                let method = text(p, "method");
                match method {
                    Some("kmeans") => self.kmeans(p)?,
                    Some("dbscan") => self.dbscan(p)?,
                    _ if self.data.get(CLUSTER).is_none() => self.dbscan(p)?,
                    _ => {}
                }
                self.sketch().clusters(p);
            }
            "plot" => {
                let data = std::mem::take(&mut self.data);
                let drawn = self.sketch().plot(&data, p);
                self.data = data;
                drawn?;
            }
            op @ ("point" | "line" | "circle" | "shape" | "text" | "expr") => {
                self.sketch().annotate(op, p)
            }
            "matrix" => {
                let metrics = match texts(p, "metrics") {
                    m if !m.is_empty() => m,
                    _ => self.measured()?,
                };
                let reduces = match texts(p, "reduce") {
                    r if !r.is_empty() => r.iter().filter_map(|r| Reduce::parse(r)).collect(),
                    _ => vec![Reduce::Last],
                };
                let by = match texts(p, "by") {
                    by if !by.is_empty() => by,
                    _ => self.matrix_rows(),
                };
                let m = group_reduce(&self.data, &by, &metrics, &reduces)?;
                self.put_aside("matrix", m);
            }
            stat => {
                // The statistics: mean, median, … (the registry holds no other op).
                let Some(reduce) = Reduce::parse(stat) else {
                    return Err(DataError::Invalid(format!("{stat} cannot run here yet")).into());
                };
                let by = match texts(p, "by") {
                    by if !by.is_empty() => by,
                    _ if self.labelled => vec![LABEL.to_owned()],
                    _ => Vec::new(),
                };
                let columns = match texts(p, "columns") {
                    c if !c.is_empty() => c,
                    _ => self.measured()?,
                };
                let out = group_reduce(&self.data, &by, &columns, &[reduce])?;
                self.put_aside(stat, out.clone());
                self.data = out;
            }
        }
        Ok(())
    }

    /// Reads every file of the input into one frame, with the provenance columns.
    fn access(&mut self, p: &Map<String, Value>, inputs: &Inputs) -> Result<(), StepFailure> {
        let name = match text(p, "from") {
            Some(n) => n.to_owned(),
            None => match inputs.names().as_slice() {
                [only] => (*only).to_owned(),
                names => {
                    return Err(DataError::Invalid(format!(
                        "the task has {} inputs ({}): say which with \"from\"",
                        names.len(),
                        names.join(", ")
                    ))
                    .into());
                }
            },
        };
        let files = inputs.0.get(&name).ok_or_else(|| {
            DataError::Invalid(format!(
                "the task has no input {name:?}; it has {}",
                inputs.names().join(", ")
            ))
        })?;
        if files.is_empty() {
            return Err(DataError::Empty(format!(
                "the input {name:?} matched no files: check its pattern, and that the bundles it names exist"
            ))
            .into());
        }
        let columns = texts(p, "columns");
        let mut frames = Vec::with_capacity(files.len());
        for source in files {
            let read = crate::read::read(&source.path)?;
            let file_err = |cause| StepFailure::File {
                file: source.path.clone(),
                cause,
            };
            let mut frame = if columns.is_empty() {
                read
            } else {
                let picked = columns
                    .iter()
                    .map(|c| read.column(c).map(|col| (c.clone(), col.clone())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(file_err)?;
                Frame::from_columns(picked).map_err(file_err)?
            };
            with_origin(&mut frame, &source.origin).map_err(file_err)?;
            frames.push(frame);
        }
        self.data = Frame::stack(frames);
        self.labelled = false;
        Ok(())
    }

    /// Writes the `label` column: the `by` columns' values, joined; by default the provenance
    /// that tells the rows apart (the params when they differ, else the address, the version,
    /// the file, the bundle).
    fn label(&mut self, p: &Map<String, Value>) -> Result<(), StepFailure> {
        let by = match texts(p, "by") {
            by if !by.is_empty() => by,
            _ => self.telling_apart(),
        };
        let cols: Vec<(&String, &Column)> = by
            .iter()
            .map(|b| self.data.column(b).map(|c| (b, c)))
            .collect::<Result<_, _>>()?;
        let labels = (0..self.data.rows())
            .map(|r| {
                cols.iter()
                    .map(|(name, c)| match name.strip_prefix(PARAM_PREFIX) {
                        Some(param) => format!("{param}={}", c.text_at(r)),
                        // A content id is told apart by its first digits, as git shows
                        // commits; the `bundle` column keeps it whole.
                        None if name.as_str() == "bundle" => short_id(&c.text_at(r)),
                        None => c.text_at(r),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        self.data.set(LABEL, Column::Text(labels))?;
        self.labelled = true;
        Ok(())
    }

    pub(super) fn telling_apart(&self) -> Vec<String> {
        let varies = |name: &str| {
            self.data
                .get(name)
                .is_some_and(|c| (1..c.len()).any(|r| c.text_at(r) != c.text_at(0)))
        };
        let params: Vec<String> = self
            .data
            .names()
            .iter()
            .filter(|n| n.starts_with(PARAM_PREFIX) && varies(n))
            .cloned()
            .collect();
        if !params.is_empty() {
            return params;
        }
        ["address", "version", "file"]
            .into_iter()
            .find(|n| varies(n))
            .or_else(|| self.data.get("bundle").map(|_| "bundle"))
            .map(|n| vec![n.to_owned()])
            .unwrap_or_default()
    }

    /// `pca`: the named (or measured) columns replaced by their principal components, the
    /// explained variance put aside.
    /// `kmeans`: a `cluster` column from Lloyd's k-means.
    fn kmeans(&mut self, p: &Map<String, Value>) -> Result<(), StepFailure> {
        let columns = self.learn_columns(p)?;
        let (data, d) = self.matrix(&columns)?;
        let x = learn::Matrix::new(&data, d).map_err(|e| learn_error(e, &columns))?;
        let opts = KMeansOptions {
            k: count(p, "k").unwrap_or(3),
            max_iter: count(p, "iterations").unwrap_or(300),
            tol: 1e-4,
            init: Init::PlusPlus {
                seed: p.get("seed").and_then(Value::as_u64).unwrap_or(0),
            },
        };
        let fit = learn::kmeans(x, &opts).map_err(|e| learn_error(e, &columns))?;
        let labels = fit
            .labels
            .iter()
            .map(|&l| i64::try_from(l).unwrap_or(i64::MAX))
            .collect();
        self.data.set(CLUSTER, Column::I64(labels))?;
        Ok(())
    }

    /// `dbscan`: a `cluster` column, -1 for noise.
    fn dbscan(&mut self, p: &Map<String, Value>) -> Result<(), StepFailure> {
        let columns = self.learn_columns(p)?;
        let (data, d) = self.matrix(&columns)?;
        let x = learn::Matrix::new(&data, d).map_err(|e| learn_error(e, &columns))?;
        let min_samples = count(p, "min_samples").unwrap_or(5);
        let eps = match p.get("eps").and_then(Value::as_f64) {
            Some(eps) => eps,
            None => learn::default_eps(x, min_samples).map_err(|e| learn_error(e, &columns))?,
        };
        let fit = learn::dbscan(x, eps, min_samples).map_err(|e| learn_error(e, &columns))?;
        self.data.set(CLUSTER, Column::I64(fit.labels))?;
        Ok(())
    }

    /// The figure being put together, a default one if no `frame` started it.
    fn sketch(&mut self) -> &mut Sketch {
        self.sketch.get_or_insert_with(|| Sketch::new(&Map::new()))
    }

    /// Finishes the figure being put together, if anything was plotted on it.
    pub(super) fn finish_sketch(&mut self) -> Result<(), DataError> {
        if let Some(s) = self.sketch.take()
            && let Some(d) = s.finish(self.figures.len() + 1)?
        {
            self.figures.push(d);
        }
        Ok(())
    }

    fn pca(&mut self, p: &Map<String, Value>) -> Result<(), StepFailure> {
        let columns = self.learn_columns(p)?;
        let (data, d) = self.matrix(&columns)?;
        let x = learn::Matrix::new(&data, d).map_err(|e| learn_error(e, &columns))?;
        let k = count(p, "components").unwrap_or_else(|| 2.min(d).min(x.rows()));
        let how = text(p, "centring")
            .and_then(Centring::parse)
            .unwrap_or_default();
        let fit = learn::pca(x, k, how).map_err(|e| learn_error(e, &columns))?;
        let scores = fit.transform(x).map_err(|e| learn_error(e, &columns))?;
        let mut out = Vec::with_capacity(k + self.data.width());
        let names: Vec<String> = (1..=k).map(|i| format!("pc{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            out.push((name.clone(), Column::F64(scores.col_as_slice(i).to_vec())));
        }
        for (name, col) in self.data.iter() {
            if !columns.iter().any(|c| c == name) && !names.iter().any(|c| c == name) {
                out.push((name.to_owned(), col.clone()));
            }
        }
        self.data = Frame::from_columns(out)?;
        let table = Frame::from_columns(vec![
            ("component".to_owned(), Column::Text(names)),
            (
                "explained_variance".to_owned(),
                Column::F64(fit.explained_variance),
            ),
            (
                "explained_variance_ratio".to_owned(),
                Column::F64(fit.explained_variance_ratio),
            ),
        ])?;
        self.put_aside("pca", table);
        Ok(())
    }

    /// A learning op's columns: `columns`, or the measured ones.
    fn learn_columns(&self, p: &Map<String, Value>) -> Result<Vec<String>, DataError> {
        match texts(p, "columns") {
            c if !c.is_empty() => Ok(c),
            _ => self.measured(),
        }
    }

    /// The columns as a row-major matrix (every one a number column).
    fn matrix(&self, columns: &[String]) -> Result<(Vec<f64>, usize), DataError> {
        let cols: Vec<Vec<f64>> = columns
            .iter()
            .map(|c| self.data.numbers(c))
            .collect::<Result<_, _>>()?;
        let (n, d) = (self.data.rows(), cols.len());
        if n == 0 {
            return Err(DataError::Empty(
                "there are no rows to learn from: check the inputs and any select".to_owned(),
            ));
        }
        let mut data = Vec::with_capacity(n * d);
        for r in 0..n {
            data.extend(cols.iter().map(|c| c[r]));
        }
        Ok((data, d))
    }

    /// The numeric columns that are measurements, not provenance.
    pub(super) fn measured(&self) -> Result<Vec<String>, DataError> {
        let m: Vec<String> = self
            .data
            .numeric_names()
            .into_iter()
            .filter(|n| !is_provenance(n))
            .collect();
        if m.is_empty() {
            return Err(DataError::Invalid(format!(
                "there is no number column to work on (the data has {}); name the columns",
                self.data.names().join(", ")
            )));
        }
        Ok(m)
    }

    /// `matrix`'s rows by default: one per label, else per address, with the params beside.
    fn matrix_rows(&self) -> Vec<String> {
        let mut by = Vec::new();
        if self.labelled {
            by.push(LABEL.to_owned());
        } else if self.data.get("address").is_some() {
            by.push("address".to_owned());
        }
        by.extend(
            self.data
                .names()
                .iter()
                .filter(|n| n.starts_with(PARAM_PREFIX))
                .cloned(),
        );
        by
    }

    fn default_order(&self) -> Result<Vec<String>, DataError> {
        if self.labelled {
            return Ok(vec![LABEL.to_owned()]);
        }
        self.measured().map(|m| m.into_iter().take(1).collect())
    }

    pub(super) fn put_aside(&mut self, name: &str, frame: Frame) {
        let taken = |n: &str| self.tables.iter().any(|t| t.name == n);
        let mut unique = name.to_owned();
        let mut n = 1;
        while taken(&unique) {
            n += 1;
            unique = format!("{name}-{n}");
        }
        self.tables.push(Table {
            name: unique,
            frame,
        });
    }
}

/// The figure's `animate` step among `rest` (the steps after a plot), if it has one: the last
/// before the figure ends at a `frame` or a `repeat`.
fn animate_ahead(rest: &[Step]) -> Option<&Step> {
    rest.iter()
        .take_while(|s| !matches!(s.op.name, "frame" | "repeat"))
        .filter(|s| s.op.name == "animate")
        .last()
}

/// `b3:<hex>` shortened to its first 12 hex digits; anything else as it is.
fn short_id(id: &str) -> String {
    match id.strip_prefix("b3:").and_then(|hex| hex.get(..12)) {
        Some(head) if id.len() > 15 => format!("b3:{head}"),
        _ => id.to_owned(),
    }
}

pub(super) fn is_provenance(name: &str) -> bool {
    PROVENANCE.contains(&name) || name.starts_with(PARAM_PREFIX) || name == LABEL || name == CLUSTER
}

/// A learning function's refusal, naming the column for a missing value.
fn learn_error(e: LearnError, columns: &[String]) -> DataError {
    match e {
        LearnError::NotFinite { row, col, value } => DataError::Invalid(format!(
            "column {:?}, row {row}, is {}: drop those rows first (select) or name other columns",
            columns.get(col).map_or("?", String::as_str),
            if value.is_nan() {
                "missing (NaN)".to_owned()
            } else {
                value.to_string()
            },
        )),
        LearnError::NoColumns => {
            DataError::Invalid("there are no columns to learn from".to_owned())
        }
        e => DataError::Invalid(e.to_string()),
    }
}

/// Adds the provenance columns to one file's frame. A column of the file's own with one of
/// their names is kept as `data.<name>`.
fn with_origin(frame: &mut Frame, o: &Origin) -> Result<(), DataError> {
    let rows = frame.rows();
    let text = |v: &str| Column::Text(vec![v.to_owned(); rows]);
    let mut add = |name: String, col: Column| -> Result<(), DataError> {
        if let Some(own) = frame.remove(&name) {
            frame.push(format!("data.{name}"), own)?;
        }
        frame.push(name, col)
    };
    add("bundle".into(), text(&o.bundle))?;
    add("address".into(), text(&o.address))?;
    add(
        "version".into(),
        Column::I64(vec![i64::try_from(o.version).unwrap_or(i64::MAX); rows]),
    )?;
    add("file".into(), text(&o.file))?;
    for (k, v) in &o.params {
        add(format!("{PARAM_PREFIX}{k}"), text(v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::check;
    use serde_json::json;

    /// Three bundles of `metrics.csv` from two sweep children.
    fn inputs(dir: &std::path::Path) -> Inputs {
        let mut files = Vec::new();
        for (i, (lr, rewards)) in [
            ("0.1", [0.1, 0.4, 0.3]),
            ("0.2", [0.2, 0.5, 0.9]),
            ("0.2", [0.3, 0.6, 0.8]),
        ]
        .iter()
        .enumerate()
        {
            let path = dir.join(format!("m{i}.csv"));
            let mut text = "step,reward,note\n".to_owned();
            for (s, r) in rewards.iter().enumerate() {
                text.push_str(&format!("{s},{r},x\n"));
            }
            std::fs::write(&path, text).unwrap();
            files.push(Source {
                path,
                origin: Origin {
                    bundle: format!("b3:{i}"),
                    address: format!("/e/sweep-1/lr={lr}"),
                    version: if i == 2 { 2 } else { 1 },
                    file: "metrics.csv".into(),
                    params: [("lr".to_owned(), (*lr).to_owned())].into(),
                },
            });
        }
        let mut inputs = Inputs::new();
        inputs.insert("metrics", files);
        inputs
    }

    use crate::pipeline::HANDOFF_DEFAULT;

    fn go(steps: Value, inputs: &Inputs) -> Result<Output, RunError> {
        let names = inputs.names();
        let steps = check(steps.as_array().unwrap(), &names).unwrap();
        run(&steps, inputs)
    }

    #[test]
    fn access_keeps_provenance_and_matrix_reduces_per_child() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let out = go(
            json!([["access", {"from": "metrics", "columns": ["step", "reward"]}], "label",
                   ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}]]),
            &inputs,
        )
        .unwrap();
        assert_eq!(out.data.rows(), 9);
        assert_eq!(
            out.data.names(),
            [
                "step", "reward", "bundle", "address", "version", "file", "param.lr", "label"
            ]
        );
        let m = &out.tables[0];
        assert_eq!(m.name, "matrix");
        assert_eq!(
            m.frame.names(),
            ["label", "param.lr", "reward_last", "reward_max"]
        );
        assert_eq!(
            m.frame.get("label"),
            Some(&Column::Text(vec!["lr=0.1".into(), "lr=0.2".into()]))
        );
        // The last row of lr=0.2 is the later bundle's.
        assert_eq!(m.frame.numbers("reward_last").unwrap(), [0.3, 0.8]);
        assert_eq!(m.frame.numbers("reward_max").unwrap(), [0.4, 0.9]);
    }

    #[test]
    fn bare_op_names_run_on_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let out = go(json!(["access", "label", "mean"]), &inputs).unwrap();
        // Mean per label of the measured columns (not the version).
        assert_eq!(out.data.names(), ["label", "step_mean", "reward_mean"]);
        let means = out.data.numbers("reward_mean").unwrap();
        assert!((means[0] - 0.8 / 3.0).abs() < 1e-12 && (means[1] - 3.3 / 6.0).abs() < 1e-12);
        assert_eq!(out.tables[0].name, "mean");
        let out = go(
            json!(["access", ["select", {"where": "reward > 0.35 and param.lr == 0.2"}],
                   ["order", {"by": "reward", "descending": true}], ["page", {"size": 2}], "scale"]),
            &inputs,
        )
        .unwrap();
        assert_eq!(out.data.rows(), 2);
        // Standardised: the larger of two becomes 1, the other -1.
        let r = out.data.numbers("reward").unwrap();
        assert!(
            (r[0] - 1.0).abs() < 1e-12 && (r[1] + 1.0).abs() < 1e-12,
            "{r:?}"
        );
        assert_eq!(out.data.get("version"), Some(&Column::I64(vec![1, 2])));
    }

    #[test]
    fn the_seed_s_drawing_pipelines_run_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        // The seed's pipeline with no params at all: a scatter of the two components, one
        // series per label, with a legend.
        let out = go(
            json!([
                "access", "label", "pca", "scale", "frame", "colour", "axis", "legend", "plot",
                "handoff"
            ]),
            &inputs,
        )
        .unwrap();
        assert_eq!(out.figures.len(), 1);
        let f = &out.figures[0];
        assert_eq!(
            (f.name.as_str(), f.title.as_str()),
            ("figure-1", "pc2 by pc1")
        );
        let svg = f.figure.to_svg().unwrap();
        for label in ["lr=0.1", "lr=0.2"] {
            assert!(svg.contains(label), "the legend names {label}");
        }
        assert_eq!(out.handoff.as_deref(), Some(HANDOFF_DEFAULT));
        // Without a `legend` step, no legend.
        let bare = go(json!(["access", "label", "pca", "plot"]), &inputs).unwrap();
        let svg = bare.figures[0].figure.to_svg().unwrap();
        assert!(!svg.contains("lr=0.1"), "no legend was asked for");
        // The reward report: one line per bundle, named in the legend.
        let out = go(
            json!([["access", {"from": "metrics", "columns": ["step", "reward"]}],
                   ["label", {"by": "bundle"}],
                   ["frame", {"title": "Reward per step"}], ["axis", {"x": "step", "y": "reward"}],
                   ["legend"], ["plot", {"kind": "line"}],
                   ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}],
                   ["report", {"title": "experiment2"}]]),
            &inputs,
        )
        .unwrap();
        let f = &out.figures[0];
        assert_eq!(f.name, "1-reward-per-step");
        let svg = f.figure.to_svg().unwrap();
        for b in ["b3:0", "b3:1", "b3:2", "Reward per step", "step", "reward"] {
            assert!(svg.contains(b), "{b} is in the figure");
        }
        assert_eq!(out.report.as_deref(), Some("experiment2"));
        assert_eq!(
            out.handoff.as_deref(),
            Some(HANDOFF_DEFAULT),
            "a report is handed off"
        );
        // The clusters example: clustered points circled and named, noise left out.
        let out = go(
            json!([["access", {"from": "metrics"}], ["label"], ["pca", {"components": 2}],
                   ["scale"], ["frame"],
                   ["clusters", {"method": "kmeans", "k": 2, "circle": true, "label": true,
                                 "drop_noise": true}],
                   ["colour", {"by": "cluster"}], ["axis"], ["legend"],
                   ["plot", {"kind": "scatter"}], ["handoff"]]),
            &inputs,
        )
        .unwrap();
        let svg = out.figures[0].figure.to_svg().unwrap();
        assert!(
            svg.contains("cluster 0") && svg.contains("cluster 1"),
            "named clusters"
        );
        // Bad drawing input names what to fix.
        let e = go(json!(["access", ["plot", {"x": "nope"}]]), &inputs).unwrap_err();
        assert!(
            e.to_string().contains("step 1 (plot)") && e.to_string().contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn the_learning_ops_run_on_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        // The seed's pipeline, to its first drawing op.
        let out = go(json!(["access", "label", "pca", "scale"]), &inputs).unwrap();
        assert_eq!(
            out.data.names(),
            [
                "pc1", "pc2", "note", "bundle", "address", "version", "file", "param.lr", "label"
            ]
        );
        let pca = &out.tables[0];
        assert_eq!(pca.name, "pca");
        assert_eq!(
            pca.frame.names(),
            [
                "component",
                "explained_variance",
                "explained_variance_ratio"
            ]
        );
        let ratio = pca.frame.numbers("explained_variance_ratio").unwrap();
        assert!(ratio[0] >= ratio[1] && (ratio[0] + ratio[1] - 1.0).abs() < 1e-12);
        // Scaled after: standardised scores.
        let pc1 = out.data.numbers("pc1").unwrap();
        assert!(pc1.iter().sum::<f64>().abs() < 1e-9);
        for op in ["kmeans", "kmean", "dbscan"] {
            let out = go(json!(["access", "label", "pca", "scale", op]), &inputs).unwrap();
            let Some(Column::I64(c)) = out.data.get(CLUSTER) else {
                panic!("{op}: no integer cluster column");
            };
            assert_eq!(c.len(), 9);
            if op == "dbscan" {
                assert!(c.iter().all(|&l| (-1..9).contains(&l)), "{c:?}");
            } else {
                let mut seen = c.clone();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen, [0, 1, 2], "{op}");
            }
            // The cluster is not measured: a scale after leaves it alone.
            let out = go(json!(["access", op, "scale"]), &inputs).unwrap();
            assert!(matches!(out.data.get(CLUSTER), Some(Column::I64(_))));
        }
        let out = go(
            json!(["access", ["kmeans", {"k": 2, "columns": ["reward"], "seed": 7}]]),
            &inputs,
        )
        .unwrap();
        let Some(Column::I64(c)) = out.data.get(CLUSTER) else {
            panic!("no cluster column")
        };
        // Rewards 0.1..0.5 apart from 0.6..0.9 (the split of least inertia).
        let r = out.data.numbers("reward").unwrap();
        for (v, l) in r.iter().zip(c) {
            let low = c[r.iter().position(|&x| x < 0.3).unwrap()];
            assert_eq!(*v < 0.55, *l == low, "{r:?} {c:?}");
        }
    }

    #[test]
    fn learning_ops_name_what_they_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        std::fs::write(dir.path().join("m1.csv"), "step,reward\n0,\n1,0.5\n").unwrap();
        let e = go(json!(["access", "pca"]), &inputs)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "step 1 (pca): column \"reward\", row 3, is missing (NaN): drop those rows first (select) or name other columns"
        );
        let e = go(json!(["access", ["kmeans", {"k": 20}]]), &inputs)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "step 1 (kmeans): k-means with k = 20 needs at least 20 rows; the data has 8"
        );
        let e = go(json!(["access", ["dbscan", {"eps": 0}]]), &inputs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eps must be a finite number above 0"), "{e}");
        let e = go(
            json!(["access", ["select", {"where": "step > 10"}], "pca"]),
            &inputs,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no rows to learn from"), "{e}");
    }

    #[test]
    fn failures_name_the_step_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = inputs(dir.path());
        let e = go(json!([["access", {"columns": ["loss"]}]]), &inputs).unwrap_err();
        let file = dir.path().join("m0.csv");
        assert_eq!(
            e.to_string(),
            format!(
                "step 0 (access): {}: no column \"loss\": the data has \"step\", \"reward\", \"note\"",
                file.display()
            )
        );
        let e = go(json!(["access", ["mean", {"columns": "note"}]]), &inputs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "step 1 (mean): column \"note\" holds text values; a number column is needed"
        );
        std::fs::write(&file, "step,reward\n1\n").unwrap();
        let e = go(json!(["access"]), &inputs).unwrap_err().to_string();
        assert!(
            e.starts_with("step 0 (access): ") && e.contains("m0.csv, line 2"),
            "{e}"
        );
        let mut empty = Inputs::new();
        empty.insert("metrics", Vec::new());
        let e = go(json!(["access"]), &empty).unwrap_err().to_string();
        assert!(e.contains("the input \"metrics\" matched no files"), "{e}");
    }
}
