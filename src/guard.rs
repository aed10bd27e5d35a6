//! A last line of defence for parsing outside bytes with dependencies that may panic on
//! malformed input (the `parquet` crate's decoders, burn-store's `.pth` reader): the call runs
//! under [`std::panic::catch_unwind`] and a panic becomes an error message for the caller's
//! typed error. Our own parsers validate instead of relying on this.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`; a panic inside it comes back as `Err` with the panic's message, prefixed by
/// `what` (the dependency that panicked).
///
/// Only for calls whose state is dropped on error: whatever `f` was building is discarded, so
/// unwind safety is not a concern for the caller.
pub(crate) fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| format!("{what} panicked on malformed input: {}", message(&*panic)))
}

/// The text of a panic payload (`panic!` with a message gives a `String` or a `&str`).
fn message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
mod tests {
    use super::no_panic;

    #[test]
    fn a_panic_becomes_an_error_naming_the_dependency() {
        let err =
            no_panic("the reader", || -> u8 { panic!("index out of range") }).expect_err("caught");
        assert_eq!(
            err,
            "the reader panicked on malformed input: index out of range"
        );
        assert_eq!(no_panic("the reader", || 7), Ok(7));
    }
}
