//! Animations: figures shown one after another as an animated PNG (APNG), which browsers play
//! in an `<img>` like any PNG.
//!
//! Each frame is rendered as [`Figure::to_png`] renders it (several at once, on rayon's
//! threads) and encoded in order, as the pixels that changed since the frame before (blended
//! over it): frames that differ in a few lines cost little. The file's default image, what a
//! viewer that does not play APNG shows, is the last frame: in a cumulative animation that
//! is the whole data.

use rayon::prelude::*;

use super::{DrawError, Figure, raster};

/// Frames shown in order, each for `delay_ms`, looping forever.
#[derive(Clone, Debug)]
pub struct Animation {
    /// The frames, in order; all of one size.
    pub frames: Vec<Figure>,
    /// How long each frame is shown, in milliseconds.
    pub delay_ms: u32,
}

impl Animation {
    /// The frames as an APNG that loops forever.
    pub fn to_apng(&self) -> Result<Vec<u8>, DrawError> {
        let Some(last) = self.frames.last() else {
            return Err(DrawError::Animation(
                "an animation needs at least one frame".to_owned(),
            ));
        };
        let (width, height) = (last.width, last.height);
        if let Some((i, f)) = self
            .frames
            .iter()
            .enumerate()
            .find(|(_, f)| (f.width, f.height) != (width, height))
        {
            return Err(DrawError::Animation(format!(
                "frame {} is {} × {} but frame {} is {width} × {height}: an animation's frames are of one size",
                i + 1,
                f.width,
                f.height,
                self.frames.len()
            )));
        }
        let count = u32::try_from(self.frames.len())
            .map_err(|_| DrawError::Animation("too many frames".to_owned()))?;
        let png_err = |e: png::EncodingError| DrawError::Png(e.to_string());
        let last_image = image(last)?;
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            enc.set_color(png::ColorType::Rgba);
            enc.set_animated(count, 0).map_err(png_err)?;
            enc.set_sep_def_img(true).map_err(png_err)?;
            enc.set_blend_op(png::BlendOp::Over).map_err(png_err)?;
            let (num, den) = delay(self.delay_ms);
            enc.set_frame_delay(num, den).map_err(png_err)?;
            let mut w = enc.write_header().map_err(png_err)?;
            w.write_image_data(&Patch::new(None, &last_image, width).rgba)
                .map_err(png_err)?;
            let mut prev: Option<Vec<u8>> = None;
            let mut write = |img: Vec<u8>| -> Result<(), DrawError> {
                let patch = Patch::new(prev.as_deref(), &img, width);
                w.reset_frame_position().map_err(png_err)?;
                w.set_frame_dimension(patch.w, patch.h).map_err(png_err)?;
                w.set_frame_position(patch.x, patch.y).map_err(png_err)?;
                w.write_image_data(&patch.rgba).map_err(png_err)?;
                prev = Some(img);
                Ok(())
            };
            let rest = &self.frames[..self.frames.len() - 1];
            // A few frames at a time: all cores busy, and no more pixels held than that.
            let batch = rayon::current_num_threads().max(1) * 2;
            for frames in rest.chunks(batch) {
                let images: Vec<Vec<u8>> =
                    frames.par_iter().map(image).collect::<Result<_, _>>()?;
                for img in images {
                    write(img)?;
                }
            }
            write(last_image)?;
            w.finish().map_err(png_err)?;
        }
        Ok(out)
    }
}

/// What an APNG frame holds: the pixels that changed since the frame before, in the smallest
/// rectangle around them, the others transparent. Blended over the frame before it shows the
/// whole frame, and what did not change costs next to nothing.
struct Patch {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    /// RGBA, `w` × `h`.
    rgba: Vec<u8>,
}

impl Patch {
    /// `cur` (RGB, `width` pixels a row) as a change from `prev`, or whole without one.
    fn new(prev: Option<&[u8]>, cur: &[u8], width: u32) -> Patch {
        let row = width as usize * 3;
        let rows = cur.len().checked_div(row).unwrap_or(0);
        let changed = |i: usize| prev.is_none_or(|p| p[i..i + 3] != cur[i..i + 3]);
        let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
        for y in 0..rows {
            let line = y * row;
            if prev.is_some_and(|p| p[line..line + row] == cur[line..line + row]) {
                continue;
            }
            for x in 0..width as usize {
                if changed(line + x * 3) {
                    (x0, x1, y0, y1) = (x0.min(x), x1.max(x + 1), y0.min(y), y1.max(y + 1));
                }
            }
        }
        if x0 == usize::MAX {
            // Nothing changed: one transparent pixel.
            return Patch {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
                rgba: vec![0; 4],
            };
        }
        let mut rgba = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * row + x * 3;
                if changed(i) {
                    rgba.extend_from_slice(&[cur[i], cur[i + 1], cur[i + 2], 255]);
                } else {
                    rgba.extend_from_slice(&[0; 4]);
                }
            }
        }
        let side = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Patch {
            x: side(x0),
            y: side(y0),
            w: side(x1 - x0),
            h: side(y1 - y0),
            rgba,
        }
    }
}

/// One frame's RGB bytes.
fn image(f: &Figure) -> Result<Vec<u8>, DrawError> {
    Ok(raster::rgb_on_white(&raster::render(&f.layout()?)?))
}

