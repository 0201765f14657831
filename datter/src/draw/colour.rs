//! Colours: a categorical palette for series and clusters, a perceptual gradient for values.

use std::collections::HashMap;
use std::hash::Hash;

/// A colour with straight (not premultiplied) alpha, 8 bits a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgba {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
    /// Opacity: 0 transparent, 255 opaque.
    pub a: u8,
}

impl Rgba {
    /// An opaque colour.
    pub const fn rgb(r: u8, g: u8, b: u8) -> Rgba {
        Rgba { r, g, b, a: 255 }
    }
    /// Black.
    pub const BLACK: Rgba = Rgba::rgb(0, 0, 0);
    /// White.
    pub const WHITE: Rgba = Rgba::rgb(255, 255, 255);
    /// The grey that unclustered (noise) points and notes are drawn in.
    pub const GREY: Rgba = Rgba::rgb(160, 160, 160);
    /// The dark grey of axes text.
    pub const INK: Rgba = Rgba::rgb(34, 34, 34);

    /// The same colour with opacity `a`.
    pub const fn with_alpha(self, a: u8) -> Rgba {
        Rgba { a, ..self }
    }

    /// `#rrggbb`, as SVG wants it (opacity goes in its own attribute).
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }

    /// Relative luminance in 0..=1, to pick black or white text on a filled cell.
    pub fn luminance(self) -> f64 {
        (0.2126 * f64::from(self.r) + 0.7152 * f64::from(self.g) + 0.0722 * f64::from(self.b))
            / 255.0
    }

    /// A darker shade of this colour (for text drawn in a series' colour).
    pub fn darker(self) -> Rgba {
        let d = |c: u8| (f64::from(c) * 0.7) as u8;
        Rgba::rgb(d(self.r), d(self.g), d(self.b)).with_alpha(self.a)
    }
}

/// The ten categorical colours (matplotlib's tab10): distinct, and readable on white.
pub const TAB10: [Rgba; 10] = [
    Rgba::rgb(0x1f, 0x77, 0xb4),
    Rgba::rgb(0xff, 0x7f, 0x0e),
    Rgba::rgb(0x2c, 0xa0, 0x2c),
    Rgba::rgb(0xd6, 0x27, 0x28),
    Rgba::rgb(0x94, 0x67, 0xbd),
    Rgba::rgb(0x8c, 0x56, 0x4b),
    Rgba::rgb(0xe3, 0x77, 0xc2),
    Rgba::rgb(0x7f, 0x7f, 0x7f),
    Rgba::rgb(0xbc, 0xbd, 0x22),
    Rgba::rgb(0x17, 0xbe, 0xcf),
];

/// The `i`-th categorical colour: the ten, then lighter and darker shades of them (as
/// matplotlib's tab20 pairs them), so thirty series are told apart; then it repeats.
pub fn categorical(i: usize) -> Rgba {
    let base = TAB10[i % TAB10.len()];
    match (i / TAB10.len()) % 3 {
        0 => base,
        1 => {
            let light = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * 0.45).round() as u8;
            Rgba::rgb(light(base.r), light(base.g), light(base.b))
        }
        _ => {
            let dark = |c: u8| (f64::from(c) * 0.6).round() as u8;
            Rgba::rgb(dark(base.r), dark(base.g), dark(base.b))
        }
    }
}

/// Viridis at nine even stops: perceptually uniform and readable in grey and by the colour-blind.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (0x44, 0x01, 0x54),
    (0x47, 0x2d, 0x7b),
    (0x3b, 0x52, 0x8b),
    (0x2c, 0x72, 0x8e),
    (0x21, 0x90, 0x8c),
    (0x27, 0xad, 0x81),
    (0x5d, 0xc8, 0x63),
    (0xaa, 0xdc, 0x32),
    (0xfd, 0xe7, 0x25),
];

/// The gradient colour at `t` in 0..=1 (clamped; NaN gives grey).
pub fn viridis(t: f64) -> Rgba {
    if t.is_nan() {
        return Rgba::GREY;
    }
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    Rgba::rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// One categorical colour per item, the same for equal labels, in order of first appearance.
pub fn by_category<T: Eq + Hash>(labels: &[T]) -> Vec<Rgba> {
    let mut seen: HashMap<&T, usize> = HashMap::new();
    labels
        .iter()
        .map(|l| {
            let n = seen.len();
            categorical(*seen.entry(l).or_insert(n))
        })
        .collect()
}

/// The finite range of `values`, or `None` when none is finite.
pub(crate) fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for &v in values.iter().filter(|v| v.is_finite()) {
        range = Some(match range {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }
    range
}

/// One gradient colour per value, scaled over the finite range; missing values are grey.
pub fn by_value(values: &[f64]) -> Vec<Rgba> {
    let (lo, hi) = finite_range(values).unwrap_or((0.0, 1.0));
    let span = if hi > lo { hi - lo } else { 1.0 };
    values
        .iter()
        .map(|&v| {
            if v.is_finite() {
                viridis((v - lo) / span)
            } else {
                Rgba::GREY
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_ends_and_middle() {
        assert_eq!(viridis(0.0), Rgba::rgb(0x44, 0x01, 0x54));
        assert_eq!(viridis(1.0), Rgba::rgb(0xfd, 0xe7, 0x25));
        assert_eq!(viridis(0.5), Rgba::rgb(0x21, 0x90, 0x8c));
        assert_eq!(viridis(f64::NAN), Rgba::GREY);
    }

    #[test]
    fn categories_keep_their_colour() {
        let c = by_category(&["b", "a", "b", "c"]);
        assert_eq!(c[0], c[2]);
        assert_eq!(c[0], TAB10[0]);
        assert_eq!(c[1], TAB10[1]);
        assert_eq!(c[3], TAB10[2]);
    }

    #[test]
    fn thirty_categories_have_thirty_colours() {
        let mut all: Vec<Rgba> = (0..30).map(categorical).collect();
        all.sort_by_key(|c| (c.r, c.g, c.b));
        all.dedup();
        assert_eq!(all.len(), 30);
        assert_eq!(categorical(30), categorical(0));
    }
}
