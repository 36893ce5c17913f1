//! A durable sending queue: the batches of one exporter in a write-ahead log of segment files.
//!
//! Layout under `<storage>/<exporter>/`:
//! - `LOCK`: held (`flock`) by the one process using the directory;
//! - `FIRST`: the id of the oldest segment still needed, so a deleted segment is noticed;
//! - `<id>.seg`: segment files, appended to until they reach `segment_size_kib`;
//! - `<id>.ack`: beside a segment, the offsets of its batches already delivered (or dropped
//!   with a counted reason), so a restart resends only the rest.
//!
//! A segment is a sequence of records: `SLQ1`, the payload's length (u32 LE), the payload's
//! CRC-32 (u32 LE), the payload. The payload holds a version byte, the signal, the time the
//! receiver accepted the batch (unix ns), its record count, its tenant and correlation id, then
//! the batch's OTLP protobuf.
//!
//! Guarantees: a batch is written (and, with `fsync: always`, flushed) before its client is
//! answered, so after a crash of the gateway every batch a client was told was accepted is
//! delivered at least once. A batch is marked done only after its exporter delivered it (or
//! dropped it for a counted reason). `.ack` files are never flushed: losing one resends
//! batches (duplicates), never loses them. On start, damage is skipped and counted
//! (`sluice_exporter_queue_disk_corruptions_total`): a torn tail, a record whose checksum does
//! not match (the reader resynchronises on the next valid record), a missing segment.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{FsyncPolicy, SendingQueueConfig};
use crate::model::{Batch, Signal};
use crate::telemetry::metrics::SelfMetrics;

const MAGIC: &[u8; 4] = b"SLQ1";
const HEADER: usize = 12;
const VERSION: u8 = 1;
/// No record is larger (the receivers' limits are far below).
const MAX_PAYLOAD: usize = 1 << 30;

/// Why a batch could not be written; its client is refused with a retryable error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// `max_size_mib` or `queue_size` reached, or the file system is full.
    Full(String),
    /// Any other I/O error.
    Io(String),
}

impl WriteError {
    pub fn reason(&self) -> &'static str {
        match self {
            WriteError::Full(_) => "full",
            WriteError::Io(_) => "io",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            WriteError::Full(m) | WriteError::Io(m) => m,
        }
    }
}

/// A batch handed to a consumer; [`DiskQueue::done`] marks it delivered.
#[derive(Debug)]
pub struct Ticket {
    segment: u64,
    offset: u64,
}

pub struct DiskQueue {
    name: Arc<str>,
    dir: PathBuf,
    fsync: FsyncPolicy,
    max_bytes: u64,
    max_batches: usize,
    segment_bytes: u64,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    metrics: Arc<SelfMetrics>,
    /// Random bytes of this queue directory that every checksum covers, so that a record
    /// cannot be forged inside a client's payload (where resynchronisation after damage would
    /// otherwise find it).
    salt: [u8; 16],
    /// Holds the directory's lock for the life of the queue.
    _lock: File,
}

struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment being appended to.
    writer: Option<u64>,
    next_id: u64,
    bytes: u64,
    /// Batches not yet done: unread or with a consumer.
    pending: usize,
    closed: bool,
    dirty: bool,
}

struct Segment {
    path: PathBuf,
    file: File,
    size: u64,
    /// Records not yet handed out: offset and payload length.
    unread: VecDeque<(u64, u32)>,
    in_flight: usize,
    sealed: bool,
    ack: Option<File>,
}

