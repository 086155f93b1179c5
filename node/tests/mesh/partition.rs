//! A partition (every cross-group link blocked on both sides) and its heal.

use std::time::Duration;

use nebula_protocol::{CallKey, ModuleId};
use reqwest::StatusCode;

use crate::common::function;
use crate::harness::{Mesh, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_partition_heals_everything_converges() {
    let mesh = Mesh::start(4, |_, _| {}).await;
    let (left, right) = ([0, 1], [2, 3]);
    let shared = mesh.nodes[0].deploy(function("fibonacci"), "shared").await;
    for node in &mesh.nodes {
        eventually("the first module is everywhere", Duration::from_secs(10), || async {
            node.node.modules().await.len() == 1
        })
        .await;
    }

    mesh.partition(&left, &right, true);
    for &i in &left {
        eventually("the cut is in place", Duration::from_secs(10), || async {
            mesh.nodes[i].node.peers().await.iter().filter(|p| p.connected).count() == 1
        })
        .await;
    }

    // Both sides stay available for what they hold: calls by hash answer everywhere.
    for node in &mesh.nodes {
        assert_eq!(node.get(&format!("/api/{shared}/20")).await.text(), "6765");
    }
    // Each side deploys something and re-points a name; the other side cannot know yet.
    let left_only = mesh.nodes[0].deploy(function("echo"), "left-only").await;
    let right_only = mesh.nodes[2].deploy(function("hash"), "right-only").await;
    mesh.nodes[1].node.set_name("pointer", &shared).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.nodes[3].node.set_name("pointer", &right_only).await.unwrap();
    let left_result = mesh.nodes[0].get("/api/left-only/from-the-left").await;
    assert_eq!(left_result.status, StatusCode::OK);
    assert_eq!(mesh.nodes[2].get("/api/left-only/x").await.status, StatusCode::NOT_FOUND);

    mesh.partition(&left, &right, false);
    for node in &mesh.nodes {
        eventually("modules converge after the heal", Duration::from_secs(20), || async {
            let held: Vec<String> = node.node.modules().await.iter().map(|m| m.module.to_hex()).collect();
            [&shared, &left_only, &right_only].iter().all(|m| held.contains(m))
        })
        .await;
    }
    // Names converge to one winner everywhere (last writer wins: the higher version, then the publisher).
    let winner = |i: usize| {
        mesh.nodes[i].node.names().into_iter().find(|record| record.name == "pointer").map(|record| record.module)
    };
    for i in 0..4 {
        eventually("the name converges", Duration::from_secs(20), || async {
            winner(i).is_some() && winner(i) == winner(0)
        })
        .await;
    }
    // The left side's result is handed to its owners across the heal: once
    // the best owner as 3 sees it holds it, a call at 3 is a hit of the left's run.
    let key = CallKey::new(&left_only.parse::<ModuleId>().unwrap(), b"from-the-left");
    eventually("3 is connected to every node again", Duration::from_secs(20), || async {
        mesh.nodes[3].node.peers().await.iter().filter(|p| p.connected).count() == 3
    })
    .await;
    let owner = mesh.nodes[3].node.owners(&key).await.remove(0);
    let owner = (0..4).find(|&i| mesh.id(i) == owner).expect("the owner is a node of the mesh");
    eventually("the result reaches its owner", Duration::from_secs(20), || async {
        mesh.nodes[owner].node.is_cached(&left_only, b"from-the-left")
    })
    .await;
    let reconciled = mesh.nodes[3].get("/api/left-only/from-the-left").await;
    assert_eq!(reconciled.text(), "from-the-left");
    assert_eq!(reconciled.header("x-nebula-cache"), "hit");
    let executed_by = reconciled.header("x-nebula-executed-by");
    assert!(executed_by == mesh.id(0) || executed_by == mesh.id(1), "run on the left, by {executed_by}");
    mesh.stop().await;
}
