//! Ledger vocabulary: entry kinds and the books money moves between.
//!
//! Every balance change is one entry moving a positive amount from a debit
//! book to a credit book. A book's balance is Σ credits − Σ debits, so a
//! subscriber account's book is positive when it holds money and all books
//! together always sum to zero.
//!
//! | kind | debit | credit |
//! |---|---|---|
//! | `payment` | `payments:<source>` | `acct:<id>` |
//! | `refund` | `acct:<id>` | `payments:<source>` |
//! | `fee` | `acct:<payer>` | `revenue:fee` |
//! | `charge` | `acct:<payer>` | `revenue:traffic:<class>` |
//! | `correction` | either way between `acct:<id>` and `corrections` |
//! | `credit` | `expense:credits` | `acct:<id>` |
//! | `adjustment` | `revenue:…` | `acct:<payer>` (a charge taken back by re-rating) |

pub const PAYMENT: &str = "payment";
pub const REFUND: &str = "refund";
pub const FEE: &str = "fee";
pub const CHARGE: &str = "charge";
pub const CORRECTION: &str = "correction";
pub const CREDIT: &str = "credit";
pub const ADJUSTMENT: &str = "adjustment";

pub const KINDS: [&str; 7] = [PAYMENT, REFUND, FEE, CHARGE, CORRECTION, CREDIT, ADJUSTMENT];

pub const BOOK_FEE: &str = "revenue:fee";
pub const BOOK_CORRECTIONS: &str = "corrections";
pub const BOOK_CREDITS: &str = "expense:credits";

/// The service name of the periodic fee in accruals and entries.
pub const FEE_SERVICE: &str = "fee";

pub fn payments_book(source: &str) -> String {
    format!("payments:{source}")
}

pub fn traffic_book(class: &str) -> String {
    format!("revenue:traffic:{class}")
}

/// The `'static` name of a stored kind (unknown kinds map to "?", which
/// breaks the hash chain on purpose: nothing writes them).
pub fn kind_static(kind: &str) -> &'static str {
    KINDS.iter().find(|k| **k == kind).copied().unwrap_or("?")
}
