//! The latency percentile distribution of one or more runs as an SVG plot, in the style of
//! HdrHistogram's plots: the percentile axis is logarithmic in 1/(1 - percentile), so 90%, 99%,
//! 99.9% and 99.99% get equal room and the tail, where latency problems show, is not squashed
//! into the right edge.

use std::path::Path;

use plotters::prelude::*;

/// One run's distribution: (percentile in percent, latency in milliseconds), by percentile.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Where `percentile` (0 to 100) sits on the axis: log10(1 / (1 - q)); 100% itself (the max)
/// is put one step past the last point before it.
fn position(percentile: f64, last: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        last
    } else {
        (1.0 / rest).log10()
    }
}

/// The label of an axis position: 0 is 0%, 1 is 90%, 2 is 99%, 3 is 99.9% ...; none between.
fn percentile_label(at: f64) -> String {
    if (at - at.round()).abs() > 1e-6 {
        return String::new();
    }
    let nines = at.round() as i32;
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        n => format!("99.{}%", "9".repeat((n - 2) as usize)),
    }
}

/// Writes `series` to `path` as one plot, a line and a legend entry for each.
pub fn write(path: &Path, title: &str, series: &[Series]) -> Result<(), PlotError> {
    let deepest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|&(p, _)| position(p, 0.0))
        .fold(1.0_f64, f64::max);
    // Room for the max, one step past the deepest percentile, then whole nines for the ticks.
    let max_at = deepest + 0.25;
    let nines = max_at.ceil().max(1.0);
    let slowest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|&(_, ms)| ms)
        .fold(0.0_f64, f64::max);
    let top = if slowest > 0.0 { slowest * 1.1 } else { 1.0 };

    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    let drawn = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..nines, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(nines as usize + 1)
            .x_label_formatter(&|at| percentile_label(*at))
            .y_label_formatter(&|ms| format!("{ms:.2}"))
            .draw()?;
        for (index, run) in series.iter().enumerate() {
            let colour = Palette99::pick(index).to_rgba();
            let points = run.points.iter().map(|&(p, ms)| (position(p, max_at), ms));
            chart
                // Two wide: axes and ticks are one (tests/bench.rs tells series apart by it).
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(run.label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    drawn().map_err(|e| PlotError {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Why a plot was not written: the file, and what the drawing library said.
#[derive(Debug)]
pub struct PlotError {
    path: std::path::PathBuf,
    reason: String,
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write the plot {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for PlotError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_counts_nines() {
        assert_eq!(position(0.0, 9.0), 0.0);
        assert!((position(90.0, 9.0) - 1.0).abs() < 1e-9);
        assert!((position(99.9, 9.0) - 3.0).abs() < 1e-6);
        assert_eq!(position(100.0, 9.0), 9.0);
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(percentile_label(1.5), "");
    }
}
