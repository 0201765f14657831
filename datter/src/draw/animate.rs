//! Animations: figures shown one after another as an animated PNG (APNG), which browsers play
//! in an `<img>` like any PNG.
//!
//! Each frame is rendered as [`Figure::to_png`] renders it (several at once, on rayon's
//! threads) and encoded in order. The file's default image, what a viewer that does not play
//! APNG shows, is the last frame: in a cumulative animation that is the whole data.

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
        let mut out = Vec::with_capacity(last_image.len() / 8 * self.frames.len());
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            // `render` paints on white, so every frame is opaque.
            enc.set_color(png::ColorType::Rgb);
            enc.set_animated(count, 0).map_err(png_err)?;
            enc.set_sep_def_img(true).map_err(png_err)?;
            let (num, den) = delay(self.delay_ms);
            enc.set_frame_delay(num, den).map_err(png_err)?;
            let mut w = enc.write_header().map_err(png_err)?;
            w.write_image_data(&last_image).map_err(png_err)?;
            let rest = &self.frames[..self.frames.len() - 1];
            // A few frames at a time: all cores busy, and no more pixels held than that.
            let batch = rayon::current_num_threads().max(1) * 2;
            for frames in rest.chunks(batch) {
                let images: Vec<Vec<u8>> =
                    frames.par_iter().map(image).collect::<Result<_, _>>()?;
                for img in &images {
                    w.write_image_data(img).map_err(png_err)?;
                }
            }
            w.write_image_data(&last_image).map_err(png_err)?;
            w.finish().map_err(png_err)?;
        }
        Ok(out)
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

    fn decode(bytes: &[u8]) -> (png::Reader<std::io::Cursor<&[u8]>>, Vec<Vec<u8>>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut frames = Vec::new();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        while let Ok(info) = reader.next_frame(&mut buf) {
            assert_eq!(
                (info.width, info.height),
                (300, 200),
                "every frame is whole"
            );
            frames.push(buf[..info.buffer_size()].to_vec());
        }
        (reader, frames)
    }

    #[test]
    fn frames_encode_as_a_looping_apng() {
        let anim = Animation {
            frames: (2..=10).step_by(2).map(|n| frame(n, 300)).collect(),
            delay_ms: 250,
        };
        let bytes = anim.to_apng().unwrap();
        let (reader, frames) = decode(&bytes);
        let actl = reader.info().animation_control.unwrap();
        assert_eq!((actl.num_frames, actl.num_plays), (5, 0));
        // The default image first, then the five frames; the default is the last frame.
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0], frames[5]);
        assert_ne!(frames[1], frames[5], "the frames differ");
        // Each frame is the figure as its own PNG shows it.
        let still = anim.frames[0].to_png().unwrap();
        let (_, alone) = decode(&still);
        assert_eq!(alone[0], frames[1]);
        let fctl = reader.info().frame_control.unwrap();
        assert_eq!((fctl.delay_num, fctl.delay_den), (250, 1000));
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
