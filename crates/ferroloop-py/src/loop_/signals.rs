//! Signals: the self-pipe doubles as Python's signal wake-up descriptor
//! (`signal.set_wakeup_fd`); `_loop.py` installs the handlers, and the turn
//! (`turn.rs`) reads the signal numbers from the pipe and calls
//! `_handle_signal` for each.

use pyo3::prelude::*;

use super::Loop;

impl Loop {
    /// Whether signal handlers are installed: the self-pipe must then be
    /// polled every turn, even when nothing else is watched.
    pub(super) fn set_signals_active(&self, py: Python<'_>, active: bool) {
        self.state.with(py, |s| s.signals_active = active);
    }
}
