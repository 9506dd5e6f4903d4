//! The protocol against a session and a node in memory, with the in-memory broker and no
//! socket: every command's success and error paths, presence, history, recovery,
//! authorization and limits, exactly and fast. What only a real socket shows (framing,
//! close frames, backpressure on a blocked write, TLS, the HTTP door) is tested over
//! sockets in the other test files.

mod auth;
mod channels;
mod connect;
mod errors;
mod fixtures;
mod history;
mod inputs;
mod limits;
mod model;
mod ordering;
mod paging;
mod presence;
mod publish;
mod recovery;
mod subscribe;
