//! Throwaway certificates for the TLS tests, made with the openssl CLI
//! (scripts/setup.sh installs it): a CA, a certificate for 127.0.0.1 that
//! serves and dials (client and peer ports), and a client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub ca: PathBuf,
    /// For 127.0.0.1 and localhost; usable as server and as client.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client's, signed by the same CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl (scripts/setup.sh)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Signs `name`.crt / `name`.key with the CA in `dir`, with `ext` as its
/// X.509 v3 extensions.
fn leaf(dir: &Path, name: &str, ext: &str) {
    let (key, csr, crt, extfile) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    std::fs::write(dir.join(&extfile), ext).expect("write extensions");
    let subject = format!("/CN={name}");
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut req = vec!["req"];
    req.extend(curve);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "30",
            "-extfile",
            &extfile,
        ],
    );
}

/// A client certificate whose subject Common Name is `name`, signed by the
/// CA that [`generate`] made in `dir`: its certificate and key.
pub fn client_named(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let usage = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
    leaf(dir, name, usage);
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

/// Makes a fresh CA and its certificates in `dir`.
pub fn generate(dir: &Path) -> Certs {
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(curve);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=metastore-test-ca"]);
    openssl(dir, &ca);
    let usage = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n";
    leaf(
        dir,
        "server",
        &format!("{usage}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"),
    );
    leaf(dir, "client", &format!("{usage}extendedKeyUsage=clientAuth\n"));
    Certs {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}
