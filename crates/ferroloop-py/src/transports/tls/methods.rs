//! The Python methods of the TLS layer: as the protocol of the transport
//! below, and as the core of the application's transport.

use super::*;

/// The arguments of a new layer, as `sslproto.SSLProtocol` takes them.
#[pymethods]
impl TlsProtocol {
    #[new]
    #[pyo3(signature = (
        loop_, app_protocol, sslcontext, waiter, server_side=false, server_hostname=None,
        call_connection_made=true, ssl_handshake_timeout=None, ssl_shutdown_timeout=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        loop_: &Bound<'_, Loop>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: Option<Bound<'_, PyAny>>,
        waiter: Option<Bound<'_, PyAny>>,
        server_side: bool,
        server_hostname: Option<Bound<'_, PyAny>>,
        call_connection_made: bool,
        ssl_handshake_timeout: Option<Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let handshake_timeout = timeout_or_default(
            py,
            ssl_handshake_timeout,
            "ssl_handshake_timeout",
            "SSL_HANDSHAKE_TIMEOUT",
        )?;
        let shutdown_timeout = timeout_or_default(
            py,
            ssl_shutdown_timeout,
            "ssl_shutdown_timeout",
            "SSL_SHUTDOWN_TIMEOUT",
        )?;
        let sslcontext = match sslcontext.filter(|c| c.is_truthy().unwrap_or(true)) {
            Some(ctx) => ctx,
            None => py
                .import("asyncio.sslproto")?
                .getattr("_create_transport_context")?
                .call1((server_side, &server_hostname))?,
        };
        let server_hostname = match server_hostname {
            Some(name) if !server_side && name.is_truthy()? => Some(name),
            _ => None,
        };
        let extra = PyDict::new(py);
        extra.set_item("sslcontext", &sslcontext)?;
        let types = ssl_types(py)?;
        let incoming = types.memory_bio.call0(py)?;
        let outgoing = types.memory_bio.call0(py)?;
        let app_receiver = app_receiver(app_protocol)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("server_side", server_side)?;
        kwargs.set_item("server_hostname", server_hostname)?;
        let sslobj = sslcontext.call_method(
            intern!(py, "wrap_bio"),
            (&incoming, &outgoing),
            Some(&kwargs),
        )?;
        let direct = same_object_type(&sslobj, types.ssl_object.bind(py));
        let sslc = if direct {
            sslobj.getattr(intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        Ok(TlsProtocol {
            loop_: loop_.clone().unbind(),
            st: GilCell::new(State {
                state: TlsState::Unwrapped,
                app_state: if call_connection_made {
                    AppState::Init
                } else {
                    AppState::Made
                },
                sslobj: sslobj.unbind(),
                sslc: sslc.unbind(),
                direct,
                incoming,
                outgoing,
                app_protocol: Some(app_protocol.clone().unbind()),
                app_receiver,
                app_transport: None,
                app_transport_created: false,
                app_closed: false,
                transport: None,
                transport_core: None,
                waiter: waiter.filter(|w| !w.is_none()).map(Bound::unbind),
                extra: extra.unbind(),
                backlog: VecDeque::new(),
                backlog_size: 0,
                ssl_writing_paused: false,
                app_reading_paused: false,
                ssl_reading_paused: false,
                eof_received: false,
                app_writing: FlowControl::new(HIGH_WATER_WRITE_KIB * 1024, PauseAt::AtOrAbove),
                ssl_reading: FlowControl::new(HIGH_WATER_READ_KIB * 1024, PauseAt::AtOrAbove),
                handshake_timeout: handshake_timeout.unbind(),
                shutdown_timeout: shutdown_timeout.unbind(),
                handshake_timeout_handle: None,
                shutdown_timeout_handle: None,
                handshake_start_time: None,
                conn_lost: 0,
                read_buffer: None,
            }),
        })
    }

    /// Gives the layer its application transport (the face), once.
    fn _set_app_transport(&self, py: Python<'_>, transport: Bound<'_, PyAny>) -> PyResult<()> {
        let twice = self.st.with(py, |s| {
            if s.app_transport_created {
                return true;
            }
            s.app_transport = Some(transport.unbind());
            s.app_transport_created = true;
            false
        });
        if twice {
            return Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            ));
        }
        Ok(())
    }

    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py)))
    }

    #[getter]
    fn _app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.app_protocol(py)
    }

    #[getter]
    fn _transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport(py)
    }

    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.get(py, |s| s.sslobj.clone_ref(py))
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> String {
        self.state(py).to_string()
    }

    // --- as the protocol of the transport below ----------------------------

    /// The connection below is made: start the handshake.
    fn connection_made(slf: &Bound<'_, Self>, transport: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let core = transport
            .getattr_opt(intern!(py, "_core"))?
            .and_then(|c| c.cast_into::<StreamTransport>().ok())
            .map(Bound::unbind);
        let old = slf.get().st.with(py, |s| {
            (
                s.transport.replace(transport.unbind()),
                std::mem::replace(&mut s.transport_core, core),
            )
        });
        drop(old);
        Self::start_handshake(slf)
    }

    /// The connection below is lost or closed.
    fn connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (backlog, outgoing) = this.st.with(py, |s| {
            s.backlog_size = 0;
            s.conn_lost += 1;
            if s.app_transport.is_some() {
                s.app_closed = true;
            }
            (std::mem::take(&mut s.backlog), s.outgoing.clone_ref(py))
        });
        drop(backlog);
        outgoing.call_method0(py, intern!(py, "read"))?;
        let notify = this.st.with(py, |s| {
            let notify = s.state != TlsState::DoHandshake && s.app_state.owes_connection_lost();
            if notify {
                s.app_state = AppState::Lost;
            }
            notify
        });
        if notify {
            if let Some(app) = this.app_protocol(py) {
                let lost = app.bind(py).getattr(intern!(py, "connection_lost"))?;
                Self::call_soon(slf, &lost, PyTuple::new(py, [&exc])?)?;
            }
        }
        this.set_state(py, TlsState::Unwrapped)?;
        let old = this.st.with(py, |s| {
            (
                s.transport.take(),
                s.transport_core.take(),
                s.app_transport.take(),
                s.app_protocol.take(),
            )
        });
        drop(old);
        let exc = (!exc.is_none()).then_some(exc);
        Self::wakeup_waiter(slf, exc.as_ref())?;
        let (shutdown, handshake) = this.st.with(py, |s| {
            (
                s.shutdown_timeout_handle.take(),
                s.handshake_timeout_handle.take(),
            )
        });
        Self::cancel_timer(py, shutdown)?;
        Self::cancel_timer(py, handshake)
    }

    /// The buffer the transport below receives into (`BufferedProtocol`).
    fn get_buffer(&self, py: Python<'_>, n: isize) -> PyResult<Py<PyAny>> {
        let want = if n <= 0 || n as usize > MAX_SIZE {
            MAX_SIZE
        } else {
            n as usize
        };
        let existing = self.get(py, |s| s.read_buffer.as_ref().map(|b| b.clone_ref(py)));
        let buffer = match existing {
            Some(b) if b.bind(py).len() >= want => b,
            _ => {
                let b = PyByteArray::new(py, &vec![0u8; want]).unbind();
                let old = self.st.with(py, |s| s.read_buffer.replace(b.clone_ref(py)));
                drop(old);
                b
            }
        };
        Ok(py_refs::memoryview(py)?.call1((buffer,))?.unbind())
    }

    /// `nbytes` were received into the buffer from `get_buffer`.
    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (buffer, incoming) = this.get(py, |s| {
            (
                s.read_buffer.as_ref().map(|b| b.clone_ref(py)),
                s.incoming.clone_ref(py),
            )
        });
        if let Some(buffer) = buffer {
            let view = py_refs::memoryview(py)?.call1((buffer,))?;
            let part = view.get_item(PySlice::new(py, 0, nbytes as isize, 1))?;
            incoming.call_method1(py, intern!(py, "write"), (part,))?;
        }
        Self::drive_incoming(slf)
    }

    /// Bytes arrived from a transport below that calls `data_received`
    /// (one that is neither native nor checks for `BufferedProtocol`: the
    /// layer is not a Python subclass of it).
    fn data_received(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let incoming = slf.get().get(py, |s| s.incoming.clone_ref(py));
        incoming.call_method1(py, intern!(py, "write"), (data,))?;
        Self::drive_incoming(slf)
    }

    /// The end of stream arrived from below.
    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let this = slf.get();
        let (state, paused) = this.st.with(py, |s| {
            s.eof_received = true;
            (s.state, s.app_reading_paused)
        });
        let result = (|| -> PyResult<Option<bool>> {
            if this.debug(py) {
                Self::debug_log(slf, " received EOF")?;
            }
            match state.on_eof(paused) {
                Eof::HandshakeReset => {
                    Self::on_handshake_complete(slf, Some(PyConnectionResetError::new_err(())))?
                }
                Eof::FlushLater => {
                    this.set_state(py, TlsState::Flushing)?;
                    return Ok(Some(true));
                }
                Eof::Flush => {
                    this.set_state(py, TlsState::Flushing)?;
                    Self::do_flush(slf)?;
                }
                Eof::WriteThenShutdown => {
                    Self::do_write(slf)?;
                    this.set_state(py, TlsState::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                Eof::Shutdown => Self::do_shutdown(slf)?,
                Eof::Nothing => {}
            }
            Ok(None)
        })();
        if let Err(err) = &result {
            if err.is_instance_of::<pyo3::exceptions::PyException>(py) {
                if let Some(t) = this.transport(py) {
                    t.call_method0(py, intern!(py, "close"))?;
                }
            }
        }
        result
    }

    /// The transport below is over its high water mark.
    fn pause_writing(&self, py: Python<'_>) -> PyResult<()> {
        let was = self
            .st
            .with(py, |s| std::mem::replace(&mut s.ssl_writing_paused, true));
        if was {
            return Err(PyAssertionError::new_err(()));
        }
        Ok(())
    }

    /// The transport below drained to its low water mark.
    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let was = slf
            .get()
            .st
            .with(py, |s| std::mem::replace(&mut s.ssl_writing_paused, false));
        if !was {
            return Err(PyAssertionError::new_err(()));
        }
        Self::process_outgoing(slf)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.state(py) != TlsState::DoHandshake {
            return Ok(());
        }
        let timeout = this.get(py, |s| s.handshake_timeout.clone_ref(py));
        let message = format!(
            "SSL handshake is taking longer than {} seconds: aborting the connection",
            timeout.bind(py).str()?
        );
        let exc = PyConnectionAbortedError::new_err(message).into_value(py);
        Self::fatal_error(slf, exc.bind(py).as_any(), "Fatal error on transport")
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.state(py), TlsState::Flushing | TlsState::Shutdown) {
            return Ok(());
        }
        if let Some(t) = this.transport(py) {
            let exc = PyTimeoutError::new_err("SSL shutdown timed out").into_value(py);
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    /// A resumed application reader continues where the layer is.
    fn _resume_drive(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()).on_resume_reading() {
            Drive::Read => Self::do_read(slf),
            Drive::Flush => Self::do_flush(slf),
            Drive::Shutdown => Self::do_shutdown(slf),
            Drive::Handshake | Drive::Nothing => Ok(()),
        }
    }

    // --- as the core of the application's transport ------------------------

    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        let extra = self.get(py, |s| s.extra.clone_ref(py)).into_bound(py);
        if let Some(value) = extra.get_item(name)? {
            return Ok(value.unbind());
        }
        match self.transport(py) {
            Some(t) => Ok(t.call_method1(py, intern!(py, "get_extra_info"), (name, default))?),
            None => Ok(default),
        }
    }

    fn _set_app_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_app_protocol(py, protocol)
    }

    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }

    /// The application transport's `write(data)`.
    fn _app_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<pyo3::types::PyMemoryView>())
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        Self::write_appdata(slf, PyTuple::new(py, [data])?.as_any())
    }

    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_shutdown(slf)
    }

    #[pyo3(signature = (exc=None))]
    fn _abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::abort(slf, exc.as_ref())
    }

    #[getter]
    fn _app_closed(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_closed)
    }

    #[setter(_app_closed)]
    fn set_app_closed(&self, py: Python<'_>, value: bool) {
        self.st.with(py, |s| s.app_closed = value);
    }

    #[getter]
    fn _app_reading_paused(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_reading_paused)
    }

    fn _pause_reading(&self, py: Python<'_>) {
        self.st.with(py, |s| s.app_reading_paused = true);
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let was = slf
            .get()
            .st
            .with(py, |s| std::mem::replace(&mut s.app_reading_paused, false));
        if was {
            let resume = slf.as_any().getattr(intern!(py, "_resume_drive"))?;
            Self::call_soon(slf, &resume, PyTuple::empty(py))?;
        }
        Ok(())
    }

    #[getter]
    fn _app_writing_paused(&self, py: Python<'_>) -> bool {
        self.get(py, |s| s.app_writing.is_paused())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (high, low) = water_marks(high, low, HIGH_WATER_WRITE_KIB * 1024, py)?;
        self.st
            .with(py, |s| s.app_writing.set_limits(Some(high), Some(low)))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_read_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (high, low) = water_marks(high, low, HIGH_WATER_READ_KIB * 1024, py)?;
        self.st
            .with(py, |s| s.ssl_reading.set_limits(Some(high), Some(low)))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    fn _get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::write_buffer_size(slf)
    }

    fn _get_read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::read_buffer_size(slf)
    }

    #[getter]
    fn _outgoing_low_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.app_writing.limits().0)
    }

    #[getter]
    fn _outgoing_high_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.app_writing.limits().1)
    }

    #[getter]
    fn _incoming_low_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.ssl_reading.limits().0)
    }

    #[getter]
    fn _incoming_high_water(&self, py: Python<'_>) -> usize {
        self.get(py, |s| s.ssl_reading.limits().1)
    }

    /// Queues `data` as if written, without writing (asyncio's test hook).
    #[allow(non_snake_case)]
    fn _test__append_write_backlog(&self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<()> {
        let len = data.len()?;
        self.st.with(py, |s| {
            s.backlog.push_back(data.unbind());
            s.backlog_size += len;
        });
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: tp_traverse runs with the GIL held.
        if let Some(s) = unsafe { self.st.peek_for_gc() } {
            visit.call(&s.sslobj)?;
            visit.call(&s.sslc)?;
            visit.call(&s.incoming)?;
            visit.call(&s.outgoing)?;
            visit.call(&s.app_protocol)?;
            if let AppReceiver::Buffered {
                get_buffer,
                buffer_updated,
            } = &s.app_receiver
            {
                visit.call(get_buffer)?;
                visit.call(buffer_updated)?;
            }
            visit.call(&s.app_transport)?;
            visit.call(&s.transport)?;
            visit.call(&s.transport_core)?;
            visit.call(&s.waiter)?;
            visit.call(&s.extra)?;
            for data in &s.backlog {
                visit.call(data)?;
            }
            visit.call(&s.handshake_timeout_handle)?;
            visit.call(&s.shutdown_timeout_handle)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let taken = self.st.with(py, |s| {
            (
                s.app_protocol.take(),
                std::mem::replace(&mut s.app_receiver, AppReceiver::Plain),
                s.app_transport.take(),
                s.transport.take(),
                s.transport_core.take(),
                s.waiter.take(),
                std::mem::take(&mut s.backlog),
                s.handshake_timeout_handle.take(),
                s.shutdown_timeout_handle.take(),
            )
        });
        drop(taken);
    }
}
