//! A table laid out in its rectangle: column widths from the measured cells, cells cut with an
//! ellipsis where the columns must share too little room, and as many rows as fit, the rest
//! counted in a note.

use super::DrawError;
use super::colour::Rgba;
use super::layout::{MAX_LABEL, Metrics, PAD, fit, line, text};
use super::marks::{Anchor, Layer, Mark, Rect, Role, Stroke};
use super::scene::Table;
use super::text::measure;

/// Room either side of a cell's text.
const CELL_PAD: f32 = 8.0;
/// A column is never squeezed narrower than this.
const MIN_COLUMN: f32 = 36.0;
const HEAD_FILL: Rgba = Rgba::rgb(0xee, 0xee, 0xee);
const ZEBRA_FILL: Rgba = Rgba::rgb(0xf7, 0xf7, 0xf7);
const RULE: Rgba = Rgba::rgb(0x99, 0x99, 0x99);

/// Lays `t` out in `rect`.
pub(super) fn table_area(
    t: &Table,
    rect: Rect,
    m: &Metrics,
    out: &mut Vec<Layer>,
) -> Result<(), DrawError> {
    let size = m.tick;
    let row_h = (m.tick_h * 1.6).ceil();
    let area = Rect::new(
        rect.x + PAD,
        rect.y + PAD,
        rect.w - 2.0 * PAD,
        rect.h - 2.0 * PAD,
    );
    let mut marks = Vec::new();
    if t.columns.is_empty() {
        let note = text(
            area.x + area.w / 2.0,
            area.y + m.tick_ascent,
            "no columns".to_owned(),
            size,
            Anchor::Middle,
            false,
            Rgba::GREY,
            false,
            Role::Note,
        )?;
        out.push(layer(vec![note]));
        return Ok(());
    }
    // Columns that cannot have even the narrowest width are left out, and said so.
    let fits = ((area.w / MIN_COLUMN).floor() as usize).clamp(1, t.columns.len());
    let widths = column_widths(t, fits, area.w, size)?;
    let total: f32 = widths.iter().sum();
    // A narrow table sits in the middle; a wide one fills the room.
    let left = area.x + ((area.w - total) / 2.0).max(0.0);
    // Rows that fit below the header, keeping one line for the note when some are left out.
    let fitting = ((area.h / row_h).floor() as usize).saturating_sub(1);
    let shown = if t.rows.len() > fitting {
        fitting.saturating_sub(1)
    } else {
        t.rows.len()
    };
    let more = t.more + (t.rows.len() - shown);
    marks.push(Mark::Rect {
        rect: Rect::new(left, area.y, total, row_h),
        fill: Some(HEAD_FILL),
        stroke: None,
    });
    for r in (1..shown).step_by(2) {
        marks.push(Mark::Rect {
            rect: Rect::new(left, area.y + (r + 1) as f32 * row_h, total, row_h),
            fill: Some(ZEBRA_FILL),
            stroke: None,
        });
    }
    let rule = Stroke {
        colour: RULE,
        width: 1.0,
    };
    let under_head = area.y + row_h;
    marks.push(line((left, under_head), (left + total, under_head), rule));
    let baseline =
        |row: usize| area.y + row as f32 * row_h + (row_h - m.tick_h) / 2.0 + m.tick_ascent;
    let mut x = left;
    for (c, w) in widths.iter().enumerate() {
        let right = t.numeric.get(c).copied().unwrap_or(false);
        let (at, anchor) = if right {
            (x + w - CELL_PAD, Anchor::End)
        } else {
            (x + CELL_PAD, Anchor::Start)
        };
        let room = w - 2.0 * CELL_PAD;
        let head = fit(&t.columns[c], size, true, room)?;
        marks.push(text(
            at,
            baseline(0),
            head,
            size,
            anchor,
            false,
            Rgba::INK,
            true,
            Role::TableHead,
        )?);
        for (r, row) in t.rows.iter().take(shown).enumerate() {
            let cell = row.get(c).map(String::as_str).unwrap_or_default();
            if cell.is_empty() {
                continue;
            }
            marks.push(text(
                at,
                baseline(r + 1),
                fit(cell, size, false, room)?,
                size,
                anchor,
                false,
                Rgba::INK,
                false,
                Role::TableCell,
            )?);
        }
        x += w;
    }
    let bottom = area.y + (shown + 1) as f32 * row_h;
    marks.push(line((left, bottom), (left + total, bottom), rule));
    let plural = |n: usize, what: &str| format!("{n} more {what}{}", if n == 1 { "" } else { "s" });
    let left_out: Vec<String> = [(more, "row"), (t.columns.len() - fits, "column")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| plural(n, what))
        .collect();
    if !left_out.is_empty() {
        marks.push(text(
            left + CELL_PAD,
            baseline(shown + 1),
            fit(
                &format!("… and {}", left_out.join(", ")),
                size,
                false,
                area.right() - left - CELL_PAD,
            )?,
            size,
            Anchor::Start,
            false,
            Rgba::GREY,
            false,
            Role::Note,
        )?);
    }
    out.push(layer(marks));
    Ok(())
}

