//! Source locations of mapping keys, by dotted path (`auth.kind`, `services[1].name`).
//!
//! serde only reports locations for errors it raises itself. Checks that run after
//! deserialisation (lengths, uniqueness, cross-field rules) still need to point at the offending
//! key, so the document is walked once more with the YAML event parser to record where each key is.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineColumn {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Default)]
pub(crate) struct KeyLocations {
    by_path: HashMap<String, LineColumn>,
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

impl KeyLocations {
    /// Records every key in the first document. Parse errors end the walk early: the
    /// deserialiser reports those itself, and validation only runs on documents that parsed.
    pub(crate) fn scan(text: &str) -> KeyLocations {
        let mut locations = KeyLocations::default();
        let mut frames: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Mapping { key: key @ None }) = frames.last_mut() {
                        *key = Some(value.into_owned());
                        locations.record(&frames, span);
                    } else {
                        locations.record_item(&frames, span);
                        finish_value(&mut frames);
                    }
                }
                Event::Alias(_) => {
                    locations.record_item(&frames, span);
                    finish_value(&mut frames);
                }
                Event::MappingStart(..) => {
                    locations.record_item(&frames, span);
                    frames.push(Frame::Mapping { key: None });
                }
                Event::SequenceStart(..) => {
                    locations.record_item(&frames, span);
                    frames.push(Frame::Sequence { index: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    frames.pop();
                    finish_value(&mut frames);
                }
                Event::DocumentEnd => break,
                _ => {}
            }
        }
        locations
    }

    pub(crate) fn get(&self, path: &str) -> Option<LineColumn> {
        self.by_path.get(path).copied()
    }

    fn record(&mut self, frames: &[Frame], span: Span) {
        // The first occurrence wins: that is where a reader looks for the key.
        self.by_path.entry(path_of(frames)).or_insert(LineColumn {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
        });
    }

    /// Sequence items have no key, so their own start is their location.
    fn record_item(&mut self, frames: &[Frame], span: Span) {
        if let Some(Frame::Sequence { .. }) = frames.last() {
            self.record(frames, span);
        }
    }
}

fn finish_value(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Mapping { key }) => *key = None,
        Some(Frame::Sequence { index }) => *index += 1,
        None => {}
    }
}

fn path_of(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Mapping { key: Some(key) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Mapping { key: None } => {}
            Frame::Sequence { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}
