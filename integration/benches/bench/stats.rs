//! Summaries of repeated measurements: median and spread, never a mean.

use std::time::Duration;

/// The distribution of one measurement, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Summary {
            median: quantile(&ms, 0.5),
            p10: quantile(&ms, 0.1),
            p90: quantile(&ms, 0.9),
        }
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

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