impl DiskQueue {
    /// Opens (or creates) the queue of exporter `name` under `config.storage`, recovering what
    /// a previous run left. Damage is skipped and counted; only an unusable directory fails.
    pub fn open(
        name: &str,
        config: &SendingQueueConfig,
        metrics: Arc<SelfMetrics>,
    ) -> Result<Arc<DiskQueue>, String> {
        let root = config
            .storage
            .as_ref()
            .ok_or_else(|| "no storage directory".to_string())?;
        let dir = root.join(dir_name(name));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the queue directory {}: {e}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(|e| format!("cannot open {}: {e}", dir.join("LOCK").display()))?;
        lock.try_lock().map_err(|_| {
            format!(
                "the queue directory {} is in use by another sluice process",
                dir.display()
            )
        })?;
        let name: Arc<str> = name.into();
        let salt = read_or_create_salt(&dir)?;
        let queue = DiskQueue {
            salt,
            name: name.clone(),
            fsync: config.fsync,
            max_bytes: config.size_limit_mib().saturating_mul(1 << 20),
            max_batches: config.queue_size,
            segment_bytes: config.segment_size_kib.saturating_mul(1024).max(4096),
            state: Mutex::new(State {
                segments: BTreeMap::new(),
                writer: None,
                next_id: 1,
                bytes: 0,
                pending: 0,
                closed: false,
                dirty: false,
            }),
            notify: tokio::sync::Notify::new(),
            metrics,
            _lock: lock,
            dir,
        };
        queue.recover()?;
        queue
            .metrics
            .queue_disk_capacity
            .with_label_values(&[&name])
            .set(queue.max_bytes as i64);
        queue.update_gauges(&queue.lock());
        Ok(Arc::new(queue))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn corruption(&self, kind: &str, detail: &str) {
        tracing::warn!(exporter = %self.name, dir = %self.dir.display(), kind, detail, "Disk queue damage skipped.");
        self.metrics
            .queue_disk_corruptions
            .with_label_values(&[&self.name, kind])
            .inc();
    }

    fn recover(&self) -> Result<(), String> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if let Some(id) = file_name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let first = std::fs::read_to_string(self.dir.join("FIRST"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let mut state = self.lock();
        let mut recovered = 0usize;
        // Segments that should exist but do not.
        let mut expected = first.or(ids.first().copied());
        for &id in &ids {
            if let Some(e) = expected
                && e < id
            {
                let detail = if id - e == 1 {
                    format!("segment {e} is missing")
                } else {
                    format!("segments {e} to {} are missing", id - 1)
                };
                self.corruption("missing_segment", &detail);
            }
            expected = Some(id.saturating_add(1));
        }
        // Segments are deleted oldest first only, so a gap is always damage.
        let mut prefix = true;
        for &id in &ids {
            let path = self.segment_path(id);
            let opened = std::fs::read(&path).and_then(|data| {
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                Ok((data, file))
            });
            let (data, file) = match opened {
                Ok(x) => x,
                Err(e) => {
                    // One unreadable segment must not keep the gateway from starting.
                    self.corruption("unreadable_segment", &format!("segment {id}: {e}"));
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                    prefix = false;
                    continue;
                }
            };
            let done = read_acks(&self.ack_path(id));
            let mut unread = VecDeque::new();
            let records = scan(&data, &self.salt, |kind, detail| {
                self.corruption(kind, &format!("segment {id}: {detail}"))
            });
            for (offset, len) in records {
                if !done.contains(&offset) {
                    unread.push_back((offset, len));
                }
            }
            if unread.is_empty() && prefix {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(self.ack_path(id));
                continue;
            }
            prefix = false;
            recovered += unread.len();
            state.pending += unread.len();
            state.bytes += data.len() as u64;
            state.segments.insert(
                id,
                Segment {
                    path,
                    file,
                    size: data.len() as u64,
                    unread,
                    in_flight: 0,
                    sealed: true,
                    ack: None,
                },
            );
        }
        // Acknowledgement files of segments that are gone.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                if let Some(id) = file_name
                    .to_string_lossy()
                    .strip_suffix(".ack")
                    .and_then(|s| s.parse::<u64>().ok())
                    && !state.segments.contains_key(&id)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        state.next_id = ids
            .last()
            .map_or(first.unwrap_or(1), |l| l.saturating_add(1))
            .max(1);
        let oldest = state
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(state.next_id);
        self.write_first(oldest);
        if recovered > 0 {
            tracing::info!(exporter = %self.name, dir = %self.dir.display(), batches = recovered, "Disk queue recovered batches to deliver.");
            self.metrics
                .queue_disk_recovered
                .with_label_values(&[&self.name])
                .inc_by(recovered as u64);
        }
        Ok(())
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn ack_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.ack"))
    }

    /// Records the oldest segment still needed. Written before a segment is deleted, so a crash
    /// in between leaves a segment older than `FIRST` (resent), never a false "missing".
    fn write_first(&self, id: u64) {
        let tmp = self.dir.join("FIRST.tmp");
        let result = std::fs::write(&tmp, format!("{id}\n"))
            .and_then(|_| std::fs::rename(&tmp, self.dir.join("FIRST")));
        if let Err(e) = result {
            tracing::warn!(exporter = %self.name, error = %e, "Cannot update the disk queue's FIRST file.");
        }
    }

    fn update_gauges(&self, state: &State) {
        self.metrics
            .queue_disk_bytes
            .with_label_values(&[&self.name])
            .set(state.bytes as i64);
        self.metrics
            .exporter_queue_depth
            .with_label_values(&[&self.name])
            .set(state.pending as i64);
    }

    /// Batches not yet delivered.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Whether a batch of ordinary size would be taken now.
    pub fn has_room(&self) -> bool {
        let s = self.lock();
        !s.closed && s.pending < self.max_batches && s.bytes < self.max_bytes
    }

    /// Writes the batch to the log (and flushes it with `fsync: always`). Blocking I/O: call
    /// from a blocking context.
    pub fn append(&self, batch: &Batch) -> Result<(), WriteError> {
        let result = self.append_inner(batch);
        if let Err(e) = &result {
            self.metrics
                .queue_disk_write_errors
                .with_label_values(&[&self.name, e.reason()])
                .inc();
        }
        result
    }

    fn append_inner(&self, batch: &Batch) -> Result<(), WriteError> {
        let record = encode_record(batch, &self.salt);
        if record.len() - HEADER > MAX_PAYLOAD {
            return Err(WriteError::Full(format!(
                "a batch of {} bytes is larger than a disk queue record can be",
                record.len()
            )));
        }
        let len = record.len() as u64;
        let mut state = self.lock();
        if state.closed {
            return Err(WriteError::Io("the queue is closing".into()));
        }
        if state.pending >= self.max_batches {
            return Err(WriteError::Full(format!(
                "the disk queue of exporter {} holds queue_size={} batches",
                self.name, self.max_batches
            )));
        }
        if state.bytes + len > self.max_bytes {
            return Err(WriteError::Full(format!(
                "the disk queue of exporter {} is at max_size_mib={}",
                self.name,
                self.max_bytes >> 20
            )));
        }
        let roll = match state.writer.and_then(|id| state.segments.get(&id)) {
            None => true,
            Some(seg) => seg.size > 0 && seg.size + len > self.segment_bytes,
        };
        if roll {
            self.roll(&mut state)?;
        }
        let id = state.writer.expect("a writer segment after roll");
        let seg = state.segments.get_mut(&id).expect("the writer's segment");
        let offset = seg.size;
        let written = seg
            .file
            .write_all_at(&record, offset)
            .map_err(|e| ("write", e));
        let flushed = written.and_then(|()| {
            if self.fsync == FsyncPolicy::Always {
                seg.file.sync_data().map_err(|e| ("flush", e))
            } else {
                Ok(())
            }
        });
        if let Err((what, e)) = flushed {
            // Leave no partial record behind (on a full disk the truncate still works), and
            // seal the segment: the next batch starts a new file, and this one is deleted once
            // delivered, which frees space.
            let _ = seg.file.set_len(offset);
            seg.sealed = true;
            state.writer = None;
            self.delete_if_done(&mut state);
            return Err(io_error(&self.name, what, &e));
        }
        seg.size += len;
        seg.unread
            .push_back((offset, (record.len() - HEADER) as u32));
        state.bytes += len;
        state.pending += 1;
        state.dirty = self.fsync == FsyncPolicy::Interval;
        self.update_gauges(&state);
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Seals the current segment and starts a new one.
    fn roll(&self, state: &mut State) -> Result<(), WriteError> {
        let id = state.next_id;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error(&self.name, "create a segment", &e))?;
        if let Some(old) = state.writer.take() {
            if let Some(seg) = state.segments.get_mut(&old) {
                if self.fsync != FsyncPolicy::Never {
                    let _ = seg.file.sync_data();
                }
                seg.sealed = true;
            }
            self.delete_if_done(state);
        }
        if self.fsync == FsyncPolicy::Always
            && let Ok(d) = File::open(&self.dir)
        {
            let _ = d.sync_all();
        }
        state.next_id = id + 1;
        state.writer = Some(id);
        state.segments.insert(
            id,
            Segment {
                path,
                file,
                size: 0,
                unread: VecDeque::new(),
                in_flight: 0,
                sealed: false,
                ack: None,
            },
        );
        Ok(())
    }

    /// Deletes done segments from the oldest on: a done segment waits until every older one
    /// is gone, so that a gap on disk always means damage (`missing_segment`).
    fn delete_if_done(&self, state: &mut State) {
        while let Some((&oldest, seg)) = state.segments.iter().next() {
            if !(seg.sealed && seg.unread.is_empty() && seg.in_flight == 0) {
                break;
            }
            let seg = state.segments.remove(&oldest).expect("present");
            let next = state
                .segments
                .keys()
                .next()
                .copied()
                .unwrap_or(state.next_id);
            self.write_first(next);
            let _ = std::fs::remove_file(&seg.path);
            let _ = std::fs::remove_file(self.ack_path(oldest));
            state.bytes = state.bytes.saturating_sub(seg.size);
        }
    }

    /// The next batch to deliver, waiting for one; `None` once the queue is closed and
    /// nothing is left to hand out.
    pub async fn next(&self) -> Option<(Arc<Batch>, Ticket)> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match crate::rt::blocking(|| self.try_next()) {
                Next::Batch(b, t) => return Some((b, t)),
                Next::Closed => return None,
                Next::Empty => notified.await,
            }
        }
    }

