//! The footprint of calls: on each answer, per function at /footprint and on
//! /metrics, and as `nebula footprint`.

use crate::common::{TestNode, function, nebula_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_and_each_function_reports_what_it_cost() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let hash = node.deploy(function("fibonacci"), "fibonacci").await;
    node.deploy(function("prime-number"), "prime-number").await;

    let miss = node.get("/api/fibonacci/90").await;
    assert_eq!((miss.header("x-nebula-cache"), miss.header("x-nebula-footprint")), ("miss", "here"));
    let cpu_us: f64 = miss.header("x-nebula-cpu-us").parse().unwrap();
    let wall_us: f64 = miss.header("x-nebula-wall-us").parse().unwrap();
    assert!(cpu_us > 0.0 && wall_us > 0.0, "cpu {cpu_us} µs, wall {wall_us} µs");
    let peak: u64 = miss.header("x-nebula-peak-memory-bytes").parse().unwrap();
    assert!(peak >= 65_536, "a wasm page at least: {peak}");
    let energy: f64 = miss.header("x-nebula-energy-uwh").parse().unwrap();
    assert!(energy > 0.0);
    // Measured only where RAPL counters are readable, and not before the meter's second sample.
    let source = miss.header("x-nebula-energy-source").to_owned();
    assert!(source == "estimated" || source == "measured", "{source}");

    let hit = node.get("/api/fibonacci/90").await;
    assert_eq!((hit.header("x-nebula-cache"), hit.header("x-nebula-footprint")), ("hit", "cached"));
    assert_eq!(hit.header("x-nebula-cpu-us"), "", "a cache hit runs nothing");
    node.get("/api/fibonacci/91").await;
    node.get("/api/prime-number/1000").await;

    let report = node.get("/footprint").await.json();
    assert!(report["energy"]["watts_per_core"].as_f64().unwrap() > 0.0);
    let functions = report["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2);
    let fib = &functions[0];
    assert_eq!((fib["module"].as_str().unwrap(), fib["names"][0].as_str().unwrap()), (hash.as_str(), "fibonacci"));
    assert_eq!(
        (fib["calls"].as_u64(), fib["executions"].as_u64(), fib["cache_hits"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    // Fuel per execution is deterministic and matches what the answers said.
    let fuel_90: u64 = miss.header("x-nebula-fuel").parse().unwrap();
    let fuel_91: u64 = node.get("/api/fibonacci/91").await.header("x-nebula-fuel").parse().unwrap();
    assert_eq!(fib["fuel_total"].as_u64(), Some(fuel_90 + fuel_91));
    assert!(fib["mean_cpu_us"].as_f64().unwrap() > 0.0);
    assert!(fib["energy_uwh_per_call"].as_f64().unwrap() < fib["energy_uwh_per_execution"].as_f64().unwrap());

    let label = format!("{{module=\"{hash}\",function=\"fibonacci\"}}");
    assert_eq!(node.metric(&format!("nebula_function_executions_total{label}")).await, 2.0);
    assert_eq!(node.metric(&format!("nebula_function_calls_total{label}")).await, 4.0);
    assert_eq!(node.metric(&format!("nebula_function_fuel_total{label}")).await, (fuel_90 + fuel_91) as f64);
    assert!(node.metric(&format!("nebula_function_cpu_seconds_total{label}")).await > 0.0);

    let url = node.url.clone();
    let table = tokio::task::spawn_blocking(move || {
        std::process::Command::new(nebula_binary()).args(["footprint", "--node", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout);
    let fib_row = table.lines().find(|line| line.starts_with("fibonacci ")).unwrap_or_else(|| panic!("{table}"));
    let columns: Vec<&str> = fib_row.split_whitespace().collect();
    assert_eq!(&columns[1..4], ["4", "2", "2"], "calls, executions, hits: {table}");
    assert!(table.contains("prime-number") && table.contains("energy: "), "{table}");
    node.stop().await;
}
