//! The PNG writer: draws a [`Canvas`] into a tiny-skia pixmap. Paths go through tiny-skia;
//! dense point layers are stamped straight into the pixel buffer from precomputed anti-aliased
//! disc masks (in bands, on rayon's threads), and text from the embedded font's coverage.

use rayon::prelude::*;
use tiny_skia::{FillRule, Mask, Paint, PathBuilder, Pixmap, Transform};

use super::DrawError;
use super::colour::Rgba;
use super::marks::{Anchor, Canvas, DotColours, Layer, Mark, Rect, Stroke, Text};
use super::text::rasterise;

/// Draws `canvas` on white.
pub fn render(canvas: &Canvas) -> Result<Pixmap, DrawError> {
    let mut pm = Pixmap::new(canvas.width, canvas.height).ok_or(DrawError::Size {
        width: canvas.width,
        height: canvas.height,
    })?;
    pm.fill(tiny_skia::Color::WHITE);
    for layer in &canvas.layers {
        draw_layer(&mut pm, layer)?;
    }
    Ok(pm)
}

/// Draws one layer onto `pm` (which may be transparent: blending is premultiplied).
pub fn draw_layer(pm: &mut Pixmap, layer: &Layer) -> Result<(), DrawError> {
    let clip = layer.clip.map(|r| pixel_clip(r, pm.width(), pm.height()));
    let mut mask: Option<Mask> = None;
    let needs_mask = layer.clip.is_some()
        && layer.marks.iter().any(|m| {
            matches!(
                m,
                Mark::Rect { .. } | Mark::Path { .. } | Mark::Circle { .. }
            )
        });
    if needs_mask && let Some(r) = layer.clip {
        let mut m = Mask::new(pm.width(), pm.height()).ok_or(DrawError::Size {
            width: pm.width(),
            height: pm.height(),
        })?;
        if let Some(rect) = tiny_skia::Rect::from_xywh(r.x, r.y, r.w, r.h) {
            m.fill_path(
                &PathBuilder::from_rect(rect),
                FillRule::Winding,
                false,
                Transform::identity(),
            );
        }
        mask = Some(m);
    }
    let full = (0, 0, pm.width() as i32, pm.height() as i32);
    for mark in &layer.marks {
        match mark {
            Mark::Rect { rect, fill, stroke } => {
                let Some(r) =
                    tiny_skia::Rect::from_xywh(rect.x, rect.y, rect.w.max(0.01), rect.h.max(0.01))
                else {
                    continue;
                };
                let path = PathBuilder::from_rect(r);
                if let Some(f) = fill {
                    pm.fill_path(
                        &path,
                        &paint(*f),
                        FillRule::Winding,
                        Transform::identity(),
                        mask.as_ref(),
                    );
                }
                if let Some(s) = stroke {
                    // Crisp one-pixel outlines: on pixel centres.
                    let snapped = snap_rect(*rect, s.width);
                    if let Some(p) = snapped.map(PathBuilder::from_rect) {
                        stroke_path(pm, &p, *s, mask.as_ref());
                    }
                }
            }
            Mark::Path {
                points,
                closed,
                fill,
                stroke,
            } => {
                if points.len() < 2 {
                    continue;
                }
                let crisp = points.len() == 2 && stroke.is_some_and(|s| s.width <= 1.0);
                let mut pb = PathBuilder::with_capacity(points.len() + 1, points.len());
                for (i, &(x, y)) in points.iter().enumerate() {
                    let (x, y) = if crisp {
                        snap_point(points, x, y)
                    } else {
                        (x, y)
                    };
                    if i == 0 {
                        pb.move_to(x, y)
                    } else {
                        pb.line_to(x, y)
                    }
                }
                if *closed {
                    pb.close();
                }
                let Some(path) = pb.finish() else { continue };
                if let (Some(f), true) = (fill, *closed) {
                    pm.fill_path(
                        &path,
                        &paint(*f),
                        FillRule::Winding,
                        Transform::identity(),
                        mask.as_ref(),
                    );
                }
                if let Some(s) = stroke {
                    stroke_path(pm, &path, *s, mask.as_ref());
                }
            }
            Mark::Circle {
                cx,
                cy,
                r,
                fill,
                stroke,
            } => {
                let Some(path) = PathBuilder::from_circle(*cx, *cy, r.max(0.1)) else {
                    continue;
                };
                if let Some(f) = fill {
                    pm.fill_path(
                        &path,
                        &paint(*f),
                        FillRule::Winding,
                        Transform::identity(),
                        mask.as_ref(),
                    );
                }
                if let Some(s) = stroke {
                    stroke_path(pm, &path, *s, mask.as_ref());
                }
            }
            Mark::Dots {
                xy,
                radius,
                colours,
            } => stamp_dots(pm, xy, *radius, colours, clip.unwrap_or(full)),
            Mark::Cells {
                rect,
                cols,
                rows,
                colours,
            } => fill_cells(pm, *rect, *cols, *rows, colours, clip.unwrap_or(full)),
            Mark::Text(t) => draw_text(pm, t, clip.unwrap_or(full))?,
        }
    }
    Ok(())
}

