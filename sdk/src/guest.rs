//! The glue between the WIT exports and a [`Plugin`]: decoding batches, holding the instance,
//! encoding verdicts. Used by [`crate::export_plugin!`]; not part of the public API.

use std::any::Any;
use std::cell::RefCell;

use prost::Message;

use crate::bindings::exports::sluice::plugin::plugin as wit;
use crate::view::{LogsView, TracesView};
use crate::wire::Rewrite;
use crate::{Error, Plugin, Signal, Verdict};

thread_local! {
    // A component instance is single-threaded; the plugin lives here between calls.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn to_wit_signal(s: Signal) -> wit::Signal {
    match s {
        Signal::Traces => wit::Signal::Traces,
        Signal::Metrics => wit::Signal::Metrics,
        Signal::Logs => wit::Signal::Logs,
    }
}

fn to_wit_error(e: Error) -> wit::Error {
    match e {
        Error::Config(m) => wit::Error::Config(m),
        Error::Input(m) => wit::Error::Input(m),
        Error::Internal(m) => wit::Error::Internal(m),
    }
}

fn with<P: Plugin, R>(f: impl FnOnce(&mut P) -> Result<R, Error>) -> Result<R, wit::Error> {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<P>())
            .ok_or_else(|| wit::Error::Internal("the plugin was not initialised".into()))?;
        f(plugin).map_err(to_wit_error)
    })
}

pub fn describe<P: Plugin>() -> wit::Info {
    let info = P::describe();
    wit::Info {
        name: info.name,
        version: info.version,
        signals: info.signals.into_iter().map(to_wit_signal).collect(),
        stateful: info.stateful,
    }
}

pub fn init<P: Plugin>(config: &str) -> Result<(), wit::Error> {
    let plugin = P::new(config).map_err(to_wit_error)?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

fn run<M: Message + Default>(
    bytes: &[u8],
    f: impl FnOnce(&mut M) -> Result<Verdict, Error>,
) -> Result<wit::Verdict, Error> {
    let mut batch =
        M::decode(bytes).map_err(|e| Error::Input(format!("invalid OTLP batch: {e}")))?;
    Ok(match f(&mut batch)? {
        Verdict::Unchanged => wit::Verdict::Unchanged,
        Verdict::Keep(indices) => wit::Verdict::Keep(indices),
        Verdict::Modified => wit::Verdict::Replace(batch.encode_to_vec()),
    })
}

/// A verdict given from a view: it cannot carry new bytes.
fn read_verdict(v: Verdict) -> Result<wit::Verdict, Error> {
    match v {
        Verdict::Unchanged => Ok(wit::Verdict::Unchanged),
        Verdict::Keep(indices) => Ok(wit::Verdict::Keep(indices)),
        Verdict::Modified => Err(Error::Internal(
            "read_traces/read_logs returned Modified; return None to modify the decoded batch"
                .into(),
        )),
    }
}

pub fn process<P: Plugin>(signal: wit::Signal, bytes: &[u8]) -> Result<wit::Verdict, wit::Error> {
    let sdk_signal = match signal {
        wit::Signal::Traces => Signal::Traces,
        wit::Signal::Metrics => Signal::Metrics,
        wit::Signal::Logs => Signal::Logs,
    };
    with::<P, _>(|p| match p.rewrite(sdk_signal, bytes)? {
        Some(Rewrite::Unchanged) => Ok(wit::Verdict::Unchanged),
        Some(Rewrite::Replace(b)) => Ok(wit::Verdict::Replace(b)),
        None => dispatch(p, signal, bytes),
    })
}

fn dispatch<P: Plugin>(
    p: &mut P,
    signal: wit::Signal,
    bytes: &[u8],
) -> Result<wit::Verdict, Error> {
    match signal {
        wit::Signal::Traces => match p.read_traces(&TracesView::new(bytes))? {
            Some(v) => read_verdict(v),
            None => run(bytes, |b| p.traces(b)),
        },
        wit::Signal::Metrics => run(bytes, |b| p.metrics(b)),
        wit::Signal::Logs => match p.read_logs(&LogsView::new(bytes))? {
            Some(v) => read_verdict(v),
            None => run(bytes, |b| p.logs(b)),
        },
    }
}

pub fn tick<P: Plugin>(now: u64) -> Result<(), wit::Error> {
    with::<P, _>(|p| p.tick(now))
}

pub fn snapshot<P: Plugin>() -> Vec<u8> {
    with::<P, _>(|p| Ok(p.snapshot())).unwrap_or_default()
}

pub fn restore<P: Plugin>(state: &[u8]) -> Result<(), wit::Error> {
    with::<P, _>(|p| p.restore(state))
}
