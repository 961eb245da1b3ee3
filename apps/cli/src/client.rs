//! The node a command talks to: the one `peerconnect up` runs on the data dir
//! (through its control socket), else a node of the command's own. Either way
//! the command sends the same [`Request`]s, which the core's one
//! `control::dispatch` runs, and prints the same replies.

use peerconnect::control::{self, Call, Client, Reply, Request};
use peerconnect::{Config, Event, Node};
use serde_json::Value;

use crate::node_args::NodeArgs;

/// The node running on the data dir, else our own started with `config`
/// (stopped by [`Client::close`]).
pub async fn open(
    args: &NodeArgs,
    config: impl FnOnce() -> anyhow::Result<Config>,
) -> anyhow::Result<Client> {
    if let Some(running) = Client::running(&args.data_dir()).await? {
        return Ok(running);
    }
    Ok(Client::Own(Node::start(config()?).await?))
}

/// Runs `req`: its answer, or its error as an error of its kind (for the
/// exit code).
pub async fn call(
    client: &Client,
    req: Request,
    on_event: impl FnMut(Event),
) -> anyhow::Result<Value> {
    client.call(req, on_event).await?.map_err(failure)
}

/// An error answer as an error of its kind, when it has one.
pub fn failure(text: String) -> anyhow::Error {
    match control::reply_error(&text) {
        Some(e) => e.into(),
        None => anyhow::Error::msg(text),
    }
}

/// The next event of a request in progress; `None` once it has ended well,
/// its error as an error of its kind.
pub async fn next_event(call: &mut Call) -> anyhow::Result<Option<Event>> {
    match call.next().await? {
        Some(Reply::Event(e)) => Ok(Some(e)),
        Some(Reply::Ok { .. }) | None => Ok(None),
        Some(Reply::Error { error }) => Err(failure(error)),
    }
}
