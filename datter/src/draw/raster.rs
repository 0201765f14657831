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
                let fill = fill.filter(|_| *closed);
                draw_path(pm, &path, fill, *stroke, mask.as_ref());
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
                draw_path(pm, &path, *fill, *stroke, mask.as_ref());
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

/// Fills `path` (when there is a fill), then strokes it (when there is a stroke).
fn draw_path(
    pm: &mut Pixmap,
    path: &tiny_skia::Path,
    fill: Option<Rgba>,
    stroke: Option<Stroke>,
    mask: Option<&Mask>,
) {
    if let Some(f) = fill {
        pm.fill_path(
            path,
            &paint(f),
            FillRule::Winding,
            Transform::identity(),
            mask,
        );
    }
    if let Some(s) = stroke {
        stroke_path(pm, path, s, mask);
    }
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
fn disc_masks(radius: f32) -> Vec<DiscMask> {
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
            masks.push(DiscMask::from_pixels(&m));
        }
    }
    masks
}

/// A disc mask as row spans: each row's covered pixels are contiguous (a disc is convex).
struct DiscMask {
    /// (dy, first dx, start in `cov`, length) per row.
    rows: Vec<(i32, i32, usize, usize)>,
    /// Coverage, row after row.
    cov: Vec<u8>,
}

impl DiscMask {
    fn from_pixels(px: &[(i32, i32, u8)]) -> DiscMask {
        let mut rows: Vec<(i32, i32, usize, usize)> = Vec::new();
        let mut cov = Vec::with_capacity(px.len());
        for &(dx, dy, c) in px {
            match rows.last_mut() {
                Some(r) if r.0 == dy && r.1 + r.3 as i32 == dx => r.3 += 1,
                _ => rows.push((dy, dx, cov.len(), 1)),
            }
            cov.push(c);
        }
        DiscMask { rows, cov }
    }
}

/// Where a band lies and what of the canvas it may touch.
struct Band {
    width: usize,
    by0: i32,
    by1: i32,
    x0: i32,
    x1: i32,
}

/// Stamps the points `order` lists into one band's transparent layer, last first, each under
/// what is there; `src(i, coverage)` is point i's premultiplied colour at that coverage.
fn stamp_band(
    band: &mut [u32],
    b: &Band,
    order: &[(f32, f32, u32)],
    masks: &[DiscMask],
    src: impl Fn(usize, u8) -> u32,
) {
    for &(fx, fy, i) in order.iter().rev() {
        let i = i as usize;
        let (ix, iy) = (floor(fx), floor(fy));
        let sx = (((fx - ix as f32) * SUB as f32) as usize).min(SUB - 1);
        let sy = (((fy - iy as f32) * SUB as f32) as usize).min(SUB - 1);
        let Some(m) = masks.get(sy * SUB + sx) else {
            continue;
        };
        for &(dy, dx0, start, len) in &m.rows {
            let y = iy + dy;
            if y < b.by0 || y >= b.by1 {
                continue;
            }
            let (mut xa, mut cs) = (ix + dx0, start);
            let xb = (xa + len as i32).min(b.x1);
            if xa < b.x0 {
                cs += (b.x0 - xa) as usize;
                xa = b.x0;
            }
            if xa >= xb {
                continue;
            }
            let o = (y - b.by0) as usize * b.width + xa as usize;
            let n = (xb - xa) as usize;
            let (Some(row), Some(covs)) = (band.get_mut(o..o + n), m.cov.get(cs..cs + n)) else {
                continue;
            };
            for (d, &c) in row.iter_mut().zip(covs) {
                let inv = 255 - (*d >> 24);
                if inv != 0 {
                    *d += scale_packed(src(i, c), inv);
                }
            }
        }
    }
}

/// Rows of a band of stamped pixels (800 px wide: 100 KiB, in cache).
const BAND_ROWS: usize = 32;

