//! The taxi figure: slowdown against the local-memory fraction, one line per series, drawn
//! to a PNG with plotters' bitmap backend.
//!
//! plotters is built without fontconfig or FreeType (its `ab_glyph` rasteriser is pure Rust),
//! so a font has to be handed to it: the first of a few common TrueType files found on the
//! machine is registered as `sans-serif`. Without one the figure is drawn without text (axes,
//! lines and markers only) and [`draw_slowdown`] says so, rather than failing the benchmark.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::{Error, ErrorKind, Result};

/// One line of the figure.
#[derive(Clone, Debug)]
pub struct Line {
    /// The legend entry.
    pub name: String,
    /// `(local fraction %, slowdown ×)` points, ascending by fraction.
    pub points: Vec<(f64, f64)>,
    /// Its colour, `(r, g, b)`.
    pub rgb: (u8, u8, u8),
}

/// TrueType files tried, in order (Debian/Ubuntu, Fedora, Arch, Alpine layouts).
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// Registers a system font with plotters once; `true` when one was found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        FONT_CANDIDATES.iter().any(|p| {
            let Ok(bytes) = std::fs::read(p) else {
                return false;
            };
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn drawing_error(path: &Path, e: impl std::fmt::Debug) -> Error {
    Error::new(ErrorKind::Io, format!("drawing {}: {e:?}", path.display()))
}

/// The y range: from a little under 1× to a little over the largest point, on a log axis.
pub fn y_range(lines: &[Line]) -> (f64, f64) {
    let finite = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite() && *y > 0.0);
    let (lo, hi) = finite.fold((1.0f64, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    (lo * 0.8, (hi * 1.25).max(2.0))
}

/// Gridlines and labels of the log y axis: 1, 1.5, 2, 3, 5, 7 per decade inside `lo..=hi`.
pub fn y_key_points(lo: f64, hi: f64) -> Vec<f64> {
    let mut points = Vec::new();
    let mut decade = 0.1;
    while decade <= hi {
        for m in [1.0, 1.5, 2.0, 3.0, 5.0, 7.0] {
            let y = m * decade;
            if y >= lo && y <= hi {
                points.push(y);
            }
        }
        decade *= 10.0;
    }
    points
}

/// Draws `lines` (plus the all-local 1.0 line) into a PNG at `path`; returns whether text
/// (title, axis labels, legend) could be drawn.
pub fn draw_slowdown(path: &Path, title: &str, lines: &[Line], with_text: bool) -> Result<bool> {
    let text = with_text && font_ready();
    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing_error(path, e))?;
    let (ylo, yhi) = y_range(lines);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(24);
    if text {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(48)
            .y_label_area_size(64);
    }
    let mut chart = builder
        .build_cartesian_2d(
            0f64..102f64,
            (ylo..yhi)
                .log_scale()
                .with_key_points(y_key_points(ylo, yhi)),
        )
        .map_err(|e| drawing_error(path, e))?;
    if text {
        chart
            .configure_mesh()
            .x_desc("local memory, % of the all-local working set")
            .y_desc("slowdown of the nine steps vs all-local (log)")
            .label_style(("sans-serif", 16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                if *y < 10.0 {
                    format!("{y:.1}")
                } else {
                    format!("{y:.0}")
                }
            })
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| drawing_error(path, e))?;
    } else {
        chart
            .configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| drawing_error(path, e))?;
    }
    let baseline = RGBColor(120, 120, 120);
    chart
        .draw_series(LineSeries::new(
            [(0.0, 1.0), (100.0, 1.0)],
            baseline.stroke_width(2),
        ))
        .map_err(|e| drawing_error(path, e))?
        .label("all-local = 1.0")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], baseline.stroke_width(2)));
    for line in lines {
        let color = RGBColor(line.rgb.0, line.rgb.1, line.rgb.2);
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(|e| drawing_error(path, e))?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(|e| drawing_error(path, e))?;
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| drawing_error(path, e))?;
    }
    root.present().map_err(|e| drawing_error(path, e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<Line> {
        vec![
            Line {
                name: "farmem".into(),
                points: vec![(5.0, 1.8), (25.0, 1.2), (100.0, 1.0)],
                rgb: (0, 90, 200),
            },
            Line {
                name: "kernel paging".into(),
                points: vec![(5.0, f64::NAN), (25.0, 9.0), (100.0, 1.0)],
                rgb: (200, 40, 40),
            },
        ]
    }

    #[test]
    fn y_range_spans_every_finite_point_and_one() {
        let (lo, hi) = y_range(&lines());
        assert!(lo < 1.0 && hi > 9.0, "{lo}..{hi}");
        assert_eq!(y_range(&[]), (0.8, 2.0));
    }

    #[test]
    fn y_key_points_stay_within_the_range() {
        assert_eq!(
            y_key_points(0.8, 12.0),
            [1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0]
        );
        let wide = y_key_points(0.8, 60.0);
        assert_eq!(wide.last(), Some(&50.0));
        assert!(wide.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn draws_a_png_with_and_without_text() {
        let dir = std::env::temp_dir().join(format!("farmem-taxi-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for with_text in [false, true] {
            let path = dir.join(format!("slowdown-{with_text}.png"));
            let drew_text = draw_slowdown(&path, "taxi", &lines(), with_text).expect("draws");
            assert!(with_text || !drew_text);
            let bytes = std::fs::read(&path).expect("png written");
            assert_eq!(&bytes[1..4], b"PNG");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
