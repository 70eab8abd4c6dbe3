//! Prometheus lines for connection-storm control, per upstream broker
//! (bounded: brokers come from the cluster, capped by the listener limit).

use crate::upstream::storm::BrokerStats;
use std::fmt::Write;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(stats: &[BrokerStats], o: &mut String) {
    head(
        o,
        "kgate_upstream_connect_rate",
        "gauge",
        "Current new-connection rate per second toward each broker (lower than upstream_connect_rate after \"Too many connects\").",
    );
    for s in stats {
        let _ = writeln!(
            o,
            "kgate_upstream_connect_rate{{broker=\"{}\"}} {}",
            esc(&s.broker),
            s.rate
        );
    }
    head(
        o,
        "kgate_upstream_connections",
        "gauge",
        "Upstream connections open or waiting to open, per broker (capped by upstream_max_connections_per_broker).",
    );
    for s in stats {
        let _ = writeln!(
            o,
            "kgate_upstream_connections{{broker=\"{}\"}} {}",
            esc(&s.broker),
            s.open
        );
    }
    head(
        o,
        "kgate_upstream_connect_waits_total",
        "counter",
        "New upstream connections that waited for the per-broker rate.",
    );
    for s in stats {
        let _ = writeln!(
            o,
            "kgate_upstream_connect_waits_total{{broker=\"{}\"}} {}",
            esc(&s.broker),
            s.waits
        );
    }
    head(
        o,
        "kgate_upstream_connect_refusals_total",
        "counter",
        "Client connections refused by a per-broker limit: max_connections or rate_wait (the wait would pass upstream_connect_wait_ms).",
    );
    for s in stats {
        let b = esc(&s.broker);
        let _ = writeln!(
            o,
            "kgate_upstream_connect_refusals_total{{broker=\"{b}\",limit=\"max_connections\"}} {}",
            s.refused_max
        );
        let _ = writeln!(
            o,
            "kgate_upstream_connect_refusals_total{{broker=\"{b}\",limit=\"rate_wait\"}} {}",
            s.refused_rate
        );
    }
    head(
        o,
        "kgate_upstream_connect_slowdowns_total",
        "counter",
        "Times a broker's \"Too many connects\" halved the rate toward it.",
    );
    for s in stats {
        let _ = writeln!(
            o,
            "kgate_upstream_connect_slowdowns_total{{broker=\"{}\"}} {}",
            esc(&s.broker),
            s.slowdowns
        );
    }
}

/// Which cluster connections are on during a cut-over.
pub fn render_clusters(clusters: &[(String, u64, u64, bool)], o: &mut String) {
    head(
        o,
        "kgate_cluster_connections",
        "gauge",
        "Upstream connections open per cluster generation (after a cut-over the old one drains to 0).",
    );
    for (name, generation, open, _) in clusters {
        let _ = writeln!(
            o,
            "kgate_cluster_connections{{cluster=\"{}\",generation=\"{generation}\"}} {open}",
            esc(name)
        );
    }
    head(
        o,
        "kgate_cluster_current",
        "gauge",
        "1 for the cluster new connections go to.",
    );
    for (name, generation, _, current) in clusters {
        let _ = writeln!(
            o,
            "kgate_cluster_current{{cluster=\"{}\",generation=\"{generation}\"}} {}",
            esc(name),
            u8::from(*current)
        );
    }
}