fn paint(c: Rgba) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(c.r, c.g, c.b, c.a);
    p.anti_alias = true;
    p
}

fn stroke_path(pm: &mut Pixmap, path: &tiny_skia::Path, s: Stroke, mask: Option<&Mask>) {
    let stroke = tiny_skia::Stroke {
        width: s.width,
        line_join: tiny_skia::LineJoin::Round,
        line_cap: tiny_skia::LineCap::Butt,
        ..tiny_skia::Stroke::default()
    };
    pm.stroke_path(path, &paint(s.colour), &stroke, Transform::identity(), mask);
}

/// A rectangle outline moved onto pixel centres so a thin stroke is sharp.
fn snap_rect(r: Rect, width: f32) -> Option<tiny_skia::Rect> {
    let c = |v: f32| {
        if width <= 1.0 {
            v.floor() + 0.5
        } else {
            v.round()
        }
    };
    tiny_skia::Rect::from_ltrb(
        c(r.x),
        c(r.y),
        c(r.right()).max(c(r.x) + 0.1),
        c(r.bottom()).max(c(r.y) + 0.1),
    )
}

/// An end of a horizontal or vertical hairline moved onto pixel centres.
fn snap_point(points: &[(f32, f32)], x: f32, y: f32) -> (f32, f32) {
    let vertical = (points[0].0 - points[1].0).abs() < 0.01;
    let horizontal = (points[0].1 - points[1].1).abs() < 0.01;
    let c = |v: f32| v.floor() + 0.5;
    match (vertical, horizontal) {
        (true, _) => (c(x), y),
        (_, true) => (x, c(y)),
        _ => (x, y),
    }
}

/// The clip rectangle in whole pixels: left, top, right, bottom (exclusive).
fn pixel_clip(r: Rect, w: u32, h: u32) -> (i32, i32, i32, i32) {
    let x0 = (r.x.floor() as i32).clamp(0, w as i32);
    let y0 = (r.y.floor() as i32).clamp(0, h as i32);
    let x1 = (r.right().ceil() as i32).clamp(0, w as i32);
    let y1 = (r.bottom().ceil() as i32).clamp(0, h as i32);
    (x0, y0, x1, y1)
}

/// `x * a / 255`, rounded, for bytes.
#[inline]
fn mul255(x: u32, a: u32) -> u32 {
    let t = x * a + 128;
    (t + (t >> 8)) >> 8
}

/// Blends straight colour `c` at coverage `cov` (0..=255) over a premultiplied pixel.
#[inline]
fn blend(px: &mut [u8], c: Rgba, cov: u32) {
    let sa = mul255(u32::from(c.a), cov);
    if sa == 0 {
        return;
    }
    let inv = 255 - sa;
    px[0] = (mul255(u32::from(c.r), sa) + mul255(u32::from(px[0]), inv)) as u8;
    px[1] = (mul255(u32::from(c.g), sa) + mul255(u32::from(px[1]), inv)) as u8;
    px[2] = (mul255(u32::from(c.b), sa) + mul255(u32::from(px[2]), inv)) as u8;
    px[3] = (sa + mul255(u32::from(px[3]), inv)) as u8;
}

/// Sub-pixel steps of a disc's centre that get their own mask.
const SUB: usize = 4;

