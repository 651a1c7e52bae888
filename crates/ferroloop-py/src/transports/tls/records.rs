//! Application data through the TLS layer: outgoing (application writes to
//! records below), incoming (records from below to the application), and
//! the flow control of both.

use super::*;

impl TlsProtocol {
    // --- outgoing ------------------------------------------------------------

    pub(super) fn write_appdata(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let refused = this.st.with(py, |s| {
            if s.state.accepts_writes() {
                return None;
            }
            let warn = s.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            s.conn_lost += 1;
            Some(warn)
        });
        if let Some(warn) = refused {
            if warn {
                py_refs::transport_warning(py)?.call1(("SSL connection is closed",))?;
            }
            return Ok(());
        }
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()?;
            this.st.with(py, |s| {
                s.backlog.push_back(data.unbind());
                s.backlog_size += len;
            });
        }
        if this.state(py) == TlsState::Wrapped {
            let result = Self::do_write(slf);
            Self::guard(slf, result, "Fatal error on SSL protocol")?;
        }
        Ok(())
    }

    /// Turns an `Exception` from a step into asyncio's fatal-error path
    /// (other `BaseException`s propagate, as from asyncio's `except
    /// Exception`).
    pub(super) fn guard(
        slf: &Bound<'_, Self>,
        result: PyResult<()>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        match result {
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                Self::fatal_error(slf, err.value(py), message)
            }
            other => other,
        }
    }

    pub(super) fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sslc = this.sslc(py);
        loop {
            let Some(data) = this.get(py, |s| s.backlog.front().map(|d| d.clone_ref(py))) else {
                break;
            };
            let data = data.into_bound(py);
            let count: usize = match sslc.call_method1(intern!(py, "write"), (&data,)) {
                Ok(count) => count.extract()?,
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            };
            let len = data.len()?;
            let rest = if count < len {
                Some(
                    data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?
                        .unbind(),
                )
            } else {
                None
            };
            let old = this.st.with(py, |s| {
                let old = match rest {
                    Some(rest) => s.backlog.front_mut().map(|d| std::mem::replace(d, rest)),
                    None => s.backlog.pop_front(),
                };
                s.backlog_size -= count.min(len);
                old
            });
            drop(old);
        }
        Self::process_outgoing(slf)
    }

    pub(super) fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (paused, outgoing) = this.get(py, |s| (s.ssl_writing_paused, s.outgoing.clone_ref(py)));
        if !paused {
            let data = outgoing
                .call_method0(py, intern!(py, "read"))?
                .into_bound(py);
            if data.len()? > 0 {
                Self::write_below(slf, &data)?;
            }
        }
        Self::control_app_writing(slf)
    }

    /// Writes records to the transport below: natively to a native stream
    /// transport, else through its `write`.
    pub(super) fn write_below(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (core, transport) = slf.get().get(py, |s| {
            (
                s.transport_core.as_ref().map(|c| c.clone_ref(py)),
                s.transport.as_ref().map(|t| t.clone_ref(py)),
            )
        });
        match (core, transport) {
            (Some(core), _) => StreamTransport::write(core.bind(py), data),
            (None, Some(t)) => t.call_method1(py, intern!(py, "write"), (data,)).map(drop),
            (None, None) => Ok(()),
        }
    }

    // --- incoming ------------------------------------------------------------

    /// What records arriving from below drive (asyncio's `buffer_updated`
    /// after the BIO write).
    pub(super) fn drive_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()).on_incoming() {
            Drive::Handshake => Self::do_handshake(slf),
            Drive::Read => Self::do_read(slf),
            Drive::Flush => Self::do_flush(slf),
            Drive::Shutdown => Self::do_shutdown(slf),
            Drive::Nothing => Ok(()),
        }
    }

    pub(super) fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.state(py).reads() {
            return Ok(());
        }
        let result = (|| {
            let (paused, buffered) = this.get(py, |s| {
                (
                    s.app_reading_paused,
                    matches!(s.app_receiver, AppReceiver::Buffered { .. }),
                )
            });
            if !paused {
                if buffered {
                    Self::do_read_buffered(slf)?;
                } else {
                    Self::do_read_copied(slf)?;
                }
                if this.get(py, |s| !s.backlog.is_empty()) {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        })();
        Self::guard(slf, result, "Fatal error on SSL protocol")
    }

    /// How much a read could return at most: the bytes in the incoming BIO
    /// (plaintext is never longer than its records) plus the plaintext the
    /// `SSLObject` already holds, capped at [`MAX_SIZE`]. When it is 0, a
    /// read would only raise `SSLWantReadError`, so none is made. Sizing
    /// the read by it (rather than asking for `MAX_SIZE`, as asyncio does)
    /// keeps the `bytes` it allocates close to what arrives: a large
    /// allocation shrunk to a small message costs an `mmap`, `mremap` and
    /// `munmap` per read.
    pub(super) fn readable(&self, py: Python<'_>, sslc: &Bound<'_, PyAny>) -> PyResult<usize> {
        let incoming = self.get(py, |s| s.incoming.clone_ref(py));
        let queued: usize = incoming.getattr(py, intern!(py, "pending"))?.extract(py)?;
        let decrypted: usize = sslc.call_method0(intern!(py, "pending"))?.extract()?;
        Ok((queued + decrypted).min(MAX_SIZE))
    }

    pub(super) fn do_read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sslc = this.sslc(py);
        let mut chunks: Vec<Bound<'_, PyAny>> = Vec::new();
        let mut close_notify = false;
        loop {
            let size = this.readable(py, &sslc)?;
            if size == 0 {
                break;
            }
            match sslc.call_method1(intern!(py, "read"), (size,)) {
                Ok(chunk) if chunk.len()? == 0 => {
                    close_notify = true;
                    break;
                }
                Ok(chunk) => chunks.push(chunk),
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.pop().expect("one chunk")
            } else {
                PyBytes::new(py, b"")
                    .call_method1(intern!(py, "join"), (PyList::new(py, chunks)?,))?
            };
            if let Some(app) = this.app_protocol(py) {
                app.call_method1(py, intern!(py, "data_received"), (data,))?;
            }
        }
        if close_notify {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    pub(super) fn do_read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (get_buffer, buffer_updated) = match this.get(py, |s| match &s.app_receiver {
            AppReceiver::Buffered {
                get_buffer,
                buffer_updated,
            } => Some((get_buffer.clone_ref(py), buffer_updated.clone_ref(py))),
            AppReceiver::Plain => None,
        }) {
            Some(pair) => pair,
            None => return Ok(()),
        };
        let sslc = this.sslc(py);
        let pending = Self::read_buffer_size(slf)?;
        let buf = get_buffer.call1(py, (pending,))?.into_bound(py);
        let wants = buf.len()?;
        let mut offset = 0;
        let mut count = 1;
        let read = (|| -> PyResult<()> {
            count = sslc
                .call_method1(intern!(py, "read"), (wants, &buf))?
                .extract()?;
            if count > 0 {
                offset = count;
                while offset < wants {
                    let rest = buf.get_item(PySlice::new(py, offset as isize, isize::MAX, 1))?;
                    count = sslc
                        .call_method1(intern!(py, "read"), (wants - offset, rest))?
                        .extract()?;
                    if count > 0 {
                        offset += count;
                    } else {
                        break;
                    }
                }
                if offset >= wants {
                    let again = slf.as_any().getattr(intern!(py, "_do_read"))?;
                    Self::call_soon(slf, &again, PyTuple::empty(py))?;
                }
            }
            Ok(())
        })();
        match read {
            Ok(()) => {}
            Err(err) if is_again(py, &err)? => {}
            Err(err) => return Err(err),
        }
        if offset > 0 {
            buffer_updated.call1(py, (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    pub(super) fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let call = this.st.with(py, |s| {
            let call = s.app_state == AppState::Made;
            if call {
                s.app_state = AppState::Eof;
            }
            call
        });
        if !call {
            return Ok(());
        }
        let Some(app) = this.app_protocol(py) else {
            return Ok(());
        };
        let result = app
            .call_method0(py, intern!(py, "eof_received"))
            .and_then(|keep_open| {
                if keep_open.is_truthy(py)? {
                    py_refs::transport_warning(py)?.call1((
                        "returning true from eof_received() has no effect when using ssl",
                    ))?;
                }
                Ok(())
            });
        unless_interrupt(py, result, |err| {
            Self::fatal_error(slf, err.value(py), "Error calling eof_received()")
        })
    }

    // --- flow control ----------------------------------------------------------

    pub(super) fn write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let (outgoing, backlog) = slf
            .get()
            .get(py, |s| (s.outgoing.clone_ref(py), s.backlog_size));
        let pending: usize = outgoing.getattr(py, intern!(py, "pending"))?.extract(py)?;
        Ok(pending + backlog)
    }

    pub(super) fn read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let incoming = slf.get().get(py, |s| s.incoming.clone_ref(py));
        incoming.getattr(py, intern!(py, "pending"))?.extract(py)
    }

    pub(super) fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = Self::write_buffer_size(slf)?;
        let method = this.st.with(py, |s| {
            if s.app_writing.pause_due(size) {
                Some("pause_writing")
            } else if s.app_writing.resume_due(size) {
                Some("resume_writing")
            } else {
                None
            }
        });
        let (Some(method), Some(app)) = (method, this.app_protocol(py)) else {
            return Ok(());
        };
        let result = app.call_method0(py, method).map(drop);
        unless_interrupt(py, result, |err| {
            let context = PyDict::new(py);
            context.set_item("message", format!("protocol.{method}() failed"))?;
            context.set_item("exception", err.value(py))?;
            context.set_item(
                "transport",
                this.get(py, |s| s.app_transport.as_ref().map(|t| t.clone_ref(py))),
            )?;
            context.set_item("protocol", slf)?;
            Loop::report(this.lp(py), context)
        })
    }

    pub(super) fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = Self::read_buffer_size(slf)?;
        let method = this.st.with(py, |s| {
            if s.ssl_reading.pause_due(size) {
                s.ssl_reading_paused = true;
                Some("pause_reading")
            } else if s.ssl_reading.resume_due(size) {
                s.ssl_reading_paused = false;
                Some("resume_reading")
            } else {
                None
            }
        });
        match (method, this.transport(py)) {
            (Some(method), Some(t)) => t.call_method0(py, method).map(drop),
            _ => Ok(()),
        }
    }

    pub(super) fn set_app_protocol(
        &self,
        py: Python<'_>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let receiver = app_receiver(protocol)?;
        let old = self.st.with(py, |s| {
            (
                s.app_protocol.replace(protocol.clone().unbind()),
                std::mem::replace(&mut s.app_receiver, receiver),
            )
        });
        drop(old);
        Ok(())
    }
}
