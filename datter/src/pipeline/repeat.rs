//! `repeat`: the steps after it run once per group of `by` (the label by default, else the
//! provenance `label` would use), each on a fresh state holding that group's rows. The
//! groups' frames are then stacked, each keeping its `by` columns (added back if a step
//! dropped them), and so are the tables the steps put aside, by name, with the `by` columns
//! in front. A figure started before `repeat` and not yet plotted on is carried into every
//! group, so `frame, axis, repeat, plot` draws one figure per group; each group's figures are
//! kept in order, their titles ending in the group's value (`Reward: lr=0.1`). A grid open
//! before `repeat` takes every group's figures as cells; one opened after it is per group.

use super::params::texts;
use super::run::{Inputs, LABEL, RunError, State, StepFailure};
use super::sketch::Drawn;
use super::steps::Step;
use crate::group::{group_name, row_groups};
use crate::{Column, DataError, Frame};

impl State {
    /// Runs `rest` once per group of the step's `by`, then merges the groups' results.
    pub(super) fn repeat(
        &mut self,
        step: &Step,
        rest: &[Step],
        inputs: &Inputs,
        done: &mut dyn FnMut(&Step, std::time::Duration, usize),
    ) -> Result<(), RunError> {
        let at = |cause: StepFailure| RunError {
            index: step.index,
            op: step.op.name,
            cause,
        };
        let by = match texts(&step.params, "by") {
            by if !by.is_empty() => by,
            _ if self.labelled => vec![LABEL.to_owned()],
            _ => self.telling_apart(),
        };
        if by.is_empty() {
            return Err(at(DataError::Invalid(
                "there is nothing to repeat by: run label first, or name the columns with \"by\""
                    .to_owned(),
            )
            .into()));
        }
        if self.data.rows() == 0 {
            return Err(at(DataError::Empty(
                "there are no rows to repeat over: check the inputs and any select".to_owned(),
            )
            .into()));
        }
        let groups = row_groups(&self.data, &by).map_err(|e| at(e.into()))?;
        let sketch = match self.sketch.take() {
            Some(s) if s.plotted() => {
                self.sketch = Some(s);
                self.finish_sketch().map_err(|e| at(e.into()))?;
                None
            }
            s => s,
        };
        let data = std::mem::take(&mut self.data);
        let mut frames = Vec::with_capacity(groups.len());
        let mut tables: Vec<(String, Vec<Frame>)> = Vec::new();
        for rows in &groups {
            let part = data.take(rows);
            let key: Vec<(String, Column)> = by
                .iter()
                .filter_map(|b| part.get(b).map(|c| (b.clone(), c.take(&[0]))))
                .collect();
            let drawn = self.figures.len();
            let open_grid = self.grid.as_ref().map(|g| g.from);
            let mut sub = State {
                data: part,
                labelled: self.labelled,
                sketch: sketch.clone(),
                figures: std::mem::take(&mut self.figures),
                grid: self.grid.take(),
                ..State::default()
            };
            let ran = sub.run(rest, inputs, done);
            let finished = sub.finish_sketch();
            // A grid the group opened is the group's; one open before the repeat goes on.
            if sub.grid.as_ref().map(|g| g.from) != open_grid {
                sub.close_grid();
            }
            self.grid = sub.grid.take();
            self.figures = titled(std::mem::take(&mut sub.figures), drawn, &key);
            ran.map_err(|mut e| {
                e.cause = StepFailure::Group {
                    group: group_name(&data, &by, rows[0]),
                    cause: Box::new(e.cause),
                };
                e
            })?;
            finished.map_err(|e| at(e.into()))?;
            let keyed = |f: Frame| with_key(f, &key).map_err(|e| at(e.into()));
            frames.push(keyed(sub.data)?);
            for t in sub.tables {
                let frame = keyed(t.frame)?;
                match tables.iter_mut().find(|(n, _)| *n == t.name) {
                    Some((_, parts)) => parts.push(frame),
                    None => tables.push((t.name, vec![frame])),
                }
            }
            self.labelled |= sub.labelled;
            if sub.report.is_some() {
                self.report = sub.report;
            }
            if sub.handoff.is_some() {
                self.handoff = sub.handoff;
            }
        }
        self.data = Frame::stack(frames);
        for (name, parts) in tables {
            self.put_aside(&name, Frame::stack(parts));
        }
        Ok(())
    }
}

/// The figures from `from` on titled with the group's values after their own.
fn titled(figures: Vec<Drawn>, from: usize, key: &[(String, Column)]) -> Vec<Drawn> {
    let group = key
        .iter()
        .map(|(_, c)| c.text_at(0))
        .collect::<Vec<_>>()
        .join(", ");
    figures
        .into_iter()
        .enumerate()
        .map(|(i, mut d)| {
            if i >= from {
                d.retitle(format!("{}: {group}", d.title));
            }
            d
        })
        .collect()
}

/// `frame` with the group's `key` columns in front, where it lacks them.
fn with_key(frame: Frame, key: &[(String, Column)]) -> Result<Frame, DataError> {
    let rows = vec![0; frame.rows()];
    let mut cols: Vec<(String, Column)> = key
        .iter()
        .filter(|(name, _)| frame.get(name).is_none())
        .map(|(name, one)| (name.clone(), one.take(&rows)))
        .collect();
    if cols.is_empty() {
        return Ok(frame);
    }
    cols.extend(frame.iter().map(|(n, c)| (n.to_owned(), c.clone())));
    Frame::from_columns(cols)
}
