//! The lag table of a group: one row per partition, totals per topic, and skew warnings.
//!
//! Pure functions over what the cluster reported, so the rules are tested without a broker.

use std::collections::BTreeMap;

use serde::Serialize;

/// A partition's lag is called skewed when it is at least this many records...
pub const SKEW_MIN_LAG: i64 = 1000;
/// ...and more than this many times the median lag of the topic's other partitions.
pub const SKEW_FACTOR: i64 = 10;

/// One row of `groups describe`: a partition and its owner, or a member that owns nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagRow {
    /// Topic, `None` on the row of a member without partitions.
    pub topic: Option<String>,
    /// Partition, `None` on the row of a member without partitions.
    pub partition: Option<i32>,
    /// The group's committed offset, `None` if it has not committed one.
    pub current_offset: Option<i64>,
    /// The partition's log end offset (high watermark), `None` if unknown.
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - current_offset`, when both are known.
    pub lag: Option<i64>,
    /// Member that owns the partition, `None` if no member does.
    pub consumer_id: Option<String>,
    /// Host of that member.
    pub host: Option<String>,
    /// Client id of that member.
    pub client_id: Option<String>,
}

impl LagRow {
    /// A partition row; the lag is derived from the two offsets.
    pub fn partition(
        topic: &str,
        partition: i32,
        current_offset: Option<i64>,
        log_end_offset: Option<i64>,
    ) -> LagRow {
        let lag = match (current_offset, log_end_offset) {
            (Some(current), Some(end)) => Some((end - current).max(0)),
            _ => None,
        };
        LagRow {
            topic: Some(topic.to_string()),
            partition: Some(partition),
            current_offset,
            log_end_offset,
            lag,
            consumer_id: None,
            host: None,
            client_id: None,
        }
    }
}

/// The total lag of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicLag {
    /// Topic.
    pub topic: String,
    /// Sum of the known lags of its partitions.
    pub total_lag: i64,
    /// Partitions without a committed offset (not counted in the total).
    pub partitions_without_offset: usize,
}

/// A partition whose lag stands far above its siblings'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkewWarning {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Its lag.
    pub lag: i64,
    /// The median lag of the topic's other partitions.
    pub median_of_others: i64,
    /// Member that owns the partition, if any.
    pub consumer_id: Option<String>,
    /// Host of that member.
    pub host: Option<String>,
}

/// Total lag per topic, sorted by topic.
pub fn topic_totals(rows: &[LagRow]) -> Vec<TopicLag> {
    let mut totals: BTreeMap<&str, TopicLag> = BTreeMap::new();
    for row in rows {
        let Some(topic) = &row.topic else { continue };
        let entry = totals.entry(topic).or_insert_with(|| TopicLag {
            topic: topic.clone(),
            total_lag: 0,
            partitions_without_offset: 0,
        });
        match row.lag {
            Some(lag) => entry.total_lag += lag,
            None => entry.partitions_without_offset += 1,
        }
    }
    totals.into_values().collect()
}

/// Partitions whose lag is skewed: at least [`SKEW_MIN_LAG`] and more than [`SKEW_FACTOR`]
/// times the median lag of the other partitions of the same topic (partitions without a
/// committed offset are left out of the comparison). A topic with one partition has no
/// siblings and never warns.
pub fn skew_warnings(rows: &[LagRow]) -> Vec<SkewWarning> {
    let mut by_topic: BTreeMap<&str, Vec<&LagRow>> = BTreeMap::new();
    for row in rows {
        if let (Some(topic), Some(_)) = (&row.topic, row.lag) {
            by_topic.entry(topic).or_default().push(row);
        }
    }
    let mut warnings = Vec::new();
    for (topic, rows) in by_topic {
        for (index, row) in rows.iter().enumerate() {
            let lag = row.lag.unwrap_or(0);
            let others: Vec<i64> = rows
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .filter_map(|(_, r)| r.lag)
                .collect();
            let Some(median) = median(others) else {
                continue;
            };
            if lag >= SKEW_MIN_LAG && lag > median.saturating_mul(SKEW_FACTOR) {
                warnings.push(SkewWarning {
                    topic: topic.to_string(),
                    partition: row.partition.unwrap_or(-1),
                    lag,
                    median_of_others: median,
                    consumer_id: row.consumer_id.clone(),
                    host: row.host.clone(),
                });
            }
        }
    }
    warnings
}

/// The median (the lower middle value for an even count), `None` for no values.
fn median(mut values: Vec<i64>) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topic: &str, partition: i32, lag: Option<i64>, owner: Option<&str>) -> LagRow {
        let mut row = LagRow::partition(topic, partition, lag.map(|_| 0), Some(lag.unwrap_or(0)));
        row.consumer_id = owner.map(str::to_string);
        row
    }

    #[test]
    fn totals_count_known_lags_and_partitions_without_offsets() {
        let rows = vec![
            row("a", 0, Some(5), None),
            row("a", 1, None, None),
            row("b", 0, Some(7), None),
            row("a", 2, Some(3), None),
        ];
        let totals = topic_totals(&rows);
        assert_eq!(totals.len(), 2);
        assert_eq!(
            (totals[0].total_lag, totals[0].partitions_without_offset),
            (8, 1)
        );
        assert_eq!(totals[1].total_lag, 7);
    }

    #[test]
    fn one_hot_partition_is_named_with_its_owner() {
        let rows = vec![
            row("orders", 0, Some(10), Some("m-1")),
            row("orders", 1, Some(12), Some("m-2")),
            row("orders", 2, Some(25_000), Some("m-3")),
            row("orders", 3, Some(0), Some("m-1")),
        ];
        let warnings = skew_warnings(&rows);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].partition, 2);
        assert_eq!(warnings[0].median_of_others, 10);
        assert_eq!(warnings[0].consumer_id.as_deref(), Some("m-3"));
    }

    #[test]
    fn small_or_even_lag_is_not_skew() {
        let small = vec![row("t", 0, Some(900), None), row("t", 1, Some(0), None)];
        assert!(skew_warnings(&small).is_empty());
        let even = vec![
            row("t", 0, Some(50_000), None),
            row("t", 1, Some(40_000), None),
        ];
        assert!(skew_warnings(&even).is_empty());
        let alone = vec![row("t", 0, Some(50_000), None)];
        assert!(skew_warnings(&alone).is_empty());
    }

    #[test]
    fn lag_is_never_negative() {
        let row = LagRow::partition("t", 0, Some(12), Some(10));
        assert_eq!(row.lag, Some(0));
    }
}
