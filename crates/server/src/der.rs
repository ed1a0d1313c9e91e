//! The little of DER (X.509's and PKCS#8's encoding) the server reads and
//! writes itself: a client certificate's subject name, and an EC private
//! key rewrapped from SEC1 into PKCS#8. Lengths up to 4 bytes; anything
//! malformed reads as None, never a panic.

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;

/// One element: its tag, its contents, and what follows it.
pub fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// An element with `tag` around `content`.
pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_and_long_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let mut der = encode(OCTET_STRING, &content);
            der.extend([1, 2]);
            let (tag, got, rest) = element(&der).expect("decodes");
            assert_eq!((tag, got.len(), rest), (OCTET_STRING, len, &[1u8, 2][..]));
        }
        assert_eq!(element(&[SEQUENCE, 0x85, 1, 1, 1, 1, 1]), None, "5-byte lengths");
        assert_eq!(element(&[SEQUENCE, 3, 1]), None, "short content");
        assert_eq!(element(&[SEQUENCE]), None);
    }
}
