//! The benchmark's output: a console summary with one `ratio` line per
//! comparison, a markdown report and an SVG chart (log-scale bars).

use std::fmt::Write;
use std::time::Duration;

use crate::{CallPath, FunctionResult};

/// A comparison: how many times faster `fast` is than `slow` (median over median).
struct Ratio {
    name: &'static str,
    slow: CallPath,
    fast: CallPath,
    /// The goal for this ratio, if it sets one.
    goal: Goal,
}

#[derive(Clone, Copy)]
enum Goal {
    None,
    /// A speed-up: the worst function is the one with the smallest ratio.
    AtLeast(f64),
    /// An overhead: the worst function is the one with the largest ratio.
    AtMost(f64),
}

const RATIOS: &[Ratio] = &[
    Ratio {
        name: "warm_vs_engine_per_call",
        slow: CallPath::EngineCompile,
        fast: CallPath::Warm,
        goal: Goal::AtLeast(50.0),
    },
    Ratio {
        name: "warm_vs_engine_per_call_precompiled",
        slow: CallPath::EnginePrecompiled,
        fast: CallPath::Warm,
        goal: Goal::None,
    },
    Ratio { name: "warm_vs_process_spawn", slow: CallPath::Process, fast: CallPath::Warm, goal: Goal::None },
    Ratio { name: "warm_vs_docker_run", slow: CallPath::Docker, fast: CallPath::Warm, goal: Goal::AtLeast(10_000.0) },
    Ratio {
        name: "node_uncached_vs_engine_per_call",
        slow: CallPath::EngineCompile,
        fast: CallPath::NodeUncached,
        goal: Goal::None,
    },
    Ratio {
        name: "node_uncached_vs_process_spawn",
        slow: CallPath::Process,
        fast: CallPath::NodeUncached,
        goal: Goal::None,
    },
    Ratio {
        name: "node_uncached_vs_docker_run",
        slow: CallPath::Docker,
        fast: CallPath::NodeUncached,
        goal: Goal::None,
    },
    Ratio {
        name: "restart_first_call_vs_docker_run",
        slow: CallPath::Docker,
        fast: CallPath::Restart,
        goal: Goal::None,
    },
    Ratio {
        name: "cached_vs_node_uncached",
        slow: CallPath::NodeUncached,
        fast: CallPath::NodeCached,
        goal: Goal::None,
    },
    // What the node adds to the runtime's own call (issue 16: at most 2x).
    Ratio {
        name: "node_uncached_vs_warm",
        slow: CallPath::NodeUncached,
        fast: CallPath::Warm,
        goal: Goal::AtMost(2.0),
    },
];

pub struct Report<'a> {
    pub results: &'a [FunctionResult],
    pub quick: bool,
    pub elapsed: Duration,
}

fn ratio(result: &FunctionResult, ratio: &Ratio) -> Option<f64> {
    let (slow, fast) = (result.measured(ratio.slow)?, result.measured(ratio.fast)?);
    Some(slow.median().as_secs_f64() / fast.median().as_secs_f64())
}

/// A duration with a unit that suits it.
fn human(duration: Duration) -> String {
    let us = duration.as_secs_f64() * 1e6;
    match us {
        us if us < 10.0 => format!("{us:.2} µs"),
        us if us < 1_000.0 => format!("{us:.1} µs"),
        us if us < 1_000_000.0 => format!("{:.2} ms", us / 1e3),
        us => format!("{:.2} s", us / 1e6),
    }
}

