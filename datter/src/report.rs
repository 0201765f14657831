//! The report page: one self-contained HTML file that shows a pipeline's pictures and
//! tables, each table also linked as CSV. Plain HTML and a little CSS, no scripts, so it
//! opens the same from a bundle on disk, a browser or a mail attachment.

use std::fmt::Write;

use crate::Frame;

/// Rows of a table shown on the page; the CSV beside it holds them all.
pub const SHOWN_ROWS: usize = 200;

/// One thing on the page, in order.
#[derive(Debug, Clone)]
pub enum Section<'a> {
    /// A picture file beside the page (`reward.png`), with its SVG twin when there is one.
    Picture {
        /// Its caption.
        title: &'a str,
        /// The raster file's name, relative to the page.
        png: &'a str,
        /// The vector file's name, when one was written.
        svg: Option<&'a str>,
    },
    /// A table, with the name of its CSV beside the page.
    Table {
        /// Its caption.
        title: &'a str,
        /// Its rows.
        frame: &'a Frame,
        /// The CSV file's name, relative to the page.
        csv: &'a str,
    },
}

/// The page, titled `title`, showing `sections` in order.
pub fn html(title: &str, sections: &[Section<'_>]) -> String {
    let mut out = String::new();
    let t = escape(title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n"
    );
    for s in sections {
        match s {
            Section::Picture { title, png, svg } => {
                let (title, png) = (escape(title), escape(png));
                let _ = write!(
                    out,
                    "<figure><img src=\"{png}\" alt=\"{title}\"><figcaption>{title} — \
                     <a href=\"{png}\">PNG</a>"
                );
                if let Some(svg) = svg {
                    let _ = write!(out, " · <a href=\"{}\">SVG</a>", escape(svg));
                }
                out.push_str("</figcaption></figure>\n");
            }
            Section::Table { title, frame, csv } => table(&mut out, title, frame, csv),
        }
    }
    out.push_str("</body></html>\n");
    out
}

fn table(out: &mut String, title: &str, frame: &Frame, csv: &str) {
    let rows = frame.rows();
    let _ = write!(
        out,
        "<section><h2>{}</h2><p class=\"note\">{rows} rows × {} columns — <a href=\"{}\">CSV</a>",
        escape(title),
        frame.width(),
        escape(csv)
    );
    if rows > SHOWN_ROWS {
        let _ = write!(out, "; the first {SHOWN_ROWS} are shown");
    }
    out.push_str("</p>\n<table><thead><tr>");
    for name in frame.names() {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in 0..rows.min(SHOWN_ROWS) {
        out.push_str("<tr>");
        for (_, col) in frame.iter() {
            let class = if col.is_numeric() { " class=\"n\"" } else { "" };
            let text = match col {
                crate::Column::F64(v) => v.get(row).map_or(String::new(), |x| page_number(*x)),
                _ => col.text_at(row),
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(&text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></section>\n");
}

/// A number as a page shows it: at most 6 significant digits, so a mean reads 0.0928456
/// rather than 0.09284560000000001 (the CSV beside it keeps every digit).
fn page_number(v: f64) -> String {
    if v.is_nan() {
        return String::new();
    }
    if !v.is_finite() || v == 0.0 {
        return v.to_string();
    }
    let decimals = (5 - v.abs().log10().floor() as i32).clamp(0, 15) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Text made safe inside HTML elements and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;\
padding:0 1rem;color:#222}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}\
figure{margin:1.5rem 0}img{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption,.note{color:#555;font-size:.9rem}table{border-collapse:collapse;font-size:.9rem}\
th,td{border:1px solid #ddd;padding:.25rem .6rem}th{background:#f4f4f4;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Column;

    #[test]
    fn numbers_on_the_page_keep_six_significant_digits() {
        assert_eq!(page_number(0.09284560000000001), "0.0928456");
        assert_eq!(page_number(0.5), "0.5");
        assert_eq!(page_number(1234567.89), "1234568");
        assert_eq!(page_number(-2.0), "-2");
        assert_eq!(page_number(0.0), "0");
        assert_eq!(page_number(f64::NAN), "");
    }

    #[test]
    fn the_page_holds_each_section_escaped_and_in_order() {
        let frame = Frame::from_columns(vec![
            (
                "label".into(),
                Column::Text(vec!["<run1>".into(), "b&c".into()]),
            ),
            ("reward_last".into(), Column::F64(vec![0.5, f64::NAN])),
        ])
        .unwrap();
        let page = html(
            "experiment2 <x>",
            &[
                Section::Picture {
                    title: "Reward per step",
                    png: "reward.png",
                    svg: Some("reward.svg"),
                },
                Section::Table {
                    title: "matrix",
                    frame: &frame,
                    csv: "matrix.csv",
                },
            ],
        );
        assert!(page.contains("<title>experiment2 &lt;x&gt;</title>"));
        let img = page.find("<img src=\"reward.png\"").unwrap();
        let table = page.find("<h2>matrix</h2>").unwrap();
        assert!(img < table, "sections keep their order");
        assert!(page.contains("href=\"reward.svg\"") && page.contains("href=\"matrix.csv\""));
        assert!(page.contains("<td>&lt;run1&gt;</td>") && page.contains("<td>b&amp;c</td>"));
        assert!(page.contains("2 rows × 2 columns"));
        assert!(!page.contains("<run1>"), "nothing unescaped");
    }
}
