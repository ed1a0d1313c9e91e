//! Moving bytes between processes: the accept loop every listener runs
//! (`listen`: TLS, HTTP/1.1 and HTTP/2 with keepalive, graceful stop), the
//! repair of Go clients' URL-shaped `:authority` (`authority`), certificate
//! loading (`tls`), client certificates' names (`cert_name`) and the raft
//! peer transport (`peer`).

pub mod authority;
pub mod cert_name;
pub mod listen;
pub mod peer;
pub mod tls;
