//! Switchboard's JavaScript client, `switchboard.js`, as a string.
//!
//! The file next to this one is the npm package's module and the only copy: this crate lets
//! a Rust server embed it (`switchboard-server` serves it at `GET /switchboard.js`) without
//! reaching outside its own package. It has no code and no dependencies.
//!
//! ```
//! assert!(switchboard_js::SOURCE.contains("export class Switchboard"));
//! ```

/// The ES module `switchboard.js`, exactly as the npm package ships it (UTF-8 JavaScript).
pub const SOURCE: &str = include_str!("switchboard.js");
