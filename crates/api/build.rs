//! Compiles etcd's v3 API and MetaStore's internal messages with protox, so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!: cargo may reuse this build
    // script's binary from a checkout at another path that shares the
    // target dir (CI clones do), and that path may be gone.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "etcdserverpb/rpc.proto",
        "mvccpb/kv.proto",
        "authpb/auth.proto",
        "v3lockpb/v3lock.proto",
        "v3electionpb/v3election.proto",
        "internal.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    // serde for etcd's JSON gateway, as grpc-gateway's jsonpb writes it:
    // proto field names, 64-bit integers as strings, bytes as base64.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&fds))?
        .out_dir(&out)
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::GrpcCodec")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
