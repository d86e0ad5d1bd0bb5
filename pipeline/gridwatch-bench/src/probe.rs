//! Reading a running gridwatch from the outside: `/api/v1/status`, the
//! Prometheus text on `/metrics`, and topic high watermarks.

use std::time::Duration;

use gridwatch_runtime::metrics::{DETECTOR_METERS, DETECTOR_STATE, INGEST_TO_DETECT_LATENCY};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// What `/api/v1/status` answers (fields the bench uses; others ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub ingested: u64,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub anomalies: u64,
    #[serde(default)]
    pub dead_letters: u64,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub lag: u64,
    #[serde(default)]
    pub latency_ms: StatusLatency,
}

/// The runtime's own HDR percentiles (whole run when the status line is off).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct StatusLatency {
    #[serde(default)]
    pub p50: f64,
    #[serde(default)]
    pub p99: f64,
    #[serde(default)]
    pub p999: f64,
    #[serde(default)]
    pub count: u64,
}

/// An HTTP client for one gridwatch.
#[derive(Debug, Clone)]
pub struct Probe {
    client: reqwest::blocking::Client,
    url: String,
}

impl Probe {
    pub fn new(url: &str) -> Result<Self, BenchError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(BenchError::http("building a client"))?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    pub fn status(&self) -> Result<Status, BenchError> {
        let what = format!("GET {}/api/v1/status", self.url);
        self.client
            .get(format!("{}/api/v1/status", self.url))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .map_err(BenchError::http(what))
    }

    pub fn metrics(&self) -> Result<String, BenchError> {
        let what = format!("GET {}/metrics", self.url);
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .map_err(BenchError::http(what))
    }

    /// The high watermark of a topic partition, or `None` if it does not exist.
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Result<Option<u64>, BenchError> {
        let url = format!(
            "{}/api/v1/topics/{topic}/partitions/{partition}/records?max=1",
            self.url
        );
        let r = self
            .client
            .get(&url)
            .send()
            .map_err(BenchError::http(format!("GET {url}")))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: serde_json::Value = r
            .error_for_status()
            .and_then(|r| r.json())
            .map_err(BenchError::http(format!("GET {url}")))?;
        v.get("high_watermark")
            .and_then(serde_json::Value::as_u64)
            .map(Some)
            .ok_or_else(|| BenchError::Protocol {
                what: url,
                detail: format!("no high_watermark in {v}"),
            })
    }

    /// Records in a topic: the high watermarks summed over its partitions
    /// (fresh data directories start every partition at 0).
    pub fn topic_records(&self, topic: &str) -> Result<u64, BenchError> {
        let mut total = 0;
        for p in 0.. {
            match self.high_watermark(topic, p)? {
                Some(hw) => total += hw,
                None => break,
            }
        }
        Ok(total)
    }
}

/// A cumulative Prometheus histogram: counts at or below each bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds in the metric's unit (seconds here), ascending; the last
    /// is `+Inf`.
    pub bounds: Vec<f64>,
    /// Cumulative counts per bound, summed over the series' label sets.
    pub cumulative: Vec<u64>,
}

impl Histogram {
    /// The ingest→detect latency histogram from a `/metrics` text.
    pub fn latency(text: &str) -> Self {
        Self::parse(text, INGEST_TO_DETECT_LATENCY)
    }

