//! `--plot FILE.png`: demand, ready capacity and replicas over time, one panel per policy, so
//! the lag between demand and capacity (the unmet minutes) can be seen, not just counted.
//! Rendered with plotters' bitmap backend and an embedded DejaVu Sans (ab_glyph), so no
//! system font library is needed.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::sim::Outcome;

static FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// Why the plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the embedded font does not load")]
    Font,
    #[error("{file}: cannot draw the plot: {message}")]
    Draw { file: String, message: String },
    #[error("nothing to plot: no policy produced a time series")]
    Empty,
}

/// Most points drawn per line; longer series are reduced to bucket maxima (peaks survive).
const MAX_POINTS: usize = 2000;

/// Draws every outcome's series into `file` (PNG).
pub fn draw(file: &Path, title: &str, outcomes: &[Outcome]) -> Result<(), Error> {
    if outcomes.is_empty() || outcomes.iter().all(|o| o.series.is_empty()) {
        return Err(Error::Empty);
    }
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| Error::Font)?;
    let name = file.display().to_string();
    let err = |e: &dyn std::fmt::Display| Error::Draw {
        file: name.clone(),
        message: e.to_string(),
    };
    let height = 60 + 260 * outcomes.len() as u32;
    let root = BitMapBackend::new(file, (1400, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 24))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((outcomes.len(), 1));
    let t0 = outcomes
        .iter()
        .filter_map(|o| o.series.first())
        .map(|p| p.t)
        .fold(f64::INFINITY, f64::min);
    let t1 = outcomes
        .iter()
        .filter_map(|o| o.series.last())
        .map(|p| p.t)
        .fold(f64::NEG_INFINITY, f64::max);
    let hours = ((t1 - t0) / 3600.0).max(1e-6);
    let y_max = outcomes
        .iter()
        .flat_map(|o| o.series.iter())
        .map(|p| p.demand.max(p.ready_capacity))
        .fold(1.0, f64::max)
        * 1.05;
    let r_max = outcomes
        .iter()
        .flat_map(|o| o.series.iter())
        .map(|p| p.replicas.max(p.ready_replicas as i32) + p.placeholders)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.05;
    for (panel, o) in panels.iter().zip(outcomes) {
        let caption = format!(
            "{}: unmet {:.1} min, {:.1} GPU-h, {} scale events",
            o.policy, o.unmet_demand_minutes, o.gpu_hours, o.scale_events
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..hours, 0.0..y_max)
            .map_err(|e| err(&e))?
            .set_secondary_coord(0.0..hours, 0.0..r_max);
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc("load")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .configure_secondary_axes()
            .y_desc("replicas")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        let x = |t: f64| (t - t0) / 3600.0;
        let pts = reduce(&o.series, |p| (x(p.t), p.demand));
        chart
            .draw_series(LineSeries::new(pts, BLACK.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label("demand")
            .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], BLACK));
        let pts = reduce(&o.series, |p| (x(p.t), p.ready_capacity));
        chart
            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label("ready capacity")
            .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], BLUE));
        let pts = reduce(&o.series, |p| (x(p.t), f64::from(p.replicas)));
        chart
            .draw_secondary_series(LineSeries::new(pts, RED.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label("replicas (right axis)")
            .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], RED));
        if o.series.iter().any(|p| p.placeholders > 0) {
            let pts = reduce(&o.series, |p| (x(p.t), f64::from(p.placeholders)));
            chart
                .draw_secondary_series(LineSeries::new(pts, GREEN.stroke_width(1)))
                .map_err(|e| err(&e))?
                .label("placeholders (right axis)")
                .legend(|(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], GREEN));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// At most MAX_POINTS points: each bucket keeps its largest value.
fn reduce<T>(series: &[T], f: impl Fn(&T) -> (f64, f64)) -> Vec<(f64, f64)> {
    let bucket = series.len().div_ceil(MAX_POINTS).max(1);
    series
        .chunks(bucket)
        .filter_map(|c| {
            let x = c.first().map(|p| f(p).0)?;
            let y = c.iter().map(|p| f(p).1).fold(f64::NEG_INFINITY, f64::max);
            Some((x, y))
        })
        .collect()
}
