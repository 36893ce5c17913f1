//! Pipelines: one per `service.pipelines` entry, each carrying one signal.
//!
//! Receivers hand a [`Batch`] to a pipeline through its [`PipelineHandle`]; the batch waits in the
//! pipeline's bounded queue, passes its processors (Wasm plugins, once per batch), and is
//! put into every exporter's own bounded queue. Full queues push back: a pipeline whose
//! exporters are all full waits for room before processing its next batch, its queue fills,
//! and a receiver holds a request briefly for a place in it ([`ADMISSION_WAIT`](crate::inlet::ADMISSION_WAIT)) before
//! refusing with a retryable error, so a well-behaved client retries and nothing accepted is
//! lost for want of room. When one exporter of several is full (a slow backend), the others
//! keep flowing and that exporter's drops are counted
//! (`sluice_dropped_records_total{reason="queue_full"}`).
//!
//! A pipeline with processors answers each submission once its processors are done, so a
//! processor's `on_error: reject` reaches the client as a retryable error. Telemetry a plugin
//! emits enters the pipelines of its signal through the [`EmitRouter`], never reaching the
//! processor that emitted it again.

pub mod tap;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::budget::{ByteBudget, BytesHeld};
use crate::exporters::{ExporterHandle, Reservation};
use crate::inlet::{PipelineHandle, Rejection, Room, Submission};
use crate::model::{Batch, Payload, Signal};
use crate::plugins::{Emitted, Outcome, Processor};
use crate::telemetry::QueueProbe;
use crate::telemetry::metrics::SelfMetrics;

/// A pipeline emitted telemetry can enter: its signal, name and queue.
type EmitTarget = (Signal, Arc<str>, mpsc::WeakSender<Submission>);

/// Routes telemetry emitted by plugins into the pipelines of its signal. Holds the pipelines
/// weakly, so it never keeps them from shutting down.
#[derive(Default)]
pub struct EmitRouter {
    pipelines: OnceLock<Vec<EmitTarget>>,
    metrics: OnceLock<Arc<SelfMetrics>>,
    /// What SLO plugins report, for `/api/v1/slos`.
    pub slos: crate::slo::SloBoard,
}

impl std::fmt::Debug for EmitRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmitRouter")
    }
}

impl EmitRouter {
    pub fn new() -> Arc<EmitRouter> {
        Arc::new(EmitRouter::default())
    }

    /// Called once every pipeline runs.
    pub fn connect(&self, pipelines: &[Pipeline], metrics: Arc<SelfMetrics>) {
        let _ = self.pipelines.set(
            pipelines
                .iter()
                .map(|p| {
                    (
                        p.handle.signal,
                        p.handle.name.clone(),
                        p.handle.tx.downgrade(),
                    )
                })
                .collect(),
        );
        let _ = self.metrics.set(metrics);
    }

    pub fn route(&self, processor: &Arc<str>, emitted: Emitted) {
        let Some(pipelines) = self.pipelines.get() else {
            return;
        };
        for (signal, data) in emitted {
            let payload = match Payload::decode_protobuf(signal, &data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(processor = %processor, error = %e, "Plugin emitted invalid telemetry; ignoring it.");
                    continue;
                }
            };
            if let Payload::Metrics(m) = &payload {
                self.slos.observe(m);
            }
            let mut batch = Batch::new(
                payload,
                Some(data.into()),
                format!("plugin/{processor}").into(),
            );
            batch.origin = Some(processor.clone());
            let batch = Arc::new(batch);
            for (s, name, tx) in pipelines {
                if *s != signal {
                    continue;
                }
                let sent = tx.upgrade().map(|tx| {
                    tx.try_send(Submission {
                        batch: batch.clone(),
                        ack: None,
                        // What plugins emit is bounded by the queue's number of batches.
                        bytes: BytesHeld::none(),
                    })
                });
                if !matches!(sent, Some(Ok(())))
                    && let Some(m) = self.metrics.get()
                {
                    m.drop_records(
                        &format!("pipeline/{name}"),
                        signal.as_str(),
                        "queue_full",
                        batch.records(),
                    );
                }
            }
        }
    }
}

/// How much a pipeline's queue holds: batches, and their protobuf bytes in MiB.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    pub batches: usize,
    pub mib: u64,
}

/// A running pipeline: its handle and the task that moves batches to the exporters.
pub struct Pipeline {
    pub handle: PipelineHandle,
    pub task: JoinHandle<()>,
    /// Stops the task between batches (shutdown timeout): it may run on a thread of its own,
    /// which aborting the task does not reach. Batches left in its queue are counted dropped.
    pub cancel: CancellationToken,
    /// Where `sluice tap` looks at the batches passing.
    pub taps: Arc<tap::Taps>,
}

impl Pipeline {
    /// A look at the pipeline's queue that does not keep it open.
    pub fn probe(&self) -> QueueProbe {
        QueueProbe::of(self.handle.tx.downgrade())
    }

