//! etcd v3 wire API for MetaStore: generated protobuf/gRPC code, the table of
//! etcd errors, and request validation done before a request enters raft.

pub mod codec;
pub mod error;
pub mod validate;

pub use error::EtcdError;

/// Generated protobuf and gRPC code, one module per proto package, named as
/// etcd names them so paths read like etcd's Go code.
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
        include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
        include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
    }
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
        include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
    }
    pub mod metastorepb {
        tonic::include_proto!("metastorepb");
    }
}

/// The etcd server version MetaStore reports (Status, version endpoints).
/// Clients gate features on it, so it names the etcd release whose API we speak.
pub const ETCD_VERSION: &str = "3.5.17";
/// The cluster (API) version reported alongside it.
pub const ETCD_CLUSTER_VERSION: &str = "3.5.0";
