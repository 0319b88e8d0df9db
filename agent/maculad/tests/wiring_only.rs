//! Invariant (docs/ARCHITECTURE.md): **maculad holds no protocol rule.** Timers and thresholds
//! are decisions; they live in the library crates, as constants or inside sans-IO units tested
//! there (`macula_mesh::announce`, `macula_store::inventory::Schedule`,
//! `macula_proof::book`, …). So `maculad`'s sources hold no literal duration except the named
//! bounds of the daemon's own lifecycle listed here.

/// The daemon's own bounds (shutdown steps, how long the CLI's ping waits).
const LIFECYCLE: &[&str] = &[
    "const DRAIN_TRANSFERS:",
    "const STOP_WORKERS:",
    "const LEAVE_MESH:",
    "const PING_DEADLINE:",
];

/// Whether `line` makes a `Duration` from a number written in it.
fn literal_duration(line: &str) -> bool {
    line.match_indices("Duration::from_").any(|(i, _)| {
        let rest = &line[i..];
        rest.find('(')
            .and_then(|p| rest[p + 1..].chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn maculad_holds_no_timer_or_threshold_of_its_own() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        // The daemon's own unit tests (its worker machinery) may wait as they like.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") || !literal_duration(l) {
                continue;
            }
            if LIFECYCLE.iter().any(|c| l.contains(c)) {
                continue;
            }
            found.push(format!("{}:{}: {l}", path.display(), n + 1));
        }
    }
    assert!(
        files >= 5,
        "maculad's sources not found in {}",
        dir.display()
    );
    assert!(
        found.is_empty(),
        "timers or thresholds in maculad: move the rule into its library crate (a constant or a \
         sans-IO unit with its test) and call it from maculad:\n{}",
        found.join("\n")
    );
}

#[test]
fn literal_durations_are_recognised() {
    assert!(literal_duration("sleep(Duration::from_secs(2)).await"));
    assert!(literal_duration(
        "tokio::time::interval(std::time::Duration::from_millis(500))"
    ));
    assert!(!literal_duration(
        "Duration::from_millis(policy.min_interval_ms)"
    ));
    assert!(!literal_duration("let d = cfg.deadline;"));
}