    /// Starts the pipeline's task. It ends once every handle is dropped and the queue is empty;
    /// dropping `exporters` then lets the exporters drain in turn.
    pub fn start(
        name: &str,
        signal: Signal,
        queue: QueueBounds,
        processors: Vec<Arc<Processor>>,
        exporters: Vec<ExporterHandle>,
        emit: Arc<EmitRouter>,
        metrics: Arc<SelfMetrics>,
    ) -> Pipeline {
        let QueueBounds { batches, mib } = queue;
        let (tx, rx) = mpsc::channel(batches);
        let bytes = ByteBudget::mib(mib);
        metrics
            .pipeline_queue_capacity_bytes
            .with_label_values(&[name])
            .set(bytes.limit_bytes() as i64);
        let name: Arc<str> = name.into();
        metrics
            .pipeline_queue_capacity
            .with_label_values(&[&name])
            .set(batches as i64);
        let handle = PipelineHandle::new(
            name.clone(),
            signal,
            tx,
            exporters
                .iter()
                .filter_map(|e| e.disk_room())
                .map(|r| Box::new(r) as Box<dyn Room>)
                .collect(),
            !processors.is_empty() || exporters.iter().any(|e| e.is_durable()),
            bytes.clone(),
            metrics.clone(),
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let taps = Arc::new(tap::Taps::default());
        let tapped = taps.clone();
        let task = if processors.is_empty() {
            tokio::spawn(run(
                name, rx, bytes, processors, exporters, emit, metrics, stop, tapped,
            ))
        } else {
            // Plugins are CPU-bound and call WASI synchronously: they run on a thread of their
            // own instead of a runtime worker. Handing a worker over for each batch
            // (`block_in_place`) cost a thread wake-up per batch, about as much as `redact` on
            // 100 spans; a thread that finds its next batch already queued costs nothing.
            tokio::task::spawn_blocking(move || {
                crate::rt::block_on(run(
                    name, rx, bytes, processors, exporters, emit, metrics, stop, tapped,
                ))
            })
        };
        Pipeline {
            handle,
            task,
            cancel,
            taps,
        }
    }
}

/// Runs the processors in order; `Ok(None)` when the batch ends here.
fn run_chain(
    processors: &[Arc<Processor>],
    mut batch: Arc<Batch>,
    emitted: &mut Vec<(Arc<str>, Emitted)>,
    taps: &tap::Taps,
) -> Result<Option<Arc<Batch>>, Rejection> {
    for (point, p) in processors.iter().enumerate() {
        taps.offer(point, &batch);
        if batch.origin.as_deref() == Some(&*p.name) {
            continue;
        }
        let (outcome, out) = p.process(batch);
        if !out.is_empty() {
            emitted.push((p.name.clone(), out));
        }
        match outcome {
            Outcome::Forward(b) => batch = b,
            Outcome::Drop { .. } => return Ok(None),
            Outcome::Reject { message } => return Err(Rejection::Processor(message)),
        }
    }
    Ok(Some(batch))
}

/// How long a batch whose client waits for the processors' answer waits for room in full
/// exporter queues before the client is refused (it retries): long enough for a burst to
/// drain, short enough that a stalled backend does not hold clients. While the queues stay
/// full after such a wait, the next waiting batches are refused at once.
const ROOM_WAIT: Duration = Duration::from_millis(200);

/// Waits until one of the (full) memory queues of `exporters` has a slot; `None` once `limit`
/// has passed or every queue has closed. The slot is reserved in the returned list.
async fn wait_for_room(
    exporters: &[ExporterHandle],
    bytes: usize,
    limit: Option<Duration>,
) -> Option<Vec<Reservation>> {
    let mut waits: Vec<_> = exporters
        .iter()
        .enumerate()
        .map(|(i, e)| Box::pin(async move { (e.reserve_waiting(bytes).await, i) }))
        .collect();
    let any = async {
        while !waits.is_empty() {
            let ((slot, i), _, rest) = futures_util::future::select_all(waits).await;
            if let Some(slot) = slot {
                return Some((slot, i));
            }
            waits = rest;
        }
        None
    };
    let (slot, taken) = match limit {
        Some(limit) => tokio::time::timeout(limit, any).await.ok().flatten()?,
        None => any.await?,
    };
    // The others may have room by now too.
    let mut slot = Some(slot);
    Some(
        exporters
            .iter()
            .enumerate()
            .map(|(i, e)| match slot.take_if(|_| i == taken) {
                Some(slot) => slot,
                None => e.reserve(bytes),
            })
            .collect(),
    )
}

/// A pipeline's queue. Batches still in it when the pipeline task is aborted (shutdown
/// timeout) are counted as dropped; waiting clients see their answer channel close and retry.
struct Inbox {
    rx: mpsc::Receiver<Submission>,
    metrics: Arc<SelfMetrics>,
    pipeline: Arc<str>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        while let Ok(Submission { batch, ack, .. }) = self.rx.try_recv() {
            if ack.is_none() {
                count_shutdown_drop(&self.metrics, &self.pipeline, &batch);
            }
        }
    }
}

/// A batch the pipeline task holds while it waits for room; counted as dropped if the task is
/// aborted meanwhile (shutdown timeout) and no client is waiting to retry it.
struct Held<'a> {
    batch: &'a Batch,
    metrics: &'a SelfMetrics,
    pipeline: &'a str,
    armed: bool,
}

