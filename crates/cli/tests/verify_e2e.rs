//! `sluice run --verify` after a run was killed (`kill -9`) and restarted, against the
//! local endpoints: the restart judges the deployment's stored state against the whole
//! raw stream and says which of its own counts it cannot judge one by one. Needs
//! `eval "$(infra/local/up)"` and `--features integration`.
#![cfg(feature = "integration")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The aggregate lines `sluice query --json` prints now.
fn stored(prefix: &str) -> Expected {
    let (out, _) = sluice_ok(&["query", "--prefix", prefix, "--json"]);
    aggregates_of(&json_lines(&out))
}

#[test]
fn verify_after_a_killed_run_judges_the_whole_input_and_exits_0() {
    let prefix = unique_prefix();
    let dir = tempdir();
    let (path, expected, invalid) = write_input_spanning(&dir, 1_000, 23, 600_000);
    let file = path.to_str().expect("utf-8");
    sluice_ok(&["setup", "--prefix", &prefix, "--shards", "1"]);

    // The first run writes the file, then is killed once it has committed its first
    // aggregates: long before it is done.
    let mut first = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--prefix", &prefix, "--file", file])
        .env_remove("SLUICE_ENDPOINT")
        .env_remove("SLUICE_PREFIX")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice run");
    let deadline = Instant::now() + Duration::from_secs(180);
    while stored(&prefix).is_empty() {
        assert!(
            first.try_wait().expect("poll the run").is_none(),
            "the first run exited on its own"
        );
        assert!(Instant::now() < deadline, "no aggregate within 3 minutes");
        std::thread::sleep(Duration::from_millis(300));
    }
    first.kill().expect("SIGKILL the first run");
    first.wait().expect("reap the first run");
    let unique: u64 = expected
        .iter()
        .filter(|(k, _)| k.2 == 60)
        .map(|(_, v)| v.0)
        .sum();
    let counted_before: u64 = stored(&prefix)
        .iter()
        .filter(|(k, _)| k.2 == 60)
        .map(|(_, v)| v.0)
        .sum();
    assert!(
        counted_before < unique,
        "the first run was stopped before it was done ({counted_before} of {unique} counted)"
    );

    // The restart writes the file again and reads every stream from its oldest record.
    let (out, err) = sluice_ok(&[
        "run",
        "--prefix",
        &prefix,
        "--file",
        file,
        "--verify",
        "--until-idle",
        "3",
        "--json",
    ]);
    let summary = &json_lines(&out)[0];
    assert_eq!(summary["verified"], "exact", "{summary}\n{err}");
    assert!(
        summary["not_judged"]
            .as_str()
            .is_some_and(|n| n.contains("counted and duplicates are judged as their sum")),
        "{summary}"
    );
    assert!(err.contains("not judged: "), "{err}");
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {summary}"))
    };
    // The raw stream holds the file twice; every valid line past the ones the first run
    // counted is counted here or collapsed as a duplicate.
    assert_eq!(n("events_in"), 2_000);
    assert_eq!(n("dead_letter"), 2 * invalid as u64);
    assert_eq!(n("late"), 0);
    assert_eq!(n("counted") + n("duplicates"), 2_000 - 2 * invalid as u64);
    assert!(
        n("counted") < unique,
        "the first run counted some: {summary}"
    );
    // What is stored is what a clean run stores: the independent fold of the file.
    let (queried, _) = sluice_ok(&["query", "--prefix", &prefix, "--json"]);
    assert_aggregates_match(&json_lines(&queried), &expected);
}
