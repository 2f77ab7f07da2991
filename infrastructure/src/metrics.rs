//! Minimal Prometheus instruments: counters and fixed-bucket histograms on atomics, rendered in the
//! text exposition format. Enough for a handful of series without a metrics dependency.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram over whole-number observations (microseconds, counts) with fixed upper bounds.
pub struct Histogram {
    /// Upper bounds in the observation's unit, ascending.
    bounds: &'static [u64],
    /// How to print each bound as the `le` label (in the exported unit, e.g. seconds).
    labels: &'static [&'static str],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64], labels: &'static [&'static str]) -> Self {
        debug_assert_eq!(bounds.len(), labels.len());
        Self {
            bounds,
            labels,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the series `name` (with `extra_labels` such as `route="/v1/x"`); `sum_divisor`
    /// converts the sum to the exported unit (1_000_000 for microseconds exported as seconds).
    pub fn render(&self, out: &mut String, name: &str, extra_labels: &str, sum_divisor: u64) {
        let sep = if extra_labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bucket, label) in self.buckets.iter().zip(self.labels) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{extra_labels}{sep}le=\"{label}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{extra_labels}{sep}le=\"+Inf\"}} {count}"
        );
        let sum = self.sum.load(Ordering::Relaxed);
        let braces = if extra_labels.is_empty() {
            String::new()
        } else {
            format!("{{{extra_labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}.{:06}",
            sum / sum_divisor,
            (sum % sum_divisor) * 1_000_000 / sum_divisor
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Latency buckets in microseconds, exported in seconds.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
pub const LATENCY_LABELS_S: &[&str] = &[
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "1",
];

/// The writer's instruments.
pub struct WriterMetrics {
    pub batch_size: Histogram,
    pub commit_latency_us: Histogram,
    pub commands_accepted: AtomicU64,
    pub commands_rejected: AtomicU64,
    pub commands_replayed: AtomicU64,
    pub commits_failed: AtomicU64,
    /// Batches committed, and where the writer's time went for them, in microseconds:
    /// deciding, hashing, building the rows, writing and committing.
    pub batches_committed: AtomicU64,
    pub phase_us: [AtomicU64; 4],
}

/// The phases of `WriterMetrics::phase_us`, in order.
pub const WRITER_PHASES: [&str; 4] = ["decide", "hash", "rows", "write"];

impl Default for WriterMetrics {
    fn default() -> Self {
        const BATCH_BOUNDS: &[u64] = &[
            1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
        ];
        const BATCH_LABELS: &[&str] = &[
            "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096",
            "8192",
        ];
        Self {
            batch_size: Histogram::new(BATCH_BOUNDS, BATCH_LABELS),
            commit_latency_us: Histogram::new(LATENCY_BOUNDS_US, LATENCY_LABELS_S),
            commands_accepted: AtomicU64::new(0),
            commands_rejected: AtomicU64::new(0),
            commands_replayed: AtomicU64::new(0),
            commits_failed: AtomicU64::new(0),
            batches_committed: AtomicU64::new(0),
            phase_us: Default::default(),
        }
    }
}

impl WriterMetrics {
    /// Records a committed batch's times per phase, in `WRITER_PHASES` order.
    pub fn record_batch(&self, times: [std::time::Duration; 4]) {
        self.batches_committed.fetch_add(1, Ordering::Relaxed);
        for (total, time) in self.phase_us.iter().zip(times) {
            total.fetch_add(time.as_micros() as u64, Ordering::Relaxed);
        }
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ledger_writer_batches_total Batches the writer committed."
        );
        let _ = writeln!(out, "# TYPE ledger_writer_batches_total counter");
        let _ = writeln!(
            out,
            "ledger_writer_batches_total {}",
            self.batches_committed.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP ledger_writer_phase_seconds_total Where the writer's time went for the batches it committed: deciding, hashing, building the rows, writing and committing.");
        let _ = writeln!(out, "# TYPE ledger_writer_phase_seconds_total counter");
        for (phase, total) in WRITER_PHASES.iter().zip(&self.phase_us) {
            let us = total.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ledger_writer_phase_seconds_total{{phase=\"{phase}\"}} {}.{:06}",
                us / 1_000_000,
                us % 1_000_000
            );
        }
        let _ = writeln!(out, "# HELP ledger_batch_size Commands per writer batch.");
        let _ = writeln!(out, "# TYPE ledger_batch_size histogram");
        self.batch_size.render(out, "ledger_batch_size", "", 1);
        let _ = writeln!(
            out,
            "# HELP ledger_commit_latency_seconds Time to write and commit one batch."
        );
        let _ = writeln!(out, "# TYPE ledger_commit_latency_seconds histogram");
        self.commit_latency_us
            .render(out, "ledger_commit_latency_seconds", "", 1_000_000);
        let _ = writeln!(
            out,
            "# HELP ledger_commands_total Commands the writer decided, by outcome."
        );
        let _ = writeln!(out, "# TYPE ledger_commands_total counter");
        for (outcome, counter) in [
            ("accepted", &self.commands_accepted),
            ("rejected", &self.commands_rejected),
            ("replayed", &self.commands_replayed),
        ] {
            let _ = writeln!(
                out,
                "ledger_commands_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ledger_commits_failed_total Batches whose commit failed."
        );
        let _ = writeln!(out, "# TYPE ledger_commits_failed_total counter");
        let _ = writeln!(
            out,
            "ledger_commits_failed_total {}",
            self.commits_failed.load(Ordering::Relaxed)
        );
    }
}
