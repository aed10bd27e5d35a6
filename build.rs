//! Compiles the vendored Flower 1.42 protocol descriptors (`proto/`) into Rust types with
//! prost, without `protoc`, when the `flower` feature is on.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "flower")]
    flower::compile();
}

#[cfg(feature = "flower")]
mod flower {
    use prost::Message;

    const FDS: &str = "proto/flwr_1_42_fleet.fds.bin";

    pub fn compile() {
        println!("cargo::rerun-if-changed={FDS}");
        let bytes = std::fs::read(FDS).unwrap_or_else(|e| panic!("{FDS}: {e}"));
        let fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{FDS}: not a FileDescriptorSet: {e}"));
        prost_build::Config::new()
            // Maps as BTreeMap: encoded in key order, like protobuf's `deterministic=True`.
            .btree_map(["."])
            .compile_fds(fds)
            .unwrap_or_else(|e| panic!("compiling {FDS}: {e}"));
    }
}