/// The delay as APNG's fraction of a second: milliseconds, or tenths past 65.5 s.
fn delay(ms: u32) -> (u16, u16) {
    match u16::try_from(ms) {
        Ok(ms) => (ms, 1000),
        Err(_) => (u16::try_from(ms / 100).unwrap_or(u16::MAX), 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::{Plot, Series};

    /// A line of the first `n` of ten points, over fixed axes.
    fn frame(n: usize, width: u32) -> Figure {
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let ys: Vec<f64> = xs.iter().map(|x| (x * 0.7).sin()).collect();
        let mut plot = Plot::new("step", "reward");
        plot.x.range = Some((0.0, 9.0));
        plot.y.range = Some((-1.0, 1.0));
        plot.add(Series::line("run", xs, ys));
        Figure::new(width, 200, plot).with_title(format!("frame {n}"))
    }

    /// Plays an APNG as a browser would: the frames it declares, its default image and each
    /// frame as shown (RGBA), every patch blended over the frame before.
    pub(crate) fn play(bytes: &[u8]) -> (u32, Vec<u8>, Vec<Vec<u8>>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let (w, h) = reader.info().size();
        let declared = reader.info().animation_control.unwrap().num_frames;
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width, info.height),
            (w, h),
            "the default image is whole"
        );
        let default = buf[..info.buffer_size()].to_vec();
        let mut shown = vec![0u8; (w * h * 4) as usize];
        let mut frames = Vec::new();
        while let Ok(info) = reader.next_frame(&mut buf) {
            let fc = reader.info().frame_control.unwrap();
            assert_eq!(fc.blend_op, png::BlendOp::Over);
            for y in 0..info.height {
                for x in 0..info.width {
                    let s = ((y * info.width + x) * 4) as usize;
                    let d = (((fc.y_offset + y) * w + fc.x_offset + x) * 4) as usize;
                    match buf[s + 3] {
                        255 => shown[d..d + 4].copy_from_slice(&buf[s..s + 4]),
                        a => assert_eq!(a, 0, "a pixel is kept or replaced"),
                    }
                }
            }
            frames.push(shown.clone());
        }
        (declared, default, frames)
    }

    /// RGB as RGBA.
    fn opaque(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    }

    #[test]
    fn frames_encode_as_a_looping_apng_of_changes() {
        let anim = Animation {
            frames: (2..=10).step_by(2).map(|n| frame(n, 300)).collect(),
            delay_ms: 250,
        };
        let bytes = anim.to_apng().unwrap();
        let (declared, default, frames) = play(&bytes);
        assert_eq!(declared, 5);
        assert_eq!(frames.len(), 5);
        // Each frame shows what its figure's own PNG shows; the default image is the last.
        for (f, shown) in anim.frames.iter().zip(&frames) {
            let still = f.to_png().unwrap();
            let mut reader = png::Decoder::new(std::io::Cursor::new(&still))
                .read_info()
                .unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), (300, 200));
            assert!(
                opaque(&buf[..info.buffer_size()]) == *shown,
                "{:?}",
                f.title
            );
        }
        assert!(default == frames[4]);
        assert!(frames[0] != frames[4], "the frames differ");
        // Later frames hold only their changes: the five and the default image cost less
        // than the five stills.
        let stills: usize = anim.frames.iter().map(|f| f.to_png().unwrap().len()).sum();
        assert!(bytes.len() < stills, "{} vs {stills}", bytes.len());
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
            .read_info()
            .unwrap();
        let actl = reader.info().animation_control.unwrap();
        assert_eq!(actl.num_plays, 0, "it loops");
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        reader.next_frame(&mut buf).unwrap();
        let fctl = reader.info().frame_control.unwrap();
        assert_eq!((fctl.delay_num, fctl.delay_den), (250, 1000));
    }

    #[test]
    fn a_patch_is_the_change_alone() {
        let prev = vec![255u8; 4 * 3 * 3];
        let mut cur = prev.clone();
        cur[(4 + 2) * 3] = 0; // (2, 1)
        cur[(2 * 4 + 1) * 3 + 1] = 7; // (1, 2)
        let p = Patch::new(Some(&prev), &cur, 4);
        assert_eq!((p.x, p.y, p.w, p.h), (1, 1, 2, 2));
        assert_eq!(
            p.rgba,
            [
                [0, 0, 0, 0],
                [0, 255, 255, 255],
                [255, 7, 255, 255],
                [0, 0, 0, 0]
            ]
            .concat()
        );
        let same = Patch::new(Some(&prev), &prev, 4);
        assert_eq!((same.w, same.h, same.rgba), (1, 1, vec![0; 4]));
        let whole = Patch::new(None, &cur, 4);
        assert_eq!((whole.x, whole.y, whole.w, whole.h), (0, 0, 4, 3));
        assert!(whole.rgba.chunks(4).all(|p| p[3] == 255));
    }

    #[test]
    fn bad_animations_are_refused() {
        let e = Animation {
            frames: Vec::new(),
            delay_ms: 100,
        }
        .to_apng()
        .unwrap_err();
        assert_eq!(e.to_string(), "an animation needs at least one frame");
        let e = Animation {
            frames: vec![frame(3, 300), frame(4, 320), frame(5, 300)],
            delay_ms: 100,
        }
        .to_apng()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame 2 is 320 × 200 but frame 3 is 300 × 200: an animation's frames are of one size"
        );
    }

    #[test]
    fn long_delays_are_counted_in_tenths() {
        assert_eq!(delay(200), (200, 1000));
        assert_eq!(delay(70_000), (700, 10));
        assert_eq!(delay(u32::MAX), (u16::MAX, 10));
    }
}
