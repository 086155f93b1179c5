//! An SVG plot of a run: availability and latency over time, with the
//! disturbances (partitions, crashes, slow nodes) shaded. Plain SVG text, so
//! it opens in any browser and needs nothing at run time.

use std::fmt::Write;

use crate::history::{FaultEvent, HistoryFile, Time, percentile};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const PANEL_HEIGHT: f64 = 150.0;
const AVAILABILITY_TOP: f64 = 50.0;
const LATENCY_TOP: f64 = 250.0;
const HEIGHT: f64 = 460.0;
const BUCKETS: usize = 60;

struct Bucket {
    calls: u64,
    answered: u64,
    latencies: Vec<Time>,
}

pub fn svg(history: &HistoryFile) -> String {
    let duration = history.duration.max(1) as f64;
    let x = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * (t / duration).clamp(0.0, 1.0);
    let buckets = buckets(history);
    let bucket_width = duration / BUCKETS as f64;
    let mut out = String::new();
    let title = format!(
        "{} · {} nodes · {}{}",
        history.scenario,
        history.nodes,
        history.source,
        history.seed.map(|seed| format!(" · seed {seed}")).unwrap_or_default()
    );
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="15">{}</text>
"#,
        escape(&title)
    );
    for (start, end, label) in disturbances(&history.faults, history.duration) {
        let (left, right) = (x(start as f64), x(end as f64));
        let _ = writeln!(
            out,
            r##"<rect x="{left:.1}" y="{AVAILABILITY_TOP}" width="{:.1}" height="{:.1}" fill="#f4c7c3" opacity="0.6"/><text x="{:.1}" y="{:.1}" fill="#a33">{}</text>"##,
            right - left,
            LATENCY_TOP + PANEL_HEIGHT - AVAILABILITY_TOP,
            left + 3.0,
            AVAILABILITY_TOP - 4.0,
            escape(label)
        );
    }
    for fault in history.faults.iter().filter(|fault| fault.kind == "deploy") {
        let at = x(fault.at as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" x2="{at:.1}" y1="{AVAILABILITY_TOP}" y2="{:.1}" stroke="#36c" stroke-dasharray="4 3"/>"##,
            LATENCY_TOP + PANEL_HEIGHT
        );
    }
    panel_frame(&mut out, AVAILABILITY_TOP, "answered (%)", &["100", "50", "0"]);
    let availability: Vec<(f64, f64)> = buckets
        .iter()
        .enumerate()
        .filter(|(_, bucket)| bucket.calls > 0)
        .map(|(i, bucket)| {
            let share = bucket.answered as f64 / bucket.calls as f64;
            (x((i as f64 + 0.5) * bucket_width), AVAILABILITY_TOP + PANEL_HEIGHT * (1.0 - share))
        })
        .collect();
    polyline(&mut out, &availability, "#2a7");

    let max_latency = buckets.iter().flat_map(|bucket| bucket.latencies.last()).max().copied().unwrap_or(1).max(10);
    let decades = (max_latency as f64).log10().ceil().max(1.0);
    let y_latency = |ms: f64| LATENCY_TOP + PANEL_HEIGHT * (1.0 - (ms.max(1.0)).log10() / decades);
    let top_label = format!("{}", 10f64.powf(decades));
    let middle_label = format!("{}", 10f64.powf((decades / 2.0).round()));
    panel_frame(&mut out, LATENCY_TOP, "latency (ms, log)", &[&top_label, &middle_label, "1"]);
    for (q, colour) in [(0.5, "#36c"), (0.99, "#c63")] {
        let points: Vec<(f64, f64)> = buckets
            .iter()
            .enumerate()
            .filter(|(_, bucket)| !bucket.latencies.is_empty())
            .map(|(i, bucket)| (x((i as f64 + 0.5) * bucket_width), y_latency(percentile(&bucket.latencies, q))))
            .collect();
        polyline(&mut out, &points, colour);
    }
    let axis_y = LATENCY_TOP + PANEL_HEIGHT + 18.0;
    for step in 0..=5 {
        let t = duration * step as f64 / 5.0;
        let _ = writeln!(out, r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{:.0} s</text>"#, x(t), t / 1000.0);
    }
    let legend_y = HEIGHT - 12.0;
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{legend_y}"><tspan fill="#2a7">— answered</tspan>  <tspan fill="#36c">— p50 latency</tspan>  <tspan fill="#c63">— p99 latency</tspan>  <tspan fill="#a33">■ disturbance</tspan>  <tspan fill="#36c">┆ deploy + name re-point</tspan></text>"##
    );
    out.push_str("</svg>\n");
    out
}

