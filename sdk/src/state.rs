//! Snapshots that know what they hold: a plugin's state saved with a `shape` (a string naming
//! what the configuration makes of the state, e.g. its buckets and dimensions), so that an
//! instance reloaded with another configuration starts afresh instead of misreading it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::host;

#[derive(serde::Serialize)]
struct Saving<'a, T> {
    shape: &'a str,
    state: &'a T,
}

#[derive(serde::Deserialize)]
struct Saved<T> {
    shape: String,
    state: T,
}

/// `state` as JSON with its shape, for [`crate::Plugin::snapshot`].
pub fn save<T: Serialize>(shape: &str, state: &T) -> Vec<u8> {
    serde_json::to_vec(&Saving { shape, state }).unwrap_or_default()
}

/// The state a snapshot holds, for [`crate::Plugin::restore`]: `None` when there is none (an
/// empty snapshot) or when it was taken under another shape (logged at info: `what` names the
/// state). An unreadable snapshot is an error.
///
/// ```
/// use sluice_sdk::state::{load, save};
/// let bytes = save("buckets=1,2", &vec![3u64, 4]);
/// assert_eq!(load::<Vec<u64>>(&bytes, "buckets=1,2", "counts").unwrap(), Some(vec![3, 4]));
/// assert_eq!(load::<Vec<u64>>(&bytes, "buckets=5", "counts").unwrap(), None);
/// assert!(load::<Vec<u64>>(b"{", "buckets=1,2", "counts").is_err());
/// ```
pub fn load<T: DeserializeOwned>(
    bytes: &[u8],
    shape: &str,
    what: &str,
) -> Result<Option<T>, Error> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let saved: Saved<serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| Error::Input(format!("cannot restore the {what}: {e}")))?;
    if saved.shape != shape {
        host::log(
            host::Level::Info,
            &format!("The configuration changed the shape of the {what}; it starts afresh."),
        );
        return Ok(None);
    }
    serde_json::from_value(saved.state)
        .map(Some)
        .map_err(|e| Error::Input(format!("cannot restore the {what}: {e}")))
}
