//! The recent past behind the dashboard's charts: each group's lag and each topic's traffic,
//! sampled every `http.history.interval.ms` and kept for `http.history.minutes`, in bounded
//! memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// A group's lag at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct GroupSample {
    pub(crate) at_ms: i64,
    /// Lag summed over the group's partitions.
    pub(crate) total_lag: i64,
    /// The lag of its most lagging partition.
    pub(crate) max_partition_lag: i64,
}

/// A topic's size and traffic counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct TopicSample {
    pub(crate) at_ms: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) size_bytes: u64,
    pub(crate) records_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) records_out: u64,
    pub(crate) bytes_out: u64,
}

/// Something with a time that a [`Series`] can hold.
pub(crate) trait Timed: Copy {
    fn at_ms(&self) -> i64;
}

impl Timed for GroupSample {
    fn at_ms(&self) -> i64 {
        self.at_ms
    }
}

impl Timed for TopicSample {
    fn at_ms(&self) -> i64 {
        self.at_ms
    }
}

/// Named series of samples, each holding at most `capacity` samples no older than `window`.
pub(crate) struct Series<T> {
    window_ms: i64,
    capacity: usize,
    series: Mutex<HashMap<String, VecDeque<T>>>,
}

impl<T: Timed> Series<T> {
    /// Series covering `window`, sampled every `interval`.
    pub(crate) fn new(window: Duration, interval: Duration) -> Series<T> {
        let interval_ms = interval.as_millis().max(1);
        Series {
            window_ms: window.as_millis() as i64,
            capacity: (window.as_millis() / interval_ms) as usize + 1,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Adds one sample per name, taken at `now_ms`. Names without a sample this time (a
    /// deleted group or topic) are dropped once their last sample has left the window.
    pub(crate) fn record(&self, now_ms: i64, samples: Vec<(String, T)>) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for (name, sample) in samples {
            let samples = series.entry(name).or_default();
            if samples.len() == self.capacity {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
        let oldest = now_ms - self.window_ms;
        series.retain(|_, samples| {
            while samples.front().is_some_and(|s| s.at_ms() < oldest) {
                samples.pop_front();
            }
            !samples.is_empty()
        });
    }

    /// The samples of `name`, oldest first.
    pub(crate) fn get(&self, name: &str) -> Vec<T> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The last `n` samples of `name`, oldest first.
    pub(crate) fn last(&self, name: &str, n: usize) -> Vec<T> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(name)
            .map(|s| s.iter().skip(s.len().saturating_sub(n)).copied().collect())
            .unwrap_or_default()
    }
}

/// Per-second rates of a topic over the samples given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct TopicRates {
    pub(crate) records_in_per_sec: f64,
    pub(crate) bytes_in_per_sec: f64,
    pub(crate) records_out_per_sec: f64,
    pub(crate) bytes_out_per_sec: f64,
}

/// The rates between the first and the last of `samples` (zero with fewer than two).
pub(crate) fn rates(samples: &[TopicSample]) -> TopicRates {
    let (Some(before), Some(after)) = (samples.first(), samples.last()) else {
        return TopicRates::default();
    };
    let seconds = (after.at_ms - before.at_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return TopicRates::default();
    }
    let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
    TopicRates {
        records_in_per_sec: per_sec(after.records_in, before.records_in),
        bytes_in_per_sec: per_sec(after.bytes_in, before.bytes_in),
        records_out_per_sec: per_sec(after.records_out, before.records_out),
        bytes_out_per_sec: per_sec(after.bytes_out, before.bytes_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(at_ms: i64, total_lag: i64) -> (String, GroupSample) {
        (
            "g".to_string(),
            GroupSample {
                at_ms,
                total_lag,
                max_partition_lag: total_lag,
            },
        )
    }

    #[test]
    fn history_keeps_at_most_the_window() {
        // 10 s window sampled every 2 s: 6 samples at most.
        let series = Series::new(Duration::from_secs(10), Duration::from_secs(2));
        for i in 0..20 {
            series.record(i * 2_000, vec![lag(i * 2_000, i)]);
        }
        let kept: Vec<i64> = series.get("g").iter().map(|s| s.total_lag).collect();
        assert_eq!(kept, vec![14, 15, 16, 17, 18, 19]);
        assert_eq!(series.last("g", 2).len(), 2);
    }

    #[test]
    fn samples_older_than_the_window_are_dropped_even_when_sampling_is_late() {
        let series = Series::new(Duration::from_secs(10), Duration::from_secs(2));
        series.record(0, vec![lag(0, 1)]);
        series.record(30_000, vec![lag(30_000, 2)]);
        assert_eq!(series.get("g").len(), 1);
    }

    #[test]
    fn a_vanished_group_is_forgotten_after_the_window() {
        let series = Series::new(Duration::from_secs(10), Duration::from_secs(2));
        series.record(0, vec![lag(0, 5)]);
        series.record(4_000, Vec::new());
        assert_eq!(series.get("g").len(), 1);
        series.record(12_000, Vec::new());
        assert!(series.get("g").is_empty());
    }

    #[test]
    fn rates_come_from_the_first_and_last_samples() {
        let at = |at_ms, records_in| TopicSample {
            at_ms,
            records_in,
            bytes_in: records_in * 100,
            ..TopicSample::default()
        };
        assert_eq!(rates(&[at(0, 0)]), TopicRates::default());
        let r = rates(&[at(1_000, 0), at(5_000, 10), at(6_000, 30)]);
        assert_eq!(r.records_in_per_sec, 6.0);
        assert_eq!(r.bytes_in_per_sec, 600.0);
    }
}