    /// The `_bucket` series of `family`, summed over label sets by `le`.
    pub fn parse(text: &str, family: &str) -> Self {
        let prefix = format!("{family}_bucket");
        let mut by_le: Vec<(f64, u64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some(le) = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()) else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            let Some(count) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            match by_le.iter_mut().find(|(b, _)| *b == le) {
                Some(entry) => entry.1 += count as u64,
                None => by_le.push((le, count as u64)),
            }
        }
        by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self {
            bounds: by_le.iter().map(|e| e.0).collect(),
            cumulative: by_le.iter().map(|e| e.1).collect(),
        }
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// What was observed between `earlier` and `self` (counters only grow;
    /// a restart in between would read as zero).
    pub fn since(&self, earlier: &Self) -> Self {
        if earlier.bounds != self.bounds {
            return self.clone();
        }
        Self {
            bounds: self.bounds.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(&earlier.cumulative)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// The `q` quantile as Prometheus's `histogram_quantile` computes it
    /// (linear within the bucket; the highest finite bound if it falls in
    /// `+Inf`), in the histogram's unit. `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut prev_bound = 0.0;
        let mut prev_count = 0u64;
        for (&bound, &cum) in self.bounds.iter().zip(&self.cumulative) {
            if cum as f64 >= rank && cum > prev_count {
                if bound.is_infinite() {
                    return Some(prev_bound);
                }
                let in_bucket = (cum - prev_count) as f64;
                let into = (rank - prev_count as f64).max(0.0);
                return Some(prev_bound + (bound - prev_bound) * (into / in_bucket));
            }
            prev_bound = if bound.is_finite() { bound } else { prev_bound };
            prev_count = cum;
        }
        Some(prev_bound)
    }

    /// Share of observations at or below `bound` (must be a bucket bound to be exact).
    pub fn fraction_at_or_below(&self, bound: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let at = self
            .bounds
            .iter()
            .zip(&self.cumulative)
            .filter(|(b, _)| **b <= bound + 1e-12)
            .map(|(_, c)| *c)
            .next_back()
            .unwrap_or(0);
        Some(at as f64 / total as f64)
    }

    /// p50, p99 and p99.9 in milliseconds (the histogram is in seconds).
    pub fn percentiles_ms(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile(0.5)? * 1000.0,
            p99: self.quantile(0.99)? * 1000.0,
            p999: self.quantile(0.999)? * 1000.0,
        })
    }
}

/// A gauge family summed over its label sets, if present.
pub fn gauge_sum(text: &str, family: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}

/// Readings the lake sink has written (`gridwatch_events_total` of stage
/// `lake`, direction `out`), when it runs.
pub fn lake_written(text: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("gridwatch_events_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        if labels.split(',').any(|l| l == r#"stage="lake""#)
            && labels.split(',').any(|l| l == r#"direction="out""#)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}

/// Meters held by the detectors and the bytes of their state, as exported.
pub fn detector_state(text: &str) -> (Option<u64>, Option<u64>) {
    (
        gauge_sum(text, DETECTOR_METERS).map(|v| v as u64),
        gauge_sum(text, DETECTOR_STATE).map(|v| v as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE gridwatch_ingest_to_detect_latency_seconds histogram
gridwatch_ingest_to_detect_latency_seconds_bucket{le="0.001"} 50
gridwatch_ingest_to_detect_latency_seconds_bucket{le="0.002"} 90
gridwatch_ingest_to_detect_latency_seconds_bucket{le="0.01"} 99
gridwatch_ingest_to_detect_latency_seconds_bucket{le="0.1"} 100
gridwatch_ingest_to_detect_latency_seconds_bucket{le="+Inf"} 100
gridwatch_ingest_to_detect_latency_seconds_sum 0.2
gridwatch_ingest_to_detect_latency_seconds_count 100
gridwatch_detector_meters{partition="0"} 10
gridwatch_detector_meters{partition="1"} 12
"#;

    #[test]
    fn the_lake_count_is_its_out_events_only() {
        let text = "gridwatch_events_total{direction=\"in\",stage=\"lake\"} 7\n\
                    gridwatch_events_total{direction=\"out\",stage=\"lake\"} 5\n\
                    gridwatch_events_total{direction=\"out\",stage=\"detect\"} 9\n";
        assert_eq!(lake_written(text), Some(5.0));
        assert_eq!(lake_written(TEXT), None);
    }

    #[test]
    fn quantiles_follow_histogram_quantile() {
        let h = Histogram::latency(TEXT);
        assert_eq!(h.count(), 100);
        // rank 50 ends exactly at the first bucket's bound.
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // rank 99: the 9th of 9 in (0.002, 0.01].
        assert!((h.quantile(0.99).unwrap() - 0.01).abs() < 1e-12);
        // rank 70: halfway through (0.001, 0.002].
        assert!((h.quantile(0.7).unwrap() - 0.0015).abs() < 1e-12);
        assert_eq!(h.fraction_at_or_below(0.01), Some(0.99));
        let none = h.since(&h);
        assert_eq!(none.count(), 0);
        assert_eq!(none.quantile(0.5), None);
    }

    #[test]
    fn overflow_reports_the_highest_finite_bound() {
        let text = "x_bucket{le=\"1\"} 1\nx_bucket{le=\"2\"} 1\nx_bucket{le=\"+Inf\"} 10\n";
        let h = Histogram::parse(text, "x");
        assert_eq!(h.quantile(0.99), Some(2.0));
    }

    #[test]
    fn gauges_are_summed_over_partitions() {
        assert_eq!(detector_state(TEXT), (Some(22), None));
    }
}
