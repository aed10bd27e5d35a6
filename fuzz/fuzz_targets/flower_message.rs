//! A Flower message's objects (`fedvlm::flower::decode_message_content`): the fuzzer's bytes
//! are one object, named by its own id and reached from a Message object; every id is
//! recomputed and checked, so this is an error or a decoded record dict, never a panic.
#![no_main]

use std::collections::HashMap;

use fedvlm::flower::objects::make_object;
use fedvlm::flower::{decode_message_content, object_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let child = object_id(data);
    let message = make_object("Message", std::slice::from_ref(&child), b"");
    let root = object_id(&message);
    let objects = HashMap::from([(root.clone(), message), (child, data.to_vec())]);
    let _ = decode_message_content(&root, &objects);
});
