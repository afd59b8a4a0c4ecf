//! Likeness and health against the epoch, one line per weight (inline SVG line charts). The epoch axis is the
//! grid's X axis unless only its Y axis holds epochs; each value of the other axis is one line.

use super::html::{escape, truncate};
use super::layout::Layout;
use crate::grid::manifest::{AxisEntry, Manifest};
use crate::score::table::{Baselines, CellScore};

const W: f32 = 300.0;
const H: f32 = 190.0;
const LEFT: f32 = 42.0;
const RIGHT: f32 = 12.0;
const TOP: f32 = 10.0;
const BOTTOM: f32 = 30.0;

/// Line colours (Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// One plotted metric.
struct Metric {
    title: &'static str,
    value: fn(&CellScore) -> Option<f32>,
    /// The healthy level, drawn dashed.
    baseline: Option<f32>,
    /// Smallest range of the value axis.
    range: (f32, f32),
}

/// The values of one metric: `lines[series][column]`.
struct Plot<'a> {
    metric: &'a Metric,
    columns: &'a [String],
    /// The name of the column axis (`Epoch`).
    column_title: &'a str,
    lines: Vec<Vec<Option<f32>>>,
}

/// The grid seen as charts: columns along the epoch axis, one line per value of the other axis.
struct Frame<'a> {
    layout: &'a Layout<'a>,
    epoch_on_y: bool,
    columns: &'a [String],
    series: &'a [String],
    column_axis: Option<&'a AxisEntry>,
    series_axis: Option<&'a AxisEntry>,
}

impl<'a> Frame<'a> {
    fn new(layout: &'a Layout<'a>, manifest: &'a Manifest) -> Frame<'a> {
        let (x, y) = (&manifest.axes.x, manifest.axes.y.as_ref());
        let epoch_on_y = y.is_some_and(|y| y.kind == "epochs") && x.kind != "epochs";
        let (columns, series, column_axis, series_axis) = if epoch_on_y {
            (&layout.y_short, &layout.x_short, y, Some(x))
        } else {
            (&layout.x_short, &layout.y_short, Some(x), y)
        };
        Frame {
            layout,
            epoch_on_y,
            columns,
            series,
            column_axis,
            series_axis,
        }
    }

    /// The scores of the cell in `column` on line `line`.
    fn score(&self, column: usize, line: usize) -> Option<&'a CellScore> {
        let (x, y) = if self.epoch_on_y {
            (line, column)
        } else {
            (column, line)
        };
        self.layout.at(x, y).and_then(|p| p.score)
    }

    fn column_labels(&self) -> Vec<String> {
        (0..self.columns.len())
            .map(|c| {
                let cells = (0..self.series.len()).filter_map(|s| self.score(c, s));
                column_label(&self.columns[c], cells)
            })
            .collect()
    }

    fn lines(&self, metric: &Metric) -> Vec<Vec<Option<f32>>> {
        (0..self.series.len())
            .map(|s| {
                (0..self.columns.len())
                    .map(|c| self.score(c, s).and_then(metric.value))
                    .collect()
            })
            .collect()
    }
}

/// The chart block: likeness, clipped pixels, saturation and noise against the epoch, with a shared legend.
pub fn curves(layout: &Layout, manifest: &Manifest, baselines: &Baselines) -> String {
    let frame = Frame::new(layout, manifest);
    let columns = frame.column_labels();
    let column_title = frame.column_axis.map_or("", |a| a.label.as_str());
    let mut out = String::from("<div class=\"charts\">\n");
    for metric in metrics(baselines) {
        let plot = Plot {
            metric: &metric,
            columns: &columns,
            column_title,
            lines: frame.lines(&metric),
        };
        out += &format!(
            "<figure class=\"chart\"><figcaption>{}</figcaption>{}</figure>\n",
            metric.title,
            chart(&plot)
        );
    }
    out += "</div>\n";
    out + &legend(frame.series, frame.series_axis.map(|a| a.label.as_str()))
}

fn metrics(baselines: &Baselines) -> [Metric; 4] {
    let base = &baselines.health;
    [
        Metric {
            title: "Likeness (1 = training photos)",
            value: |c| c.likeness,
            baseline: None,
            range: (0.0, 1.0),
        },
        Metric {
            title: "Clipped pixels (%)",
            value: |c| Some(c.health.clipped * 100.0),
            baseline: Some(base.clipped * 100.0),
            range: (0.0, 1.0),
        },
        Metric {
            title: "Saturation",
            value: |c| Some(c.health.saturation),
            baseline: Some(base.saturation),
            range: (0.0, 0.1),
        },
        Metric {
            title: "High-frequency noise",
            value: |c| Some(c.health.high_freq),
            baseline: Some(base.high_freq),
            range: (0.0, 1.0),
        },
    ]
}

/// The epoch number when every scored cell of the column has the same one, else the axis label.
fn column_label<'a>(label: &str, mut cells: impl Iterator<Item = &'a CellScore>) -> String {
    let first = cells.next().and_then(|c| c.epoch);
    match first {
        Some(epoch) if cells.all(|c| c.epoch == Some(epoch)) => epoch.to_string(),
        _ => truncate(label, 8),
    }
}

