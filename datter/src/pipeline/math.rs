//! The math ops' defaults and results in a pipeline: `boxer`, `cosine_similarity`, the
//! element-wise functions, `derivative`, `integral` and `fit`. The computing is in
//! [`crate::bins`], [`crate::similarity`], [`crate::elementwise`], [`crate::calculus`] and
//! [`crate::fit`]; this fills in what a step leaves out from what the steps before produced.
//!
//! Defaults: columns are the measured ones; groups are the label's once `label` has run (else
//! the whole frame is one group); x is `step` when the data has it, else the first measured
//! column; `fit`'s y is the first measured column other than x.

use serde_json::{Map, Value};

use super::params::{count, text, texts};
use super::run::{LABEL, State, StepFailure};
use crate::elementwise::{self, Func};
use crate::{DataError, bins, calculus, similarity};

type Params = Map<String, Value>;

impl State {
    /// `boxer`: a `bin` column naming each row's bin, the bins put aside as table `boxer`.
    pub(super) fn boxer(&mut self, p: &Params) -> Result<(), StepFailure> {
        let column = match text(p, "column") {
            Some(c) => c.to_owned(),
            None => self.first_measured(&[])?,
        };
        let bins = count(p, "bins").unwrap_or(10);
        let h = bins::histogram(&column, &self.data.numbers(&column)?, bins)?;
        self.data.set("bin", h.row_labels())?;
        self.put_aside("boxer", h.table()?);
        Ok(())
    }

    /// `cosine_similarity`: the rows' similarities put aside, named by their labels.
    pub(super) fn cosine_similarity(&mut self, p: &Params) -> Result<(), StepFailure> {
        let columns = self.columns(p, &[])?;
        let names: Vec<String> = match self.data.get(LABEL) {
            Some(l) => (0..l.len()).map(|r| l.text_at(r)).collect(),
            None => Vec::new(),
        };
        let table = similarity::cosine_similarity(&self.data, &columns, &names)?;
        self.put_aside("cosine_similarity", table);
        Ok(())
    }

    /// `sine`, `cos`, … `log`: the columns' values replaced in place.
    pub(super) fn elementwise(&mut self, op: &str, p: &Params) -> Result<(), StepFailure> {
        let f = Func::parse(op)
            .ok_or_else(|| DataError::Invalid(format!("{op} is not an element-wise function")))?;
        let columns = self.columns(p, &[])?;
        self.data = elementwise::apply(&self.data, &columns, f)?;
        Ok(())
    }

    /// `derivative`: the columns replaced by dy/dx within each group.
    pub(super) fn derivative(&mut self, p: &Params) -> Result<(), StepFailure> {
        let x = self.x(p)?;
        let columns = self.columns(p, std::slice::from_ref(&x))?;
        self.data = calculus::derivative(&self.data, &x, &columns, &self.by(p))?;
        Ok(())
    }

    /// `integral`: one row per group with `<column>_integral`, also put aside.
    pub(super) fn integral(&mut self, p: &Params) -> Result<(), StepFailure> {
        let x = self.x(p)?;
        let columns = self.columns(p, std::slice::from_ref(&x))?;
        let out = calculus::integral(&self.data, &x, &columns, &self.by(p))?;
        self.put_aside("integral", out.clone());
        self.data = out;
        Ok(())
    }

    /// `fit`: `<y>_fit` and `<y>_residual` added, the coefficients put aside as table `fit`.
    pub(super) fn fit(&mut self, p: &Params) -> Result<(), StepFailure> {
        let x = self.x(p)?;
        let y = match text(p, "y") {
            Some(y) => y.to_owned(),
            None => self.first_measured(std::slice::from_ref(&x))?,
        };
        let degree = match (text(p, "kind"), count(p, "degree")) {
            (Some("polynomial"), d) => d.unwrap_or(2),
            (_, None | Some(1)) => 1,
            (_, Some(d)) => {
                return Err(DataError::Invalid(format!(
                    "a linear fit has degree 1, not {d}: say \"kind\": \"polynomial\""
                ))
                .into());
            }
        };
        let fitted = crate::fit::fit(&self.data, &x, &y, degree, &self.by(p))?;
        self.data = fitted.data;
        self.put_aside("fit", fitted.table);
        Ok(())
    }

    /// The groups: `by`, else the label once `label` has run, else none (the whole frame).
    fn by(&self, p: &Params) -> Vec<String> {
        match texts(p, "by") {
            by if !by.is_empty() => by,
            _ if self.labelled => vec![LABEL.to_owned()],
            _ => Vec::new(),
        }
    }

    /// x: as given, else `step` when there is one, else the first measured column.
    fn x(&self, p: &Params) -> Result<String, DataError> {
        match text(p, "x") {
            Some(x) => Ok(x.to_owned()),
            None if self.data.get("step").is_some_and(crate::Column::is_numeric) => {
                Ok("step".to_owned())
            }
            None => self.first_measured(&[]),
        }
    }

    /// `columns` as given, else the measured columns but `except`.
    fn columns(&self, p: &Params, except: &[String]) -> Result<Vec<String>, DataError> {
        let given = texts(p, "columns");
        if !given.is_empty() {
            return Ok(given);
        }
        let m: Vec<String> = self
            .measured()?
            .into_iter()
            .filter(|c| !except.contains(c))
            .collect();
        if m.is_empty() {
            return Err(DataError::Invalid(format!(
                "there is no measured column besides {}: name the columns",
                except.join(", ")
            )));
        }
        Ok(m)
    }

    fn first_measured(&self, except: &[String]) -> Result<String, DataError> {
        let m = self.columns(&Map::new(), except)?;
        m.into_iter().next().ok_or_else(|| {
            DataError::Invalid("there is no number column to work on: name one".to_owned())
        })
    }
}
