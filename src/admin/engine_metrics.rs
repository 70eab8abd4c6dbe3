//! Prometheus lines for the engine: address rewrites, the frame-assembly
//! budget, streamed frames and refused broker listeners.

use crate::metrics::Metrics;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One unlabelled series: name, type, help, value.
type Scalar = (&'static str, &'static str, &'static str, u64);

fn scalars(m: &Metrics) -> [Scalar; 8] {
    [
        (
            "kgate_buffer_budget_used_bytes",
            "gauge",
            "Bytes of the process-wide frame-assembly budget in use.",
            m.buffer_budget_used.load(Relaxed),
        ),
        (
            "kgate_buffer_budget_waits_total",
            "counter",
            "Times a connection waited for frame-assembly budget (back-pressure).",
            m.buffer_budget_waits.load(Relaxed),
        ),
        (
            "kgate_listeners_failing",
            "gauge",
            "Brokers whose local listener could not be bound (port taken, overflow, range full); /readyz is 503 while this is not 0.",
            m.listeners_failing.load(Relaxed),
        ),
        (
            "kgate_first_request_timeouts_total",
            "counter",
            "Connections closed for sending no complete request within first_request_timeout_ms (nothing was done upstream).",
            m.first_request_timeouts.load(Relaxed),
        ),
        (
            "kgate_connections_refused_per_client_total",
            "counter",
            "Connections refused by max_connections_per_client.",
            m.per_client_refused.load(Relaxed),
        ),
        (
            "kgate_frames_spliced_total",
            "counter",
            "Streamed frames whose unread part moved socket to socket with splice(2), never entering kgate's memory.",
            m.frames_spliced.load(Relaxed),
        ),
        (
            "kgate_client_auth_timeouts_total",
            "counter",
            "Connections closed for not finishing client SASL within client_auth.auth_timeout_ms.",
            m.client_auth_timeouts.load(Relaxed),
        ),
        (
            "kgate_client_sessions_expired_total",
            "counter",
            "Connections closed because the client's SASL session expired without re-authentication (KIP-368).",
            m.client_sessions_expired.load(Relaxed),
        ),
    ]
}

pub fn render(m: &Metrics, o: &mut String) {
    head(
        o,
        "kgate_address_rewrites_total",
        "counter",
        "Responses in which kgate replaced broker addresses, by API (fetch and produce: KIP-951 node_endpoints).",
    );
    for (api, n) in m.address_rewrites.snapshot() {
        let _ = writeln!(o, "kgate_address_rewrites_total{{api=\"{api}\"}} {n}");
    }
    head(
        o,
        "kgate_producer_id_remaps_total",
        "counter",
        "Producer ids mapped after a cut-over: fetched (a fresh id from the new cluster) or virtual (a clashing id handed out as kgate's own).",
    );
    for (kind, n) in m.producer_id_remaps_total.snapshot() {
        let _ = writeln!(o, "kgate_producer_id_remaps_total{{kind=\"{kind}\"}} {n}");
    }
    head(
        o,
        "kgate_policy_denials_total",
        "counter",
        "Requests the policy denied wholly or in part, by API and resource type.",
    );
    for ((api, kind), n) in m.policy_denials.snapshot() {
        let _ = writeln!(
            o,
            "kgate_policy_denials_total{{api=\"{api}\",resource=\"{kind}\"}} {n}"
        );
    }
    head(
        o,
        "kgate_frames_streamed_total",
        "counter",
        "Frames forwarded cut-through, without being assembled.",
    );
    for (i, dir) in ["request", "response"].iter().enumerate() {
        let n = m.frames_streamed[i].load(Relaxed);
        let _ = writeln!(o, "kgate_frames_streamed_total{{direction=\"{dir}\"}} {n}");
    }
    head(
        o,
        "kgate_dynamic_listeners_refused_total",
        "counter",
        "Brokers refused a listener: cap reached, allow-list, invalid host or port.",
    );
    let _ = writeln!(
        o,
        "kgate_dynamic_listeners_refused_total {}",
        m.dynamic_listeners_refused.load(Relaxed)
    );
    head(
        o,
        "kgate_client_auth_total",
        "counter",
        "Client SASL authentications by mechanism, result (ok, failed) and kind (authenticate, reauthenticate).",
    );
    for ((mechanism, result, kind), n) in m.client_auth.snapshot() {
        let _ = writeln!(
            o,
            "kgate_client_auth_total{{mechanism=\"{mechanism}\",result=\"{result}\",kind=\"{kind}\"}} {n}"
        );
    }
    for (name, kind, help, v) in scalars(m) {
        head(o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_denials_are_rendered_with_bounded_labels() {
        let m = crate::metrics::Metrics::default();
        m.policy_denials.add(("Produce", "topic"), 3);
        let mut o = String::new();
        super::render(&m, &mut o);
        assert!(
            o.contains("kgate_policy_denials_total{api=\"Produce\",resource=\"topic\"} 3"),
            "{o}"
        );
    }
}
