use crate::common::*;

#[tokio::test]
async fn put_get_roundtrip() {
    let s = metastore(&[]);
    let mut c = client(&s).await;
    let put = c.put("k", "v", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), 2);
    let got = c.get("k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");
    assert_eq!(got.kvs()[0].create_revision(), 2);
}
