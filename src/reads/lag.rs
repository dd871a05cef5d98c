//! How stale a standby is, in time, from WAL positions alone.
//!
//! `pg_last_xact_replay_timestamp()` cannot tell an idle primary from a
//! stalled standby (it only ages), and a byte distance says nothing about
//! time. So the monitor notes, at each check, the primary's flushed WAL
//! position and when it was read. A standby that has replayed up to a
//! noted position holds everything committed on the primary before that
//! moment: its staleness is at most the age of the newest such note. The
//! estimate errs on the stale side by at most the time between two notes
//! (the monitor's check interval, while the notes are few).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Notes kept. When full, every other one is dropped: the notes then reach
/// twice as far back, each gap twice as wide (estimates only err further
/// on the stale side), so a bounded list covers any lag.
const MAX_NOTES: usize = 1024;

/// The primary's recent WAL positions, oldest first, each position once
/// (with the last time it was seen), positions increasing.
#[derive(Debug, Default)]
pub struct Staleness {
    notes: VecDeque<(Instant, i64)>,
}

impl Staleness {
    /// Notes that the primary had flushed WAL up to `position` at `at`.
    pub fn primary_at(&mut self, at: Instant, position: i64) {
        // An idle primary: still there now, so a standby there is current.
        if let Some(last) = self.notes.back_mut()
            && last.1 == position
        {
            last.0 = at;
            return;
        }
        if self.notes.len() == MAX_NOTES {
            let mut n = 0;
            // Keeps the 2nd, 4th, … and so the newest (MAX_NOTES is even).
            self.notes.retain(|_| {
                n += 1;
                n % 2 == 0
            });
        }
        self.notes.push_back((at, position));
    }

    /// How far behind a standby that replayed up to `replayed` is at `now`:
    /// the age of the newest note it has reached, or `None` when it has
    /// reached none of them (further behind than anything noted).
    pub fn behind(&mut self, replayed: i64, now: Instant) -> Option<Duration> {
        let reached = self.notes.iter().rposition(|&(_, p)| p <= replayed)?;
        // Older notes can no longer be the newest one reached: WAL only
        // moves forward.
        self.notes.drain(..reached);
        let (at, _) = self.notes[0];
        Some(now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_standby_at_the_primarys_position_is_not_behind_however_idle_the_primary() {
        let t0 = Instant::now();
        let mut s = Staleness::default();
        for n in 0..10 {
            s.primary_at(t0 + secs(n), 500);
            assert_eq!(s.behind(500, t0 + secs(n)), Some(Duration::ZERO));
        }
    }

    #[test]
    fn a_stalled_standby_falls_behind_from_the_first_write_it_misses() {
        let t0 = Instant::now();
        let mut s = Staleness::default();
        s.primary_at(t0, 100);
        assert_eq!(s.behind(100, t0), Some(Duration::ZERO));
        s.primary_at(t0 + secs(1), 200);
        s.primary_at(t0 + secs(2), 300);
        // Replay stopped at 100: everything after t0 may be missing.
        assert_eq!(s.behind(100, t0 + secs(3)), Some(secs(3)));
        // Caught up to the note of t0+1 only.
        assert_eq!(s.behind(250, t0 + secs(3)), Some(secs(2)));
        assert_eq!(s.behind(300, t0 + secs(3)), Some(secs(1)));
    }

    #[test]
    fn a_standby_behind_every_note_has_no_known_staleness() {
        let t0 = Instant::now();
        let mut s = Staleness::default();
        s.primary_at(t0, 100);
        assert_eq!(s.behind(99, t0), None);
    }

    #[test]
    fn past_the_note_limit_a_long_lag_is_still_measured_never_as_less_than_it_is() {
        let t0 = Instant::now();
        let mut s = Staleness::default();
        // A write every second for over an hour: thinned several times.
        let last = 4 * MAX_NOTES as u64;
        for n in 0..=last {
            s.primary_at(t0 + secs(n), n as i64);
        }
        assert!(s.notes.len() <= MAX_NOTES);
        let now = t0 + secs(last);
        // A standby stuck at the write of second 1000 is 3096 s behind:
        // said so within a few percent, never less.
        let behind = s.behind(1000, now).unwrap();
        let truth = secs(last - 1000);
        assert!(behind >= truth, "{behind:?}");
        assert!(behind <= truth + truth / 16, "{behind:?}");
        assert_eq!(s.behind(last as i64, now), Some(Duration::ZERO));
    }
}
