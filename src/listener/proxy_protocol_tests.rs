use super::*;

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut v = V2_SIG.to_vec();
    v.push(0x20 | cmd);
    v.push(fam);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn done(b: &[u8]) -> Header {
    match parse(b) {
        Ok(Parsed::Done(h)) => h,
        other => panic!("expected a header, got {other:?}"),
    }
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let h = done(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 29092\r\n\0\0\0\x10");
    assert_eq!(h.source, Some("192.0.2.7:51234".parse().unwrap()));
    assert_eq!(h.len, 43);
    assert_eq!(h.version, 1);
    let h = done(b"PROXY TCP6 2001:db8::1 ::1 4000 9092\r\n");
    assert_eq!(h.source, Some("[2001:db8::1]:4000".parse().unwrap()));
    let h = done(b"PROXY UNKNOWN\r\n");
    assert_eq!((h.source, h.len), (None, 15));
    // The longest legal header is 107 bytes.
    let long = format!(
        "PROXY UNKNOWN {}\r\n",
        "f".repeat(V1_MAX - "PROXY UNKNOWN \r\n".len())
    );
    assert_eq!(long.len(), V1_MAX);
    assert_eq!(done(long.as_bytes()).len, V1_MAX);
}

#[test]
fn v1_refusals() {
    for b in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY \xff\r\n",
    ] {
        assert!(parse(b).is_err(), "{:?} accepted", String::from_utf8_lossy(b));
    }
    let no_crlf = [b'P'; 200];
    let mut over = b"PROXY UNKNOWN ".to_vec();
    over.extend_from_slice(&no_crlf);
    assert!(parse(&over).is_err(), "no CRLF within 107 bytes must fail");
}

#[test]
fn incomplete_and_absent() {
    assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"\r\n\r\n\0"), Ok(Parsed::Incomplete));
    assert_eq!(parse(&v2(1, 0x11, &[0; 12])[..20]), Ok(Parsed::Incomplete));
    // A Kafka frame (size first) and a TLS ClientHello are not headers.
    assert_eq!(parse(&[0, 0, 0, 20, 0, 18]), Ok(Parsed::Absent));
    assert_eq!(parse(&[0x16, 3, 1, 0, 200]), Ok(Parsed::Absent));
    assert_eq!(parse(b"PROXX"), Ok(Parsed::Absent));
}

#[test]
fn v2_ipv4_ipv6_local_and_tlvs() {
    let mut body = vec![203, 0, 113, 9, 10, 0, 0, 1, 0xC3, 0x50, 0x71, 0xA4];
    // A PP2_TYPE_AWS TLV with the VPC endpoint id, and an unknown one.
    let id = b"\x01vpce-0abc123";
    body.push(0xEA);
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    body.extend_from_slice(&[0x04, 0, 2, 9, 9]);
    let mut wire = v2(1, 0x11, &body);
    let hlen = wire.len();
    wire.extend_from_slice(&[0, 0, 0, 9]);
    let h = done(&wire);
    assert_eq!(h.source, Some("203.0.113.9:50000".parse().unwrap()));
    assert_eq!(h.len, hlen);
    assert_eq!(h.aws_vpce_id.as_deref(), Some("vpce-0abc123"));
    let mut b6 = vec![0u8; 36];
    b6[0] = 0x20;
    b6[1] = 0x01;
    b6[15] = 5;
    b6[32] = 0x1F;
    b6[33] = 0x90;
    let h = done(&v2(1, 0x21, &b6));
    assert_eq!(h.source, Some("[2001::5]:8080".parse().unwrap()));
    // LOCAL (an LB health check): the socket's own peer stands.
    let h = done(&v2(0, 0x11, &[1; 12]));
    assert_eq!(h.source, None);
    let h = done(&v2(0, 0x00, &[]));
    assert_eq!((h.source, h.len), (None, 16));
}

#[test]
fn v2_refusals() {
    let mut wrong_version = v2(1, 0x11, &[0; 12]);
    wrong_version[12] = 0x11;
    assert!(parse(&wrong_version).is_err());
    assert!(parse(&v2(2, 0x11, &[0; 12])).is_err(), "command 2");
    assert!(parse(&v2(1, 0x11, &[0; 11])).is_err(), "short IPv4 block");
    assert!(parse(&v2(1, 0x21, &[0; 20])).is_err(), "short IPv6 block");
    assert!(parse(&v2(1, 0x41, &[0; 12])).is_err(), "family 4");
    let mut tlv_overrun = vec![0; 12];
    tlv_overrun.extend_from_slice(&[0xEA, 0, 50, 1]);
    assert!(parse(&v2(1, 0x11, &tlv_overrun)).is_err());
    let mut tlv_short = vec![0; 12];
    tlv_short.extend_from_slice(&[0xEA, 0]);
    assert!(parse(&v2(1, 0x11, &tlv_short)).is_err());
    // A claimed length past the bound fails before waiting for the bytes.
    let mut huge = v2(1, 0x11, &[0; 12]);
    huge[14] = 0xFF;
    huge[15] = 0xFF;
    assert!(parse(&huge[..16]).is_err());
}

#[tokio::test]
async fn read_header_consumes_exactly_the_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    // Sent in two pieces: the reader must wait for the rest.
    c.write_all(b"PROXY TCP4 198.51.100.4 10.0.0.1 40000 ")
        .await
        .unwrap();
    let t = tokio::spawn(async move {
        let h = read_header(&mut s, Mode::Required, Duration::from_secs(5)).await;
        let mut rest = [0u8; 4];
        s.read_exact(&mut rest).await.unwrap();
        (h.unwrap(), rest)
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.write_all(b"29092\r\nKAFK").await.unwrap();
    let (h, rest) = t.await.unwrap();
    assert_eq!(h.unwrap().source, Some("198.51.100.4:40000".parse().unwrap()));
    assert_eq!(&rest, b"KAFK");

    // Optional with a direct client: nothing consumed.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    c.write_all(&[0, 0, 0, 5]).await.unwrap();
    assert!(read_header(&mut s, Mode::Optional, Duration::from_secs(5))
        .await
        .unwrap()
        .is_none());
    let mut first = [0u8; 4];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(first, [0, 0, 0, 5]);

    // Required with a direct client: refused.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    c.write_all(&[0, 0, 0, 5]).await.unwrap();
    let e = read_header(&mut s, Mode::Required, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, HeaderError::Missing), "{e}");

    // A stalled header times out.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    c.write_all(b"PROXY TCP4").await.unwrap();
    let e = read_header(&mut s, Mode::Optional, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, HeaderError::Timeout(_)), "{e}");
}
