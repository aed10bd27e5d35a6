//! SIGINT/SIGTERM to a stop flag, so a node leaves the federation cleanly on Ctrl-C or `kill`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

use super::error::FlowerError;

/// A flag that SIGINT and SIGTERM set; pass it to [`FlowerNode::run`](super::FlowerNode::run).
///
/// A second signal while the flag is already set exits the process with status 1 (for a node
/// stuck in a long handler).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, FlowerError> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first: runs when the flag is already set, i.e. on the second signal.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))
            .map_err(FlowerError::Signal)?;
        signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(FlowerError::Signal)?;
    }
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn sigterm_sets_the_flag() {
        let flag = stop_on_signals().unwrap();
        assert!(!flag.load(Ordering::SeqCst));
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(flag.load(Ordering::SeqCst), "the handler ran");
    }
}
