//! The IndexedDB adapter (through rexie): the only module that touches IndexedDB or converts to
//! and from `JsValue`. Meters and declarations live in two object stores; a declaration is
//! written before the screen says "saved" and stays as history after its outcome arrives.

use rexie::{ObjectStore, Rexie, TransactionMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::{Declaration, Meter};

const DATABASE: &str = "kontor";
const METERS: &str = "meters";
const DECLARATIONS: &str = "declarations";

/// Why the device store failed, in a few words. The underlying error is not formatted: its
/// `Debug` text would cost the shell several KiB and tells the subscriber nothing more.
#[derive(Debug)]
pub struct OutboxError(pub &'static str);

impl From<rexie::Error> for OutboxError {
    fn from(_: rexie::Error) -> Self {
        Self("the device's storage refused the operation")
    }
}

async fn open() -> Result<Rexie, OutboxError> {
    Ok(Rexie::builder(DATABASE)
        .version(1)
        .add_object_store(ObjectStore::new(METERS).key_path("subscription"))
        .add_object_store(ObjectStore::new(DECLARATIONS).key_path("id"))
        .build()
        .await?)
}

async fn put_all<T: Serialize>(store_name: &str, items: &[T]) -> Result<(), OutboxError> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    let values = items
        .iter()
        .map(|item| item.serialize(&serializer).map_err(|_| OutboxError("a record could not be written")))
        .collect::<Result<Vec<_>, _>>()?;
    put_values(store_name, &values).await
}

/// Writes records in one transaction. Not generic: one copy of the IndexedDB state machine
/// serves every kind of record (the shell's budget).
async fn put_values(store_name: &str, values: &[wasm_bindgen::JsValue]) -> Result<(), OutboxError> {
    // A fresh connection each time: the browser may close one under the app (storage pressure,
    // a version change in another tab), and a new one always works.
    let db = open().await?;
    let tx = db.transaction(&[store_name], TransactionMode::ReadWrite)?;
    let store = tx.store(store_name)?;
    for value in values {
        store.put(value, None).await?;
    }
    tx.done().await?;
    db.close();
    Ok(())
}

async fn get_all<T: DeserializeOwned>(store_name: &str) -> Result<Vec<T>, OutboxError> {
    get_values(store_name)
        .await?
        .into_iter()
        .map(|v| serde_wasm_bindgen::from_value(v).map_err(|_| OutboxError("a stored record could not be read")))
        .collect()
}

/// Reads every record of a store; not generic, like [`put_values`].
async fn get_values(store_name: &str) -> Result<Vec<wasm_bindgen::JsValue>, OutboxError> {
    let db = open().await?;
    let tx = db.transaction(&[store_name], TransactionMode::ReadOnly)?;
    let store = tx.store(store_name)?;
    let values = store.get_all(None, None).await?;
    tx.done().await?;
    db.close();
    Ok(values)
}

pub async fn save_meter(meter: &Meter) -> Result<(), OutboxError> {
    put_all(METERS, std::slice::from_ref(meter)).await
}

pub async fn meters() -> Result<Vec<Meter>, OutboxError> {
    get_all(METERS).await
}

pub async fn save_declarations(items: &[Declaration]) -> Result<(), OutboxError> {
    put_all(DECLARATIONS, items).await
}

pub async fn declarations() -> Result<Vec<Declaration>, OutboxError> {
    get_all(DECLARATIONS).await
}