/// Calls by the bucket of time they started in.
fn buckets(history: &HistoryFile) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> =
        (0..BUCKETS).map(|_| Bucket { calls: 0, answered: 0, latencies: Vec::new() }).collect();
    let duration = history.duration.max(1);
    for call in &history.calls {
        let index = ((call.started as u128 * BUCKETS as u128) / duration as u128).min(BUCKETS as u128 - 1) as usize;
        let bucket = &mut buckets[index];
        bucket.calls += 1;
        if let (Some(Ok(answered)), Some(finished)) = (&call.result, call.finished)
            && answered.stdout.is_some()
        {
            bucket.answered += 1;
            bucket.latencies.push(finished.saturating_sub(call.started));
        }
    }
    for bucket in &mut buckets {
        bucket.latencies.sort();
    }
    buckets
}

/// Intervals from each disturbing fault to the next restoring one.
fn disturbances(faults: &[FaultEvent], end: Time) -> Vec<(Time, Time, &str)> {
    let mut intervals = Vec::new();
    let mut open: Option<(Time, &str)> = None;
    for fault in faults {
        if fault.disturbs() && open.is_none() {
            open = Some((fault.at, fault.kind.as_str()));
        } else if fault.restores()
            && let Some((start, label)) = open.take()
        {
            intervals.push((start, fault.at, label));
        }
    }
    if let Some((start, label)) = open {
        intervals.push((start, end, label));
    }
    intervals
}

fn panel_frame(out: &mut String, top: f64, title: &str, labels: &[&str; 3]) {
    let bottom = top + PANEL_HEIGHT;
    let right = WIDTH - RIGHT;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">{title}</text>"##,
        right - LEFT,
        LEFT - 42.0,
        top + PANEL_HEIGHT / 2.0,
        LEFT - 42.0,
        top + PANEL_HEIGHT / 2.0
    );
    for (label, y) in labels.iter().zip([top, top + PANEL_HEIGHT / 2.0, bottom]) {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text><line x1="{LEFT}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            LEFT - 4.0,
            y + 4.0
        );
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], colour: &str) {
    let coordinates: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        coordinates.join(" ")
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at: Time, kind: &str) -> FaultEvent {
        FaultEvent { at, kind: kind.into(), detail: String::new() }
    }

    #[test]
    fn disturbances_run_until_the_next_restoring_fault_or_the_end() {
        let faults = [fault(5, "partition"), fault(7, "deploy"), fault(15, "heal"), fault(20, "crash")];
        assert_eq!(disturbances(&faults, 30), vec![(5, 15, "partition"), (20, 30, "crash")]);
    }

    #[test]
    fn the_plot_is_well_formed_and_escapes_text() {
        let history = HistoryFile {
            source: "real <nodes>".into(),
            scenario: "split-brain".into(),
            nodes: 3,
            seed: None,
            duration: 1_000,
            faults: vec![fault(100, "partition"), fault(600, "heal")],
            convergence_after_heal_ms: vec![Some(20)],
            calls: Vec::new(),
        };
        let svg = svg(&history);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("real &lt;nodes&gt;") && !svg.contains("<nodes>"));
        assert_eq!(svg.matches("fill=\"#f4c7c3\"").count(), 1, "one shaded partition");
    }
}