/// Anti-aliased disc masks, one per sub-pixel offset: (dx, dy, coverage) of covered pixels,
/// relative to the whole pixel under the centre.
fn disc_masks(radius: f32) -> Vec<Vec<(i32, i32, u8)>> {
    let r = radius.max(0.3);
    let reach = (r + 1.0).ceil() as i32;
    let mut masks = Vec::with_capacity(SUB * SUB);
    for sy in 0..SUB {
        for sx in 0..SUB {
            let (fx, fy) = (
                (sx as f32 + 0.5) / SUB as f32,
                (sy as f32 + 0.5) / SUB as f32,
            );
            let mut m = Vec::new();
            for dy in -reach..=reach {
                for dx in -reach..=reach {
                    // Coverage by 4×4 supersampling of the pixel.
                    let mut hits = 0u32;
                    for j in 0..4 {
                        for i in 0..4 {
                            let px = dx as f32 + (i as f32 + 0.5) / 4.0 - fx;
                            let py = dy as f32 + (j as f32 + 0.5) / 4.0 - fy;
                            if px * px + py * py <= r * r {
                                hits += 1;
                            }
                        }
                    }
                    if hits > 0 {
                        m.push((dx, dy, ((hits * 255 + 8) / 16) as u8));
                    }
                }
            }
            masks.push(m);
        }
    }
    masks
}

/// Above this many points the stamping runs in bands on rayon's threads.
const PARALLEL_DOTS: usize = 20_000;

/// Stamps discs at `xy` into `pm`, clipped to `clip`, later points over earlier ones.
pub fn stamp_dots(
    pm: &mut Pixmap,
    xy: &[[f32; 2]],
    radius: f32,
    colours: &DotColours,
    clip: (i32, i32, i32, i32),
) {
    let masks = disc_masks(radius);
    let width = pm.width() as usize;
    let (x0, y0, x1, y1) = clip;
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let reach = (radius.max(0.3) + 1.0).ceil() as i32;
    let data = pm.data_mut();
    let stride = width * 4;
    let band_rows = if xy.len() >= PARALLEL_DOTS {
        let threads = rayon::current_num_threads().max(1);
        ((y1 - y0) as usize).div_ceil(threads * 2).max(1)
    } else {
        (y1 - y0) as usize
    };
    let start = y0 as usize * stride;
    let end = y1 as usize * stride;
    let region = &mut data[start..end];
    let draw_band = |(b, band): (usize, &mut [u8])| {
        let by0 = y0 + (b * band_rows) as i32;
        let by1 = (by0 + (band.len() / stride) as i32).min(y1);
        for (i, p) in xy.iter().enumerate() {
            let (px, py) = (p[0], p[1]);
            if !(px.is_finite() && py.is_finite()) {
                continue;
            }
            let (ix, iy) = (px.floor() as i32, py.floor() as i32);
            if iy + reach < by0 || iy - reach >= by1 || ix + reach < x0 || ix - reach >= x1 {
                continue;
            }
            let c = match colours {
                DotColours::One(c) => *c,
                DotColours::Each(v) => v.get(i).copied().unwrap_or(Rgba::BLACK),
            };
            let sx = (((px - ix as f32) * SUB as f32) as usize).min(SUB - 1);
            let sy = (((py - iy as f32) * SUB as f32) as usize).min(SUB - 1);
            let inside =
                ix - reach >= x0 && ix + reach < x1 && iy - reach >= by0 && iy + reach < by1;
            for &(dx, dy, cov) in &masks[sy * SUB + sx] {
                let (x, y) = (ix + dx, iy + dy);
                if !inside && (x < x0 || x >= x1 || y < by0 || y >= by1) {
                    continue;
                }
                let o = (y - by0) as usize * stride + x as usize * 4;
                blend(&mut band[o..o + 4], c, u32::from(cov));
            }
        }
    };
    if xy.len() >= PARALLEL_DOTS {
        region
            .par_chunks_mut(band_rows * stride)
            .enumerate()
            .for_each(draw_band);
    } else {
        region
            .chunks_mut(band_rows * stride)
            .enumerate()
            .for_each(draw_band);
    }
}

