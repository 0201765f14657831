//! Text: the embedded DejaVu Sans (regular and bold), measured and rasterised with sub-pixel
//! placement. No system fonts are read, so a plot looks the same on every machine, and the
//! same measurements lay out the PNG and the SVG.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, Point, PxScale, ScaleFont};

use super::DrawError;

static REGULAR: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../fonts/DejaVuSans-Bold.ttf");

/// The family name the SVG asks for, with fallbacks of similar width.
pub const FAMILY: &str = "DejaVu Sans, Verdana, Bitstream Vera Sans, sans-serif";

struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

fn fonts() -> Result<&'static Fonts, DrawError> {
    static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            Ok(Fonts {
                regular: FontRef::try_from_slice(REGULAR).map_err(|e| e.to_string())?,
                bold: FontRef::try_from_slice(BOLD).map_err(|e| e.to_string())?,
            })
        })
        .as_ref()
        .map_err(|e| DrawError::Font(e.clone()))
}

fn font(bold: bool) -> Result<&'static FontRef<'static>, DrawError> {
    let f = fonts()?;
    Ok(if bold { &f.bold } else { &f.regular })
}

/// ab_glyph's scale for an em of `size` pixels: its `PxScale` is the font's ascent-to-descent
/// height, not the em, so an em size (what CSS and SVG's `font-size` mean) is converted.
fn px_scale(f: &FontRef<'static>, size: f32) -> PxScale {
    let em = f.units_per_em().unwrap_or(2048.0);
    PxScale::from(size * f.height_unscaled() / em)
}

/// How much room a line of text takes, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    /// Advance width.
    pub width: f32,
    /// Height above the baseline (the font's ascent, the same for every text of a size).
    pub ascent: f32,
    /// Depth below the baseline, positive.
    pub descent: f32,
}

impl Extent {
    /// Ascent plus descent.
    pub fn height(&self) -> f32 {
        self.ascent + self.descent
    }
}

/// Measures one line of `text` at `size` pixels to the em (SVG's `font-size`).
pub fn measure(text: &str, size: f32, bold: bool) -> Result<Extent, DrawError> {
    let f = font(bold)?;
    let s = f.as_scaled(px_scale(f, size));
    let mut width = 0.0;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = s.glyph_id(c);
        if let Some(p) = prev {
            width += s.kern(p, id);
        }
        width += s.h_advance(id);
        prev = Some(id);
    }
    Ok(Extent {
        width,
        ascent: s.ascent(),
        descent: -s.descent(),
    })
}

/// A line of text rasterised into coverage values (0..=1), `width` × `height`, whose baseline
/// origin lies at (`origin_x`, `origin_y`) inside it.
pub struct Coverage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Row-major coverage.
    pub data: Vec<f32>,
    /// Where the text's start lies, from the left edge.
    pub origin_x: f32,
    /// Where the baseline lies, from the top edge.
    pub origin_y: f32,
}

/// Rasterises `text` so that its baseline origin falls `frac_x`, `frac_y` (each in 0..1) past a
/// whole pixel: the caller places the buffer at whole pixels and keeps sub-pixel accuracy.
pub fn rasterise(
    text: &str,
    size: f32,
    bold: bool,
    frac_x: f32,
    frac_y: f32,
) -> Result<Coverage, DrawError> {
    let f = font(bold)?;
    let scale = px_scale(f, size);
    let s = f.as_scaled(scale);
    let ext = measure(text, size, bold)?;
    let pad = 2.0f32;
    let origin_x = (pad + size * 0.3).ceil() + frac_x;
    let origin_y = (pad + ext.ascent).ceil() + frac_y;
    let width = (origin_x + ext.width + size * 0.6 + pad).ceil() as usize;
    let height = (origin_y + ext.descent + pad).ceil() as usize;
    let mut data = vec![0f32; width * height];
    let mut x = origin_x;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = s.glyph_id(c);
        if let Some(p) = prev {
            x += s.kern(p, id);
        }
        let glyph = id.with_scale_and_position(scale, Point { x, y: origin_y });
        x += s.h_advance(id);
        prev = Some(id);
        let Some(outline) = f.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, c| {
            let px = b.min.x as i64 + i64::from(gx);
            let py = b.min.y as i64 + i64::from(gy);
            if px >= 0 && py >= 0 && (px as usize) < width && (py as usize) < height {
                let cell = &mut data[py as usize * width + px as usize];
                *cell = (*cell + c).min(1.0);
            }
        });
    }
    Ok(Coverage {
        width,
        height,
        data,
        origin_x,
        origin_y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_draws() {
        // FreeType (matplotlib's FT2Font, unhinted) advances "Hello" 29.149 px at 11.5 px.
        let e = measure("Hello", 11.5, false).unwrap();
        assert!((e.width - 29.149).abs() < 0.01, "{e:?}");
        // DejaVu Sans' ascent and descent are 0.928 and 0.236 em.
        assert!(
            (e.ascent - 11.5 * 0.928).abs() < 0.05 && (e.descent - 11.5 * 0.236).abs() < 0.05,
            "{e:?}"
        );
        let wide = measure("Hello", 23.0, false).unwrap();
        assert!((wide.width - 2.0 * e.width).abs() < 0.01);
        let c = rasterise("Hi", 12.0, true, 0.5, 0.25).unwrap();
        assert!(c.data.iter().any(|&v| v > 0.9));
        assert_eq!(measure("", 12.0, false).unwrap().width, 0.0);
    }
}
