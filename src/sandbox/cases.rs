//! Hard cases a test or a demo asks for by putting the marker
//! `sandbox-<case>` (case-insensitive) anywhere in a submitted identifier,
//! e.g. the email `ann+sandbox-no-match@example.com` or the name
//! `Ann sandbox-fail`. Several markers may be combined.

/// The hard cases, as `(name, description)`; the marker is `sandbox-<name>`.
pub const CASES: &[(&str, &str)] = &[
    (
        "no-match",
        "completes with an empty `result: {}` (0 credits)",
    ),
    ("fail", "ends `failed` with an `error` string (0 credits)"),
    ("slow", "takes 30 s instead of 3 s to finish"),
    (
        "no-callback",
        "the result is never delivered by callback; only polling finds it",
    ),
    (
        "duplicate-callback",
        "the callback is delivered twice, one after the other",
    ),
    (
        "concurrent-callback",
        "the callback is delivered 3 times concurrently",
    ),
    (
        "expire",
        "the job finishes (and is charged) but is then forgotten: no callback, polls answer 404 `request_not_found`",
    ),
    (
        "rate-limit",
        "the first submit for this person answers 429 `rate_limit_exceeded` with `Retry-After: 1`; later submits are accepted",
    ),
    (
        "server-error",
        "the first submit for this person answers 500 `internal_error`; later submits are accepted",
    ),
    (
        "unavailable",
        "the first submit for this person answers 503 `service_unavailable`; later submits are accepted",
    ),
    (
        "callback-first",
        "the job completes at once and its first callback attempt is made before the submit response is sent",
    ),
    (
        "submit-timeout",
        "the job is accepted and runs normally, but the submit response is held back for 60 s (an ambiguous submit for a client with a shorter timeout)",
    ),
    (
        "poll-error",
        "the first 2 polls of this job answer 500 `internal_error`, later polls answer normally",
    ),
    (
        "accepted-then-500",
        "the first submit for this person creates the job (it runs, calls back and is charged) but answers 500 `internal_error`",
    ),
    (
        "accepted-then-502",
        "the first submit for this person creates the job (it runs, calls back and is charged) but answers 502 as a proxy in front of upstream would",
    ),
    (
        "changing",
        "the profile differs from one lookup of this person to the next (deterministic per lookup count: the 1st, 2nd, ... job for the same identifiers always gives the same profile), so a refresh shows `profile.changed`",
    ),
];

/// One hard case; the order matches [`CASES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    NoMatch,
    Fail,
    Slow,
    NoCallback,
    DuplicateCallback,
    ConcurrentCallback,
    Expire,
    RateLimit,
    ServerError,
    Unavailable,
    CallbackFirst,
    SubmitTimeout,
    PollError,
    AcceptedThen500,
    AcceptedThen502,
    Changing,
}

impl Case {
    pub const ALL: [Case; 16] = [
        Case::NoMatch,
        Case::Fail,
        Case::Slow,
        Case::NoCallback,
        Case::DuplicateCallback,
        Case::ConcurrentCallback,
        Case::Expire,
        Case::RateLimit,
        Case::ServerError,
        Case::Unavailable,
        Case::CallbackFirst,
        Case::SubmitTimeout,
        Case::PollError,
        Case::AcceptedThen500,
        Case::AcceptedThen502,
        Case::Changing,
    ];

    /// The case's name, as in [`CASES`] and in the marker.
    pub fn name(self) -> &'static str {
        CASES[self as usize].0
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The set of cases one submit asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cases(u16);

impl Cases {
    /// Finds every `sandbox-<case>` marker in the given identifiers.
    pub fn detect<'a>(identifiers: impl IntoIterator<Item = &'a str>) -> Self {
        let lowered: Vec<String> = identifiers
            .into_iter()
            .map(str::to_ascii_lowercase)
            .collect();
        let mut found = Cases::default();
        for case in Case::ALL {
            let marker = format!("sandbox-{}", case.name());
            if lowered.iter().any(|id| id.contains(&marker)) {
                found.0 |= case.bit();
            }
        }
        found
    }

    pub fn has(self, case: Case) -> bool {
        self.0 & case.bit() != 0
    }

    /// Names of the cases present, for log lines.
    pub fn names(self) -> Vec<&'static str> {
        Case::ALL
            .into_iter()
            .filter(|case| self.has(*case))
            .map(Case::name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_its_own_entry_in_the_documented_list() {
        assert_eq!(CASES.len(), Case::ALL.len());
        for (index, case) in Case::ALL.into_iter().enumerate() {
            assert_eq!(case as usize, index);
            assert!(Cases::detect([format!("x sandbox-{}", case.name()).as_str()]).has(case));
        }
    }

    #[test]
    fn markers_are_found_case_insensitively_in_any_identifier() {
        let cases = Cases::detect(["Ann SANDBOX-Fail", "ann+sandbox-no-callback@example.com"]);
        assert_eq!(cases.names(), vec!["fail", "no-callback"]);
        assert_eq!(Cases::detect(["ann@example.com"]), Cases::default());
    }
}
