//! The cost of plugins per batch: an `unchanged` plugin reading the batch in place, the same
//! through the decoded batch (`unchanged_decoded`), a rewriting plugin, and a chain of
//! three reading plugins, on 100- and 1000-span batches, against the no-plugin path (which
//! only hands the batch on).
//!
//! Needs the test plugin: `scripts/build-plugins.sh`, then
//! `cargo bench -p sluice --bench plugins`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::request;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice::config::{OnError, ProcessorSpec};
use sluice::model::{Batch, Payload, Signal};
use sluice::plugins::{Outcome, PluginEngine, Processor};
use sluice::telemetry::metrics::SelfMetrics;

fn chaos() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/sluice_plugin_chaos.wasm");
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh first",
        path.display()
    );
    path
}

fn processor(engine: &Arc<PluginEngine>, name: &str, mode: &str) -> Processor {
    load(
        engine,
        name,
        chaos(),
        &format!(r#"{{"mode": "{mode}", "prefix": "x."}}"#),
    )
}

/// A built-in plugin, e.g. `builtin(&engine, "redact", "{}")`.
fn builtin(engine: &Arc<PluginEngine>, name: &str, config: &str) -> Processor {
    let path = chaos().with_file_name(format!("sluice_plugin_{name}.wasm"));
    load(engine, name, path, config)
}

fn load(engine: &Arc<PluginEngine>, name: &str, path: PathBuf, config: &str) -> Processor {
    let spec = ProcessorSpec {
        name: name.into(),
        path,
        builtin: None,
        embedded: None,
        config_json: config.to_string(),
        display_config: serde_json::Value::Null,
        memory_mb: 256,
        timeout: Duration::from_secs(5),
        timeout_is_default: false,
        max_batch_bytes: usize::MAX,
        on_error: OnError::Pass,
    };
    Processor::load(spec, engine.clone(), Arc::new(SelfMetrics::new())).expect("the plugin loads")
}

fn forward(p: &Processor, batch: Arc<Batch>) -> Arc<Batch> {
    match p.process(batch).0 {
        Outcome::Forward(b) => b,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let engine = PluginEngine::new(None).expect("engine");
    let pass = processor(&engine, "pass", "pass");
    let pass_decoded = processor(&engine, "pass_decoded", "pass_decoded");
    // Nothing to redact: the bench batch's only personal data is `client.address`, allowed here.
    let redact = builtin(&engine, "redact", r#"{"allow_keys": ["client.address"]}"#);
    // The defaults: every span's `client.address` masked.
    let redact_masking = load(
        &engine,
        "redact_masking",
        chaos().with_file_name("sluice_plugin_redact.wasm"),
        "{}",
    );
    let slo = builtin(
        &engine,
        "slo",
        r#"{"slos": [{"name": "a", "service": "orders", "objective": 99.9, "sli": {"availability": {}}}]}"#,
    );
    let rename = processor(&engine, "rename", "rename");
    let enrich = builtin(
        &engine,
        "enrich",
        r#"{"attributes": [{"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}]}"#,
    );
    // A record step too (the route derived from `url.path` on every span), as `bench/run.py`'s
    // `enrich` scenario.
    let enrich_records = builtin(
        &engine,
        "enrich",
        r#"{"attributes": [{"action": "upsert", "target": "resource", "key": "deployment.region", "value": "eu-1"}],
            "derive": {"from": "url.path", "to": "http.target_route", "templates": ["/api/v1/orders/{id}"]}}"#,
    );
    let chain = [
        processor(&engine, "a", "pass"),
        processor(&engine, "b", "pass"),
        processor(&engine, "c", "pass"),
    ];
    for spans in [100usize, 1000] {
        let bytes = bytes::Bytes::from(request(spans).encode_to_vec());
        let fresh = || {
            let payload = Payload::decode_protobuf(Signal::Traces, &bytes).expect("valid");
            Arc::new(Batch::new(payload, Some(bytes.clone()), "bench".into()).compact())
        };
        let mut group = c.benchmark_group(format!("plugins_{spans}_spans"));
        group.throughput(Throughput::Elements(spans as u64));
        group.bench_function("no_plugin", |b| {
            b.iter_batched(fresh, |batch| batch.encoded().len(), BatchSize::SmallInput)
        });
        group.bench_function("unchanged", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&pass, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("unchanged_decoded", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&pass_decoded, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("redact_nothing_to_redact", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&redact, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("redact_masking_one_value_per_span", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&redact_masking, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("slo", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&slo, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("rewrite", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&rename, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("enrich_resource", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&enrich, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("enrich_records", |b| {
            b.iter_batched(
                fresh,
                |batch| forward(&enrich_records, batch).encoded().len(),
                BatchSize::SmallInput,
            )
        });
        // The issue's chain: enrich (a resource attribute), redact (nothing to redact), slo.
        group.bench_function("enrich_redact_slo", |b| {
            b.iter_batched(
                fresh,
                |batch| {
                    let batch = forward(&enrich, batch);
                    let batch = forward(&redact, batch);
                    forward(&slo, batch).encoded().len()
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("chain_of_3_readers", |b| {
            b.iter_batched(
                fresh,
                |batch| {
                    let mut batch = batch;
                    for p in &chain {
                        batch = forward(p, batch);
                    }
                    batch.encoded().len()
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
