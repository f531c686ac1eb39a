//! `knowledge_neurons_rs._native`: the Rust core seen from Python. Thin on purpose: argument
//! conversion and result shaping only; every algorithm is kn-core's or kn-models'. The Python
//! package (`python/knowledge_neurons_rs`) wraps it in the Python library's API.
//!
//! Results cross as JSON text (parsed by the Python layer into dicts) and scores as
//! little-endian float32 bytes with their shape (viewed as a numpy array without a copy), so
//! the extension needs no numpy headers. Every computation runs with the GIL released; long
//! attributions check for Ctrl-C after each pass and raise `KeyboardInterrupt`.

mod errors;
mod model;
mod options;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The interpreter's malloc keeps what attribution frees, for reuse (README "Python").
    kn_models::host_memory::retain_freed_memory();
    errors::register(m)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::Undo>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add("BACKEND", kn_models::backend::NAME)?;
    Ok(())
}
