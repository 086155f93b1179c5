//! Charts drawn on the server as inline SVG: no script, no external resource.
//! Every label goes through maud, which escapes it.

use maud::{Markup, html};

pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
    /// Drawn as a filled area under the line (for the total, behind the parts).
    pub area: bool,
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|step| step * magnitude).find(|bound| *bound >= max).unwrap_or(10.0 * magnitude)
}

fn label(value: f64) -> String {
    if value >= 10.0 || value == value.trunc() { format!("{value:.0}") } else { format!("{value:.1}") }
}

/// Lines over time, oldest value first; `span` names the x axis (e.g. "last 120 s").
pub fn line_chart(id: &str, title: &str, span: &str, series: &[Series]) -> Markup {
    let (width, height, left, bottom, top) = (720.0, 220.0, 44.0, 24.0, 12.0);
    let plot_w = width - left - 8.0;
    let plot_h = height - bottom - top;
    let max = nice_max(series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max));
    let points = |values: &[f64]| -> String {
        let n = values.len().max(2) - 1;
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = left + plot_w * i as f64 / n as f64;
                let y = top + plot_h * (1.0 - v / max);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (width) " " (height)}
            role="img" aria-label=(title) {
            title { (title) }
            @for i in 0..=4 {
                @let y = top + plot_h * f64::from(i) / 4.0;
                line x1=(left) y1=(y) x2=(width - 8.0) y2=(y) stroke="#ddd" {}
                text x=(left - 6.0) y=(y + 4.0) text-anchor="end" font-size="11" fill="#555" {
                    (label(max * f64::from(4 - i) / 4.0))
                }
            }
            text x=(left) y=(height - 6.0) font-size="11" fill="#555" { (span) }
            text x=(width - 8.0) y=(height - 6.0) font-size="11" fill="#555" text-anchor="end" { "now" }
            @for (i, s) in series.iter().enumerate() {
                @if s.area {
                    polygon points={ (left) "," (top + plot_h) " " (points(&s.values)) " " (left + plot_w) "," (top + plot_h) }
                        fill=(s.color) fill-opacity="0.25" stroke="none" {}
                }
                polyline points=(points(&s.values)) fill="none" stroke=(s.color) stroke-width="1.5"
                    stroke-linejoin="round" {}
                rect x=(left + 10.0 + 130.0 * i as f64) y=(top + 2.0) width="12" height="12" fill=(s.color) {}
                text x=(left + 26.0 + 130.0 * i as f64) y=(top + 12.0) font-size="12" fill="#222" { (s.label) }
            }
        }
    }
}

pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Shown after the bar (e.g. the value with its unit).
    pub note: String,
}

/// Horizontal bars, one row each, scaled to the largest value.
pub fn bar_chart(id: &str, title: &str, bars: &[Bar]) -> Markup {
    let row = 22.0;
    let (width, label_w) = (720.0, 220.0);
    let height = (row * bars.len() as f64).max(row) + 8.0;
    let max = bars.iter().map(|bar| bar.value).fold(0.0, f64::max);
    let scale = if max > 0.0 { (width - label_w - 130.0) / max } else { 0.0 };
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (width) " " (height)}
            role="img" aria-label=(title) {
            title { (title) }
            @if bars.is_empty() {
                text x="4" y="18" font-size="12" fill="#777" { "nothing yet" }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = 4.0 + row * i as f64;
                text x=(label_w - 6.0) y=(y + 14.0) text-anchor="end" font-size="12" fill="#222" { (bar.label) }
                rect x=(label_w) y=(y + 3.0) width=(format!("{:.1}", (bar.value * scale).max(1.0))) height="14" fill="#4a7bd0" {}
                text x=(label_w + bar.value * scale + 6.0) y=(y + 14.0) font-size="11" fill="#555" { (bar.note) }
            }
        }
    }
}

/// One bar split in two parts (e.g. cache hits and misses).
pub fn ratio_bar(id: &str, title: &str, part: u64, whole: u64, part_label: &str, rest_label: &str) -> Markup {
    let width = 720.0;
    let filled = if whole == 0 { 0.0 } else { width * part as f64 / whole as f64 };
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 44" role="img" aria-label=(title) {
            title { (title) }
            rect x="0" y="0" width=(width) height="22" fill=(if whole == 0 { "#eee" } else { "#e39b3b" }) {}
            rect x="0" y="0" width=(format!("{filled:.1}")) height="22" fill="#3b9b5a" {}
            text x="4" y="38" font-size="12" fill="#222" {
                (part) " " (part_label) " · " (whole.saturating_sub(part)) " " (rest_label)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(1000.0), 1000.0);
    }

    #[test]
    fn labels_are_escaped() {
        let bars = [Bar { label: "<script>x</script>".into(), value: 1.0, note: "\"><img>".into() }];
        let svg = bar_chart("b", "t", &bars).into_string();
        assert!(!svg.contains("<script>") && !svg.contains("<img>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }
}
