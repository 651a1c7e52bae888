//! The handshake and the shutdown of the TLS layer.

use super::*;

impl TlsProtocol {
    // --- handshake ---------------------------------------------------------

    pub(super) fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let start = if this.debug(py) {
            Self::debug_log(slf, " starts SSL handshake")?;
            Some(this.lp(py).call_method0(intern!(py, "time"))?.extract()?)
        } else {
            None
        };
        this.st.with(py, |s| s.handshake_start_time = start);
        this.set_state(py, TlsState::DoHandshake)?;
        let timeout = this.get(py, |s| s.handshake_timeout.clone_ref(py));
        let handle = Self::call_later_method(slf, &timeout, "_check_handshake_timeout")?;
        let old = this
            .st
            .with(py, |s| s.handshake_timeout_handle.replace(handle));
        drop(old);
        Self::do_handshake(slf)
    }

    pub(super) fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match this.sslc(py).call_method0(intern!(py, "do_handshake")) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.matches(py, ssl_types(py)?.ssl_error.bind(py))? => {
                Self::on_handshake_complete(slf, Some(err))
            }
            Err(err) => Err(err),
        }
    }

    pub(super) fn on_handshake_complete(
        slf: &Bound<'_, Self>,
        handshake_exc: Option<PyErr>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.st.with(py, |s| s.handshake_timeout_handle.take());
        Self::cancel_timer(py, handle)?;
        let sslobj = this.get(py, |s| s.sslobj.clone_ref(py)).into_bound(py);
        let peercert = match handshake_exc {
            None => this
                .set_state(py, TlsState::Wrapped)
                .and_then(|()| sslobj.call_method0(intern!(py, "getpeercert"))),
            Some(err) => Err(err),
        };
        let peercert = match peercert {
            Ok(peercert) => peercert,
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                this.set_state(py, TlsState::Unwrapped)?;
                let exc = err.into_value(py).into_bound(py);
                let message = if exc.is_instance(ssl_types(py)?.certificate_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, exc.as_any(), message)?;
                return Self::wakeup_waiter(slf, Some(exc.as_any()));
            }
            Err(err) => return Err(err),
        };
        if this.debug(py) {
            let start = this.get(py, |s| s.handshake_start_time).unwrap_or(0.0);
            let now: f64 = this.lp(py).call_method0(intern!(py, "time"))?.extract()?;
            let took = format!(": SSL handshake took {:.1} ms", (now - start) * 1e3);
            Self::debug_log(slf, &took)?;
        }
        let extra = this.get(py, |s| s.extra.clone_ref(py)).into_bound(py);
        extra.set_item("peercert", peercert)?;
        extra.set_item("cipher", sslobj.call_method0(intern!(py, "cipher"))?)?;
        extra.set_item(
            "compression",
            sslobj.call_method0(intern!(py, "compression"))?,
        )?;
        extra.set_item("ssl_object", &sslobj)?;
        let make = this.st.with(py, |s| {
            let make = s.app_state == AppState::Init;
            if make {
                s.app_state = AppState::Made;
            }
            make
        });
        if make {
            let app_transport = Self::app_transport_for_protocol(slf)?;
            if let Some(app) = this.app_protocol(py) {
                app.call_method1(py, intern!(py, "connection_made"), (app_transport,))?;
            }
        }
        Self::wakeup_waiter(slf, None)?;
        Self::do_read(slf)
    }

    /// asyncio's `_get_app_transport`.
    pub(super) fn app_transport_for_protocol(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match slf
            .get()
            .get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py)))
        {
            Some(t) => Ok(t),
            None => Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            )),
        }
    }

    // --- shutdown ------------------------------------------------------------

    pub(super) fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let action = this.st.with(py, |s| {
            let action = s.state.on_close();
            if action != StartShutdown::Nothing && s.app_transport.is_some() {
                s.app_closed = true;
            }
            action
        });
        match action {
            StartShutdown::Nothing => Ok(()),
            StartShutdown::Abort => Self::abort(slf, None),
            StartShutdown::Flush => {
                this.set_state(py, TlsState::Flushing)?;
                let timeout = this.get(py, |s| s.shutdown_timeout.clone_ref(py));
                let handle = Self::call_later_method(slf, &timeout, "_check_shutdown_timeout")?;
                let old = this
                    .st
                    .with(py, |s| s.shutdown_timeout_handle.replace(handle));
                drop(old);
                Self::do_flush(slf)
            }
        }
    }

    pub(super) fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        slf.get().set_state(slf.py(), TlsState::Shutdown)?;
        Self::do_shutdown(slf)
    }

    pub(super) fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (eof, direct) = this.get(py, |s| (s.eof_received, s.direct));
        let result = if eof {
            Ok(())
        } else {
            let name = if direct {
                intern!(py, "shutdown")
            } else {
                intern!(py, "unwrap")
            };
            this.sslc(py).call_method0(name).map(drop)
        };
        match result {
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.matches(py, ssl_types(py)?.ssl_error.bind(py))? => {
                Self::on_shutdown_complete(slf, Some(err.into_value(py).into_bound(py).into_any()))
            }
            Err(err) => Err(err),
        }
    }

    pub(super) fn on_shutdown_complete(
        slf: &Bound<'_, Self>,
        exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.st.with(py, |s| s.shutdown_timeout_handle.take());
        Self::cancel_timer(py, handle)?;
        match exc {
            Some(exc) => Self::fatal_error(slf, &exc, "Fatal error on transport"),
            None => match this.transport(py) {
                Some(t) => {
                    let close = t.bind(py).getattr(intern!(py, "close"))?;
                    Self::call_soon(slf, &close, PyTuple::empty(py))
                }
                None => Ok(()),
            },
        }
    }

    /// asyncio's `_abort(exc)`.
    pub(super) fn abort(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_state(py, TlsState::Unwrapped)?;
        if let Some(t) = this.transport(py) {
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }
}
