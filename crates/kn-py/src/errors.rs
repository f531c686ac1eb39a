//! Python exceptions for the core's typed errors: `KnError` and its subclasses, each carrying
//! the message the CLI would print (which file, tensor, token or neuron).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;

create_exception!(_native, KnError, PyException, "Any error of knowledge_neurons_rs.");
create_exception!(_native, ModelLoadError, KnError, "A model that cannot be found, read or understood.");
create_exception!(
    _native,
    PromptError,
    KnError,
    "A prompt or target that cannot be encoded (no [MASK], an unknown word, ...)."
);
create_exception!(_native, NeuronError, KnError, "A neuron outside the model.");
create_exception!(_native, SettingError, KnError, "Inconsistent settings (steps, batch size, thresholds, ...).");

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KnError", py.get_type::<KnError>())?;
    m.add("ModelLoadError", py.get_type::<ModelLoadError>())?;
    m.add("PromptError", py.get_type::<PromptError>())?;
    m.add("NeuronError", py.get_type::<NeuronError>())?;
    m.add("SettingError", py.get_type::<SettingError>())?;
    Ok(())
}

/// The exception of a core error.
pub fn core(e: kn_core::KnError) -> PyErr {
    use kn_core::KnError as E;
    let msg = e.to_string();
    match e {
        E::NeuronOutOfRange { .. } | E::LayerOutOfRange { .. } => NeuronError::new_err(msg),
        E::InvalidSetting(_) => SettingError::new_err(msg),
        E::PositionOutOfRange { .. } | E::TokenOutOfRange { .. } | E::Empty { .. } => PromptError::new_err(msg),
        E::Cancelled => PyKeyboardInterrupt::new_err("interrupted"),
        E::NonFinite { .. } | E::Backend(_) => KnError::new_err(msg),
    }
}

/// The exception of a model-loading error.
pub fn load(e: kn_models::LoadError) -> PyErr {
    ModelLoadError::new_err(e.to_string())
}