/// Fills a grid of cells with their colours, each pixel taking the cell its centre falls in.
fn fill_cells(
    pm: &mut Pixmap,
    rect: Rect,
    cols: usize,
    rows: usize,
    colours: &[Rgba],
    clip: (i32, i32, i32, i32),
) {
    if cols == 0 || rows == 0 || colours.len() < cols * rows || rect.w <= 0.0 || rect.h <= 0.0 {
        return;
    }
    let width = pm.width() as usize;
    let (cx0, cy0, cx1, cy1) = clip;
    let x0 = (rect.x.round() as i32).max(cx0);
    let x1 = (rect.right().round() as i32).min(cx1);
    let y0 = (rect.y.round() as i32).max(cy0);
    let y1 = (rect.bottom().round() as i32).min(cy1);
    let data = pm.data_mut();
    for y in y0..y1 {
        let r = ((((y as f32 + 0.5) - rect.y) / rect.h * rows as f32) as usize).min(rows - 1);
        for x in x0..x1 {
            let c = ((((x as f32 + 0.5) - rect.x) / rect.w * cols as f32) as usize).min(cols - 1);
            let o = (y as usize * width + x as usize) * 4;
            blend(&mut data[o..o + 4], colours[r * cols + c], 255);
        }
    }
}

/// Draws a text mark with sub-pixel placement; vertical text is drawn turned a quarter left.
fn draw_text(pm: &mut Pixmap, t: &Text, clip: (i32, i32, i32, i32)) -> Result<(), DrawError> {
    let along = match t.anchor {
        Anchor::Start => 0.0,
        Anchor::Middle => t.width / 2.0,
        Anchor::End => t.width,
    };
    let (w, h) = (pm.width() as i32, pm.height() as i32);
    let (cx0, cy0, cx1, cy1) = (clip.0.max(0), clip.1.max(0), clip.2.min(w), clip.3.min(h));
    let width = pm.width() as usize;
    let data = pm.data_mut();
    let mut put = |x: i32, y: i32, cov: f32| {
        if x >= cx0 && x < cx1 && y >= cy0 && y < cy1 && cov > 0.0 {
            let o = (y as usize * width + x as usize) * 4;
            blend(
                &mut data[o..o + 4],
                t.colour,
                (cov.min(1.0) * 255.0).round() as u32,
            );
        }
    };
    if !t.vertical {
        let sx = t.x - along;
        let (fx, fy) = (sx - sx.floor(), t.y - t.y.floor());
        let c = rasterise(&t.text, t.size, t.bold, fx, fy)?;
        let ox = sx.floor() as i32 - c.origin_x.floor() as i32;
        let oy = t.y.floor() as i32 - c.origin_y.floor() as i32;
        for j in 0..c.height {
            for i in 0..c.width {
                put(ox + i as i32, oy + j as i32, c.data[j * c.width + i]);
            }
        }
    } else {
        // Text frame (u along, v down) to canvas: X = x + v, Y = y - u, u from -along.
        let u_start = -along;
        let fx = (-(t.y - u_start)).rem_euclid(1.0);
        let fy = t.x.rem_euclid(1.0);
        let c = rasterise(&t.text, t.size, t.bold, fx, fy)?;
        let x_off = (t.x - c.origin_y).round() as i32;
        let y_off = (t.y - u_start + c.origin_x).round() as i32;
        for j in 0..c.height {
            for i in 0..c.width {
                put(
                    x_off + j as i32,
                    y_off - i as i32 - 1,
                    c.data[j * c.width + i],
                );
            }
        }
    }
    Ok(())
}

/// Encodes an opaque pixmap as an RGB PNG (fast deflate), else as RGBA.
pub fn encode_png(pm: &Pixmap) -> Result<Vec<u8>, DrawError> {
    let data = pm.data();
    let opaque = data.chunks_exact(4).all(|p| p[3] == 255);
    let mut out = Vec::with_capacity(data.len() / 8);
    {
        let mut enc = png::Encoder::new(&mut out, pm.width(), pm.height());
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let bytes: Vec<u8> = if opaque {
            enc.set_color(png::ColorType::Rgb);
            data.chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect()
        } else {
            enc.set_color(png::ColorType::Rgba);
            pm.clone().take_demultiplied()
        };
        let mut w = enc
            .write_header()
            .map_err(|e| DrawError::Png(e.to_string()))?;
        w.write_image_data(&bytes)
            .map_err(|e| DrawError::Png(e.to_string()))?;
        w.finish().map_err(|e| DrawError::Png(e.to_string()))?;
    }
    Ok(out)
}
