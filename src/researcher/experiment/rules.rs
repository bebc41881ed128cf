//! The rules of running rounds, as pure functions: how many rounds a call
//! runs against the round limit (Fed-BioMed's semantics, with its
//! warnings), when the final validation is due, and whether a round that
//! lost nodes still aggregates.

use std::collections::BTreeMap;

use crate::researcher::ExperimentError;

/// What a call to run rounds does before any round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RunPlan {
    /// Rounds to run now (0: none).
    pub rounds: u32,
    /// The round limit from now on.
    pub round_limit: Option<u32>,
    /// Told to the researcher, when the call is not run as asked.
    pub warning: Option<String>,
}

fn nothing(round_limit: Option<u32>, warning: String) -> RunPlan {
    RunPlan {
        rounds: 0,
        round_limit,
        warning: Some(warning),
    }
}

fn limit_reached(limit: u32) -> String {
    format!("round limit of {limit} was reached; nothing to run")
}

/// `run(rounds, increase)` after `done` rounds: `rounds` rounds, or with
/// `None` every round left to the limit. With `increase`, a limit too low
/// is raised; otherwise the rounds are clipped to it.
pub(super) fn rounds_to_run(
    rounds: Option<u32>,
    round_limit: Option<u32>,
    done: u32,
    increase: bool,
) -> Result<RunPlan, ExperimentError> {
    let run = |rounds, round_limit| RunPlan {
        rounds,
        round_limit,
        warning: None,
    };
    Ok(match (rounds, round_limit) {
        (Some(0), _) => {
            return Err(ExperimentError::Argument(
                "rounds must be at least 1".into(),
            ));
        }
        (None, None) => nothing(
            None,
            "cannot run: give a number of rounds or set a round limit".into(),
        ),
        (None, Some(limit)) => match limit.saturating_sub(done) {
            0 => nothing(round_limit, limit_reached(limit)),
            left => run(left, round_limit),
        },
        (Some(k), None) => run(k, None),
        (Some(k), Some(limit)) if done.saturating_add(k) <= limit => run(k, round_limit),
        (Some(k), Some(limit)) if increase => {
            let raised = done.saturating_add(k);
            RunPlan {
                rounds: k,
                round_limit: Some(raised),
                warning: Some(format!(
                    "round limit raised from {limit} to {raised} to run {k} rounds"
                )),
            }
        }
        (Some(k), Some(limit)) => match limit.saturating_sub(done) {
            0 => nothing(round_limit, limit_reached(limit)),
            left => RunPlan {
                rounds: left,
                round_limit,
                warning: Some(format!(
                    "{k} rounds would pass the round limit of {limit}: running {left}"
                )),
            },
        },
    })
}

/// `run_once(increase)` after `done` rounds: one round; at the limit, with
/// `increase` the limit is raised by one, otherwise nothing runs.
pub(super) fn one_more_round(round_limit: Option<u32>, done: u32, increase: bool) -> RunPlan {
    match round_limit {
        Some(limit) if done >= limit && !increase => nothing(round_limit, limit_reached(limit)),
        Some(limit) if done >= limit => RunPlan {
            rounds: 1,
            round_limit: Some(done + 1),
            warning: Some(format!("round limit raised from {limit} to {}", done + 1)),
        },
        _ => RunPlan {
            rounds: 1,
            round_limit,
            warning: None,
        },
    }
}

/// The validation-only round runs once the last round of the limit is
/// done, when the global model is to be scored.
pub(super) fn final_validation_due(
    test_on_global_updates: bool,
    round_limit: Option<u32>,
    done: u32,
) -> bool {
    test_on_global_updates && round_limit == Some(done)
}

