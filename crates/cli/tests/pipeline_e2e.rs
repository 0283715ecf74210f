//! The whole pipeline over real wire protocols: `setup` → `produce --file` →
//! `run --until-idle` → `query --json`, against aggregates computed independently from
//! the file, and the same file through `sluice demo`. Needs `eval "$(infra/local/up)"`.
#![cfg(feature = "integration")]

mod common;

use common::*;

#[test]
fn setup_produce_run_query_reproduces_an_independent_fold_and_the_demo() {
    let prefix = unique_prefix();
    let dir = tempdir();
    let (path, expected, invalid) = write_input_spanning(&dir, 1_500, 41, 1_200_000);
    let file = path.to_str().expect("utf-8");
    sluice_ok(&["setup", "--prefix", &prefix, "--scenario", "iot"]);
    let (produced, _) = sluice_ok(&["produce", "--prefix", &prefix, "--file", file]);
    assert!(produced.contains("sent 1500"), "{produced}");
    let (ran, _) = sluice_ok(&["run", "--prefix", &prefix, "--until-idle", "3", "--json"]);
    let summary = &json_lines(&ran)[0];
    assert_eq!(summary["events_in"], 1_500);
    assert_eq!(summary["dead_letter"], invalid as u64);

    let (queried, _) = sluice_ok(&["query", "--prefix", &prefix, "--json"]);
    let lines = json_lines(&queried);
    assert_aggregates_match(&lines, &expected);

    // The same file through the in-process demo gives the same aggregates.
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--file", file, "--json"])
        .output()
        .expect("demo");
    assert!(demo.status.success());
    let demo_lines = json_lines(&String::from_utf8_lossy(&demo.stdout));
    assert_eq!(
        aggregates_of(&lines).keys().collect::<Vec<_>>(),
        aggregates_of(&demo_lines).keys().collect::<Vec<_>>()
    );
    assert_aggregates_match(&demo_lines, &expected);

    // Every invalid line is on the dead-letter stream, with its reason.
    let (letters, _) = sluice_ok(&["dead-letters", "--prefix", &prefix, "--json"]);
    let letters = json_lines(&letters);
    assert_eq!(letters.len(), invalid);
    for l in &letters {
        assert_eq!(l["stage"], "ingest");
        assert!(
            ["not_json", "missing_field", "wrong_type"]
                .contains(&l["reason"].as_str().expect("reason")),
            "{l}"
        );
    }

    // Running again re-reads the streams from the start: everything is a duplicate.
    let (again, _) = sluice_ok(&["run", "--prefix", &prefix, "--until-idle", "2", "--json"]);
    assert_eq!(json_lines(&again)[0]["counted"], 0, "nothing counted twice");
    let (queried, _) = sluice_ok(&["query", "--prefix", &prefix, "--json"]);
    assert_aggregates_match(&json_lines(&queried), &expected);
}

#[test]
fn chaos_runs_against_real_endpoints_verify_exact() {
    let dir = tempdir();
    for (seed, delivery) in [
        ("1", "exactly-once"),
        ("2", "exactly-once"),
        ("3", "at-least-once"),
    ] {
        let prefix = unique_prefix();
        let (path, _, _) = write_input_spanning(&dir, 800, seed.parse().expect("seed"), 900_000);
        sluice_ok(&["setup", "--prefix", &prefix]);
        let (out, err) = sluice_ok(&[
            "run",
            "--prefix",
            &prefix,
            "--file",
            path.to_str().expect("utf-8"),
            "--chaos",
            seed,
            "--verify",
            "--delivery",
            delivery,
            "--until-idle",
            "3",
            "--json",
        ]);
        let summary = &json_lines(&out)[0];
        assert_eq!(
            summary["verified"], "exact",
            "seed {seed} {delivery}: {summary}\n{err}"
        );
        let n = |k: &str| summary[k].as_u64().expect(k);
        assert_eq!(
            n("events_in"),
            n("counted") + n("dead_letter") + n("late") + n("duplicates")
        );
        assert!(summary["injected"].is_object());
    }
}
