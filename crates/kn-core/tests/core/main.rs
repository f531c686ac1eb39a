//! kn-core's integration tests, in one test binary: each file is a module, so burn's autodiff
//! and ndarray code is compiled and linked once rather than once per file (about 50 s of
//! compiling each on the 2-core CI machine).
//!
//! - `planted`: a model with planted knowledge neurons: refined neurons recover them,
//!   suppressing and enhancing move the fact and not others, cancellation.
//! - `many`: several prompts in one schedule give exactly what each gives alone.

mod many;
mod planted;