    fn try_next(&self) -> Next {
        let mut state = self.lock();
        loop {
            let Some((&id, seg)) = state
                .segments
                .iter_mut()
                .find(|(_, s)| !s.unread.is_empty())
            else {
                return if state.closed {
                    Next::Closed
                } else {
                    Next::Empty
                };
            };
            let (offset, len) = seg.unread.pop_front().expect("not empty");
            seg.in_flight += 1;
            let mut buf = vec![0u8; HEADER + len as usize];
            if let Err(e) = seg.file.read_exact_at(&mut buf, offset) {
                // An I/O error is not damage: keep the batch for a later attempt.
                seg.unread.push_front((offset, len));
                seg.in_flight -= 1;
                tracing::warn!(exporter = %self.name, segment = id, error = %e, "Cannot read from the disk queue; retrying later.");
                return Next::Empty;
            }
            let batch = decode_record(&buf, &self.salt);
            match batch {
                Ok(batch) => {
                    return Next::Batch(
                        Arc::new(batch),
                        Ticket {
                            segment: id,
                            offset,
                        },
                    );
                }
                Err(detail) => {
                    self.corruption(
                        "checksum",
                        &format!("segment {id}: record at offset {offset}: {detail}"),
                    );
                    self.finish(
                        &mut state,
                        Ticket {
                            segment: id,
                            offset,
                        },
                    );
                }
            }
        }
    }

