//! Operations metrics in the Prometheus text format (`/metrics`): requests by route pattern and
//! status, their latency, sign-in failures (counted in this process), and, read from the
//! database at each scrape (so the same for every instance), the mail queue by status, the age
//! of the oldest queued mail and the rows of bulk jobs by status.
//!
//! Off unless configured: served on its own listener (`VESTIBULE_METRICS_BIND`), or on the main
//! port to a scraper that sends `Authorization: Bearer $VESTIBULE_METRICS_TOKEN`.

use std::sync::Mutex;

use diesel::prelude::*;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::DbConnection;
use crate::db::schema::{bulk_rows, outbox};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The metrics of one process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    signin_failures: Family<RouteLabels, Counter>,
    mail_queue: Family<StatusLabels, Gauge>,
    oldest_queued: Gauge<f64, std::sync::atomic::AtomicU64>,
    bulk_rows: Family<StatusLabels, Gauge>,
    /// Scrapes read the database and set the gauges one at a time.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vestibule");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route pattern and status", requests.clone());
        let latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("http_request_duration_seconds", "Time to answer, by route pattern", latency.clone());
        let signin_failures = Family::<RouteLabels, Counter>::default();
        registry.register(
            "signin_failures",
            "Refused sign-ins (wrong password or throttled) answered by this process",
            signin_failures.clone(),
        );
        let mail_queue = Family::<StatusLabels, Gauge>::default();
        registry.register("mail_queue", "Outgoing mail not yet sent, by status", mail_queue.clone());
        let oldest_queued = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "mail_oldest_queued_age_seconds",
            "Age of the oldest mail waiting to be sent (0 when none)",
            oldest_queued.clone(),
        );
        let bulk_rows = Family::<StatusLabels, Gauge>::default();
        registry.register("bulk_rows", "Rows of bulk invitation jobs, by status", bulk_rows.clone());
        Metrics {
            registry,
            requests,
            latency,
            signin_failures,
            mail_queue,
            oldest_queued,
            bulk_rows,
            scrape: Mutex::new(()),
        }
    }

    /// Counts an answered request. `route` is the matched pattern (`/o/{org}/admin/users`),
    /// never the path itself, so that the number of series stays bounded.
    pub fn observe_request(&self, method: &str, route: Option<&str>, status: u16, seconds: f64) {
        let route = route.unwrap_or("unmatched").to_owned();
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method.to_owned(),
            _ => "other".to_owned(),
        };
        let labels = RequestLabels { method: method.clone(), route: route.clone(), status: status.to_string() };
        self.requests.get_or_create(&labels).inc();
        let by_route = RouteLabels { method, route };
        self.latency.get_or_create(&by_route).observe(seconds);
        if by_route.method == "POST" && by_route.route.ends_with("/signin") && (status == 401 || status == 429) {
            self.signin_failures.get_or_create(&by_route).inc();
        }
    }

    /// Reads the database's gauges and writes the whole exposition.
    pub fn render(&self, conn: &mut DbConnection) -> anyhow::Result<String> {
        let _one = self.scrape.lock().map_err(|_| anyhow::anyhow!("metrics lock poisoned"))?;
        let queue: Vec<(String, i64)> = crate::mail::queue_counts(conn)?;
        self.mail_queue.clear();
        for status in ["queued", "sending", "failed"] {
            self.mail_queue.get_or_create(&StatusLabels { status: status.into() }).set(0);
        }
        for (status, n) in queue {
            self.mail_queue.get_or_create(&StatusLabels { status }).set(n);
        }
        let oldest: Option<time::PrimitiveDateTime> = outbox::table
            .filter(outbox::status.eq("queued"))
            .select(diesel::dsl::min(outbox::created_at))
            .first(conn)?;
        let age = oldest.map_or(0.0, |t| (crate::db::now() - t).as_seconds_f64().max(0.0));
        self.oldest_queued.set(age);
        let rows: Vec<(String, i64)> = bulk_rows::table
            .group_by(bulk_rows::status)
            .select((bulk_rows::status, diesel::dsl::count_star()))
            .load(conn)?;
        self.bulk_rows.clear();
        for status in ["valid", "invalid", "duplicate", "created", "failed"] {
            self.bulk_rows.get_or_create(&StatusLabels { status: status.into() }).set(0);
        }
        for (status, n) in rows {
            self.bulk_rows.get_or_create(&StatusLabels { status }).set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
