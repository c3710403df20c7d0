//! Summaries of repeated measurements: median and spread, never a mean.

use std::time::Duration;

use serde_json::{json, Value};

/// The distribution of one measurement, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub p10: f64,
    pub p90: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Summary {
            n: ms.len(),
            median: quantile(&ms, 0.5),
            min: ms.first().copied().unwrap_or(f64::NAN),
            p10: quantile(&ms, 0.1),
            p90: quantile(&ms, 0.9),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.n,
            "median_ms": round(self.median),
            "min_ms": round(self.min),
            "p10_ms": round(self.p10),
            "p90_ms": round(self.p90),
            "max_ms": round(self.max),
        })
    }

    /// `12.34 (11.9–13.1)`: median (p10–p90).
    pub fn cell(&self) -> String {
        format!("{:.2} ({:.1}–{:.1})", self.median, self.p10, self.p90)
    }
}

/// Linear interpolation between closest ranks of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    match v.len() {
        0 => f64::NAN,
        1 => v[0],
        n => {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

/// Three decimals are enough for milliseconds and ratios.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3)
}