    /// Marks a batch delivered (or dropped for a counted reason); a segment whose batches are
    /// all done is deleted.
    pub fn done(&self, ticket: Ticket) {
        let mut state = self.lock();
        self.finish(&mut state, ticket);
        let closed_and_empty = state.closed && state.pending == 0;
        drop(state);
        if closed_and_empty {
            self.notify.notify_waiters();
        }
    }

    fn finish(&self, state: &mut State, ticket: Ticket) {
        let Some(seg) = state.segments.get_mut(&ticket.segment) else {
            return;
        };
        seg.in_flight = seg.in_flight.saturating_sub(1);
        if seg.ack.is_none() {
            seg.ack = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.ack_path(ticket.segment))
                .ok();
        }
        if let Some(ack) = &mut seg.ack {
            // offset + 1: a zero-filled tail (a machine crash) reads as nothing done.
            let _ = ack.write_all(&(ticket.offset + 1).to_le_bytes());
        }
        state.pending = state.pending.saturating_sub(1);
        self.delete_if_done(state);
        self.update_gauges(state);
    }

    /// No more batches will be appended: consumers stop once the queue is drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.sync();
        self.notify.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Flushes the segment being written, if anything was appended since the last flush.
    pub fn sync(&self) {
        let mut state = self.lock();
        if !std::mem::take(&mut state.dirty) {
            return;
        }
        if let Some(seg) = state.writer.and_then(|id| state.segments.get(&id))
            && let Err(e) = seg.file.sync_data()
        {
            tracing::warn!(exporter = %self.name, error = %e, "Cannot flush the disk queue.");
        }
    }

    /// Flushes every `interval` until the queue closes (`fsync: interval`).
    pub async fn sync_every(queue: std::sync::Weak<DiskQueue>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let Some(q) = queue.upgrade() else { return };
            let closed = q.is_closed();
            crate::rt::blocking(|| q.sync());
            if closed {
                return;
            }
        }
    }
}