impl Held<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.armed {
            count_shutdown_drop(self.metrics, self.pipeline, self.batch);
        }
    }
}

fn count_shutdown_drop(metrics: &SelfMetrics, pipeline: &str, batch: &Batch) {
    metrics.drop_records(
        &format!("pipeline/{pipeline}"),
        batch.signal().as_str(),
        "shutdown",
        batch.records(),
    );
}

#[allow(clippy::too_many_arguments)]
async fn run(
    name: Arc<str>,
    rx: mpsc::Receiver<Submission>,
    bytes: Arc<ByteBudget>,
    processors: Vec<Arc<Processor>>,
    exporters: Vec<ExporterHandle>,
    emit: Arc<EmitRouter>,
    metrics: Arc<SelfMetrics>,
    cancel: CancellationToken,
    taps: Arc<tap::Taps>,
) {
    let depth = metrics.pipeline_queue_depth.with_label_values(&[&name]);
    let depth_bytes = metrics.pipeline_queue_bytes.with_label_values(&[&name]);
    let mut rx = Inbox {
        rx,
        metrics: metrics.clone(),
        pipeline: name.clone(),
    };
    // Whether the last bounded wait for exporter room ran out, the queues full since.
    let mut stalled = false;
    // In a pipeline whose clients wait for the processors' answer, every batch waits for
    // exporter room only briefly, also telemetry the plugins emitted (no client waits for it,
    // but clients' batches queue behind it).
    let bounded = !processors.is_empty();
    loop {
        // The shutdown timeout stops the loop between batches (aborting does not reach a
        // pipeline on its own thread); what is left in the queue is counted by `Inbox`.
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            next = rx.rx.recv() => next,
        };
        // The batch's bytes of the pipeline queue's budget are held until it is handed on.
        let Some(Submission {
            batch,
            ack,
            bytes: held,
        }) = next
        else {
            break;
        };
        depth.set(rx.rx.len() as i64);
        let size = batch.size_bytes();
        // Room first, so that no batch is processed only to find every queue full: when no
        // exporter can take it, wait (a batch already acknowledged for as long as it takes; in
        // a pipeline with processors up to ROOM_WAIT, or not at all while the queues stay full
        // after such a wait ran out).
        let mut slots: Vec<Reservation> = exporters.iter().map(|e| e.reserve(size)).collect();
        if slots.iter().any(|r| !matches!(r, Reservation::Full)) {
            stalled = false;
        } else if !exporters.is_empty() {
            let limit = match (bounded || ack.is_some(), stalled) {
                (false, _) => None,
                (true, false) => Some(ROOM_WAIT),
                (true, true) => Some(Duration::ZERO),
            };
            let held = Held {
                batch: &batch,
                metrics: &metrics,
                pipeline: &name,
                armed: ack.is_none(),
            };
            let waited = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                waited = wait_for_room(&exporters, size, limit) => Some(waited),
            };
            let Some(waited) = waited else {
                // Shutdown timeout: `held` counts the batch (or its client retries).
                break;
            };
            held.disarm();
            match waited {
                Some(reserved) => {
                    slots = reserved;
                    stalled = false;
                }
                None => {
                    stalled = limit.is_some();
                    match ack {
                        Some(ack) => {
                            let _ = ack.send(Err(Rejection::QueueFull));
                        }
                        // Emitted telemetry, or every queue closed (shutting down).
                        None => {
                            for e in &exporters {
                                e.count_drop(&batch);
                            }
                        }
                    }
                    continue;
                }
            }
        }
        let mut emitted = Vec::new();
        let result = if processors.is_empty() {
            Ok(Some(batch))
        } else {
            let _span = batch.span.enter();
            // On the pipeline's own thread (see `Pipeline::start`).
            run_chain(&processors, batch.clone(), &mut emitted, &taps)
        };
        for (processor, out) in emitted {
            emit.route(&processor, out);
        }
        let (mut answer, batch) = match result {
            Ok(b) => (Ok(()), b),
            Err(rejection) => (Err(rejection), None),
        };
        if let Some(batch) = batch {
            taps.offer(processors.len(), &batch);
            for (exporter, slot) in exporters.iter().zip(slots) {
                match exporter.deliver(slot, batch.clone()) {
                    Ok(true) => {}
                    // Full while another exporter took the batch (a slow backend does not
                    // hold the others up): counted as dropped there.
                    Ok(false) => exporter.count_drop(&batch),
                    Err(e) if ack.is_some() => {
                        // The client is refused and retries; exporters that took the batch
                        // may get it twice (at least once).
                        if answer.is_ok() {
                            answer = Err(Rejection::Storage(e.message().to_string()));
                        }
                    }
                    Err(e) => metrics.drop_records(
                        &format!("exporter/{}", exporter.name),
                        batch.signal().as_str(),
                        &format!("storage_{}", e.reason()),
                        batch.records(),
                    ),
                }
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(answer);
        }
        drop(held);
        depth_bytes.set(bytes.used_bytes() as i64);
    }
    tracing::debug!(pipeline = %name, "Pipeline drained and stopped.");
}
