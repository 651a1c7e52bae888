//! `transport_methods!`: the Python methods every transport kind shares,
//! added to a kind's pyclass (they call into `base.rs`).

/// Adds the Python methods every transport kind shares to `$kind`, a type
/// implementing [`Transport`]: closing and aborting, reading control, flow
/// control, extra info, the protocol, and asyncio's private attributes.
macro_rules! transport_methods {
    ($kind:ty) => {
        #[pyo3::pymethods]
        impl $kind {
            /// Attaches the transport (seen through `face`) and schedules
            /// `connection_made`.
            #[pyo3(signature = (face, waiter=None))]
            fn _start(
                slf: &pyo3::Bound<'_, Self>,
                face: pyo3::Bound<'_, pyo3::PyAny>,
                waiter: Option<pyo3::Bound<'_, pyo3::PyAny>>,
            ) -> pyo3::PyResult<()> {
                $crate::transports::base::start(slf, face, waiter)
            }

            /// Starts watching the descriptor for reading (scheduled by
            /// `_start`, after `connection_made`).
            fn _start_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::base::start_reading(slf)
            }

            /// Close after flushing buffered data; `connection_lost(None)`
            /// follows.
            fn close(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::base::close(slf)
            }

            /// Close at once, dropping buffered data; `connection_lost(None)`
            /// follows.
            fn abort(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                let none = slf.py().None().into_bound(slf.py());
                $crate::transports::base::force_close(slf, none)
            }

            /// asyncio's `_force_close(exc)`.
            fn _force_close(
                slf: &pyo3::Bound<'_, Self>,
                exc: pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<()> {
                $crate::transports::base::force_close(slf, exc)
            }

            fn _call_connection_lost(
                slf: &pyo3::Bound<'_, Self>,
                exc: pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<()> {
                $crate::transports::base::call_connection_lost(slf, exc)
            }

            fn is_closing(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::base::Transport::base(self).life(py, |l| l.is_closing())
            }

            fn is_reading(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::base::Transport::base(self).life(py, |l| l.is_reading())
            }

            /// Stop receiving until `resume_reading()`.
            fn pause_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::base::pause_reading(slf)
            }

            /// Resume receiving after `pause_reading()`.
            fn resume_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::base::resume_reading(slf)
            }

            fn get_write_buffer_size(&self, py: pyo3::Python<'_>) -> usize {
                $crate::transports::base::Transport::queued(self, py)
            }

            fn get_write_buffer_limits(&self, py: pyo3::Python<'_>) -> (usize, usize) {
                $crate::transports::base::Transport::base(self).limits(py)
            }

            /// Set the high and low water marks of the write buffer.
            #[pyo3(signature = (high=None, low=None))]
            fn set_write_buffer_limits(
                slf: &pyo3::Bound<'_, Self>,
                high: Option<pyo3::Bound<'_, pyo3::PyAny>>,
                low: Option<pyo3::Bound<'_, pyo3::PyAny>>,
            ) -> pyo3::PyResult<()> {
                $crate::transports::base::set_write_buffer_limits(slf, high, low)
            }

            #[pyo3(signature = (name, default=None))]
            fn get_extra_info(
                &self,
                py: pyo3::Python<'_>,
                name: &pyo3::Bound<'_, pyo3::PyAny>,
                default: Option<pyo3::Py<pyo3::PyAny>>,
            ) -> pyo3::PyResult<pyo3::Py<pyo3::PyAny>> {
                $crate::transports::base::Transport::base(self).extra_info(py, name, default)
            }

            fn get_protocol(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                $crate::transports::base::Transport::base(self).protocol(py)
            }

            fn set_protocol(
                &self,
                py: pyo3::Python<'_>,
                protocol: &pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<()> {
                $crate::transports::base::Transport::protocol_changed(self, py, protocol)?;
                $crate::transports::base::Transport::base(self).set_protocol(py, protocol);
                Ok(())
            }

            /// The face's representation, asyncio style.
            fn _describe(slf: &pyo3::Bound<'_, Self>, class_name: &str) -> String {
                <Self as $crate::transports::base::Transport>::describe(slf, class_name)
            }

            #[getter]
            fn _sock(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                $crate::transports::base::Transport::base(self).file(py)
            }

            #[getter]
            fn _sock_fd(&self) -> std::os::fd::RawFd {
                $crate::transports::base::Transport::base(self).fd()
            }

            #[getter]
            fn _loop(&self, py: pyo3::Python<'_>) -> pyo3::Py<$crate::loop_::Loop> {
                $crate::transports::base::Transport::base(self)
                    .lp(py)
                    .clone()
                    .unbind()
            }

            #[getter]
            fn _protocol(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                $crate::transports::base::Transport::base(self).protocol(py)
            }

            #[getter]
            fn _closing(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::base::Transport::base(self).life(py, |l| l.is_closing())
            }

            #[getter]
            fn _conn_lost(&self, py: pyo3::Python<'_>) -> u32 {
                $crate::transports::base::Transport::base(self).life(py, |l| l.conn_lost())
            }

            #[getter]
            fn _protocol_paused(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::base::Transport::base(self).protocol_paused(py)
            }

            #[getter]
            fn _extra(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::types::PyDict>> {
                $crate::transports::base::Transport::base(self).extra(py)
            }

            #[getter]
            fn _face(slf: &pyo3::Bound<'_, Self>) -> pyo3::Py<pyo3::PyAny> {
                $crate::transports::base::face(slf).unbind()
            }
        }
    };
}
