//! The subject Common Name of an X.509 certificate, read from its DER
//! encoding: all `--client-cert-auth` needs from a client's certificate
//! (etcd's `AuthInfoFromTLS` takes `Subject.CommonName`). rustls has
//! verified the certificate before this runs; this only walks the fields
//! up to the subject, and answers None for anything it does not expect.

use crate::der::{element, OID, SEQUENCE, SET};

/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's Common Name; the last one when there are several, as Go's
/// `pkix.Name` keeps.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut fields = tbs;
    // [0] EXPLICIT version, when present.
    if fields.first() == Some(&0xa0) {
        fields = element(fields)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped.
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (tag, mut subject, _) = element(fields)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut name = None;
    while !subject.is_empty() {
        let (tag, mut rdn, rest) = element(subject)?;
        subject = rest;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attr, rest) = element(rdn)?;
            rdn = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = element(attr)?;
            if tag == OID && oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                name = Some(decode(tag, text)?);
            }
        }
    }
    name
}

/// The directory string types a name is written in.
fn decode(tag: u8, text: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String.
        0x0c | 0x13 | 0x16 => String::from_utf8(text.to_vec()).ok(),
        // T61String: Go reads it as Latin-1.
        0x14 => Some(text.iter().map(|b| *b as char).collect()),
        // BMPString: UTF-16 big-endian.
        0x1e if text.len().is_multiple_of(2) => {
            let units: Vec<u16> = text.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::der::encode as tlv;

    fn attr(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(SET, &tlv(SEQUENCE, &[tlv(OID, oid), tlv(tag, value)].concat()))
    }

    fn cert(version: bool, subject: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1, 2, 3]));
        tbs.extend(tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48])));
        tbs.extend(tlv(SEQUENCE, &attr(COMMON_NAME, 0x0c, b"the CA")));
        tbs.extend(tlv(SEQUENCE, &[tlv(0x17, b"260101000000Z"), tlv(0x17, b"270101000000Z")].concat()));
        tbs.extend(tlv(SEQUENCE, subject));
        tbs.extend(tlv(SEQUENCE, &[0u8; 200]));
        tlv(SEQUENCE, &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0, 1])].concat())
    }

    #[test]
    fn reads_the_subjects_common_name_not_the_issuers() {
        let org = attr(&[0x55, 0x04, 0x0a], 0x13, b"ACME");
        let subject = [org, attr(COMMON_NAME, 0x0c, b"alice")].concat();
        assert_eq!(common_name(&cert(true, &subject)).as_deref(), Some("alice"));
        assert_eq!(common_name(&cert(false, &subject)).as_deref(), Some("alice"));
    }

    #[test]
    fn string_types_and_the_last_name_win() {
        let bmp: Vec<u8> = "bøb".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(common_name(&cert(true, &attr(COMMON_NAME, 0x1e, &bmp))).as_deref(), Some("bøb"));
        assert_eq!(common_name(&cert(true, &attr(COMMON_NAME, 0x14, &[0x63, 0xe9]))).as_deref(), Some("cé"));
        let two = [attr(COMMON_NAME, 0x13, b"first"), attr(COMMON_NAME, 0x16, b"second")].concat();
        assert_eq!(common_name(&cert(true, &two)).as_deref(), Some("second"));
    }

    #[test]
    fn no_name_and_garbage_give_none() {
        assert_eq!(common_name(&cert(true, &attr(&[0x55, 0x04, 0x0a], 0x13, b"ACME"))), None);
        assert_eq!(common_name(&cert(true, &[])), None);
        let good = cert(true, &attr(COMMON_NAME, 0x0c, b"alice"));
        for cut in 0..good.len() {
            assert_eq!(common_name(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
