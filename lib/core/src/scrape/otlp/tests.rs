use super::*;
use crate::scrape::expfmt::{Format, Limits, parse};
use crate::scrape::relabel::{RelabelConfig, compile_all};

const T: u64 = 1_700_000_000_000_000_000;

fn target() -> Target {
    Target {
        labels: vec![
            ("env".into(), "prod".into()),
            ("instance".into(), "127.0.0.1:8000".into()),
            ("job".into(), "app".into()),
        ],
        scheme: "http".into(),
        address: "127.0.0.1:8000".into(),
    }
}

fn scrape(
    memory: &mut SeriesMemory,
    body: &str,
    format: Format,
    time_ns: u64,
    options: &Options<'_>,
) -> (ExportMetricsServiceRequest, Counts) {
    let families = parse(body.as_bytes(), format, &Limits::default()).expect("parses");
    memory
        .map(&target(), families, time_ns, options)
        .expect("maps")
}

fn opts() -> Options<'static> {
    Options {
        honor_labels: false,
        honor_timestamps: true,
        sample_limit: 0,
        metric_relabel: &[],
    }
}

fn metrics(req: &ExportMetricsServiceRequest) -> Vec<&Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| r.scope_metrics.iter())
        .flat_map(|s| s.metrics.iter())
        .collect()
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    metrics(req)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {req:#?}"))
}

fn numbers(m: &Metric) -> Vec<(BTreeMap<String, String>, f64, u64, u32)> {
    let points = match &m.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        Some(metric::Data::Sum(s)) => &s.data_points,
        other => panic!("not a number metric: {other:?}"),
    };
    points
        .iter()
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                _ => f64::NAN,
            };
            (
                attribute_map(&p.attributes),
                v,
                p.start_time_unix_nano,
                p.flags,
            )
        })
        .collect()
}

