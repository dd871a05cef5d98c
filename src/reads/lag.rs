//! How stale a standby is, in time, from WAL positions alone.
//!
//! `pg_last_xact_replay_timestamp()` cannot tell an idle primary from a
//! stalled standby (it only ages), and a byte distance says nothing about
//! time. So the monitor notes, at each check, the primary's flushed WAL
//! position and when it was read. A standby that has replayed up to a
//! noted position holds everything committed on the primary before that
//! moment: its staleness is at most the age of the newest such note.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Notes kept: at one check a second, a quarter of an hour. A standby
/// further behind than the oldest note is simply "too far behind".
const MAX_NOTES: usize = 900;

/// The primary's recent WAL positions, oldest first.
#[derive(Debug, Default)]
pub struct Staleness {
    notes: VecDeque<(Instant, i64)>,
}

impl Staleness {
    /// Notes that the primary had flushed WAL up to `position` at `at`.
    pub fn primary_at(&mut self, at: Instant, position: i64) {
        if self.notes.len() == MAX_NOTES {
            self.notes.pop_front();
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
        for n in 0..MAX_NOTES as u64 + 5 {
            s.primary_at(t0 + secs(n + 1), 200 + n as i64);
        }
        // The note at 100 was dropped: a standby still there is too far
        // behind to say.
        assert_eq!(s.behind(100, t0 + secs(2000)), None);
    }
}
