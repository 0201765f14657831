//! The draw part of the datter bench: the same 1,000,000 random points drawn as a scatter to a
//! PNG file by datter and by matplotlib's Agg backend (`s=4`), once in one colour and once with
//! a colour per point, at the same size (8 × 6 in at 100 dpi = 800 × 600 px). Each side is timed
//! from the data in memory to the PNG file written; the best of a few runs counts.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use datter::draw::colour::categorical;
use datter::draw::{Figure, Kind, Plot, PointColours, Rgba, Series, raster};

const N: usize = 1_000_000;
const RUNS: usize = 5;
const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;
/// matplotlib's `s=4` marker (2 pt across, with its edge) inks 13.6 px² at 100 dpi (measured
/// on one point): a disc of radius 2.08 px inks the same.
const RADIUS: f32 = 2.08;

/// Runs this part and prints its figures.
pub fn run() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            println!("draw: no temporary directory: {e}");
            return;
        }
    };
    let (x, y, cat) = points();
    if let Err(e) = write_inputs(dir.path(), &x, &y, &cat) {
        println!("draw: cannot write the reference's inputs: {e}");
        return;
    }
    let colours: Vec<Rgba> = cat.iter().map(|&c| categorical(usize::from(c))).collect();
    println!("draw: {N} points, {WIDTH}x{HEIGHT} px, radius {RADIUS} px, best of {RUNS}");
    let reference = matplotlib(dir.path());
    for (case, each) in [("one colour", false), ("colour per point", true)] {
        let out = dir.path().join("datter.png");
        let mut best = Duration::MAX;
        let mut parts = [Duration::MAX; 4];
        for _ in 0..RUNS {
            let t = Instant::now();
            let fig = figure(&x, &y, each.then(|| colours.clone()));
            let split = draw(&fig, &out);
            let took = t.elapsed();
            if took < best {
                best = took;
                parts = split;
            }
        }
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "draw scatter 1M, {case}: datter {:.1} ms (build+layout {:.1}, raster {:.1}, encode {:.1}, write {:.1}; {} KiB)",
            ms(best),
            ms(parts[0]),
            ms(parts[1]),
            ms(parts[2]),
            ms(parts[3]),
            size / 1024
        );
        match reference.as_ref().map(|r| if each { r.1 } else { r.0 }) {
            Ok(r) => println!(
                "draw scatter 1M, {case}: matplotlib {:.1} ms, ratio {:.1}x",
                r * 1e3,
                r / best.as_secs_f64()
            ),
            Err(e) => println!("draw scatter 1M, {case}: no matplotlib reference: {e}"),
        }
    }
    let dir_path = dir.path();
    if let Ok(dir) = std::env::var("DATTER_DRAW_SAMPLES") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = figure(&x, &y, None).save(format!("{dir}/bench-1M-one.png"));
        let _ = figure(&x, &y, Some(colours)).save(format!("{dir}/bench-1M-each.png"));
        let _ = std::fs::copy(
            dir_path.join("mpl.png"),
            format!("{dir}/bench-1M-matplotlib.png"),
        );
    }
}

/// The figure datter draws: what a pipeline's `plot` op would build from two columns.
fn figure(x: &[f64], y: &[f64], colours: Option<Vec<Rgba>>) -> Figure {
    let mut plot = Plot::new("x", "y");
    let mut s = Series::scatter("points", x.to_vec(), y.to_vec(), RADIUS).unnamed();
    if let (Some(c), Kind::Scatter { colours, .. }) = (colours, &mut s.kind) {
        *colours = PointColours::Each(c);
    }
    plot.add(s);
    Figure::new(WIDTH, HEIGHT, plot)
}

/// Draws `fig` to `out`, timing layout, raster, PNG encoding and the write.
#[allow(clippy::expect_used)] // a bench may stop at the first surprise
fn draw(fig: &Figure, out: &Path) -> [Duration; 4] {
    let t0 = Instant::now();
    let canvas = fig.layout().expect("layout");
    let t1 = Instant::now();
    let pm = raster::render(&canvas).expect("raster");
    let t2 = Instant::now();
    let png = raster::encode_png(&pm).expect("png");
    let t3 = Instant::now();
    std::fs::write(out, png).expect("write");
    let t4 = Instant::now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
}