const TEXT: &str = "# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",code=\"200\"} 1027
http_requests_total{method=\"POST\",code=\"500\"} 3
# TYPE temperature gauge
temperature 21.5
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"0.1\"} 2
rpc_seconds_bucket{le=\"1\"} 5
rpc_seconds_bucket{le=\"+Inf\"} 6
rpc_seconds_sum 4.2
rpc_seconds_count 6
# TYPE lag_seconds summary
lag_seconds{quantile=\"0.5\"} 0.2
lag_seconds{quantile=\"0.99\"} 0.9
lag_seconds_sum 12
lag_seconds_count 40
untyped_thing{a=\"b\"} 7
";

#[test]
fn families_become_the_collectors_otlp_shapes() {
    let mut memory = SeriesMemory::default();
    let (req, counts) = scrape(&mut memory, TEXT, Format::Text, T, &opts());
    assert_eq!(counts.scraped, 13);
    assert_eq!(counts.post_relabel, 13);
    assert_eq!(
        counts.series_added, 6,
        "2 counters, a gauge, a histogram, a summary, untyped"
    );
    let resource = attribute_map(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert_eq!(resource["service.name"], "app");
    assert_eq!(resource["service.instance.id"], "127.0.0.1:8000");
    assert_eq!(resource["server.port"], "8000");
    assert_eq!(resource["url.scheme"], "http");

    let requests = metric(&req, "http_requests_total");
    match &requests.data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
        }
        other => panic!("a counter is a sum: {other:?}"),
    }
    assert_eq!(requests.description, "Requests.");
    let points = numbers(requests);
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].0["method"], "GET");
    assert_eq!(
        points[0].0["env"], "prod",
        "target labels are series labels"
    );
    assert!(!points[0].0.contains_key("job"), "job is the resource");
    assert_eq!(points[0].1, 1027.0);
    assert_eq!(points[0].2, T, "first seen: starts now");

    assert!(matches!(
        metric(&req, "temperature").data,
        Some(metric::Data::Gauge(_))
    ));
    assert!(matches!(
        metric(&req, "untyped_thing").data,
        Some(metric::Data::Gauge(_))
    ));

    let Some(metric::Data::Histogram(h)) = &metric(&req, "rpc_seconds").data else {
        panic!("histogram");
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(
        p.bucket_counts,
        vec![2, 3, 1],
        "cumulative buckets become per-bucket counts"
    );
    assert_eq!((p.count, p.sum), (6, Some(4.2)));

    let Some(metric::Data::Summary(s)) = &metric(&req, "lag_seconds").data else {
        panic!("summary");
    };
    let p = &s.data_points[0];
    assert_eq!((p.count, p.sum), (40, 12.0));
    let q: Vec<(f64, f64)> = p
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(q, vec![(0.5, 0.2), (0.99, 0.9)]);
}

#[test]
fn start_times_follow_first_sight_resets_and_created() {
    let mut memory = SeriesMemory::default();
    let body = |v: u32| format!("# TYPE c_total counter\nc_total {v}\n");
    let (req, _) = scrape(&mut memory, &body(10), Format::Text, T, &opts());
    assert_eq!(numbers(metric(&req, "c_total"))[0].2, T);
    let (req, counts) = scrape(
        &mut memory,
        &body(15),
        Format::Text,
        T + 15_000_000_000,
        &opts(),
    );
    assert_eq!(counts.series_added, 0);
    assert_eq!(
        numbers(metric(&req, "c_total"))[0].2,
        T,
        "same start while it grows"
    );
    let later = T + 30_000_000_000;
    let (req, _) = scrape(&mut memory, &body(2), Format::Text, later, &opts());
    let start = numbers(metric(&req, "c_total"))[0].2;
    assert!(
        start > T + 15_000_000_000 && start < later,
        "a reset starts a new run: {start}"
    );

    let om = "# TYPE d counter\nd_total 5\nd_created 1600000000.5\n# EOF\n";
    let (req, _) = scrape(
        &mut SeriesMemory::default(),
        om,
        Format::OpenMetrics,
        T,
        &opts(),
    );
    let points = numbers(metric(&req, "d_total"));
    assert_eq!(
        points.len(),
        1,
        "_created is a part of the point, not a series"
    );
    assert_eq!(points[0].2, 1_600_000_000_500_000_000);
}

#[test]
fn vanished_series_and_failed_scrapes_are_marked_stale() {
    let mut memory = SeriesMemory::default();
    scrape(&mut memory, "a 1\nb 2\n", Format::Text, T, &opts());
    let (req, counts) = scrape(&mut memory, "a 1\n", Format::Text, T + 1, &opts());
    assert_eq!(counts.stale, 1);
    let b = numbers(metric(&req, "b"));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].3, FLAG_NO_RECORDED_VALUE);
    assert_eq!(memory.len(), 1);
    let (req, n) = memory.all_stale(&target(), T + 2);
    assert_eq!(n, 1);
    assert_eq!(numbers(metric(&req, "a"))[0].3, FLAG_NO_RECORDED_VALUE);
    assert!(memory.is_empty());
    let (req, n) = memory.all_stale(&target(), T + 3);
    assert_eq!((n, req.resource_metrics.len()), (0, 0));
}

#[test]
fn honor_labels_decides_conflicts_with_target_labels() {
    let body = "x{env=\"dev\",job=\"other\"} 1\n";
    let (req, _) = scrape(&mut SeriesMemory::default(), body, Format::Text, T, &opts());
    let p = &numbers(metric(&req, "x"))[0].0;
    assert_eq!(p["env"], "prod");
    assert_eq!(p["exported_env"], "dev");
    assert_eq!(p["exported_job"], "other");
    let honor = Options {
        honor_labels: true,
        ..opts()
    };
    let (req, _) = scrape(&mut SeriesMemory::default(), body, Format::Text, T, &honor);
    let p = &numbers(metric(&req, "x"))[0].0;
    assert_eq!(p["env"], "dev");
    let resource = attribute_map(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert_eq!(resource["service.name"], "other", "the scraped job wins");
}

#[test]
fn metric_relabeling_drops_and_sample_limit_counts_what_is_kept() {
    let rules: Vec<RelabelConfig> =
        serde_yaml_ng::from_str("[{source_labels: [__name__], regex: 'go_.*', action: drop}]")
            .expect("rules");
    let rules = compile_all(&rules).expect("compiles");
    let body = "go_goroutines 10\ngo_threads 4\nup_time 1\n";
    let options = Options {
        metric_relabel: &rules,
        sample_limit: 1,
        ..opts()
    };
    let (req, counts) = scrape(
        &mut SeriesMemory::default(),
        body,
        Format::Text,
        T,
        &options,
    );
    assert_eq!((counts.scraped, counts.post_relabel), (3, 1));
    assert_eq!(metrics(&req).len(), 1);
    let families = parse(b"a 1\nb 2\n", Format::Text, &Limits::default()).expect("parses");
    let err = SeriesMemory::default()
        .map(&target(), families, T, &options)
        .expect_err("two kept, limit one");
    assert_eq!(err, MapError::SampleLimit { limit: 1 });
}

#[test]
fn target_info_becomes_resource_attributes_and_exemplars_keep_trace_ids() {
    let om = "# TYPE target info\ntarget_info{version=\"1.2\"} 1\n# TYPE rpc histogram\nrpc_bucket{le=\"1\"} 1 # {trace_id=\"0102030405060708090a0b0c0d0e0f10\",span_id=\"0102030405060708\"} 0.5 1700000000.1\nrpc_bucket{le=\"+Inf\"} 1\nrpc_count 1\nrpc_sum 0.5\n# EOF\n";
    let (req, _) = scrape(
        &mut SeriesMemory::default(),
        om,
        Format::OpenMetrics,
        T,
        &opts(),
    );
    assert!(metrics(&req).iter().all(|m| m.name != "target_info"));
    let resource = attribute_map(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes,
    );
    assert_eq!(resource["version"], "1.2");
    let Some(metric::Data::Histogram(h)) = &metric(&req, "rpc").data else {
        panic!("histogram");
    };
    let e = &h.data_points[0].exemplars[0];
    assert_eq!(e.trace_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(e.span_id, (1..=8).collect::<Vec<u8>>());
    assert_eq!(e.time_unix_nano, 1_700_000_000_100_000_000);
}

#[test]
fn the_report_has_prometheus_synthetic_series() {
    let counts = Counts {
        scraped: 10,
        post_relabel: 8,
        series_added: 3,
        stale: 0,
    };
    let req = report(&target(), T, false, Duration::from_millis(250), &counts);
    let value = |name: &str| numbers(metric(&req, name))[0].1;
    assert_eq!(value("up"), 0.0);
    assert_eq!(value("scrape_duration_seconds"), 0.25);
    assert_eq!(value("scrape_samples_scraped"), 10.0);
    assert_eq!(value("scrape_samples_post_metric_relabeling"), 8.0);
    assert_eq!(value("scrape_series_added"), 3.0);
    assert_eq!(numbers(metric(&req, "up"))[0].0["env"], "prod");
}

#[test]
fn host_and_port_split_like_go() {
    assert_eq!(split_host_port("a:1"), ("a", Some("1")));
    assert_eq!(split_host_port("[::1]:9090"), ("::1", Some("9090")));
    assert_eq!(split_host_port("host"), ("host", None));
}
