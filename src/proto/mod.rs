//! Generated StoreAPI types and services, and Prometheus' remote-read messages (from
//! `proto/`). Only `storeapi/` (the server, the client, the conversions), the sidecar's
//! Prometheus client and the tools' clients use these; the engines have their own types.

#![allow(clippy::all, missing_docs)]

mod label;

/// Package `thanos`: the Store service and its messages.
pub mod thanos {
    tonic::include_proto!("thanos");
    pub use crate::model::Label;

    /// Package `thanos.info`.
    pub mod info {
        tonic::include_proto!("thanos.info");
    }
}

/// Package `hintspb`: request/response hints carried in `google.protobuf.Any`.
pub mod hintspb {
    tonic::include_proto!("hintspb");
}

/// Package `prometheus`: remote read, as the sidecar calls it.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// The wire number of a matcher kind. Thanos' `LabelMatcher.Type` and Prometheus'
/// `LabelMatcher.Type` number them alike: EQ 0, NEQ 1, RE 2, NRE 3.
pub fn matcher_type(kind: crate::model::MatchKind) -> i32 {
    use crate::model::MatchKind;
    match kind {
        MatchKind::Equal => 0,
        MatchKind::NotEqual => 1,
        MatchKind::Regex => 2,
        MatchKind::NotRegex => 3,
    }
}

/// The matcher kind of a wire number (see [`matcher_type`]); `None` for an unknown one.
pub fn matcher_kind(wire: i32) -> Option<crate::model::MatchKind> {
    use crate::model::MatchKind;
    Some(match wire {
        0 => MatchKind::Equal,
        1 => MatchKind::NotEqual,
        2 => MatchKind::Regex,
        3 => MatchKind::NotRegex,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are the generated enums' own, for both protocols.
    #[test]
    fn matcher_numbers_are_both_protocols_own() {
        use crate::model::MatchKind::*;
        use prometheus::label_matcher::Type as P;
        use thanos::label_matcher::Type as T;
        for (kind, t, p) in [
            (Equal, T::Eq, P::Eq),
            (NotEqual, T::Neq, P::Neq),
            (Regex, T::Re, P::Re),
            (NotRegex, T::Nre, P::Nre),
        ] {
            assert_eq!(matcher_type(kind), t as i32);
            assert_eq!(matcher_type(kind), p as i32);
            assert_eq!(matcher_kind(t as i32), Some(kind));
        }
        assert_eq!(matcher_kind(4), None);
    }
}