/// `v.floor()` for |v| < 1e7 without a libm call (SSE2 has no rounding instruction).
#[inline]
fn floor(v: f32) -> i32 {
    let t = v as i32;
    if t as f32 > v { t - 1 } else { t }
}

/// Above this many points the stamping runs in bands on rayon's threads.
const PARALLEL_DOTS: usize = 20_000;

/// A straight colour premultiplied and packed as a little-endian RGBA `u32` (R in the low byte).
#[inline]
fn pack(c: Rgba) -> u32 {
    let a = u32::from(c.a);
    mul255(u32::from(c.r), a)
        | (mul255(u32::from(c.g), a) << 8)
        | (mul255(u32::from(c.b), a) << 16)
        | (a << 24)
}

/// Scales the four bytes of a packed pixel by `k`/255, two channels per multiply.
#[inline]
fn scale_packed(p: u32, k: u32) -> u32 {
    let mut rb = (p & 0x00ff_00ff) * k + 0x0080_0080;
    rb = ((rb + ((rb >> 8) & 0x00ff_00ff)) >> 8) & 0x00ff_00ff;
    let mut ga = ((p >> 8) & 0x00ff_00ff) * k + 0x0080_0080;
    ga = ((ga + ((ga >> 8) & 0x00ff_00ff)) >> 8) & 0x00ff_00ff;
    rb | (ga << 8)
}

/// Source-over of a premultiplied packed source on a premultiplied packed pixel.
#[inline]
fn over(src: u32, dst: u32) -> u32 {
    let inv = 255 - (src >> 24);
    if inv == 0 {
        src
    } else {
        src + scale_packed(dst, inv)
    }
}

/// Stamps discs at `xy` into `pm`, clipped to `clip`, later points over earlier ones. The
/// region is copied into packed pixels, stamped in horizontal bands (each band on its own
/// thread, going through every point in order, so overlaps come out as drawn one by one) and
/// copied back.
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
    if x1 <= x0 || y1 <= y0 || xy.is_empty() {
        return;
    }
    let reach = (radius.max(0.3) + 1.0).ceil() as i32;
    if let DotColours::One(c) = colours {
        return stamp_one_colour(pm, xy, &masks, *c, clip, reach);
    }
    let data = pm.data_mut();
    let (start, end) = (y0 as usize * width * 4, y1 as usize * width * 4);
    // The points are composited front to back (last drawn first) into a transparent layer:
    // a pixel that is already opaque takes no more work, which in a dense scatter is most of
    // them. The layer then goes over the pixmap once. Same result as drawing in order.
    let mut px: Vec<u32> = vec![0; (end - start) / 4];
    // One colour: its source value at each coverage, once.
    let table: Option<Vec<u32>> = match colours {
        DotColours::One(c) => {
            let p = pack(*c);
            Some((0..=255).map(|k| scale_packed(p, k)).collect())
        }
        DotColours::Each(_) => None,
    };
    let packed: Vec<u32> = match colours {
        DotColours::One(_) => Vec::new(),
        DotColours::Each(v) => v.iter().map(|&c| pack(c)).collect(),
    };
    let rows = (y1 - y0) as usize;
    // Bands small enough to stay in cache; each point is listed (in order) in the bands its
    // disc touches, so a band visits only its own points.
    let band_rows = BAND_ROWS.min(rows);
    let bands = rows.div_ceil(band_rows);
    let span = |p: &[f32; 2]| -> Option<(usize, usize)> {
        let (fx, fy) = (p[0], p[1]);
        // Far off the canvas (or NaN): skipped before integer maths could overflow.
        if !(fx.abs() < 1e7 && fy.abs() < 1e7) {
            return None;
        }
        let (ix, iy) = (floor(fx), floor(fy));
        if iy + reach < y0 || iy - reach >= y1 || ix + reach < x0 || ix - reach >= x1 {
            return None;
        }
        let lo = ((iy - reach).max(y0) - y0) as usize / band_rows;
        let hi = ((iy + reach).min(y1 - 1) - y0) as usize / band_rows;
        Some((lo, hi))
    };
    // The points themselves, band by band and in drawing order, so a band reads them in
    // sequence.
    let mut lists: Vec<Vec<(f32, f32, u32)>> = (0..bands)
        .map(|_| Vec::with_capacity(xy.len() / bands * 3 / 2 + 16))
        .collect();
    for (i, p) in xy.iter().enumerate() {
        if let Some((lo, hi)) = span(p) {
            for l in &mut lists[lo..=hi] {
                l.push((p[0], p[1], i as u32));
            }
        }
    }
    let draw_band = |(k, band): (usize, &mut [u32])| {
        let by0 = y0 + (k * band_rows) as i32;
        let b = Band {
            width,
            by0,
            by1: (by0 + (band.len() / width) as i32).min(y1),
            x0,
            x1,
        };
        let list = lists.get(k).map_or(&[][..], |l| &l[..]);
        match &table {
            Some(t) => stamp_band(band, &b, list, &masks, |_, c| t[usize::from(c)]),
            None => stamp_band(band, &b, list, &masks, |i, c| {
                scale_packed(packed.get(i).copied().unwrap_or(0xff00_0000), u32::from(c))
            }),
        }
    };
    if xy.len() >= PARALLEL_DOTS {
        px.par_chunks_mut(band_rows * width)
            .enumerate()
            .for_each(draw_band);
    } else {
        px.chunks_mut(band_rows * width)
            .enumerate()
            .for_each(draw_band);
    }
    for (d, &p) in data[start..end].chunks_exact_mut(4).zip(&px) {
        if p != 0 {
            let under = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            d.copy_from_slice(&over(p, under).to_le_bytes());
        }
    }
}

