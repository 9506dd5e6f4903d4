//! The node's registry of connected clients: who they are and where to reach them, for
//! disconnects by the API and the drain.

use std::sync::Arc;

use switchboard_hub::ClientId;

use super::{Node, Outbox};

/// What the node knows of a connected client.
pub(super) struct Registered {
    pub(super) user: Option<String>,
    pub(super) outbox: Arc<Outbox>,
}

/// A client's place in its node's registry, given back on drop: however the client's
/// transport ends (a clean close, an error, a panic), the node forgets it.
pub struct Registration {
    node: Arc<Node>,
    id: ClientId,
    outbox: Arc<Outbox>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Registration {
    /// Registers a new client with a fresh random id and its outbox.
    pub(super) fn new(node: &Arc<Node>, outbox: Arc<Outbox>) -> Self {
        let id: ClientId = Arc::from(format!("{:016x}", rand::random::<u64>()));
        let registered = Registered { user: None, outbox: Arc::clone(&outbox) };
        node.connections().insert(Arc::clone(&id), registered);
        Self { node: Arc::clone(node), id, outbox }
    }

    /// The client's id.
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// The node the client is registered with.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The client's outbound queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Records the user the client authenticated as, for disconnects by user.
    pub(super) fn set_user(&self, user: Option<&str>) {
        if let Some(registered) = self.node.connections().get_mut(&*self.id) {
            registered.user = user.map(str::to_owned);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.node.connections().remove(&*self.id);
    }
}
