//! The one table that maps MetaStore's errors to etcd's gRPC status codes and
//! message strings. Clients (clientv3, etcdctl, the Rust `etcd-client`) turn
//! these exact strings back into typed errors, so they are part of the wire.

use tonic::{Code, Status};

/// Every error a client can see, named after etcd's `rpctypes.ErrGRPC*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    TimeoutLeaderTransfer,
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    MemberRemoved,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// etcd's `auth.ErrNoPasswordUser` has no gRPC twin in rpctypes, so
    /// etcd sends its Go text with code Unknown (Authenticate as a user
    /// added with `--no-password`).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// etcd's `auth.ErrVerifyOnly`, also without a gRPC twin: Authenticate
    /// on a member given only the JWT public key cannot sign a token.
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// Signing a JWT token failed: answered to the client, as etcd does;
    /// applying the entry goes on (the member does not stop).
    #[error("auth: failed to sign the token: {0}")]
    TokenSigning(String),
    /// The client's own deadline passed (gRPC `grpc-timeout`).
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    /// The client went away.
    #[error("context canceled")]
    Canceled,
    /// A broken disk or an internal failure; the text says which.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd sends for this error.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | InvalidSortOption
            | RequestTooLarge | MemberBadUrls | UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven
            | InvalidAuthMgmt | AuthOldRevision => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | NotLeader
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | BadLeaderTransferee
            | MemberRemoved
            | RootUserNotExist
            | RootRoleNotExist
            | UserAlreadyExist
            | UserNotFound
            | RoleAlreadyExist
            | RoleNotFound
            | RoleNotGranted
            | PermissionNotGranted
            | AuthNotEnabled => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | NotSupportedForLearner
            | Unhealthy
            | TimeoutLeaderTransfer => Code::Unavailable,
            Corrupt => Code::DataLoss,
            DeadlineExceeded => Code::DeadlineExceeded,
            Canceled => Code::Cancelled,
            Internal(_) | NoPasswordUser | VerifyOnly | TokenSigning(_) => Code::Unknown,
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (error, code, message) exactly as etcd v3.5's rpctypes/error.go.
    #[test]
    fn table_matches_etcd() {
        let cases = [
            (EtcdError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (EtcdError::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (EtcdError::ValueProvided, Code::InvalidArgument, "etcdserver: value is provided"),
            (EtcdError::LeaseProvided, Code::InvalidArgument, "etcdserver: lease is provided"),
            (EtcdError::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (EtcdError::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (EtcdError::InvalidSortOption, Code::InvalidArgument, "etcdserver: invalid sort option"),
            (EtcdError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (EtcdError::FutureRev, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (EtcdError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
            (EtcdError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (EtcdError::LeaseExist, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (EtcdError::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
            (EtcdError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (EtcdError::TooManyRequests, Code::ResourceExhausted, "etcdserver: too many requests"),
            (EtcdError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (EtcdError::NotLeader, Code::FailedPrecondition, "etcdserver: not leader"),
            (EtcdError::LeaderChanged, Code::Unavailable, "etcdserver: leader changed"),
            (EtcdError::Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (EtcdError::Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (
                EtcdError::TimeoutDueToLeaderFail,
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            (EtcdError::Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (EtcdError::NotSupportedForLearner, Code::Unavailable, "etcdserver: rpc not supported for learner"),
            (EtcdError::MemberNotFound, Code::NotFound, "etcdserver: member not found"),
            (EtcdError::RootUserNotExist, Code::FailedPrecondition, "etcdserver: root user does not exist"),
            (EtcdError::RootRoleNotExist, Code::FailedPrecondition, "etcdserver: root user does not have root role"),
            (EtcdError::UserAlreadyExist, Code::FailedPrecondition, "etcdserver: user name already exists"),
            (EtcdError::UserEmpty, Code::InvalidArgument, "etcdserver: user name is empty"),
            (EtcdError::UserNotFound, Code::FailedPrecondition, "etcdserver: user name not found"),
            (EtcdError::RoleAlreadyExist, Code::FailedPrecondition, "etcdserver: role name already exists"),
            (EtcdError::RoleNotFound, Code::FailedPrecondition, "etcdserver: role name not found"),
            (EtcdError::RoleEmpty, Code::InvalidArgument, "etcdserver: role name is empty"),
            (
                EtcdError::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (EtcdError::PermissionNotGiven, Code::InvalidArgument, "etcdserver: permission not given"),
            (EtcdError::PermissionDenied, Code::PermissionDenied, "etcdserver: permission denied"),
            (EtcdError::RoleNotGranted, Code::FailedPrecondition, "etcdserver: role is not granted to the user"),
            (
                EtcdError::PermissionNotGranted,
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (EtcdError::AuthNotEnabled, Code::FailedPrecondition, "etcdserver: authentication is not enabled"),
            (EtcdError::InvalidAuthToken, Code::Unauthenticated, "etcdserver: invalid auth token"),
            (EtcdError::InvalidAuthMgmt, Code::InvalidArgument, "etcdserver: invalid auth management"),
            (EtcdError::AuthOldRevision, Code::InvalidArgument, "etcdserver: revision of auth store is old"),
            (
                EtcdError::NoPasswordUser,
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            (EtcdError::VerifyOnly, Code::Unknown, "auth: token signing attempted with verify-only key"),
            (EtcdError::DeadlineExceeded, Code::DeadlineExceeded, "context deadline exceeded"),
            (EtcdError::Canceled, Code::Cancelled, "context canceled"),
        ];
        for (err, code, msg) in cases {
            let st: Status = err.clone().into();
            assert_eq!(st.code(), code, "{err:?}");
            assert_eq!(st.message(), msg, "{err:?}");
        }
    }
}
