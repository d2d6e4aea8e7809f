//! W3C trace context (`traceparent`): continued from the request when valid, else started
//! here, stored with the activity and carried on the published message so a worker's logs
//! join the receiver's.

/// Returns a `traceparent` that is a child of `incoming` when that is valid, else a new one.
pub fn continue_or_start(incoming: Option<&str>) -> String {
    let span_id = format!("{:016x}", rand::random::<u64>() | 1);
    match incoming.and_then(parse) {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span_id}-{flags}"),
        None => format!("00-{:032x}-{span_id}-01", rand::random::<u128>() | 1),
    }
}

/// The trace id part of a `traceparent` (empty if malformed).
pub fn trace_id(traceparent: &str) -> &str {
    parse(traceparent).map(|(t, _)| t).unwrap_or("")
}

/// `version-traceid-spanid-flags`, lowercase hex, non-zero ids.
fn parse(tp: &str) -> Option<(&str, &str)> {
    let mut parts = tp.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(span_id, 16)
        && span_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some((trace_id, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let out = continue_or_start(Some(incoming));
        assert_eq!(trace_id(&out), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(out, incoming);
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let out = continue_or_start(bad);
            assert_eq!(trace_id(&out).len(), 32, "{out}");
        }
    }
}