fn chart(plot: &Plot) -> String {
    let (lo, hi, step) = value_range(plot);
    let x_of = |c: usize| {
        let n = plot.columns.len().max(1) as f32;
        LEFT + (W - LEFT - RIGHT) * (c as f32 + 0.5) / n
    };
    let y_of = |v: f32| TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo));
    let mut svg = format!(
        "<svg class=\"chart-svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\n",
        escape(plot.metric.title)
    );
    svg += &value_axis((lo, hi, step), &y_of);
    svg += &column_axis(plot.columns, plot.column_title, &x_of);
    if let Some(base) = plot.metric.baseline {
        svg += &baseline(y_of(base));
    }
    for (index, line) in plot.lines.iter().enumerate() {
        svg += &polyline(line, PALETTE[index % PALETTE.len()], &x_of, &y_of);
    }
    svg + "</svg>"
}

/// The value axis: from the metric's range widened to every value, rounded out to a tick step of 1, 2, 2.5 or 5
/// times a power of ten; returns (low, high, step).
fn value_range(plot: &Plot) -> (f32, f32, f32) {
    let values = plot.lines.iter().flatten().flatten().copied();
    let values = values.chain(plot.metric.baseline);
    let (lo, hi) = values.fold(plot.metric.range, |(lo, hi), v| (lo.min(v), hi.max(v)));
    let step = nice_step((hi - lo) / TICKS as f32);
    let lo = (lo / step).floor() * step;
    let hi = ((hi / step).ceil() * step).max(lo + step);
    (lo, hi, step)
}

const TICKS: usize = 4;

/// The smallest of 1, 2, 2.5, 5 × 10^k at least `raw`.
fn nice_step(raw: f32) -> f32 {
    let raw = raw.max(1e-6);
    let power = 10f32.powf(raw.log10().floor());
    let factor = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|f| f * power >= raw * 0.9999)
        .unwrap_or(10.0);
    factor * power
}

/// Decimals needed to print multiples of `step`.
fn decimals(step: f32) -> usize {
    (0..4)
        .find(|d| {
            let scaled = step * 10f32.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-3
        })
        .unwrap_or(4)
}

fn value_axis((lo, hi, step): (f32, f32, f32), y_of: &dyn Fn(f32) -> f32) -> String {
    let digits = decimals(step);
    let count = ((hi - lo) / step).round() as usize;
    let mut out = String::new();
    for i in 0..=count {
        let value = lo + step * i as f32;
        let y = y_of(value);
        out += &format!(
            "<line class=\"grid-line\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.digits$}</text>\n",
            W - RIGHT,
            LEFT - 5.0,
            y + 3.5
        );
    }
    out
}

fn column_axis(columns: &[String], title: &str, x_of: &dyn Fn(usize) -> f32) -> String {
    let mut out = String::new();
    for (c, label) in columns.iter().enumerate() {
        out += &format!(
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x_of(c),
            H - BOTTOM + 14.0,
            escape(label)
        );
    }
    out + &format!(
        "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 3.0,
        escape(title)
    )
}

fn baseline(y: f32) -> String {
    format!(
        "<line class=\"baseline\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick base\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">base model</text>\n",
        W - RIGHT,
        W - RIGHT - 2.0,
        y - 3.0
    )
}

/// A line through the present values (a gap where a value is missing) with a dot at each.
fn polyline(
    values: &[Option<f32>],
    colour: &str,
    x_of: &dyn Fn(usize) -> f32,
    y_of: &dyn Fn(f32) -> f32,
) -> String {
    let mut path = String::new();
    let mut dots = String::new();
    let mut previous = false;
    for (c, value) in values.iter().enumerate() {
        let Some(v) = value else {
            previous = false;
            continue;
        };
        let (x, y) = (x_of(c), y_of(*v));
        path += &format!("{}{x:.1},{y:.1} ", if previous { "L" } else { "M" });
        dots += &format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"/>");
        previous = true;
    }
    format!("<path class=\"series\" d=\"{path}\" stroke=\"{colour}\"/>{dots}\n")
}

fn legend(series: &[String], title: Option<&str>) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    if let Some(title) = title {
        out += &format!("<li class=\"legend-title\">{}:</li>", escape(title));
    }
    for (index, name) in series.iter().enumerate() {
        out += &format!(
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}</li>",
            PALETTE[index % PALETTE.len()],
            escape(name)
        );
    }
    out + "<li><span class=\"swatch dashed\"></span>base model</li></ul>\n"
}

#[cfg(test)]
mod tests {
    use super::{decimals, nice_step};

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(0.25), 0.25);
        assert_eq!(nice_step(5.2), 10.0);
        assert_eq!(nice_step(4.9), 5.0);
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(decimals(0.25), 2);
        assert_eq!(decimals(5.0), 0);
        assert_eq!(decimals(0.1), 1);
    }
}