impl Report<'_> {
    /// The worst value of a ratio over all functions (the one goals are judged by).
    fn worst(&self, r: &Ratio) -> Option<f64> {
        let values = self.results.iter().filter_map(|result| ratio(result, r));
        match r.goal {
            Goal::AtMost(_) => values.reduce(f64::max),
            Goal::None | Goal::AtLeast(_) => values.reduce(f64::min),
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for result in self.results {
            writeln!(out, "\n{}({}) — median, p99, samples", result.function, result.input).unwrap();
            for (path, measured) in &result.paths {
                let written = match measured {
                    Ok(m) => writeln!(
                        out,
                        "  {:<42} {:>10} {:>10} {:>6}",
                        path.label(),
                        human(m.median()),
                        human(m.p99()),
                        m.samples.len()
                    ),
                    Err(reason) => writeln!(out, "  {:<42} {reason}", path.label()),
                };
                written.unwrap();
            }
        }
        writeln!(out).unwrap();
        for result in self.results {
            for r in RATIOS {
                if let Some(value) = ratio(result, r) {
                    writeln!(out, "ratio {}/{} {value:.1}", result.function, r.name).unwrap();
                }
            }
        }
        for r in RATIOS {
            match self.worst(r) {
                Some(value) => writeln!(out, "ratio {} {value:.1}", r.name).unwrap(),
                None => writeln!(out, "ratio {} skipped", r.name).unwrap(),
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from("# Nebula call paths\n\n");
        writeln!(
            md,
            "{} run of `scripts/bench{}` on {} ({} CPUs, Linux {}), {:.0} s. Median and p99 of each path, \
             measured in one run; ratios are median over median. Shared, noisy machine: ratios are steadier \
             than absolute times.\n",
            if self.quick { "A quick" } else { "A full" },
            if self.quick { " --quick" } else { "" },
            cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            self.elapsed.as_secs_f64(),
        )
        .unwrap();
        md += "| function (input) | path | median | p99 | samples | × warm call |\n| --- | --- | ---: | ---: | ---: | ---: |\n";
        for result in self.results {
            let warm = result.measured(CallPath::Warm).map(|m| m.median().as_secs_f64());
            for (path, measured) in &result.paths {
                let name = format!("{} ({})", result.function, result.input);
                let written = match measured {
                    Ok(m) => writeln!(
                        md,
                        "| {name} | {} | {} | {} | {} | {} |",
                        path.label(),
                        human(m.median()),
                        human(m.p99()),
                        m.samples.len(),
                        warm.map_or("".into(), |warm| format!("{:.1}", m.median().as_secs_f64() / warm)),
                    ),
                    Err(reason) => writeln!(md, "| {name} | {} | {reason} | | | |", path.label()),
                };
                written.unwrap();
            }
        }
        md += "\n## Ratios (how many times faster; `node_uncached_vs_warm`: how many times slower)\n\n| ratio |";
        for result in self.results {
            write!(md, " {} |", result.function).unwrap();
        }
        md += " worst | goal |\n| --- |";
        md += &" ---: |".repeat(self.results.len() + 2);
        md += "\n";
        for r in RATIOS {
            write!(md, "| {} |", r.name).unwrap();
            for result in self.results {
                write!(md, " {} |", ratio(result, r).map_or("skipped".into(), |v| format!("{v:.1}"))).unwrap();
            }
            let worst = self.worst(r);
            let (bound, met) = match r.goal {
                Goal::None => (String::new(), None),
                Goal::AtLeast(goal) => (format!("≥ {goal}"), worst.map(|worst| worst >= goal)),
                Goal::AtMost(goal) => (format!("≤ {goal}"), worst.map(|worst| worst <= goal)),
            };
            let goal = match met {
                _ if bound.is_empty() => bound,
                Some(true) => format!("{bound} met"),
                Some(false) => format!("{bound} **missed**"),
                None => format!("{bound} not measured"),
            };
            writeln!(md, " {} | {goal} |", worst.map_or("skipped".into(), |v| format!("{v:.1}"))).unwrap();
        }
        md += "\n![call paths](call-paths.svg)\n";
        md
    }

    /// Horizontal bars on a log scale, one group per function.
    pub fn svg(&self) -> String {
        let (label_width, plot_width, bar, gap) = (330.0, 520.0, 14.0, 4.0);
        let (low, high) = (-7.0_f64, 1.0_f64); // 100 ns .. 10 s, as log10 seconds
        let x = |seconds: f64| label_width + (seconds.log10().clamp(low, high) - low) / (high - low) * plot_width;
        let rows: usize = self.results.iter().map(|r| r.paths.len() + 1).sum();
        let height = 40.0 + rows as f64 * (bar + gap) + 30.0;
        let width = label_width + plot_width + 90.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"18\" font-size=\"14\">Nebula call paths: median time per call (log scale)</text>\n"
        );
        for (decade, label) in (low as i32..=high as i32)
            .zip(["100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s"])
        {
            let gx = x(10f64.powi(decade));
            writeln!(
                svg,
                "<line x1=\"{gx}\" y1=\"30\" x2=\"{gx}\" y2=\"{}\" stroke=\"#ddd\"/>\
                 <text x=\"{gx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>",
                height - 25.0,
                height - 10.0
            )
            .unwrap();
        }
        let mut y = 36.0;
        for result in self.results {
            writeln!(
                svg,
                "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}({})</text>",
                y + bar - 3.0,
                result.function,
                result.input
            )
            .unwrap();
            y += bar + gap;
            for (path, measured) in &result.paths {
                writeln!(svg, "<text x=\"20\" y=\"{}\">{}</text>", y + bar - 3.0, escape(path.label())).unwrap();
                match measured {
                    Ok(m) => {
                        let seconds = m.median().as_secs_f64();
                        let end = x(seconds);
                        writeln!(
                            svg,
                            "<rect x=\"{label_width}\" y=\"{y}\" width=\"{}\" height=\"{bar}\" fill=\"{}\"/>\
                             <text x=\"{}\" y=\"{}\">{}</text>",
                            (end - label_width).max(1.0),
                            colour(*path),
                            end + 4.0,
                            y + bar - 3.0,
                            human(m.median())
                        )
                        .unwrap();
                    }
                    Err(reason) => writeln!(
                        svg,
                        "<text x=\"{}\" y=\"{}\" fill=\"#888\">{}</text>",
                        label_width + 4.0,
                        y + bar - 3.0,
                        escape(reason)
                    )
                    .unwrap(),
                }
                y += bar + gap;
            }
        }
        svg += "</svg>\n";
        svg
    }
}

fn colour(path: CallPath) -> &'static str {
    match path {
        CallPath::Warm | CallPath::NodeUncached | CallPath::NodeCached | CallPath::Restart => "#2a7de1",
        CallPath::EngineCompile | CallPath::EnginePrecompiled => "#e1a02a",
        CallPath::Process => "#7a7a7a",
        CallPath::Docker => "#d9534f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}
