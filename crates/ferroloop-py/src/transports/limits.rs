//! Write-buffer water marks as Python code gives them: worked out with
//! Python's operators, as asyncio's `_FlowControlMixin` does, then turned
//! into the whole numbers the core's flow control keeps.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};

/// The water marks `high` and `low` (either may be None) as asyncio works
/// them out (`_FlowControlMixin._set_write_buffer_limits`, and sslproto's
/// `add_flowcontrol_defaults`): the defaults (`4 * low`, `high // 4`) and
/// the check `high >= low >= 0` with Python's operators, so that what
/// asyncio takes (floats, ints of any size) is taken and anything else fails
/// with asyncio's exception. The marks are then whole numbers for the core:
/// rounded down (a buffer of whole bytes compares with 1.5 as with 1) and
/// capped at `i64::MAX` (no buffer gets that big).
pub fn water_marks(
    high: Option<Bound<'_, PyAny>>,
    low: Option<Bound<'_, PyAny>>,
    default_high: usize,
    py: Python<'_>,
) -> PyResult<(i64, i64)> {
    let high = match (high, &low) {
        (Some(high), _) => high,
        (None, Some(low)) => 4i64.into_pyobject(py)?.mul(low)?,
        (None, None) => default_high.into_pyobject(py)?.into_any(),
    };
    let low = match low {
        Some(low) => low,
        None => high.floor_div(4)?,
    };
    if !(high.ge(&low)? && low.ge(0)?) {
        return Err(PyValueError::new_err(format!(
            "high ({}) must be >= low ({}) must be >= 0",
            high.repr()?,
            low.repr()?
        )));
    }
    Ok((whole_mark(&high)?, whole_mark(&low)?))
}

/// A water mark checked to be `>= 0`, as a whole number (see
/// [`water_marks`]).
fn whole_mark(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if let Ok(int) = value.cast::<PyInt>() {
        return Ok(int.extract::<i64>().unwrap_or(i64::MAX));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        let float = float.value();
        return Ok(if float >= i64::MAX as f64 {
            i64::MAX
        } else {
            float.floor() as i64
        });
    }
    // Any other number asyncio could compare with a buffer's size.
    let py = value.py();
    let floor = py
        .import(intern!(py, "math"))?
        .getattr(intern!(py, "floor"))?;
    whole_mark(&floor.call1((value,))?)
}