/// Optical depth in 1/256 units: `-ln(1 - a) * 256`, capped where a pixel is fully covered.
const DEPTH_CAP: u16 = 16 * 256;

/// One colour needs no drawing order: blending a colour over itself n times leaves the colour at
/// opacity 1 - Π(1 - aᵢ). So each point adds its coverage's optical depth -ln(1 - aᵢ) to a
/// per-pixel sum (a saturating u16 add, on a buffer per thread, merged at the end), and one
/// last pass blends the colour at opacity 1 - e^-sum. Same picture, a fraction of the work.
fn stamp_one_colour(
    pm: &mut Pixmap,
    xy: &[[f32; 2]],
    masks: &[DiscMask],
    c: Rgba,
    clip: (i32, i32, i32, i32),
    reach: i32,
) {
    let (x0, y0, x1, y1) = clip;
    let width = pm.width() as usize;
    let rows = (y1 - y0) as usize;
    // Depth of each mask pixel, for this colour's own opacity.
    let depth_of = |cov: u8| -> u16 {
        let a = mul255(u32::from(c.a), u32::from(cov));
        if a >= 255 {
            DEPTH_CAP
        } else {
            let t = 1.0 - f64::from(a) / 255.0;
            ((-t.ln() * 256.0).round() as u16).min(DEPTH_CAP)
        }
    };
    let depths: Vec<Vec<u16>> = masks
        .iter()
        .map(|m| m.cov.iter().map(|&k| depth_of(k)).collect())
        .collect();
    let splat = |acc: &mut [u16], pts: &[[f32; 2]]| {
        for p in pts {
            let (fx, fy) = (p[0], p[1]);
            if !(fx.abs() < 1e7 && fy.abs() < 1e7) {
                continue;
            }
            let (ix, iy) = (floor(fx), floor(fy));
            if iy + reach < y0 || iy - reach >= y1 || ix + reach < x0 || ix - reach >= x1 {
                continue;
            }
            let sx = (((fx - ix as f32) * SUB as f32) as usize).min(SUB - 1);
            let sy = (((fy - iy as f32) * SUB as f32) as usize).min(SUB - 1);
            let k = sy * SUB + sx;
            let (Some(m), Some(d)) = (masks.get(k), depths.get(k)) else {
                continue;
            };
            if iy - reach >= y0 && iy + reach < y1 && ix - reach >= x0 && ix + reach < x1 {
                // Wholly inside: one window of the buffer, no clipping.
                let top = (iy - reach - y0) as usize * width + (ix - reach) as usize;
                let Some(win) =
                    acc.get_mut(top..top + 2 * reach as usize * width + 2 * reach as usize + 1)
                else {
                    continue;
                };
                for &(dy, dx0, start, len) in &m.rows {
                    let o = (dy + reach) as usize * width + (dx0 + reach) as usize;
                    if let (Some(row), Some(ds)) =
                        (win.get_mut(o..o + len), d.get(start..start + len))
                    {
                        for (a, &l) in row.iter_mut().zip(ds) {
                            *a = a.saturating_add(l);
                        }
                    }
                }
                continue;
            }
            for &(dy, dx0, start, len) in &m.rows {
                let y = iy + dy;
                if y < y0 || y >= y1 {
                    continue;
                }
                let (mut xa, mut cs) = (ix + dx0, start);
                let xb = (xa + len as i32).min(x1);
                if xa < x0 {
                    cs += (x0 - xa) as usize;
                    xa = x0;
                }
                if xa >= xb {
                    continue;
                }
                let o = (y - y0) as usize * width + xa as usize;
                let n = (xb - xa) as usize;
                let (Some(row), Some(ds)) = (acc.get_mut(o..o + n), d.get(cs..cs + n)) else {
                    continue;
                };
                for (a, &l) in row.iter_mut().zip(ds) {
                    *a = a.saturating_add(l);
                }
            }
        }
    };
    let size = rows * width;
    let acc: Vec<u16> = if xy.len() >= PARALLEL_DOTS {
        let threads = rayon::current_num_threads().max(1);
        let per = xy.len().div_ceil(threads);
        xy.par_chunks(per)
            .map(|pts| {
                let mut acc = vec![0u16; size];
                splat(&mut acc, pts);
                acc
            })
            .reduce_with(|mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x = x.saturating_add(*y);
                }
                a
            })
            .unwrap_or_else(|| vec![0u16; size])
    } else {
        let mut acc = vec![0u16; size];
        splat(&mut acc, xy);
        acc
    };
    // Opacity by depth, then one blend per covered pixel.
    let alpha: Vec<u8> = (0..=DEPTH_CAP)
        .map(|d| {
            if d >= DEPTH_CAP {
                255
            } else {
                ((1.0 - (-f64::from(d) / 256.0).exp()) * 255.0).round() as u8
            }
        })
        .collect();
    let opaque = Rgba { a: 255, ..c };
    let data = pm.data_mut();
    let base = y0 as usize * width * 4;
    for (i, &d) in acc.iter().enumerate() {
        if d == 0 {
            continue;
        }
        let x = (i % width) as i32;
        if x < x0 || x >= x1 {
            continue;
        }
        let o = base + i * 4;
        if let Some(px) = data.get_mut(o..o + 4) {
            blend(px, opaque, u32::from(alpha[usize::from(d.min(DEPTH_CAP))]));
        }
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
    if !(t.x.abs() < 1e6 && t.y.abs() < 1e6) {
        return Ok(());
    }
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
            rgb_on_white(pm)
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

/// The pixmap's RGB bytes as seen over white (exact for the opaque pixmaps [`render`] makes:
/// its premultiplied colour plus the white showing through).
pub(crate) fn rgb_on_white(pm: &Pixmap) -> Vec<u8> {
    pm.data()
        .chunks_exact(4)
        .flat_map(|p| {
            let white = 255 - p[3];
            [
                p[0].saturating_add(white),
                p[1].saturating_add(white),
                p[2].saturating_add(white),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize) -> Vec<[f32; 2]> {
        let mut s = 12345u64;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let a = (s >> 40) as f32 / (1u64 << 24) as f32;
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let b = (s >> 40) as f32 / (1u64 << 24) as f32;
                [a * 70.0 - 5.0, b * 50.0 - 5.0]
            })
            .collect()
    }

    /// The order-free one-colour path draws what blending the points one by one draws.
    #[test]
    fn one_colour_depth_matches_blending_in_order() {
        let xy = points(30_000);
        let c = Rgba::rgb(31, 119, 180).with_alpha(200);
        let clip = (2, 3, 58, 40);
        let mut a = Pixmap::new(64, 48).unwrap();
        a.fill(tiny_skia::Color::WHITE);
        let mut b = a.clone();
        stamp_dots(&mut a, &xy, 1.4, &DotColours::One(c), clip);
        stamp_dots(&mut b, &xy, 1.4, &DotColours::Each(vec![c; xy.len()]), clip);
        let worst = a
            .data()
            .iter()
            .zip(b.data())
            .map(|(p, q)| p.abs_diff(*q))
            .max()
            .unwrap();
        assert!(worst <= 5, "differ by {worst}");
        // Nothing outside the clip.
        assert_eq!(a.pixel(0, 0).unwrap().red(), 255);
        assert_eq!(a.pixel(60, 45).unwrap().red(), 255);
        assert_ne!(a.pixel(30, 20).unwrap().red(), 255);
    }

    /// Per-point colours composited front to back match blending each disc in order.
    #[test]
    fn per_point_colours_match_drawing_in_order() {
        let xy = points(5_000);
        let colours: Vec<Rgba> = (0..xy.len())
            .map(|i| {
                crate::draw::colour::categorical(i).with_alpha(if i % 3 == 0 { 120 } else { 255 })
            })
            .collect();
        let clip = (0, 0, 64, 48);
        let mut fast = Pixmap::new(64, 48).unwrap();
        fast.fill(tiny_skia::Color::WHITE);
        let mut slow = fast.clone();
        stamp_dots(
            &mut fast,
            &xy,
            1.7,
            &DotColours::Each(colours.clone()),
            clip,
        );
        let masks = disc_masks(1.7);
        let data = slow.data_mut();
        for (p, c) in xy.iter().zip(&colours) {
            let (ix, iy) = (floor(p[0]), floor(p[1]));
            let sx = (((p[0] - ix as f32) * SUB as f32) as usize).min(SUB - 1);
            let sy = (((p[1] - iy as f32) * SUB as f32) as usize).min(SUB - 1);
            let m = &masks[sy * SUB + sx];
            for &(dy, dx0, start, len) in &m.rows {
                for k in 0..len {
                    let (x, y) = (ix + dx0 + k as i32, iy + dy);
                    if (0..64).contains(&x) && (0..48).contains(&y) {
                        let o = (y as usize * 64 + x as usize) * 4;
                        blend(&mut data[o..o + 4], *c, u32::from(m.cov[start + k]));
                    }
                }
            }
        }
        let worst = fast
            .data()
            .iter()
            .zip(slow.data())
            .map(|(p, q)| p.abs_diff(*q))
            .max()
            .unwrap();
        assert!(worst <= 4, "differ by {worst}");
    }

    #[test]
    fn far_and_missing_points_are_skipped() {
        let mut pm = Pixmap::new(20, 20).unwrap();
        let xy = [
            [f32::NAN, 1.0],
            [1e30, 5.0],
            [-1e9, -1e9],
            [f32::INFINITY, 0.0],
        ];
        stamp_dots(
            &mut pm,
            &xy,
            2.0,
            &DotColours::One(Rgba::BLACK),
            (0, 0, 20, 20),
        );
        stamp_dots(
            &mut pm,
            &xy,
            2.0,
            &DotColours::Each(vec![Rgba::BLACK; 4]),
            (0, 0, 20, 20),
        );
        assert!(pm.data().iter().all(|&v| v == 0));
    }
}
