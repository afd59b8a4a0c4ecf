//! The likeness heatmap: an inline SVG with one rect per scored grid position (same rows and columns as the
//! grid), coloured by calibrated likeness, marked pass/fail, the pick outlined.

use super::html::{escape, number, truncate};
use super::layout::{Layout, Position};

const CELL_W: usize = 120;
const CELL_H: usize = 54;
const TOP: usize = 28;
const CHAR_W: usize = 7;

/// Viridis colour stops from likeness 0 to 1.
const STOPS: [(f32, [u8; 3]); 5] = [
    (0.0, [0x44, 0x01, 0x54]),
    (0.25, [0x3b, 0x52, 0x8b]),
    (0.5, [0x21, 0x91, 0x8c]),
    (0.75, [0x5e, 0xc9, 0x62]),
    (1.0, [0xfd, 0xe7, 0x25]),
];

/// The heatmap SVG (`id="heatmap"`).
pub fn heatmap(layout: &Layout) -> String {
    let left = layout
        .y_short
        .iter()
        .map(|l| truncate(l, 24).chars().count() * CHAR_W + 14)
        .max()
        .unwrap_or(0);
    let width = left + layout.x_labels.len() * CELL_W + 4;
    let height = TOP + layout.y_labels.len() * CELL_H + 4;
    let mut svg = format!(
        "<svg id=\"heatmap\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"Likeness heatmap\">\n"
    );
    svg += &axis_labels(layout, left);
    for position in &layout.positions {
        if position.score.is_some() {
            svg += &cell(
                position,
                left + position.x * CELL_W,
                TOP + position.y * CELL_H,
            );
        }
    }
    svg += "</svg>\n";
    svg
}

fn axis_labels(layout: &Layout, left: usize) -> String {
    let mut out = String::new();
    for (x, label) in layout.x_short.iter().enumerate() {
        out += &format!(
            "<text class=\"hm-axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\"><title>{}</title>{}</text>\n",
            left + x * CELL_W + CELL_W / 2,
            TOP - 10,
            escape(label),
            escape(&truncate(label, 16))
        );
    }
    for (y, label) in layout.y_short.iter().enumerate() {
        out += &format!(
            "<text class=\"hm-axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>\n",
            left - 8,
            TOP + y * CELL_H + CELL_H / 2 + 4,
            escape(label),
            escape(&truncate(label, 24))
        );
    }
    out
}

fn cell(position: &Position, x: usize, y: usize) -> String {
    let likeness = position.score.and_then(|s| s.likeness);
    let fill = likeness.map_or("#d9d9d9".to_string(), colour);
    let ink = match likeness {
        Some(l) if l < 0.62 => "#fff",
        _ => "#111",
    };
    let mut classes = String::from("hm-cell");
    if position.is_pick {
        classes += " pick";
    }
    format!(
        "<rect class=\"{classes}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" data-target=\"{}\" data-label=\"{}\" tabindex=\"0\"><title>{}</title></rect>\n{}",
        x + 1,
        y + 1,
        CELL_W - 2,
        CELL_H - 2,
        position.id(),
        escape(&position.label),
        escape(&tooltip(position)),
        cell_text(position, x, y, ink)
    )
}

fn cell_text(position: &Position, x: usize, y: usize, ink: &str) -> String {
    let value = match position.score.and_then(|s| s.likeness) {
        Some(l) => format!("{l:.2}"),
        None => "no face".to_string(),
    };
    let star = if position.is_pick { "★ " } else { "" };
    let verdict = match position.rank {
        Some(r) if r.passed => "✓ pass".to_string(),
        Some(r) => format!("✕ {}", truncate(&r.failed.join(", ").replace('_', " "), 19)),
        None => String::new(),
    };
    let cx = x + CELL_W / 2;
    format!(
        "<text class=\"hm-value\" x=\"{cx}\" y=\"{}\" fill=\"{ink}\" text-anchor=\"middle\">{star}{value}</text>\n<text class=\"hm-verdict\" x=\"{cx}\" y=\"{}\" fill=\"{ink}\" text-anchor=\"middle\">{}</text>\n",
        y + 24,
        y + 42,
        escape(&verdict)
    )
}

fn tooltip(position: &Position) -> String {
    let mut text = format!(
        "{}: likeness {}",
        position.label,
        number(position.score.and_then(|s| s.likeness), 2)
    );
    if let Some(rank) = position.rank {
        text += &format!("; {}", rank.reasons.join("; "));
    }
    text
}

/// The viridis colour of a likeness (clamped to 0..1) as `#rrggbb`.
pub fn colour(likeness: f32) -> String {
    let t = likeness.clamp(0.0, 1.0);
    let i = STOPS
        .iter()
        .rposition(|(at, _)| *at <= t)
        .unwrap_or(0)
        .min(3);
    let ((a, ca), (b, cb)) = (STOPS[i], STOPS[i + 1]);
    let f = (t - a) / (b - a);
    let mix =
        |k: usize| (f32::from(ca[k]) + (f32::from(cb[k]) - f32::from(ca[k])) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2))
}

/// The CSS gradient of the colour scale, for the legend.
pub fn legend_gradient() -> String {
    let stops: Vec<String> = STOPS
        .iter()
        .map(|(at, _)| format!("{} {:.0}%", colour(*at), at * 100.0))
        .collect();
    format!("linear-gradient(to right, {})", stops.join(", "))
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_ends_and_clamps() {
        assert_eq!(colour(0.0), "#440154");
        assert_eq!(colour(1.0), "#fde725");
        assert_eq!(colour(1.7), "#fde725");
        assert_eq!(colour(-0.3), "#440154");
    }
}
