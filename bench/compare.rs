//! Ratios against a baseline measured in the same run, interleaved.
//!
//! Absolute numbers on a shared, noisy machine say little: a neighbour's
//! build can halve them between two runs. A subject and its baseline
//! measured back to back, though, suffer the same neighbours, so their ratio
//! is stable. Each round measures both, in alternating order (so that
//! warming or drift favours neither), and the report gives the median of the
//! per-round ratios, which one disturbed round cannot move.

use std::time::Duration;

use crate::load::Batch;

/// Median, minimum and maximum of some per-round values.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Spread {
            median,
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Median of some durations, in milliseconds.
pub fn median_ms(values: impl IntoIterator<Item = Duration>) -> f64 {
    Spread::of(values.into_iter().map(|d| d.as_secs_f64() * 1e3)).median
}

/// Runs `rounds` rounds of `baseline` and `subject`, alternating which goes
/// first; each gets the round number.
pub async fn interleave<T>(
    rounds: usize,
    mut baseline: impl AsyncFnMut(usize) -> anyhow::Result<T>,
    mut subject: impl AsyncFnMut(usize) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Pair<T>>> {
    let mut pairs = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let pair = if round % 2 == 0 {
            let baseline = baseline(round).await?;
            let subject = subject(round).await?;
            Pair { baseline, subject }
        } else {
            let subject = subject(round).await?;
            let baseline = baseline(round).await?;
            Pair { baseline, subject }
        };
        pairs.push(pair);
    }
    Ok(pairs)
}

/// One round: the subject and its baseline.
#[derive(Debug, Clone)]
pub struct Pair<T> {
    pub baseline: T,
    pub subject: T,
}

/// A throughput measurement: batches of the subject requests against
/// batches of the baseline requests, same count, same concurrency.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub pairs: Vec<Pair<Batch>>,
}

impl Throughput {
    /// Subject rate / baseline rate, per round.
    pub fn rate_ratio(&self) -> Spread {
        Spread::of(
            self.pairs
                .iter()
                .map(|p| p.subject.rate() / p.baseline.rate()),
        )
    }

    /// Subject latency / baseline latency at quantile `q`, per round.
    pub fn latency_ratio(&self, q: f64) -> Spread {
        Spread::of(
            self.pairs.iter().map(|p| {
                p.subject.quantile(q).as_secs_f64() / p.baseline.quantile(q).as_secs_f64()
            }),
        )
    }

    pub fn subject_rate(&self) -> f64 {
        Spread::of(self.pairs.iter().map(|p| p.subject.rate())).median
    }

    pub fn baseline_rate(&self) -> f64 {
        Spread::of(self.pairs.iter().map(|p| p.baseline.rate())).median
    }

    /// Median over rounds of the subject's latency at quantile `q`, in ms.
    pub fn subject_latency_ms(&self, q: f64) -> f64 {
        median_ms(self.pairs.iter().map(|p| p.subject.quantile(q)))
    }

    /// Median over rounds of the baseline's latency at quantile `q`, in ms.
    pub fn baseline_latency_ms(&self, q: f64) -> f64 {
        median_ms(self.pairs.iter().map(|p| p.baseline.quantile(q)))
    }
}
