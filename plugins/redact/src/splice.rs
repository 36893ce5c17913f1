//! Redaction in place of a batch's bytes, for traces and logs.
//!
//! The walk reads the batch through the SDK's views, which lend out slices of the batch, and
//! asks a [`Splice`] to replace the strings and values it masks or hashes and to remove the
//! attributes and records it drops. A batch with nothing to redact ends as `Unchanged` without
//! a copy; one with something to redact is copied once, with new values spliced in and the
//! enclosing lengths fixed, instead of being decoded into structs and encoded again.
//!
//! It looks at, decides and counts exactly what the decoding walk in the crate root does (the
//! tests hold the two to the same output): so the decoding walk stays the reference, and the
//! metrics signal still takes it.

use sluice_sdk::Error;
use sluice_sdk::view::{AttributesView, LogView, LogsView, SpanView, TracesView, ValueView};
use sluice_sdk::wire::{Rewrite, Splice};

use crate::engine::KeyClass;
use crate::{Action, Outcome, Redact, Rewritten, Walker};

/// The resources whose attributes called for dropping all their records, by where they are
/// in the batch: one look-up per record however many resources a batch has.
#[derive(Default)]
struct Dropped(std::collections::HashSet<usize>);

impl Dropped {
    fn has(&self, attrs: &AttributesView<'_>) -> bool {
        !self.0.is_empty()
            && !attrs.holder().is_empty()
            && self.0.contains(&(attrs.holder().as_ptr() as usize))
    }
}

/// One batch's splice, and the resources whose records all go.
struct Spliced<'b> {
    splice: Splice<'b>,
    dropped: Dropped,
}

impl<'b> Spliced<'b> {
    /// Starts with every resource's attributes redacted (traces and logs requests share the
    /// shape the view walks).
    fn new(batch: &'b [u8], w: &mut Walker<'_>) -> Result<Self, Error> {
        let mut s = Spliced {
            splice: Splice::new(batch),
            dropped: Dropped::default(),
        };
        TracesView::new(batch)
            .for_each_resource(|attrs| w.resource(attrs, &mut s.splice, &mut s.dropped))?;
        Ok(s)
    }

    /// One record (`encoded`, of the resource whose attributes are `attrs`): removed with its
    /// resource's records, or when `redact` says so; otherwise what `redact` changed stays.
    fn record(
        &mut self,
        attrs: &AttributesView<'_>,
        encoded: &'b [u8],
        redact: impl FnOnce(&mut Splice<'b>) -> Result<Outcome, Error>,
    ) -> Result<(), Error> {
        if !self.dropped.has(attrs) {
            let mark = self.splice.len();
            if redact(&mut self.splice)? != Outcome::DropRecord {
                return Ok(());
            }
            self.splice.undo_to(mark);
        }
        self.splice.remove(encoded);
        Ok(())
    }
}

impl Redact {
    pub(crate) fn splice_traces(&mut self, batch: &[u8]) -> Result<Rewrite, Error> {
        let mut w = self.walker();
        let mut s = Spliced::new(batch, &mut w)?;
        TracesView::new(batch).for_each_span(|resource, span| {
            s.record(&resource.attributes, span.encoded(), |splice| {
                w.splice_span(span, splice)
            })
        })?;
        s.splice.finish()
    }

    pub(crate) fn splice_logs(&mut self, batch: &[u8]) -> Result<Rewrite, Error> {
        let mut w = self.walker();
        let mut s = Spliced::new(batch, &mut w)?;
        LogsView::new(batch).for_each_log(|resource, log| {
            s.record(&resource.attributes, log.encoded(), |splice| {
                w.splice_log(log, splice)
            })
        })?;
        s.splice.finish()
    }
}

impl<'b> Walker<'_> {
    /// Redacts a resource's attributes; notes it in `dropped` when they call for dropping all
    /// its records.
    fn resource(
        &mut self,
        attrs: AttributesView<'b>,
        splice: &mut Splice<'b>,
        dropped: &mut Dropped,
    ) -> Result<(), Error> {
        if self.splice_attributes(attrs, splice)? == Outcome::DropRecord {
            dropped.0.insert(attrs.holder().as_ptr() as usize);
        }
        Ok(())
    }

    fn splice_span(
        &mut self,
        span: &SpanView<'b>,
        splice: &mut Splice<'b>,
    ) -> Result<Outcome, Error> {
        if self.splice_text(span.name, false, splice) == Outcome::DropRecord
            || self.splice_attributes(span.attributes, splice)? == Outcome::DropRecord
        {
            return Ok(Outcome::DropRecord);
        }
        let mut outcome = Outcome::Keep;
        span.for_each_event(|e| {
            if outcome == Outcome::Keep
                && (self.splice_text(e.name, false, splice) == Outcome::DropRecord
                    || self.splice_attributes(e.attributes, splice)? == Outcome::DropRecord)
            {
                outcome = Outcome::DropRecord;
            }
            Ok(())
        })?;
        span.for_each_link_attributes(|a| {
            if outcome == Outcome::Keep {
                outcome = self.splice_attributes(a, splice)?;
            }
            Ok(())
        })?;
        if outcome == Outcome::Keep {
            outcome = self.splice_text(span.status_message, false, splice);
        }
        Ok(outcome)
    }

