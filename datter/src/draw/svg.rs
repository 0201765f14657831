//! The SVG writer: the same [`Canvas`] as the PNG, as elements. Text stays text (`<text>`, with
//! its measured length so any fallback font keeps the layout); a point layer larger than
//! [`DENSE_DOTS`] and a heatmap larger than [`DENSE_CELLS`] become one embedded PNG `<image>`
//! each, so a million points do not make a 40 MB file.

use std::fmt::Write;

use tiny_skia::Pixmap;

use super::DrawError;
use super::colour::Rgba;
use super::marks::{Anchor, Canvas, Layer, Mark, Rect, Stroke};
use super::raster::{draw_layer, encode_png};
use super::text::FAMILY;

/// Point layers with more points than this are embedded as a raster image.
pub const DENSE_DOTS: usize = 5_000;
/// Heatmaps with more cells than this are embedded as a raster image.
pub const DENSE_CELLS: usize = 2_500;

/// Writes `canvas` as an SVG document.
pub fn render(canvas: &Canvas) -> Result<String, DrawError> {
    let mut s = String::with_capacity(16 * 1024);
    let (w, h) = (canvas.width, canvas.height);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FAMILY}">"#
    );
    let _ = writeln!(
        s,
        r##"<rect class="background" x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##
    );
    for (i, layer) in canvas.layers.iter().enumerate() {
        if layer.marks.is_empty() {
            continue;
        }
        if let Some(c) = layer.clip {
            let _ = writeln!(
                s,
                r#"<clipPath id="clip{i}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>"#,
                n(c.x),
                n(c.y),
                n(c.w),
                n(c.h)
            );
            let _ = writeln!(
                s,
                r#"<g class="{}" clip-path="url(#clip{i})">"#,
                layer.class
            );
        } else {
            let _ = writeln!(s, r#"<g class="{}">"#, layer.class);
        }
        for mark in &layer.marks {
            write_mark(&mut s, mark, layer, canvas)?;
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// A coordinate with two decimals at most.
fn n(v: f32) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn paint(s: &mut String, fill: Option<Rgba>, stroke: Option<Stroke>) {
    match fill {
        Some(f) => {
            let _ = write!(s, r#" fill="{}""#, f.hex());
            if f.a < 255 {
                let _ = write!(s, r#" fill-opacity="{:.3}""#, f32::from(f.a) / 255.0);
            }
        }
        None => s.push_str(r#" fill="none""#),
    }
    if let Some(st) = stroke {
        let _ = write!(
            s,
            r#" stroke="{}" stroke-width="{}""#,
            st.colour.hex(),
            n(st.width)
        );
        if st.colour.a < 255 {
            let _ = write!(
                s,
                r#" stroke-opacity="{:.3}""#,
                f32::from(st.colour.a) / 255.0
            );
        }
    }
}

/// Escapes text for XML.
pub fn escape(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if (c as u32) < 0x20 && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn write_mark(
    s: &mut String,
    mark: &Mark,
    layer: &Layer,
    canvas: &Canvas,
) -> Result<(), DrawError> {
    match mark {
        Mark::Rect { rect, fill, stroke } => {
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}""#,
                n(rect.x),
                n(rect.y),
                n(rect.w),
                n(rect.h)
            );
            paint(s, *fill, *stroke);
            s.push_str("/>\n");
        }
        Mark::Path {
            points,
            closed,
            fill,
            stroke,
        } => {
            let tag = if *closed { "polygon" } else { "polyline" };
            let _ = write!(s, r#"<{tag} points=""#);
            for (i, (x, y)) in points.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                let _ = write!(s, "{},{}", n(*x), n(*y));
            }
            s.push('"');
            paint(s, if *closed { *fill } else { None }, *stroke);
            s.push_str(r#" stroke-linejoin="round"/>"#);
            s.push('\n');
        }
        Mark::Circle {
            cx,
            cy,
            r,
            fill,
            stroke,
        } => {
            let _ = write!(
                s,
                r#"<circle cx="{}" cy="{}" r="{}""#,
                n(*cx),
                n(*cy),
                n(*r)
            );
            paint(s, *fill, *stroke);
            s.push_str("/>\n");
        }
        Mark::Dots {
            xy,
            radius,
            colours,
        } => {
            if xy.len() > DENSE_DOTS {
                embed(s, mark, layer, canvas)?;
            } else {
                for (i, p) in xy.iter().enumerate() {
                    let c = match colours {
                        super::marks::DotColours::One(c) => *c,
                        super::marks::DotColours::Each(v) => {
                            v.get(i).copied().unwrap_or(Rgba::BLACK)
                        }
                    };
                    let _ = write!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="{}""#,
                        n(p[0]),
                        n(p[1]),
                        n(*radius)
                    );
                    paint(s, Some(c), None);
                    s.push_str("/>\n");
                }
            }
        }
        Mark::Cells {
            rect,
            cols,
            rows,
            colours,
        } => {
            if cols * rows > DENSE_CELLS {
                embed(s, mark, layer, canvas)?;
            } else {
                let (cw, ch) = (rect.w / *cols as f32, rect.h / *rows as f32);
                s.push_str(r#"<g shape-rendering="crispEdges">"#);
                for (i, c) in colours.iter().enumerate().take(cols * rows) {
                    let (r, k) = (i / cols, i % cols);
                    // A hair of overlap so no seams show between cells.
                    let _ = write!(
                        s,
                        r#"<rect x="{}" y="{}" width="{}" height="{}""#,
                        n(rect.x + k as f32 * cw),
                        n(rect.y + r as f32 * ch),
                        n(cw + 0.3),
                        n(ch + 0.3)
                    );
                    paint(s, Some(*c), None);
                    s.push_str("/>\n");
                }
                s.push_str("</g>\n");
            }
        }
        Mark::Text(t) => {
            let anchor = match t.anchor {
                Anchor::Start => "start",
                Anchor::Middle => "middle",
                Anchor::End => "end",
            };
            let _ = write!(
                s,
                r#"<text class="{}" x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{}""#,
                t.role.class(),
                n(t.x),
                n(t.y),
                n(t.size),
                t.colour.hex()
            );
            if t.bold {
                s.push_str(r#" font-weight="bold""#);
            }
            if t.vertical {
                let _ = write!(s, r#" transform="rotate(-90 {} {})""#, n(t.x), n(t.y));
            }
            if t.width > 0.0 {
                let _ = write!(
                    s,
                    r#" textLength="{}" lengthAdjust="spacingAndGlyphs""#,
                    n(t.width)
                );
            }
            let _ = writeln!(s, ">{}</text>", escape(&t.text));
        }
    }
    Ok(())
}

/// Draws one dense mark into a transparent raster of its layer's clip (or the canvas) and writes
/// it as an `<image>`.
fn embed(s: &mut String, mark: &Mark, layer: &Layer, canvas: &Canvas) -> Result<(), DrawError> {
    let area = layer.clip.unwrap_or(Rect::new(
        0.0,
        0.0,
        canvas.width as f32,
        canvas.height as f32,
    ));
    let (x0, y0) = (area.x.floor().max(0.0), area.y.floor().max(0.0));
    let w = ((area.right().ceil() - x0) as u32).clamp(1, canvas.width);
    let h = ((area.bottom().ceil() - y0) as u32).clamp(1, canvas.height);
    let mut pm = Pixmap::new(w, h).ok_or(DrawError::Size {
        width: w,
        height: h,
    })?;
    let shifted = shift(mark, -x0, -y0);
    let sub = Layer {
        clip: Some(Rect::new(area.x - x0, area.y - y0, area.w, area.h)),
        class: layer.class,
        marks: vec![shifted],
    };
    draw_layer(&mut pm, &sub)?;
    let png = encode_png(&pm)?;
    let _ = writeln!(
        s,
        r#"<image x="{}" y="{}" width="{w}" height="{h}" preserveAspectRatio="none" style="image-rendering:pixelated" href="data:image/png;base64,{}"/>"#,
        n(x0),
        n(y0),
        base64(&png)
    );
    Ok(())
}

fn shift(mark: &Mark, dx: f32, dy: f32) -> Mark {
    match mark {
        Mark::Dots {
            xy,
            radius,
            colours,
        } => Mark::Dots {
            xy: xy.iter().map(|p| [p[0] + dx, p[1] + dy]).collect(),
            radius: *radius,
            colours: colours.clone(),
        },
        Mark::Cells {
            rect,
            cols,
            rows,
            colours,
        } => Mark::Cells {
            rect: Rect::new(rect.x + dx, rect.y + dy, rect.w, rect.h),
            cols: *cols,
            rows: *rows,
            colours: colours.clone(),
        },
        other => other.clone(),
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        o.push(T[(v >> 18) as usize & 63] as char);
        o.push(T[(v >> 12) as usize & 63] as char);
        o.push(if chunk.len() > 1 {
            T[(v >> 6) as usize & 63] as char
        } else {
            '='
        });
        o.push(if chunk.len() > 2 {
            T[v as usize & 63] as char
        } else {
            '='
        });
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
