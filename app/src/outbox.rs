//! The IndexedDB adapter (through rexie): the only module that touches IndexedDB. Meters,
//! declarations and complaints live in three object stores; a declaration or complaint is written
//! before the screen says "saved" and stays as history after its outcome arrives. Records are
//! written through serde and read back field by field (`crate::js`).
//!
//! Version 1 had meters and declarations; version 2 adds complaints; version 3 adds meter photos
//! (one per declaration, the shrunk JPEG as a `Blob`, with whether the server has it). Opening
//! runs the upgrade, which creates only what is missing: a phone's queued declarations survive it.

use rexie::{ObjectStore, Rexie, TransactionMode};
use serde::Serialize;

use crate::js::{self, Fields};
use crate::model::{Complaint, Declaration, Meter};

const DATABASE: &str = "kontor";
const METERS: &str = "meters";
const DECLARATIONS: &str = "declarations";
const COMPLAINTS: &str = "complaints";
const PHOTOS: &str = "photos";

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
        .version(3)
        .add_object_store(ObjectStore::new(METERS).key_path("subscription"))
        .add_object_store(ObjectStore::new(DECLARATIONS).key_path("id"))
        .add_object_store(ObjectStore::new(COMPLAINTS).key_path("id"))
        .add_object_store(ObjectStore::new(PHOTOS).key_path("id"))
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

/// Every record of a store that `read` can read. A record it cannot read (written by a future
/// version, or damaged) is left where it is and not shown, rather than hiding all the others.
async fn get_all<T>(store_name: &str, read: fn(&Fields) -> Option<T>) -> Result<Vec<T>, OutboxError> {
    Ok(get_values(store_name).await?.into_iter().filter_map(|v| read(&Fields(v))).collect())
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
    get_all(METERS, js::meter).await
}

/// Removes a meter from this phone (its declarations stay, as history).
pub async fn remove_meter(subscription: &str) -> Result<(), OutboxError> {
    let db = open().await?;
    let tx = db.transaction(&[METERS], TransactionMode::ReadWrite)?;
    tx.store(METERS)?.delete(subscription.into()).await?;
    tx.done().await?;
    db.close();
    Ok(())
}

pub async fn save_declarations(items: &[Declaration]) -> Result<(), OutboxError> {
    put_all(DECLARATIONS, items).await
}

pub async fn declarations() -> Result<Vec<Declaration>, OutboxError> {
    get_all(DECLARATIONS, js::declaration).await
}

pub async fn save_complaints(items: &[Complaint]) -> Result<(), OutboxError> {
    put_all(COMPLAINTS, items).await
}

pub async fn complaints() -> Result<Vec<Complaint>, OutboxError> {
    get_all(COMPLAINTS, js::complaint).await
}

/// A declaration's meter photo as the phone keeps it.
pub struct Photo {
    pub id: uuid::Uuid,
    pub blob: web_sys::Blob,
    /// Whether the server has it (then it is never sent again).
    pub sent: bool,
}

/// Keeps a declaration's photo (replacing one not sent yet). A full device storage is an error
/// the screen shows; the declaration itself is stored already.
pub async fn save_photo(photo: &Photo) -> Result<(), OutboxError> {
    let record = js_sys::Object::new();
    let set = |key: &str, value: &wasm_bindgen::JsValue| js_sys::Reflect::set(&record, &key.into(), value);
    let written = set("id", &photo.id.to_string().into())
        .and_then(|_| set("blob", &photo.blob))
        .and_then(|_| set("sent", &photo.sent.into()));
    if written.is_err() {
        return Err(OutboxError("a record could not be written"));
    }
    put_values(PHOTOS, &[record.into()]).await
}

pub async fn photos() -> Result<Vec<Photo>, OutboxError> {
    use wasm_bindgen::JsCast as _;
    Ok(get_values(PHOTOS)
        .await?
        .into_iter()
        .filter_map(|value| {
            let blob = js_sys::Reflect::get(&value, &"blob".into()).ok()?.dyn_into::<web_sys::Blob>().ok()?;
            let fields = Fields(value);
            Some(Photo { id: fields.uuid("id")?, blob, sent: fields.flag("sent").unwrap_or(false) })
        })
        .collect())
}
