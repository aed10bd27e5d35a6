//! The `.npy` codec of a Flower node (`fedvlm::flower::decode_npy`) on arbitrary bytes: an
//! error or an array whose values fill its shape, never a panic; what decodes re-encodes.
#![no_main]

use fedvlm::flower::{decode_npy, encode_npy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = decode_npy(data) {
        assert_eq!(array.shape.iter().product::<usize>(), array.values.len());
        let again = decode_npy(&encode_npy(&array)).expect("re-encoded npy decodes");
        assert_eq!(again.shape, array.shape);
    }
});
