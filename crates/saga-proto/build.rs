//! Generates the gRPC code with the protoc shipped in `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        proto_root.join("saga/v1/coordinator.proto"),
        proto_root.join("saga/v1/participant.proto"),
    ];
    // The protos live outside this package: without this, editing them would not rebuild the code.
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("saga_descriptor.bin");

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `prost::Name` on every message: tools (sagactl) find a message's descriptor by its full name to
    // print it as JSON.
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_with_config(
            config,
            &protos,
            &[proto_root, protoc_bin_vendored::include_path()?],
        )?;
    Ok(())
}
