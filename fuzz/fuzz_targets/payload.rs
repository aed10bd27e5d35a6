//! `Payload::from_bytes` on arbitrary bytes: an error or a consistent payload, never a panic.
#![no_main]

use fedvlm::federated::Payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = Payload::from_bytes(data) {
        for tensor in payload.tensors.values() {
            assert_eq!(tensor.shape.iter().product::<usize>(), tensor.values.len());
            assert!(tensor.values.iter().all(|v| v.is_finite()));
        }
    }
});
