//! The event sink of one command: collects the events of an applied command
//! when the caller wants them (`Ledger::apply`) and builds none at all when
//! it does not (`Ledger::apply_quiet`, for followers that discard
//! outcomes). Commands emit through closures, so the quiet path never pays
//! for building an event (string copies, decimal conversions).

use crate::command::Event;

pub(crate) struct Events {
    detailed: bool,
    list: Vec<Event>,
}

impl Events {
    /// A sink that keeps events when `detailed`, else drops them unbuilt.
    pub fn new(detailed: bool) -> Events {
        Events {
            detailed,
            list: Vec::new(),
        }
    }

    /// Builds and keeps the event, if events are wanted.
    #[inline]
    pub fn emit(&mut self, make: impl FnOnce() -> Event) {
        if self.detailed {
            self.list.push(make());
        }
    }

    /// Whether events are wanted: for a builder that tests it itself and
    /// then calls `push` (instead of passing `emit` a closure).
    #[inline]
    pub fn detailed(&self) -> bool {
        self.detailed
    }

    /// Keeps `event`; call only when `detailed()`.
    #[inline]
    pub fn push(&mut self, event: Event) {
        self.list.push(event);
    }

    /// Room for `additional` more events (one allocation for a command's
    /// usual count); nothing when quiet.
    #[inline]
    pub fn reserve(&mut self, additional: usize) {
        if self.detailed {
            self.list.reserve_exact(additional);
        }
    }

    pub fn into_vec(self) -> Vec<Event> {
        self.list
    }
}
