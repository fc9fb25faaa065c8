//! The operations a client can ask of a server.
//!
//! Owns: the numeric code and the name of each operation. Must never: reuse
//! a retired code for a different operation.

/// An operation, with its stable numeric code (used in frame headers) and
/// name (used in logs, docs and the CLI).
///
/// ```
/// use hearth_proto::Operation;
/// assert_eq!(Operation::from_code(Operation::Put.code()), Some(Operation::Put));
/// assert_eq!(Operation::Put.name(), "put");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Operation {
    /// Liveness check.
    Ping = 1,
    /// Replace a document.
    Put = 2,
    /// Merge top-level fields into a document.
    Patch = 3,
    /// Read a document.
    Get = 4,
    /// Read a document with its clock stamp, replica and sequence number.
    GetWithMetadata = 5,
    /// Delete a document (leaves a tombstone).
    Delete = 6,
    /// List documents by prefix and type.
    List = 7,
    /// Filter documents on top-level fields.
    Query = 8,
    /// Full-text search.
    Search = 9,
    /// An atomic group of puts, patches and deletes.
    Batch = 10,
    /// Follow the change log from a sequence number.
    Subscribe = 11,
    /// Stop following the change log.
    Unsubscribe = 12,
    /// Publish an event on a topic.
    Publish = 13,
    /// Receive events whose topic matches a pattern.
    SubscribeTopic = 14,
    /// Stop receiving events for a pattern.
    UnsubscribeTopic = 15,
    /// Call a custom handler by name.
    Call = 16,
    /// Counters and sizes.
    Stats = 17,
    /// Read the change log from a sequence number.
    ChangesSince = 18,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 18] = [
        Operation::Ping,
        Operation::Put,
        Operation::Patch,
        Operation::Get,
        Operation::GetWithMetadata,
        Operation::Delete,
        Operation::List,
        Operation::Query,
        Operation::Search,
        Operation::Batch,
        Operation::Subscribe,
        Operation::Unsubscribe,
        Operation::Publish,
        Operation::SubscribeTopic,
        Operation::UnsubscribeTopic,
        Operation::Call,
        Operation::Stats,
        Operation::ChangesSince,
    ];

    /// The stable numeric code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The operation with this code, if any.
    pub fn from_code(code: u16) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.code() == code)
    }

    /// The stable name.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::Put => "put",
            Operation::Patch => "patch",
            Operation::Get => "get",
            Operation::GetWithMetadata => "get_with_metadata",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Query => "query",
            Operation::Search => "search",
            Operation::Batch => "batch",
            Operation::Subscribe => "subscribe",
            Operation::Unsubscribe => "unsubscribe",
            Operation::Publish => "publish",
            Operation::SubscribeTopic => "subscribe_topic",
            Operation::UnsubscribeTopic => "unsubscribe_topic",
            Operation::Call => "call",
            Operation::Stats => "stats",
            Operation::ChangesSince => "changes_since",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_code(op.code()), Some(op));
        }
        let mut codes: Vec<u16> = Operation::ALL.iter().map(|o| o.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Operation::ALL.len());
    }

    #[test]
    fn an_unknown_code_is_none() {
        assert_eq!(Operation::from_code(0), None);
        assert_eq!(Operation::from_code(9999), None);
    }
}