/// Normal points (a fixed xorshift seed) and a category 0..10 for each.
fn points() -> (Vec<f64>, Vec<f64>, Vec<u8>) {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut normal = || {
        let (u, v) = (next().max(1e-300), next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let mut x = Vec::with_capacity(N);
    let mut y = Vec::with_capacity(N);
    let mut c = Vec::with_capacity(N);
    for i in 0..N {
        let k = (i % 10) as u8;
        x.push(normal() + f64::from(k % 5) * 2.0);
        y.push(normal() + f64::from(k / 5) * 3.0);
        c.push(k);
    }
    (x, y, c)
}

fn write_inputs(dir: &Path, x: &[f64], y: &[f64], c: &[u8]) -> std::io::Result<()> {
    let bytes = |v: &[f64]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.join("x.f64"), bytes(x))?;
    std::fs::write(dir.join("y.f64"), bytes(y))?;
    std::fs::write(dir.join("c.u8"), c)
}

/// matplotlib's best times (one colour, colour per point) in seconds.
fn matplotlib(dir: &Path) -> Result<(f64, f64), String> {
    let script = format!(
        r##"
import sys, time
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
try:
    import threadpoolctl
    blas = [f"{{i['internal_api']}} {{i.get('version')}}" for i in threadpoolctl.threadpool_info() if i.get('user_api') == 'blas']
    print("draw reference BLAS (threadpoolctl):", ", ".join(blas) or "none loaded")
except ImportError:
    print("draw reference BLAS: threadpoolctl not installed (matplotlib uses no BLAS)")
print("draw reference: matplotlib", matplotlib.__version__, "numpy", np.__version__)
d = sys.argv[1]
x = np.fromfile(d + "/x.f64", dtype="<f8")
y = np.fromfile(d + "/y.f64", dtype="<f8")
cat = np.fromfile(d + "/c.u8", dtype=np.uint8)
tab10 = np.array(plt.get_cmap("tab10").colors)
colours = tab10[cat]
def once(c):
    t = time.perf_counter()
    fig = plt.figure(figsize=({w}, {h}), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=4, c=c)
    ax.set_xlabel("x"); ax.set_ylabel("y")
    fig.savefig(d + "/mpl.png", dpi=100)
    plt.close(fig)
    return time.perf_counter() - t
one = min(once("#1f77b4") for _ in range({runs}))
each = min(once(colours) for _ in range({runs}))
print(f"RESULT {{one}} {{each}}")
"##,
        w = WIDTH as f64 / 100.0,
        h = HEIGHT as f64 / 100.0,
        runs = RUNS.min(3),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().filter(|l| !l.starts_with("RESULT")) {
        println!("{line}");
    }
    let result = text.lines().find_map(|l| l.strip_prefix("RESULT "));
    let Some(r) = result else {
        return Err(format!(
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    };
    let v: Vec<f64> = r
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    match v[..] {
        [a, b] => Ok((a, b)),
        _ => Err(format!("unexpected reference output {r:?}")),
    }
}

/// Profiling aid: draws the one-colour data layer a number of times (`P2_BENCH_ONLY=probe`).
#[allow(clippy::expect_used)]
pub fn probe() {
    let (x, y, c) = points();
    let colours: Vec<Rgba> = c.iter().map(|&c| categorical(usize::from(c))).collect();
    let each = std::env::var("P2_PROBE_EACH").is_ok().then_some(colours);
    let canvas = figure(&x, &y, each).layout().expect("layout");
    for layer in canvas.layers.iter().filter(|l| l.class == "data") {
        let mut best = f64::MAX;
        for _ in 0..20 {
            let mut pm = tiny_skia::Pixmap::new(WIDTH, HEIGHT).expect("pixmap");
            let t = Instant::now();
            raster::draw_layer(&mut pm, layer).expect("draw");
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("data layer: best {best:.1} ms");
    }
}
