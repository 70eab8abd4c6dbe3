//! A renewed certificate on the SNI port must still cover its names: a
//! reload that brings one that does not is refused and the current
//! certificate kept; one that covers them is taken.

mod common;

use common::mock_cluster::MockCluster;
use common::sni::*;
use common::*;
use std::sync::Arc;

fn put(from: &std::path::Path, to: &std::path::Path) {
    for f in ["sni.pem", "sni.key"] {
        std::fs::copy(from.join(f), to.join(f)).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_that_drops_a_name_is_refused() {
    let cluster = MockCluster::start().await;
    let live = pki(&[BOOT, "*.kafka.example.internal"]);
    let kg = start_with(config(&cluster, live.path(), free_port_base(1))).await;
    let tls = kg.shared.downstream_tls.as_ref().expect("client TLS");
    let first = tls.config.current();

    let wrong = pki(&[BOOT, "*.other.example.internal"]);
    put(wrong.path(), live.path());
    kg.shared.reload_tls(true);
    assert!(
        Arc::ptr_eq(&first, &tls.config.current()),
        "a certificate without the broker pattern was refused"
    );

    let renewed = pki(&[BOOT, "*.kafka.example.internal"]);
    put(renewed.path(), live.path());
    kg.shared.reload_tls(true);
    assert!(
        !Arc::ptr_eq(&first, &tls.config.current()),
        "a certificate that covers the names was taken"
    );
    kg.stop();
}