/// A round whose replies came in (`succeeded` of `sampled` nodes; the others
/// `dropped`, with their reasons) aggregates only with at least `min_nodes`.
pub(super) fn quorum(
    succeeded: usize,
    sampled: usize,
    min_nodes: usize,
    dropped: &BTreeMap<String, String>,
) -> Result<(), String> {
    let min = min_nodes.max(1);
    if succeeded >= min {
        return Ok(());
    }
    let reasons: Vec<String> = dropped.iter().map(|(n, r)| format!("{n}: {r}")).collect();
    Err(format!(
        "only {succeeded} of {sampled} nodes succeeded, fewer than min_nodes = {min}; {}",
        reasons.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rounds: u32, round_limit: Option<u32>, warning: Option<&str>) -> RunPlan {
        RunPlan {
            rounds,
            round_limit,
            warning: warning.map(str::to_string),
        }
    }

    #[test]
    fn run_follows_the_round_limit_as_fedbiomed_does() {
        let cases = [
            // (rounds, limit, done, increase) → plan
            ((Some(3), None, 0, false), plan(3, None, None)),
            ((None, Some(5), 2, false), plan(3, Some(5), None)),
            (
                (None, None, 0, false),
                plan(
                    0,
                    None,
                    Some("cannot run: give a number of rounds or set a round limit"),
                ),
            ),
            (
                (None, Some(2), 2, true),
                plan(
                    0,
                    Some(2),
                    Some("round limit of 2 was reached; nothing to run"),
                ),
            ),
            ((Some(2), Some(5), 3, false), plan(2, Some(5), None)),
            (
                (Some(4), Some(5), 3, false),
                plan(
                    2,
                    Some(5),
                    Some("4 rounds would pass the round limit of 5: running 2"),
                ),
            ),
            (
                (Some(4), Some(5), 3, true),
                plan(
                    4,
                    Some(7),
                    Some("round limit raised from 5 to 7 to run 4 rounds"),
                ),
            ),
            (
                (Some(1), Some(3), 3, false),
                plan(
                    0,
                    Some(3),
                    Some("round limit of 3 was reached; nothing to run"),
                ),
            ),
        ];
        for ((rounds, limit, done, increase), expected) in cases {
            let got = rounds_to_run(rounds, limit, done, increase).expect("valid call");
            assert_eq!(
                got, expected,
                "run({rounds:?}, {increase}) at {done}/{limit:?}"
            );
        }
        assert!(matches!(
            rounds_to_run(Some(0), None, 0, false),
            Err(ExperimentError::Argument(m)) if m.contains("at least 1")
        ));
    }

    #[test]
    fn run_once_stops_at_the_limit_unless_asked_to_raise_it() {
        assert_eq!(one_more_round(None, 7, false), plan(1, None, None));
        assert_eq!(one_more_round(Some(3), 2, false), plan(1, Some(3), None));
        assert_eq!(
            one_more_round(Some(3), 3, false),
            plan(
                0,
                Some(3),
                Some("round limit of 3 was reached; nothing to run")
            )
        );
        assert_eq!(
            one_more_round(Some(3), 3, true),
            plan(1, Some(4), Some("round limit raised from 3 to 4"))
        );
    }

    #[test]
    fn final_validation_only_after_the_last_round_and_when_asked() {
        assert!(final_validation_due(true, Some(3), 3));
        assert!(!final_validation_due(true, Some(3), 2));
        assert!(!final_validation_due(true, None, 3));
        assert!(!final_validation_due(false, Some(3), 3));
    }

    #[test]
    fn a_round_aggregates_only_with_min_nodes_and_names_the_dropped() {
        let dropped = BTreeMap::from([("node-c".to_string(), "timeout".to_string())]);
        assert_eq!(quorum(2, 3, 2, &dropped), Ok(()));
        assert_eq!(quorum(1, 1, 0, &BTreeMap::new()), Ok(()));
        assert_eq!(
            quorum(2, 3, 3, &dropped),
            Err("only 2 of 3 nodes succeeded, fewer than min_nodes = 3; node-c: timeout".into())
        );
        assert!(quorum(0, 1, 0, &dropped).is_err());
    }
}
