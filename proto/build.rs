//! Generates the `tally.v1` Rust code from the .proto files with a vendored protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files = [
        "proto/tally/v1/ledger.proto",
        "proto/tally/v1/admin.proto",
        "proto/tally/v1/raft.proto",
        "proto/tally/v1/kafka.proto",
        "proto/tally/v1/backup.proto",
        "proto/tally/v1/accounts.proto",
    ];
    // Raft payloads are `Bytes`: a hedged RPC's second copy shares the
    // encoded message instead of copying it (node/src/raft/network.rs).
    tonic_prost_build::configure()
        .bytes(".tally.v1.RaftPayload.data")
        .compile_protos(&files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