fn layer(marks: Vec<Mark>) -> Layer {
    Layer {
        clip: None,
        class: "table",
        marks,
    }
}

/// The first `n` columns each as wide as its widest text (up to [`MAX_LABEL`]), all squeezed
/// in proportion when together they are wider than `room`.
fn column_widths(t: &Table, n: usize, room: f32, size: f32) -> Result<Vec<f32>, DrawError> {
    let mut widths = Vec::with_capacity(n);
    for (c, name) in t.columns.iter().enumerate().take(n) {
        let mut w = measure(name, size, true)?.width;
        for row in &t.rows {
            if let Some(cell) = row.get(c) {
                w = w.max(measure(cell, size, false)?.width);
            }
        }
        // `fit` keeps some room for renderers that draw text wider than measured.
        widths.push((w.min(MAX_LABEL) * 1.04).ceil() + 2.0 * CELL_PAD);
    }
    let total: f32 = widths.iter().sum();
    if total > room && total > 0.0 {
        let k = room / total;
        for w in &mut widths {
            *w = (*w * k).max(MIN_COLUMN);
        }
        // The floor above can push the sum past the room again: share what is left.
        let total: f32 = widths.iter().sum();
        if total > room {
            widths.iter_mut().for_each(|w| *w = room / n as f32);
        }
    }
    Ok(widths)
}

#[cfg(test)]
mod tests {
    use super::super::{Figure, Table};
    use crate::draw::marks::{Mark, Role};

    fn table(rows: usize) -> Table {
        Table {
            columns: vec!["label".into(), "reward".into()],
            numeric: vec![false, true],
            rows: (0..rows)
                .map(|r| vec![format!("lr=0.{r}"), format!("{}", r as f64 * 1.5)])
                .collect(),
            more: 0,
        }
    }

    fn texts(fig: &Figure, role: Role) -> Vec<String> {
        let canvas = fig.layout().unwrap();
        canvas
            .layers
            .iter()
            .flat_map(|l| &l.marks)
            .filter_map(|m| match m {
                Mark::Text(t) if t.role == role => Some(t.text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_table_shows_its_header_and_cells_without_overlap() {
        let fig = Figure::table(400, 300, table(5)).with_title("Rewards");
        assert_eq!(texts(&fig, Role::TableHead), ["label", "reward"]);
        let cells = texts(&fig, Role::TableCell);
        assert_eq!(cells.len(), 10, "{cells:?}");
        assert!(cells.contains(&"lr=0.4".to_owned()) && cells.contains(&"6".to_owned()));
        let canvas = fig.layout().unwrap();
        let bounds: Vec<_> = canvas
            .layers
            .iter()
            .flat_map(|l| &l.marks)
            .filter_map(|m| match m {
                Mark::Text(t) => Some(t.bounds),
                _ => None,
            })
            .collect();
        for (i, a) in bounds.iter().enumerate() {
            assert!(
                a.x >= 0.0 && a.right() <= 400.0 && a.bottom() <= 300.0,
                "{a:?}"
            );
            for b in &bounds[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
        }
        let svg = fig.to_svg().unwrap();
        assert!(svg.contains("table-head") && svg.contains("lr=0.3"));
        assert!(fig.to_png().unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn rows_that_do_not_fit_are_counted() {
        let mut t = table(100);
        t.more = 50;
        let fig = Figure::table(300, 200, t);
        let notes = texts(&fig, Role::Note);
        let shown = texts(&fig, Role::TableCell).len() / 2;
        assert!(shown > 3 && shown < 100, "{shown} rows shown");
        assert_eq!(notes, [format!("… and {} more rows", 150 - shown)]);
    }

    #[test]
    fn wide_tables_are_squeezed_into_the_figure() {
        let t = Table {
            columns: (0..12)
                .map(|c| format!("a rather long column {c}"))
                .collect(),
            numeric: vec![true; 12],
            rows: vec![(0..12).map(|c| format!("{}", c * 1000)).collect()],
            more: 0,
        };
        let canvas = Figure::table(480, 200, t.clone()).layout().unwrap();
        for m in canvas.layers.iter().flat_map(|l| &l.marks) {
            if let Mark::Text(t) = m {
                assert!(t.bounds.right() <= 480.5, "{} at {:?}", t.text, t.bounds);
            }
        }
        let narrow = Figure::table(200, 200, t);
        assert_eq!(texts(&narrow, Role::TableHead).len(), 5);
        assert_eq!(texts(&narrow, Role::Note), ["… and 7 more columns"]);
    }
}