enum Next {
    Batch(Arc<Batch>, Ticket),
    Empty,
    Closed,
}

fn io_error(name: &str, what: &str, e: &std::io::Error) -> WriteError {
    let message = format!("the disk queue of exporter {name} cannot {what}: {e}");
    tracing::error!(exporter = name, error = %e, "Disk queue write failed; refusing new data.");
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            WriteError::Full(message)
        }
        _ => WriteError::Io(message),
    }
}

/// An exporter name as a directory name (`otlp/tempo` → `otlp_tempo`).
fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The valid records of a segment file: offset and payload length. Damage is reported to
/// `on_damage` (kind, detail) and skipped by looking for the next record whose checksum matches.
fn scan(data: &[u8], salt: &[u8; 16], mut on_damage: impl FnMut(&str, String)) -> Vec<(u64, u32)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if let Some(len) = valid_record_at(data, pos, salt) {
            records.push((pos as u64, len as u32));
            pos += HEADER + len;
            continue;
        }
        let torn = data.len() - pos < HEADER
            || (data[pos..pos + 4] == *MAGIC
                && pos + HEADER + read_u32(data, pos + 4) as usize > data.len());
        // Candidates are checked in full (a checksum each) up to a budget, so a damaged
        // segment full of look-alike headers cannot stall the start.
        let mut budget = RESYNC_BUDGET;
        let next = (pos + 1..data.len()).find(|&p| {
            if data[p..].starts_with(MAGIC) && budget > 0 {
                budget -= 1;
                valid_record_at(data, p, salt).is_some()
            } else {
                false
            }
        });
        let kind = if torn && next.is_none() {
            "torn_tail"
        } else {
            "checksum"
        };
        on_damage(
            kind,
            format!(
                "{} bytes at offset {pos} skipped",
                next.unwrap_or(data.len()) - pos
            ),
        );
        pos = next.unwrap_or(data.len());
    }
    records
}

/// The offsets an `.ack` file marks done (stored as offset + 1, so zeros mean nothing). A torn
/// last entry is cut off, so that later entries stay aligned.
fn read_acks(path: &Path) -> HashSet<u64> {
    let Ok(b) = std::fs::read(path) else {
        return HashSet::new();
    };
    if b.len() % 8 != 0
        && let Ok(f) = OpenOptions::new().write(true).open(path)
    {
        let _ = f.set_len((b.len() - b.len() % 8) as u64);
    }
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .filter(|&v| v > 0)
        .map(|v| v - 1)
        .collect()
}

fn read_or_create_salt(dir: &Path) -> Result<[u8; 16], String> {
    let path = dir.join("SALT");
    if let Ok(b) = std::fs::read(&path)
        && let Ok(salt) = <[u8; 16]>::try_from(b.as_slice())
    {
        return Ok(salt);
    }
    let salt: [u8; 16] = rand::random();
    std::fs::write(&path, salt).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(salt)
}

fn checksum(salt: &[u8; 16], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt);
    h.update(payload);
    h.finalize()
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Look-alike record headers checked after damage before the rest of a segment is given up.
const RESYNC_BUDGET: u32 = 4096;

/// The payload length of a record at `pos` whose header and checksum are intact.
fn valid_record_at(data: &[u8], pos: usize, salt: &[u8; 16]) -> Option<usize> {
    if data.len() - pos < HEADER || data[pos..pos + 4] != *MAGIC {
        return None;
    }
    let len = read_u32(data, pos + 4) as usize;
    if len > MAX_PAYLOAD || pos + HEADER + len > data.len() {
        return None;
    }
    let payload = &data[pos + HEADER..pos + HEADER + len];
    (checksum(salt, payload) == read_u32(data, pos + 8)).then_some(len)
}

fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
    }
}

