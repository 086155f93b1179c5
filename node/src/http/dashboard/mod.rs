//! The dashboard at `/`: one server-rendered HTML page per request, with
//! inline SVG charts, that refreshes itself (meta refresh: no script, no
//! external resource). Every string that reaches the page goes through maud,
//! which escapes it: names, references and inputs of calls, peer ids and
//! addresses all come from users or peers.

mod charts;
mod data;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use charts::{Bar, Series, bar_chart, line_chart, ratio_bar};
pub use data::{DashboardData, ModuleRow, gather};

use crate::service::Node;

/// No script may run, nothing may be loaded from elsewhere, the page may not be framed.
pub const DASHBOARD_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const DEFAULT_REFRESH_SECONDS: u32 = 5;

#[derive(Deserialize)]
pub struct DashboardQuery {
    /// Seconds between refreshes; 0 turns refreshing off.
    refresh: Option<u32>,
}

pub async fn dashboard(State(node): State<Node>, Query(query): Query<DashboardQuery>) -> Response {
    let refresh = query.refresh.unwrap_or(DEFAULT_REFRESH_SECONDS).min(3600);
    let data = gather(&node).await;
    let mut response = render(&data, refresh).into_string().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DASHBOARD_CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

const STYLE: &str = "
body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:0;background:#f5f6f8;color:#1d1f24;font-size:14px}
header{background:#1f2a44;color:#fff;padding:10px 20px}header h1{font-size:20px;margin:0}
header .sub{color:#c9d3ea;font-size:12px;word-break:break-all}
main{padding:12px 20px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;margin:0 0 14px}
h2{font-size:16px;margin:2px 0 8px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 12px;min-width:120px}
.tile b{display:block;font-size:20px}.tile span{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{color:#555;font-weight:normal;background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;word-break:break-all}
svg.chart{width:100%;height:auto;max-width:900px;display:block}
.hit{color:#237a3b}.miss{color:#a1581a}.fail{color:#b3261e}.state.compiling{color:#a1581a}.state.failed{color:#b3261e}
.muted{color:#888}
";

fn short(id: &str) -> &str {
    let start = id.len().saturating_sub(8);
    id.get(start..).unwrap_or(id)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "—".into() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
}

fn tile(value: impl maud::Render, label: &str) -> Markup {
    html! { div.tile { b { (value) } span { (label) } } }
}

/// The whole page. Pure: the same data gives the same page (tests call it directly).
pub fn render(data: &DashboardData, refresh_seconds: u32) -> Markup {
    let status = &data.status;
    let activity = &data.activity;
    let connected = data.peers.iter().filter(|peer| peer.connected).count();
    let window: Vec<_> = activity.per_second.iter().rev().take(60).collect();
    let last_minute_calls: u32 = window.iter().map(|s| s.calls).sum();
    let calls_series = |f: fn(&crate::service::SecondCounts) -> u32| -> Vec<f64> {
        activity.per_second.iter().map(|s| f64::from(f(s))).collect()
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if refresh_seconds > 0 { meta http-equiv="refresh" content=(refresh_seconds); }
                meta name="viewport" content="width=device-width";
                title { "Nebula node " (short(&status.node_id)) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Nebula node " span #node-id { (status.node_id) } }
                    div.sub {
                        "version " (status.version) " · up " (status.uptime_seconds) " s · "
                        @if refresh_seconds > 0 { "refreshes every " (refresh_seconds) " s" } @else { "not refreshing" }
                        @for address in &status.listen_addresses { " · " code { (address) } }
                    }
                }
                main {
                    div.tiles #tiles {
                        (tile(format!("{connected} / {}", data.peers.len()), "peers connected"))
                        (tile(status.modules, "modules"))
                        @if status.compiling > 0 { (tile(status.compiling, "compiling")) }
                        (tile(status.names, "names"))
                        (tile(activity.total_calls, "calls since start"))
                        (tile(format!("{:.2}", f64::from(last_minute_calls) / 60.0), "calls/s, last minute"))
                        (tile(percent(activity.total_hits, activity.total_calls), "cache hit rate"))
                        (tile(status.memory_cache_entries, "results in memory"))
                        (tile(bytes(status.memory_cache_bytes), "memory cache"))
                        (tile(status.stored_results, "results on disk"))
                        (tile(format!("{} / {}", status.calls_in_flight, status.concurrency), "in flight / slots"))
                        (tile(status.calls_queued, "waiting for a slot"))
                        (tile(if status.deploys_open { "open" } else { "token" }, "deploys and names"))
                    }
                    section #activity {
                        h2 { "Calls per second" }
                        (line_chart("calls-chart", "Calls per second, last 120 seconds", "120 s ago", &[
                            Series { label: "calls", color: "#4a7bd0", values: calls_series(|s| s.calls), area: true },
                            Series { label: "cache hits", color: "#3b9b5a", values: calls_series(|s| s.hits), area: false },
                            Series { label: "executions", color: "#e39b3b", values: calls_series(|s| s.executions), area: false },
                        ]))
                        h2 { "Cache" }
                        (ratio_bar("cache-chart", "Cache hits since start", activity.total_hits, activity.total_calls,
                            "hits", "other calls (misses, joined, failures)"))
                    }
                    section #peers {
                        h2 { "Peers (" (connected) " connected)" }
                        (bar_chart("rtt-chart", "Round-trip time per peer, ms", &data.peers.iter()
                            .filter(|peer| peer.connected)
                            .map(|peer| Bar {
                                label: short(&peer.peer).to_owned(),
                                value: peer.rtt_ms.unwrap_or(0.0),
                                note: peer.rtt_ms.map_or("no ping yet".into(), |rtt| format!("{rtt:.2} ms")),
                            })
                            .collect::<Vec<_>>()))
                        table {
                            tr { th { "peer" } th { "connected" } th { "rtt" } th { "load" } th { "penalty" } th { "addresses" } }
                            @for peer in &data.peers {
                                tr.peer {
                                    td { code { (peer.peer) } }
                                    td {
                                        @if let Some(reason) = &peer.refused { "refused: " (reason) }
                                        @else if peer.connected { "yes" } @else { "no" }
                                    }
                                    td.num { @if let Some(rtt) = peer.rtt_ms { (format!("{rtt:.2} ms")) } @else { "—" } }
                                    td.num { (peer.executing) " / " (peer.capacity) }
                                    td.num { (peer.penalty) }
                                    td { @for address in &peer.addresses { code { (address) } br; } }
                                }
                            }
                        }
                        @if data.peers.is_empty() { p.muted { "no peers known" } }
                    }
                    section #modules {
                        h2 { "Functions (" (data.modules.len()) ")" }
                        (bar_chart("calls-per-module-chart", "Calls per module since start", &data.modules.iter()
                            .filter(|row| row.counters.calls > 0)
                            .take(10)
                            .map(|row| Bar {
                                label: row.names.first().cloned().unwrap_or_else(|| row.module.short()),
                                value: row.counters.calls as f64,
                                note: format!("{} calls, {} hits", row.counters.calls, row.counters.hits),
                            })
                            .collect::<Vec<_>>()))
                        table {
                            tr {
                                th { "module" } th { "names" } th { "size" } th { "state" } th { "content type" }
                                th { "calls" } th { "hits" } th { "executions here" } th { "fuel here" } th { "avg run" }
                            }
                            @for row in &data.modules {
                                tr.module {
                                    td { code title=(row.module.to_hex()) { (row.module.short()) } }
                                    td { @for name in &row.names {
                                        @if row.content_type == Some("text/html; charset=utf-8") {
                                            a href={ "/api/" (utf8_percent_encode(name, NON_ALPHANUMERIC)) } { (name) } " "
                                        } @else { (name) " " }
                                    } }
                                    td.num { (bytes(row.size)) }
                                    td class={ "state " (row.state) } { (row.state) }
                                    td { (row.content_type.unwrap_or("none (text/plain)")) }
                                    td.num { (row.counters.calls) }
                                    td.num { (row.counters.hits) }
                                    td.num { (row.counters.executions) }
                                    td.num { (row.counters.fuel_used) }
                                    td.num { @if row.counters.executions > 0 {
                                        (row.counters.run_us / row.counters.executions) " µs"
                                    } @else { "—" } }
                                }
                            }
                        }
                    }
                    section #names {
                        h2 { "Names (" (data.names.len()) ")" }
                        table {
                            tr { th { "name" } th { "module" } th { "version" } th { "publisher" } }
                            @for record in &data.names {
                                tr.name {
                                    td { (record.name) }
                                    td { code { (record.module.short()) } }
                                    td.num { (record.version) }
                                    td { code { (short(&record.publisher)) } }
                                }
                            }
                        }
                    }
                    section #footprint {
                        h2 { "Footprint per function" }
                        table {
                            tr {
                                th { "function" } th { "executions here" } th { "mean CPU" } th { "mean wall" }
                                th { "mean fuel" } th { "peak memory" } th { "energy / execution" } th { "energy" }
                            }
                            @for row in &data.footprint {
                                tr.footprint {
                                    td { @if row.names.is_empty() { code { (row.module.short()) } } @else { (row.names.join(", ")) } }
                                    td.num { (row.executions) }
                                    td.num { (format!("{:.0} µs", row.mean_cpu_us)) }
                                    td.num { (format!("{:.0} µs", row.mean_wall_us)) }
                                    td.num { (format!("{:.0}", row.mean_fuel)) }
                                    td.num { (bytes(row.peak_memory_bytes)) }
                                    td.num { (format!("{:.4} µWh", row.energy_uwh_per_execution)) }
                                    td { (row.energy_source.as_str()) }
                                }
                            }
                        }
                        @if data.footprint.is_empty() { p.muted { "nothing executed here yet" } }
                    }
                    section #recent {
                        h2 { "Recent calls" }
                        table {
                            tr { th { "time (UTC)" } th { "function" } th { "input" } th { "cache" } th { "outcome" } th { "time" } th { "executed by" } }
                            @for call in &activity.recent {
                                tr.call {
                                    td { (clock(call.unix_ms)) }
                                    td { code { (call.reference) } @if call.forwarded { " " span.muted { "(forwarded)" } } }
                                    td { code { (call.input_preview) } @if call.input_bytes > call.input_preview.len() { span.muted { "… (" (call.input_bytes) " bytes)" } } }
                                    td class=(call.cache) { (call.cache) }
                                    td class=(if call.outcome == "success" { "" } else { "fail" }) { (call.outcome) }
                                    td.num { (call.micros) " µs" }
                                    td { code { (short(&call.executed_by)) } }
                                }
                            }
                        }
                        @if activity.recent.is_empty() { p.muted { "no calls yet" } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{ActivitySnapshot, ModuleCounters, NodeStatus, PeerSummary, RecentCall};
    use nebula_protocol::{Limits, ModuleId, NameRecord};

    const HOSTILE: &str = "\"><img src=x onerror=alert(1)><script>alert(2)</script>";

    /// Every string a user or a peer controls carries markup; none may survive as markup.
    #[test]
    fn escapes_every_string_from_users_and_peers() {
        let module = ModuleId::of_bytes(b"m");
        let data = DashboardData {
            status: NodeStatus {
                node_id: HOSTILE.into(),
                version: "0".into(),
                uptime_seconds: 1,
                modules: 1,
                names: 1,
                memory_cache_entries: 0,
                memory_cache_bytes: 0,
                stored_results: 0,
                calls_in_flight: 0,
                calls_queued: 0,
                deploys_open: true,
                concurrency: 2,
                default_limits: Limits::default(),
                max_limits: Limits::default(),
                peers_connected: 1,
                listen_addresses: vec![HOSTILE.into()],
                compiling: 0,
                max_module_bytes: 1,
                loaded_code_bytes: 0,
            },
            peers: vec![PeerSummary {
                peer: HOSTILE.into(),
                connected: true,
                addresses: vec![HOSTILE.into()],
                rtt_ms: Some(1.5),
                executing: 0,
                capacity: 2,
                penalty: 0,
                refused: Some(HOSTILE.into()),
            }],
            modules: vec![ModuleRow {
                module,
                size: 10,
                names: vec![HOSTILE.into()],
                content_type: Some("text/html; charset=utf-8"),
                state: "compiling".into(),
                counters: ModuleCounters { calls: 3, ..ModuleCounters::default() },
            }],
            names: vec![NameRecord { name: HOSTILE.into(), module, version: 1, publisher: HOSTILE.into() }],
            activity: ActivitySnapshot {
                recent: vec![RecentCall {
                    unix_ms: 0,
                    reference: HOSTILE.into(),
                    input_preview: HOSTILE.into(),
                    input_bytes: HOSTILE.len(),
                    module: Some(module),
                    cache: "hit",
                    outcome: "success",
                    micros: 1,
                    executed_by: HOSTILE.into(),
                    forwarded: false,
                }],
                ..ActivitySnapshot::default()
            },
            footprint: vec![crate::footprint::FunctionFootprint {
                module,
                names: vec![HOSTILE.into()],
                calls: 1,
                executions: 1,
                cache_hits: 0,
                mean_cpu_us: 12.0,
                mean_wall_us: 15.0,
                mean_fuel: 100.0,
                peak_memory_bytes: 65_536,
                energy_uwh_per_execution: 0.03,
                energy_uwh_per_call: 0.03,
                cpu_us_total: 12.0,
                wall_us_total: 15.0,
                fuel_total: 100,
                energy_uwh_total: 0.03,
                energy_source: crate::footprint::EnergySource::Estimated,
            }],
        };
        let page = render(&data, 5).into_string();
        for markup in ["<img", "<script", "\"><img", "onerror=alert(1)>"] {
            assert!(!page.contains(markup), "{markup} reached the page unescaped");
        }
        assert!(page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
        // The name in a link is percent-encoded in the URL as well.
        assert!(page.contains("href=\"/api/%22%3E%3Cimg"), "{page}");
    }
}