    fn splice_log(&mut self, log: &LogView<'b>, splice: &mut Splice<'b>) -> Result<Outcome, Error> {
        if self.splice_value(log.body, false, splice)? == Outcome::DropRecord {
            return Ok(Outcome::DropRecord);
        }
        self.splice_attributes(log.attributes, splice)
    }

    /// A string value, name or body; as [`Walker::text`].
    fn splice_text(&mut self, s: &'b str, droppable: bool, splice: &mut Splice<'b>) -> Outcome {
        if s.is_empty() {
            return Outcome::Keep;
        }
        let mut hits = std::mem::take(&mut self.state.hits);
        self.find(s, &mut hits);
        let mut out = std::mem::take(&mut self.state.text);
        let rewritten = self.rewritten(s, &hits, droppable, &mut out);
        self.state.hits = hits;
        if rewritten == Rewritten::Replaced {
            splice.replace(s.as_bytes(), &out);
        }
        self.state.text = out;
        rewritten.into()
    }

    /// As [`Walker::value`].
    fn splice_value(
        &mut self,
        v: ValueView<'b>,
        droppable: bool,
        splice: &mut Splice<'b>,
    ) -> Result<Outcome, Error> {
        Ok(match v {
            ValueView::Str(s) => self.splice_text(s, droppable, splice),
            ValueView::Array(_) => {
                let mut outcome = Outcome::Keep;
                v.for_each_element(|e| {
                    if outcome == Outcome::Keep {
                        outcome = self.splice_value(e, droppable, splice)?;
                    }
                    Ok(())
                })?;
                outcome
            }
            ValueView::KvList(attrs) => self.splice_attributes(attrs, splice)?,
            _ => Outcome::Keep,
        })
    }

    /// As [`Walker::attributes`]: dropped entries are removed; returns `DropRecord` or `Keep`.
    fn splice_attributes(
        &mut self,
        attrs: AttributesView<'b>,
        splice: &mut Splice<'b>,
    ) -> Result<Outcome, Error> {
        let mut outcome = Outcome::Keep;
        attrs.for_each_encoded(|encoded| {
            if outcome == Outcome::DropRecord {
                return Ok(());
            }
            // An attribute seen clean before, byte for byte, is clean again.
            let probe = self.state.clean_attrs.probe(encoded);
            if let Some(p) = probe
                && self.state.clean_attrs.get(p, encoded).is_some()
            {
                return Ok(());
            }
            let mark = splice.len();
            let (key, value) = AttributesView::split_encoded(encoded)?;
            let attribute = match (self.classify(key), value) {
                (KeyClass::Allow, _) | (KeyClass::Secret | KeyClass::Plain, None) => Outcome::Keep,
                (KeyClass::Block, _) => {
                    self.state
                        .count(self.engine.block_rule, Action::DropAttribute);
                    Outcome::DropAttribute
                }
                (KeyClass::Secret, Some(v)) => self.splice_secret(v, splice)?,
                (KeyClass::Plain, Some(v)) => {
                    self.splice_value(ValueView::from_encoded(v)?, true, splice)?
                }
            };
            match attribute {
                Outcome::Keep => {
                    if let Some(p) = probe
                        && splice.len() == mark
                    {
                        self.state.clean_attrs.insert_if_seen(p, encoded, ());
                    }
                }
                Outcome::DropAttribute => {
                    splice.undo_to(mark);
                    splice.remove(encoded);
                }
                Outcome::DropRecord => outcome = Outcome::DropRecord,
            }
            Ok(())
        })?;
        Ok(outcome)
    }

    /// As [`Walker::secret`]: `encoded` is the attribute's `AnyValue`.
    fn splice_secret(
        &mut self,
        encoded: &'b [u8],
        splice: &mut Splice<'b>,
    ) -> Result<Outcome, Error> {
        let value = ValueView::from_encoded(encoded)?;
        let present = match value {
            ValueView::Str(s) => !s.is_empty() && !self.engine.is_redacted(s),
            ValueView::Empty | ValueView::Bool(_) => false,
            ValueView::Int(_) | ValueView::Double(_) => true,
            ValueView::Bytes(b) | ValueView::Array(b) => !b.is_empty(),
            ValueView::KvList(attrs) => {
                let mut any = false;
                attrs.for_each_encoded(|_| {
                    any = true;
                    Ok(())
                })?;
                any
            }
        };
        let replacement = self.secret_replacement(present, || match value {
            ValueView::Str(s) => s.as_bytes().into(),
            ValueView::Bytes(b) => b.into(),
            ValueView::Int(i) => i.to_string().into_bytes().into(),
            ValueView::Double(d) => d.to_string().into_bytes().into(),
            // Arrays and lists hash as they are encoded.
            _ => encoded.into(),
        });
        Ok(match replacement {
            Ok(replacement) => {
                // An `AnyValue` holding the string: field 1.
                splice.replace_with_string_value(encoded, &replacement);
                Outcome::Keep
            }
            Err(outcome) => outcome,
        })
    }
}