fn encode_record(batch: &Batch, salt: &[u8; 16]) -> Vec<u8> {
    let body = batch.encoded();
    let tenant = batch.tenant.as_deref().unwrap_or("").as_bytes();
    let corr = batch.correlation_id.as_bytes();
    let tenant = &tenant[..tenant.len().min(u16::MAX as usize)];
    let corr = &corr[..corr.len().min(u16::MAX as usize)];
    let received = SystemTime::now()
        .checked_sub(batch.received_at.elapsed())
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut payload = Vec::with_capacity(20 + tenant.len() + corr.len() + body.len());
    payload.push(VERSION);
    payload.push(signal_code(batch.signal()));
    payload.extend_from_slice(&received.to_le_bytes());
    payload.extend_from_slice(&(batch.records() as u32).to_le_bytes());
    payload.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    payload.extend_from_slice(tenant);
    payload.extend_from_slice(&(corr.len() as u16).to_le_bytes());
    payload.extend_from_slice(corr);
    payload.extend_from_slice(body);
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&checksum(salt, &payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// A record (header included) back into a batch; checks the checksum again.
fn decode_record(record: &[u8], salt: &[u8; 16]) -> Result<Batch, String> {
    let len = valid_record_at(record, 0, salt).ok_or("checksum mismatch")?;
    let p = &record[HEADER..HEADER + len];
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = p.get(at..at + n).ok_or("truncated payload")?;
        at += n;
        Ok(s)
    };
    if take(1)?[0] != VERSION {
        return Err("unknown record version".into());
    }
    let signal = match take(1)?[0] {
        1 => Signal::Traces,
        2 => Signal::Metrics,
        3 => Signal::Logs,
        other => return Err(format!("unknown signal {other}")),
    };
    let received = u64::from_le_bytes(take(8)?.try_into().expect("8"));
    let records = u32::from_le_bytes(take(4)?.try_into().expect("4")) as usize;
    let n = u16::from_le_bytes(take(2)?.try_into().expect("2")) as usize;
    let tenant = std::str::from_utf8(take(n)?).map_err(|_| "tenant is not UTF-8")?;
    let tenant = (!tenant.is_empty()).then(|| Arc::<str>::from(tenant));
    let n = u16::from_le_bytes(take(2)?.try_into().expect("2")) as usize;
    let corr: Arc<str> = String::from_utf8_lossy(take(n)?).into();
    let body = Bytes::copy_from_slice(&p[at..]);
    let mut batch = Batch::from_wire(signal, body, records, corr);
    batch.tenant = tenant;
    let age = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_nanos(received))
        .unwrap_or_default();
    batch.received_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payload;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn batch(n: usize, name: &str) -> Batch {
        let spans = (0..n)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![(i + 1) as u8; 8],
                name: name.into(),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut b = Batch::new(Payload::Traces(req), None, "c-1".into());
        b.tenant = Some("acme".into());
        b
    }

    fn config(dir: &Path) -> SendingQueueConfig {
        SendingQueueConfig {
            storage: Some(dir.to_path_buf()),
            segment_size_kib: 4,
            ..Default::default()
        }
    }

    fn metrics() -> Arc<SelfMetrics> {
        Arc::new(SelfMetrics::new())
    }

    fn corruptions(m: &SelfMetrics, kind: &str) -> u64 {
        m.queue_disk_corruptions
            .with_label_values(&["otlp/a", kind])
            .get()
    }

    async fn drain(q: &DiskQueue) -> Vec<Arc<Batch>> {
        q.close();
        let mut out = Vec::new();
        while let Some((b, t)) = q.next().await {
            out.push(b);
            q.done(t);
        }
        out
    }

    fn names(batches: &[Arc<Batch>]) -> Vec<String> {
        batches
            .iter()
            .map(|b| match b.payload() {
                Payload::Traces(r) => r.resource_spans[0].scope_spans[0].spans[0].name.clone(),
                _ => unreachable!(),
            })
            .collect()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sluice-queue-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).expect("test");
        d
    }

    #[tokio::test]
    async fn batches_survive_a_restart_with_tenant_age_and_content() {
        let dir = tempdir("restart");
        {
            let q = DiskQueue::open("otlp/a", &config(&dir), metrics()).expect("test");
            for i in 0..20 {
                q.append(&batch(10, &format!("b{i}"))).expect("test");
            }
            // Deliver the first five, as a consumer would, then "crash" (drop without close).
            for _ in 0..5 {
                let (_, t) = q.next().await.expect("test");
                q.done(t);
            }
        }
        let m = metrics();
        let q = DiskQueue::open("otlp/a", &config(&dir), m.clone()).expect("test");
        assert_eq!(q.pending(), 15);
        let got = drain(&q).await;
        let expected: Vec<String> = (5..20).map(|i| format!("b{i}")).collect();
        assert_eq!(names(&got), expected);
        assert_eq!(got[0].tenant.as_deref(), Some("acme"));
        assert_eq!(got[0].records(), 10);
        assert!(got[0].received_at.elapsed() < Duration::from_secs(60));
        assert_eq!(&*got[0].correlation_id, "c-1");
        // Everything delivered: segments deleted.
        let segs = std::fs::read_dir(q.dir.clone())
            .expect("test")
            .filter(|e| {
                e.as_ref()
                    .expect("test")
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count();
        assert!(segs <= 1, "{segs} segment files left");
        assert_eq!(
            corruptions(&m, "checksum") + corruptions(&m, "torn_tail"),
            0
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn damage_is_skipped_and_counted_and_the_rest_delivered() {
        let dir = tempdir("damage");
        let qdir;
        {
            let q = DiskQueue::open("otlp/a", &config(&dir), metrics()).expect("test");
            qdir = q.dir.clone();
            for i in 0..40 {
                q.append(&batch(10, &format!("b{i}"))).expect("test");
            }
        }
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&qdir)
            .expect("test")
            .map(|e| e.expect("test").path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        assert!(segs.len() >= 3, "{} segments", segs.len());
        let salt: [u8; 16] = std::fs::read(qdir.join("SALT"))
            .expect("test")
            .try_into()
            .expect("test");
        let count = |p: &Path| scan(&std::fs::read(p).expect("test"), &salt, |_, _| {}).len();
        let total: usize = segs.iter().map(|p| count(p)).sum();
        assert_eq!(total, 40);
        // A flipped byte in the middle of the first segment's second record.
        let mut d = std::fs::read(&segs[0]).expect("test");
        let second = HEADER + read_u32(&d, 4) as usize;
        d[second + HEADER + 30] ^= 0xff;
        std::fs::write(&segs[0], &d).expect("test");
        // The second segment deleted.
        let lost_in_deleted = count(&segs[1]);
        std::fs::remove_file(&segs[1]).expect("test");
        // The last segment's tail torn.
        let last = segs.last().expect("test");
        let d = std::fs::read(last).expect("test");
        std::fs::write(last, &d[..d.len() - 7]).expect("test");

        let m = metrics();
        let q = DiskQueue::open("otlp/a", &config(&dir), m.clone()).expect("test");
        assert_eq!(corruptions(&m, "checksum"), 1);
        assert_eq!(corruptions(&m, "missing_segment"), 1);
        assert_eq!(corruptions(&m, "torn_tail"), 1);
        // Still accepts writes.
        q.append(&batch(1, "after")).expect("test");
        let got = names(&drain(&q).await);
        assert_eq!(got.len(), 40 - 1 - lost_in_deleted - 1 + 1);
        assert!(!got.contains(&"b1".to_string()));
        assert_eq!(got.last().expect("test"), "after");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn full_queue_refuses_and_a_second_process_is_locked_out() {
        let dir = tempdir("full");
        let mut c = config(&dir);
        c.max_size_mib = Some(1);
        let q = DiskQueue::open("otlp/a", &c, metrics()).expect("test");
        let big = batch(2000, &"x".repeat(200));
        let mut taken = 0;
        let err = loop {
            match q.append(&big) {
                Ok(()) => taken += 1,
                Err(e) => break e,
            }
            assert!(taken < 100);
        };
        assert_eq!(err.reason(), "full");
        assert!(
            err.message().contains("max_size_mib=1"),
            "{}",
            err.message()
        );
        assert!(taken >= 1);
        let second = DiskQueue::open("otlp/a", &c, metrics());
        assert!(
            second
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("in use by another sluice process")),
            "{:?}",
            second.err()
        );
        // Delivering frees room.
        let (_, t) = q.next().await.expect("test");
        q.done(t);
        let (_, t) = q.next().await.expect("test");
        q.done(t);
        q.append(&big).expect("test");
        drop(q);
        let _ = std::fs::remove_dir_all(dir);
    }
}
